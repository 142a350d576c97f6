"""APScheduler wiring only: which job runs when, and the wake-up that runs dispatch now.

One scheduler per worker process, jobs in memory (two schedulers sharing a job store
would run jobs twice).  The jobs are plain functions elsewhere — ``Dispatcher.drain``,
``reap``, ``beat``, ``followup.tick``, ``housekeeping.daily_job``, ``Outbox.tick``
(webhooks, unless ``webhook_poll_interval`` is 0) — so that the work, not
the scheduler, is what is safe to share between processes (leases in the queue).
A wake-up (``wakeup.Listener``) marks the dispatcher woken, moves the dispatch job's next
run to now, and starts the express path (real-time events only, small rounds, their
messages ahead of batch ones for a free SMTP connection) so a real-time event does not
wait for a batch round to finish; polling every ``worker_poll_interval`` seconds is only
the fallback.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from soap_service import clock, wakeup
from soap_service.config import Settings
from soap_service.errors import ConfigError, MessageCenterError, ServerError
from soap_service.outbox import Outbox
from soap_service.store import Database, connect
from soap_service.store import queue as store_queue
from soap_service.worker import Dispatcher

log = logging.getLogger(__name__)

DISPATCH_JOB = "dispatch"
HEARTBEAT_SECONDS = 10


class WorkerRuntime:
    """A dispatcher, its scheduler and its wake-up listener, started and stopped together."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 dispatcher: Dispatcher | None = None) -> None:
        self.settings = settings
        self.db = db or connect(settings)
        self.dispatcher = dispatcher or Dispatcher(settings, self.db)
        self.stopping = threading.Event()
        self._draining = threading.Lock()
        self._express_wanted = threading.Event()
        self._express_thread = threading.Thread(target=self.express, name="mc-express",
                                                daemon=True)
        # max_instances=2: a poll that fires during a long drain returns at once (see
        # dispatch) instead of APScheduler logging "skipped" every second
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 2, "misfire_grace_time": None})
        self.listener = wakeup.Listener(self.db, self.wake)
        self.outbox = Outbox(settings, self.db)

    # -- jobs ------------------------------------------------------------------------

    def dispatch(self) -> None:
        """The scheduled job: drain; or, beside a drain that sends batch messages (run by
        the express thread), real-time events in express rounds."""
        if not self._draining.acquire(blocking=False):
            self.dispatcher.woken.set()  # the running drain goes round once more
            self.dispatcher.express(stop=self.stopping, wait_for_drain=False)
            return
        try:
            self.dispatcher.drain(stop=self.stopping)
        finally:
            self._draining.release()

    def express(self) -> None:
        """Wake-up path.  With no drain running, this thread drains at once (real-time
        events first, in full pipelined rounds: two transactions per round, not per
        handful of events); beside a running drain it runs express rounds while the
        drain sends batch messages (``Dispatcher.express``)."""
        while not self.stopping.is_set():
            if self._express_wanted.wait(0.5):
                self._express_wanted.clear()
                try:
                    if self._draining.acquire(blocking=False):
                        try:
                            self.dispatcher.drain(stop=self.stopping)
                        finally:
                            self._draining.release()
                    else:
                        self.dispatcher.express(stop=self.stopping)
                except MessageCenterError as exc:  # the drain loop and polling cover it
                    log.warning("worker.job_failed job=express error=%s", exc.message)
                except Exception:
                    log.exception("worker.express_failed")

    def wake(self) -> None:
        """Send real-time events now: the express thread drains, or runs express rounds
        beside a drain of batch messages; a running drain goes round once more.  (The
        dispatch job is left to its interval: moved to now as well, it only found the
        express thread at work, or read an empty queue, once per wake-up.)"""
        self.dispatcher.woken.set()
        self._express_wanted.set()

    def _followups(self) -> None:
        from soap_service import followup

        followup.tick(self.db, self.settings)

    def _webhooks(self) -> None:
        self.outbox.tick(stop=self.stopping)

    def _housekeeping(self) -> None:
        from soap_service import housekeeping

        housekeeping.daily_job(self.db, self.settings)

    # -- lifecycle -----------------------------------------------------------------------

    def add_jobs(self) -> None:
        s, now = self.settings, datetime.now(UTC)
        add: Any = self.scheduler.add_job
        add(_guarded("dispatch", self.dispatch), "interval", seconds=s.worker_poll_interval,
            id=DISPATCH_JOB, next_run_time=now)
        add(_guarded("reap", self.dispatcher.reap), "interval",
            seconds=max(5, s.lease_seconds // 4), id="reap", next_run_time=now)
        add(_guarded("heartbeat", self.dispatcher.beat), "interval", seconds=HEARTBEAT_SECONDS,
            id="heartbeat", next_run_time=now)
        add(_guarded("followups", self._followups), "interval", seconds=60, id="followups")
        if s.webhook_poll_interval > 0:
            add(_guarded("webhooks", self._webhooks), "interval",
                seconds=s.webhook_poll_interval, id="webhooks", next_run_time=now)
        # a fixed time of day: an interval would restart its 24 h with every worker restart
        add(_guarded("housekeeping", self._housekeeping), "cron", hour=3, minute=17,
            id="housekeeping")

    def start(self) -> WorkerRuntime:
        """Build every connector (a bad connector table stops the start here, in one
        line), then start the jobs."""
        try:
            self.dispatcher.start_channels()
        except BaseException:
            self.dispatcher.close()
            raise
        self.add_jobs()
        self.listener.start()
        self.scheduler.start()
        self._express_thread.start()
        log.info("worker.started id=%s", self.dispatcher.worker_id)
        return self

    def stop(self) -> None:
        """Finish the round in progress, then close connections and forget the heartbeat."""
        self.stopping.set()
        self.listener.stop()
        self.scheduler.shutdown(wait=True)
        if self._express_thread.is_alive():
            self._express_thread.join(30)
        self.dispatcher.close()
        self.outbox.close()
        try:
            store_queue.forget_worker(self.db, self.dispatcher.worker_id)
        except Exception:  # best effort on the way out
            log.warning("worker.heartbeat_not_removed id=%s", self.dispatcher.worker_id)
        log.info("worker.stopped id=%s", self.dispatcher.worker_id)


def check_schema(db: Database) -> None:
    """Refuse to start on a database that ``msgcenter init`` has not brought up to date
    (every job would fail, every second, with a traceback)."""
    from soap_service.store import schema

    try:
        current, head = schema.current_revision(db), schema.head_revision(db)
    except Exception as exc:  # the driver's errors: schema.py reads outside store's wrapper
        raise ServerError(f"database unavailable ({type(exc).__name__})", str(exc)[:200]) from exc
    if current != head:
        raise ConfigError(f"the database schema is at revision {current or 'none'}, not "
                          f"{head}: run 'msgcenter init' first")


def warn_if_not_alone(db: Database) -> None:
    """SQLite supports one worker process: say so when another one looks alive (a second
    one takes over the wake-up socket; claims stay safe, but it only adds contention)."""
    if not db.is_sqlite:
        return
    seen_since = clock.utcnow() - timedelta(seconds=HEARTBEAT_SECONDS * 3)
    others = store_queue.live_workers(db, seen_since)
    if others:
        log.warning("worker.sqlite_not_alone others=%s (SQLite supports one worker process; "
                    "'msgcenter serve' starts one unless --no-worker)", ",".join(others))


def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """A job whose known failures (database down...) are one warning line, not a traceback
    each second; the next run tries again."""

    def run() -> None:
        try:
            job()
        except MessageCenterError as exc:
            log.warning("worker.job_failed job=%s error=%s", name, exc.message)

    return run


def run_worker(settings: Settings, on_started: Callable[[], None] | None = None) -> None:
    """Run a worker until SIGTERM or SIGINT (``msgcenter worker``)."""
    runtime = WorkerRuntime(settings)
    check_schema(runtime.db)
    warn_if_not_alone(runtime.db)
    runtime.start()
    if on_started is not None:
        on_started()
    done = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not done.wait(1.0):
            pass
    finally:
        runtime.stop()
