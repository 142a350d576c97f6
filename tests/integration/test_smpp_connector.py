"""The smpp connector against a real SMPP peer (tests/servers/smsc.py, built on smpplib).

Every outcome path: accepted with the SMSC's id, temporary (throttle, system error, queue
full, link dropped mid-window then reconnected, no answer, bind refused, SMSC down),
permanent (invalid destination refuses the address), long texts in parts reassembled by
the SMSC, UCS-2 and GSM extension characters, receipts to the sink, enquire_link both
ways, unbind both ways, and the window counted at the SMSC.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from servers.smsc import DROP, HOLD, Smsc, Status

import soap_service.channels.smpp  # noqa: F401  (registers the smpp kind)
from soap_service.channels.base import build_connector
from soap_service.channels.smpp import SmppConnector
from soap_service.config import ConnectorConfig
from soap_service.models import Channel, Receipt, ReceiptState, SendOutcome, SmsMessage

TO = "+33612345678"


def make(smsc: Smsc | None, sink: Callable[[Receipt], None] | None = None, *,
         concurrency: int = 8, port: int = 0, **options: Any) -> SmppConnector:
    config = ConnectorConfig("smsc-a", Channel.SMS, "smpp", concurrency=concurrency, options={
        "host": "127.0.0.1", "port": smsc.port if smsc else port, "system_id": "mc",
        "password": "secret", "system_type": "mc1", "source_addr": "MyShop",
        "reconnect_min": 0.05, "reconnect_max": 0.2, "connect_timeout": 2.0,
        "response_timeout": 5.0, **options})
    connector = build_connector(config, sink)
    assert isinstance(connector, SmppConnector)
    return connector


def sms(text: str = "Your order has shipped", ref: str = "mc.1.1") -> SmsMessage:
    return SmsMessage(text=text, reference=ref)


def run(body: Callable[[SmppConnector], Awaitable[Any]], connector: SmppConnector) -> Any:
    async def go() -> Any:
        try:
            return await body(connector)
        finally:
            await connector.close()
    return asyncio.run(go())


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_accepted_with_the_smscs_message_id() -> None:
    """A short GSM text: one submit_sm with the configured addressing; SENT with the id."""
    with Smsc() as smsc:
        result = run(lambda c: c.send(sms(), TO), make(smsc))
        assert result.outcome is SendOutcome.SENT
        assert result.connector == "smsc-a"
        (submit,) = smsc.submits
        assert result.provider_id == submit.message_id != ""
        assert result.part_ids == ()
        assert smsc.binds == [("mc", "secret", "mc1")]
        assert (submit.source, submit.source_ton, submit.source_npi) == ("MyShop", 5, 0)
        assert (submit.destination, submit.dest_ton, submit.dest_npi) == ("33612345678", 1, 1)
        assert (submit.registered_delivery, submit.data_coding, submit.esm_class) == (1, 0, 0)
        assert smsc.messages[0].text == "Your order has shipped"


def test_a_numeric_sender_of_the_message_overrides_the_configured_one() -> None:
    """SmsMessage.sender wins; a leading + is not sent (TON says international)."""
    with Smsc() as smsc:
        message = SmsMessage(text="hi", reference="r", sender="+33700000000")
        result = run(lambda c: c.send(message, TO), make(
            smsc, source_ton=1, source_npi=1, registered_delivery=False))
        assert result.outcome is SendOutcome.SENT
        submit = smsc.submits[0]
        assert (submit.source, submit.source_ton, submit.source_npi) == ("33700000000", 1, 1)
        assert submit.registered_delivery == 0


@pytest.mark.parametrize(("status", "outcome", "refused", "words"), [
    (0x58, SendOutcome.TEMPORARY, False, "Throttling error"),
    (0x08, SendOutcome.TEMPORARY, False, "System Error (0x08)"),
    (0x14, SendOutcome.TEMPORARY, False, "Message Queue is full (0x14)"),
    (0x0B, SendOutcome.PERMANENT, True, "Invalid Destination Address (0x0B)"),
    (0x51, SendOutcome.PERMANENT, True, "Invalid Destination address NPI (0x51)"),
    (0x0A, SendOutcome.PERMANENT, False, "Invalid Source Address (0x0A)"),
    (0x01, SendOutcome.PERMANENT, False, "Message Length is invalid (0x01)"),
    (0x401, SendOutcome.TEMPORARY, False, "(0x401)"),  # a vendor code nobody configured
])
def test_command_statuses_map_to_outcomes(status: int, outcome: SendOutcome, refused: bool,
                                          words: str) -> None:
    """Throttle / system error / queue full are temporary; destination errors refuse the
    address; other permanent statuses do not."""
    with Smsc(plan=lambda s, n: Status(status)) as smsc:
        result = run(lambda c: c.send(sms(), TO), make(smsc))
        assert (result.outcome, result.address_refused, result.code) == (outcome, refused, status)
        assert words in result.text
        assert result.provider_id == ""


def test_vendor_statuses_can_be_declared_permanent() -> None:
    """permanent_statuses lists vendor codes that must not be retried."""
    with Smsc(plan=lambda s, n: Status(0x401)) as smsc:
        result = run(lambda c: c.send(sms(), TO), make(smsc, permanent_statuses=[0x401]))
        assert result.outcome is SendOutcome.PERMANENT


def test_a_throttle_pauses_new_submits_and_asks_for_a_retry_later() -> None:
    """0x58: temporary with retry_after; the next submit waits out the pause."""
    with Smsc(plan=lambda s, n: Status(0x58) if n == 1 else None) as smsc:
        async def body(c: SmppConnector) -> Any:
            first = await c.send(sms(), TO)
            loop = asyncio.get_running_loop()
            started = loop.time()
            second = await c.send(sms(), TO)
            return first, second, loop.time() - started
        first, second, waited = run(body, make(smsc, throttle_pause=0.3))
        assert (first.outcome, first.retry_after) == (SendOutcome.TEMPORARY, 0.3)
        assert second.outcome is SendOutcome.SENT
        assert waited >= 0.25  # the pause was honoured before the second submit_sm


def test_link_dropped_mid_window_fails_in_flight_then_reconnects() -> None:
    """The SMSC drops the bind with 3 submits unanswered: those 3 are temporary; the
    connector binds again and later sends succeed."""
    with Smsc(plan=lambda s, n: HOLD if n <= 3 else None) as smsc:
        async def body(c: SmppConnector) -> Any:
            sends = [asyncio.ensure_future(c.send(sms(f"m{i}"), TO)) for i in range(3)]
            await until(lambda: smsc.outstanding == 3)
            smsc.drop_all()
            lost = await asyncio.gather(*sends)
            later = await c.send(sms("after"), TO)
            while later.outcome is not SendOutcome.SENT:  # reconnecting (backoff 0.05 s)
                later = await c.send(sms("after"), TO)
            return lost, later
        lost, later = run(body, make(smsc))
        assert [r.outcome for r in lost] == [SendOutcome.TEMPORARY] * 3
        assert all("link lost before submit_sm_resp" in r.text for r in lost)
        assert later.outcome is SendOutcome.SENT
        assert len(smsc.binds) == 2
        assert smsc.messages[-1].text == "after"


def test_a_connection_closed_on_submit_is_temporary() -> None:
    """The SMSC closes the connection instead of answering: temporary, then reconnect."""
    with Smsc(plan=lambda s, n: DROP if n == 1 else None) as smsc:
        async def body(c: SmppConnector) -> Any:
            first = await c.send(sms(), TO)
            second = await c.send(sms(), TO)
            while second.outcome is not SendOutcome.SENT:
                second = await c.send(sms(), TO)
            return first, second
        first, second = run(body, make(smsc))
        assert first.outcome is SendOutcome.TEMPORARY
        assert second.outcome is SendOutcome.SENT


def test_no_answer_in_time_is_temporary() -> None:
    """A submit_sm the SMSC never answers ends temporary after response_timeout."""
    with Smsc(plan=lambda s, n: HOLD) as smsc:
        result = run(lambda c: c.send(sms(), TO), make(smsc, response_timeout=0.2))
        assert result.outcome is SendOutcome.TEMPORARY
        assert result.text == "no submit_sm_resp within 0.2s"


def test_window_bounds_the_pdus_outstanding_at_the_smsc() -> None:
    """20 messages with room for 20 in flight but a window of 4: the SMSC never holds more
    than 4 unanswered submit_sm (counted there, released in rounds)."""
    with Smsc(plan=lambda s, n: HOLD) as smsc:
        async def body(c: SmppConnector) -> Any:
            sends = [asyncio.ensure_future(c.send(sms(f"m{i}"), TO)) for i in range(20)]
            answered = 0
            while answered < 20:
                expected = min(4, 20 - answered)
                await until(lambda e=expected: smsc.outstanding == e)  # type: ignore[misc]
                smsc.release()
                answered += expected
            return await asyncio.gather(*sends)
        results = run(body, make(smsc, concurrency=20, window=4))
        assert [r.outcome for r in results] == [SendOutcome.SENT] * 20
        assert smsc.max_outstanding == 4
        assert len({r.provider_id for r in results}) == 20


def test_concurrency_bounds_messages_in_flight() -> None:
    """concurrency 3 with a window of 10: 3 unanswered submits at most."""
    with Smsc(plan=lambda s, n: HOLD) as smsc:
        async def body(c: SmppConnector) -> Any:
            sends = [asyncio.ensure_future(c.send(sms(f"m{i}"), TO)) for i in range(9)]
            for _round in range(3):
                await until(lambda: smsc.outstanding == 3)
                smsc.release()
            return await asyncio.gather(*sends)
        results = run(body, make(smsc, concurrency=3, window=10))
        assert all(r.outcome is SendOutcome.SENT for r in results)
        assert smsc.max_outstanding == 3


def test_a_long_text_goes_in_parts_the_smsc_reassembles() -> None:
    """400 GSM characters: 3 parts with UDH; the SMSC rebuilds the text; every part's id
    is kept, the first as provider_id."""
    text = ("Your order 1234 has shipped and will arrive tomorrow. " * 8)[:400]
    with Smsc() as smsc:
        result = run(lambda c: c.send(sms(text), TO), make(smsc))
        assert result.outcome is SendOutcome.SENT
        assert len(smsc.submits) == 3
        assert all(s.esm_class & 0x40 for s in smsc.submits)
        (message,) = smsc.messages
        assert (message.text, message.encoding) == (text, "gsm")
        assert result.part_ids == tuple(message.message_ids)
        assert result.provider_id == message.message_ids[0]


@pytest.mark.parametrize(("text", "encoding", "parts"), [
    ("Привет! Ваш заказ отправлен 📦", "ucs2", 1),
    ("Заказ 😀 " * 20, "ucs2", 3),
    ("Prix: 10€ [promo] {code} ~ ^ | \\", "gsm", 1),
    ("Total 99€ " * 20, "gsm", 2),
])
def test_ucs2_and_gsm_extension_texts_arrive_intact(text: str, encoding: str,
                                                    parts: int) -> None:
    """Cyrillic and emoji go as UCS-2 (data_coding 8); € and brackets stay GSM (escaped)."""
    with Smsc() as smsc:
        result = run(lambda c: c.send(sms(text), TO), make(smsc))
        assert result.outcome is SendOutcome.SENT
        assert len(smsc.submits) == parts
        assert smsc.submits[0].data_coding == (8 if encoding == "ucs2" else 0)
        assert (smsc.messages[0].text, smsc.messages[0].encoding) == (text, encoding)
        if encoding == "gsm":
            assert b"\x1be" in smsc.submits[0].short_message  # € is ESC 0x65


def test_a_text_over_max_parts_is_refused_without_sending() -> None:
    """Too long for max_parts: permanent, with the reason, and nothing submitted."""
    with Smsc() as smsc:
        result = run(lambda c: c.send(sms("x" * 500), TO), make(smsc, max_parts=3))
        assert result.outcome is SendOutcome.PERMANENT
        assert result.text == ("the text needs 4 SMS parts (500 characters, GSM 03.38); "
                               "at most 3 are allowed (max_parts)")
        assert smsc.submits == []


def test_a_part_refused_fails_the_message_and_names_the_part() -> None:
    """Part 2 of 3 throttled: the message is temporary and the text says which part."""
    with Smsc(plan=lambda s, n: Status(0x58) if n == 2 else None) as smsc:
        result = run(lambda c: c.send(sms("y" * 400), TO), make(smsc, throttle_pause=0))
        assert result.outcome is SendOutcome.TEMPORARY
        assert result.text.startswith("part 2 of 3: Throttling error")
        assert len(smsc.submits) == 2  # no third part after the refusal


@pytest.mark.parametrize(("address", "message"), [
    ("0612345678", sms()),
    ("+33 6 12", sms()),
    ("", sms()),
])
def test_an_address_that_is_not_e164_is_refused(address: str, message: SmsMessage) -> None:
    """Only E.164 numbers are sent (ingest normalises them)."""
    with Smsc() as smsc:
        result = run(lambda c: c.send(message, address), make(smsc))
        assert (result.outcome, result.address_refused) == (SendOutcome.PERMANENT, True)
        assert smsc.submits == []


@pytest.mark.parametrize("via", ["text", "tlv"])
def test_receipts_reach_the_sink(via: str) -> None:
    """DELIVRD, UNDELIV, REJECTD, EXPIRED and ENROUTE receipts, in the receipt text or the
    receipted_message_id/message_state TLVs, become Receipt values; each is answered."""
    received: list[Receipt] = []
    with Smsc(receipt_via=via) as smsc:
        async def body(c: SmppConnector) -> Any:
            results = [await c.send(sms(f"m{i}"), TO) for i in range(5)]
            for result, stat in zip(results, ["DELIVRD", "UNDELIV", "REJECTD", "EXPIRED",
                                              "ENROUTE"], strict=True):
                smsc.send_receipt(result.provider_id, stat, err="001", via=via)
            await until(lambda: len(received) == 5)
            return results
        results = run(body, make(smsc, sink=received.append))
        assert [(r.provider_id, r.state, r.code) for r in received] == [
            (results[0].provider_id, ReceiptState.DELIVERED, "DELIVRD"),
            (results[1].provider_id, ReceiptState.FAILED, "UNDELIV"),
            (results[2].provider_id, ReceiptState.FAILED, "REJECTD"),
            (results[3].provider_id, ReceiptState.FAILED, "EXPIRED"),
            (results[4].provider_id, ReceiptState.PENDING, "ENROUTE"),
        ]
        assert all(r.connector == "smsc-a" for r in received)
        assert smsc.deliver_sm_resps == [0] * 5
        if via == "text":
            assert received[1].text == "err:001"
            assert received[0].at is not None and received[0].at.year == 2026


def test_automatic_receipts_of_every_part_name_a_part_id() -> None:
    """The SMSC sends one receipt per part; each names one of the message's part_ids."""
    received: list[Receipt] = []
    with Smsc(receipts=lambda s: "DELIVRD") as smsc:
        async def body(c: SmppConnector) -> Any:
            result = await c.send(sms("z" * 300), TO)
            await until(lambda: len(received) == 2)
            return result
        result = run(body, make(smsc, sink=received.append))
        assert sorted(r.provider_id for r in received) == sorted(result.part_ids)


