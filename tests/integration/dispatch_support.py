"""Helpers for the dispatch tests: event rows, a stand-in router/renderer pair, sink settings.

The stand-ins are used only where a test is about the queue and the channel, not about
templates; the end-to-end tests use the real catalog and renderer.  The stand-in router
answers with real :class:`~soap_service.route.Route` values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from soap_service import clock, wakeup
from soap_service.config import Settings
from soap_service.devsmtp import MailSink
from soap_service.errors import RenderError
from soap_service.models import (
    Channel,
    Event,
    EventStatus,
    RenderedMessage,
    TemplateContent,
    TemplateVersion,
)
from soap_service.route import Route
from soap_service.store import Database
from soap_service.store.events import insert_events

VERSION = TemplateVersion(
    id=7, template_id=1, template_name="order", event_type="order_confirmation",
    channel=Channel.EMAIL, version=1,
    content=TemplateContent(from_addr="shop@example.org", subject="Order", text="Hi"),
    content_hash="x", published_at=datetime(2026, 1, 1), published_by="test",
)


def stand_in_router(db: Database, event: Event) -> Route:
    """Routes every type to VERSION, except 'unrouted' (routingFailed) and 'held' (paused)."""
    if event.event_type == "unrouted":
        return Route(None, EventStatus.ROUTING_FAILED, "no published template")
    if event.event_type == "held":
        return Route(None, EventStatus.PAUSED, "template paused")
    return Route(VERSION, None, "template order version 1")


def stand_in_renderer(version: TemplateVersion, event: Event) -> RenderedMessage:
    """Subject carries the event id; type 'broken' fails to render."""
    if event.event_type == "broken":
        raise RenderError("required field rtEvent.ctx.client.firstname is missing")
    return RenderedMessage(channel=Channel.EMAIL, subject=f"Order for event {event.id}",
                           text=f"Hello {event.email}", html=f"<p>Hello {event.email}</p>",
                           from_addr="shop@example.org")


def event_row(n: int = 0, *, queue: str = "rt", lane: int = 1, event_type: str = "order",
              email: str | None = None, process_at: datetime | None = None,
              created_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    now = clock.utcnow()
    row: dict[str, Any] = {
        "queue": queue, "event_type": event_type,
        "priority": (0 if queue == "rt" else 10) + lane,
        "email": email or f"user{n}@example.com",
        "ctx_xml": f"<ctx><n>{n}</n></ctx>",
        "process_at": process_at or now, "created_at": created_at or now, "updated_at": now,
    }
    row.update(extra)
    return row


def add_events(db: Database, rows: list[dict[str, Any]]) -> list[int]:
    """Store event rows as ingest does, waking a listening worker (SQLite's socket)."""
    ids = insert_events(db, rows).ids
    wakeup.notify_after_commit(db)
    return ids


def sink_settings(settings: Settings, sink: MailSink, **kw: Any) -> Settings:
    return settings.replace(smtp_host=sink.host, smtp_port=sink.port, **kw)


def past(seconds: float) -> datetime:
    return clock.utcnow() - timedelta(seconds=seconds)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``predicate`` (for subprocesses) with a generous deadline; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
