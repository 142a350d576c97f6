"""Retry policy: exponential backoff with jitter, and when to give up. Pure functions.

``next_delay(attempt)`` is ``base * 2**(attempt-1)`` capped at ``max``, then "full
jitter" in the upper half (``[d/2, d]``) so that a relay outage does not make every
deferred event come back in the same second, while still growing geometrically.
``decide(...)`` says what a temporary failure means for an event: retry at a time, or
``tooOld`` because attempts, validity or the event's own ``expiration`` ran out.
No I/O and no clock here: callers pass ``now`` (tests are table-driven).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 5
    validity_seconds: int = 86400


def next_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first failure)."""
    exp = min(policy.max_seconds, policy.base_seconds * (2 ** max(0, attempt - 1)))
    r = (rng or random).random()
    return exp / 2 + r * exp / 2


@dataclass(frozen=True)
class Decision:
    """``retry_at`` when the event goes back to ``pending``, else ``give_up_reason``."""

    retry_at: datetime | None
    give_up_reason: str = ""


def expired_reason(now: datetime, created_at: datetime | None, expiration_at: datetime | None,
                   validity_seconds: int) -> str:
    """Why an event is too old to be sent at ``now`` ("" when it is not)."""
    if expiration_at is not None and now >= expiration_at:
        return f"expiration passed ({expiration_at.isoformat()})"
    if created_at is not None and now >= created_at + timedelta(seconds=validity_seconds):
        return f"validity of {validity_seconds}s passed"
    return ""


def decide(policy: RetryPolicy, *, failures: int, now: datetime,
           created_at: datetime | None, expiration_at: datetime | None,
           rng: random.Random | None = None) -> Decision:
    """After ``failures`` temporary failures (this one included): retry when, or give up."""
    if failures >= policy.max_attempts:
        return Decision(None, f"{failures} attempts failed (max {policy.max_attempts})")
    retry_at = now + timedelta(seconds=next_delay(policy, failures, rng))
    too_old = expired_reason(retry_at, created_at, expiration_at, policy.validity_seconds)
    if too_old:
        return Decision(None, f"next attempt would be too late: {too_old}")
    return Decision(retry_at)