def test_a_failing_sink_makes_the_smsc_resend_later() -> None:
    """The sink raised: deliver_sm_resp carries 0x08 so the SMSC keeps the receipt."""
    def sink(receipt: Receipt) -> None:
        raise RuntimeError("database down")

    with Smsc() as smsc:
        async def body(c: SmppConnector) -> None:
            result = await c.send(sms(), TO)
            smsc.send_receipt(result.provider_id, "DELIVRD")
            await until(lambda: smsc.deliver_sm_resps == [0x08])
        run(body, make(smsc, sink=sink))


def test_a_mobile_originated_message_is_answered_and_not_a_receipt() -> None:
    """A deliver_sm that is not a receipt gets deliver_sm_resp 0; the sink sees nothing."""
    received: list[Receipt] = []
    with Smsc() as smsc:
        async def body(c: SmppConnector) -> None:
            await c.send(sms(), TO)
            smsc.send_deliver_sm(esm_class=0, data_coding=0, source_addr="33612345678",
                                 destination_addr="MyShop", short_message=b"STOP")
            smsc.send_receipt("nope", "DELIVRD", esm_class=0)  # receipt text, no receipt flag
            await until(lambda: len(smsc.deliver_sm_resps) == 2)
        run(body, make(smsc, sink=received.append))
        assert smsc.deliver_sm_resps == [0, 0]
        assert received == []


