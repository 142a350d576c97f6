"""APNs connector (kind ``apns``): Apple push notifications over HTTP/2 with token auth.

``POST {base_url}/3/device/{token}`` on one HTTP/2 connection (every notification a
stream on it, :mod:`~soap_service.channels.h2client`), authenticated by
an ES256 JWT (header ``kid`` = ``key_id``, claims ``iss`` = ``team_id`` and ``iat``)
signed with the ``.p8`` key of ``key_file`` (or ``key`` / ``key_env``).  Apple refuses
tokens regenerated more often than every 20 minutes and expires them after an hour, so
:class:`ProviderToken` reuses one for 40 minutes and regenerates it earlier only when
APNs answers 403 ``ExpiredProviderToken`` for a token at least 20 minutes old.

Outcomes (the worker decides what they mean for the event):

========================================  ==========================================
200                                       sent; ``provider_id`` = ``apns-id``
410 ``Unregistered``, 400 ``BadDeviceToken``,
400 ``DeviceTokenNotForTopic``            permanent, ``address_refused`` (quarantine)
other 400, 413 ``PayloadTooLarge``        permanent
403 (provider token or certificate)       temporary, after one token refresh when expired
429, 5xx, 404/405, no answer              temporary, ``Retry-After`` honoured
========================================  ==========================================

Never logs a device token in full, a notification's content or the key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from soap_service.channels import push_http
from soap_service.channels.base import ReceiptSink, register_kind
from soap_service.channels.h2client import Response, TransportError
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import (
    Channel,
    ChannelMessage,
    PushMessage,
    PushPlatform,
    SendOutcome,
    SendResult,
)

log = logging.getLogger(__name__)

PRODUCTION_URL = "https://api.push.apple.com"
TOKEN_REFRESH_AFTER = 40 * 60  # seconds a provider token is reused (Apple: 20-60 min)
TOKEN_MIN_AGE = 20 * 60  # Apple answers TooManyProviderTokenUpdates below this
MAX_PAYLOAD = 4096  # bytes; APNs refuses larger alert payloads (413)
_REFUSED_REASONS = {"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered",
                    "ExpiredToken"}
_HEX = frozenset("0123456789abcdefABCDEF")


class ProviderToken:
    """The APNs provider token (ES256 JWT), reused 40 minutes, never regenerated sooner
    than 20 minutes unless it has never been made.  ``clock`` gives Unix seconds."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._token = ""
        self._made_at = 0.0
        self.generated = 0  # how many tokens this connector made (health, tests)

    def current(self) -> str:
        if not self._token or self._clock() - self._made_at >= TOKEN_REFRESH_AFTER:
            self._make()
        return self._token

    def refused(self, token: str) -> bool:
        """APNs said ``token`` expired: is there a newer one worth retrying with?"""
        if token != self._token:
            return True  # another request already replaced it
        if self._clock() - self._made_at < TOKEN_MIN_AGE:
            return False  # regenerating now would be refused as too frequent
        self._make()
        return True

    def _make(self) -> None:
        now = self._clock()
        self._token = jwt.encode({"iss": self._team_id, "iat": int(now)}, self._key,
                                 algorithm="ES256", headers={"kid": self._key_id})
        self._made_at = now
        self.generated += 1
        log.info("apns.token_generated kid=%s", self._key_id)


def load_signing_key(config: ConnectorConfig) -> ec.EllipticCurvePrivateKey:
    """The ``.p8`` key (``key_file``, ``key_env`` or ``key``): a P-256 private key."""
    pem = config.secret("key")
    if not pem:
        raise ConfigError(f"connector {config.name!r}: key_file (the .p8 key) is required")
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"connector {config.name!r}: the key is not a PEM private key "
                          "(expected Apple's .p8 file)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"connector {config.name!r}: the key is not a P-256 (ES256) key")
    return key


def classify(status: int, reason: str, retry_after: float | None = None) -> SendResult:
    """An APNs answer other than 200 as a SendResult (pure)."""
    text = f"{status} {reason}".strip()
    if status in (400, 410) and reason in _REFUSED_REASONS:
        return SendResult(SendOutcome.PERMANENT, status, text, address_refused=True)
    if status == 410:  # the token is no longer active for the topic, whatever the reason
        return SendResult(SendOutcome.PERMANENT, status, text, address_refused=True)
    if status in (400, 413):
        return SendResult(SendOutcome.PERMANENT, status, text)
    # 403 is the provider's configuration (token, key, team), 404/405 the endpoint's;
    # 429 and 5xx ask us to slow down: none is the message's fault
    return SendResult(SendOutcome.TEMPORARY, status, text, retry_after=retry_after)


