"""The ``smpp`` connector: an SMPP 3.4 transceiver link to an SMSC, over asyncio TCP.

One connector keeps one bound link (``bind_transceiver``) and sends every SMS over it:
``submit_sm`` PDUs are pipelined, at most ``window`` awaiting their response at once
(sequence numbers match responses to requests), and at most ``concurrency`` messages are
in flight (real-time first).  A long text goes as concatenated parts (UDH, one
``submit_sm`` each, in order); see :mod:`soap_service.channels.sms_text`.

A supervisor task owns the link: it connects and binds, answers the SMSC's
``enquire_link`` and ``deliver_sm``, sends its own ``enquire_link`` every
``enquire_link_interval`` seconds (a missing answer drops the link), and when the link is
lost reconnects with exponential backoff (``reconnect_min`` .. ``reconnect_max``).  PDUs in
flight when a link drops end as temporary failures; while the link is down, sends fail
fast as temporary (so failover can move on) unless a bind is under way.

Outcomes (:class:`~soap_service.models.SendResult`): accepted with the ``submit_sm_resp``
message id; temporary (throttled 0x58 — which also pauses new submits for
``throttle_pause`` seconds —, system error, queue full, link lost, no response); permanent
(invalid destination → ``address_refused``, invalid source, length...).  For a text in
several parts, ``provider_id`` is the first part's id and ``part_ids`` every part's: the
SMSC sends one receipt per part, and a receipt naming any of them belongs to the message.

Receipts (``deliver_sm`` with a delivery receipt) go to the ``on_receipt`` sink as
:class:`~soap_service.models.Receipt` values and are answered ``deliver_sm_resp`` after
the sink took them; a sink that raises gets the SMSC a system error (0x08), so it sends
the receipt again later.  Logs carry the connector's name and ids, never a text, a full
phone number or a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from dataclasses import replace

from soap_service.channels import smpp_pdu as wire
from soap_service.channels.base import ReceiptSink, register_kind
from soap_service.channels.slots import Slots
from soap_service.channels.smpp_options import SmppOptions
from soap_service.channels.sms_text import SmsTextError, split_text
from soap_service.config import ConnectorConfig
from soap_service.models import (
    Channel,
    ChannelMessage,
    Receipt,
    SendOutcome,
    SendResult,
    SmsMessage,
)

log = logging.getLogger(__name__)

_E164 = re.compile(r"^\+?([1-9][0-9]{5,14})$")
_UNBOUND = "the SMSC unbound"


class LinkLost(Exception):
    """The link closed (or was dropped) before the answer came."""


class _Link:
    """One TCP connection to the SMSC: writes PDUs, matches responses by sequence."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[wire.Pdu]] = {}
        self.lost: str = ""
        self.reading: asyncio.Task[str] | None = None  # the one task reading this link

    async def request(self, sequence: int, data: bytes, timeout: float) -> wire.Pdu:
        if self.lost:
            raise LinkLost(self.lost)
        waiter: asyncio.Future[wire.Pdu] = asyncio.get_running_loop().create_future()
        self.pending[sequence] = waiter
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):  # an SMSC that stops reading blocks drain()
                await self.writer.drain()
                return await waiter
        except (ConnectionError, RuntimeError) as exc:  # RuntimeError: transport closing
            raise LinkLost(self.lost or str(exc) or type(exc).__name__) from exc
        finally:
            self.pending.pop(sequence, None)

    def answer(self, pdu: wire.Pdu) -> None:
        waiter = self.pending.get(pdu.sequence)
        if waiter is not None and not waiter.done():
            waiter.set_result(pdu)

    def write(self, data: bytes) -> None:
        if not self.lost:
            self.writer.write(data)

    def drop(self, reason: str, *, flush: bool = False) -> int:
        """Close the connection (``flush``: after sending what is buffered, such as an
        ``unbind_resp``); every PDU waiting for an answer fails. Returns how many."""
        if not self.lost:
            self.lost = reason
        waiting = [w for w in self.pending.values() if not w.done()]
        for waiter in waiting:
            waiter.set_exception(LinkLost(reason))
        if flush:
            self.writer.close()
        else:
            self.writer.transport.abort()
        return len(waiting)


