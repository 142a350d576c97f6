"""Follow-up storage: the rules, and finding and creating the follow-up events they are due.

:func:`create_followups` runs one batch of one rule in one transaction: find the parents
(sent in the window, no human reaction, no follow-up yet), insert their child events
(``store.events.insert_followup_child``; ``uq_events_followup_once`` keeps it to one per
parent and rule across workers) and wake the dispatchers at commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.errors import Conflict
from soap_service.models import FollowupRule
from soap_service.store import Database, dialect
from soap_service.store.events import insert_followup_child
from soap_service.tables import events, followup_rules, templates, tracking_log


def template_target(db: Database, name: str) -> tuple[str, str] | None:
    """``(event_type, channel)`` of a template, or None when there is no such template."""
    with db.connect() as conn:
        row = conn.execute(select(templates.c.event_type, templates.c.channel)
                           .where(templates.c.name == name)).first()
    return (row.event_type, row.channel) if row else None


def insert_rule(db: Database, *, name: str, event_type: str, template: str,
                after_seconds: int, condition: str, channel: str, at: datetime) -> FollowupRule:
    values = dict(name=name, event_type=event_type, template=template, enabled=True,
                  after_seconds=after_seconds, condition=condition, channel=channel,
                  created_at=at)
    try:
        with db.begin() as conn:
            result = conn.execute(insert(followup_rules).values(**values))
            new_id = result.inserted_primary_key[0]  # type: ignore[index]
    except IntegrityError as exc:
        raise Conflict(f"follow-up rule {name!r} already exists") from exc
    return FollowupRule(id=int(new_id), **values)  # type: ignore[arg-type]


def list_rules(db: Database, enabled_only: bool = False) -> list[FollowupRule]:
    query = select(followup_rules).order_by(followup_rules.c.name)
    if enabled_only:
        query = query.where(followup_rules.c.enabled.is_(True))
    with db.connect() as conn:
        return [FollowupRule(**row._mapping) for row in conn.execute(query)]


def set_rule_enabled(db: Database, name: str, enabled: bool) -> bool:
    """Enable or disable a rule; False when there is no such rule."""
    with db.begin() as conn:
        result = conn.execute(update(followup_rules).where(followup_rules.c.name == name)
                              .values(enabled=enabled))
        return result.rowcount > 0


def _candidates(conn: Connection, rule: FollowupRule, sent_before: datetime,
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


def create_followups(db: Database, rule: FollowupRule, *, event_type: str, wished_channel: int,
                     sent_before: datetime, sent_after: datetime, limit: int,
                     now: datetime) -> list[tuple[int, int | None]]:
    """One batch of ``rule``: ``(parent id, child id)`` for up to ``limit`` due parents
    (child None where another worker made it first), in one transaction."""
    with db.begin() as conn:
        parents = _candidates(conn, rule, sent_before, sent_after, limit)
        made = [(parent, insert_followup_child(conn, parent, rule, event_type, wished_channel,
                                               now)) for parent in parents]
        if any(child is not None for _, child in made):
            dialect.wake_dispatcher(conn)
    return made
