"""``make run``: the whole service on a laptop — SQLite in ``./var/``, sinks, a demo.

``python -m soap_service.demo`` initialises the database, creates an operator (``demo`` /
``demo``) and a security zone for the loopback network, loads the demo event type
``order_confirmation`` with three published templates -- email, SMS and push (``demo/``
files) -- and starts the development sinks ``msgcenter devsmtp`` (mail → ``var/mail/``),
``devsmsc`` (SMPP → ``var/sms/``) and ``devpush`` (APNs / FCM → ``var/push/``).  It writes
``var/demo.toml`` with the SMS and push connectors pointing at those sinks (devpush's
throwaway credentials and certificate authority), starts ``msgcenter serve`` with it,
and prints ready-to-paste ``msgcenter push`` commands for an email, an SMS and a push
notification.  Ctrl-C stops everything.  Setting up is idempotent: running it twice
reuses what exists.  Ports: ``MC_PUBLIC_URL``, ``MC_SMTP_PORT``, and
``MC_DEMO_SMSC_PORT`` (2775), ``MC_DEMO_APNS_PORT`` (2197), ``MC_DEMO_FCM_PORT`` (8087).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from soap_service import auth, catalog
from soap_service.config import Settings, load_settings
from soap_service.errors import ConfigError, Conflict, MessageCenterError
from soap_service.models import Channel, EventType, Lane, TemplateContent
from soap_service.store import Database, connect, schema

DATA = Path(__file__).resolve().parent / "demo"
OPERATOR = ("demo", "demo")


def demo_spec() -> dict[str, Any]:
    return dict(json.loads((DATA / "order_confirmation.json").read_text(encoding="utf-8")))


def ensure_access(db: Database) -> None:
    """Operator ``demo``/``demo`` and a zone trusting login/password from loopback."""
    for action in (
        lambda: auth.create_operator(db, OPERATOR[0], OPERATOR[1], ["mc", "admin"]),
        lambda: auth.create_zone(db, "local", "127.0.0.0/8", allow_user_password=True,
                                 show_errors=True),
        lambda: auth.create_zone(db, "local6", "::1/128", allow_user_password=True,
                                 show_errors=True),
    ):
        with contextlib.suppress(Conflict):  # already there from an earlier run
            action()


def ensure_catalog(db: Database) -> str:
    """The demo event type and its published email, SMS and push templates; returns the
    event type name."""
    spec = demo_spec()
    name = spec["event_type"]
    if catalog.get_event_type(db, name) is None:
        catalog.add_event_type(db, EventType(name=name, label=spec["label"],
                                             lane=Lane(spec["lane"])))
    templates = {
        spec["template"]: (Channel.EMAIL, TemplateContent(
            from_addr=spec["from"], reply_to=spec["reply_to"], subject=spec["subject"],
            html=(DATA / "order_confirmation.html").read_text(encoding="utf-8"),
            text=(DATA / "order_confirmation.txt").read_text(encoding="utf-8"))),
        spec["sms_template"]: (Channel.SMS, TemplateContent(
            from_addr=spec["sms_from"], sms=spec["sms"])),
        spec["push_template"]: (Channel.PUSH, TemplateContent(
            push_title=spec["push_title"], push_body=spec["push_body"],
            push_data=dict(spec["push_data"]))),
    }
    for tpl, (channel, content) in templates.items():
        with contextlib.suppress(Conflict):
            catalog.create_template(db, tpl, name, channel, content)
        if catalog.get_template(db, tpl).state != "published":
            catalog.publish(db, tpl, OPERATOR[0])
    return str(name)


def setup(settings: Settings) -> str:
    """Everything but the processes: schema, access, catalog. Returns the event type."""
    db = connect(settings)
    schema.upgrade(db)
    ensure_access(db)
    return ensure_catalog(db)


MSGCENTER = Path(sys.executable).parent / "msgcenter"


def push_command(settings: Settings, event_type: str, address: str = "") -> str:
    """A command that works as printed from any shell: the URL is spelled out, since the
    demo's ``MC_PUBLIC_URL`` may have been set for ``make run`` only.  ``address``: the
    options naming the address and channel (default: the demo's email address)."""
    ctx = json.dumps(demo_spec()["sample_ctx"], separators=(",", ":"))
    address = address or "--email john.doe@example.com"
    return (f"{MSGCENTER} push --url {settings.public_url.rstrip('/')} --type {event_type} "
            f"{address} --token {OPERATOR[0]}/{OPERATOR[1]} --ctx-json '{ctx}'")


def push_commands(settings: Settings, event_type: str) -> dict[str, str]:
    """The email, SMS and push (iOS through APNs) commands the demo prints."""
    spec = demo_spec()
    return {
        "email": push_command(settings, event_type),
        "sms": push_command(settings, event_type, f"--mobile-phone {spec['sample_phone']}"),
        "push": push_command(settings, event_type, "--registration-token "
                             f"{spec['sample_device_token']} --wished-channel 41"),
    }


@dataclass(frozen=True)
class DemoPorts:
    smsc: int
    apns: int
    fcm: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DemoPorts:
        env = os.environ if environ is None else environ
        values = []
        for variable, default in (("MC_DEMO_SMSC_PORT", 2775), ("MC_DEMO_APNS_PORT", 2197),
                                  ("MC_DEMO_FCM_PORT", 8087)):
            raw = env.get(variable, "") or str(default)
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ConfigError(f"{variable} must be a port number, got {raw!r}")
            values.append(int(raw))
        return cls(*values)


def demo_config(var: Path, ports: DemoPorts) -> str:
    """The TOML of the demo's SMS and push connectors (to devsmsc and devpush)."""
    push = var / "push"
    return f"""# Written by `make run` (soap_service/demo.py): the demo's SMS and push connectors.
# Email goes to devsmtp through the default relay (MC_SMTP_HOST / MC_SMTP_PORT).

[[connectors]]
name = "devsmsc"
channel = "sms"
kind = "smpp"
host = "127.0.0.1"
port = {ports.smsc}
system_id = "demo"
password = "demo"
source_addr = "DemoShop"

[[connectors]]
name = "devpush-apns"
channel = "push"
kind = "apns"
base_url = "https://127.0.0.1:{ports.apns}"
team_id = "DEVTEAM000"
key_id = "DEVPUSH001"
key_file = {json.dumps(str(push / "credentials" / "apns-key.p8"))}
topic = "com.example.shop"
ca_file = {json.dumps(str(push / "tls" / "ca.pem"))}

[[connectors]]
name = "devpush-fcm"
channel = "push"
kind = "fcm"
base_url = "http://127.0.0.1:{ports.fcm}"
service_account_file = {json.dumps(str(push / "credentials" / "fcm-service-account.json"))}
"""


def _wait_devpush(push_dir: Path, fcm_port: int, proc: subprocess.Popen[bytes],
                  timeout: float = 60.0) -> None:
    """Until devpush has written its certificate authority and the credentials for this
    port (its FCM token URI names the port)."""
    account = push_dir / "credentials" / "fcm-service-account.json"
    want = f"http://127.0.0.1:{fcm_port}/token"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MessageCenterError(f"msgcenter devpush exited with code {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            if (push_dir / "tls" / "ca.pem").exists() and \
                    json.loads(account.read_text(encoding="utf-8")).get("token_uri") == want:
                return
        time.sleep(0.2)
    raise MessageCenterError(f"devpush did not write its credentials within {timeout:.0f}s")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MessageCenterError(f"msgcenter {what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise MessageCenterError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def check_port_free(host: str, port: int, variable: str) -> None:
    """Refuse to start when another program holds a port the demo needs: the readiness
    check would otherwise be answered by that program, and the demo would lie."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{host}:{port} is in use ({exc.strerror}): "
                              f"choose another port with {variable}") from None


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MessageCenterError(f"msgcenter serve exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own URL
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise MessageCenterError(f"{url} did not answer within {timeout:.0f}s")


def run() -> int:
    settings = load_settings()
    event_type = setup(settings)
    url = urlsplit(settings.public_url)
    host, port = url.hostname or "127.0.0.1", url.port or 8080
    ports = DemoPorts.from_env()
    check_port_free(host, port, "MC_PUBLIC_URL (e.g. http://127.0.0.1:18080)")
    check_port_free(settings.smtp_host, settings.smtp_port, "MC_SMTP_PORT")
    for number, variable in ((ports.smsc, "MC_DEMO_SMSC_PORT"),
                             (ports.apns, "MC_DEMO_APNS_PORT"), (ports.fcm, "MC_DEMO_FCM_PORT")):
        check_port_free("127.0.0.1", number, variable)
    cli = [sys.executable, "-m", "soap_service.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mail_dir = Path(settings.mail_dir).resolve()
    var = mail_dir.parent
    sms_dir, push_dir = var / "sms", var / "push"
    procs = [subprocess.Popen([*cli, "devsmtp", "--host", settings.smtp_host, "--port",
                               str(settings.smtp_port), "--dir", str(mail_dir)], env=env)]
    try:
        procs.append(subprocess.Popen([*cli, "devsmsc", "--port", str(ports.smsc), "--dir",
                                       str(sms_dir)], env=env))
        procs.append(subprocess.Popen([*cli, "devpush", "--apns-port", str(ports.apns),
                                       "--fcm-port", str(ports.fcm), "--dir", str(push_dir)],
                                      env=env))
        _wait_devpush(push_dir, ports.fcm, procs[-1])
        _wait_port(ports.smsc, procs[1], "devsmsc")
        (var / "demo.toml").write_text(demo_config(var, ports), encoding="utf-8")
        if env.get("MC_CONFIG"):
            print(f"demo: MC_CONFIG is set ({env['MC_CONFIG']}): using it; the demo's SMS "
                  f"and push connectors are in {var / 'demo.toml'}", file=sys.stderr)
        else:
            env["MC_CONFIG"] = str(var / "demo.toml")
        procs.append(subprocess.Popen([*cli, "serve", "--host", host, "--port", str(port)],
                                      env=env))
        _wait_http(f"{settings.public_url.rstrip('/')}/healthz", procs[-1])
        commands = push_commands(settings, event_type)
        print(f"\nMessage Center is running at {settings.public_url}  (Ctrl-C stops it)\n"
              f"Send an email:\n\n  {commands['email']}\n\n"
              f"The mail appears in {mail_dir}/ (one .eml file per message).\n\n"
              f"Send an SMS:\n\n  {commands['sms']}\n\n"
              f"The SMS appears in {sms_dir}/ (one .sms file per message).\n\n"
              f"Send a push notification:\n\n  {commands['push']}\n\n"
              f"The notification appears in {push_dir}/ (one .json file per message).\n"
              f"Then: {MSGCENTER} events list\n"
              f"      {MSGCENTER} events show <plId>\n"
              f"      {MSGCENTER} connector list\n\n"
              f"The web console: {settings.public_url.rstrip('/')}/console/ "
              f"(log in as demo / demo)\n", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            if any(p.poll() is not None for p in procs):
                print("demo: a child process exited; stopping", file=sys.stderr)
                break
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)
    return 0


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the children, the last started first: serve finishes its rounds (and unbinds
    from devsmsc) while the sinks still listen."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    try:
        return run()
    except MessageCenterError as exc:
        print(f"demo: error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
