"""Follow-ups end to end: real catalog, renderer, worker, SMTP sink and tracking endpoint."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from tracking_support import add_events, event_row, finish, sent_events, wsgi_server

from soap_service import catalog, clock, followup
from soap_service.devsmtp import MailSink
from soap_service.errors import Conflict, NotFound, ValidationFailed
from soap_service.http.tracking import Hit, TrackingApp, record_hit
from soap_service.models import Channel, EventStatus, EventType, TemplateContent
from soap_service.store import Database
from soap_service.tables import events
from soap_service.track import TrackingToken
from soap_service.worker import Dispatcher

T0 = datetime(2026, 4, 1, 8, 0, 0)
PERSON = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15"


def make_catalog(db: Database) -> None:
    """Type 'order' with template 'order_mail'; type 'order_reminder' with 'reminder_mail'."""
    for name in ("order", "order_reminder"):
        catalog.add_event_type(db, EventType(name=name, validity_seconds=30 * 86400))
    catalog.create_template(db, "order_mail", "order", Channel.EMAIL, TemplateContent(
        from_addr="shop@example.org", subject="Your order",
        html='<p>Hi <%= rtEvent.ctx.client.firstname %>, '
             '<a href="https://shop.example.org/orders">your order</a></p>',
        text="Hi <%= rtEvent.ctx.client.firstname %>"))
    catalog.create_template(db, "reminder_mail", "order_reminder", Channel.EMAIL, TemplateContent(
        from_addr="shop@example.org", subject="Did you see it, {{ rtEvent.ctx.client.firstname }}?",
        html="<p>Reminder for <%= rtEvent.ctx.client.firstname %></p>",
        text="Reminder for <%= rtEvent.ctx.client.firstname %>"))
    catalog.publish(db, "order_mail", "test")
    catalog.publish(db, "reminder_mail", "test")


@pytest.fixture
def world(db: Database, settings) -> Iterator[tuple[Dispatcher, MailSink, TrackingApp, str]]:
    make_catalog(db)
    with MailSink() as sink:
        dispatcher = Dispatcher(settings.replace(smtp_host=sink.host, smtp_port=sink.port), db)
        tracker = TrackingApp(db, db.settings)
        with wsgi_server(tracker) as base:
            yield dispatcher, sink, tracker, base
        dispatcher.close()
        tracker.recorder.close()


def open_pixel_of(html: str, base: str) -> None:
    """Fetch the open pixel found in a sent message, as the reader's mail client would."""
    [url] = re.findall(r'<img src="([^"]+/r/o/[^"]+)"', html)
    parts, target = urlsplit(url), urlsplit(base)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    conn.request("GET", parts.path, headers={"User-Agent": PERSON})
    assert conn.getresponse().status == 200
    conn.close()


def html_of(sink: MailSink, to: str) -> list[str]:
    found = []
    for received in sink.messages:
        if to in received.rcpt_tos:
            part = received.message.get_body(preferencelist=("html",))
            found.append(part.get_content() if part else "")
    return found


def test_followup_goes_once_to_non_opener_with_parent_data(db: Database, world) -> None:
    """After 3 days the non-opener gets the reminder once, with his ctx; the opener nothing."""
    dispatcher, sink, tracker, base = world
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "remind", "order", "reminder_mail", "3d", "not-opened")
        ann, bob = add_events(db, [
            event_row(1, email="ann@example.com", ctx_xml="<ctx><client><firstname>Ann"
                      "</firstname></client></ctx>"),
            event_row(2, email="bob@example.com", ctx_xml="<ctx><client><firstname>Bob"
                      "</firstname></client></ctx>"),
        ])
        assert dispatcher.tick().sent == 2
        advance(timedelta(hours=1))
        [ann_html] = html_of(sink, "ann@example.com")
        assert "Hi Ann" in ann_html and "/r/c/" in ann_html  # links tracked
        open_pixel_of(ann_html, base)
        tracker.recorder.flush()

        advance(timedelta(days=2))
        assert followup.tick(db) == 0  # not due yet
        advance(timedelta(days=1))
        assert followup.tick(db) == 1
        assert followup.tick(db) == 0  # never twice
        assert dispatcher.tick().sent == 1
        assert dispatcher.tick().claimed == 0
    assert len(html_of(sink, "ann@example.com")) == 1
    first, reminder = html_of(sink, "bob@example.com")
    assert "Hi Bob" in first
    assert "Reminder for Bob" in reminder
    [msg] = [m.message for m in sink.messages if m.message["Subject"].startswith("Did")]
    assert msg["Subject"] == "Did you see it, Bob?"
    with db.connect() as conn:
        child = conn.execute(select(events).where(events.c.parent_id == bob)).one()
        parent = conn.execute(select(events).where(events.c.id == bob)).one()
    assert (child.event_type, child.status, child.ctx_xml, child.email) == (
        "order_reminder", "processed", parent.ctx_xml, "bob@example.com")
    assert child.followup_rule_id is not None
    assert ann != bob


