"""SQL for ``msgcenter status`` and ``history`` (``report.py``): queue depth, recent
statuses, worker heartbeats, incoming and outgoing volumes and times.

Each function reads on a connection of its own and returns plain values; date
arithmetic and hour buckets come from ``dialect``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal_column, select

from soap_service.store import Database, dialect
from soap_service.tables import delivery_log, events, worker_heartbeats

_ACTIVE = ("pending", "processing", "paused")


def queue_depth(db: Database, now: datetime) -> list[dict[str, Any]]:
    """Per queue and priority: pending / due / processing / paused counts, oldest due time."""
    is_due = and_(events.c.status == "pending", events.c.process_at <= now)
    query = (
        select(
            events.c.queue, events.c.priority,
            func.sum(case((events.c.status == "pending", 1), else_=0)).label("pending"),
            func.sum(case((is_due, 1), else_=0)).label("due"),
            func.sum(case((events.c.status == "processing", 1), else_=0)).label("processing"),
            func.sum(case((events.c.status == "paused", 1), else_=0)).label("paused"),
            func.min(case((is_due, events.c.process_at), else_=None)).label("oldest_due"),
        )
        .where(events.c.status.in_(_ACTIVE))
        .group_by(events.c.queue, events.c.priority)
        .order_by(events.c.priority)
    )
    with db.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def status_counts(db: Database, since: datetime) -> dict[str, int]:
    """Events received since ``since``, by their current status."""
    with db.connect() as conn:
        rows = conn.execute(select(events.c.status, func.count())
                            .where(events.c.created_at >= since).group_by(events.c.status))
        return {status: int(count) for status, count in rows}


def heartbeats(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(select(worker_heartbeats).order_by(worker_heartbeats.c.worker_id))
        return [dict(row._mapping) for row in rows]


def _group_column(conn: Connection, by: str, time_column: Any) -> Any:
    if by == "type":
        return events.c.event_type
    if by == "status":
        return events.c.status
    if by == "hour":
        return dialect.hour_of(conn, time_column)
    return literal_column("'all'")


def _grouped(by: str, group: Any) -> list[Any]:
    """GROUP BY terms: none for ``none`` (PostgreSQL refuses a constant in GROUP BY)."""
    return [] if by == "none" else [group]


def history_incoming(db: Database, since: datetime, by: str) -> list[tuple[str, str, int]]:
    """``(group, status, count)`` of the events received since ``since``."""
    with db.connect() as conn:
        group = _group_column(conn, by, events.c.created_at).label("grp")
        rows = conn.execute(select(group, events.c.status, func.count())
                            .where(events.c.created_at >= since)
                            .group_by(*_grouped(by, group), events.c.status))
        return [(str(g), str(status), int(count)) for g, status, count in rows]


def history_sent(db: Database, since: datetime, by: str
                 ) -> list[tuple[str, int, float | None, float | None]]:
    """``(group, sent, avg queue seconds, avg send ms)`` of accepted sends since ``since``."""
    with db.connect() as conn:
        return _history_sent(conn, since, by)


def _history_sent(conn: Connection, since: datetime, by: str
                  ) -> list[tuple[str, int, float | None, float | None]]:
    group = _group_column(conn, by, delivery_log.c.created_at).label("grp")
    queued = dialect.seconds_between(conn, delivery_log.c.created_at, events.c.created_at)
    rows = conn.execute(
        select(group, func.count(), func.avg(queued), func.avg(delivery_log.c.duration_ms))
        .select_from(delivery_log.join(events, events.c.id == delivery_log.c.event_id))
        .where(delivery_log.c.created_at >= since, delivery_log.c.outcome == "sent",
               delivery_log.c.is_proof.is_(False))
        .group_by(*_grouped(by, group))
    )
    return [(str(g), int(n), None if q is None else float(q), None if d is None else float(d))
            for g, n, q, d in rows]
