"""End to end: SOAP PushEvent -> `msgcenter serve` (with its worker) -> a real SMTP sink.

Also the real catalog and renderer in-process: routingFailed, paused then resumed,
render failure — no stand-ins.
"""

from __future__ import annotations

import json

import pytest
from conftest import make_settings, run_cli
from dispatch_support import add_events, event_row, wait_until
from lxml import etree

from soap_service import catalog, clock, demo, ingest
from soap_service.devsmtp import MailSink
from soap_service.models import (
    Channel,
    EventStatus,
    EventType,
    Queue,
    TemplateContent,
    split_plid,
)
from soap_service.store import catalog as catalog_store
from soap_service.store import queue
from soap_service.store.events import get_event
from soap_service.worker import Dispatcher

CTX = json.dumps(demo.demo_spec()["sample_ctx"])


def test_push_through_soap_is_mailed_personalised_and_logged(database_url, start_server):
    """A PushEvent through the SOAP API ends as a personalised mail at the relay, status
    `processed`, one delivery-log row, and `events show` lists history and attempts."""
    with MailSink() as sink:
        settings = make_settings(database_url)
        demo.setup(settings)
        server = start_server(database_url, init=False, worker=True, env={
            "MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port)})
        out = server.cli("push", "--url", server.url, "--token", "demo/demo", "--type",
                         "order_confirmation", "--email", "john.doe@example.com",
                         "--ctx-json", CTX).stdout
        plid = int(out.strip())
        received = sink.wait_for(1, timeout=60)
        assert received, f"no mail; server output:\n{server.log()[-4000:]}"
        mime = received[0].message
        assert mime["Subject"] == "Your order A-1042 is confirmed, John"
        assert mime["To"] == "john.doe@example.com"
        _, pk = split_plid(plid)
        assert mime["Message-ID"] == f"<mc.1.{pk}@msgcenter.local>"
        text = mime.get_body(preferencelist=("plain",)).get_content()
        assert "Thank you for your order, John!" in text and "USB key: 20.00 EUR" in text
        # the relay's acceptance comes before the worker records it: wait for the record

        def show() -> dict:
            return json.loads(server.cli("events", "show", str(plid), "--json").stdout)

        wait_until(lambda: show()["status"] != "processing", 60, "the send to be recorded")
        shown = show()
    assert shown["status"] == "processed"
    assert shown["history"][-1]["status"] == "processed"
    [attempt] = shown["attempts"]
    assert attempt["outcome"] == "sent" and attempt["code"] == 250
    assert attempt["messageId"] == mime["Message-ID"]
    assert (attempt["template"], attempt["version"]) == ("order_confirmation_email", 1)


def _push(db, settings, xml: str) -> int:
    plid = ingest.store_event(db, settings, etree.fromstring(xml), Queue.RT.value)
    return split_plid(plid)[1]


@pytest.fixture
def demo_db(settings, db):
    demo.ensure_catalog(db)
    return db


def test_real_catalog_routing_pause_resume_and_render_failure(settings, demo_db):
    """Unknown type -> routingFailed; paused template holds events until resume, then
    they are sent; a missing required field -> deliveryFailed naming the field."""
    db = demo_db
    with MailSink() as sink:
        s = settings.replace(smtp_host=sink.host, smtp_port=sink.port)
        d = Dispatcher(s, db)
        try:
            unknown = _push(db, s, '<e type="nope" email="a@example.com"><ctx/></e>')
            catalog.pause(db, "order_confirmation_email")
            held = _push(db, s, '<e type="order_confirmation" email="b@example.com">'
                                '<ctx><client><firstname>Bea</firstname></client></ctx></e>')
            d.tick()
            assert get_event(db, unknown).status is EventStatus.ROUTING_FAILED
            assert get_event(db, held).status is EventStatus.PAUSED
            assert sink.messages == []
            assert catalog.resume(db, "order_confirmation_email") == 1
            catalog.add_event_type(db, EventType(name="other"))  # its version takes an id
            catalog.create_template(db, "other_email", "other", Channel.EMAIL, TemplateContent(
                from_addr="a@example.org", subject="s", text="x"))
            catalog.publish(db, "other_email", "test")
            catalog.edit_template(db, "order_confirmation_email",
                                  subject="Hi <%= required(rtEvent.ctx.client.firstname) %>")
            catalog.publish(db, "order_confirmation_email", "test")
            broken = _push(db, s, '<e type="order_confirmation" email="c@example.com">'
                                  '<ctx/></e>')
            d.tick()
            sink.wait_for(1)
        finally:
            d.close()
    assert get_event(db, held).status is EventStatus.PROCESSED
    assert [m.message["Subject"] for m in sink.messages] == ["Hi Bea"]
    failed = get_event(db, broken)
    assert failed.status is EventStatus.DELIVERY_FAILED
    assert "firstname" in (failed.last_error or "")
    [attempt] = queue.delivery_attempts(db, held)
    assert (attempt.template, attempt.version) == ("order_confirmation_email", 2)
    version_id = catalog.get_version(db, "order_confirmation_email").version.id
    assert attempt.template_version_id == version_id != 2  # the row's id, not the number


def _held_event(db, s, d: Dispatcher, address: str) -> int:
    pk = _push(db, s, f'<e type="order_confirmation" email="{address}">'
                      '<ctx><client><firstname>Bea</firstname></client></ctx></e>')
    d.tick()
    assert get_event(db, pk).status is EventStatus.PAUSED
    return pk


def test_resume_from_another_process_releases_held_events_at_once(settings, demo_db):
    """`msgcenter template resume` run by an operator (another process) while the worker
    still has "paused" in its routing cache: the released events are sent, not held
    again for good."""
    db = demo_db
    with MailSink() as sink:
        s = settings.replace(smtp_host=sink.host, smtp_port=sink.port)
        d = Dispatcher(s, db)
        try:
            catalog.pause(db, "order_confirmation_email")
            held = _held_event(db, s, d, "b@example.com")  # the cache now says paused
            run_cli({"MC_DATABASE_URL": s.database_url}, "template", "resume",
                    "order_confirmation_email")
            assert d.tick().sent == 1
            sink.wait_for(1)
        finally:
            d.close()
    assert get_event(db, held).status is EventStatus.PROCESSED


def test_reap_releases_events_held_by_a_template_no_longer_paused(settings, demo_db):
    """An event left `paused` although its template is no longer paused (a resume that
    committed while a round was holding it) goes back to the queue at the next reap and
    is sent; events held by a template unpublished while paused end routingFailed; events
    of a template still paused stay held, follow-ups pinned to a paused template too."""
    db = demo_db
    name = "order_confirmation_email"
    with MailSink() as sink:
        s = settings.replace(smtp_host=sink.host, smtp_port=sink.port)
        d = Dispatcher(s, db)
        try:
            catalog.pause(db, name)
            raced = _held_event(db, s, d, "b@example.com")
            d.reap()
            assert get_event(db, raced).status is EventStatus.PAUSED  # still paused: kept
            # a follow-up pinned to its rule's template, which stays paused
            catalog.create_template(db, "reminder_email", "order_confirmation", Channel.EMAIL,
                                    TemplateContent(from_addr="a@example.org", subject="s",
                                                    text="x"))
            catalog.publish(db, "reminder_email", "test")
            catalog.pause(db, "reminder_email")
            [reminder] = add_events(db, [event_row(
                9, event_type="order_confirmation", status="paused", parent_id=raced,
                attributes=json.dumps({"template": "reminder_email"}))])
            # the template un-paused, its event not released
            catalog_store.set_paused(db, name, False, clock.utcnow())
            d.reap()
            assert get_event(db, raced).status is EventStatus.PENDING
            assert get_event(db, reminder).status is EventStatus.PAUSED
            catalog.unpublish(db, "reminder_email")  # the type's routing is its own again
            assert d.tick().sent == 1
            catalog.pause(db, name)
            orphan = _held_event(db, s, d, "c@example.com")
            catalog.unpublish(db, name)
            d.reap()
            d.tick()
            sink.wait_for(1)
        finally:
            d.close()
    assert get_event(db, raced).status is EventStatus.PROCESSED
    assert get_event(db, orphan).status is EventStatus.ROUTING_FAILED
    assert [m.rcpt_tos for m in sink.messages] == [("b@example.com",)]
