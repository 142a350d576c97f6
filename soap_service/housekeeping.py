"""Housekeeping: delete events and their logs once they are older than their retention.

Retention is per event type (``event_types.retention_seconds``); events of undeclared
types, and log rows with no event (proofs), use ``settings.retention_days``.  Only events
in a final status are purged (a pending event scheduled far ahead is never lost), and
with them their delivery, tracking, exclusion and status-log rows (SMS part ids go by
age, after ``settings.retention_days``).  Deletes run in bounded batches, one short
transaction each, so the purge never holds a long lock on a busy queue.  :func:`purge` is
the daily job and ``msgcenter purge [--dry-run]``.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from soap_service import clock
from soap_service.config import Settings
from soap_service.errors import ValidationFailed
from soap_service.store import Database
from soap_service.store import purge as store

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000
COUNT_KEYS = ("events", "delivery_log", "tracking_log", "exclusion_log", "event_status_log",
              "delivery_parts", "bounces")


def _groups(db: Database, settings: Settings, now: datetime
            ) -> list[tuple[list[str], bool, datetime]]:
    """``(types, other_than, cutoff)``: one group per declared type, one for the rest."""
    retention = store.retention_by_type(db)
    groups = [([name], False, now - timedelta(seconds=seconds))
              for name, seconds in sorted(retention.items())]
    groups.append((sorted(retention), True, now - timedelta(days=settings.retention_days)))
    return groups


def purge(db: Database, settings: Settings, dry_run: bool = False,
          batch_size: int = DEFAULT_BATCH) -> dict[str, int]:
    """Delete (or, with ``dry_run``, count) everything past retention; returns counts."""
    if batch_size < 1:
        raise ValidationFailed("--batch-size must be at least 1")
    now = clock.utcnow()
    totals: Counter[str] = Counter({key: 0 for key in COUNT_KEYS})
    for types, other_than, cutoff in _groups(db, settings, now):
        if dry_run:
            totals.update(store.count_purgeable(db, types, other_than, cutoff))
            continue
        while True:
            batch = store.purge_batch(db, types, other_than, cutoff, batch_size)
            totals.update(batch)
            if batch["events"] < batch_size:
                break
    totals.update(_purge_orphans(db, now - timedelta(days=settings.retention_days),
                                 batch_size, dry_run))
    result = {key: totals[key] for key in COUNT_KEYS}
    if not dry_run:
        log.info("purge.done %s", " ".join(f"{k}={v}" for k, v in result.items()))
    return result


def _purge_orphans(db: Database, cutoff: datetime, batch_size: int,
                   dry_run: bool) -> Counter[str]:
    totals: Counter[str] = Counter()
    while True:
        batch = store.purge_orphan_logs(db, cutoff, batch_size, dry_run)
        totals.update(batch)
        if dry_run or max(batch.values(), default=0) < batch_size:
            return totals


def daily_job(db: Database, settings: Settings) -> dict[str, int]:
    """What the scheduler runs once a day."""
    return purge(db, settings)
