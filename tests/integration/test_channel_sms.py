"""SMS through the whole pipeline: worker rounds (the real catalog, renderer and store)
against a real SMPP peer (tests/servers/smsc.py, built on smpplib) and a real HTTP SMS
provider (tests/servers/http_provider.py), on SQLite and PostgreSQL.

Every outcome path: accepted (the delivery log names the connector and the SMSC's id),
receipts (DELIVRD marks the delivery delivered; UNDELIV after ``processed`` fails the
event; a receipt naming a later part of a long text), temporary → retried with backoff →
processed, permanent → ``deliveryFailed`` and the number quarantined (the next event to it
``ignored``, an email address untouched), failover to the HTTP provider when the SMSC is
down, a circuit that opens, is probed, reopens and closes (on a test clock), the rate
limit counted on a virtual clock, long texts in parts, UCS-2, and a channel with no
connector.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from channel_support import (
    PHONE,
    Tick,
    attempts,
    dispatcher_factory,
    event,
    history,
    http_sms,
    publish_templates,
    push_event,
    smpp,
    sms_event,
    status,
)
from servers.http_provider import Provider, reply
from servers.smsc import Smsc, Status

from soap_service import clock, exclusions, report
from soap_service.devserve import free_port
from soap_service.devsmtp import MailSink
from soap_service.models import AddressKind, CircuitState, EventStatus
from tests.unit.test_push_limits import VirtualTime, per_second

make_dispatcher = pytest.fixture(dispatcher_factory, name="make_dispatcher")


@pytest.fixture
def setup(db, settings):
    publish_templates(db)
    return db, settings


def test_an_sms_goes_over_smpp_and_the_delivery_names_the_connector(setup, make_dispatcher):
    """One SMS event: the SMSC gets the rendered text from the template's sender to the
    E.164 number; the event ends processed; the attempt names the connector, the SMSC's
    message id and our stable reference."""
    db, settings = setup
    with Smsc() as smsc:
        pk = sms_event(db, settings, "+33 6 12 34 56 78")
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        report_ = d.tick()
        smsc.wait(lambda: len(smsc.messages) == 1)  # stored just after it answered
        [message] = smsc.messages
    assert (report_.claimed, report_.sent) == (1, 1)
    assert (message.source, message.destination, message.text) == (
        "MyShop", "33612345678", "Order A1 shipped")
    assert status(db, pk) is EventStatus.PROCESSED
    [attempt] = attempts(db, pk)
    assert (attempt.channel, attempt.connector, attempt.address, attempt.outcome) == (
        "sms", "smsc-a", PHONE, "sent")
    assert attempt.provider_id == message.message_ids[0]
    assert attempt.message_id == f"mc.1.{pk}"
    assert attempt.template == "ship_sms"


def test_a_delivrd_receipt_marks_the_delivery_delivered(setup, make_dispatcher):
    """The SMSC sends DELIVRD right after accepting: the receipt (queued by the link,
    written by the recorder) marks the delivery delivered and adds a history entry; the
    event stays processed."""
    db, settings = setup
    with Smsc(receipts=lambda submit: "DELIVRD") as smsc:
        pk = sms_event(db, settings)
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        d.tick()
        smsc.wait(lambda: smsc.deliver_sm_resps == [0])
        d.receipts.flush()
    [attempt] = attempts(db, pk)
    assert attempt.receipt == "delivered" and attempt.receipt_at is not None
    assert ("delivered", "receipt DELIVRD err:000 (smsc-a)") in history(db, pk)
    assert status(db, pk) is EventStatus.PROCESSED


def test_an_undeliv_receipt_moves_a_processed_event_to_delivery_failed(setup, make_dispatcher):
    """A late failure, as a bounce is for email: processed → deliveryFailed with the
    receipt's state and error code in the history."""
    db, settings = setup
    with Smsc() as smsc:
        pk = sms_event(db, settings)
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        d.tick()
        assert status(db, pk) is EventStatus.PROCESSED
        smsc.send_receipt(smsc.submits[0].message_id, "UNDELIV", err="001", via="tlv")
        smsc.wait(lambda: smsc.deliver_sm_resps == [0])
        d.receipts.flush()
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    assert history(db, pk)[-1][0] == "deliveryFailed"
    assert "UNDELIV" in history(db, pk)[-1][1] and "smsc-a" in history(db, pk)[-1][1]
    assert attempts(db, pk)[0].receipt == "failed"


