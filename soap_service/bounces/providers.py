"""Provider bounce webhooks: Amazon SES (through SNS) and Postmark → reports.

The HTTP route ``POST /callbacks/bounces/{provider}`` (wired elsewhere) hands the body and
headers to :meth:`CallbackReader.read`, which authenticates the call and returns a
:class:`CallbackOutcome`: the reports to record, or for an SNS
``SubscriptionConfirmation`` the URL to visit.  Nothing here touches the database.

- **SES**: the SNS message is verified first (:mod:`~soap_service.bounces.sns`), then the
  SES notification in its ``Message`` read: ``Bounce`` (``Permanent`` → hard,
  ``Transient`` → soft, ``Undetermined`` → unknown; one report per ``bouncedRecipients``)
  and ``Complaint`` (one per ``complainedRecipients``); other types (``Delivery``...) give
  no report.  Both ``notificationType`` (identity notifications) and ``eventType``
  (configuration-set event publishing) are read.
- **Postmark** signs nothing: a webhook is authenticated by HTTP Basic credentials put
  in its URL (``https://user:password@host/callbacks/bounces/postmark``) or by a secret
  custom header (``X-MC-Webhook-Token``), compared in constant time.  With neither
  configured every call is refused.

Unauthenticated or unverifiable calls raise :class:`~soap_service.errors.UnverifiedCallback`
(answer 401/403, change nothing); malformed bodies raise
:class:`~soap_service.errors.UnreadableReport` (400); an unknown provider
:class:`~soap_service.errors.NotFound`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soap_service.bounces.classify import DIAGNOSTIC_LIMIT, status_in
from soap_service.bounces.mime import clean, first_address, message_id
from soap_service.bounces.sns import SnsVerifier
from soap_service.bounces.verp import is_return_path
from soap_service.config import Settings
from soap_service.errors import NotFound, UnreadableReport, UnverifiedCallback
from soap_service.models import BounceKind, BounceReport

MAX_BODY_BYTES = 512 * 1024
AUTH_HEADER = "X-MC-Webhook-Token"
PROVIDERS = ("ses", "postmark")

_SES_BOUNCE = {"permanent": BounceKind.HARD, "transient": BounceKind.SOFT}
_POSTMARK_KIND = {
    "HardBounce": BounceKind.HARD, "BadEmailAddress": BounceKind.HARD,
    "SoftBounce": BounceKind.SOFT, "Transient": BounceKind.SOFT,
    "DnsError": BounceKind.SOFT, "Blocked": BounceKind.SOFT,
    "SpamNotification": BounceKind.SOFT,
    "SpamComplaint": BounceKind.COMPLAINT,
}  # every other Type (AutoResponder, Unsubscribe, DMARCPolicy, ManuallyDeactivated...) unknown


@dataclass(frozen=True)
class CallbackOutcome:
    """What the route does with one authenticated provider call."""

    reports: tuple[BounceReport, ...] = ()
    confirm_url: str = ""  # SNS SubscriptionConfirmation: visit it (SnsVerifier.confirm)
    notification_id: str = ""  # the provider's id of this call (SNS MessageId): dedupe on it
    note: str = ""  # why nothing is reported ("Delivery notification", "unsubscribed"...)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value[:40])
    except ValueError:
        return None


def _text(value: Any, limit: int = 300) -> str:
    return clean(value, limit) if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value[:100] if isinstance(value, list) else []


# ------------------------------------------------------------------ Amazon SES

def ses_reports(notification: Mapping[str, Any]) -> tuple[BounceReport, ...]:
    """The reports of one SES notification document (already verified)."""
    kind_name = _text(notification.get("notificationType") or notification.get("eventType"))
    mail = _object(notification.get("mail"))
    common = _object(mail.get("commonHeaders"))
    original_id = message_id(_text(common.get("messageId")))
    header_values = [_text(_object(h).get("value")) for h in _list(mail.get("headers"))]
    if not original_id:
        original_id = next((message_id(_text(_object(h).get("value")))
                            for h in _list(mail.get("headers"))
                            if _text(_object(h).get("name")).lower() == "message-id"), "")
    return_path = next((a for a in (first_address(_text(mail.get("source"))),
                                    *(first_address(v) for v in header_values))
                        if a and is_return_path(a)), "")
    base = {"return_path": return_path, "message_id": original_id,
            "provider_id": _text(mail.get("messageId"), 200), "source": "ses"}
    if kind_name == "Bounce":
        bounce = _object(notification.get("bounce"))
        kind = _SES_BOUNCE.get(_text(bounce.get("bounceType")).lower(), BounceKind.UNKNOWN)
        sub = _text(bounce.get("bounceSubType"), 60)
        out = []
        for entry in _list(bounce.get("bouncedRecipients")):
            entry = _object(entry)
            diagnostic = _text(entry.get("diagnosticCode"), DIAGNOSTIC_LIMIT) or sub
            out.append(BounceReport(
                kind, recipient=first_address(_text(entry.get("emailAddress"))),
                status=status_in(_text(entry.get("status"), 20)) or status_in(diagnostic),
                action=_text(entry.get("action"), 40).lower(), diagnostic=diagnostic,
                reported_at=_when(bounce.get("timestamp")), **base))
        return tuple(out)
    if kind_name == "Complaint":
        complaint = _object(notification.get("complaint"))
        feedback = _text(complaint.get("complaintFeedbackType"), 60).lower()
        kind = BounceKind.UNKNOWN if feedback == "not-spam" else BounceKind.COMPLAINT
        return tuple(BounceReport(
            kind, recipient=(r := first_address(_text(_object(e).get("emailAddress")))),
            original_recipient=r, feedback_type=feedback or "abuse",
            diagnostic=_text(complaint.get("userAgent"), 200),
            reported_at=_when(complaint.get("timestamp")), **base)
            for e in _list(complaint.get("complainedRecipients")))
    return ()


def read_ses(body: bytes, verifier: SnsVerifier) -> CallbackOutcome:
    """An SNS POST carrying SES notifications: verified, then read."""
    sns = verifier.verify(body)
    if sns.type == "SubscriptionConfirmation":
        return CallbackOutcome(confirm_url=sns.subscribe_url, notification_id=sns.message_id,
                               note="subscription confirmation")
    if sns.type == "UnsubscribeConfirmation":
        return CallbackOutcome(notification_id=sns.message_id, note="unsubscribed")
    try:
        document = json.loads(sns.message)
    except (ValueError, RecursionError) as exc:
        raise UnreadableReport("SES notification is not JSON") from exc
    if not isinstance(document, dict):
        raise UnreadableReport("SES notification is not a JSON object")
    reports = ses_reports(document)
    kind = _text(document.get("notificationType") or document.get("eventType"), 40)
    return CallbackOutcome(reports, notification_id=sns.message_id,
                           note="" if reports else f"{kind or 'unknown'} notification")


# ------------------------------------------------------------------ Postmark

def postmark_reports(payload: Mapping[str, Any]) -> tuple[BounceReport, ...]:
    """The report of one Postmark bounce or spam-complaint webhook payload."""
    record = _text(payload.get("RecordType"), 40)
    if record not in {"Bounce", "SpamComplaint"}:
        return ()
    type_name = _text(payload.get("Type"), 60)
    kind = BounceKind.COMPLAINT if record == "SpamComplaint" else _POSTMARK_KIND.get(
        type_name, BounceKind.UNKNOWN)
    details = _text(payload.get("Details"), DIAGNOSTIC_LIMIT)
    diagnostic = details or _text(payload.get("Description"), DIAGNOSTIC_LIMIT)
    metadata = _object(payload.get("Metadata"))
    return_path = next((a for v in metadata.values()
                        if (a := first_address(_text(v))) and is_return_path(a)), "")
    recipient = first_address(_text(payload.get("Email")))
    return (BounceReport(
        kind, recipient=recipient, status=status_in(details), diagnostic=diagnostic,
        return_path=return_path, provider_id=_text(payload.get("MessageID"), 200),
        source="postmark",
        feedback_type="abuse" if kind is BounceKind.COMPLAINT else "",
        original_recipient=recipient if kind is BounceKind.COMPLAINT else "",
        reported_at=_when(payload.get("BouncedAt"))),)


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


def check_postmark_auth(headers: Mapping[str, str], user: str, password: str,
                        token: str) -> None:
    """Raise :class:`UnverifiedCallback` unless the call carries the configured Basic
    credentials or the ``X-MC-Webhook-Token`` secret."""
    if not (user and password) and not token:
        raise UnverifiedCallback("Postmark webhook credentials are not configured")
    if token:
        given = _header(headers, AUTH_HEADER)
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return
    if user and password:
        scheme, _, encoded = _header(headers, "Authorization").partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                pair = b""
            expected = f"{user}:{password}".encode()
            if hmac.compare_digest(pair, expected):
                return
    raise UnverifiedCallback("Postmark webhook not authenticated")


def read_postmark(body: bytes, headers: Mapping[str, str], user: str, password: str,
                  token: str) -> CallbackOutcome:
    """A Postmark webhook POST: authenticated, then read."""
    check_postmark_auth(headers, user, password, token)
    if len(body) > MAX_BODY_BYTES:
        raise UnreadableReport("Postmark webhook body over 512 KiB")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UnreadableReport("Postmark webhook body is not JSON") from exc
    if not isinstance(payload, dict):
        raise UnreadableReport("Postmark webhook body is not a JSON object")
    reports = postmark_reports(payload)
    ident = _text(str(payload.get("ID", "")), 40)
    return CallbackOutcome(reports, notification_id=f"postmark:{ident}" if ident else "",
                           note="" if reports else
                           f"{_text(payload.get('RecordType'), 40) or 'unknown'} record")


# ------------------------------------------------------------------ one entry point

class CallbackReader:
    """Reads ``POST /callbacks/bounces/{provider}``; one per process (SNS certificate
    cache).  Built from settings by :func:`soap_service.bounces.callback_reader`."""

    def __init__(self, sns: SnsVerifier, postmark_user: str = "", postmark_password: str = "",
                 postmark_token: str = "") -> None:
        self.sns = sns
        self.postmark = (postmark_user, postmark_password, postmark_token)

    def read(self, provider: str, body: bytes,
             headers: Mapping[str, str]) -> CallbackOutcome:
        if provider == "ses":
            if len(body) > MAX_BODY_BYTES:
                raise UnreadableReport("SNS message body over 512 KiB")
            return read_ses(body, self.sns)
        if provider == "postmark":
            return read_postmark(body, headers, *self.postmark)
        raise NotFound(f"unknown bounce provider {provider[:40]!r} "
                       f"(known: {', '.join(PROVIDERS)})")


def callback_reader(settings: Settings) -> CallbackReader:
    """The reader configured by ``MC_SNS_TOPIC_ARNS``, ``MC_SNS_ORIGIN_PATTERN`` and
    ``MC_POSTMARK_WEBHOOK_USER`` / ``_PASSWORD`` / ``_TOKEN``."""
    topics = [t for t in settings.sns_topic_arns.split(",") if t.strip()]
    return CallbackReader(SnsVerifier(topics, settings.sns_origin_pattern),
                          settings.postmark_webhook_user, settings.postmark_webhook_password,
                          settings.postmark_webhook_token)
