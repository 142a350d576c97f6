"""HTTP plumbing shared by the push connectors (APNs, FCM): the transport that carries
notifications, ``Retry-After``, transport failures as values, and what may be shown of a
device token.

The only module of the push connectors that builds an HTTP client.  Notifications to an
``https`` base URL go through :class:`~soap_service.channels.h2client.H2Client` (one
HTTP/2 connection per connector, every request a stream on it -- what APNs asks of
providers -- at about a fifth of httpx's CPU per request); a plain ``http`` base URL (a
local stand-in) goes through httpx over HTTP/1.1.  httpx also fetches FCM's OAuth2 access
tokens (rare requests, possibly to another host).  Both transports give a
:class:`~soap_service.channels.h2client.Response` and raise
:class:`~soap_service.channels.h2client.TransportError`.
"""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

import httpx

from soap_service.channels.h2client import (
    ConnectFailed,
    H2Client,
    RequestTimeout,
    Response,
    TransportError,
)
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import SendOutcome, SendResult

DEFAULT_TIMEOUT = 10.0  # seconds for connect, each read and each write

# httpx logs every request's URL at INFO, and an APNs URL ends with the device token;
# at DEBUG, hpack logs every header it encodes (the provider token and the OAuth bearer
# included) and h2 / httpcore describe each frame.  None of that belongs in our logs.
for _name in ("httpx", "httpcore", "hpack", "h2"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def option_str(config: ConnectorConfig, key: str, default: str = "",
               required: bool = False) -> str:
    """A string option of ``config``; a required one missing is a ConfigError."""
    value = config.option(key, default)
    value = "" if value is None else str(value).strip()
    if required and not value:
        raise ConfigError(f"connector {config.name!r}: {key} is required")
    return value


def option_seconds(config: ConnectorConfig, key: str, default: float) -> float:
    raw = config.option(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = 0.0
    if value <= 0 or isinstance(raw, bool):
        raise ConfigError(f"connector {config.name!r}: {key} must be a number of seconds "
                          "above 0")
    return value


def ssl_context(config: ConnectorConfig) -> ssl.SSLContext:
    """The system's trust store, plus the ``ca_file`` bundle when one is configured."""
    context = ssl.create_default_context()
    ca_file = option_str(config, "ca_file")
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"connector {config.name!r}: cannot load ca_file {ca_file}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc
    return context


def make_client(config: ConnectorConfig, context: ssl.SSLContext, *, http2: bool,
                timeout: float) -> httpx.AsyncClient:
    """A pooled httpx client (create it on the loop that will use it): FCM's token
    fetches, and notifications to a plain ``http`` base URL."""
    limits = httpx.Limits(max_connections=max(1, config.concurrency),
                          max_keepalive_connections=max(1, config.concurrency))
    return httpx.AsyncClient(http2=http2, verify=context,
                             timeout=httpx.Timeout(timeout), limits=limits,
                             follow_redirects=False, trust_env=False)


class PushTransport(Protocol):
    """What a push connector sends its notifications through."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response: ...

    async def aclose(self) -> None: ...


class HttpxTransport:
    """Notifications to a plain ``http`` base URL, over httpx (HTTP/1.1 keep-alive pool),
    with the answers and failures of :mod:`~soap_service.channels.h2client`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        try:
            response = await self.client.post(url, content=body, headers=dict(headers))
        except httpx.TimeoutException as exc:
            raise RequestTimeout(f"{type(exc).__name__}") from None
        except httpx.ConnectError as exc:
            raise ConnectFailed(str(exc)) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return Response(response.status_code, dict(response.headers), response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


def make_transport(config: ConnectorConfig, base_url: str, timeout: float) -> PushTransport:
    """The connector's notification transport for ``base_url`` (create it on the loop
    that will use it): HTTP/2 over TLS for ``https``, httpx's HTTP/1.1 for ``http``."""
    if base_url.startswith("https://"):
        origin = base_url.split("/", 3)
        return H2Client("/".join(origin[:3]), ssl_context(config), timeout=timeout,
                        max_streams=config.concurrency)
    return HttpxTransport(make_client(config, ssl_context(config), http2=False,
                                      timeout=timeout))


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent or bad."""
    raw = headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return max(0.0, (when - now_dt).total_seconds())


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def transport_failure(exc: Exception, started: float) -> SendResult:
    """A request that got no HTTP answer: timeout, refused or dropped connection, TLS or
    HTTP/2 protocol error (from :mod:`h2client` or httpx).  Always temporary: the message
    is not at fault."""
    if isinstance(exc, RequestTimeout | httpx.TimeoutException):
        text = f"timeout ({exc or type(exc).__name__})"
    elif isinstance(exc, ConnectFailed | httpx.ConnectError):
        text = f"connection failed: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return SendResult(SendOutcome.TEMPORARY, None, text[:300], elapsed_ms(started))


def token_tail(token: str) -> str:
    """What logs may show of a device token: its last 6 characters."""
    return f"…{token[-6:]}" if len(token) > 6 else "…"


def scrub_token(result: SendResult, token: str) -> SendResult:
    """Never let a full device token travel in a result's text (it ends up in logs)."""
    if token and token in result.text:
        return replace(result, text=result.text.replace(token, token_tail(token)))
    return result
