"""Unsubscribe tokens and headers, pure: round trip, and every forged or altered token
verifies as nothing."""

from __future__ import annotations

import base64

import pytest

from soap_service import unsubscribe
from soap_service.models import Channel
from soap_service.track import CLICK, OPEN, make_token

SECRET = "s3cret"


def test_round_trip_and_headers() -> None:
    token = unsubscribe.make_token(SECRET, Channel.SMS, 42, "C:1/ü")
    assert unsubscribe.verify_token(SECRET, token) == \
        unsubscribe.UnsubscribeToken(Channel.SMS, 42, "C:1/ü")
    assert unsubscribe.email_headers("https://x.example/u/t") == {
        "List-Unsubscribe": "<https://x.example/u/t>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert unsubscribe.email_headers("") == {}


def _flip(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1:]


@pytest.mark.parametrize("index", range(0, 40, 3))
def test_any_altered_character_fails(index: int) -> None:
    token = unsubscribe.make_token(SECRET, Channel.EMAIL, 7, "C1")
    if index < len(token) and token[index] != ".":
        assert unsubscribe.verify_token(SECRET, _flip(token, index)) is None


def test_forgeries_fail() -> None:
    """Another secret, a re-signed payload with another profile, a tracking token, a
    non-canonical spelling, garbage and oversized input all verify as nothing."""
    good = unsubscribe.make_token(SECRET, Channel.EMAIL, 7, "C1")
    body, sig = good.split(".")
    other = unsubscribe.make_token(SECRET, Channel.EMAIL, 7, "C2").split(".")[1]
    forged_body = base64.urlsafe_b64encode(b"e:7:C2").rstrip(b"=").decode()
    for bad in (unsubscribe.make_token("other", Channel.EMAIL, 7, "C1"),
                f"{forged_body}.{sig}", f"{body}.{other}", f"{body}={sig}",
                make_token(SECRET, OPEN, 7), make_token(SECRET, CLICK, 7, "https://x.y/"),
                f"{body}.{sig}=", "", ".", "x" * 5000, f"{body}.", f".{sig}",
                "%00.%00"):
        assert unsubscribe.verify_token(SECRET, bad) is None, bad
