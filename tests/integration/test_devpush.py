"""`msgcenter devpush`, the local APNs/FCM stand-in, with a plain httpx client as the
peer (HTTP/2 over TLS for APNs), with our connectors, and as a process a user runs."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import ROOT, free_port, msgcenter_cmd
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dispatch_support import wait_until

from soap_service.channels.apns import ApnsConnector
from soap_service.channels.fcm import FcmConnector
from soap_service.config import ConnectorConfig
from soap_service.devpush import DevPush, PushFault
from soap_service.devserve import ensure_tls
from soap_service.models import Channel, PushMessage, PushPlatform, SendOutcome
from tests.push_peers import pem_private

HEX_TOKEN = "ab12" * 16
FCM_TOKEN = "dEvIcE:APA91b" + "z" * 60
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[DevPush]:
    with DevPush(directory=tmp_path / "push") as running:
        yield running


def _apns_client(sink: DevPush) -> httpx.Client:
    return httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(sink.tls.ca)))


def _provider_token(key: Any = None, **claims: Any) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    body = {"iss": "TEAM123456", "iat": int(time.time()), **claims}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": "KEY1234567"})


def _apns_headers(token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"authorization": f"bearer {token or _provider_token()}",
               "apns-topic": "com.example.shop", "apns-push-type": "alert",
               "apns-priority": "10", "apns-expiration": "0"}
    headers.update(extra)
    return headers


def _alert(title: str = "Hi", body: str = "Order 42 shipped", **data: Any) -> bytes:
    return json.dumps({"aps": {"alert": {"title": title, "body": body}}, **data}).encode()


def _files(sink: DevPush) -> list[dict[str, Any]]:
    assert sink.directory is not None
    return [json.loads(p.read_text()) for p in sorted(sink.directory.glob("*.json"))]


def test_apns_notification_over_http2_is_stored_as_a_readable_json_file(
        sink: DevPush) -> None:
    """An HTTP/2 client posting an alert gets 200 with an apns-id, and the notification
    is written as one JSON file: platform, token, title, body, data, apns headers, id."""
    with _apns_client(sink) as client:
        response = client.post(f"{sink.apns_url}/3/device/{HEX_TOKEN}", content=_alert(
            order="42"), headers=_apns_headers(**{"apns-collapse-id": "o42"}))
    assert response.status_code == 200, response.text
    assert response.http_version == "HTTP/2"
    apns_id = response.headers["apns-id"]
    [stored] = _files(sink)
    assert stored == {
        "platform": "ios", "token": HEX_TOKEN, "title": "Hi", "body": "Order 42 shipped",
        "data": {"order": "42"}, "id": apns_id, "received_at": stored["received_at"],
        "headers": {"apns-topic": "com.example.shop", "apns-push-type": "alert",
                    "apns-priority": "10", "apns-expiration": "0", "apns-collapse-id": "o42"},
    }
    assert sink.notifications[0].path is not None
    assert not list(sink.directory.glob(".*.tmp"))  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"authorization": None}, 403, "MissingProviderToken"),
    ({"authorization": "bearer not.a.jwt"}, 403, "InvalidProviderToken"),
    ({"authorization": "bearer " + jwt.encode({"iss": "T", "iat": int(time.time())},
                                              "k" * 32, algorithm="HS256",
                                              headers={"kid": "K"})},
     403, "InvalidProviderToken"),
    ({"jwt_claims": {"iat": int(time.time()) - 4000}}, 403, "ExpiredProviderToken"),
    ({"jwt_claims": {"iss": ""}}, 403, "InvalidProviderToken"),
    ({"apns-topic": None}, 400, "MissingTopic"),
    ({"apns-push-type": "banner"}, 400, "InvalidPushType"),
    ({"apns-priority": "7"}, 400, "BadPriority"),
    ({"apns-expiration": "tomorrow"}, 400, "BadExpirationDate"),
    ({"apns-collapse-id": "c" * 65}, 400, "BadCollapseId"),
    ({"token": "not-hex"}, 400, "BadDeviceToken"),
    ({"body": b"x" * 4097}, 413, "PayloadTooLarge"),
    ({"body": b""}, 400, "PayloadEmpty"),
    ({"body": b'{"alert": "no aps"}'}, 400, "BadPayload"),
    ({"method": "GET"}, 405, "MethodNotAllowed"),
])
def test_apns_requests_that_break_the_rules_are_refused_as_apns_does(
        sink: DevPush, change: dict[str, Any], status: int, reason: str) -> None:
    """Each APNs rule devpush checks answers APNs' status and reason; nothing is stored."""
    headers = _apns_headers(_provider_token(**change.pop("jwt_claims", {})))
    token, body = change.pop("token", HEX_TOKEN), change.pop("body", _alert())
    method = change.pop("method", "POST")
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with _apns_client(sink) as client:
        response = client.request(method, f"{sink.apns_url}/3/device/{token}", content=body,
                                  headers=headers)
    assert (response.status_code, response.json()) == (status, {"reason": reason})
    assert _files(sink) == []