def test_enquire_link_both_ways() -> None:
    """The connector answers the SMSC's enquire_link and sends its own periodically."""
    with Smsc() as smsc:
        async def body(c: SmppConnector) -> None:
            await c.send(sms(), TO)
            smsc.send_enquire_link()
            await until(lambda: smsc.enquire_link_resps == 1)
            await until(lambda: smsc.enquire_links >= 2)
        run(body, make(smsc, enquire_link_interval=0.05))


def test_an_unbind_from_the_smsc_is_answered_and_the_connector_binds_again() -> None:
    """unbind → unbind_resp, then a new bind; the next send goes through."""
    with Smsc() as smsc:
        async def body(c: SmppConnector) -> Any:
            await c.send(sms(), TO)
            smsc.send_unbind()
            await until(lambda: len(smsc.binds) == 2 and smsc.sessions == 1)
            return await c.send(sms("again"), TO)
        result = run(body, make(smsc))
        assert result.outcome is SendOutcome.SENT


def test_close_unbinds() -> None:
    """close() sends unbind and waits for the answer."""
    with Smsc() as smsc:
        run(lambda c: c.send(sms(), TO), make(smsc))
        smsc.wait(lambda: smsc.unbinds == 1)


def test_a_refused_bind_is_temporary_and_says_why() -> None:
    """A wrong password: sends are temporary with the SMSC's reason (no password shown)."""
    with Smsc(password="other") as smsc:
        result = run(lambda c: c.send(sms(), TO), make(smsc))
        assert result.outcome is SendOutcome.TEMPORARY
        assert "bind refused: Invalid Password (0x0E)" in result.text
        assert "secret" not in result.text


