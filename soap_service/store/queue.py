"""Event storage, dispatch side: claims with leases, reaping, outcomes, delivery log.

A claim moves due events (``pending``, ``process_at`` <= now) to ``processing`` with a
lease (``claimed_by``, ``claimed_until``) in one ``UPDATE ... WHERE id IN (SELECT ...)
RETURNING`` statement.  On PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP LOCKED``,
so any number of workers share the queue without taking an event twice.  On SQLite the
statement runs inside ``BEGIN IMMEDIATE`` (the engine's begin hook), so claims are
serialised by the write lock, and the ``status = 'pending'`` condition is repeated in the
UPDATE itself; one worker process is the supported SQLite setup.

Order: real-time before batch, then the type's lane, then age — that is the ``priority``
column set at ingest (queue rank * 10 + lane rank), then ``process_at``, then ``id``.  A
share of every claim (``batch_min_share``) is reserved for the batch queue so a real-time
flood cannot starve it.  Outcomes are recorded only while the caller still holds the
lease, so a worker whose lease was reaped cannot overwrite another worker's state.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, and_, bindparam, exists, insert, or_, select, update

from soap_service.models import (
    WISHED_CHANNELS,
    Channel,
    ConnectorHealth,
    Delivery,
    DeliveryAttempt,
    Event,
    EventStatus,
    Outcome,
)
from soap_service.store import Database, dialect
from soap_service.store import connectors as connector_store
from soap_service.store import webhooks as webhook_store
from soap_service.store.events import event_from_row
from soap_service.tables import (
    delivery_log,
    delivery_parts,
    event_status_log,
    events,
    followup_rules,
    template_versions,
    templates,
    worker_heartbeats,
)

BATCH_PRIORITY = 10  # priorities below this are the real-time queue (queue rank 0)


# ---------------------------------------------------------------- claims


def _build_claim(conn: Connection, realtime: bool) -> Any:
    """The claim statement of one queue, with ``now``, ``until``, ``worker`` and ``n`` as
    parameters (built once per queue and database: building it per round cost the worker
    more CPU than running it)."""
    due = and_(events.c.status == EventStatus.PENDING.value,
               events.c.process_at <= bindparam("c_now"))
    queue_filter = (events.c.priority < BATCH_PRIORITY) if realtime else (
        events.c.priority >= BATCH_PRIORITY)
    ids = (
        select(events.c.id)
        .where(due, queue_filter)
        .order_by(events.c.priority, events.c.process_at, events.c.id)
        .limit(bindparam("c_n", type_=Integer))
    )
    ids = dialect.skip_locked(ids, conn)
    # A CTE, not "IN (subquery)": PostgreSQL may re-run a plain subquery per outer row,
    # and with SKIP LOCKED each run picks other rows, so LIMIT would not hold.
    picked = ids.cte("picked")
    return (
        update(events)
        .where(events.c.id.in_(select(picked.c.id)),
               events.c.status == EventStatus.PENDING.value)
        .values(status=EventStatus.PROCESSING.value, claimed_by=bindparam("c_worker"),
                claimed_until=bindparam("c_until"), updated_at=bindparam("c_now"))
        .returning(*events.c)
    )


_CLAIMS: dict[tuple[str, bool], Any] = {}  # (dialect, real-time queue) -> statement


def _claim_stmt(conn: Connection, realtime: bool) -> Any:
    key = (conn.dialect.name, realtime)
    stmt = _CLAIMS.get(key)
    if stmt is None:
        stmt = _CLAIMS[key] = _build_claim(conn, realtime)
    return stmt


def claim_events(db: Database, worker_id: str, *, limit: int, now: datetime,
                 lease_seconds: int, batch_min_share: float = 0.2,
                 realtime_only: bool = False) -> list[Event]:
    """Lease up to ``limit`` due events to ``worker_id``, in dispatch order.

    Real-time events fill at most ``limit - ceil(limit * batch_min_share)`` places; the
    batch queue gets the rest (and whatever the real-time queue left unused).
    ``realtime_only`` claims real-time events only (the worker's express path).
    """
    until = now + timedelta(seconds=lease_seconds)
    if not _any_due(db, now, realtime_only):
        return []  # no write transaction (on SQLite: no wait for the write lock) for nothing

    def claim(conn: Connection, n: int, realtime: bool) -> list[Any]:
        return list(conn.execute(_claim_stmt(conn, realtime), {
            "c_now": now, "c_until": until, "c_worker": worker_id, "c_n": n}))

    with db.begin() as conn:
        if realtime_only:
            rows = claim(conn, limit, True)
        else:
            reserved = min(limit, math.ceil(limit * max(0.0, batch_min_share)))
            rows = claim(conn, limit - reserved, True)
            rt_full = len(rows) == limit - reserved
            if len(rows) < limit:
                rows += claim(conn, limit - len(rows), False)
            if rt_full and len(rows) < limit:  # the batch queue left part of its share
                rows += claim(conn, limit - len(rows), True)
    claimed = [event_from_row(r) for r in rows]
    order = {r.id: (r.priority, r.process_at, r.id) for r in rows}
    claimed.sort(key=lambda e: order[e.id])
    return claimed


def _any_due(db: Database, now: datetime, realtime_only: bool) -> bool:
    """Whether a claim would find anything: a read, which takes no write lock.  The last
    claim of every drain finds nothing; events that become due just after this look are
    claimed by the next round (their insert woke the dispatcher)."""
    with db.connect() as conn:
        stmt = _ANY_DUE_RT if realtime_only else _ANY_DUE
        return conn.execute(stmt, {"d_now": now}).first() is not None


_DUE = and_(events.c.status == EventStatus.PENDING.value,
            events.c.process_at <= bindparam("d_now"))
_ANY_DUE = select(events.c.id).where(_DUE).limit(1)
_ANY_DUE_RT = select(events.c.id).where(_DUE, events.c.priority < BATCH_PRIORITY).limit(1)


def reap_expired_leases(db: Database, now: datetime) -> int:
    """Give events whose lease ran out (their worker died) back to the queue."""
    expired = and_(events.c.status == EventStatus.PROCESSING.value,
                   events.c.claimed_until < now)
    with db.begin() as conn:
        ids = [r.id for r in conn.execute(select(events.c.id).where(expired))]
        if not ids:
            return 0
        conn.execute(
            update(events)
            .where(events.c.id.in_(ids), expired)
            .values(status=EventStatus.PENDING.value, claimed_by=None, claimed_until=None,
                    updated_at=now)
        )
        _log_status(conn, [(i, EventStatus.PENDING.value, "lease expired") for i in ids], now)
    return len(ids)


def paused_groups(db: Database) -> list[tuple[str, Channel]]:
    """``(event type, channel)`` pairs that have events held as ``paused``."""
    stmt = (select(events.c.event_type, events.c.wished_channel).distinct()
            .where(events.c.status == EventStatus.PAUSED.value))
    with db.connect() as conn:
        pairs = {(r.event_type, WISHED_CHANNELS.get(r.wished_channel, Channel.EMAIL))
                 for r in conn.execute(stmt)}
    return sorted(pairs)


def _channel_condition(channel: Channel) -> Any:
    """The ``wishedChannel`` values meaning ``channel`` (unknown values mean email)."""
    if channel is Channel.EMAIL:
        others = [n for n, c in WISHED_CHANNELS.items() if c is not Channel.EMAIL]
        return events.c.wished_channel.notin_(others)
    return events.c.wished_channel.in_([n for n, c in WISHED_CHANNELS.items() if c is channel])


def _followup_template_live() -> Any:
    """A follow-up whose rule's template is not paused (or no longer exists): follow-ups
    are routed to their rule's template only, whatever the rest of their type does."""
    paused = (select(followup_rules.c.id)
              .join(templates, templates.c.name == followup_rules.c.template)
              .where(followup_rules.c.id == events.c.followup_rule_id,
                     templates.c.paused.is_(True)))
    return and_(events.c.followup_rule_id.is_not(None), ~exists(paused))


def release_paused_in(conn: Connection, event_type: str, channel: Channel, now: datetime,
                      reason: str, *, plain: bool = True) -> int:
    """Held events of this type and channel back to ``pending``, due now (the one rule,
    for a resume and for the reaper): follow-ups whose rule's template is not paused,
    and -- when ``plain`` (the caller found the type's routing no longer paused) -- the
    events that are not follow-ups.  Runs in the caller's transaction."""
    which = (or_(events.c.parent_id.is_(None), _followup_template_live()) if plain
             else _followup_template_live())
    cond = and_(events.c.status == EventStatus.PAUSED.value, events.c.event_type == event_type,
                _channel_condition(channel), which)
    ids = list(conn.execute(select(events.c.id).where(cond)).scalars())
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        conn.execute(update(events).where(events.c.id.in_(chunk), cond).values(
            status=EventStatus.PENDING.value, process_at=now, claimed_by=None,
            claimed_until=None, updated_at=now))
        _log_status(conn, [(i, EventStatus.PENDING.value, reason) for i in chunk], now)
        webhook_store.enqueue_moves(conn, chunk, EventStatus.PENDING.value, reason, now)
    return len(ids)


def release_paused(db: Database, event_type: str, channel: Channel, now: datetime,
                   reason: str, *, plain: bool = True) -> int:
    """:func:`release_paused_in` in a transaction of its own, waking the dispatchers."""
    with db.begin() as conn:
        released = release_paused_in(conn, event_type, channel, now, reason, plain=plain)
        if released:
            dialect.wake_dispatcher(conn)
    return released


def expire_paused(db: Database, event_type: str, created_before: datetime,
                  now: datetime) -> int:
    """Paused events of ``event_type`` past their validity (counted from receipt, or from
    the ``scheduled`` date or a manual retry if later) or ``expiration``: ``tooOld``."""
    stale = and_(events.c.created_at < created_before,
                 or_(events.c.scheduled_at.is_(None), events.c.scheduled_at < created_before),
                 or_(events.c.requeued_at.is_(None), events.c.requeued_at < created_before))
    cond = and_(events.c.status == EventStatus.PAUSED.value, events.c.event_type == event_type,
                or_(stale, events.c.expiration_at <= now))
    with db.begin() as conn:
        ids = list(conn.execute(select(events.c.id).where(cond)).scalars())
        if ids:
            reason = "expired while its template was paused"
            conn.execute(update(events).where(events.c.id.in_(ids), cond).values(
                status=EventStatus.TOO_OLD.value, last_error=reason, updated_at=now))
            _log_status(conn, [(i, EventStatus.TOO_OLD.value, reason) for i in ids], now)
            webhook_store.enqueue_moves(conn, ids, EventStatus.TOO_OLD.value, reason, now)
    return len(ids)


def release_claims(db: Database, worker_id: str, event_ids: Sequence[int], now: datetime,
                   reason: str | None = None) -> int:
    """Hand back events claimed but not attempted (a round that failed), due at once;
    only those ``worker_id`` still holds.  With a ``reason``, each gets a status-log row.
    Returns how many were released."""
    if not event_ids:
        return 0
    held = and_(events.c.id.in_(list(event_ids)), events.c.claimed_by == worker_id,
                events.c.status == EventStatus.PROCESSING.value)
    with db.begin() as conn:
        ids = list(conn.execute(select(events.c.id).where(held)).scalars())
        if not ids:
            return 0
        conn.execute(update(events).where(events.c.id.in_(ids), held).values(
            status=EventStatus.PENDING.value, claimed_by=None, claimed_until=None,
            updated_at=now))
        if reason:
            _log_status(conn, [(i, EventStatus.PENDING.value, reason) for i in ids], now)
        dialect.wake_dispatcher(conn)
    return len(ids)


# ---------------------------------------------------------------- outcomes


def record_outcomes(db: Database, worker_id: str, outcomes: Sequence[Outcome],
                    now: datetime) -> int:
    """Store outcomes, status-log and delivery-log rows in one transaction.

    Returns how many events were updated (an event whose lease this worker lost is
    left alone; its attempt is still logged).
    """
    if not outcomes:
        return 0
    with db.begin() as conn:
        changed = _update_events(conn, worker_id, outcomes, now)
        _log_status(conn, [(o.event_id, o.status.value, o.reason or None) for o in outcomes],
                    now)
        rows = [_delivery_row(o.event_id, o.delivery, now) for o in outcomes if o.delivery]
        if rows:
            conn.execute(_INSERT_DELIVERY, rows)
        parts = [_part_row(o.delivery, part, now) for o in outcomes if o.delivery
                 for part in o.delivery.part_ids if part != o.delivery.provider_id]
        if parts:  # an SMS in parts: a receipt may name any part
            conn.execute(insert(delivery_parts), parts)
        if webhook_store.wanted_kinds(conn):
            _notify_outcomes(conn, outcomes, changed, now)
    return changed


def _notify_outcomes(conn: Connection, outcomes: Sequence[Outcome], changed: int,
                     now: datetime) -> None:
    """The webhook outbox rows of a round, in its transaction (events whose lease this
    worker lost changed nothing, so they tell nothing)."""
    if changed < len(outcomes):
        ours = set(conn.execute(select(events.c.id).where(
            events.c.id.in_([o.event_id for o in outcomes]), events.c.updated_at == now,
            events.c.claimed_by.is_(None))).scalars())
        outcomes = [o for o in outcomes if o.event_id in ours]
    notes = []
    for o in outcomes:
        data: dict[str, Any] = {"status": o.status.value}
        if o.reason:
            data["reason"] = o.reason[:500]
        d = o.delivery
        if d is not None:
            response = f"{d.response_code or ''} {d.response_text}".strip()
            data.update(channel=d.channel, address=d.address, providerResponse=response[:500],
                        templateVersionId=d.template_version_id,
                        connector=d.connector or None)
        notes.append(webhook_store.Notification(o.status.value, o.event_id, data, now))
    webhook_store.enqueue(conn, notes)


# The statements of every round, built once (see _build_claim).
_UPDATE_EVENT = (
    update(events)
    .where(events.c.id == bindparam("b_id"), events.c.claimed_by == bindparam("b_worker"),
           events.c.status == EventStatus.PROCESSING.value)
    .values(status=bindparam("b_status"), last_error=bindparam("b_error"),
            error_count=bindparam("b_errors"), process_at=bindparam("b_at"),
            claimed_by=None, claimed_until=None, updated_at=bindparam("b_now"))
)
_INSERT_DELIVERY = insert(delivery_log)
_INSERT_STATUS = insert(event_status_log)


def _update_events(conn: Connection, worker_id: str, outcomes: Sequence[Outcome],
                   now: datetime) -> int:
    params = [
        {
            "b_id": o.event_id, "b_worker": worker_id, "b_status": o.status.value,
            "b_error": o.reason or None, "b_errors": o.error_count,
            "b_at": o.process_at or now, "b_now": now,
        }
        for o in outcomes
    ]
    result = conn.execute(_UPDATE_EVENT, params)
    return int(result.rowcount or 0)


def _delivery_row(event_id: int | None, d: Delivery, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id, "template_version_id": d.template_version_id,
        "channel": d.channel, "address": d.address, "outcome": d.outcome,
        "response_code": d.response_code, "response_text": d.response_text[:2000],
        "message_id": d.message_id, "duration_ms": d.duration_ms, "is_proof": False,
        "connector": d.connector or None, "provider_id": d.provider_id[:255] or None,
        "variant": d.variant or None, "created_at": now,
    }


def _part_row(d: Delivery, part_id: str, now: datetime) -> dict[str, Any]:
    return {"connector": d.connector, "part_id": part_id[:255],
            "provider_id": d.provider_id[:255], "created_at": now}


def _log_status(conn: Connection, entries: Sequence[tuple[int, str, str | None]],
                now: datetime) -> None:
    if entries:
        conn.execute(_INSERT_STATUS, [
            {"event_id": i, "status": s, "reason": r, "created_at": now} for i, s, r in entries
        ])


# ---------------------------------------------------------------- reads and heartbeats


def delivery_attempts(db: Database, event_id: int) -> list[DeliveryAttempt]:
    """Delivery-log rows of one event, oldest first, with the template name and version
    number of the version used (``template`` / ``version``; None when none was)."""
    c, v = delivery_log.c, template_versions.c
    stmt = (
        select(c.id, c.created_at, c.channel, c.address, c.outcome, c.response_code,
               c.response_text, c.template_version_id, c.message_id, c.duration_ms, c.is_proof,
               templates.c.name.label("template"), v.version, c.connector, c.provider_id,
               c.receipt, c.receipt_at, c.variant)
        .select_from(delivery_log.outerjoin(template_versions, v.id == c.template_version_id)
                     .outerjoin(templates, templates.c.id == v.template_id))
        .where(c.event_id == event_id)
        .order_by(c.id)
    )
    with db.connect() as conn:
        return [DeliveryAttempt(**r._mapping) for r in conn.execute(stmt)]


def heartbeat(db: Database, worker_id: str, started_at: datetime, now: datetime,
              health: Sequence[ConnectorHealth] = ()) -> None:
    """Record that ``worker_id`` is alive (one row per worker), with its connectors'
    health (``store.connectors``), in one transaction."""
    hb = worker_heartbeats.c
    with db.begin() as conn:
        done = conn.execute(
            update(worker_heartbeats).where(hb.worker_id == worker_id).values(seen_at=now)
        ).rowcount
        if not done:
            conn.execute(insert(worker_heartbeats).values(
                worker_id=worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                started_at=started_at, seen_at=now))
        connector_store.save_health_in(conn, worker_id, health, now)


def live_workers(db: Database, seen_since: datetime) -> list[str]:
    """Ids of the workers whose heartbeat is newer than ``seen_since``."""
    hb = worker_heartbeats.c
    with db.connect() as conn:
        return list(conn.execute(select(hb.worker_id).where(hb.seen_at >= seen_since)
                                 .order_by(hb.worker_id)).scalars())


def forget_worker(db: Database, worker_id: str) -> None:
    """Remove a stopping worker's heartbeat row (and its connectors' health)."""
    with db.begin() as conn:
        conn.execute(worker_heartbeats.delete().where(
            worker_heartbeats.c.worker_id == worker_id))
        connector_store.forget_health_in(conn, worker_id)
