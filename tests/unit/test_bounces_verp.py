"""VERP return paths: signed, compact, case-insensitive, and refused when forged."""

from __future__ import annotations

import base64

import pytest

from soap_service.bounces.verp import (
    is_return_path,
    make_return_path,
    make_token,
    parse_return_path,
    read_token,
)

SECRET = "s3cret-for-tests"
DOMAIN = "bounce.example.com"


@pytest.mark.parametrize(("event_id", "attempt"), [
    (0, 0), (1, 1), (4242, 1), (127, 128), (10**12, 3), ((1 << 64) - 1, (1 << 32) - 1),
    ((1 << 56) | 99, 7),  # a plId of instance 1
])
def test_round_trip(event_id: int, attempt: int) -> None:
    """Whatever the ids, the return path names them back, and stays compact."""
    address = make_return_path(event_id, attempt, SECRET, DOMAIN)
    assert address.startswith("bounces+") and address.endswith("@" + DOMAIN)
    local = address.partition("@")[0]
    assert len(local) <= 64  # RFC 5321 local-part limit
    assert parse_return_path(address, SECRET, DOMAIN) == (event_id, attempt)


def test_token_alphabet_is_lowercase_base32() -> None:
    """Letters a-z and digits 2-7 only: no '+', '=', '-' or '/' for a relay to mangle."""
    token = make_token(123456789, 2, SECRET)
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert len(make_token(10**12, 3, SECRET)) <= 32


def _flip(token: str, index: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    c = token[index]
    return token[:index] + alphabet[(alphabet.index(c) + 1) % 32] + token[index + 1:]


GOOD = make_return_path(4242, 1, SECRET, DOMAIN)
TOKEN = GOOD[len("bounces+"):GOOD.index("@")]


@pytest.mark.parametrize(("address", "expected"), [
    (GOOD, (4242, 1)),
    (GOOD.upper(), (4242, 1)),  # an MTA that upper-cases the whole address
    (f"<{GOOD}>", (4242, 1)),
    (f"rfc822; {GOOD}", (4242, 1)),
    (GOOD.replace("bounces+", "bounces-"), (4242, 1)),  # qmail-style separator
    (GOOD.replace(DOMAIN, DOMAIN.upper() + "."), (4242, 1)),  # trailing dot, case
    (make_return_path(4242, 1, "another-secret", DOMAIN), None),  # signed with another key
    (GOOD.replace(DOMAIN, "other.example.com"), None),  # another domain
    (f"bounces+{_flip(TOKEN, 0)}@{DOMAIN}", None),  # payload altered
    (f"bounces+{_flip(TOKEN, len(TOKEN) // 2)}@{DOMAIN}", None),  # MAC altered
    (f"bounces+{_flip(TOKEN, len(TOKEN) - 1)}@{DOMAIN}", None),  # last (padding) char
    (f"bounces+{TOKEN[:-1]}@{DOMAIN}", None),  # truncated
    (f"bounces+{TOKEN}a@{DOMAIN}", None),  # extended
    (f"bounces+{TOKEN}=@{DOMAIN}", None),  # padding added
    (f"bounces+{TOKEN[:5]}!{TOKEN[6:]}@{DOMAIN}", None),  # not base32
    (f"bounces+@{DOMAIN}", None),
    (f"bounces@{DOMAIN}", None),
    (f"postmaster@{DOMAIN}", None),
    (f"xbounces+{TOKEN}@{DOMAIN}", None),
    (f"bounces+{'a' * 200}@{DOMAIN}", None),  # oversized
    ("", None),
    ("not an address", None),
])
def test_parse_table(address: str, expected: tuple[int, int] | None) -> None:
    """Accepted spellings give the target; every forged, altered or foreign one gives None."""
    assert parse_return_path(address, SECRET, DOMAIN) == expected


def test_forged_payload_with_recomputed_padding_is_refused() -> None:
    """Re-encoding another event id under the old MAC does not pass."""
    raw = base64.b32decode(TOKEN.upper() + "=" * (-len(TOKEN) % 8))
    forged = bytes([raw[0] ^ 1]) + raw[1:]
    token = base64.b32encode(forged).decode().rstrip("=").lower()
    assert read_token(token, SECRET) is None


def test_rotated_secrets_are_accepted_in_order() -> None:
    """Mail sent under a retired secret still matches when that secret is listed."""
    old = make_return_path(9, 2, "old-secret", DOMAIN)
    assert parse_return_path(old, SECRET, DOMAIN) is None
    assert parse_return_path(old, [SECRET, "old-secret"], DOMAIN) == (9, 2)


def test_non_canonical_varints_are_refused() -> None:
    """One target has exactly one token: a zero-padded varint with a valid MAC is refused."""
    import hashlib
    import hmac

    key = hashlib.sha256(b"msgcenter-verp-v1\0" + SECRET.encode()).digest()
    payload = bytes([0x81, 0x00, 0x01])  # 1 written in two bytes, attempt 1
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:10]
    token = base64.b32encode(payload + mac).decode().rstrip("=").lower()
    assert read_token(token, SECRET) is None


@pytest.mark.parametrize(("event_id", "attempt"), [(-1, 0), (0, -1), (1 << 64, 0)])
def test_out_of_range_ids_are_refused(event_id: int, attempt: int) -> None:
    """Ids that cannot be encoded raise ValueError instead of producing a wrong token."""
    with pytest.raises(ValueError):
        make_token(event_id, attempt, SECRET)


@pytest.mark.parametrize("domain", ["", "a@b", "  "])
def test_bad_domain_is_refused(domain: str) -> None:
    """The bounce domain must be a domain name."""
    with pytest.raises(ValueError):
        make_return_path(1, 1, SECRET, domain)


def test_is_return_path_checks_shape_and_domain_only() -> None:
    """The shape check used to pick the return path among a bounce's addresses."""
    assert is_return_path(GOOD) and is_return_path(GOOD, DOMAIN)
    assert is_return_path(f"bounces+abc@{DOMAIN}")  # shape only: the MAC is checked later
    assert not is_return_path(GOOD, "other.example.com")
    assert not is_return_path(f"orders@{DOMAIN}")
