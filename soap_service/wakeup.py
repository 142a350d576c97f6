"""Wake the dispatcher as soon as events are stored, so nobody waits for the next poll.

PostgreSQL: ``NOTIFY mc_events`` (delivered to every listening worker, on any host).
SQLite: a datagram on a Unix socket next to the database file (one host, one worker).
The sending side never raises and never blocks: polling stays the fallback.  The
listening side lives with the worker (``worker.py``), which binds :func:`socket_path`.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from sqlalchemy import Connection, text

from soap_service.store import Database

CHANNEL = "mc_events"
log = logging.getLogger(__name__)


def socket_path(db: Database) -> Path | None:
    """Path of the SQLite wake-up socket, or None for an in-memory / server database."""
    if not db.is_sqlite:
        return None
    database = db.engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(database).resolve().with_suffix(".wake")


def notify_in_transaction(conn: Connection) -> None:
    """PostgreSQL: queue a NOTIFY that is delivered when ``conn``'s transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {CHANNEL}"))


def notify_after_commit(db: Database) -> None:
    """SQLite: poke the local worker's socket (best effort, non-blocking)."""
    path = socket_path(db)
    if path is None:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"1", str(path))
    except OSError:  # no worker listening, or its buffer is full: it will poll
        pass
