"""``/api/v1/profiles/{externalId}`` over real HTTP against ``msgcenter serve`` (SQLite
and PostgreSQL): create, replace, read, erase; scopes; bad input answered with a 4xx
problem that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_support import Stack, rest_stack

from soap_service import profiles

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    with rest_stack(request.param, tmp_path_factory.mktemp(f"prof-{request.param}")) as live:
        yield live


def problem(reply, status: int, name: str) -> str:
    assert reply.status == status, reply.body
    assert reply.content_type.startswith(PROBLEM)
    assert reply.json["type"] == f"urn:msgcenter:problem:{name}"
    return str(reply.json.get("detail", ""))


def test_put_get_replace_and_erase(stack: Stack) -> None:
    """PUT creates (201 + Location), PUT again replaces (fields left out cleared), an
    opt-out survives a PUT that does not name it; DELETE erases; then 404."""
    made = stack.call("PUT", "/api/v1/profiles/ext%201", {
        "email": "Ann@Example.com", "firstName": "Ann", "language": "fr_ca",
        "attributes": {"tier": "gold", "points": 12}, "pushTokens": ["t1"]}, key="push")
    assert made.status == 201 and made.headers["location"] == "/api/v1/profiles/ext%201"
    body = made.json
    assert body["externalId"] == "ext 1" and body["email"] == "ann@example.com"
    assert body["language"] == "fr-CA" and body["attributes"] == {"tier": "gold", "points": 12}
    assert body["subscriptions"] == {"email": True, "sms": True, "push": True}
    out = stack.call("PUT", "/api/v1/profiles/ext%201", {"subscriptions": {"email": False},
                                                         "email": "ann@example.com"})
    assert out.status == 200 and out.json["subscriptions"]["email"] is False
    assert out.json["firstName"] is None and out.json["attributes"] == {}  # replaced
    assert set(out.json["unsubscribedAt"]) == {"email"}
    again = stack.call("PUT", "/api/v1/profiles/ext%201", {"email": "ann@example.com",
                                                           "lastName": "Lee"})
    assert again.json["subscriptions"]["email"] is False  # not undone by omission
    shown = stack.call("GET", "/api/v1/profiles/ext%201", key="read")
    assert shown.status == 200 and shown.json["lastName"] == "Lee"
    assert stack.call("DELETE", "/api/v1/profiles/ext%201", key="admin").status == 204
    problem(stack.call("GET", "/api/v1/profiles/ext%201"), 404, "not-found")
    problem(stack.call("DELETE", "/api/v1/profiles/ext%201"), 404, "not-found")


def test_scopes_and_bad_input(stack: Stack) -> None:
    """read cannot write, push cannot erase; unknown fields, bad emails, non-objects and a
    mismatching externalId are 422s that store nothing."""
    problem(stack.call("PUT", "/api/v1/profiles/x1", {"email": "a@example.com"}, key="read"),
            403, "insufficient-scope")
    problem(stack.call("GET", "/api/v1/profiles/x1", key=None), 401, "unauthorized")
    stack.call("PUT", "/api/v1/profiles/x1", {"email": "a@example.com"}, key="push")
    problem(stack.call("DELETE", "/api/v1/profiles/x1", key="push"), 403,
            "insufficient-scope")
    for body, words in (({"emial": "a@example.com"}, "unknown profile field(s): emial"),
                        ({"email": "nope"}, "email is not an email address"),
                        ([1, 2], "must be a JSON object"),
                        ({"externalId": "other"}, "differs from the path"),
                        ({"subscriptions": {"fax": False}}, "subscriptions"),
                        ({"attributes": "x"}, "attributes must be an object"),
                        ({"language": "12"}, "not a language tag")):
        detail = problem(stack.call("PUT", "/api/v1/profiles/x2", body), 422,
                         "validation-failed")
        assert words in detail, detail
    assert profiles.find(stack.db, external_id="x2") is None
    problem(stack.call("PUT", "/api/v1/profiles/x1", raw=b"{nope",
                       headers={"Content-Type": "application/json"}), 400, "invalid-json")
    assert profiles.require(stack.db, "x1").email == "a@example.com"
