"""The committed ``schema/openapi.json`` is the JSON API's contract.

It must be valid OpenAPI 3.1 (``openapi-spec-validator``, not our code), equal to what
the application serves (``make openapi`` regenerates it), describe every route of the
application and only those, and its examples must match its own schemas.  The live
counterpart -- every request example sent to a real server -- is
``tests/integration/test_openapi_examples.py``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from werkzeug.test import Client

from soap_service.config import Settings, load_settings
from soap_service.http.app import create_app

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schema" / "openapi.json"
OTHER_URL = "https://mc.example.com:8443"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    db_path = tmp_path_factory.mktemp("openapi") / "mc.db"
    settings = load_settings({"MC_DATABASE_URL": f"sqlite:///{db_path}"}, public_url=OTHER_URL)
    application = create_app(settings)
    yield application
    application.db.dispose()


def test_committed_document_is_valid_openapi_31(committed):
    """openapi-spec-validator accepts the committed document as OpenAPI 3.1."""
    assert committed["openapi"] == "3.1.0"
    validate(committed)


def test_served_document_equals_the_committed_one(app, committed):
    """GET /api/v1/openapi.json (no key needed) is the committed file, with the
    deployment's public URL as its server."""
    reply = Client(app).get("/api/v1/openapi.json")
    assert reply.status_code == 200 and reply.content_type == "application/json"
    served = json.loads(reply.get_data())
    assert served["servers"] == [{"url": OTHER_URL}]
    expected = copy.deepcopy(committed)
    expected["servers"] = [{"url": OTHER_URL}]
    assert served == expected, "schema/openapi.json drifted: run `make openapi`"
    assert committed["servers"] == [{"url": Settings().public_url}]


def _flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.rest.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", "{" + name + "}").replace(
                f"<path:{name}>", "{" + name + "}").replace(f"<{name}>", "{" + name + "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


_PARAM_NAMES = {"organization": "ORGANIZATION", "api": "transactionalAPI",
                "event_id": "eventID", "pkey": "PKey", "plid": "plId",
                "endpoint_id": "webhookId", "delivery_id": "deliveryId",
                "external_id": "externalId"}


def test_every_route_is_documented_and_nothing_else(app, committed):
    """The application's routes and the document's operations are the same set."""
    served = set()
    for method, path in _flask_routes(app):
        for ours, theirs in _PARAM_NAMES.items():
            path = path.replace("{" + ours + "}", "{" + theirs + "}")
        served.add((method, path))
    documented = {(m, p) for p, item in committed["paths"].items() for m in item if m in METHODS}
    assert served == documented


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_every_example_matches_its_schema(committed):
    """Each request and response example validates against the schema beside it (JSON
    Schema 2020-12, as OpenAPI 3.1 says), and every operation has an example request
    body (when it takes one) and a documented error."""
    checked = 0
    for path, item in [*committed["paths"].items(), *committed["webhooks"].items()]:
        for method, op in item.items():
            if method not in METHODS:
                continue
            body = op.get("requestBody")
            if body is not None:
                media = body["content"]["application/json"]
                assert media.get("examples"), f"{method} {path}: no request example"
                for example in media["examples"].values():
                    _validator(committed, media["schema"]).validate(example["value"])
                    checked += 1
            if path not in ("/api/v1/openapi.json", "eventNotification"):
                assert any(code.startswith("4") for code in op["responses"]), (method, path)
            for resp in op["responses"].values():
                for media in resp.get("content", {}).values():
                    for example in media.get("examples", {}).values():
                        _validator(committed, media["schema"]).validate(example["value"])
                        checked += 1
    assert checked > 40


def test_problem_types_are_documented(committed):
    """Every problem type the API can answer is listed in the Problem schema."""
    from soap_service.http import problems

    documented = set(committed["components"]["schemas"]["Problem"]["properties"]["type"]["enum"])
    assert documented == {t.uri for t in problems.TYPES.values()}
