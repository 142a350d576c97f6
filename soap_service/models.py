"""Plain values shared by every stage: statuses, queues, lanes, channels, the Event.

No I/O here. Names follow the suite's SOAP/REST vocabulary (SPEC §4.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class EventStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    PROCESSED = "processed"
    IGNORED = "ignored"
    DELIVERY_FAILED = "deliveryFailed"
    ROUTING_FAILED = "routingFailed"
    TARGETING_FAILED = "targetingFailed"
    TOO_OLD = "tooOld"


# What a webhook can be about (SPEC §8): every status, plus what happens after the send.
TRACKING_KINDS = ("delivered", "opened", "clicked", "unsubscribed")
WEBHOOK_KINDS: tuple[str, ...] = (*(s.value for s in EventStatus), *TRACKING_KINDS)
# A subscription that names no status gets these: the outcomes, not the steps between
DEFAULT_WEBHOOK_KINDS = frozenset({
    "processed", "delivered", "deliveryFailed", "ignored", "tooOld", "routingFailed",
    "targetingFailed", "opened", "clicked", "unsubscribed"})


class Queue(enum.StrEnum):
    """Real-time (``nms:rtEvent``) or batch (``nms:batchEvent``)."""

    RT = "rt"
    BATCH = "batch"


class Lane(enum.StrEnum):
    """Priority lane of an event type; order of the members is the dispatch order."""

    CRITICAL = "critical"
    TRANSACTIONAL = "transactional"
    BULK = "bulk"

    @property
    def rank(self) -> int:
        return list(Lane).index(self)


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class AddressKind(enum.StrEnum):
    """What an address is; quarantine and the denylist are kept per kind (SPEC §7)."""

    EMAIL = "email"
    PHONE = "phone"  # an E.164 mobile number
    TOKEN = "token"  # noqa: S105 - a push device registration token, not a secret


ADDRESS_KIND_OF: dict[Channel, AddressKind] = {
    Channel.EMAIL: AddressKind.EMAIL, Channel.SMS: AddressKind.PHONE,
    Channel.PUSH: AddressKind.TOKEN,
}

# wishedChannel numbers of the suite (SPEC §2.4) -> our channel
WISHED_CHANNELS: dict[int, Channel] = {
    0: Channel.EMAIL,
    1: Channel.SMS,
    40: Channel.PUSH,
    41: Channel.PUSH,
    42: Channel.PUSH,
}

# the wishedChannel we write for an event we create ourselves (follow-ups, test events)
WISHED_CHANNEL_OF: dict[Channel, int] = {Channel.EMAIL: 0, Channel.SMS: 1, Channel.PUSH: 40}

# The one map of an event's wire attributes (SPEC §2.4) that have an Event field (and a
# column) of their own -> that field.  Templates see the fields under these names
# (``rtEvent.email``); every other attribute is kept as sent in ``Event.attributes``.
EVENT_ATTRIBUTE_FIELDS: dict[str, str] = {
    "type": "event_type", "email": "email", "mobilePhone": "mobile_phone",
    "wishedChannel": "wished_channel", "emailFormat": "email_format",
    "externalId": "external_id", "origin": "origin", "language": "language",
    "country": "country", "registrationToken": "registration_token",
    "scheduled": "scheduled_at", "expiration": "expiration_at",
}
# ... of which these are text, stored as sent (stripped); the others are parsed
TEXT_ATTRIBUTE_FIELDS: dict[str, str] = {
    name: EVENT_ATTRIBUTE_FIELDS[name]
    for name in ("email", "mobilePhone", "externalId", "origin", "language", "country",
                 "registrationToken")
}

PLID_SHIFT = 56
PLID_PK_MASK = (1 << PLID_SHIFT) - 1


def make_plid(instance_id: int, primary_key: int) -> int:
    """``plId = (instance_id << 56) | primary_key`` (SPEC §2.5)."""
    return (instance_id << PLID_SHIFT) | primary_key


def split_plid(plid: int) -> tuple[int, int]:
    """Inverse of :func:`make_plid`: ``(instance_id, primary_key)``."""
    return plid >> PLID_SHIFT, plid & PLID_PK_MASK


@dataclass(frozen=True)
class Event:
    """One stored event, as the pipeline sees it."""

    id: int
    queue: Queue
    event_type: str
    ctx_xml: str
    status: EventStatus = EventStatus.PENDING
    email: str | None = None
    mobile_phone: str | None = None
    wished_channel: int = 0
    email_format: int = 0
    external_id: str | None = None
    origin: str | None = None
    language: str | None = None
    country: str | None = None
    registration_token: str | None = None
    mobile_app_uuid: str | None = None
    scheduled_at: datetime | None = None
    expiration_at: datetime | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    error_count: int = 0
    process_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_id: int | None = None
    last_error: str | None = None
    ctx_json: str | None = None  # the ctx as a JSON caller sent it (REST); None from SOAP
    requeued_at: datetime | None = None  # a manual retry: validity counts from here
    # the profile a profile-based event was joined to (set by targeting, never stored)
    profile: Profile | None = field(default=None, compare=False)
    unsubscribe_url: str = field(default="", compare=False)  # its signed one-click link

    @property
    def channel(self) -> Channel:
        return WISHED_CHANNELS.get(self.wished_channel, Channel.EMAIL)

    @property
    def address(self) -> str | None:
        """Where the event's channel sends: email, ``mobilePhone`` or ``registrationToken``."""
        if self.channel is Channel.SMS:
            return self.mobile_phone
        if self.channel is Channel.PUSH:
            return self.registration_token
        return self.email

    @property
    def address_kind(self) -> AddressKind:
        return ADDRESS_KIND_OF[self.channel]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in ("profile", "unsubscribe_url"):  # not the event's own data
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            out[key] = value
        return out


