"""Profile storage (SPEC §10): profiles, their opt-outs, erasure, fatigue counting.

Every function runs in a transaction of its own and returns ``models`` values.  Values
arrive validated (``soap_service.profiles``): column name -> value, JSON fields already
encoded.  Fatigue counting takes the profile row's lock (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite has one writer at a time) before counting and recording a send, so
two workers can never both let the N+1th message of a period through.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from soap_service.errors import Conflict, NotFound
from soap_service.models import Channel, FatigueRule, Lane, Profile
from soap_service.store import Database, dialect
from soap_service.store import webhooks as webhook_store
from soap_service.tables import (
    delivery_log,
    events,
    exclusion_log,
    fatigue_rules,
    profile_sends,
    profiles,
    tracking_log,
)

UNSUBSCRIBED_COLUMN = {Channel.EMAIL: "unsubscribed_email", Channel.SMS: "unsubscribed_sms",
                       Channel.PUSH: "unsubscribed_push"}
# the columns an import or a `set` may write (the opt-outs are written by unsubscribe only)
MAX_PERIOD_DAYS = 366  # the longest period a fatigue rule may have (fatigue.add_rule)
DATA_COLUMNS = ("email", "mobile_phone", "push_tokens", "language", "country", "first_name",
                "last_name", "attributes")


def _profile(row: Any) -> Profile:
    m = row._mapping  # one mapping: a Row's attribute look-ups cost more (the worker's rounds)
    unsubscribed = {ch: m[col] for ch, col in UNSUBSCRIBED_COLUMN.items()
                    if m[col] is not None}
    tokens, attributes = m["push_tokens"], m["attributes"]
    return Profile(
        id=m["id"], external_id=m["external_id"], email=m["email"],
        mobile_phone=m["mobile_phone"],
        push_tokens=tuple(json.loads(tokens)) if tokens and tokens != "[]" else (),
        language=m["language"], country=m["country"], first_name=m["first_name"],
        last_name=m["last_name"],
        attributes=json.loads(attributes) if attributes and attributes != "{}" else {},
        unsubscribed=unsubscribed, created_at=m["created_at"], updated_at=m["updated_at"])


def _get_in(conn: Connection, external_id: str) -> Profile | None:
    row = conn.execute(select(profiles).where(profiles.c.external_id == external_id)).first()
    return _profile(row) if row else None


def get_profile(db: Database, external_id: str) -> Profile | None:
    with db.connect() as conn:
        return _get_in(conn, external_id)


def find_by_email(db: Database, email: str) -> Profile | None:
    """The profile with this (lower-cased) email; several: the one updated last."""
    with db.connect() as conn:
        row = conn.execute(select(profiles).where(profiles.c.email == email)
                           .order_by(profiles.c.updated_at.desc(), profiles.c.id.desc())
                           .limit(1)).first()
        return _profile(row) if row else None


def get_profiles(db: Database, external_ids: Sequence[str]) -> dict[str, Profile]:
    """The profiles with these external ids (one query per 500): the worker's round."""
    found: dict[str, Profile] = {}
    wanted = sorted(set(external_ids))
    with db.connect() as conn:
        for start in range(0, len(wanted), 500):
            rows = conn.execute(select(profiles).where(
                profiles.c.external_id.in_(wanted[start:start + 500])))
            found.update((r.external_id, _profile(r)) for r in rows)
    return found


def find_by_emails(db: Database, emails: Sequence[str]) -> dict[str, Profile]:
    """The profile of each (lower-cased) email; several: the one updated last."""
    found: dict[str, Profile] = {}
    wanted = sorted(set(emails))
    with db.connect() as conn:
        for start in range(0, len(wanted), 500):
            rows = conn.execute(select(profiles).where(
                profiles.c.email.in_(wanted[start:start + 500]))
                .order_by(profiles.c.updated_at, profiles.c.id))
            found.update((r.email, _profile(r)) for r in rows)  # the last one wins
    return found


def list_profiles(db: Database, *, limit: int = 100, after: str | None = None,
                  email: str | None = None) -> list[Profile]:
    """Profiles by external id, ``limit`` from after the external id ``after``."""
    query = select(profiles).order_by(profiles.c.external_id).limit(limit)
    if after is not None:
        query = query.where(profiles.c.external_id > after)
    if email is not None:
        query = query.where(profiles.c.email == email)
    with db.connect() as conn:
        return [_profile(r) for r in conn.execute(query)]


def count_profiles(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(profiles)).scalar_one())


