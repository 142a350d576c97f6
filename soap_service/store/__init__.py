"""Storage: the only package that builds SQL or opens transactions.

``connect(settings)`` gives a :class:`Database` (one SQLAlchemy engine per process);
the query modules beside this one (``events``, ``auth``, ``catalog``, ``logs``...) take
a connection or the database and return domain values, never rows.  SQLite vs
PostgreSQL differences are decided here and in those modules, nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from soap_service.config import Settings
from soap_service.errors import Unavailable


class Database:
    """An engine plus the dialect facts the queries need."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_postgres = engine.dialect.name == "postgresql"

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on any exception."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise Unavailable("database unavailable", str(exc.orig)[:200]) from exc

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return None
    return Path(url[len(prefix):].split("?", 1)[0])


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None and path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None},
            pool_size=8,
            max_overflow=16,
            hide_parameters=True,  # errors are logged: never an event's values (ctx, address)
        )
        synchronous = settings.sqlite_synchronous.upper()

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # pysqlite's own transaction handling is off (isolation_level=None): we issue BEGIN
        # IMMEDIATE ourselves so writers queue on the busy timeout instead of failing late.
        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pool_pre_ping: it costs a round trip per checkout on the ingest hot path. A
    # connection broken by a server restart fails one transaction (answered as a Server
    # fault / retried by the worker) and is then discarded by the pool.
    return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800,
                         hide_parameters=True)


_databases: dict[tuple[str, int], Database] = {}


def connect(settings: Settings) -> Database:
    """The process-wide :class:`Database` for these settings (re-created after fork)."""
    key = (settings.database_url, os.getpid())
    db = _databases.get(key)
    if db is None:
        db = Database(make_engine(settings), settings)
        _databases[key] = db
    return db
