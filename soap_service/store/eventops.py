"""Status moves made by people (retry, cancel) and the reads behind an event's status page.

Each move is one conditional ``UPDATE ... WHERE status IN (...)`` -- so it cannot race a
worker's claim -- with its status-log row, its exclusion-log row (cancel) and its webhook
outbox row, in one transaction.  When the condition does not hold, nothing changes and
the caller learns the event's current status (or that there is no such event).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update

from soap_service.models import Event, EventStatus
from soap_service.store import Database
from soap_service.store import webhooks as webhook_store
from soap_service.store.events import event_from_row
from soap_service.tables import event_status_log, events, exclusion_log, followup_rules

RETRYABLE = (EventStatus.DELIVERY_FAILED, EventStatus.ROUTING_FAILED,
             EventStatus.TARGETING_FAILED, EventStatus.TOO_OLD)
CANCELLABLE = (EventStatus.PENDING, EventStatus.PAUSED)


@dataclass(frozen=True)
class Moved:
    """The outcome of a move: the event after it, or its unchanged status (or None when
    there is no such event)."""

    event: Event | None
    current: EventStatus | None


def _current(db: Database, pk: int) -> EventStatus | None:
    with db.connect() as conn:
        raw = conn.execute(select(events.c.status).where(events.c.id == pk)).scalar()
    return None if raw is None else EventStatus(raw)


def requeue(db: Database, pk: int, now: datetime, reason: str) -> Moved:
    """A final failed event back to ``pending``, due now, with its attempts and validity
    counted afresh (``requeued_at``)."""
    c = events.c
    stmt = (update(events)
            .where(c.id == pk, c.status.in_([s.value for s in RETRYABLE]))
            .values(status=EventStatus.PENDING.value, error_count=0, process_at=now,
                    requeued_at=now, last_error=None, claimed_by=None, claimed_until=None,
                    updated_at=now)
            .returning(*events.c))
    with db.begin() as conn:
        row = conn.execute(stmt).first()
        if row is None:
            return Moved(None, None)
        conn.execute(insert(event_status_log).values(
            event_id=pk, status=EventStatus.PENDING.value, reason=reason, created_at=now))
        event = event_from_row(row)
        webhook_store.enqueue(conn, [webhook_store.Notification(
            EventStatus.PENDING.value, pk, {"status": "pending", "reason": reason}, now)])
    return Moved(event, EventStatus.PENDING)


def cancel(db: Database, pk: int, now: datetime, reason: str) -> Moved:
    """A pending or paused event ends ``ignored`` (not sent on purpose), with an
    exclusion-log row saying why."""
    c = events.c
    stmt = (update(events)
            .where(c.id == pk, c.status.in_([s.value for s in CANCELLABLE]))
            .values(status=EventStatus.IGNORED.value, last_error=reason, claimed_by=None,
                    claimed_until=None, updated_at=now)
            .returning(*events.c))
    with db.begin() as conn:
        row = conn.execute(stmt).first()
        if row is None:
            return Moved(None, None)
        event = event_from_row(row)
        conn.execute(insert(event_status_log).values(
            event_id=pk, status=EventStatus.IGNORED.value, reason=reason, created_at=now))
        conn.execute(insert(exclusion_log).values(
            event_id=pk, address=event.address, reason=reason, created_at=now))
        webhook_store.enqueue(conn, [webhook_store.Notification(
            EventStatus.IGNORED.value, pk,
            {"status": "ignored", "reason": reason, "channel": event.channel.value,
             "address": event.address}, now)])
    return Moved(event, EventStatus.IGNORED)


def current_status(db: Database, pk: int) -> EventStatus | None:
    """The event's status, or None when there is no such event."""
    return _current(db, pk)


def follow_ups(db: Database, parent_id: int) -> list[dict[str, Any]]:
    """Events created as follow-ups of ``parent_id``, oldest first, with their rule."""
    c = events.c
    stmt = (select(c.id, c.event_type, c.status, c.created_at, c.updated_at,
                   followup_rules.c.name.label("rule"))
            .select_from(events.outerjoin(followup_rules,
                                          followup_rules.c.id == c.followup_rule_id))
            .where(c.parent_id == parent_id).order_by(c.id))
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def list_page(db: Database, *, status: str | None, event_type: str | None,
              external_id: str | None, since: datetime | None, until: datetime | None,
              before_id: int | None, limit: int, address: str | None = None,
              queue: str | None = None) -> list[Event]:
    """Newest first, ``id < before_id`` (the cursor), filtered; ``limit`` rows at most.
    ``address`` matches the email, mobile phone or device token exactly."""
    c = events.c
    stmt = select(events).order_by(c.id.desc()).limit(limit)
    for column, value in ((c.status, status), (c.event_type, event_type),
                          (c.external_id, external_id), (c.queue, queue)):
        if value:
            stmt = stmt.where(column == value)
    if address:
        stmt = stmt.where(or_(c.email == address, c.mobile_phone == address,
                              c.registration_token == address))
    if since is not None:
        stmt = stmt.where(c.created_at >= since)
    if until is not None:
        stmt = stmt.where(c.created_at < until)
    if before_id is not None:
        stmt = stmt.where(c.id < before_id)
    with db.connect() as conn:
        return [event_from_row(r) for r in conn.execute(stmt)]


def events_by_ids(db: Database, ids: Sequence[int]) -> dict[int, Event]:
    if not ids:
        return {}
    with db.connect() as conn:
        rows = conn.execute(select(events).where(events.c.id.in_(list(ids))))
        return {r.id: event_from_row(r) for r in rows}
