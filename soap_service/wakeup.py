"""Wake the dispatcher as soon as events are stored, so nobody waits for the next poll.

PostgreSQL: ``NOTIFY mc_events`` (delivered to every listening worker, on any host),
sent by the store in the transaction that made the events due (``store.dialect``), and
listened for there.  SQLite: a datagram on a Unix socket next to the database file (one
host, one worker), sent here by :func:`notify_after_commit`;
when that path would pass the 108-byte ``AF_UNIX`` limit, a hashed name under the
temporary directory is used instead (both sides call :func:`socket_path`).
The sending side never raises and never blocks: polling stays the fallback.  The
listening side is :class:`Listener`, a daemon thread the worker starts.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from soap_service.store import Database, dialect

MAX_UNIX_PATH = 100  # AF_UNIX paths are limited to 108 bytes including the final NUL
log = logging.getLogger(__name__)


def socket_path(db: Database) -> Path | None:
    """Path of the SQLite wake-up socket, or None for an in-memory / server database."""
    database = db.sqlite_file
    return None if database is None else _sqlite_socket_path(database)


@functools.lru_cache(maxsize=16)
def _sqlite_socket_path(database: str) -> Path:
    # cached: resolving the path costs more than the datagram, on every PushEvent
    path = Path(database).resolve().with_suffix(".wake")
    if len(str(path).encode()) <= MAX_UNIX_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"mc-{digest}.wake"


def notify_after_commit(db: Database) -> None:
    """SQLite: poke the local worker's socket (best effort, non-blocking)."""
    path = socket_path(db)
    if path is None:
        return
    # no worker listening, or its buffer is full: it will poll
    with contextlib.suppress(OSError):
        _sender().sendto(b"1", str(path))


_senders: dict[int, socket.socket] = {}


def _sender() -> socket.socket:
    """One non-blocking datagram socket per process (made after a fork, not inherited)."""
    pid = os.getpid()
    sock = _senders.get(pid)
    if sock is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        _senders.clear()
        _senders[pid] = sock
    return sock


def _in_use(path: Path) -> bool:
    """Whether a live socket is bound at ``path`` (connecting sends nothing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:  # no file, or a file nobody is bound to any more
            return False
    return True


class Listener:
    """Calls ``on_wake()`` (from a daemon thread) whenever events were stored.

    Bursts are coalesced: one call per batch of notifications received together.
    Connection problems are logged and retried; the worker keeps polling meanwhile.
    """

    def __init__(self, db: Database, on_wake: Callable[[], None]) -> None:
        self.db = db
        self.on_wake = on_wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.ready = threading.Event()

    def start(self) -> Listener:
        if self.db.is_postgres:
            target: Callable[[], None] = self._run_postgres
        elif socket_path(self.db) is not None:
            try:
                self._sock = self._bind_socket()
            except OSError as exc:  # e.g. a read-only directory: polling still works
                log.warning("wakeup.bind_failed error=%s", exc.strerror or exc)
                return self
            target = self._run_socket
        else:
            return self
        self._thread = threading.Thread(target=target, name="mc-wakeup", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            path = socket_path(self.db)
            self._sock.close()
            if path is not None:
                path.unlink(missing_ok=True)

    # -- PostgreSQL: LISTEN (the store's) --------------------------------------------

    def _run_postgres(self) -> None:
        dialect.listen_for_wakeups(self.db.libpq_conninfo(), self._stop, self.ready,
                                   self.on_wake)

    # -- SQLite: a local datagram socket ----------------------------------------------

    def _bind_socket(self) -> socket.socket:
        path = socket_path(self.db)
        assert path is not None
        if _in_use(path):  # another worker's: taking it over would leave that one deaf
            raise OSError(errno.EADDRINUSE, f"another worker listens on {path}")
        path.unlink(missing_ok=True)  # a stale file left by a worker that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.5)
        self.ready.set()
        return sock

    def _run_socket(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                sock.recv(16)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.1)
                continue
            sock.setblocking(False)
            try:
                while sock.recv(16):
                    pass
            except OSError:  # BlockingIOError: the burst is drained
                pass
            sock.settimeout(0.5)
            self.on_wake()
