"""HTTP plumbing shared by the push connectors (APNs, FCM): the pooled httpx client,
``Retry-After``, transport failures as values, and what may be shown of a device token.

The only module of the push connectors that builds an ``httpx.AsyncClient``.  One client
per connector, created lazily on the connector's event loop: HTTP/2 multiplexes every
request over one TLS connection per host (what APNs asks of providers), HTTP/1.1 keeps a
pool of ``concurrency`` keep-alive connections.
"""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime

import httpx

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
    """The connector's one pooled client (create it on the loop that will use it)."""
    limits = httpx.Limits(max_connections=max(1, config.concurrency),
                          max_keepalive_connections=max(1, config.concurrency))
    return httpx.AsyncClient(http2=http2, verify=context,
                             timeout=httpx.Timeout(timeout), limits=limits,
                             follow_redirects=False, trust_env=False)


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
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
    HTTP/2 protocol error.  Always temporary: the message is not at fault."""
    if isinstance(exc, httpx.TimeoutException):
        text = f"timeout ({type(exc).__name__})"
    elif isinstance(exc, httpx.ConnectError):
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
