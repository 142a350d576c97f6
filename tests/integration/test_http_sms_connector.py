"""The http-sms connector against real local HTTP servers speaking the generic JSON
provider and the Twilio Messages API: accepted, 4xx permanent (address refused or not),
429 / 5xx temporary with Retry-After, credentials refused, timeout, connection refused.
The Twilio request is compared with what the official ``twilio`` client sends."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from servers.http_provider import HANG, Provider, Request, reply

import soap_service.channels.http_sms  # noqa: F401  (registers the http-sms kind)
from soap_service.channels.base import build_connector
from soap_service.channels.http_sms import HttpSmsConnector
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import Channel, SendOutcome, SendResult, SmsMessage

TO = "+33612345678"
MESSAGE = SmsMessage(text="Votre code : 1234 €", reference="mc.1.42")


def make(url: str, fmt: str = "json", **options: Any) -> HttpSmsConnector:
    base: dict[str, Any] = {"format": fmt, "url": url, "token": "tok-123",
                            "from": "MyShop"}
    if fmt == "twilio":
        base |= {"account": "AC123", "status_callback": "https://mc.example/callbacks/sms/t"}
    connector = build_connector(ConnectorConfig("sms-http", Channel.SMS, "http-sms",
                                                options=base | options))
    assert isinstance(connector, HttpSmsConnector)
    return connector


def send(connector: HttpSmsConnector, message: SmsMessage = MESSAGE,
         to: str = TO) -> SendResult:
    async def go() -> SendResult:
        try:
            return await connector.send(message, to)
        finally:
            await connector.close()
    return asyncio.run(go())


def test_json_provider_accepts_with_its_id() -> None:
    """POST {url} with the JSON of SPEC §7 and a Bearer token; 200 {"id"} → SENT."""
    with Provider(lambda r: reply(200, {"id": "p-77"})) as provider:
        result = send(make(provider.url + "/send"))
    assert (result.outcome, result.provider_id, result.code) == (SendOutcome.SENT, "p-77", 200)
    (request,) = provider.requests
    assert request.path == "/send"
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.json() == {"to": TO, "from": "MyShop", "text": "Votre code : 1234 €",
                              "reference": "mc.1.42"}


def test_json_provider_without_an_id_uses_our_reference() -> None:
    """A 202 with no JSON: accepted; callbacks will name our reference."""
    with Provider(lambda r: reply(202)) as provider:
        result = send(make(provider.url))
    assert (result.outcome, result.provider_id) == (SendOutcome.SENT, "mc.1.42")


def test_json_id_field_is_configurable() -> None:
    """id_field names the key of the provider's answer."""
    with Provider(lambda r: reply(201, {"message_id": 991})) as provider:
        result = send(make(provider.url, id_field="message_id"))
    assert result.provider_id == "991"


@pytest.mark.parametrize(("status", "payload", "headers", "outcome", "refused", "retry"), [
    (400, {"error": f"invalid number {TO}", "field": "to"}, {}, SendOutcome.PERMANENT, True,
     None),
    (422, {"error": "text too long"}, {}, SendOutcome.PERMANENT, False, None),
    (429, {"error": "slow down"}, {"Retry-After": "7"}, SendOutcome.TEMPORARY, False, 7.0),
    (500, None, {}, SendOutcome.TEMPORARY, False, None),
    (503, None, {"Retry-After": "120"}, SendOutcome.TEMPORARY, False, 120.0),
    (401, {"error": "bad token"}, {}, SendOutcome.TEMPORARY, False, None),
    (404, None, {}, SendOutcome.TEMPORARY, False, None),
])
def test_json_provider_errors(status: int, payload: Any, headers: dict[str, str],
                              outcome: SendOutcome, refused: bool, retry: float | None) -> None:
    """4xx permanent (the address refused when the provider names the "to" field);
    429 / 5xx temporary with Retry-After; 401 / 404 are the connector's problem."""
    with Provider(lambda r: (status, headers, reply(status, payload)[2])) as provider:
        result = send(make(provider.url))
    assert (result.outcome, result.address_refused, result.code) == (outcome, refused, status)
    assert result.retry_after == retry
    assert result.text.startswith(f"HTTP {status}")
    assert "33612345678" not in result.text  # the provider's text is masked


def test_retry_after_as_an_http_date() -> None:
    """Retry-After may be a date: the seconds until then."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    with Provider(lambda r: (503, {"Retry-After": when}, b"")) as provider:
        result = send(make(provider.url))
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.retry_after is not None and 60 <= result.retry_after <= 90


def test_a_provider_that_does_not_answer_is_temporary() -> None:
    """No answer within timeout: temporary."""
    with Provider(lambda r: (200, {}, HANG)) as provider:
        result = send(make(provider.url, timeout=0.3))
    assert (result.outcome, result.text) == (SendOutcome.TEMPORARY, "no answer within 0.3s")


def test_a_refused_connection_is_temporary() -> None:
    """Nobody listening: temporary, naming the problem."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = send(make(f"http://127.0.0.1:{port}"))
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.text.startswith("cannot reach the provider: ")


