"""Every difference between SQLite and PostgreSQL, decided here and nowhere else.

The queries in the modules beside this one are written once, in SQLAlchemy Core, and ask
this module whenever the two databases need different SQL or a different connection:

- the engine: SQLite's pragmas (WAL, busy timeout, foreign keys) and ``BEGIN IMMEDIATE``
  so writers queue on the lock instead of failing late; PostgreSQL's pool;
- claims: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises claims by the
  write lock, one worker process being the supported SQLite setup);
- wake-ups: ``NOTIFY`` (or ``pg_notify`` folded into an insert's ``RETURNING``) and a
  ``LISTEN`` loop on PostgreSQL; SQLite has none (``soap_service.wakeup`` pokes and
  listens on a local socket instead);
- one-statement writes in autocommit on PostgreSQL (no ``BEGIN``/``COMMIT`` round trips),
  the hottest (an ingest insert) on the driver's connection itself;
- ``INSERT ... ON CONFLICT DO NOTHING`` and date arithmetic for the reports.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Select, Table, create_engine, event, func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from soap_service.config import Settings
from soap_service.errors import ServerError, Unavailable

READ_ONLY = "mc_read_only"  # execution option of a connection that only reads
WAKE_CHANNEL = "mc_events"  # PostgreSQL LISTEN/NOTIFY channel of the dispatcher's wake-ups
POSTGRES = "postgresql"
log = logging.getLogger("soap_service.wakeup")


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == POSTGRES


# ---------------------------------------------------------------- engines


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return None
    return Path(url[len(prefix):].split("?", 1)[0])


def make_engine(settings: Settings) -> Engine:
    """The engine for ``settings.database_url``, configured for its database."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings.sqlite_synchronous.upper())
    # No pool_pre_ping: it costs a round trip per checkout on the ingest hot path. A
    # connection broken by a server restart fails one transaction (answered as a Server
    # fault / retried by the worker) and is then discarded by the pool.
    return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800,
                         hide_parameters=True)


_gate_holder = threading.local()  # whether this thread holds the write gate already


class GatedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on a lock file first.

    SQLite lets one writer in at a time; the others wait in its busy handler, which
    *sleeps* between tries (1, 2, 5, 10, 15, 20, 25... ms): under steady writes from
    several processes (HTTP front-ends, the worker) the lock is mostly free while its
    waiters sleep, and an ack waits tens of milliseconds for nothing.  Here a writer
    takes an exclusive ``flock`` on ``<database>-writer.lock`` before ``BEGIN
    IMMEDIATE`` and drops it when the transaction ends, so the next writer is woken the
    moment the lock frees.  The kernel drops the lock of a process that dies.  A thread
    that already holds the gate through another connection goes straight to SQLite's
    own busy handler (which bounds that wait, as before).  Writers that do not come
    through here (another program, ``sqlite3`` at a prompt) still meet SQLite's lock.
    The wait for the gate has no timeout where SQLite's busy handler gave up after 30 s:
    a writer that never ends its transaction (a process stopped, not dead) now holds the
    others until it goes on or is killed, instead of failing them after 30 s.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._gate: int | None = None
        self._holding = False
        name = os.fspath(database)
        if name and name != ":memory:" and not name.startswith("file:"):
            try:
                self._gate = os.open(f"{name}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # e.g. a read-only directory: SQLite's own lock still holds
                self._gate = None

    def begin_write(self) -> None:
        if self._gate is not None and not getattr(_gate_holder, "held", False):
            fcntl.flock(self._gate, fcntl.LOCK_EX)  # releases the GIL while it waits
            self._holding = _gate_holder.held = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._holding:
            self._holding = _gate_holder.held = False
            assert self._gate is not None
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            self._release()
            if self._gate is not None:
                os.close(self._gate)
                self._gate = None
        finally:
            super().close()


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    path = _sqlite_path(url)
    if path is not None and path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None,
                      "factory": GatedConnection},
        pool_size=8,
        max_overflow=16,
        hide_parameters=True,  # errors are logged: never an event's values (ctx, address)
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    # pysqlite's own transaction handling is off (isolation_level=None): we issue BEGIN
    # IMMEDIATE ourselves so writers queue on the busy timeout instead of failing late.
    # A read (``Database.connect``, marked READ_ONLY) takes a plain deferred BEGIN: in
    # WAL mode it then reads a snapshot beside the writer instead of queueing for the
    # one write lock (and its fsync) like a writer.
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
        else:
            dbapi = conn.connection.dbapi_connection
            assert isinstance(dbapi, GatedConnection)
            dbapi.begin_write()

    return engine


def autocommit_single_statement(engine: Engine) -> bool:
    """Whether a write that is one statement may skip ``BEGIN``/``COMMIT`` (PostgreSQL:
    one statement is atomic and durable on its own; SQLite writers need BEGIN IMMEDIATE)."""
    return engine.dialect.name == POSTGRES