class SmppConnector:
    """An SMPP 3.4 transceiver connector (kind ``smpp``)."""

    def __init__(self, config: ConnectorConfig, on_receipt: ReceiptSink | None = None) -> None:
        self.config = config
        self.options = SmppOptions.from_config(config)
        self.on_receipt = on_receipt
        self._slots = Slots(config.concurrency)
        self._window = Slots(self.options.window)
        self._sequence = itertools.count(1)
        self._reference = itertools.count(1)
        self._link: _Link | None = None
        self._bound = asyncio.Event()
        self._attempt = asyncio.Event()  # set (and renewed) when an attempt ends
        self._down_reason = "not connected yet"
        self._retry_at = 0.0  # monotonic time of the next connection attempt
        self._pause_until = 0.0  # after a throttle
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        """Connect and bind in the background (``send`` starts it too); starting early
        lets receipts queued at the SMSC arrive before the first send."""
        if self._supervisor is None and not self._closing:
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"smpp-{self.config.name}")

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        if self._closing:
            return self._result(SendOutcome.TEMPORARY, "connector closed")
        if not isinstance(message, SmsMessage):
            return self._result(SendOutcome.PERMANENT, "the smpp connector sends SMS only")
        match = _E164.match(address)
        if match is None:
            return self._result(SendOutcome.PERMANENT, "destination is not an E.164 number",
                                address_refused=True)
        source = message.sender or self.options.source_addr
        if not source:
            return self._result(SendOutcome.PERMANENT, "no source address (set source_addr)")
        try:
            sms = split_text(message.text, max_parts=self.options.max_parts,
                             reference=next(self._reference) & 0xFF)
        except SmsTextError as exc:
            return self._result(SendOutcome.PERMANENT, str(exc))
        async with self._slots.take(urgent):
            started = time.monotonic()
            result = await self._submit_parts(sms.payloads, sms.data_coding, sms.esm_class,
                                              source, match.group(1), urgent)
        return replace(result, duration_ms=int((time.monotonic() - started) * 1000))

    async def close(self) -> None:
        self._closing = True
        link = self._link
        if link is not None and self._bound.is_set():
            with contextlib.suppress(LinkLost, TimeoutError, OSError):
                sequence = self._next_sequence()
                await link.request(sequence, wire.unbind(sequence),
                                   min(self.options.response_timeout, 2.0))
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if link is not None:
            link.drop("connector closed", flush=True)

    # ------------------------------------------------------------------ sending

    async def _submit_parts(self, payloads: tuple[bytes, ...], data_coding: int,
                            esm_class: int, source: str, destination: str,
                            urgent: bool) -> SendResult:
        ids: list[str] = []
        for number, payload in enumerate(payloads, start=1):
            where = f"part {number} of {len(payloads)}: " if len(payloads) > 1 else ""
            link = await self._bound_link()
            if link is None:
                return self._result(SendOutcome.TEMPORARY, f"{where}{self._down_text()}")
            await self._respect_throttle()
            async with self._window.take(urgent):
                sequence = self._next_sequence()
                pdu = wire.submit_sm(
                    sequence, source=source.removeprefix("+"),
                    source_ton=self.options.source_ton, source_npi=self.options.source_npi,
                    destination=destination, dest_ton=self.options.dest_ton,
                    dest_npi=self.options.dest_npi, payload=payload,
                    data_coding=data_coding, esm_class=esm_class,
                    registered_delivery=1 if self.options.registered_delivery else 0,
                    service_type=self.options.service_type)
                try:
                    answer = await link.request(sequence, pdu, self.options.response_timeout)
                except LinkLost as exc:
                    return self._result(SendOutcome.TEMPORARY,
                                        f"{where}link lost before submit_sm_resp ({exc})")
                except TimeoutError:
                    return self._result(SendOutcome.TEMPORARY, f"{where}no submit_sm_resp "
                                        f"within {self.options.response_timeout:g}s")
            if answer.status != 0:
                return self._refused(answer.status, where)
            if answer.command != "submit_sm_resp":
                return self._result(SendOutcome.TEMPORARY,
                                    f"{where}the SMSC answered {answer.command}")
            ids.append(answer.message_id)
        return SendResult(SendOutcome.SENT, code=0, text="accepted", provider_id=ids[0],
                          part_ids=tuple(ids) if len(ids) > 1 else (),
                          connector=self.config.name)

    def _refused(self, status: int, where: str) -> SendResult:
        kind = wire.classify_status(status, permanent=self.options.permanent_statuses,
                                    temporary=self.options.temporary_statuses)
        retry_after = None
        if status == wire.THROTTLED:
            self._pause_until = time.monotonic() + self.options.throttle_pause
            retry_after = self.options.throttle_pause
        return self._result(kind.outcome, where + kind.text, code=status,
                            address_refused=kind.address_refused, retry_after=retry_after)

    async def _respect_throttle(self) -> None:
        wait = self._pause_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _bound_link(self) -> _Link | None:
        """The bound link, after waiting for a bind under way or due within
        ``connect_timeout``; ``None`` when the link is down for longer than that."""
        await self.start()
        if not self._bound.is_set():
            if self._retry_at - time.monotonic() > self.options.connect_timeout:
                return None
            try:
                async with asyncio.timeout(self.options.connect_timeout * 2
                                           + self.options.response_timeout):
                    await self._attempt.wait()  # the next connection attempt's outcome
            except TimeoutError:
                return None
        return self._link

    def _down_text(self) -> str:
        wait = self._retry_at - time.monotonic()
        later = f"; next attempt in {wait:.1f}s" if wait > 0 else ""
        return f"not bound to the SMSC: {self._down_reason}{later}"

    def _result(self, outcome: SendOutcome, text: str, *, code: int | None = None,
                address_refused: bool = False, retry_after: float | None = None) -> SendResult:
        return SendResult(outcome, code=code, text=text, address_refused=address_refused,
                          connector=self.config.name, retry_after=retry_after)

    def _next_sequence(self) -> int:
        value = next(self._sequence)
        if value > wire.MAX_SEQUENCE:
            self._sequence = itertools.count(2)
            value = 1
        return value

    # ------------------------------------------------------------------ the link

    async def _supervise(self) -> None:
        backoff = self.options.reconnect_min
        while not self._closing:
            try:
                link = await self._open()
            except Exception as exc:  # (refused, timeout, bind refused, junk)
                self._down(_reason(exc), backoff)
                log.warning("smpp.bind_failed connector=%s reason=%s retry_in=%.1fs",
                            self.config.name, self._down_reason, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.options.reconnect_max)
                continue
            backoff = self.options.reconnect_min
            reason = await self._serve(link)
            self._down(reason, backoff)
            if not self._closing:
                log.warning("smpp.link_lost connector=%s reason=%s retry_in=%.1fs",
                            self.config.name, reason, backoff)
                await asyncio.sleep(backoff)

    async def _serve(self, link: _Link) -> str:
        """Keep a bound link until it ends; why it ended."""
        self._link = link
        self._bound.set()
        self._attempt_ended()
        log.info("smpp.bound connector=%s host=%s port=%s", self.config.name,
                 self.options.host, self.options.port)
        keepalive = asyncio.get_running_loop().create_task(self._keepalive(link))
        reason = "connector closed"
        try:
            assert link.reading is not None
            reason = await link.reading
        finally:
            keepalive.cancel()
            self._bound.clear()
            self._link = None
            in_flight = link.drop(reason, flush=reason == _UNBOUND)
            if in_flight:
                log.warning("smpp.in_flight_lost connector=%s count=%d", self.config.name,
                            in_flight)
        return reason

    def _down(self, reason: str, backoff: float) -> None:
        self._down_reason = reason
        self._retry_at = time.monotonic() + backoff
        self._attempt_ended()  # senders waiting for this attempt learn it failed

    def _attempt_ended(self) -> None:
        self._attempt.set()
        self._attempt = asyncio.Event()

    async def _open(self) -> _Link:
        """Connect and bind; the link's reader is running when it returns."""
        self._retry_at = 0.0  # a bind is under way: sends wait for it
        async with asyncio.timeout(self.options.connect_timeout):
            reader, writer = await asyncio.open_connection(self.options.host,
                                                           self.options.port)
        link = _Link(reader, writer)
        link.reading = asyncio.get_running_loop().create_task(self._read(link))
        try:
            sequence = self._next_sequence()
            answer = await link.request(sequence, wire.bind_transceiver(
                sequence, system_id=self.options.system_id, password=self.options.password,
                system_type=self.options.system_type), self.options.response_timeout)
            if answer.status != 0:
                raise LinkLost(f"bind refused: {wire.describe_status(answer.status)}")
        except BaseException:
            link.drop("bind failed")
            await asyncio.gather(link.reading, return_exceptions=True)
            raise
        return link

    async def _read(self, link: _Link) -> str:
        """Read and dispatch PDUs until the link ends; the reason it ended."""
        try:
            while True:
                head = await link.reader.readexactly(4)
                length = wire.read_length(head)
                pdu = wire.decode(head + await link.reader.readexactly(length - 4))
                if pdu.is_response:
                    link.answer(pdu)
                elif not self._on_request(link, pdu):
                    return _UNBOUND
        except asyncio.IncompleteReadError:
            return "connection closed by the SMSC"
        except ValueError as exc:
            log.warning("smpp.protocol_error connector=%s reason=%s", self.config.name, exc)
            return f"protocol error: {exc}"
        except OSError as exc:
            return _reason(exc)

    def _on_request(self, link: _Link, pdu: wire.Pdu) -> bool:
        """Answer a request from the SMSC; False when it ends the session (unbind)."""
        if pdu.command == "enquire_link":
            link.write(wire.response("enquire_link_resp", pdu.sequence))
        elif pdu.command == "deliver_sm":
            link.write(wire.response("deliver_sm_resp", pdu.sequence, self._on_deliver(pdu)))
        elif pdu.command == "unbind":
            link.write(wire.response("unbind_resp", pdu.sequence))
            return False
        else:  # data_sm, alert_notification, outbind...: not something we take
            link.write(wire.response("generic_nack", pdu.sequence, 0x03))
        return True

    def _on_deliver(self, pdu: wire.Pdu) -> int:
        """Hand a receipt to the sink; the deliver_sm_resp status to answer."""
        try:
            fields = wire.parse_receipt(pdu)
        except Exception:  # (a receipt we cannot read must not drop the link)
            log.warning("smpp.receipt_unreadable connector=%s", self.config.name)
            return 0
        if fields is None:
            log.info("smpp.deliver_sm_ignored connector=%s (not a delivery receipt)",
                     self.config.name)
            return 0
        if self.on_receipt is None:
            return 0
        receipt = Receipt(connector=self.config.name, provider_id=fields.message_id,
                          state=fields.state, code=fields.stat,
                          text=f"err:{fields.err}" if fields.err else "", at=fields.done)
        try:
            self.on_receipt(receipt)
        except Exception:
            log.exception("smpp.receipt_sink_failed connector=%s provider_id=%s",
                          self.config.name, fields.message_id)
            return 0x08  # the SMSC keeps the receipt and sends it again
        return 0

    async def _keepalive(self, link: _Link) -> None:
        interval = self.options.enquire_link_interval
        while not link.lost:
            await asyncio.sleep(interval)
            sequence = self._next_sequence()
            try:
                await link.request(sequence, wire.enquire_link(sequence),
                                   self.options.response_timeout)
            except TimeoutError:
                link.drop("no enquire_link_resp")
                return
            except LinkLost:
                return


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def build(config: ConnectorConfig, on_receipt: ReceiptSink | None) -> SmppConnector:
    return SmppConnector(config, on_receipt)


register_kind("smpp", Channel.SMS, build)
