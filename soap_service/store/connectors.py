"""Connector storage: what each worker reports about its connectors, and what the
delivery log says about them (``msgcenter connector list``).

A worker's connectors live in its memory (circuits, counters); the worker writes them
here with its heartbeat (:func:`save_health_in`, in the heartbeat's transaction), and
its rows go when its heartbeat row goes.  Sent / failed counts over a period come from
the delivery log, whichever worker made the attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select

from soap_service.models import Channel, CircuitState, ConnectorHealth
from soap_service.store import Database
from soap_service.tables import connector_health, delivery_log


@dataclass(frozen=True)
class ReportedHealth:
    """One worker's view of one connector, as of ``seen_at``."""

    worker_id: str
    health: ConnectorHealth
    seen_at: datetime


def save_health_in(conn: Connection, worker_id: str, health: Sequence[ConnectorHealth],
                   now: datetime) -> None:
    """Replace ``worker_id``'s rows with ``health`` (in the caller's transaction)."""
    conn.execute(delete(connector_health).where(connector_health.c.worker_id == worker_id))
    if health:
        conn.execute(insert(connector_health), [{
            "worker_id": worker_id, "name": h.name, "channel": h.channel.value,
            "kind": h.kind, "priority": h.priority, "state": h.state.value,
            "consecutive_failures": h.consecutive_failures, "sent": h.sent,
            "temporary": h.temporary, "permanent": h.permanent, "in_flight": h.in_flight,
            "last_error": h.last_error[:200], "probe_in": h.probe_in, "seen_at": now,
        } for h in health])


def forget_health_in(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(connector_health).where(connector_health.c.worker_id == worker_id))


def reported_health(db: Database, seen_since: datetime) -> list[ReportedHealth]:
    """What live workers (seen since ``seen_since``) reported, by connector then worker."""
    h = connector_health.c
    stmt = (select(connector_health).where(h.seen_at >= seen_since)
            .order_by(h.name, h.worker_id))
    with db.connect() as conn:
        return [ReportedHealth(r.worker_id, ConnectorHealth(
            name=r.name, channel=Channel(r.channel), kind=r.kind, priority=r.priority,
            state=CircuitState(r.state), consecutive_failures=r.consecutive_failures,
            sent=r.sent, temporary=r.temporary, permanent=r.permanent,
            in_flight=r.in_flight, last_error=r.last_error, probe_in=r.probe_in), r.seen_at)
            for r in conn.execute(stmt)]


def attempts_since(db: Database, since: datetime) -> dict[str, dict[str, int]]:
    """Delivery-log attempts per connector and outcome (sent / temporary / permanent)
    since ``since``; proofs included (they are real sends through the connector)."""
    d = delivery_log.c
    stmt = (select(d.connector, d.outcome, func.count().label("n"))
            .where(d.created_at >= since, d.connector.is_not(None))
            .group_by(d.connector, d.outcome))
    out: dict[str, dict[str, int]] = {}
    with db.connect() as conn:
        for r in conn.execute(stmt):
            out.setdefault(r.connector, {})[r.outcome] = int(r.n)
    return out
