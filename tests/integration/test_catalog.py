"""Catalog against real databases (SQLite file and PostgreSQL): types, drafts, lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from soap_service import catalog, clock
from soap_service.durations import format_duration, parse_duration
from soap_service.errors import Conflict, NotFound, TemplateSyntaxError, ValidationFailed
from soap_service.models import Channel, Event, EventStatus, EventType, Lane, Queue
from soap_service.models import TemplateContent as C
from soap_service.store import Database
from soap_service.tables import event_status_log, event_types, events

T0 = datetime(2026, 3, 1, 9, 0, 0)
GOOD = C(from_addr="shop@example.com", subject="Order {{ rtEvent.ctx.id }}",
         html="<p>Hi {{ rtEvent.ctx.name }}</p>")


@pytest.fixture(autouse=True)
def _fresh_cache():
    catalog.clear_cache()
    yield
    catalog.clear_cache()


def setup_type(db: Database, name: str = "order") -> None:
    catalog.add_event_type(db, EventType(name=name))


def ev(etype: str = "order", wished: int = 0) -> Event:
    return Event(id=1, queue=Queue.RT, event_type=etype, ctx_xml="<ctx/>", wished_channel=wished)


def insert_event(db: Database, etype: str, status: str, wished: int = 0) -> int:
    now = clock.utcnow()
    with db.begin() as conn:
        return conn.execute(insert(events).values(
            queue="rt", event_type=etype, status=status, priority=1, wished_channel=wished,
            ctx_xml="<ctx/>", process_at=now - timedelta(hours=1), created_at=now,
            updated_at=now, attributes="{}")).inserted_primary_key[0]


def test_event_type_crud_and_defaults(db: Database) -> None:
    """Event types get documented defaults, can be updated, listed and removed."""
    et = catalog.add_event_type(db, EventType(name="order_confirmation", label="Order"))
    got = catalog.get_event_type(db, "order_confirmation")
    assert got == et and (got.lane, got.max_attempts, got.validity_seconds,
                          got.retention_seconds) == (Lane.TRANSACTIONAL, 5, 86400, 30 * 86400)
    with pytest.raises(Conflict):
        catalog.add_event_type(db, EventType(name="order_confirmation"))
    upd = catalog.update_event_type(db, "order_confirmation", lane=Lane.CRITICAL, max_attempts=9)
    assert (upd.lane, upd.max_attempts, upd.label) == (Lane.CRITICAL, 9, "Order")
    assert catalog.get_event_type(db, "order_confirmation") == upd
    assert [t.name for t in catalog.list_event_types(db)] == ["order_confirmation"]
    catalog.remove_event_type(db, "order_confirmation")
    assert catalog.get_event_type(db, "order_confirmation") is None
    with pytest.raises(NotFound):
        catalog.remove_event_type(db, "order_confirmation")
    with pytest.raises(ValidationFailed):
        catalog.add_event_type(db, EventType(name="bad name!"))


def test_values_longer_than_their_columns_are_refused_cleanly(db: Database) -> None:
    """A label, seed address, external id or operator longer than its column is a
    validation error on both backends (PostgreSQL would otherwise fail with a DataError)."""
    with pytest.raises(ValidationFailed, match="label is too long"):
        catalog.add_event_type(db, EventType(name="order", label="x" * 256))
    setup_type(db)
    with pytest.raises(ValidationFailed, match="label is too long"):
        catalog.update_event_type(db, "order", label="x" * 256)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    with pytest.raises(ValidationFailed, match="address is too long"):
        catalog.add_seed(db, "t", "a" * 320 + "@example.com", "<ctx/>")
    with pytest.raises(ValidationFailed, match="external id is too long"):
        catalog.add_seed(db, "t", "a@example.com", "<ctx/>", "x" * 256)
    with pytest.raises(ValidationFailed, match="operator is too long"):
        catalog.publish(db, "t", "o" * 129)
    assert catalog.publish(db, "t", "o" * 128).version.published_by == "o" * 128


def test_remove_refused_while_in_use(db: Database) -> None:
    """An event type is not removed while a template or a waiting event uses it."""
    setup_type(db, "a")
    setup_type(db, "b")
    catalog.create_template(db, "ta", "a", Channel.EMAIL, GOOD)
    with pytest.raises(Conflict, match="1 template"):
        catalog.remove_event_type(db, "a")
    insert_event(db, "b", "pending")
    with pytest.raises(Conflict, match="1 event"):
        catalog.remove_event_type(db, "b")


def test_durations() -> None:
    """Durations parse from the documented forms and print back compactly."""
    assert [parse_duration(s) for s in ("90", "15m", "36h", "1d", "1h30m", "2w")] == \
        [90, 900, 129600, 86400, 5400, 1209600]
    assert format_duration(86400 * 30) == "30d"
    assert format_duration(5400) == "1h30m"
    for bad in ("soon", "²", "1d²", ""):
        with pytest.raises(ValidationFailed):
            parse_duration(bad)


def test_template_needs_event_type_and_valid_syntax(db: Database) -> None:
    """A template refers to an existing type; broken syntax is refused at save time."""
    with pytest.raises(NotFound, match="eventtype add"):
        catalog.create_template(db, "t", "nope", Channel.EMAIL, GOOD)
    setup_type(db)
    with pytest.raises(TemplateSyntaxError) as info:
        catalog.create_template(db, "t", "order", Channel.EMAIL,
                                C(subject="x", html="<p>\n  {% if rtEvent.ctx.a %}</p>"))
    assert (info.value.part, info.value.line, info.value.column) == ("html", 2, 3)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    with pytest.raises(TemplateSyntaxError, match="subject line 1, column 4"):
        catalog.edit_template(db, "t", subject="{{ __import__ }}")
    assert catalog.get_template(db, "t").template.draft == GOOD  # the bad edit left no trace
    with pytest.raises(Conflict):
        catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)


def test_parts_of_another_channel_are_refused(db: Database) -> None:
    """A subject on an SMS template, or push data on an email template, is an error naming
    the option, at create and at edit; the draft is left as it was."""
    setup_type(db)
    with pytest.raises(ValidationFailed, match=r"^a sms template has no --subject, --html "
                                               r"\(its parts: --sms\)$"):
        catalog.create_template(db, "s", "order", Channel.SMS, C(sms="x", subject="y", html="z"))
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    with pytest.raises(ValidationFailed, match="an email template has no --push-data"):
        catalog.edit_template(db, "t", push_data={"k": "v"})
    assert catalog.get_template(db, "t").template.draft == GOOD
    catalog.create_template(db, "p", "order", Channel.PUSH,
                            C(push_title="t", push_data={"k": "{{ rtEvent.email }}"}))


def test_from_and_reply_to_must_be_addresses(db: Database) -> None:
    """A From or Reply-To that is plainly not an address is refused when saved; a
    personalised one is checked when rendered."""
    setup_type(db)
    with pytest.raises(ValidationFailed, match="--from 'Shop' is not an email address"):
        catalog.create_template(db, "t", "order", Channel.EMAIL,
                                C(from_addr="Shop", subject="s", text="t"))
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    with pytest.raises(ValidationFailed, match="--reply-to"):
        catalog.edit_template(db, "t", reply_to="help desk")
    for ok in ("Shop <shop@example.com>", "{{ rtEvent.ctx.sender }}", ""):
        catalog.edit_template(db, "t", reply_to=ok)
        assert catalog.get_template(db, "t").template.draft.reply_to == ok


def test_publish_versions_and_immutability(db: Database) -> None:
    """Publish freezes the draft as numbered versions; editing the draft changes none."""
    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    with clock.frozen_clock(T0) as advance:
        v1 = catalog.publish(db, "t", "alice")
        advance(timedelta(minutes=5))
        with pytest.raises(Conflict, match="identical to version 1"):
            catalog.publish(db, "t", "alice")
        catalog.edit_template(db, "t", subject="New {{ rtEvent.ctx.id }}")
        assert catalog.get_template(db, "t").draft_changed
        v2 = catalog.publish(db, "t", "bob")
    assert (v1.version.version, v1.version.published_by, v1.version.published_at) == \
        (1, "alice", T0)
    assert (v2.version.version, v2.version.published_by) == (2, "bob")
    assert v1.version.content_hash != v2.version.content_hash
    assert [v.version.version for v in catalog.versions(db, "t")] == [1, 2]
    assert catalog.get_version(db, "t", 1).version.content == GOOD
    catalog.edit_template(db, "t", html="<p>draft only</p>")
    assert catalog.get_version(db, "t", 2).version.content.html == GOOD.html
    summary = catalog.get_template(db, "t")
    assert summary.state == "published" and summary.latest.version.version == 2


def test_publish_refuses_incomplete_template(db: Database) -> None:
    """An email template without from, subject or body cannot be published."""
    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, C(html="<p>x</p>"))
    with pytest.raises(ValidationFailed, match="from, subject"):
        catalog.publish(db, "t", "alice")
    catalog.create_template(db, "s", "order", Channel.SMS, C())
    with pytest.raises(ValidationFailed, match="sms"):
        catalog.publish(db, "s", "alice")


def test_diff_between_versions_and_draft(db: Database) -> None:
    """diff shows a unified diff of the parts that changed."""
    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    catalog.publish(db, "t", "a")
    catalog.edit_template(db, "t", html="<p>Hello {{ rtEvent.ctx.name }}</p>")
    catalog.publish(db, "t", "a")
    text = catalog.diff(db, "t", "1", "2")
    assert text.splitlines() == [
        "--- t@1/html", "+++ t@2/html", "@@ -1 +1 @@",
        "-<p>Hi {{ rtEvent.ctx.name }}</p>", "+<p>Hello {{ rtEvent.ctx.name }}</p>"]
    assert text.endswith("</p>\n")
    assert catalog.diff(db, "t", "2", "draft") == ""
    catalog.edit_template(db, "t", subject="Sub", text="line 1\nline 2\n")
    assert catalog.diff(db, "t", "latest", "draft").splitlines() == [
        "--- t@latest/subject", "+++ t@draft/subject", "@@ -1 +1 @@",
        "-Order {{ rtEvent.ctx.id }}", "+Sub",
        "--- t@latest/text", "+++ t@draft/text", "@@ -0,0 +1,2 @@", "+line 1", "+line 2"]
    with pytest.raises(NotFound):
        catalog.diff(db, "t", "1", "7")
    for bad in ("v2", "²"):
        with pytest.raises(ValidationFailed, match="'draft' or 'latest'"):
            catalog.diff(db, "t", "1", bad)


def test_find_route_follows_lifecycle(db: Database) -> None:
    """Routing: nothing -> published -> paused -> resumed -> unpublished -> republished."""
    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    assert catalog.find_route(db, ev()).status is EventStatus.ROUTING_FAILED
    catalog.publish(db, "t", "a")
    route = catalog.find_route(db, ev())
    assert route.version.template_name == "t" and route.version.version == 1
    assert route.version.content == GOOD
    assert catalog.find_route(db, ev(wished=1)).status is EventStatus.ROUTING_FAILED
    assert catalog.find_route(db, ev("other")).status is EventStatus.ROUTING_FAILED
    catalog.pause(db, "t")
    assert catalog.find_route(db, ev()).status is EventStatus.PAUSED
    catalog.resume(db, "t")
    assert catalog.find_route(db, ev()).version.version == 1
    catalog.unpublish(db, "t")
    assert catalog.find_route(db, ev()).status is EventStatus.ROUTING_FAILED
    assert catalog.get_template(db, "t").state == "unpublished"
    with pytest.raises(Conflict):
        catalog.unpublish(db, "t")
    catalog.publish(db, "t", "a")  # same content, allowed after an unpublish
    assert catalog.find_route(db, ev()).version.version == 2
    catalog.edit_template(db, "t", subject="v3")
    catalog.publish(db, "t", "a")
    catalog.unpublish(db, "t")  # stamps the live version only: the history stays true
    assert [v.unpublished_at is not None for v in catalog.versions(db, "t")] == \
        [True, False, True]


def test_find_route_is_cached_briefly(db: Database) -> None:
    """A second process's publish becomes visible after the cache expires (or is cleared)."""
    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    assert catalog.find_route(db, ev()).status is EventStatus.ROUTING_FAILED
    from soap_service.store import catalog as store

    # as another process would: no cache invalidation here
    store.publish(db, "t", "other", clock.utcnow(), lambda tpl, latest: None)
    assert catalog.find_route(db, ev()).status is EventStatus.ROUTING_FAILED
    catalog.clear_cache()
    assert catalog.find_route(db, ev()).ok


