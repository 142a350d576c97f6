"""Email channel: MIME building and SMTP delivery to one relay, outcomes as values.

The only module that imports aiosmtplib.  :class:`EmailChannel` keeps a small pool of
open SMTP connections to the relay configured in :class:`~soap_service.config.Settings`
(``MC_SMTP_HOST``, ``MC_SMTP_PORT``, ``MC_SMTP_USER``, ``MC_SMTP_PASSWORD``,
``MC_SMTP_TLS`` none / starttls / tls) and never has more than ``smtp_concurrency``
transactions in flight.  ``send()`` never raises for a delivery problem: it returns a
:class:`~soap_service.models.SendResult` (sent / temporary / permanent, the relay's code
and text, whether the failure came at ``RCPT TO``).  Deciding what an outcome means for
the event (retry, give up) is the worker's job, not this module's.
"""

from __future__ import annotations

import asyncio
import email.header
import email.policy
import email.utils
import heapq
import itertools
import logging
import quopri
import time
import uuid
from collections.abc import Sequence
from email.message import EmailMessage as MimeMessage

import aiosmtplib
import aiosmtplib.email

from soap_service.config import Settings
from soap_service.models import EmailMessage, SendOutcome, SendResult

log = logging.getLogger(__name__)

_PROBE_AFTER = 5.0  # seconds idle before a pooled connection is probed with NOOP
_ADDRESS_HEADERS = {"from", "to", "reply-to", "cc"}


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
    """Map an aiosmtplib / network exception to a SendResult (never raises)."""
    ms = int((time.monotonic() - started) * 1000)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        code = first.code if first else None
        text = first.message if first else str(exc)
        return SendResult(classify_code(code), code, text, ms, address_refused=True)
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


class _Slots:
    """A semaphore whose waiters are served by priority (lower first), then in order."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # hand the slot straight to the next waiter
                return
        self._free += 1


class EmailChannel:
    """SMTP delivery to one relay with reused connections and bounded concurrency.

    Create and use it inside one running event loop; ``close()`` it on that loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._slots = _Slots(max(1, settings.smtp_concurrency))
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._closed = False

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_user or None,
            password=s.smtp_password or None,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            timeout=s.smtp_timeout,
            cert_bundle=s.smtp_ca_file or None,
        )

    async def _checkout(self) -> aiosmtplib.SMTP:
        """An open connection: an idle one that is still alive, else a new one.

        A connection idle for a while is probed with NOOP first, so a relay's idle
        timeout costs a reconnect rather than a failed (and deferred) message.
        """
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < _PROBE_AFTER:
                return client
            if client.is_connected:
                try:
                    await client.noop()
                    return client
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    pass
            client.close()
        client = self._new_client()
        await client.connect()
        return client

    def _checkin(self, client: aiosmtplib.SMTP) -> None:
        if self._closed or not client.is_connected:
            client.close()
        else:
            self._idle.append((client, time.monotonic()))

    async def send(self, msg: EmailMessage, urgent: bool = False) -> SendResult:
        """Send one message; the outcome is a value, never an exception.

        ``urgent`` messages (real-time events) take the next free connection ahead of
        every non-urgent message still waiting for one.
        """
        started = time.monotonic()
        try:
            data = build_mime_bytes(msg)
            sender, rcpt = aiosmtplib.email.parse_address(msg.from_addr), msg.to.strip()
            aiosmtplib.email.parse_address(rcpt)
        except (ValueError, TypeError) as exc:  # unusable address or header: never retry
            return SendResult(SendOutcome.PERMANENT, None, f"invalid message: {exc}"[:500])
        await self._slots.acquire(0 if urgent else 1)
        try:
            started = time.monotonic()  # the attempt's duration excludes waiting for a slot
            client: aiosmtplib.SMTP | None = None
            try:
                client = await self._checkout()
                _refused, response = await client.sendmail(sender, [rcpt], data)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if client is not None:
                    self._discard_after_error(client, exc)
                return _result_from_error(exc, started)
            except Exception as exc:  # a bug must not take the whole round down
                log.exception("email.unexpected_error")
                if client is not None:
                    client.close()
                return _result_from_error(exc, started)
            self._checkin(client)
            ms = int((time.monotonic() - started) * 1000)
            return SendResult(SendOutcome.SENT, 250, response[:500] or "OK", ms)
        finally:
            self._slots.release()

    def _discard_after_error(self, client: aiosmtplib.SMTP, exc: BaseException) -> None:
        """Keep a connection after a clean SMTP refusal (sendmail sent RSET), else drop it."""
        if isinstance(exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused):
            self._checkin(client)
        else:
            client.close()

    async def close(self) -> None:
        """QUIT every idle connection (best effort)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client, _since in idle:
            try:
                await asyncio.wait_for(client.quit(), timeout=2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


async def _send_all(settings: Settings, messages: Sequence[EmailMessage]) -> list[SendResult]:
    channel = EmailChannel(settings)
    try:
        return list(await asyncio.gather(*(channel.send(m) for m in messages)))
    finally:
        await channel.close()


def send_messages(settings: Settings, messages: Sequence[EmailMessage]) -> list[SendResult]:
    """Synchronous helper (CLI, proofs): send ``messages`` over one pool, in order of results."""
    return asyncio.run(_send_all(settings, messages))
