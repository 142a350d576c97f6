"""Failover and circuits with real push connectors against real local peers: two FCM
projects (the first failing, or not listening), and APNs beside FCM in one channel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import soap_service.channels.apns
import soap_service.channels.fcm  # noqa: F401 - importing a connector module registers its kind
from soap_service.channels.failover import ConnectorSet
from soap_service.config import ConnectorConfig
from soap_service.devserve import free_port
from soap_service.models import Channel, CircuitState, PushMessage, PushPlatform, SendOutcome
from tests.push_peers import ApnsSetup, FcmSetup, serve_apns, serve_fcm
from tests.unit.test_push_limits import Tick

TOKEN = "fXz3-AbC:APA91bH" + "q" * 140
IOS_TOKEN = "0f" * 32


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[FcmSetup]:
    (tmp_path / "a").mkdir()
    yield from serve_fcm(tmp_path / "a")


@pytest.fixture
def secondary(tmp_path: Path) -> Iterator[FcmSetup]:
    (tmp_path / "b").mkdir()
    yield from serve_fcm(tmp_path / "b")


@pytest.fixture
def apns(tmp_path: Path) -> Iterator[ApnsSetup]:
    (tmp_path / "apns").mkdir()
    yield from serve_apns(tmp_path / "apns")


def _fcm(name: str, setup: FcmSetup, priority: int, **options) -> ConnectorConfig:
    return ConnectorConfig(name, Channel.PUSH, "fcm", priority,
                           options=setup.options(**options))


def _android(n: int = 1) -> PushMessage:
    return PushMessage(PushPlatform.ANDROID, "Order", f"Order {n} shipped", f"mc.1.{n}")


def test_an_unavailable_first_project_fails_over_to_the_second(primary: FcmSetup,
                                                               secondary: FcmSetup) -> None:
    """The first FCM answers 503 UNAVAILABLE: the message goes through the second, whose
    name is in the result with its provider id."""
    primary.peer.script[TOKEN] = ["unavailable"]
    channel = ConnectorSet.from_configs(Channel.PUSH, [_fcm("fcm-b", secondary, 2),
                                                       _fcm("fcm-a", primary, 1)])

    async def run():
        try:
            return await channel.send(_android(), TOKEN)
        finally:
            await channel.close()

    result = asyncio.run(run())
    assert result.outcome is SendOutcome.SENT and result.connector == "fcm-b"
    assert result.provider_id.startswith("projects/shop-app/messages/")
    assert len(primary.peer.seen) == len(secondary.peer.seen) == 1


def test_an_unregistered_token_does_not_fail_over(primary: FcmSetup,
                                                  secondary: FcmSetup) -> None:
    """A permanent answer (UNREGISTERED) ends the send: the second project never sees it."""
    primary.peer.script[TOKEN] = ["unregistered"]
    channel = ConnectorSet.from_configs(Channel.PUSH, [_fcm("fcm-a", primary, 1),
                                                       _fcm("fcm-b", secondary, 2)])

    async def run():
        try:
            return await channel.send(_android(), TOKEN)
        finally:
            await channel.close()

    result = asyncio.run(run())
    assert result.outcome is SendOutcome.PERMANENT and result.address_refused
    assert result.connector == "fcm-a" and secondary.peer.seen == []


def test_a_first_project_that_is_down_opens_its_circuit_then_recovers(
        primary: FcmSetup, secondary: FcmSetup) -> None:
    """5 UNAVAILABLE in a row open fcm-a's circuit: the next sends go straight to fcm-b
    (fcm-a's server sees no more requests); after circuit_reset a probe reaches fcm-a,
    succeeds, and fcm-a takes the traffic again."""
    primary.peer.script[TOKEN] = ["unavailable"] * 5
    tick = Tick()
    channel = ConnectorSet.from_configs(
        Channel.PUSH, [_fcm("fcm-a", primary, 1, circuit_reset=30), _fcm("fcm-b", secondary, 2)],
        clock=tick)

    async def run() -> list[str]:
        used = [(await channel.send(_android(n), TOKEN)).connector for n in range(8)]
        assert channel.health()[0].state is CircuitState.OPEN
        tick.now += 30
        used += [(await channel.send(_android(n), TOKEN)).connector for n in range(8, 10)]
        await channel.close()
        return used

    used = asyncio.run(run())
    assert used == ["fcm-b"] * 8 + ["fcm-a"] * 2
    assert len(primary.peer.seen) == 7  # 5 failures, then the probe and one more
    assert len(secondary.peer.seen) == 8
    health = {h.name: h for h in channel.health()}
    assert health["fcm-a"].state is CircuitState.CLOSED
    assert (health["fcm-a"].temporary, health["fcm-a"].sent, health["fcm-b"].sent) == (5, 2, 8)


def test_a_first_connector_with_nothing_listening_fails_over(secondary: FcmSetup) -> None:
    """fcm-a points at a closed port (its token endpoint too): every send goes through
    fcm-b, and after circuit_failures attempts fcm-a is no longer tried."""
    closed = f"https://127.0.0.1:{free_port()}"
    down = _fcm("fcm-a", secondary, 1, base_url=closed, token_uri=f"{closed}/token",
                circuit_failures=3)
    channel = ConnectorSet.from_configs(Channel.PUSH, [down, _fcm("fcm-b", secondary, 2)])

    async def run():
        results = [await channel.send(_android(n), TOKEN) for n in range(6)]
        await channel.close()
        return results

    results = asyncio.run(run())
    assert {(r.outcome, r.connector) for r in results} == {(SendOutcome.SENT, "fcm-b")}
    health_a = channel.health()[0]
    assert health_a.state is CircuitState.OPEN and health_a.temporary == 3
    assert "oauth token" in health_a.last_error


def test_ios_goes_to_apns_and_android_to_fcm_in_one_channel(apns: ApnsSetup,
                                                           secondary: FcmSetup) -> None:
    """One push channel with both connectors: each message reaches its platform's
    provider, concurrently."""
    configs = [ConnectorConfig("apns", Channel.PUSH, "apns", 1, options=apns.options()),
               _fcm("fcm", secondary, 1)]
    channel = ConnectorSet.from_configs(Channel.PUSH, configs)
    ios = PushMessage(PushPlatform.IOS, "Order", "Shipped", "mc.1.7")

    async def run():
        sends = [channel.send(ios, IOS_TOKEN) for _ in range(20)]
        sends += [channel.send(_android(), TOKEN) for _ in range(20)]
        try:
            return await asyncio.gather(*sends)
        finally:
            await channel.close()

    results = asyncio.run(run())
    assert [r.connector for r in results] == ["apns"] * 20 + ["fcm"] * 20
    assert {r.outcome for r in results} == {SendOutcome.SENT}
    assert len(apns.peer.seen) == len(secondary.peer.seen) == 20
