"""SQLite writers queue on a lock file (``store.dialect.GatedConnection``): held from
``BEGIN IMMEDIATE`` to the end of the transaction, never by a read, dropped by a
rollback, a failed ``BEGIN`` and by the kernel when its process dies."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import text

from soap_service.store import Database, make_engine, schema


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    database = Database(make_engine(make_settings(sqlite_url)), make_settings(sqlite_url))
    schema.upgrade(database)
    yield database
    database.dispose()


def _gate(db: Database) -> Path:
    assert db.sqlite_file is not None
    return Path(f"{db.sqlite_file}-writer.lock")


def _gate_taken(db: Database) -> bool:
    """Whether some writer holds the gate (asked through a descriptor of our own)."""
    fd = os.open(_gate(db), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def test_a_write_transaction_holds_the_gate_until_commit(sqlite_db: Database) -> None:
    with sqlite_db.begin() as conn:
        conn.execute(text("SELECT 1"))
        assert _gate_taken(sqlite_db)
    assert not _gate_taken(sqlite_db)


def test_a_read_does_not_take_the_gate(sqlite_db: Database) -> None:
    with sqlite_db.begin():
        pass  # the gate file exists once a writer came by
    with sqlite_db.connect() as conn:
        conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        assert not _gate_taken(sqlite_db)


def test_a_rollback_drops_the_gate(sqlite_db: Database) -> None:
    with pytest.raises(RuntimeError), sqlite_db.begin() as conn:
        conn.execute(text("SELECT 1"))
        raise RuntimeError("abort")
    assert not _gate_taken(sqlite_db)
    with sqlite_db.begin() as conn:  # and the next writer gets in
        conn.execute(text("SELECT 1"))


def test_a_killed_writer_process_frees_the_gate(sqlite_db: Database, sqlite_url: str) -> None:
    """A process SIGKILLed inside a write transaction: the next writer is not stuck."""
    with sqlite_db.begin() as conn:
        conn.execute(text("CREATE TABLE workers_probe (x INTEGER)"))
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, time
        from sqlalchemy import text
        from soap_service.config import load_settings
        from soap_service.store import Database, make_engine
        s = load_settings({"MC_DATABASE_URL": os.environ["PROBE_URL"]})
        db = Database(make_engine(s), s)
        with db.begin() as conn:
            conn.execute(text("INSERT INTO workers_probe VALUES (1)"))
            print("holding", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PROBE_URL": sqlite_url})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        assert _gate_taken(sqlite_db)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert not _gate_taken(sqlite_db)
    with sqlite_db.begin() as conn:  # the killed transaction is gone, the lock free
        conn.execute(text("INSERT INTO workers_probe VALUES (2)"))
    with sqlite_db.connect() as conn:
        assert conn.execute(text("SELECT x FROM workers_probe")).scalars().all() == [2]
