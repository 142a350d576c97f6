"""Queue claims on SQLite and PostgreSQL: order, batch share, leases, reaping."""

from __future__ import annotations

from datetime import timedelta

from dispatch_support import add_events, event_row, past
from sqlalchemy import select

from soap_service import clock
from soap_service.models import Delivery, EventStatus, Outcome
from soap_service.store import queue
from soap_service.store.events import get_event, status_history
from soap_service.tables import events, worker_heartbeats


def _claim(db, worker="w1", limit=100, share=0.0, lease=60, now=None):
    return queue.claim_events(db, worker, limit=limit, now=now or clock.utcnow(),
                              lease_seconds=lease, batch_min_share=share)


def test_claims_in_priority_order(db):
    """Real-time before batch, then lane (critical, transactional, bulk), then age."""
    ids = add_events(db, [
        event_row(1, queue="batch", lane=0, process_at=past(50)),
        event_row(2, queue="rt", lane=2, process_at=past(40)),
        event_row(3, queue="rt", lane=0, process_at=past(10)),
        event_row(4, queue="rt", lane=1, process_at=past(30)),
        event_row(5, queue="rt", lane=0, process_at=past(20)),
        event_row(6, queue="batch", lane=2, process_at=past(60)),
    ])
    claimed = _claim(db)
    by_n = {pk: n for n, pk in zip(range(1, 7), ids, strict=True)}
    assert [by_n[e.id] for e in claimed] == [5, 3, 4, 2, 1, 6]
    assert all(e.status is EventStatus.PROCESSING for e in claimed)


def test_claim_takes_only_due_pending_events(db):
    """Future (scheduled / retry) events and events in other statuses are not claimed."""
    future = clock.utcnow() + timedelta(hours=1)
    add_events(db, [event_row(1, process_at=future), event_row(2, status="processed"),
                    event_row(3)])
    claimed = _claim(db)
    assert [e.email for e in claimed] == ["user3@example.com"]
    assert _claim(db, worker="w2") == []  # already leased


def test_batch_gets_its_minimum_share(db):
    """With a real-time flood queued, a fifth of each claim still goes to the batch queue."""
    add_events(db, [event_row(i, queue="rt") for i in range(30)]
               + [event_row(i, queue="batch") for i in range(30)])
    claimed = _claim(db, limit=10, share=0.2)
    assert sorted(e.queue.value for e in claimed) == ["batch"] * 2 + ["rt"] * 8


def test_real_time_takes_unused_batch_share_and_vice_versa(db):
    """The share is a minimum, not a cap: an idle queue leaves its places to the other."""
    add_events(db, [event_row(i, queue="batch") for i in range(10)])
    assert len(_claim(db, limit=10, share=0.2)) == 10
    add_events(db, [event_row(i, queue="rt") for i in range(10)])
    assert len(_claim(db, limit=10, share=0.2)) == 10


def test_expired_lease_is_reaped_and_reclaimed(db):
    """A dead worker's events come back after the lease and another worker takes them."""
    [pk] = add_events(db, [event_row(1)])
    start = clock.utcnow()
    with clock.frozen_clock(start) as advance:
        assert [e.id for e in _claim(db, "dead", lease=60)] == [pk]
        assert queue.reap_expired_leases(db, clock.utcnow()) == 0  # lease still valid
        advance(timedelta(seconds=61))
        assert queue.reap_expired_leases(db, clock.utcnow()) == 1
        assert [e.id for e in _claim(db, "alive")] == [pk]
    assert any(h.reason == "lease expired" for h in status_history(db, pk))


def test_outcome_is_recorded_only_by_the_lease_holder(db):
    """A worker whose lease was reaped and re-claimed cannot overwrite the new claim."""
    [pk] = add_events(db, [event_row(1)])
    start = clock.utcnow()
    with clock.frozen_clock(start) as advance:
        [ev] = _claim(db, "slow", lease=10)
        advance(timedelta(seconds=11))
        queue.reap_expired_leases(db, clock.utcnow())
        _claim(db, "fresh")
        delivery = Delivery(channel="email", address=ev.email, outcome="sent")
        changed = queue.record_outcomes(
            db, "slow", [Outcome(pk, EventStatus.PROCESSED, delivery=delivery)],
            clock.utcnow())
    assert changed == 0
    stored = get_event(db, pk)
    assert stored is not None and stored.status is EventStatus.PROCESSING
    assert len(queue.delivery_attempts(db, pk)) == 1  # the attempt itself is still logged


def test_record_outcome_writes_event_status_and_logs(db):
    """Recording moves the event, clears the lease, and adds status and delivery rows."""
    [pk] = add_events(db, [event_row(1)])
    [ev] = _claim(db)
    retry_at = clock.utcnow() + timedelta(minutes=5)
    delivery = Delivery(channel="email", address=ev.email, outcome="temporary",
                              template_version_id=3, response_code=451, response_text="later",
                              message_id="<mc.1.1@x>", duration_ms=12)
    queue.record_outcomes(db, "w1", [Outcome(pk, EventStatus.PENDING, "451 later", 1,
                                                   retry_at, delivery)], clock.utcnow())
    with db.connect() as conn:
        row = conn.execute(select(events).where(events.c.id == pk)).one()
    assert (row.status, row.error_count, row.claimed_by, row.last_error) == (
        "pending", 1, None, "451 later")
    assert row.process_at == retry_at.replace(microsecond=row.process_at.microsecond)
    [attempt] = queue.delivery_attempts(db, pk)
    assert (attempt.outcome, attempt.response_code, attempt.template_version_id) == (
        "temporary", 451, 3)
    assert status_history(db, pk)[-1].status == "pending"


def test_heartbeat_upserts_one_row(db):
    """A worker's heartbeat is one row, refreshed; it is removed when the worker stops."""
    t0 = clock.utcnow()
    queue.heartbeat(db, "w1", t0, t0)
    queue.heartbeat(db, "w1", t0, t0 + timedelta(seconds=5))
    with db.connect() as conn:
        rows = conn.execute(select(worker_heartbeats)).all()
    assert len(rows) == 1 and rows[0].seen_at == t0 + timedelta(seconds=5)
    queue.forget_worker(db, "w1")
    with db.connect() as conn:
        assert conn.execute(select(worker_heartbeats)).all() == []


def test_realtime_only_claim_leaves_batch_alone(db):
    """The express path's claim takes real-time events only, ignoring the batch share."""
    add_events(db, [event_row(i, queue="batch", process_at=past(60)) for i in range(5)]
               + [event_row(i, queue="rt") for i in range(3)])
    claimed = queue.claim_events(db, "w", limit=10, now=clock.utcnow(), lease_seconds=60,
                                 batch_min_share=0.5, realtime_only=True)
    assert [e.queue.value for e in claimed] == ["rt"] * 3
