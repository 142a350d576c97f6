"""The OpenAPI 3.1 document of the JSON API, served at ``/api/v1/openapi.json``.

Built here, from Python values, for the configured public URL; the copy committed as
``schema/openapi.json`` (``make openapi``) is the contract, and a test fails when the two
drift, when the document is not valid OpenAPI 3.1, or when a route of the application
is missing from it.  Every operation carries examples; the tests send each request
example to a live server and check the answer against the documented schema.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from soap_service.http import problems
from soap_service.http.openapi_schemas import STATUSES, ref, schemas

blueprint = Blueprint("openapi", __name__)
PATH = "/api/v1/openapi.json"
VERSION = "1.0.0"

PLID = "72057594037927937"  # make_plid(1, 1)
PLID2 = "72057594037927938"
TS = "2026-11-20T09:30:00.000Z"


# ---------------------------------------------------------------- examples

EVENT_EXAMPLE = {
    "type": "order_confirmation", "email": "john.doe@example.com", "externalId": "1242",
    "ctx": {"client": {"firstname": "John", "lastname": "Doe"},
            "orderdetails": {"article": [{"@num": "1", "name": "USB key", "price": 20}]}},
}
SUITE_EXAMPLE = {
    "email": "jane.doe@example.com", "scheduled": "2026-12-01 08:00:00.768Z",
    "expiration": "2026-12-31T08:00:00.768Z",
    "ctx": {"cusFirstName": "Jane", "cusLastName": "Doe"},
}


def _problem_example(name: str, detail: str, **extra: Any) -> dict[str, Any]:
    t = problems.TYPES[name]
    return {"type": t.uri, "title": t.title, "status": t.status, "detail": detail, **extra}


def _json(schema: dict[str, Any], examples: dict[str, Any] | None = None,
          media: str = "application/json") -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = {k: {"value": v} for k, v in examples.items()}
    return {media: content}


def _problems(*names: str) -> dict[str, Any]:
    """Responses for these problem kinds, grouped by status, with an example each."""
    details = {
        "invalid-json": "The request body is not valid JSON.",
        "validation-failed": "missing field 'ctx' (an object: the data for personalisation)",
        "unauthorized": "Unknown API key.", "insufficient-scope":
        "the API key lacks the scope 'read'", "not-found": "no such event",
        "invalid-state": "event is processed: only pending or paused events can be cancelled",
        "too-many-events": "too many events in one request: 1001 (at most 1000)",
        "body-too-large": "Request body too large.", "idempotency-conflict":
        "idempotency key already used for a different event",
    }
    by_status: dict[int, dict[str, Any]] = {}
    for name in names:
        t = problems.TYPES[name]
        by_status.setdefault(t.status, {})[name] = _problem_example(name, details.get(name, ""))
    return {str(status): {"description": ", ".join(examples),
                          "content": _json(ref("Problem"), examples, problems.CONTENT_TYPE)}
            for status, examples in sorted(by_status.items())}


AUTH = ("unauthorized", "insufficient-scope")
PLID_PARAM = {"name": "plId", "in": "path", "required": True, "schema": {"type": "string"},
              "example": PLID}


def _op(op_id: str, summary: str, scope: str, responses: dict[str, Any], *,
        body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary,
                           "security": [{"bearer": [scope]}, {"apiKey": [scope]}],
                           "x-scope": scope, "responses": responses}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = body
    return out


def _ok(status: str, schema: str, description: str, example: Any,
        headers: dict[str, Any] | None = None) -> dict[str, Any]:
    examples = None if example is None else {"example": example}  # None: a live value
    out: dict[str, Any] = {"description": description,
                           "content": _json(ref(schema), examples)}
    if headers:
        out["headers"] = headers
    return {status: out}


def _summary_example(status: str = "pending") -> dict[str, Any]:
    return {"plId": PLID, "type": "order_confirmation", "queue": "rt", "status": status,
            "channel": "email", "address": "john.doe@example.com", "externalId": "1242",
            "errorCount": 0, "lastError": None, "createdAt": TS, "updatedAt": TS,
            "processAt": TS}


def _paths() -> dict[str, Any]:
    reason_body = {"required": False, "content": _json(ref("Reason"), {
        "example": {"reason": "customer asked us to stop"}})}
    location = {"Location": {"schema": {"type": "string"}}}
    webhook_example = {"id": 1, "url": "https://hooks.example.com/msgcenter",
                       "statuses": ["clicked", "processed"], "eventTypes": [], "enabled": True,
                       "disabledReason": None, "createdAt": TS}
    delivery_example = {
        "id": "1", "endpointId": 1, "url": "https://hooks.example.com/msgcenter",
        "webhookId": "msg_1", "kind": "processed", "plId": PLID, "status": "delivered",
        "attempts": [{"attempt": 1, "code": 200, "response": "ok", "durationMs": 12,
                      "at": TS}], "nextAttemptAt": None, "createdAt": TS, "updatedAt": TS}
    int_id = {"schema": {"type": "integer"}, "in": "path", "required": True}
    return {
        "/api/v1/events": {
            "post": _op("pushEvents", "Push one event, or a batch of up to 1,000", "push", {
                "201": {"description": "Stored: one event's plId (PushResult), or a batch's "
                        "plIds in order (BatchResult).", "headers": location,
                        "content": _json({"oneOf": [ref("PushResult"), ref("BatchResult")]}, {
                            "one": {"plId": PLID, "status": "pending",
                                    "href": f"/api/v1/events/{PLID}"},
                            "batch": {"events": [{"plId": PLID, "externalId": "1242"},
                                                 {"plId": PLID2, "externalId": "1243"}]}})},
                **_problems("invalid-json", "validation-failed", "too-many-events",
                            "body-too-large", "idempotency-conflict", *AUTH),
            }, body={"required": True, "content": _json(
                {"oneOf": [ref("EventInput"), ref("EventBatchInput")]},
                {"one": EVENT_EXAMPLE,
                 "batch": {"events": [EVENT_EXAMPLE, {**EVENT_EXAMPLE, "externalId": "1243",
                                                      "email": "ann@example.com"}]}})},
                params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                         "schema": {"type": "string"}, "description":
                         "One event only: the same key and event return the original "
                         "plId; the same key with another event is a 409."}],
                description="A batch is stored in one transaction: a bad event fails the "
                "whole batch and is named by its 0-based index."),
            "get": _op("listEvents", "List events, newest first (cursor pagination)", "read", {
                **_ok("200", "EventList", "One page.",
                      {"events": [_summary_example("processed")], "next": "YjE"}),
                **_problems("validation-failed", *AUTH),
            }, params=[
                {"name": "status", "in": "query", "schema": {"type": "string",
                                                              "enum": STATUSES}},
                {"name": "type", "in": "query", "schema": {"type": "string"}},
                {"name": "externalId", "in": "query", "schema": {"type": "string"}},
                {"name": "since", "in": "query", "schema": {"type": "string"},
                 "description": "Received at or after (ISO 8601)."},
                {"name": "until", "in": "query", "schema": {"type": "string"},
                 "description": "Received before (ISO 8601)."},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"},
                 "description": "The 'next' of the previous page."},
            ]),
        },
        "/api/v1/events/{plId}": {
            "get": _op("getEvent", "An event of any API (SOAP included) and what became of it",
                       "read", {
                           **_ok("200", "EventDetail", "The event.", None),
                           **_problems("not-found", *AUTH)}, params=[PLID_PARAM]),
        },
        "/api/v1/events/{plId}/retry": {
            "post": _op("retryEvent", "A final failed event back to pending", "admin", {
                **_ok("200", "EventSummary", "Pending again, due now.", _summary_example()),
                **_problems("not-found", "invalid-state", *AUTH)},
                params=[PLID_PARAM], body=reason_body,
                description="deliveryFailed, routingFailed, targetingFailed and tooOld "
                "events only; attempts and validity count afresh."),
        },
        "/api/v1/events/{plId}/cancel": {
            "post": _op("cancelEvent", "A pending or paused event ends (status ignored)",
                        "admin", {
                            **_ok("200", "EventSummary", "Cancelled: status ignored, the "
                                  "reason in its history and the exclusion log.",
                                  {**_summary_example("ignored"),
                                   "lastError": "cancelled by apikey:ops: customer asked "
                                                "us to stop"}),
                            **_problems("not-found", "invalid-state", *AUTH)},
                        params=[PLID_PARAM], body=reason_body),
        },
        "/api/v1/webhooks": {
            "get": _op("listWebhooks", "Webhook subscriptions", "admin", {
                **_ok("200", "WebhookList", "Every subscription (no secrets).",
                      {"webhooks": [webhook_example]}), **_problems(*AUTH)}),
            "post": _op("addWebhook", "Subscribe an endpoint (the secret is shown once)",
                        "admin", {
                            **_ok("201", "WebhookCreated", "Subscribed.",
                                  {**webhook_example, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILP"
                                   "ZIv2LWgUf5"}, location),
                            **_problems("validation-failed", *AUTH)},
                        body={"required": True, "content": _json(ref("WebhookInput"), {
                            "example": {"url": "https://hooks.example.com/msgcenter",
                                        "statuses": ["processed", "clicked"]}})}),
        },
        "/api/v1/webhooks/{webhookId}": {
            "get": _op("getWebhook", "One subscription", "admin", {
                **_ok("200", "Webhook", "The subscription.", webhook_example),
                **_problems("not-found", *AUTH)},
                params=[{"name": "webhookId", **int_id, "example": 1}]),
            "delete": _op("removeWebhook", "Remove a subscription and its deliveries", "admin", {
                "204": {"description": "Removed."}, **_problems("not-found", *AUTH)},
                params=[{"name": "webhookId", **int_id, "example": 1}]),
        },
        "/api/v1/webhooks/{webhookId}/enable": {
            "post": _op("enableWebhook", "Enable a subscription (after a 410, say)", "admin", {
                **_ok("200", "Webhook", "Enabled.", webhook_example),
                **_problems("not-found", *AUTH)},
                params=[{"name": "webhookId", **int_id, "example": 1}]),
        },
        "/api/v1/webhooks/{webhookId}/disable": {
            "post": _op("disableWebhook", "Disable a subscription", "admin", {
                **_ok("200", "Webhook", "Disabled.", {**webhook_example, "enabled": False,
                                                      "disabledReason": "disabled by an "
                                                      "operator"}),
                **_problems("not-found", *AUTH)},
                params=[{"name": "webhookId", **int_id, "example": 1}]),
        },
        "/api/v1/webhooks/{webhookId}/test": {
            "post": _op("testWebhook", "Send a signed test notification now", "admin", {
                **_ok("200", "Delivery", "The attempt and its answer.",
                      {**delivery_example, "kind": "test", "plId": None,
                       "webhookId": "msg_test_5e0c3b1f2a9d8c7e"}),
                **_problems("not-found", *AUTH)},
                params=[{"name": "webhookId", **int_id, "example": 1}]),
        },
        "/api/v1/webhooks/deliveries": {
            "get": _op("listDeliveries", "Webhook deliveries with every attempt", "admin", {
                **_ok("200", "DeliveryList", "Newest first.",
                      {"deliveries": [delivery_example]}),
                **_problems("validation-failed", *AUTH)}, params=[
                {"name": "status", "in": "query",
                 "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]),
        },
        "/api/v1/webhooks/deliveries/{deliveryId}/replay": {
            "post": _op("replayDelivery", "Send a delivery again (same webhook-id and body)",
                        "admin", {
                            **_ok("200", "Delivery", "Due now.", {
                                **delivery_example, "status": "pending", "nextAttemptAt": TS}),
                            **_problems("not-found", "conflict", *AUTH)},
                        params=[{"name": "deliveryId", **int_id, "example": 1}]),
        },
        "/api/v1/profiles/{externalId}": _profile_paths(),
        "/{ORGANIZATION}/campaign/{transactionalAPI}/{eventID}": {
            "post": _op("pushSuiteEvent", "The suite's transactional event API", "push", {
                **_ok("201", "SuiteEvent", "Stored.", {
                    "PKey": PLID2, "ctx": SUITE_EXAMPLE["ctx"],
                    "email": SUITE_EXAMPLE["email"], "scheduled": SUITE_EXAMPLE["scheduled"],
                    "expiration": SUITE_EXAMPLE["expiration"],
                    "href": f"mcshop/EVTcartAbandonment/{PLID2}",
                    "serverUrl": "http://127.0.0.1:8080", "status": "pending",
                    "type": "email"}, location),
                **_problems("invalid-json", "validation-failed", *AUTH)},
                params=_suite_params(), body={"required": True, "content": _json(
                    ref("SuiteEventInput"), {"example": SUITE_EXAMPLE})},
                description="eventID names the event type (a configured EVT... id, or the "
                "type's own name). Only mobilePhone chooses SMS; otherwise email."),
        },
        "/{ORGANIZATION}/campaign/{transactionalAPI}/{eventID}/{PKey}": {
            "get": _op("getSuiteEvent", "The suite-shaped event with its current status",
                       "read", {
                           **_ok("200", "SuiteEvent", "The event.", None),
                           **_problems("not-found", *AUTH)},
                       params=[*_suite_params(), {"name": "PKey", "in": "path",
                                                  "required": True, "schema":
                                                  {"type": "string"}, "example": PLID2}]),
        },
        PATH: {"get": {"operationId": "getOpenApi", "summary": "This document",
                       "security": [], "responses": {"200": {
                           "description": "OpenAPI 3.1", "content": {"application/json": {
                               "schema": {"type": "object"}}}}}}},
    }


PROFILE_INPUT_EXAMPLE = {
    "email": "ann.lee@example.com", "mobilePhone": "+33612345678", "language": "fr-CA",
    "country": "CA", "firstName": "Ann", "lastName": "Lee", "pushTokens": [],
    "attributes": {"tier": "gold"}}


def _profile_paths() -> dict[str, Any]:
    param = [{"name": "externalId", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": 255}, "example": "1242"}]
    shown = {"externalId": "1242", **PROFILE_INPUT_EXAMPLE,
             "subscriptions": {"email": True, "sms": True, "push": True},
             "unsubscribedAt": {}, "createdAt": TS, "updatedAt": TS}
    return {
        "put": _op("putProfile", "Create or replace a profile", "push", {
            **_ok("200", "Profile", "Replaced.", shown),
            **_ok("201", "Profile", "Created.", shown, {"Location": {"schema":
                                                                    {"type": "string"}}}),
            **_problems("invalid-json", "validation-failed", "body-too-large", *AUTH)},
            params=param, body={"required": True, "content": _json(ref("ProfileInput"), {
                "example": PROFILE_INPUT_EXAMPLE})},
            description="Fields left out are cleared; 'subscriptions' changes only the "
            "channels it names (an opt-out stays unless the body opts back in)."),
        "get": _op("getProfile", "A profile", "read", {
            **_ok("200", "Profile", "The profile.", None),
            **_problems("not-found", *AUTH)}, params=param),
        "delete": _op("eraseProfile", "Erase a profile (right to erasure)", "admin", {
            "204": {"description": "Erased: the profile is deleted and its events' addresses, "
                    "ids and data are blanked (statuses and counts are kept)."},
            **_problems("not-found", *AUTH)}, params=param),
    }


WEBHOOK_EXAMPLE = {
    "type": "processed", "timestamp": "2026-11-20T09:30:00.180Z", "data": {
        "plId": PLID, "eventType": "order_confirmation", "queue": "rt", "status": "processed",
        "channel": "email", "address": "john.doe@example.com", "connector": "smtp",
        "providerResponse": "250 2.0.0 Ok: queued as 4Y9K", "templateVersion": 3,
        "externalId": "1242"}}


def _webhooks() -> dict[str, Any]:
    """What we send to subscribed URLs (OpenAPI 3.1 ``webhooks``)."""
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    return {"eventNotification": {"post": {
        "operationId": "eventNotification",
        "summary": "A status change, open, click or unsubscribe (POSTed to your URL)",
        "parameters": [
            {"name": "webhook-id", **header, "description": "Stable across retries and "
             "replays: de-duplicate on it."},
            {"name": "webhook-timestamp", **header, "description": "Seconds since the epoch, "
             "of this attempt."},
            {"name": "webhook-signature", **header, "description": "v1,<base64 HMAC-SHA256 "
             "of \"{id}.{timestamp}.{body}\"> keyed with the secret's base64-decoded bytes."}],
        "requestBody": {"required": True, "content": _json(ref("WebhookPayload"),
                                                           {"processed": WEBHOOK_EXAMPLE})},
        "responses": {"2XX": {"description": "Delivered."},
                      "410": {"description": "Gone: the subscription is disabled."},
                      "default": {"description": "Retried: 5 s, 5 min, 30 min, 2 h, 5 h, "
                                  "10 h, 14 h, 20 h, 24 h, then failed."}}}}}


def _suite_params() -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
             "example": example}
            for name, example in (("ORGANIZATION", "shop"), ("transactionalAPI", "mcshop"),
                                  ("eventID", "EVTcartAbandonment"))]


def document(public_url: str) -> dict[str, Any]:
    """The whole document for a deployment reachable at ``public_url``."""
    paths = _paths()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Message Center JSON API", "version": VERSION,
                 "description": "Push transactional events, follow their status (events "
                 "from SOAP too), keep customer profiles and manage signed webhooks. "
                 "Errors are RFC 9457 problems (application/problem+json) with a stable "
                 "type. Auth: an API key as "
                 "`Authorization: Bearer` or `X-Api-Key`, with scopes push, read, admin."},
        "servers": [{"url": public_url.rstrip("/")}],
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key (msgcenter apikey create)."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
        },
    }


def document_bytes(public_url: str) -> bytes:
    return (json.dumps(document(public_url), indent=2, ensure_ascii=False) + "\n").encode()


@blueprint.get(PATH)
def serve() -> Response:
    from soap_service.http.api import context

    return Response(document_bytes(context().settings.public_url), mimetype="application/json")
