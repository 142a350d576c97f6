"""The suite-compatible transactional REST API over real HTTP, field by field (SPEC §8).

``POST /{ORGANIZATION}/campaign/{transactionalAPI}/{eventID}`` -> ``201`` and exactly the
suite's object; ``GET /{ORGANIZATION}/campaign/{href}`` -> the same object with the
current status; ``scheduled`` / ``expiration`` with or without the ``T``; email or
mobilePhone choosing the channel; ``EVT...`` ids mapped to event types.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from rest_support import Stack, rest_stack

# SPEC §8: {"PKey", "ctx", "email", "scheduled", "expiration", "href", "serverUrl",
# "status": "pending", "type"}
SPEC_FIELDS = {"PKey", "ctx", "email", "scheduled", "expiration", "href", "serverUrl",
               "status", "type"}
BODY = {"email": "jane.doe@example.com", "scheduled": "2030-12-01 08:00:00.768Z",
        "expiration": "2031-12-31T08:00:00.768Z",
        "ctx": {"cusFirstName": "Jane", "cusLastName": "Doe", "cart": {"items": [1, 2]}}}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"suite-{request.param}")
    env = {"MC_EVENT_IDS": "EVTcartAbandonment=cart_abandoned,EVTorder=order_confirmation"}
    with rest_stack(request.param, tmp, env=env) as live:
        yield live


def test_post_answers_exactly_the_suite_object(stack: Stack):
    """201 and exactly SPEC §8's fields: PKey (the plId), the ctx and dates as sent (the
    space form kept), href = {transactionalAPI}/{eventID}/{PKey}, serverUrl, pending,
    type = the channel; the EVT id named the event type."""
    reply = stack.call("POST", "/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment", BODY,
                       key="push")
    assert reply.status == 201
    got = reply.json
    assert set(got) == SPEC_FIELDS
    pkey = got["PKey"]
    assert pkey.isdigit() and int(pkey) > 0
    assert got["ctx"] == BODY["ctx"]
    assert got["email"] == BODY["email"]
    assert got["scheduled"] == BODY["scheduled"] and got["expiration"] == BODY["expiration"]
    assert got["href"] == f"mcgeometrixx/EVTcartAbandonment/{pkey}"
    assert got["serverUrl"] == stack.url
    assert got["status"] == "pending" and got["type"] == "email"
    assert reply.headers["location"] == f"/geometrixx/campaign/{got['href']}"
    event = stack.call("GET", f"/api/v1/events/{pkey}").json
    assert event["type"] == "cart_abandoned" and event["queue"] == "rt"
    assert event["scheduled"] == "2030-12-01T08:00:00.768Z"
    assert event["expiration"] == "2031-12-31T08:00:00.768Z"


def test_get_href_answers_the_same_object_with_the_current_status(stack: Stack):
    """GET /{ORG}/campaign/{href}: the POST's object field for field, status current (here
    ignored after a cancel); a read key is needed; another eventID is a 404."""
    posted = stack.call("POST", "/shop/campaign/mcshop/EVTorder", BODY).json
    href = posted["href"]
    same = stack.call("GET", f"/shop/campaign/{href}", key="read")
    assert same.status == 200 and same.json == posted
    stack.call("POST", f"/api/v1/events/{posted['PKey']}/cancel", {"reason": "test"})
    now = stack.call("GET", f"/shop/campaign/{href}").json
    assert now == {**posted, "status": "ignored"}
    assert stack.call("GET", f"/shop/campaign/{href}", key="push").status == 403
    wrong = stack.call("GET", f"/shop/campaign/mcshop/EVTcartAbandonment/{posted['PKey']}")
    assert wrong.status == 404 and wrong.json["type"] == "urn:msgcenter:problem:not-found"


@pytest.mark.parametrize("scheduled", ["2030-06-01T10:00:00Z", "2030-06-01 10:00:00Z",
                                       "2030-06-01 12:00:00+02:00", "2030-06-01T10:00:00"])
def test_dates_with_or_without_the_t(stack: Stack, scheduled: str):
    """Every ISO 8601 form the suite accepts means the same instant (UTC unless an offset
    says otherwise); the answer echoes the form that was sent."""
    reply = stack.call("POST", "/o/campaign/mco/order_confirmation",
                       {**BODY, "scheduled": scheduled})
    assert reply.status == 201 and reply.json["scheduled"] == scheduled
    event = stack.call("GET", f"/api/v1/events/{reply.json['PKey']}").json
    assert event["processAt"] == "2030-06-01T10:00:00.000Z"
    assert datetime.fromisoformat(event["scheduled"]) == datetime.fromisoformat(
        "2030-06-01T10:00:00+00:00")


def test_mobile_phone_alone_chooses_sms(stack: Stack):
    """Only mobilePhone -> the SMS channel (type sms, wishedChannel 1), echoed back;
    email and mobilePhone -> email; our type names work as eventID directly."""
    sms = stack.call("POST", "/o/campaign/mco/order_confirmation",
                     {"mobilePhone": "+33620202020", "ctx": {"code": "1234"}})
    # stored in E.164 (here it already is); the answer echoes what was sent
    assert sms.status == 201
    assert set(sms.json) == SPEC_FIELDS | {"mobilePhone"}
    assert sms.json["type"] == "sms" and sms.json["email"] is None
    assert sms.json["mobilePhone"] == "+33620202020"
    event = stack.call("GET", f"/api/v1/events/{sms.json['PKey']}").json
    assert event["channel"] == "sms" and event["wishedChannel"] == 1
    assert event["type"] == "order_confirmation"
    both = stack.call("POST", "/o/campaign/mco/order_confirmation",
                      {"mobilePhone": "+33620202020", "email": "a@example.com", "ctx": {}})
    assert both.json["type"] == "email"


@pytest.mark.parametrize(("body", "detail"), [
    ({"email": "jane@", "ctx": {}}, "email"),
    ({"ctx": {}}, "email"),  # no address at all: the email channel needs one
    ({"email": "a@example.com"}, "ctx"),
    ({"email": "a@example.com", "ctx": {}, "scheduled": "next monday"}, "scheduled"),
    ({"email": "a@example.com", "ctx": {}, "expiration": "2030-02-30T10:00:00Z"},
     "expiration"),
    ({"email": "a@example.com", "ctx": {}, "queue": "batch"}, "queue"),
    ({"mobilePhone": "0612", "ctx": {}}, "mobilePhone"),
    ({"mobilePhone": "+999123456", "ctx": {}}, "mobilePhone"),
])
def test_bad_suite_events_store_nothing(stack: Stack, body, detail):
    """A bad suite event is a 422 problem naming the field; nothing stored."""
    before = stack.count_events()
    reply = stack.call("POST", "/o/campaign/mco/EVTorder", body)
    assert reply.status == 422 and reply.content_type.startswith("application/problem+json")
    assert detail in reply.json["detail"]
    assert stack.count_events() == before


def test_x_api_key_header_alone(stack: Stack):
    """The suite form's X-Api-Key header authenticates on its own too."""
    reply = stack.call("POST", "/o/campaign/mco/EVTorder", BODY, key=None,
                       headers={"X-Api-Key": stack.keys["push"]})
    assert reply.status == 201
