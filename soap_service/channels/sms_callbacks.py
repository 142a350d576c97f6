"""Delivery callbacks of ``http-sms`` providers (pure): authenticate, then read receipts.

:func:`parse_callback` takes the connector's configuration and one HTTP request (the URL
the provider called, its headers, its body) and returns the
:class:`~soap_service.models.Receipt` values it carries, or raises: a body over
``callback_max_bytes`` → :class:`~soap_service.errors.PayloadTooLarge` (413); a missing
or wrong signature → :class:`~soap_service.errors.UnverifiedCallback` (403); a body that is
not what the format says → :class:`~soap_service.errors.ValidationFailed` (400).  No HTTP
server, no database: the web edge mounts it at ``POST /callbacks/sms/{connector}`` and
records what it returns.  Nothing is read from a body before its signature is checked,
except what the signature covers (Twilio signs the parsed form fields).

``json`` format — our scheme, documented in docs/channels.md::

    X-MC-Timestamp: 1795000000                     (Unix seconds, within ±callback_tolerance)
    X-MC-Signature: v1=<hex HMAC-SHA256(callback_secret, "<timestamp>." + raw body)>

(several ``v1=`` values, comma-separated, are accepted while a provider rotates its
secret).  Body: one object or an array of objects ``{"id", "status", "code"?, "text"?,
"at"?}`` where ``id`` is the provider id from the send answer (or our reference when it
gave none) and ``status`` one of delivered / failed / undelivered / rejected / expired /
queued / accepted / sent / enroute / pending.

``twilio`` format — Twilio's own scheme: ``X-Twilio-Signature`` is base64 of
HMAC-SHA1(auth token, URL + each form field name and value, sorted by name), checked
against the URL with and without its default port, as Twilio's ``RequestValidator``
does; a request carrying ``X-Twilio-Webhooks-Signature-Settings`` (``algorithm=
HMAC_SHA256``, a shared key) is checked with ``callback_secret`` and that algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from soap_service.config import ConnectorConfig
from soap_service.errors import PayloadTooLarge, UnverifiedCallback, ValidationFailed
from soap_service.models import Receipt, ReceiptState

MAX_ITEMS = 1000  # receipts in one JSON callback

JSON_STATES = {
    "delivered": ReceiptState.DELIVERED,
    "failed": ReceiptState.FAILED,
    "undelivered": ReceiptState.FAILED,
    "rejected": ReceiptState.FAILED,
    "expired": ReceiptState.FAILED,
    "queued": ReceiptState.PENDING,
    "accepted": ReceiptState.PENDING,
    "sent": ReceiptState.PENDING,
    "enroute": ReceiptState.PENDING,
    "pending": ReceiptState.PENDING,
}
TWILIO_STATES = {
    "delivered": ReceiptState.DELIVERED,
    "read": ReceiptState.DELIVERED,
    "undelivered": ReceiptState.FAILED,
    "failed": ReceiptState.FAILED,
    "canceled": ReceiptState.FAILED,
}  # queued, sending, sent, accepted, scheduled...: pending


def parse_callback(config: ConnectorConfig, url: str, headers: Mapping[str, str],
                   body: bytes, *, now: float | None = None) -> list[Receipt]:
    """The receipts in one authenticated callback request to ``config``'s connector."""
    from soap_service.channels.http_sms import HttpSmsOptions

    options = HttpSmsOptions.from_config(config)
    if len(body) > options.callback_max_bytes:
        raise PayloadTooLarge(f"callback body over {options.callback_max_bytes} bytes")
    lowered = {k.lower(): v for k, v in headers.items()}
    if options.format == "twilio":
        return _twilio(config.name, options.token, options.callback_secret, url, lowered, body)
    _verify_json(config.name, options.callback_secret, options.callback_tolerance, lowered,
                 body, time.time() if now is None else now)
    return _json_receipts(config.name, body)


# --------------------------------------------------------------------- json


