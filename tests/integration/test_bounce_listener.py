"""The bounce listener over real SMTP: smtplib on loopback → aiosmtpd → parser → callback."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soap_service.bounces.listener import BounceListener, run
from soap_service.config import load_settings
from soap_service.errors import ConfigError
from soap_service.models import BounceKind, BounceReport

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"
DOMAIN = "bounce.example.com"
RETURN_PATH = "bounces+siqqd6n3hqebvcct5g6i4@bounce.example.com"


class Recorder:
    """The callback the wiring will replace: keeps what it was handed; can be made to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[BounceReport, ...]] = []
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, reports: tuple[BounceReport, ...]) -> None:
        if self.fail:
            raise RuntimeError("database unavailable")
        with self.lock:
            self.calls.append(reports)

    def wait_for(self, count: int, timeout: float = 20) -> list[tuple[BounceReport, ...]]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.calls)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture()
def listener(recorder: Recorder) -> Iterator[BounceListener]:
    with BounceListener("127.0.0.1", _free_port(), DOMAIN, recorder,
                        max_bytes=20 * 1024 * 1024) as running:
        yield running


def _wire(name: str) -> bytes:
    """A fixture as an MTA sends it: CRLF line ends (smtplib sends bytes unchanged)."""
    raw = (CORPUS / name).read_bytes().replace(b"\r\n", b"\n")
    return raw.replace(b"\n", b"\r\n")


def _client(listener: BounceListener) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", listener.port, timeout=60)


@pytest.mark.parametrize(("name", "rcpt", "kinds"), [
    ("postfix-dsn-hard.eml", RETURN_PATH, [BounceKind.HARD]),
    ("sendmail-dsn-three-recipients.eml", "bounces+smqqdpf7suhyduric2kmo@bounce.example.com",
     [BounceKind.HARD, BounceKind.SOFT, BounceKind.UNKNOWN]),
    ("exim-text.eml", RETURN_PATH.upper(), [BounceKind.HARD]),
    ("arf-yahoo.eml", "bounces+redaczfi3qtb5hzfqhe42@bounce.example.com",
     [BounceKind.COMPLAINT]),
    ("jmrp-outlook.eml", "abuse@Bounce.Example.Com", [BounceKind.COMPLAINT]),
    ("autoreply-out-of-office.eml", RETURN_PATH, [BounceKind.UNKNOWN]),
])
def test_fixtures_delivered_over_smtp(listener: BounceListener, recorder: Recorder, name: str,
                                      rcpt: str, kinds: list[BounceKind]) -> None:
    """DSN, plain-text and ARF messages sent with a null sender reach the callback as reports,
    their return path taken from the envelope."""
    with _client(listener) as smtp:
        refused = smtp.sendmail("<>", [rcpt], _wire(name))
    assert refused == {}
    (reports,) = recorder.wait_for(1)
    assert [r.kind for r in reports] == kinds
    if rcpt.lower().startswith("bounces+"):
        assert all(r.return_path == rcpt for r in reports)


def test_relay_is_refused(listener: BounceListener, recorder: Recorder) -> None:
    """Any recipient outside the bounce domain (a subdomain or a look-alike too) is 550."""
    with _client(listener) as smtp:
        smtp.ehlo()
        smtp.mail("spammer@example.net")
        for rcpt in ("victim@example.org", f"x@sub.{DOMAIN}", f"x@{DOMAIN}.evil.example",
                     "no-domain"):
            code, text = smtp.rcpt(rcpt)
            assert code == 550 and b"relay denied" in text, rcpt
        # not even an address: aiosmtpd's syntax check refuses it first
        assert smtp.rcpt(f"x@{DOMAIN}@evil.example")[0] == 553
        code, _ = smtp.docmd("DATA")
        assert code == 503  # no valid recipient: no message
    assert recorder.calls == []


