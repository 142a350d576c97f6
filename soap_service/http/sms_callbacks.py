"""``POST /callbacks/sms/{connector}``: delivery callbacks of ``http-sms`` providers.

The request is authenticated and read by ``channels.sms_callbacks.parse_callback`` (the
connector's format: our HMAC-signed JSON, or Twilio's signature), then its receipts are
recorded (``receipts.record_receipts``) before the provider gets its ``200`` -- so a
write that fails makes the provider retry.  The URL a signature covers is rebuilt from
``MC_PUBLIC_URL`` (the address the provider was given), never from the Host header,
which a proxy in front of us may have rewritten.  Receipts that match no delivery yet
(a provider that calls back before the worker recorded the send) are held by the
application's :class:`~soap_service.receipts.ReceiptRecorder` and tried again.

Every refusal is a short RFC 9457 problem (``problems.py``) and one log line, and
changes nothing: an unknown connector (or one that is not ``http-sms``) 404, a missing
or wrong signature 403, a body over the connector's ``callback_max_bytes`` 413, a body
that is not what the format says 400; the database unavailable 503.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from soap_service.channels.sms_callbacks import parse_callback
from soap_service.config import ConnectorConfig, Settings
from soap_service.errors import MessageCenterError, NotFound, PayloadTooLarge
from soap_service.http.body import BodyTooLarge, read_body
from soap_service.http.callbacks import refusal, request_headers
from soap_service.http.wsgi import Request, Response
from soap_service.receipts import record_receipts

if TYPE_CHECKING:
    from soap_service.http.app import WebApp

log = logging.getLogger(__name__)

PREFIX = "/callbacks/sms/"
ROUTE = "sms_callback"


def find_connector(settings: Settings, name: str) -> ConnectorConfig | None:
    """The ``http-sms`` connector called ``name`` (None for any other)."""
    return next((c for c in settings.connectors if c.name == name and c.kind == "http-sms"),
                None)


def public_url(settings: Settings, environ: dict[str, Any]) -> str:
    """The URL the provider called, as it was given it: MC_PUBLIC_URL + path + query."""
    url = settings.public_url.rstrip("/") + str(environ.get("PATH_INFO") or "")
    query = str(environ.get("QUERY_STRING") or "")
    return f"{url}?{query}" if query else url


def callback_endpoint(app: WebApp, request: Request) -> Response:
    """Authenticate one callback, record its receipts, answer ``{"received": n}``."""
    name = request.path[len(PREFIX):].strip("/")
    who = f"connector={name[:64]}"
    config = find_connector(app.settings, name)
    if config is None:
        return refusal(log, ROUTE, who, NotFound("No such SMS connector."))
    try:
        from soap_service.channels.http_sms import HttpSmsOptions

        try:
            body = read_body(request.environ, HttpSmsOptions.from_config(config)
                             .callback_max_bytes)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(exc.message) from exc
        receipts = parse_callback(config, public_url(app.settings, request.environ),
                                  request_headers(request.environ), body)
        report, unknown = record_receipts(app.db, receipts)
    except MessageCenterError as exc:
        return refusal(log, ROUTE, who, exc)
    if unknown:
        app.receipts.hold(unknown)
    log.info("sms_callback.recorded connector=%s receipts=%s unmatched=%s", name,
             report.received, report.unknown)
    return Response(200, json.dumps({"received": report.received}).encode(),
                    "application/json")
