"""The service's notion of "now": naive UTC, replaceable in tests.

Every module asks :func:`utcnow` instead of calling ``datetime.now`` so that tests can
move time forward (follow-ups after 3 days, lease expiry, retention) without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta


def _system_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_now: Callable[[], datetime] = _system_now


def utcnow() -> datetime:
    """Current time as a naive UTC datetime (the storage convention)."""
    return _now()


def parse_iso_utc(raw: str) -> datetime:
    """ISO 8601 text -> naive UTC (no offset means UTC); ``ValueError`` if not ISO 8601
    or if UTC falls outside years 1-9999 (``9999-12-31T23:00:00-10:00``)."""
    value = datetime.fromisoformat(raw.strip())
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError as exc:
            raise ValueError(f"date out of range in UTC: {raw.strip()!r}") from exc
    return value


@contextmanager
def frozen_clock(start: datetime) -> Iterator[Callable[[timedelta], None]]:
    """Freeze :func:`utcnow` at ``start``; yields ``advance(delta)``. Tests only."""
    global _now
    current = [start]
    previous = _now
    _now = lambda: current[0]  # noqa: E731

    def advance(delta: timedelta) -> None:
        current[0] = current[0] + delta

    try:
        yield advance
    finally:
        _now = previous
