"""Fault injection with Debian postfix's `smtp-sink` (a real, independent SMTP server):
450 then success -> retried and sent once; 550 -> deliveryFailed; disconnect -> retried.

Skipped when smtp-sink is not installed (CI installs postfix, see .ci/run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import free_port
from dispatch_support import add_events, event_row, stand_in_renderer, stand_in_router

from soap_service import clock
from soap_service.models import EventStatus
from soap_service.store import queue
from soap_service.store.events import get_event
from soap_service.worker import Dispatcher

SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink"
                                          if Path("/usr/sbin/smtp-sink").exists() else None)
pytestmark = pytest.mark.skipif(SMTP_SINK is None, reason="postfix smtp-sink not installed")


@contextmanager
def smtp_sink(*options: str, dump: Path | None = None) -> Iterator[int]:
    """Run smtp-sink on a free port with the given fault options; yields the port."""
    port = free_port()
    args = [str(SMTP_SINK), *(["-u", "nobody"] if os.getuid() == 0 else []), *options]
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        dump.chmod(0o777)
        args += ["-d", f"{dump}/msg."]
    proc = subprocess.Popen([*args, f"127.0.0.1:{port}", "64"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink did not start: {proc.stderr.read()!r}") from None
            time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _dispatcher(settings, db, port: int) -> Dispatcher:
    return Dispatcher(settings.replace(smtp_host="127.0.0.1", smtp_port=port), db,
                      router=stand_in_router, renderer=stand_in_renderer,
                      types=lambda db, name: None)


def _tick(settings, db, port: int) -> None:
    d = _dispatcher(settings, db, port)
    try:
        d.tick()
    finally:
        d.close()


def test_450_then_success_is_retried_and_sent_once(settings, db):
    """smtp-sink answering 4xx at RCPT defers the event; after the backoff, a healthy
    relay gets it exactly once."""
    [pk] = add_events(db, [event_row(1)])
    with clock.frozen_clock(clock.utcnow()) as advance:
        with smtp_sink("-r", "rcpt") as port:
            _tick(settings, db, port)
        ev = get_event(db, pk)
        assert ev.status is EventStatus.PENDING and ev.error_count == 1
        assert (ev.last_error or "").startswith("4")
        advance(timedelta(seconds=settings.retry_base_seconds + 1))
        # smtp-sink writes as `nobody`, which cannot enter pytest's private tmp_path
        dump = Path(tempfile.mkdtemp(prefix="mc-smtp-sink-"))
        with smtp_sink(dump=dump) as port:
            _tick(settings, db, port)
            _tick(settings, db, port)  # nothing left to send
    assert get_event(db, pk).status is EventStatus.PROCESSED
    files = list(dump.glob("msg.*"))
    assert len(files) == 1
    assert f"<mc.1.{pk}@msgcenter.local>".encode() in files[0].read_bytes()
    assert [a.outcome for a in queue.delivery_attempts(db, pk)] == ["temporary", "sent"]
    shutil.rmtree(dump, ignore_errors=True)


def test_550_is_delivery_failed(settings, db):
    """smtp-sink answering 5xx at RCPT fails the event for good, with the relay's reply."""
    [pk] = add_events(db, [event_row(1)])
    with smtp_sink("-f", "rcpt") as port:
        _tick(settings, db, port)
    ev = get_event(db, pk)
    assert ev.status is EventStatus.DELIVERY_FAILED
    assert (ev.last_error or "").startswith("5")
    [attempt] = queue.delivery_attempts(db, pk)
    assert attempt.outcome == "permanent" and 500 <= attempt.response_code < 600


def test_disconnect_at_data_is_retried(settings, db):
    """smtp-sink hanging up after DATA is a temporary failure: pending, errorCount 1."""
    [pk] = add_events(db, [event_row(1)])
    with smtp_sink("-q", "data") as port:
        _tick(settings, db, port)
    ev = get_event(db, pk)
    assert ev.status is EventStatus.PENDING and ev.error_count == 1
    assert ev.process_at > clock.utcnow()
