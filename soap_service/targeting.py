"""Targeting (SPEC §10): the pipeline's steps for profile-based events.

:func:`find_profile` runs before the address is looked up: for an event of a
profile-based type it finds the profile (by the event's ``externalId`` or ``email``,
as the type says); none -> ``targetingFailed`` (final, with the reason) or, when the
type says ``--missing-profile send``, the event goes on with its own data.  A profile
that opted out of the event's channel ends the event ``ignored`` with an exclusion-log
row ``unsubscribed``.  The event's address, when it has none, comes from the profile
(email, mobile phone, first push token); the event carries the profile (templates read
``profile.*``) and its signed unsubscribe link on (``unsubscribe``).

:func:`check_fatigue` runs once the event is routed (only a message that would go out
counts): a fatigue rule that holds the message back ends the event ``ignored`` with an
exclusion-log row naming the rule (``fatigue``).

Event-based types (the default) pass both steps untouched, at the cost of a dict look-up.
No SQL here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from soap_service import clock, exclusions, fatigue, profiles, unsubscribe
from soap_service.models import (
    AddressKind,
    Channel,
    Event,
    EventStatus,
    MissingProfile,
    Outcome,
    Profile,
    ReconcileOn,
    Targeting,
)
from soap_service.store import exclusions as store_exclusions
from soap_service.store import profiles as store_profiles

if TYPE_CHECKING:
    from soap_service.steps import Job
    from soap_service.worker import Dispatcher

log = logging.getLogger(__name__)
UNSUBSCRIBED = "unsubscribed"


def _final(job: Job, status: EventStatus, reason: str) -> Outcome:
    e = job.event
    return Outcome(e.id, status, reason, error_count=e.error_count, process_at=e.process_at)


def _exclude(d: Dispatcher, job: Job, reason: str) -> Outcome:
    """``ignored``, with the exclusion-log row saying why."""
    e = job.event
    address = e.address
    store_exclusions.insert_exclusion(
        d.db, e.id, exclusions.normalise_address(address, e.address_kind) if address else None,
        reason, clock.utcnow())
    log.info("event.excluded event_id=%s reason=%s", e.id, reason.split(":", 1)[0])
    return _final(job, EventStatus.IGNORED, reason)


def profile_address(profile: Profile, channel: Channel) -> str | None:
    if channel is Channel.SMS:
        return profile.mobile_phone
    if channel is Channel.PUSH:
        return profile.push_tokens[0] if profile.push_tokens else None
    return profile.email


def with_profile(event: Event, profile: Profile, unsubscribe_url: str = "") -> Event:
    """The event joined to its profile: the profile's address when the event has none."""
    changes: dict[str, object] = {"profile": profile, "unsubscribe_url": unsubscribe_url}
    if not event.address:
        field = {Channel.EMAIL: "email", Channel.SMS: "mobile_phone",
                 Channel.PUSH: "registration_token"}[event.channel]
        changes[field] = profile_address(profile, event.channel)
    # a copy with these fields set: dataclasses.replace re-runs __init__ over the Event's
    # thirty fields (60 µs, a tenth of the worker's time per event); Event has no
    # __post_init__ nor slots, so copying its __dict__ makes the same value
    joined = object.__new__(Event)
    joined.__dict__.update(event.__dict__, **changes)
    return joined


def _key(event: Event, reconcile_on: ReconcileOn) -> str:
    if reconcile_on is ReconcileOn.EMAIL:
        return (event.email or "").strip().lower()
    return (event.external_id or "").strip()


def _answer(event: Event, reconcile_on: ReconcileOn,
            found: Profile | None) -> tuple[Profile | None, str]:
    """The lookup's answer: the profile, or None and why."""
    if found is not None:
        return found, ""
    if reconcile_on is ReconcileOn.EMAIL:
        return None, ("no profile has the event's email" if event.email
                      else "the event has no email to find its profile by")
    if not event.external_id:
        return None, "the event has no externalId to find its profile by"
    return None, f"no profile with externalId {event.external_id!r}"


def lookup(d: Dispatcher, event: Event, reconcile_on: ReconcileOn) -> tuple[Profile | None, str]:
    """The event's profile, or None and why (one query)."""
    key = _key(event, reconcile_on)
    found = None
    if key:
        by_email = reconcile_on is ReconcileOn.EMAIL
        found = profiles.find(d.db, email=key) if by_email else profiles.find(d.db,
                                                                               external_id=key)
    return _answer(event, reconcile_on, found)


def preload(d: Dispatcher, jobs: Sequence[Job]) -> None:
    """Look up the profiles of a round's profile-based events at once (a query per kind
    of key, not one per event), and which of the addresses they give are quarantined or
    denylisted (the round's ``listed`` set grows); :func:`find_profile` then reads the
    answer from the job.  Rounds without profile-based events cost nothing."""
    wanted = [j for j in jobs if j.event_type.targeting is Targeting.PROFILE]
    if not wanted:
        return
    ids = [_key(j.event, ReconcileOn.EXTERNAL_ID) for j in wanted
           if j.event_type.reconcile_on is ReconcileOn.EXTERNAL_ID]
    emails = [_key(j.event, ReconcileOn.EMAIL) for j in wanted
              if j.event_type.reconcile_on is ReconcileOn.EMAIL]
    by_id = store_profiles.get_profiles(d.db, [k for k in ids if k])
    by_email = store_profiles.find_by_emails(d.db, [k for k in emails if k])
    extra: list[tuple[AddressKind, str | None]] = []
    for job in wanted:
        reconcile_on = job.event_type.reconcile_on
        found = (by_email if reconcile_on is ReconcileOn.EMAIL else by_id).get(
            _key(job.event, reconcile_on))
        job.profile_lookup = _answer(job.event, reconcile_on, found)
        if found is not None and not job.event.address:
            extra.append((job.event.address_kind, profile_address(found, job.event.channel)))
    if extra:
        wanted[0].listed.update(exclusions.listed_addresses(d.db, extra))  # shared by the round


def find_profile(d: Dispatcher, job: Job) -> Outcome | None:
    """Join a profile-based event to its profile (see the module docstring)."""
    et = job.event_type
    if et.targeting is not Targeting.PROFILE:
        return None
    e = job.event
    profile, why = job.profile_lookup or lookup(d, e, et.reconcile_on)
    if profile is None:
        if et.missing_profile is MissingProfile.FAIL:
            return _final(job, EventStatus.TARGETING_FAILED, why)
        log.info("targeting.without_profile event=%s", e.id)
        return None
    if e.channel in profile.unsubscribed:
        job.event = with_profile(e, profile)
        return _exclude(d, job, UNSUBSCRIBED)
    url = unsubscribe.url_for(d.settings, profile, e.channel, e.id)
    job.event = with_profile(e, profile, url)
    if job.profile_lookup is None and not e.address and job.event.address:
        # not among the round's listed addresses (preload adds them for a whole round)
        kind = job.event.address_kind
        job.listed |= exclusions.listed_addresses(d.db, [(kind, job.event.address)])
    return None


def check_fatigue(d: Dispatcher, job: Job) -> Outcome | None:
    """Count the message against the fatigue rules; one that holds it back: ``ignored``."""
    e = job.event
    if e.profile is None:
        return None
    reason = fatigue.check(d.db, e.id, e.profile, e.channel, job.event_type.lane)
    return _exclude(d, job, reason) if reason else None
