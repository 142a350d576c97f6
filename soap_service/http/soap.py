"""The SOAP routes: ``POST /nl/jsp/soaprouter.jsp`` (and ``/soap``), and the WSDLs.

The endpoint reads the body with limits (``body.read_body``: Content-Length checked
before reading, chunked bodies read up to the limit + 1 byte, never truncated; an
oversized body is drained and answered with ``Connection: close`` so the caller sees the
fault), parses it once with the hardened parser, normalises the dialect and dispatches.
Every fault is answered with HTTP 500, as SOAP 1.1 and the suite do, and logged as one
``soap.fault`` line (service, method, code); never a body or a token.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from soap_service.errors import ClientError
from soap_service.http.body import read_body
from soap_service.http.wsgi import Request, Response
from soap_service.soap import envelope, faults, router, wsdl
from soap_service.soap.response import CONTENT_TYPE, fault_envelope
from soap_service.xmlsafe import BodyTooLarge, parse_document

if TYPE_CHECKING:
    from soap_service.http.app import WebApp

log = logging.getLogger("soap_service.web")


def _http_facts(request: Request) -> envelope.HttpFacts:
    environ = request.environ

    def header(key: str) -> str:  # Request.header, with the WSGI key spelt out
        return str(environ.get(key, "") or "")

    return envelope.HttpFacts(
        soap_action=header("HTTP_SOAPACTION"),
        query_action=request.query.get("soapAction", "") if environ.get("QUERY_STRING")
        else "",
        cookie=header("HTTP_COOKIE"),
        session_header=header("HTTP_X_SESSION_TOKEN"),
        authorization=header("HTTP_AUTHORIZATION"),
        remote_addr=request.remote_addr,
        forwarded_for=header("HTTP_X_FORWARDED_FOR") or None,
        idempotency_key=header("HTTP_IDEMPOTENCY_KEY").strip() or None,
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
