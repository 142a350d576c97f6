"""Storage: the only package that builds SQL or opens transactions.

``connect(settings)`` gives a :class:`Database` (one SQLAlchemy engine per process).  The
modules beside this one hold every query, one concept each -- ``events`` (ingest side),
``queue`` (claims, leases, outcomes), ``catalog``, ``auth``, ``tracking``,
``exclusions``, ``followups``, ``purge``, ``reports`` -- and every public function takes
the :class:`Database`, runs in a transaction of its own and returns values from
``soap_service.models``, never rows.  SQLite vs PostgreSQL differences are decided in
``dialect``, nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from soap_service.config import Settings
from soap_service.errors import Unavailable
from soap_service.store.dialect import READ_ONLY, autocommit_single_statement, make_engine

__all__ = ["Database", "connect", "disconnect_all", "make_engine"]


class Database:
    """An engine plus the facts about its database that the rest of the service needs."""

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
        """A connection for reads (no transaction is committed; on SQLite it does not
        take the write lock, so it must not write)."""
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(**{READ_ONLY: True})
        except OperationalError as exc:
            raise Unavailable("database unavailable", str(exc.orig)[:200]) from exc

    @contextmanager
    def one_statement(self) -> Iterator[Connection]:
        """A connection for a write that is a single statement: autocommit where the
        database makes one statement atomic and durable on its own, else a transaction."""
        if not autocommit_single_statement(self.engine):
            with self.begin() as conn:
                yield conn
            return
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
        except OperationalError as exc:
            raise Unavailable("database unavailable", str(exc.orig)[:200]) from exc

    @property
    def url(self) -> str:
        """The database URL without its password (for display)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite database file, or None (in-memory SQLite, or a server database)."""
        database = self.engine.url.database
        if not self.is_sqlite or not database or database == ":memory:":
            return None
        return database

    def libpq_conninfo(self) -> str:
        """The PostgreSQL URL as psycopg takes it (for a LISTEN connection of its own)."""
        url = self.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self, close: bool = True) -> None:
        """Drop pooled connections (``close=False`` after a fork: leave the parent's)."""
        self.engine.dispose(close=close)


_databases: dict[tuple[str, int], Database] = {}


def connect(settings: Settings) -> Database:
    """The process-wide :class:`Database` for these settings (re-created after fork)."""
    key = (settings.database_url, os.getpid())
    db = _databases.get(key)
    if db is None:
        db = Database(make_engine(settings), settings)
        _databases[key] = db
    return db


def disconnect_all() -> None:
    """Close every :func:`connect` database of this process (the end of a CLI command
    run in-process, e.g. by the tests)."""
    while _databases:
        _, db = _databases.popitem()
        db.dispose()
