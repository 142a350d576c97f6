"""Per-connector limits: a concurrency bound served by priority, and a rate limit.

:class:`PrioritySlots` is a semaphore whose waiters are served by priority (real-time
before batch), then in arrival order.  :class:`RateLimiter` spaces sends to at most
``rate`` per second with the generic cell rate algorithm: each caller reserves the next
free instant and sleeps once until it, so waiters are served in order without polling
and never more than ``rate * T + burst`` messages start in any ``T`` seconds.

Both take the clock and the sleep function as arguments so that tests count what they let
through on a virtual clock instead of measuring time.  Neither knows anything about
messages or connectors.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class PrioritySlots:
    """A semaphore whose waiters are served by priority (lower first), then in order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    async def acquire(self, priority: int = 0) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # hand the slot straight to the next waiter
                return
        self._free += 1


class RateLimiter:
    """At most ``rate`` acquisitions per second (``rate`` 0: unlimited).

    ``burst`` acquisitions may start back to back after an idle period; the default of 1
    spaces every message by ``1 / rate`` seconds.
    """

    def __init__(self, rate: float, burst: int = 1, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be at least 0 and burst at least 1")
        self.rate = rate
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0  # theoretical arrival time of the next message

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        start = max(self._tat, now)
        self._tat = start + self._interval  # the reservation is made before sleeping
        wait = start - self._tolerance - now
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            if self._tat == start + self._interval:  # nobody reserved after us: give it back
                self._tat = start
            raise
