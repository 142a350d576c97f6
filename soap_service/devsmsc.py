"""Development SMSC: a real SMPP 3.4 server that stores every SMS as a file.

``msgcenter devsmsc`` runs it so the SMS channel works end to end on a laptop with no
operator account, as ``devsmtp`` does for email.  It accepts any bind (transceiver,
transmitter or receiver; ``system_id`` / ``password`` are checked only when given),
answers ``submit_sm`` with a message id, reassembles concatenated parts (UDH with an 8- or
16-bit reference), and writes each whole message to ``<dir>/<time>-<n>.sms`` (a temporary
name, then renamed, so a reader never sees half a file)::

    From: MyShop
    To: +33612345678
    Encoding: GSM 03.38
    Parts: 2
    Message-Id: 00000001 00000002
    Received: 2026-11-20T12:00:00Z

    Your order has shipped...

When a ``submit_sm`` asks for a receipt (``registered_delivery``), a ``deliver_sm`` with
the standard receipt text and the ``receipted_message_id`` / ``message_state`` TLVs
(``stat:DELIVRD``) follows its response, one per part, as an operator's SMSC does.
PDUs are encoded and decoded with smpplib's classes.  It is a development tool: it
delivers nothing to any phone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smpplib import smpp
from smpplib.client import SimpleSequenceGenerator

from soap_service.channels.sms_text import GSM, UCS2, decode_text
from soap_service.errors import ConfigError

log = logging.getLogger(__name__)

_BINDS = {"bind_transceiver": True, "bind_receiver": True, "bind_transmitter": False}
_MAX_PENDING_PARTS = 10_000  # incomplete concatenated messages kept in memory
_MAX_PDU = 64 * 1024


@dataclass(frozen=True)
class StoredSms:
    source: str
    destination: str
    text: str
    encoding: str
    message_ids: tuple[str, ...]
    path: Path | None


@dataclass
class _Part:
    source: str
    destination: str
    data_coding: int
    data: bytes
    message_id: str


class _Session:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.bound = False
        self.receives = False  # transceiver or receiver: receipts may be sent to it


class DevSmsc:
    """An SMPP server on ``host:port`` (0: a free port) in its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2775,
                 directory: Path | str | None = None, *, system_id: str = "",
                 password: str = "", keep: bool = False) -> None:
        self.host = host
        self.port = port
        self.directory = Path(directory) if directory else None
        self.system_id = system_id
        self.password = password
        self.keep = keep  # also keep messages in memory (tests)
        self.messages: list[StoredSms] = []
        self.stored = 0
        self._parts: OrderedDict[tuple[str, str, int, int], dict[int, _Part]] = OrderedDict()
        self._ids = itertools.count(1)
        self._files = itertools.count(1)
        self._sequence = SimpleSequenceGenerator()
        self._sessions: set[_Session] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devsmsc",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DevSmsc:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, self.port), self._loop)
        try:
            self._server = future.result(10)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("devsmsc.started host=%s port=%s", self.host, self.port)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for session in list(self._sessions):
                session.writer.transport.abort()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> DevSmsc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[StoredSms]:
        """Block until at least ``count`` messages were stored (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.stored < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    # ------------------------------------------------------------------ protocol

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.add(session)
        try:
            while True:
                head = await reader.readexactly(4)
                (length,) = struct.unpack(">L", head)
                if not 16 <= length <= _MAX_PDU:
                    break
                raw = head + await reader.readexactly(length - 4)
                if not self._on_pdu(session, raw):
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._sessions.discard(session)
            writer.close()

    def _on_pdu(self, session: _Session, raw: bytes) -> bool:
        (sequence,) = struct.unpack_from(">12xL", raw)
        try:
            pdu = smpp.parse_pdu(raw, client=self._sequence, allow_unknown_opt_params=True)
        except Exception:  # unknown command, or a body smpplib cannot read
            self._send(session, "generic_nack", sequence, status=0x03)
            return True
        command = pdu.command
        if command in _BINDS:
            ok = ((not self.system_id or _text(pdu.system_id) == self.system_id)
                  and (not self.password or _text(pdu.password) == self.password))
            session.bound, session.receives = ok, ok and _BINDS[command]
            self._send(session, f"{command}_resp", sequence, status=0 if ok else 0x0E,
                       system_id="devsmsc")
        elif command == "enquire_link":
            self._send(session, "enquire_link_resp", sequence)
        elif command == "unbind":
            self._send(session, "unbind_resp", sequence)
            return False
        elif command == "submit_sm":
            self._on_submit(session, pdu, sequence)
        elif not command.endswith("_resp"):
            self._send(session, "generic_nack", sequence, status=0x03)
        return True

    def _send(self, session: _Session, command: str, sequence: int | None = None,
              **fields: Any) -> None:
        pdu = smpp.make_pdu(command, client=self._sequence, **fields)
        if sequence is not None:
            pdu.sequence = sequence
        session.writer.write(pdu.generate())

    def _on_submit(self, session: _Session, pdu: Any, sequence: int) -> None:
        if not session.bound:
            self._send(session, "submit_sm_resp", sequence, status=0x04)
            return
        message_id = f"{next(self._ids):08X}"
        self._send(session, "submit_sm_resp", sequence, message_id=message_id)
        source = _address(pdu.source_addr, pdu.source_addr_ton)
        destination = _address(pdu.destination_addr, pdu.dest_addr_ton)
        data = bytes(pdu.short_message or pdu.message_payload or b"")
        part = _Part(source, destination, pdu.data_coding or 0, data, message_id)
        if (pdu.esm_class or 0) & 0x40:
            self._add_part(part)
        else:
            self._store([part])
        if (pdu.registered_delivery or 0) & 0x03:
            self._receipt(session, pdu, message_id)

    def _add_part(self, part: _Part) -> None:
        data = part.data
        udh, body = data[1:1 + data[0]], data[1 + data[0]:]
        reference = total = number = -1
        while len(udh) >= 2:  # information elements: iei, length, value
            iei, size, value = udh[0], udh[1], udh[2:2 + udh[1]]
            if iei == 0x00 and size == 3:
                reference, total, number = value[0], value[1], value[2]
            elif iei == 0x08 and size == 4:
                reference, total, number = value[0] << 8 | value[1], value[2], value[3]
            udh = udh[2 + size:]
        part.data = body
        if total < 1:  # a UDH without concatenation (a port, a WAP push): one message
            self._store([part])
            return
        key = (part.source, part.destination, reference, total)
        parts = self._parts.setdefault(key, {})
        parts[number] = part
        if len(parts) >= total:
            del self._parts[key]
            self._store([parts[n] for n in sorted(parts)])
        elif len(self._parts) > _MAX_PENDING_PARTS:
            self._parts.popitem(last=False)

    def _store(self, parts: list[_Part]) -> None:
        first = parts[0]
        data = b"".join(p.data for p in parts)
        encoding, text = _decode(first.data_coding, data)
        ids = tuple(p.message_id for p in parts)
        path = self._write(first, encoding, ids, text)
        self.stored += 1
        if self.keep:
            self.messages.append(StoredSms(first.source, first.destination, text, encoding,
                                           ids, path))
        log.debug("devsmsc.stored message_id=%s parts=%d", ids[0], len(ids))

    def _write(self, part: _Part, encoding: str, ids: tuple[str, ...], text: str) -> Path | None:
        if self.directory is None:
            return None
        now = time.gmtime()
        content = (f"From: {part.source}\nTo: {part.destination}\nEncoding: {encoding}\n"
                   f"Parts: {len(ids)}\nMessage-Id: {' '.join(ids)}\n"
                   f"Received: {time.strftime('%Y-%m-%dT%H:%M:%SZ', now)}\n\n{text}\n")
        name = f"{time.strftime('%Y%m%dT%H%M%S', now)}-{next(self._files):06d}.sms"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        final = self.directory / name
        tmp.rename(final)
        return final

    def _receipt(self, session: _Session, pdu: Any, message_id: str) -> None:
        target = session if session.receives else next(
            (s for s in self._sessions if s.receives), None)
        if target is None:
            return
        stamp = time.strftime("%y%m%d%H%M", time.gmtime())
        text = (f"id:{message_id} sub:001 dlvrd:001 submit date:{stamp} done date:{stamp} "
                "stat:DELIVRD err:000 text:")
        self._send(target, "deliver_sm", esm_class=0x04, data_coding=0,
                   source_addr_ton=pdu.dest_addr_ton or 0, source_addr_npi=pdu.dest_addr_npi or 0,
                   source_addr=_text(pdu.destination_addr),
                   dest_addr_ton=pdu.source_addr_ton or 0, dest_addr_npi=pdu.source_addr_npi or 0,
                   destination_addr=_text(pdu.source_addr), short_message=text.encode(),
                   receipted_message_id=message_id, message_state=2)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value or "")


def _address(value: Any, ton: int | None) -> str:
    text = _text(value)
    return f"+{text}" if ton == 1 and text.isdigit() else text


def _decode(data_coding: int, data: bytes) -> tuple[str, str]:
    """(encoding label, text) for the data_coding values senders use."""
    if data_coding == 0x00:
        return "GSM 03.38", decode_text(GSM, data)
    if data_coding == 0x01:
        return "ASCII", data.decode("ascii", errors="replace")
    if data_coding == 0x08:
        return "UCS-2", decode_text(UCS2, data)
    if data_coding == 0x03:
        return "Latin-1", data.decode("latin-1")
    return f"binary (data_coding {data_coding})", data.hex()


def start_smsc(host: str, port: int, directory: Path | str) -> DevSmsc:
    """Start the SMSC of ``msgcenter devsmsc``; a port in use is a one-line error."""
    try:
        return DevSmsc(host, port, directory).start()
    except OSError as exc:  # port in use, unknown host, directory not writable
        raise ConfigError(f"devsmsc cannot start on {host}:{port}: "
                          f"{exc.strerror or exc}") from exc


def serve_forever(smsc: DevSmsc) -> None:
    """Run a started SMSC until interrupted."""
    try:
        threading.Event().wait()
    finally:
        smsc.stop()