def test_resume_releases_paused_events_of_its_type_and_channel(db: Database) -> None:
    """resume moves this template's paused events to pending, leaving others alone."""
    setup_type(db)
    setup_type(db, "other")
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    catalog.publish(db, "t", "a")
    catalog.pause(db, "t")
    mine = [insert_event(db, "order", "paused"), insert_event(db, "order", "paused", wished=7)]
    sms = insert_event(db, "order", "paused", wished=1)
    other = insert_event(db, "other", "paused")
    with clock.frozen_clock(T0):
        assert catalog.resume(db, "t") == 2
    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(events))}
        logged = [r.event_id for r in conn.execute(select(event_status_log))]
    assert [rows[i].status for i in mine] == ["pending", "pending"]
    assert rows[mine[0]].process_at == T0
    assert rows[sms].status == "paused" and rows[other].status == "paused"
    assert sorted(logged) == sorted(mine)
    with pytest.raises(Conflict):
        catalog.resume(db, "t")


def test_seeds(db: Database) -> None:
    """Seeds are stored per template, replaced by address, and must be well-formed XML."""
    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    catalog.add_seed(db, "t", "qa@example.com", "<ctx><name>QA</name></ctx>", "X1")
    catalog.add_seed(db, "t", "qa@example.com", "<ctx><name>QA2</name></ctx>")
    seeds = catalog.list_seeds(db, "t")
    assert [(s.address, s.ctx_xml, s.external_id) for s in seeds] == \
        [("qa@example.com", "<ctx><name>QA2</name></ctx>", None)]
    with pytest.raises(ValidationFailed, match="well-formed"):
        catalog.add_seed(db, "t", "b@example.com", "<ctx><unclosed></ctx>")
    catalog.remove_seed(db, "t", "qa@example.com")
    assert catalog.list_seeds(db) == []
    with pytest.raises(NotFound):
        catalog.add_seed(db, "missing", "a@example.com", "<ctx/>")
    with pytest.raises(ValidationFailed, match="not an email address"):
        catalog.add_seed(db, "t", "qa example.com", "<ctx/>")
    catalog.create_template(db, "s", "order", Channel.SMS, C(sms="x"))
    assert catalog.add_seed(db, "s", "+33600000000", "<ctx/>").address == "+33600000000"


