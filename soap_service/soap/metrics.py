"""Request counters, exposed as Prometheus text on ``GET /metrics``.

Counters are kept in process.  Under ``msgcenter serve`` (several gunicorn workers) each
worker also writes a snapshot of its counters to ``<MC_METRICS_DIR>/<pid>-<random>.json``
(at most once a second, from a daemon thread), and ``/metrics`` answers the sum of every
snapshot -- its own written fresh first -- so a scrape counts the whole server whichever
worker answers it.  Snapshots only grow and those of exited workers are kept, so the
sums never go down.  Without a directory (another WSGI server), the counts are the
answering process's own.  Labels are bounded: service and method come from the dispatch
table or are reported as ``unknown``, so a caller cannot create series at will.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0

_PREFIX = "mc_soap"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters of SOAP requests, faults and time spent."""

    def __init__(self, shared_dir: str | None = None) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[tuple[str, str, str]] = Counter()
        self.seconds: dict[tuple[str, str], float] = {}
        self.http: Counter[tuple[str, int]] = Counter()
        self._dir = Path(shared_dir) if shared_dir else None
        self._flusher_pid = 0  # the process whose flush thread runs (set after a fork)
        self._path_pid = 0  # the process that owns ``_path``
        self._path = Path()
        self._flush_lock = threading.Lock()

    def observe(self, service: str, method: str, fault_code: str | None, seconds: float) -> None:
        key = (service, method)
        with self._lock:
            self.requests[key] += 1
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds
            if fault_code:
                self.faults[(service, method, fault_code)] += 1
        self._start_flusher()

    def observe_http(self, route: str, status: int) -> None:
        with self._lock:
            self.http[(route, status)] += 1
        self._start_flusher()

    # -- sharing between worker processes
    def snapshot(self) -> dict[str, list[list[Any]]]:
        with self._lock:
            return {
                "requests": [[*k, n] for k, n in self.requests.items()],
                "faults": [[*k, n] for k, n in self.faults.items()],
                "seconds": [[*k, v] for k, v in self.seconds.items()],
                "http": [[*k, n] for k, n in self.http.items()],
            }

    def flush(self) -> None:
        """Write this process's snapshot (atomically) to the shared directory."""
        if self._dir is None:
            return
        with self._flush_lock:  # the flush thread and a scrape share one file
            if self._path_pid != os.getpid():  # one file per process, never a reused pid's
                self._path_pid = os.getpid()
                self._path = self._dir / f"{self._path_pid}-{secrets.token_hex(4)}.json"
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.snapshot()), encoding="utf-8")
            os.replace(tmp, self._path)

    def _start_flusher(self) -> None:
        if self._dir is None or self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()  # a forked worker starts its own thread
        threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True).start()

    def _flush_forever(self) -> None:
        while self._dir is not None and self._dir.is_dir():  # removed: the server stopped
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except OSError:
                log.warning("metrics.flush_failed dir=%s", self._dir)

    def _totals(self) -> Metrics:
        """Every worker's snapshot summed (this one's written fresh), or our own counts."""
        if self._dir is None:
            return self
        total = Metrics()
        with contextlib.suppress(OSError):
            self.flush()
        for path in sorted(self._dir.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for *k, n in data.get("requests", []):
                total.requests[(k[0], k[1])] += n
            for *k, n in data.get("faults", []):
                total.faults[(k[0], k[1], k[2])] += n
            for *k, v in data.get("seconds", []):
                total.seconds[(k[0], k[1])] = total.seconds.get((k[0], k[1]), 0.0) + v
            for *k, n in data.get("http", []):
                total.http[(k[0], int(k[1]))] += n
        return total

    def render(self) -> str:
        """Prometheus text exposition format (version 0.0.4), summed over workers."""
        source = self._totals()
        with source._lock:
            requests = sorted(source.requests.items())
            faults = sorted(source.faults.items())
            seconds = sorted(source.seconds.items())
            http = sorted(source.http.items())
        lines = [
            f"# HELP {_PREFIX}_requests_total SOAP calls answered, per service and method.",
            f"# TYPE {_PREFIX}_requests_total counter",
        ]
        lines += [
            f"{_PREFIX}_requests_total{_labels(service=s, method=m)} {n}"
            for (s, m), n in requests
        ]
        lines += [
            f"# HELP {_PREFIX}_faults_total SOAP faults, per service, method and fault code.",
            f"# TYPE {_PREFIX}_faults_total counter",
        ]
        lines += [
            f"{_PREFIX}_faults_total{_labels(service=s, method=m, code=c)} {n}"
            for (s, m, c), n in faults
        ]
        lines += [
            f"# HELP {_PREFIX}_request_seconds_total Time spent answering SOAP calls.",
            f"# TYPE {_PREFIX}_request_seconds_total counter",
        ]
        lines += [
            f"{_PREFIX}_request_seconds_total{_labels(service=s, method=m)} {v:.6f}"
            for (s, m), v in seconds
        ]
        lines += [
            "# HELP mc_http_requests_total HTTP requests, per route and status.",
            "# TYPE mc_http_requests_total counter",
        ]
        lines += [
            f"mc_http_requests_total{_labels(route=r, status=str(st))} {n}"
            for (r, st), n in http
        ]
        return "\n".join(lines) + "\n"
