"""Console page cost: milliseconds to render the main pages in process, on a SQLite file
holding ``--events`` events (a share sent, failed and routing-failed, over 24 hours).

Usage: ``python bench/console.py [--events 20000] [--rounds 20]``

Each page is fetched ``--rounds`` times through the whole WSGI application (session
check, queries, Jinja, CSP headers) by a logged-in admin; the median and the worst are
printed.  A script, not a test: numbers vary with what else runs on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, update
from werkzeug.test import Client

from soap_service import auth, catalog, clock
from soap_service.config import load_settings
from soap_service.http.app import WebApp
from soap_service.ingest import WireEvent, store_events
from soap_service.models import Channel, EventType, TemplateContent
from soap_service.store import Database, make_engine, schema
from soap_service.tables import delivery_log, events

PAGES = ["/console/browse", "/console/templates", "/console/templates/order",
         "/console/templates/order/preview", "/console/history",
         "/console/history?status=processed", "/console/history?address=u7%40example.com",
         "/console/monitoring", "/console/audit"]
CTX = '<ctx><client firstname="Zoë"/><order id="A-1042"/></ctx>'


def populate(db: Database, settings, count: int) -> None:
    auth.create_operator(db, "ann", "pw", ["admin"])
    auth.create_zone(db, "local", "127.0.0.0/8", allow_user_password=True)
    catalog.add_event_type(db, EventType(name="order_confirmation"))
    catalog.create_template(db, "order", "order_confirmation", Channel.EMAIL, TemplateContent(
        from_addr="shop@example.com", subject="Order {{ rtEvent.ctx.order.@id }}",
        html="<p>Hello {{ rtEvent.ctx.client.@firstname }}</p>"))
    catalog.add_seed(db, "order", "zoe@example.com", CTX)
    version = catalog.publish(db, "order", "ann").version.id
    for start in range(0, count, 1000):
        store_events(db, settings, [WireEvent({"type": "order_confirmation",
                                               "email": f"u{n}@example.com"}, CTX)
                                    for n in range(start, min(start + 1000, count))], "rt")
    now = clock.utcnow()
    with db.begin() as conn:  # spread over 24 h; 80 % sent, 5 % failed, 5 % unrouted
        for pk in range(1, count + 1):
            at = now - timedelta(seconds=(pk * 86400) // count)
            status = ("processed" if pk % 20 < 16 else "deliveryFailed" if pk % 20 == 16
                      else "routingFailed" if pk % 20 == 17 else "pending")
            conn.execute(update(events).where(events.c.id == pk).values(
                created_at=at, status=status))
            if status in {"processed", "deliveryFailed"}:
                conn.execute(insert(delivery_log).values(
                    event_id=pk, template_version_id=version, channel="email",
                    address=f"u{pk}@example.com", duration_ms=40,
                    outcome="sent" if status == "processed" else "permanent",
                    created_at=at + timedelta(seconds=1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"MC_DATABASE_URL": f"sqlite:///{Path(tmp)}/mc.db",
                                  "MC_SQLITE_SYNCHRONOUS": "normal"})
        db = Database(make_engine(settings), settings)
        schema.upgrade(db)
        populate(db, settings, args.events)
        client = Client(WebApp(settings, db))
        env = {"REMOTE_ADDR": "127.0.0.1"}
        page = client.get("/console/login", environ_base=env).get_data(as_text=True)
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/console/login", data={"csrf": token, "login": "ann", "password": "pw"},
                    environ_base=env)
        print(f"{args.events} events, {args.rounds} rounds, ms per page (median / worst)")
        for path in PAGES:
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                reply = client.get(path, environ_base=env)
                times.append((time.perf_counter() - started) * 1000)
                if reply.status_code != 200:
                    print(f"{path}: {reply.status_code}", file=sys.stderr)
                    return 1
            print(f"{path:45} {statistics.median(times):7.1f} {max(times):7.1f}")
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
