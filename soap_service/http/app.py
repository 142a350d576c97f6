"""The service's one WSGI application: every route, and what serves it.

``msgcenter serve`` answers everything from :class:`WebApp`.  It looks at the path first:

* ``/api/...`` and the suite's ``/{ORGANIZATION}/campaign/...`` go to the JSON API --
  its two ingest routes straight to ``ingest_api.IngestApp`` (plain WSGI: a hot path),
  the rest through it to the Flask application of ``api.py``;
* ``/console/...`` goes to the web console (``console/app.py``, Flask);
* everything else is matched against :data:`ROUTES` (``wsgi.Route``): the SOAP router
  and WSDLs (``soap.py``), the tracking pixel and redirect (``tracking.py``), the
  unsubscribe link of profile-based messages (``unsubscribe.py``), SMS
  providers' delivery callbacks (``sms_callbacks.py``), bounce webhooks
  (``bounce_callbacks.py``), health and metrics --
  hand-written handlers that take the application and a ``wsgi.Request`` and
  return a ``wsgi.Response``.

Why the split, with measurements: ``docs/http.md``.  Handlers import ``wsgi.py``, never
this module, so nothing imports in a circle.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from soap_service import thresholds
from soap_service.bounces.providers import CallbackReader, callback_reader
from soap_service.cache import TtlCache
from soap_service.config import Settings, load_settings
from soap_service.http.api import create_api
from soap_service.http.body import read_body
from soap_service.http.bounce_callbacks import PREFIX as BOUNCE_CALLBACKS
from soap_service.http.bounce_callbacks import bounce_callback_endpoint
from soap_service.http.console.app import create_console
from soap_service.http.ingest_api import EVENTS_PATH as INGEST_PATH
from soap_service.http.ingest_api import IngestApp
from soap_service.http.sms_callbacks import PREFIX as SMS_CALLBACKS
from soap_service.http.sms_callbacks import callback_endpoint
from soap_service.http.soap import soap_endpoint, wsdl_endpoint
from soap_service.http.tracking import Recorder, TrackingApp
from soap_service.http.unsubscribe import PREFIX as UNSUBSCRIBE
from soap_service.http.unsubscribe import unsubscribe_endpoint
from soap_service.http.wsgi import Request, Response, Route, answer
from soap_service.metrics import CONTENT_TYPE as METRICS_TYPE
from soap_service.metrics import HttpMetrics
from soap_service.receipts import ReceiptRecorder
from soap_service.soap import router, wsdl
from soap_service.store import Database, connect

__all__ = ["ROUTES", "Request", "Response", "Route", "WebApp", "create_app", "is_api_path",
           "read_body"]

log = logging.getLogger("soap_service.web")
HEALTH_CACHE_SECONDS = 5.0


# ---------------------------------------------------------------- health and metrics


def healthz(app: WebApp, request: Request) -> Response:
    """``ok``; ``warning`` (still 200) while a monitoring threshold is reached, with the
    metrics that reach one; ``database unavailable`` (503)."""
    ok = app.db.ping()
    if not ok:
        body = json.dumps({"status": "database unavailable"}).encode()
        return Response(503, body, "application/json")
    warnings = app.threshold_warnings()
    answer: dict[str, Any] = {"status": "warning" if warnings else "ok"}
    if warnings:
        answer["warnings"] = warnings
    return Response(200, json.dumps(answer).encode(), "application/json")


def metrics_endpoint(app: WebApp, request: Request) -> Response:
    return Response(200, app.metrics.render(), METRICS_TYPE)


def tracking_endpoint(app: WebApp, request: Request) -> Response:
    status, content_type, headers, body = app.tracker.answer(request.environ)
    return Response(status, body, content_type, list(headers))


ROUTES: list[Route] = [
    Route("POST", "/nl/jsp/soaprouter.jsp", soap_endpoint),
    Route("POST", "/soap", soap_endpoint),
    Route("GET", "/nl/jsp/schemawsdl.jsp", wsdl_endpoint),
    Route("GET", "/healthz", healthz),
    Route("GET", "/metrics", metrics_endpoint),
    Route("GET", "/r/", tracking_endpoint, prefix=True),  # open pixel, click redirect
    Route("POST", SMS_CALLBACKS, callback_endpoint, prefix=True),  # delivery receipts
    Route("POST", BOUNCE_CALLBACKS, bounce_callback_endpoint, prefix=True),  # SES, Postmark
    Route("GET", UNSUBSCRIBE, unsubscribe_endpoint, prefix=True),  # confirmation form
    Route("POST", UNSUBSCRIBE, unsubscribe_endpoint, prefix=True),  # RFC 8058 one-click
]


# ---------------------------------------------------------------- the application


class WebApp:
    """The WSGI callable. Build one per process with :func:`create_app`."""

    def __init__(self, settings: Settings, db: Database, routes: Iterable[Route] = ()) -> None:
        self.settings = settings
        self.db = db
        self.routes = list(routes) or list(ROUTES)
        self.metrics = HttpMetrics()
        self.soap_services = router.Services(settings, db)
        self.rest = create_api(settings, db, self.soap_services.authenticator)
        self.api = IngestApp(self.rest.extensions["msgcenter"], self.rest)
        self.console = create_console(settings, db, self.soap_services.authenticator)
        wsdl.silence_spyne()
        self._wsdl = {s: wsdl.wsdl_bytes(s, settings.public_url) for s in wsdl.SCHEMAS}
        self._tracker: TrackingApp | None = None
        self._tracker_lock = threading.Lock()
        self._receipts: ReceiptRecorder | None = None
        self._bounce_reader: CallbackReader | None = None
        self._health_cache: TtlCache[Any] = TtlCache(HEALTH_CACHE_SECONDS)

    def threshold_warnings(self) -> list[dict[str, Any]]:
        """The monitoring metrics past an orange or red level (``thresholds.py``), judged
        at most every :data:`HEALTH_CACHE_SECONDS` (load balancers poll /healthz often)."""
        def judge() -> list[dict[str, Any]]:
            try:
                return [j.as_dict() for j in thresholds.warnings(
                    thresholds.judge(self.db, self.settings))]
            except Exception:  # a report that fails must not fail the health check
                log.exception("web.healthz_thresholds_failed")
                return []
        found: list[dict[str, Any]] = self._health_cache.get_or_load("warnings", judge)
        return found

    def wsdl(self, schema: str) -> bytes:
        return self._wsdl[schema]

    @property
    def tracker(self) -> TrackingApp:
        """The tracking routes and their recorder thread, made on the first tracking hit
        (one per process: X-Forwarded-For resolved by the zones, off the request path)."""
        if self._tracker is None:
            with self._tracker_lock:
                if self._tracker is None:
                    authenticator = self.soap_services.authenticator
                    self._tracker = TrackingApp(self.db, self.settings, Recorder(
                        self.db, client_ip=authenticator.client_ip))
        return self._tracker

    def close_tracking(self, timeout: float | None = None) -> bool:
        """Write the hits still queued and stop the recorder (on exit); True when done."""
        tracker = self._tracker
        return True if tracker is None else tracker.recorder.close(timeout=timeout)

    @property
    def receipts(self) -> ReceiptRecorder:
        """Where SMS callbacks' receipts that match no delivery yet are held and tried
        again (made on first use, one per process)."""
        if self._receipts is None:
            with self._tracker_lock:
                if self._receipts is None:
                    self._receipts = ReceiptRecorder(
                        self.db, grace=max(60.0, self.settings.lease_seconds))
        return self._receipts

    @property
    def bounce_reader(self) -> CallbackReader:
        """The reader of bounce webhooks (one per process: the SNS certificate cache)."""
        if self._bounce_reader is None:
            with self._tracker_lock:
                if self._bounce_reader is None:
                    self._bounce_reader = callback_reader(self.settings)
        return self._bounce_reader

    def close_receipts(self) -> None:
        """Try the held receipts once more and stop their thread (on exit)."""
        if self._receipts is not None:
            self._receipts.close()

    def add_route(self, route: Route) -> None:
        self.routes.append(route)

    def handle(self, request: Request) -> Response:
        path = request.path
        paths = [r for r in self.routes if r.matches(path)]
        if not paths:
            return Response(404, b"not found\n")
        route = next((r for r in paths if r.method == request.method), None)
        if route is None:
            if request.method == "HEAD":
                route = next((r for r in paths if r.method == "GET"), None)
            if route is None:
                return Response(405, b"method not allowed\n")
        try:
            response = route.handler(self, request)
        except Exception:
            log.exception("web.error path=%s", route.path)
            response = Response(500, b"internal error\n")
        self.metrics.observe_http(route.path, response.status)
        return response

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", "") or "/")
        if is_api_path(path):
            return self._call_api(environ, start_response)
        if path == "/console" or path.startswith("/console/"):
            return self._call_api(environ, start_response, "/console", self.console)
        return answer(self.handle(Request(environ)), environ, start_response)

    def _call_api(self, environ: dict[str, Any], start_response: Callable[..., Any],
                  family: str = "", app: Any = None) -> Any:
        """The JSON API or the console (Flask), counted in /metrics by family and status."""
        started = time.perf_counter()
        path = str(environ.get("PATH_INFO", ""))
        if not family:
            family = "/api/v1" if path.startswith("/api/") else "/{org}/campaign"
        ingest = path == INGEST_PATH and environ.get("REQUEST_METHOD") == "POST"

        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 500
            self.metrics.observe_http(family, code)
            if ingest and 200 <= code < 300:  # answered once the events are committed
                self.metrics.observe_ingest("rest", "events", time.perf_counter() - started)
            return start_response(status, headers, exc_info)

        return (app or self.api)(environ, counted)


def is_api_path(path: str) -> bool:
    """``/api/...`` and the suite's ``/{ORGANIZATION}/campaign/...`` go to the JSON API."""
    if path.startswith("/api/"):
        return True
    parts = path.split("/", 3)
    return len(parts) > 3 and parts[2] == "campaign" and bool(parts[1])


def create_app(settings: Settings | None = None, db: Database | None = None) -> WebApp:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    return WebApp(settings, db or connect(settings))
