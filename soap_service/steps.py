"""The dispatch pipeline as a list of steps: what happens to one claimed event.

The same steps serve every channel (email, SMS, push); what differs is looked up by the
event's channel: its address (``email``, ``mobilePhone``, ``registrationToken`` -- with
the push platform), the kind of that address for quarantine, and the message built
(``messages.email_message`` / ``sms_message`` / ``push_message``).

Each prepare step takes ``(dispatcher, job)`` and returns ``None`` to go on, or an
:class:`~soap_service.models.Outcome` that ends the event early (``tooOld``,
``ignored``, ``routingFailed``, ``paused``, ``deliveryFailed``...).  :data:`PREPARE_STEPS`
is the order; to add a step, insert a function there.  :func:`outcome_of_send` turns the
connector's :class:`~soap_service.models.SendResult` into the event's next state and its
delivery-log row (a temporary failure goes back to ``pending`` with backoff, or ends
``tooOld``).  The :class:`~soap_service.worker.Dispatcher` claims, sends and records;
this module builds no SQL and opens no socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from soap_service import clock, exclusions, messages, retry, targeting, track, unsubscribe
from soap_service.bounces import verp
from soap_service.errors import RenderError
from soap_service.models import (
    PUSH_PLATFORM_OF,
    AddressKind,
    Channel,
    ChannelMessage,
    Delivery,
    EmailMessage,
    Event,
    EventStatus,
    EventType,
    Outcome,
    Profile,
    PushPlatform,
    Queue,
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
    address: str = ""  # where the event's channel sends (find_address)
    platform: PushPlatform | None = None  # push only
    message: ChannelMessage | None = None
    # quarantined / denylisted (kind, address) pairs of this round
    listed: set[tuple[AddressKind, str]] = field(default_factory=set)
    rechecked: set[tuple[str, Channel]] = field(default_factory=set)  # shared by a round
    # profile-based events: the profile looked up for the whole round (targeting.preload)
    # and why none was found
    profile_lookup: tuple[Profile | None, str] | None = None


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


# the event attribute that holds each channel's address (SPEC §2.4, §7)
ADDRESS_ATTRIBUTES = {Channel.EMAIL: "email", Channel.SMS: "mobilePhone",
                      Channel.PUSH: "registrationToken"}


def find_address(d: Dispatcher, job: Job) -> Outcome | None:
    """Where the event's channel sends, and for push the platform (``wishedChannel`` 41
    iOS, 42 Android, 40 the mobile app's from ``[[apps]]``, else
    ``MC_PUSH_DEFAULT_PLATFORM``).  A channel with no connector configured, or an event
    without the channel's address, fails here."""
    e = job.event
    channel = e.channel
    if not d.has_connectors(channel):
        return _final(job, EventStatus.DELIVERY_FAILED,
                      f"no connector configured for channel {channel.value}")
    if not e.address:
        return _final(job, EventStatus.DELIVERY_FAILED,
                      f"event has no {ADDRESS_ATTRIBUTES[channel]} (the {channel.value} address)")
    if channel is Channel.PUSH:
        job.platform = PUSH_PLATFORM_OF.get(e.wished_channel) \
            or d.settings.app_platform(e.mobile_app_uuid)
        if job.platform is None:
            app = e.mobile_app_uuid or "none"
            return _final(job, EventStatus.DELIVERY_FAILED,
                          f"no push platform: wishedChannel {e.wished_channel}, mobile app "
                          f"{app} is not in [[apps]] and MC_PUSH_DEFAULT_PLATFORM is not set")
    job.address = e.address
    return None


def check_exclusion(d: Dispatcher, job: Job) -> Outcome | None:
    """A quarantined or denylisted address (of the channel's address kind): ``ignored``
    (the exclusion log says why)."""
    if not exclusions.is_listed(job.listed, job.event.address_kind, job.address):
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
    """HTML part: links rewritten to the signed click redirect, 1x1 open pixel added
    (SMS and push have no HTML part: nothing changes)."""
    assert job.rendered is not None
    job.rendered = track.instrument_message(job.rendered, job.event.id, d.settings)
    return None


