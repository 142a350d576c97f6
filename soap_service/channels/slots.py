"""Concurrency slots for a connector: at most N messages in flight, urgent ones first.

A connector's ``concurrency`` bounds the messages it sends at once; when every slot is
taken, a waiting real-time (``urgent``) message gets the next free slot before any batch
message that was waiting longer.  Plain asyncio, one event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Slots:
    """``size`` slots; :meth:`take` waits for one, urgent waiters served first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one slot")
        self.size = size
        self.busy = 0
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._normal)

    @asynccontextmanager
    async def take(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, urgent: bool = False) -> None:
        if self.busy < self.size and not self.waiting:
            self.busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(waiter)
        try:
            await waiter  # release() counted the slot as ours when it woke us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # woken and cancelled at once: pass the slot on
            else:
                queue.remove(waiter)
            raise

    def release(self) -> None:
        self.busy -= 1
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    self.busy += 1
                    waiter.set_result(None)
                    return
