"""``POST /callbacks/sms/{connector}`` over real HTTP (``msgcenter serve``), on SQLite and
PostgreSQL: signed JSON and Twilio callbacks update the deliveries a worker recorded
(delivered; undelivered → deliveryFailed), and every bad request -- a wrong signature, an
unknown connector, an oversized or malformed body -- gets its 4xx with a short problem
body and one short log line, and changes nothing in the database."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from channel_support import (
    PHONE,
    attempts,
    dispatcher_factory,
    history,
    publish_templates,
    sms_event,
    status,
)
from servers.http_provider import Provider, reply
from twilio.request_validator import RequestValidator

from soap_service import messages
from soap_service.models import EventStatus

make_dispatcher = pytest.fixture(dispatcher_factory, name="make_dispatcher")
SECRET = "cb-secret-1"
TWILIO_TOKEN = "tw-token-1"


def _toml(path: Path, provider_url: str) -> Path:
    path.write_text(f"""
[[connectors]]
name = "sms-json"
channel = "sms"
kind = "http-sms"
url = "{provider_url}/send"
token = "t0k"
from = "MyShop"
callback_secret = "{SECRET}"
callback_max_bytes = 2048

[[connectors]]
name = "sms-twilio"
channel = "sms"
kind = "http-sms"
format = "twilio"
url = "{provider_url}"
account = "AC123"
token = "{TWILIO_TOKEN}"
from = "+33600000000"
priority = 2
""", encoding="utf-8")
    return path


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers["Content-Type"]


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    stamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return {"Content-Type": "application/json", "X-MC-Timestamp": str(stamp),
            "X-MC-Signature": f"v1={digest.hexdigest()}"}


def test_signed_json_callbacks_update_the_deliveries(db, settings, database_url,
                                                     start_server, tmp_path, make_dispatcher):
    """delivered → the delivery marked delivered (history "delivered"); undelivered →
    the processed event deliveryFailed with the provider's code; the answer says how
    many receipts it took."""
    publish_templates(db)
    # the provider's id names our reference: the two sends are concurrent, so the order
    # in which they reach the provider says nothing about which event is which
    with Provider(lambda r: reply(200, {"id": f"p-{r.json()['reference']}"})) as provider:
        config = _toml(tmp_path / "mc.toml", provider.url)
        server = start_server(database_url, init=False, env={"MC_CONFIG": str(config)})
        first, second = sms_event(db, settings), sms_event(db, settings, order="A2")
        d = make_dispatcher(_connectors(config, server.url, "sms-json", settings), db)
        assert d.tick().sent == 2
    ids = [f"p-{messages.reference(settings.instance_id, e)}" for e in (first, second)]
    body = json.dumps([{"id": ids[0], "status": "delivered"},
                       {"id": ids[1], "status": "undelivered", "code": "EC_ABSENT",
                        "text": "absent subscriber"}]).encode()
    code, answer, _ = _post(f"{server.url}/callbacks/sms/sms-json", body, _signed(body))
    assert (code, answer) == (200, {"received": 2})
    assert attempts(db, first)[0].receipt == "delivered"
    assert history(db, first)[-1] == ("delivered", "receipt delivered (sms-json)")
    assert status(db, second) is EventStatus.DELIVERY_FAILED
    assert history(db, second)[-1] == ("deliveryFailed",
                                       "receipt EC_ABSENT absent subscriber (sms-json)")


def test_bad_callbacks_get_their_4xx_and_change_nothing(db, settings, database_url,
                                                        start_server, tmp_path, make_dispatcher):
    """A wrong signature 403, an unknown connector (or one that is not http-sms) 404, an
    oversized body 413, a malformed one 400: each a problem document and one short log
    line; the delivery and the event are as before."""
    publish_templates(db)
    with Provider(lambda r: reply(200, {"id": "p-1"})) as provider:
        config = _toml(tmp_path / "mc.toml", provider.url)
        server = start_server(database_url, init=False, env={"MC_CONFIG": str(config)})
        pk = sms_event(db, settings)
        d = make_dispatcher(_connectors(config, server.url, "sms-json", settings), db)
        assert d.tick().sent == 1
    before = (status(db, pk), attempts(db, pk), history(db, pk))
    failed = json.dumps({"id": "p-1", "status": "failed"}).encode()
    malformed = b'{"id": "p-1", "status": '
    huge = json.dumps([{"id": "p-1", "status": "failed", "text": "x" * 3000}]).encode()
    cases = [
        ("sms-json", failed, _signed(failed, "not-the-secret"), 403, "unverified-callback"),
        ("sms-json", failed, {"Content-Type": "application/json"}, 403, "unverified-callback"),
        ("nobody", failed, _signed(failed), 404, "not-found"),
        ("sms-json", huge, _signed(huge), 413, "body-too-large"),
        ("sms-json", malformed, _signed(malformed), 400, "bad-request"),
    ]
    for name, body, headers, want, kind in cases:
        code, problem, ctype = _post(f"{server.url}/callbacks/sms/{name}", body, headers)
        assert (code, problem["type"], problem["status"]) == (
            want, f"urn:msgcenter:problem:{kind}", want), (name, problem)
        assert ctype == "application/problem+json" and len(json.dumps(problem)) < 400
    assert (status(db, pk), attempts(db, pk), history(db, pk)) == before
    lines = [line for line in server.log().splitlines() if "sms_callback." in line]
    assert len(lines) == len(cases) and all(len(line) < 250 for line in lines)
    assert "x" * 100 not in server.log()


def test_twilio_callbacks_are_checked_against_the_public_url(db, settings, database_url,
                                                             start_server, tmp_path,
                                                             make_dispatcher):
    """Twilio signs the URL it called: MC_PUBLIC_URL + path (its StatusCallback, sent
    with each message by default).  A request arriving with another Host header (a
    proxy) still verifies; a signature made for another URL does not."""
    publish_templates(db)
    with Provider(lambda r: reply(201, {"sid": "SM77"})) as provider:
        config = _toml(tmp_path / "mc.toml", provider.url)
        server = start_server(database_url, init=False, env={"MC_CONFIG": str(config)})
        pk = sms_event(db, settings)
        d = make_dispatcher(_connectors(config, server.url, "sms-twilio", settings), db)
        assert d.tick().sent == 1
        [request] = provider.requests
    callback_url = f"{server.url}/callbacks/sms/sms-twilio"
    assert request.form()["StatusCallback"] == callback_url
    fields = {"MessageSid": "SM77", "MessageStatus": "undelivered", "ErrorCode": "30003",
              "To": PHONE, "AccountSid": "AC123"}
    body = urllib.parse.urlencode(fields).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded", "Host": "proxy.internal:80"}
    wrong = RequestValidator(TWILIO_TOKEN).compute_signature(
        "http://proxy.internal/callbacks/sms/sms-twilio", fields)
    code, _, _ = _post(callback_url, body, {**form, "X-Twilio-Signature": wrong})
    assert code == 403 and status(db, pk) is EventStatus.PROCESSED
    good = RequestValidator(TWILIO_TOKEN).compute_signature(callback_url, fields)
    code, answer, _ = _post(callback_url, body, {**form, "X-Twilio-Signature": good})
    assert (code, answer) == (200, {"received": 1})
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    assert "30003" in history(db, pk)[-1][1]


def _connectors(config: Path, public_url: str, name: str, settings):
    """The worker's settings: the served file's connector ``name`` (same public URL)."""
    from soap_service.config import load_settings

    served = load_settings({"MC_CONFIG": str(config), "MC_PUBLIC_URL": public_url,
                            "MC_DATABASE_URL": settings.database_url})
    return settings.replace(public_url=public_url,
                            connectors=tuple(c for c in served.connectors if c.name == name))
