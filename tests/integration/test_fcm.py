"""The FCM connector against a local FCM HTTP v1 peer and its OAuth2 token endpoint, which
verifies the JWT-bearer assertion's RS256 signature with the service account's public key
and answers FCM's real error JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soap_service.channels.base import build_connector
from soap_service.channels.fcm import FcmConnector
from soap_service.config import ConnectorConfig
from soap_service.devserve import free_port
from soap_service.errors import ConfigError
from soap_service.models import Channel, PushMessage, PushPlatform, SendOutcome, SendResult
from tests.push_peers import FakeClock, FcmSetup, serve_fcm

TOKEN = "fXz3-AbC:APA91bH" + "k" * 140  # registration tokens are long, URL-safe text


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fcm(tmp_path: Path, clock: FakeClock) -> Iterator[FcmSetup]:
    yield from serve_fcm(tmp_path, clock)


def _config(setup: FcmSetup, **options) -> ConnectorConfig:
    return ConnectorConfig("fcm-a", Channel.PUSH, "fcm", options=setup.options(**options))


def _msg(**kw) -> PushMessage:
    fields = {"platform": PushPlatform.ANDROID, "title": "Order 42",
              "body": "Shipped — merci", "reference": "mc.1.42"}
    fields.update(kw)
    return PushMessage(**fields)


def _send(connector: FcmConnector, *sends: tuple[PushMessage, str]) -> list[SendResult]:
    async def run() -> list[SendResult]:
        try:
            return list(await asyncio.gather(*(connector.send(m, a) for m, a in sends)))
        finally:
            await connector.close()
    return asyncio.run(run())


def test_sends_the_v1_message_with_a_bearer_token(fcm: FcmSetup, clock: FakeClock) -> None:
    """200 → sent, provider id = the answer's name; the request carries the token, the
    notification, the data, android priority high, the TTL from the expiration and the
    collapse key, over HTTP/2, with the access token the OAuth endpoint granted."""
    expiration = datetime.fromtimestamp(clock() + 3600, UTC).replace(tzinfo=None)
    message = _msg(data={"order": "42"}, collapse_id="order-42", expiration=expiration)
    [result] = _send(FcmConnector(_config(fcm), clock=clock), (message, TOKEN))
    assert result.outcome is SendOutcome.SENT, result
    assert result.provider_id.startswith("projects/shop-app/messages/0:")
    [seen] = fcm.peer.seen
    assert seen.http_version == "2"
    assert seen.bearer in fcm.peer.issued
    assert seen.body == {"message": {
        "token": TOKEN,
        "notification": {"title": "Order 42", "body": "Shipped — merci"},
        "data": {"order": "42"},
        "android": {"priority": "high", "ttl": "3600s", "collapse_key": "order-42"},
    }}


def test_batch_message_is_normal_priority_without_ttl(fcm: FcmSetup, clock: FakeClock) -> None:
    """A non-urgent message has android priority normal; no expiration → no ttl."""
    [result] = _send(FcmConnector(_config(fcm), clock=clock), (_msg(urgent=False), TOKEN))
    assert result.outcome is SendOutcome.SENT
    assert fcm.peer.seen[0].body["message"]["android"] == {"priority": "normal"}


def test_plain_http_base_url_works_over_http1(fcm: FcmSetup, clock: FakeClock) -> None:
    """An http:// base URL (a local stand-in) is spoken over HTTP/1.1."""
    [result] = _send(FcmConnector(_config(fcm, base_url=fcm.plain_url), clock=clock),
                     (_msg(), TOKEN))
    assert result.outcome is SendOutcome.SENT
    assert fcm.peer.seen[0].http_version == "1.1"


def test_access_token_is_fetched_once_for_many_concurrent_sends(fcm: FcmSetup,
                                                                clock: FakeClock) -> None:
    """200 sends started at once wait for one token request, and all use its token."""
    connector = FcmConnector(_config(fcm), clock=clock)
    results = _send(connector, *[(_msg(), TOKEN) for _ in range(200)])
    assert {r.outcome for r in results} == {SendOutcome.SENT}
    assert fcm.peer.token_requests == 1
    assert connector.access.fetches == 1
    assert len({s.bearer for s in fcm.peer.seen}) == 1


