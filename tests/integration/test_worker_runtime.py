"""The worker runtime in-process: scheduler, wake-up listener, heartbeats, clean stop."""

from __future__ import annotations

from pathlib import Path

from dispatch_support import (
    add_events,
    event_row,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
)
from sqlalchemy import select

from soap_service import wakeup
from soap_service.config import load_settings
from soap_service.devsmtp import MailSink
from soap_service.models import EventStatus
from soap_service.schedule import WorkerRuntime
from soap_service.store import Database, make_engine
from soap_service.store.events import get_event
from soap_service.tables import worker_heartbeats
from soap_service.worker import Dispatcher


def test_pushed_event_wakes_the_dispatcher_without_waiting_for_the_poll(settings, db):
    """With a 120 s poll interval, a stored event is still sent at once (wake-up)."""
    with MailSink() as sink:
        s = sink_settings(settings, sink, worker_poll_interval=120.0)
        dispatcher = Dispatcher(s, db, router=stand_in_router, renderer=stand_in_renderer,
                                types=lambda db, name: None)
        runtime = WorkerRuntime(s, db, dispatcher).start()
        try:
            assert runtime.listener.ready.wait(10)
            [first] = add_events(db, [event_row(1)])
            assert len(sink.wait_for(1, timeout=30)) == 1
            [second] = add_events(db, [event_row(2)])  # the scheduler is idle by now
            assert len(sink.wait_for(2, timeout=30)) == 2
            with db.connect() as conn:
                beats = conn.execute(select(worker_heartbeats.c.worker_id)).scalars().all()
            assert beats == [dispatcher.worker_id]
        finally:
            runtime.stop()
    for pk in (first, second):
        ev = get_event(db, pk)
        assert ev is not None and ev.status is EventStatus.PROCESSED
    with db.connect() as conn:
        assert conn.execute(select(worker_heartbeats)).all() == []


def test_long_sqlite_paths_use_a_short_hashed_socket(tmp_path):
    """A database path too long for AF_UNIX gets a hashed socket path under the temp dir,
    and a notification sent to it reaches the listener."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    s = load_settings({"MC_DATABASE_URL": f"sqlite:///{deep}/mc.db"})
    db = Database(make_engine(s), s)
    path = wakeup.socket_path(db)
    assert path is not None and len(str(path).encode()) <= wakeup.MAX_UNIX_PATH
    assert path == wakeup.socket_path(db)  # both sides agree
    woken: list[int] = []
    listener = wakeup.Listener(db, lambda: woken.append(1)).start()
    try:
        wakeup.notify_after_commit(db)
        import time

        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        listener.stop()
        db.dispose()
    assert woken
    assert not Path(path).exists()


def test_a_failing_job_logs_one_line_and_keeps_its_schedule(tmp_path, caplog):
    """When the database is unusable (here: no tables), each scheduled job logs one
    warning naming itself, raises nothing into the scheduler, and stays scheduled."""
    s = load_settings({"MC_DATABASE_URL": f"sqlite:///{tmp_path}/bare.db"})
    db = Database(make_engine(s), s)
    runtime = WorkerRuntime(s, db)
    try:
        runtime.add_jobs()
        with caplog.at_level("WARNING", logger="soap_service.schedule"):
            for job_id in ("dispatch", "reap", "heartbeat"):
                runtime.scheduler.get_job(job_id).func()
        failed = [r.getMessage() for r in caplog.records if "worker.job_failed" in r.getMessage()]
        assert [m.split()[1] for m in failed] == ["job=dispatch", "job=reap", "job=heartbeat"]
        assert all("database unavailable" in m for m in failed)
        assert not any(r.exc_info for r in caplog.records)
    finally:
        runtime.dispatcher.close()
        db.dispose()


def test_a_second_worker_on_sqlite_is_warned(settings, db, caplog):
    """Starting a worker while another one's heartbeat is fresh warns on SQLite (one worker
    process is the supported setup there), not on PostgreSQL, and not for a heartbeat
    that has gone stale."""
    from datetime import timedelta

    from soap_service import clock
    from soap_service.schedule import warn_if_not_alone
    from soap_service.store import queue as store_queue

    now = clock.utcnow()
    store_queue.heartbeat(db, "stale:1:a", now - timedelta(minutes=5), now - timedelta(minutes=5))
    with caplog.at_level("WARNING", logger="soap_service.schedule"):
        warn_if_not_alone(db)
        assert not caplog.records
        store_queue.heartbeat(db, "host:42:abc", now, now)
        warn_if_not_alone(db)
    warned = [r.getMessage() for r in caplog.records]
    if db.is_sqlite:
        [line] = warned
        assert "worker.sqlite_not_alone others=host:42:abc " in line
    else:
        assert warned == []


def test_a_second_sqlite_listener_leaves_the_first_one_its_socket(tmp_path):
    """A second worker on the same SQLite database does not take over (nor, on stopping,
    delete) the first one's wake-up socket: the first keeps being woken; the second
    polls."""
    import time

    s = load_settings({"MC_DATABASE_URL": f"sqlite:///{tmp_path}/mc.db"})
    db = Database(make_engine(s), s)
    woken: list[str] = []
    first = wakeup.Listener(db, lambda: woken.append("first")).start()
    second = wakeup.Listener(db, lambda: woken.append("second")).start()
    try:
        assert first.ready.is_set() and not second.ready.is_set()
        second.stop()
        assert wakeup.socket_path(db).exists()
        wakeup.notify_after_commit(db)
        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        first.stop()
        db.dispose()
    assert woken == ["first"]
