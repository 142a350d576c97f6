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
from soap_service.errors import (
    ConfigError,
    MessageCenterError,
    NotFound,
    ServerError,
    UnreadableReport,
    UnverifiedCallback,
)
from soap_service.http.body import BodyTooLarge, read_body
from soap_service.http.sms_callbacks import _refused, request_headers
from soap_service.http.wsgi import Request, Response

if TYPE_CHECKING:
    from soap_service.http.app import WebApp

log = logging.getLogger(__name__)

PREFIX = "/callbacks/bounces/"
def bounce_callback_endpoint(app: WebApp, request: Request) -> Response:
    """Authenticate one provider call, record its reports, answer ``{"received": n}``."""
    provider = request.path[len(PREFIX):].strip("/")
    try:
        try:
            body = read_body(request.environ, MAX_BODY_BYTES)
        except BodyTooLarge:
            log.info("bounce_callback.too_large provider=%s", provider[:20])
            return _refused("body-too-large", f"The body is over {MAX_BODY_BYTES} bytes.")
        reader = app.bounce_reader
        outcome = reader.read(provider, body, request_headers(request.environ))
        if outcome.confirm_url:
            status = reader.sns.confirm(outcome.confirm_url)
            log.info("bounce_callback.subscription_confirmed provider=%s status=%s",
                     provider, status)
        recorded = record_reports(app.db, app.settings, outcome.reports, provider) \
            if outcome.reports else []
    except NotFound as exc:
        log.info("bounce_callback.unknown_provider name=%s", provider[:40])
        return _refused("not-found", exc.message)
    except UnverifiedCallback as exc:
        log.info("bounce_callback.unverified provider=%s reason=%s", provider,
                 exc.message[:80])
        return _refused("unverified-callback", exc.message)
    except UnreadableReport as exc:
        log.info("bounce_callback.malformed provider=%s reason=%s", provider, exc.message[:80])
        return _refused("bad-request", exc.message)
    except (ConfigError, ServerError) as exc:
        log.warning("bounce_callback.failed provider=%s error=%s", provider, exc.message[:80])
        return _refused("unavailable", "The call cannot be handled now; try again.")
    except MessageCenterError as exc:  # any other refusal of ours: the caller's input
        log.info("bounce_callback.refused provider=%s reason=%s", provider, exc.message[:80])
        return _refused("bad-request", exc.message)
    log.info("bounce_callback.recorded provider=%s reports=%s note=%s", provider,
             len(recorded), (outcome.note or "-")[:40].replace(" ", "_"))
    return Response(200, json.dumps({"received": len(recorded),
                                     "matched": sum(r.matched for r in recorded)}).encode(),
                    "application/json")
