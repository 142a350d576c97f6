"""The bounce listener wired to the database, over real SMTP on loopback (SQLite and
PostgreSQL): the corpus's real-world shapes (Postfix, Sendmail, Exim, Exchange, Gmail,
qmail, ARF, JMRP) delivered to the running listener move events and list addresses; forged
tokens, other domains, relay attempts, a 20 MB message and a malformed MIME tree are refused
or recorded unmatched, and nothing is quarantined wrongly."""

from __future__ import annotations

import imaplib
import json
import os
import signal
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bounce_support import postfix_dsn
from conftest import free_port, msgcenter_cmd, run_cli
from dispatch_support import (
    event_row,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
    wait_until,
)
from sqlalchemy import insert

from soap_service import exclusions
from soap_service.bounces.imap import Mailbox
from soap_service.bounces.service import BounceService
from soap_service.bounces.verp import make_return_path
from soap_service.devsmtp import MailSink
from soap_service.models import EventStatus
from soap_service.store import Database, make_engine
from soap_service.store import bounces as bounce_store
from soap_service.store.events import get_event
from soap_service.tables import events
from soap_service.worker import Dispatcher
from tests.integration.dovecot_support import PASSWORD, USER, Imap, dovecot

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"
DOMAIN = "bounce.example.com"  # the corpus's tokens: secret "fixture-secret"
SECRET = "fixture-secret"


@pytest.fixture
def bsettings(settings):
    return settings.replace(bounce_domain=DOMAIN, secret=SECRET, bounce_smtp_port=free_port())


@pytest.fixture
def service(bsettings, db) -> Iterator[BounceService]:
    with BounceService(bsettings, db) as running:
        yield running


def _send_as(db, s, event_id: int, address: str) -> str:
    """Event ``event_id`` (the id the corpus's token names) to ``address``, sent by the
    worker through a real SMTP sink; the MAIL FROM it left with."""
    with db.begin() as conn:  # the id the token names (ingest would pick the next one)
        conn.execute(insert(events).values(**event_row(event_id, email=address), id=event_id))
    with MailSink() as sink:
        d = Dispatcher(sink_settings(s, sink), db, router=stand_in_router,
                       renderer=stand_in_renderer, types=lambda db, name: None)
        try:
            d.tick()
            [got] = sink.wait_for(1)
        finally:
            d.close()
    assert get_event(db, event_id).status is EventStatus.PROCESSED
    return got.mail_from


def _wire(name: str) -> bytes:
    raw = (CORPUS / name).read_bytes().replace(b"\r\n", b"\n")
    return raw.replace(b"\n", b"\r\n")


def _deliver(port: int, rcpt: str, data: bytes, mail_from: str = "") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail(mail_from, [rcpt], data)


def _rcpt(name: str) -> str:
    """The envelope recipient a bounce of this shape is sent to: its return path."""
    for line in _wire(name).decode("latin-1").splitlines():
        if "bounces+" in line:
            start = line.index("bounces+")
            end = line.index(DOMAIN, start) + len(DOMAIN)
            return line[start:end].lower()
    raise AssertionError(f"no return path in {name}")


@pytest.mark.parametrize(("name", "event_id", "address", "status", "source"), [
    ("postfix-dsn-hard.eml", 4242, "jane.doe@customer.example.org",
     EventStatus.DELIVERY_FAILED, "bounce"),
    ("sendmail-dsn-three-recipients.eml", 4243, "nobody@customer.example.org",
     EventStatus.DELIVERY_FAILED, "bounce"),
    ("exim-text.eml", 4242, "j.smith@customer.example.org",
     EventStatus.DELIVERY_FAILED, "bounce"),
    ("exchange2010-dsn.eml", 4242, "ann.other@corp.example.com",
     EventStatus.DELIVERY_FAILED, "bounce"),
    ("gmail-dsn.eml", 4242, "no.such.person@gmail.com", EventStatus.DELIVERY_FAILED, "bounce"),
    ("qmail-text.eml", 4243, "gone@isp.example.net", EventStatus.DELIVERY_FAILED, "bounce"),
    ("postfix-dsn-delayed.eml", 4244, "full@mailbox.example.com", EventStatus.PROCESSED, None),
    ("arf-yahoo.eml", 777, "reader.one@yahoo.com", EventStatus.PROCESSED, "complaint"),
    ("arf-aol-redacted.eml", 777, "reader.two@aol.com", EventStatus.PROCESSED, "complaint"),
    ("jmrp-outlook.eml", 777, "reader.three@outlook.com", EventStatus.PROCESSED, "complaint"),
    ("autoreply-out-of-office.eml", 4242, "jane.doe@customer.example.org",
     EventStatus.PROCESSED, None),
    ("dsn-delivered-success.eml", 4242, "happy@customer.example.org",
     EventStatus.PROCESSED, None),
])
def test_real_world_shapes_over_smtp(db, bsettings, service, name, event_id, address, status,
                                     source):
    """Each shape, sent to the listener by SMTP at its return path, does what its class
    says to the event that token names; only that event's address is ever listed."""
    _send_as(db, bsettings, event_id, address)
    _deliver(service.listener.port, _rcpt(name), _wire(name))
    rows = bounce_store.list_bounces(db)
    assert rows and all(r.event_id == event_id for r in rows)
    assert get_event(db, event_id).status is status
    entry = exclusions.lookup(db, address)
    assert (entry.source if entry else None) == source
    listed = exclusions.list_entries(db)
    assert [e.address for e in listed] == ([address] if source else [])
    if source:
        assert entry.bounce_id in {r.id for r in rows}


