"""``make run``: the whole service on a laptop — SQLite in ``./var/``, an SMTP sink, a demo.

``python -m soap_service.demo`` initialises the database, creates an operator (``demo`` /
``demo``) and a security zone for the loopback network, loads the demo event type
``order_confirmation`` with a published order-confirmation template (``demo/`` files),
starts ``msgcenter devsmtp`` and ``msgcenter serve`` as child processes, and prints a
ready-to-paste ``msgcenter push`` command and where the mail will appear.  Ctrl-C stops
everything.  Setting up is idempotent: running it twice reuses what exists.
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
    """The demo event type and a published template; returns the event type name."""
    spec = demo_spec()
    name, tpl = spec["event_type"], spec["template"]
    if catalog.get_event_type(db, name) is None:
        catalog.add_event_type(db, EventType(name=name, label=spec["label"],
                                             lane=Lane(spec["lane"])))
    content = TemplateContent(
        from_addr=spec["from"], reply_to=spec["reply_to"], subject=spec["subject"],
        html=(DATA / "order_confirmation.html").read_text(encoding="utf-8"),
        text=(DATA / "order_confirmation.txt").read_text(encoding="utf-8"),
    )
    with contextlib.suppress(Conflict):
        catalog.create_template(db, tpl, name, Channel.EMAIL, content)
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


def push_command(settings: Settings, event_type: str) -> str:
    """A command that works as printed from any shell: the URL is spelled out, since the
    demo's ``MC_PUBLIC_URL`` may have been set for ``make run`` only."""
    ctx = json.dumps(demo_spec()["sample_ctx"], separators=(",", ":"))
    return (f"{MSGCENTER} push --url {settings.public_url.rstrip('/')} --type {event_type} "
            f"--email john.doe@example.com --token {OPERATOR[0]}/{OPERATOR[1]} "
            f"--ctx-json '{ctx}'")


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
    check_port_free(host, port, "MC_PUBLIC_URL (e.g. http://127.0.0.1:18080)")
    check_port_free(settings.smtp_host, settings.smtp_port, "MC_SMTP_PORT")
    cli = [sys.executable, "-m", "soap_service.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mail_dir = Path(settings.mail_dir).resolve()
    procs = [subprocess.Popen([*cli, "devsmtp", "--host", settings.smtp_host, "--port",
                               str(settings.smtp_port), "--dir", str(mail_dir)], env=env)]
    try:
        procs.append(subprocess.Popen([*cli, "serve", "--host", host, "--port", str(port)],
                                      env=env))
        _wait_http(f"{settings.public_url.rstrip('/')}/healthz", procs[-1])
        print(f"\nMessage Center is running at {settings.public_url}  (Ctrl-C stops it)\n"
              f"Send an event:\n\n  {push_command(settings, event_type)}\n\n"
              f"The mail appears in {mail_dir}/ (one .eml file per message).\n"
              f"Then: {MSGCENTER} events list\n"
              f"      {MSGCENTER} events show <plId>\n", flush=True)
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
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
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