def test_bad_addresses_and_messages_are_permanent_without_a_request() -> None:
    """A number not in E.164 is refused before any HTTP request."""
    with Provider(lambda r: reply(200, {"id": "x"})) as provider:
        result = send(make(provider.url), to="0612345678")
    assert (result.outcome, result.address_refused) == (SendOutcome.PERMANENT, True)
    assert provider.requests == []


def test_twilio_accepts_with_the_sid() -> None:
    """POST .../Accounts/{account}/Messages.json, form-encoded, Basic auth; 201 → the sid."""
    with Provider(lambda r: reply(201, {"sid": "SM0001", "status": "queued"})) as provider:
        result = send(make(provider.url, "twilio"))
    assert (result.outcome, result.provider_id) == (SendOutcome.SENT, "SM0001")
    (request,) = provider.requests
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(
        b"AC123:tok-123").decode()
    assert request.form() == {"To": TO, "From": "MyShop", "Body": "Votre code : 1234 €",
                              "StatusCallback": "https://mc.example/callbacks/sms/t"}


def test_twilio_request_matches_the_official_client() -> None:
    """The official twilio client, pointed at the same server, sends the same path, auth
    and form fields (and reads our test server's answer as a Message)."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    with Provider(lambda r: reply(201, {"sid": "SM0002", "status": "queued"})) as provider:
        class Local(TwilioHttpClient):
            def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                return super().request(method, url.replace("https://api.twilio.com",
                                                           provider.url), *args, **kwargs)

        official = Client("AC123", "tok-123", http_client=Local())
        message = official.messages.create(to=TO, from_="MyShop", body=MESSAGE.text,
                                           status_callback="https://mc.example/callbacks/sms/t")
        assert message.sid == "SM0002"
        send(make(provider.url, "twilio"))
    theirs, ours = provider.requests
    assert ours.path == theirs.path
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert ours.form() == theirs.form()


@pytest.mark.parametrize(("status", "code", "headers", "outcome", "refused"), [
    (400, 21211, {}, SendOutcome.PERMANENT, True),  # invalid 'To'
    (400, 21614, {}, SendOutcome.PERMANENT, True),  # not a mobile number
    (400, 21610, {}, SendOutcome.PERMANENT, True),  # unsubscribed
    (400, 21408, {}, SendOutcome.PERMANENT, False),  # region not enabled
    (429, 20429, {"Retry-After": "3"}, SendOutcome.TEMPORARY, False),
    (401, 20003, {}, SendOutcome.TEMPORARY, False),  # authentication
    (500, 20500, {}, SendOutcome.TEMPORARY, False),
])
def test_twilio_errors(status: int, code: int, headers: dict[str, str],
                       outcome: SendOutcome, refused: bool) -> None:
    """Twilio's error JSON decides: the address codes refuse the number; 429/5xx/401 are
    temporary; the Twilio code is the result's code."""
    payload = {"code": code, "message": f"The 'To' number {TO} is not valid.",
               "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    with Provider(lambda r: (status, headers, reply(status, payload)[2])) as provider:
        result = send(make(provider.url, "twilio"))
    assert (result.outcome, result.address_refused, result.code) == (outcome, refused, code)
    assert f"(Twilio {code})" in result.text and "33612345678" not in result.text
    if status == 429:
        assert result.retry_after == 3.0


def test_urgent_messages_take_free_slots_first() -> None:
    """With one slot busy, a waiting real-time message goes before waiting batch ones."""
    order: list[str] = []

    def answer(request: Request) -> tuple[int, dict[str, str], bytes]:
        order.append(request.json()["reference"])
        return reply(200, {"id": request.json()["reference"]})

    with Provider(answer) as provider:
        connector = HttpSmsConnector(ConnectorConfig(
            "c", Channel.SMS, "http-sms", concurrency=1,
            options={"url": provider.url, "token": "t", "from": "S"}))

        async def go() -> None:
            async def one(ref: str, urgent: bool) -> None:
                await connector.send(SmsMessage("x", ref), TO, urgent=urgent)
            await connector._slots.acquire()  # hold the only slot
            tasks = [asyncio.ensure_future(one("batch-1", False)),
                     asyncio.ensure_future(one("batch-2", False)),
                     asyncio.ensure_future(one("rt", True))]
            await _until(lambda: connector._slots.waiting == 3)
            connector._slots.release()
            await asyncio.gather(*tasks)
            await connector.close()
        asyncio.run(go())
    assert order == ["rt", "batch-1", "batch-2"]


@pytest.mark.parametrize(("options", "problem"), [
    ({"url": "ftp://x"}, "url must start with http"),
    ({"token": ""}, "token (or token_file / token_env) is required"),
    ({"format": "xml"}, "format must be one of json, twilio"),
    ({"format": "twilio", "account": ""}, "account is required"),
    ({"tokn": "x"}, "unknown option(s) tokn"),
    ({"timeout": "fast"}, "timeout must be a number"),
])
def test_configuration_errors_name_the_option(options: dict[str, Any], problem: str) -> None:
    """A bad table stops at build time with one line naming the connector and option."""
    base = {"url": "http://127.0.0.1:1", "token": "t", "from": "S"}
    with pytest.raises(ConfigError) as caught:
        build_connector(ConnectorConfig("sms-http", Channel.SMS, "http-sms",
                                        options=base | options))
    assert "'sms-http'" in caught.value.message and problem in caught.value.message


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")