def test_hostile_input_is_refused_or_recorded_unmatched(db, bsettings, service):
    """A forged token, another secret, an address of another domain (relay), a 20 MB
    message, a malformed MIME tree: refused at the SMTP level or recorded unmatched; the
    event stays processed and nothing is quarantined."""
    address = "target@example.net"
    mail_from = _send_as(db, bsettings, 5000, address)
    port = service.listener.port
    forged = make_return_path(5000, 1, "guessed-secret", DOMAIN)
    token_rcpt = forged.replace("bounces+", "bounces-")  # qmail-style separator, same forgery
    for rcpt in (forged, token_rcpt, "bounces+" + "a" * 30 + "@" + DOMAIN,
                 "postmaster@" + DOMAIN):
        _deliver(port, rcpt, postfix_dsn(rcpt, address))
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:  # relaying
        client.ehlo()
        client.mail("")
        code, _ = client.rcpt(address)
        assert code == 550
        other = mail_from.replace(DOMAIN, "other.example")
        code, _ = client.rcpt(other)
        assert code == 550
    big = postfix_dsn(mail_from, address) + b"X" * 78 + b"\r\n"
    big = big + (b"X" * 998 + b"\r\n") * (21 * 1024)
    with pytest.raises(smtplib.SMTPException) as refused:
        _deliver(port, mail_from, big)
    assert "552" in str(refused.value) or getattr(refused.value, "smtp_code", 0) == 552
    malformed = _wire("malformed-mime.eml")
    _deliver(port, mail_from, malformed)
    rows = bounce_store.list_bounces(db)
    unmatched = [r for r in rows if not r.matched]
    assert len(unmatched) == 4
    assert all(r.effect == "unmatched" for r in unmatched)
    others = [r for r in rows if r.matched]
    assert [(r.kind, r.effect) for r in others] == [("unparseable", "recorded")]
    assert get_event(db, 5000).status is EventStatus.PROCESSED
    assert exclusions.list_entries(db) == []


def test_database_down_answers_451(db, bsettings, service, tmp_path):
    """When the report cannot be recorded (the listener's database is unreachable) the
    sender is told to retry (451); the retry, to a listener whose database answers, is
    recorded once even when the relay sends it twice."""
    mail_from = _send_as(db, bsettings, 6000, "later@example.net")
    data = postfix_dsn(mail_from, "later@example.net")
    url = (f"sqlite:///{tmp_path}/missing/dir/mc.db" if db.is_sqlite
           else "postgresql+psycopg://postgres@127.0.0.1:1/test")
    down_settings = bsettings.replace(database_url=url, bounce_smtp_port=free_port())
    down = Database(make_engine(down_settings), down_settings)
    try:
        with BounceService(down_settings, down) as unreachable, \
                pytest.raises(smtplib.SMTPDataError) as deferred:
            _deliver(unreachable.listener.port, mail_from, data)
    finally:
        down.dispose()
    assert deferred.value.smtp_code == 451
    assert bounce_store.list_bounces(db) == []
    _deliver(service.listener.port, mail_from, data)
    _deliver(service.listener.port, mail_from, data)  # the relay's duplicate
    assert len(bounce_store.list_bounces(db)) == 1
    assert get_event(db, 6000).status is EventStatus.DELIVERY_FAILED


