"""The ``smtp`` connector: MIME building and SMTP delivery to one relay, outcomes as values.

The only module that imports aiosmtplib, which opens each connection (greeting, EHLO,
STARTTLS, AUTH); the messages then go through ``smtp_link.SmtpLink`` (pipelined).
:class:`SmtpConnector` keeps a pool of open SMTP connections to one relay (a
``[[connectors]]`` table of kind ``smtp``, or the default relay ``smtp`` that
``MC_SMTP_*`` describe); several relays of the email channel
fail over like any connectors (``channels.failover``).  ``send()`` never raises for a
delivery problem: it returns a :class:`~soap_service.models.SendResult` (sent / temporary
/ permanent, the relay's code and text, whether the refusal came at ``RCPT TO``).
Deciding what an outcome means for the event (retry, give up) is the worker's job, not
this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.header
import email.policy
import email.utils
import functools
import logging
import quopri
import re
import time
import uuid
from email.message import EmailMessage as MimeMessage

import aiosmtplib
import aiosmtplib.email

from soap_service.channels.base import ReceiptSink, register_kind
from soap_service.channels.options import (
    check_known,
    opt_choice,
    opt_float,
    opt_int,
    opt_str,
)
from soap_service.channels.smtp_link import LinkLost, Refused, SmtpLink
from soap_service.config import ConnectorConfig
from soap_service.models import Channel, ChannelMessage, EmailMessage, SendOutcome, SendResult

log = logging.getLogger(__name__)

_PROBE_AFTER = 5.0  # seconds idle before a pooled connection is probed with NOOP
_QUEUE_ID = re.compile(r"(?:queued as|id=)\s*([A-Za-z0-9._-]+)", re.IGNORECASE)
_ADDRESS_HEADERS = {"from", "to", "reply-to", "cc"}
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def envelope_address(address: str) -> str:
    """The mailbox to put on ``MAIL FROM`` / ``RCPT TO`` (aiosmtplib's ``parse_address``:
    a display name and brackets dropped; ``ValueError`` for characters that could inject
    SMTP syntax).  A plain ``local@domain`` -- nearly every address -- is its own answer
    and skips the stdlib's address parser, which costed more than the rest of a send."""
    address = address.strip()
    if _PLAIN_ADDRESS.fullmatch(address):
        return address
    return _parsed_address(address)


@functools.lru_cache(maxsize=256)
def _parsed_address(address: str) -> str:
    """A named sender (``Shop <shop@example.com>``) is parsed once, not per message."""
    return aiosmtplib.email.parse_address(address)


