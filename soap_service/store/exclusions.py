"""Exclusion storage: the quarantine / denylist table and the exclusion log.

Addresses arrive normalised (``soap_service.exclusions.normalise_address``).  A manual
(denylist) entry is never downgraded to a bounce entry, even by a concurrent writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.models import Exclusion, QuarantineEntry
from soap_service.store import Database
from soap_service.tables import exclusion_log, quarantine


def _entry(row: Any) -> QuarantineEntry:
    return QuarantineEntry(row.address, row.reason, row.source, row.created_at)


def _get_in(conn: Connection, address: str) -> QuarantineEntry | None:
    row = conn.execute(select(quarantine).where(quarantine.c.address == address)).first()
    return _entry(row) if row else None


def get_quarantine(db: Database, address: str) -> QuarantineEntry | None:
    with db.connect() as conn:
        return _get_in(conn, address)


def listed_addresses(db: Database, addresses: Iterable[str]) -> set[str]:
    """Which of these addresses are in the quarantine / denylist table (one query)."""
    wanted = sorted(set(addresses))
    if not wanted:
        return set()
    with db.connect() as conn:
        rows = conn.execute(select(quarantine.c.address)
                            .where(quarantine.c.address.in_(wanted)))
        return {r.address for r in rows}


def put_quarantine(db: Database, address: str, reason: str, source: str,
                   at: datetime) -> QuarantineEntry:
    """Insert or update an entry; a manual (denylist) entry is never downgraded to bounce."""
    with db.begin() as conn:
        current = _get_in(conn, address)
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(quarantine).values(
                        address=address, reason=reason, source=source, created_at=at))
                return QuarantineEntry(address, reason, source, at)
            except IntegrityError:  # another worker quarantined it just now
                current = _get_in(conn, address)
                assert current is not None
        if current.source == "manual" and source != "manual":
            return current
        conn.execute(update(quarantine).where(quarantine.c.address == address)
                     .values(reason=reason, source=source))
        return QuarantineEntry(address, reason, source, current.created_at)


def delete_quarantine(db: Database, address: str) -> bool:
    with db.begin() as conn:
        return conn.execute(delete(quarantine)
                            .where(quarantine.c.address == address)).rowcount > 0


def list_quarantine(db: Database, source: str | None = None,
                    limit: int = 1000) -> list[QuarantineEntry]:
    query = select(quarantine).order_by(quarantine.c.created_at.desc(), quarantine.c.id.desc())
    if source:
        query = query.where(quarantine.c.source == source)
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
