"""The pure parts of the JSON API and webhooks: JSON events, body limits, problems,
cursors, ctx as JSON, Standard Webhooks signatures and the fan-out plan."""

from __future__ import annotations

import io
import json
import logging
import random
from datetime import UTC, datetime

import pytest
from lxml import etree
from standardwebhooks.webhooks import Webhook

from soap_service import errors, eventstatus, webhooks
from soap_service.config import Settings
from soap_service.ctxdata import ctx_from_json, ctx_markup, ctx_text, ctx_to_json, fill_ctx
from soap_service.http import body, problems
from soap_service.http.jsonevent import build_event
from soap_service.models import Queue, make_plid
from soap_service.store.webhooks import Endpoint, EventFacts, OutboxRow

NOW = datetime(2030, 1, 2, 3, 4, 5)


# ---------------------------------------------------------------- JSON events


def test_json_event_becomes_the_soap_values():
    """Fields become the attributes SOAP would carry; unknown ones are kept (booleans as
    true/false, numbers as text, objects as JSON text); null is left out; the ctx is the
    XML a SOAP caller would have sent; the ctx as sent is kept as JSON."""
    event = build_event({"type": "t", "email": "a@example.com", "wishedChannel": 0,
                         "vip": True, "score": 1.5, "tags": ["a", 1], "none": None,
                         "mobileApp": {"uuid": "app-1"}, "queue": "batch",
                         "ctx": {"client": {"@id": "7", "name": "Ann & Bob <3"}}})
    wire = event.wire
    assert wire.attributes == {"type": "t", "email": "a@example.com", "wishedChannel": "0",
                               "vip": "true", "score": "1.5", "tags": '["a",1]'}
    assert event.queue is Queue.BATCH and wire.mobile_app_uuid == "app-1"
    assert wire.ctx_xml == ('<ctx><client id="7"><name>Ann &amp; Bob &lt;3</name>'
                            "</client></ctx>")
    assert json.loads(event.ctx_json) == {"client": {"@id": "7", "name": "Ann & Bob <3"}}
    assert wire.payload_hash is None


def test_idempotency_digest_ignores_field_order():
    """With a key, equal events (fields in any order) have one digest; another differs."""
    one = build_event({"type": "t", "email": "a@example.com", "ctx": {"a": 1, "b": 2}},
                      header_key="k")
    two = build_event({"ctx": {"b": 2, "a": 1}, "email": "a@example.com", "type": "t"},
                      header_key="k")
    other = build_event({"type": "t", "email": "b@example.com", "ctx": {"a": 1, "b": 2},
                         "idempotencyKey": "k"})
    assert one.wire.payload_hash == two.wire.payload_hash is not None
    assert other.wire.payload_hash not in (None, one.wire.payload_hash)


def test_ctx_markup_is_what_fill_ctx_builds():
    """The REST path writes the <ctx> as text; for 5,000 random JSON values it is the
    tree the element-by-element builder (CLI, seeds) makes, once parsed."""
    rnd = random.Random(11)
    names = ["a", "b", "client", "x1", "é", "_n", "n.m", "n-o"]
    scalars = ["", "plain", "a&b<c>d\"e'f", "line\nbreak\r\n\ttab", "ünï", 0, 1.5, True,
               False, None, 12345678901234567890, " lead "]

    def value(depth: int):
        r = rnd.random()
        if depth > 3 or r < 0.4:
            return rnd.choice(scalars)
        if r < 0.7:
            out = {}
            for _ in range(rnd.randint(0, 4)):
                key = rnd.choice([rnd.choice(names), "@" + rnd.choice(names), "#text"])
                out[key] = value(depth + 1) if key[0] not in "@#" else rnd.choice(scalars)
            return out
        return [value(depth + 1) for _ in range(rnd.randint(0, 3))]

    for _ in range(5000):
        data = {rnd.choice(names): value(1) for _ in range(rnd.randint(0, 4))}
        built = etree.Element("ctx")
        fill_ctx(built, data)
        assert ctx_text(etree.fromstring(ctx_markup(data))) == ctx_text(
            etree.fromstring(ctx_text(built)))


