"""Purge: events and logs past their retention (per event type, global default), in batches."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from conftest import run_cli
from sqlalchemy import func, insert, select
from tracking_support import add_events, event_row, finish, ignore, sent_events

from soap_service import catalog, clock, exclusions, followup, housekeeping
from soap_service.config import Settings
from soap_service.http.tracking import Hit, record_hit
from soap_service.models import Channel, EventStatus, EventType, TemplateContent
from soap_service.store import Database
from soap_service.store.events import get_event
from soap_service.tables import (
    delivery_log,
    event_status_log,
    events,
    exclusion_log,
    tracking_log,
)
from soap_service.track import TrackingToken

T0 = datetime(2026, 5, 1, 10, 0, 0)
TABLES = {"events": events, "delivery_log": delivery_log, "tracking_log": tracking_log,
          "exclusion_log": exclusion_log, "event_status_log": event_status_log}


def counts(db: Database) -> dict[str, int]:
    with db.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for name, t in TABLES.items()}


def build(db: Database) -> dict[str, list[int]]:
    """At T0: 'short' (1 day) and 'long' (10 days) types, plus an undeclared type 'other'.

    short: 3 sent (each opened once), 1 ignored (exclusion row), 1 pending for next month;
    long: 2 sent; other: 2 sent; one proof delivery row with no event.
    """
    catalog.add_event_type(db, EventType(name="short", retention_seconds=86400))
    catalog.add_event_type(db, EventType(name="long", retention_seconds=10 * 86400))
    short = sent_events(db, 3, event_type="short")
    for pk in short:
        record_hit(db, Hit(TrackingToken("open", pk), "Mozilla/5.0", "", clock.utcnow()))
    exclusions.add(db, "blocked@example.com")
    [ignored] = add_events(db, [event_row(9, event_type="short", email="blocked@example.com")])
    ignore(db, ignored)
    [future] = add_events(db, [event_row(10, event_type="short",
                                         process_at=T0 + timedelta(days=30))])
    long_ = sent_events(db, 2, event_type="long")
    other = sent_events(db, 2, event_type="other")
    with db.begin() as conn:
        conn.execute(insert(delivery_log).values(
            event_id=None, channel="email", address="seed@example.com", outcome="sent",
            is_proof=True, created_at=clock.utcnow()))
    return {"short": short, "ignored": [ignored], "future": [future], "long": long_,
            "other": other}


@pytest.fixture
def purge_settings(db: Database) -> Settings:
    return db.settings.replace(retention_days=5)


def test_purge_counts_and_deletes_by_retention(db: Database, purge_settings) -> None:
    """After 6 days: 'short' and 'other' go with all their logs; 'long' and pending stay."""
    with clock.frozen_clock(T0) as advance:
        ids = build(db)
        before = counts(db)
        advance(timedelta(days=6))
        planned = housekeeping.purge(db, purge_settings, dry_run=True)
        assert counts(db) == before  # a dry run deletes nothing
        done = housekeeping.purge(db, purge_settings, batch_size=2)
        again = housekeeping.purge(db, purge_settings)
    expected_status_rows = before["event_status_log"] - counts(db)["event_status_log"]
    assert done == planned == {
        "events": 3 + 1 + 2, "delivery_log": 3 + 2 + 1, "tracking_log": 3, "exclusion_log": 1,
        "event_status_log": expected_status_rows, "delivery_parts": 0, "bounces": 0,
    }
    assert expected_status_rows >= 6
    assert again == dict.fromkeys(housekeeping.COUNT_KEYS, 0)
    with db.connect() as conn:
        left = sorted(conn.execute(select(events.c.id)).scalars())
    assert left == sorted(ids["long"] + ids["future"])


def test_nothing_purged_before_retention(db: Database, purge_settings) -> None:
    """Half a day later nothing is old enough."""
    with clock.frozen_clock(T0) as advance:
        build(db)
        before = counts(db)
        advance(timedelta(hours=12))
        assert housekeeping.purge(db, purge_settings)["events"] == 0
    assert counts(db) == before


def test_purge_keeps_children_when_parent_goes(db: Database, purge_settings) -> None:
    """A purged parent leaves its (younger) follow-up event in place, unlinked."""
    catalog.add_event_type(db, EventType(name="short", retention_seconds=86400))
    with clock.frozen_clock(T0) as advance:
        [parent] = sent_events(db, 1, event_type="short")
        advance(timedelta(days=1))
        [child] = add_events(db, [event_row(2, event_type="other", parent_id=parent)])
        finish(db, [child], EventStatus.PROCESSED)
        advance(timedelta(days=1))
        assert housekeeping.purge(db, purge_settings)["events"] == 1
    event = get_event(db, child)
    assert event is not None and event.parent_id is None


def test_purge_cli_dry_run(sqlite_url: str) -> None:
    """``msgcenter purge --dry-run --json`` reports the counts and deletes nothing; a batch
    size below 1 is refused."""
    env = {"MC_DATABASE_URL": sqlite_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           "MC_RETENTION_DAYS": "0"}
    run_cli(env, "init")
    out = json.loads(run_cli(env, "--json", "purge", "--dry-run").stdout)
    assert out == {"dry_run": True, **dict.fromkeys(housekeeping.COUNT_KEYS, 0)}
    bad = run_cli(env, "purge", "--batch-size", "0", check=False)  # used to loop forever
    assert bad.returncode == 1 and "--batch-size must be at least 1" in bad.stderr


def test_followup_outlives_its_retention_while_its_parent_exists(db: Database,
                                                                  purge_settings) -> None:
    """A follow-up of a short-retention type is kept while its parent exists, so the
    follow-up job never sees that parent as not followed up and mails it again."""
    catalog.add_event_type(db, EventType(name="order", retention_seconds=30 * 86400))
    catalog.add_event_type(db, EventType(name="nudge", retention_seconds=86400))
    catalog.create_template(db, "nudge_mail", "nudge", Channel.EMAIL, TemplateContent(
        from_addr="shop@example.org", subject="Still there?", html="<p>x</p>", text="x"))
    with clock.frozen_clock(T0) as advance:
        followup.add_rule(db, "nudge", "order", "nudge_mail", "1d", "not-opened")
        [parent] = sent_events(db, 1, event_type="order")
        advance(timedelta(days=1, minutes=1))
        assert followup.tick(db) == 1
        with db.connect() as conn:
            [child] = conn.execute(select(events.c.id)
                                   .where(events.c.parent_id == parent)).scalars()
        finish(db, [child])
        advance(timedelta(days=2))
        assert housekeeping.purge(db, purge_settings)["events"] == 0
        assert followup.tick(db) == 0
    assert get_event(db, child) is not None
