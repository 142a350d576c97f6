"""Fatigue rules under concurrency: many threads counting sends to one profile at once,
and three ``msgcenter worker`` processes sharing a PostgreSQL queue, never let more
than N messages through."""

from __future__ import annotations

import collections
import os
import subprocess
import threading

import pytest
from conftest import ROOT, make_settings, msgcenter_cmd
from dispatch_support import add_events, event_row, wait_until
from sqlalchemy import func, select

from soap_service import catalog, clock, profiles
from soap_service.devsmtp import MailSink
from soap_service.models import (
    Channel,
    EventType,
    FatigueRule,
    Lane,
    Targeting,
    TemplateContent,
)
from soap_service.store import Database, make_engine, schema
from soap_service.store import profiles as store_profiles
from soap_service.tables import events, exclusion_log, profile_sends


def test_concurrent_reservations_stop_at_the_rule(db) -> None:
    """16 threads reserve a send each for one profile at the same moment, rule max 5:
    exactly 5 are recorded, 11 are refused by that rule."""
    profile, _ = profiles.put(db, "C1", {"email": "ann@example.com"})
    rule = FatigueRule(name="r", max_count=5, period_seconds=86400, id=1)
    barrier = threading.Barrier(16)
    answers: list[str | None] = []
    lock = threading.Lock()

    def reserve(event_id: int) -> None:
        barrier.wait()
        broken = store_profiles.reserve_send(db, profile.id, event_id, Channel.EMAIL,
                                             Lane.TRANSACTIONAL, [rule], clock.utcnow())
        with lock:
            answers.append(broken.name if broken else None)

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert collections.Counter(answers) == {None: 5, "r": 11}
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(profile_sends)).scalar_one() == 5


def _counts(db) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(select(events.c.status, func.count()).group_by(events.c.status))
        return {status: n for status, n in rows}


@pytest.mark.postgres
def test_three_workers_never_pass_the_n_plus_first(postgres_url, tmp_path) -> None:
    """Three worker processes share 60 profile-based events for 3 profiles (20 each),
    rule max 4 per day: exactly 4 per profile are sent, 16 per profile are ignored with
    an exclusion row naming the rule."""
    settings = make_settings(postgres_url)
    db = Database(make_engine(settings), settings)
    schema.upgrade(db)
    catalog.add_event_type(db, EventType(name="news", targeting=Targeting.PROFILE))
    catalog.create_template(db, "news_email", "news", Channel.EMAIL, TemplateContent(
        from_addr="shop@example.org", subject="News", text="Hi {{ profile.firstName }}"))
    catalog.publish(db, "news_email", "test")
    for n in range(3):
        profiles.put(db, f"P{n}", {"email": f"p{n}@example.com", "firstName": f"P{n}"})
    from soap_service import fatigue

    fatigue.add_rule(db, FatigueRule(name="daily", max_count=4, period_seconds=86400))
    procs: list[subprocess.Popen] = []
    try:
        with MailSink() as sink:
            env = {**os.environ, "MC_DATABASE_URL": postgres_url, "MC_SMTP_HOST": sink.host,
                   "MC_SMTP_PORT": str(sink.port), "MC_WORKER_BATCH_SIZE": "5",
                   "PYTHONUNBUFFERED": "1"}
            for i in range(3):
                with (tmp_path / f"w{i}.log").open("wb") as out:
                    procs.append(subprocess.Popen(msgcenter_cmd("-v", "worker"), cwd=str(ROOT),
                                                  env=env, stdout=out,
                                                  stderr=subprocess.STDOUT))
            rows = [event_row(i, event_type="news", email=None, external_id=f"P{i % 3}")
                    for i in range(60)]
            for row in rows:
                row["email"] = None
            add_events(db, rows)
            wait_until(lambda: sum(_counts(db).get(s, 0) for s in ("processed", "ignored"))
                       == 60, 120, f"all events settled (now {_counts(db)})")
            sent = collections.Counter(m.message["To"] for m in sink.messages)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
    assert _counts(db) == {"processed": 12, "ignored": 48}
    assert sent == {f"p{n}@example.com": 4 for n in range(3)}
    with db.connect() as conn:
        reasons = collections.Counter(r.reason for r in conn.execute(exclusion_log.select()))
    assert reasons == {"fatigue rule daily: at most 4 per 1d": 48}
    db.dispose()