def test_one_recipient_per_message(listener: BounceListener, recorder: Recorder) -> None:
    """A second recipient is deferred (452): each message has exactly one return path."""
    with _client(listener) as smtp:
        smtp.ehlo()
        smtp.mail("")
        assert smtp.rcpt(RETURN_PATH)[0] == 250
        assert smtp.rcpt(f"postmaster@{DOMAIN}")[0] == 452


def test_size_announced_too_large_is_refused(listener: BounceListener) -> None:
    """EHLO advertises SIZE; a MAIL FROM announcing more than 20 MB is 552."""
    with _client(listener) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size") and int(smtp.esmtp_features["size"]) == 20 * 1024 * 1024
        code, _ = smtp.mail("", [f"SIZE={21 * 1024 * 1024}"])
        assert code == 552


def test_twenty_megabyte_message_is_refused(listener: BounceListener,
                                            recorder: Recorder) -> None:
    """A 21 MB message (no SIZE announced) is read to its end, refused 552, and nothing is
    handed on; the connection still works for the next message."""
    line = b"x" * 998 + b"\r\n"
    big = b"From: MAILER-DAEMON@x\r\nSubject: big\r\n\r\n" + line * (21 * 1024 * 1024 // 1000)
    with _client(listener) as smtp:
        smtp.ehlo()
        smtp.mail("")
        smtp.rcpt(RETURN_PATH)
        code, _ = smtp.data(big)
        assert code == 552
        refused = smtp.sendmail("<>", [RETURN_PATH], _wire("gmail-dsn.eml"))
        assert refused == {}
    calls = recorder.wait_for(1)
    assert len(calls) == 1 and calls[0][0].recipient == "no.such.person@gmail.com"


def test_malformed_mime_is_recorded_as_unparseable(listener: BounceListener,
                                                   recorder: Recorder) -> None:
    """A broken MIME tree is accepted and recorded as one unparseable report."""
    with _client(listener) as smtp:
        smtp.sendmail("<>", [RETURN_PATH], _wire("malformed-mime.eml"))
        smtp.sendmail("<>", [RETURN_PATH], b"\x00\x01 not a message at all\r\n")
    calls = recorder.wait_for(2)
    assert [c[0].kind for c in calls] == [BounceKind.UNPARSEABLE] * 2
    assert all(c[0].return_path == RETURN_PATH for c in calls)


def test_callback_failure_defers_the_message(listener: BounceListener,
                                             recorder: Recorder) -> None:
    """When recording fails the sender gets 451 (it will retry); once recording works again
    the same message is accepted."""
    raw = _wire("postfix-dsn-hard.eml")
    recorder.fail = True
    with _client(listener) as smtp, pytest.raises(smtplib.SMTPDataError) as info:
        smtp.sendmail("<>", [RETURN_PATH], raw)
    assert info.value.smtp_code == 451
    recorder.fail = False
    with _client(listener) as smtp:
        assert smtp.sendmail("<>", [RETURN_PATH], raw) == {}
    assert len(recorder.wait_for(1)) == 1


def test_run_serves_until_stopped(recorder: Recorder) -> None:
    """run() (what `msgcenter bounced` will call) listens on the configured address until
    its stop event is set, then frees the port."""
    port = _free_port()
    settings = load_settings({}, bounce_domain=DOMAIN, bounce_smtp_port=port)
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(settings, recorder), kwargs={"stop": stop})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
                break
            except OSError:
                assert time.monotonic() < deadline, "listener did not start"
                time.sleep(0.05)
        with smtp:
            smtp.sendmail("<>", [RETURN_PATH], _wire("qmail-text.eml"))
        assert len(recorder.wait_for(1)[0]) == 2
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    with socket.socket() as sock:
        # released: nothing listens there any more (closed connections may linger in
        # TIME_WAIT, which SO_REUSEADDR ignores but a listening socket would not)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_configuration_errors(recorder: Recorder) -> None:
    """No bounce domain, or a port in use: a one-line ConfigError, not a traceback."""
    with pytest.raises(ConfigError):
        BounceListener("127.0.0.1", _free_port(), "", recorder)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError):
            BounceListener("127.0.0.1", busy.getsockname()[1], DOMAIN, recorder).start()
