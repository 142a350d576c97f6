"""Quarantine after a hard bounce, denylist, and ``ignored`` events with exclusion-log rows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import make_settings, run_cli
from test_followup import make_catalog
from tracking_support import add_events, event_row

from soap_service import exclusions
from soap_service.devsmtp import Fault, MailSink
from soap_service.errors import NotFound
from soap_service.models import EventStatus, make_plid
from soap_service.store import Database, make_engine
from soap_service.store.events import get_event, status_history
from soap_service.worker import Dispatcher

BOUNCING = "gone@example.com"


def plan(rcpt: str, attempt: int) -> Fault | None:
    """The sink refuses one mailbox at RCPT with a 550."""
    if rcpt.lower() != BOUNCING:
        return None
    return Fault("550 5.1.1 mailbox unavailable", stage="rcpt")


@pytest.fixture
def dispatch(db: Database, settings) -> Iterator[tuple[Dispatcher, MailSink]]:
    make_catalog(db)
    with MailSink(plan=plan) as sink:
        d = Dispatcher(settings.replace(smtp_host=sink.host, smtp_port=sink.port), db)
        yield d, sink
        d.close()


def test_550_at_rcpt_quarantines_then_ignores(db: Database, dispatch) -> None:
    """A 550 at RCPT fails the event and quarantines the address; the next event is ignored."""
    d, sink = dispatch
    [first] = add_events(db, [event_row(1, email="Gone@Example.com")])
    d.tick()
    assert get_event(db, first).status is EventStatus.DELIVERY_FAILED
    entry = exclusions.lookup(db, BOUNCING)
    assert entry is not None and entry.source == "bounce" and "550" in entry.reason

    [second, other] = add_events(db, [event_row(2, email=BOUNCING), event_row(3)])
    report = d.tick()
    assert report.sent == 1
    event = get_event(db, second)
    assert event.status is EventStatus.IGNORED
    assert "quarantined: 550" in (event.last_error or "")
    assert status_history(db, second)[-1].status == "ignored"
    [row] = exclusions.list_exclusions(db, event_id=second)
    assert (row.address, row.reason) == (BOUNCING, event.last_error)
    assert [m.rcpt_tos for m in sink.messages] == [("user3@example.com",)]
    assert get_event(db, other).status is EventStatus.PROCESSED


def test_denylist_ignores_and_removal_releases(db: Database, dispatch) -> None:
    """A manual entry ignores events to the address; once removed, mail flows again."""
    d, sink = dispatch
    exclusions.add(db, "vip@example.com", "asked not to be mailed")
    [pk] = add_events(db, [event_row(1, email="VIP@example.com")])
    d.tick()
    assert get_event(db, pk).status is EventStatus.IGNORED
    [row] = exclusions.list_exclusions(db)
    assert row.reason == "denylisted: asked not to be mailed"
    exclusions.remove(db, "vip@example.com")
    with pytest.raises(NotFound):
        exclusions.remove(db, "vip@example.com")
    [again] = add_events(db, [event_row(2, email="vip@example.com")])
    d.tick()
    assert get_event(db, again).status is EventStatus.PROCESSED
    assert len(sink.messages) == 1


def test_bounce_never_downgrades_a_denylist_entry(db: Database) -> None:
    """An address an operator denylisted stays a manual entry after a bounce."""
    from soap_service.models import SendOutcome, SendResult

    exclusions.add(db, "x@example.com", "operator")
    [pk] = add_events(db, [event_row(1, email="x@example.com")])
    event = get_event(db, pk)
    assert exclusions.quarantine_after_failure(
        db, event, SendResult(SendOutcome.PERMANENT, 550, "no", address_refused=True))
    entry = exclusions.lookup(db, "x@example.com")
    assert entry is not None and (entry.source, entry.reason) == ("manual", "operator")


def test_permanent_failure_after_data_does_not_quarantine(db: Database) -> None:
    """Only a refusal at RCPT is a hard bounce; a 554 at DATA (content) is not."""
    from soap_service.models import SendOutcome, SendResult

    [pk] = add_events(db, [event_row(1, email="y@example.com")])
    event = get_event(db, pk)
    assert not exclusions.quarantine_after_failure(
        db, event, SendResult(SendOutcome.PERMANENT, 554, "spam", address_refused=False))
    assert exclusions.lookup(db, "y@example.com") is None


def test_quarantine_cli(sqlite_url: str, tmp_path) -> None:
    """quarantine add/list/remove and exclusions list work from the command line."""
    env = {"MC_DATABASE_URL": sqlite_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    run_cli(env, "init")
    run_cli(env, "quarantine", "add", "A@Example.com", "--reason", "complained")
    listed = json.loads(run_cli(env, "--json", "quarantine", "list").stdout)
    assert [(e["address"], e["source"], e["reason"]) for e in listed] == [
        ("a@example.com", "manual", "complained")]
    assert json.loads(run_cli(env, "exclusions", "list", "--json").stdout) == []
    db = Database(make_engine(make_settings(sqlite_url)), make_settings(sqlite_url))
    try:
        [pk] = add_events(db, [event_row(1, email="a@EXAMPLE.com")])
        assert exclusions.check_event(db, get_event(db, pk)) == "denylisted: complained"
    finally:
        db.dispose()
    plid = str(make_plid(1, pk))
    rows = json.loads(run_cli(env, "--json", "exclusions", "list", "--event", plid).stdout)
    assert [(r["plId"], r["address"], r["reason"]) for r in rows] == [
        (int(plid), "a@example.com", "denylisted: complained")]
    assert plid in run_cli(env, "exclusions", "list", "--since", "1h").stdout
    for group in ("exclusions", "quarantine", "tracking"):
        bad = run_cli(env, group, "list", "--limit", "0", check=False)
        assert bad.returncode == 1 and "--limit must be at least 1" in bad.stderr
    run_cli(env, "quarantine", "remove", "a@example.com")
    missing = run_cli(env, "quarantine", "remove", "a@example.com", check=False)
    assert missing.returncode == 1 and "not in quarantine" in missing.stderr
    assert json.loads(run_cli(env, "--json", "quarantine", "list").stdout) == []
