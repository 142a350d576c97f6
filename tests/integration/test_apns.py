"""The APNs connector against a local APNs peer speaking HTTP/2 over TLS (hypercorn,
certificates from trustme) that verifies the ES256 provider token with the public key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from soap_service.channels.apns import ApnsConnector
from soap_service.channels.base import build_connector
from soap_service.config import ConnectorConfig
from soap_service.devserve import free_port
from soap_service.errors import ConfigError
from soap_service.models import Channel, PushMessage, PushPlatform, SendOutcome, SendResult
from tests.push_peers import TOPIC, ApnsSetup, FakeClock, pem_private, serve_apns

TOKEN = "a1b2c3d4" * 8  # 64 hex digits, as APNs device tokens are


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def apns(tmp_path: Path, clock: FakeClock) -> Iterator[ApnsSetup]:
    yield from serve_apns(tmp_path, clock)


def _config(setup: ApnsSetup, **options) -> ConnectorConfig:
    return ConnectorConfig("apns-a", Channel.PUSH, "apns", options=setup.options(**options))


def _msg(**kw) -> PushMessage:
    fields = {"platform": PushPlatform.IOS, "title": "Order 42", "body": "Shipped — merci",
              "reference": "mc.1.42"}
    fields.update(kw)
    return PushMessage(**fields)


def _send(connector: ApnsConnector, *sends: tuple[PushMessage, str]) -> list[SendResult]:
    async def run() -> list[SendResult]:
        try:
            return list(await asyncio.gather(*(connector.send(m, a) for m, a in sends)))
        finally:
            await connector.close()
    return asyncio.run(run())


def test_sends_an_alert_over_http2_with_the_headers_of_apns(apns: ApnsSetup,
                                                            clock: FakeClock) -> None:
    """200 → sent with the apns-id as provider id; the request is HTTP/2 POST
    /3/device/{token} with topic, push type, priority 10, expiration, collapse id and the
    payload {"aps": {"alert": {title, body}}, ...data}."""
    expires = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
    message = _msg(data={"order": "42"}, collapse_id="order-42", expiration=expires)
    [result] = _send(ApnsConnector(_config(apns), clock=clock), (message, TOKEN))
    assert result.outcome is SendOutcome.SENT, result
    assert result.code == 200
    [seen] = apns.peer.seen
    assert len(result.provider_id) == 36 and result.provider_id.count("-") == 4
    assert seen.path == f"/3/device/{TOKEN}"
    assert seen.http_version == "2"
    assert seen.headers["apns-topic"] == TOPIC
    assert seen.headers["apns-push-type"] == "alert"
    assert seen.headers["apns-priority"] == "10"
    assert seen.headers["apns-expiration"] == str(int(expires.timestamp()))
    assert seen.headers["apns-collapse-id"] == "order-42"
    assert seen.body == {"aps": {"alert": {"title": "Order 42", "body": "Shipped — merci"}},
                         "order": "42"}


def test_batch_message_has_priority_5_and_expiration_0(apns: ApnsSetup,
                                                        clock: FakeClock) -> None:
    """A non-urgent message goes with apns-priority 5; no expiration → apns-expiration 0
    (naive datetimes would be UTC); no collapse id → no apns-collapse-id header."""
    [result] = _send(ApnsConnector(_config(apns), clock=clock), (_msg(urgent=False), TOKEN))
    assert result.outcome is SendOutcome.SENT
    [seen] = apns.peer.seen
    assert seen.headers["apns-priority"] == "5"
    assert seen.headers["apns-expiration"] == "0"
    assert "apns-collapse-id" not in seen.headers


def test_one_provider_token_and_one_connection_for_many_sends(apns: ApnsSetup,
                                                              clock: FakeClock) -> None:
    """200 concurrent sends share one provider token (made once) and one HTTP/2
    connection."""
    connector = ApnsConnector(_config(apns), clock=clock)
    results = _send(connector, *[(_msg(reference=f"mc.1.{n}"), TOKEN) for n in range(200)])
    assert {r.outcome for r in results} == {SendOutcome.SENT}
    assert len({r.provider_id for r in results}) == 200
    assert len(apns.peer.provider_tokens()) == 1
    assert connector.token.generated == 1
    assert {s.http_version for s in apns.peer.seen} == {"2"}
    assert len({s.client for s in apns.peer.seen}) == 1


def test_provider_token_is_renewed_after_40_minutes_not_before(apns: ApnsSetup,
                                                               clock: FakeClock) -> None:
    """The token is reused at 39 minutes and replaced at 41 (both accepted by APNs)."""
    connector = ApnsConnector(_config(apns), clock=clock)

    async def run() -> list[SendResult]:
        out = [await connector.send(_msg(), TOKEN)]
        clock.advance(39 * 60)
        out.append(await connector.send(_msg(), TOKEN))
        clock.advance(2 * 60)
        out.append(await connector.send(_msg(), TOKEN))
        await connector.close()
        return out

    results = asyncio.run(run())
    assert [r.outcome for r in results] == [SendOutcome.SENT] * 3
    tokens = [s.bearer for s in apns.peer.seen]
    assert tokens[0] == tokens[1] != tokens[2]
    assert connector.token.generated == 2


def test_expired_provider_token_is_renewed_once_and_the_send_retried(
        apns: ApnsSetup, clock: FakeClock) -> None:
    """403 ExpiredProviderToken for a 25-minute-old token: one new token, the same
    notification sent again with it, and later sends reuse the new one."""
    connector = ApnsConnector(_config(apns), clock=clock)

    async def run() -> list[SendResult]:
        first = await connector.send(_msg(), TOKEN)
        clock.advance(25 * 60)
        apns.peer.expire_seen_tokens()
        again = await asyncio.gather(*(connector.send(_msg(), TOKEN) for _ in range(5)))
        await connector.close()
        return [first, *again]

    results = asyncio.run(run())
    assert {r.outcome for r in results} == {SendOutcome.SENT}
    assert len(apns.peer.provider_tokens()) == 2
    assert connector.token.generated == 2


def test_expired_provider_token_younger_than_20_minutes_is_not_regenerated(
        apns: ApnsSetup, clock: FakeClock) -> None:
    """Apple refuses tokens renewed more often than every 20 minutes: a 5-minute-old token
    called expired is a temporary failure, and no new token is made."""
    connector = ApnsConnector(_config(apns), clock=clock)

    async def run() -> SendResult:
        await connector.send(_msg(), TOKEN)
        clock.advance(5 * 60)
        apns.peer.expire_seen_tokens()
        result = await connector.send(_msg(), TOKEN)
        await connector.close()
        return result

    result = asyncio.run(run())
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code == 403 and "ExpiredProviderToken" in result.text
    assert connector.token.generated == 1


@pytest.mark.parametrize(("outcome", "expected", "code", "refused", "retry_after"), [
    ("unregistered", SendOutcome.PERMANENT, 410, True, None),
    ("bad-token", SendOutcome.PERMANENT, 400, True, None),
    ("not-for-topic", SendOutcome.PERMANENT, 400, True, None),
    ("bad-collapse", SendOutcome.PERMANENT, 400, False, None),
    ("forbidden", SendOutcome.TEMPORARY, 403, False, None),
    ("throttled", SendOutcome.TEMPORARY, 429, False, 7.0),
    ("internal", SendOutcome.TEMPORARY, 500, False, None),
    ("unavailable", SendOutcome.TEMPORARY, 503, False, 11.0),
    ("garbage", SendOutcome.TEMPORARY, 502, False, None),
])
def test_every_apns_answer_maps_to_its_outcome(apns: ApnsSetup, clock: FakeClock,
                                               outcome: str, expected: SendOutcome,
                                               code: int, refused: bool,
                                               retry_after: float | None) -> None:
    """410 Unregistered, 400 BadDeviceToken and DeviceTokenNotForTopic refuse the address;
    other 400s are permanent; 403, 429, 5xx are temporary with Retry-After kept."""
    apns.peer.script[TOKEN] = [outcome]
    connector = ApnsConnector(_config(apns), clock=clock)
    [result] = _send(connector, (_msg(), TOKEN))
    assert result.outcome is expected, result
    assert result.code == code
    assert result.address_refused is refused
    assert result.retry_after == retry_after
    assert connector.token.generated == 1  # a 403 other than expiry renews nothing
    assert len(apns.peer.seen) == 1


def test_a_server_that_does_not_answer_in_time_is_temporary(apns: ApnsSetup,
                                                            clock: FakeClock) -> None:
    """No answer within `timeout` seconds → temporary "timeout"."""
    apns.peer.script[TOKEN] = ["slow"]
    [result] = _send(ApnsConnector(_config(apns, timeout=0.5), clock=clock), (_msg(), TOKEN))
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code is None and "timeout" in result.text


def test_closed_port_and_untrusted_certificate_are_temporary(apns: ApnsSetup,
                                                             clock: FakeClock) -> None:
    """A refused connection, or a server certificate no CA vouches for, is temporary."""
    closed = ApnsConnector(_config(apns, base_url=f"https://127.0.0.1:{free_port()}"),
                           clock=clock)
    untrusted = ApnsConnector(_config(apns, ca_file=""), clock=clock)
    [refused] = _send(closed, (_msg(), TOKEN))
    [tls] = _send(untrusted, (_msg(), TOKEN))
    assert refused.outcome is SendOutcome.TEMPORARY and "connection failed" in refused.text
    assert tls.outcome is SendOutcome.TEMPORARY and "CERTIFICATE_VERIFY_FAILED" in tls.text
    assert apns.peer.seen == []


@pytest.mark.parametrize("token", ["not-hex", "", "ab/../../x", "a" * 201])
def test_a_token_that_is_not_hex_is_refused_without_a_request(apns: ApnsSetup,
                                                              clock: FakeClock,
                                                              token: str) -> None:
    """APNs device tokens are hex: anything else is a permanent refusal of the address,
    and never reaches the URL path."""
    [result] = _send(ApnsConnector(_config(apns), clock=clock), (_msg(), token))
    assert result.outcome is SendOutcome.PERMANENT and result.address_refused
    assert apns.peer.seen == []


def test_a_payload_over_4_kb_is_permanent_without_a_request(apns: ApnsSetup,
                                                            clock: FakeClock) -> None:
    """APNs refuses payloads over 4096 bytes (413): refused here, the address kept."""
    [result] = _send(ApnsConnector(_config(apns), clock=clock), (_msg(body="x" * 5000), TOKEN))
    assert result.outcome is SendOutcome.PERMANENT and not result.address_refused
    assert "PayloadTooLarge" in result.text
    assert apns.peer.seen == []


def test_logs_never_show_a_device_token_a_body_or_the_key(apns: ApnsSetup, clock: FakeClock,
                                                          caplog) -> None:
    """Even at DEBUG (httpx's own request lines included), no full device token, no
    notification text and no provider token reach the log."""
    apns.peer.script[TOKEN] = ["unregistered"]
    caplog.set_level(logging.DEBUG)
    connector = ApnsConnector(_config(apns), clock=clock)
    results = _send(connector, (_msg(body="secret body"), TOKEN), (_msg(), "ff" * 32))
    assert [r.outcome for r in results] == [SendOutcome.PERMANENT, SendOutcome.SENT]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "apns.token_refused" in logged and TOKEN[-6:] in logged
    assert TOKEN not in logged and "ff" * 32 not in logged
    assert "secret body" not in logged
    assert apns.peer.provider_tokens()[0] not in logged
    assert apns.key_file.read_text().splitlines()[1] not in logged


def test_registered_kind_builds_an_ios_only_connector(apns: ApnsSetup) -> None:
    """kind "apns" builds an ApnsConnector that accepts iOS push messages only."""
    connector = build_connector(_config(apns))
    assert isinstance(connector, ApnsConnector)
    assert connector.accepts(_msg())
    assert not connector.accepts(_msg(platform=PushPlatform.ANDROID))


def test_bad_configuration_is_one_line_naming_the_connector(apns: ApnsSetup,
                                                            tmp_path: Path) -> None:
    """A missing topic, team or key, a key that is not P-256, or an unreadable CA bundle
    is a ConfigError naming the connector — never showing the key."""
    rsa_key = tmp_path / "rsa.p8"
    rsa_pem = pem_private(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    rsa_key.write_text(rsa_pem)
    cases = {
        "topic": {"topic": ""},
        "team_id": {"team_id": ""},
        "key_file": {"key_file": ""},
        "P-256": {"key_file": str(rsa_key)},
        "cannot read key_file": {"key_file": str(tmp_path / "missing.p8")},
        "ca_file": {"ca_file": str(tmp_path / "missing.pem")},
        "timeout": {"timeout": "soon"},
    }
    for needle, options in cases.items():
        with pytest.raises(ConfigError) as info:
            ApnsConnector(_config(apns, **options))
        message = str(info.value)
        assert "'apns-a'" in message and needle in message, message
        assert "\n" not in message and "PRIVATE KEY" not in message
