"""Per-connector limits and the circuit breaker, counted on a virtual clock (never timed):
the priority semaphore, the rate limiter (GCRA) and the circuit's state machine."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from soap_service.channels.failover import Circuit, circuit_options
from soap_service.channels.limits import PrioritySlots, RateLimiter
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import Channel, CircuitState


class VirtualTime:
    """A clock that moves only when every sleeper but the earliest is waiting: the
    earliest wakes, and ``now`` jumps to its deadline.  Deadlines made later are never
    earlier than ones made before (true of one rate limiter)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._pending: set[tuple[float, int]] = set()
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        entry = (self.now + delay, next(self._seq))
        self._pending.add(entry)
        try:
            while True:
                await asyncio.sleep(0)
                if min(self._pending) == entry:
                    break
        finally:
            self._pending.discard(entry)
        self.now = max(self.now, entry[0])


def per_second(times: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for t in times:
        second = int(round(t, 9))
        counts[second] = counts.get(second, 0) + 1
    return counts


def test_slots_serve_urgent_waiters_first_then_in_order() -> None:
    """With the only slot taken, waiters are served by priority (0 before 1), then FIFO."""
    async def run() -> list[str]:
        slots = PrioritySlots(1)
        order: list[str] = []
        await slots.acquire(1)

        async def waiter(name: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(name)
            slots.release()

        tasks = [asyncio.create_task(waiter("batch-1", 1)),
                 asyncio.create_task(waiter("batch-2", 1)),
                 asyncio.create_task(waiter("urgent", 0))]
        await asyncio.sleep(0)
        assert slots.in_use == 1 and slots.waiting == 3
        slots.release()
        await asyncio.gather(*tasks)
        assert slots.in_use == 0
        return order

    assert asyncio.run(run()) == ["urgent", "batch-1", "batch-2"]


def test_a_cancelled_waiter_does_not_keep_a_slot() -> None:
    """Cancelling a waiting acquire leaves the slot to the next waiter."""
    async def run() -> int:
        slots = PrioritySlots(1)
        await slots.acquire()
        cancelled = asyncio.create_task(slots.acquire())
        later = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        slots.release()
        await later
        assert cancelled.cancelled()
        return slots.in_use

    assert asyncio.run(run()) == 1


def test_rate_limiter_spaces_sequential_acquisitions() -> None:
    """rate 10: 50 acquisitions start at 0, 0.1, ... 4.9 — exactly 10 in each second."""
    vt = VirtualTime()

    async def run() -> list[float]:
        limiter = RateLimiter(10, clock=vt.clock, sleep=vt.sleep)
        times = []
        for _ in range(50):
            await limiter.acquire()
            times.append(vt.now)
        return times

    times = asyncio.run(run())
    assert times == pytest.approx([n / 10 for n in range(50)])
    assert per_second(times) == {s: 10 for s in range(5)}


def test_rate_limiter_serves_concurrent_waiters_in_order_without_bursting() -> None:
    """50 acquisitions started at once are let through one every 1/rate, in the order
    they asked, each sleeping once."""
    vt = VirtualTime()

    async def run() -> list[tuple[int, float]]:
        limiter = RateLimiter(25, clock=vt.clock, sleep=vt.sleep)
        seen: list[tuple[int, float]] = []

        async def one(n: int) -> None:
            await limiter.acquire()
            seen.append((n, vt.now))

        await asyncio.gather(*(one(n) for n in range(50)))
        return seen

    seen = asyncio.run(run())
    assert [n for n, _ in seen] == list(range(50))
    assert [t for _, t in seen] == pytest.approx([n / 25 for n in range(50)])
    assert per_second([t for _, t in seen]) == {0: 25, 1: 25}
    assert len(vt.slept) == 49  # the first goes at once; every other sleeps exactly once


def test_rate_limiter_burst_and_idle_periods() -> None:
    """burst 5: five at once after an idle period, then one per 1/rate; after a long
    idle period there is no catch-up beyond the burst."""
    vt = VirtualTime()

    async def run() -> list[float]:
        limiter = RateLimiter(10, burst=5, clock=vt.clock, sleep=vt.sleep)
        times = []
        for _ in range(8):
            await limiter.acquire()
            times.append(vt.now)
        vt.now += 100  # idle
        for _ in range(7):
            await limiter.acquire()
            times.append(vt.now)
        return times

    times = asyncio.run(run())
    assert times[:8] == pytest.approx([0, 0, 0, 0, 0, 0.1, 0.2, 0.3])
    start = times[8]
    assert [t - start for t in times[8:]] == pytest.approx([0, 0, 0, 0, 0, 0.1, 0.2])


def test_rate_zero_is_unlimited_and_never_sleeps() -> None:
    """rate 0 means unlimited: 1,000 acquisitions, no sleep, no time passes."""
    vt = VirtualTime()

    async def run() -> None:
        limiter = RateLimiter(0, clock=vt.clock, sleep=vt.sleep)
        for _ in range(1000):
            await limiter.acquire()

    asyncio.run(run())
    assert vt.slept == [] and vt.now == 0


def test_a_cancelled_reservation_is_given_back() -> None:
    """Cancelling the last waiter returns its slot: the next one goes at its time."""
    vt = VirtualTime()

    async def run() -> float:
        limiter = RateLimiter(10, clock=vt.clock, sleep=vt.sleep)
        await limiter.acquire()  # t = 0
        waiting = asyncio.create_task(limiter.acquire())  # reserved t = 0.1
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await limiter.acquire()
        return vt.now

    assert asyncio.run(run()) == pytest.approx(0.1)


def test_limits_refuse_nonsense() -> None:
    """A semaphore of 0 slots or a negative rate is a programming error."""
    with pytest.raises(ValueError):
        PrioritySlots(0)
    with pytest.raises(ValueError):
        RateLimiter(-1)


class Tick:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_n_consecutive_failures_only() -> None:
    """4 failures, a success, 4 failures: still closed; the 5th in a row opens it."""
    tick = Tick()
    circuit = Circuit(5, 30, clock=tick)
    for _ in range(4):
        assert circuit.allow() and circuit.record(False) is None
    circuit.record(True)
    for _ in range(4):
        circuit.record(False)
    assert circuit.state is CircuitState.CLOSED and circuit.consecutive == 4
    assert circuit.record(False) is CircuitState.OPEN
    assert not circuit.allow()
    assert circuit.probe_in() == 30


def test_circuit_half_open_lets_one_probe_through_then_closes_or_reopens() -> None:
    """After `reset` seconds one probe goes (others wait); a failed probe reopens for
    another `reset`; a successful one closes the circuit."""
    tick = Tick()
    circuit = Circuit(2, 30, clock=tick)
    circuit.record(False)
    circuit.record(False)
    tick.now += 29.9
    assert not circuit.allow()
    tick.now += 0.1
    assert circuit.allow() and circuit.state is CircuitState.HALF_OPEN
    assert not circuit.allow()  # one probe at a time
    assert circuit.record(False) is CircuitState.OPEN
    assert not circuit.allow() and circuit.probe_in() == 30
    tick.now += 30
    assert circuit.allow()
    circuit.abandon()  # the probe was cancelled: another may go
    assert circuit.allow()
    assert circuit.record(True) is CircuitState.CLOSED
    assert circuit.consecutive == 0 and circuit.allow() and circuit.allow()


@pytest.mark.parametrize("options", [{"circuit_failures": 0}, {"circuit_failures": "x"},
                                     {"circuit_reset": 0}, {"circuit_reset": "soon"},
                                     {"circuit_failures": True}])
def test_circuit_options_are_validated(options: dict) -> None:
    """circuit_failures < 1, circuit_reset <= 0 or non-numbers: a ConfigError."""
    config = ConnectorConfig("p", Channel.PUSH, "fcm", options=options)
    with pytest.raises(ConfigError, match="'p': circuit_failures"):
        circuit_options(config)


def test_circuit_options_defaults_and_values() -> None:
    """Defaults 5 failures / 30 s; the table's values otherwise."""
    assert circuit_options(ConnectorConfig("p", Channel.PUSH, "fcm")) == (5, 30.0)
    config = ConnectorConfig("p", Channel.PUSH, "fcm",
                             options={"circuit_failures": 3, "circuit_reset": 2.5})
    assert circuit_options(config) == (3, 2.5)
