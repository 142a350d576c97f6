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
checked: one deployment serves one organization.  The POST's work is in ``ingest_api``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from soap_service import eventstatus
from soap_service.errors import NotFound
from soap_service.http import ingest_api
from soap_service.http.api import context, json_response, require
from soap_service.http.events_api import event_ctx
from soap_service.models import Event, make_plid

blueprint = Blueprint("suite", __name__)
ROUTE = "/<organization>/campaign/<api>/<event_id>"


@blueprint.post(ROUTE)
def push(organization: str, api: str, event_id: str) -> Response:
    """Served by ``ingest_api.IngestApp`` in ``msgcenter serve``; the same function here
    for the Flask application on its own."""
    answer = ingest_api.push_suite(context(), request.environ, organization, api, event_id)
    return json_response(answer.body, answer.status, list(answer.headers))


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
    return ingest_api.suite_object(
        public_url=context().settings.public_url,
        plid=plid, ctx=event_ctx(event), email=event.email, mobile_phone=event.mobile_phone,
        scheduled=attrs.get("scheduled"), expiration=attrs.get("expiration"), api=api,
        event_id=event_id, status=event.status.value, channel=event.channel)