# ---------------------------------------------------------------- messages and outcomes


@dataclass(frozen=True)
class RenderedMessage:
    """What a template version produced for one event (any channel)."""

    channel: Channel
    subject: str = ""
    html: str = ""
    text: str = ""
    from_addr: str = ""
    reply_to: str = ""
    sms: str = ""
    push_title: str = ""
    push_body: str = ""
    push_data: dict[str, str] = field(default_factory=dict)
    language: str = ""  # the template's language variant used ("" the default content)


@dataclass(frozen=True)
class EmailMessage:
    """A fully addressed email, ready for the email channel."""

    from_addr: str
    to: str
    subject: str
    message_id: str  # stable, derived from the event: "<mc.{instance}.{event_id}@{domain}>"
    html: str = ""
    text: str = ""
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # the envelope sender (MAIL FROM) when not from_addr: a signed VERP return path
    # bounces+<token>@<MC_BOUNCE_DOMAIN> naming the event and attempt (docs/bounces.md)
    return_path: str = ""


@dataclass(frozen=True)
class SmsMessage:
    """A rendered SMS for the SMS channel; the destination (E.164) is passed beside it."""

    text: str
    reference: str  # ours, stable per event ("mc.{instance}.{event_id}"): receipts name it
    sender: str = ""  # empty: the connector's configured source address / From


class PushPlatform(enum.StrEnum):
    IOS = "ios"  # APNs
    ANDROID = "android"  # FCM


# wishedChannel of a push event -> its platform (40: the mobile app's, from configuration)
PUSH_PLATFORM_OF: dict[int, PushPlatform] = {41: PushPlatform.IOS, 42: PushPlatform.ANDROID}


@dataclass(frozen=True)
class MobileApp:
    """A mobile app of the configuration (``[[apps]]``): the platform its push goes to."""

    uuid: str
    platform: PushPlatform
    name: str = ""


@dataclass(frozen=True)
class PushMessage:
    """A rendered push notification; the device token is passed beside it."""

    platform: PushPlatform
    title: str
    body: str
    reference: str  # ours, stable per event
    data: dict[str, str] = field(default_factory=dict)
    collapse_id: str = ""
    expiration: datetime | None = None  # not delivered after this (APNs apns-expiration, FCM ttl)
    urgent: bool = True  # real-time: APNs priority 10 / FCM high; batch: 5 / normal


# what a connector's send() takes: one per channel
ChannelMessage = EmailMessage | SmsMessage | PushMessage


class SendOutcome(enum.StrEnum):
    SENT = "sent"  # relay / provider accepted (2xx)
    TEMPORARY = "temporary"  # 4xx, timeout, refused connection, disconnect: retry later
    PERMANENT = "permanent"  # 5xx: never retry