def put_profile(db: Database, external_id: str, values: dict[str, Any],
                now: datetime) -> tuple[Profile, bool]:
    """Create the profile or change the given columns of it; (profile, created)."""
    unknown = set(values) - set(DATA_COLUMNS)
    if unknown:  # pragma: no cover - the caller validates
        raise ValueError(f"not profile columns: {sorted(unknown)}")
    with db.begin() as conn:
        exists = conn.execute(select(profiles.c.id).where(
            profiles.c.external_id == external_id).with_for_update()).first()
        if exists:
            conn.execute(update(profiles).where(profiles.c.id == exists.id)
                         .values(**values, updated_at=now))
        else:
            conn.execute(insert(profiles).values(external_id=external_id, **values,
                                                 created_at=now, updated_at=now))
        profile = _get_in(conn, external_id)
        assert profile is not None
        return profile, exists is None


def import_rows(db: Database, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                stamp: datetime) -> tuple[int, int, list[int]]:
    """Upsert one batch of an import (rows carry ``external_id`` and ``columns``; all rows
    of one import share ``stamp`` as their update time).  A row whose external id an
    earlier batch of the same import wrote (its profile's update time is ``stamp``) is a
    duplicate: not written, its index returned.  Returns (inserted, updated, duplicates)."""
    ids = [r["external_id"] for r in rows]
    with db.begin() as conn:
        seen = {r.external_id: r.updated_at for r in conn.execute(
            select(profiles.c.external_id, profiles.c.updated_at)
            .where(profiles.c.external_id.in_(ids)))}
        duplicates = [i for i, r in enumerate(rows) if seen.get(r["external_id"]) == stamp]
        fresh = [dict(r, created_at=stamp, updated_at=stamp)
                 for i, r in enumerate(rows) if seen.get(r["external_id"]) != stamp]
        if fresh:
            # an executemany of one cached statement: a multi-row VALUES statement is
            # compiled afresh for every batch (measured 5-10x the CPU per row)
            stmt = dialect.upsert(profiles, conn, "external_id", [*columns, "updated_at"])
            conn.execute(stmt, fresh)
    updated = sum(1 for r in fresh if r["external_id"] in seen)
    return len(fresh) - updated, updated, duplicates


def set_unsubscribed(db: Database, external_id: str, channel: Channel,
                     at: datetime | None, event_id: int | None = None) -> Profile:
    """Record an opt-out of ``channel`` (``at``), or a new opt-in (None).  An opt-out
    already recorded keeps its first time.  A new opt-out writes an ``unsubscribed``
    webhook notification (about ``event_id``, the message whose link was used) in the
    same transaction."""
    column = profiles.c[UNSUBSCRIBED_COLUMN[channel]]
    with db.begin() as conn:
        profile = _get_in(conn, external_id)
        if profile is None:
            raise NotFound(f"no profile {external_id!r}")
        stmt = update(profiles).where(profiles.c.id == profile.id)
        if at is not None:
            stmt = stmt.where(column.is_(None))
        changed = conn.execute(stmt.values(
            {column: at, profiles.c.updated_at: at or profile.updated_at})).rowcount
        if changed and at is not None:
            webhook_store.enqueue(conn, [webhook_store.Notification(
                "unsubscribed", event_id, {"channel": channel.value}, at)])
        fresh = _get_in(conn, external_id)
        assert fresh is not None
        return fresh


def delete_profile(db: Database, external_id: str) -> bool:
    with db.begin() as conn:
        return bool(conn.execute(delete(profiles)
                                 .where(profiles.c.external_id == external_id)).rowcount)


