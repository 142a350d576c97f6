"""SQL for tracking, exclusions, quarantine, follow-up rules and purge.

Every query of ``tracking_web``, ``exclusions``, ``followup`` and ``housekeeping`` lives
here (``report``'s are in ``store/reports.py``).  Functions take an open connection (the
caller owns the transaction) and return plain values.  SQLite / PostgreSQL differences
(``ON CONFLICT``) are decided here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from soap_service.errors import Conflict
from soap_service.tables import (
    delivery_log,
    event_status_log,
    event_types,
    events,
    exclusion_log,
    followup_rules,
    quarantine,
    templates,
    tracking_log,
)

FINAL_STATUSES = (
    "processed", "ignored", "deliveryFailed", "routingFailed", "targetingFailed", "tooOld",
)


@dataclass(frozen=True)
class SentDelivery:
    """The latest accepted send of an event (None fields when nothing was sent yet)."""

    delivery_id: int | None
    sent_at: datetime | None


@dataclass(frozen=True)
class TrackingHit:
    id: int
    event_id: int | None
    delivery_id: int | None
    kind: str
    url: str | None
    user_agent: str | None
    ip: str | None
    machine: bool
    created_at: datetime


@dataclass(frozen=True)
class QuarantineEntry:
    address: str
    reason: str
    source: str  # bounce | manual
    created_at: datetime


@dataclass(frozen=True)
class Exclusion:
    id: int
    event_id: int | None
    address: str | None
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class FollowupRule:
    id: int
    name: str
    event_type: str
    template: str
    after_seconds: int
    condition: str  # not-opened | not-clicked
    channel: str
    enabled: bool
    created_at: datetime


# ---------------------------------------------------------------- tracking


def sent_delivery(conn: Connection, event_id: int) -> SentDelivery | None:
    """The event's latest accepted delivery; None when the event itself no longer exists."""
    if conn.execute(select(events.c.id).where(events.c.id == event_id)).first() is None:
        return None
    row = conn.execute(
        select(delivery_log.c.id, delivery_log.c.created_at)
        .where(delivery_log.c.event_id == event_id, delivery_log.c.outcome == "sent")
        .order_by(delivery_log.c.id.desc())
        .limit(1)
    ).first()
    return SentDelivery(row.id, row.created_at) if row else SentDelivery(None, None)


def insert_tracking(conn: Connection, *, event_id: int, delivery_id: int | None, kind: str,
                    url: str | None, user_agent: str | None, ip: str | None, machine: bool,
                    at: datetime) -> None:
    conn.execute(insert(tracking_log).values(
        event_id=event_id, delivery_id=delivery_id, kind=kind, url=url,
        user_agent=(user_agent or "")[:512] or None, ip=(ip or "")[:64] or None,
        machine=machine, created_at=at,
    ))


def list_tracking(conn: Connection, event_id: int | None = None, limit: int = 100,
                  kind: str | None = None, human_only: bool = False) -> list[TrackingHit]:
    """Tracking-log rows, newest first."""
    query = select(tracking_log).order_by(tracking_log.c.id.desc()).limit(limit)
    if event_id is not None:
        query = query.where(tracking_log.c.event_id == event_id)
    if kind is not None:
        query = query.where(tracking_log.c.kind == kind)
    if human_only:
        query = query.where(tracking_log.c.machine.is_(False))
    return [TrackingHit(**row._mapping) for row in conn.execute(query)]


# ---------------------------------------------------------------- quarantine / exclusions


def get_quarantine(conn: Connection, address: str) -> QuarantineEntry | None:
    row = conn.execute(select(quarantine).where(quarantine.c.address == address)).first()
    return _entry(row) if row else None


def _entry(row: Any) -> QuarantineEntry:
    return QuarantineEntry(row.address, row.reason, row.source, row.created_at)


def put_quarantine(conn: Connection, address: str, reason: str, source: str,
                   at: datetime) -> QuarantineEntry:
    """Insert or update an entry; a manual (denylist) entry is never downgraded to bounce."""
    current = get_quarantine(conn, address)
    if current is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(quarantine).values(
                    address=address, reason=reason, source=source, created_at=at))
            return QuarantineEntry(address, reason, source, at)
        except IntegrityError:  # another worker quarantined it just now
            current = get_quarantine(conn, address)
            assert current is not None
    if current.source == "manual" and source != "manual":
        return current
    conn.execute(update(quarantine).where(quarantine.c.address == address)
                 .values(reason=reason, source=source))
    return QuarantineEntry(address, reason, source, current.created_at)


