"""Exclusion storage: the quarantine / denylist table and the exclusion log.

Entries are kept per address kind (``email``, ``phone``, ``token``: SPEC §7) and arrive
normalised (``soap_service.exclusions.normalise_address``).  A denylist entry (``manual``,
or ``complaint``: the recipient reported our mail as spam) is never downgraded to a bounce
entry, even by a concurrent writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.models import AddressKind, Exclusion, QuarantineEntry
from soap_service.store import Database
from soap_service.tables import exclusion_log, quarantine

_CHUNK = 500  # (kind, address) pairs per lookup statement
DENYLIST_SOURCES = frozenset({"manual", "complaint"})


def _entry(row: Any) -> QuarantineEntry:
    return QuarantineEntry(row.address, row.reason, row.source, row.created_at,
                           AddressKind(row.kind), row.bounce_id)


def _where(kind: AddressKind, address: str) -> Any:
    return and_(quarantine.c.kind == kind.value, quarantine.c.address == address)


def _get_in(conn: Connection, kind: AddressKind, address: str) -> QuarantineEntry | None:
    row = conn.execute(select(quarantine).where(_where(kind, address))).first()
    return _entry(row) if row else None


def get_quarantine(db: Database, kind: AddressKind, address: str) -> QuarantineEntry | None:
    with db.connect() as conn:
        return _get_in(conn, kind, address)


def listed_addresses(db: Database, pairs: Iterable[tuple[AddressKind, str]]
                     ) -> set[tuple[AddressKind, str]]:
    """Which of these (kind, address) pairs are in the quarantine / denylist table (one
    query per kind and 500 addresses: a round asks once or twice)."""
    wanted = sorted(set(pairs))
    found: set[tuple[AddressKind, str]] = set()
    if not wanted:
        return found
    by_kind: dict[AddressKind, list[str]] = {}
    for kind, address in wanted:
        by_kind.setdefault(kind, []).append(address)
    with db.connect() as conn:
        for kind, addresses in by_kind.items():
            for start in range(0, len(addresses), _CHUNK):
                rows = conn.execute(_LISTED, {"l_kind": kind.value,
                                              "l_addresses": addresses[start:start + _CHUNK]})
                found |= {(kind, address) for address in rows.scalars()}
    return found


# built once: the worker asks every round
_LISTED = select(quarantine.c.address).where(
    quarantine.c.kind == bindparam("l_kind"),
    quarantine.c.address.in_(bindparam("l_addresses", expanding=True)))


def put_quarantine(db: Database, kind: AddressKind, address: str, reason: str, source: str,
                   at: datetime, bounce_id: int | None = None) -> QuarantineEntry:
    """Insert or update an entry; a denylist entry is never downgraded to bounce."""
    with db.begin() as conn:
        return put_quarantine_in(conn, kind, address, reason, source, at, bounce_id)


def put_quarantine_in(conn: Connection, kind: AddressKind, address: str, reason: str,
                      source: str, at: datetime, bounce_id: int | None = None
                      ) -> QuarantineEntry:
    """:func:`put_quarantine` on the caller's transaction (a bounce records itself and its
    quarantine together)."""
    current = _get_in(conn, kind, address)
    if current is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(quarantine).values(
                    kind=kind.value, address=address, reason=reason, source=source,
                    bounce_id=bounce_id, created_at=at))
            return QuarantineEntry(address, reason, source, at, kind, bounce_id)
        except IntegrityError:  # another worker quarantined it just now
            current = _get_in(conn, kind, address)
            assert current is not None
    if current.source in DENYLIST_SOURCES and source not in DENYLIST_SOURCES:
        return current
    if current.source == "manual" and source != "manual":
        return current  # an operator's entry keeps its words
    conn.execute(update(quarantine).where(_where(kind, address))
                 .values(reason=reason, source=source, bounce_id=bounce_id))
    return QuarantineEntry(address, reason, source, current.created_at, kind, bounce_id)


def delete_quarantine(db: Database, kind: AddressKind, address: str) -> bool:
    with db.begin() as conn:
        return conn.execute(delete(quarantine).where(_where(kind, address))).rowcount > 0


def list_quarantine(db: Database, source: str | None = None, limit: int = 1000,
                    kind: AddressKind | None = None) -> list[QuarantineEntry]:
    query = select(quarantine).order_by(quarantine.c.created_at.desc(), quarantine.c.id.desc())
    if source:
        query = query.where(quarantine.c.source == source)
    if kind is not None:
        query = query.where(quarantine.c.kind == kind.value)
    with db.connect() as conn:
        return [_entry(row) for row in conn.execute(query.limit(limit))]


def insert_exclusion(db: Database, event_id: int | None, address: str | None, reason: str,
                     at: datetime) -> None:
    with db.begin() as conn:
        conn.execute(insert(exclusion_log).values(
            event_id=event_id, address=address, reason=reason, created_at=at))


def list_exclusions(db: Database, since: datetime | None = None, event_id: int | None = None,
                    limit: int = 100) -> list[Exclusion]:
    query = select(exclusion_log).order_by(exclusion_log.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(exclusion_log.c.created_at >= since)
    if event_id is not None:
        query = query.where(exclusion_log.c.event_id == event_id)
    with db.connect() as conn:
        return [Exclusion(**row._mapping) for row in conn.execute(query)]
