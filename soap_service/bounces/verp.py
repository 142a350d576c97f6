"""Signed VERP return paths: ``bounces+<token>@<bounce domain>``.

Each message leaves with an envelope sender that names its event and delivery attempt, so
a bounce is matched to what was sent without reading the original message, and a forged
bounce cannot name an event it was not sent for.  The token is::

    base32( varint(event_id) || varint(attempt) || HMAC-SHA256(key, payload)[:10] )

written in lowercase without padding: letters and digits only, so it survives MTAs that
lower-case local parts, and has no ``+``, ``=``, ``-`` or ``/`` for a relay to treat as
a separator (an id of 10^12 with attempt 3 gives 30 characters).  The MAC key is derived
from ``MC_SECRET`` with its own label, so a tracking token can never pass for a return
path.  Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from soap_service.config import Settings

LOCAL_PREFIX = "bounces"
_MAC_BYTES = 10  # 80 bits: a forger needs ~2^79 tries per address, each one a real bounce
_MAX_TOKEN = 48  # characters; two 64-bit varints + MAC fit in 40
_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_SEPARATORS = "+-"  # "+" as we write it; "-" where a relay rewrote it qmail-style


class VerpTarget(NamedTuple):
    """What a valid token names: the event and the delivery attempt (unpacks as a pair)."""

    event_id: int
    attempt: int


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"msgcenter-verp-v1\0" + secret.encode("utf-8")).digest()


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); ValueError when truncated or longer than 64 bits."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and shift > 7:  # a non-minimal encoding: one value, one token
                raise ValueError("non-minimal varint")
            return value, pos


def make_token(event_id: int, attempt: int, secret: str) -> str:
    """The lowercase base32 token for ``(event_id, attempt)``."""
    if event_id < 0 or attempt < 0 or event_id >= 1 << 64 or attempt >= 1 << 32:
        raise ValueError("event_id and attempt must be non-negative (64 / 32 bits)")
    payload = _varint(event_id) + _varint(attempt)
    return _b32(payload + _mac(secret, payload))


def read_token(token: str, secret: str | Sequence[str]) -> VerpTarget | None:
    """What a token names, or None when it is malformed or its MAC does not match.

    ``secret`` may be several (the current one first, then retired ones) so that bounces
    of mail sent before a secret rotation still match.
    """
    token = token.strip().lower()
    if not 0 < len(token) <= _MAX_TOKEN or not set(token) <= _ALPHABET:
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError):
        return None
    # base32 leaves spare bits in the last character; a token whose spare bits are set
    # decodes to the same bytes, so only the canonical spelling is accepted
    if len(raw) <= _MAC_BYTES or _b32(raw) != token:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not any(hmac.compare_digest(mac, _mac(s, payload)) for s in secrets):
        return None
    try:
        event_id, pos = _read_varint(payload, 0)
        attempt, pos = _read_varint(payload, pos)
    except ValueError:
        return None
    if pos != len(payload):
        return None
    return VerpTarget(event_id, attempt)


def make_return_path(event_id: int, attempt: int, secret: str, domain: str) -> str:
    """``bounces+<token>@<domain>``: the envelope sender (MAIL FROM) of one delivery."""
    domain = domain.strip().strip(".").lower()
    if not domain or "@" in domain:
        raise ValueError("the bounce domain must be a domain name")
    return f"{LOCAL_PREFIX}+{make_token(event_id, attempt, secret)}@{domain}"


def return_path_for(settings: Settings, event_id: int, attempt: int) -> str:
    """The envelope sender of an event's email: its return path when ``MC_BOUNCE_DOMAIN``
    is set, else "" (the From address is the envelope sender, as without VERP)."""
    if not settings.bounce_domain:
        return ""
    return make_return_path(event_id, attempt, settings.secret, settings.bounce_domain)


def split_address(address: str) -> tuple[str, str]:
    """``(local part, domain)`` of an address as a bounce shows it: angle brackets, a
    ``mailto:`` or ``rfc822;`` prefix and a trailing dot removed; domain lower-cased."""
    addr = address.strip()
    for prefix in ("rfc822;", "mailto:"):
        if addr.lower().startswith(prefix):
            addr = addr[len(prefix):].strip()
    addr = addr.strip("<>").strip()
    local, sep, domain = addr.rpartition("@")
    if not sep:
        return "", ""
    return local, domain.strip().rstrip(".").lower()


def is_return_path(address: str, domain: str = "") -> bool:
    """Whether ``address`` has the shape of one of our return paths (not checked: the MAC).
    With ``domain``, it must also be at that domain."""
    local, at = split_address(address)
    if domain and at != domain.strip().strip(".").lower():
        return False
    head, token = local[:len(LOCAL_PREFIX) + 1], local[len(LOCAL_PREFIX) + 1:]
    return (len(head) == len(LOCAL_PREFIX) + 1 and head[:-1].lower() == LOCAL_PREFIX
            and head[-1] in _SEPARATORS and bool(token))


def parse_return_path(address: str, secret: str | Sequence[str],
                      domain: str) -> VerpTarget | None:
    """``(event_id, attempt)`` named by one of our return paths at ``domain``, or None for
    any other address, another domain, or a forged or altered token."""
    if not is_return_path(address, domain):
        return None
    local, _ = split_address(address)
    return read_token(local[len(LOCAL_PREFIX) + 1:], secret)
