"""Bounce storage: received bounces and complaints, and what each one does, in one
transaction per report.

A report arrives as an :class:`Incoming`: the parsed
:class:`~soap_service.models.BounceReport`, where it came from, its dedupe key, and --
when its return path carried a valid signed token -- the event it names.  Reports from an
authenticated provider webhook (``trusted``) may also be matched by our ``Message-ID``
(``<mc.{instance}.{event id}@...>``) or the provider's message id.  The delivery matched is
the event's latest accepted (``sent``) email delivery; its address is the one acted on,
never the address the report merely names (a report naming another recipient is recorded,
not acted on).

What a matched report does (docs/bounces.md):

* ``hard``: a ``processed`` event moves to ``deliveryFailed`` (status history, delivery
  log, webhook outbox, as receipts do) and the address is quarantined (source ``bounce``);
* ``soft``: a relay that gave up (``Action: failed``) moves the event the same way; every
  soft bounce is counted and the address quarantined once ``limit`` arrived within
  ``window``;
* ``complaint``: the address goes on the denylist (source ``complaint``);
* ``unknown`` / ``unparseable``: recorded only.

The same report twice (same dedupe key) is recorded once and does nothing the second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.errors import ServerError
from soap_service.models import AddressKind, BounceKind, BounceReport, EventStatus
from soap_service.store import Database
from soap_service.store import webhooks as webhook_store
from soap_service.store.exclusions import put_quarantine_in
from soap_service.tables import bounces, delivery_log, event_status_log, events


class SendNotRecorded(ServerError):
    """A valid return path names an event whose send is not recorded yet (the worker is
    still sending it): the listener answers 451 and the relay retries, a webhook 503."""


_OUR_MESSAGE_ID = re.compile(r"^<?mc\.\d{1,9}\.(\d{1,19})@[^<>\s]+>?$")


@dataclass(frozen=True)
class Incoming:
    """One report to record."""

    report: BounceReport
    source: str  # smtp | imap | ses | postmark
    dedupe_key: str
    event_id: int | None = None  # named by a verified return path
    attempt: int | None = None
    trusted: bool = False  # an authenticated provider: may match by message / provider id


@dataclass(frozen=True)
class SoftPolicy:
    """Soft bounces quarantine an address after ``limit`` within ``window``."""

    limit: int = 3
    window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Recorded:
    """What recording one report did; ``bounce_id`` None for a duplicate."""

    bounce_id: int | None
    kind: str
    matched: bool
    effect: str
    event_id: int | None = None
    address: str | None = None


@dataclass(frozen=True)
class BounceRow:
    """A received bounce as ``msgcenter bounces list`` shows it."""

    id: int
    created_at: datetime
    source: str
    format: str
    kind: str
    matched: bool
    effect: str
    event_id: int | None
    delivery_id: int | None
    attempt: int | None
    address: str | None
    recipient: str
    status: str
    action: str
    diagnostic: str
    return_path: str
    message_id: str
    provider_id: str
    feedback_type: str
    reported_at: datetime | None


@dataclass
class _Delivery:
    id: int
    event_id: int
    address: str
    message_id: str | None
    connector: str | None
    provider_id: str | None
    template_version_id: int | None


def _delivery(conn: Connection, event_id: int) -> _Delivery | None:
    """The event's latest accepted email delivery."""
    d = delivery_log.c
    row = conn.execute(
        select(d.id, d.event_id, d.address, d.message_id, d.connector, d.provider_id,
               d.template_version_id)
        .where(d.event_id == event_id, d.outcome == "sent", d.is_proof.is_(False),
               d.channel == "email")
        .order_by(d.id.desc()).limit(1)).first()
    if row is None or not row.address:
        return None
    return _Delivery(row.id, row.event_id, row.address, row.message_id, row.connector,
                     row.provider_id, row.template_version_id)