@pytest.mark.parametrize("address", ["root@localhost", "a@b", "<qa@example.com>",
                                     "qa@example..com"])
def test_seed_addresses_are_checked_as_events_are(db: Database, settings,
                                                  address: str) -> None:
    """An email seed is refused exactly when ingest would refuse an event to that address
    (one email check: ``addresses.is_email_address``, see docs/templates.md)."""
    from lxml import etree

    from soap_service import ingest

    setup_type(db)
    catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    with pytest.raises(ValidationFailed, match="not an email address"):
        catalog.add_seed(db, "t", address, "<ctx/>")
    event = etree.Element("rtEvent", type="order", email=address)
    etree.SubElement(event, "ctx")
    with pytest.raises(ValidationFailed, match="malformed attribute 'email'"):
        ingest.store_event(db, settings, event, Queue.RT)
    if not address.startswith("<"):  # a From may carry a display name and brackets
        with pytest.raises(ValidationFailed, match=r"--from .* is not an email address"):
            catalog.create_template(db, "u", "order", Channel.EMAIL,
                                    C(from_addr=f"Shop <{address}>", subject="s", text="t"))


def test_publish_checks_syntax_again(db: Database) -> None:
    """A draft that reached the database with broken syntax is refused at publish."""
    from soap_service.store import catalog as store

    setup_type(db)
    tpl = catalog.create_template(db, "t", "order", Channel.EMAIL, GOOD)
    broken = C(from_addr="a@example.com", subject="s", text="ok\n<% for each (x in y) { %>")
    # bypassing the save-time check, as an older release might have
    store.update_draft(db, tpl.name, lambda current: broken, clock.utcnow())
    with pytest.raises(TemplateSyntaxError, match="text line 2, column 19: unknown name"):
        catalog.publish(db, "t", "alice")
    assert catalog.versions(db, "t") == []