def build_payload(message: PushMessage) -> bytes:
    """``{"aps": {"alert": {"title", "body"}}, ...data}`` (data cannot replace ``aps``)."""
    payload: dict[str, object] = dict(message.data)
    payload["aps"] = {"alert": {"title": message.title, "body": message.body}}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def expiration_header(expiration: datetime | None) -> str:
    """``apns-expiration``: Unix seconds (naive datetimes are UTC); 0 when none."""
    if expiration is None:
        return "0"
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    return str(max(0, int(expiration.timestamp())))


class ApnsConnector:
    """One APNs provider link (see the module doc)."""

    def __init__(self, config: ConnectorConfig, on_receipt: ReceiptSink | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.base_url = push_http.option_str(config, "base_url", PRODUCTION_URL).rstrip("/")
        self.topic = push_http.option_str(config, "topic", required=True)
        self.timeout = push_http.option_seconds(config, "timeout", push_http.DEFAULT_TIMEOUT)
        self.token = ProviderToken(
            load_signing_key(config),
            push_http.option_str(config, "key_id", required=True),
            push_http.option_str(config, "team_id", required=True),
            clock,
        )
        push_http.ssl_context(config)  # a bad ca_file fails here, at start
        self._transport: push_http.PushTransport | None = None

    def accepts(self, message: ChannelMessage) -> bool:
        return isinstance(message, PushMessage) and message.platform is PushPlatform.IOS

    def _http(self) -> push_http.PushTransport:
        if self._transport is None:
            self._transport = push_http.make_transport(self.config, self.base_url,
                                                       self.timeout)
        return self._transport

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        """One notification to the device token ``address``; never raises."""
        started = time.monotonic()
        if not isinstance(message, PushMessage):
            return SendResult(SendOutcome.PERMANENT, None, "apns sends push messages only")
        token = address.strip()
        if not token or len(token) > 200 or not _HEX.issuperset(token):
            return SendResult(SendOutcome.PERMANENT, None,
                              "BadDeviceToken (not a hexadecimal device token)",
                              address_refused=True)
        body = build_payload(message)
        if len(body) > MAX_PAYLOAD:
            return SendResult(SendOutcome.PERMANENT, 413,
                              f"PayloadTooLarge ({len(body)} bytes, at most {MAX_PAYLOAD})")
        headers = {
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if message.urgent else "5",
            "apns-expiration": expiration_header(message.expiration),
        }
        if message.collapse_id:
            headers["apns-collapse-id"] = message.collapse_id
        url = f"{self.base_url}/3/device/{token}"
        try:
            jwt_used = self.token.current()
            response = await self._post(url, body, headers, jwt_used)
            if response.status == 403 and _reason(response) == "ExpiredProviderToken" \
                    and self.token.refused(jwt_used):
                response = await self._post(url, body, headers, self.token.current())
        except TransportError as exc:
            result = push_http.transport_failure(exc, started)
            return push_http.scrub_token(result, token)
        return self._result(response, token, started)

    async def _post(self, url: str, body: bytes, headers: dict[str, str],
                    provider_token: str) -> Response:
        return await self._http().post(
            url, body, {**headers, "authorization": f"bearer {provider_token}"})

    def _result(self, response: Response, token: str, started: float) -> SendResult:
        ms = push_http.elapsed_ms(started)
        if response.status == 200:
            return SendResult(SendOutcome.SENT, 200, "OK", ms,
                              provider_id=response.headers.get("apns-id", ""))
        reason = _reason(response)
        result = classify(response.status, reason, push_http.retry_after(response.headers))
        if result.address_refused:
            log.info("apns.token_refused connector=%s token=%s reason=%s", self.config.name,
                     push_http.token_tail(token), reason)
        return push_http.scrub_token(replace(result, duration_ms=ms), token)

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()


def _reason(response: Response) -> str:
    """APNs' ``{"reason": "..."}``, or the start of whatever else came back."""
    try:
        data = json.loads(response.body or b"{}")
    except ValueError:
        return response.text[:100]
    reason = data.get("reason") if isinstance(data, dict) else None
    return str(reason)[:100] if reason else ""


register_kind("apns", Channel.PUSH, ApnsConnector)
