"""`msgcenter devsmtp` and the `make run` demo (`python -m soap_service.demo`) as a user
runs them: real processes, a real SMTP client, real files."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import lxml.html
import requests
from conftest import ROOT, free_port, msgcenter_cmd
from dispatch_support import wait_until

from soap_service.channels.direct import send_messages
from soap_service.config import load_settings
from soap_service.models import EmailMessage, SendOutcome


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_devsmtp_stores_each_message_as_an_eml_file(tmp_path):
    """`msgcenter devsmtp --port P --dir D` accepts mail and writes one .eml per message."""
    port = free_port()
    mail = tmp_path / "mail"
    proc = subprocess.Popen(msgcenter_cmd("devsmtp", "--port", str(port), "--dir", str(mail)),
                            cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _port_open(port), 30, "devsmtp to listen")
        settings = load_settings({"MC_SMTP_PORT": str(port)})
        results = send_messages(settings, [
            EmailMessage(from_addr="a@example.org", to=f"u{i}@example.com", subject=f"s{i}",
                         message_id=f"<m{i}@example.org>", text=f"body {i}")
            for i in range(3)])
        assert all(r.outcome is SendOutcome.SENT for r in results)
        wait_until(lambda: len(list(mail.glob("*.eml"))) == 3, 10, "three .eml files")
    finally:
        _stop(proc)
    bodies = sorted(p.read_bytes() for p in mail.glob("*.eml"))
    assert all(b"Message-ID: <m" in b for b in bodies)
    assert not list(mail.glob(".*.tmp"))


def test_make_run_demo_end_to_end(tmp_path):
    """The demo initialises ./var, starts the three sinks and serve, prints push commands
    for an email, an SMS and a push notification that work as printed from another shell
    (other ports included), and the personalised mail, SMS and notification appear where
    it says; the printed `events show` command finds the event."""
    http_port, smtp_port = free_port(), free_port()
    env = {**os.environ, "MC_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
           "MC_SMTP_PORT": str(smtp_port), "MC_DEMO_SMSC_PORT": str(free_port()),
           "MC_DEMO_APNS_PORT": str(free_port()), "MC_DEMO_FCM_PORT": str(free_port()),
           "PYTHONUNBUFFERED": "1"}
    env.pop("MC_DATABASE_URL", None)
    env.pop("MC_CONFIG", None)
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "soap_service.demo"], cwd=tmp_path,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "connector list" in log_path.read_text(), 120,
                   "the demo to be ready")
        out = log_path.read_text()
        commands = [line.strip() for line in out.splitlines() if "msgcenter push" in line]
        assert len(commands) == 3, out
        where = {kind: Path(next(line for line in out.splitlines()
                                 if f"The {kind} appears in" in line)
                            .split(" in ", 1)[1].split("/ ")[0])
                 for kind in ("mail", "SMS", "notification")}
        # pasted into another shell, where the demo's MC_* settings are not set
        shell = {k: v for k, v in env.items() if not k.startswith("MC_")}
        plids = []
        for command in commands:
            push = subprocess.run(shlex.split(command), cwd=tmp_path, env=shell,
                                  capture_output=True, text=True, timeout=60)
            assert push.returncode == 0, push.stderr
            plids.append(push.stdout.strip())
        wait_until(lambda: list(where["mail"].glob("*.eml")), 60, "the demo mail")
        wait_until(lambda: list(where["SMS"].glob("*.sms")), 60, "the demo SMS")
        wait_until(lambda: list(where["notification"].glob("*.json")), 60,
                   "the demo notification")
        show = next(line.strip() for line in out.splitlines() if "events show" in line)
        show = show.removeprefix("Then:").strip().replace("<plId>", plids[0])
        shown = subprocess.run(shlex.split(show), cwd=tmp_path, env=shell,
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "john.doe@example.com" in shown.stdout
        # the console the banner names takes the demo operator's password
        console = next(line for line in out.splitlines() if "The web console:" in line)
        url = console.split("The web console:", 1)[1].split()[0]
        browser = requests.Session()
        page = browser.get(url, timeout=30)
        assert page.status_code == 200 and "/console/login" in page.url, page.url
        form = lxml.html.fromstring(page.content)
        csrf = form.xpath('//input[@name="csrf"]/@value')[0]
        logged = browser.post(url + "login", timeout=30, data={
            "csrf": csrf, "next": "", "login": "demo", "password": "demo"})
        assert logged.status_code == 200, logged.status_code
        assert "/console/login" not in logged.url
        assert lxml.html.fromstring(logged.content).xpath('//button[normalize-space()="Log out"]')
    finally:
        _stop(proc)
    assert where == {"mail": tmp_path / "var" / "mail", "SMS": tmp_path / "var" / "sms",
                     "notification": tmp_path / "var" / "push"}
    assert (tmp_path / "var" / "msgcenter.db").exists()
    [eml] = list(where["mail"].glob("*.eml"))
    assert b"Subject: Your order A-1042 is confirmed, John" in eml.read_bytes()
    [sms] = list(where["SMS"].glob("*.sms"))
    sms_text = sms.read_text()
    assert "To: +33612345678" in sms_text and "From: DemoShop" in sms_text
    assert "DemoShop: order A-1042 is confirmed. Thank you, John!" in sms_text
    [note] = list(where["notification"].glob("*.json"))
    notification = json.loads(note.read_text())
    assert notification["platform"] == "ios"
    assert notification["title"] == "Order A-1042 confirmed"
    assert notification["data"] == {"order": "A-1042"}
    assert proc.returncode == 0


def test_make_run_refuses_a_port_already_in_use(tmp_path):
    """When another program listens on the demo's HTTP or SMTP port, the demo says which
    port and which setting to change, in one line, and exits non-zero (instead of
    reporting ready because the other program answered its health check)."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        for env_extra, variable in (
            ({"MC_PUBLIC_URL": f"http://127.0.0.1:{taken}", "MC_SMTP_PORT": str(free_port())},
             "MC_PUBLIC_URL"),
            ({"MC_PUBLIC_URL": f"http://127.0.0.1:{free_port()}", "MC_SMTP_PORT": str(taken)},
             "MC_SMTP_PORT"),
        ):
            env = {**os.environ, **env_extra}
            env.pop("MC_DATABASE_URL", None)
            proc = subprocess.run([sys.executable, "-m", "soap_service.demo"], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 1
            [line] = proc.stderr.strip().splitlines()
            assert f"127.0.0.1:{taken} is in use" in line and variable in line
            assert "msgcenter push" not in proc.stdout


def test_devsmtp_on_a_busy_port_is_a_one_line_error(tmp_path):
    """`msgcenter devsmtp` on a port another program holds: one error line, exit code
    non-zero, no traceback and no "listening" claim."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(msgcenter_cmd("devsmtp", "--port", str(port), "--dir",
                                            str(tmp_path / "mail")),
                              cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert f"devsmtp cannot start on 127.0.0.1:{port}" in line
    assert "listening" not in proc.stdout


def test_worker_refuses_settings_that_would_never_send(tmp_path):
    """A batch size, concurrency or lease below 1, or a batch share outside 0..1, is
    refused at start with one line naming the setting (a batch size of 0 would claim
    nothing, ever)."""
    db_env = {"MC_DATABASE_URL": f"sqlite:///{tmp_path}/mc.db"}
    cases = [({"MC_WORKER_BATCH_SIZE": "0"}, (), "MC_WORKER_BATCH_SIZE"),
             ({"MC_SMTP_CONCURRENCY": "-1"}, (), "MC_SMTP_CONCURRENCY"),
             ({"MC_BATCH_MIN_SHARE": "1.5"}, (), "MC_BATCH_MIN_SHARE"),
             ({}, ("--batch-size", "-3"), "--batch-size"),
             ({}, ("--concurrency", "0"), "--concurrency")]
    for extra, args, name in cases:
        proc = subprocess.run(msgcenter_cmd("worker", *args), cwd=str(ROOT),
                              env={**os.environ, **db_env, **extra}, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0, name
        assert name in proc.stderr.strip().splitlines()[-1]


def test_worker_refuses_a_database_that_was_not_initialised(tmp_path):
    """`msgcenter worker` on a database `msgcenter init` never set up: one line saying so,
    non-zero exit (not a traceback from every job, every second)."""
    proc = subprocess.run(msgcenter_cmd("worker"), cwd=str(ROOT), capture_output=True,
                          env={**os.environ, "MC_DATABASE_URL": f"sqlite:///{tmp_path}/new.db"},
                          text=True, timeout=60)
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert "msgcenter init" in line


def test_devsmtp_keeps_messages_on_disk_only(tmp_path):
    """The sink `msgcenter devsmtp` runs writes each message to a file and keeps none in
    memory (it may run for days and receive a benchmark's worth of mail)."""
    from soap_service.devsmtp import start_sink

    sink = start_sink("127.0.0.1", free_port(), tmp_path / "mail")
    try:
        settings = load_settings({"MC_SMTP_PORT": str(sink.port)})
        results = send_messages(settings, [
            EmailMessage(from_addr="a@example.org", to=f"u{i}@example.com", subject="s",
                         message_id=f"<k{i}@example.org>", text="b") for i in range(2)])
    finally:
        sink.stop()
    assert [r.outcome for r in results] == [SendOutcome.SENT] * 2
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 2
    assert sink.messages == []
