"""Prometheus metrics (``prometheus-client``), exposed on ``GET /metrics``.

Two families, each a small class owning its metric objects:

* :class:`HttpMetrics` -- one per web application: HTTP requests per route and status,
  SOAP calls, faults and time per service and method, and the **ingest ack** latency
  histogram (``mc_ingest_ack_seconds``: from a request's start to its answer, the
  events committed; PushEvent, PushEvents, REST events);
* :class:`WorkerMetrics` -- one per dispatcher: outcomes per channel
  (``mc_worker_messages_total{outcome="sent|deferred|failed|ignored|paused"}``), the
  **ack -> send** latency histogram (``mc_dispatch_ack_to_send_seconds``: from an
  event's receipt to its message accepted by the channel, per channel and queue) and
  the time per stage of a round (``mc_worker_round_seconds{stage=claim|prepare|send|
  record}``).

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set -- ``msgcenter serve`` sets
it to a fresh directory for its HTTP processes and its worker -- every process writes
its values to memory-mapped files there and ``/metrics`` sums them all
(``MultiProcessCollector``), whichever process answers: the worker's counters show on
the front-end's ``/metrics``.  Files of exited processes stay, so counters never go
down.  Without it (another WSGI server, tests in process), each object counts in its
own registry.  Labels are bounded: services and methods come from the dispatch table
(else ``unknown``), routes from the route table, channels and outcomes from enums.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                3600.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
INGEST_METHODS = {("nms:rtEvent", "PushEvent"), ("nms:rtEvent", "PushEvents"),
                  ("nms:batchEvent", "PushEvent"), ("nms:batchEvent", "PushEvents")}
# an outcome's status -> the worker counter's outcome label
OUTCOME_LABELS = {"processed": "sent", "pending": "deferred", "deliveryFailed": "failed",
                  "tooOld": "failed", "routingFailed": "failed", "targetingFailed": "failed",
                  "ignored": "ignored", "paused": "paused"}


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition: every process's values in multiprocess mode, else
    ``registry``'s."""
    shared = multiprocess_dir()
    if shared is None:
        return generate_latest(registry)
    every = CollectorRegistry()
    MultiProcessCollector(every, shared)
    return generate_latest(every)


class HttpMetrics:
    """What the web application counts (thread-safe: prometheus-client locks).

    The labelled children of each (service, method) and (route, status) are looked up
    once and kept (``labels()`` costs a lock and a dict lookup per call): the labels are
    bounded, so are these dicts."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.soap_requests = Counter("mc_soap_requests", "SOAP calls answered, per service "
                                     "and method.", ["service", "method"], registry=r)
        self.soap_faults = Counter("mc_soap_faults", "SOAP faults, per service, method and "
                                   "fault code.", ["service", "method", "code"], registry=r)
        self.soap_seconds = Counter("mc_soap_request_seconds", "Time spent answering SOAP "
                                    "calls.", ["service", "method"], registry=r)
        self.http = Counter("mc_http_requests", "HTTP requests, per route and status.",
                            ["route", "status"], registry=r)
        self.ingest_ack = Histogram(
            "mc_ingest_ack_seconds", "Time to answer an ingest call whose events were "
            "stored (committed before the answer), per API and method.", ["api", "method"],
            buckets=ACK_BUCKETS, registry=r)
        self._soap: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._http: dict[tuple[str, int], Any] = {}

    def observe(self, service: str, method: str, fault_code: str | None,
                seconds: float) -> None:
        """One SOAP call answered (``fault_code`` None: a success)."""
        bound = self._soap.get((service, method))
        if bound is None:
            bound = self._soap[(service, method)] = (
                self.soap_requests.labels(service, method),
                self.soap_seconds.labels(service, method),
                self.ingest_ack.labels("soap", method)
                if (service, method) in INGEST_METHODS else None)
        requests, spent, ack = bound
        requests.inc()
        spent.inc(seconds)
        if fault_code:
            self.soap_faults.labels(service, method, fault_code).inc()
        elif ack is not None:
            ack.observe(seconds)

    def observe_http(self, route: str, status: int) -> None:
        counter = self._http.get((route, status))
        if counter is None:
            counter = self._http[(route, status)] = self.http.labels(route, str(status))
        counter.inc()

    def observe_ingest(self, api: str, method: str, seconds: float) -> None:
        """An ingest call of another API (REST) answered with its events stored."""
        self.ingest_ack.labels(api, method).observe(seconds)

    def render(self) -> bytes:
        return render(self.registry)


class WorkerMetrics:
    """What a dispatcher counts: outcomes, ack -> send latency, time per round stage."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter("mc_worker_messages", "Outcomes recorded by the worker, per "
                                "channel and outcome (sent, deferred, failed, ignored, "
                                "paused).", ["channel", "outcome"], registry=r)
        self.ack_to_send = Histogram(
            "mc_dispatch_ack_to_send_seconds", "From an event's receipt (stored and "
            "acknowledged) to its message accepted by the channel, per channel and queue.",
            ["channel", "queue"], buckets=SEND_BUCKETS, registry=r)
        self.round_seconds = Histogram(
            "mc_worker_round_seconds", "Time per stage of a worker round: claim, prepare "
            "(route, render, build), send (until the last message's answer), record.",
            ["stage"], buckets=STAGE_BUCKETS, registry=r)

    def outcome(self, channel: str, status: str) -> None:
        self.messages.labels(channel, OUTCOME_LABELS.get(status, status)).inc()

    def sent(self, channel: str, queue: str, seconds: float) -> None:
        self.ack_to_send.labels(channel, queue).observe(max(0.0, seconds))

    def stage(self, stage: str, seconds: float) -> None:
        self.round_seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return render(self.registry)
