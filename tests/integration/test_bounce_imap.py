"""The mailbox poller against a real IMAP server (dovecot over TLS on loopback)."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from soap_service.bounces.imap import Mailbox, mailbox_from_settings, poll_mailbox
from soap_service.config import load_settings
from soap_service.errors import ConfigError, ServerError
from soap_service.models import BounceKind, BounceReport
from tests.integration.dovecot_support import PASSWORD, USER, Imap, dovecot

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"


@pytest.fixture(scope="module")
def server() -> Iterator[Imap]:
    with dovecot() as running:
        yield running


def _session(server: Imap) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(server.host, server.port, ssl_context=server.client_context())
    imap.login(USER, PASSWORD)
    return imap


@pytest.fixture()
def folder(server: Imap, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh folder per test (the server is shared by the module)."""
    name = f"t{abs(hash(request.node.name)) % 10**8}"
    imap = _session(server)
    imap.create(name)
    imap.logout()
    yield name


def _append(server: Imap, folder: str, *names: str, seen: bool = False) -> None:
    imap = _session(server)
    for name in names:
        raw = (CORPUS / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        status, _ = imap.append(folder, "(\\Seen)" if seen else None, None, raw)
        assert status == "OK"
    imap.logout()


def _count(server: Imap, folder: str, criterion: str = "ALL") -> int:
    imap = _session(server)
    status, _ = imap.select(folder)
    if status != "OK":
        imap.logout()
        return -1
    _, data = imap.search(None, criterion)
    imap.logout()
    return len(data[0].split())


def _box(server: Imap, folder: str, **changes: object) -> Mailbox:
    values: dict[str, object] = {"host": server.host, "port": server.port, "user": USER,
                                 "password": PASSWORD, "folder": folder,
                                 "ssl_context": server.client_context(), "timeout": 10}
    values.update(changes)
    return Mailbox(**values)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, fail_at: int = -1) -> None:
        self.calls: list[tuple[BounceReport, ...]] = []
        self.fail_at = fail_at

    def __call__(self, reports: tuple[BounceReport, ...]) -> None:
        if len(self.calls) == self.fail_at:
            raise RuntimeError("database unavailable")
        self.calls.append(reports)


def test_unseen_messages_are_read_and_moved(server: Imap, folder: str) -> None:
    """Unseen DSN, ARF and broken messages are reported (the broken one as unparseable) and
    moved to the processed folder; an already seen message is left alone."""
    _append(server, folder, "postfix-dsn-hard.eml", "arf-yahoo.eml", "malformed-mime.eml")
    _append(server, folder, "qmail-text.eml", seen=True)
    recorder = Recorder()
    result = poll_mailbox(_box(server, folder, move_to=f"{folder}-done"), recorder)
    assert (result.processed, result.reports, result.left) == (3, 3, 0)
    assert [c[0].kind for c in recorder.calls] == [
        BounceKind.HARD, BounceKind.COMPLAINT, BounceKind.UNPARSEABLE]
    assert recorder.calls[0][0].return_path.startswith("bounces+siqqd6n3")  # Delivered-To
    assert _count(server, folder) == 1  # only the seen one stays
    assert _count(server, f"{folder}-done") == 3
    assert poll_mailbox(_box(server, folder, move_to=f"{folder}-done"), recorder).processed == 0


def test_without_a_folder_read_messages_are_deleted(server: Imap, folder: str) -> None:
    """With no move_to, processed messages are deleted (and expunged)."""
    _append(server, folder, "gmail-dsn.eml", "exim-text.eml")
    recorder = Recorder()
    assert poll_mailbox(_box(server, folder), recorder).processed == 2
    assert _count(server, folder) == 0


def test_recording_failure_leaves_messages_for_the_next_run(server: Imap, folder: str) -> None:
    """When the callback fails the message stays unseen where it was and the run stops;
    the next run processes it."""
    _append(server, folder, "postfix-dsn-hard.eml", "arf-aol-redacted.eml")
    failing = Recorder(fail_at=0)
    result = poll_mailbox(_box(server, folder, move_to=f"{folder}-done"), failing)
    assert (result.processed, result.left) == (0, 2)
    assert _count(server, folder, "UNSEEN") == 2
    working = Recorder()
    assert poll_mailbox(_box(server, folder, move_to=f"{folder}-done"), working).processed == 2
    assert _count(server, f"{folder}-done") == 2


def test_limit_per_run(server: Imap, folder: str) -> None:
    """At most ``limit`` messages per run; the rest are left for the next one."""
    _append(server, folder, "gmail-dsn.eml", "exim-text.eml", "qmail-text.eml")
    result = poll_mailbox(_box(server, folder), Recorder(), limit=2)
    assert (result.processed, result.left) == (2, 1)


def test_oversized_message_is_not_downloaded(server: Imap, folder: str) -> None:
    """A message over the size limit is recorded as unparseable from its size alone."""
    _append(server, folder, "gmail-dsn.eml")
    recorder = Recorder()
    poll_mailbox(_box(server, folder, max_bytes=1024, move_to=f"{folder}-done"), recorder)
    (reports,) = recorder.calls
    assert reports[0].kind is BounceKind.UNPARSEABLE and "over the limit" in reports[0].diagnostic


def test_connection_problems(server: Imap, folder: str) -> None:
    """A refused login is a ConfigError; an unreachable server or an untrusted certificate
    is a ServerError — never an imaplib or ssl exception."""
    with pytest.raises(ConfigError):
        poll_mailbox(_box(server, folder, password="wrong"), Recorder())
    with pytest.raises(ServerError):
        poll_mailbox(_box(server, folder, ssl_context=ssl.create_default_context()),
                     Recorder())
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(ServerError):
        poll_mailbox(_box(server, folder, port=closed), Recorder())


def test_mailbox_from_settings() -> None:
    """MC_BOUNCE_IMAP_URL and MC_BOUNCE_IMAP_PASSWORD make the mailbox; bad URLs are
    refused."""
    box = mailbox_from_settings(load_settings(
        {}, bounce_imap_url="imaps://bounce%40shop@imap.example.com/Bounces?move_to=Done",
        bounce_imap_password="s3cret"))
    assert (box.host, box.port, box.user, box.password, box.folder, box.move_to) == (
        "imap.example.com", 993, "bounce@shop", "s3cret", "Bounces", "Done")
    for url in ("imap://u@h/INBOX", "imaps://h/INBOX", "not a url"):
        with pytest.raises(ConfigError):
            mailbox_from_settings(load_settings({}, bounce_imap_url=url,
                                                bounce_imap_password="x"))
    with pytest.raises(ConfigError):
        mailbox_from_settings(load_settings({}, bounce_imap_url="imaps://u@h/INBOX"))
