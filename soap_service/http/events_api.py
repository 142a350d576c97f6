"""``/api/v1/events``: push (one or a batch), list, show, retry, cancel.

Pushing goes through ``ingest`` exactly as SOAP does (validation, idempotency, queue,
wake-up); a batch is one transaction, all or nothing, and a bad event is named by its
0-based ``index``.  Reading and moving events goes through ``eventstatus``, which serves
events from any API, SOAP included.  JSON names follow the SOAP attributes
(``externalId``, ``mobilePhone``...); ids are strings (a plId does not fit a JavaScript
number); times are ISO 8601 UTC with a ``Z``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request

from soap_service import eventstatus
from soap_service.clock import parse_iso_utc
from soap_service.ctxdata import ctx_to_json
from soap_service.errors import ValidationFailed
from soap_service.http import ingest_api
from soap_service.http.api import context, json_body, json_response, require
from soap_service.models import Event, make_plid

blueprint = Blueprint("events", __name__)
PREFIX = "/api/v1"


# ---------------------------------------------------------------- JSON values


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def plid_of(event_id: int | None) -> str | None:
    return None if event_id is None else str(make_plid(context().settings.instance_id,
                                                       event_id))


def summary(event: Event) -> dict[str, Any]:
    return {
        "plId": plid_of(event.id), "type": event.event_type, "queue": event.queue.value,
        "status": event.status.value, "channel": event.channel.value,
        "address": event.address, "externalId": event.external_id,
        "errorCount": event.error_count, "lastError": event.last_error,
        "createdAt": iso(event.created_at), "updatedAt": iso(event.updated_at),
        "processAt": iso(event.process_at),
    }


def event_ctx(event: Event) -> dict[str, Any]:
    """The ctx as the caller sent it (JSON callers) or as JSON from the stored XML."""
    if event.ctx_json:
        value = json.loads(event.ctx_json)
        if isinstance(value, dict):
            return value
    return ctx_to_json(event.ctx_xml)


def detail(view: eventstatus.EventView) -> dict[str, Any]:
    e = view.event
    out = summary(e)
    out.update({
        "email": e.email, "mobilePhone": e.mobile_phone,
        "registrationToken": e.registration_token, "mobileAppUuid": e.mobile_app_uuid,
        "wishedChannel": e.wished_channel, "emailFormat": e.email_format,
        "origin": e.origin, "language": e.language, "country": e.country,
        "scheduled": iso(e.scheduled_at), "expiration": iso(e.expiration_at),
        "requeuedAt": iso(e.requeued_at), "parentPlId": plid_of(e.parent_id),
        "attributes": e.attributes, "ctx": event_ctx(e), "ctxXml": e.ctx_xml,
        "history": [{"status": h.status, "reason": h.reason or "", "at": iso(h.created_at)}
                    for h in view.history],
        "attempts": [{
            "at": iso(a.created_at), "outcome": a.outcome, "channel": a.channel,
            "connector": a.connector, "address": a.address,
            "code": a.response_code, "response": a.response_text or "",
            "template": a.template, "templateVersion": a.version,
            "messageId": a.message_id, "durationMs": a.duration_ms,
            "providerId": a.provider_id, "receipt": a.receipt, "receiptAt": iso(a.receipt_at),
            "variant": a.variant,
        } for a in view.attempts],
        "tracking": [{"kind": t.kind, "url": t.url, "machine": t.machine,
                      "at": iso(t.created_at)} for t in view.tracking],
        "exclusions": [{"address": x.address, "reason": x.reason, "at": iso(x.created_at)}
                       for x in view.exclusions],
        "followUps": [{"plId": plid_of(f["id"]), "type": f["event_type"],
                       "status": f["status"], "rule": f["rule"],
                       "createdAt": iso(f["created_at"])} for f in view.follow_ups],
        "webhooks": [{"id": str(w.id), "endpointId": w.endpoint_id,
                      "webhookId": w.message_id, "kind": w.kind, "status": w.status,
                      "attempts": w.attempts, "lastCode": w.last_code,
                      "createdAt": iso(w.created_at)} for w in view.webhooks],
    })
    return out


# ---------------------------------------------------------------- push


@blueprint.post(f"{PREFIX}/events")
def push() -> Response:
    """Served by ``ingest_api.IngestApp`` in ``msgcenter serve``; the same function here
    for the Flask application on its own."""
    answer = ingest_api.push_events(context(), request.environ)
    return json_response(answer.body, answer.status, list(answer.headers))


# ---------------------------------------------------------------- read


def _param(name: str) -> str | None:
    raw = request.args.get(name, "")
    return ingest_api.printable(raw, f"query parameter '{name}'") or None


def _date_param(name: str) -> datetime | None:
    raw = (_param(name) or "").strip()
    if not raw:
        return None
    try:
        return parse_iso_utc(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter '{name}' is not an ISO 8601 date") from None


def _int_param(name: str, default: int) -> int:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter '{name}' is not a number") from None


@blueprint.get(f"{PREFIX}/events")
def list_events() -> Response:
    require("read")
    found, next_cursor = eventstatus.list_page(
        context().db, status=_param("status"), event_type=_param("type"),
        external_id=_param("externalId"), since=_date_param("since"),
        until=_date_param("until"), cursor=_param("cursor"), limit=_int_param("limit", 50))
    return json_response({"events": [summary(e) for e in found], "next": next_cursor})


@blueprint.get(f"{PREFIX}/events/<plid>")
def show_event(plid: str) -> Response:
    require("read")
    ctx = context()
    pk = eventstatus.primary_key(plid, ctx.settings.instance_id)
    return json_response(detail(eventstatus.view(ctx.db, ctx.settings, pk)))


# ---------------------------------------------------------------- moves


def _reason() -> str | None:
    if not request.content_length and "chunked" not in request.headers.get(
            "Transfer-Encoding", "").lower():
        return None
    data = json_body()
    if not isinstance(data, dict):
        raise ValidationFailed('the body must be a JSON object, e.g. {"reason": "..."}')
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationFailed("field 'reason' must be a string")
    return reason


@blueprint.post(f"{PREFIX}/events/<plid>/retry")
def retry_event(plid: str) -> Response:
    principal = require("admin")
    ctx = context()
    pk = eventstatus.primary_key(plid, ctx.settings.instance_id)
    reason = _reason()
    return json_response(summary(eventstatus.retry(ctx.db, pk, by=principal.login,
                                                   reason=reason)))


@blueprint.post(f"{PREFIX}/events/<plid>/cancel")
def cancel_event(plid: str) -> Response:
    principal = require("admin")
    ctx = context()
    pk = eventstatus.primary_key(plid, ctx.settings.instance_id)
    reason = _reason()
    return json_response(summary(eventstatus.cancel(ctx.db, pk, by=principal.login,
                                                    reason=reason)))
