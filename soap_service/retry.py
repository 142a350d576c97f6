"""Retry policy: exponential backoff with jitter, and when to give up. Pure functions.

``next_delay(attempt)`` is ``base * 2**(attempt-1)`` capped at ``max``, then "full
jitter" in the upper half (``[d/2, d]``) so that a relay outage does not make every
deferred event come back in the same second, while still growing geometrically.
``decide(...)`` says what a temporary failure means for an event: retry at a time, or
``tooOld`` because attempts, validity or the event's own ``expiration`` ran out.
``webhook_schedule(text)`` reads the fixed schedule of webhook retries (SPEC §8: 5 s,
5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then failed) and ``webhook_retry_at``
says when attempt N+1 is due.  No I/O and no clock here: callers pass ``now`` (tests are
table-driven).
"""

from __future__ import annotations

import random
import re
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


# ---------------------------------------------------------------- webhooks

_STEP = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_STEP_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def webhook_schedule(text: str) -> tuple[float, ...]:
    """``"5s,5m,30m,2h"`` -> delays in seconds (a bare number is seconds); ValueError when
    a step is not a duration.  An empty schedule means one attempt and no retry."""
    steps = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        match = _STEP.match(raw.strip().lower())
        if match is None:
            raise ValueError(f"not a duration: {raw.strip()!r} (examples: 5s, 5m, 2h, 1d)")
        steps.append(float(match.group(1)) * _STEP_UNITS[match.group(2) or "s"])
    return tuple(steps)


def webhook_retry_at(schedule: tuple[float, ...], attempts: int, now: datetime
                     ) -> datetime | None:
    """After ``attempts`` failed attempts (1 = the first), when the next one is due; None
    when the schedule is used up (the delivery has failed)."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return now + timedelta(seconds=schedule[attempts - 1])
