"""The ``http-sms`` connector: SMS through an HTTP provider, with httpx (async, pooled).

Two wire formats (``format``):

* ``json`` — SPEC §7's generic provider: ``POST {url}`` with the JSON object
  ``{"to", "from", "text", "reference"}`` and ``Authorization: Bearer {token}``.  A 2xx
  answer accepts the message; its JSON ``id`` (the key is ``id_field``) is the provider id,
  or our ``reference`` when the answer has none.  A 4xx answer whose JSON says
  ``"field": "to"`` refuses the address.
* ``twilio`` — the Twilio-compatible Messages API: ``POST
  {url}/2010-04-01/Accounts/{account}/Messages.json``, form-encoded ``To``, ``From``,
  ``Body`` and ``StatusCallback``, HTTP Basic ``account:token``; the answer's ``sid`` is
  the provider id and Twilio's error ``code`` decides (21211 invalid 'To', 21614 not a
  mobile, 21610 unsubscribed... refuse the address).

Both: 429 and 5xx are temporary with ``Retry-After`` (seconds or an HTTP date) passed on
as ``retry_after``; other 4xx are permanent — except 401 / 403 / 404, which say the
connector is misconfigured (token, account, URL) rather than that the message is bad, so
they are temporary: failover moves on and nothing is lost while someone fixes the
configuration.  Timeouts and refused connections are temporary.  A provider's error text
goes into the result with the destination number masked.

Delivery callbacks are verified and read by :mod:`soap_service.channels.sms_callbacks`.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from soap_service.channels.base import ReceiptSink, register_kind
from soap_service.channels.options import (
    check_known,
    opt_choice,
    opt_float,
    opt_int,
    opt_str,
)
from soap_service.channels.slots import Slots
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import Channel, ChannelMessage, SendOutcome, SendResult, SmsMessage
from soap_service.phone import mask_phone

_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")
_TEXT_LIMIT = 300  # characters of a provider's error text kept in the result
_MAX_RETRY_AFTER = 86400.0
_OPTIONS = ("format", "url", "account", "from", "status_callback", "timeout", "id_field",
            "callback_max_bytes", "callback_tolerance")

# HTTP statuses that speak about our configuration, not the message: retry elsewhere/later
_CONNECTOR_STATUSES = frozenset({401, 403, 404, 407, 408, 425, 429})
# Twilio error codes that refuse the destination number itself
TWILIO_ADDRESS_CODES = frozenset({
    21211,  # invalid 'To' phone number
    21217,  # phone number does not appear to be valid
    21401,  # invalid phone number
    21610,  # the recipient unsubscribed (STOP)
    21612,  # 'To' number not reachable via SMS
    21614,  # 'To' number is not a valid mobile number
})
TWILIO_TEMPORARY_CODES = frozenset({20429, 30001})  # too many requests, queue overflow


@dataclass(frozen=True)
class HttpSmsOptions:
    """The ``[[connectors]]`` keys of kind ``http-sms`` (docs/channels.md lists them)."""

    format: str
    url: str
    token: str = field(repr=False)
    sender: str = ""
    account: str = ""
    status_callback: str = ""
    callback_secret: str = field(default="", repr=False)
    timeout: float = 10.0
    id_field: str = "id"
    callback_max_bytes: int = 64 * 1024
    callback_tolerance: int = 300

    @classmethod
    def from_config(cls, config: ConnectorConfig) -> HttpSmsOptions:
        check_known(config, _OPTIONS, secrets=("token", "callback_secret"))
        fmt = opt_choice(config, "format", "json", ("json", "twilio"))
        url = opt_str(config, "url", required=True).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"connector {config.name!r}: url must start with http:// or "
                              "https://")
        account = opt_str(config, "account", required=fmt == "twilio")
        token = config.secret("token")
        if not token:
            raise ConfigError(f"connector {config.name!r}: token (or token_file / token_env) "
                              "is required")
        return cls(format=fmt, url=url, token=token, sender=opt_str(config, "from"),
                   account=account, status_callback=opt_str(config, "status_callback"),
                   callback_secret=config.secret("callback_secret"),
                   timeout=opt_float(config, "timeout", 10.0, 0.01, 600),
                   id_field=opt_str(config, "id_field", "id", required=True),
                   callback_max_bytes=opt_int(config, "callback_max_bytes", 64 * 1024, 256,
                                              16 * 1024 * 1024),
                   callback_tolerance=opt_int(config, "callback_tolerance", 300, 1, 86400))

    @property
    def messages_url(self) -> str:
        if self.format == "twilio":
            return f"{self.url}/2010-04-01/Accounts/{self.account}/Messages.json"
        return self.url


class HttpSmsConnector:
    """An HTTP SMS provider connector (kind ``http-sms``)."""

    def __init__(self, config: ConnectorConfig, on_receipt: ReceiptSink | None = None) -> None:
        self.config = config
        self.options = HttpSmsOptions.from_config(config)
        self.on_receipt = on_receipt  # receipts come by callback (sms_callbacks), not here
        self._slots = Slots(config.concurrency)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the loop that uses it
            limits = httpx.Limits(max_connections=self.config.concurrency,
                                  max_keepalive_connections=self.config.concurrency)
            self._client = httpx.AsyncClient(timeout=self.options.timeout, limits=limits)
        return self._client

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        if not isinstance(message, SmsMessage):
            return self._result(SendOutcome.PERMANENT, "the http-sms connector sends SMS only")
        if not _E164.match(address):
            return self._result(SendOutcome.PERMANENT, "destination is not an E.164 number",
                                address_refused=True)
        sender = message.sender or self.options.sender
        if not sender:
            return self._result(SendOutcome.PERMANENT, "no sender (set from)")
        async with self._slots.take(urgent):
            started = time.monotonic()
            try:
                response = await self._post(message, address, sender)
            except httpx.TimeoutException:
                result = self._result(SendOutcome.TEMPORARY,
                                      f"no answer within {self.options.timeout:g}s")
            except httpx.HTTPError as exc:
                result = self._result(SendOutcome.TEMPORARY,
                                      f"cannot reach the provider: {_error_text(exc)}")
            else:
                result = self._classify(response, message, address)
        return replace(result, duration_ms=int((time.monotonic() - started) * 1000))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ------------------------------------------------------------------ wire

    async def _post(self, message: SmsMessage, address: str, sender: str) -> httpx.Response:
        options = self.options
        if options.format == "twilio":
            form = {"To": address, "From": sender, "Body": message.text}
            if options.status_callback:
                form["StatusCallback"] = options.status_callback
            return await self._http().post(options.messages_url, data=form,
                                           auth=(options.account, options.token))
        payload = {"to": address, "from": sender, "text": message.text,
                   "reference": message.reference}
        return await self._http().post(options.url, json=payload,
                                       headers={"Authorization": f"Bearer {options.token}"})

    def _classify(self, response: httpx.Response, message: SmsMessage,
                  address: str) -> SendResult:
        status = response.status_code
        body = _json(response)
        if 200 <= status < 300:
            key = "sid" if self.options.format == "twilio" else self.options.id_field
            provider_id = body.get(key) if isinstance(body, dict) else None
            if not isinstance(provider_id, str | int) or provider_id == "":
                provider_id = message.reference
            return replace(self._result(SendOutcome.SENT, f"HTTP {status}", code=status),
                           provider_id=str(provider_id))
        if self.options.format == "twilio":
            return self._twilio_error(status, body, response, address)
        error = body if isinstance(body, dict) else {}
        text = _scrub(_describe(status, error.get("error") or error.get("message")
                                or response.reason_phrase), address)
        if status in _CONNECTOR_STATUSES or status >= 500 or status < 400:
            return self._result(SendOutcome.TEMPORARY, text, code=status,
                                retry_after=_retry_after(response))
        return self._result(SendOutcome.PERMANENT, text, code=status,
                            address_refused=error.get("field") == "to")

    def _twilio_error(self, status: int, body: Any, response: httpx.Response,
                      address: str) -> SendResult:
        error = body if isinstance(body, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        text = _scrub(_describe(status, error.get("message") or response.reason_phrase,
                                twilio_code=code), address)
        temporary = (status in _CONNECTOR_STATUSES or status >= 500 or status < 400
                     or code in TWILIO_TEMPORARY_CODES)
        if temporary and code not in TWILIO_ADDRESS_CODES:
            return self._result(SendOutcome.TEMPORARY, text, code=code or status,
                                retry_after=_retry_after(response))
        return self._result(SendOutcome.PERMANENT, text, code=code or status,
                            address_refused=code in TWILIO_ADDRESS_CODES)

    def _result(self, outcome: SendOutcome, text: str, *, code: int | None = None,
                address_refused: bool = False, retry_after: float | None = None) -> SendResult:
        return SendResult(outcome, code=code, text=text, address_refused=address_refused,
                          connector=self.config.name, retry_after=retry_after)


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return None


def _describe(status: int, detail: Any, *, twilio_code: int | None = None) -> str:
    code = f" (Twilio {twilio_code})" if twilio_code else ""
    text = str(detail or "").strip()
    return f"HTTP {status}{code}: {text}"[:_TEXT_LIMIT] if text else f"HTTP {status}{code}"


def _scrub(text: str, address: str) -> str:
    """The provider's text with the destination number masked (it ends up in logs)."""
    for form in (address, address.removeprefix("+")):
        text = text.replace(form, mask_phone(address))
    return text


def _error_text(exc: httpx.HTTPError) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = str(cause or exc) or type(exc).__name__
    return detail[:_TEXT_LIMIT]


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent/bad."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return min(float(raw), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), _MAX_RETRY_AFTER)


def build(config: ConnectorConfig, on_receipt: ReceiptSink | None) -> HttpSmsConnector:
    return HttpSmsConnector(config, on_receipt)


register_kind("http-sms", Channel.SMS, build)
