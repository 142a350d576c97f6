"""Delivery callbacks of http-sms providers: authenticated (HMAC-SHA256 for the JSON format,
Twilio's X-Twilio-Signature checked against signatures made by the official ``twilio``
package's RequestValidator), then read into Receipt values; bad requests refused with the
error the web edge maps to 403 / 413 / 400."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from soap_service.channels.sms_callbacks import parse_callback
from soap_service.config import ConnectorConfig
from soap_service.errors import PayloadTooLarge, UnverifiedCallback, ValidationFailed
from soap_service.models import Channel, Receipt, ReceiptState

NOW = 1_795_000_000
URL = "https://mc.example.com/callbacks/sms/sms-http"
SECRET = "cb-secret-1"


def config(fmt: str = "json", **options: Any) -> ConnectorConfig:
    base: dict[str, Any] = {"format": fmt, "url": "https://sms.example.net/send",
                            "token": "tw-token", "callback_secret": SECRET}
    if fmt == "twilio":
        base["account"] = "AC123"
    return ConnectorConfig("sms-http", Channel.SMS, "http-sms", options=base | options)


def signed(body: bytes, secret: str = SECRET, stamp: int = NOW) -> dict[str, str]:
    """Headers a provider sends: written from the documented scheme with hmac directly."""
    digest = hmac.new(secret.encode(), str(stamp).encode() + b"." + body,
                      hashlib.sha256).hexdigest()
    return {"X-MC-Timestamp": str(stamp), "X-MC-Signature": f"v1={digest}"}


def json_callback(body: bytes, headers: dict[str, str], cfg: ConnectorConfig | None = None
                  ) -> list[Receipt]:
    return parse_callback(cfg or config(), URL, headers, body, now=NOW + 10)


def test_a_signed_json_callback_gives_receipts() -> None:
    """One object or an array; delivered / failed / pending states; code, text and date."""
    body = json.dumps([
        {"id": "p-1", "status": "delivered", "at": "2026-11-20T12:00:05+00:00"},
        {"id": "p-2", "status": "undelivered", "code": "EC_UNKNOWN_SUBSCRIBER",
         "text": "absent subscriber"},
        {"id": 3, "status": "sent"},
    ]).encode()
    receipts = json_callback(body, signed(body))
    assert [(r.connector, r.provider_id, r.state, r.code) for r in receipts] == [
        ("sms-http", "p-1", ReceiptState.DELIVERED, "delivered"),
        ("sms-http", "p-2", ReceiptState.FAILED, "EC_UNKNOWN_SUBSCRIBER"),
        ("sms-http", "3", ReceiptState.PENDING, "sent"),
    ]
    assert receipts[0].at is not None and receipts[0].at.second == 5
    assert receipts[1].text == "absent subscriber"


def test_header_names_are_case_insensitive_and_rotation_is_allowed() -> None:
    """Lower-case headers, and a list of signatures where one matches (secret rotation)."""
    body = b'{"id": "p-1", "status": "delivered"}'
    good = signed(body)["X-MC-Signature"]
    headers = {"x-mc-timestamp": str(NOW), "x-mc-signature": f"v1=deadbeef, {good}"}
    assert [r.provider_id for r in json_callback(body, headers)] == ["p-1"]


@pytest.mark.parametrize(("headers", "problem"), [
    ({}, "missing X-MC-Timestamp or X-MC-Signature"),
    ({"X-MC-Timestamp": str(NOW)}, "missing X-MC-Timestamp or X-MC-Signature"),
    ("wrong-secret", "wrong X-MC-Signature"),
    ("tampered", "wrong X-MC-Signature"),
    ("stale", "X-MC-Timestamp outside ±300 s"),
    ({"X-MC-Timestamp": "soon", "X-MC-Signature": "v1=00"}, "X-MC-Timestamp outside ±300 s"),
])
def test_unauthenticated_json_callbacks_are_refused(headers: Any, problem: str) -> None:
    """Missing, wrong (other secret, body changed after signing) or stale signatures."""
    body = b'{"id": "p-1", "status": "failed"}'
    if headers == "wrong-secret":
        headers = signed(body, secret="other")
    elif headers == "tampered":
        headers = signed(b'{"id": "p-1", "status": "delivered"}')
    elif headers == "stale":
        headers = signed(body, stamp=NOW - 3600)
    with pytest.raises(UnverifiedCallback) as caught:
        json_callback(body, headers)
    assert caught.value.message == problem


def test_json_callbacks_need_a_configured_secret() -> None:
    """Without callback_secret nothing is accepted (an unauthenticated callback changes
    nothing)."""
    body = b'{"id": "p-1", "status": "failed"}'
    cfg = config(callback_secret="")
    with pytest.raises(UnverifiedCallback, match="no callback_secret"):
        json_callback(body, signed(body, secret=""), cfg)


@pytest.mark.parametrize(("body", "problem"), [
    (b"{not json", "callback body is not JSON"),
    (b"\xff\xfe", "callback body is not JSON"),
    (b"[]", "callback body must hold 1 to 1000 receipts"),
    (b'"delivered"', "callback receipt 1 is not an object"),
    (b'{"status": "delivered"}', "callback receipt 1 has no id"),
    (b'{"id": "p", "status": "lost"}', "callback receipt 1 has an unknown status"),
    (b'{"id": "p", "status": "delivered", "at": "yesterday"}',
     "callback receipt 1: at is not an ISO 8601 date"),
])
def test_malformed_json_callbacks_are_refused(body: bytes, problem: str) -> None:
    """Signed but malformed: a ValidationFailed with a short message."""
    with pytest.raises(ValidationFailed) as caught:
        json_callback(body, signed(body))
    assert caught.value.message.startswith(problem)
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("fmt", ["json", "twilio"])
def test_oversized_callbacks_are_refused_before_anything_else(fmt: str) -> None:
    """Over callback_max_bytes: PayloadTooLarge, whatever the signature."""
    body = b"x" * 5000
    with pytest.raises(PayloadTooLarge, match="over 4096 bytes"):
        parse_callback(config(fmt, callback_max_bytes=4096), URL, {}, body, now=NOW)


# ------------------------------------------------------------------------- twilio

TWILIO_FORM = {"MessageSid": "SM0001", "SmsSid": "SM0001", "AccountSid": "AC123",
               "MessageStatus": "undelivered", "SmsStatus": "undelivered",
               "ErrorCode": "30003", "To": "+33612345678", "From": "MyShop",
               "ApiVersion": "2010-04-01"}


def twilio_request(form: dict[str, str], signature_url: str = URL, token: str = "tw-token",
                   algorithm: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Twilio would send, signed by the official RequestValidator."""
    body = urllib.parse.urlencode(form).encode()
    headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(
        signature_url, form, algorithm)}
    if algorithm:
        headers["X-Twilio-Webhooks-Signature-Settings"] = f"key=k1,algorithm={algorithm}"
    return body, headers


