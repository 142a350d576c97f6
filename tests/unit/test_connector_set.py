"""A channel's ConnectorSet with a scripted test connector implementing the Connector
protocol: priority order, failover, circuits, limits, health — counted, never timed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from soap_service.channels.base import Connector
from soap_service.channels.failover import ConnectorSet
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import (
    Channel,
    ChannelMessage,
    CircuitState,
    PushMessage,
    PushPlatform,
    SendOutcome,
    SendResult,
    SmsMessage,
)
from tests.unit.test_push_limits import Tick, VirtualTime, per_second

SENT = SendResult(SendOutcome.SENT, 200, "OK", provider_id="p-1")
TEMP = SendResult(SendOutcome.TEMPORARY, 503, "unavailable", retry_after=5)
PERM = SendResult(SendOutcome.PERMANENT, 404, "gone", address_refused=True)


class Scripted:
    """A connector whose answers are scripted; it records what it was asked to send."""

    def __init__(self, name: str, priority: int = 1, answers: list[SendResult] | None = None,
                 *, channel: Channel = Channel.SMS, concurrency: int = 8, rate: float = 0,
                 clock: Callable[[], float] | None = None,
                 accepts: Callable[[ChannelMessage], bool] | None = None,
                 **options: object) -> None:
        self.config = ConnectorConfig(name, channel, "scripted", priority, concurrency, rate,
                                      options)
        self.answers = list(answers or [])
        self.calls: list[tuple[str, bool, float | None]] = []
        self.gate: asyncio.Event | None = None  # set: sends wait for it
        self.clock = clock
        self.closed = False
        if accepts is not None:
            self.accepts = accepts

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        self.calls.append((address, urgent, self.clock() if self.clock else None))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0) if self.answers else SENT
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


SMS = SmsMessage("hello", "mc.1.1")


def _run(coro):
    return asyncio.run(coro)


def test_scripted_connector_implements_the_protocol() -> None:
    """The test connector is a Connector (runtime-checkable protocol)."""
    assert isinstance(Scripted("a"), Connector)


def test_connectors_are_tried_by_priority_and_the_result_names_the_one_used() -> None:
    """Declared b (2), a (1): a is tried first; its success ends the send."""
    a, b = Scripted("a", 1), Scripted("b", 2)
    result = _run(ConnectorSet(Channel.SMS, [b, a]).send(SMS, "+33600000001"))
    assert result.outcome is SendOutcome.SENT and result.connector == "a"
    assert result.provider_id == "p-1"
    assert len(a.calls) == 1 and b.calls == []


def test_a_temporary_failure_moves_the_message_to_the_next_connector() -> None:
    """a answers 503: the message goes to b, and the result names b."""
    a, b = Scripted("a", 1, [TEMP]), Scripted("b", 2)
    result = _run(ConnectorSet(Channel.SMS, [a, b]).send(SMS, "+33600000001"))
    assert result.outcome is SendOutcome.SENT and result.connector == "b"
    assert len(a.calls) == len(b.calls) == 1


def test_a_permanent_failure_ends_the_send() -> None:
    """a refuses for good: that result comes back (naming a), b is never asked."""
    a, b = Scripted("a", 1, [PERM]), Scripted("b", 2)
    result = _run(ConnectorSet(Channel.SMS, [a, b]).send(SMS, "+33600000001"))
    assert result == replace(PERM, connector="a")
    assert b.calls == []


def test_when_every_connector_fails_temporarily_the_last_result_comes_back() -> None:
    """Both temporary: the last one (b's code and Retry-After) comes back for the retry."""
    last = SendResult(SendOutcome.TEMPORARY, 429, "slow down", retry_after=9)
    a, b = Scripted("a", 1, [TEMP]), Scripted("b", 2, [last])
    result = _run(ConnectorSet(Channel.SMS, [a, b]).send(SMS, "+33600000001"))
    assert result.outcome is SendOutcome.TEMPORARY
    assert (result.connector, result.code, result.retry_after) == ("b", 429, 9)


def test_an_open_circuit_is_skipped_then_probed_after_the_reset_delay() -> None:
    """3 consecutive temporary failures open a's circuit: the next sends go straight to b;
    after circuit_reset seconds one probe goes to a, and its success closes the circuit."""
    tick = Tick()
    a = Scripted("a", 1, [TEMP] * 3, circuit_failures=3, circuit_reset=10)
    b = Scripted("b", 2)
    channel = ConnectorSet(Channel.SMS, [a, b], clock=tick)

    async def run() -> list[SendResult]:
        out = [await channel.send(SMS, f"+3360000000{n}") for n in range(5)]
        assert channel.health()[0].state is CircuitState.OPEN
        tick.now += 10
        out.append(await channel.send(SMS, "+33600000009"))
        return out

    results = _run(run())
    assert [r.connector for r in results] == ["b"] * 5 + ["a"]
    assert len(a.calls) == 4  # 3 failures + the probe; two sends skipped it
    health = {h.name: h for h in channel.health()}
    assert health["a"].state is CircuitState.CLOSED and health["a"].consecutive_failures == 0
    assert (health["a"].sent, health["a"].temporary, health["b"].sent) == (1, 3, 5)


def test_a_failed_probe_reopens_the_circuit_for_another_delay() -> None:
    """The half-open probe fails: open again for a full circuit_reset."""
    tick = Tick()
    a = Scripted("a", 1, [TEMP] * 3, circuit_failures=2, circuit_reset=10)
    b = Scripted("b", 2)
    channel = ConnectorSet(Channel.SMS, [a, b], clock=tick)

    async def run() -> None:
        await channel.send(SMS, "+1")
        await channel.send(SMS, "+2")  # a opens
        tick.now += 10
        await channel.send(SMS, "+3")  # probe fails: open again
        tick.now += 9
        await channel.send(SMS, "+4")  # still open: straight to b

    _run(run())
    assert len(a.calls) == 3 and len(b.calls) == 4
    [health_a, _] = channel.health()
    assert health_a.state is CircuitState.OPEN and health_a.probe_in == pytest.approx(1)
    assert health_a.last_error == "503 unavailable"


def test_all_circuits_open_is_temporary_with_the_time_until_the_first_probe() -> None:
    """Every circuit open: temporary, nothing sent, retry_after = the earliest probe."""
    tick = Tick()
    a = Scripted("a", 1, [TEMP], circuit_failures=1, circuit_reset=30)
    b = Scripted("b", 2, [TEMP], circuit_failures=1, circuit_reset=20)
    channel = ConnectorSet(Channel.SMS, [a, b], clock=tick)

    async def run() -> SendResult:
        await channel.send(SMS, "+1")
        tick.now += 5
        return await channel.send(SMS, "+2")

    result = _run(run())
    assert result.outcome is SendOutcome.TEMPORARY and result.connector == ""
    assert "circuit open: a, b" in result.text
    assert result.retry_after == pytest.approx(15)
    assert len(a.calls) == len(b.calls) == 1


def test_push_messages_go_only_to_connectors_of_their_platform() -> None:
    """iOS to the connector accepting iOS, Android to the other; a platform nobody
    serves is a permanent 'no connector'."""
    def platform(p: PushPlatform) -> Callable[[ChannelMessage], bool]:
        return lambda m: isinstance(m, PushMessage) and m.platform is p

    ios = Scripted("apns", 1, channel=Channel.PUSH, accepts=platform(PushPlatform.IOS))
    android = Scripted("fcm", 2, channel=Channel.PUSH, accepts=platform(PushPlatform.ANDROID))
    channel = ConnectorSet(Channel.PUSH, [ios, android])
    to_ios = PushMessage(PushPlatform.IOS, "t", "b", "r")
    to_android = PushMessage(PushPlatform.ANDROID, "t", "b", "r")
    assert _run(channel.send(to_ios, "aa")).connector == "apns"
    assert _run(channel.send(to_android, "bb")).connector == "fcm"
    only_ios = ConnectorSet(Channel.PUSH, [ios])
    result = _run(only_ios.send(to_android, "bb"))
    assert result.outcome is SendOutcome.PERMANENT
    assert result.text == "no connector for push (android)"
    assert _run(ConnectorSet(Channel.SMS, []).send(SMS, "+1")).text == "no connector for sms"


def test_urgent_messages_take_the_next_slot_ahead_of_batch() -> None:
    """concurrency 1, one send in flight, two batch and one urgent waiting: the urgent
    one is sent next."""
    a = Scripted("a", concurrency=1)
    channel = ConnectorSet(Channel.SMS, [a])

    async def run() -> None:
        a.gate = asyncio.Event()
        first = asyncio.create_task(channel.send(SMS, "+first"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(channel.send(SMS, "+batch1")),
                   asyncio.create_task(channel.send(SMS, "+batch2")),
                   asyncio.create_task(channel.send(SMS, "+urgent", urgent=True))]
        await asyncio.sleep(0)
        assert channel.health()[0].in_flight == 1
        a.gate.set()
        await asyncio.gather(first, *waiting)

    _run(run())
    assert [c[0] for c in a.calls] == ["+first", "+urgent", "+batch1", "+batch2"]
    assert [c[1] for c in a.calls] == [False, True, False, False]


def test_the_rate_limit_is_respected_counted_on_a_virtual_clock() -> None:
    """rate 10, concurrency 4: 45 concurrent sends start 10 per second, never more."""
    vt = VirtualTime()
    a = Scripted("a", concurrency=4, rate=10, clock=vt.clock)
    channel = ConnectorSet(Channel.SMS, [a], clock=vt.clock, sleep=vt.sleep)

    async def run() -> None:
        await asyncio.gather(*(channel.send(SMS, f"+{n}") for n in range(45)))

    _run(run())
    times = [c[2] for c in a.calls]
    assert per_second(times) == {0: 10, 1: 10, 2: 10, 3: 10, 4: 5}
    assert times == sorted(times)


def test_a_connector_that_raises_is_a_temporary_failure_and_counts_for_its_circuit() -> None:
    """A connector breaking the never-raise rule is a temporary failure, not a crash."""
    a = Scripted("a", 1, [RuntimeError("bug")], circuit_failures=1)
    b = Scripted("b", 2)
    channel = ConnectorSet(Channel.SMS, [a, b])
    result = _run(channel.send(SMS, "+1"))
    assert result.connector == "b"
    health_a = channel.health()[0]
    assert health_a.state is CircuitState.OPEN
    assert health_a.last_error == "- connector error: RuntimeError"


def test_a_cancelled_probe_does_not_block_later_probes() -> None:
    """A probe cancelled mid-send (worker stopping) frees the half-open slot."""
    tick = Tick()
    a = Scripted("a", 1, [TEMP], circuit_failures=1, circuit_reset=10)
    channel = ConnectorSet(Channel.SMS, [a], clock=tick)

    async def run() -> SendResult:
        await channel.send(SMS, "+1")
        tick.now += 10
        a.gate = asyncio.Event()
        probe = asyncio.create_task(channel.send(SMS, "+probe"))
        await asyncio.sleep(0)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        a.gate = None
        return await channel.send(SMS, "+2")

    result = _run(run())
    assert result.outcome is SendOutcome.SENT and result.connector == "a"
    assert channel.health()[0].in_flight == 0


def test_health_counts_outcomes_since_start() -> None:
    """health(): sent / temporary / permanent counters, state, last error, as a dict."""
    a = Scripted("a", 1, [SENT, TEMP, PERM, SENT])
    channel = ConnectorSet(Channel.SMS, [a])
    for n in range(4):
        _run(channel.send(SMS, f"+{n}"))
    [health] = channel.health()
    assert (health.sent, health.temporary, health.permanent) == (2, 1, 1)
    assert health.to_dict() == {
        "name": "a", "channel": "sms", "kind": "scripted", "priority": 1, "state": "closed",
        "consecutive_failures": 0, "sent": 2, "temporary": 1, "permanent": 1,
        "in_flight": 0, "last_error": "404 gone", "probe_in": None,
    }


def test_connectors_of_another_channel_or_unknown_kind_are_refused() -> None:
    """An SMS connector in the push set, or an unregistered kind: ConfigError."""
    with pytest.raises(ConfigError, match="'a' sends sms, not push"):
        ConnectorSet(Channel.PUSH, [Scripted("a")])
    with pytest.raises(ConfigError, match="unknown kind 'pigeon'"):
        ConnectorSet.from_configs(Channel.PUSH, [ConnectorConfig("x", Channel.PUSH, "pigeon")])


def test_close_closes_every_connector_even_when_one_fails() -> None:
    """close() reaches every connector even if one of them raises."""
    class Broken(Scripted):
        async def close(self) -> None:
            raise OSError("gone")

    a, b = Broken("a", 1), Scripted("b", 2)
    _run(ConnectorSet(Channel.SMS, [a, b]).close())
    assert b.closed