@pytest.mark.parametrize(("data", "message"), [
    ([], "must be a JSON object"),
    ({"type": "t"}, "missing field 'ctx'"),
    ({"type": "t", "ctx": []}, "field 'ctx' must be an object"),
    ({"type": 1, "ctx": {}}, "field 'type' must be a string"),
    ({"type": "t", "email": ["a"], "ctx": {}}, "field 'email' must be a string"),
    ({"type": "t", "wishedChannel": True, "ctx": {}}, "must be an integer"),
    ({"type": "t", "wishedChannel": 1.5, "ctx": {}}, "must be an integer"),
    ({"type": "t", "queue": "now", "ctx": {}}, "field 'queue'"),
    ({"type": "t", "mobileApp": "x", "ctx": {}}, "field 'mobileApp'"),
    ({"type": "t", "a b": "x", "ctx": {}}, "'a b'"),
    ({"type": "t", "x" * 65: "x", "ctx": {}}, "longer than 64"),
    ({"type": "t", "ctx": {"2x": 1}}, "field 'ctx'"),
    ({"type": "t\x00", "ctx": {}}, "field 'type'"),
    ({"type": "t", "note": "\x1b[31m", "ctx": {}}, "field 'note'"),
    ({"type": "t", "ctx": {"a": "\ud800"}}, "field 'ctx'"),
    ({"type": "t", "ctx": {"a:b": "x"}}, "field 'ctx'"),
    ({"type": "t", "ctx": {"a\"><b": "x"}}, "field 'ctx'"),
    ({"type": "t", "ctx": {"@x y": "1"}}, "field 'ctx'"),
    ({"type": "t", "ctx": {"a²": "x"}}, "field 'ctx'"),
])
def test_json_event_shape_errors_name_the_field(data, message):
    """Wrong shapes are ValidationFailed naming the field."""
    with pytest.raises(errors.ValidationFailed, match=message):
        build_event(data)


def test_ctx_json_round_trip():
    """JSON -> <ctx> -> JSON keeps the structure (values as strings)."""
    data = {"client": {"@id": "7", "firstname": "Ann"}, "items": [{"n": "1"}, {"n": "2"}],
            "note": "x"}
    assert ctx_to_json(ctx_text(ctx_from_json(json.dumps(data)))) == data
    assert ctx_to_json("<ctx/>") == {} and ctx_to_json("not xml") == {}
    assert ctx_to_json("<ctx>hi</ctx>") == {"#text": "hi"}


# ---------------------------------------------------------------- bodies


def _environ(data: bytes, *, length: bool = True, chunked: bool = False) -> dict:
    env: dict = {"wsgi.input": io.BytesIO(data)}
    if length:
        env["CONTENT_LENGTH"] = str(len(data))
    if chunked:
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    return env