def sign_json(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-MC-Signature`` value for ``body`` sent at ``timestamp`` (providers and
    tests use it; the scheme is in this module's docstring)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def _verify_json(name: str, secret: str, tolerance: int, headers: Mapping[str, str],
                 body: bytes, now: float) -> None:
    if not secret:
        raise UnverifiedCallback(f"connector {name!r} takes no callbacks (no callback_secret)")
    stamp = headers.get("x-mc-timestamp", "").strip()
    signatures = headers.get("x-mc-signature", "")
    if not stamp or not signatures:
        raise UnverifiedCallback("missing X-MC-Timestamp or X-MC-Signature")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        raise UnverifiedCallback(f"X-MC-Timestamp outside ±{tolerance} s")
    expected = sign_json(secret, body, int(stamp))
    if not any(hmac.compare_digest(expected, s.strip()) for s in signatures.split(",")):
        raise UnverifiedCallback("wrong X-MC-Signature")


def _json_receipts(name: str, body: bytes) -> list[Receipt]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("callback body is not JSON") from exc
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_ITEMS:
        raise ValidationFailed(f"callback body must hold 1 to {MAX_ITEMS} receipts")
    return [_json_receipt(name, item, n) for n, item in enumerate(items, start=1)]


def _json_receipt(name: str, item: Any, n: int) -> Receipt:
    where = f"callback receipt {n}"
    if not isinstance(item, dict):
        raise ValidationFailed(f"{where} is not an object")
    provider_id, status = item.get("id"), item.get("status")
    if not isinstance(provider_id, str | int) or isinstance(provider_id, bool) \
            or str(provider_id) == "" or len(str(provider_id)) > 200:
        raise ValidationFailed(f"{where} has no id")
    if not isinstance(status, str) or status.lower() not in JSON_STATES:
        raise ValidationFailed(f"{where} has an unknown status (one of "
                               f"{', '.join(JSON_STATES)})")
    return Receipt(connector=name, provider_id=str(provider_id),
                   state=JSON_STATES[status.lower()], code=_short(item.get("code") or status),
                   text=_short(item.get("text") or ""), at=_when(item.get("at"), where))


def _when(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValidationFailed(f"{where}: at is not an ISO 8601 date") from exc
    return when if when.tzinfo else None


def _short(value: Any) -> str:
    return str(value)[:200]


# --------------------------------------------------------------------- twilio


def _twilio(name: str, token: str, shared_key: str, url: str, headers: Mapping[str, str],
            body: bytes) -> list[Receipt]:
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                       strict_parsing=bool(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("callback body is not a form (application/x-www-form-urlencoded)") \
            from exc
    signature = headers.get("x-twilio-signature", "")
    if not signature:
        raise UnverifiedCallback("missing X-Twilio-Signature")
    algorithm, secret = _twilio_algorithm(headers, token, shared_key)
    if not any(hmac.compare_digest(twilio_signature(secret, candidate, pairs, algorithm),
                                   signature.strip())
               for candidate in _port_variants(url)):
        raise UnverifiedCallback("wrong X-Twilio-Signature")
    form = dict(pairs)
    sid, status = form.get("MessageSid") or form.get("SmsSid"), \
        form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        raise ValidationFailed("callback has no MessageSid or MessageStatus")
    state = TWILIO_STATES.get(status.lower(), ReceiptState.PENDING)
    error = form.get("ErrorCode", "")
    return [Receipt(connector=name, provider_id=_short(sid), state=state,
                    code=_short(error or status), text=_short(status))]


def _twilio_algorithm(headers: Mapping[str, str], token: str,
                      shared_key: str) -> tuple[str, str]:
    settings = headers.get("x-twilio-webhooks-signature-settings", "")
    if not settings:
        return "sha1", token
    fields = dict(part.strip().partition("=")[::2] for part in settings.split(","))
    algorithm = fields.get("algorithm", "HMAC_SHA1").upper()
    if algorithm not in ("HMAC_SHA1", "HMAC_SHA256"):
        raise UnverifiedCallback(f"unsupported signature algorithm {algorithm[:20]}")
    if not shared_key:
        raise UnverifiedCallback("signed with a shared key, and no callback_secret is set")
    return ("sha256" if algorithm == "HMAC_SHA256" else "sha1"), shared_key


def twilio_signature(secret: str, url: str, pairs: list[tuple[str, str]],
                     algorithm: str = "sha1") -> str:
    """Twilio's request signature: URL + sorted distinct names, each with its sorted
    distinct values, HMAC'd with ``secret``, base64."""
    values: dict[str, set[str]] = {}
    for key, value in pairs:
        values.setdefault(key, set()).add(value)
    text = url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))
    mac = hmac.new(secret.encode(), text.encode(), getattr(hashlib, algorithm))
    return base64.b64encode(mac.digest()).decode()


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.netloc.rsplit("@", 1)[-1]
    without = parsed._replace(netloc=parsed.netloc.split(":")[0]).geturl() \
        if parsed.port else url
    default = 443 if parsed.scheme == "https" else 80
    with_port = url if parsed.port else parsed._replace(netloc=f"{host}:{default}").geturl()
    return list(dict.fromkeys([url, without, with_port]))