def test_access_token_is_renewed_shortly_before_it_expires(fcm: FcmSetup,
                                                           clock: FakeClock) -> None:
    """Granted for 3599 s: reused at 50 minutes, renewed at 56 (5 minutes' margin)."""
    connector = FcmConnector(_config(fcm), clock=clock)

    async def run() -> list[SendResult]:
        out = [await connector.send(_msg(), TOKEN)]
        clock.advance(50 * 60)
        out.append(await connector.send(_msg(), TOKEN))
        clock.advance(6 * 60)
        out.append(await connector.send(_msg(), TOKEN))
        await connector.close()
        return out

    assert {r.outcome for r in asyncio.run(run())} == {SendOutcome.SENT}
    assert fcm.peer.token_requests == 2
    bearers = [s.bearer for s in fcm.peer.seen]
    assert bearers[0] == bearers[1] != bearers[2]


def test_a_401_renews_the_token_once_and_retries(fcm: FcmSetup, clock: FakeClock) -> None:
    """FCM stops accepting a cached token (revoked): 401 → one new token → sent; later
    sends use the new token without asking again."""
    connector = FcmConnector(_config(fcm), clock=clock)

    async def run() -> list[SendResult]:
        first = await connector.send(_msg(), TOKEN)
        fcm.peer.revoke_all()
        later = await asyncio.gather(*(connector.send(_msg(), TOKEN) for _ in range(5)))
        await connector.close()
        return [first, *later]

    assert {r.outcome for r in asyncio.run(run())} == {SendOutcome.SENT}
    assert fcm.peer.token_requests == 2


def test_a_second_401_is_temporary(fcm: FcmSetup, clock: FakeClock) -> None:
    """If the fresh token is refused too, the send is temporary (a provider-configuration
    problem, not the message's) and only one renewal is tried."""
    connector = FcmConnector(_config(fcm), clock=clock)
    fcm.peer.accept_tokens = False

    async def run() -> SendResult:
        result = await connector.send(_msg(), TOKEN)
        await connector.close()
        return result

    result = asyncio.run(run())
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code == 401 and "UNAUTHENTICATED" in result.text
    assert fcm.peer.token_requests == 2


@pytest.mark.parametrize(("outcome", "expected", "code", "refused", "retry_after"), [
    ("unregistered", SendOutcome.PERMANENT, 404, True, None),
    ("invalid-token", SendOutcome.PERMANENT, 400, True, None),
    ("invalid-payload", SendOutcome.PERMANENT, 400, False, None),
    ("sender-mismatch", SendOutcome.PERMANENT, 403, False, None),
    ("third-party", SendOutcome.PERMANENT, 401, False, None),
    ("permission", SendOutcome.TEMPORARY, 403, False, None),
    ("quota", SendOutcome.TEMPORARY, 429, False, 13.0),
    ("unavailable", SendOutcome.TEMPORARY, 503, False, 17.0),
    ("internal", SendOutcome.TEMPORARY, 500, False, None),
])
def test_every_fcm_error_maps_to_its_outcome(fcm: FcmSetup, clock: FakeClock, outcome: str,
                                             expected: SendOutcome, code: int, refused: bool,
                                             retry_after: float | None) -> None:
    """UNREGISTERED and INVALID_ARGUMENT about the token refuse the address; other
    INVALID_ARGUMENT, SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR are permanent;
    PERMISSION_DENIED, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL are temporary with Retry-After."""
    fcm.peer.script[TOKEN] = [outcome]
    connector = FcmConnector(_config(fcm), clock=clock)
    [result] = _send(connector, (_msg(), TOKEN))
    assert result.outcome is expected, result
    assert result.code == code
    assert result.address_refused is refused
    assert result.retry_after == retry_after
    assert fcm.peer.token_requests == 1  # THIRD_PARTY_AUTH_ERROR is no reason to renew
    assert len(fcm.peer.seen) == 1


