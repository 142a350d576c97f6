"""Exclusions: never send to a quarantined (hard-bounced) or denylisted address.

The worker calls :func:`check_event` before sending (a listed address gets an
exclusion-log row and the worker ends the event ``ignored``) and
:func:`quarantine_after_failure` after a permanent failure at RCPT.  Manual entries
(``msgcenter quarantine add``) are the denylist; a bounce never overwrites one.
Addresses are compared normalised (:func:`normalise_address`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from soap_service import clock
from soap_service.errors import NotFound, ValidationFailed
from soap_service.models import Event, Exclusion, QuarantineEntry, SendOutcome, SendResult
from soap_service.store import Database
from soap_service.store import exclusions as store

log = logging.getLogger(__name__)

SOURCE_BOUNCE = "bounce"
SOURCE_MANUAL = "manual"


def normalise_address(address: str) -> str:
    """Emails compare case-insensitively; phone numbers without spaces or dashes."""
    value = address.strip()
    if "@" in value:
        return value.lower()
    return "".join(ch for ch in value if ch not in " -.()")


def exclusion_reason(entry: QuarantineEntry) -> str:
    kind = "denylisted" if entry.source == SOURCE_MANUAL else "quarantined"
    return f"{kind}: {entry.reason}"


def listed_reason(db: Database, address: str | None) -> str | None:
    """Why ``address`` must not be mailed (quarantined / denylisted), or None."""
    if not address:
        return None
    entry = store.get_quarantine(db, normalise_address(address))
    return exclusion_reason(entry) if entry else None


def listed_addresses(db: Database, addresses: Iterable[str | None]) -> set[str]:
    """Which of these addresses (normalised here) are quarantined or denylisted: the
    worker asks once per round, then :func:`check_event` only for those."""
    return store.listed_addresses(db, {normalise_address(a) for a in addresses if a})


def check_event(db: Database, event: Event) -> str | None:
    """The worker's step before sending: if the address is listed, write the exclusion-log
    row and return the reason (the worker then ends the event ``ignored``); else None."""
    reason = listed_reason(db, event.address)
    if reason is None:
        return None
    store.insert_exclusion(db, event.id, normalise_address(event.address or ""), reason,
                           clock.utcnow())
    log.info("event.excluded event_id=%s", event.id)
    return reason


def quarantine_after_failure(db: Database, event: Event, result: SendResult) -> bool:
    """Quarantine the event's address after a permanent failure at RCPT; True if it did."""
    refused = result.outcome is SendOutcome.PERMANENT and result.address_refused
    if not refused or not event.address:
        return False
    reason = f"{result.code or ''} {result.text}".strip()[:500] or "rejected at RCPT"
    store.put_quarantine(db, normalise_address(event.address), reason, SOURCE_BOUNCE,
                         clock.utcnow())
    log.info("address.quarantined event_id=%s code=%s", event.id, result.code)
    return True


def add(db: Database, address: str, reason: str = "") -> QuarantineEntry:
    """Add (or turn into) a manual denylist entry."""
    value = normalise_address(address)
    if not value:
        raise ValidationFailed("an address is required")
    return store.put_quarantine(db, value, reason or "denylisted by an operator",
                                SOURCE_MANUAL, clock.utcnow())


def remove(db: Database, address: str) -> None:
    if not store.delete_quarantine(db, normalise_address(address)):
        raise NotFound(f"{address} is not in quarantine")


def lookup(db: Database, address: str) -> QuarantineEntry | None:
    return store.get_quarantine(db, normalise_address(address))


def list_entries(db: Database, source: str | None = None, limit: int = 1000
                 ) -> list[QuarantineEntry]:
    return store.list_quarantine(db, source, limit)


def list_exclusions(db: Database, since_seconds: int | None = None, event_id: int | None = None,
                    limit: int = 100) -> list[Exclusion]:
    since = None if since_seconds is None else clock.utcnow() - timedelta(seconds=since_seconds)
    return store.list_exclusions(db, since, event_id, limit)
