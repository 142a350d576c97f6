"""FCM connector (kind ``fcm``): Firebase Cloud Messaging HTTP v1 with OAuth2.

``POST {base_url}/v1/projects/{project_id}/messages:send`` with
``{"message": {"token", "notification": {"title", "body"}, "data", "android": {"priority",
"ttl", "collapse_key"}}}`` and ``Authorization: Bearer <access token>``.  The access token
comes from the service-account JSON (``service_account_file``): a JWT-bearer grant (an RS256
assertion, ``iss`` = ``client_email``, ``scope`` = firebase.messaging, ``aud`` = the token
URI) posted to the JSON's ``token_uri`` (or the ``token_uri`` option).
:class:`AccessToken` caches it until shortly before ``expires_in``, fetches one at a time
however many sends wait for it, and fetches a new one once when FCM answers 401.

Outcomes, from the FCM error's ``errorCode`` (``FcmError`` detail) or ``status``:

=======================================  ===============================================
200                                      sent; ``provider_id`` = the answer's ``name``
``UNREGISTERED``, ``INVALID_ARGUMENT``
about the registration token             permanent, ``address_refused`` (quarantine)
other ``INVALID_ARGUMENT``,
``SENDER_ID_MISMATCH``,
``THIRD_PARTY_AUTH_ERROR``, other 4xx    permanent
``UNAVAILABLE``, ``INTERNAL``,
``QUOTA_EXCEEDED``, 5xx, no answer       temporary, ``Retry-After`` honoured
401 after a token refresh,
``PERMISSION_DENIED``, token endpoint
failing                                  temporary (the provider's configuration)
=======================================  ===============================================

Never logs a registration token in full, a notification's content or a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
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

PRODUCTION_URL = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # seconds (Google's maximum)
REFRESH_MARGIN = 300  # renew this long before the access token expires
MAX_TTL = 28 * 86400  # FCM keeps a message at most four weeks
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_PERMANENT_CODES = {"SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR", "INVALID_ARGUMENT"}
_TEMPORARY_CODES = {"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED",
                    "UNAUTHENTICATED", "PERMISSION_DENIED", "DEADLINE_EXCEEDED"}


@dataclass(frozen=True)
class ServiceAccount:
    """What the connector needs of a Google service-account JSON."""

    client_email: str
    private_key_id: str
    token_uri: str
    project_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)


def load_service_account(config: ConnectorConfig) -> ServiceAccount:
    """``service_account_file`` (or ``service_account`` / ``_env``), validated."""
    where = f"connector {config.name!r}"
    raw = config.secret("service_account")
    if not raw:
        raise ConfigError(f"{where}: service_account_file is required")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: the service account is not JSON") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the service account is not a JSON object")
    missing = [k for k in ("client_email", "private_key") if not data.get(k)]
    if missing:
        raise ConfigError(f"{where}: the service account has no {', '.join(missing)}")
    try:
        key = load_pem_private_key(str(data["private_key"]).encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: the service account's private_key is not a PEM "
                          "private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: the service account's private_key is not an RSA key")
    return ServiceAccount(str(data["client_email"]), str(data.get("private_key_id") or ""),
                          str(data.get("token_uri") or GOOGLE_TOKEN_URI),
                          str(data.get("project_id") or ""), key)


class TokenUnavailable(Exception):
    """The token endpoint gave no access token; never leaves this module."""


class AccessToken:
    """An OAuth2 access token for FCM, cached; ``clock`` gives Unix seconds."""

    def __init__(self, account: ServiceAccount, token_uri: str,
                 http: Callable[[], httpx.AsyncClient],
                 clock: Callable[[], float] = time.time) -> None:
        self._account = account
        self._token_uri = token_uri
        self._http = http
        self._clock = clock
        self._token = ""
        self._renew_at = 0.0
        self._lock: asyncio.Lock | None = None
        self._failure = ""  # why the last fetch failed ("" when it worked)
        self._completed = 0  # fetches finished, whatever their outcome
        self.fetches = 0  # token endpoint requests made (health, tests)

    def _lock_(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def get(self) -> str:
        if self._token and self._clock() < self._renew_at:
            return self._token
        attempts = self._completed
        async with self._lock_():  # one fetch at a time; the others get its token
            if not self._token or self._clock() >= self._renew_at:
                self._fetch_unless_just_failed(attempts)
                await self._fetch()
            return self._token

    async def renew(self, refused: str) -> str:
        """FCM refused ``refused`` (401): fetch a new token unless one already was."""
        attempts = self._completed
        async with self._lock_():
            if self._token == refused:
                self._token = ""
                self._fetch_unless_just_failed(attempts)
                await self._fetch()
            return self._token

    def _fetch_unless_just_failed(self, attempts: int) -> None:
        """Sends that queued behind a failed fetch share its failure instead of each
        trying again (a hanging token endpoint would otherwise cost one timeout per send)."""
        if self._completed != attempts and self._failure:
            raise TokenUnavailable(self._failure)

    def _assertion(self, now: int) -> str:
        account = self._account
        claims = {"iss": account.client_email, "scope": SCOPE, "aud": self._token_uri,
                  "iat": now, "exp": now + ASSERTION_LIFETIME}
        headers = {"kid": account.private_key_id} if account.private_key_id else None
        return jwt.encode(claims, account.private_key, algorithm="RS256", headers=headers)

    async def _fetch(self) -> None:
        try:
            self._token, self._renew_at = await self._request()
            self._failure = ""
        except TokenUnavailable as exc:
            self._failure = str(exc)
            raise
        finally:
            self._completed += 1

    async def _request(self) -> tuple[str, float]:
        """One token request: (access token, when to renew it)."""
        now = self._clock()
        self.fetches += 1
        try:
            response = await self._http().post(self._token_uri, data={
                "grant_type": GRANT_TYPE, "assertion": self._assertion(int(now))})
        except httpx.HTTPError as exc:
            text = push_http.transport_failure(exc, time.monotonic()).text
            log.warning("fcm.token_failed status=- error=%s", text[:100])
            raise TokenUnavailable(text) from exc
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        token = data.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = f"{data.get('error', '')} {data.get('error_description', '')}".strip()
            log.warning("fcm.token_failed status=%s error=%s", response.status_code,
                        error[:100] or "-")
            raise TokenUnavailable(f"{response.status_code} {error or 'no access_token'}"[:200])
        try:
            lifetime = max(1.0, float(data.get("expires_in", 3600)))
        except (TypeError, ValueError):
            lifetime = 3600.0
        log.info("fcm.token_fetched expires_in=%.0f", lifetime)
        return token, now + lifetime - min(REFRESH_MARGIN, lifetime / 10)


def build_body(message: PushMessage, token: str, now: float) -> dict[str, Any]:
    """The ``messages:send`` request body (pure; ``now`` in Unix seconds for the TTL)."""
    android: dict[str, str] = {"priority": "high" if message.urgent else "normal"}
    if message.expiration is not None:
        expiration = message.expiration
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        ttl = int(expiration.timestamp() - now)
        android["ttl"] = f"{min(max(ttl, 0), MAX_TTL)}s"
    if message.collapse_id:
        android["collapse_key"] = message.collapse_id
    body: dict[str, Any] = {"token": token, "android": android}
    if message.title or message.body:
        body["notification"] = {"title": message.title, "body": message.body}
    if message.data:
        body["data"] = {str(k): str(v) for k, v in message.data.items()}
    return {"message": body}


def classify(http_status: int, error: dict[str, Any],
             retry_after: float | None = None) -> SendResult:
    """An FCM error answer (``error`` = the JSON's ``error`` object) as a SendResult."""
    status = str(error.get("status") or "")
    raw_details = error.get("details")
    details: list[Any] = raw_details if isinstance(raw_details, list) else []
    fcm_code = next((str(d.get("errorCode")) for d in details if isinstance(d, dict)
                     and d.get("@type") == FCM_ERROR_TYPE and d.get("errorCode")), "")
    code = fcm_code or status
    text = f"{http_status} {code}: {error.get('message', '')}".strip(": ")[:300]
    if code == "UNREGISTERED":
        return SendResult(SendOutcome.PERMANENT, http_status, text, address_refused=True)
    if code == "INVALID_ARGUMENT" and _about_token(error, details):
        return SendResult(SendOutcome.PERMANENT, http_status, text, address_refused=True)
    if code in _PERMANENT_CODES:
        return SendResult(SendOutcome.PERMANENT, http_status, text)
    if code in _TEMPORARY_CODES or http_status >= 500 or http_status in (401, 408, 429):
        return SendResult(SendOutcome.TEMPORARY, http_status, text, retry_after=retry_after)
    if 400 <= http_status < 500:
        return SendResult(SendOutcome.PERMANENT, http_status, text)
    return SendResult(SendOutcome.TEMPORARY, http_status, text, retry_after=retry_after)


def _about_token(error: dict[str, Any], details: list[Any]) -> bool:
    """Does an INVALID_ARGUMENT concern the registration token (not the payload)?"""
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == BAD_REQUEST_TYPE:
            violations = detail.get("fieldViolations")
            if isinstance(violations, list) and any(
                    isinstance(v, dict) and v.get("field") == "message.token"
                    for v in violations):
                return True
    return "registration token" in str(error.get("message", "")).lower()


class FcmConnector:
    """One FCM project link (see the module doc)."""

    def __init__(self, config: ConnectorConfig, on_receipt: ReceiptSink | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        account = load_service_account(config)
        self.base_url = push_http.option_str(config, "base_url", PRODUCTION_URL).rstrip("/")
        project = push_http.option_str(config, "project_id", account.project_id)
        if not project:
            raise ConfigError(f"connector {config.name!r}: project_id is required (not in "
                              "the service account either)")
        self.url = f"{self.base_url}/v1/projects/{project}/messages:send"
        self.timeout = push_http.option_seconds(config, "timeout", push_http.DEFAULT_TIMEOUT)
        self.platforms = _platforms(config)
        token_uri = push_http.option_str(config, "token_uri", account.token_uri)
        self._clock = clock
        self.access = AccessToken(account, token_uri, self._token_http, clock)
        self._ssl = push_http.ssl_context(config)  # a bad ca_file fails here, at start
        self._token_client: httpx.AsyncClient | None = None
        self._transport: push_http.PushTransport | None = None

    def accepts(self, message: ChannelMessage) -> bool:
        return isinstance(message, PushMessage) and message.platform in self.platforms

    def _token_http(self) -> httpx.AsyncClient:
        """httpx for the OAuth2 token endpoint (a few requests an hour, maybe elsewhere)."""
        if self._token_client is None:
            self._token_client = push_http.make_client(self.config, self._ssl, http2=True,
                                                       timeout=self.timeout)
        return self._token_client

    def _http(self) -> push_http.PushTransport:
        if self._transport is None:
            self._transport = push_http.make_transport(self.config, self.base_url,
                                                       self.timeout)
        return self._transport

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        """One notification to the registration token ``address``; never raises."""
        started = time.monotonic()
        if not isinstance(message, PushMessage):
            return SendResult(SendOutcome.PERMANENT, None, "fcm sends push messages only")
        token = address.strip()
        if not token or len(token) > 4096 or any(c.isspace() for c in token):
            return SendResult(SendOutcome.PERMANENT, None,
                              "INVALID_ARGUMENT (not a registration token)",
                              address_refused=True)
        body = json.dumps(build_body(message, token, self._clock()), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        try:
            access = await self.access.get()
            response = await self._post(body, access)
            if response.status == 401 and _fcm_code(response) != "THIRD_PARTY_AUTH_ERROR":
                response = await self._post(body, await self.access.renew(access))
        except TokenUnavailable as exc:
            return SendResult(SendOutcome.TEMPORARY, None, f"oauth token: {exc}",
                              push_http.elapsed_ms(started))
        except TransportError as exc:
            return push_http.scrub_token(push_http.transport_failure(exc, started), token)
        return push_http.scrub_token(self._result(response, started), token)

    async def _post(self, body: bytes, access: str) -> Response:
        return await self._http().post(self.url, body, {
            "authorization": f"Bearer {access}", "content-type": "application/json"})

    def _result(self, response: Response, started: float) -> SendResult:
        ms = push_http.elapsed_ms(started)
        data = _json(response)
        if response.status == 200:
            return SendResult(SendOutcome.SENT, 200, "OK", ms,
                              provider_id=str(data.get("name", "")))
        error = data.get("error")
        if not isinstance(error, dict):
            error = {"message": response.text[:100]}
        result = classify(response.status, error, push_http.retry_after(response.headers))
        return SendResult(result.outcome, result.code, result.text, ms, result.address_refused,
                          retry_after=result.retry_after)

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        client, self._token_client = self._token_client, None
        if transport is not None:
            await transport.aclose()
        if client is not None:
            await client.aclose()


def _json(response: Response) -> dict[str, Any]:
    try:
        data = json.loads(response.body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _fcm_code(response: Response) -> str:
    error = _json(response).get("error")
    if not isinstance(error, dict) or not isinstance(error.get("details"), list):
        return ""
    return next((str(d.get("errorCode")) for d in error["details"] if isinstance(d, dict)
                 and d.get("@type") == FCM_ERROR_TYPE and d.get("errorCode")), "")


def _platforms(config: ConnectorConfig) -> frozenset[PushPlatform]:
    """``platforms`` (default ``["android"]``): FCM can also reach iOS apps that use it."""
    raw = config.option("platforms", ["android"])
    values = [raw] if isinstance(raw, str) else raw
    try:
        platforms = frozenset(PushPlatform(str(v)) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"connector {config.name!r}: platforms must list android and/or "
                          "ios") from exc
    if not platforms:
        raise ConfigError(f"connector {config.name!r}: platforms must not be empty")
    return platforms


register_kind("fcm", Channel.PUSH, FcmConnector)
