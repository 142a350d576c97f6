"""Receipt storage: delivery receipts matched to their delivery and applied, in one
transaction per batch.

A receipt names ``(connector, provider id)``.  The provider id is the one the send
recorded in the delivery log -- or, for an SMS sent in parts, any part's id
(``delivery_parts`` leads from a part to the message's provider id).  Of the delivery
rows that match, the latest accepted one (``outcome = 'sent'``) is the message's.

What a receipt does (SPEC §7; an SMS in parts sends one receipt per part):

* ``delivered``: the delivery is marked delivered (``receipt``, ``receipt_at``) and the
  event's status history gets a ``delivered`` entry -- unless a receipt already marked
  the delivery (delivered, or failed: a failed part fails the whole text).
* ``failed``: the delivery is marked failed, and a ``processed`` event moves to
  ``deliveryFailed`` with the receipt's code in its history (a late bounce).
* ``pending`` (an intermediate state): nothing changes.

Each change is also a webhook notification (``delivered``, ``deliveryFailed``) written to
the outbox in the same transaction (``store.webhooks.enqueue``: no statement when no
subscription wants it).  Nothing here decides what a provider's state means
(``ReceiptState`` comes in), and a receipt for no known delivery is returned, not raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from soap_service.models import EventStatus, Receipt, ReceiptReport, ReceiptState
from soap_service.store import Database
from soap_service.store import webhooks as webhook_store
from soap_service.tables import delivery_log, delivery_parts, event_status_log, events

_CHUNK = 500  # ids per IN list


@dataclass
class _Delivery:
    id: int
    event_id: int | None
    receipt: str | None
    channel: str
    address: str | None


def _pairs_condition(table: Any, id_column: Any, pairs: Sequence[tuple[str, str]]) -> Any:
    by_connector: dict[str, list[str]] = {}
    for connector, pid in pairs:
        by_connector.setdefault(connector, []).append(pid)
    return or_(*(and_(table.c.connector == connector, id_column.in_(ids))
                 for connector, ids in by_connector.items()))


def _chunks(items: Sequence[tuple[str, str]]) -> list[Sequence[tuple[str, str]]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _part_owners(conn: Connection, pairs: Sequence[tuple[str, str]]
                 ) -> dict[tuple[str, str], str]:
    """(connector, part id) -> the message's provider id, for the parts of SMS in parts."""
    found: dict[tuple[str, str], str] = {}
    p = delivery_parts.c
    for chunk in _chunks(pairs):
        rows = conn.execute(select(p.connector, p.part_id, p.provider_id)
                            .where(_pairs_condition(delivery_parts, p.part_id, chunk)))
        found.update({(r.connector, r.part_id): r.provider_id for r in rows})
    return found


def _deliveries(conn: Connection, pairs: Sequence[tuple[str, str]]
                ) -> dict[tuple[str, str], _Delivery]:
    """(connector, provider id) -> its latest accepted delivery."""
    found: dict[tuple[str, str], _Delivery] = {}
    d = delivery_log.c
    for chunk in _chunks(pairs):
        rows = conn.execute(
            select(d.id, d.event_id, d.connector, d.provider_id, d.receipt, d.channel,
                   d.address)
            .where(_pairs_condition(delivery_log, d.provider_id, chunk), d.outcome == "sent",
                   d.is_proof.is_(False))
            .order_by(d.id))
        for r in rows:  # ordered by id: the latest wins
            found[(r.connector, r.provider_id)] = _Delivery(r.id, r.event_id, r.receipt,
                                                            r.channel, r.address)
    return found


def _reason(receipt: Receipt) -> str:
    what = " ".join(x for x in (receipt.code, receipt.text) if x) or receipt.state.value
    return f"receipt {what} ({receipt.connector})"[:500]


