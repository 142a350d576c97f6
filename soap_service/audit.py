"""The audit log: every change made through the console (and every console login, failed
or not) as who / what / when / from where.

The console writes an entry after each change succeeds; the login rate limit counts the
``login.failed`` entries of an account and of an address over a window, so the limit
holds across processes and restarts.  No SQL here (``store/audit.py``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from soap_service import clock
from soap_service.store import Database
from soap_service.store import audit as store
from soap_service.store.audit import AuditEntry

__all__ = ["AuditEntry", "failures_since", "list_entries", "record"]

log = logging.getLogger(__name__)

LOGIN_FAILED = "login.failed"
MAX_DETAIL = 2000


def record(db: Database, actor: str, action: str, target: str = "", detail: str = "",
           ip: str = "") -> None:
    """Write one entry (fields cut to their columns' sizes: an entry is never refused)."""
    store.insert_entry(db, clock.utcnow(), actor[:128], ip[:64], action[:64], target[:255],
                       detail[:MAX_DETAIL])
    log.info("audit.recorded action=%s actor=%s", action, actor[:128])


def list_entries(db: Database, *, limit: int = 100, before_id: int | None = None,
                 actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
    return store.list_entries(db, limit=limit, before_id=before_id, actor=actor or None,
                              action=action or None)


def failures_since(db: Database, seconds: int, *, login: str | None = None,
                   ip: str | None = None) -> int:
    """Failed console logins of ``login`` (or from ``ip``) in the last ``seconds``."""
    since = clock.utcnow() - timedelta(seconds=seconds)
    return store.count_since(db, LOGIN_FAILED, since, actor=login, ip=ip)
