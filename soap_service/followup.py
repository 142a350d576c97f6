"""Follow-up messages: due rules -> one child event per parent, through the normal pipeline.

A rule (``msgcenter followup add``) says: for events of type T sent at least ``after`` ago
whose message was not opened (or not clicked) by a person — machine hits do not count —
send template F with the **same ctx**.  :func:`tick` is the scheduled job: it creates the
child events (status ``pending``, ``parent_id`` and ``followup_rule_id`` set, the event
type of template F) and the dispatcher sends them like any other event.  The unique
constraint ``uq_events_followup_once`` makes "at most one follow-up per parent and rule"
hold even with several workers running the job at once.  Only events received after the
rule was created are followed up, so adding a rule never mails the whole history, and a
message becomes too old for its follow-up :data:`CATCH_UP` after it became due.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from soap_service import clock, wakeup
from soap_service.catalog import get_event_type
from soap_service.config import Settings
from soap_service.durations import parse_duration
from soap_service.errors import NotFound, ValidationFailed
from soap_service.models import WISHED_CHANNEL_OF, Channel, FollowupRule
from soap_service.store import Database
from soap_service.store import followups as store

log = logging.getLogger(__name__)

CONDITIONS = ("not-opened", "not-clicked")
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")  # as catalog names
BATCH = 500  # parents examined per rule and transaction
# messages sent longer than this before they became due are not followed up any more
# (the job catches up after an outage this long; it never rescans the whole history)
CATCH_UP = timedelta(days=7)


def add_rule(db: Database, name: str, event_type: str, template: str, after: str,
             condition: str, channel: str | None = None) -> FollowupRule:
    """Create a rule; the event type and the template must exist (the template may be
    published later)."""
    if not _RULE_NAME.match(name or ""):
        raise ValidationFailed(f"invalid rule name {name!r}: use letters, digits, '_', '.', "
                               "'-' (at most 64 characters)")
    if get_event_type(db, event_type) is None:
        raise NotFound(f"event type {event_type!r} does not exist")
    if condition not in CONDITIONS:
        raise ValidationFailed(f"condition must be one of {', '.join(CONDITIONS)}")
    after_seconds = parse_duration(after)
    if after_seconds <= 0:
        raise ValidationFailed("--after must be positive")
    target = store.template_target(db, template)
    if target is None:
        raise NotFound(f"template {template!r} does not exist")
    chosen = channel or target[1]
    if chosen not in WISHED_CHANNEL_OF:
        raise ValidationFailed(f"unknown channel {chosen!r}")
    if chosen != target[1]:
        raise ValidationFailed(f"template {template!r} is a {target[1]} template: "
                               f"--channel must be {target[1]} (or left out)")
    return store.insert_rule(db, name=name, event_type=event_type, template=template,
                             after_seconds=after_seconds, condition=condition,
                             channel=chosen, at=clock.utcnow())


def list_rules(db: Database) -> list[FollowupRule]:
    return store.list_rules(db)


def set_enabled(db: Database, name: str, enabled: bool) -> None:
    if not store.set_rule_enabled(db, name, enabled):
        raise NotFound(f"follow-up rule {name!r} does not exist")


def tick(db: Database, settings: Settings | None = None) -> int:
    """The scheduled job: create every due follow-up event; returns how many were created."""
    rules = store.list_rules(db, enabled_only=True)
    created = sum(_run_rule(db, rule) for rule in rules)
    if created:
        wakeup.notify_after_commit(db)
    return created


def _run_rule(db: Database, rule: FollowupRule) -> int:
    created = 0
    while True:
        now = clock.utcnow()
        target = store.template_target(db, rule.template)
        if target is None:
            log.warning("followup.template_missing rule=%s", rule.name)
            return created
        sent_before = now - timedelta(seconds=rule.after_seconds)
        pairs = store.create_followups(
            db, rule, event_type=target[0], wished_channel=WISHED_CHANNEL_OF[Channel(rule.channel)],
            sent_before=sent_before, sent_after=sent_before - CATCH_UP, limit=BATCH, now=now)
        made = [(parent, child) for parent, child in pairs if child is not None]
        for parent, child in made:
            log.info("followup.created rule=%s parent_id=%s event_id=%s",
                     rule.name, parent, child)
        created += len(made)
        if len(pairs) < BATCH or not made:
            return created
