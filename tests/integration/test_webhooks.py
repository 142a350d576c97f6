"""Webhooks end to end against a real local receiver verifying with ``standardwebhooks``.

The outbox row is written with the change or not at all; the worker's job delivers it
signed (verified by the public library; the body valid against the OpenAPI document's
``WebhookPayload``), retries on 500 and on a timeout with the same
webhook-id, fails when the schedule is used up, disables the endpoint on 410, and a
replay sends the same webhook-id and body again.  SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dispatch_support import add_events, event_row, wait_until
from jsonschema import Draft202012Validator
from sqlalchemy import event as sa_event
from webhook_support import Receiver

from soap_service import clock, eventstatus, outbox, track, webhooks
from soap_service.config import Settings
from soap_service.http.tracking import Hit, record_hits
from soap_service.models import EventStatus, Outcome, make_plid
from soap_service.store import Database
from soap_service.store import queue as queue_store
from soap_service.store import webhooks as store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def subscribe(db: Database, receiver: Receiver, kinds=(), types=()) -> store.Endpoint:
    endpoint = webhooks.add_endpoint(db, receiver.url, kinds, types)
    receiver.secret = endpoint.secret
    return endpoint


def fast(settings: Settings, **kw) -> Settings:
    return settings.replace(webhook_retry_schedule=kw.pop("schedule", "0.1s,0.1s"),
                            webhook_timeout=kw.pop("timeout", 5.0), **kw)


def drive(box: outbox.Outbox, until, what: str, timeout: float = 30.0) -> None:
    """Run the job until ``until()`` holds (retries become due on the real clock)."""
    wait_until(lambda: (box.tick(), until())[1], timeout, what)


def cancelled(db: Database, **row) -> int:
    (pk,) = add_events(db, [event_row(**row)])
    eventstatus.cancel(db, pk, by="test", reason="stop")
    return pk


def test_signed_delivery_verified_by_standardwebhooks(db: Database, settings, receiver):
    """A status change reaches the receiver signed; the library verifies it; the body is
    SPEC §8's payload; one attempt row; the delivery is delivered; the outbox is empty."""
    endpoint = subscribe(db, receiver)
    pk = cancelled(db, email="ann@example.com", external_id="c-9", event_type="order")
    assert store.outbox_size(db) == 1
    box = outbox.Outbox(fast(settings), db)
    try:
        report = box.tick()
    finally:
        box.close()
    assert report.fanned_out == 1 and report.delivered == 1
    (got,) = receiver.verified()
    assert got.error == "" and got.headers["webhook-id"].startswith("msg_")
    payload = got.payload
    assert payload["type"] == "ignored" and payload["timestamp"].endswith("Z")
    data = payload["data"]
    assert data["plId"] == str(make_plid(settings.instance_id, pk))
    assert {k: data[k] for k in ("eventType", "queue", "status", "channel", "address",
                                 "externalId")} == {
        "eventType": "order", "queue": "rt", "status": "ignored", "channel": "email",
        "address": "ann@example.com", "externalId": "c-9"}
    assert set(data) >= {"connector", "providerResponse", "templateVersion"}
    assert "stop" in data["reason"]
    document = json.loads((ROOT / "schema" / "openapi.json").read_text(encoding="utf-8"))
    Draft202012Validator({"$ref": "#/components/schemas/WebhookPayload",
                          "components": document["components"]}).validate(payload)
    (delivery,) = store.list_deliveries(db)
    assert delivery.status == "delivered" and delivery.endpoint_id == endpoint.id
    (attempt,) = store.list_attempts(db, [delivery.id])
    assert attempt.response_code == 200 and attempt.attempt == 1
    assert store.outbox_size(db) == 0


def test_retry_on_500_keeps_the_webhook_id(db, settings, receiver):
    """500 then 200: two attempts, two attempt rows, the same webhook-id and body, both
    signatures valid (each attempt re-signed with its own timestamp)."""
    subscribe(db, receiver)
    receiver.answer(500)
    cancelled(db)
    box = outbox.Outbox(fast(settings), db)
    try:
        drive(box, lambda: len(receiver.received) >= 2, "the retry")
    finally:
        box.close()
    first, second = receiver.received[:2]
    assert (first.answered, second.answered) == (500, 200)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body and first.error == second.error == ""
    (delivery,) = store.list_deliveries(db)
    assert delivery.status == "delivered"
    assert [a.response_code for a in store.list_attempts(db, [delivery.id])] == [500, 200]


