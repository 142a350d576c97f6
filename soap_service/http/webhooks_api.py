"""``/api/v1/webhooks``: subscriptions and their deliveries (admin scope).

The same functions as ``msgcenter webhook ...``: add (the secret is in the 201 answer and
never again), list, show, remove, enable / disable, test (one signed attempt now), the
delivery log with every attempt, and replay (the same webhook-id and body, due now).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from soap_service import outbox, webhooks
from soap_service.errors import ValidationFailed
from soap_service.http.api import context, json_body, json_response, require
from soap_service.http.events_api import iso, plid_of
from soap_service.store import webhooks as store

blueprint = Blueprint("webhooks", __name__)
PREFIX = "/api/v1/webhooks"
DELIVERY_STATUSES = (store.PENDING, store.DELIVERED, store.FAILED)


def endpoint_json(endpoint: store.Endpoint, *, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": endpoint.id, "url": endpoint.url, "statuses": sorted(endpoint.kinds),
        "eventTypes": sorted(endpoint.event_types), "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason, "createdAt": iso(endpoint.created_at),
    }
    if secret:
        out["secret"] = endpoint.secret
    return out


def delivery_json(d: store.Delivery, attempts: list[store.Attempt]) -> dict[str, Any]:
    return {
        "id": str(d.id), "endpointId": d.endpoint_id, "url": d.url, "webhookId": d.message_id,
        "kind": d.kind, "plId": plid_of(d.event_id), "status": d.status,
        "attempts": [{"attempt": a.attempt, "code": a.response_code,
                      "response": a.response_text or "", "durationMs": a.duration_ms,
                      "at": iso(a.created_at)} for a in attempts],
        "nextAttemptAt": iso(d.next_attempt_at) if d.status == store.PENDING else None,
        "createdAt": iso(d.created_at), "updatedAt": iso(d.updated_at),
    }


def _with_attempts(deliveries: list[store.Delivery]) -> list[dict[str, Any]]:
    by_delivery: dict[int, list[store.Attempt]] = {}
    for a in store.list_attempts(context().db, [d.id for d in deliveries]):
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return [delivery_json(d, by_delivery.get(d.id, [])) for d in deliveries]


def _string_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"field '{name}' must be an array of strings")
    return value


@blueprint.get(PREFIX)
def list_endpoints() -> Response:
    require("admin")
    return json_response({"webhooks": [endpoint_json(e)
                                       for e in store.list_endpoints(context().db)]})


@blueprint.post(PREFIX)
def add_endpoint() -> Response:
    require("admin")
    data = json_body()
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise ValidationFailed("the body must be an object with a string field 'url'")
    endpoint = webhooks.add_endpoint(context().db, data["url"], _string_list(data, "statuses"),
                                     _string_list(data, "eventTypes"))
    return json_response(endpoint_json(endpoint, secret=True), 201,
                         [("Location", f"{PREFIX}/{endpoint.id}")])


@blueprint.get(f"{PREFIX}/<int:endpoint_id>")
def show_endpoint(endpoint_id: int) -> Response:
    require("admin")
    return json_response(endpoint_json(store.get_endpoint(context().db, endpoint_id)))


@blueprint.delete(f"{PREFIX}/<int:endpoint_id>")
def remove_endpoint(endpoint_id: int) -> Response:
    require("admin")
    webhooks.remove_endpoint(context().db, endpoint_id)
    return Response(status=204)


@blueprint.post(f"{PREFIX}/<int:endpoint_id>/enable")
def enable_endpoint(endpoint_id: int) -> Response:
    require("admin")
    return json_response(endpoint_json(webhooks.set_enabled(context().db, endpoint_id, True)))


@blueprint.post(f"{PREFIX}/<int:endpoint_id>/disable")
def disable_endpoint(endpoint_id: int) -> Response:
    require("admin")
    return json_response(endpoint_json(webhooks.set_enabled(context().db, endpoint_id, False)))


@blueprint.post(f"{PREFIX}/<int:endpoint_id>/test")
def test_endpoint(endpoint_id: int) -> Response:
    require("admin")
    ctx = context()
    delivery = outbox.send_test(ctx.settings, ctx.db, endpoint_id)
    return json_response(_with_attempts([delivery])[0])


@blueprint.get(f"{PREFIX}/deliveries")
def list_deliveries() -> Response:
    require("admin")
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    raw_limit = request.args.get("limit", "100")
    if not raw_limit.isdecimal() or not 1 <= int(raw_limit) <= 1000:
        raise ValidationFailed("limit must be a number between 1 and 1000")
    found = store.list_deliveries(context().db, status=status, limit=int(raw_limit))
    return json_response({"deliveries": _with_attempts(found)})


@blueprint.post(f"{PREFIX}/deliveries/<int:delivery_id>/replay")
def replay_delivery(delivery_id: int) -> Response:
    require("admin")
    delivery = webhooks.replay(context().db, delivery_id)
    return json_response(_with_attempts([delivery])[0])