def test_apns_key_verifies_provider_token_signatures(tmp_path: Path) -> None:
    """Given --apns-key, a token signed by another key is InvalidProviderToken; one signed
    by that key is accepted."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(pem_private(key))
    with DevPush(directory=tmp_path / "push", apns_key=key_file) as sink, \
            _apns_client(sink) as client:
        url = f"{sink.apns_url}/3/device/{HEX_TOKEN}"
        wrong = client.post(url, content=_alert(), headers=_apns_headers(_provider_token()))
        right = client.post(url, content=_alert(), headers=_apns_headers(_provider_token(key)))
    assert (wrong.status_code, wrong.json()) == (403, {"reason": "InvalidProviderToken"})
    assert right.status_code == 200


def _assertion(key: Any, token_uri: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "svc@p.iam.gserviceaccount.com", "scope": FCM_SCOPE, "aud": token_uri,
            "iat": now, "exp": now + 3600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def _grant(client: httpx.Client, sink: DevPush, assertion: str,
           grant_type: str = "urn:ietf:params:oauth:grant-type:jwt-bearer") -> httpx.Response:
    return client.post(f"{sink.fcm_url}/token",
                       data={"grant_type": grant_type, "assertion": assertion})


def test_fcm_grants_a_token_and_stores_the_message(sink: DevPush) -> None:
    """POST /token with an RS256 assertion → an access token; messages:send with it
    → {"name": ...} and a JSON file with the android options; over h2c too."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with httpx.Client() as client:
        grant = _grant(client, sink, _assertion(key, f"{sink.fcm_url}/token"))
        assert grant.status_code == 200, grant.text
        access = grant.json()
        assert access["token_type"] == "Bearer" and access["expires_in"] > 3000
    message = {"message": {"token": FCM_TOKEN, "notification": {"title": "Hi", "body": "B"},
                           "data": {"order": "42"},
                           "android": {"priority": "high", "ttl": "3600s"}}}
    with httpx.Client(http1=False, http2=True) as h2c:  # HTTP/2 with prior knowledge
        response = h2c.post(f"{sink.fcm_url}/v1/projects/shop/messages:send", json=message,
                            headers={"authorization": f"Bearer {access['access_token']}"})
    assert response.status_code == 200, response.text
    assert response.http_version == "HTTP/2"
    name = response.json()["name"]
    assert name.startswith("projects/shop/messages/")
    [stored] = _files(sink)
    assert stored == {"platform": "android", "token": FCM_TOKEN, "title": "Hi", "body": "B",
                      "data": {"order": "42"}, "headers": {"priority": "high", "ttl": "3600s"},
                      "id": name, "received_at": stored["received_at"]}


@pytest.mark.parametrize(("grant_type", "claims", "error"), [
    ("password", {}, "unsupported_grant_type"),
    (None, {"exp": int(time.time()) - 10}, "invalid_grant"),
    (None, {"scope": "https://www.googleapis.com/auth/userinfo.email"}, "invalid_grant"),
    (None, {"iss": ""}, "invalid_grant"),
])
def test_fcm_token_endpoint_refuses_bad_grants(sink: DevPush, grant_type: str | None,
                                               claims: dict[str, Any], error: str) -> None:
    """A wrong grant type, an expired assertion, a scope without FCM or no issuer:
    OAuth's error JSON with status 400."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with httpx.Client() as client:
        response = _grant(client, sink, _assertion(key, "x", **claims),
                          *([grant_type] if grant_type else []))
    assert response.status_code == 400 and response.json()["error"] == error


def test_fcm_with_a_service_account_verifies_assertion_signatures(tmp_path: Path) -> None:
    """Given --fcm-service-account, an assertion signed by another key is refused with
    "Invalid JWT Signature."; the account's own key is accepted."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = tmp_path / "sa.json"
    account.write_text(json.dumps({"private_key": pem_private(key)}))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with DevPush(directory=tmp_path / "push", fcm_key=account) as sink, \
            httpx.Client() as client:
        wrong = _grant(client, sink, _assertion(other, "x"))
        right = _grant(client, sink, _assertion(key, "x"))
    assert wrong.json() == {"error": "invalid_grant",
                            "error_description": "Invalid JWT Signature."}
    assert right.status_code == 200


