"""Worker processes: a SIGKILL mid-batch loses nothing; three workers on PostgreSQL send
every message exactly once; real-time events overtake a batch backlog.

These start real ``msgcenter worker`` processes (or a real in-process runtime) against
an in-process aiosmtpd sink; they poll with generous deadlines, never sleep for timing.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, msgcenter_cmd
from dispatch_support import add_events, event_row, wait_until
from sqlalchemy import func, select

from soap_service import demo
from soap_service.devsmtp import MailSink
from soap_service.schedule import WorkerRuntime
from soap_service.tables import events, worker_heartbeats
from soap_service.worker import Dispatcher

TYPE = "order_confirmation"


def _rows(n: int, queue: str = "rt", start: int = 0) -> list[dict]:
    return [event_row(start + i, queue=queue, event_type=TYPE,
                      ctx_xml=f"<ctx><client><firstname>N{start + i}</firstname></client></ctx>")
            for i in range(n)]


def _counts(db) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(select(events.c.status, func.count()).group_by(events.c.status))
        return {status: n for status, n in rows}


def _heartbeats(db) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(worker_heartbeats)).scalar_one())


class Workers:
    """``msgcenter worker`` subprocesses with their output in files."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> subprocess.Popen:
        log_path = self.tmp_path / f"worker-{len(self.procs)}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(msgcenter_cmd("-v", "worker"), cwd=str(ROOT),
                                    env={**os.environ, **self.env}, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append((proc, log_path))
        return proc

    def logs(self) -> list[str]:
        return [path.read_text(errors="replace") for _, path in self.procs]

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(tmp_path):
    made: list[Workers] = []

    def _make(env: dict[str, str]) -> Workers:
        w = Workers(tmp_path, env)
        made.append(w)
        return w

    yield _make
    for w in made:
        w.stop()


def _env(settings, sink: MailSink, **extra: str) -> dict[str, str]:
    return {"MC_DATABASE_URL": settings.database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
            "MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port), "PYTHONUNBUFFERED": "1",
            **extra}


def test_sigkill_mid_batch_loses_nothing(settings, db, workers):
    """A worker killed with SIGKILL while sending leaves leased events; after the lease a
    new worker sends them: every event ends `processed` and reaches the relay; only the
    killed batch can be sent twice (the documented window)."""
    demo.ensure_catalog(db)
    n = 300
    with MailSink(delay=0.05) as sink:
        add_events(db, _rows(n))
        env = _env(settings, sink, MC_LEASE_SECONDS="3", MC_SMTP_CONCURRENCY="4",
                   MC_WORKER_BATCH_SIZE="50")
        pool = workers(env)
        first = pool.start()
        wait_until(lambda: len(sink.messages) >= 30, 60, "the first worker to send")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        in_flight = _counts(db).get("processing", 0)
        assert in_flight > 0, "the worker was not killed mid-batch"
        sink.handler.delay = 0.0
        pool.start()
        wait_until(lambda: _counts(db) == {"processed": n}, 90,
                    f"all events processed (now {_counts(db)})")
        seen = collections.Counter(m.message_id for m in sink.messages)
    assert len(seen) == n  # every event reached the relay
    duplicates = sum(c - 1 for c in seen.values())
    assert duplicates <= in_flight


def test_sigterm_finishes_and_records_the_rounds_in_flight(settings, db, workers):
    """SIGTERM mid-drain: the worker finishes the rounds it has claimed, records them and
    exits 0; no event is left leased, every processed event reached the relay once, and
    the unclaimed rest is still pending for the next worker."""
    demo.ensure_catalog(db)
    n = 400
    with MailSink(delay=0.05) as sink:
        add_events(db, _rows(n))
        pool = workers(_env(settings, sink, MC_SMTP_CONCURRENCY="4", MC_WORKER_BATCH_SIZE="50"))
        proc = pool.start()
        wait_until(lambda: len(sink.messages) >= 10, 60, "the worker to send")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, pool.logs()[0][-2000:]
        counts = _counts(db)
        seen = collections.Counter(m.message_id for m in sink.messages)
    assert "processing" not in counts
    assert counts.get("processed", 0) == len(seen) == sum(seen.values())
    assert counts.get("pending", 0) > 0  # it stopped mid-drain, not at the end