def test_bounced_command(db, bsettings, database_url, tmp_path):
    """``msgcenter bounced --port P`` as a user runs it: listens, records what arrives,
    ``bounces list --json`` shows it (the unmatched too), ``quarantine show`` names the
    bounce; SIGTERM stops it with exit 0.  Without MC_BOUNCE_DOMAIN: a one-line error,
    exit 2 (a configuration error)."""
    mail_from = _send_as(db, bsettings, 7000, "cli@example.net")
    port = free_port()
    env = {"MC_DATABASE_URL": database_url, "MC_BOUNCE_DOMAIN": DOMAIN, "MC_SECRET": SECRET,
           "MC_SQLITE_SYNCHRONOUS": "normal"}
    log_path = tmp_path / "bounced.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(msgcenter_cmd("bounced", "--host", "127.0.0.1", "--port",
                                              str(port)),
                                env={**os.environ, **env}, stdout=log_file,
                                stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
                return True
            except OSError:
                return False

        wait_until(ready, 60, "the bounce listener")
        _deliver(port, mail_from, postfix_dsn(mail_from, "cli@example.net"))
        forged = make_return_path(7000, 1, "nope", DOMAIN)
        _deliver(port, forged, postfix_dsn(forged, "cli@example.net"))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log_path.read_text()
    assert "bounce.recorded" in log_path.read_text()
    listed = run_cli(env, "bounces", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["kind"], r["matched"], r["effect"]) for r in rows] == [
        ("hard", False, "unmatched"), ("hard", True, "deliveryFailed, quarantined")]
    assert rows[1]["plId"] is not None and rows[1]["address"] == "cli@example.net"
    only = json.loads(run_cli(env, "bounces", "list", "--unmatched", "--since", "1h",
                              "--json").stdout)
    assert [r["id"] for r in only] == [rows[0]["id"]]
    table = run_cli(env, "bounces", "list").stdout
    assert "deliveryFailed, quarantined" in table and "unmatched" in table
    shown = json.loads(run_cli(env, "quarantine", "show", "cli@example.net", "--json").stdout)
    assert shown["source"] == "bounce" and shown["bounce"]["id"] == rows[1]["id"]
    assert shown["bounce"]["status"] == "5.1.1"
    text = run_cli(env, "quarantine", "show", "cli@example.net").stdout
    assert "bounce_diagnostic" in text and "Recipient address rejected" in text
    table = run_cli(env, "quarantine", "list").stdout
    assert f"#{rows[1]['id']} hard 5.1.1" in table
    missing = run_cli({**env, "MC_BOUNCE_DOMAIN": ""}, "bounced", check=False)
    assert missing.returncode == 2 and "MC_BOUNCE_DOMAIN" in missing.stderr  # configuration
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def imap_server() -> Iterator[Imap]:
    with dovecot() as running:
        yield running


def test_mailbox_poller_records_what_lands_in_the_mailbox(db, bsettings, imap_server):
    """The service's poller (MC_BOUNCE_IMAP_*): a DSN and an ARF report appended to a real
    IMAP mailbox (dovecot over TLS) are recorded with source imap, move the event and
    denylist the complainer, and leave the folder for the processed one."""
    hard_from = _send_as(db, bsettings, 4242, "jane.doe@customer.example.org")
    _send_as(db, bsettings, 777, "reader.one@yahoo.com")
    assert hard_from == _rcpt("postfix-dsn-hard.eml")
    folder = "wired-" + ("sqlite" if db.is_sqlite else "pg")
    session = imaplib.IMAP4_SSL(imap_server.host, imap_server.port,
                                ssl_context=imap_server.client_context())
    session.login(USER, PASSWORD)
    session.create(folder)
    for name in ("postfix-dsn-hard.eml", "arf-yahoo.eml"):
        assert session.append(folder, None, None, _wire(name))[0] == "OK"
    box = Mailbox(imap_server.host, USER, PASSWORD, imap_server.port, folder,
                  f"{folder}-done", bsettings.bounce_max_bytes,
                  ssl_context=imap_server.client_context(), timeout=10)
    with BounceService(bsettings.replace(bounce_imap_interval=0.2), db, mailbox=box,
                       smtp=False) as service:
        assert service.listener is None  # --no-smtp: the poller alone
        wait_until(lambda: len(bounce_store.list_bounces(db)) == 2, 60, "the poller")
    rows = bounce_store.list_bounces(db)
    assert {(r.source, r.kind) for r in rows} == {("imap", "hard"), ("imap", "complaint")}
    assert get_event(db, 4242).status is EventStatus.DELIVERY_FAILED
    assert exclusions.lookup(db, "reader.one@yahoo.com").source == "complaint"
    session.select(folder)
    assert session.search(None, "ALL")[1][0].split() == []
    session.logout()


def test_bounce_before_the_send_is_recorded_is_deferred(db, bsettings, service):
    """A relay fast enough to bounce while the worker still holds the event (its send not
    recorded yet) is told 451; its retry, after the worker recorded the send, acts."""
    from soap_service import clock
    from soap_service.models import Delivery, Outcome
    from soap_service.store import queue

    with db.begin() as conn:
        conn.execute(insert(events).values(**event_row(8000, email="fast@example.net"),
                                           id=8000))
    [claimed] = queue.claim_events(db, "w1", limit=1, now=clock.utcnow(), lease_seconds=60)
    assert claimed.status is EventStatus.PROCESSING
    return_path = make_return_path(8000, 1, SECRET, DOMAIN)
    data = postfix_dsn(return_path, "fast@example.net")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        _deliver(service.listener.port, return_path, data)
    assert deferred.value.smtp_code == 451
    assert bounce_store.list_bounces(db) == []
    queue.record_outcomes(db, "w1", [Outcome(8000, EventStatus.PROCESSED, delivery=Delivery(
        "email", "fast@example.net", "sent", response_code=250,
        message_id="<mc.1.8000@msgcenter.local>"))], clock.utcnow())
    _deliver(service.listener.port, return_path, data)
    assert get_event(db, 8000).status is EventStatus.DELIVERY_FAILED
    assert exclusions.lookup(db, "fast@example.net").source == "bounce"
