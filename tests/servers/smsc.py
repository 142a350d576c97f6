"""An in-process SMSC for the tests: real SMPP 3.4 over TCP, with fault injection.

Every PDU it reads or writes goes through **smpplib**'s command classes (third-party code),
and it reassembles concatenated parts from their UDH and decodes the text with the
``gsm0338`` codec / UTF-16BE itself, so a symmetric mistake in our connector's encoding
cannot pass unnoticed.  It runs its own asyncio loop in a thread, so blocking and async
tests alike can drive it.

Faults are a *plan*: ``plan(submit, n)`` (``n`` counts submits from 1) returns ``None``
(accept), ``Status(code)`` (answer with that command_status), ``DROP`` (close the
connection without answering: a bind lost mid-window) or ``HOLD`` (keep the answer until
:meth:`Smsc.release`, so tests can count what is outstanding instead of timing it).
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gsm0338  # noqa: F401  (registers the codec)
from smpplib import smpp
from smpplib.client import SimpleSequenceGenerator


@dataclass(frozen=True)
class Status:
    code: int


DROP = "drop"
HOLD = "hold"
Action = Status | str | None
Plan = Callable[["Submit", int], Action]


@dataclass
class Submit:
    """One ``submit_sm`` as smpplib parsed it."""

    sequence: int
    source: str
    source_ton: int
    source_npi: int
    destination: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str = ""


@dataclass
class Sms:
    """A whole message, parts reassembled by their UDH reference."""

    source: str
    destination: str
    text: str
    encoding: str  # gsm | ucs2
    message_ids: list[str] = field(default_factory=list)


@dataclass
class _Session:
    writer: asyncio.StreamWriter
    bound: bool = False


class Smsc:
    """An SMSC on 127.0.0.1:<free port>; ``with Smsc() as smsc: ...``."""

    def __init__(self, *, system_id: str = "mc", password: str = "secret",
                 plan: Plan | None = None, receipts: Callable[[Submit], str | None] | None = None,
                 receipt_via: str = "text") -> None:
        self.system_id = system_id
        self.password = password
        self.plan = plan
        self.receipts = receipts  # submit -> stat (DELIVRD, UNDELIV...) or None
        self.receipt_via = receipt_via  # text | tlv
        self.binds: list[tuple[str, str, str]] = []
        self.submits: list[Submit] = []
        self.messages: list[Sms] = []
        self.enquire_links = 0
        self.enquire_link_resps = 0
        self.deliver_sm_resps: list[int] = []
        self.unbinds = 0
        self.max_outstanding = 0
        self._held: list[tuple[_Session, bytes]] = []
        self._parts: dict[tuple[str, str, int], dict[int, Submit]] = {}
        self._sessions: list[_Session] = []
        self._ids = itertools.count(0x1000)
        self._seq = SimpleSequenceGenerator()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # ------------------------------------------------------------------ control

    def __enter__(self) -> Smsc:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for session in self._sessions:
                session.writer.transport.abort()
        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    @property
    def outstanding(self) -> int:
        return len(self._held)

    @property
    def sessions(self) -> int:
        return sum(1 for s in self._sessions if s.bound)

    def release(self) -> None:
        """Send every held answer."""
        async def go() -> None:
            held, self._held[:] = list(self._held), []
            for session, data in held:
                session.writer.write(data)
        self._call(go())

    def drop_all(self) -> None:
        async def go() -> None:
            for session in self._sessions:
                session.writer.transport.abort()
        self._call(go())

    def send_enquire_link(self) -> None:
        self._to_bound(lambda: smpp.make_pdu("enquire_link", client=self._seq))

    def send_unbind(self) -> None:
        self._to_bound(lambda: smpp.make_pdu("unbind", client=self._seq))

    def send_receipt(self, message_id: str, stat: str, *, err: str = "000",
                     via: str = "text", esm_class: int = 0x04) -> None:
        """A ``deliver_sm`` receipt for ``message_id`` to the bound session."""
        self._to_bound(lambda: self._receipt_pdu(message_id, stat, err, via, esm_class))

    def send_deliver_sm(self, **fields: Any) -> None:
        """Any ``deliver_sm`` (a mobile-originated message, a malformed receipt...)."""
        self._to_bound(lambda: smpp.make_pdu("deliver_sm", client=self._seq, **fields))

    def send_raw(self, data: bytes) -> None:
        async def go() -> None:
            for session in self._sessions:
                if session.bound:
                    session.writer.write(data)
        self._call(go())

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("SMSC: condition not reached in time")
            time.sleep(0.005)

    # ------------------------------------------------------------------ protocol

    def _to_bound(self, make: Callable[[], Any]) -> None:
        async def go() -> None:
            for session in self._sessions:
                if session.bound:
                    session.writer.write(make().generate())
        self._call(go())

    def _receipt_pdu(self, message_id: str, stat: str, err: str, via: str,
                     esm_class: int) -> Any:
        text = (f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:2611201200 done date:2611201201 stat:{stat} err:{err} text:")
        fields: dict[str, Any] = {"esm_class": esm_class, "data_coding": 0,
                                  "source_addr": "33612345678", "destination_addr": "MyShop",
                                  "source_addr_ton": 1, "source_addr_npi": 1}
        if via == "tlv":
            states = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5,
                      "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}
            fields |= {"receipted_message_id": message_id, "message_state": states[stat],
                       "short_message": b""}
        else:
            fields["short_message"] = text.encode()
        return smpp.make_pdu("deliver_sm", client=self._seq, **fields)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.append(session)
        try:
            while True:
                head = await reader.readexactly(4)
                (length,) = struct.unpack(">L", head)
                raw = head + await reader.readexactly(length - 4)
                pdu = smpp.parse_pdu(raw, client=self._seq, allow_unknown_opt_params=True)
                if not await self._on_pdu(session, pdu):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            session.bound = False
            self._held[:] = [(s, d) for s, d in self._held if s is not session]
            writer.transport.abort()

    def _answer(self, command: str, request: Any, **fields: Any) -> bytes:
        pdu = smpp.make_pdu(command, client=self._seq, **fields)
        pdu.sequence = request.sequence
        return bytes(pdu.generate())

    async def _on_pdu(self, session: _Session, pdu: Any) -> bool:
        write = session.writer.write
        if pdu.command == "bind_transceiver":
            self.binds.append((pdu.system_id.decode(), pdu.password.decode(),
                               pdu.system_type.decode()))
            ok = (pdu.system_id.decode(), pdu.password.decode()) == (self.system_id,
                                                                      self.password)
            write(self._answer("bind_transceiver_resp", pdu, system_id="TestSMSC",
                               status=0 if ok else 0x0E))
            session.bound = ok
        elif pdu.command == "enquire_link":
            self.enquire_links += 1
            write(self._answer("enquire_link_resp", pdu))
        elif pdu.command == "enquire_link_resp":
            self.enquire_link_resps += 1
        elif pdu.command == "deliver_sm_resp":
            self.deliver_sm_resps.append(pdu.status)
        elif pdu.command == "unbind":
            self.unbinds += 1
            write(self._answer("unbind_resp", pdu))
            await session.writer.drain()
            return False
        elif pdu.command == "unbind_resp":
            return False
        elif pdu.command == "submit_sm":
            return self._on_submit(session, pdu)
        return True

    def _on_submit(self, session: _Session, pdu: Any) -> bool:
        submit = Submit(pdu.sequence, pdu.source_addr.decode(), pdu.source_addr_ton,
                        pdu.source_addr_npi, pdu.destination_addr.decode(), pdu.dest_addr_ton,
                        pdu.dest_addr_npi, pdu.esm_class, pdu.data_coding,
                        pdu.registered_delivery, bytes(pdu.short_message or b""))
        self.submits.append(submit)
        action = self.plan(submit, len(self.submits)) if self.plan else None
        if action == DROP:
            return False
        if isinstance(action, Status):
            session.writer.write(self._answer("submit_sm_resp", pdu, status=action.code))
            return True
        submit.message_id = f"{next(self._ids):X}"
        answer = self._answer("submit_sm_resp", pdu, message_id=submit.message_id)
        if action == HOLD:
            self._held.append((session, answer))
            self.max_outstanding = max(self.max_outstanding, len(self._held))
        else:
            session.writer.write(answer)
        self._reassemble(submit)
        stat = self.receipts(submit) if self.receipts and submit.registered_delivery else None
        if stat:
            session.writer.write(
                self._receipt_pdu(submit.message_id, stat, "000", self.receipt_via, 4).generate())
        return True

    def _reassemble(self, submit: Submit) -> None:
        data = submit.short_message
        if not submit.esm_class & 0x40:
            self._store([submit])
            return
        udhl = data[0]
        iei, _iel, ref, total, seq = data[1:6]
        assert (udhl, iei) == (5, 0), f"unexpected UDH {data[:udhl + 1].hex()}"
        key = (submit.source, submit.destination, ref)
        parts = self._parts.setdefault(key, {})
        parts[seq] = submit
        if len(parts) == total:
            del self._parts[key]
            self._store([parts[i] for i in range(1, total + 1)])

    def _store(self, parts: list[Submit]) -> None:
        udh = 6 if len(parts) > 1 else 0
        data = b"".join(p.short_message[udh:] for p in parts)
        if parts[0].data_coding == 8:
            text, encoding = data.decode("utf-16-be"), "ucs2"
        else:
            text, encoding = codecs.decode(data, "gsm03.38"), "gsm"
        self.messages.append(Sms(parts[0].source, parts[0].destination, text, encoding,
                                 [p.message_id for p in parts]))
