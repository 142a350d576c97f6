"""The schemas of the OpenAPI document (``components/schemas``) and their helpers.

Split from ``openapi.py`` (which builds the paths and serves the document) to keep each
readable; JSON Schema 2020-12 as OpenAPI 3.1 says, so the tests validate answers and
examples against these with ``jsonschema``.
"""

from __future__ import annotations

from typing import Any

from soap_service.http import problems
from soap_service.models import WEBHOOK_KINDS, EventStatus

STATUSES = [s.value for s in EventStatus]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _s(kind: str, description: str = "", **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    if description:
        out["description"] = description
    out.update(more)
    return out


NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
DATE = {"type": ["string", "null"], "format": "date-time"}


def _profile_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the input's properties, the answer's properties) of a profile."""
    channels = {c: _s("boolean") for c in ("email", "sms", "push")}
    data = {
        "email": NULLABLE_STR, "mobilePhone": {**NULLABLE_STR, "description": "E.164 (a "
                                                "national number is read in the default "
                                                "country)."},
        "pushTokens": _s("array", items=_s("string"), maxItems=20),
        "language": {**NULLABLE_STR, "description": "A language tag: fr, fr-CA."},
        "country": NULLABLE_STR, "firstName": NULLABLE_STR, "lastName": NULLABLE_STR,
        "attributes": _s("object", "Free data; templates read profile.attributes.NAME.",
                         additionalProperties=True),
    }
    inp = {**data, "externalId": _s("string", "Optional; the path's.", maxLength=255),
           "subscriptions": _s("object", "Opt in (true) or out (false) of the channels named; "
                               "the others stay as they are.", properties=channels,
                               additionalProperties=False)}
    out = {"externalId": _s("string"), **data,
           "subscriptions": _s("object", required=list(channels), properties=channels),
           "unsubscribedAt": _s("object", "When each opted-out channel was left.",
                                additionalProperties=DATE),
           "createdAt": DATE, "updatedAt": DATE}
    return inp, out


def schemas() -> dict[str, Any]:
    profile_in, profile_props = _profile_schemas()
    ctx = _s("object", "The data for personalisation: objects become elements, arrays repeat "
             "an element, \"@name\" keys are attributes, \"#text\" an element's text.",
             additionalProperties=True)
    event_in = _s("object", "One event. Field names are the SOAP event's attributes; unknown "
                  "fields are kept as attributes.", required=["type", "ctx"],
                  additionalProperties=True, properties={
                      "type": _s("string", "The event type.", maxLength=64),
                      "email": _s("string", "Required for the email channel.",
                                  maxLength=320),
                      "mobilePhone": _s("string", "Required for the SMS channel."),
                      "wishedChannel": {"type": ["integer", "string"], "description":
                                        "0 email (default), 1 SMS, 40/41/42 push."},
                      "emailFormat": {"type": ["integer", "string"],
                                      "description": "0 unknown, 1 text, 2 html."},
                      "externalId": _s("string", maxLength=255),
                      "origin": _s("string"), "language": _s("string"),
                      "country": _s("string"),
                      "scheduled": _s("string", "ISO 8601; the T is optional."),
                      "expiration": _s("string", "ISO 8601; the T is optional."),
                      "registrationToken": _s("string", "Push address."),
                      "mobileApp": _s("object", properties={"uuid": _s("string")}),
                      "idempotencyKey": _s("string", "The same key with the same event "
                                           "returns the original plId.", maxLength=255),
                      "queue": _s("string", "rt (default) or batch; on a batch, set it "
                                  "on the batch.", enum=["rt", "batch"]),
                      "ctx": ref("Ctx"),
                  })
    batch_in = _s("object", "Up to 1,000 events stored in one transaction, all or none.",
                  required=["events"], additionalProperties=False, properties={
                      "events": _s("array", items=ref("EventInput"), minItems=1,
                                   maxItems=1000),
                      "queue": _s("string", enum=["rt", "batch"])})
    summary_props = {
        "plId": _s("string"), "type": _s("string"), "queue": _s("string", enum=["rt", "batch"]),
        "status": _s("string", enum=STATUSES), "channel": _s("string"),
        "address": NULLABLE_STR, "externalId": NULLABLE_STR, "errorCount": _s("integer"),
        "lastError": NULLABLE_STR, "createdAt": DATE, "updatedAt": DATE, "processAt": DATE,
    }
    summary = _s("object", required=list(summary_props), properties=summary_props)
    at = {"at": DATE}
    detail_props = {
        **summary_props, "email": NULLABLE_STR, "mobilePhone": NULLABLE_STR,
        "registrationToken": NULLABLE_STR, "mobileAppUuid": NULLABLE_STR,
        "wishedChannel": _s("integer"), "emailFormat": _s("integer"), "origin": NULLABLE_STR,
        "language": NULLABLE_STR, "country": NULLABLE_STR, "scheduled": DATE,
        "expiration": DATE, "requeuedAt": DATE, "parentPlId": NULLABLE_STR,
        "attributes": _s("object", additionalProperties={"type": "string"}), "ctx": ref("Ctx"),
        "ctxXml": _s("string"),
        "history": _s("array", items=_s("object", required=["status", "reason", "at"],
                                        properties={"status": _s("string"),
                                                    "reason": _s("string"), **at})),
        "attempts": _s("array", items=_s("object", properties={
            **at, "outcome": _s("string"), "channel": _s("string"), "connector": NULLABLE_STR,
            "address": NULLABLE_STR, "code": NULLABLE_INT, "response": _s("string"),
            "template": NULLABLE_STR, "templateVersion": NULLABLE_INT,
            "messageId": NULLABLE_STR, "durationMs": NULLABLE_INT,
            "providerId": NULLABLE_STR,  # the provider's id for the message
            "receipt": {"type": ["string", "null"], "enum": ["delivered", "failed", None]},
            "receiptAt": DATE,
            "variant": {**NULLABLE_STR, "description": "The template's language variant "
                        "used (null: its default content)."}})),
        "tracking": _s("array", items=_s("object", properties={
            "kind": _s("string", enum=["open", "click"]), "url": NULLABLE_STR,
            "machine": _s("boolean"), **at})),
        "exclusions": _s("array", items=_s("object", properties={
            "address": NULLABLE_STR, "reason": _s("string"), **at})),
        "followUps": _s("array", items=_s("object", properties={
            "plId": _s("string"), "type": _s("string"), "status": _s("string"),
            "rule": NULLABLE_STR, "createdAt": DATE})),
        "webhooks": _s("array", items=_s("object", properties={
            "id": _s("string"), "endpointId": _s("integer"), "webhookId": _s("string"),
            "kind": _s("string"), "status": _s("string"), "attempts": _s("integer"),
            "lastCode": NULLABLE_INT, "createdAt": DATE})),
    }
    suite_props = {
        "PKey": _s("string", "The event's plId."), "ctx": ref("Ctx"), "email": NULLABLE_STR,
        "mobilePhone": _s("string", "Only when the event has one."),
        "scheduled": NULLABLE_STR, "expiration": NULLABLE_STR,
        "href": _s("string", "{transactionalAPI}/{eventID}/{PKey}: GET it under "
                   "/{ORGANIZATION}/campaign/."),
        "serverUrl": _s("string"), "status": _s("string", enum=STATUSES),
        "type": _s("string", "The channel: email, sms or push."),
    }
    webhook_props = {
        "id": _s("integer"), "url": _s("string"),
        "statuses": _s("array", "Kinds wanted; empty: the default outcomes.",
                       items=_s("string", enum=list(WEBHOOK_KINDS))),
        "eventTypes": _s("array", "Event types wanted; empty: all.", items=_s("string")),
        "enabled": _s("boolean"), "disabledReason": NULLABLE_STR, "createdAt": DATE,
    }
    delivery_props = {
        "id": _s("string"), "endpointId": _s("integer"), "url": _s("string"),
        "webhookId": _s("string", "The webhook-id header: the same on every retry."),
        "kind": _s("string"), "plId": NULLABLE_STR,
        "status": _s("string", enum=["pending", "delivered", "failed"]),
        "attempts": _s("array", items=_s("object", properties={
            "attempt": _s("integer"), "code": NULLABLE_INT, "response": _s("string"),
            "durationMs": NULLABLE_INT, **at})),
        "nextAttemptAt": DATE, "createdAt": DATE, "updatedAt": DATE,
    }
    return {
        "Ctx": ctx,
        "EventInput": event_in,
        "EventBatchInput": batch_in,
        "PushResult": _s("object", required=["plId", "status", "href"], properties={
            "plId": _s("string"), "status": _s("string", enum=["pending"]),
            "href": _s("string")}),
        "BatchResult": _s("object", required=["events"], properties={
            "events": _s("array", items=_s("object", required=["plId", "externalId"],
                                           properties={"plId": _s("string"),
                                                       "externalId": NULLABLE_STR}))}),
        "EventSummary": summary,
        "EventList": _s("object", required=["events", "next"], properties={
            "events": _s("array", items=ref("EventSummary")),
            "next": {"type": ["string", "null"],
                     "description": "Cursor of the next page; null on the last."}}),
        "EventDetail": _s("object", required=list(detail_props), properties=detail_props),
        "Reason": _s("object", properties={"reason": _s("string", maxLength=500)}),
        "SuiteEventInput": _s("object", required=["ctx"], additionalProperties=True,
                              properties={"email": _s("string"), "mobilePhone": _s("string"),
                                          "scheduled": _s("string"),
                                          "expiration": _s("string"), "ctx": ref("Ctx")}),
        "SuiteEvent": _s("object", required=[k for k in suite_props if k != "mobilePhone"],
                         properties=suite_props, additionalProperties=False),
        "WebhookInput": _s("object", required=["url"], properties={
            "url": _s("string", format="uri"),
            "statuses": webhook_props["statuses"], "eventTypes": webhook_props["eventTypes"]}),
        "Webhook": _s("object", required=list(webhook_props), properties=webhook_props),
        "WebhookCreated": _s("object", required=[*webhook_props, "secret"], properties={
            **webhook_props, "secret": _s("string", "whsec_...: shown once.")}),
        "WebhookList": _s("object", required=["webhooks"], properties={
            "webhooks": _s("array", items=ref("Webhook"))}),
        "Delivery": _s("object", required=list(delivery_props), properties=delivery_props),
        "DeliveryList": _s("object", required=["deliveries"], properties={
            "deliveries": _s("array", items=ref("Delivery"))}),
        "WebhookPayload": _s(
            "object", "The body of a webhook (docs/webhooks.md); signed per Standard Webhooks.",
            required=["type", "timestamp", "data"], properties={
                "type": _s("string", "The status the event moved to, or opened, clicked, "
                           "unsubscribed, delivered; test for a test notification.",
                           enum=[*WEBHOOK_KINDS, "test"]),
                "timestamp": _s("string", "When it happened (ISO 8601, UTC).",
                                format="date-time"),
                "data": _s("object", required=[], additionalProperties=True, properties={
                    "plId": NULLABLE_STR, "eventType": NULLABLE_STR, "queue": NULLABLE_STR,
                    "status": NULLABLE_STR, "channel": NULLABLE_STR, "address": NULLABLE_STR,
                    "connector": NULLABLE_STR, "providerResponse": NULLABLE_STR,
                    "templateVersion": NULLABLE_INT, "externalId": NULLABLE_STR,
                    "reason": _s("string"), "url": _s("string"), "machine": _s("boolean"),
                    "endpointId": _s("integer")}),
            }),
        "ProfileInput": _s("object", "A profile's data; a field left out is cleared.",
                           additionalProperties=False, properties=profile_in),
        "Profile": _s("object", required=list(profile_props), properties=profile_props,
                      additionalProperties=False),
        "Problem": _s("object", "RFC 9457 problem details.", required=["type", "title",
                                                                        "status"],
                      properties={
                          "type": _s("string", enum=[t.uri for t in problems.TYPES.values()]),
                          "title": _s("string"), "status": _s("integer"),
                          "detail": _s("string"), "instance": _s("string"),
                          "index": _s("integer", "The 0-based index of the bad event of a "
                                      "batch."),
                          "errorId": _s("string", "Server errors: the id in the log.")}),
    }
