"""A graceful stop of ``msgcenter serve`` loses no tracking hit: the HTTP processes write
what their recorder still holds before they exit."""

from __future__ import annotations

import signal
import sqlite3
import time

from conftest import make_settings
from test_tracking_serve import PERSON, SECRET, fetch
from tracking_support import sent_events

from soap_service import track
from soap_service.store import Database, make_engine, schema
from soap_service.store import tracking as store_tracking


def test_sigterm_flushes_queued_tracking_hits(sqlite_url: str, start_server) -> None:
    """Clicks answered while the database is locked are still queued when SIGTERM comes;
    once the lock goes, the stopping process writes them all before it exits."""
    settings = make_settings(sqlite_url)
    db = Database(make_engine(settings), settings)  # SQLite: the test can hold its lock
    schema.upgrade(db)
    [pk] = sent_events(db, 1)
    server = start_server(sqlite_url, "--workers", "1", init=False, env={"MC_SECRET": SECRET})
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the recorder's write now waits (busy timeout 30 s)
    try:
        for n in range(5):
            url = track.click_url(server.url, SECRET, pk, f"https://shop.example/{n}")
            assert fetch(url) == (302, f"https://shop.example/{n}")
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "Worker exiting" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "Worker exiting" in server.log()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert server.process.wait(timeout=60) == 0
    hits = store_tracking.list_tracking(db, pk)
    assert sorted(h.url for h in hits) == [f"https://shop.example/{n}" for n in range(5)]
    assert all(h.user_agent == PERSON for h in hits)
    db.dispose()
