"""The suite-compatible transactional REST API (SPEC §8), in the suite's own shapes.

``POST /{ORGANIZATION}/campaign/{transactionalAPI}/{eventID}`` pushes one event (the
body: ``email`` and/or ``mobilePhone``, ``ctx``, optional ``scheduled`` / ``expiration``
in ISO 8601 with or without the ``T``; other fields are kept as attributes) and answers
``201`` with ``PKey``, ``ctx``, ``email``, ``scheduled``, ``expiration``, ``href``,
``serverUrl``, ``status`` and ``type`` (the channel); ``GET
/{ORGANIZATION}/campaign/{href}`` answers the same object with the current status.
``eventID`` names the event type through ``settings.event_ids`` (or is the type itself);
only ``mobilePhone`` chooses SMS, otherwise email.  ``PKey`` is the event's plId, so the
same id works under ``/api/v1/events``.  The organization and API names are echoed, not
checked: one deployment serves one organization.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from soap_service import eventstatus, ingest
from soap_service.errors import ClientError, NotFound, ValidationFailed
from soap_service.http.api import context, json_body, json_response, require
from soap_service.http.events_api import as_field, event_ctx
from soap_service.http.jsonevent import build_event
from soap_service.models import WISHED_CHANNEL_OF, WISHED_CHANNELS, Channel, Event, make_plid

blueprint = Blueprint("suite", __name__)
ROUTE = "/<organization>/campaign/<api>/<event_id>"


def _channel(data: dict[str, Any]) -> str:
    """wishedChannel: as given, else SMS when only ``mobilePhone`` is there, else email."""
    given = data.get("wishedChannel")
    if given is not None:
        return str(given)
    if data.get("mobilePhone") and not data.get("email"):
        return str(WISHED_CHANNEL_OF[Channel.SMS])
    return str(WISHED_CHANNEL_OF[Channel.EMAIL])


def suite_object(*, plid: int, ctx: Any, email: str | None, mobile_phone: str | None,
                 scheduled: str | None, expiration: str | None, api: str, event_id: str,
                 status: str, channel: Channel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "PKey": str(plid), "ctx": ctx, "email": email, "scheduled": scheduled,
        "expiration": expiration, "href": f"{api}/{event_id}/{plid}",
        "serverUrl": context().settings.public_url, "status": status, "type": channel.value,
    }
    if mobile_phone:  # the suite echoes what it was sent; email-only events have none
        out["mobilePhone"] = mobile_phone
    return out


@blueprint.post(ROUTE)
def push(organization: str, api: str, event_id: str) -> Response:
    require("push")
    ctx = context()
    data = json_body()
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object (the event)")
    if "queue" in data:
        raise ValidationFailed("field 'queue' is not part of this API (events are real-time)")
    wished = _channel(data)
    event = build_event(data, extra={"type": ctx.settings.event_type_for(event_id),
                                     "wishedChannel": wished})
    try:
        plid = ingest.store_event(
            ctx.db, ctx.settings, event.element, event.queue, ctx_json=event.ctx_json,
            idempotency_key=request.headers.get("Idempotency-Key", "").strip() or None)
    except ClientError as exc:
        raise as_field(exc) from exc
    body = suite_object(
        plid=plid, ctx=json.loads(event.ctx_json), email=data.get("email"),
        mobile_phone=data.get("mobilePhone"), scheduled=data.get("scheduled"),
        expiration=data.get("expiration"), api=api, event_id=event_id, status="pending",
        channel=WISHED_CHANNELS.get(int(wished), Channel.EMAIL))
    return json_response(body, 201, [("Location", f"/{organization}/campaign/{body['href']}")])


@blueprint.get(f"{ROUTE}/<pkey>")
def status(organization: str, api: str, event_id: str, pkey: str) -> Response:
    require("read")
    ctx = context()
    pk = eventstatus.primary_key(pkey, ctx.settings.instance_id)
    event = eventstatus.get_event(ctx.db, pk)
    if event.event_type != ctx.settings.event_type_for(event_id):
        raise NotFound(f"no event {pkey[:40]} of event {event_id[:64]}")
    plid = make_plid(ctx.settings.instance_id, pk)
    return json_response(_object_of(event, plid, api, event_id))


def _object_of(event: Event, plid: int, api: str, event_id: str) -> dict[str, Any]:
    attrs = event.attributes
    return suite_object(
        plid=plid, ctx=event_ctx(event), email=event.email, mobile_phone=event.mobile_phone,
        scheduled=attrs.get("scheduled"), expiration=attrs.get("expiration"), api=api,
        event_id=event_id, status=event.status.value, channel=event.channel)