def test_a_receipt_for_an_unknown_id_changes_nothing(setup, make_dispatcher, caplog):
    """A receipt naming no delivery of ours changes nothing: it is held for a while (its
    send may not be recorded yet), then -- here at the worker's stop -- logged in one
    short line and dropped."""
    db, settings = setup
    with Smsc() as smsc:
        pk = sms_event(db, settings)
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        d.tick()
        with caplog.at_level("INFO", logger="soap_service.receipts"):
            smsc.send_receipt("DEADBEEF", "UNDELIV")
            smsc.wait(lambda: smsc.deliver_sm_resps == [0])
            d.receipts.flush()
            assert d.receipts.held == 1
            assert not [r for r in caplog.records if "receipt.unknown" in r.getMessage()]
            d.close()
    assert status(db, pk) is EventStatus.PROCESSED and attempts(db, pk)[0].receipt is None
    [line] = [r.getMessage() for r in caplog.records if "receipt.unknown" in r.getMessage()]
    assert "provider_id=DEADBEEF" in line and len(line) < 120


def test_a_throttled_sms_is_retried_with_backoff_then_sent_once(setup, make_dispatcher):
    """0x58 (throttled) is temporary: pending with errorCount 1 and a later processAt;
    the next round after the backoff sends it once."""
    db, settings = setup
    with Smsc(plan=lambda submit, n: Status(0x58) if n == 1 else None) as smsc:
        pk = sms_event(db, settings)
        d = make_dispatcher(settings.replace(
            connectors=(smpp("smsc-a", smsc.port, throttle_pause=0.01),),
            retry_base_seconds=30), db)
        start = clock.utcnow()
        with clock.frozen_clock(start) as advance:
            assert d.tick().deferred == 1
            waiting = event(db, pk)
            assert (waiting.status, waiting.error_count) == (EventStatus.PENDING, 1)
            assert waiting.process_at is not None
            assert waiting.process_at >= start + timedelta(seconds=15)
            assert d.tick().claimed == 0  # not due yet
            advance(timedelta(seconds=31))
            assert d.tick().sent == 1
        smsc.wait(lambda: len(smsc.messages) == 1)
    assert status(db, pk) is EventStatus.PROCESSED
    assert [a.outcome for a in attempts(db, pk)] == ["temporary", "sent"]
    assert attempts(db, pk)[0].response_code == 0x58


def test_a_refused_number_is_quarantined_and_the_next_event_to_it_ignored(setup,
                                                                          make_dispatcher):
    """0x0B (invalid destination) is permanent and refuses the address: deliveryFailed,
    the number quarantined as a phone; the next SMS to it is ignored with an exclusion
    row and never reaches the SMSC, while an email event is not affected."""
    db, settings = setup
    with Smsc(plan=lambda submit, n: Status(0x0B)) as smsc, MailSink() as sink:
        pk = sms_event(db, settings)
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),),
                                             smtp_host=sink.host, smtp_port=sink.port), db)
        d.tick()
        assert status(db, pk) is EventStatus.DELIVERY_FAILED
        entry = exclusions.lookup(db, PHONE, AddressKind.PHONE)
        assert entry is not None and entry.source == "bounce" and "smsc-a" in entry.reason
        again = sms_event(db, settings, "0033612345678")
        mail = push_event(db, settings, email="a@example.com")
        d.tick()
        assert len(smsc.submits) == 1
        sink.wait_for(1)
    assert status(db, again) is EventStatus.IGNORED
    assert exclusions.list_exclusions(db, event_id=again)[0].address == PHONE
    assert status(db, mail) is EventStatus.PROCESSED  # an email is not a phone number
    assert exclusions.lookup(db, PHONE, AddressKind.EMAIL) is None


