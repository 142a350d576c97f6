"""``/api/v1`` over real HTTP against ``msgcenter serve``, on SQLite and PostgreSQL.

Push one event and a batch through the same ingest as SOAP, read events pushed by SOAP
and by REST, list them page by page, retry and cancel them; and every bad input answered
with a 4xx ``application/problem+json`` that stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from rest_support import Stack, rest_stack

from soap_service.models import make_plid, split_plid

PROBLEM = "application/problem+json"
EVENT = {"type": "order_confirmation", "email": "john.doe@example.com", "externalId": "c-1",
         "ctx": {"client": {"firstname": "John"}, "items": [{"@num": "1", "name": "USB key",
                                                             "price": 20}]}}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"rest-{request.param}")
    with rest_stack(request.param, tmp, env={"MC_MAX_JSON_BYTES": "65536",
                                             "MC_MAX_EVENTS_PER_CALL": "20",
                                             "MC_MAX_JSON_DEPTH": "12"}) as live:
        yield live


def problem(reply, status: int, name: str) -> dict:
    assert reply.status == status, reply.body
    assert reply.content_type.startswith(PROBLEM)
    doc = reply.json
    assert doc["type"] == f"urn:msgcenter:problem:{name}" and doc["status"] == status
    assert doc["title"] and "Traceback" not in reply.body.decode()
    return doc


# ---------------------------------------------------------------- push and read


def test_push_one_event_then_read_it(stack: Stack):
    """POST one event -> 201 with its plId and Location; GET shows it pending, with the ctx
    as sent (numbers stay numbers), unknown fields kept as attributes, and its history."""
    reply = stack.call("POST", "/api/v1/events", {**EVENT, "campaign": "winter", "vip": True})
    assert reply.status == 201 and reply.content_type.startswith("application/json")
    plid = reply.json["plId"]
    assert reply.json == {"plId": plid, "status": "pending", "href": f"/api/v1/events/{plid}"}
    assert reply.headers["location"] == f"/api/v1/events/{plid}"
    assert split_plid(int(plid))[0] == 1
    shown = stack.call("GET", f"/api/v1/events/{plid}", key="read")
    assert shown.status == 200
    event = shown.json
    assert event["status"] == "pending" and event["type"] == "order_confirmation"
    assert event["channel"] == "email" and event["address"] == "john.doe@example.com"
    assert event["ctx"] == EVENT["ctx"]
    assert event["attributes"]["campaign"] == "winter" and event["attributes"]["vip"] == "true"
    assert '<price>20</price>' in event["ctxXml"]
    assert [h["status"] for h in event["history"]] == ["pending"]
    assert event["attempts"] == [] and event["tracking"] == [] and event["followUps"] == []


def test_event_pushed_by_soap_is_readable(stack: Stack):
    """An event pushed through SOAP (zeep, msgcenter push) has a status page too; its XML
    ctx is shown as JSON."""
    out = run_cli(stack.env, "push", "--type", "welcome", "--email", "soap@example.com",
                  "--ctx", "<client><firstname>Ann</firstname></client>", "--token",
                  "ops/pw-123456", "--url", stack.url)
    plid = out.stdout.strip()
    event = stack.call("GET", f"/api/v1/events/{plid}", key="read").json
    assert event["type"] == "welcome" and event["ctx"] == {"client": {"firstname": "Ann"}}


def test_batch_is_one_transaction(stack: Stack):
    """A batch answers the plIds in order with their externalIds; queue applies to all."""
    events = [{**EVENT, "externalId": f"b-{i}"} for i in range(3)]
    reply = stack.call("POST", "/api/v1/events", {"events": events, "queue": "batch"})
    assert reply.status == 201
    got = reply.json["events"]
    assert [e["externalId"] for e in got] == ["b-0", "b-1", "b-2"]
    ids = [int(e["plId"]) for e in got]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert stack.call("GET", f"/api/v1/events/{ids[2]}").json["queue"] == "batch"


def test_idempotency_key_header_and_field(stack: Stack):
    """Idempotency-Key as in SOAP: the same key and event -> the same plId, nothing new;
    the same key with another event -> 409 idempotency-conflict."""
    before = stack.count_events()
    first = stack.call("POST", "/api/v1/events", EVENT, headers={"Idempotency-Key": "k-77"})
    again = stack.call("POST", "/api/v1/events", EVENT, headers={"Idempotency-Key": "k-77"})
    assert first.status == again.status == 201
    assert first.json["plId"] == again.json["plId"]
    other = stack.call("POST", "/api/v1/events", {**EVENT, "email": "x@example.com"},
                       headers={"Idempotency-Key": "k-77"})
    problem(other, 409, "idempotency-conflict")
    field = stack.call("POST", "/api/v1/events", {**EVENT, "idempotencyKey": "k-78"})
    field_again = stack.call("POST", "/api/v1/events", {**EVENT, "idempotencyKey": "k-78"})
    assert field.json["plId"] == field_again.json["plId"]
    assert stack.count_events() == before + 2


def test_list_with_filters_and_cursor(stack: Stack):
    """GET /events pages newest first with an opaque cursor until 'next' is null; filters
    by type, status, externalId and date; a bad cursor or status is a 422."""
    kind = "listing_type"
    pushed = [stack.call("POST", "/api/v1/events", {**EVENT, "type": kind,
                                                    "externalId": f"l-{i}"}).json["plId"]
              for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = f"/api/v1/events?type={kind}&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = stack.call("GET", query, key="read").json
        seen += [e["plId"] for e in page["events"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(pushed)) and pages == 3
    one = stack.call("GET", f"/api/v1/events?externalId=l-3&status=pending&type={kind}").json
    assert [e["plId"] for e in one["events"]] == [pushed[3]]
    future = stack.call("GET", "/api/v1/events?since=2999-01-01T00:00:00Z").json
    assert future == {"events": [], "next": None}
    problem(stack.call("GET", "/api/v1/events?cursor=%21%21"), 422, "validation-failed")
    problem(stack.call("GET", "/api/v1/events?status=done"), 422, "validation-failed")
    problem(stack.call("GET", "/api/v1/events?since=yesterday"), 422, "validation-failed")
    problem(stack.call("GET", "/api/v1/events?limit=0"), 422, "validation-failed")


def test_cancel_then_retry_rules(stack: Stack):
    """cancel: a pending event ends ignored with the reason in its history and exclusion
    log; cancelling again or retrying an ignored one is 409 invalid-state; retry applies
    to failed events only (the CLI uses the same core: events cancel/retry)."""
    plid = stack.call("POST", "/api/v1/events", EVENT).json["plId"]
    problem(stack.call("POST", f"/api/v1/events/{plid}/cancel", {"reason": "x"}, key="push"),
            403, "insufficient-scope")
    done = stack.call("POST", f"/api/v1/events/{plid}/cancel", {"reason": "customer left"},
                      key="admin")
    assert done.status == 200 and done.json["status"] == "ignored"
    assert "customer left" in done.json["lastError"]
    shown = stack.call("GET", f"/api/v1/events/{plid}").json
    assert shown["history"][-1]["status"] == "ignored"
    assert "customer left" in shown["exclusions"][0]["reason"]
    problem(stack.call("POST", f"/api/v1/events/{plid}/cancel"), 409, "invalid-state")
    problem(stack.call("POST", f"/api/v1/events/{plid}/retry"), 409, "invalid-state")
    cli = run_cli(stack.env, "events", "retry", plid, check=False)
    assert cli.returncode == 1 and "only deliveryFailed" in cli.stderr
    other = stack.call("POST", "/api/v1/events", EVENT).json["plId"]
    out = json.loads(run_cli(stack.env, "--json", "events", "cancel", other, "--reason",
                             "dup").stdout)
    assert out["status"] == "ignored"


def test_retry_failed_event_through_api(stack: Stack):
    """A routingFailed event (no template; the worker ran once) goes back to pending with
    attempts and validity afresh; the status history says who retried it."""
    from soap_service.config import load_settings
    from soap_service.worker import Dispatcher

    plid = stack.call("POST", "/api/v1/events", {**EVENT, "type": "no_template"}).json["plId"]
    settings = load_settings({k: v for k, v in stack.env.items() if k.startswith("MC_")})
    dispatcher = Dispatcher(settings, stack.db)
    try:
        dispatcher.drain()
    finally:
        dispatcher.close()
    assert stack.call("GET", f"/api/v1/events/{plid}").json["status"] == "routingFailed"
    again = stack.call("POST", f"/api/v1/events/{plid}/retry", {"reason": "template added"},
                       key="admin")
    assert again.status == 200 and again.json["status"] == "pending"
    shown = stack.call("GET", f"/api/v1/events/{plid}").json
    assert shown["requeuedAt"] is not None and shown["errorCount"] == 0
    assert shown["history"][-1] == {**shown["history"][-1], "status": "pending",
                                    "reason": "template added"}


# ---------------------------------------------------------------- bad input


BAD_BODIES = [
    ("not json", b"{nope", "invalid-json", 400),
    ("not utf-8", b'{"type": "\xff"}', "invalid-json", 400),
    ("empty", b"", "invalid-json", 400),
    ("an array", b"[]", "validation-failed", 422),
    ("too deep", ("[" * 40 + "]" * 40).encode(), "json-too-deep", 400),
    ("deep ctx", json.dumps({**EVENT, "ctx": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {
        "h": {"i": {"j": {"k": {"l": 1}}}}}}}}}}}}}).encode(), "json-too-deep", 400),
    ("NaN", b'{"type": "t", "email": "a@example.com", "ctx": {"n": NaN}}', "invalid-json",
     400),
    ("missing ctx", json.dumps({"type": "t", "email": "a@example.com"}).encode(),
     "validation-failed", 422),
    ("ctx not an object", json.dumps({**EVENT, "ctx": "hi"}).encode(), "validation-failed", 422),
    ("missing type", json.dumps({"email": "a@example.com", "ctx": {}}).encode(),
     "validation-failed", 422),
    ("email a number", json.dumps({**EVENT, "email": 42}).encode(), "validation-failed", 422),
    ("wishedChannel a list", json.dumps({**EVENT, "wishedChannel": [1]}).encode(),
     "validation-failed", 422),
    ("bad email", json.dumps({**EVENT, "email": "john@"}).encode(), "validation-failed", 422),
    ("sms without phone", json.dumps({**EVENT, "wishedChannel": 1}).encode(),
     "validation-failed", 422),
    ("bad phone", json.dumps({**EVENT, "wishedChannel": 1, "mobilePhone": "+331"}).encode(),
     "validation-failed", 422),
    ("national phone", json.dumps({**EVENT, "wishedChannel": "1",
                                   "mobilePhone": "06 12 34 56 78"}).encode(),
     "validation-failed", 422),
    ("bad scheduled", json.dumps({**EVENT, "scheduled": "tomorrow"}).encode(),
     "validation-failed", 422),
    ("bad expiration", json.dumps({**EVENT, "expiration": "2026-13-40 25:00"}).encode(),
     "validation-failed", 422),
    ("bad queue", json.dumps({**EVENT, "queue": "fast"}).encode(), "validation-failed", 422),
    ("field not an XML name", json.dumps({**EVENT, "my field": "x"}).encode(),
     "validation-failed", 422),
    ("ctx key not an XML name", json.dumps({**EVENT, "ctx": {"1st": "x"}}).encode(),
     "validation-failed", 422),
    ("batch over the limit", json.dumps({"events": [EVENT] * 21}).encode(), "too-many-events",
     422),
    ("empty batch", json.dumps({"events": []}).encode(), "validation-failed", 422),
    ("too large", json.dumps({**EVENT, "ctx": {"blob": "x" * 70000}}).encode(),
     "body-too-large", 413),
]


@pytest.mark.parametrize(("case", "raw", "name", "status"), BAD_BODIES,
                         ids=[c[0] for c in BAD_BODIES])
def test_bad_body_is_a_problem_and_stores_nothing(stack: Stack, case, raw, name, status):
    """Each bad body: its 4xx problem, and not one event stored."""
    before = stack.count_events()
    reply = stack.call("POST", "/api/v1/events", raw=raw,
                       headers={"Content-Type": "application/json"})
    problem(reply, status, name)
    assert stack.count_events() == before


def test_control_characters_in_queries(stack: Stack):
    """A NUL in a query parameter is a 422, not a database error (PostgreSQL refuses NUL
    in text).  (gunicorn itself refuses a NUL in a header: see the in-process test.)"""
    for query in ("type=a%00b", "externalId=%00", "cursor=%00", "since=2026%00"):
        problem(stack.call("GET", f"/api/v1/events?{query}"), 422, "validation-failed")


def test_control_characters_in_the_idempotency_header(db, settings):
    """Behind a WSGI server that lets a NUL through in a header, the Idempotency-Key is
    refused with a 422 problem and nothing is stored."""
    from werkzeug.test import Client

    from soap_service import auth
    from soap_service.http.app import create_app
    from soap_service.store import events as event_store

    auth.create_zone(db, "lo", "127.0.0.0/8")
    key, _ = auth.create_api_key(db, "k")
    app = create_app(settings, db)
    reply = Client(app).post("/api/v1/events", json=EVENT, environ_base={
        "REMOTE_ADDR": "127.0.0.1"}, headers={"Authorization": f"Bearer {key}",
                                              "Idempotency-Key": "a\x00b"})
    assert reply.status_code == 422 and reply.content_type == PROBLEM
    assert "Idempotency-Key" in reply.get_json()["detail"]
    assert event_store.count_events(db) == 0


def test_one_bad_event_fails_the_batch_by_index(stack: Stack):
    """A batch with one bad event: 422 naming its 0-based index, nothing of it stored."""
    before = stack.count_events()
    events = [EVENT, EVENT, {**EVENT, "email": "nope"}, EVENT]
    doc = problem(stack.call("POST", "/api/v1/events", {"events": events}), 422,
                  "validation-failed")
    assert doc["index"] == 2 and doc["detail"].startswith("events[2]: ")
    shape = problem(stack.call("POST", "/api/v1/events", {"events": [EVENT, 7]}), 422,
                    "validation-failed")
    assert shape["index"] == 1
    assert stack.count_events() == before


def test_wrong_content_type_and_chunked_body(stack: Stack):
    """A body declared as XML is 415; a chunked JSON body is read (and limited) too."""
    before = stack.count_events()
    problem(stack.call("POST", "/api/v1/events", raw=json.dumps(EVENT).encode(),
                       headers={"Content-Type": "text/xml"}), 415, "unsupported-media-type")
    assert stack.count_events() == before

    def chunks(data: bytes):
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(stack.url)
    for payload, expected in ((json.dumps(EVENT).encode(), 201),
                              (json.dumps({**EVENT, "ctx": {"b": "y" * 80000}}).encode(), 413)):
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        conn.request("POST", "/api/v1/events", body=chunks(payload), encode_chunked=True,
                     headers={"Authorization": f"Bearer {stack.keys['push']}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == expected, resp.read()
        conn.close()
    assert stack.count_events() == before + 1


@pytest.mark.parametrize(("case", "headers", "status", "name"), [
    ("no key", {}, 401, "unauthorized"),
    ("unknown key", {"Authorization": "Bearer mc_" + "z" * 43}, 401, "unauthorized"),
    ("not our format", {"Authorization": "Bearer eyJhbGciOi"}, 401, "unauthorized"),
    ("basic auth", {"Authorization": "Basic b3BzOnB3"}, 401, "unauthorized"),
    ("revoked", {"Authorization": "Bearer {revoked}"}, 401, "unauthorized"),
    ("read-only key", {"X-Api-Key": "{read}"}, 403, "insufficient-scope"),
    ("forwarded-for ignored", {"X-Api-Key": "{push}", "X-Forwarded-For": "203.0.113.9"}, 201,
     None),
])
def test_auth(stack: Stack, case, headers, status, name):
    """Missing, unknown, revoked keys are 401 (with WWW-Authenticate); a key without the
    push scope is 403; X-Forwarded-For from a non-proxy is ignored (loopback is allowed)."""
    before = stack.count_events()
    sent = {k: v.format(**stack.keys) for k, v in headers.items()}
    reply = stack.call("POST", "/api/v1/events", EVENT, key=None, headers=sent)
    if name is None:
        assert reply.status == status
        return
    problem(reply, status, name)
    if status == 401:
        assert reply.headers["www-authenticate"].startswith("Bearer")
    assert stack.count_events() == before


def test_suite_callers_send_a_token_and_the_key(stack: Stack):
    """Suite callers send an access token as Bearer *and* X-Api-Key: ours is found."""
    reply = stack.call("POST", "/api/v1/events", EVENT, key=None, headers={
        "Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.ims-token", "X-Api-Key": stack.keys["push"]})
    assert reply.status == 201


def test_unknown_and_foreign_event_ids(stack: Stack):
    """An unknown plId, a plId of another instance, and a non-number are 404 problems."""
    problem(stack.call("GET", f"/api/v1/events/{make_plid(1, 987654321)}"), 404, "not-found")
    foreign = problem(stack.call("GET", f"/api/v1/events/{make_plid(7, 1)}"), 404, "not-found")
    assert "instance 1" in foreign["detail"]
    problem(stack.call("GET", "/api/v1/events/abc"), 404, "not-found")
    problem(stack.call("POST", f"/api/v1/events/{make_plid(1, 987654321)}/retry"), 404,
            "not-found")
    problem(stack.call("GET", "/api/v1/nothing-here"), 404, "not-found")
    reply = stack.call("DELETE", "/api/v1/events")
    problem(reply, 405, "method-not-allowed")
    assert "POST" in reply.headers["allow"]


def test_soap_keeps_working_beside_the_api(stack: Stack, tmp_path: Path):
    """The SOAP router, WSDL and health answer as before on the same port; the access log
    has one line per API request and never a body or a key."""
    from urllib.request import urlopen

    with urlopen(f"{stack.url}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent", timeout=10) as r:
        assert b"PushEvent" in r.read()
    stack.call("POST", "/api/v1/events", {**EVENT, "ctx": {"secretword": "Zanzibar"}})
    log = stack.log()
    assert "path=/api/v1/events status=201" in log
    assert "Zanzibar" not in log and stack.keys["all"] not in log