def record_receipts(db: Database, receipts: Sequence[Receipt], now: datetime
                    ) -> tuple[ReceiptReport, list[Receipt]]:
    """Apply ``receipts`` in one transaction; returns what happened and the receipts that
    matched no delivery (for the caller to log)."""
    useful = [r for r in receipts if r.state is not ReceiptState.PENDING]
    if not useful:
        return ReceiptReport(received=len(receipts)), []
    with db.begin() as conn:
        named = sorted({(r.connector, r.provider_id) for r in useful})
        owners = _part_owners(conn, named)
        wanted = sorted({(c, owners.get((c, pid), pid)) for c, pid in named})
        found = _deliveries(conn, wanted)
        delivered, failed, unknown = _apply(useful, owners, found)
        _write(conn, delivered, failed, found, now)
    return ReceiptReport(received=len(receipts), delivered=len(delivered),
                         failed=len(failed), unknown=len(unknown)), unknown


def _apply(receipts: Sequence[Receipt], owners: dict[tuple[str, str], str],
           found: dict[tuple[str, str], _Delivery]
           ) -> tuple[dict[int, Receipt], dict[int, Receipt], list[Receipt]]:
    """Which deliveries become delivered, which failed (by delivery id), in order."""
    delivered: dict[int, Receipt] = {}
    failed: dict[int, Receipt] = {}
    unknown: list[Receipt] = []
    for r in receipts:
        pid = owners.get((r.connector, r.provider_id), r.provider_id)
        row = found.get((r.connector, pid))
        if row is None:
            unknown.append(r)
            continue
        if r.state is ReceiptState.FAILED:
            if row.receipt != ReceiptState.FAILED.value and row.id not in failed:
                failed[row.id] = r
                delivered.pop(row.id, None)  # a failed part fails the whole text
        elif row.receipt is None and row.id not in failed and row.id not in delivered:
            delivered[row.id] = r
    return delivered, failed, unknown


def _write(conn: Connection, delivered: dict[int, Receipt], failed: dict[int, Receipt],
           found: dict[tuple[str, str], _Delivery], now: datetime) -> None:
    rows = {row.id: row for row in found.values()}
    stmt = (update(delivery_log).where(delivery_log.c.id == bindparam("b_id"))
            .values(receipt=bindparam("b_receipt"), receipt_at=bindparam("b_at")))
    marks = [{"b_id": i, "b_receipt": ReceiptState.DELIVERED.value, "b_at": r.at or now}
             for i, r in delivered.items()]
    marks += [{"b_id": i, "b_receipt": ReceiptState.FAILED.value, "b_at": r.at or now}
              for i, r in failed.items()]
    if marks:
        conn.execute(stmt, marks)
    changes = [(rows[i], "delivered", r) for i, r in delivered.items()
               if rows[i].event_id is not None]
    changes += _fail_events(conn, [(rows[i], r) for i, r in failed.items()
                                   if rows[i].event_id is not None], now)
    if not changes:
        return
    conn.execute(insert(event_status_log), [
        {"event_id": row.event_id, "status": status, "reason": _reason(r), "created_at": now}
        for row, status, r in changes])
    webhook_store.enqueue(conn, [webhook_store.Notification(status, row.event_id, {
        "status": status, "reason": _reason(r), "channel": row.channel, "address": row.address,
        "connector": r.connector}, now) for row, status, r in changes])


def _fail_events(conn: Connection, failing: list[tuple[_Delivery, Receipt]], now: datetime
                 ) -> list[tuple[_Delivery, str, Receipt]]:
    """``processed`` events whose message a receipt failed -> ``deliveryFailed``; the
    changes made (other events are left as they are)."""
    if not failing:
        return []
    processed = EventStatus.PROCESSED.value
    moving = set(conn.execute(select(events.c.id).where(
        events.c.id.in_([row.event_id for row, _ in failing]),
        events.c.status == processed)).scalars())
    changes = [(row, EventStatus.DELIVERY_FAILED.value, r) for row, r in failing
               if row.event_id in moving]
    if changes:
        conn.execute(
            update(events).where(events.c.id == bindparam("b_id"),
                                 events.c.status == processed)
            .values(status=EventStatus.DELIVERY_FAILED.value,
                    last_error=bindparam("b_reason"), updated_at=now),
            [{"b_id": row.event_id, "b_reason": _reason(r)} for row, _, r in changes])
    return changes