def _fcm_send(sink: DevPush, message: Any, bearer: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    with httpx.Client() as client:
        return client.post(f"{sink.fcm_url}/v1/projects/shop/messages:send",
                           content=json.dumps(message), headers=headers)


def _access(sink: DevPush) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with httpx.Client() as client:
        return str(_grant(client, sink, _assertion(key, "x")).json()["access_token"])


@pytest.mark.parametrize(("message", "field"), [
    ({"message": {"token": "bad token!"}}, True),
    ({"message": {"notification": {"title": "t"}}}, True),
    ({"message": {"token": FCM_TOKEN, "data": {"n": 1}}}, False),
    ({"message": {"token": FCM_TOKEN, "android": {"priority": "urgent"}}}, False),
    ({"message": {"token": FCM_TOKEN, "android": {"ttl": "1 hour"}}}, False),
    ({"message": {"token": FCM_TOKEN, "colour": "red"}}, False),
    ({"msg": {}}, False),
    ("not an object", False),
])
def test_fcm_messages_that_break_the_rules_get_invalid_argument(
        sink: DevPush, message: Any, field: bool) -> None:
    """Malformed messages answer FCM's 400 INVALID_ARGUMENT error JSON (with an FcmError
    detail; a bad token also names message.token); nothing is stored."""
    response = _fcm_send(sink, message, _access(sink))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "INVALID_ARGUMENT"} in error["details"]
    fields = [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])]
    assert fields == (["message.token"] if field else [])
    assert _files(sink) == []


def test_fcm_without_a_granted_token_is_unauthenticated(sink: DevPush) -> None:
    """No bearer, or one devpush never granted: 401 UNAUTHENTICATED."""
    message = {"message": {"token": FCM_TOKEN}}
    for bearer in (None, "ya29.made-up"):
        response = _fcm_send(sink, message, bearer)
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_fault_plan_answers_in_each_platform_s_shape(tmp_path: Path) -> None:
    """A scripted 'unregistered' is APNs' 410 Unregistered and FCM's 404 UNREGISTERED."""
    plan = {("ios", HEX_TOKEN): PushFault("unregistered"),
            ("android", FCM_TOKEN): PushFault("unregistered")}
    with DevPush(directory=tmp_path / "push", plan=lambda p, t: plan.get((p, t))) as sink:
        with _apns_client(sink) as client:
            ios = client.post(f"{sink.apns_url}/3/device/{HEX_TOKEN}", content=_alert(),
                              headers=_apns_headers())
        android = _fcm_send(sink, {"message": {"token": FCM_TOKEN}}, _access(sink))
    assert ios.status_code == 410 and ios.json()["reason"] == "Unregistered"
    assert android.status_code == 404
    assert android.json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"
    with pytest.raises(ValueError):
        PushFault("sunspots")


def test_oversized_request_is_413_and_unknown_paths_404(sink: DevPush) -> None:
    """A body over 64 KiB is refused unread; unknown paths are 404; nothing stored."""
    with httpx.Client() as client:
        big = client.post(f"{sink.fcm_url}/v1/projects/p/messages:send",
                          content=b"{" + b" " * 70_000 + b"}")
        unknown = client.get(f"{sink.fcm_url}/nowhere")
    with _apns_client(sink) as client:
        plain_apns = client.post(f"{sink.fcm_url}/3/device/{HEX_TOKEN}", content=_alert(),
                                 headers=_apns_headers())
    assert big.status_code == 413
    assert unknown.status_code == 404
    assert plain_apns.status_code == 404  # APNs is only served over TLS
    assert _files(sink) == []


