"""The email channel (the ``smtp`` connector behind its channel's connector set) against a
real SMTP server (aiosmtpd in-process, with scripted faults)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from soap_service.channels.direct import send_messages
from soap_service.channels.failover import ConnectorSet
from soap_service.config import Settings, load_settings
from soap_service.devsmtp import Fault, MailSink
from soap_service.models import Channel, EmailMessage, SendOutcome


def _msg(n: int = 1, to: str = "john.doe@example.com", **kw) -> EmailMessage:
    fields = {
        "from_addr": "shop@example.org",
        "to": to,
        "subject": f"Order {n} confirmed — merci",
        "message_id": f"<mc.1.{n}@example.org>",
        "html": f"<p>Hello <b>John</b>, order {n}</p>",
        "text": f"Hello John, order {n}",
    }
    fields.update(kw)
    return EmailMessage(**fields)


def email_channel(settings: Settings) -> ConnectorSet:
    """What the worker sends email through (the default relay from MC_SMTP_*)."""
    return ConnectorSet.from_configs(Channel.EMAIL, settings.channel_connectors(Channel.EMAIL))


def _settings(sink: MailSink, **kw):
    env = {"MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port)}
    return load_settings(env, **kw)


PIPELINING = pytest.mark.parametrize("pipelining", [False, True],
                                     ids=["one-command-at-a-time", "pipelining"])


@PIPELINING
def test_sends_multipart_alternative_with_headers(tmp_path, pipelining):
    """A message with both parts arrives as multipart/alternative with Date, Message-ID,
    From, To, Subject and Reply-To, and is stored as an .eml file by the sink -- whether
    the relay takes MAIL, RCPT and DATA in one write (PIPELINING) or one by one."""
    with MailSink(directory=tmp_path / "mail", pipelining=pipelining) as sink:
        msg = _msg(reply_to="help@example.org", headers={"X-MC-Event": "1"})
        [result] = send_messages(_settings(sink), [msg])
        assert result.outcome is SendOutcome.SENT
        assert result.code == 250
        [got] = sink.wait_for(1)
    mime = got.message
    assert mime.get_content_type() == "multipart/alternative"
    assert mime["Message-ID"] == "<mc.1.1@example.org>"
    assert mime["From"] == "shop@example.org"
    assert mime["To"] == "john.doe@example.com"
    assert mime["Subject"] == "Order 1 confirmed — merci"
    assert mime["Reply-To"] == "help@example.org"
    assert mime["X-MC-Event"] == "1"
    assert mime["Date"]
    parts = {p.get_content_type(): p.get_content() for p in mime.iter_parts()}
    assert parts["text/plain"].strip() == "Hello John, order 1"
    assert "<b>John</b>" in parts["text/html"]
    assert got.rcpt_tos == ("john.doe@example.com",)
    assert got.path is not None and got.path.read_bytes() == got.data


@pytest.mark.parametrize(
    ("html", "text", "ctype"),
    [("", "plain only", "text/plain"), ("<p>html only</p>", "", "text/html")],
)
def test_single_part_messages(html, text, ctype):
    """A message with only one part is sent as that single part, not multipart."""
    with MailSink() as sink:
        [result] = send_messages(_settings(sink), [_msg(html=html, text=text)])
        [got] = sink.wait_for(1)
    assert result.outcome is SendOutcome.SENT
    assert got.message.get_content_type() == ctype


def test_connections_are_reused_and_concurrency_bounded():
    """Fifty messages over a pool of 3 use at most 3 SMTP connections."""
    peers: set = set()

    class CountingSink(MailSink):
        pass

    with CountingSink() as sink:
        original = sink.handler.handle_DATA

        async def handle_data(server, session, envelope):
            peers.add(session.peer)
            return await original(server, session, envelope)

        sink.handler.handle_DATA = handle_data  # type: ignore[method-assign]
        results = send_messages(_settings(sink, smtp_concurrency=3),
                                [_msg(n) for n in range(50)])
        sink.wait_for(50)
    assert all(r.outcome is SendOutcome.SENT for r in results)
    assert len(sink.messages) == 50
    assert 1 <= len(peers) <= 3


def _fault_plan(reply: str, stage: str):
    return lambda rcpt, attempt: Fault(reply, stage)


@PIPELINING
@pytest.mark.parametrize(
    ("reply", "stage", "outcome", "code", "address_refused"),
    [
        ("450 4.2.1 mailbox busy", "rcpt", SendOutcome.TEMPORARY, 450, True),
        ("550 5.1.1 no such user", "rcpt", SendOutcome.PERMANENT, 550, True),
        ("451 4.3.0 try later", "data", SendOutcome.TEMPORARY, 451, False),
        ("554 5.7.1 rejected", "data", SendOutcome.PERMANENT, 554, False),
    ],
)
def test_relay_refusals_are_classified(reply, stage, outcome, code, address_refused,
                                       pipelining):
    """4xx is temporary, 5xx permanent, with the relay's code and text; RCPT failures say so."""
    with MailSink(plan=_fault_plan(reply, stage), pipelining=pipelining) as sink:
        [result] = send_messages(_settings(sink), [_msg()])
    assert result.outcome is outcome
    assert result.code == code
    assert reply.split(" ", 1)[1] in result.text
    assert result.address_refused is address_refused
    assert sink.messages == []