def test_followup_uses_its_rule_template_within_a_shared_type(db: Database, settings) -> None:
    """A follow-up template of the parent's own event type is the one the child is sent
    with, even when another template of that type was published after it."""
    catalog.add_event_type(db, EventType(name="order", validity_seconds=30 * 86400))
    for name, subject in (("order_again", "Still interested?"), ("order_mail", "Your order")):
        catalog.create_template(db, name, "order", Channel.EMAIL, TemplateContent(
            from_addr="shop@example.org", subject=subject, html="<p>x</p>", text="x"))
        catalog.publish(db, name, "test")  # order_mail is the newest: regular events get it
    with MailSink() as sink, clock.frozen_clock(T0) as advance:
        dispatcher = Dispatcher(settings.replace(smtp_host=sink.host, smtp_port=sink.port), db)
        try:
            followup.add_rule(db, "again", "order", "order_again", "1d", "not-opened")
            add_events(db, [event_row(1, email="cy@example.com")])
            assert dispatcher.tick().sent == 1
            advance(timedelta(days=1, minutes=1))
            assert followup.tick(db) == 1
            assert dispatcher.tick().sent == 1
        finally:
            dispatcher.close()
    assert [m.message["Subject"] for m in sink.messages] == ["Your order", "Still interested?"]


def test_machine_open_does_not_count(db: Database) -> None:
    """An open flagged machine (image proxy) does not spare the follow-up."""
    make_catalog(db)
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "remind", "order", "reminder_mail", "1d", "not-opened")
        [pk] = sent_events(db, 1)
        advance(timedelta(hours=2))
        assert record_hit(db, Hit(TrackingToken("open", pk), "GoogleImageProxy", "1.2.3.4",
                                  clock.utcnow()))
        advance(timedelta(days=1))
        assert followup.tick(db) == 1


def test_not_clicked_rule_ignores_opens(db: Database) -> None:
    """A not-clicked rule follows up openers who did not click, and spares clickers."""
    make_catalog(db)
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "nudge", "order", "reminder_mail", "2d", "not-clicked")
        opener, clicker = sent_events(db, 2)
        advance(timedelta(hours=5))
        record_hit(db, Hit(TrackingToken("open", opener), PERSON, "", clock.utcnow()))
        record_hit(db, Hit(TrackingToken("click", clicker, "https://x.org/"), PERSON, "",
                           clock.utcnow()))
        advance(timedelta(days=2))
        assert followup.tick(db) == 1
    with db.connect() as conn:
        parents = conn.execute(select(events.c.parent_id)
                               .where(events.c.parent_id.is_not(None))).scalars().all()
    assert parents == [opener]


def test_disabled_rule_and_failed_parents(db: Database) -> None:
    """A disabled rule creates nothing; events not processed are never followed up."""
    make_catalog(db)
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "remind", "order", "reminder_mail", "1h", "not-opened")
        [failed] = add_events(db, [event_row(1)])
        finish(db, [failed], EventStatus.DELIVERY_FAILED, outcome="permanent")
        sent_events(db, 1)
        followup.set_enabled(db, "remind", False)
        advance(timedelta(hours=2))
        assert followup.tick(db) == 0
        followup.set_enabled(db, "remind", True)
        assert followup.tick(db) == 1


def test_events_before_the_rule_are_not_followed_up(db: Database) -> None:
    """Adding a rule does not mail the history: only events received after it count."""
    make_catalog(db)
    with clock.frozen_clock(T0) as advance:
        sent_events(db, 3)
        advance(timedelta(minutes=1))
        followup.add_rule(db, "remind", "order", "reminder_mail", "1d", "not-opened")
        advance(timedelta(days=2))
        assert followup.tick(db) == 0


