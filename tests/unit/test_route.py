"""Routing choices (SPEC §3.3), table-driven over the pure ``select_version``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from soap_service.models import Channel, EventStatus, Queue, TemplateContent, TemplateVersion
from soap_service.route import Candidate, select_version

T0 = datetime(2026, 1, 1, 12, 0, 0)


def version(vid: int, name: str, number: int, minutes: int, etype: str = "order",
            channel: Channel = Channel.EMAIL) -> TemplateVersion:
    return TemplateVersion(id=vid, template_id=vid * 10, template_name=name, event_type=etype,
                           channel=channel, version=number, content=TemplateContent(),
                           content_hash="h", published_at=T0 + timedelta(minutes=minutes),
                           published_by="admin")


def cand(name: str, v: TemplateVersion | None, *, etype: str = "order",
         channel: Channel = Channel.EMAIL, paused: bool = False,
         unpublished: bool = False) -> Candidate:
    return Candidate(name, etype, channel, v, unpublished=unpublished, paused=paused)


A2 = version(1, "a", 2, 5)
B1 = version(2, "b", 1, 10)
SMS = version(3, "s", 1, 1, channel=Channel.SMS)

CASES = [
    # (description, candidates, event type, channel, expected version id, expected status)
    ("single live template", [cand("a", A2)], "order", Channel.EMAIL, 1, None),
    ("nothing at all", [], "order", Channel.EMAIL, None, EventStatus.ROUTING_FAILED),
    ("other event type only", [cand("a", A2, etype="reset")], "order", Channel.EMAIL, None,
     EventStatus.ROUTING_FAILED),
    ("other channel only", [cand("s", SMS, channel=Channel.SMS)], "order", Channel.EMAIL,
     None, EventStatus.ROUTING_FAILED),
    ("sms event finds the sms template", [cand("a", A2), cand("s", SMS, channel=Channel.SMS)],
     "order", Channel.SMS, 3, None),
    ("draft never published", [cand("a", None)], "order", Channel.EMAIL, None,
     EventStatus.ROUTING_FAILED),
    ("unpublished", [cand("a", A2, unpublished=True)], "order", Channel.EMAIL, None,
     EventStatus.ROUTING_FAILED),
    ("paused", [cand("a", A2, paused=True)], "order", Channel.EMAIL, None, EventStatus.PAUSED),
    ("paused and unpublished is not paused", [cand("a", A2, paused=True, unpublished=True)],
     "order", Channel.EMAIL, None, EventStatus.ROUTING_FAILED),
    ("latest publish wins", [cand("a", A2), cand("b", B1)], "order", Channel.EMAIL, 2, None),
    ("paused newer template yields to a live older one",
     [cand("a", A2), cand("b", B1, paused=True)], "order", Channel.EMAIL, 1, None),
    ("all paused", [cand("a", A2, paused=True), cand("b", B1, paused=True)], "order",
     Channel.EMAIL, None, EventStatus.PAUSED),
]


@pytest.mark.parametrize(("candidates", "etype", "channel", "want_id", "want_status"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_select_version(candidates, etype, channel, want_id, want_status) -> None:
    """Each case picks the expected version, or the expected reason for none."""
    route = select_version(candidates, etype, channel, Queue.RT)
    assert (route.version.id if route.version else None) == want_id
    assert route.status == want_status
    assert route.ok is (want_id is not None)
    assert route.reason


def test_queue_does_not_change_the_choice() -> None:
    """Real-time and batch events of one type route to the same version."""
    cands = [cand("a", A2), cand("b", B1)]
    assert select_version(cands, "order", Channel.EMAIL, Queue.RT) == \
        select_version(cands, "order", Channel.EMAIL, Queue.BATCH)


def test_routing_failed_reason_names_type_and_channel() -> None:
    """The reason of a routing failure says which type and channel found nothing."""
    route = select_version([], "password_reset", Channel.PUSH, Queue.BATCH)
    assert "password_reset" in route.reason and "push" in route.reason