def delete_quarantine(conn: Connection, address: str) -> bool:
    return conn.execute(delete(quarantine).where(quarantine.c.address == address)).rowcount > 0


def list_quarantine(conn: Connection, source: str | None = None,
                    limit: int = 1000) -> list[QuarantineEntry]:
    query = select(quarantine).order_by(quarantine.c.created_at.desc(), quarantine.c.id.desc())
    if source:
        query = query.where(quarantine.c.source == source)
    return [_entry(row) for row in conn.execute(query.limit(limit))]


def insert_exclusion(conn: Connection, event_id: int | None, address: str | None, reason: str,
                     at: datetime) -> None:
    conn.execute(insert(exclusion_log).values(
        event_id=event_id, address=address, reason=reason, created_at=at))


def list_exclusions(conn: Connection, since: datetime | None = None, event_id: int | None = None,
                    limit: int = 100) -> list[Exclusion]:
    query = select(exclusion_log).order_by(exclusion_log.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(exclusion_log.c.created_at >= since)
    if event_id is not None:
        query = query.where(exclusion_log.c.event_id == event_id)
    return [Exclusion(**row._mapping) for row in conn.execute(query)]


# ---------------------------------------------------------------- follow-up rules


def template_target(conn: Connection, name: str) -> tuple[str, str] | None:
    """``(event_type, channel)`` of a template, or None when there is no such template."""
    row = conn.execute(select(templates.c.event_type, templates.c.channel)
                       .where(templates.c.name == name)).first()
    return (row.event_type, row.channel) if row else None


def insert_rule(conn: Connection, *, name: str, event_type: str, template: str,
                after_seconds: int, condition: str, channel: str, at: datetime) -> FollowupRule:
    values = dict(name=name, event_type=event_type, template=template, enabled=True,
                  after_seconds=after_seconds, condition=condition, channel=channel,
                  created_at=at)
    try:
        with conn.begin_nested():
            result = conn.execute(insert(followup_rules).values(**values))
            new_id = result.inserted_primary_key[0]  # type: ignore[index]
    except IntegrityError as exc:
        raise Conflict(f"follow-up rule {name!r} already exists") from exc
    return FollowupRule(id=int(new_id), **values)  # type: ignore[arg-type]


def list_rules(conn: Connection, enabled_only: bool = False) -> list[FollowupRule]:
    query = select(followup_rules).order_by(followup_rules.c.name)
    if enabled_only:
        query = query.where(followup_rules.c.enabled.is_(True))
    return [FollowupRule(**row._mapping) for row in conn.execute(query)]


def set_rule_enabled(conn: Connection, name: str, enabled: bool) -> bool:
    result = conn.execute(update(followup_rules).where(followup_rules.c.name == name)
                          .values(enabled=enabled))
    return result.rowcount > 0


def followup_candidates(conn: Connection, rule: FollowupRule, sent_before: datetime,
                        sent_after: datetime, limit: int) -> list[int]:
    """Ids of events the rule is due for: sent between ``sent_after`` and ``sent_before``,
    received after the rule was created, with no human reaction and no follow-up yet.
    (``created_at`` is bounded too, so the ``(event_type, created_at)`` index applies.)"""
    child = events.alias("child")
    kinds = ("open", "click") if rule.condition == "not-opened" else ("click",)
    reacted = exists().where(
        tracking_log.c.event_id == events.c.id,
        tracking_log.c.kind.in_(kinds),
        tracking_log.c.machine.is_(False),
    )
    already = exists().where(child.c.parent_id == events.c.id,
                             child.c.followup_rule_id == rule.id)
    query = (
        select(events.c.id)
        .where(
            events.c.event_type == rule.event_type,
            events.c.status == "processed",
            events.c.updated_at <= sent_before,
            events.c.updated_at >= sent_after,
            events.c.created_at >= max(rule.created_at, sent_after - (sent_before - sent_after)),
            func.coalesce(events.c.followup_rule_id, 0) != rule.id,
            ~reacted,
            ~already,
        )
        .order_by(events.c.id)
        .limit(limit)
    )
    return [row.id for row in conn.execute(query)]


_COPIED = ("queue", "priority", "email", "mobile_phone", "email_format", "external_id", "origin",
           "language", "country", "registration_token", "mobile_app_uuid", "ctx_xml")


def insert_followup_child(conn: Connection, parent_id: int, rule: FollowupRule, event_type: str,
                          wished_channel: int, at: datetime) -> int | None:
    """Create the follow-up event of ``parent_id`` for ``rule``; None when one exists already."""
    parent = conn.execute(select(events).where(events.c.id == parent_id)).first()
    if parent is None:
        return None
    attributes = json.loads(parent.attributes or "{}")
    attributes.update(type=event_type, followup=rule.name, template=rule.template)
    values: dict[str, Any] = {name: getattr(parent, name) for name in _COPIED}
    values.update(
        event_type=event_type, status="pending", wished_channel=wished_channel,
        attributes=json.dumps(attributes), error_count=0, process_at=at, parent_id=parent_id,
        followup_rule_id=rule.id, created_at=at, updated_at=at,
    )
    if conn.dialect.name == "postgresql":
        stmt: Any = pg_insert(events).on_conflict_do_nothing(constraint="uq_events_followup_once")
    else:
        stmt = sqlite_insert(events).on_conflict_do_nothing()
    row = conn.execute(stmt.values(**values).returning(events.c.id)).first()
    if row is None:
        return None
    conn.execute(insert(event_status_log).values(
        event_id=row.id, status="pending", reason=f"follow-up {rule.name} of {parent_id}",
        created_at=at))
    return int(row.id)


# ---------------------------------------------------------------- purge


def retention_by_type(conn: Connection) -> dict[str, int]:
    """Retention in seconds of every declared event type."""
    rows = conn.execute(select(event_types.c.name, event_types.c.retention_seconds))
    return {row.name: int(row.retention_seconds) for row in rows}


def _purgeable(types: Sequence[str], other_than: bool, cutoff: datetime) -> Any:
    """Final events past ``cutoff``; a follow-up waits for its parent to go first (its row
    is what stops the follow-up job from following that parent up once more)."""
    kind = events.c.event_type.not_in(types) if other_than else events.c.event_type.in_(types)
    return and_(kind, events.c.created_at < cutoff, events.c.status.in_(FINAL_STATUSES),
                events.c.parent_id.is_(None))


_EVENT_LOGS = (("tracking_log", tracking_log), ("exclusion_log", exclusion_log),
               ("delivery_log", delivery_log), ("event_status_log", event_status_log))


def count_purgeable(conn: Connection, types: Sequence[str], other_than: bool,
                    cutoff: datetime) -> dict[str, int]:
    """What :func:`purge_batch` would delete for this group, without deleting anything."""
    ids = select(events.c.id).where(_purgeable(types, other_than, cutoff))
    counts = {"events": conn.execute(select(func.count()).select_from(ids.subquery())).scalar_one()}
    for name, table in _EVENT_LOGS:
        counts[name] = conn.execute(
            select(func.count()).select_from(table).where(table.c.event_id.in_(ids))
        ).scalar_one()
    return counts


def purge_batch(conn: Connection, types: Sequence[str], other_than: bool, cutoff: datetime,
                limit: int) -> dict[str, int]:
    """Delete up to ``limit`` expired final events of the group, their logs first."""
    ids = [row.id for row in conn.execute(
        select(events.c.id).where(_purgeable(types, other_than, cutoff))
        .order_by(events.c.id).limit(limit))]
    counts = {name: 0 for name, _ in _EVENT_LOGS}
    if not ids:
        return {"events": 0, **counts}
    for name, table in _EVENT_LOGS:
        counts[name] = conn.execute(delete(table).where(table.c.event_id.in_(ids))).rowcount
    conn.execute(update(events).where(events.c.parent_id.in_(ids)).values(parent_id=None))
    purged = conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount
    return {"events": purged, **counts}


def purge_orphan_logs(conn: Connection, cutoff: datetime, limit: int,
                      dry_run: bool) -> dict[str, int]:
    """Log rows with no event (proofs, already purged events) older than ``cutoff``."""
    counts: dict[str, int] = {}
    for name, table in _EVENT_LOGS[:3]:
        where = and_(table.c.event_id.is_(None), table.c.created_at < cutoff)
        if dry_run:
            counts[name] = conn.execute(
                select(func.count()).select_from(table).where(where)).scalar_one()
            continue
        ids = select(table.c.id).where(where).limit(limit).scalar_subquery()
        counts[name] = conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount
    return counts