def test_concurrent_ticks_create_one_child_per_parent(db: Database) -> None:
    """Several workers running the job at once still create exactly one follow-up each."""
    make_catalog(db)
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "remind", "order", "reminder_mail", "1d", "not-opened")
        parents = sent_events(db, 30)
        advance(timedelta(days=1))
        results: list[int] = []
        barrier = threading.Barrier(4)

        def run() -> None:
            barrier.wait()
            results.append(followup.tick(db))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sum(results) == 30
    with db.connect() as conn:
        children = conn.execute(select(events.c.parent_id)
                                .where(events.c.parent_id.is_not(None))).scalars().all()
    assert sorted(children) == parents


def test_rule_validation(db: Database) -> None:
    """Unknown templates and event types, bad conditions, delays and names, duplicate names
    and a channel the template does not have are refused."""
    make_catalog(db)
    with pytest.raises(NotFound):
        followup.add_rule(db, "r", "order", "nope", "3d", "not-opened")
    with pytest.raises(ValidationFailed):
        followup.add_rule(db, "r", "order", "reminder_mail", "3d", "opened")
    with pytest.raises(ValidationFailed):
        followup.add_rule(db, "r", "order", "reminder_mail", "soon", "not-opened")
    followup.add_rule(db, "r", "order", "reminder_mail", "3d", "not-opened")
    with pytest.raises(Conflict):
        followup.add_rule(db, "r", "order", "reminder_mail", "3d", "not-opened")
    with pytest.raises(NotFound, match="event type 'oder'"):  # a typo would never match
        followup.add_rule(db, "r3", "oder", "reminder_mail", "3d", "not-opened")
    for bad_name in ("", " x", "a/b"):
        with pytest.raises(ValidationFailed, match="rule name"):
            followup.add_rule(db, bad_name, "order", "reminder_mail", "3d", "not-opened")
    with pytest.raises(ValidationFailed, match="email template"):
        followup.add_rule(db, "r2", "order", "reminder_mail", "3d", "not-opened", "sms")
    with pytest.raises(NotFound):
        followup.set_enabled(db, "missing", False)
    [rule] = followup.list_rules(db)
    assert (rule.after_seconds, rule.channel, rule.enabled) == (3 * 86400, "email", True)


def test_followup_window_closes_after_catch_up(db: Database) -> None:
    """A message whose follow-up has been due for longer than CATCH_UP is left alone."""
    make_catalog(db)
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "remind", "order", "reminder_mail", "3d", "not-opened")
        sent_events(db, 1)
        advance(timedelta(days=3) + followup.CATCH_UP + timedelta(minutes=1))
        assert followup.tick(db) == 0
        sent_events(db, 1)  # a newer one is still followed up in time
        advance(timedelta(days=3))
        assert followup.tick(db) == 1


def test_followup_cli(sqlite_url: str) -> None:
    """``followup add/list/disable/enable/run`` from the command line: JSON rows, one-line
    errors with exit code 1."""
    from conftest import make_settings, run_cli

    from soap_service.store import make_engine, schema

    settings = make_settings(sqlite_url)
    db = Database(make_engine(settings), settings)
    try:
        schema.upgrade(db)
        make_catalog(db)
    finally:
        db.dispose()
    env = {"MC_DATABASE_URL": sqlite_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    added = json.loads(run_cli(env, "--json", "followup", "add", "remind", "--event-type",
                               "order", "--template", "reminder_mail", "--after", "36h",
                               "--if", "not-clicked").stdout)
    assert (added["name"], added["after"], added["condition"], added["channel"]) == (
        "remind", "1d12h", "not-clicked", "email")
    run_cli(env, "followup", "disable", "remind")
    [rule] = json.loads(run_cli(env, "--json", "followup", "list").stdout)
    assert (rule["name"], rule["event_type"], rule["template"], rule["enabled"]) == (
        "remind", "order", "reminder_mail", False)
    assert json.loads(run_cli(env, "--json", "followup", "run").stdout) == {"created": 0}
    for args, message in (
        (["add", "again", "--event-type", "order", "--template", "nope", "--after", "1d",
          "--if", "not-opened"], "template 'nope' does not exist"),
        (["add", "remind", "--event-type", "order", "--template", "reminder_mail",
          "--after", "1d", "--if", "not-opened"], "already exists"),
        (["enable", "missing"], "'missing' does not exist"),
    ):
        bad = run_cli(env, "followup", *args, check=False)
        assert bad.returncode == 1 and message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