@dataclass(frozen=True)
class SendResult:
    """Outcome of one send attempt, as a value (the worker records it)."""

    outcome: SendOutcome
    code: int | None = None  # the provider's code: SMTP reply, HTTP status, SMPP command_status
    text: str = ""
    duration_ms: int = 0
    # the refusal concerned the address itself (SMTP RCPT TO, an unregistered device token,
    # an invalid destination number): a permanent one quarantines the address
    address_refused: bool = False
    provider_id: str = ""  # the provider's message id (SMPP message_id, apns-id, FCM name, SID)
    connector: str = ""  # the connector that made the attempt (set by the channel's failover)
    retry_after: float | None = None  # seconds the provider asked us to wait (Retry-After)
    # an SMS sent in several parts (SMPP): every part's id, provider_id being the first's;
    # the SMSC sends a receipt per part, and a receipt naming any of them is this message's
    part_ids: tuple[str, ...] = ()


class CircuitState(enum.StrEnum):
    """A connector's circuit breaker (SPEC §7): closed sends, open skips, half-open probes."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class ConnectorHealth:
    """One connector's health as its channel's failover sees it, since the process started."""

    name: str
    channel: Channel
    kind: str
    priority: int
    state: CircuitState
    consecutive_failures: int = 0
    sent: int = 0
    temporary: int = 0  # temporary failures
    permanent: int = 0  # permanent failures
    in_flight: int = 0
    last_error: str = ""  # short: the provider's code and reason, never an address or body
    probe_in: float | None = None  # open circuit: seconds until a probe is let through

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["channel"] = self.channel.value
        out["state"] = self.state.value
        return out


class ReceiptState(enum.StrEnum):
    DELIVERED = "delivered"  # the handset / mailbox has it (SMPP DELIVRD, provider "delivered")
    FAILED = "failed"  # it never will (UNDELIV, REJECTD, EXPIRED, provider "undelivered"...)
    PENDING = "pending"  # an intermediate state (ENROUTE, ACCEPTD, "sent"): nothing changes


@dataclass(frozen=True)
class Receipt:
    """A delivery report arriving after the send: SMPP ``deliver_sm`` or a provider callback.

    Matched to its delivery by ``(connector, provider_id)``; a ``FAILED`` receipt moves a
    ``processed`` event to ``deliveryFailed`` (a late bounce, as for email).
    """

    connector: str
    provider_id: str
    state: ReceiptState
    code: str = ""  # the provider's state / error code (``UNDELIV``, ``err:001``, ``30003``)
    text: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class ReceiptReport:
    """What recording a batch of receipts did."""

    received: int = 0
    delivered: int = 0  # deliveries newly marked delivered
    failed: int = 0  # deliveries marked failed (their processed events -> deliveryFailed)
    unknown: int = 0  # no delivery of that connector has that provider id


class BounceKind(enum.StrEnum):
    """What an inbound report says about an address (docs/bounces.md has the rules)."""

    HARD = "hard"  # permanent (5.x.x, SES Permanent, Postmark HardBounce): quarantine
    SOFT = "soft"  # temporary (4.x.x, a delay, a full mailbox): counted
    COMPLAINT = "complaint"  # the recipient reported the message as spam (ARF, SES, Postmark)
    UNKNOWN = "unknown"  # not a failure: an auto-reply, a success DSN, an unclassifiable mail
    UNPARSEABLE = "unparseable"  # refused by the parser (too large, broken); kept for the record


@dataclass(frozen=True)
class BounceReport:
    """One recipient's line of an asynchronous bounce, complaint or provider notification.

    Built by ``soap_service.bounces`` from a DSN, a plain-text bounce, an ARF report, or an
    SES / Postmark notification; one inbound message may give several (one per recipient).
    ``return_path`` (our VERP address, when found) is what matches it to an event; the
    Message-ID and ``provider_id`` are fallbacks.  Text fields are bounded in length.
    """

    kind: BounceKind
    recipient: str = ""  # the address that bounced or complained, lower-cased
    status: str = ""  # RFC 3463 enhanced status code, e.g. "5.1.1"
    action: str = ""  # DSN Action: failed / delayed / delivered / relayed / expanded
    diagnostic: str = ""  # the remote server's words (Diagnostic-Code, SMTP reply, details)
    return_path: str = ""  # the address the report was sent to: our VERP return path
    message_id: str = ""  # Message-ID of the original message, without angle brackets
    source: str = ""  # how it was read: dsn, text, arf, jmrp, autoreply, ses, postmark...
    feedback_type: str = ""  # complaints: ARF Feedback-Type (abuse, fraud...)
    original_recipient: str = ""  # DSN Original-Recipient / ARF Original-Rcpt-To
    provider_id: str = ""  # the provider's message id (SES mail.messageId, Postmark MessageID)
    reported_at: datetime | None = None  # when the provider says it happened


# ---------------------------------------------------------------- catalog values


class Targeting(enum.StrEnum):
    """Event-based (the event carries its address) or profile-based (SPEC §10)."""

    EVENT = "event"
    PROFILE = "profile"


class ReconcileOn(enum.StrEnum):
    """What joins a profile-based event to its profile: the event's attribute of that name."""

    EXTERNAL_ID = "externalId"
    EMAIL = "email"