def test_an_smsc_that_is_down_is_temporary() -> None:
    """Connection refused: temporary, quickly, naming the problem."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(lambda c: c.send(sms(), TO), make(None, port=port))
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.text.startswith("not bound to the SMSC: ")


def test_garbage_from_the_smsc_drops_the_link_and_it_recovers() -> None:
    """A command_length that cannot be a PDU: the link is dropped and bound again."""
    with Smsc() as smsc:
        async def body(c: SmppConnector) -> Any:
            await c.send(sms(), TO)
            smsc.send_raw(b"\xff\xff\xff\xff" + b"\0" * 12)
            await until(lambda: len(smsc.binds) == 2 and smsc.sessions == 1)
            return await c.send(sms(), TO)
        assert run(body, make(smsc)).outcome is SendOutcome.SENT


def test_logs_show_no_text_number_or_password(caplog: pytest.LogCaptureFixture) -> None:
    """Through binds, drops and receipts, no log line carries the text, the full number or
    the password."""
    caplog.set_level(logging.DEBUG)
    with Smsc(plan=lambda s, n: DROP if n == 1 else None, receipts=lambda s: "DELIVRD") as smsc:
        async def body(c: SmppConnector) -> None:
            result = await c.send(sms("SECRET-TEXT"), TO)
            while result.outcome is not SendOutcome.SENT:
                result = await c.send(sms("SECRET-TEXT"), TO)
        run(body, make(smsc, sink=lambda r: None))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "smpp.link_lost" in logged or "smpp.bind_failed" in logged
    for secret in ("SECRET-TEXT", "33612345678", "secret"):
        assert secret not in logged


def test_start_binds_before_any_send_so_queued_receipts_arrive() -> None:
    """start() binds in the background; a receipt the SMSC kept reaches the sink with no
    send at all."""
    received: list[Receipt] = []
    with Smsc() as smsc:
        async def body(c: SmppConnector) -> None:
            await c.start()
            await until(lambda: smsc.sessions == 1)
            smsc.send_receipt("0BEF0RE", "UNDELIV")
            await until(lambda: len(received) == 1)
        run(body, make(smsc, sink=received.append))
    assert (received[0].provider_id, received[0].state) == ("0BEF0RE", ReceiptState.FAILED)
    assert smsc.submits == []


def test_close_while_the_smsc_is_down_returns_and_later_sends_are_refused() -> None:
    """close() during backoff returns at once; a send after close is temporary."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go() -> Any:
        connector = make(None, port=port, reconnect_min=5, reconnect_max=5)
        first = await connector.send(sms(), TO)
        await asyncio.wait_for(connector.close(), 2)
        return first, await connector.send(sms(), TO)

    first, after = asyncio.run(go())
    assert first.outcome is SendOutcome.TEMPORARY
    assert (after.outcome, after.text) == (SendOutcome.TEMPORARY, "connector closed")
