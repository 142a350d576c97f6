"""``msgcenter status`` and ``msgcenter history``: the service at a glance, and over time."""

from __future__ import annotations

import argparse

from soap_service import report, thresholds
from soap_service.cli.context import CliContext
from soap_service.durations import parse_duration

QUEUE_COLUMNS = ["queue", "lane", "pending", "due", "processing", "paused", "oldest_due_age_s"]
HISTORY_COLUMNS = ["group", "incoming", "outgoing", "processed", "routing_failed", "expired",
                   "delivery_failed", "ignored", "error_rate", "avg_queue_s", "avg_send_ms"]


def cmd_status(args: argparse.Namespace, ctx: CliContext) -> int:
    snapshot = report.status(ctx.db, ctx.settings)
    judged = thresholds.judge(ctx.db, ctx.settings, snapshot)
    warnings = thresholds.warnings(judged)
    if ctx.json:
        ctx.emit({**snapshot, "health": "warning" if warnings else "ok",
                  "thresholds": [j.as_dict() for j in judged if j.orange is not None
                                 or j.red is not None]})
        return 0
    ctx.emit({
        "pending": snapshot["pending"],
        "due": snapshot["due"],
        "oldest_due_age_s": snapshot["oldest_due_age_s"],
        "workers_alive": f"{snapshot['workers_alive']} of {len(snapshot['workers'])}",
        "last_hour": ", ".join(f"{k}={v}" for k, v in snapshot["last_hour"].items()) or "-",
        "health": "warning: " + ", ".join(
            f"{j.metric.name}={j.value} ({j.level}, level "
            f"{j.red if j.level == 'red' else j.orange})" for j in warnings)
        if warnings else "ok",
    })
    print()
    ctx.emit(snapshot["queues"], QUEUE_COLUMNS)
    if snapshot["workers"]:
        print()
        ctx.emit(snapshot["workers"], ["worker_id", "hostname", "pid", "seen_at", "alive"])
    return 0


def cmd_history(args: argparse.Namespace, ctx: CliContext) -> int:
    result = report.history(ctx.db, parse_duration(args.since), args.by)
    if ctx.json:
        ctx.emit(result)
        return 0
    ctx.emit(result["summary"])
    print()
    ctx.emit(result["rows"], HISTORY_COLUMNS)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="queue depth, oldest due event, last hour, workers")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("history", help="service-level report: volume, times, error rates")
    p.add_argument("--since", default="24h", help="period, e.g. 24h, 7d (default 24h)")
    p.add_argument("--by", default="type", choices=report.GROUPINGS,
                   help="group rows by event type, status or hour (default type)")
    p.set_defaults(func=cmd_history)