def test_token_endpoint_failures_are_temporary(fcm: FcmSetup, clock: FakeClock) -> None:
    """invalid_grant (a wrong key) or a 500 from the token endpoint: temporary, nothing
    sent; once the endpoint works again, sends go through."""
    fcm.peer.token_failure = (400, {"error": "invalid_grant",
                                    "error_description": "Invalid JWT Signature."})
    connector = FcmConnector(_config(fcm), clock=clock)

    async def run() -> list[SendResult]:
        bad = await connector.send(_msg(), TOKEN)
        fcm.peer.token_failure = (500, {"error": "internal_failure"})
        worse = await connector.send(_msg(), TOKEN)
        fcm.peer.token_failure = None
        good = await connector.send(_msg(), TOKEN)
        await connector.close()
        return [bad, worse, good]

    bad, worse, good = asyncio.run(run())
    assert bad.outcome is SendOutcome.TEMPORARY and "invalid_grant" in bad.text
    assert worse.outcome is SendOutcome.TEMPORARY and "500" in worse.text
    assert good.outcome is SendOutcome.SENT
    assert len(fcm.peer.seen) == 1


def test_sends_waiting_behind_a_hanging_token_endpoint_share_its_failure(
        fcm: FcmSetup, clock: FakeClock) -> None:
    """20 sends queued behind one token request that times out fail with it (temporary)
    instead of each trying again: the endpoint is asked once, not 20 times."""
    fcm.peer.token_slow = True
    connector = FcmConnector(_config(fcm, timeout=0.5), clock=clock)
    results = _send(connector, *[(_msg(), TOKEN) for _ in range(20)])
    assert {r.outcome for r in results} == {SendOutcome.TEMPORARY}
    assert all("oauth token: timeout" in r.text for r in results)
    assert fcm.peer.token_requests == 1 and fcm.peer.seen == []


def test_a_wrong_service_account_key_is_refused_by_the_token_endpoint(
        fcm: FcmSetup, clock: FakeClock, tmp_path: Path) -> None:
    """An assertion signed with another key fails the peer's signature check: the
    connector reports it as a temporary oauth failure."""
    from tests.push_peers import make_service_account

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other, _account, _key = make_service_account(other_dir, token_uri=fcm.peer.token_uri)
    account = json.loads(other.read_text())
    account["client_email"] = fcm.peer.account["client_email"]
    account["private_key_id"] = fcm.peer.account["private_key_id"]
    other.write_text(json.dumps(account))
    [result] = _send(FcmConnector(_config(fcm, service_account_file=str(other)), clock=clock),
                     (_msg(), TOKEN))
    assert result.outcome is SendOutcome.TEMPORARY
    assert "Invalid JWT Signature" in result.text


def test_slow_server_closed_port_and_bad_certificate_are_temporary(fcm: FcmSetup,
                                                                   clock: FakeClock) -> None:
    """No answer in time, nothing listening, or an untrusted certificate: temporary."""
    fcm.peer.script[TOKEN] = ["slow"]
    [slow] = _send(FcmConnector(_config(fcm, timeout=0.5), clock=clock), (_msg(), TOKEN))
    closed_url = f"https://127.0.0.1:{free_port()}"
    [closed] = _send(FcmConnector(_config(fcm, base_url=closed_url), clock=clock),
                     (_msg(), TOKEN))
    [untrusted] = _send(FcmConnector(_config(fcm, ca_file=""), clock=clock), (_msg(), TOKEN))
    assert slow.outcome is SendOutcome.TEMPORARY and "timeout" in slow.text
    assert closed.outcome is SendOutcome.TEMPORARY and "connection failed" in closed.text
    assert untrusted.outcome is SendOutcome.TEMPORARY
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.text


