"""The smtp connector's message transactions (``channels.smtp_link``) against scripted SMTP
servers on loopback: pipelining really pipelines, replies are read however the bytes are
cut, and a relay that speaks nonsense, too much or out of turn loses its connection --
the message is a temporary failure, never an exception or a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from soap_service.channels.smtp import SmtpConnector
from soap_service.channels.smtp_link import message_data
from soap_service.config import ConnectorConfig
from soap_service.models import Channel, EmailMessage, SendOutcome, SendResult

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _msg(text: str = "Hello") -> EmailMessage:
    return EmailMessage(from_addr="shop@example.org", to="john@example.com", subject="Hi",
                        message_id="<m.1@example.org>", text=text)


async def _greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 extensions: tuple[str, ...] = ("PIPELINING",)) -> None:
    writer.write(b"220 scripted ESMTP\r\n")
    await reader.readline()  # EHLO
    lines = ["scripted", *extensions]
    writer.write("".join(f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n"
                         for i, line in enumerate(lines)).encode())
    await writer.drain()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while (line := await reader.readline()) not in (b".\r\n", b""):
        body += line
    return body


def _send(script: Script, messages: list[EmailMessage], timeout: float = 5.0
          ) -> tuple[list[SendResult], int]:
    """Send ``messages`` one after another through a connector whose relay runs
    ``script`` per connection; returns the results and how many connections it opened."""
    connections = 0

    async def run() -> list[SendResult]:
        nonlocal connections

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connector = SmtpConnector(ConnectorConfig(
            name="relay", channel=Channel.EMAIL, kind="smtp",
            options={"host": "127.0.0.1", "port": port, "timeout": timeout}))
        try:
            return [await connector.send(m, m.to) for m in messages]
        finally:
            await connector.close()
            server.close()

    results = asyncio.run(run())
    return results, connections


def test_with_pipelining_the_envelope_goes_out_before_any_reply() -> None:
    """The relay answers nothing until MAIL, RCPT and DATA are all in: only a client
    that pipelines gets its message through (one waiting for MAIL's reply would time out)."""
    got: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer)
        envelope = [await reader.readline() for _ in range(3)]
        assert [c.split(b" ")[0].split(b":")[0] for c in envelope] == [b"MAIL", b"RCPT",
                                                                       b"DATA\r\n"]
        writer.write(b"250 sender ok\r\n250 rcpt ok\r\n354 go on\r\n")
        got.append(await _read_data(reader))
        writer.write(b"250 2.0.0 Ok: queued as ABC123\r\n")
        await writer.drain()
        await reader.readline()  # QUIT
        writer.write(b"221 bye\r\n")

    [result], connections = _send(script, [_msg()], timeout=2.0)
    assert result.outcome is SendOutcome.SENT and result.provider_id == "ABC123"
    assert connections == 1 and b"Hello" in got[0]


def test_replies_cut_anywhere_and_multi_line_replies_are_read_whole() -> None:
    """Without PIPELINING, one command at a time; replies arriving a few bytes at a time,
    and multi-line replies, are read as the relay meant them."""

    async def dribble(writer: asyncio.StreamWriter, reply: bytes) -> None:
        for i in range(0, len(reply), 3):
            writer.write(reply[i:i + 3])
            await writer.drain()
            await asyncio.sleep(0)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer, extensions=("SIZE 1000000",))
        assert b"SIZE=" in await reader.readline()
        await dribble(writer, b"250-first line\r\n250 sender ok\r\n")
        await reader.readline()
        await dribble(writer, b"250 rcpt ok\r\n")
        assert await reader.readline() == b"DATA\r\n"
        await dribble(writer, b"354 go on\r\n")
        await _read_data(reader)
        await dribble(writer, b"250-queued\r\n250 as XYZ\r\n")
        await reader.readline()
        writer.write(b"221 bye\r\n")

    [result], _ = _send(script, [_msg()])
    assert result.outcome is SendOutcome.SENT
    assert result.text == "queued\nas XYZ"


@pytest.mark.parametrize(("reply", "reason"), [
    (b"hello there\r\n", "malformed reply"),
    (b"250" + b"x" * 70_000, "reply too long"),
])
def test_a_relay_speaking_nonsense_loses_the_connection(reply: bytes, reason: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer)
        for _ in range(3):
            await reader.readline()
        writer.write(reply)
        await writer.drain()
        await reader.read()  # until the client hangs up

    [result], _ = _send(script, [_msg()])
    assert result.outcome is SendOutcome.TEMPORARY and result.code is None
    assert reason in result.text


def test_a_reply_out_of_turn_ends_the_pooled_connection() -> None:
    """A relay that says 421 while the connection idles in the pool (and hangs up): the
    next message opens a new connection and is sent."""
    sent = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _greet(reader, writer)
        for _ in range(3):
            await reader.readline()
        writer.write(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        await _read_data(reader)
        sent += 1
        writer.write(b"250 queued\r\n")
        if sent == 1:
            writer.write(b"421 4.4.2 idle too long, closing\r\n")
            await writer.drain()
            return
        await reader.readline()
        writer.write(b"221 bye\r\n")

    results, connections = _send(script, [_msg("one"), _msg("two")])
    assert [r.outcome for r in results] == [SendOutcome.SENT, SendOutcome.SENT]
    assert connections == 2


def test_a_relay_that_stops_answering_mid_transaction_is_a_timeout() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer)
        for _ in range(3):
            await reader.readline()
        writer.write(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        await _read_data(reader)
        await reader.read()  # never answers the data

    [result], _ = _send(script, [_msg()], timeout=0.3)
    assert result.outcome is SendOutcome.TEMPORARY and "timeout" in result.text


def test_message_data_is_crlf_dot_stuffed_and_terminated() -> None:
    assert message_data(b".first\r\nsecond\r\n.third\r\n") == (
        b"..first\r\nsecond\r\n..third\r\n.\r\n")
    assert message_data(b"bare\nline\rends") == b"bare\r\nline\r\nends\r\n.\r\n"
    assert message_data(b"a\r\n.\r\nb") == b"a\r\n..\r\nb\r\n.\r\n"
