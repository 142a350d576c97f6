"""Targeting, pure parts: the address a profile gives per channel, and that an address
the event has wins."""

from __future__ import annotations

import pytest

from soap_service import targeting
from soap_service.models import Event, Profile, Queue

PROFILE = Profile(id=1, external_id="C1", email="ann@example.com", mobile_phone="+33612345678",
                  push_tokens=("tok-1", "tok-2"))


@pytest.mark.parametrize(("wished", "attr", "expected"), [
    (0, "email", "ann@example.com"),
    (1, "mobile_phone", "+33612345678"),
    (41, "registration_token", "tok-1"),
])
def test_address_from_the_profile(wished: int, attr: str, expected: str) -> None:
    event = Event(id=5, queue=Queue.RT, event_type="t", ctx_xml="<ctx/>", wished_channel=wished)
    joined = targeting.with_profile(event, PROFILE, "https://mc.example/u/x")
    assert getattr(joined, attr) == joined.address == expected
    assert joined.profile is PROFILE and joined.unsubscribe_url == "https://mc.example/u/x"
    assert event.address is None and event.profile is None  # the original is unchanged


def test_the_event_address_wins_and_none_stays_none() -> None:
    event = Event(id=5, queue=Queue.RT, event_type="t", ctx_xml="<ctx/>", email="x@example.com")
    assert targeting.with_profile(event, PROFILE).email == "x@example.com"
    bare = Profile(id=2, external_id="C2")
    push = Event(id=6, queue=Queue.RT, event_type="t", ctx_xml="<ctx/>", wished_channel=42)
    assert targeting.with_profile(push, bare).address is None


@pytest.mark.parametrize(("channel", "lane", "exempt", "applies"), [
    (None, None, True, {("email", "transactional"), ("sms", "bulk"), ("push", "bulk"),
                        ("email", "bulk"), ("sms", "transactional"),
                        ("push", "transactional")}),
    ("sms", None, True, {("sms", "bulk"), ("sms", "transactional")}),
    (None, "bulk", True, {("email", "bulk"), ("sms", "bulk"), ("push", "bulk")}),
    ("email", "critical", True, set()),  # a critical-only rule that exempts critical
    ("email", "critical", False, {("email", "critical")}),
    (None, None, False, {(c, lane) for c in ("email", "sms", "push")
                         for lane in ("critical", "transactional", "bulk")}),
])
def test_which_messages_a_fatigue_rule_counts(channel, lane, exempt, applies) -> None:
    """A rule counts its channel and lane (any when unset); the critical lane only with
    --include-critical."""
    from soap_service.models import Channel, FatigueRule, Lane

    rule = FatigueRule("r", 1, 60, Channel(channel) if channel else None,
                       Lane(lane) if lane else None, exempt_critical=exempt)
    got = {(c.value, la.value) for c in Channel for la in Lane if rule.applies(c, la)}
    assert got == applies
