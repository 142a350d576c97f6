"""Pure parts of authentication: password hashing, token parsing, zone matching, XFF."""

from __future__ import annotations

import base64
import hashlib

import pytest

from soap_service import auth
from soap_service.errors import ValidationFailed
from soap_service.models import Zone


def test_hash_password_is_salted_scrypt_and_verifies():
    """A hash is self-describing scrypt, salted (hashes differ), and verifies only its password."""
    first = auth.hash_password("correct horse")
    second = auth.hash_password("correct horse")
    assert first.startswith("scrypt$32768$8$1$")
    assert first != second
    assert "correct horse" not in first
    assert auth.verify_password("correct horse", first)
    assert auth.verify_password("correct horse", second)
    assert not auth.verify_password("correct hors", first)
    assert not auth.verify_password("", first)


def test_verify_password_reads_pbkdf2_format():
    """``pbkdf2_sha256$iterations$salt$hash`` hashes are verified too (self-describing format)."""
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 200_000)
    stored = "pbkdf2_sha256$200000${}${}".format(
        base64.b64encode(salt).decode().rstrip("="), base64.b64encode(digest).decode().rstrip("="))
    assert auth.verify_password("pw", stored)
    assert not auth.verify_password("pw2", stored)


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$x$8$1$aa$bb", "md5$abc",
                                    "pbkdf2_sha256$notanint$aa$bb", "scrypt$16384$8$1$!!$!!"])
def test_malformed_hash_never_matches(stored):
    """A malformed or unknown stored hash rejects every password instead of raising."""
    assert not auth.verify_password("anything", stored)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("mc/secret", ("mc", "secret")),
        ("mc/pa/ss", ("mc", "pa/ss")),  # split at the FIRST slash, as the SDK does
        ("mc/", ("mc", "")),
        ("/pw", ("", "pw")),
        ("___5c1f0e4e-0000-4000-8000-000000000000", None),
        ("___weird/token", None),  # a session token is never split
        ("nosuchthing", None),
    ],
)
def test_split_token(token, expected):
    """Tokens with a slash are login/password split at the first slash; ``___`` tokens never."""
    assert auth.split_token(token) == expected


def test_new_tokens_have_documented_shapes():
    """Session tokens are ``___<uuid>``; API keys ``mc_`` + 32 random url-safe bytes; all unique."""
    token = auth.new_session_token()
    assert token.startswith("___") and len(token) == 3 + 36
    key = auth.new_api_key()
    assert key.startswith("mc_") and len(key) == 3 + 43
    assert len({auth.new_api_key() for _ in range(50)}) == 50
    assert auth.sha256_hex(key) == hashlib.sha256(key.encode()).hexdigest()


def test_parse_rights():
    """Rights default to ``mc``; unknown rights are refused."""
    assert auth.parse_rights([]) == frozenset({"mc"})
    assert auth.parse_rights(["admin", "mc", "mc"]) == frozenset({"admin", "mc"})
    with pytest.raises(ValidationFailed):
        auth.parse_rights(["root"])


def test_admin_right_implies_every_right():
    """A principal holding ``admin`` passes any right check; ``mc`` alone does not pass admin."""
    admin = auth.Principal(1, "a", frozenset({"admin"}), "session")
    pusher = auth.Principal(2, "b", frozenset({"mc"}), "session")
    assert admin.has_right("mc") and admin.has_right("admin")
    assert pusher.has_right("mc") and not pusher.has_right("admin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("10.0.0.1:8080", "10.0.0.1"),
        ("::1", "::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4-mapped IPv6 compares as IPv4
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("", None),
    ],
)
def test_parse_ip(text, expected):
    """Addresses from REMOTE_ADDR / X-Forwarded-For: ports, brackets, mapped IPv4, zone ids."""
    ip = auth.parse_ip(text)
    assert (str(ip) if ip is not None else None) == expected


def test_parse_cidr_normalises_and_rejects():
    """CIDRs are normalised (host bits dropped); garbage raises ValidationFailed."""
    assert str(auth.parse_cidr("10.1.2.3/8")) == "10.0.0.0/8"
    assert str(auth.parse_cidr("2001:db8::1/32")) == "2001:db8::/32"
    for bad in ("10.0.0.300/8", "10.0.0.0/33", "lan", ""):
        with pytest.raises(ValidationFailed):
            auth.parse_cidr(bad)


ZONES = [
    Zone(name="all4", cidr="0.0.0.0/0"),
    Zone(name="lan", cidr="10.0.0.0/8", allow_user_password=True),
    Zone(name="dmz", cidr="10.9.0.0/16", session_token_only=True),
    Zone(name="v6", cidr="2001:db8::/32", allow_empty_password=True),
    Zone(name="lb", cidr="10.9.9.9/32", is_proxy=True),
    Zone(name="edge", cidr="192.0.2.0/24", is_proxy=True),
]


@pytest.mark.parametrize(
    ("ip", "zone"),
    [
        ("10.1.1.1", "lan"),
        ("10.9.1.1", "dmz"),  # most specific network wins
        ("10.9.9.9", "lb"),
        ("8.8.8.8", "all4"),
        ("2001:db8::5", "v6"),
        ("2001:db9::5", None),  # IPv4 0.0.0.0/0 does not cover IPv6
        ("::ffff:10.1.1.1", "lan"),
        ("bogus", None),
    ],
)
def test_zone_match_most_specific(ip, zone):
    """A caller belongs to the most specific zone containing its address, or to none."""
    found = auth.ZoneTable(ZONES).match(auth.parse_ip(ip))
    assert (found.name if found else None) == zone


@pytest.mark.parametrize(
    ("remote", "xff", "client"),
    [
        ("10.1.1.1", "6.6.6.6", "10.1.1.1"),  # not from a proxy: XFF ignored
        ("10.9.9.9", None, "10.9.9.9"),  # proxy without XFF: the proxy itself
        ("10.9.9.9", "10.1.1.1", "10.1.1.1"),
        ("10.9.9.9", "6.6.6.6, 10.1.1.1", "10.1.1.1"),  # right-most untrusted, spoof ignored
        ("10.9.9.9", "10.1.1.1, 192.0.2.4", "10.1.1.1"),  # chain of two declared proxies
        ("10.9.9.9", "192.0.2.4, 192.0.2.5", "192.0.2.4"),  # all proxies: the left-most
        ("10.9.9.9", "2001:db8::7", "2001:db8::7"),
        ("10.9.9.9", " , 10.1.1.1 ,", "10.1.1.1"),
        ("10.9.9.9", "garbage", "garbage"),  # unparsable: kept, then matches no zone
        ("::ffff:10.9.9.9", "10.1.1.1", "10.1.1.1"),
    ],
)
def test_client_ip_from_forwarded_for(remote, xff, client):
    """X-Forwarded-For is honoured only from proxy zones; the right-most non-proxy hop wins."""
    assert auth.ZoneTable(ZONES).client_ip(remote, xff) == client


def test_client_ip_garbage_hop_is_denied():
    """A garbage X-Forwarded-For hop from a proxy yields an address outside every zone."""
    table = auth.ZoneTable(ZONES)
    assert table.match(auth.parse_ip(table.client_ip("10.9.9.9", "not-an-ip"))) is None
