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

from soap_service import eventstatus, ingest
from soap_service.clock import parse_iso_utc
from soap_service.ctxdata import ctx_to_json
from soap_service.errors import ClientError, InvalidBatchItem, TooManyEvents, ValidationFailed
from soap_service.http.api import context, json_body, json_response, require
from soap_service.http.jsonevent import build_event
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
        "history": [{"status": h["status"], "reason": h["reason"], "at": iso(h["at"])}
                    for h in view.history],
        "attempts": [{
            "at": iso(a["created_at"]), "outcome": a["outcome"], "channel": a["channel"],
            "connector": a.get("connector"), "address": a["address"],
            "code": a["response_code"], "response": a["response_text"] or "",
            "template": a["template"], "templateVersion": a["version"],
            "messageId": a["message_id"], "durationMs": a["duration_ms"],
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


def as_field(exc: ClientError) -> ClientError:
    """ingest speaks SOAP ("attribute 'email'", "element <ctx>"); JSON callers send
    fields.  Same exception class and index, JSON wording."""
    exc.message = (exc.message.replace("attribute '", "field '")
                   .replace("element <ctx>", "field 'ctx'"))
    return exc


# ---------------------------------------------------------------- push


@blueprint.post(f"{PREFIX}/events")
def push() -> Response:
    require("push")
    data = json_body()
    if not isinstance(data, dict):
        raise ValidationFailed('the body must be a JSON object: an event, or {"events": [...]}')
    if "events" in data:
        return _push_batch(data)
    ctx = context()
    event = build_event(data)
    try:
        plid = ingest.store_event(
            ctx.db, ctx.settings, event.element, event.queue, ctx_json=event.ctx_json,
            idempotency_key=request.headers.get("Idempotency-Key", "").strip() or None)
    except ClientError as exc:
        raise as_field(exc) from exc
    href = f"{PREFIX}/events/{plid}"
    return json_response({"plId": str(plid), "status": "pending", "href": href}, 201,
                         [("Location", href)])


def _push_batch(data: dict[str, Any]) -> Response:
    ctx = context()
    items = data["events"]
    if not isinstance(items, list):
        raise ValidationFailed("field 'events' must be an array of events")
    if not items:
        raise ValidationFailed("field 'events' is empty")
    limit = ctx.settings.max_events_per_call
    if len(items) > limit:
        raise TooManyEvents(f"too many events in one request: {len(items)} (at most {limit})")
    if request.headers.get("Idempotency-Key"):
        raise ValidationFailed("Idempotency-Key applies to one event: give each event of a "
                               "batch its own 'idempotencyKey' field")
    unknown = set(data) - {"events", "queue"}
    if unknown:
        raise ValidationFailed(f"unknown batch field(s): {', '.join(sorted(unknown))[:200]} "
                               "(a batch has 'events' and an optional 'queue')")
    built = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict) and "queue" in item:
                raise ValidationFailed("set 'queue' on the batch, not on its events")
            built.append(build_event({**item, "queue": data.get("queue")}
                                     if isinstance(item, dict) else item))
        except ValidationFailed as exc:
            raise InvalidBatchItem(index, f"events[{index}]: {exc.message}") from exc
    try:
        stored = ingest.store_events(ctx.db, ctx.settings, [b.element for b in built],
                                     built[0].queue, ctx_json=[b.ctx_json for b in built])
    except ClientError as exc:
        position = getattr(exc, "index", None)
        if isinstance(position, int):  # ingest numbers from 1 ("event #3"); JSON from 0
            exc.message = f"events[{position}]: " + exc.message.split(": ", 1)[-1]
        raise as_field(exc) from exc
    return json_response({"events": [{"plId": str(plid), "externalId": external_id}
                                     for plid, external_id in stored]}, 201)


# ---------------------------------------------------------------- read


def _date_param(name: str) -> datetime | None:
    raw = request.args.get(name, "").strip()
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
        context().db, status=request.args.get("status") or None,
        event_type=request.args.get("type") or None,
        external_id=request.args.get("externalId") or None,
        since=_date_param("since"), until=_date_param("until"),
        cursor=request.args.get("cursor") or None, limit=_int_param("limit", 50))
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
