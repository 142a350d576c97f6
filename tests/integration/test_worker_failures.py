"""A round that fails on a real database failure gives back what the worker holds.

PostgreSQL is made to fail mid-round for real: when the round's statement of interest
reaches the driver (the quarantine lookup just after the claim, or the record after the
sends), an admin connection terminates the worker's backends (``pg_terminate_backend``),
optionally refusing new connections for a while (``ALLOW_CONNECTIONS false``) -- a
database restart as the worker sees it.  The events must then be retried as soon as the
database answers again, not after their lease (120 s), and nothing sent is sent twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import PG_URL, make_settings
from dispatch_support import (
    add_events,
    event_row,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
)
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from soap_service import worker
from soap_service.devsmtp import MailSink
from soap_service.errors import ServerError
from soap_service.models import EventStatus
from soap_service.store import Database, make_engine, schema
from soap_service.store.events import get_event, status_history
from soap_service.worker import Dispatcher

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    settings = make_settings(postgres_url)
    db = Database(make_engine(settings), settings)
    schema.upgrade(db)
    yield db
    db.dispose()


class Outage:
    """Cuts the database of ``db`` when a statement containing ``marker`` is about to run."""

    def __init__(self, db: Database, marker: str, *, refuse_connections: bool) -> None:
        self.db, self.marker, self.refuse = db, marker, refuse_connections
        self.name = make_url(db.settings.database_url).database
        self.admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        self.cut = False

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.cut or self.marker not in statement:
            return
        self.cut = True
        with self.admin.connect() as admin:
            if self.refuse:
                admin.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
            admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = :n AND pid <> pg_backend_pid()"),
                          {"n": self.name})

    def restore(self) -> None:
        with self.admin.connect() as admin:
            admin.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))

    @contextmanager
    def armed(self) -> Iterator[Outage]:
        event.listen(self.db.engine, "before_cursor_execute", self._before)
        try:
            yield self
        finally:
            event.remove(self.db.engine, "before_cursor_execute", self._before)
            self.restore()
            self.admin.dispose()


def _dispatcher(db: Database, sink: MailSink) -> Dispatcher:
    return Dispatcher(sink_settings(db.settings, sink), db, router=stand_in_router,
                      renderer=stand_in_renderer, types=lambda db, name: None)


def _statuses(db: Database, ids: list[int]) -> list[EventStatus]:
    found = [get_event(db, pk) for pk in ids]
    return [e.status for e in found if e is not None]


def test_claims_are_released_at_once_when_the_lookup_after_the_claim_fails(pg: Database):
    """The connection dies during the quarantine lookup right after the claim: the round
    fails, and its events are back to ``pending`` at once (status log says why), so the
    next round sends each of them once -- no 120 s lease to wait out."""
    ids = add_events(pg, [event_row(n) for n in range(3)])
    with MailSink() as sink:
        d = _dispatcher(pg, sink)
        try:
            with Outage(pg, "FROM quarantine", refuse_connections=False).armed() as outage:
                with pytest.raises(ServerError):
                    d.tick()
                assert outage.cut
            assert _statuses(pg, ids) == [EventStatus.PENDING] * 3
            assert status_history(pg, ids[0])[-1].reason == "released: the round failed"
            assert d.tick().sent == 3
            assert sorted(m.rcpt_tos for m in sink.wait_for(3)) == \
                [(f"user{n}@example.com",) for n in range(3)]
        finally:
            d.close()
    assert _statuses(pg, ids) == [EventStatus.PROCESSED] * 3


def test_claims_are_released_when_the_database_comes_back(pg: Database):
    """The database refuses connections for a while after the claim: the release cannot
    happen then; the worker keeps it and the first round once the database is back
    releases, claims and sends the events."""
    ids = add_events(pg, [event_row(n) for n in range(2)])
    with MailSink() as sink:
        d = _dispatcher(pg, sink)
        try:
            with Outage(pg, "FROM quarantine", refuse_connections=True).armed():
                with pytest.raises(ServerError):
                    d.tick()
                with pytest.raises(ServerError):  # still down: nothing claimed, nothing lost
                    d.tick()
            # back: still held by the failed round until this worker's next round
            assert _statuses(pg, ids) == [EventStatus.PROCESSING] * 2
            report = d.tick()
            assert (report.claimed, report.sent) == (2, 2)
            assert len(sink.wait_for(2)) == 2
        finally:
            d.close()
    assert _statuses(pg, ids) == [EventStatus.PROCESSED] * 2


def test_outcomes_of_sent_messages_are_recorded_when_the_database_comes_back(
        pg: Database, monkeypatch: pytest.MonkeyPatch):
    """The database goes away after the sends, while the outcomes are recorded: they are
    kept and recorded by the next round once it is back -- the events end ``processed``
    and nobody gets the message twice."""
    monkeypatch.setattr(worker, "RECORD_ATTEMPTS", 1)  # no 7 s of retries in a test
    ids = add_events(pg, [event_row(n) for n in range(2)])
    with MailSink() as sink:
        d = _dispatcher(pg, sink)
        try:
            with Outage(pg, "INSERT INTO event_status_log", refuse_connections=True).armed():
                with pytest.raises(ServerError):
                    d.tick()
                assert len(sink.wait_for(2)) == 2
            assert _statuses(pg, ids) == [EventStatus.PROCESSING] * 2
            assert d.tick().claimed == 0
        finally:
            d.close()
        assert len(sink.messages) == 2
    assert _statuses(pg, ids) == [EventStatus.PROCESSED] * 2
