"""The one in-process TTL cache: answers kept for a few seconds, on the service clock.

Used where a process asks the database the same question for every request or event
(event types, routes, zones, sessions, API keys).  Entries expire ``ttl`` seconds after
they were stored, measured with :func:`soap_service.clock.utcnow`, so tests move time with
``clock.frozen_clock`` instead of sleeping; an entry stored "in the future" (the clock
went back) counts as expired, so a clock step never keeps a stale answer.  The cache is
bounded: at ``max_entries`` it starts over rather than grow without limit (callers look
up names that come from the outside).  Thread-safe for the dict operations it makes;
two threads missing at once both load, which is harmless for these read-only answers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from soap_service import clock

V = TypeVar("V")
DEFAULT_MAX_ENTRIES = 4096
_MISSING = object()


class TtlCache(Generic[V]):
    """A dict whose entries expire ``ttl`` seconds after they were put."""

    def __init__(self, ttl: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: dict[Hashable, tuple[datetime, datetime, V]] = {}

    def get(self, key: Hashable, default: V | None = None) -> V | None:
        entry = self._data.get(key)
        if entry is None or not entry[0] <= clock.utcnow() < entry[1]:
            return default
        return entry[2]

    def put(self, key: Hashable, value: V, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (the cache's own TTL when None; 0: not at all)."""
        seconds = self.ttl if ttl is None else ttl
        if seconds <= 0:
            return
        if len(self._data) >= self.max_entries:
            self._data.clear()
        now = clock.utcnow()
        self._data[key] = (now, now + timedelta(seconds=seconds), value)

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        """The cached value, or ``load()``'s (stored) when there is none or it expired."""
        found = self.get(key, _MISSING)  # type: ignore[arg-type]
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        value = load()
        self.put(key, value)
        return value

    def pop(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
