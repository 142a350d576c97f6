"""In-process request counters, exposed as Prometheus text on ``GET /metrics``.

Counters are per process: under gunicorn each worker keeps its own and a scrape sees
only the worker that answered it (not yet summed across workers; see docs/soap.md).  Labels are bounded: service and method come from the dispatch table or are
reported as ``unknown``, so a caller cannot create series at will.
"""

from __future__ import annotations

import threading
from collections import Counter

_PREFIX = "mc_soap"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters of SOAP requests, faults and time spent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[tuple[str, str, str]] = Counter()
        self.seconds: dict[tuple[str, str], float] = {}
        self.http: Counter[tuple[str, int]] = Counter()

    def observe(self, service: str, method: str, fault_code: str | None, seconds: float) -> None:
        key = (service, method)
        with self._lock:
            self.requests[key] += 1
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds
            if fault_code:
                self.faults[(service, method, fault_code)] += 1

    def observe_http(self, route: str, status: int) -> None:
        with self._lock:
            self.http[(route, status)] += 1

    def render(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            requests = sorted(self.requests.items())
            faults = sorted(self.faults.items())
            seconds = sorted(self.seconds.items())
            http = sorted(self.http.items())
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
