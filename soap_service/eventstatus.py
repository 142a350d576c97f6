"""What became of an event, for events from any API: its status page, lists, retry, cancel.

The REST API (``GET /api/v1/events/{plId}``, ``POST .../retry`` and ``.../cancel``), the
suite-compatible ``GET /{ORGANIZATION}/campaign/{href}`` and the CLI (``msgcenter
events show|retry|cancel``) all call these functions, so a retry from the CLI and one from
the API are the same move.  Cancelling ends an event ``ignored`` -- the SPEC's status for
"not sent on purpose" -- with an exclusion-log row giving the reason.  No SQL here.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soap_service import clock, wakeup
from soap_service.config import Settings
from soap_service.errors import InvalidState, NotFound, ValidationFailed
from soap_service.models import (
    PLID_SHIFT,
    DeliveryAttempt,
    Event,
    EventStatus,
    Exclusion,
    StatusChange,
    TrackingHit,
    make_plid,
    split_plid,
)
from soap_service.store import Database, eventops
from soap_service.store import events as event_store
from soap_service.store import exclusions as exclusion_store
from soap_service.store import queue as queue_store
from soap_service.store import tracking as tracking_store
from soap_service.store import webhooks as webhook_store

log = logging.getLogger(__name__)

MAX_PAGE = 500
MAX_REASON = 500


@dataclass(frozen=True)
class EventView:
    """Everything known about one event."""

    event: Event
    plid: int
    history: list[StatusChange]  # the receipt first
    attempts: list[DeliveryAttempt]  # delivery-log rows with template name and version
    tracking: list[TrackingHit]
    exclusions: list[Exclusion]
    follow_ups: list[dict[str, Any]]
    webhooks: list[webhook_store.Delivery]


def primary_key(raw: str | int, instance_id: int) -> int:
    """A plId (or, from the CLI, a primary key) -> the primary key; ``NotFound`` for an id
    of another instance or for something that is not an id at all."""
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise NotFound(f"no event {str(raw)[:40]!r} (a plId is a number)") from None
    instance, pk = split_plid(number)
    if number <= 0 or (number >> PLID_SHIFT and instance != instance_id):
        raise NotFound(f"no event {number} (not an id of instance {instance_id})")
    return pk


def get_event(db: Database, pk: int) -> Event:
    event = event_store.get_event(db, pk)
    if event is None:
        raise NotFound("no such event")
    return event


def view(db: Database, settings: Settings, pk: int) -> EventView:
    """The event with its history, attempts, tracking, exclusions, follow-ups, webhooks."""
    event = get_event(db, pk)
    history = ([StatusChange(EventStatus.PENDING.value, "received", event.created_at)]
               if event.created_at else [])
    history += event_store.status_history(db, pk)
    tracking = tracking_store.list_tracking(db, pk, limit=1000)
    excluded = exclusion_store.list_exclusions(db, event_id=pk, limit=1000)
    return EventView(
        event=event, plid=make_plid(settings.instance_id, pk), history=history,
        attempts=queue_store.delivery_attempts(db, pk), tracking=list(reversed(tracking)),
        exclusions=list(reversed(excluded)), follow_ups=eventops.follow_ups(db, pk),
        webhooks=list(reversed(webhook_store.list_deliveries(db, event_id=pk, limit=1000))),
    )


# ---------------------------------------------------------------- lists with a cursor


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"b{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("b"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("invalid cursor (pass the 'next' value of a previous page)"
                               ) from None


def list_page(db: Database, *, status: str | None = None, event_type: str | None = None,
              external_id: str | None = None, since: datetime | None = None,
              until: datetime | None = None, cursor: str | None = None,
              limit: int = 50, address: str | None = None,
              queue: str | None = None) -> tuple[list[Event], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    if status is not None and status not in {s.value for s in EventStatus}:
        raise ValidationFailed(f"unknown status {status[:40]!r} "
                               f"(one of {', '.join(s.value for s in EventStatus)})")
    found = eventops.list_page(
        db, status=status, event_type=event_type, external_id=external_id, since=since,
        until=until, before_id=decode_cursor(cursor) if cursor else None, limit=limit + 1,
        address=address, queue=queue)
    more = len(found) > limit
    page = found[:limit]
    return page, (encode_cursor(page[-1].id) if more else None)


# ---------------------------------------------------------------- moves


def _reason(reason: str | None, default: str) -> str:
    text = " ".join((reason or "").split())
    if len(text) > MAX_REASON:
        raise ValidationFailed(f"a reason is at most {MAX_REASON} characters")
    return text or default


def retry(db: Database, pk: int, *, by: str = "", reason: str | None = None) -> Event:
    """A final failed event (deliveryFailed, routingFailed, targetingFailed, tooOld) back
    to ``pending``, due now; the dispatcher is woken."""
    why = _reason(reason, f"retried by {by}" if by else "retried")
    moved = eventops.requeue(db, pk, clock.utcnow(), why)
    if moved.event is None:
        _refuse(db, pk, "retried", "deliveryFailed, routingFailed, targetingFailed or tooOld")
    wakeup.notify_after_commit(db)
    log.info("event.retried event=%s by=%s", pk, by or "-")
    assert moved.event is not None
    return moved.event


def cancel(db: Database, pk: int, *, by: str = "", reason: str | None = None) -> Event:
    """A pending or paused event ends ``ignored``, with the reason in its status history
    and in the exclusion log."""
    why = _reason(reason, "no reason given")
    text = f"cancelled by {by}: {why}" if by else f"cancelled: {why}"
    moved = eventops.cancel(db, pk, clock.utcnow(), text)
    if moved.event is None:
        _refuse(db, pk, "cancelled", "pending or paused")
    log.info("event.cancelled event=%s by=%s", pk, by or "-")
    assert moved.event is not None
    return moved.event


def _refuse(db: Database, pk: int, verb: str, allowed: str) -> None:
    current = eventops.current_status(db, pk)
    if current is None:
        raise NotFound("no such event")
    raise InvalidState(f"event is {current.value}: only {allowed} events can be {verb}")