def _cte(body: str) -> str:
    """7bit when the body is plain ASCII with short lines, else quoted-printable."""
    if body.isascii() and all(len(line) < 990 for line in body.splitlines()):
        return "7bit"
    return "quoted-printable"


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _header(name: str, value: str) -> str:
    """One header line; non-ASCII or long values RFC 2047-encoded and folded."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in header {name}")
    if name.lower() in _ADDRESS_HEADERS and not value.isascii():
        display, addr = email.utils.parseaddr(value)
        value = email.utils.formataddr((display, addr), charset="utf-8")
    elif not value.isascii() or len(name) + len(value) > 76:
        value = email.header.Header(value, "utf-8" if not value.isascii() else "us-ascii",
                                    header_name=name).encode(linesep="\r\n")
    return f"{name}: {value}\r\n"


def _part(body: str, subtype: str) -> str:
    cte = _cte(body)
    if cte == "7bit":
        payload = _crlf(body)
    else:
        unix = body.replace("\r\n", "\n").replace("\r", "\n")
        payload = _crlf(quopri.encodestring(unix.encode("utf-8")).decode("ascii"))
    if not payload.endswith("\r\n"):
        payload += "\r\n"
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n{payload}")


def build_mime_bytes(msg: EmailMessage) -> bytes:
    """The message as SMTP-ready bytes: multipart/alternative when both parts exist.

    Written by hand: the stdlib ``email`` package costs ~2 ms per message here, which
    alone would cap a worker near 500 messages/s; this costs a few tens of µs.
    """
    head = [
        _header("Date", email.utils.formatdate(localtime=False, usegmt=True)),
        _header("Message-ID", msg.message_id),
        _header("From", msg.from_addr),
        _header("To", msg.to),
        _header("Subject", msg.subject),
    ]
    if msg.reply_to:
        head.append(_header("Reply-To", msg.reply_to))
    head += [_header(k, v) for k, v in msg.headers.items()]
    head.append("MIME-Version: 1.0\r\n")
    if msg.text and msg.html:
        boundary = f"=_mc_{uuid.uuid4().hex}"
        body = (f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\n{_part(msg.text, 'plain')}"
                f"--{boundary}\r\n{_part(msg.html, 'html')}--{boundary}--\r\n")
    elif msg.html:
        body = _part(msg.html, "html")
    else:
        body = _part(msg.text, "plain")
    return ("".join(head) + body).encode("ascii")


def build_mime(msg: EmailMessage) -> MimeMessage:
    """The same message parsed back into an ``email`` object (previews, proofs, tests)."""
    parsed = email.message_from_bytes(build_mime_bytes(msg), policy=email.policy.default)
    assert isinstance(parsed, MimeMessage)
    return parsed


def classify_code(code: int | None) -> SendOutcome:
    """5xx is permanent; everything else that is not 2xx is worth another try."""
    if code is not None and 200 <= code < 300:
        return SendOutcome.SENT
    if code is not None and 500 <= code < 600:
        return SendOutcome.PERMANENT
    return SendOutcome.TEMPORARY


def _result_from_error(exc: BaseException, started: float) -> SendResult:
    """Map a refusal, a lost link, or an aiosmtplib / network exception while connecting
    to a SendResult (never raises)."""
    ms = int((time.monotonic() - started) * 1000)
    if isinstance(exc, Refused):
        return SendResult(classify_code(exc.code), exc.code, exc.text, ms,
                          address_refused=exc.stage == "rcpt")
    if isinstance(exc, LinkLost):
        return SendResult(SendOutcome.TEMPORARY, None, str(exc)[:500], ms)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # a relay configuration problem, not the message's fault: keep retrying
        return SendResult(SendOutcome.TEMPORARY, exc.code, f"auth: {exc.message}", ms)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendResult(classify_code(exc.code), exc.code, exc.message, ms)
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return SendResult(SendOutcome.TEMPORARY, None, "timeout", ms)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return SendResult(SendOutcome.TEMPORARY, None, f"disconnected: {exc}", ms)
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return SendResult(SendOutcome.TEMPORARY, None, f"connection failed: {exc}", ms)
    return SendResult(SendOutcome.TEMPORARY, None, f"{type(exc).__name__}: {exc}"[:500], ms)


SMTP_OPTIONS = ("host", "port", "tls", "user", "timeout", "ca_file")


class SmtpConnector:
    """The ``smtp`` connector: one relay, connections reused across sends.

    Options: ``host`` (127.0.0.1), ``port`` (25), ``tls`` none / starttls / tls,
    ``user`` and ``password`` (or ``password_file`` / ``password_env``), ``timeout``
    (30 s per command), ``ca_file`` (a PEM bundle for a private CA).  With no email
    connector declared, ``MC_SMTP_*`` make one named ``smtp`` (``Settings.channel_connectors``).
    The connector bounds nothing itself: its channel's ``ConnectorSet`` holds at most
    ``concurrency`` sends in flight (real-time first), so the pool never holds more
    connections than that.  Create and use it inside one running event loop.
    """

    def __init__(self, config: ConnectorConfig, on_receipt: ReceiptSink | None = None) -> None:
        check_known(config, SMTP_OPTIONS, secrets=("password",))
        self.config = config
        self.host = opt_str(config, "host", "127.0.0.1", required=True)
        self.port = opt_int(config, "port", 25, 1, 65535)
        self.tls = opt_choice(config, "tls", "none", ("none", "starttls", "tls"))
        self.user = opt_str(config, "user")
        self.password = config.secret("password")
        self.timeout = opt_float(config, "timeout", 30.0, 0.1, 3600.0)
        self.ca_file = opt_str(config, "ca_file")
        self._idle: list[tuple[SmtpLink, float]] = []
        self._closed = False

    def _new_client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.user or None,
            password=self.password or None,
            use_tls=self.tls == "tls",
            start_tls=self.tls == "starttls",
            timeout=self.timeout,
            cert_bundle=self.ca_file or None,
        )

    async def _open(self) -> SmtpLink:
        """A new connection: aiosmtplib connects (greeting, EHLO, STARTTLS, AUTH), then a
        :class:`SmtpLink` carries its messages."""
        client = self._new_client()
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        transport = client.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("the relay closed the connection")
        return SmtpLink(transport, pipelining=client.supports_extension("pipelining"),
                        size=client.supports_extension("size"), timeout=self.timeout,
                        opener=client)

    async def _checkout(self) -> SmtpLink:
        """An open connection: an idle one that is still alive, else a new one.

        A connection idle for a while is probed with NOOP first, so a relay's idle
        timeout costs a reconnect rather than a failed (and deferred) message.
        """
        while self._idle:
            link, since = self._idle.pop()
            if link.alive and time.monotonic() - since < _PROBE_AFTER:
                return link
            if link.alive:
                try:
                    if (await link.command(b"NOOP"))[0] == 250:
                        return link
                except (LinkLost, TimeoutError):
                    pass
            link.close()
        return await self._open()

    def _checkin(self, link: SmtpLink) -> None:
        if self._closed or not link.alive:
            link.close()
        else:
            self._idle.append((link, time.monotonic()))

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        """Send one email to ``address`` (its envelope recipient) from ``return_path`` (else
        the From address); the outcome is a value, never an exception.  ``urgent`` is
        for the channel's slots, which came first."""
        if not isinstance(message, EmailMessage):
            return SendResult(SendOutcome.PERMANENT, None, "the smtp connector sends email only")
        try:
            data = build_mime_bytes(message)
            # the envelope sender: the event's VERP return path when there is one
            sender = envelope_address(message.return_path or message.from_addr).encode("ascii")
            rcpt = envelope_address(address).encode("ascii")
        except (ValueError, TypeError) as exc:  # unusable address or header: never retry
            return SendResult(SendOutcome.PERMANENT, None, f"invalid message: {exc}"[:500])
        started = time.monotonic()
        link: SmtpLink | None = None
        try:
            link = await self._checkout()
            response = await link.send(sender, rcpt, data)
        except (Refused, LinkLost, aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if link is not None:
                self._checkin(link)  # kept after a refusal (it was RSET), else closed
            return _result_from_error(exc, started)
        except Exception as exc:  # a bug must not take the whole round down
            log.exception("smtp.unexpected_error connector=%s", self.config.name)
            if link is not None:
                link.close()
            return _result_from_error(exc, started)
        self._checkin(link)
        ms = int((time.monotonic() - started) * 1000)
        return SendResult(SendOutcome.SENT, 250, response[:500] or "OK", ms,
                          provider_id=_queue_id(response))

    async def close(self) -> None:
        """QUIT every idle connection (best effort)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for link, _since in idle:
            with contextlib.suppress(LinkLost, TimeoutError):
                await asyncio.wait_for(link.command(b"QUIT"), timeout=2)
            link.close()


def _queue_id(response: str) -> str:
    """The relay's queue id when its 250 answer names one (``250 2.0.0 Ok: queued as
    4F2A1``, ``250 OK id=1abc-2D``); "" otherwise.  Bounces may name it."""
    match = _QUEUE_ID.search(response or "")
    return match.group(1)[:255] if match else ""


register_kind("smtp", Channel.EMAIL, SmtpConnector)