def _match(conn: Connection, incoming: Incoming) -> _Delivery | None:
    if incoming.event_id is not None:
        return _delivery(conn, incoming.event_id)
    if not incoming.trusted:
        return None  # an SMTP / IMAP report without a valid token proves nothing
    r = incoming.report
    found = _OUR_MESSAGE_ID.match(r.message_id) if r.message_id else None
    if found:
        delivery = _delivery(conn, int(found.group(1)))
        if delivery is not None and (delivery.message_id or "").strip("<>") == r.message_id:
            return delivery
    if r.provider_id:
        d = delivery_log.c
        event_id = conn.execute(
            select(d.event_id).where(d.provider_id == r.provider_id[:255],
                                     d.outcome == "sent", d.channel == "email",
                                     d.is_proof.is_(False))
            .order_by(d.id.desc()).limit(1)).scalar()
        if event_id is not None:
            return _delivery(conn, int(event_id))
    return None


def _names_other_address(report: BounceReport, address: str) -> bool:
    """Whether the report names a recipient, and it is not the delivery's address."""
    named = {a.strip().lower() for a in (report.recipient, report.original_recipient) if a}
    return bool(named) and address.strip().lower() not in named


def _reason(report: BounceReport, source: str) -> str:
    words = " ".join(x for x in (report.status, report.diagnostic) if x) or report.kind.value
    return f"bounce {words} ({source} {report.source})".strip()[:500]


def _soft_count(conn: Connection, address: str, since: datetime) -> int:
    b = bounces.c
    return int(conn.execute(select(func.count()).select_from(bounces).where(
        b.address == address, b.kind == BounceKind.SOFT.value, b.matched.is_(True),
        b.created_at >= since)).scalar_one())


def record_bounce(db: Database, incoming: Incoming, now: datetime,
                  policy: SoftPolicy) -> Recorded:
    """Record one report and do what it says, in one transaction.

    The report's row is inserted first: its unique dedupe key makes a concurrent copy of
    the same report wait for this transaction, then fail, before it has changed anything.
    """
    r = incoming.report
    with db.begin() as conn:
        if conn.execute(select(bounces.c.id).where(
                bounces.c.dedupe_key == incoming.dedupe_key)).first() is not None:
            return Recorded(None, r.kind.value, False, "duplicate")
        delivery = _match(conn, incoming)
        if delivery is None and incoming.event_id is not None and conn.execute(
                select(events.c.status).where(events.c.id == incoming.event_id)
        ).scalar() == EventStatus.PROCESSING.value:
            # a fast relay's bounce, before the worker recorded the send: not now
            raise SendNotRecorded(f"event {incoming.event_id} is being sent; its delivery "
                                  "is not recorded yet")
        address = delivery.address.strip().lower() if delivery else None
        try:
            with conn.begin_nested():
                key = conn.execute(insert(bounces).values(
                    **_row(incoming, delivery, address, now))).inserted_primary_key
        except IntegrityError:  # the same report, recorded concurrently
            return Recorded(None, r.kind.value, False, "duplicate")
        assert key is not None
        bounce_id = int(key[0])
        effect = _act(conn, incoming, delivery, address, bounce_id, now, policy)[:64]
        conn.execute(update(bounces).where(bounces.c.id == bounce_id).values(effect=effect))
    return Recorded(bounce_id, r.kind.value, delivery is not None, effect,
                    delivery.event_id if delivery else None, address)


def _act(conn: Connection, incoming: Incoming, delivery: _Delivery | None,
         address: str | None, bounce_id: int, now: datetime, policy: SoftPolicy) -> str:
    """Do what the (just recorded) report says; what was done, in words."""
    r = incoming.report
    if delivery is None or address is None:
        return "unmatched"
    if r.kind is not BounceKind.COMPLAINT and _names_other_address(r, address):
        return "recipient mismatch"  # complaints are often redacted: the token suffices
    effects: list[str] = []
    move = quarantine = deny = False
    if r.kind is BounceKind.HARD:
        move = quarantine = True
    elif r.kind is BounceKind.SOFT:
        move = r.action == "failed"
        count = _soft_count(conn, address, now - policy.window)  # this one included
        quarantine = count >= policy.limit
        effects.append(f"soft {count}/{policy.limit}")
    elif r.kind is BounceKind.COMPLAINT:
        deny = True
    else:
        return "recorded"
    if move:
        moved = _fail_event(conn, delivery, _reason(r, incoming.source), r, now)
        effects.append("deliveryFailed" if moved else "delivery marked failed")
    _log_delivery(conn, delivery, r, incoming.source, now)
    if quarantine or deny:
        source = "complaint" if deny else "bounce"
        reason = (f"complaint ({r.feedback_type or 'abuse'}, {incoming.source})" if deny
                  else _reason(r, incoming.source))
        entry = put_quarantine_in(conn, AddressKind.EMAIL, address, reason, source, now,
                                  bounce_id)
        listed = "quarantined" if entry.source == "bounce" else "denylisted"
        effects.append(listed if entry.source == source else f"already {listed}")
    return ", ".join(effects)