def test_our_connectors_deliver_to_devpush_with_its_throwaway_credentials(
        tmp_path: Path) -> None:
    """The demo path: devpush writes an APNs .p8 key and an FCM service account; with
    signature checks on, both connectors deliver, and the files appear."""
    directory = tmp_path / "push"
    with DevPush(directory=directory) as first:
        creds = first.write_credentials()
    with DevPush(directory=directory, apns_key=creds.apns_key,
                 fcm_key=creds.fcm_service_account) as sink:
        creds = sink.write_credentials()  # token_uri follows the new FCM port
        apns = ApnsConnector(ConnectorConfig("apns", Channel.PUSH, "apns", options={
            "base_url": sink.apns_url, "team_id": "TEAM", "key_id": "DEVPUSH001",
            "key_file": str(creds.apns_key), "topic": "com.example.shop",
            "ca_file": str(sink.tls.ca)}))
        fcm = FcmConnector(ConnectorConfig("fcm", Channel.PUSH, "fcm", options={
            "base_url": sink.fcm_url, "service_account_file": str(creds.fcm_service_account)}))
        # FCM is served on the TLS port too, over HTTP/2 as Google serves it
        fcm_h2 = FcmConnector(ConnectorConfig("fcm-h2", Channel.PUSH, "fcm", options={
            "base_url": sink.apns_url, "ca_file": str(sink.tls.ca),
            "service_account_file": str(creds.fcm_service_account)}))

        async def run():
            results = await asyncio.gather(
                apns.send(PushMessage(PushPlatform.IOS, "Hi", "iOS body", "r1"), HEX_TOKEN),
                fcm.send(PushMessage(PushPlatform.ANDROID, "Hi", "Android body", "r2"),
                         FCM_TOKEN),
                fcm_h2.send(PushMessage(PushPlatform.ANDROID, "Hi", "Android over h2", "r3"),
                            FCM_TOKEN))
            for connector in (apns, fcm, fcm_h2):
                await connector.close()
            return results

        results = asyncio.run(run())
    assert [r.outcome for r in results] == [SendOutcome.SENT] * 3
    assert sorted(f["body"] for f in _files(sink)) == ["Android body", "Android over h2",
                                                        "iOS body"]
    assert results[1].provider_id.startswith("projects/devpush/messages/")


def test_certificates_are_made_once_and_remade_for_a_new_host(tmp_path: Path) -> None:
    """ensure_tls keeps its CA across starts; a host it does not name yet gets new ones."""
    first = ensure_tls(tmp_path, ["127.0.0.1"])
    ca = first.ca.read_bytes()
    assert ensure_tls(tmp_path, ["localhost"]).ca.read_bytes() == ca
    assert ensure_tls(tmp_path, ["devbox.local"]).ca.read_bytes() != ca
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"


def _wait_line(proc: subprocess.Popen, needle: str) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"no {needle!r} in output: {''.join(seen)}")


def test_cli_devpush_serves_until_sigterm_and_refuses_a_busy_port(tmp_path: Path) -> None:
    """`msgcenter devpush` prints where it listens, stores what it gets, stops cleanly on
    SIGTERM (exit 0); a second one on the same port is a one-line error."""
    apns_port, fcm_port = free_port(), free_port()
    directory = tmp_path / "push"
    args = ("devpush", "--apns-port", str(apns_port), "--fcm-port", str(fcm_port),
            "--dir", str(directory))
    proc = subprocess.Popen(msgcenter_cmd(*args), cwd=str(ROOT), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        banner = _wait_line(proc, "throwaway credentials")
        assert f"https://127.0.0.1:{apns_port}" in banner
        assert f"http://127.0.0.1:{fcm_port}/token" in banner
        ca = directory / "tls" / "ca.pem"
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(ca))) as c:
            response = c.post(f"https://127.0.0.1:{apns_port}/3/device/{HEX_TOKEN}",
                              content=_alert(), headers=_apns_headers())
        assert response.status_code == 200
        wait_until(lambda: len(list(directory.glob("*-ios.json"))) == 1, 10, "one file")
        busy = subprocess.run(msgcenter_cmd(*args), cwd=str(ROOT), capture_output=True,
                              text=True, timeout=60)
        assert busy.returncode != 0
        assert busy.stderr.strip().count("\n") == 0 and "Traceback" not in busy.stderr
        assert "devpush cannot start" in busy.stderr and "in use" in busy.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
