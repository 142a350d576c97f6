"""The webhook job: outbox rows -> deliveries -> signed HTTP POSTs, retried on a schedule.

:meth:`Outbox.tick` (scheduled every ``webhook_poll_interval`` seconds by the worker;
tests call it directly) first fans the outbox out (``store.webhooks.fan_out``), then
sends due deliveries in rounds of ``webhook_concurrency``, each attempt bounded by
``webhook_timeout``.  Each attempt leaves one attempt row.  A 2xx answer delivers; 410
Gone disables the endpoint (its pending deliveries fail); anything else -- another
status, a timeout, a refused connection -- is retried after the next step of
``webhook_retry_schedule`` (SPEC §8: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,
24 h), then the delivery fails.  Claims are leases: a worker killed mid-send leaves its
deliveries to be sent again after the lease, so a receiver sees each ``webhook-id`` at
least once (and should de-duplicate on it).  Redirects are not followed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from soap_service import clock, retry, webhooks
from soap_service.config import Settings
from soap_service.store import Database
from soap_service.store import webhooks as store

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 500
MAX_RESPONSE = 4096  # bytes of a receiver's answer read (and 500 characters kept)
MAX_ROUNDS = 50  # rounds per tick, so one tick never runs for ever under a flood


@dataclass(frozen=True)
class TickReport:
    fanned_out: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Answer:
    code: int | None  # HTTP status, None when there was none (timeout, connection error)
    text: str
    duration_ms: int


class Outbox:
    """Fans out and delivers webhooks for one worker process."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.schedule = retry.webhook_schedule(settings.webhook_retry_schedule)
        self.lease_seconds = 2 * settings.webhook_timeout + 10
        self._client: httpx.Client | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- the job ---------------------------------------------------------------------

    def tick(self, stop: threading.Event | None = None) -> TickReport:
        fanned = 0
        plan = webhooks.plan_deliveries(self.settings)
        while True:
            n = store.fan_out(self.db, clock.utcnow(), FAN_OUT_BATCH, plan)
            fanned += n
            if n < FAN_OUT_BATCH:
                break
        delivered = retried = failed = 0
        for _ in range(MAX_ROUNDS):
            if stop is not None and stop.is_set():
                break
            due = store.claim_due(self.db, clock.utcnow(), self.settings.webhook_concurrency,
                                  self.lease_seconds)
            if not due:
                break
            results = self.send_all(due)
            store.record_attempts(self.db, results, clock.utcnow())
            delivered += sum(r.status == store.DELIVERED for r in results)
            failed += sum(r.status == store.FAILED for r in results)
            retried += sum(r.status == store.PENDING for r in results)
        return TickReport(fanned, delivered, retried, failed)

    def send_all(self, deliveries: Sequence[store.Delivery]) -> list[store.AttemptResult]:
        """Send each delivery once, concurrently, and say what follows for each."""
        pool = self._ensure_pool()
        answers = list(pool.map(self.send, deliveries))
        now = clock.utcnow()
        return [self.result(d, a, now) for d, a in zip(deliveries, answers, strict=True)]

    # -- one attempt -----------------------------------------------------------------

    def send(self, delivery: store.Delivery) -> Answer:
        """POST the delivery's body, signed for this attempt; never raises."""
        body = delivery.payload.encode("utf-8")
        sent_headers = webhooks.headers(delivery.secret, delivery.message_id, body,
                                        clock.utcnow())
        started = time.perf_counter()
        try:
            with self._ensure_client().stream("POST", delivery.url, content=body,
                                              headers=sent_headers) as resp:
                text = _read_some(resp)
                code: int | None = resp.status_code
        except httpx.TimeoutException:
            code, text = None, f"timeout after {self.settings.webhook_timeout:g}s"
        except httpx.HTTPError as exc:
            code, text = None, f"{type(exc).__name__}: {str(exc)[:200]}"
        return Answer(code, text, int((time.perf_counter() - started) * 1000))

    def result(self, delivery: store.Delivery, answer: Answer,
               now: datetime) -> store.AttemptResult:
        """What an answer means: delivered (2xx), endpoint disabled (410), retried on the
        schedule, or failed once the schedule is used up (a test is never retried)."""
        attempt = delivery.attempts + 1
        code = answer.code

        def outcome(status: str, next_at: datetime | None = None,
                    disable: str | None = None) -> store.AttemptResult:
            return store.AttemptResult(delivery.id, attempt, code, answer.text,
                                       answer.duration_ms, status, next_at, disable)

        ids = f"delivery={delivery.id} endpoint={delivery.endpoint_id} code={code}"
        if code is not None and 200 <= code < 300:
            log.info("webhook.delivered %s attempt=%s", ids, attempt)
            return outcome(store.DELIVERED)
        if code == 410:
            log.warning("webhook.endpoint_disabled %s", ids)
            return outcome(store.FAILED, disable="410 Gone from the receiver")
        next_at = None if delivery.kind == webhooks.TEST_KIND else retry.webhook_retry_at(
            self.schedule, attempt, now)
        if next_at is None:
            log.warning("webhook.failed %s attempts=%s", ids, attempt)
            return outcome(store.FAILED)
        log.info("webhook.retry %s attempt=%s", ids, attempt)
        return outcome(store.PENDING, next_at)

    # -- resources -------------------------------------------------------------------

    def _ensure_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                n = self.settings.webhook_concurrency
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.settings.webhook_timeout),
                    follow_redirects=False, trust_env=False,
                    limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
            return self._client

    def _ensure_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.settings.webhook_concurrency, thread_name_prefix="mc-webhook")
            return self._pool

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()


def _read_some(resp: httpx.Response) -> str:
    """The start of the receiver's answer (never the whole of a huge one)."""
    got = b""
    for chunk in resp.iter_bytes():
        got += chunk
        if len(got) >= MAX_RESPONSE:
            break
    return got[:MAX_RESPONSE].decode("utf-8", errors="replace").strip()[:500]


def send_test(settings: Settings, db: Database, endpoint_id: int) -> store.Delivery:
    """Send a ``test`` notification to one endpoint now (one attempt, recorded)."""
    endpoint = store.get_endpoint(db, endpoint_id)
    now = clock.utcnow()
    delivery = store.add_delivery(db, webhooks.test_delivery(endpoint, now), now)
    outbox = Outbox(settings, db)
    try:
        answer = outbox.send(delivery)
        store.record_attempts(db, [outbox.result(delivery, answer, clock.utcnow())],
                              clock.utcnow())
    finally:
        outbox.close()
    log.info("webhook.tested endpoint=%s code=%s", endpoint_id, answer.code)
    return store.get_delivery(db, delivery.id)
