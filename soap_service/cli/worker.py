"""``msgcenter worker`` (dispatch events), ``msgcenter devsmtp`` (development SMTP sink) and
``msgcenter devsmsc`` (development SMPP server)."""

from __future__ import annotations

import argparse
import logging

from soap_service.cli import output
from soap_service.cli.context import CliContext


def cmd_worker(args: argparse.Namespace, ctx: CliContext) -> int:
    from soap_service.schedule import run_worker

    # APScheduler logs every job run at INFO (each second); keep -v for our own events
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = ctx.settings
    if args.concurrency:
        settings = settings.replace(smtp_concurrency=args.concurrency)
    if args.batch_size:
        settings = settings.replace(worker_batch_size=args.batch_size)
    run_worker(settings, lambda: output.info(
        f"worker: dispatching to {settings.smtp_host}:{settings.smtp_port} (Ctrl-C to stop)"))
    return 0


def cmd_devsmtp(args: argparse.Namespace, ctx: CliContext) -> int:
    from soap_service.devsmtp import serve_forever, start_sink

    sink = start_sink(args.host, args.port, args.dir)
    output.info(f"devsmtp: listening on {args.host}:{args.port}, storing mail in {args.dir}/")
    serve_forever(sink)
    return 0


def cmd_devsmsc(args: argparse.Namespace, ctx: CliContext) -> int:
    from soap_service.devsmsc import serve_forever, start_smsc

    smsc = start_smsc(args.host, args.port, args.dir)
    output.info(f"devsmsc: SMPP on {args.host}:{args.port}, storing SMS in {args.dir}/")
    serve_forever(smsc)
    return 0


def _at_least_one(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {raw!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="dispatch queued events (claim, render, send, record)")
    p.add_argument("--concurrency", type=_at_least_one, default=0,
                   help="SMTP connections per relay (default MC_SMTP_CONCURRENCY)")
    p.add_argument("--batch-size", type=_at_least_one, default=0,
                   help="events claimed per round (default MC_WORKER_BATCH_SIZE)")
    p.set_defaults(func=cmd_worker)

    d = sub.add_parser("devsmtp", help="run a development SMTP sink that stores .eml files")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    d.add_argument("--port", type=int, default=8025, help="port to listen on (8025)")
    d.add_argument("--dir", default="var/mail", help="where to store messages (var/mail)")
    d.set_defaults(func=cmd_devsmtp)

    s = sub.add_parser("devsmsc", help="run a development SMPP server that stores .sms files")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=2775, help="port to listen on (2775)")
    s.add_argument("--dir", default="var/sms", help="where to store messages (var/sms)")
    s.set_defaults(func=cmd_devsmsc)
