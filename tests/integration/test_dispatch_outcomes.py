"""One dispatch tick against a real SMTP sink: every outcome ends in the right status.

Routing and rendering use stand-ins here (the queue and the channel are under test);
``test_dispatch_e2e.py`` goes through the real catalog and renderer.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from dispatch_support import (
    VERSION,
    add_events,
    event_row,
    past,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
)

from soap_service import clock
from soap_service.devsmtp import Fault, MailSink
from soap_service.models import EventStatus, EventType
from soap_service.store import queue
from soap_service.store.events import get_event, status_history
from soap_service.worker import Dispatcher


@pytest.fixture
def make_dispatcher(settings, db):
    made: list[Dispatcher] = []

    def _make(sink: MailSink, types=None, **kw) -> Dispatcher:
        d = Dispatcher(sink_settings(settings, sink, **kw), db, router=stand_in_router,
                       renderer=stand_in_renderer, types=types or (lambda db, name: None))
        made.append(d)
        return d

    yield _make
    for d in made:
        d.close()


def _status(db, pk) -> EventStatus:
    event = get_event(db, pk)
    assert event is not None
    return event.status


def test_tick_sends_and_records(db, make_dispatcher):
    """Due events are sent once each, end `processed`, with a delivery row and history."""
    with MailSink() as sink:
        ids = add_events(db, [event_row(i) for i in range(5)])
        d = make_dispatcher(sink)
        report = d.tick()
        assert (report.claimed, report.sent) == (5, 5)
        got = sink.wait_for(5)
    assert sorted(m.message_id for m in got) == sorted(f"<mc.1.{pk}@msgcenter.local>"
                                                       for pk in ids)
    assert all(_status(db, pk) is EventStatus.PROCESSED for pk in ids)
    [attempt] = queue.delivery_attempts(db, ids[0])
    assert attempt.outcome == "sent" and attempt.response_code == 250
    assert attempt.template_version_id == VERSION.id
    assert attempt.address == "user0@example.com"
    assert [h.status for h in status_history(db, ids[0])][-1] == "processed"
    assert d.tick().claimed == 0


def test_temporary_failure_is_retried_with_backoff_then_sent_once(db, make_dispatcher):
    """450 at RCPT -> pending with errorCount 1 and a later processAt; the retry is sent once."""
    plan = lambda rcpt, attempt: Fault("450 4.2.0 busy", "rcpt") if attempt == 1 else None  # noqa: E731
    with MailSink(plan=plan) as sink:
        [pk] = add_events(db, [event_row(1)])
        d = make_dispatcher(sink, retry_base_seconds=30)
        start = clock.utcnow()
        with clock.frozen_clock(start) as advance:
            assert d.tick().deferred == 1
            ev = get_event(db, pk)
            assert ev is not None and ev.status is EventStatus.PENDING
            assert ev.error_count == 1 and "450" in (ev.last_error or "")
            assert start + timedelta(seconds=15) <= ev.process_at <= start + timedelta(seconds=30)
            assert d.tick().claimed == 0  # not due yet
            advance(timedelta(seconds=31))
            assert d.tick().sent == 1
        sink.wait_for(1)
    assert len(sink.messages) == 1
    assert _status(db, pk) is EventStatus.PROCESSED
    outcomes = [a.outcome for a in queue.delivery_attempts(db, pk)]
    assert outcomes == ["temporary", "sent"]


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault("550 5.1.1 no such user", "rcpt"), EventStatus.DELIVERY_FAILED),
        (Fault("554 5.7.1 spam", "data"), EventStatus.DELIVERY_FAILED),
        (Fault("disconnect", "data"), EventStatus.PENDING),
        (Fault("421 4.7.0 closing", "data"), EventStatus.PENDING),
    ],
)
def test_relay_answers_map_to_statuses(db, make_dispatcher, fault, status):
    """5xx -> deliveryFailed (with the relay's reply); disconnect and 4xx -> pending."""
    with MailSink(plan=lambda rcpt, attempt: fault) as sink:
        [pk] = add_events(db, [event_row(1)])
        make_dispatcher(sink).tick()
    ev = get_event(db, pk)
    assert ev is not None and ev.status is status
    if status is EventStatus.DELIVERY_FAILED:
        assert fault.reply.split(" ")[0] in (ev.last_error or "")
    [attempt] = queue.delivery_attempts(db, pk)
    assert attempt.outcome == ("permanent" if status is EventStatus.DELIVERY_FAILED
                                  else "temporary")


def test_max_attempts_ends_too_old(db, make_dispatcher):
    """After the type's max attempts of temporary failures the event is tooOld."""
    always = lambda rcpt, attempt: Fault("451 later", "data")  # noqa: E731
    types = lambda db, name: EventType(name=name, max_attempts=2)  # noqa: E731
    with MailSink(plan=always) as sink:
        [pk] = add_events(db, [event_row(1)])
        d = make_dispatcher(sink, types=types, retry_base_seconds=1)
        with clock.frozen_clock(clock.utcnow()) as advance:
            d.tick()
            assert _status(db, pk) is EventStatus.PENDING
            advance(timedelta(seconds=5))
            d.tick()
    ev = get_event(db, pk)
    assert ev is not None and ev.status is EventStatus.TOO_OLD and ev.error_count == 2
    assert "2 attempts" in (ev.last_error or "")


def test_expiration_and_validity_end_too_old_without_sending(db, make_dispatcher):
    """Past `expiration` or past the type's validity: tooOld, nothing reaches the relay."""
    types = lambda db, name: EventType(name=name, validity_seconds=60)  # noqa: E731
    with MailSink() as sink:
        expired, stale, fresh = add_events(db, [
            event_row(1, expiration_at=past(1)),
            event_row(2, created_at=past(120)),
            event_row(3),
        ])
        make_dispatcher(sink, types=types).tick()
        sink.wait_for(1)
    assert _status(db, expired) is EventStatus.TOO_OLD
    assert _status(db, stale) is EventStatus.TOO_OLD
    assert _status(db, fresh) is EventStatus.PROCESSED
    assert [m.rcpt_tos for m in sink.messages] == [("user3@example.com",)]
    assert queue.delivery_attempts(db, expired) == []


def test_scheduled_event_waits_until_its_date(db, make_dispatcher):
    """A `scheduled` event (processAt in the future) is sent only once its date comes."""
    with MailSink() as sink:
        start = clock.utcnow()
        when = start + timedelta(hours=2)
        [pk] = add_events(db, [event_row(1, scheduled_at=when, process_at=when)])
        d = make_dispatcher(sink)
        with clock.frozen_clock(start) as advance:
            assert d.tick().claimed == 0
            advance(timedelta(hours=2, seconds=1))
            assert d.tick().sent == 1
        sink.wait_for(1)
    assert _status(db, pk) is EventStatus.PROCESSED


def test_routing_pause_and_render_failures(db, make_dispatcher):
    """No template -> routingFailed; paused -> paused; render error -> deliveryFailed."""
    with MailSink() as sink:
        unrouted, held, broken = add_events(db, [
            event_row(1, event_type="unrouted"), event_row(2, event_type="held"),
            event_row(3, event_type="broken"),
        ])
        make_dispatcher(sink).tick()
    assert _status(db, unrouted) is EventStatus.ROUTING_FAILED
    assert _status(db, held) is EventStatus.PAUSED
    ev = get_event(db, broken)
    assert ev is not None and ev.status is EventStatus.DELIVERY_FAILED
    assert "firstname" in (ev.last_error or "")
    assert sink.messages == []


def test_validity_counts_from_the_scheduled_date(db, make_dispatcher):
    """An event scheduled further ahead than its type's validity is sent when its date
    comes (validity counts from the later of receipt and `scheduled`), and still ends
    tooOld when it then waits longer than the validity."""
    types = lambda db, name: EventType(name=name, validity_seconds=3600)  # noqa: E731
    with MailSink() as sink:
        start = clock.utcnow()
        when = start + timedelta(hours=5)
        sent, late = add_events(db, [
            event_row(1, scheduled_at=when, process_at=when),
            event_row(2, event_type="held", scheduled_at=when, process_at=when),
        ])
        d = make_dispatcher(sink, types=types)
        with clock.frozen_clock(start) as advance:
            advance(timedelta(hours=5, seconds=1))
            assert d.tick().sent == 1
            assert _status(db, late) is EventStatus.PAUSED
            d.reap()
            assert _status(db, late) is EventStatus.PAUSED  # held, within its validity
            advance(timedelta(hours=1))
            d.reap()
        sink.wait_for(1)
    assert _status(db, sent) is EventStatus.PROCESSED
    assert _status(db, late) is EventStatus.TOO_OLD


@pytest.mark.parametrize(("fmt", "ctype"), [(0, "multipart/alternative"), (1, "text/plain"),
                                            (2, "text/html")])
def test_email_format_is_honoured(db, make_dispatcher, fmt, ctype):
    """emailFormat 0 sends both parts, 1 text only, 2 HTML only."""
    with MailSink() as sink:
        add_events(db, [event_row(1, email_format=fmt)])
        make_dispatcher(sink).tick()
        [got] = sink.wait_for(1)
    assert got.message.get_content_type() == ctype


def test_non_email_channel_fails_without_sending(db, make_dispatcher):
    """An SMS event (no SMS connector yet) ends deliveryFailed with the reason."""
    with MailSink() as sink:
        [pk] = add_events(db, [event_row(1, wished_channel=1, mobile_phone="+33600000000")])
        make_dispatcher(sink).tick()
    ev = get_event(db, pk)
    assert ev is not None and ev.status is EventStatus.DELIVERY_FAILED
    assert "sms" in (ev.last_error or "")


def test_paused_events_expire_while_held(db, make_dispatcher):
    """A held (paused) event whose expiration or validity passes ends tooOld at the next
    reap; one still valid stays paused."""
    types = lambda db, name: EventType(name=name, validity_seconds=3600)  # noqa: E731
    with MailSink() as sink:
        start = clock.utcnow()
        expiring, lasting = add_events(db, [
            event_row(1, event_type="held", expiration_at=start + timedelta(minutes=5)),
            event_row(2, event_type="held"),
        ])
        d = make_dispatcher(sink, types=types)
        d.tick()
        assert _status(db, expiring) is EventStatus.PAUSED
        with clock.frozen_clock(start) as advance:
            advance(timedelta(minutes=10))
            d.reap()
            assert _status(db, expiring) is EventStatus.TOO_OLD
            assert _status(db, lasting) is EventStatus.PAUSED
            advance(timedelta(hours=1))
            d.reap()
    assert _status(db, lasting) is EventStatus.TOO_OLD
    assert status_history(db, lasting)[-1].reason == "expired while its template was paused"


def test_express_sends_real_time_events_only(db, make_dispatcher):
    """`express()` (the wake-up path) sends every due real-time event and no batch one."""
    with MailSink() as sink:
        rt = add_events(db, [event_row(i, queue="rt") for i in range(12)])
        batch = add_events(db, [event_row(i, queue="batch") for i in range(12, 15)])
        d = make_dispatcher(sink, smtp_concurrency=4)
        assert d.express() == 12
        sink.wait_for(12)
    assert all(_status(db, pk) is EventStatus.PROCESSED for pk in rt)
    assert all(_status(db, pk) is EventStatus.PENDING for pk in batch)


def test_a_drain_lingers_after_a_small_round_so_the_next_events_share_one(db,
                                                                          make_dispatcher):
    """Events trickling in: after a round that took few events, the drain waits
    MC_WORKER_LINGER before claiming again, so the events that arrive meanwhile go out in
    one round (two transactions) instead of one round each; the first round does not
    wait.  (Arrivals are made by the stand-ins below, not by the clock.)"""
    with MailSink() as sink:
        add_events(db, [event_row(0)])
        d = make_dispatcher(sink, worker_linger=0.2)
        lingered: list[int] = []
        claimed: list[int] = []
        start = d.start

        def counting_start(*args, **kwargs):
            rnd = start(*args, **kwargs)
            claimed.append(rnd.claimed)
            if len(claimed) == 1:  # one event arrives while the first round is out
                add_events(db, [event_row(1)])
                d.woken.set()
            return rnd

        def linger(stop):
            lingered.append(len(claimed))
            if len(lingered) == 1:  # four more while the drain waits
                add_events(db, [event_row(n) for n in range(2, 6)])
                d.woken.set()

        d.start = counting_start  # type: ignore[method-assign]
        d._linger = linger  # type: ignore[method-assign]
        assert d.drain() == 6
        sink.wait_for(6)
    assert claimed[:2] == [1, 5]  # the first round at once, then the five together
    assert lingered[0] == 1  # the wait came after the first round, not before it
