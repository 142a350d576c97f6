"""Ingest on a real database (SQLite file and PostgreSQL): validation, storage, plIds."""

from __future__ import annotations

import json
import traceback
from datetime import datetime

import pytest
from lxml import etree
from sqlalchemy import insert, select

from soap_service import catalog, clock, ingest
from soap_service.config import Settings
from soap_service.errors import ServerError, ValidationFailed
from soap_service.models import PLID_SHIFT, EventStatus, Queue, split_plid
from soap_service.store import Database
from soap_service.store import events as event_store
from soap_service.tables import event_types, events

EVENT = (
    '<rtEvent type="order_confirmation" email="john.doe@example.com" origin="eCommerce" '
    'wishedChannel="0" externalId="1242" mobilePhone="+33620202020" customFlag="yes">'
    '<ctx><client><firstname>John</firstname><lastname>Doe</lastname></client>'
    '<orderdetails><article num="1"><name>USB key</name><price>20</price></article>'
    "</orderdetails></ctx></rtEvent>"
)


def el(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def event_xml(ctx: str = "<ctx><a>1</a></ctx>", **attrs: str) -> etree._Element:
    attrs = {"type": "welcome", "email": "a@example.com", **attrs}
    text = " ".join(f'{k}="{v}"' for k, v in attrs.items() if v is not None)
    return el(f"<rtEvent {text}>{ctx}</rtEvent>")


def row_of(db: Database, plid: int) -> dict:
    with db.connect() as conn:
        return dict(conn.execute(select(events).where(events.c.id == split_plid(plid)[1]))
                    .one()._mapping)


def add_event_type(db: Database, name: str, lane: str) -> None:
    now = clock.utcnow()
    with db.begin() as conn:
        conn.execute(insert(event_types), {"name": name, "lane": lane, "created_at": now,
                                           "updated_at": now})
    catalog.clear_cache()


def test_event_is_stored_with_every_attribute_and_raw_ctx(db: Database, settings: Settings):
    """All attributes (unknown ones too) are kept in JSON, mapped columns are filled and
    the <ctx> element is stored verbatim."""
    plid = ingest.store_event(db, settings, el(EVENT), Queue.RT)
    row = row_of(db, plid)
    attrs = json.loads(row["attributes"])
    assert attrs["customFlag"] == "yes" and attrs["origin"] == "eCommerce"
    assert set(attrs) == {"type", "email", "origin", "wishedChannel", "externalId",
                          "mobilePhone", "customFlag"}
    assert (row["event_type"], row["email"], row["external_id"], row["mobile_phone"]) == (
        "order_confirmation", "john.doe@example.com", "1242", "+33620202020")
    assert row["queue"] == "rt" and row["status"] == EventStatus.PENDING
    assert row["ctx_xml"] == (
        "<ctx><client><firstname>John</firstname><lastname>Doe</lastname></client>"
        '<orderdetails><article num="1"><name>USB key</name><price>20</price></article>'
        "</orderdetails></ctx>")
    event = event_store.get_event(db, split_plid(plid)[1])
    assert event is not None and event.attributes == attrs and event.queue is Queue.RT


def test_plid_formula_uses_instance_id(db: Database, settings: Settings):
    """plId = (instance_id << 56) | primary key, and is always > 0."""
    plid = ingest.store_event(db, settings.replace(instance_id=7), event_xml(), "rt")
    instance, pk = split_plid(plid)
    assert instance == 7 and pk > 0 and plid == (7 << PLID_SHIFT) | pk
    assert row_of(db, plid)["id"] == pk


def test_ctx_is_stored_namespace_clean(db: Database, settings: Settings):
    """Namespace declarations of the envelope around the event do not leak into the ctx."""
    envelope = el(
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><s:Body><urn:PushEvent><urn:domEvent>'
        '<rtEvent xmlns="" type="t" email="x@example.org"><ctx><p q="1">v</p></ctx>'
        "</rtEvent></urn:domEvent></urn:PushEvent></s:Body></s:Envelope>")
    event = envelope.find(".//rtEvent")
    plid = ingest.store_event(db, settings, event, Queue.RT)
    assert row_of(db, plid)["ctx_xml"] == '<ctx><p q="1">v</p></ctx>'


@pytest.mark.parametrize(
    ("attrs", "ctx", "message"),
    [
        ({"type": None}, "<ctx/>", "missing attribute 'type'"),
        ({"type": " "}, "<ctx/>", "missing attribute 'type'"),
        ({}, "<other/>", "missing element <ctx>"),
        ({"email": "not-an-address"}, "<ctx/>", "malformed attribute 'email'"),
        ({"email": "a@b"}, "<ctx/>", "malformed attribute 'email'"),
        ({"email": None}, "<ctx/>", "missing attribute 'email'"),
        ({"wishedChannel": "1"}, "<ctx/>", "missing attribute 'mobilePhone'"),
        ({"wishedChannel": "x"}, "<ctx/>", "invalid attribute 'wishedChannel'"),
        ({"wishedChannel": "7"}, "<ctx/>", "invalid attribute 'wishedChannel'"),
        ({"emailFormat": "html"}, "<ctx/>", "invalid attribute 'emailFormat'"),
        ({"emailFormat": "3"}, "<ctx/>", "invalid attribute 'emailFormat'"),
        ({"emailFormat": "-1"}, "<ctx/>", "invalid attribute 'emailFormat'"),
        ({"emailFormat": "9" * 20}, "<ctx/>", "invalid attribute 'emailFormat'"),
        ({"scheduled": "tomorrow"}, "<ctx/>", "invalid attribute 'scheduled'"),
        ({"expiration": "2024-13-45"}, "<ctx/>", "invalid attribute 'expiration'"),
        ({"scheduled": "9999-12-31T23:00:00-10:00"}, "<ctx/>", "invalid attribute 'scheduled'"),
        ({"expiration": "0001-01-01T00:00:00+01:00"}, "<ctx/>", "invalid attribute 'expiration'"),
        ({"origin": "o" * 256}, "<ctx/>", "attribute 'origin' is longer than 255"),
        ({"type": "t" * 65}, "<ctx/>", "attribute 'type' is longer than 64"),
    ],
)
def test_invalid_events_are_refused_and_not_stored(
    db: Database, settings: Settings, attrs: dict, ctx: str, message: str
):
    """Each rule of SPEC 2.4 raises ValidationFailed naming the problem; nothing is stored."""
    with pytest.raises(ValidationFailed) as info:
        ingest.store_event(db, settings, event_xml(ctx, **attrs), Queue.RT)
    assert message in info.value.message
    assert event_store.count_events(db) == 0


def test_sms_and_push_events_need_no_email(db: Database, settings: Settings):
    """An SMS event with a mobile phone (stored in E.164), or a push event, is valid without
    an email; an SMS number that cannot be E.164 is refused, naming the attribute."""
    sms = ingest.store_event(db, settings, event_xml(email=None, wishedChannel="1",
                                                     mobilePhone="0033 6 12 34 56 78"), "rt")
    for bad in ("+331", "06 12 34 56 78", "not a number"):
        with pytest.raises(ValidationFailed, match="attribute 'mobilePhone'"):
            ingest.store_event(db, settings, event_xml(email=None, wishedChannel="1",
                                                       mobilePhone=bad), "rt")
    push = ingest.store_event(
        db, settings,
        event_xml('<mobileApp uuid="app-1"/><ctx/>', email=None, wishedChannel="41",
                  registrationToken="tok"), "rt")
    assert (row_of(db, sms)["wished_channel"], row_of(db, sms)["mobile_phone"]) == (
        1, "+33612345678")
    row = row_of(db, push)
    assert (row["mobile_app_uuid"], row["registration_token"]) == ("app-1", "tok")


def test_scheduled_and_expiration_dates(db: Database, settings: Settings):
    """ISO 8601 dates become naive UTC; process_at is the scheduled date, else now."""
    start = datetime(2030, 1, 2, 3, 4, 5)
    with clock.frozen_clock(start):
        plain = ingest.store_event(db, settings, event_xml(), "rt")
        sched = ingest.store_event(
            db, settings,
            event_xml(scheduled="2031-06-01T12:00:00+02:00", expiration="2031-06-02T00:00:00Z"),
            "rt")
    assert row_of(db, plain)["process_at"] == start
    row = row_of(db, sched)
    assert row["scheduled_at"] == row["process_at"] == datetime(2031, 6, 1, 10, 0, 0)
    assert row["expiration_at"] == datetime(2031, 6, 2)
    assert row["created_at"] == start


def test_priority_from_queue_and_event_type_lane(db: Database, settings: Settings):
    """priority = queue rank * 10 + lane rank; an unknown type is stored as transactional."""
    add_event_type(db, "otp", "critical")
    add_event_type(db, "newsletter", "bulk")
    cases = {("otp", "rt"): 0, ("unknown_type", "rt"): 1, ("newsletter", "rt"): 2,
             ("otp", "batch"): 10, ("newsletter", "batch"): 12}
    for (etype, queue), expected in cases.items():
        plid = ingest.store_event(db, settings, event_xml(type=etype), queue)
        row = row_of(db, plid)
        assert (row["priority"], row["queue"], row["event_type"]) == (expected, queue, etype)


def test_push_events_returns_ids_in_order_in_one_call(db: Database, settings: Settings):
    """100 events in one call: plIds in order with each caller's externalId, all stored."""
    elements = [event_xml(externalId=f"ext-{i}") for i in range(100)]
    result = ingest.store_events(db, settings, elements, Queue.BATCH)
    assert [ext for _, ext in result] == [f"ext-{i}" for i in range(100)]
    pks = [split_plid(plid)[1] for plid, _ in result]
    assert len(set(pks)) == 100
    for plid, ext in result[::17]:
        row = row_of(db, plid)
        assert (row["external_id"], row["queue"], row["priority"]) == (ext, "batch", 11)


def test_push_events_is_all_or_nothing_and_names_the_bad_event(
    db: Database, settings: Settings
):
    """One bad event fails the whole call with its 1-based index; nothing is stored."""
    elements = [event_xml(), event_xml(), event_xml(type=None), event_xml()]
    with pytest.raises(ValidationFailed, match=r"^event #3: missing attribute 'type'$"):
        ingest.store_events(db, settings, elements, Queue.RT)
    assert event_store.count_events(db) == 0


_REFUSE_BOOM = {
    "sqlite": [
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON events WHEN NEW.external_id = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.external_id = 'boom' THEN RAISE EXCEPTION 'boom refused' "
        "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON events "
        "FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    ],
}


def test_large_push_events_failing_in_the_database_stores_nothing(
    db: Database, settings: Settings
):
    """A call bigger than one multi-row statement (1,100 events) whose last event the
    database refuses (a trigger) stores none of them: one transaction, not one per batch."""
    with db.begin() as conn:
        for statement in _REFUSE_BOOM[db.engine.dialect.name]:
            conn.exec_driver_sql(statement)
    big = settings.replace(max_events_per_call=1500)
    elements = [event_xml(externalId=f"ok-{i}") for i in range(1099)]
    with pytest.raises(ServerError):
        ingest.store_events(db, big, [*elements, event_xml(externalId="boom")], Queue.RT)
    assert event_store.count_events(db) == 0


def test_database_errors_carry_no_event_values(db: Database, settings: Settings):
    """When the database refuses an insert, the error (and so the logged traceback) names
    the statement but never the values: no ctx, no address in a log line."""
    with db.begin() as conn:
        for statement in _REFUSE_BOOM[db.engine.dialect.name]:
            conn.exec_driver_sql(statement)
    secret = "<ctx><card>SECRET-CTX-4711</card></ctx>"
    with pytest.raises(Exception) as info:  # whatever the driver raises
        ingest.store_event(db, settings, event_xml(secret, externalId="boom",
                                                   email="hidden.person@example.com"), "rt")
    text = "".join(traceback.format_exception(info.value))
    assert "refuse" in text or "boom refused" in text  # the database's own message is there
    assert "SECRET-CTX-4711" not in text and "hidden.person" not in text


def test_push_events_limit(db: Database, settings: Settings):
    """More events than max_events_per_call are refused before anything is stored."""
    small = settings.replace(max_events_per_call=3)
    with pytest.raises(ValidationFailed, match="too many events"):
        ingest.store_events(db, small, [event_xml() for _ in range(4)], Queue.RT)
    assert len(ingest.store_events(db, small, [event_xml() for _ in range(3)], "rt")) == 3
    assert event_store.count_events(db) == 3


def test_push_events_with_different_attributes_per_event(db: Database, settings: Settings):
    """Events of one call that set different attributes each keep exactly their own."""
    elements = [
        event_xml(origin="shop"),
        event_xml(email=None, wishedChannel="1", mobilePhone="+33612345678"),
        event_xml(scheduled="2031-01-01T00:00:00Z", idempotencyKey="only-me"),
    ]
    first, sms, sched = (row_of(db, plid) for plid, _ in
                         ingest.store_events(db, settings, elements, Queue.RT))
    assert (first["origin"], first["mobile_phone"], first["scheduled_at"]) == ("shop", None, None)
    assert (sms["email"], sms["mobile_phone"], sms["wished_channel"]) == (
        None, "+33612345678", 1)
    assert sms["origin"] is None and sms["idempotency_key"] is None
    assert sched["scheduled_at"] == datetime(2031, 1, 1) and sched["idempotency_key"] == "only-me"
    assert sched["payload_hash"] and first["payload_hash"] is None
    assert {first["status"], sms["status"], sched["status"]} == {"pending"}


def test_namespaced_attributes_are_kept_apart(db: Database, settings: Settings):
    """A namespaced attribute (xsi:type) is kept with its prefix and never replaces the
    event's own type."""
    element = el('<rtEvent xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                 'xmlns:z="urn:z" type="welcome" email="a@example.com" xsi:type="ns:Element" '
                 'z:type="other"><ctx/></rtEvent>')
    row = row_of(db, ingest.store_event(db, settings, element, Queue.RT))
    assert row["event_type"] == "welcome"
    assert json.loads(row["attributes"]) == {
        "type": "welcome", "email": "a@example.com", "xsi:type": "ns:Element", "z:type": "other"}
