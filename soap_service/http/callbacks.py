"""What the provider callback routes share (``/callbacks/sms/``, ``/callbacks/bounces/``):
the request's headers as a provider signed them, and one ladder from our refusals to a
short RFC 9457 problem plus one log line -- the same answer for the same fault whichever
provider called."""

from __future__ import annotations

import logging
from typing import Any

from soap_service.errors import (
    ConfigError,
    MessageCenterError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    UnreadableReport,
    UnverifiedCallback,
    ValidationFailed,
)
from soap_service.http.problems import CONTENT_TYPE, problem
from soap_service.http.wsgi import Response


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers, lower-case names (what signatures are computed over)."""
    headers = {key[5:].replace("_", "-").lower(): str(value)
               for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


def refused(name: str, detail: str = "") -> Response:
    """The problem answer ``name`` (``problems.py``), its detail capped."""
    found = problem(name, detail[:200])
    return Response(found.status, found.body(), CONTENT_TYPE, list(found.headers))


def refusal(log: logging.Logger, route: str, who: str, exc: MessageCenterError) -> Response:
    """The answer to a callback refused with ``exc``, and its log line
    (``<route>.<reason> <who> ...``): unknown 404, unverified 403, too large 413, not the
    expected body 400, our configuration or database 503 (the provider retries), any other
    refusal of ours 400."""
    reason = exc.message[:80]
    if isinstance(exc, NotFound):
        log.info("%s.unknown %s", route, who)
        return refused("not-found", exc.message)
    if isinstance(exc, UnverifiedCallback):
        log.info("%s.unverified %s reason=%s", route, who, reason)
        return refused("unverified-callback", exc.message)
    if isinstance(exc, PayloadTooLarge):
        log.info("%s.too_large %s", route, who)
        return refused("body-too-large", exc.message)
    if isinstance(exc, ValidationFailed | UnreadableReport):
        log.info("%s.malformed %s reason=%s", route, who, reason)
        return refused("bad-request", exc.message)
    if isinstance(exc, ConfigError | ServerError):
        log.warning("%s.failed %s error=%s", route, who, reason)
        return refused("unavailable", "The call cannot be handled now; try again.")
    log.info("%s.refused %s reason=%s", route, who, reason)
    return refused("bad-request", exc.message)
