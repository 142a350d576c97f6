"""Queries for webhooks: subscriptions (endpoints), the outbox, deliveries and attempts.

The **outbox** is the durability point: :func:`enqueue` writes one row per change on the
connection of the transaction that makes the change (a status move, a tracking hit), so
a change and its notification commit or roll back together.  It costs nothing when no
subscription wants that kind of change: which kinds are wanted is cached per process for
:data:`WANTED_CACHE_SECONDS` (a new subscription sees changes from then on).
:func:`fan_out` turns outbox rows into one delivery per matching endpoint and deletes
them, in one transaction; :func:`claim_due` leases due deliveries to a sender (``SKIP
LOCKED`` on PostgreSQL) and :func:`record_attempts` stores what the sends did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from soap_service.cache import TtlCache
from soap_service.errors import Conflict, NotFound
from soap_service.models import DEFAULT_WEBHOOK_KINDS
from soap_service.store import Database
from soap_service.tables import (
    events,
    template_versions,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_outbox,
)

WANTED_CACHE_SECONDS = 5.0
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    secret: str
    kinds: frozenset[str]  # empty: the default kinds
    event_types: frozenset[str]  # empty: every type
    enabled: bool
    disabled_reason: str | None
    created_at: datetime

    def wants(self, kind: str, event_type: str | None) -> bool:
        if kind not in (self.kinds or DEFAULT_WEBHOOK_KINDS):
            return False
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True)
class Notification:
    """One change to tell subscribers about; ``data`` is what is known at the change."""

    kind: str
    event_id: int | None
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    event_id: int | None
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EventFacts:
    """What a payload says about the event, read at fan-out (these never change)."""

    event_type: str
    queue: str
    status: str
    wished_channel: int
    email: str | None
    mobile_phone: str | None
    registration_token: str | None
    external_id: str | None


@dataclass(frozen=True)
class NewDelivery:
    endpoint_id: int
    message_id: str
    kind: str
    event_id: int | None
    payload: str


@dataclass(frozen=True)
class Delivery:
    id: int
    endpoint_id: int
    url: str
    secret: str
    message_id: str
    kind: str
    event_id: int | None
    payload: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttemptResult:
    """What one send did, and what follows for its delivery."""

    delivery_id: int
    attempt: int
    response_code: int | None
    response_text: str
    duration_ms: int
    status: str  # the delivery's status after this attempt
    next_attempt_at: datetime | None  # pending: when the next attempt is due
    disable_reason: str | None = None  # 410: the endpoint is disabled


@dataclass(frozen=True)
class Attempt:
    id: int
    delivery_id: int
    attempt: int
    response_code: int | None
    response_text: str | None
    duration_ms: int | None
    created_at: datetime


def _split(raw: str | None) -> frozenset[str]:
    return frozenset(x for x in (raw or "").split(",") if x)


def _endpoint(row: RowMapping) -> Endpoint:
    return Endpoint(id=row["id"], url=row["url"], secret=row["secret"],
                    kinds=_split(row["kinds"]), event_types=_split(row["event_types"]),
                    enabled=row["enabled"], disabled_reason=row["disabled_reason"],
                    created_at=row["created_at"])


# ---------------------------------------------------------------- endpoints


def add_endpoint(db: Database, url: str, secret: str, kinds: frozenset[str],
                 event_types: frozenset[str], now: datetime) -> Endpoint:
    values = {"url": url, "secret": secret, "kinds": ",".join(sorted(kinds)),
              "event_types": ",".join(sorted(event_types)), "enabled": True,
              "created_at": now, "updated_at": now}
    with db.begin() as conn:
        new_id = conn.execute(insert(webhook_endpoints).values(**values)
                              .returning(webhook_endpoints.c.id)).scalar_one()
    forget_wanted(db)
    return Endpoint(int(new_id), url, secret, kinds, event_types, True, None, now)


def list_endpoints(db: Database) -> list[Endpoint]:
    with db.connect() as conn:
        rows = conn.execute(select(webhook_endpoints).order_by(webhook_endpoints.c.id))
        return [_endpoint(r) for r in rows.mappings()]


def get_endpoint(db: Database, endpoint_id: int) -> Endpoint:
    with db.connect() as conn:
        row = conn.execute(select(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id)).mappings().first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return _endpoint(row)


def remove_endpoint(db: Database, endpoint_id: int) -> None:
    """Delete an endpoint with its deliveries and attempts."""
    with db.begin() as conn:
        ids = select(webhook_deliveries.c.id).where(
            webhook_deliveries.c.endpoint_id == endpoint_id)
        conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(ids)))
        conn.execute(delete(webhook_deliveries).where(
            webhook_deliveries.c.endpoint_id == endpoint_id))
        gone = conn.execute(delete(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id)).rowcount
    forget_wanted(db)
    if not gone:
        raise NotFound(f"no webhook endpoint {endpoint_id}")


def set_enabled(db: Database, endpoint_id: int, enabled: bool, now: datetime,
                reason: str | None = None) -> None:
    with db.begin() as conn:
        done = conn.execute(update(webhook_endpoints)
                            .where(webhook_endpoints.c.id == endpoint_id)
                            .values(enabled=enabled, disabled_reason=None if enabled else reason,
                                    updated_at=now)).rowcount
    forget_wanted(db)
    if not done:
        raise NotFound(f"no webhook endpoint {endpoint_id}")


# ---------------------------------------------------------------- the outbox (hot path)

# keyed by engine: the status-change functions that call enqueue() hold a connection only
_wanted: TtlCache[frozenset[str]] = TtlCache(WANTED_CACHE_SECONDS)


def wanted_kinds(conn: Connection) -> frozenset[str]:
    """Kinds some enabled endpoint wants (empty when there is no subscription), re-read
    on ``conn`` at most every :data:`WANTED_CACHE_SECONDS`."""

    def load() -> frozenset[str]:
        stmt = select(webhook_endpoints.c.kinds).where(webhook_endpoints.c.enabled.is_(True))
        kinds: set[str] = set()
        for raw in conn.execute(stmt).scalars():
            kinds |= _split(raw) or DEFAULT_WEBHOOK_KINDS
        return frozenset(kinds)

    return _wanted.get_or_load(conn.engine, load)


def forget_wanted(db: Database) -> None:
    _wanted.pop(db.engine)


def enqueue(conn: Connection, notifications: Sequence[Notification]) -> int:
    """Write the notifications some subscription wants, on the caller's transaction.

    No statement at all when nothing is wanted (the cache answers); one multi-row insert
    otherwise.  Returns how many rows were written.
    """
    if not notifications:
        return 0
    wanted = wanted_kinds(conn)
    rows = [{"kind": n.kind, "event_id": n.event_id,
             "data": json.dumps(n.data, ensure_ascii=False, default=str), "created_at": n.at}
            for n in notifications if n.kind in wanted]
    if rows:
        conn.execute(insert(webhook_outbox), rows)
    return len(rows)


def enqueue_moves(conn: Connection, ids: Sequence[int], status: str, reason: str,
                  now: datetime) -> None:
    """The notifications of events moved together to ``status`` (nothing when unwanted)."""
    if ids and status in wanted_kinds(conn):
        enqueue(conn, [Notification(status, i, {"status": status, "reason": reason}, now)
                       for i in ids])


def outbox_size(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(webhook_outbox)).scalar_one())


# ---------------------------------------------------------------- fan-out

Planner = Callable[[Sequence[OutboxRow], dict[int, EventFacts], dict[int, int],
                    Sequence[Endpoint]], list[NewDelivery]]


def fan_out(db: Database, now: datetime, limit: int, plan: Planner) -> int:
    """Turn up to ``limit`` outbox rows into deliveries (``plan`` decides which and builds
    their payloads) and delete those rows, in one transaction.  Returns rows consumed."""
    picked = select(webhook_outbox).order_by(webhook_outbox.c.id).limit(limit)
    if db.is_postgres:
        picked = picked.with_for_update(skip_locked=True)
    with db.begin() as conn:
        rows = [OutboxRow(r["id"], r["kind"], r["event_id"], json.loads(r["data"] or "{}"),
                          r["created_at"]) for r in conn.execute(picked).mappings()]
        if not rows:
            return 0
        facts = _event_facts(conn, {r.event_id for r in rows if r.event_id is not None})
        version_ids = {int(r.data["templateVersionId"]) for r in rows
                       if r.data.get("templateVersionId")}
        versions = _version_numbers(conn, version_ids)
        endpoints = [_endpoint(r) for r in conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.enabled.is_(True))).mappings()]
        new = plan(rows, facts, versions, endpoints)
        if new:
            conn.execute(insert(webhook_deliveries), [
                {"endpoint_id": d.endpoint_id, "message_id": d.message_id, "kind": d.kind,
                 "event_id": d.event_id, "payload": d.payload, "status": PENDING,
                 "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
                for d in new])
        conn.execute(delete(webhook_outbox).where(webhook_outbox.c.id.in_([r.id for r in rows])))
    return len(rows)


def _event_facts(conn: Connection, ids: set[int]) -> dict[int, EventFacts]:
    if not ids:
        return {}
    c = events.c
    stmt = select(c.id, c.event_type, c.queue, c.status, c.wished_channel, c.email,
                  c.mobile_phone, c.registration_token, c.external_id).where(c.id.in_(ids))
    return {r.id: EventFacts(r.event_type, r.queue, r.status, r.wished_channel, r.email,
                             r.mobile_phone, r.registration_token, r.external_id)
            for r in conn.execute(stmt)}


def _version_numbers(conn: Connection, ids: set[int]) -> dict[int, int]:
    if not ids:
        return {}
    stmt = select(template_versions.c.id, template_versions.c.version).where(
        template_versions.c.id.in_(ids))
    return {r.id: r.version for r in conn.execute(stmt)}


# ---------------------------------------------------------------- deliveries


def _delivery_select() -> Any:
    d, e = webhook_deliveries.c, webhook_endpoints.c
    return select(webhook_deliveries, e.url, e.secret).join(
        webhook_endpoints, e.id == d.endpoint_id)


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"], endpoint_id=row["endpoint_id"], url=row["url"], secret=row["secret"],
        message_id=row["message_id"], kind=row["kind"], event_id=row["event_id"],
        payload=row["payload"], status=row["status"], attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"], last_code=row["last_code"],
        last_error=row["last_error"], created_at=row["created_at"],
        updated_at=row["updated_at"])


def add_delivery(db: Database, new: NewDelivery, now: datetime) -> Delivery:
    """A delivery made outside the outbox (``webhook test``), due now."""
    with db.begin() as conn:
        new_id = conn.execute(insert(webhook_deliveries).values(
            endpoint_id=new.endpoint_id, message_id=new.message_id, kind=new.kind,
            event_id=new.event_id, payload=new.payload, status=PENDING, attempts=0,
            next_attempt_at=now, claimed_until=now, created_at=now, updated_at=now,
        ).returning(webhook_deliveries.c.id)).scalar_one()
        row = conn.execute(_delivery_select().where(
            webhook_deliveries.c.id == new_id)).mappings().one()
    return _delivery(row)


def claim_due(db: Database, now: datetime, limit: int, lease_seconds: float) -> list[Delivery]:
    """Lease up to ``limit`` due deliveries of enabled endpoints, oldest due first."""
    d = webhook_deliveries.c
    due = and_(d.status == PENDING, d.next_attempt_at <= now,
               or_(d.claimed_until.is_(None), d.claimed_until < now))
    ids = (select(d.id).join(webhook_endpoints, webhook_endpoints.c.id == d.endpoint_id)
           .where(due, webhook_endpoints.c.enabled.is_(True))
           .order_by(d.next_attempt_at, d.id).limit(limit))
    if db.is_postgres:
        ids = ids.with_for_update(of=webhook_deliveries, skip_locked=True)
    picked = ids.cte("picked")  # a CTE: a subquery could be re-run, and skip other rows
    until = now + timedelta(seconds=lease_seconds)
    with db.begin() as conn:
        claimed = list(conn.execute(
            update(webhook_deliveries).where(d.id.in_(select(picked.c.id)), due)
            .values(claimed_until=until).returning(d.id)).scalars())
        if not claimed:
            return []
        rows = conn.execute(_delivery_select().where(d.id.in_(claimed))
                            .order_by(d.next_attempt_at, d.id)).mappings()
        return [_delivery(r) for r in rows]


def record_attempts(db: Database, results: Sequence[AttemptResult], now: datetime) -> None:
    """One attempt row per result and the deliveries' new state, in one transaction; an
    endpoint answering 410 is disabled and its other pending deliveries fail."""
    if not results:
        return
    d = webhook_deliveries.c
    with db.begin() as conn:
        conn.execute(insert(webhook_attempts), [
            {"delivery_id": r.delivery_id, "attempt": r.attempt,
             "response_code": r.response_code, "response_text": r.response_text[:500],
             "duration_ms": r.duration_ms, "created_at": now} for r in results])
        for r in results:
            conn.execute(update(webhook_deliveries).where(d.id == r.delivery_id).values(
                status=r.status, attempts=r.attempt, claimed_until=None,
                next_attempt_at=r.next_attempt_at or now, last_code=r.response_code,
                last_error=r.response_text[:500] or None, updated_at=now))
        for r in results:
            if r.disable_reason is None:
                continue
            endpoint_id = conn.execute(select(d.endpoint_id).where(
                d.id == r.delivery_id)).scalar_one()
            conn.execute(update(webhook_endpoints)
                         .where(webhook_endpoints.c.id == endpoint_id)
                         .values(enabled=False, disabled_reason=r.disable_reason,
                                 updated_at=now))
            conn.execute(update(webhook_deliveries)
                         .where(d.endpoint_id == endpoint_id, d.status == PENDING)
                         .values(status=FAILED, claimed_until=None, updated_at=now,
                                 last_error=f"endpoint disabled: {r.disable_reason}"))
    if any(r.disable_reason for r in results):
        forget_wanted(db)


def get_delivery(db: Database, delivery_id: int) -> Delivery:
    with db.connect() as conn:
        row = conn.execute(_delivery_select().where(
            webhook_deliveries.c.id == delivery_id)).mappings().first()
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return _delivery(row)


def list_deliveries(db: Database, *, status: str | None = None, event_id: int | None = None,
                    endpoint_id: int | None = None, limit: int = 100) -> list[Delivery]:
    """Deliveries, newest first."""
    d = webhook_deliveries.c
    stmt = _delivery_select().order_by(d.id.desc()).limit(limit)
    for column, value in ((d.status, status), (d.event_id, event_id),
                          (d.endpoint_id, endpoint_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    with db.connect() as conn:
        return [_delivery(r) for r in conn.execute(stmt).mappings()]


def list_attempts(db: Database, delivery_ids: Sequence[int]) -> list[Attempt]:
    if not delivery_ids:
        return []
    a = webhook_attempts.c
    stmt = (select(webhook_attempts).where(a.delivery_id.in_(list(delivery_ids)))
            .order_by(a.delivery_id, a.id))
    with db.connect() as conn:
        return [Attempt(r["id"], r["delivery_id"], r["attempt"], r["response_code"],
                        r["response_text"], r["duration_ms"], r["created_at"])
                for r in conn.execute(stmt).mappings()]


def replay_delivery(db: Database, delivery_id: int, now: datetime) -> Delivery:
    """Due again now, with the same webhook-id and body; the retry schedule starts over
    (attempt numbers restart at 1; earlier attempts stay in the log).  The endpoint must
    be enabled."""
    d = webhook_deliveries.c
    with db.begin() as conn:
        row = conn.execute(select(d.endpoint_id, webhook_endpoints.c.enabled)
                           .join(webhook_endpoints, webhook_endpoints.c.id == d.endpoint_id)
                           .where(d.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id}")
        if not row.enabled:
            raise Conflict(f"webhook endpoint {row.endpoint_id} is disabled "
                           f"(enable it first: msgcenter webhook enable {row.endpoint_id})")
        conn.execute(update(webhook_deliveries).where(d.id == delivery_id).values(
            status=PENDING, attempts=0, next_attempt_at=now, claimed_until=None,
            updated_at=now))
    return get_delivery(db, delivery_id)
