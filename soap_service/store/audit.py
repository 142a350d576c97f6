"""Queries for the audit log (who changed what, when, from where) and the monitoring
thresholds an admin sets in the console.

Each function opens its own short transaction and returns plain values.  Policy (what
is written, who may read it, how a threshold is judged) lives in ``soap_service.audit``
and ``soap_service.thresholds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update

from soap_service.store import Database
from soap_service.tables import audit_log, monitor_thresholds


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    ip: str
    action: str
    target: str
    detail: str


@dataclass(frozen=True)
class Threshold:
    metric: str
    orange: float | None
    red: float | None
    updated_by: str
    updated_at: datetime


def insert_entry(db: Database, at: datetime, actor: str, ip: str, action: str, target: str,
                 detail: str) -> None:
    with db.begin() as conn:
        conn.execute(insert(audit_log).values(at=at, actor=actor, ip=ip, action=action,
                                              target=target, detail=detail))


def list_entries(db: Database, *, limit: int, before_id: int | None = None,
                 actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
    """Newest first; ``action`` matches a prefix (``template.`` = every template change)."""
    c = audit_log.c
    stmt = select(audit_log).order_by(c.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(c.id < before_id)
    if actor:
        stmt = stmt.where(c.actor == actor)
    if action:
        stmt = stmt.where(c.action.startswith(action, autoescape=True))
    with db.connect() as conn:
        return [AuditEntry(r.id, r.at, r.actor, r.ip, r.action, r.target, r.detail)
                for r in conn.execute(stmt)]


def count_since(db: Database, action: str, since: datetime, *, actor: str | None = None,
                ip: str | None = None) -> int:
    """How many ``action`` rows since ``since`` (by one actor, or from one address)."""
    c = audit_log.c
    stmt = select(func.count()).select_from(audit_log).where(c.action == action, c.at >= since)
    if actor is not None:
        stmt = stmt.where(c.actor == actor)
    if ip is not None:
        stmt = stmt.where(c.ip == ip)
    with db.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


# ---------------------------------------------------------------- thresholds


def list_thresholds(db: Database) -> dict[str, Threshold]:
    with db.connect() as conn:
        rows = conn.execute(select(monitor_thresholds)).all()
    return {r.metric: Threshold(r.metric, r.orange, r.red, r.updated_by, r.updated_at)
            for r in rows}


def put_threshold(db: Database, metric: str, orange: float | None, red: float | None,
                  by: str, now: datetime) -> None:
    """Set (or, with both levels None, remove) the levels of ``metric``."""
    c = monitor_thresholds.c
    with db.begin() as conn:
        if orange is None and red is None:
            conn.execute(delete(monitor_thresholds).where(c.metric == metric))
            return
        changed = conn.execute(update(monitor_thresholds).where(c.metric == metric).values(
            orange=orange, red=red, updated_by=by, updated_at=now)).rowcount
        if not changed:
            conn.execute(insert(monitor_thresholds).values(
                metric=metric, orange=orange, red=red, updated_by=by, updated_at=now))