def test_the_smsc_down_fails_over_to_the_http_provider(setup, make_dispatcher):
    """The SMPP connector (priority 1) points at a closed port: the message goes through
    the HTTP provider (priority 2), and the delivery log names that one."""
    db, settings = setup
    with Provider(lambda r: reply(200, {"id": "p-1"})) as provider:
        pk = sms_event(db, settings)
        d = make_dispatcher(settings.replace(connectors=(
            smpp("smsc-a", free_port(), connect_timeout=0.5),
            http_sms("sms-http", provider.url, 2))), db)
        assert d.tick().sent == 1
        [request] = provider.requests
    assert request.json() == {"to": PHONE, "from": "MyShop", "text": "Order A1 shipped",
                              "reference": f"mc.1.{pk}"}
    [attempt] = attempts(db, pk)
    assert (attempt.connector, attempt.provider_id) == ("sms-http", "p-1")


def test_a_failing_provider_opens_its_circuit_is_probed_reopens_then_closes(
        setup, make_dispatcher):
    """Provider a answers 503: after 2 failures in a row its circuit opens and rounds go
    straight to b (a sees no request); 30 s later (a test clock) one probe reaches a,
    fails, and the circuit reopens; 30 s more, a is up again: the probe succeeds and a
    takes the traffic.  The worker's heartbeat stores each state for `connector list`."""
    db, settings = setup
    up = {"a": False}
    answer_a = lambda r: reply(200, {"id": "a"}) if up["a"] else reply(503)  # noqa: E731
    with Provider(answer_a) as a, Provider(lambda r: reply(200, {"id": "b"})) as b:
        tick = Tick()
        d = make_dispatcher(settings.replace(connectors=(
            http_sms("a", a.url, 1, circuit_failures=2, circuit_reset=30),
            http_sms("b", b.url, 2))), db, connector_clock=tick)

        def one() -> str:
            pk = sms_event(db, settings)
            assert d.tick().sent == 1
            return attempts(db, pk)[-1].connector or ""

        def state() -> CircuitState:
            return next(h.state for h in d.connector_health() if h.name == "a")

        assert [one(), one()] == ["b", "b"] and len(a.requests) == 2
        assert state() is CircuitState.OPEN
        d.beat()
        rows = {r["name"]: r for r in report.connectors(db, settings.replace(
            connectors=d.settings.connectors))}
        assert (rows["a"]["health"], rows["a"]["circuit"]) == ("down", "open")
        assert one() == "b" and len(a.requests) == 2  # skipped while open
        tick.now += 30
        assert one() == "b" and len(a.requests) == 3  # the probe failed: open again
        assert state() is CircuitState.OPEN
        tick.now += 30
        up["a"] = True
        assert [one(), one()] == ["a", "a"] and len(a.requests) == 5
        assert state() is CircuitState.CLOSED


def test_the_rate_limit_is_respected_counted_on_a_virtual_clock(setup, make_dispatcher):
    """rate 10 messages/s, one at a time: 45 SMS reach the SMSC 10 per (virtual) second,
    never more -- counted at the SMSC, not timed."""
    db, settings = setup
    vt = VirtualTime()
    arrivals: list[float] = []

    def plan(submit, n):
        arrivals.append(vt.now)
        return None

    with Smsc(plan=plan) as smsc:
        for n in range(45):
            sms_event(db, settings, order=f"A{n}")
        d = make_dispatcher(settings.replace(
            connectors=(smpp("smsc-a", smsc.port, concurrency=1, rate=10),)), db,
            connector_clock=vt.clock, connector_sleep=vt.sleep)
        assert d.tick().sent == 45
        smsc.wait(lambda: len(smsc.messages) == 45)
    assert per_second(arrivals) == {0: 10, 1: 10, 2: 10, 3: 10, 4: 5}