def erase_profile(db: Database, external_id: str) -> dict[str, int]:
    """Delete the profile and blank the personal data of its events and their logs
    (addresses, ids, ctx, provider answers, tracking IPs and agents), keeping the rows
    (statuses, counts, times).  Its events: those naming its external id, email or
    mobile number, and those its fatigue counts name.  Returns what was changed."""
    with db.begin() as conn:
        profile = _get_in(conn, external_id)
        if profile is None:
            raise NotFound(f"no profile {external_id!r}")
        match = [events.c.external_id == profile.external_id,
                 events.c.id.in_(select(profile_sends.c.event_id)
                                 .where(profile_sends.c.profile_id == profile.id))]
        if profile.email:
            match.append(func.lower(events.c.email) == profile.email)
        if profile.mobile_phone:
            match.append(events.c.mobile_phone == profile.mobile_phone)
        ids = [r.id for r in conn.execute(select(events.c.id).where(or_(*match)))]
        counts = {"events": len(ids), "deliveries": 0, "exclusions": 0, "tracking": 0}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            conn.execute(update(events).where(events.c.id.in_(chunk)).values(
                email=None, mobile_phone=None, external_id=None, registration_token=None,
                attributes="{}", ctx_xml="<ctx/>", ctx_json=None, last_error=None))
            counts["deliveries"] += conn.execute(
                update(delivery_log).where(delivery_log.c.event_id.in_(chunk))
                .values(address=None, response_text=None)).rowcount
            counts["exclusions"] += conn.execute(
                update(exclusion_log).where(exclusion_log.c.event_id.in_(chunk))
                .values(address=None)).rowcount
            counts["tracking"] += conn.execute(
                update(tracking_log).where(tracking_log.c.event_id.in_(chunk))
                .values(ip=None, user_agent=None, url=None)).rowcount
        conn.execute(delete(profiles).where(profiles.c.id == profile.id))
        return counts


# ---------------------------------------------------------------- fatigue


def _rule(row: Any) -> FatigueRule:
    return FatigueRule(name=row.name, max_count=row.max_count,
                       period_seconds=row.period_seconds,
                       channel=Channel(row.channel) if row.channel else None,
                       lane=Lane(row.lane) if row.lane else None,
                       exempt_critical=bool(row.exempt_critical), id=row.id,
                       created_at=row.created_at)


def insert_rule(db: Database, rule: FatigueRule, now: datetime) -> FatigueRule:
    with db.begin() as conn:
        if conn.execute(select(fatigue_rules.c.id)
                        .where(fatigue_rules.c.name == rule.name)).first():
            raise Conflict(f"fatigue rule {rule.name!r} already exists")
        conn.execute(insert(fatigue_rules).values(
            name=rule.name, max_count=rule.max_count, period_seconds=rule.period_seconds,
            channel=rule.channel.value if rule.channel else None,
            lane=rule.lane.value if rule.lane else None,
            exempt_critical=rule.exempt_critical, created_at=now))
        row = conn.execute(select(fatigue_rules).where(fatigue_rules.c.name == rule.name)).one()
        return _rule(row)


def list_rules(db: Database) -> list[FatigueRule]:
    with db.connect() as conn:
        return [_rule(r) for r in conn.execute(select(fatigue_rules)
                                               .order_by(fatigue_rules.c.name))]


def delete_rule(db: Database, name: str) -> None:
    with db.begin() as conn:
        if not conn.execute(delete(fatigue_rules).where(fatigue_rules.c.name == name)).rowcount:
            raise NotFound(f"no fatigue rule {name!r}")


def reserve_send(db: Database, profile_id: int, event_id: int, channel: Channel, lane: Lane,
                 rules: Sequence[FatigueRule], now: datetime) -> FatigueRule | None:
    """Count this event's message against the profile's rules: the first rule it would
    break (nothing recorded), or None (recorded; an event already recorded -- a retry --
    passes and is not counted twice)."""
    with db.begin() as conn:
        locked = conn.execute(select(profiles.c.id).where(profiles.c.id == profile_id)
                              .with_for_update()).first()
        if locked is None:  # erased meanwhile: nothing to count against
            return None
        if conn.execute(select(profile_sends.c.id).where(
                profile_sends.c.profile_id == profile_id,
                profile_sends.c.event_id == event_id)).first():
            return None
        # counts older than the longest period a rule may have are of no use: pruned here,
        # under the lock, so the table stays bounded without a job of its own
        conn.execute(delete(profile_sends).where(
            profile_sends.c.profile_id == profile_id,
            profile_sends.c.created_at < now - timedelta(days=MAX_PERIOD_DAYS)))
        for rule in rules:
            query = select(func.count()).select_from(profile_sends).where(
                profile_sends.c.profile_id == profile_id,
                profile_sends.c.created_at > now - timedelta(seconds=rule.period_seconds))
            if rule.channel is not None:
                query = query.where(profile_sends.c.channel == rule.channel.value)
            if rule.lane is not None:
                query = query.where(profile_sends.c.lane == rule.lane.value)
            if rule.exempt_critical:
                query = query.where(profile_sends.c.lane != Lane.CRITICAL.value)
            if conn.execute(query).scalar_one() >= rule.max_count:
                return rule
        conn.execute(insert(profile_sends).values(
            profile_id=profile_id, event_id=event_id, channel=channel.value,
            lane=lane.value, created_at=now))
        return None