def test_read_body_limits():
    """Declared too large: refused and drained; chunked over the limit: refused, never
    truncated; a malformed Content-Length is a client error."""
    env = _environ(b"x" * 100)
    with pytest.raises(body.BodyTooLarge):
        body.read_body(env, 10)
    assert env["wsgi.input"].read() == b""  # drained
    assert body.read_body(_environ(b"abc", length=False, chunked=True), 10) == b"abc"
    with pytest.raises(body.BodyTooLarge):
        body.read_body(_environ(b"y" * 11, length=False, chunked=True), 10)
    with pytest.raises(errors.ClientError, match="Content-Length"):
        body.read_body({"wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "ten"}, 10)


@pytest.mark.parametrize(("raw", "error"), [
    (b"", body.InvalidJson), (b"  ", body.InvalidJson), (b"{", body.InvalidJson),
    (b"\xff\xfe", body.InvalidJson), (b"[Infinity]", body.InvalidJson),
    (b"[" * 5 + b"]" * 5, body.JsonTooDeep), (b"[" * 5000 + b"]" * 5000, body.JsonTooDeep),
])
def test_parse_json_refuses(raw, error):
    """Empty, broken, non-UTF-8, non-JSON constants and too deep nesting are refused."""
    with pytest.raises(error):
        body.parse_json(raw, 4)


def test_json_depth_counts_containers():
    """Depth counts objects and arrays only, and the walk stops once past the limit."""
    assert body.json_depth(1, 9) == 0 and body.json_depth([], 9) == 1
    assert body.json_depth({"a": [{"b": [1]}]}, 9) == 4
    assert body.json_depth([[[[[[]]]]]], 2) == 3  # stops once past the limit
    assert body.parse_json(b'\xef\xbb\xbf{"a": 1}', 4) == {"a": 1}  # a UTF-8 BOM is fine


# ---------------------------------------------------------------- problems


@pytest.mark.parametrize(("exc", "status", "name"), [
    (body.InvalidJson("x"), 400, "invalid-json"),
    (body.JsonTooDeep("x"), 400, "json-too-deep"),
    (body.BodyTooLarge("x"), 413, "body-too-large"),
    (problems.UnsupportedMediaType("x"), 415, "unsupported-media-type"),
    (errors.TooManyEvents("x"), 422, "too-many-events"),
    (errors.InvalidBatchItem(3, "x"), 422, "validation-failed"),
    (errors.ValidationFailed("x"), 422, "validation-failed"),
    (errors.InvalidCredentials("Invalid login", "unknown API key"), 401, "unauthorized"),
    (errors.Forbidden("no scope"), 403, "insufficient-scope"),
    (errors.ZoneDenied("XSV-350013", "outside"), 403, "zone-denied"),
    (errors.NotFound("x"), 404, "not-found"),
    (errors.InvalidState("x"), 409, "invalid-state"),
    (errors.Conflict("idempotency key already used for a different event"), 409,
     "idempotency-conflict"),
    (errors.Conflict("duplicate"), 409, "conflict"),
    (errors.Unavailable("database unavailable", "connection refused"), 503, "unavailable"),
])
def test_problem_for_each_error(exc, status, name):
    """Each error class has its status and stable type; a batch error carries its index;
    a 401 says how to authenticate, a 503 when to come back, a 413 closes."""
    found = problems.problem_for(exc)
    doc = found.document("/api/v1/events")
    assert found.status == status and doc["type"] == f"urn:msgcenter:problem:{name}"
    assert doc["instance"] == "/api/v1/events"
    headers = dict(found.headers)
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer") and doc["detail"] == (
            "Unknown API key.")
    if status == 503:
        assert headers["Retry-After"] == "5" and "connection refused" not in json.dumps(doc)
    if status == 413:
        assert headers["Connection"] == "close"
    if isinstance(exc, errors.InvalidBatchItem):
        assert doc["index"] == 3


def test_unexpected_error_is_a_500_with_an_id_in_the_log(caplog):
    """Our bug: 500, a short detail with an error id that is also in the log line; the
    exception's text never reaches the caller."""
    with caplog.at_level(logging.ERROR, logger="soap_service.http.problems"):
        found = problems.problem_for(RuntimeError("secret internals"))
    doc = found.document()
    assert found.status == 500 and "secret internals" not in json.dumps(doc)
    assert doc["errorId"] in caplog.text


# ---------------------------------------------------------------- cursors and ids


def test_cursor_round_trip_and_refusals():
    """A cursor names the last id of a page; anything else is refused, not guessed."""
    assert eventstatus.decode_cursor(eventstatus.encode_cursor(12345)) == 12345
    for bad in ("!!", "YWJj", ""):
        with pytest.raises(errors.ValidationFailed):
            eventstatus.decode_cursor(bad)


def test_primary_key_of_a_plid():
    """Our instance's plIds and bare keys resolve; another instance's or junk is NotFound."""
    assert eventstatus.primary_key(str(make_plid(1, 42)), 1) == 42
    assert eventstatus.primary_key("42", 1) == 42
    for bad in (str(make_plid(3, 42)), "abc", "0", "-5"):
        with pytest.raises(errors.NotFound):
            eventstatus.primary_key(bad, 1)


# ---------------------------------------------------------------- webhooks


def test_signature_matches_the_standard_webhooks_library():
    """Our header equals what the library computes, and the library verifies it."""
    secret = webhooks.new_secret()
    payload = b'{"type":"processed"}'
    now = datetime.now(UTC).replace(tzinfo=None)
    headers = webhooks.headers(secret, "msg_42", payload, now)
    timestamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    library = Webhook(secret).sign("msg_42", timestamp, payload.decode())
    assert headers["webhook-signature"] == library
    assert Webhook(secret).verify(payload, headers) == {"type": "processed"}
    assert secret.startswith("whsec_") and secret != webhooks.new_secret()


def _endpoint(i: int, kinds=(), types=(), enabled=True) -> Endpoint:
    return Endpoint(i, f"https://h{i}.example.com", "whsec_x", frozenset(kinds),
                    frozenset(types), enabled, None, NOW)


def test_plan_fans_out_to_wanting_endpoints_with_one_body():
    """One delivery per (notification, endpoint wanting its kind and type); the same
    webhook-id for every endpoint of one notification; SPEC §8's payload."""
    facts = {5: EventFacts("order", "rt", "processed", 1, None, "+33600000000", None, "x-1")}
    rows = [OutboxRow(11, "processed", 5, {"status": "processed", "templateVersionId": 9,
                                           "providerResponse": "250 ok"}, NOW),
            OutboxRow(12, "pending", 5, {"status": "pending"}, NOW),
            OutboxRow(13, "clicked", 5, {"url": "https://s.example.com", "machine": False},
                      NOW)]
    endpoints = [_endpoint(1), _endpoint(2, kinds=["clicked"]), _endpoint(3, types=["other"])]
    plan = webhooks.plan_deliveries(Settings(instance_id=2))(rows, facts, {9: 4}, endpoints)
    assert [(d.endpoint_id, d.message_id, d.kind) for d in plan] == [
        (1, "msg_11", "processed"), (1, "msg_13", "clicked"), (2, "msg_13", "clicked")]
    body_ = json.loads(plan[0].payload)
    assert body_ == {"type": "processed", "timestamp": "2030-01-02T03:04:05.000Z", "data": {
        "plId": str(make_plid(2, 5)), "eventType": "order", "queue": "rt",
        "status": "processed", "channel": "sms", "address": "+33600000000", "connector": None,
        "providerResponse": "250 ok", "templateVersion": 4, "externalId": "x-1"}}
    click = json.loads(plan[1].payload)["data"]
    assert click["url"] == "https://s.example.com" and click["status"] == "processed"
    assert plan[1].payload == plan[2].payload