def test_a_long_text_goes_in_parts_and_a_receipt_for_any_part_finds_it(setup,
                                                                       make_dispatcher):
    """A 400-character text: 3 concatenated parts, reassembled by the SMSC; every part's
    id is stored, so DELIVRD for part 1 marks the delivery delivered, and UNDELIV for
    part 3 fails the message (the text is incomplete on the handset)."""
    db, settings = setup
    note = " - " + ("your parcel is on its way to you " * 12)
    with Smsc() as smsc:
        pk = sms_event(db, settings, note=note)
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        d.tick()
        smsc.wait(lambda: len(smsc.messages) == 1)  # stored just after it answered
        [message] = smsc.messages
        assert len(message.message_ids) == 3 and message.text == f"Order A1 shipped{note}"
        smsc.send_receipt(message.message_ids[0], "DELIVRD")
        smsc.wait(lambda: len(smsc.deliver_sm_resps) == 1)
        d.receipts.flush()
        assert attempts(db, pk)[0].receipt == "delivered"
        smsc.send_receipt(message.message_ids[2], "UNDELIV")
        smsc.wait(lambda: len(smsc.deliver_sm_resps) == 2)
        d.receipts.flush()
    assert attempts(db, pk)[0].provider_id == message.message_ids[0]
    assert attempts(db, pk)[0].receipt == "failed"
    assert status(db, pk) is EventStatus.DELIVERY_FAILED


def test_a_text_outside_gsm_goes_as_ucs2(setup, make_dispatcher):
    """Cyrillic and an emoji: UCS-2, decoded intact by the SMSC."""
    db, settings = setup
    with Smsc() as smsc:
        sms_event(db, settings, note=" — Ваш заказ отправлен 📦")
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        d.tick()
        smsc.wait(lambda: len(smsc.messages) == 1)  # stored just after it answered
        [message] = smsc.messages
    assert (message.encoding, message.text) == ("ucs2",
                                               "Order A1 shipped — Ваш заказ отправлен 📦")


def test_a_channel_with_no_connector_fails_clearly(setup, make_dispatcher):
    """No SMS connector configured: deliveryFailed "no connector configured for channel
    sms", no delivery attempt."""
    db, settings = setup
    pk = sms_event(db, settings)
    make_dispatcher(settings, db).tick()
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    assert event(db, pk).last_error == "no connector configured for channel sms"
    assert attempts(db, pk) == []


def test_real_time_sms_go_ahead_of_batch_ones_for_the_connector(setup, make_dispatcher):
    """One connector slot, a batch event claimed before a real-time one... in one round
    the real-time message still reaches the SMSC first (urgent first for every slot)."""
    db, settings = setup
    with Smsc() as smsc:
        batch = [sms_event(db, settings, queue="batch", order=f"B{n}") for n in range(3)]
        rt = sms_event(db, settings, order="R1")
        d = make_dispatcher(settings.replace(
            connectors=(smpp("smsc-a", smsc.port, concurrency=1),)), db)
        assert d.tick().sent == 4
        smsc.wait(lambda: len(smsc.messages) == 4)
        order = [m.text.split()[1] for m in smsc.messages]
    assert order[0] == "R1" and sorted(order[1:]) == ["B0", "B1", "B2"]
    assert all(status(db, pk) is EventStatus.PROCESSED for pk in [*batch, rt])


@pytest.mark.parametrize("fmt", ["json", "twilio"])
def test_an_http_provider_429_is_retried_after_its_retry_after_then_sent(setup,
                                                                         make_dispatcher, fmt):
    """The HTTP provider answers 429 with Retry-After 40 (more than our 30 s backoff):
    pending, due no sooner than asked; the next round after that sends it once."""
    db, settings = setup
    answers = iter([reply(429, {"code": 20429, "message": "Too many requests"},
                          Retry_After="40"),
                    reply(201, {"sid": "SM9", "id": "p-9"})])
    with Provider(lambda r: next(answers)) as provider:
        pk = sms_event(db, settings)
        extra = {"format": "twilio", "account": "AC1"} if fmt == "twilio" else {}
        d = make_dispatcher(settings.replace(
            connectors=(http_sms("sms-http", provider.url, **extra),),
            retry_base_seconds=30), db)
        start = clock.utcnow()
        with clock.frozen_clock(start) as advance:
            assert d.tick().deferred == 1
            waiting = event(db, pk)
            assert waiting.process_at is not None
            assert waiting.process_at >= start + timedelta(seconds=40)
            advance(timedelta(seconds=41))
            assert d.tick().sent == 1
        assert len(provider.requests) == 2
    assert [(a.outcome, a.response_code) for a in attempts(db, pk)] == [
        ("temporary", 20429 if fmt == "twilio" else 429), ("sent", 201)]


