"""Exclusions: never send to a quarantined (refused) or denylisted address.

Quarantine and the denylist are kept per address kind (SPEC §7): ``email`` addresses,
``phone`` numbers (E.164) and push device ``token``\\ s -- the same string under two kinds
is two entries.  The worker asks once per round which of its addresses are listed
(:func:`listed_addresses`), then calls :func:`check_event` for those (a listed address
gets an exclusion-log row and the worker ends the event ``ignored``) and
:func:`quarantine_after_failure` after a permanent failure that refused the address
itself (SMTP 5xx at RCPT, an invalid destination number, an unregistered device token).
Manual entries (``msgcenter quarantine add``) are the denylist; a bounce never
overwrites one.  Addresses are compared normalised (:func:`normalise_address`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import timedelta

from soap_service import clock
from soap_service.errors import NotFound, ValidationFailed
from soap_service.models import (
    AddressKind,
    Event,
    Exclusion,
    QuarantineEntry,
    SendOutcome,
    SendResult,
)
from soap_service.store import Database
from soap_service.store import exclusions as store

log = logging.getLogger(__name__)

SOURCE_BOUNCE = "bounce"
SOURCE_MANUAL = "manual"
SOURCE_COMPLAINT = "complaint"  # a spam complaint (ARF, SES, Postmark): on the denylist
_PHONE_LIKE = re.compile(r"^\+?[0-9 ().-]{3,24}$")
_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")  # as ingest stores numbers: no parsing needed


def guess_kind(address: str) -> AddressKind:
    """The kind of an address typed by an operator: an ``@`` makes an email, something
    that reads as a number a phone, anything else a device token."""
    value = address.strip()
    if "@" in value:
        return AddressKind.EMAIL
    if _PHONE_LIKE.match(value) and sum(ch.isdigit() for ch in value) <= 15:
        return AddressKind.PHONE
    return AddressKind.TOKEN


def normalise_address(address: str, kind: AddressKind | None = None,
                      default_country_code: str = "") -> str:
    """Emails compare case-insensitively; phone numbers in E.164 when they can be read
    (else without spaces, dashes, dots or brackets); tokens as given, trimmed."""
    value = address.strip()
    kind = kind or guess_kind(value)
    if kind is AddressKind.EMAIL:
        return value.lower()
    if kind is AddressKind.PHONE:
        if _E164.match(value):  # the common case, on the worker's path: cheap
            return value
        from soap_service.phone import normalise_phone

        try:
            return normalise_phone(value, default_country_code or None)
        except (ValidationFailed, ValueError):
            return "".join(ch for ch in value if ch not in " -.()")
    return value


def exclusion_reason(entry: QuarantineEntry) -> str:
    kind = "denylisted" if entry.source in store.DENYLIST_SOURCES else "quarantined"
    return f"{kind}: {entry.reason}"


def listed_addresses(db: Database, addresses: Iterable[tuple[AddressKind, str | None]]
                     ) -> set[tuple[AddressKind, str]]:
    """Which of these (kind, address) pairs are quarantined or denylisted: the worker
    asks once per round, then :func:`check_event` only for those."""
    return store.listed_addresses(db, {(kind, normalise_address(a, kind))
                                       for kind, a in addresses if a})


def is_listed(listed: set[tuple[AddressKind, str]], kind: AddressKind, address: str) -> bool:
    """Whether :func:`listed_addresses`' answer names this address."""
    return (kind, normalise_address(address, kind)) in listed


def check_event(db: Database, event: Event) -> str | None:
    """The worker's step before sending: if the event's address is listed (for its kind),
    write the exclusion-log row and return the reason (the worker then ends the event
    ``ignored``); else None."""
    address, kind = event.address, event.address_kind
    if not address:
        return None
    entry = store.get_quarantine(db, kind, normalise_address(address, kind))
    if entry is None:
        return None
    reason = exclusion_reason(entry)
    store.insert_exclusion(db, event.id, normalise_address(address, kind), reason,
                           clock.utcnow())
    log.info("event.excluded event_id=%s kind=%s", event.id, kind.value)
    return reason


def quarantine_after_failure(db: Database, event: Event, result: SendResult) -> bool:
    """Quarantine the event's address (of its kind) after a permanent failure that
    refused the address itself; True if it did."""
    refused = result.outcome is SendOutcome.PERMANENT and result.address_refused
    address, kind = event.address, event.address_kind
    if not refused or not address:
        return False
    reason = f"{result.code or ''} {result.text}".strip()[:500] or "address refused"
    if result.connector:
        reason = f"{reason} ({result.connector})"
    store.put_quarantine(db, kind, normalise_address(address, kind), reason, SOURCE_BOUNCE,
                         clock.utcnow())
    log.info("address.quarantined event_id=%s kind=%s code=%s", event.id, kind.value,
             result.code)
    return True


def add(db: Database, address: str, reason: str = "", kind: AddressKind | None = None,
        default_country_code: str = "") -> QuarantineEntry:
    """Add (or turn into) a manual denylist entry."""
    kind = kind or guess_kind(address)
    value = normalise_address(address, kind, default_country_code)
    if not value:
        raise ValidationFailed("an address is required")
    return store.put_quarantine(db, kind, value, reason or "denylisted by an operator",
                                SOURCE_MANUAL, clock.utcnow())


def remove(db: Database, address: str, kind: AddressKind | None = None,
           default_country_code: str = "") -> QuarantineEntry:
    """Remove an entry; the entry removed (NotFound when there is none)."""
    kind = kind or guess_kind(address)
    value = normalise_address(address, kind, default_country_code)
    entry = store.get_quarantine(db, kind, value)
    if entry is None or not store.delete_quarantine(db, kind, value):
        raise NotFound(f"{address} is not in quarantine ({kind.value})")
    return entry


def lookup(db: Database, address: str, kind: AddressKind | None = None) -> QuarantineEntry | None:
    kind = kind or guess_kind(address)
    return store.get_quarantine(db, kind, normalise_address(address, kind))


def list_entries(db: Database, source: str | None = None, limit: int = 1000,
                 kind: AddressKind | None = None) -> list[QuarantineEntry]:
    return store.list_quarantine(db, source, limit, kind)


def list_exclusions(db: Database, since_seconds: int | None = None, event_id: int | None = None,
                    limit: int = 100) -> list[Exclusion]:
    since = None if since_seconds is None else clock.utcnow() - timedelta(seconds=since_seconds)
    return store.list_exclusions(db, since, event_id, limit)