@pytest.mark.parametrize("token", ["", "has space", "x" * 4097])
def test_an_unusable_token_is_refused_without_a_request(fcm: FcmSetup, clock: FakeClock,
                                                        token: str) -> None:
    """An empty, blank-containing or oversized token never leaves: permanent, refused."""
    [result] = _send(FcmConnector(_config(fcm), clock=clock), (_msg(), token))
    assert result.outcome is SendOutcome.PERMANENT and result.address_refused
    assert fcm.peer.seen == [] and fcm.peer.token_requests == 0


def test_logs_never_show_a_token_a_body_or_a_secret(fcm: FcmSetup, clock: FakeClock,
                                                    caplog) -> None:
    """At DEBUG: no registration token, no notification text, no access token, no key."""
    caplog.set_level(logging.DEBUG)
    fcm.peer.script[TOKEN] = ["unregistered"]
    results = _send(FcmConnector(_config(fcm), clock=clock), (_msg(body="secret body"), TOKEN),
                    (_msg(), "other-token-123"))
    assert [r.outcome for r in results] == [SendOutcome.PERMANENT, SendOutcome.SENT]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "fcm.token_fetched" in logged
    assert TOKEN not in logged and "other-token-123" not in logged
    assert "secret body" not in logged
    assert fcm.peer.seen[0].bearer not in logged
    assert fcm.peer.account["private_key"].splitlines()[1] not in logged


def test_registered_kind_and_platforms(fcm: FcmSetup) -> None:
    """kind "fcm" builds an FcmConnector for Android; platforms = ["android", "ios"] lets
    it take iOS messages too (apps that use FCM on iOS)."""
    android_only = build_connector(_config(fcm))
    both = build_connector(_config(fcm, platforms=["android", "ios"]))
    assert isinstance(android_only, FcmConnector)
    assert android_only.accepts(_msg()) and not android_only.accepts(
        _msg(platform=PushPlatform.IOS))
    assert isinstance(both, FcmConnector) and both.accepts(_msg(platform=PushPlatform.IOS))


def test_project_and_token_uri_come_from_the_service_account_unless_configured(
        fcm: FcmSetup) -> None:
    """project_id and token_uri default to the JSON's; the options override them."""
    default = FcmConnector(_config(fcm))
    custom = FcmConnector(_config(fcm, project_id="other", token_uri="https://t.example/x"))
    assert default.url == f"{fcm.url}/v1/projects/shop-app/messages:send"
    assert custom.url == f"{fcm.url}/v1/projects/other/messages:send"
    assert custom.access._token_uri == "https://t.example/x"


def test_bad_configuration_is_one_line_naming_the_connector(fcm: FcmSetup,
                                                            tmp_path: Path) -> None:
    """A missing or unreadable service account, one that is not JSON, lacks its key or
    holds a non-RSA key, or bad platforms: a ConfigError naming the connector."""
    account = json.loads(fcm.account_file.read_text())
    files = {}
    for name, content in {
        "notjson": "{nope",
        "nokey": json.dumps({**account, "private_key": ""}),
        "badkey": json.dumps({**account, "private_key": "-----BEGIN PRIVATE KEY-----\nAA\n"}),
        "noproject": json.dumps({**account, "project_id": ""}),
    }.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(content)
    cases = {
        "service_account_file is required": {"service_account_file": ""},
        "cannot read": {"service_account_file": str(tmp_path / "missing.json")},
        "not JSON": {"service_account_file": str(files["notjson"])},
        "no private_key": {"service_account_file": str(files["nokey"])},
        "not a PEM": {"service_account_file": str(files["badkey"])},
        "project_id is required": {"service_account_file": str(files["noproject"])},
        "platforms": {"platforms": ["windows"]},
    }
    for needle, options in cases.items():
        with pytest.raises(ConfigError) as info:
            FcmConnector(_config(fcm, **options))
        message = str(info.value)
        assert "'fcm-a'" in message and needle in message, message
        assert "\n" not in message and "PRIVATE KEY" not in message
