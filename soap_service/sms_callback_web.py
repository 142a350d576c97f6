"""``POST /callbacks/sms/{connector}``: delivery callbacks of ``http-sms`` providers.

The request is authenticated and read by ``channels.sms_callbacks.parse_callback`` (the
connector's format: our HMAC-signed JSON, or Twilio's signature), then its receipts are
recorded (``receipts.record_receipts``) before the provider gets its ``200`` -- so a
write that fails makes the provider retry.  The URL a signature covers is rebuilt from
``MC_PUBLIC_URL`` (the address the provider was given), never from the Host header,
which a proxy in front of us may have rewritten.  Receipts that match no delivery yet
(a provider that calls back before the worker recorded the send) are held by this
process's :class:`~soap_service.receipts.ReceiptRecorder` and tried again.

Every refusal is a short RFC 9457 problem and one log line, and changes nothing: an
unknown connector (or one that is not ``http-sms``) 404, a missing or wrong signature
403, a body over the connector's ``callback_max_bytes`` 413, a body that is not what the
format says 400; the database unavailable 503.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from soap_service.channels.sms_callbacks import parse_callback
from soap_service.config import ConnectorConfig, Settings
from soap_service.errors import (
    ConfigError,
    MessageCenterError,
    PayloadTooLarge,
    ServerError,
    UnverifiedCallback,
    ValidationFailed,
)
from soap_service.models import Receipt
from soap_service.receipts import ReceiptRecorder, record_receipts

log = logging.getLogger(__name__)

PREFIX = "/callbacks/sms/"
PROBLEM_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:msgcenter:problem:"


def find_connector(settings: Settings, name: str) -> ConnectorConfig | None:
    """The ``http-sms`` connector called ``name`` (None for any other)."""
    return next((c for c in settings.connectors if c.name == name and c.kind == "http-sms"),
                None)


def public_url(settings: Settings, environ: dict[str, Any]) -> str:
    """The URL the provider called, as it was given it: MC_PUBLIC_URL + path + query."""
    url = settings.public_url.rstrip("/") + str(environ.get("PATH_INFO") or "")
    query = str(environ.get("QUERY_STRING") or "")
    return f"{url}?{query}" if query else url


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value)
               for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


def problem(status: int, name: str, title: str, detail: str = "") -> tuple[int, bytes]:
    doc = {"type": TYPE_PREFIX + name, "title": title, "status": status}
    if detail:
        doc["detail"] = detail[:200]
    return status, json.dumps(doc).encode()


def handle(settings: Settings, db: Any, environ: dict[str, Any],
           read_body: Callable[[int], bytes],
           hold: Callable[[Sequence[Receipt]], None]) -> tuple[int, bytes, str]:
    """Answer one callback request: ``(status, body, content type)``.  ``read_body(limit)``
    reads the request body, raising PayloadTooLarge past ``limit`` bytes; ``hold`` takes
    the receipts that matched no delivery yet."""
    name = str(environ.get("PATH_INFO") or "")[len(PREFIX):].strip("/")
    config = find_connector(settings, name)
    if config is None:
        log.info("sms_callback.unknown_connector name=%s", name[:64])
        return (*problem(404, "not-found", "No such SMS connector"), PROBLEM_TYPE)
    try:
        from soap_service.channels.http_sms import HttpSmsOptions

        body = read_body(HttpSmsOptions.from_config(config).callback_max_bytes)
        receipts = parse_callback(config, public_url(settings, environ),
                                  request_headers(environ), body)
        report, unknown = record_receipts(db, receipts)
    except UnverifiedCallback as exc:
        log.info("sms_callback.unverified connector=%s reason=%s", name, exc.message[:80])
        return (*problem(403, "unverified-callback", "The callback's signature does not "
                         "verify", exc.message), PROBLEM_TYPE)
    except PayloadTooLarge as exc:
        log.info("sms_callback.too_large connector=%s", name)
        return (*problem(413, "body-too-large", "The request body is too large",
                         exc.message), PROBLEM_TYPE)
    except ValidationFailed as exc:
        log.info("sms_callback.malformed connector=%s reason=%s", name, exc.message[:80])
        return (*problem(400, "bad-request", "The callback body is malformed", exc.message),
                PROBLEM_TYPE)
    except (ConfigError, ServerError) as exc:
        log.warning("sms_callback.failed connector=%s error=%s", name, exc.message[:80])
        return (*problem(503, "unavailable", "The callback cannot be recorded now"),
                PROBLEM_TYPE)
    except MessageCenterError as exc:  # any other refusal of ours: the caller's input
        log.info("sms_callback.refused connector=%s reason=%s", name, exc.message[:80])
        return (*problem(400, "bad-request", "The callback was refused", exc.message),
                PROBLEM_TYPE)
    if unknown:
        hold(unknown)
    log.info("sms_callback.recorded connector=%s receipts=%s unmatched=%s", name,
             report.received, report.unknown)
    return 200, json.dumps({"received": report.received}).encode(), "application/json"


_recorders: weakref.WeakKeyDictionary[Any, ReceiptRecorder] = weakref.WeakKeyDictionary()
_recorders_lock = threading.Lock()


def recorder_for(app: Any) -> ReceiptRecorder:
    """The web application's recorder of receipts that matched nothing yet (one per app)."""
    with _recorders_lock:
        recorder = _recorders.get(app)
        if recorder is None:
            recorder = ReceiptRecorder(app.db, grace=max(60.0, app.settings.lease_seconds))
            _recorders[app] = recorder
        return recorder


def route(app: Any, request: Any) -> Any:
    """``web.py`` handler for ``POST /callbacks/sms/...``."""
    from soap_service.web import Response, read_body  # web.py imports this module
    from soap_service.xmlsafe import BodyTooLarge

    def read(limit: int) -> bytes:
        try:
            return read_body(request.environ, limit)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(f"callback body over {limit} bytes") from exc

    status, body, content_type = handle(app.settings, app.db, request.environ, read,
                                        recorder_for(app).hold)
    return Response(status, body, content_type)
