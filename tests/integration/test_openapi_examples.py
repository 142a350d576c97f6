"""Every example of the OpenAPI document, sent to a live ``msgcenter serve``.

Operations run in an order where each finds what it needs (a webhook to test, an event
to show, a failed event to retry); path parameters take the document's example unless a
live id is needed.  Each answer must have a documented status and match the documented
schema of that status.  A new operation without a place in :data:`ORDER` fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from rest_support import Stack, rest_stack
from webhook_support import Receiver

from soap_service.config import load_settings
from soap_service.worker import Dispatcher

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "schema" / "openapi.json").read_text(encoding="utf-8"))
ORDER = ["getOpenApi", "addWebhook", "listWebhooks", "getWebhook", "disableWebhook",
         "enableWebhook", "testWebhook", "pushEvents", "getEvent", "listEvents", "cancelEvent",
         "retryEvent", "pushSuiteEvent", "getSuiteEvent", "listDeliveries", "replayDelivery",
         "removeWebhook", "putProfile", "getProfile", "eraseProfile"]


def operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method, path, op) for path, item in DOC["paths"].items()
            for method, op in item.items() if isinstance(op, dict) and "operationId" in op}


def check(op: dict[str, Any], status: int, body: bytes, content_type: str) -> Any:
    documented = op["responses"].get(str(status))
    assert documented is not None, f"{op['operationId']}: undocumented status {status}: {body!r}"
    if not documented.get("content"):
        assert not body
        return None
    media_type = content_type.split(";")[0]
    media = documented["content"].get(media_type)
    assert media is not None, f"{op['operationId']}: {status} answered {media_type}"
    value = json.loads(body)
    Draft202012Validator({**media["schema"], "components": DOC["components"]}).validate(value)
    return value


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_every_example_against_a_live_server(kind: str, tmp_path: Path):
    """All operations, all request examples, answers valid against the document."""
    ops = operations()
    assert sorted(ops) == sorted(ORDER)
    with Receiver() as receiver, rest_stack(kind, tmp_path) as stack:
        live: dict[str, str] = {}
        for op_id in ORDER:
            method, path, op = ops[op_id]
            for example, value in _run(stack, receiver, op_id, method, path, op, live):
                _remember(op_id, example, value, live, receiver)


def _path_params(op: dict[str, Any], live: dict[str, str]) -> dict[str, str]:
    """Path parameters: a live id when one was remembered, else the document's example."""
    return {p["name"]: live.get(p["name"], str(p.get("example", "")))
            for p in op.get("parameters", []) if p["in"] == "path"}


def _run(stack: Stack, receiver: Receiver, op_id: str, method: str, path: str,
         op: dict[str, Any], live: dict[str, str]):
    if op_id == "retryEvent":
        _fail_an_event(stack, live)
    url = path.format(**_path_params(op, live))
    body = op.get("requestBody")
    examples = body["content"]["application/json"]["examples"] if body else {"-": None}
    for name, example in examples.items():
        value = None if example is None else example["value"]
        if op_id == "addWebhook":
            value = {**value, "url": receiver.url}
        reply = stack.call(method.upper(), url, value)
        got = check(op, reply.status, reply.body, reply.content_type)
        assert 200 <= reply.status < 300, (op_id, name, reply.status, reply.body)
        if op_id == "addWebhook":
            receiver.secret = got["secret"]
        yield name, got


def _remember(op_id: str, example: str, value: Any, live: dict[str, str],
              receiver: Receiver) -> None:
    if op_id == "addWebhook":
        live["webhookId"] = str(value["id"])
    elif op_id == "pushEvents" and example == "one":
        live["plId"] = value["plId"]
    elif op_id == "pushEvents":
        assert len(value["events"]) == 2
    elif op_id == "pushSuiteEvent":
        live["PKey"] = value["PKey"]
    elif op_id == "testWebhook":
        assert value["status"] == "delivered" and value["attempts"][0]["code"] == 200
        live["deliveryId"] = value["id"]
        assert [r.headers["webhook-id"] for r in receiver.verified()] == [value["webhookId"]]
    elif op_id == "getEvent":
        assert value["plId"] == live["plId"]
    elif op_id == "replayDelivery":
        assert value["status"] == "pending"


def _fail_an_event(stack: Stack, live: dict[str, str]) -> None:
    """A routingFailed event to retry: pushed, then dispatched once (no template)."""
    reply = stack.call("POST", "/api/v1/events", {"type": "no_template_here",
                                                  "email": "r@example.com", "ctx": {}})
    settings = load_settings({k: v for k, v in stack.env.items() if k.startswith("MC_")})
    dispatcher = Dispatcher(settings, stack.db)
    try:
        dispatcher.drain()
    finally:
        dispatcher.close()
    live["plId"] = reply.json["plId"]
