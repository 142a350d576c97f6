"""Tracking storage: the tracking log (opens and clicks) and what a hit is matched to.

A hit is recorded against its event and the event's latest accepted send (the delivery
whose message carried the link).  Written in batches by ``http/tracking.py``'s recorder,
with the webhook outbox rows (``opened`` / ``clicked``) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, insert, select

from soap_service.models import SentDelivery, TrackingHit
from soap_service.store import Database
from soap_service.store import webhooks as webhook_store
from soap_service.tables import delivery_log, events, tracking_log


def sent_deliveries(db: Database, event_ids: Iterable[int]) -> dict[int, SentDelivery]:
    """Each existing event's latest accepted delivery (``SentDelivery(None, None)`` when
    nothing was sent yet); events that no longer exist are not in the answer."""
    ids = sorted(set(event_ids))
    if not ids:
        return {}
    latest = (select(delivery_log.c.event_id, func.max(delivery_log.c.id).label("id"))
              .where(delivery_log.c.event_id.in_(ids), delivery_log.c.outcome == "sent")
              .group_by(delivery_log.c.event_id).subquery())
    with db.connect() as conn:
        found = {pk: SentDelivery(None, None) for pk in conn.execute(
            select(events.c.id).where(events.c.id.in_(ids))).scalars()}
        for row in conn.execute(select(latest.c.event_id, delivery_log.c.id,
                                       delivery_log.c.created_at)
                                .join(delivery_log, delivery_log.c.id == latest.c.id)):
            if row.event_id in found:
                found[row.event_id] = SentDelivery(row.id, row.created_at)
    return found


def insert_hits(db: Database, hits: Sequence[TrackingHit]) -> int:
    """Write hits in one transaction (their ``id`` is ignored); a hit whose event was
    purged meanwhile is skipped.  Returns how many were written."""
    if not hits:
        return 0
    with db.begin() as conn:
        alive = set(conn.execute(select(events.c.id).where(
            events.c.id.in_(sorted({h.event_id for h in hits if h.event_id is not None})))
        ).scalars())
        rows = [{
            "event_id": h.event_id, "delivery_id": h.delivery_id, "kind": h.kind, "url": h.url,
            "user_agent": (h.user_agent or "")[:512] or None, "ip": (h.ip or "")[:64] or None,
            "machine": h.machine, "created_at": h.created_at,
        } for h in hits if h.event_id in alive]
        if rows:
            conn.execute(insert(tracking_log), rows)
            webhook_store.enqueue(conn, [webhook_store.Notification(
                "clicked" if h.kind == "click" else "opened", h.event_id,
                {"machine": h.machine, **({"url": h.url} if h.url else {})}, h.created_at)
                for h in hits if h.event_id in alive])
    return len(rows)


def list_tracking(db: Database, event_id: int | None = None, limit: int = 100,
                  kind: str | None = None, human_only: bool = False) -> list[TrackingHit]:
    """Tracking-log rows, newest first."""
    query = select(tracking_log).order_by(tracking_log.c.id.desc()).limit(limit)
    if event_id is not None:
        query = query.where(tracking_log.c.event_id == event_id)
    if kind is not None:
        query = query.where(tracking_log.c.kind == kind)
    if human_only:
        query = query.where(tracking_log.c.machine.is_(False))
    with db.connect() as conn:
        return [TrackingHit(**row._mapping) for row in conn.execute(query)]
