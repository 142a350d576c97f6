"""``POST /callbacks/bounces/{provider}``: bounce and complaint webhooks of Amazon SES
(through SNS) and Postmark.

The call is authenticated and read by ``bounces.providers.CallbackReader`` (SNS: signature
over a certificate fetched from an allowed HTTPS origin, an allowed topic; Postmark: Basic
credentials or a secret header), then its reports are recorded and acted on
(``bounces.record``) before the provider gets its ``200`` -- so a write that fails makes the
provider retry.  An SNS ``SubscriptionConfirmation``, once verified, is confirmed by
visiting its ``SubscribeURL`` (on an allowed origin only).

Every refusal is a short RFC 9457 problem and one log line, and changes nothing: an
unknown provider 404, a missing or wrong signature or credential 403, a body over 512 KiB
413, a body that is not the provider's JSON 400; the database or the SNS certificate host
unavailable 503 (the provider retries).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from soap_service.bounces.providers import MAX_BODY_BYTES
from soap_service.bounces.record import record_reports
from soap_service.errors import MessageCenterError, PayloadTooLarge
from soap_service.http.body import BodyTooLarge, read_body
from soap_service.http.callbacks import refusal, request_headers
from soap_service.http.wsgi import Request, Response

if TYPE_CHECKING:
    from soap_service.http.app import WebApp

log = logging.getLogger(__name__)

PREFIX = "/callbacks/bounces/"
ROUTE = "bounce_callback"


def bounce_callback_endpoint(app: WebApp, request: Request) -> Response:
    """Authenticate one provider call, record its reports, answer ``{"received": n}``."""
    provider = request.path[len(PREFIX):].strip("/")
    try:
        try:
            body = read_body(request.environ, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes.") from exc
        reader = app.bounce_reader
        outcome = reader.read(provider, body, request_headers(request.environ))
        if outcome.confirm_url:
            status = reader.sns.confirm(outcome.confirm_url)
            log.info("bounce_callback.subscription_confirmed provider=%s status=%s",
                     provider, status)
        recorded = record_reports(app.db, app.settings, outcome.reports, provider) \
            if outcome.reports else []
    except MessageCenterError as exc:
        return refusal(log, ROUTE, f"provider={provider[:40]}", exc)
    log.info("bounce_callback.recorded provider=%s reports=%s note=%s", provider,
             len(recorded), (outcome.note or "-")[:40].replace(" ", "_"))
    return Response(200, json.dumps({"received": len(recorded),
                                     "matched": sum(r.matched for r in recorded)}).encode(),
                    "application/json")
