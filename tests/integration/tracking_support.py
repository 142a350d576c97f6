"""Helpers for the tracking / follow-up / purge / report tests: events in a known state.

Events are stored with the real ingest store (``store.events.insert_events``) and moved
to their outcome with the real dispatch store (claim with a lease, then
``record_outcomes``), exactly the calls the worker makes, without an SMTP round trip.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from soap_service import clock
from soap_service.models import Delivery, EventStatus, Outcome
from soap_service.store import Database
from soap_service.store import queue as store_queue
from soap_service.store.events import insert_events

WORKER = "test-worker"


def event_row(n: int = 0, *, event_type: str = "order", email: str | None = None,
              queue: str = "rt", **extra: Any) -> dict[str, Any]:
    now = clock.utcnow()
    row: dict[str, Any] = {
        "queue": queue, "event_type": event_type, "priority": 1 if queue == "rt" else 11,
        "email": email or f"user{n}@example.com",
        "ctx_xml": f"<ctx><client><firstname>Ann{n}</firstname></client></ctx>",
        "attributes": json.dumps({"type": event_type, "origin": "shop"}),
        "origin": "shop", "external_id": f"ext-{n}",
        "process_at": now, "created_at": now, "updated_at": now,
    }
    row.update(extra)
    return row


def add_events(db: Database, rows: list[dict[str, Any]]) -> list[int]:
    return insert_events(db, rows).ids


def finish(db: Database, ids: list[int], status: EventStatus = EventStatus.PROCESSED,
           outcome: str = "sent", duration_ms: int = 40, reason: str = "") -> None:
    """Claim ``ids`` and record ``status`` for them (with a delivery row unless no outcome)."""
    now = clock.utcnow()
    claimed = store_queue.claim_events(db, WORKER, limit=1000, now=now, lease_seconds=120)
    wanted = {e.id: e for e in claimed if e.id in ids}
    assert set(wanted) == set(ids), "events to finish must be due and pending"
    outcomes = []
    for pk, event in wanted.items():
        delivery = None
        if outcome:
            delivery = Delivery(
                channel="email", address=event.email, outcome=outcome, template_version_id=1,
                response_code=250 if outcome == "sent" else 550, response_text="ok",
                message_id=f"<mc.1.{pk}@test>", duration_ms=duration_ms)
        outcomes.append(Outcome(pk, status, reason, 0, None, delivery))
    others = [e.id for e in claimed if e.id not in wanted]
    store_queue.release_claims(db, WORKER, others, now)
    store_queue.record_outcomes(db, WORKER, outcomes, now)


def ignore(db: Database, pk: int) -> str:
    """The worker's path for a listed address: exclusion-log row, then ``ignored``."""
    from soap_service import exclusions
    from soap_service.store.events import get_event

    event = get_event(db, pk)
    assert event is not None
    reason = exclusions.check_event(db, event)
    assert reason, "the event's address must be quarantined or denylisted"
    finish(db, [pk], EventStatus.IGNORED, outcome="", reason=reason)
    return reason


def sent_events(db: Database, count: int, **kw: Any) -> list[int]:
    """``count`` events of one kind, stored and sent now."""
    ids = add_events(db, [event_row(n, **kw) for n in range(count)])
    finish(db, ids)
    return ids


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with wsgiref on a free loopback port; yields the base URL."""
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