def test_unknown_event_types_do_not_grow_the_cache(db: Database) -> None:
    """Looking up many unknown event types (names from the outside) reads the types once
    and keeps one cached answer, whatever the names."""
    setup_type(db)
    for n in range(1000):
        assert catalog.get_event_type(db, f"never_defined_{n}") is None
    assert catalog.get_event_type(db, "order") is not None
    assert len(catalog._cache) == 1


def test_event_types_are_cached_once_for_routing_and_ingest(db: Database) -> None:
    """The worker's event type lookups and ingest's lanes come from one cached read: a type
    added by another process shows in both at once when the cache is cleared, in neither
    before."""
    assert catalog.get_event_type(db, "late") is None
    assert "late" not in catalog.event_type_lanes(db)
    with db.begin() as conn:  # as another process would: no cache invalidation here
        now = clock.utcnow()
        conn.execute(insert(event_types), {"name": "late", "lane": "bulk", "created_at": now,
                                           "updated_at": now})
    assert catalog.get_event_type(db, "late") is None
    assert "late" not in catalog.event_type_lanes(db)
    catalog.clear_cache()
    assert catalog.event_type_lanes(db)["late"] == "bulk"
    found = catalog.get_event_type(db, "late")
    assert found is not None and found.lane is Lane.BULK