def _email(d: Dispatcher, job: Job) -> ChannelMessage:
    """``emailFormat`` 1 sends text only, 2 HTML only; no From address fails the event.
    With ``MC_BOUNCE_DOMAIN`` set, the envelope sender is the event's signed return path
    (``bounces.verp``: event id and attempt number), where its bounces come back."""
    assert job.rendered is not None
    e = job.event
    # profile-based: the one-click unsubscribe headers (RFC 8058)
    headers = {"X-MC-Event-Id": str(e.id), **unsubscribe.email_headers(e.unsubscribe_url)}
    return_path = verp.return_path_for(d.settings, e.id, e.error_count + 1)
    if return_path and d.settings.bounce_metadata_header:  # Postmark gives it back
        headers[d.settings.bounce_metadata_header] = return_path
    return messages.email_message(job.rendered, job.address, d.message_id(e),
                                  email_format=e.email_format, headers=headers,
                                  return_path=return_path)


def _sms(d: Dispatcher, job: Job) -> ChannelMessage:
    assert job.rendered is not None
    return messages.sms_message(job.rendered, d.reference(job.event))


def _push(d: Dispatcher, job: Job) -> ChannelMessage:
    """Not delivered after the event's ``expiration``; high priority for real-time."""
    assert job.rendered is not None and job.platform is not None
    e = job.event
    return messages.push_message(job.rendered, job.platform, d.reference(e),
                                 expiration=e.expiration_at, urgent=e.queue is Queue.RT)


BUILDERS: dict[Channel, Callable[[Dispatcher, Job], ChannelMessage]] = {
    Channel.EMAIL: _email, Channel.SMS: _sms, Channel.PUSH: _push}


def build_message(d: Dispatcher, job: Job) -> Outcome | None:
    """The channel's message from the rendered content (``messages``); content that
    cannot make one (no From, an empty SMS) fails the event."""
    try:
        job.message = BUILDERS[job.event.channel](d, job)
    except RenderError as exc:
        return _final(job, EventStatus.DELIVERY_FAILED, exc.message)
    return None


# The pipeline before sending, in order; a new step is one more function in this list.
# Profile-based events (targeting.py) are joined to their profile before the address is
# looked up, and counted against the fatigue rules once routed.
PREPARE_STEPS: list[Step] = [check_too_old, targeting.find_profile, find_address,
                             check_exclusion, find_route, targeting.check_fatigue,
                             render_content, track_links, build_message]


# ---------------------------------------------------------------- outcomes of a send


def _our_id(message: ChannelMessage) -> str:
    """The id we gave the message: the email's Message-ID, the SMS / push reference."""
    return message.message_id if isinstance(message, EmailMessage) else message.reference


def outcome_of_send(d: Dispatcher, job: Job, result: SendResult) -> Outcome:
    """Turn a SendResult into the event's next state plus its delivery-log row (which
    names the connector and the provider's id: receipts find the delivery by them)."""
    e, msg = job.event, job.message
    assert msg is not None
    delivery = Delivery(
        channel=e.channel.value, address=job.address, outcome=result.outcome.value,
        template_version_id=job.version.id if job.version else None,
        response_code=result.code, response_text=result.text, message_id=_our_id(msg),
        duration_ms=result.duration_ms, connector=result.connector,
        provider_id=result.provider_id, part_ids=result.part_ids,
        variant=job.rendered.language if job.rendered else "",
    )
    reply = f"{result.code or ''} {result.text}".strip()
    if result.outcome is SendOutcome.SENT:
        log.info("message.sent event=%s connector=%s", e.id, result.connector)
        return Outcome(e.id, EventStatus.PROCESSED, "", e.error_count, e.process_at, delivery)
    if result.outcome is SendOutcome.PERMANENT:
        log.info("message.failed event=%s connector=%s code=%s", e.id, result.connector,
                 result.code)
        exclusions.quarantine_after_failure(d.db, e, result)  # the address itself refused
        return Outcome(e.id, EventStatus.DELIVERY_FAILED, reply, e.error_count + 1,
                       e.process_at, delivery)
    failures = e.error_count + 1
    now = clock.utcnow()
    decision = retry.decide(d.policy_for(job.event_type), failures=failures, now=now,
                            created_at=waiting_since(e), expiration_at=e.expiration_at)
    if decision.retry_at is None:
        log.info("message.too_old event=%s", e.id)
        return Outcome(e.id, EventStatus.TOO_OLD, f"{decision.give_up_reason}; last: {reply}",
                       failures, e.process_at, delivery)
    retry_at = decision.retry_at
    if result.retry_after:  # the provider's Retry-After, when later than our backoff
        asked = now + timedelta(seconds=min(result.retry_after, d.settings.retry_max_seconds))
        retry_at = max(retry_at, asked)
    log.info("message.deferred event=%s connector=%s attempt=%s", e.id, result.connector,
             failures)
    return Outcome(e.id, EventStatus.PENDING, reply, failures, retry_at, delivery)