def test_timeout_is_retried(db, settings, receiver):
    """A receiver slower than webhook_timeout: the attempt is recorded as a timeout
    (no code) and retried; the second attempt is delivered."""
    subscribe(db, receiver)
    receiver.answer((200, 10.0))
    cancelled(db)
    box = outbox.Outbox(fast(settings, timeout=0.5), db)
    try:
        drive(box, lambda: store.list_deliveries(db)[0].status == "delivered", "delivery")
    finally:
        box.close()
    (delivery,) = store.list_deliveries(db)
    attempts = store.list_attempts(db, [delivery.id])
    assert attempts[0].response_code is None and "timeout" in (attempts[0].response_text or "")
    assert attempts[-1].response_code == 200


def test_schedule_used_up_fails_then_replay_delivers(db, settings, receiver):
    """500 on every try: after the schedule (here 2 retries) the delivery fails with 3
    attempt rows; a replay sends the same webhook-id and body again, due at once."""
    subscribe(db, receiver)
    receiver.answer(500, 500, 500)
    cancelled(db)
    box = outbox.Outbox(fast(settings), db)
    try:
        drive(box, lambda: store.list_deliveries(db)[0].status == "failed", "failure")
        (failed,) = store.list_deliveries(db, status="failed")
        assert len(store.list_attempts(db, [failed.id])) == 3
        replayed = webhooks.replay(db, failed.id)
        assert replayed.status == "pending" and replayed.attempts == 0
        drive(box, lambda: store.get_delivery(db, failed.id).status == "delivered", "replay")
    finally:
        box.close()
    ids = {r.headers["webhook-id"] for r in receiver.received}
    bodies = {r.body for r in receiver.received}
    assert len(receiver.received) == 4 and len(ids) == 1 and len(bodies) == 1
    assert all(r.error == "" for r in receiver.received)


def test_410_disables_the_endpoint(db, settings, receiver):
    """410 Gone: the endpoint is disabled with the reason, its other pending deliveries
    fail, later changes write no outbox row; replay needs it enabled again."""
    endpoint = subscribe(db, receiver)
    receiver.answer(410)
    cancelled(db)
    cancelled(db, n=2)
    box = outbox.Outbox(fast(settings, webhook_concurrency=1), db)
    try:
        box.tick()
    finally:
        box.close()
    assert len(receiver.received) == 1
    now = store.get_endpoint(db, endpoint.id)
    assert not now.enabled and "410" in (now.disabled_reason or "")
    assert {d.status for d in store.list_deliveries(db)} == {"failed"}
    cancelled(db, n=3)
    assert store.outbox_size(db) == 0
    from soap_service.errors import Conflict

    with pytest.raises(Conflict, match="disabled"):
        webhooks.replay(db, store.list_deliveries(db)[0].id)
    webhooks.set_enabled(db, endpoint.id, True)
    assert webhooks.replay(db, store.list_deliveries(db)[0].id).status == "pending"


def test_filters_by_kind_and_event_type(db, settings, receiver):
    """An endpoint gets only the kinds and event types it asked for; the default kinds
    leave out the steps between (pending after a retry)."""
    only_clicks = subscribe(db, receiver, kinds=["clicked"])
    only_type = subscribe(db, receiver, types=["wanted"])
    subscribe(db, receiver, kinds=["pending"], types=["wanted"])
    cancelled(db, event_type="other")
    cancelled(db, event_type="wanted")
    box = outbox.Outbox(fast(settings), db)
    try:
        box.tick()
    finally:
        box.close()
    deliveries = store.list_deliveries(db)
    assert [(d.endpoint_id, d.kind) for d in deliveries] == [(only_type.id, "ignored")]
    assert only_clicks.id not in {d.endpoint_id for d in deliveries}