@pytest.mark.parametrize(("fmt", "answer"), [
    ("json", reply(400, {"error": "not a mobile number", "field": "to"})),
    ("twilio", reply(400, {"code": 21614, "message": "'To' number is not a valid mobile"})),
])
def test_an_http_provider_refusing_the_number_quarantines_it(setup, make_dispatcher, fmt,
                                                             answer):
    """A 400 that says the number itself is wrong (JSON "field": "to", Twilio 21614):
    deliveryFailed and the number quarantined as a phone."""
    db, settings = setup
    with Provider(lambda r: answer) as provider:
        pk = sms_event(db, settings)
        extra = {"format": "twilio", "account": "AC1"} if fmt == "twilio" else {}
        make_dispatcher(settings.replace(
            connectors=(http_sms("sms-http", provider.url, **extra),)), db).tick()
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    entry = exclusions.lookup(db, PHONE, AddressKind.PHONE)
    assert entry is not None and "sms-http" in entry.reason


def test_receipts_are_webhooks_too(setup, make_dispatcher):
    """A subscription to processed, delivered and deliveryFailed gets, for an SMS
    delivered and one failed by a late receipt, the four notifications -- each naming
    the SMS channel, the number and the connector -- signed and verified."""
    from webhook_support import Receiver

    from soap_service import outbox, webhooks

    db, settings = setup
    with Receiver() as receiver, Smsc() as smsc:
        receiver.secret = webhooks.add_endpoint(
            db, receiver.url, ["processed", "delivered", "deliveryFailed"], []).secret
        ok, bad = sms_event(db, settings), sms_event(db, settings, order="A2")
        d = make_dispatcher(settings.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        assert d.tick().sent == 2
        smsc.send_receipt(attempts(db, ok)[0].provider_id or "", "DELIVRD")
        smsc.send_receipt(attempts(db, bad)[0].provider_id or "", "UNDELIV", err="001")
        smsc.wait(lambda: len(smsc.deliver_sm_resps) == 2)
        d.receipts.flush()
        box = outbox.Outbox(settings.replace(webhook_retry_schedule="0.1s"), db)
        try:
            box.tick()
        finally:
            box.close()
        got = receiver.verified()
    seen = sorted((g.payload["type"], g.payload["data"]["plId"]) for g in got)
    plid = {pk: str((settings.instance_id << 56) | pk) for pk in (ok, bad)}
    assert seen == sorted([("processed", plid[ok]), ("processed", plid[bad]),
                           ("delivered", plid[ok]), ("deliveryFailed", plid[bad])])
    late = next(g.payload["data"] for g in got if g.payload["type"] == "deliveryFailed")
    assert (late["channel"], late["address"], late["connector"]) == ("sms", PHONE, "smsc-a")
    assert "UNDELIV" in late["reason"]


def test_a_restarted_worker_binds_at_once_and_takes_receipts(setup, make_dispatcher):
    """A worker binds to the SMSC when it starts, before it has anything to send, so a
    receipt for a message an earlier worker sent is taken and recorded."""
    db, settings = setup
    with Smsc() as smsc:
        pk = sms_event(db, settings)
        s = settings.replace(connectors=(smpp("smsc-a", smsc.port),))
        first = make_dispatcher(s, db)
        assert first.tick().sent == 1
        first.close()
        second = make_dispatcher(s, db)
        second.start_channels()
        smsc.wait(lambda: len(smsc.binds) == 2 and smsc.sessions == 1)  # the new bind
        smsc.send_receipt(attempts(db, pk)[0].provider_id or "", "EXPIRED")
        smsc.wait(lambda: 0 in smsc.deliver_sm_resps)
        second.receipts.flush()
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    assert "EXPIRED" in history(db, pk)[-1][1]
