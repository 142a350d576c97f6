"""Development SMTP sink: a real SMTP server (aiosmtpd) that stores every message as a file.

``msgcenter devsmtp`` runs it so the service works end to end on a laptop with no mail
server; the tests use the same class in-process.  Each accepted message is written to
``<dir>/<time>-<n>.eml`` (written to a temporary name, then renamed, so a reader never
sees half a file) and kept in :attr:`MailSink.messages`.  For tests the sink can answer
with scripted faults (``450`` / ``550`` at RCPT or DATA, or drop the connection): see
:class:`Fault`.  It is a development tool, not a mail server: it relays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage as MimeMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from soap_service.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    """A scripted answer: ``reply`` ("450 ...", "550 ...", or "disconnect") at ``stage``."""

    reply: str
    stage: str = "data"  # rcpt | data


@dataclass(frozen=True)
class Received:
    """One accepted message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    path: Path | None

    @property
    def message(self) -> MimeMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, MimeMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "")


FaultPlan = Callable[[str, int], Fault | None]  # (recipient, attempt number) -> fault or None


class SinkHandler:
    """aiosmtpd handler: store accepted messages; apply a fault plan if one is set."""

    def __init__(self, directory: Path | None, plan: FaultPlan | None = None,
                 delay: float = 0.0, keep: bool = True, pipelining: bool = False) -> None:
        self.directory = directory
        self.pipelining = pipelining  # announce PIPELINING (aiosmtpd reads commands in order)
        self.plan = plan
        self.keep = keep  # False: files only (a long-running sink must not grow in memory)
        self.delay = delay  # seconds to wait before answering DATA (a slow relay)
        self.messages: list[Received] = []
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def _fault(self, stage: str, rcpt: str, count: bool) -> Fault | None:
        if self.plan is None:
            return None
        with self._lock:
            if count:
                self.attempts[rcpt] = self.attempts.get(rcpt, 0) + 1
            attempt = self.attempts.get(rcpt, 1)
        fault = self.plan(rcpt, attempt)
        return fault if fault is not None and fault.stage == stage else None

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        fault = self._fault("rcpt", address, count=True)
        if fault is not None:
            return _apply(fault, server)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        fault = self._fault("data", rcpt, count=False)
        if fault is not None:
            return _apply(fault, server)
        if self.delay:
            await asyncio.sleep(self.delay)
        data = bytes(envelope.original_content or envelope.content)
        path = self._store(data)
        if self.keep:
            with self._lock:
                self.messages.append(
                    Received(envelope.mail_from, tuple(envelope.rcpt_tos), data, path)
                )
        return "250 Message accepted for delivery"

    def _store(self, data: bytes) -> Path | None:
        if self.directory is None:
            return None
        n = next(self._counter)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{n:06d}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(data)
        final = self.directory / name
        tmp.rename(final)
        return final


def _apply(fault: Fault, server: Any) -> str:
    if fault.reply == "disconnect":
        transport = getattr(server, "transport", None)
        if transport is not None:
            transport.abort()
        return "421 closing connection"
    return fault.reply


class MailSink:
    """An SMTP sink on ``host:port`` (port 0 picks a free one) running in its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 directory: Path | str | None = None, plan: FaultPlan | None = None,
                 delay: float = 0.0, keep: bool = True, pipelining: bool = False,
                 **smtp_options: Any) -> None:
        """``smtp_options`` go to aiosmtpd (``tls_context``, ``ssl_context``,
        ``authenticator``, ``require_starttls`` ...) for TLS and AUTH tests; ``keep=False``
        stores messages as files only, not in :attr:`messages`; ``pipelining`` announces
        PIPELINING, as postfix does."""
        self.handler = SinkHandler(Path(directory) if directory else None, plan, delay, keep,
                                   pipelining)
        if port == 0:
            port = _free_port(host)
        self.controller = Controller(self.handler, hostname=host, port=port,
                                     data_size_limit=50 * 1024 * 1024, **smtp_options)
        self.host = host
        self.port = port

    @property
    def messages(self) -> list[Received]:
        return list(self.handler.messages)

    def start(self) -> MailSink:
        self.controller.start()
        log.info("devsmtp.started host=%s port=%s", self.host, self.port)
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until at least ``count`` messages arrived (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.handler.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_sink(host: str, port: int, directory: Path | str) -> MailSink:
    """Start the sink of ``msgcenter devsmtp``; a port in use is a one-line error."""
    sink = MailSink(host, port, directory, keep=False)
    try:
        return sink.start()
    except OSError as exc:  # port in use, unknown host, directory not writable
        # the controller leaves its event loop open: closed now, not by the garbage
        # collector at exit (which prints "Exception ignored ... Invalid file descriptor")
        with contextlib.suppress(Exception):
            sink.controller.loop.close()
        raise ConfigError(f"devsmtp cannot start on {host}:{port}: "
                          f"{exc.strerror or exc}") from exc


def serve_forever(sink: MailSink) -> None:
    """Run a started sink until interrupted."""
    try:
        threading.Event().wait()
    finally:
        sink.stop()
