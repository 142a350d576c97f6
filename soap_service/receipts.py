"""Delivery receipts: what providers report after the send, applied to the delivery log.

Receipts arrive two ways:

* on an SMPP link (``deliver_sm``), inside the worker's channel loop: the connector hands
  each one to the sink it was built with, :meth:`ReceiptRecorder.submit`, which only
  queues it -- the loop never waits for the database.  A thread writes the queue in
  batches (one transaction each, :func:`record_receipts`); a graceful stop writes what
  is queued before the worker exits.  The connector answers ``deliver_sm_resp`` once the
  receipt is queued, so a worker killed (SIGKILL, power loss) before the batch is
  committed loses the receipts queued since the last write: their messages stay
  ``processed`` without a delivered / failed mark.  A full queue refuses the receipt, and
  the SMSC is answered with a system error and sends it again later.  A receipt can
  arrive before the round that sent its message has recorded it (an SMSC may answer
  ``submit_sm`` and send ``DELIVRD`` in the same breath): one that matches no delivery
  is kept and tried again every second for ``grace`` seconds (the lease, at least a
  minute), and only then logged as unknown.
* by HTTP (``POST /callbacks/sms/{connector}``): recorded in the request, before the
  provider gets its 200, so a failed write makes the provider retry; receipts of a
  callback that match no delivery yet are handed to the web process's recorder to be
  tried again the same way.

:func:`record_receipts` applies a batch (``store.receipts``): ``delivered`` marks the
delivery delivered with a ``delivered`` history entry; ``failed`` marks it failed and
moves a ``processed`` event to ``deliveryFailed``; a receipt naming no known delivery is
logged in one short line and ignored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from soap_service import clock
from soap_service.errors import ServerError
from soap_service.models import Receipt, ReceiptReport
from soap_service.store import Database
from soap_service.store import receipts as store

log = logging.getLogger(__name__)

BATCH = 500  # receipts written per transaction at most
WRITE_ATTEMPTS = 4  # about 7 s of database trouble before a batch is given up
RETRY_EVERY = 1.0  # seconds between tries of receipts that matched no delivery yet
LINGER = 0.2  # seconds a batch waits for more receipts after its first
_RETRY_NOW = object()  # queued by flush(): try the held receipts at once


class ReceiptQueueFull(ServerError):
    """The recorder's queue is full: the receipt was not taken (the SMSC will resend)."""


def record_receipts(db: Database, receipts: Sequence[Receipt]
                    ) -> tuple[ReceiptReport, list[Receipt]]:
    """Apply receipts in one transaction: what happened, and the receipts that matched
    no delivery (the caller keeps them for another try, or :func:`log_unknown`)."""
    report, unknown = store.record_receipts(db, receipts, clock.utcnow())
    if report.delivered or report.failed:
        log.info("receipt.recorded delivered=%s failed=%s", report.delivered, report.failed)
    return report, unknown


def log_unknown(receipts: Sequence[Receipt]) -> None:
    """One short line per receipt given up (at most 20 a time: a flood of strangers must
    not flood the log)."""
    for receipt in receipts[:20]:
        log.info("receipt.unknown connector=%s provider_id=%s state=%s", receipt.connector,
                 receipt.provider_id[:64], receipt.state.value)
    if len(receipts) > 20:
        log.info("receipt.unknown_more count=%s", len(receipts) - 20)


class ReceiptRecorder:
    """A bounded queue and one daemon thread writing receipts in batches.

    :meth:`submit` is the :data:`~soap_service.channels.base.ReceiptSink` of the worker's
    connectors: it never blocks, and raises :class:`ReceiptQueueFull` when the queue is
    full.  Receipts that match no delivery yet are held and tried again every
    :data:`RETRY_EVERY` seconds for ``grace`` seconds.  :meth:`close` writes what is
    queued (and tries the held ones once more) and stops the thread.
    """

    def __init__(self, db: Database, maxsize: int = 10_000, grace: float = 120.0) -> None:
        self.db = db
        self.grace = grace
        self._queue: queue.Queue[Receipt | object | None] = queue.Queue(maxsize=maxsize)
        self._held: list[tuple[float, Receipt]] = []  # (give up at, receipt)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0  # receipts applied to a delivery (tests, logs)

    def submit(self, receipt: Receipt) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(receipt)
        except queue.Full:
            log.warning("receipt.queue_full connector=%s", receipt.connector)
            raise ReceiptQueueFull("receipt queue full") from None

    def hold(self, receipts: Sequence[Receipt]) -> None:
        """Receipts that matched no delivery yet (an HTTP callback's): try them again."""
        for receipt in receipts:
            try:
                self.submit(receipt)
            except ReceiptQueueFull:
                log_unknown([receipt])

    def flush(self) -> None:
        """Block until every submitted receipt has been written, and the held ones tried
        once more (tests, shutdown)."""
        self._queue.join()
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_RETRY_NOW)
            self._queue.join()

    @property
    def held(self) -> int:
        return len(self._held)

    def close(self) -> None:
        """Write what is queued, try the held receipts once more, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mc-receipts",
                                                daemon=True)
                self._thread.start()

    def _next_batch(self) -> tuple[list[Receipt], int, bool]:
        """Wait for a receipt (at most RETRY_EVERY while some are held), then for what
        arrives within LINGER (up to BATCH): the batch, how many queue items it took, and
        whether to stop.  Lingering makes a stream of receipts a few transactions a
        second instead of one each, which on SQLite would take the write lock from the
        worker's rounds."""
        batch: list[Receipt] = []
        taken = 0
        try:
            item = self._queue.get(timeout=RETRY_EVERY if self._held else None)
        except queue.Empty:
            return batch, taken, False
        until = time.monotonic() + LINGER
        while True:
            taken += 1
            if item is None:
                return batch, taken, True
            if item is _RETRY_NOW:  # flush(): no lingering
                until = 0.0
            elif isinstance(item, Receipt):
                batch.append(item)
            if len(batch) >= BATCH:
                return batch, taken, False
            try:
                item = self._queue.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return batch, taken, False

    def _write(self, batch: list[Receipt], final: bool) -> None:
        held, self._held = self._held, []
        todo = [r for _, r in held] + batch
        if not todo:
            return
        for attempt in range(WRITE_ATTEMPTS):
            try:
                report, unknown = record_receipts(self.db, todo)
                break
            except ServerError:
                if attempt + 1 == WRITE_ATTEMPTS:
                    log.warning("receipt.dropped count=%s (database unavailable)", len(todo))
                    return
                time.sleep(2 ** attempt)
            except Exception:  # lost receipts must never kill the recorder
                log.exception("receipt.record_failed count=%s", len(todo))
                return
        self.written += report.delivered + report.failed
        now = time.monotonic()
        give_up_at = {id(r): at for at, r in held}
        keep: list[tuple[float, Receipt]] = []
        lost: list[tuple[float, Receipt]] = []
        for receipt in unknown:
            at = give_up_at.get(id(receipt), now + self.grace)
            (lost if final or at <= now else keep).append((at, receipt))
        self._held = keep
        log_unknown([r for _, r in lost])

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, taken, stop = self._next_batch()
            try:
                self._write(batch, final=stop)
            finally:
                for _ in range(taken):
                    self._queue.task_done()
