"""Dispatch: a round claims due events, routes, renders, sends and records the outcomes.

:meth:`Dispatcher.tick` runs one round (tests call it directly), the same for every
channel (email, SMS, push):

1. **claim** due events with a lease (``store.queue.claim_events``);
2. **prepare** each one through :data:`~soap_service.steps.PREPARE_STEPS` — too old?
   address (by channel)? excluded? route to the published template, render it,
   instrument it, build the channel's message — any step may end the event early
   (``soap_service/steps.py``);
3. **send** the prepared messages concurrently, each through its channel's
   :class:`~soap_service.channels.failover.ConnectorSet` (priority, failover, limits,
   circuits; real-time messages first for every connector's slots).  One event loop, in
   a private thread, holds every channel's connectors, so pooled SMTP connections, the
   SMPP bind and HTTP/2 connections survive from one round to the next;
4. **record** every outcome, its status-log row and its delivery-log row (naming the
   connector and the provider's id) in one transaction (``store.queue.record_outcomes``).

Delivery receipts arriving on a connector's link (SMPP ``deliver_sm``) go to a
:class:`~soap_service.receipts.ReceiptRecorder`, written in batches by a thread of their
own.  The connectors' health goes to the database with the heartbeat (:meth:`beat`).

A round that fails (the database went away after the claim, say) does not leave its
events to wait out their lease: events not sent are released (back to ``pending``), and
outcomes of messages already sent are kept to be recorded -- at once if the database
answers, else at the start of the next round (:meth:`Dispatcher.settle`), so they are
retried as soon as the database is back and nothing sent is sent again.

:meth:`Dispatcher.drain` (the scheduled job) runs rounds back to back, pipelined: the
next round is claimed and prepared while the previous one is being sent.
:meth:`Dispatcher.express` (run on a wake-up) takes real-time events only, in small
rounds, and their messages go ahead of batch messages for a free connector slot.
Each send's result becomes the event's next state in ``steps.outcome_of_send``.  This
module opens no socket itself and builds no SQL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from soap_service import clock, exclusions, messages, retry, targeting
from soap_service.channels.failover import ConnectorSet
from soap_service.channels.limits import Clock, Sleep
from soap_service.config import Settings
from soap_service.errors import ServerError
from soap_service.metrics import WorkerMetrics
from soap_service.models import (
    WISHED_CHANNEL_OF,
    Channel,
    ChannelMessage,
    ConnectorHealth,
    Event,
    EventStatus,
    EventType,
    Outcome,
    Queue,
    RenderedMessage,
    SendResult,
    TemplateVersion,
)
from soap_service.receipts import ReceiptRecorder
from soap_service.route import Route
from soap_service.steps import PREPARE_STEPS, Job, outcome_of_send
from soap_service.store import Database, connect
from soap_service.store import queue as store_queue

log = logging.getLogger(__name__)
RECORD_ATTEMPTS = 4  # about 7 s of database trouble before a round's outcomes are lost
EXPRESS_DEFER_SECONDS = 0.01  # how often a deferring express path looks at the drain again


# ---------------------------------------------------------------- the dispatcher


@dataclass(frozen=True)
class TickReport:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0


def _default_router() -> Callable[[Database, Event], Route]:
    from soap_service import catalog

    return catalog.find_route


def _default_renderer() -> Callable[[TemplateVersion, Event], RenderedMessage]:
    from soap_service import render

    return render.render_message


def _default_types() -> Callable[[Database, str], EventType | None]:
    from soap_service import catalog

    return catalog.get_event_type


class Round:
    """One claimed batch on its way: early outcomes, jobs being sent, their results."""

    def __init__(self, claimed: int, early: list[Outcome], sending: list[Job],
                 results: concurrent.futures.Future[list[SendResult]] | None,
                 events: Sequence[Event] = (), limit: int = 0) -> None:
        self.claimed, self.early, self.sending, self.results = claimed, early, sending, results
        self.limit = limit  # the most this round could have claimed
        self.events = {e.id: e for e in events}  # what was claimed (for the metrics)
        self.sent_at: datetime | None = None  # when its last message was answered

    @property
    def event_ids(self) -> list[int]:
        return [o.event_id for o in self.early] + [j.event.id for j in self.sending]

    @property
    def has_batch(self) -> bool:
        """Whether batch messages are being sent (a real-time one could wait behind them)."""
        return any(j.event.queue is Queue.BATCH for j in self.sending)


class Dispatcher:
    """Claims and delivers events for one worker process (one lease owner id).

    Thread-safe: the scheduler's drain loop and the wake-up's express path may run
    rounds at the same time; each round has its own state, and they share the channel.
    """

    def __init__(self, settings: Settings, db: Database | None = None, *,
                 worker_id: str | None = None,
                 router: Callable[[Database, Event], Route] | None = None,
                 renderer: Callable[[TemplateVersion, Event], RenderedMessage] | None = None,
                 types: Callable[[Database, str], EventType | None] | None = None,
                 connector_clock: Clock = time.monotonic,
                 connector_sleep: Sleep = asyncio.sleep) -> None:
        """``connector_clock`` / ``connector_sleep``: what the connectors' rate limits and
        circuits measure time with (tests count on a virtual clock)."""
        self.settings = settings
        self.db = db or connect(settings)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.router = router or _default_router()
        self.renderer = renderer or _default_renderer()
        self.types = types or _default_types()
        self.started_at = clock.utcnow()
        self.woken = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._loop_thread: threading.Thread | None = None
        # every channel's connectors, built on the loop (start_channels); a channel with
        # no connector configured has none, and its events fail in steps.find_address
        self._configured = {ch: settings.channel_connectors(ch) for ch in Channel}
        self._sets: dict[Channel, ConnectorSet] | None = None
        self.receipts = ReceiptRecorder(self.db, grace=max(60.0, settings.lease_seconds))
        self._connector_clock, self._connector_sleep = connector_clock, connector_sleep
        # express rounds: about what the connectors take at once
        self.express_size = max(c.concurrency for cs in self._configured.values() for c in cs)
        self._domain = _message_id_domain(settings.public_url)
        self.metrics = WorkerMetrics()
        # what failed rounds left to do (see settle); shared by the drain and express paths
        self._unsettled_lock = threading.Lock()
        self._to_record: list[Outcome] = []
        self._to_release: set[int] = set()
        # the drain loop's state, read by the express path (see express)
        self.draining = False
        self.drain_has_batch = False
        self._expressing = threading.Lock()  # one express path at a time (the window)

    # -- the job ---------------------------------------------------------------

    def tick(self, realtime_only: bool = False, limit: int | None = None) -> TickReport:
        """One round: claim -> prepare -> send -> record.  Returns what happened."""
        return self.finish(self.start(realtime_only, limit))

    def start(self, realtime_only: bool = False, limit: int | None = None) -> Round:
        """Claim and prepare a round, and start sending it (without waiting).  What an
        earlier failed round left is settled first; if this round fails before its
        messages are handed to the channel, its events are released."""
        self.settle()
        started = time.perf_counter()
        limit = limit or self.settings.worker_batch_size
        events = store_queue.claim_events(
            self.db, self.worker_id, limit=limit, now=clock.utcnow(),
            lease_seconds=self.settings.lease_seconds,
            batch_min_share=self.settings.batch_min_share, realtime_only=realtime_only)
        if not events:
            return Round(0, [], [], None, limit=limit)
        claimed = time.perf_counter()
        self.metrics.stage("claim", claimed - started)
        try:
            listed = exclusions.listed_addresses(self.db,
                                                 [(e.address_kind, e.address) for e in events])
            rechecked: set[tuple[str, Channel]] = set()
            jobs = [Job(e, self.event_type(e.event_type), listed=listed, rechecked=rechecked)
                    for e in events]
            targeting.preload(self, jobs)  # profile-based events: their profiles at once
            early, ready = self.prepare(jobs)
            sending = time.perf_counter()
            self.metrics.stage("prepare", sending - claimed)
            rnd = Round(len(events), early, ready, self.send_async(ready), events, limit)
            assert rnd.results is not None
            rnd.results.add_done_callback(lambda _: self._sent(rnd, sending))
            return rnd
        except BaseException:
            self._give_back([e.id for e in events])
            raise

    def finish(self, rnd: Round) -> TickReport:
        """Wait for a round's sends and record every outcome in one transaction; if the
        record fails, the outcomes are kept for :meth:`settle`."""
        try:
            results = rnd.results.result() if rnd.results is not None else []
            outcomes = rnd.early + [outcome_of_send(self, j, r)
                                    for j, r in zip(rnd.sending, results, strict=True)]
        except BaseException:  # what was sent is unknown: the events go back to the queue
            self._give_back(rnd.event_ids)
            raise
        try:
            started = time.perf_counter()
            self._record(outcomes)
            self.metrics.stage("record", time.perf_counter() - started)
        except ServerError:
            with self._unsettled_lock:
                self._to_record.extend(outcomes)
            log.warning("queue.record_deferred count=%s", len(outcomes))
            raise
        self._count(rnd, outcomes)
        return _report(rnd.claimed, outcomes)

    def _sent(self, rnd: Round, started: float) -> None:
        """A round's last answer arrived (on the channel loop)."""
        rnd.sent_at = clock.utcnow()
        self.metrics.stage("send", time.perf_counter() - started)

    def _count(self, rnd: Round, outcomes: Sequence[Outcome]) -> None:
        """Outcomes per channel, and ack -> send of the messages sent (/metrics)."""
        now = rnd.sent_at or clock.utcnow()
        for o in outcomes:
            event = rnd.events.get(o.event_id)
            if event is None:
                continue
            self.metrics.outcome(event.channel.value, o.status.value)
            if o.status is EventStatus.PROCESSED and event.created_at is not None:
                self.metrics.sent(event.channel.value, event.queue.value,
                                  (now - event.created_at).total_seconds())

    def _give_back(self, event_ids: Sequence[int]) -> None:
        """Release the events of a failed round: at once if the database answers, else
        at the start of the next round (never raises: the round's own error is what the
        caller sees)."""
        with self._unsettled_lock:
            self._to_release.update(event_ids)
        try:
            self.settle()
        except Exception:
            log.warning("queue.release_deferred count=%s", len(event_ids))

    def settle(self) -> None:
        """Record the outcomes and release the claims that failed rounds left behind;
        raises (keeping them) while the database is still unavailable."""
        with self._unsettled_lock:
            outcomes, self._to_record = self._to_record, []
            release, self._to_release = sorted(self._to_release), set()
        try:
            if outcomes:
                store_queue.record_outcomes(self.db, self.worker_id, outcomes, clock.utcnow())
                log.info("queue.record_settled count=%s", len(outcomes))
        except BaseException:
            with self._unsettled_lock:
                self._to_record[:0] = outcomes
                self._to_release.update(release)
            raise
        try:
            if release:
                n = store_queue.release_claims(self.db, self.worker_id, release, clock.utcnow(),
                                               "released: the round failed")
                log.info("queue.claims_released count=%s", n)
        except BaseException:
            with self._unsettled_lock:
                self._to_release.update(release)
            raise

    def _record(self, outcomes: list[Outcome]) -> None:
        """Record, retrying a database blip: a lost record means re-sends after the lease."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                store_queue.record_outcomes(self.db, self.worker_id, outcomes, clock.utcnow())
                return
            except ServerError:
                if attempt + 1 == RECORD_ATTEMPTS:
                    raise
                log.warning("queue.record_retry attempt=%s", attempt + 1)
                time.sleep(2 ** attempt)

    def drain(self, max_rounds: int | None = None, stop: threading.Event | None = None) -> int:
        """Rounds until nothing is due (and no wake-up arrived meanwhile).

        Pipelined: round N+1 is claimed and prepared while round N is being sent, then
        round N is recorded.  Returns how many events were claimed.
        """
        total, rounds = 0, 0
        previous: Round | None = None
        self.draining = True
        try:
            while stop is None or not stop.is_set():
                if previous is not None and previous.claimed < previous.limit // 4:
                    self._linger(stop)
                self.woken.clear()
                current = self.start()
                self.drain_has_batch = current.has_batch or (
                    previous is not None and previous.has_batch)
                if previous is not None:
                    done, previous = previous, None
                    self.finish(done)
                total += current.claimed
                rounds += 1
                previous = current
                # a round that was not full took everything due; what became due since
                # woke us (the wake-up comes after the insert's commit)
                if (current.claimed < current.limit and not self.woken.is_set()) \
                        or rounds == max_rounds:
                    break
        finally:
            self.draining = self.drain_has_batch = False
            if previous is not None:  # sent messages are recorded even if a claim failed
                self.finish(previous)
        return total

    def _linger(self, stop: threading.Event | None) -> None:
        """Before the round after a small one (events trickling in), wait
        ``MC_WORKER_LINGER`` so that the events arriving meanwhile share the next round:
        a round costs two transactions (two commits and fsyncs on SQLite, taken from
        ingest's write lock) whatever its size.  A lone real-time event never waits: the
        first round of a drain goes at once."""
        if self.settings.worker_linger > 0:
            (stop or threading.Event()).wait(self.settings.worker_linger)

    def express(self, stop: threading.Event | None = None, wait_for_drain: bool = True) -> int:
        """Real-time events only, in small rounds, until none is due (the wake-up path).

        While the drain loop runs rounds of real-time messages only, the express path
        leaves the new events to it (the drain was woken too, and claims real-time first):
        small express rounds beside it would only add two transactions -- two fsyncs on
        SQLite -- per handful of events.  It takes over as soon as batch messages are on
        their way (a real-time event must not wait behind them) or, with
        ``wait_for_drain``, when the drain stops (else it returns: the drain was woken).
        One express path runs at a time (the other caller returns at once), so at most
        one express round is in flight beside the drain's two.
        """
        if not self._expressing.acquire(blocking=False):
            return 0
        try:
            return self._express(stop, wait_for_drain)
        finally:
            self._expressing.release()

    def _express(self, stop: threading.Event | None, wait_for_drain: bool) -> int:
        total = 0
        while stop is None or not stop.is_set():
            if self.draining and not self.drain_has_batch:
                if not wait_for_drain:
                    break
                time.sleep(EXPRESS_DEFER_SECONDS)
                continue
            report = self.tick(realtime_only=True, limit=self.express_size)
            total += report.claimed
            if not report.claimed:
                break
        return total

    def prepare(self, jobs: Sequence[Job]) -> tuple[list[Outcome], list[Job]]:
        """Run every job through PREPARE_STEPS: early outcomes, and jobs ready to send."""
        outcomes: list[Outcome] = []
        ready: list[Job] = []
        for job in jobs:
            for step in PREPARE_STEPS:
                outcome = step(self, job)
                if outcome is not None:
                    log.info("event.%s event=%s", outcome.status.value, job.event.id)
                    outcomes.append(outcome)
                    break
            else:
                ready.append(job)
        return outcomes, ready

    def send_async(self, jobs: Sequence[Job]) -> concurrent.futures.Future[list[SendResult]]:
        """Start sending the jobs' messages, each through its channel's connectors;
        real-time events are marked urgent."""
        items = [(j.event.channel, j.message, j.address, j.event.queue is Queue.RT)
                 for j in jobs if j.message is not None]
        self.start_channels()
        return asyncio.run_coroutine_threadsafe(self._send_all(items), self._ensure_loop())

    async def _send_all(self, items: Sequence[tuple[Channel, ChannelMessage, str, bool]]
                        ) -> list[SendResult]:
        sets = self._sets
        assert sets is not None
        return list(await asyncio.gather(
            *(sets[channel].send(message, address, urgent=urgent)
              for channel, message, address, urgent in items)))

    def has_connectors(self, channel: Channel) -> bool:
        """Whether ``channel`` has at least one connector configured."""
        return bool(self._configured[channel])

    def start_channels(self) -> None:
        """Build every channel's connectors on the channel loop (once); a connector
        that cannot be built (a bad option, an unreadable secret) raises ConfigError."""
        if self._sets is not None:
            return
        loop = self._ensure_loop()
        with self._loop_lock:
            if self._sets is None:
                self._sets = asyncio.run_coroutine_threadsafe(self._build_sets(),
                                                              loop).result(30)

    async def _build_sets(self) -> dict[Channel, ConnectorSet]:
        """Every channel's connectors; links that carry receipts (SMPP binds) are opened
        now, so receipts the provider kept while no worker was bound arrive at once."""
        sets = {channel: ConnectorSet.from_configs(channel, configs, self.receipts.submit,
                                                   clock=self._connector_clock,
                                                   sleep=self._connector_sleep)
                for channel, configs in self._configured.items() if configs}
        for connector in (c for s in sets.values() for c in s.connectors):
            start = getattr(connector, "start", None)
            if start is not None:
                await start()
        return sets

    def connector_health(self) -> list[ConnectorHealth]:
        """Every connector's circuit and counters, read on the channel loop."""
        sets, loop = self._sets, self._loop
        if sets is None or loop is None:
            return []

        async def read() -> list[ConnectorHealth]:
            return [h for s in sets.values() for h in s.health()]

        return asyncio.run_coroutine_threadsafe(read(), loop).result(10)

    # -- lookups (the catalog caches them briefly) ---------------------------------------

    def event_type(self, name: str) -> EventType:
        return self.types(self.db, name) or EventType(name=name)

    def route_for(self, event: Event) -> Route:
        return self.router(self.db, event)

    def recheck_paused(self, event: Event, rechecked: set[tuple[str, Channel]]) -> Route | None:
        """Route again, uncached, once per round and type: a "paused" answer may be up to
        ``catalog.CACHE_SECONDS`` old, and holding an event after another process resumed
        its template would hold it for good.  None when already checked this round."""
        key = (event.event_type, event.channel)
        if key in rechecked:
            return None
        rechecked.add(key)
        _forget_routes()
        return self.route_for(event)

    def policy_for(self, et: EventType) -> retry.RetryPolicy:
        s = self.settings
        return retry.RetryPolicy(s.retry_base_seconds, s.retry_max_seconds, et.max_attempts,
                                 et.validity_seconds)

    def message_id(self, event: Event) -> str:
        """Stable per event: a re-send of the same event carries the same Message-ID."""
        return f"<mc.{self.settings.instance_id}.{event.id}@{self._domain}>"

    def reference(self, event: Event) -> str:
        """Stable per event: the SMS / push reference ("mc.{instance}.{event id}")."""
        return messages.reference(self.settings.instance_id, event.id)

    # -- housekeeping ------------------------------------------------------------------

    def reap(self) -> int:
        """Expired leases back to the queue; paused events past validity -> tooOld, and
        paused events whose template is no longer paused -> back to ``pending``."""
        now = clock.utcnow()
        n = store_queue.reap_expired_leases(self.db, now)
        if n:
            log.warning("queue.leases_reaped count=%s", n)
        groups = store_queue.paused_groups(self.db)
        for name in sorted({name for name, _ in groups}):
            cutoff = now - timedelta(seconds=self.event_type(name).validity_seconds)
            expired = store_queue.expire_paused(self.db, name, cutoff, now)
            if expired:
                log.info("queue.paused_expired type=%s count=%s", name, expired)
        self._release_unpaused(groups, now)
        return n

    def _release_unpaused(self, groups: Sequence[tuple[str, Channel]], now: datetime) -> None:
        """Held events whose template was resumed or unpublished meanwhile (a resume that
        raced a round holding them) go back to the queue: nothing stays paused for good.
        The rule is ``store.queue.release_paused_in``'s, the one a resume applies: plain
        events when their type's routing is no longer paused, follow-ups when their rule's
        template is not."""
        if groups:
            _forget_routes()
        for name, channel in groups:
            probe = Event(id=0, queue=Queue.RT, event_type=name, ctx_xml="",
                          wished_channel=WISHED_CHANNEL_OF[channel])
            route = self.route_for(probe)
            held = route.version is None and route.status is EventStatus.PAUSED
            released = store_queue.release_paused(self.db, name, channel, now,
                                                  "template no longer paused", plain=not held)
            if released:
                log.info("queue.paused_released type=%s count=%s", name, released)

    def beat(self) -> None:
        """The heartbeat, with every connector's health (``msgcenter connector list``)."""
        store_queue.heartbeat(self.db, self.worker_id, self.started_at, clock.utcnow(),
                              self.connector_health())

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(target=self._loop.run_forever,
                                                     name="mc-channels", daemon=True)
                self._loop_thread.start()
            return self._loop

    def close(self) -> None:
        """Settle what failed rounds left (best effort), close every connector (QUIT,
        unbind, HTTP clients), stop the channel loop, then write the receipts queued."""
        try:
            self.settle()
        except Exception:  # the database is still away: the leases will run out
            log.warning("worker.unsettled_at_stop record=%s release=%s",
                        len(self._to_record), len(self._to_release))
        with self._loop_lock:
            loop, self._loop = self._loop, None
            sets, self._sets = self._sets, None
        if loop is not None:
            if sets:
                try:
                    asyncio.run_coroutine_threadsafe(_close_all(sets), loop).result(15)
                except Exception:  # best effort: a connector that hangs must not hold us
                    log.warning("worker.connectors_not_closed")
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
            loop.close()
        self.receipts.close()


async def _close_all(sets: dict[Channel, ConnectorSet]) -> None:
    await asyncio.gather(*(s.close() for s in sets.values()))


def _forget_routes() -> None:
    from soap_service import catalog

    catalog.clear_cache()


def _report(claimed: int, outcomes: Sequence[Outcome]) -> TickReport:
    sent = sum(o.status is EventStatus.PROCESSED for o in outcomes)
    deferred = sum(o.status is EventStatus.PENDING for o in outcomes)
    return TickReport(claimed, sent, deferred, len(outcomes) - sent - deferred)


def _message_id_domain(public_url: str) -> str:
    host = urlsplit(public_url).hostname or ""
    return host if any(ch.isalpha() for ch in host) else "msgcenter.local"
