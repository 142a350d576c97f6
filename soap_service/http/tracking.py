"""The tracking endpoints: ``GET /r/o/<token>`` (open pixel) and ``GET /r/c/<token>`` (click).

A request is answered at once — the pixel, or a 302 to the link's target — and the hit is
handed to a :class:`Recorder` thread that writes it to the tracking log, so a slow or
unavailable database never delays a reader's click.  A token that does not verify
records nothing and gets a plain 404 (no redirect: the target of a forged click cannot be
trusted).  ``app.py`` routes ``/r/`` to the application's :class:`TrackingApp` (one per
process, with its recorder); a :class:`TrackingApp` is also a WSGI application of its own.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soap_service import clock, track
from soap_service.config import Settings
from soap_service.http.wsgi import StartResponse, status_line
from soap_service.models import TrackingHit
from soap_service.store import Database
from soap_service.store import tracking as store

log = logging.getLogger(__name__)

PREFIX = "/r/"
BATCH = 200  # hits written per transaction when they arrive faster than one at a time
DEFAULT_SECRET = Settings().secret
# the smallest transparent GIF (1x1)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = [("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0"),
            ("Pragma", "no-cache")]
# control characters in a User-Agent (NUL cannot be stored by PostgreSQL: one such hit
# failed its whole batch); our HTTP front refuses them, other WSGI servers may not
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Hit:
    """One verified open or click, as seen at the edge."""

    token: track.TrackingToken
    user_agent: str
    ip: str  # REMOTE_ADDR; the recorder may resolve X-Forwarded-For from declared proxies
    at: datetime
    forwarded_for: str | None = None


def record_hits(db: Database, hits: Sequence[Hit]) -> int:
    """Write hits in one transaction (delivery id and machine flag resolved now); returns
    how many were written (a hit for an event that no longer exists is skipped)."""
    sent = store.sent_deliveries(db, [hit.token.event_id for hit in hits])
    rows: list[TrackingHit] = []
    for hit in hits:
        found = sent.get(hit.token.event_id)
        if found is None:
            log.info("tracking.unknown_event event_id=%s", hit.token.event_id)
            continue
        rows.append(TrackingHit(
            id=0, event_id=hit.token.event_id, delivery_id=found.delivery_id,
            kind=hit.token.kind, url=hit.token.url or None, user_agent=hit.user_agent,
            ip=hit.ip, machine=track.is_machine(hit.user_agent, found.sent_at, hit.at, hit.ip),
            created_at=hit.at,
        ))
    return store.insert_hits(db, rows)


def record_hit(db: Database, hit: Hit) -> bool:
    """Write one hit; False if its event no longer exists."""
    return record_hits(db, [hit]) == 1


IpResolver = Callable[[str, str | None], str]  # (REMOTE_ADDR, X-Forwarded-For) -> client IP


def list_hits(db: Database, event_id: int | None = None, kind: str | None = None,
              human_only: bool = False, limit: int = 100) -> list[TrackingHit]:
    """The tracking log, newest first (``msgcenter tracking list``)."""
    return store.list_tracking(db, event_id, limit, kind, human_only)


class Recorder:
    """A bounded queue and one daemon thread writing hits; drops (and logs) when full.

    ``client_ip`` (e.g. ``Authenticator.client_ip``, which honours X-Forwarded-For only
    from declared proxies) runs here, off the request path, because it may read the zones.
    """

    def __init__(self, db: Database, maxsize: int = 10_000,
                 client_ip: IpResolver | None = None) -> None:
        self.db = db
        self.client_ip = client_ip
        self._queue: queue.Queue[Hit | None] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, hit: Hit) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(hit)
        except queue.Full:
            log.warning("tracking.dropped event_id=%s kind=%s", hit.token.event_id, hit.token.kind)

    def flush(self) -> None:
        """Block until every submitted hit has been written (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then stop the thread (graceful stop); False if it did not
        finish within ``timeout`` seconds (what is left is lost with the process)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return self._queue.unfinished_tasks == 0
        with contextlib.suppress(queue.Full):  # full and not draining: the join says so
            self._queue.put(None, timeout=timeout)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("tracking.unflushed hits=%d", self._queue.qsize())
            return False
        self._thread = None
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mc-tracking",
                                                daemon=True)
                self._thread.start()

    def _next_batch(self) -> tuple[list[Hit], bool]:
        """Block for one hit, then take what is already queued (up to BATCH); and stop?"""
        batch: list[Hit] = []
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

    def _resolve(self, hit: Hit) -> Hit:
        if self.client_ip is None or not hit.forwarded_for:
            return hit
        return dataclasses.replace(hit, ip=self.client_ip(hit.ip, hit.forwarded_for),
                                   forwarded_for=None)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            try:
                if batch:
                    record_hits(self.db, [self._resolve(hit) for hit in batch])
            except Exception:  # lost hits must never kill the recorder
                log.exception("tracking.record_failed hits=%s event_id=%s", len(batch),
                              batch[0].token.event_id)
            finally:
                for _ in range(len(batch) + (1 if stop else 0)):
                    self._queue.task_done()


Answer = tuple[int, str, list[tuple[str, str]], bytes]  # status, content type, headers, body
NOT_FOUND: Answer = (404, "text/plain; charset=utf-8", NO_CACHE, b"not found\n")


def warn_if_default_secret(settings: Settings) -> bool:
    """Log ``tracking.default_secret`` when MC_SECRET is unset (``serve`` and ``worker``
    call it at start-up: with the default, anyone can forge opens, clicks and redirects)."""
    if settings.secret != DEFAULT_SECRET:
        return False
    log.warning("tracking.default_secret (set MC_SECRET: anyone can forge tracking links)")
    return True


class TrackingApp:
    """``/r/o/<token>`` and ``/r/c/<token>``: a WSGI app of its own, or behind ``app.py``."""

    def __init__(self, db: Database, settings: Settings, recorder: Recorder | None = None
                 ) -> None:
        self.db = db
        self.secret = settings.secret
        warn_if_default_secret(settings)
        self.recorder = recorder or Recorder(db)

    def answer(self, environ: dict[str, Any]) -> Answer:
        """Verify the token, queue the hit (GET only), and say what to answer."""
        path = str(environ.get("PATH_INFO") or "")
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        if method not in {"GET", "HEAD"} or not path.startswith(PREFIX):
            return NOT_FOUND
        code, _, token = path[len(PREFIX):].partition("/")
        kind = {"o": track.OPEN, "c": track.CLICK}.get(code)
        verified = track.verify_token(self.secret, token, kind) if kind and token else None
        if verified is None:
            log.info("tracking.bad_token path_kind=%s", code[:2])
            return NOT_FOUND
        if method == "GET":
            self.recorder.submit(Hit(
                token=verified, user_agent=_CONTROL.sub("", str(environ.get("HTTP_USER_AGENT")
                                                                 or "")),
                ip=str(environ.get("REMOTE_ADDR") or ""), at=clock.utcnow(),
                forwarded_for=str(environ.get("HTTP_X_FORWARDED_FOR") or "") or None,
            ))
        if verified.kind == track.OPEN:
            return 200, "image/gif", NO_CACHE, PIXEL
        location = track.location_header(verified.url)
        return 302, "text/plain; charset=utf-8", [("Location", location), *NO_CACHE], b""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, content_type, headers, body = self.answer(environ)
        start_response(status_line(status), [
            ("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
        return [b""] if str(environ.get("REQUEST_METHOD")).upper() == "HEAD" else [body]