@PIPELINING
def test_disconnect_is_temporary(pipelining):
    """A relay dropping the connection mid-transaction is a temporary failure."""
    with MailSink(plan=_fault_plan("disconnect", "data"), pipelining=pipelining) as sink:
        [result] = send_messages(_settings(sink), [_msg()])
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code is None
    assert sink.messages == []


def test_refused_connection_is_temporary():
    """Nothing listening on the relay port is a temporary failure, not an exception."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings({"MC_SMTP_HOST": "127.0.0.1", "MC_SMTP_PORT": str(port)})
    [result] = send_messages(settings, [_msg()])
    assert result.outcome is SendOutcome.TEMPORARY
    assert "connection" in result.text.lower()


def test_relay_that_never_answers_is_a_temporary_timeout():
    """A relay that accepts the connection but never speaks: after MC_SMTP_TIMEOUT the
    attempt is a temporary failure saying "timeout" (no exception, nothing sent)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        settings = load_settings({"MC_SMTP_HOST": "127.0.0.1", "MC_SMTP_PORT": str(port),
                                  "MC_SMTP_TIMEOUT": "0.3"})
        [result] = send_messages(settings, [_msg()])
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code is None and "timeout" in result.text.lower()


@PIPELINING
def test_failure_then_success_on_the_same_channel(pipelining):
    """After a refusal the channel keeps working: the next message is sent (on the same
    connection, reset after the refusal)."""
    plan = lambda rcpt, attempt: Fault("450 busy", "rcpt") if rcpt.startswith("busy") else None  # noqa: E731
    with MailSink(plan=plan, pipelining=pipelining) as sink:

        async def run():
            channel = email_channel(_settings(sink, smtp_concurrency=1))
            try:
                first = await channel.send(_msg(1, to="busy@example.com"), "busy@example.com")
                second = await channel.send(_msg(2), _msg(2).to)
            finally:
                await channel.close()
            return first, second

        first, second = asyncio.run(run())
        sink.wait_for(1)
    assert first.outcome is SendOutcome.TEMPORARY
    assert second.outcome is SendOutcome.SENT
    assert [m.message_id for m in sink.messages] == ["<mc.1.2@example.org>"]


def test_display_names_and_bad_addresses():
    """A From with a display name is sent with the bare envelope sender; an address that
    cannot go on an SMTP command line is a permanent failure, not an exception."""
    with MailSink() as sink:
        ok, bad = send_messages(_settings(sink), [
            _msg(1, from_addr="Demo Shop <shop@demo.example>"),
            _msg(2, to="bad\r\naddress@example.com"),
        ])
        sink.wait_for(1)
    assert ok.outcome is SendOutcome.SENT
    assert sink.messages[0].mail_from == "shop@demo.example"
    assert sink.messages[0].message["From"] == "Demo Shop <shop@demo.example>"
    assert bad.outcome is SendOutcome.PERMANENT


def test_non_ascii_bodies_headers_and_long_subjects_round_trip():
    """Non-ASCII bodies (quoted-printable), display names, long and non-ASCII subjects
    and long lines arrive intact after a real SMTP transaction."""
    text = "Zoë's order: café — ünïcode\r\nsecond line\n" + "x" * 1200
    html = "<p>Zoë — <b>café</b></p>\n" + "<span>y</span>" * 200
    subject = "Commande confirmée pour Zoë " + "très long sujet " * 10
    with MailSink() as sink:
        [result] = send_messages(_settings(sink), [_msg(
            1, from_addr="Boutique Zoé <shop@example.org>", subject=subject,
            text=text, html=html)])
        [got] = sink.wait_for(1)
    assert result.outcome is SendOutcome.SENT
    mime = got.message
    assert mime["Subject"] == subject
    assert mime["From"].addresses[0].display_name == "Boutique Zoé"
    assert all(len(line) <= 998 for line in got.data.split(b"\r\n"))
    plain = mime.get_body(preferencelist=("plain",)).get_content()
    assert plain.replace("\r\n", "\n").rstrip("\n") == text.replace("\r\n", "\n")
    assert mime.get_body(preferencelist=("html",)).get_content().startswith("<p>Zoë — ")


def test_urgent_messages_jump_the_queue_for_a_connection():
    """With one connection busy and ten ordinary messages waiting, an urgent message
    queued last is sent next."""
    with MailSink(delay=0.02) as sink:

        async def run():
            channel = email_channel(_settings(sink, smtp_concurrency=1))
            try:
                ordinary = [asyncio.create_task(channel.send(_msg(n), _msg(n).to))
                            for n in range(10)]
                await asyncio.sleep(0)  # the ordinary ones are all waiting now
                urgent = asyncio.create_task(channel.send(_msg(99), _msg(99).to, urgent=True))
                return await asyncio.gather(*ordinary, urgent)
            finally:
                await channel.close()

        results = asyncio.run(run())
        sink.wait_for(11)
    assert all(r.outcome is SendOutcome.SENT for r in results)
    order = [m.message_id for m in sink.messages]
    assert order.index("<mc.1.99@example.org>") <= 1
