"""``status`` and ``history`` numbers on a known data set (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from conftest import run_cli
from tracking_support import add_events, event_row, finish, ignore

from soap_service import clock, exclusions, report
from soap_service.errors import ValidationFailed
from soap_service.models import EventStatus
from soap_service.store import Database
from soap_service.store import queue as store_queue

T0 = datetime(2026, 6, 10, 15, 0, 0)


def test_status_snapshot(db: Database) -> None:
    """Queue depth per queue and lane, oldest due age, last hour by status, live workers."""
    with clock.frozen_clock(T0 - timedelta(hours=2)) as advance:
        add_events(db, [event_row(0, created_at=clock.utcnow())])  # older than an hour
        advance(timedelta(hours=2))
        now = clock.utcnow()
        add_events(db, [
            event_row(1, process_at=now - timedelta(minutes=10)),
            event_row(2, process_at=now - timedelta(minutes=5)),
            event_row(3, process_at=now + timedelta(hours=1)),  # not due yet
            event_row(4, queue="batch", priority=12, process_at=now - timedelta(minutes=30)),
            event_row(5, priority=0, status="paused"),
            event_row(6, priority=0, status="processed"),
        ])
        store_queue.heartbeat(db, "w-old", now - timedelta(hours=1), now - timedelta(minutes=10))
        store_queue.heartbeat(db, "w-live", now - timedelta(hours=1), now - timedelta(seconds=5))
        snap = report.status(db, db.settings)
    queues = {(q["queue"], q["lane"]): q for q in snap["queues"]}
    assert set(queues) == {("rt", "critical"), ("rt", "transactional"), ("batch", "bulk")}
    rt = queues[("rt", "transactional")]
    assert (rt["pending"], rt["due"], rt["processing"], rt["paused"]) == (4, 3, 0, 0)
    assert rt["oldest_due_age_s"] == 7200.0  # event 0 has been due for two hours
    assert queues[("rt", "critical")]["paused"] == 1
    assert queues[("batch", "bulk")]["oldest_due_age_s"] == 1800.0
    assert (snap["pending"], snap["due"], snap["oldest_due_age_s"]) == (5, 4, 7200.0)
    assert snap["last_hour"] == {"paused": 1, "pending": 4, "processed": 1}
    assert [(w["worker_id"], w["alive"]) for w in snap["workers"]] == [
        ("w-live", True), ("w-old", False)]
    assert snap["workers_alive"] == 1


def build_history(db: Database) -> None:
    """Three hours before T0: 5 'order' events, 2 'news', 1 'unknown'; sent 10 s later."""
    start = T0 - timedelta(hours=3)
    with clock.frozen_clock(start) as advance:
        exclusions.add(db, "blocked@example.com")
        orders = add_events(db, [event_row(n, event_type="order") for n in range(4)])
        [ignored] = add_events(db, [event_row(9, event_type="order",
                                              email="blocked@example.com")])
        news = add_events(db, [event_row(n, event_type="news", queue="batch")
                               for n in (10, 11)])
        [unknown] = add_events(db, [event_row(20, event_type="unknown")])
        advance(timedelta(seconds=10))
        finish(db, orders[:3], duration_ms=40)
        finish(db, orders[3:], EventStatus.DELIVERY_FAILED, outcome="permanent", duration_ms=100)
        ignore(db, ignored)
        finish(db, news[:1], duration_ms=20)
        finish(db, news[1:], EventStatus.TOO_OLD, outcome="")
        finish(db, [unknown], EventStatus.ROUTING_FAILED, outcome="")


def test_history_by_type(db: Database) -> None:
    """Volumes, error split, average queue and send times per event type, and in total."""
    build_history(db)
    with clock.frozen_clock(T0):
        result = report.history(db, 24 * 3600, "type")
    rows = {r["group"]: r for r in result["rows"]}
    order, news, unknown = rows["order"], rows["news"], rows["unknown"]
    assert (order["incoming"], order["outgoing"], order["processed"], order["delivery_failed"],
            order["ignored"], order["error_rate"]) == (5, 3, 3, 1, 1, 0.4)
    assert (order["avg_queue_s"], order["avg_send_ms"]) == (10.0, 40.0)
    assert (news["incoming"], news["outgoing"], news["expired"], news["error_rate"]) == (
        2, 1, 1, 0.5)
    assert news["avg_send_ms"] == 20.0
    assert (unknown["routing_failed"], unknown["outgoing"], unknown["avg_queue_s"]) == (
        1, 0, None)
    s = result["summary"]
    assert (s["incoming"], s["outgoing"], s["processed"]) == (8, 4, 4)
    assert (s["routing_failed"], s["expired"], s["delivery_failed"], s["ignored"]) == (1, 1, 1, 1)
    assert (s["error_rate"], s["avg_queue_s"], s["avg_send_ms"]) == (0.5, 10.0, 35.0)
    assert s["incoming_per_min"] == round(8 / 1440, 3)
    assert s["outgoing_per_min"] == round(4 / 1440, 3)


def test_history_by_status_and_hour(db: Database) -> None:
    """Grouping by status or by hour splits the same totals; a short window is empty."""
    build_history(db)
    with clock.frozen_clock(T0):
        by_status = {r["group"]: r for r in report.history(db, 86400, "status")["rows"]}
        by_hour = report.history(db, 86400, "hour")["rows"]
        last_hour = report.history(db, 3600, "type")
    assert {k: v["incoming"] for k, v in by_status.items()} == {
        "processed": 4, "deliveryFailed": 1, "ignored": 1, "tooOld": 1, "routingFailed": 1}
    assert by_status["processed"]["outgoing"] == 4
    assert [(r["group"], r["incoming"], r["outgoing"]) for r in by_hour] == [
        ("2026-06-10 12:00", 8, 4)]
    assert last_hour["rows"] == [] and last_hour["summary"]["incoming"] == 0


def test_history_rejects_bad_grouping(db: Database) -> None:
    """Only type, status, hour (or none) are groupings."""
    with pytest.raises(ValidationFailed):
        report.history(db, 3600, "colour")


def test_status_and_history_cli(sqlite_url: str) -> None:
    """``msgcenter status`` and ``history`` print tables, and JSON with --json."""
    env = {"MC_DATABASE_URL": sqlite_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    run_cli(env, "init")
    status = json.loads(run_cli(env, "--json", "status").stdout)
    assert (status["pending"], status["queues"], status["workers_alive"]) == (0, [], 0)
    history = json.loads(run_cli(env, "history", "--since", "2h", "--by", "hour",
                                 "--json").stdout)
    assert (history["by"], history["rows"], history["summary"]["incoming"]) == ("hour", [], 0)
    table = run_cli(env, "history").stdout
    assert "incoming_per_min" in table and "GROUP" not in table
    bad = run_cli(env, "history", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "invalid duration" in bad.stderr
