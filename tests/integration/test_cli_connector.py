"""``msgcenter connector list|test`` against real servers, run in process through
``cli.main(argv)``: the list shows every configured connector (the default SMTP relay
too) with the health a worker reported through its heartbeat and the last hour's sends
from the delivery log, never a secret; ``test`` sends one real message through the named
connector (SMPP, SMTP, APNs) and exits 1 when it is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from channel_support import PHONE, dispatcher_factory, publish_templates, sms_event
from conftest import run_cli
from servers.smsc import Smsc, Status

from soap_service.config import load_settings
from soap_service.devsmtp import MailSink
from soap_service.store import connect
from tests.push_peers import ApnsSetup, serve_apns

make_dispatcher = pytest.fixture(dispatcher_factory, name="make_dispatcher")
PASSWORD = "pw0rd8ch"


@pytest.fixture
def apns(tmp_path: Path) -> Iterator[ApnsSetup]:
    (tmp_path / "apns").mkdir()
    yield from serve_apns(tmp_path / "apns")


def _config(tmp_path: Path, smsc_port: int, apns: ApnsSetup | None = None) -> Path:
    text = f"""
[[connectors]]
name = "smsc-a"
channel = "sms"
kind = "smpp"
host = "127.0.0.1"
port = {smsc_port}
system_id = "mc"
password = "{PASSWORD}"
source_addr = "MyShop"
reconnect_min = 0.05
connect_timeout = 2
"""
    if apns is not None:
        options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in apns.options().items())
        text += f'\n[[connectors]]\nname = "apns"\nchannel = "push"\nkind = "apns"\n{options}\n'
    path = tmp_path / "mc.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _env(database_url: str, config: Path, **extra: str) -> dict[str, str]:
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           "MC_CONFIG": str(config), **extra}
    run_cli(env, "init")
    return env


def test_list_shows_health_reported_by_the_worker_and_last_hours_sends(
        database_url, tmp_path, make_dispatcher):
    """Before any worker: health unknown.  After a worker sent 2 SMS (one refused) and
    beat: the SMPP connector is ok with 1 sent and 1 failed in the last hour; the default
    SMTP relay is listed too; the password appears nowhere."""
    with Smsc(password=PASSWORD, plan=lambda s, n: Status(0x0B) if n == 2 else None) as smsc:
        env = _env(database_url, _config(tmp_path, smsc.port))
        rows = json.loads(run_cli(env, "connector", "list", "--json").stdout)
        assert [(r["name"], r["channel"], r["kind"], r["health"]) for r in rows] == [
            ("smtp", "email", "smtp", "unknown"), ("smsc-a", "sms", "smpp", "unknown")]
        settings = load_settings(env)
        db = connect(settings)
        publish_templates(db)
        sms_event(db, settings)
        sms_event(db, settings, phone="+33612345679")
        d = make_dispatcher(settings, db)
        d.tick()
        d.beat()
        listed = run_cli(env, "connector", "list", "--json")
        table = run_cli(env, "connector", "list")
    smsc_row = {r["name"]: r for r in json.loads(listed.stdout)}["smsc-a"]
    assert (smsc_row["health"], smsc_row["circuit"], smsc_row["workers"]) == ("ok", "closed", 1)
    assert (smsc_row["sent_1h"], smsc_row["failed_1h"]) == (1, 1)
    assert table.stdout.splitlines()[0].split()[:6] == [
        "NAME", "CHANNEL", "KIND", "PRIORITY", "HEALTH", "CIRCUIT"]
    assert PASSWORD not in listed.stdout + table.stdout + listed.stderr + table.stderr


def test_a_stopped_workers_health_is_gone(database_url, tmp_path, make_dispatcher):
    """A worker that stops forgets its heartbeat and its connectors' health with it."""
    from soap_service.store import queue as queue_store

    with Smsc(password=PASSWORD) as smsc:
        env = _env(database_url, _config(tmp_path, smsc.port))
        settings = load_settings(env)
        db = connect(settings)
        d = make_dispatcher(settings, db)
        d.start_channels()
        d.beat()
        assert {r["name"]: r["health"] for r in json.loads(
            run_cli(env, "connector", "list", "--json").stdout)}["smsc-a"] == "ok"
        queue_store.forget_worker(db, d.worker_id)
        rows = json.loads(run_cli(env, "connector", "list", "--json").stdout)
    assert {r["name"]: r["health"] for r in rows}["smsc-a"] == "unknown"


