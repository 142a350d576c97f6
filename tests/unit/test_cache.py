"""The one TTL cache: expiry on the service clock, a clock step back, the size bound."""

from __future__ import annotations

from datetime import datetime, timedelta

from soap_service import clock
from soap_service.cache import TtlCache

T0 = datetime(2026, 3, 1, 12, 0, 0)


def test_entries_expire_after_their_ttl_on_the_service_clock() -> None:
    """An entry is answered for ``ttl`` seconds of service time, then forgotten; a put
    with its own TTL overrides the cache's, and a TTL of 0 stores nothing."""
    cache: TtlCache[str] = TtlCache(5)
    with clock.frozen_clock(T0) as advance:
        cache.put("a", "x")
        cache.put("b", "y", ttl=60)
        cache.put("c", "z", ttl=0)
        advance(timedelta(seconds=4.9))
        assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("x", "y", None)
        advance(timedelta(seconds=0.1))
        assert (cache.get("a"), cache.get("b")) == (None, "y")


def test_a_clock_stepped_back_expires_entries() -> None:
    """An entry stored "in the future" (the clock went back) is not answered: a clock step
    never keeps a stale answer for longer than its TTL."""
    cache: TtlCache[str] = TtlCache(5)
    with clock.frozen_clock(T0) as advance:
        cache.put("a", "x")
        advance(timedelta(seconds=-1))
        assert cache.get("a") is None


def test_get_or_load_loads_once_per_ttl_and_caches_none() -> None:
    """``get_or_load`` calls the loader on a miss only; a ``None`` answer is cached too (an
    unknown name asked again and again costs one load per TTL)."""
    cache: TtlCache[str | None] = TtlCache(2)
    calls: list[int] = []

    def load() -> str | None:
        calls.append(1)
        return None

    with clock.frozen_clock(T0) as advance:
        assert cache.get_or_load("k", load) is None
        assert cache.get_or_load("k", load) is None
        assert len(calls) == 1
        advance(timedelta(seconds=2))
        cache.get_or_load("k", load)
        assert len(calls) == 2


def test_the_cache_stays_bounded() -> None:
    """At ``max_entries`` the cache starts over instead of growing without limit (keys
    come from callers: names, tokens)."""
    cache: TtlCache[int] = TtlCache(60, max_entries=100)
    for n in range(1000):
        cache.put(n, n)
        assert len(cache) <= 100
    assert cache.get(999) == 999
