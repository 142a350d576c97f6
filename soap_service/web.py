"""The WSGI application: SOAP router, WSDLs, health, metrics (and tracking routes).

Routes live in :data:`ROUTES`; another module adds one with a single line, e.g.
``Route("GET", "/r/o/", tracking_web.open_pixel, prefix=True)``.  A handler takes the
:class:`WebApp` (settings, database, metrics, SOAP services) and a :class:`Request` and
returns a :class:`Response`.

The SOAP endpoint reads the body with limits (Content-Length checked before reading,
chunked bodies read up to the limit + 1 byte, never truncated; an oversized body is
drained up to :data:`DRAIN_CAP` and answered with ``Connection: close`` so the caller sees
the fault), parses it once with the hardened parser, normalises the dialect and
dispatches.  Every fault is answered with HTTP 500, as SOAP 1.1 and the suite do, and
logged as one ``soap.fault`` line (service, method, code); never a body or a token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from soap_service import tracking_web
from soap_service.config import Settings, load_settings
from soap_service.errors import ClientError
from soap_service.http.api import create_api
from soap_service.http.ingest_api import IngestApp
from soap_service.soap import envelope, faults, router, wsdl
from soap_service.soap.metrics import Metrics
from soap_service.soap.response import CONTENT_TYPE, fault_envelope
from soap_service.store import Database, connect
from soap_service.xmlsafe import BodyTooLarge, parse_document

log = logging.getLogger("soap_service.web")

DRAIN_CAP = 64 * 1024 * 1024  # bytes of an oversized body read and discarded before answering
_READ_CHUNK = 64 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    environ: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.environ.get("REQUEST_METHOD", "GET")).upper()

    @property
    def path(self) -> str:
        return str(self.environ.get("PATH_INFO", "") or "/")

    @property
    def query(self) -> dict[str, str]:
        parsed = parse_qs(str(self.environ.get("QUERY_STRING", "")), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def header(self, name: str) -> str:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return str(self.environ.get(key, "") or "")
        return str(self.environ.get("HTTP_" + key, "") or "")

    @property
    def remote_addr(self) -> str:
        return str(self.environ.get("REMOTE_ADDR", "") or "")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


Handler = Callable[["WebApp", Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    prefix: bool = False

    def matches(self, request: Request) -> bool:
        if self.prefix:
            return request.path.startswith(self.path)
        return request.path == self.path


# ---------------------------------------------------------------- request bodies


def _drain(stream: Any, budget: int) -> None:
    while budget > 0:
        chunk = stream.read(min(_READ_CHUNK, budget))
        if not chunk:
            return
        budget -= len(chunk)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole body, or raise :class:`BodyTooLarge` after draining up to the cap."""
    stream = environ["wsgi.input"]
    too_large = BodyTooLarge(
        "Request body too large.", f"The request body exceeds the limit of {limit} bytes."
    )
    declared = str(environ.get("CONTENT_LENGTH", "") or "").strip()
    if declared:
        try:
            length = int(declared)
        except ValueError as exc:
            raise ClientError("Invalid Content-Length header.") from exc
        if length > limit:
            _drain(stream, min(length, DRAIN_CAP))
            raise too_large
        return stream.read(length) if length > 0 else b""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if not chunked and not environ.get("wsgi.input_terminated"):
        return b""  # no length, not chunked: a server that cannot tell us where it ends
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            _drain(stream, DRAIN_CAP - total)
            raise too_large
        parts.append(chunk)


# ---------------------------------------------------------------- SOAP


def _http_facts(request: Request) -> envelope.HttpFacts:
    return envelope.HttpFacts(
        soap_action=request.header("SOAPAction"),
        query_action=request.query.get("soapAction", ""),
        cookie=request.header("Cookie"),
        session_header=request.header("X-Session-Token"),
        authorization=request.header("Authorization"),
        remote_addr=request.remote_addr,
        forwarded_for=request.header("X-Forwarded-For") or None,
        idempotency_key=request.header("Idempotency-Key").strip() or None,
    )


def soap_endpoint(app: WebApp, request: Request) -> Response:
    started = time.perf_counter()
    http = _http_facts(request)
    service, method = envelope.action_from_http(http) or ("", "")
    fault: faults.Fault | None = None
    close = False
    try:
        body = read_body(request.environ, app.settings.max_body_bytes)
        root = parse_document(body, app.settings.max_xml_depth)
        soap_request = envelope.normalise(root, http)
        service, method = soap_request.service, soap_request.method
        payload = router.dispatch(soap_request, app.soap_services)
    except Exception as exc:  # every error becomes a fault, never a traceback
        close = isinstance(exc, BodyTooLarge)
        show = not isinstance(exc, ClientError) and _shows_errors(app, http)
        fault = faults.fault_for(exc, service, method, show_errors=show)
        payload = fault_envelope(fault.code, fault.faultstring, fault.detail)
    known = (service, method) in router.METHODS
    label_service, label_method = (service, method) if known else ("unknown", "unknown")
    elapsed = time.perf_counter() - started
    app.metrics.observe(label_service, label_method, fault.code if fault else None, elapsed)
    if fault is not None:  # successes are in serve's access log; faults get their own line
        log.info("soap.fault service=%s method=%s code=%s ms=%.1f",
                 label_service, label_method, fault.code, elapsed * 1000)
    return Response(500 if fault else 200, payload, CONTENT_TYPE, close=close)