def test_list_shows_connectors_live_workers_report_beyond_its_own_config(
        database_url, tmp_path, make_dispatcher):
    """Run without the workers' MC_CONFIG (another host, another shell), the list still
    shows the connectors live workers report, with their channel, kind and health."""
    with Smsc(password=PASSWORD) as smsc:
        env = _env(database_url, _config(tmp_path, smsc.port))
        settings = load_settings(env)
        db = connect(settings)
        d = make_dispatcher(settings, db)
        d.start_channels()
        d.beat()
        bare = {k: v for k, v in env.items() if k != "MC_CONFIG"}
        rows = json.loads(run_cli(bare, "connector", "list", "--json").stdout)
    assert [(r["name"], r["channel"], r["kind"], r["health"]) for r in rows] == [
        ("smtp", "email", "smtp", "ok"), ("smsc-a", "sms", "smpp", "ok")]


def test_connector_test_sends_one_real_sms(database_url, tmp_path):
    """`connector test smsc-a --to 06...` (a national number read in the default country)
    reaches the SMSC once and prints the outcome; a refused number exits 1."""
    with Smsc(password=PASSWORD, plan=lambda s, n: Status(0x0B) if n == 2 else None) as smsc:
        env = _env(database_url, _config(tmp_path, smsc.port), MC_DEFAULT_COUNTRY_CODE="FR")
        ok = run_cli(env, "connector", "test", "smsc-a", "--to", "06 12 34 56 78", "--json")
        refused = run_cli(env, "connector", "test", "smsc-a", "--to", PHONE, "--json",
                          check=False)
        smsc.wait(lambda: len(smsc.messages) == 1)  # stored just after it answered
        [message] = smsc.messages
    assert json.loads(ok.stdout)["outcome"] == "sent"
    assert json.loads(ok.stdout)["provider_id"] == message.message_ids[0]
    assert message.destination == "33612345678" and "smsc-a" in message.text
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["outcome"] == "permanent"
    assert PASSWORD not in ok.stdout + ok.stderr + refused.stdout + refused.stderr


def test_connector_test_sends_email_and_push(database_url, tmp_path, apns):
    """The default relay `smtp` sends a test mail; `apns` sends a test notification."""
    with MailSink() as sink, Smsc(password=PASSWORD) as smsc:
        env = _env(database_url, _config(tmp_path, smsc.port, apns),
                   MC_SMTP_HOST=sink.host, MC_SMTP_PORT=str(sink.port))
        run_cli(env, "connector", "test", "smtp", "--to", "ops@example.com")
        run_cli(env, "connector", "test", "apns", "--to", "0f" * 32)
        [mail] = sink.wait_for(1)
    assert mail.rcpt_tos == ("ops@example.com",) and "smtp" in mail.message["Subject"]
    [seen] = apns.peer.seen
    assert seen.path == f"/3/device/{'0f' * 32}"


def test_connector_test_refuses_bad_input_in_one_line(database_url, tmp_path):
    """An unknown connector, or an address that cannot be one: exit 1, one error line."""
    env = _env(database_url, _config(tmp_path, 9))
    for args, words in (
            (("nobody", "--to", PHONE), "no connector 'nobody'"),
            (("smsc-a", "--to", "+3361"), "--to is too short"),
            (("smtp", "--to", "not-an-email"), "--to is not an email address")):
        result = run_cli(env, "connector", "test", *args, check=False)
        assert result.returncode == 1, args
        [line] = result.stderr.strip().splitlines()
        assert words in line
