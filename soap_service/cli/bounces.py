"""``msgcenter bounced`` (the bounce listener and mailbox poller) and ``msgcenter bounces``
(received bounces and complaints)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
from datetime import timedelta
from typing import Any

from soap_service import clock
from soap_service.cli import output
from soap_service.cli.argtypes import whole_number
from soap_service.cli.context import CliContext
from soap_service.durations import parse_duration
from soap_service.errors import ValidationFailed
from soap_service.models import make_plid
from soap_service.store import bounces as store

BOUNCE_COLUMNS = ["id", "created_at", "source", "kind", "matched", "effect", "plId", "address",
                  "status", "diagnostic"]


def bounce_row(row: store.BounceRow, instance_id: int) -> dict[str, Any]:
    """A received bounce as the CLI shows it: the event's plId next to its primary key."""
    out = dataclasses.asdict(row)
    pk = row.event_id
    return {"id": row.id, "plId": None if pk is None else make_plid(instance_id, pk), **out}


def cmd_bounced(args: argparse.Namespace, ctx: CliContext) -> int:
    from soap_service.bounces.service import BounceService

    settings = ctx.settings
    if args.port is not None and not 0 <= args.port < 65536:
        raise ValidationFailed("--port must be between 0 and 65535")
    logging.getLogger("soap_service").setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with BounceService(settings, ctx.db, args.host, args.port, smtp=not args.no_smtp) as service:
        parts = []
        if service.listener is not None:
            parts.append(f"SMTP on {service.listener.host}:{service.listener.port} for "
                         f"@{service.listener.handler.domain}")
        if service.mailbox is not None:
            parts.append(f"polling {service.mailbox.host} every "
                         f"{settings.bounce_imap_interval:g} s")
        output.info(f"bounced: {', '.join(parts)} (Ctrl-C to stop)")
        stop.wait()
    return 0


def cmd_bounces_list(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.limit < 1:
        raise ValidationFailed("--limit must be at least 1")
    since = None
    if args.since:
        since = clock.utcnow() - timedelta(seconds=parse_duration(args.since))
    rows = store.list_bounces(ctx.db, since, args.limit)
    if args.unmatched:
        rows = [r for r in rows if not r.matched]
    ctx.emit([bounce_row(r, ctx.settings.instance_id) for r in rows], BOUNCE_COLUMNS)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bounced", help="receive bounces and complaints (SMTP listener of "
                       "MC_BOUNCE_DOMAIN, MC_BOUNCE_IMAP_URL poller)")
    p.add_argument("--host", help="address to listen on (default MC_BOUNCE_SMTP_HOST)")
    p.add_argument("--port", type=whole_number(0, 65535),
                   help="port to listen on (default MC_BOUNCE_SMTP_PORT)")
    p.add_argument("--no-smtp", action="store_true",
                   help="no SMTP listener: only poll MC_BOUNCE_IMAP_URL")
    p.set_defaults(func=cmd_bounced)

    group = sub.add_parser("bounces", help="received bounces and complaints")
    cmds = group.add_subparsers(dest="bounces_command", metavar="ACTION", required=True)
    p = cmds.add_parser("list", help="list received bounces, newest first (unmatched too)")
    p.add_argument("--since", help="only those received within this time, e.g. 1h, 2d")
    p.add_argument("--unmatched", action="store_true", help="only those that matched nothing")
    p.add_argument("--limit", type=whole_number(), default=100)
    p.set_defaults(func=cmd_bounces_list)
