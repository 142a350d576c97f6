"""The dispatch pipeline as a list of steps: what happens to one claimed event.

Each prepare step takes ``(dispatcher, job)`` and returns ``None`` to go on, or an
:class:`~soap_service.models.Outcome` that ends the event early (``tooOld``,
``ignored``, ``routingFailed``, ``paused``, ``deliveryFailed``...).  :data:`PREPARE_STEPS`
is the order; to add a step, insert a function there.  :func:`outcome_of_send` turns the
channel's :class:`~soap_service.models.SendResult` into the event's next state and its
delivery-log row (a temporary failure goes back to ``pending`` with backoff, or ends
``tooOld``).  The :class:`~soap_service.worker.Dispatcher` claims, sends and records;
this module builds no SQL and opens no socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from soap_service import clock, exclusions, messages, retry, track
from soap_service.errors import RenderError
from soap_service.models import (
    Channel,
    Delivery,
    EmailMessage,
    Event,
    EventStatus,
    EventType,
    Outcome,
    RenderedMessage,
    SendOutcome,
    SendResult,
    TemplateVersion,
)

if TYPE_CHECKING:
    from soap_service.worker import Dispatcher

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One claimed event on its way through the pipeline."""

    event: Event
    event_type: EventType
    version: TemplateVersion | None = None
    rendered: RenderedMessage | None = None
    message: EmailMessage | None = None
    listed: set[str] = field(default_factory=set)  # quarantined addresses of this round
    rechecked: set[tuple[str, Channel]] = field(default_factory=set)  # shared by a round


Step = Callable[["Dispatcher", Job], Outcome | None]


def _final(job: Job, status: EventStatus, reason: str) -> Outcome:
    e = job.event
    return Outcome(e.id, status, reason, error_count=e.error_count, process_at=e.process_at)


# ---------------------------------------------------------------- prepare steps


def waiting_since(event: Event) -> datetime | None:
    """Where the type's validity starts: receipt, the ``scheduled`` date or a manual retry,
    whichever is latest (an event scheduled for next week is not too old when its date
    comes; a failed event retried by hand gets its validity again)."""
    if event.created_at is None:
        return None
    return max(t for t in (event.created_at, event.scheduled_at, event.requeued_at)
               if t is not None)


def check_too_old(d: Dispatcher, job: Job) -> Outcome | None:
    """Past its ``expiration`` or its type's validity: ``tooOld``, nothing sent."""
    e = job.event
    reason = retry.expired_reason(clock.utcnow(), waiting_since(e), e.expiration_at,
                                  job.event_type.validity_seconds)
    return _final(job, EventStatus.TOO_OLD, reason) if reason else None


def check_channel(d: Dispatcher, job: Job) -> Outcome | None:
    """Only email has a connector so far; an event without an address cannot be sent."""
    if job.event.channel is not Channel.EMAIL:
        return _final(job, EventStatus.DELIVERY_FAILED,
                      f"no connector for channel {job.event.channel.value}")
    if not job.event.address:
        return _final(job, EventStatus.DELIVERY_FAILED, "event has no email address")
    return None


def check_exclusion(d: Dispatcher, job: Job) -> Outcome | None:
    """A quarantined or denylisted address: ``ignored`` (the exclusion log says why)."""
    address = job.event.address
    if not address or exclusions.normalise_address(address) not in job.listed:
        return None  # the common case, answered by one query per round
    reason = exclusions.check_event(d.db, job.event)
    return _final(job, EventStatus.IGNORED, reason) if reason else None


def find_route(d: Dispatcher, job: Job) -> Outcome | None:
    """The latest published, not paused version for the type and channel (or why none)."""
    route = d.route_for(job.event)
    if route.version is None and route.status is EventStatus.PAUSED:
        route = d.recheck_paused(job.event, job.rechecked) or route
    if route.version is None:
        status = route.status or EventStatus.ROUTING_FAILED
        return _final(job, status, route.reason or f"no published template ({status.value})")
    job.version = route.version
    return None


def render_content(d: Dispatcher, job: Job) -> Outcome | None:
    """Personalise the version with the event; a render failure is permanent."""
    assert job.version is not None
    try:
        job.rendered = d.renderer(job.version, job.event)
    except RenderError as exc:
        return _final(job, EventStatus.DELIVERY_FAILED, f"render failed: {exc.message}")
    return None


def track_links(d: Dispatcher, job: Job) -> Outcome | None:
    """HTML part: links rewritten to the signed click redirect, 1x1 open pixel added."""
    assert job.rendered is not None
    job.rendered = track.instrument_message(job.rendered, job.event.id, d.settings)
    return None


def build_email(d: Dispatcher, job: Job) -> Outcome | None:
    """Address the rendered content (``messages.email_message``: ``emailFormat`` 1 sends
    text only, 2 HTML only; no From address fails the event)."""
    assert job.rendered is not None
    try:
        job.message = messages.email_message(
            job.rendered, job.event.address or "", d.message_id(job.event),
            email_format=job.event.email_format, headers={"X-MC-Event-Id": str(job.event.id)})
    except RenderError as exc:
        return _final(job, EventStatus.DELIVERY_FAILED, exc.message)
    return None


# The pipeline before sending, in order; a new step is one more function in this list.
PREPARE_STEPS: list[Step] = [check_too_old, check_channel, check_exclusion, find_route,
                             render_content, track_links, build_email]


# ---------------------------------------------------------------- outcomes of a send


def outcome_of_send(d: Dispatcher, job: Job, result: SendResult) -> Outcome:
    """Turn a SendResult into the event's next state plus its delivery-log row."""
    e, msg = job.event, job.message
    assert msg is not None
    delivery = Delivery(
        channel=Channel.EMAIL.value, address=msg.to, outcome=result.outcome.value,
        template_version_id=job.version.id if job.version else None,
        response_code=result.code, response_text=result.text, message_id=msg.message_id,
        duration_ms=result.duration_ms,
    )
    reply = f"{result.code or ''} {result.text}".strip()
    if result.outcome is SendOutcome.SENT:
        log.info("message.sent event=%s", e.id)
        return Outcome(e.id, EventStatus.PROCESSED, "", e.error_count, e.process_at, delivery)
    if result.outcome is SendOutcome.PERMANENT:
        log.info("message.failed event=%s code=%s", e.id, result.code)
        exclusions.quarantine_after_failure(d.db, e, result)  # hard bounce at RCPT
        return Outcome(e.id, EventStatus.DELIVERY_FAILED, reply, e.error_count + 1,
                       e.process_at, delivery)
    failures = e.error_count + 1
    decision = retry.decide(d.policy_for(job.event_type), failures=failures,
                            now=clock.utcnow(), created_at=waiting_since(e),
                            expiration_at=e.expiration_at)
    if decision.retry_at is None:
        log.info("message.too_old event=%s", e.id)
        return Outcome(e.id, EventStatus.TOO_OLD, f"{decision.give_up_reason}; last: {reply}",
                       failures, e.process_at, delivery)
    log.info("message.deferred event=%s attempt=%s", e.id, failures)
    return Outcome(e.id, EventStatus.PENDING, reply, failures, decision.retry_at, delivery)
