"""Fatigue rules (SPEC §10): at most N messages per profile per period, per channel or lane.

A rule counts the messages let through to a profile (``profile_sends``, one row per
event) within its period -- of its channel and lane when it names them.  Events of the
``critical`` lane are exempt unless the rule was added with ``--include-critical``: they
are neither held back nor counted by it.  The count and the new row are written under
the profile row's lock (``store.profiles.reserve_send``), so workers running side by
side on PostgreSQL never both let the N+1th message through.  A message counts from the
moment the worker prepares it (a later failure does not give it back; a retry of the
same event is not counted twice).

The rules are read through the catalog's short cache: adding or removing one takes
effect in other processes within ``catalog.CACHE_SECONDS``.
"""

from __future__ import annotations

import logging
import re

from soap_service import clock
from soap_service.cache import TtlCache
from soap_service.errors import ValidationFailed
from soap_service.models import Channel, FatigueRule, Lane, Profile
from soap_service.store import Database
from soap_service.store import profiles as store

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_cache: TtlCache[list[FatigueRule]] = TtlCache(2.0)


def add_rule(db: Database, rule: FatigueRule) -> FatigueRule:
    if not _NAME.match(rule.name or ""):
        raise ValidationFailed(f"invalid rule name {rule.name!r}: use letters, digits, '_', '.', "
                               "'-'")
    if rule.max_count < 1:
        raise ValidationFailed("--max must be at least 1")
    if not 60 <= rule.period_seconds <= store.MAX_PERIOD_DAYS * 86400:
        raise ValidationFailed("--per must be between 1m and 366d")
    stored = store.insert_rule(db, rule, clock.utcnow())
    _cache.clear()
    log.info("fatigue.rule_added name=%s", rule.name)
    return stored


def list_rules(db: Database) -> list[FatigueRule]:
    return store.list_rules(db)


def remove_rule(db: Database, name: str) -> None:
    store.delete_rule(db, name)
    _cache.clear()
    log.info("fatigue.rule_removed name=%s", name)


def clear_cache() -> None:
    _cache.clear()


def rules(db: Database) -> list[FatigueRule]:
    """The rules, cached briefly (the worker asks for every profile-based event)."""
    return _cache.get_or_load(db, lambda: store.list_rules(db))


def check(db: Database, event_id: int, profile: Profile, channel: Channel,
          lane: Lane) -> str | None:
    """Count this message against the rules; the exclusion reason when one holds it
    back (nothing counted then), else None (counted)."""
    applicable = [r for r in rules(db) if r.applies(channel, lane)]
    if not applicable:
        return None
    broken = store.reserve_send(db, profile.id, event_id, channel, lane, applicable,
                                clock.utcnow())
    if broken is None:
        return None
    return (f"fatigue rule {broken.name}: at most {broken.max_count} per "
            f"{_period(broken.period_seconds)}")


def _period(seconds: int) -> str:
    from soap_service.durations import format_duration

    return format_duration(seconds)
