"""Signed URL tokens: ``<payload>.<signature>`` in unpadded URL-safe base64.

One framing for every link we sign (tracking opens and clicks, one-click unsubscribe):
HMAC-SHA256 under ``settings.secret`` over a purpose label and the payload, truncated to
128 bits (forging one is out of reach; links stay short).  The label keeps a token made
for one purpose from verifying for another.  Only the canonical base64 spelling verifies:
base64 ignores the unused low bits of a last character, so an altered spelling of a valid
token must not pass.  The VERP return path (``bounces/verp.py``) is signed apart: it must
survive case-folding mail systems, so it is base32.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from typing import Any

SIG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=16)
def _keyed(secret: str, purpose: bytes) -> Any:
    """The HMAC keyed and labelled once per secret and purpose (a link is made per message)."""
    return hmac.new(secret.encode("utf-8"), purpose + b"\x00", hashlib.sha256)


def _signature(secret: str, purpose: bytes, payload: bytes) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(payload)
    return mac.digest()[:SIG_BYTES]


def sign(secret: str, purpose: bytes, payload: bytes) -> str:
    """The token carrying ``payload`` for ``purpose``."""
    return f"{_b64(payload)}.{_b64(_signature(secret, purpose, payload))}"


def unsign(secret: str, purpose: bytes, token: str, max_length: int) -> bytes | None:
    """The payload of a well-formed, canonically spelled, correctly signed token; else None."""
    body, _, sig = token.partition(".")
    if not body or not sig or len(token) > max_length:
        return None
    try:
        raw, given = _unb64(body), _unb64(sig)
    except (ValueError, TypeError):
        return None
    if _b64(raw) != body or _b64(given) != sig:
        return None
    if not hmac.compare_digest(given, _signature(secret, purpose, raw)):
        return None
    return raw
