"""Purge storage: what retention deletes, in bounded batches of one short transaction each.

Only events in a final status are purged, their log rows first; a follow-up waits for
its parent to go (its row is what stops the follow-up job from following that parent up
once more).  Log rows with no event (proofs, already purged events) have their own cutoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, update

from soap_service.store import Database
from soap_service.tables import (
    bounces,
    delivery_log,
    delivery_parts,
    event_status_log,
    event_types,
    events,
    exclusion_log,
    tracking_log,
)

FINAL_STATUSES = (
    "processed", "ignored", "deliveryFailed", "routingFailed", "targetingFailed", "tooOld",
)
_EVENT_LOGS = (("tracking_log", tracking_log), ("exclusion_log", exclusion_log),
               ("delivery_log", delivery_log), ("event_status_log", event_status_log))


def retention_by_type(db: Database) -> dict[str, int]:
    """Retention in seconds of every declared event type."""
    with db.connect() as conn:
        rows = conn.execute(select(event_types.c.name, event_types.c.retention_seconds))
        return {row.name: int(row.retention_seconds) for row in rows}


def _purgeable(types: Sequence[str], other_than: bool, cutoff: datetime) -> Any:
    """Final events past ``cutoff`` (of ``types``, or of every other type)."""
    kind = events.c.event_type.not_in(types) if other_than else events.c.event_type.in_(types)
    return and_(kind, events.c.created_at < cutoff, events.c.status.in_(FINAL_STATUSES),
                events.c.parent_id.is_(None))


def count_purgeable(db: Database, types: Sequence[str], other_than: bool,
                    cutoff: datetime) -> dict[str, int]:
    """What :func:`purge_batch` would delete for this group, without deleting anything."""
    ids = select(events.c.id).where(_purgeable(types, other_than, cutoff))
    with db.connect() as conn:
        counts = {"events": conn.execute(
            select(func.count()).select_from(ids.subquery())).scalar_one()}
        for name, table in _EVENT_LOGS:
            counts[name] = conn.execute(
                select(func.count()).select_from(table).where(table.c.event_id.in_(ids))
            ).scalar_one()
    return counts


def purge_batch(db: Database, types: Sequence[str], other_than: bool, cutoff: datetime,
                limit: int) -> dict[str, int]:
    """Delete up to ``limit`` expired final events of the group, their logs first."""
    counts = {name: 0 for name, _ in _EVENT_LOGS}
    with db.begin() as conn:
        ids = [row.id for row in conn.execute(
            select(events.c.id).where(_purgeable(types, other_than, cutoff))
            .order_by(events.c.id).limit(limit))]
        if not ids:
            return {"events": 0, **counts}
        for name, table in _EVENT_LOGS:
            counts[name] = conn.execute(delete(table).where(table.c.event_id.in_(ids))).rowcount
        conn.execute(update(events).where(events.c.parent_id.in_(ids)).values(parent_id=None))
        purged = conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount
    return {"events": purged, **counts}


def purge_orphan_logs(db: Database, cutoff: datetime, limit: int,
                      dry_run: bool) -> dict[str, int]:
    """Log rows with no event (proofs, already purged events), SMS part ids and received
    bounces older than ``cutoff``: up to ``limit`` of each deleted (or, ``dry_run``, all of
    them counted)."""
    counts: dict[str, int] = {}
    with db.begin() as conn:
        for name, table in (*_EVENT_LOGS[:3], ("delivery_parts", delivery_parts),
                            ("bounces", bounces)):
            where = table.c.created_at < cutoff
            if name not in {"delivery_parts", "bounces"}:  # those go by age alone
                where = and_(table.c.event_id.is_(None), where)
            if dry_run:
                counts[name] = conn.execute(
                    select(func.count()).select_from(table).where(where)).scalar_one()
                continue
            ids = select(table.c.id).where(where).limit(limit).scalar_subquery()
            counts[name] = conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount
    return counts
