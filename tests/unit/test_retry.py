"""Retry policy: backoff growth, jitter bounds, and when an event becomes tooOld."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from soap_service import retry
from soap_service.retry import RetryPolicy, decide, expired_reason, next_delay

NOW = datetime(2026, 1, 1, 12, 0, 0)
POLICY = RetryPolicy(base_seconds=30, max_seconds=3600, max_attempts=5, validity_seconds=86400)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 15, 30), (2, 30, 60), (3, 60, 120), (4, 120, 240), (8, 1800, 3600), (30, 1800, 3600)],
)
def test_delay_grows_geometrically_within_jitter_bounds(attempt, low, high):
    """Attempt n waits between half and all of base*2^(n-1), capped at max_seconds."""
    rng = random.Random(attempt)
    delays = [next_delay(POLICY, attempt, rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) / 4  # jitter actually spreads values


def test_jitter_differs_between_events():
    """Two events failing at the same moment do not come back at the same second."""
    rng = random.Random(7)
    assert len({round(next_delay(POLICY, 3, rng), 3) for _ in range(20)}) > 15


def test_retry_scheduled_after_a_failure():
    """A first temporary failure schedules a retry in the future within the first backoff."""
    d = decide(POLICY, failures=1, now=NOW, created_at=NOW, expiration_at=None)
    assert d.retry_at is not None and not d.give_up_reason
    assert NOW + timedelta(seconds=15) <= d.retry_at <= NOW + timedelta(seconds=30)


def test_gives_up_after_max_attempts():
    """The max-attempts-th failure gives up with a reason."""
    d = decide(POLICY, failures=5, now=NOW, created_at=NOW, expiration_at=None)
    assert d.retry_at is None
    assert "5 attempts" in d.give_up_reason


def test_gives_up_when_next_attempt_passes_expiration():
    """A retry that would land after the event's expiration gives up now."""
    d = decide(POLICY, failures=1, now=NOW, created_at=NOW,
               expiration_at=NOW + timedelta(seconds=10))
    assert d.retry_at is None
    assert "expiration" in d.give_up_reason


def test_gives_up_when_next_attempt_passes_validity():
    """A retry that would land after the type's validity gives up now."""
    policy = RetryPolicy(base_seconds=60, validity_seconds=3600)
    d = decide(policy, failures=1, now=NOW, created_at=NOW - timedelta(seconds=3590),
               expiration_at=None)
    assert d.retry_at is None
    assert "validity" in d.give_up_reason


@pytest.mark.parametrize(
    ("created", "expiration", "validity", "expect"),
    [
        (NOW, None, 60, ""),
        (NOW - timedelta(seconds=61), None, 60, "validity"),
        (NOW, NOW - timedelta(seconds=1), 60, "expiration"),
        (NOW, NOW + timedelta(seconds=1), 60, ""),
        (None, None, 60, ""),
    ],
)
def test_expired_reason(created, expiration, validity, expect):
    """An event is too old once its expiration or its type's validity has passed."""
    reason = expired_reason(NOW, created, expiration, validity)
    assert (expect in reason) if expect else reason == ""


@pytest.mark.parametrize(("text", "expected"), [
    ("5s,5m,30m,2h,5h,10h,14h,20h,24h",
     (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)),
    ("0.2, 1ms,2", (0.2, 0.001, 2.0)),
    ("", ()),
])
def test_webhook_schedule(text, expected):
    """The webhook retry schedule reads durations (a bare number is seconds)."""
    assert retry.webhook_schedule(text) == expected


@pytest.mark.parametrize("text", ["5x", "5s,,soon", "-1s", "1 h 2"])
def test_webhook_schedule_refuses_what_is_not_a_duration(text):
    """A step that is not a duration is a ValueError naming it (config turns it into a
    ConfigError at start-up)."""
    with pytest.raises(ValueError, match="not a duration"):
        retry.webhook_schedule(text)


def test_webhook_retry_at_walks_the_schedule_then_gives_up():
    """Attempt N failed -> due after step N; past the last step -> None (failed)."""
    now = datetime(2030, 1, 1)
    schedule = (5.0, 300.0)
    assert retry.webhook_retry_at(schedule, 1, now) == now + timedelta(seconds=5)
    assert retry.webhook_retry_at(schedule, 2, now) == now + timedelta(minutes=5)
    assert retry.webhook_retry_at(schedule, 3, now) is None
    assert retry.webhook_retry_at((), 1, now) is None
