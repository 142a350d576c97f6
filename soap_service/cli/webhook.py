"""``msgcenter webhook add|list|remove|enable|disable|test|deliveries|replay``.

Subscriptions and their delivery log, as SPEC §8 writes them.  ``add`` prints the
endpoint's secret (``whsec_...``) once; ``test`` sends one signed notification now and
prints the receiver's answer; ``deliveries`` shows every attempt; ``replay`` makes a
delivery due again with its webhook-id and body unchanged (the worker sends it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from soap_service import clock, outbox, webhooks
from soap_service.cli.context import CliContext
from soap_service.errors import ValidationFailed
from soap_service.models import WEBHOOK_KINDS, make_plid
from soap_service.store import webhooks as store

ENDPOINT_COLUMNS = ["id", "url", "statuses", "types", "enabled", "disabled_reason",
                    "created_at"]
ATTEMPT_COLUMNS = ["delivery", "webhook_id", "endpoint", "kind", "plId", "status", "attempt",
                   "code", "response", "at"]


def _endpoint_row(e: store.Endpoint) -> dict[str, Any]:
    return {"id": e.id, "url": e.url, "statuses": ",".join(sorted(e.kinds)) or "(default)",
            "types": ",".join(sorted(e.event_types)) or "(all)", "enabled": e.enabled,
            "disabled_reason": e.disabled_reason, "created_at": e.created_at}


def cmd_add(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = webhooks.add_endpoint(ctx.db, args.url, args.status or [], args.type or [])
    ctx.emit({**_endpoint_row(endpoint), "secret": endpoint.secret})
    if not ctx.json:
        print("Store this secret now: it is not shown again.", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_endpoint_row(e) for e in store.list_endpoints(ctx.db)], ENDPOINT_COLUMNS)
    return 0


def cmd_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    webhooks.remove_endpoint(ctx.db, args.id)
    ctx.emit({"id": args.id, "removed": True})
    return 0


def cmd_enable(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(_endpoint_row(webhooks.set_enabled(ctx.db, args.id, True)))
    return 0


def cmd_disable(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(_endpoint_row(webhooks.set_enabled(ctx.db, args.id, False)))
    return 0


def _deliveries(ctx: CliContext, deliveries: list[store.Delivery]) -> list[dict[str, Any]]:
    """One row per attempt (a delivery not yet attempted gets one row without)."""
    attempts: dict[int, list[store.Attempt]] = {}
    for found in store.list_attempts(ctx.db, [d.id for d in deliveries]):
        attempts.setdefault(found.delivery_id, []).append(found)
    rows = []
    for d in deliveries:
        base = {"delivery": d.id, "webhook_id": d.message_id, "endpoint": d.endpoint_id,
                "kind": d.kind, "status": d.status,
                "plId": None if d.event_id is None else str(make_plid(
                    ctx.settings.instance_id, d.event_id))}
        tried: list[store.Attempt | None] = [*attempts.get(d.id, [])] or [None]
        for a in tried:
            rows.append({**base, "attempt": a.attempt if a else None,
                         "code": a.response_code if a else None,
                         "response": a.response_text if a else None,
                         "at": a.created_at if a else None,
                         "next_attempt_at": d.next_attempt_at if d.status == store.PENDING
                         else None})
    return rows


def cmd_test(args: argparse.Namespace, ctx: CliContext) -> int:
    delivery = outbox.send_test(ctx.settings, ctx.db, args.id)
    ctx.emit(_deliveries(ctx, [delivery])[0])
    return 0 if delivery.status == store.DELIVERED else 1


def cmd_deliveries(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.limit < 1:
        raise ValidationFailed("--limit must be at least 1")
    found = store.list_deliveries(ctx.db, status=args.status, limit=args.limit)
    ctx.emit(_deliveries(ctx, found), ATTEMPT_COLUMNS)
    return 0


def cmd_replay(args: argparse.Namespace, ctx: CliContext) -> int:
    delivery = webhooks.replay(ctx.db, args.delivery_id)
    ctx.emit({"delivery": delivery.id, "webhook_id": delivery.message_id,
              "status": delivery.status, "due": clock.utcnow()})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("webhook", help="signed webhooks: subscriptions and deliveries")
    cmds = group.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    p = cmds.add_parser("add", help="subscribe a URL (prints its secret once)")
    p.add_argument("url")
    p.add_argument("--status", action="append", metavar="KIND",
                   help=f"repeatable; one of {', '.join(WEBHOOK_KINDS)} "
                   "(default: the outcomes: processed, delivered, deliveryFailed, ignored, "
                   "tooOld, routingFailed, targetingFailed, opened, clicked, unsubscribed)")
    p.add_argument("--type", action="append", metavar="EVENT_TYPE",
                   help="repeatable; only these event types (default: all)")
    p.set_defaults(func=cmd_add)
    cmds.add_parser("list", help="subscriptions").set_defaults(func=cmd_list)
    for name, func, text in (("remove", cmd_remove, "remove a subscription and its log"),
                             ("enable", cmd_enable, "enable (again, after a 410)"),
                             ("disable", cmd_disable, "stop sending to it"),
                             ("test", cmd_test, "send a signed test notification now")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("id", type=int)
        p.set_defaults(func=func)
    p = cmds.add_parser("deliveries", help="every delivery attempt, newest first")
    p.add_argument("--status", choices=[store.PENDING, store.DELIVERED, store.FAILED])
    p.add_argument("--limit", type=int, default=100, help="deliveries shown (default 100)")
    p.set_defaults(func=cmd_deliveries)
    p = cmds.add_parser("replay", help="send a delivery again (same webhook-id and body)")
    p.add_argument("delivery_id", type=int)
    p.set_defaults(func=cmd_replay)