class MissingProfile(enum.StrEnum):
    """A profile-based event whose profile is not found: ``targetingFailed``, or sent with
    the event's own data."""

    FAIL = "fail"
    SEND = "send"


@dataclass(frozen=True)
class EventType:
    name: str
    label: str = ""
    lane: Lane = Lane.TRANSACTIONAL
    max_attempts: int = 5
    validity_seconds: int = 86400
    retention_seconds: int = 30 * 86400
    targeting: Targeting = Targeting.EVENT
    reconcile_on: ReconcileOn = ReconcileOn.EXTERNAL_ID
    missing_profile: MissingProfile = MissingProfile.FAIL


# ---------------------------------------------------------------- profiles (SPEC §10)


@dataclass(frozen=True)
class Profile:
    """A customer profile: what profile-based events are joined to."""

    id: int
    external_id: str
    email: str | None = None
    mobile_phone: str | None = None
    push_tokens: tuple[str, ...] = ()
    language: str | None = None
    country: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # channel -> when the profile opted out of it; a channel absent here is subscribed
    unsubscribed: dict[Channel, datetime] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "externalId": self.external_id, "email": self.email,
            "mobilePhone": self.mobile_phone, "pushTokens": list(self.push_tokens),
            "language": self.language, "country": self.country,
            "firstName": self.first_name, "lastName": self.last_name,
            "attributes": self.attributes,
            "subscriptions": {ch.value: ch not in self.unsubscribed for ch in Channel},
            "unsubscribedAt": {ch.value: at.isoformat() for ch, at in self.unsubscribed.items()},
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True)
class FatigueRule:
    """At most ``max_count`` messages per profile per ``period_seconds`` (of one channel
    and / or lane when set); ``exempt_critical``: events of the critical lane pass."""

    name: str
    max_count: int
    period_seconds: int
    channel: Channel | None = None
    lane: Lane | None = None
    exempt_critical: bool = True
    id: int = 0
    created_at: datetime | None = None

    def applies(self, channel: Channel, lane: Lane) -> bool:
        if self.exempt_critical and lane is Lane.CRITICAL:
            return False
        return (self.channel is None or self.channel is channel) and \
            (self.lane is None or self.lane is lane)


@dataclass(frozen=True)
class TemplateContent:
    """The editable content of a template (a draft, or frozen in a published version)."""

    from_addr: str = ""
    reply_to: str = ""
    subject: str = ""
    html: str = ""
    text: str = ""
    sms: str = ""
    push_title: str = ""
    push_body: str = ""
    push_data: dict[str, str] = field(default_factory=dict)
    # language tag (fr, fr-CA) -> that language's parts (render/variants.py); published
    # with the default parts, in one version
    variants: dict[str, TemplateContent] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateVersion:
    """An immutable published version; what routing hands to rendering."""

    id: int
    template_id: int
    template_name: str
    event_type: str
    channel: Channel
    version: int
    content: TemplateContent
    content_hash: str
    published_at: datetime
    published_by: str


@dataclass(frozen=True)
class Template:
    """A template as stored: its draft and switches (published versions are separate)."""

    id: int
    name: str
    event_type: str
    channel: Channel
    draft: TemplateContent
    paused: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionInfo:
    """A published version and, once it was unpublished, when."""

    version: TemplateVersion
    unpublished_at: datetime | None


