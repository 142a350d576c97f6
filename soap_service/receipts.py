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
  the SMSC is answered with a system error and sends it again later.
* by HTTP (``POST /callbacks/sms/{connector}``): recorded in the request, before the
  provider gets its 200, so a failed write makes the provider retry.

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


class ReceiptQueueFull(ServerError):
    """The recorder's queue is full: the receipt was not taken (the SMSC will resend)."""


def record_receipts(db: Database, receipts: Sequence[Receipt]) -> ReceiptReport:
    """Apply receipts in one transaction; unknown ones are logged and ignored."""
    report, unknown = store.record_receipts(db, receipts, clock.utcnow())
    for receipt in unknown[:20]:  # a flood of strangers must not flood the log
        log.info("receipt.unknown connector=%s provider_id=%s state=%s", receipt.connector,
                 receipt.provider_id[:64], receipt.state.value)
    if report.delivered or report.failed:
        log.info("receipt.recorded delivered=%s failed=%s unknown=%s", report.delivered,
                 report.failed, report.unknown)
    return report


class ReceiptRecorder:
    """A bounded queue and one daemon thread writing receipts in batches.

    :meth:`submit` is the :data:`~soap_service.channels.base.ReceiptSink` of the worker's
    connectors: it never blocks, and raises :class:`ReceiptQueueFull` when the queue is
    full.  :meth:`close` writes what is queued and stops the thread.
    """

    def __init__(self, db: Database, maxsize: int = 10_000) -> None:
        self.db = db
        self._queue: queue.Queue[Receipt | None] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0  # receipts handed to record_receipts (tests, logs)

    def submit(self, receipt: Receipt) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(receipt)
        except queue.Full:
            log.warning("receipt.queue_full connector=%s", receipt.connector)
            raise ReceiptQueueFull("receipt queue full") from None

    def flush(self) -> None:
        """Block until every submitted receipt has been written (tests, shutdown)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
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

    def _next_batch(self) -> tuple[list[Receipt], bool]:
        """Block for one receipt, then take what is already queued (up to BATCH); stop?"""
        batch: list[Receipt] = []
        item = self._queue.get()
        while True:
            if item is None:
                return batch, True
            batch.append(item)
            if len(batch) >= BATCH:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _write(self, batch: list[Receipt]) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                record_receipts(self.db, batch)
                self.written += len(batch)
                return
            except ServerError:
                if attempt + 1 == WRITE_ATTEMPTS:
                    log.warning("receipt.dropped count=%s (database unavailable)", len(batch))
                    return
                time.sleep(2 ** attempt)
            except Exception:  # lost receipts must never kill the recorder
                log.exception("receipt.record_failed count=%s", len(batch))
                return

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            try:
                if batch:
                    self._write(batch)
            finally:
                for _ in range(len(batch) + (1 if stop else 0)):
                    self._queue.task_done()
