"""The pure parts of the push connectors: APNs and FCM answers → outcomes, request
bodies, expiration / TTL, Retry-After and what logs may show of a token."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from soap_service.channels import apns, fcm
from soap_service.channels.push_http import retry_after, scrub_token, token_tail
from soap_service.models import PushMessage, PushPlatform, SendOutcome, SendResult

P, T = SendOutcome.PERMANENT, SendOutcome.TEMPORARY


@pytest.mark.parametrize(("status", "reason", "outcome", "refused"), [
    (410, "Unregistered", P, True),
    (410, "ExpiredToken", P, True),
    (410, "", P, True),
    (400, "BadDeviceToken", P, True),
    (400, "DeviceTokenNotForTopic", P, True),
    (400, "BadCollapseId", P, False),
    (400, "TopicDisallowed", P, False),
    (413, "PayloadTooLarge", P, False),
    (403, "InvalidProviderToken", T, False),
    (403, "ExpiredProviderToken", T, False),
    (404, "BadPath", T, False),
    (429, "TooManyProviderTokenUpdates", T, False),
    (500, "InternalServerError", T, False),
    (503, "ServiceUnavailable", T, False),
])
def test_apns_answers_map_to_outcomes(status: int, reason: str, outcome: SendOutcome,
                                      refused: bool) -> None:
    """The APNs table of the connector's docstring, answer by answer."""
    result = apns.classify(status, reason, retry_after=3)
    assert (result.outcome, result.address_refused, result.code) == (outcome, refused, status)
    assert result.retry_after == (3 if outcome is T else None)
    assert result.text == f"{status} {reason}".strip()


def test_apns_payload_keeps_aps_whatever_the_data_says() -> None:
    """Data keys go beside "aps"; a data key named "aps" cannot replace the alert."""
    message = PushMessage(PushPlatform.IOS, "T", "B", "r", {"aps": "x", "order": "1"})
    assert json.loads(apns.build_payload(message)) == {
        "aps": {"alert": {"title": "T", "body": "B"}}, "order": "1"}


def test_apns_expiration_is_unix_seconds_naive_meaning_utc() -> None:
    """apns-expiration is Unix seconds; a naive datetime is UTC; none is 0."""
    naive = datetime(2027, 1, 1, 0, 0)
    assert apns.expiration_header(naive) == "1798761600"
    assert apns.expiration_header(naive.replace(tzinfo=UTC)) == "1798761600"
    assert apns.expiration_header(None) == "0"


def _error(status: str, code: str = "", message: str = "m", token_field: bool = False) -> dict:
    details = []
    if code:
        details.append({"@type": fcm.FCM_ERROR_TYPE, "errorCode": code})
    if token_field:
        details.append({"@type": fcm.BAD_REQUEST_TYPE,
                        "fieldViolations": [{"field": "message.token"}]})
    return {"code": 0, "status": status, "message": message, "details": details}


@pytest.mark.parametrize(("http", "error", "outcome", "refused"), [
    (404, _error("NOT_FOUND", "UNREGISTERED"), P, True),
    (400, _error("INVALID_ARGUMENT", "INVALID_ARGUMENT", token_field=True), P, True),
    (400, _error("INVALID_ARGUMENT", "INVALID_ARGUMENT",
                 "The registration token is not a valid FCM registration token"), P, True),
    (400, _error("INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid value at 'message.data'"),
     P, False),
    (400, _error("INVALID_ARGUMENT"), P, False),
    (403, _error("PERMISSION_DENIED", "SENDER_ID_MISMATCH"), P, False),
    (401, _error("UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), P, False),
    (401, _error("UNAUTHENTICATED"), T, False),
    (403, _error("PERMISSION_DENIED"), T, False),
    (429, _error("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), T, False),
    (503, _error("UNAVAILABLE", "UNAVAILABLE"), T, False),
    (500, _error("INTERNAL", "INTERNAL"), T, False),
    (502, {"message": "<html>bad gateway</html>"}, T, False),
    (404, _error("NOT_FOUND"), P, False),
])
def test_fcm_errors_map_to_outcomes(http: int, error: dict, outcome: SendOutcome,
                                    refused: bool) -> None:
    """The FCM table of the connector's docstring: errorCode first, then status."""
    result = fcm.classify(http, error, retry_after=4)
    assert (result.outcome, result.address_refused, result.code) == (outcome, refused, http)
    assert result.retry_after == (4 if outcome is T else None)


def test_fcm_body_ttl_from_expiration_clamped_and_data_as_strings() -> None:
    """TTL counts from now to the expiration (0 once past, at most 28 days); data values
    are strings; no title and body → no notification block (a data message)."""
    now = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    soon = PushMessage(PushPlatform.ANDROID, "", "", "r", {"n": 1},  # type: ignore[dict-item]
                       expiration=datetime(2027, 1, 1, 0, 10))
    body = fcm.build_body(soon, "tok", now)["message"]
    assert body == {"token": "tok", "data": {"n": "1"},
                    "android": {"priority": "high", "ttl": "600s"}}
    past = PushMessage(PushPlatform.ANDROID, "t", "b", "r",
                       expiration=datetime(2026, 12, 31, tzinfo=UTC))
    far = PushMessage(PushPlatform.ANDROID, "t", "b", "r", urgent=False,
                      expiration=datetime(2027, 6, 1, tzinfo=UTC))
    assert fcm.build_body(past, "tok", now)["message"]["android"]["ttl"] == "0s"
    assert fcm.build_body(far, "tok", now)["message"]["android"] == {
        "priority": "normal", "ttl": f"{28 * 86400}s"}


def test_retry_after_seconds_or_http_date() -> None:
    """Retry-After as delta-seconds or an HTTP date; junk or absent → None."""
    now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    date = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after(httpx.Headers({"Retry-After": "30"})) == 30
    assert retry_after(httpx.Headers({"Retry-After": date}), now.timestamp()) == 90
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None


def test_only_the_tail_of_a_token_is_shown() -> None:
    """Logs and result texts show the last 6 characters of a token, never the whole."""
    token = "0123456789abcdef"
    assert token_tail(token) == "…abcdef" and token_tail("abc") == "…"
    scrubbed = scrub_token(SendResult(T, None, f"failed for {token}!"), token)
    assert scrubbed.text == "failed for …abcdef!"
