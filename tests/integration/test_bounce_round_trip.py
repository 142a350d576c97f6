"""The round trip, as in production: ``msgcenter serve`` (HTTP, worker, bounce listener)
with MC_BOUNCE_DOMAIN set; an event pushed; the worker sends it through a local relay
(aiosmtpd) that accepts it, then -- later, from another thread, as an MTA does -- sends a
Postfix DSN to the message's envelope sender, which is our listener.  The event ends
``deliveryFailed``, the address is quarantined, and the next event to it ends ``ignored``
without reaching the relay."""

from __future__ import annotations

import json
import smtplib
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller
from bounce_support import postfix_dsn
from conftest import free_port, make_settings
from dispatch_support import wait_until

from soap_service import demo

DOMAIN = "bounce.shop.example"
CTX = json.dumps(demo.demo_spec()["sample_ctx"])


class BouncingRelay:
    """A relay that accepts every message and bounces those to ``unknown`` addresses
    asynchronously: the DSN goes by SMTP to the listener standing for the bounce domain's
    MX, retried (as MTAs retry) while the listener is not up yet."""

    def __init__(self, mx_port: int, unknown: set[str]) -> None:
        self.mx_port = mx_port
        self.unknown = unknown
        self.received: list[tuple[str, str]] = []  # (MAIL FROM, RCPT TO)
        self.bounced: list[str] = []
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.received.append((envelope.mail_from, rcpt))
            if rcpt.lower() in self.unknown:
                thread = threading.Thread(target=self._bounce,
                                          args=(envelope.mail_from, rcpt), daemon=True)
                self.threads.append(thread)
                thread.start()
        return "250 2.0.0 Ok: queued as 4F2A1"

    def _bounce(self, return_path: str, rcpt: str) -> None:
        time.sleep(0.2)  # after the 250: the relay works on its own schedule
        data = postfix_dsn(return_path, rcpt)
        deadline = time.monotonic() + 60
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", self.mx_port, timeout=30) as client:
                    client.sendmail("", [return_path], data)  # a bounce has a null sender
                self.bounced.append(return_path)
                return
            except (OSError, smtplib.SMTPException) as exc:
                if time.monotonic() > deadline:
                    self.errors.append(repr(exc))
                    return
                time.sleep(0.2)

    def __enter__(self) -> BouncingRelay:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def test_round_trip(database_url, start_server):
    mx_port = free_port()
    with BouncingRelay(mx_port, {"nobody@example.net"}) as relay:
        demo.setup(make_settings(database_url))
        server = start_server(database_url, init=False, worker=True, env={
            "MC_SMTP_HOST": "127.0.0.1", "MC_SMTP_PORT": str(relay.controller.port),
            "MC_BOUNCE_DOMAIN": DOMAIN, "MC_BOUNCE_SMTP_PORT": str(mx_port),
            "MC_SECRET": "round-trip-secret"})

        def push(address: str) -> int:
            out = server.cli("push", "--url", server.url, "--token", "demo/demo", "--type",
                             "order_confirmation", "--email", address,
                             "--ctx-json", CTX).stdout
            return int(out.strip())

        def status(plid: int) -> str:
            shown = json.loads(server.cli("events", "show", str(plid), "--json").stdout)
            return str(shown["status"])

        first = push("nobody@example.net")
        wait_until(lambda: status(first) == "deliveryFailed", 90,
                   f"the bounce to fail the event; server log:\n{server.log()[-3000:]}")
        assert relay.errors == []
        [(mail_from, rcpt)] = relay.received
        assert rcpt == "nobody@example.net"
        assert mail_from.startswith("bounces+") and mail_from.endswith("@" + DOMAIN)
        assert relay.bounced == [mail_from]
        shown = json.loads(server.cli("events", "show", str(first), "--json").stdout)
        assert [h["status"] for h in shown["history"]][-2:] == ["processed", "deliveryFailed"]
        assert "User unknown" in shown["history"][-1]["reason"]
        assert [a["outcome"] for a in shown["attempts"]] == ["sent", "bounced"]
        entry = json.loads(server.cli("quarantine", "show", "nobody@example.net",
                                      "--json").stdout)
        assert entry["source"] == "bounce"
        assert entry["bounce"]["plId"] == first and entry["bounce"]["kind"] == "hard"

        second = push("nobody@example.net")
        wait_until(lambda: status(second) == "ignored", 60, "the next event to be ignored")
        fine = push("somebody@example.net")
        wait_until(lambda: status(fine) == "processed", 60, "a good address to be sent")
        assert [r for _, r in relay.received] == ["nobody@example.net", "somebody@example.net"]
        shown = json.loads(server.cli("events", "show", str(second), "--json").stdout)
        assert shown["attempts"] == []
        assert shown["history"][-1]["reason"].startswith("quarantined: bounce 5.1.1")
