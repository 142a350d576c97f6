"""End to end through ``msgcenter serve``: the worker sends a tracked message, the reader's
open and click reach the server's /r/ endpoints and land in the tracking log."""

from __future__ import annotations

import http.client
import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import update
from test_followup import make_catalog
from tracking_support import add_events, event_row

from soap_service import clock
from soap_service.devsmtp import MailSink
from soap_service.store import Database
from soap_service.store import tracking as tracking_store
from soap_service.tables import delivery_log

SECRET = "serve-test-secret"
PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def fetch(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path, headers={"User-Agent": PERSON})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location") or ""
    finally:
        conn.close()


def wait_for_hits(db: Database, event_id: int, count: int, timeout: float = 30.0) -> list:
    """Poll the tracking log (the server records in its own process)."""
    deadline = time.monotonic() + timeout
    while True:
        found = tracking_store.list_tracking(db, event_id)
        if len(found) >= count or time.monotonic() > deadline:
            return list(reversed(found))
        time.sleep(0.05)


def test_open_and_click_through_the_running_service(db: Database, database_url: str,
                                                    start_server) -> None:
    """A sent message's pixel and rewritten link work against ``msgcenter serve``."""
    make_catalog(db)
    with MailSink() as sink:
        server = start_server(database_url, worker=True, env={
            "MC_SECRET": SECRET, "MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port)})
        [pk] = add_events(db, [event_row(1, event_type="order", email="reader@example.com")])
        [received] = sink.wait_for(1)
    html = received.message.get_body(preferencelist=("html",)).get_content()
    [pixel] = re.findall(r'<img src="([^"]+)"', html)
    [link] = re.findall(r'<a href="([^"]+)"', html)
    assert pixel.startswith(f"{server.url}/r/o/") and link.startswith(f"{server.url}/r/c/")
    deadline = time.monotonic() + 30  # the worker logs the delivery just after the send
    while time.monotonic() < deadline:
        with db.begin() as conn:  # the reader opens it an hour later (not a prefetch)
            done = conn.execute(update(delivery_log).where(delivery_log.c.event_id == pk)
                                .values(created_at=clock.utcnow() - timedelta(hours=1)))
        if done.rowcount:
            break
        time.sleep(0.05)
    assert fetch(pixel)[0] == 200
    assert fetch(link) == (302, "https://shop.example.org/orders")
    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert fetch(forged) == (404, "")
    # two requests may land in two server processes, each recording in its own background
    # thread: the rows' order is not the order of the hits
    hits = sorted(wait_for_hits(db, pk, 2), key=lambda h: h.kind, reverse=True)
    assert [(h.kind, h.url, h.user_agent, h.machine) for h in hits] == [
        ("open", None, PERSON, False), ("click", "https://shop.example.org/orders", PERSON,
                                        False)]
    assert all(h.delivery_id is not None for h in hits)
    assert "tracking.default_secret" not in server.log()


def test_serve_warns_at_start_while_the_secret_is_the_default(sqlite_url: str,
                                                              start_server) -> None:
    """``msgcenter serve`` logs ``tracking.default_secret`` at start-up (before any tracking
    request) while MC_SECRET is the default; with a secret set it does not (see above)."""
    server = start_server(sqlite_url, "--no-worker", "--workers", "1",
                          env={"MC_SECRET": "change-me"})
    assert "tracking.default_secret" in server.log()
