"""Routing (SPEC §3.3), pure: which published version serves an event, or why none does.

The candidates are the templates of the catalog with their latest published version
(``catalog.find_route`` loads them).  Rules, in order:

1. only templates of the event's type and channel count; a template whose latest version
   was unpublished (or that was never published) does not route;
2. of the remaining templates, the newest published version of a template that is not
   paused wins (several live templates for one type and channel: the latest publish wins);
3. if every remaining template is paused -> ``paused`` (the event is held, not failed);
4. nothing left -> ``routingFailed`` (final).

The queue (real-time or batch) does not change the choice: one template serves both; it
is carried for the reason text only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from soap_service.models import Channel, EventStatus, Queue, TemplateVersion


@dataclass(frozen=True)
class Candidate:
    """A template as routing sees it: its latest version (if any) and its switches."""

    template_name: str
    event_type: str
    channel: Channel
    version: TemplateVersion | None  # latest published version, None if never published
    unpublished: bool = False  # the latest version was unpublished
    paused: bool = False


@dataclass(frozen=True)
class Route:
    version: TemplateVersion | None
    status: EventStatus | None  # None when a version was found
    reason: str

    @property
    def ok(self) -> bool:
        return self.version is not None


def select_version(candidates: Iterable[Candidate], event_type: str, channel: Channel,
                   queue: Queue) -> Route:
    """The version to render for an event of ``event_type`` on ``channel``, or why none."""
    live = [c for c in candidates
            if c.event_type == event_type and c.channel == channel
            and c.version is not None and not c.unpublished]
    active = [c for c in live if not c.paused]
    if active:
        best = max(active, key=_recency)
        assert best.version is not None
        return Route(best.version, None,
                     f"template {best.template_name} version {best.version.version}")
    if live:
        names = ", ".join(sorted(c.template_name for c in live))
        return Route(None, EventStatus.PAUSED, f"template paused: {names}")
    return Route(None, EventStatus.ROUTING_FAILED,
                 f"no published template for event type {event_type!r} and channel "
                 f"{channel.value} ({queue.value} queue)")


def _recency(candidate: Candidate) -> tuple:
    version = candidate.version
    assert version is not None
    return (version.published_at, version.id)
