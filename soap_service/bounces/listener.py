"""Inbound SMTP listener for bounces and complaints (the bounce domain's MX target).

Accepts mail for ``*@<bounce domain>`` only — any other recipient is answered
``550 5.7.1 relay denied``, so it can never relay — and one recipient per transaction
(a bounce has exactly one: the return path).  Messages over ``max_bytes`` are refused
``552``, from the ``SIZE`` announced at ``MAIL FROM`` or while reading ``DATA`` (aiosmtpd
discards the excess instead of buffering it).  Each accepted message is parsed
(:func:`~soap_service.bounces.parse.read_reports`: a refusal becomes one ``unparseable``
report, never a crash) and its reports handed, in one call, to the ``on_reports`` callback
given at construction; parsing and the callback run in a small thread pool, off the event
loop.  When the callback raises (the database is down...) the sender is told ``451`` and
retries later, so nothing is lost.  One log line per message.

``msgcenter bounced`` and ``serve`` (wired elsewhere) call :func:`run` / :func:`start`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.controller import Controller

from soap_service.bounces.parse import DEFAULT_MAX_BYTES, read_reports
from soap_service.bounces.verp import split_address
from soap_service.config import Settings
from soap_service.errors import ConfigError
from soap_service.models import BounceReport

log = logging.getLogger(__name__)

OnReports = Callable[[tuple[BounceReport, ...]], None]


class BounceHandler:
    """aiosmtpd handler: domain check at RCPT, parse + callback at DATA."""

    def __init__(self, domain: str, on_reports: OnReports,
                 max_bytes: int = DEFAULT_MAX_BYTES, workers: int = 4) -> None:
        self.domain = domain.strip().strip(".").lower()
        if not self.domain or "@" in self.domain:
            raise ConfigError("the bounce listener needs MC_BOUNCE_DOMAIN (a domain name)")
        self.on_reports = on_reports
        self.max_bytes = max_bytes
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bounced")

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        _, domain = split_address(address)
        if domain != self.domain:
            log.info("bounce.relay_denied peer=%s domain=%s", _peer(session), domain[:100])
            return "550 5.7.1 relay denied"
        if envelope.rcpt_tos:
            return "452 4.5.3 one recipient per message"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = bytes(envelope.original_content or b"")
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        loop = asyncio.get_running_loop()
        try:
            reports = await loop.run_in_executor(self.pool, self._process, data, rcpt)
        except Exception as exc:  # the callback failed: let the sender retry later
            log.warning("bounce.not_recorded peer=%s size=%d error=%s", _peer(session),
                        len(data), type(exc).__name__)
            return "451 4.3.0 cannot record the report now, try again later"
        kinds = ",".join(sorted({r.kind.value for r in reports}))
        log.info("bounce.received peer=%s size=%d reports=%d kinds=%s source=%s", _peer(session),
                 len(data), len(reports), kinds, reports[0].source if reports else "")
        return "250 2.0.0 OK"

    def _process(self, data: bytes, rcpt: str) -> tuple[BounceReport, ...]:
        reports = read_reports(data, envelope_recipient=rcpt, max_bytes=self.max_bytes)
        self.on_reports(reports)
        return reports


def _probe(host: str, port: int) -> None:
    """Raise OSError now if ``host:port`` cannot be bound (in use, no such address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds
        sock.bind((host, port))


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else "-"


class BounceListener:
    """The listener on ``host:port`` in its own thread (``start`` / ``stop``)."""

    def __init__(self, host: str, port: int, domain: str, on_reports: OnReports,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.handler = BounceHandler(domain, on_reports, max_bytes)
        self.host, self.port = host, port
        self.controller = Controller(self.handler, hostname=host, port=port,
                                     data_size_limit=max_bytes, ready_timeout=10)

    def start(self) -> BounceListener:
        try:
            _probe(self.host, self.port)  # aiosmtpd would wait ready_timeout to say "in use"
            self.controller.start()
        except (OSError, RuntimeError) as exc:  # port in use, unknown host
            self.handler.pool.shutdown(wait=False)
            raise ConfigError(f"the bounce listener cannot start on {self.host}:{self.port}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc
        log.info("bounce.listening host=%s port=%s domain=%s", self.host, self.port,
                 self.handler.domain)
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.handler.pool.shutdown(wait=True)

    def __enter__(self) -> BounceListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(settings: Settings, on_reports: OnReports, host: str | None = None,
          port: int | None = None) -> BounceListener:
    """A started listener configured by ``MC_BOUNCE_DOMAIN``, ``MC_BOUNCE_SMTP_HOST`` /
    ``_PORT`` and ``MC_BOUNCE_MAX_BYTES`` (host and port overridable)."""
    return BounceListener(host or settings.bounce_smtp_host,
                          settings.bounce_smtp_port if port is None else port,
                          settings.bounce_domain, on_reports,
                          settings.bounce_max_bytes).start()


def run(settings: Settings, on_reports: OnReports, host: str | None = None,
        port: int | None = None, stop: threading.Event | None = None) -> None:
    """Run the listener until ``stop`` is set (or the process is interrupted)."""
    listener = start(settings, on_reports, host, port)
    try:
        (stop or threading.Event()).wait()
    finally:
        listener.stop()