@pytest.mark.postgres
def test_three_workers_on_postgres_send_each_message_once(postgres_url, tmp_path, workers):
    """Three worker processes share one PostgreSQL queue of 3,000 events: every
    Message-ID arrives exactly once at the sink, and every worker did part of the work."""
    from conftest import make_settings

    from soap_service.store import Database, make_engine, schema

    settings = make_settings(postgres_url)
    db = Database(make_engine(settings), settings)
    schema.upgrade(db)
    demo.ensure_catalog(db)
    n = 3000
    try:
        with MailSink() as sink:
            pool = workers(_env(settings, sink, MC_WORKER_BATCH_SIZE="50"))
            for _ in range(3):
                pool.start()
            wait_until(lambda: _heartbeats(db) == 3, 60, "three workers to be running")
            for start in range(0, n, 1000):
                add_events(db, _rows(1000, start=start))
            wait_until(lambda: _counts(db) == {"processed": n}, 120,
                        f"all events processed (now {_counts(db)})")
            ids = [m.message_id for m in sink.messages]
        pool.stop()
    finally:
        db.dispose()
    assert len(ids) == n and len(set(ids)) == n
    sent_per_worker = [log.count("message.sent") for log in pool.logs()]
    assert sum(sent_per_worker) == n
    assert all(count > 0 for count in sent_per_worker), sent_per_worker


def test_real_time_overtakes_a_batch_backlog(settings, db):
    """With 5,000 batch events queued and being drained, 50 real-time events pushed
    afterwards are all sent before the batch backlog drains."""
    demo.ensure_catalog(db)
    backlog, urgent = 5000, 50
    with MailSink() as sink:
        s = settings.replace(smtp_host=sink.host, smtp_port=sink.port)
        runtime = WorkerRuntime(s, db, Dispatcher(s, db))
        for start in range(0, backlog, 1000):
            add_events(db, _rows(1000, queue="batch", start=start))
        runtime.start()
        try:
            wait_until(lambda: len(sink.messages) >= 200, 60, "the backlog to start draining")
            add_events(db, _rows(urgent, queue="rt", start=backlog))
            wait_until(lambda: len(sink.messages) >= backlog + urgent, 120,
                        "every message to be sent")
        finally:
            runtime.stop()
        order = [m.rcpt_tos[0] for m in sink.messages]
    rt_addresses = {f"user{i}@example.com" for i in range(backlog, backlog + urgent)}
    last_rt = max(i for i, rcpt in enumerate(order) if rcpt in rt_addresses)
    batch_after = len(order) - 1 - last_rt
    assert batch_after >= 1000, f"only {batch_after} batch messages left when real-time done"


def test_sigkill_with_express_and_drain_rounds_in_flight_loses_nothing(settings, db, workers):
    """A worker killed while its drain sends a batch backlog and its express path sends
    real-time events woken meanwhile: after the lease a new worker sends what was left;
    every event ends `processed` and reaches the relay, and the duplicates are at most the
    events in flight at the kill (the documented window: the drain's pipelined rounds
    plus an express round)."""
    demo.ensure_catalog(db)
    backlog, urgent = 400, 60
    rt_addresses = {f"user{i}@example.com" for i in range(backlog, backlog + urgent)}
    with MailSink(delay=0.05) as sink:
        add_events(db, _rows(backlog, queue="batch"))
        env = _env(settings, sink, MC_LEASE_SECONDS="3", MC_SMTP_CONCURRENCY="4",
                   MC_WORKER_BATCH_SIZE="50")
        pool = workers(env)
        first = pool.start()
        wait_until(lambda: len(sink.messages) >= 20, 60, "the backlog to start draining")
        add_events(db, _rows(urgent, queue="rt", start=backlog))
        wait_until(lambda: sum(m.rcpt_tos[0] in rt_addresses for m in sink.messages) >= 8,
                   60, "real-time events to be sent beside the backlog")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        in_flight = _counts(db).get("processing", 0)
        assert in_flight > 0, "the worker was not killed mid-round"
        sink.handler.delay = 0.0
        pool.start()
        wait_until(lambda: _counts(db) == {"processed": backlog + urgent}, 90,
                   f"all events processed (now {_counts(db)})")
        seen = collections.Counter(m.message_id for m in sink.messages)
    assert len(seen) == backlog + urgent
    assert sum(c - 1 for c in seen.values()) <= in_flight