@pytest.mark.parametrize(("status", "error", "state", "code"), [
    ("delivered", "", ReceiptState.DELIVERED, "delivered"),
    ("undelivered", "30003", ReceiptState.FAILED, "30003"),
    ("failed", "30005", ReceiptState.FAILED, "30005"),
    ("sent", "", ReceiptState.PENDING, "sent"),
])
def test_a_twilio_status_callback_signed_by_twilios_validator(status: str, error: str,
                                                              state: ReceiptState,
                                                              code: str) -> None:
    """The signature made by twilio's RequestValidator is accepted; the status maps."""
    form = TWILIO_FORM | {"MessageStatus": status, "SmsStatus": status, "ErrorCode": error}
    body, headers = twilio_request(form)
    (receipt,) = parse_callback(config("twilio"), URL, headers, body)
    assert (receipt.provider_id, receipt.state, receipt.code) == ("SM0001", state, code)
    assert RequestValidator("tw-token").validate(URL, form, headers["X-Twilio-Signature"])


def test_twilio_signatures_with_and_without_the_default_port() -> None:
    """Signed for https://host/..., received as https://host:443/... (and the reverse)."""
    with_port = URL.replace("mc.example.com", "mc.example.com:443")
    body, headers = twilio_request(TWILIO_FORM, signature_url=URL)
    assert parse_callback(config("twilio"), with_port, headers, body)
    body, headers = twilio_request(TWILIO_FORM, signature_url=with_port)
    assert parse_callback(config("twilio"), URL, headers, body)


def test_twilio_shared_key_sha256_signatures() -> None:
    """X-Twilio-Webhooks-Signature-Settings algorithm=HMAC_SHA256: checked with
    callback_secret (the shared key), not the auth token."""
    body, headers = twilio_request(TWILIO_FORM, token=SECRET, algorithm="HMAC_SHA256")
    (receipt,) = parse_callback(config("twilio"), URL, headers, body)
    assert receipt.state is ReceiptState.FAILED
    body, headers = twilio_request(TWILIO_FORM, token="tw-token", algorithm="HMAC_SHA256")
    with pytest.raises(UnverifiedCallback):
        parse_callback(config("twilio"), URL, headers, body)


@pytest.mark.parametrize("attack", ["wrong-token", "tampered", "other-url", "missing"])
def test_unauthenticated_twilio_callbacks_are_refused(attack: str) -> None:
    """Another token, a field changed after signing, another URL, or no signature."""
    body, headers = twilio_request(TWILIO_FORM, token="other" if attack == "wrong-token"
                                   else "tw-token")
    url = URL
    if attack == "tampered":
        body = body.replace(b"undelivered", b"delivered")
    elif attack == "other-url":
        url = URL.replace("sms-http", "other")
    elif attack == "missing":
        headers = {}
    with pytest.raises(UnverifiedCallback):
        parse_callback(config("twilio"), url, headers, body)


@pytest.mark.parametrize(("body", "error"), [
    (b"\xff\xfe=1", ValidationFailed),
    (b"a=1&&&b", ValidationFailed),
])
def test_malformed_twilio_bodies_are_refused(body: bytes, error: type[Exception]) -> None:
    """Not a form: ValidationFailed before any signature work."""
    with pytest.raises(error, match="not a form"):
        parse_callback(config("twilio"), URL, {"X-Twilio-Signature": "x"}, body)


def test_a_signed_twilio_callback_without_a_sid_is_malformed() -> None:
    """Authentic but without MessageSid / MessageStatus: ValidationFailed."""
    body, headers = twilio_request({"AccountSid": "AC123"})
    with pytest.raises(ValidationFailed, match="no MessageSid or MessageStatus"):
        parse_callback(config("twilio"), URL, headers, body)