def _row(incoming: Incoming, delivery: _Delivery | None, address: str | None,
         now: datetime) -> dict[str, Any]:
    r = incoming.report
    return {
        "source": incoming.source, "format": r.source[:16], "kind": r.kind.value,
        "matched": delivery is not None, "effect": "",
        "event_id": delivery.event_id if delivery else incoming.event_id,
        "delivery_id": delivery.id if delivery else None, "attempt": incoming.attempt,
        "address": address, "recipient": r.recipient[:320], "status": r.status[:16],
        "action": r.action[:40], "diagnostic": r.diagnostic,
        "return_path": r.return_path[:320], "message_id": r.message_id[:255],
        "provider_id": r.provider_id[:255], "feedback_type": r.feedback_type[:40],
        "dedupe_key": incoming.dedupe_key, "reported_at": r.reported_at, "created_at": now,
    }


def _log_delivery(conn: Connection, delivery: _Delivery, r: BounceReport, source: str,
                  now: datetime) -> None:
    """A delivery-log row for the report (``bounced`` or ``complaint``): the remote
    server's words in the event's attempts, next to the send they are about."""
    outcome = "complaint" if r.kind is BounceKind.COMPLAINT else "bounced"
    code = int(r.status[0]) * 100 + 50 if r.status[:1] in {"4", "5"} else None
    conn.execute(insert(delivery_log).values(
        event_id=delivery.event_id, template_version_id=delivery.template_version_id,
        channel="email", address=delivery.address, outcome=outcome, response_code=code,
        response_text=_reason(r, source)[:2000], message_id=delivery.message_id,
        duration_ms=0, is_proof=False, connector=delivery.connector,
        provider_id=delivery.provider_id, created_at=now))


def _fail_event(conn: Connection, delivery: _Delivery, reason: str, r: BounceReport,
                now: datetime) -> bool:
    """The delivery marked failed; a ``processed`` event moved to ``deliveryFailed`` with
    a status-history entry and a webhook notification.  Whether the event moved."""
    conn.execute(update(delivery_log).where(delivery_log.c.id == delivery.id)
                 .values(receipt="failed", receipt_at=now))
    processed = EventStatus.PROCESSED.value
    failed = EventStatus.DELIVERY_FAILED.value
    moved = conn.execute(
        update(events).where(events.c.id == delivery.event_id, events.c.status == processed)
        .values(status=failed, last_error=reason, updated_at=now)).rowcount
    if not moved:
        return False
    conn.execute(insert(event_status_log).values(
        event_id=delivery.event_id, status=failed, reason=reason, created_at=now))
    webhook_store.enqueue(conn, [webhook_store.Notification(failed, delivery.event_id, {
        "status": failed, "reason": reason, "channel": "email", "address": delivery.address,
        "connector": delivery.connector, "bounce": {"kind": r.kind.value, "status": r.status},
    }, now)])
    return True


# ---------------------------------------------------------------- reads


def list_bounces(db: Database, since: datetime | None = None, limit: int = 100,
                 event_id: int | None = None) -> list[BounceRow]:
    """Received bounces, newest first."""
    query = select(bounces).order_by(bounces.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(bounces.c.created_at >= since)
    if event_id is not None:
        query = query.where(bounces.c.event_id == event_id)
    with db.connect() as conn:
        return [_bounce(row) for row in conn.execute(query)]


def get_bounces(db: Database, ids: set[int]) -> dict[int, BounceRow]:
    """Bounces by id (the quarantine entries' causes)."""
    if not ids:
        return {}
    with db.connect() as conn:
        rows = conn.execute(select(bounces).where(bounces.c.id.in_(sorted(ids))))
        return {row.id: _bounce(row) for row in rows}


def _bounce(row: Any) -> BounceRow:
    m = row._mapping
    return BounceRow(**{name: m[name] for name in BounceRow.__dataclass_fields__})