def test_no_subscription_costs_no_statement(db, settings):
    """Without a subscription, recording outcomes touches no webhook table (the cached
    answer says nobody listens); with one, one insert carries the whole round."""
    rows = add_events(db, [event_row(i) for i in range(5)])
    now = clock.utcnow()
    claimed = queue_store.claim_events(db, "w1", limit=5, now=now, lease_seconds=60)
    assert len(claimed) == 5
    with db.connect() as conn:  # warm the cache, as the first round of a worker does
        store.wanted_kinds(conn)
    seen: list[str] = []

    def spy(conn, cursor, statement, *args):
        if "webhook" in statement:
            seen.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", spy)
    try:
        outcomes = [Outcome(pk, EventStatus.ROUTING_FAILED, "no template")
                    for pk in rows]
        queue_store.record_outcomes(db, "w1", outcomes[:2], now)
        assert seen == []
        store.add_endpoint(db, "http://127.0.0.1:9/x", "whsec_" + "A" * 32, frozenset(),
                           frozenset(), now)
        seen.clear()
        queue_store.record_outcomes(db, "w1", outcomes[2:], now)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", spy)
    inserts = [s for s in seen if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and store.outbox_size(db) == 3


def test_lost_lease_tells_nothing(db, settings, receiver):
    """An outcome for an event this worker no longer holds changes nothing and writes no
    outbox row (a receiver never hears of a change that did not happen)."""
    subscribe(db, receiver)
    (pk,) = add_events(db, [event_row()])
    now = clock.utcnow()
    queue_store.claim_events(db, "w1", limit=1, now=now, lease_seconds=60)
    queue_store.reap_expired_leases(db, now + timedelta(seconds=120))
    queue_store.claim_events(db, "w2", limit=1, now=now + timedelta(seconds=121),
                             lease_seconds=60)
    changed = queue_store.record_outcomes(
        db, "w1", [Outcome(pk, EventStatus.PROCESSED)], now + timedelta(seconds=122))
    assert changed == 0 and store.outbox_size(db) == 0


def test_clicks_and_opens_are_notified(db, settings, receiver):
    """A tracking hit writes its outbox row in the hits' transaction: clicked with the URL,
    opened with the machine flag."""
    subscribe(db, receiver, kinds=["opened", "clicked"])
    (pk,) = add_events(db, [event_row()])
    now = clock.utcnow()
    record_hits(db, [
        Hit(track.TrackingToken(track.CLICK, pk, "https://shop.example.com/a"), "Firefox",
            "192.0.2.1", now),
        Hit(track.TrackingToken(track.OPEN, pk, ""), "Firefox", "192.0.2.1", now)])
    box = outbox.Outbox(fast(settings), db)
    try:
        box.tick()
    finally:
        box.close()
    kinds = {r.payload["type"]: r.payload["data"] for r in receiver.verified()}
    assert kinds["clicked"]["url"] == "https://shop.example.com/a"
    assert kinds["opened"]["machine"] is False
    assert kinds["opened"]["plId"] == str(make_plid(settings.instance_id, pk))


def test_a_bad_url_or_kind_is_refused(db):
    """Subscriptions take absolute http(s) URLs and known kinds only."""
    from soap_service.errors import ValidationFailed

    for url in ("ftp://x/y", "/relative", "http://", "http://a b/"):
        with pytest.raises(ValidationFailed):
            webhooks.add_endpoint(db, url)
    with pytest.raises(ValidationFailed, match="unknown status"):
        webhooks.add_endpoint(db, "https://x.example.com/h", ["sent"])
    assert store.list_endpoints(db) == []


def test_payload_is_frozen_at_fan_out(db, settings, receiver):
    """The body is built once per notification: retries and replays send the same
    bytes even after the event changes (here: purged)."""
    subscribe(db, receiver)
    receiver.answer(500)
    pk = cancelled(db, email="keep@example.com")
    box = outbox.Outbox(fast(settings, schedule="0.3s"), db)
    try:
        box.tick()
        with db.begin() as conn:
            from soap_service.tables import event_status_log, events, exclusion_log

            for table in (event_status_log, exclusion_log):
                conn.execute(table.delete().where(table.c.event_id == pk))
            conn.execute(events.delete().where(events.c.id == pk))
        drive(box, lambda: len(receiver.received) >= 2, "the retry")
    finally:
        box.close()
    first, second = receiver.received[:2]
    assert first.body == second.body
    assert json.loads(second.body)["data"]["address"] == "keep@example.com"