@contextmanager
def driver_autocommit(engine: Engine, refused: str) -> Iterator[psycopg.Connection[Any]]:
    """PostgreSQL: the pool's own psycopg connection, in autocommit, for a hot statement
    that is atomic on its own and needs none of SQLAlchemy's execution layers (measured:
    one ``INSERT ... RETURNING`` costs ~120 µs of client CPU through a SQLAlchemy
    ``Connection`` in autocommit, ~70 µs here, pool checkout included).

    The connection goes back to the pool out of autocommit.  A connection error renews the
    pool and raises :class:`Unavailable`; any other error of the database is a
    :class:`ServerError` with the message ``refused`` (the driver's text in its detail).
    """
    assert engine.dialect.name == POSTGRES
    try:
        raw = engine.raw_connection()
    except OperationalError as exc:
        raise Unavailable("database unavailable", str(exc.orig)[:200]) from exc
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        driver.autocommit = True  # a flag of the client: nothing is sent
        yield driver
    except psycopg.OperationalError as exc:
        # as SQLAlchemy does on a disconnect: every pooled connection made before now is
        # replaced at its next checkout (after a server restart, one failed call per
        # process, not one per idle connection)
        engine.pool._invalidate(raw, exc)
        raise Unavailable("database unavailable", str(exc)[:200]) from exc
    except psycopg.Error as exc:
        raise ServerError(refused, str(exc)[:200]) from exc
    finally:
        try:  # never an error of its own: the statement's outcome is already known
            if not driver.closed:
                driver.autocommit = False
        except psycopg.Error:
            raw.invalidate()  # could not be reset: not handed out again
        raw.close()


# ---------------------------------------------------------------- queries


def skip_locked(query: Select[Any], conn: Connection) -> Select[Any]:
    """Rows other workers are claiming right now are passed over (PostgreSQL)."""
    return query.with_for_update(skip_locked=True) if _postgres(conn) else query


def insert_ignoring_conflict(table: Table, conn: Connection, constraint: str) -> Any:
    """``INSERT ... ON CONFLICT (constraint) DO NOTHING`` for this database."""
    if _postgres(conn):
        return pg_insert(table).on_conflict_do_nothing(constraint=constraint)
    return sqlite_insert(table).on_conflict_do_nothing()


def upsert(table: Table, conn: Connection, key: str, update_columns: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET`` the given columns from the row being
    inserted (both databases spell it the same way; the statement class differs)."""
    stmt = pg_insert(table) if _postgres(conn) else sqlite_insert(table)
    if not update_columns:
        return stmt.on_conflict_do_nothing(index_elements=[key])
    return stmt.on_conflict_do_update(
        index_elements=[key], set_={c: stmt.excluded[c] for c in update_columns})


def seconds_between(conn: Connection, later: Any, earlier: Any) -> Any:
    """SQL for ``later - earlier`` in seconds (a float)."""
    if _postgres(conn):
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def hour_of(conn: Connection, column: Any) -> Any:
    """SQL for a time column's hour as text, ``YYYY-MM-DD HH:00``."""
    if _postgres(conn):
        return func.to_char(func.date_trunc("hour", column), "YYYY-MM-DD HH24:00")
    return func.strftime("%Y-%m-%d %H:00", column)


# ---------------------------------------------------------------- wake-ups


def wake_dispatcher(conn: Connection) -> None:
    """PostgreSQL: a NOTIFY delivered to every listening worker when ``conn`` commits
    (de-duplicated per transaction).  SQLite: nothing (the caller pokes the socket)."""
    if _postgres(conn):
        conn.execute(text(f"NOTIFY {WAKE_CHANNEL}"))


def wake_in_returning(conn: Connection) -> bool:
    """Whether an insert may carry the wake-up in its ``RETURNING`` (:data:`PG_NOTIFY`),
    which saves the separate NOTIFY round trip of :func:`wake_dispatcher`."""
    return _postgres(conn)


PG_NOTIFY = func.pg_notify(WAKE_CHANNEL, "")


def listen_for_wakeups(conninfo: str, stop: threading.Event, ready: threading.Event,
                       on_wake: Callable[[], None]) -> None:
    """PostgreSQL: ``LISTEN`` on a connection of its own until ``stop`` is set, calling
    ``on_wake()`` once per burst of notifications.  Connection problems are logged and
    retried every 2 s (the worker keeps polling meanwhile)."""
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"LISTEN {WAKE_CHANNEL}")
                ready.set()
                _pump_notifies(conn, stop, on_wake)
        except psycopg.Error as exc:
            log.warning("wakeup.listen_failed error=%s", type(exc).__name__)
            stop.wait(2.0)


def _pump_notifies(conn: psycopg.Connection, stop: threading.Event,
                   on_wake: Callable[[], None]) -> None:
    while not stop.is_set():
        got = False
        for _ in conn.notifies(timeout=0.5, stop_after=1):
            got = True
        if got:
            # swallow the rest of a burst before waking once
            for _ in conn.notifies(timeout=0.0):
                pass
            on_wake()
