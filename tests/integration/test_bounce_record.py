"""What a received bounce does, on SQLite and PostgreSQL: events really sent through an SMTP
sink with their VERP return paths, then DSN / ARF messages parsed and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bounce_support import DOMAIN, arf, postfix_dsn, send
from dispatch_support import (
    add_events,
    event_row,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
)
from jsonschema import Draft202012Validator
from webhook_support import Receiver

from soap_service import exclusions, outbox, webhooks
from soap_service.bounces.parse import read_reports
from soap_service.bounces.record import record_reports
from soap_service.bounces.verp import make_return_path
from soap_service.devsmtp import MailSink
from soap_service.models import BounceKind, BounceReport, EventStatus
from soap_service.store import bounces as bounce_store
from soap_service.store import queue
from soap_service.store import webhooks as webhook_store
from soap_service.store.events import get_event, status_history
from soap_service.worker import Dispatcher

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bsettings(settings):
    return settings.replace(bounce_domain=DOMAIN, secret="bounce-test-secret")


def _record(db, s, data: bytes, rcpt: str, source: str = "smtp"):
    return record_reports(db, s, read_reports(data, envelope_recipient=rcpt), source)


def test_hard_bounce_fails_the_event_quarantines_and_notifies(db, bsettings):
    """A 5.1.1 DSN at the event's return path: processed → deliveryFailed with the
    diagnostic in history and delivery log, the delivery marked failed, the address
    quarantined (source bounce, naming the bounce), a deliveryFailed webhook delivered; the
    next event to the address ends ignored."""
    with Receiver() as receiver:
        endpoint = webhooks.add_endpoint(db, receiver.url, (), ())
        receiver.secret = endpoint.secret
        sent = send(db, bsettings, ["gone@example.net"])
        pk, mail_from = sent["gone@example.net"]
        assert get_event(db, pk).status is EventStatus.PROCESSED
        before = webhook_store.outbox_size(db)
        [result] = _record(db, bsettings, postfix_dsn(mail_from, "gone@example.net"), mail_from)
        assert (result.kind, result.matched, result.event_id) == ("hard", True, pk)
        assert result.effect == "deliveryFailed, quarantined"
        assert webhook_store.outbox_size(db) == before + 1
        box = outbox.Outbox(bsettings.replace(webhook_retry_schedule="0.1s"), db)
        try:
            box.tick()
        finally:
            box.close()
        payloads = [r.payload for r in receiver.verified()]
    failed = [p for p in payloads if p["type"] == "deliveryFailed"]
    assert len(failed) == 1 and "5.1.1" in failed[0]["data"]["reason"]
    document = json.loads((ROOT / "schema" / "openapi.json").read_text(encoding="utf-8"))
    Draft202012Validator({"$ref": "#/components/schemas/WebhookPayload",
                          "components": document["components"]}).validate(failed[0])
    event = get_event(db, pk)
    assert event.status is EventStatus.DELIVERY_FAILED
    assert "User unknown" in (event.last_error or "")
    history = status_history(db, pk)
    assert history[-1].status == "deliveryFailed" and "5.1.1" in (history[-1].reason or "")
    attempts = queue.delivery_attempts(db, pk)
    assert [a.outcome for a in attempts] == ["sent", "bounced"]
    assert attempts[0].receipt == "failed"
    assert "User unknown" in (attempts[1].response_text or "") and attempts[1].response_code == 550
    entry = exclusions.lookup(db, "gone@example.net")
    assert entry is not None and entry.source == "bounce" and entry.bounce_id == result.bounce_id
    [row] = bounce_store.list_bounces(db)
    assert (row.source, row.format, row.kind, row.status, row.address) == (
        "smtp", "dsn", "hard", "5.1.1", "gone@example.net")
    # the next event to that address is not sent
    [nxt] = add_events(db, [event_row(9, email="GONE@example.net")])
    with MailSink() as sink:
        d = Dispatcher(sink_settings(bsettings, sink), db, router=stand_in_router,
                       renderer=stand_in_renderer, types=lambda db, name: None)
        try:
            d.tick()
        finally:
            d.close()
        assert sink.messages == []
    assert get_event(db, nxt).status is EventStatus.IGNORED


def test_the_same_bounce_twice_acts_once(db, bsettings):
    sent = send(db, bsettings, ["twice@example.net"])
    pk, mail_from = sent["twice@example.net"]
    data = postfix_dsn(mail_from, "twice@example.net")
    [first] = _record(db, bsettings, data, mail_from)
    [again] = _record(db, bsettings, data, mail_from)
    [third] = _record(db, bsettings, data, mail_from, source="imap")
    assert first.bounce_id is not None
    assert (again.bounce_id, again.effect) == (None, "duplicate")
    assert (third.bounce_id, third.effect) == (None, "duplicate")
    assert [h.status for h in status_history(db, pk)].count("deliveryFailed") == 1
    assert len(bounce_store.list_bounces(db)) == 1
    assert [a.outcome for a in queue.delivery_attempts(db, pk)] == ["sent", "bounced"]


def test_forged_token_and_other_domain_change_nothing(db, bsettings):
    """A token signed with another secret, an altered token, a return path at another
    domain, none at all: recorded unmatched, the event stays processed, nothing listed."""
    sent = send(db, bsettings, ["victim@example.net"])
    pk, mail_from = sent["victim@example.net"]
    forged = make_return_path(pk, 1, "not-our-secret", DOMAIN)
    local, _, _ = mail_from.partition("@")
    altered = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + DOMAIN
    other_domain = mail_from.replace(DOMAIN, "elsewhere.example")
    for rcpt in (forged, altered, other_domain, "postmaster@" + DOMAIN):
        [result] = _record(db, bsettings, postfix_dsn(rcpt, "victim@example.net",
                                                      diagnostic=f"smtp; 550 {rcpt}"), rcpt)
        assert (result.matched, result.effect, result.event_id) == (False, "unmatched", None)
    assert get_event(db, pk).status is EventStatus.PROCESSED
    assert exclusions.lookup(db, "victim@example.net") is None
    rows = bounce_store.list_bounces(db)
    assert len(rows) == 4 and not any(r.matched for r in rows)


def test_report_naming_another_recipient_is_not_acted_on(db, bsettings):
    """A valid token for one address, a DSN naming another: recorded, nobody quarantined."""
    sent = send(db, bsettings, ["holder@example.net"])
    pk, mail_from = sent["holder@example.net"]
    [result] = _record(db, bsettings, postfix_dsn(mail_from, "victim@example.net"), mail_from)
    assert (result.matched, result.effect) == (True, "recipient mismatch")
    assert exclusions.lookup(db, "victim@example.net") is None
    assert exclusions.lookup(db, "holder@example.net") is None
    assert get_event(db, pk).status is EventStatus.PROCESSED


def test_soft_bounces_counted_then_quarantined(db, bsettings):
    """4.x.x: a delayed DSN leaves the event processed; a relay giving up fails it; the
    address is quarantined at the third soft bounce within the window (MC_BOUNCE_SOFT_*)."""
    address = "full@example.net"
    results = []
    pks = []
    for n, action in enumerate(("delayed", "failed", "delayed")):
        pk, mail_from = send(db, bsettings, [address])[address]
        pks.append(pk)
        data = postfix_dsn(mail_from, address, status="4.2.2", action=action,
                           diagnostic=f"smtp; 452 4.2.2 mailbox full (try {n})")
        [result] = _record(db, bsettings, data, mail_from)
        results.append(result)
    assert [r.kind for r in results] == ["soft"] * 3
    assert [r.effect for r in results] == [
        "soft 1/3", "soft 2/3, deliveryFailed", "soft 3/3, quarantined"]
    assert [get_event(db, pk).status for pk in pks] == [
        EventStatus.PROCESSED, EventStatus.DELIVERY_FAILED, EventStatus.PROCESSED]
    entry = exclusions.lookup(db, address)
    assert entry is not None and entry.source == "bounce"
    assert entry.bounce_id == results[2].bounce_id


def test_soft_limit_is_configurable(db, bsettings):
    s = bsettings.replace(bounce_soft_limit=1)
    _, mail_from = send(db, s, ["one@example.net"])["one@example.net"]
    [result] = _record(db, s, postfix_dsn(mail_from, "one@example.net", status="4.4.1",
                                          action="delayed",
                                          diagnostic="smtp; 421 4.4.1 timed out"), mail_from)
    assert result.effect == "soft 1/1, quarantined"


def test_complaint_denylists_the_address(db, bsettings):
    """An ARF complaint: the address on the denylist (source complaint); the event stays
    processed (the message arrived); a later hard bounce does not downgrade the entry."""
    pk, mail_from = send(db, bsettings, ["angry@example.net"])["angry@example.net"]
    [result] = _record(db, bsettings, arf(mail_from, "angry@example.net"), mail_from)
    assert (result.kind, result.effect) == ("complaint", "denylisted")
    entry = exclusions.lookup(db, "angry@example.net")
    assert entry is not None and entry.source == "complaint"
    assert exclusions.exclusion_reason(entry).startswith("denylisted")
    assert get_event(db, pk).status is EventStatus.PROCESSED
    [hard] = _record(db, bsettings, postfix_dsn(mail_from, "angry@example.net"), mail_from)
    assert hard.effect == "deliveryFailed, already denylisted"
    assert exclusions.lookup(db, "angry@example.net").source == "complaint"


def test_unknown_reports_are_only_recorded(db, bsettings):
    pk, mail_from = send(db, bsettings, ["away@example.net"])["away@example.net"]
    auto = (f"From: away@example.net\r\nTo: {mail_from}\r\nSubject: Out of Office\r\n"
            "Auto-Submitted: auto-replied\r\n\r\nI am away.\r\n").encode()
    [result] = _record(db, bsettings, auto, mail_from)
    assert (result.kind, result.matched, result.effect) == ("unknown", True, "recorded")
    assert get_event(db, pk).status is EventStatus.PROCESSED
    assert exclusions.lookup(db, "away@example.net") is None


def test_providers_may_match_by_message_id_smtp_may_not(db, bsettings):
    """An authenticated provider report without our return path matches by our
    Message-ID; the same report by SMTP (anyone can write one) matches nothing."""
    pk, _ = send(db, bsettings, ["ses@example.net"])["ses@example.net"]
    [attempt] = queue.delivery_attempts(db, pk)
    report = BounceReport(BounceKind.HARD, recipient="ses@example.net", status="5.1.1",
                          diagnostic="smtp; 550 5.1.1 user unknown", source="ses",
                          message_id=(attempt.message_id or "").strip("<>"),
                          provider_id="0100018c-ses")
    [by_smtp] = record_reports(db, bsettings, [report], "smtp")
    assert (by_smtp.matched, by_smtp.effect) == (False, "unmatched")
    assert exclusions.lookup(db, "ses@example.net") is None
    report = BounceReport(**{**report.__dict__, "provider_id": "0100018c-ses-2"})
    [by_ses] = record_reports(db, bsettings, [report], "ses")
    assert (by_ses.matched, by_ses.event_id) == (True, pk)
    assert exclusions.lookup(db, "ses@example.net") is not None
    assert get_event(db, pk).status is EventStatus.DELIVERY_FAILED


def test_purge_removes_old_bounces(db, bsettings):
    """Received bounces go with the retention (MC_RETENTION_DAYS), by age; the quarantine
    entry they caused stays (it no longer names its bounce)."""
    from datetime import timedelta

    from soap_service import clock, housekeeping

    with clock.frozen_clock(clock.utcnow()) as advance:
        _, mail_from = send(db, bsettings, ["old@example.net"])["old@example.net"]
        _record(db, bsettings, postfix_dsn(mail_from, "old@example.net"), mail_from)
        advance(timedelta(days=bsettings.retention_days + 1))
        planned = housekeeping.purge(db, bsettings, dry_run=True)
        done = housekeeping.purge(db, bsettings)
    assert planned["bounces"] == done["bounces"] == 1
    assert bounce_store.list_bounces(db) == []
    entry = exclusions.lookup(db, "old@example.net")
    assert entry is not None and bounce_store.get_bounces(db, {entry.bounce_id}) == {}