def _shows_errors(app: WebApp, http: envelope.HttpFacts) -> bool:
    """Whether the caller's security zone asks for detailed Server faults (``showErrors``)."""
    try:
        zone = app.soap_services.authenticator.zone_for(http.remote_addr, http.forwarded_for)
    except Exception:  # the database may be what failed: then no details
        return False
    return bool(zone is not None and zone.show_errors)


def wsdl_endpoint(app: WebApp, request: Request) -> Response:
    schema = request.query.get("schema", "")
    if schema not in wsdl.SCHEMAS:
        return Response(404, f"unknown schema; one of {', '.join(wsdl.SCHEMAS)}\n".encode())
    return Response(200, app.wsdl(schema), CONTENT_TYPE)


# ---------------------------------------------------------------- health and metrics


def healthz(app: WebApp, request: Request) -> Response:
    ok = app.db.ping()
    body = json.dumps({"status": "ok" if ok else "database unavailable"}).encode()
    return Response(200 if ok else 503, body, "application/json")


def metrics_endpoint(app: WebApp, request: Request) -> Response:
    return Response(200, app.metrics.render().encode(), "text/plain; version=0.0.4")


ROUTES: list[Route] = [
    Route("POST", "/nl/jsp/soaprouter.jsp", soap_endpoint),
    Route("POST", "/soap", soap_endpoint),
    Route("GET", "/nl/jsp/schemawsdl.jsp", wsdl_endpoint),
    Route("GET", "/healthz", healthz),
    Route("GET", "/metrics", metrics_endpoint),
    Route("GET", "/r/", tracking_web.route, prefix=True),  # open pixel, click redirect
]


# ---------------------------------------------------------------- the application


class WebApp:
    """The WSGI callable. Build one per process with :func:`create_app`."""

    def __init__(self, settings: Settings, db: Database, routes: Iterable[Route] = ()) -> None:
        self.settings = settings
        self.db = db
        self.routes = list(routes) or list(ROUTES)
        self.metrics = Metrics(settings.metrics_dir or None)
        self.soap_services = router.Services(settings, db)
        self.rest = create_api(settings, db, self.soap_services.authenticator)
        self.api = IngestApp(self.rest.extensions["msgcenter"], self.rest)
        wsdl.silence_spyne()
        self._wsdl = {s: wsdl.wsdl_bytes(s, settings.public_url) for s in wsdl.SCHEMAS}

    def wsdl(self, schema: str) -> bytes:
        return self._wsdl[schema]

    def add_route(self, route: Route) -> None:
        self.routes.append(route)

    def handle(self, request: Request) -> Response:
        paths = [r for r in self.routes if r.matches(request)]
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
        if is_api_path(str(environ.get("PATH_INFO", "") or "/")):
            return self._call_api(environ, start_response)
        response = self.handle(Request(environ))
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        if response.close and not str(environ.get("SERVER_SOFTWARE", "")).startswith("WSGIServer"):
            headers.append(("Connection", "close"))  # wsgiref refuses hop-by-hop headers
        status = f"{response.status} {_REASONS.get(response.status, 'Unknown')}"
        start_response(status, headers)
        if request_is_head(environ):
            return [b""]
        return [response.body]


    def _call_api(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The JSON API (Flask), counted in /metrics by family and status."""
        family = "/api/v1" if str(environ.get("PATH_INFO", "")).startswith("/api/") else (
            "/{org}/campaign")

        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 500
            self.metrics.observe_http(family, code)
            return start_response(status, headers, exc_info)

        return self.api(environ, counted)


def is_api_path(path: str) -> bool:
    """``/api/...`` and the suite's ``/{ORGANIZATION}/campaign/...`` go to the JSON API."""
    if path.startswith("/api/"):
        return True
    parts = path.split("/", 3)
    return len(parts) > 3 and parts[2] == "campaign" and bool(parts[1])


def request_is_head(environ: dict[str, Any]) -> bool:
    return str(environ.get("REQUEST_METHOD", "")).upper() == "HEAD"


def create_app(settings: Settings | None = None, db: Database | None = None) -> WebApp:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    return WebApp(settings, db or connect(settings))