@dataclass(frozen=True)
class Seed:
    """A test address of a template with the data its previews and proofs render."""

    id: int
    template: str
    address: str
    ctx_xml: str
    external_id: str | None
    created_at: datetime


# ---------------------------------------------------------------- dispatch outcomes


@dataclass(frozen=True)
class Delivery:
    """One send attempt, as the delivery log keeps it."""

    channel: str
    address: str | None
    outcome: str  # sent | temporary | permanent
    template_version_id: int | None = None
    response_code: int | None = None
    response_text: str = ""
    message_id: str | None = None  # ours: the email Message-ID, or the SMS / push reference
    duration_ms: int = 0
    connector: str = ""  # the connector that made the attempt
    provider_id: str = ""  # the provider's id for the message (receipts name it)
    part_ids: tuple[str, ...] = ()  # an SMS in parts: every part's id (receipts name any)
    variant: str = ""  # the template's language variant used ("" the default content)


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed event: its next status, and the attempt if any."""

    event_id: int
    status: EventStatus
    reason: str = ""
    error_count: int = 0  # the event's error count after this outcome
    process_at: datetime | None = None  # when due again (pending); None keeps "now"
    delivery: Delivery | None = None


@dataclass(frozen=True)
class StatusChange:
    """One row of an event's status history."""

    status: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class DeliveryAttempt:
    """One delivery-log row of an event, with the template name and version number of
    the version it used (None when it used none)."""

    id: int
    created_at: datetime
    channel: str
    address: str | None
    outcome: str
    response_code: int | None
    response_text: str | None
    template_version_id: int | None
    message_id: str | None
    duration_ms: int | None
    is_proof: bool
    template: str | None
    version: int | None
    connector: str | None = None
    provider_id: str | None = None
    receipt: str | None = None  # delivered | failed, once a receipt said so
    receipt_at: datetime | None = None
    variant: str | None = None  # the language variant used (None: the default content)


# ---------------------------------------------------------------- after the send


@dataclass(frozen=True)
class TrackingHit:
    """One open or click in the tracking log (``machine``: a scanner or a proxy, not a
    person)."""

    id: int
    event_id: int | None
    delivery_id: int | None
    kind: str  # open | click
    url: str | None
    user_agent: str | None
    ip: str | None
    machine: bool
    created_at: datetime


@dataclass(frozen=True)
class SentDelivery:
    """An event's latest accepted send (None fields when nothing was sent yet)."""

    delivery_id: int | None
    sent_at: datetime | None


@dataclass(frozen=True)
class QuarantineEntry:
    """An address never to be sent to: a hard bounce (or a refused number or device
    token), or the operators' denylist."""

    address: str
    reason: str
    source: str  # bounce | manual | complaint (manual and complaint: the denylist)
    created_at: datetime
    kind: AddressKind = AddressKind.EMAIL
    bounce_id: int | None = None  # the received bounce that caused it (msgcenter bounces)


@dataclass(frozen=True)
class Exclusion:
    """An event not sent because its address was listed (the exclusion log)."""

    id: int
    event_id: int | None
    address: str | None
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class FollowupRule:
    """Send ``template`` to events of ``event_type`` not opened / not clicked after a delay."""

    id: int
    name: str
    event_type: str
    template: str
    after_seconds: int
    condition: str  # not-opened | not-clicked
    channel: str
    enabled: bool
    created_at: datetime


# ---------------------------------------------------------------- who may call


@dataclass(frozen=True)
class Operator:
    """A login of the SOAP API and the CLI, with its rights (the password only hashed)."""

    id: int
    login: str
    password_hash: str
    rights: frozenset[str]
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Zone:
    """A security zone: the networks a caller may come from, and what it allows there."""

    name: str
    cidr: str
    allow_user_password: bool = False
    allow_empty_password: bool = False
    session_token_only: bool = False
    show_errors: bool = False
    is_proxy: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its name and prefix (the key itself only hashed)."""

    id: int
    name: str
    prefix: str
    operator_id: int | None
    operator_login: str | None
    created_at: datetime
    revoked_at: datetime | None
    scopes: frozenset[str] = frozenset({"push"})  # push, read, admin (SPEC §8)
