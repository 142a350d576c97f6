"""One pooled SMTP connection's message transactions, pipelined when the relay allows it.

aiosmtplib opens the connection -- greeting, ``EHLO``, ``STARTTLS``, ``AUTH``: the parts
with options and security -- and :class:`SmtpLink` then takes its transport over
(``transport.set_protocol``) for what is repeated for every message: ``MAIL``, ``RCPT``,
``DATA`` and the body, ``RSET`` after a refusal, ``NOOP`` to probe an idle connection,
``QUIT``.  When the relay announces ``PIPELINING`` (RFC 2920; postfix does) the three
envelope commands go out in one write and their three replies are read together: two
round trips per message instead of four.  It costs a fraction of aiosmtplib's
``sendmail`` in CPU (one reply parser, one timer per stage, no address parsing): on a
worker sending a thousand messages a second that is a tenth of a core.

Replies are checked as RFC 5321 says: ``ddd`` + ``-`` (more lines follow) or space; a
malformed line, a reply over :data:`MAX_REPLY_BYTES`, or a reply nobody asked for (a relay
saying ``421`` before it hangs up) ends the connection (:class:`LinkLost`).  A refusal is
a :class:`Refused` naming the stage (``mail`` / ``rcpt`` / ``data``), after which the
connection has been ``RSET`` and can carry the next message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

MAX_REPLY_BYTES = 64 * 1024


class LinkLost(Exception):
    """The connection is gone or unusable (closed, timed out, spoke nonsense)."""


class Refused(Exception):
    """The relay answered a stage of the transaction with a 4xx / 5xx reply."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.stage = stage
        self.code = code
        self.text = text


def message_data(data: bytes) -> bytes:
    """The message as it goes after ``DATA``: CRLF line ends, leading dots doubled,
    ``.`` on a line of its own at the end."""
    if data.count(b"\r\n") != data.count(b"\n") or data.count(b"\r") != data.count(b"\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpLink(asyncio.Protocol):
    """The message side of one SMTP connection (see the module's docstring).  One
    transaction at a time; ``timeout`` bounds each exchange with the relay."""

    def __init__(self, transport: asyncio.BaseTransport, *, pipelining: bool, size: bool,
                 timeout: float, opener: Any = None) -> None:
        self.pipelining = pipelining
        self.size = size
        self.timeout = timeout
        self._opener = opener  # aiosmtplib's client: kept alive, never used again
        self._transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # the reply being read
        self._replies: deque[tuple[int, str]] = deque()
        self._expected = 0  # replies asked for and not yet read
        self._waiter: asyncio.Future[None] | None = None
        self._lost: LinkLost | None = None
        transport.set_protocol(self)

    # -- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._lost is None:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[:end + 1]
            self._line(line)
        if len(self._buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._fail("reply too long")
        self._wake()

    def _line(self, line: bytes) -> None:
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
            self._fail("malformed reply")
            return
        self._lines.append(line[4:])
        if line[3:4] == b"-":
            return
        text = b"\n".join(self._lines).decode("utf-8", "replace")
        self._lines = []
        if self._expected <= 0:
            self._fail(f"unexpected reply: {line[:3].decode()} {text[:100]}")
            return
        self._expected -= 1
        self._replies.append((int(line[:3]), text))

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = LinkLost(f"disconnected: {exc}" if exc else
                                  "disconnected: the relay closed the connection")
        self._wake()

    # -- state -----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._lost is None and not self._transport.is_closing()

    def close(self) -> None:
        if self._lost is None:
            self._lost = LinkLost("closed")
        self._transport.close()

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = LinkLost(reason)
        self._transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _send(self, data: bytes, replies: int) -> None:
        if self._lost is not None:
            raise self._lost
        self._expected += replies
        self._transport.write(data)

    async def _read(self, count: int) -> list[tuple[int, str]]:
        """The next ``count`` replies (within ``timeout``; the connection is closed when
        they do not come)."""
        try:
            async with asyncio.timeout(self.timeout):
                while len(self._replies) < count:
                    if self._lost is not None:
                        raise self._lost
                    self._waiter = asyncio.get_running_loop().create_future()
                    await self._waiter
        except TimeoutError:
            self._fail("timeout")
            raise
        return [self._replies.popleft() for _ in range(count)]

    # -- commands --------------------------------------------------------------------

    async def command(self, line: bytes) -> tuple[int, str]:
        """One command (``NOOP``, ``RSET``, ``QUIT``) and its reply."""
        self._send(line + b"\r\n", 1)
        (reply,) = await self._read(1)
        return reply

    async def send(self, sender: bytes, recipient: bytes, data: bytes) -> str:
        """One message to one recipient; the relay's answer to the data, else
        :class:`Refused` (the connection ``RSET`` for the next message) or
        :class:`LinkLost` / ``TimeoutError`` (the connection is closed)."""
        body = message_data(data)
        mail = b"MAIL FROM:<%s>" % sender
        if self.size:
            mail += b" SIZE=%d" % len(data)
        rcpt = b"RCPT TO:<%s>\r\n" % recipient
        if self.pipelining:
            self._send(mail + b"\r\n" + rcpt + b"DATA\r\n", 3)
            (m_code, m_text), (r_code, r_text), (d_code, d_text) = await self._read(3)
        else:
            r_code = d_code = 503
            r_text = d_text = "not sent"
            m_code, m_text = await self.command(mail)
            if m_code == 250:
                r_code, r_text = await self.command(rcpt[:-2])
                if r_code in (250, 251):
                    d_code, d_text = await self.command(b"DATA")
        if d_code == 354 and (m_code != 250 or r_code not in (250, 251)):
            self._send(b".\r\n", 1)  # data opened for no recipient: close it empty
            await self._read(1)
        if m_code != 250:
            raise await self._refused("mail", m_code, m_text)
        if r_code not in (250, 251):
            raise await self._refused("rcpt", r_code, r_text)
        if d_code != 354:
            raise await self._refused("data", d_code, d_text)
        self._send(body, 1)
        ((code, text),) = await self._read(1)
        if code != 250:
            raise Refused("data", code, text)  # the transaction is over: nothing to reset
        return text

    async def _refused(self, stage: str, code: int, text: str) -> Refused:
        """The refusal, once the envelope is reset for the next message (a relay that
        does not answer ``RSET`` with 250 loses the connection instead)."""
        try:
            if self._lost is None and (await self.command(b"RSET"))[0] != 250:
                self._fail("RSET refused")
        except (LinkLost, TimeoutError):
            pass  # closed: the next message takes another connection
        return Refused(stage, code, text)
