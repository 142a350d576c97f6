"""Unsubscribe (SPEC §10, RFC 8058): signed one-click links and what they record.

A profile-based message carries a link ``{public URL}/u/{token}``: templates write it with
``unsubscribeUrl()``, and emails carry it in ``List-Unsubscribe`` with
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``.  The token names the channel, the
event and the profile's external id, signed with HMAC-SHA256 under ``settings.secret``
(a key of its own, derived apart from the tracking tokens'): a forged or altered token
verifies as nothing and records nothing.  ``GET`` shows a confirmation page with a form;
``POST`` (the form, or a mail client's one-click POST) records the opt-out of that
channel (``http/unsubscribe.py``).  Pure except :func:`record`.
"""

from __future__ import annotations

from dataclasses import dataclass

from soap_service import profiles, signed
from soap_service.config import Settings
from soap_service.errors import NotFound
from soap_service.models import Channel, Profile
from soap_service.store import Database

PREFIX = "/u/"
_PURPOSE = b"mc-unsubscribe"
MAX_TOKEN = 1200
_CODES = {Channel.EMAIL: "e", Channel.SMS: "s", Channel.PUSH: "p"}
_CHANNELS = {code: channel for channel, code in _CODES.items()}


@dataclass(frozen=True)
class UnsubscribeToken:
    channel: Channel
    event_id: int
    external_id: str


def make_token(secret: str, channel: Channel, event_id: int, external_id: str) -> str:
    raw = f"{_CODES[channel]}:{event_id}:{external_id}".encode()
    return signed.sign(secret, _PURPOSE, raw)


def verify_token(secret: str, token: str) -> UnsubscribeToken | None:
    """The token's content when well-formed and correctly signed (canonical base64
    only: no altered spelling verifies); else None."""
    raw = signed.unsign(secret, _PURPOSE, token, MAX_TOKEN)
    if raw is None:
        return None
    try:
        code, event_part, external_id = raw.decode("utf-8").split(":", 2)
        event_id = int(event_part)
    except (UnicodeDecodeError, ValueError):
        return None
    if code not in _CHANNELS or event_id < 0 or not external_id:
        return None
    return UnsubscribeToken(_CHANNELS[code], event_id, external_id)


def url_for(settings: Settings, profile: Profile, channel: Channel, event_id: int) -> str:
    """The signed one-click link of one message to one profile."""
    base = settings.public_url.rstrip("/")
    return f"{base}{PREFIX}{make_token(settings.secret, channel, event_id, profile.external_id)}"


def is_unsubscribe_url(url: str, settings: Settings) -> bool:
    """Whether ``url`` is one of our unsubscribe links (click tracking leaves them be)."""
    return url.startswith(settings.public_url.rstrip("/") + PREFIX)


def email_headers(unsubscribe_url: str) -> dict[str, str]:
    """RFC 8058 headers for a profile-based email (none without a link)."""
    if not unsubscribe_url:
        return {}
    return {"List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def record(db: Database, token: UnsubscribeToken) -> Profile | None:
    """Record the opt-out the token asks for; None when the profile no longer exists
    (erased): nothing to record, and the page says so without telling more."""
    try:
        return profiles.set_subscription(db, token.external_id, token.channel,
                                         subscribed=False, event_id=token.event_id or None)
    except NotFound:
        return None
