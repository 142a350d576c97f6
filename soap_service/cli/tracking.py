"""``msgcenter tracking|followup|quarantine|exclusions|purge``: after a message is sent."""

from __future__ import annotations

import argparse
import dataclasses

from soap_service import exclusions, followup, housekeeping, track
from soap_service.cli.argtypes import whole_number
from soap_service.cli.bounces import bounce_row
from soap_service.cli.context import CliContext
from soap_service.cli.events import resolve_id
from soap_service.durations import format_duration, parse_duration
from soap_service.errors import NotFound, ValidationFailed
from soap_service.http.tracking import list_hits
from soap_service.models import AddressKind, Channel, FollowupRule, QuarantineEntry, make_plid
from soap_service.store import bounces as bounce_store
from soap_service.store.bounces import BounceRow

RULE_COLUMNS = ["name", "event_type", "template", "after", "condition", "channel", "enabled",
                "created_at"]


def _rule_row(rule: FollowupRule) -> dict:
    row = dataclasses.asdict(rule)
    row["after"] = format_duration(rule.after_seconds)
    return row


def cmd_followup_add(args: argparse.Namespace, ctx: CliContext) -> int:
    rule = followup.add_rule(ctx.db, args.name, args.event_type, args.template, args.after,
                             getattr(args, "if"), args.channel)
    ctx.emit(_rule_row(rule))
    return 0


def cmd_followup_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_rule_row(rule) for rule in followup.list_rules(ctx.db)], RULE_COLUMNS)
    return 0


def cmd_followup_enable(args: argparse.Namespace, ctx: CliContext) -> int:
    enabled = args.followup_command == "enable"
    followup.set_enabled(ctx.db, args.name, enabled)
    ctx.emit({"name": args.name, "enabled": enabled})
    return 0


def cmd_followup_run(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit({"created": followup.tick(ctx.db, ctx.settings)})
    return 0


def _limit(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValidationFailed("--limit must be at least 1")
    return int(args.limit)


def _kind(args: argparse.Namespace) -> AddressKind | None:
    return AddressKind(args.kind) if args.kind else None


def _entry_row(entry: QuarantineEntry, causes: dict[int, BounceRow] | None = None,
               instance_id: int = 1) -> dict:
    """An entry; with ``causes``, the received bounce that caused it (``bounce``: its id,
    kind, status and event in the table; the whole bounce in JSON)."""
    row = dataclasses.asdict(entry)
    row["kind"] = entry.kind.value
    if causes is not None:
        cause = causes.get(entry.bounce_id) if entry.bounce_id is not None else None
        row["bounce"] = bounce_row(cause, instance_id) if cause else None
    return row


def _bounce_cell(row: dict) -> str:
    cause = row.get("bounce")
    if not cause:
        return ""
    event = f" plId {cause['plId']}" if cause["plId"] is not None else ""
    return f"#{cause['id']} {cause['kind']} {cause['status']}{event}".replace("  ", " ")


def cmd_quarantine_list(args: argparse.Namespace, ctx: CliContext) -> int:
    entries = exclusions.list_entries(ctx.db, args.source, _limit(args), _kind(args))
    causes = bounce_store.get_bounces(ctx.db, {e.bounce_id for e in entries if e.bounce_id})
    rows = [_entry_row(e, causes, ctx.settings.instance_id) for e in entries]
    if not ctx.json:
        for row in rows:
            row["bounce"] = _bounce_cell(row)
    ctx.emit(rows, ["kind", "address", "source", "reason", "bounce", "created_at"])
    return 0


def cmd_quarantine_show(args: argparse.Namespace, ctx: CliContext) -> int:
    entry = exclusions.lookup(ctx.db, args.address, _kind(args))
    if entry is None:
        raise NotFound(f"{args.address} is not in quarantine")
    causes = bounce_store.get_bounces(ctx.db, {entry.bounce_id} if entry.bounce_id else set())
    row = _entry_row(entry, causes, ctx.settings.instance_id)
    if not ctx.json:  # the bounce's fields, one per line
        cause = row.pop("bounce") or {}
        row.pop("bounce_id", None)
        row.update({f"bounce_{k}": v for k, v in cause.items()
                    if k in {"id", "created_at", "source", "format", "kind", "plId",
                             "recipient", "status", "action", "diagnostic"}})
    ctx.emit(row)
    return 0


def cmd_quarantine_add(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(_entry_row(exclusions.add(ctx.db, args.address, args.reason or "", _kind(args),
                                       ctx.settings.default_country_code)))
    return 0


def cmd_quarantine_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    entry = exclusions.remove(ctx.db, args.address, _kind(args),
                              ctx.settings.default_country_code)
    ctx.emit({"kind": entry.kind.value, "address": entry.address, "removed": True})
    return 0


def _event_pk(args: argparse.Namespace, ctx: CliContext) -> int | None:
    return resolve_id(args.event, ctx.settings.instance_id) if args.event else None


def _with_plid(row: dict, ctx: CliContext) -> dict:
    """A log row with the event's plId (what callers and ``events list`` show) first."""
    pk = row.get("event_id")
    return {"plId": None if pk is None else make_plid(ctx.settings.instance_id, pk), **row}


def cmd_tracking_list(args: argparse.Namespace, ctx: CliContext) -> int:
    hits = list_hits(ctx.db, _event_pk(args, ctx), args.kind, args.human,
                                  _limit(args))
    ctx.emit([_with_plid(dataclasses.asdict(h), ctx) for h in hits],
             ["created_at", "plId", "kind", "machine", "url", "ip", "user_agent"])
    return 0


def cmd_exclusions_list(args: argparse.Namespace, ctx: CliContext) -> int:
    since = parse_duration(args.since) if args.since else None
    rows = exclusions.list_exclusions(ctx.db, since, _event_pk(args, ctx), _limit(args))
    ctx.emit([_with_plid(dataclasses.asdict(r), ctx) for r in rows],
             ["id", "plId", "address", "reason", "created_at"])
    return 0


def cmd_purge(args: argparse.Namespace, ctx: CliContext) -> int:
    counts = housekeeping.purge(ctx.db, ctx.settings, dry_run=args.dry_run,
                                batch_size=args.batch_size)
    ctx.emit({"dry_run": args.dry_run, **counts})
    return 0


def _register_followup(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("followup", help="follow-up rules (send again to non-openers)")
    cmds = group.add_subparsers(dest="followup_command", metavar="ACTION", required=True)
    p = cmds.add_parser("add", help="add a rule")
    p.add_argument("name")
    p.add_argument("--event-type", required=True, help="events of this type are followed up")
    p.add_argument("--template", required=True, help="template of the follow-up message")
    p.add_argument("--after", required=True, help="delay after sending, e.g. 3d, 12h, 1d12h")
    p.add_argument("--if", required=True, choices=followup.CONDITIONS,
                   help="who gets it: those who did not open, or did not click")
    p.add_argument("--channel", choices=sorted(c.value for c in Channel),
                   help="channel of the follow-up (default: the template's)")
    p.set_defaults(func=cmd_followup_add)
    cmds.add_parser("list", help="list rules").set_defaults(func=cmd_followup_list)
    for action in ("disable", "enable"):
        p = cmds.add_parser(action, help=f"{action} a rule")
        p.add_argument("name")
        p.set_defaults(func=cmd_followup_enable)
    cmds.add_parser("run", help="create due follow-ups now (the scheduled job, once)"
                    ).set_defaults(func=cmd_followup_run)


def _register_quarantine(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("quarantine", help="quarantined and denylisted addresses")
    cmds = group.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    kinds = [k.value for k in AddressKind]
    kind_help = ("email, phone or token (default: guessed -- an @ is an email, a number a "
                 "phone, anything else a device token)")
    p = cmds.add_parser("list", help="list entries")
    p.add_argument("--source", choices=[exclusions.SOURCE_BOUNCE, exclusions.SOURCE_MANUAL,
                                        exclusions.SOURCE_COMPLAINT])
    p.add_argument("--kind", choices=kinds, help="only this kind of address")
    p.add_argument("--limit", type=whole_number(), default=1000)
    p.set_defaults(func=cmd_quarantine_list)
    p = cmds.add_parser("show", help="one entry, with the bounce that caused it")
    p.add_argument("address")
    p.add_argument("--kind", choices=kinds, help=kind_help)
    p.set_defaults(func=cmd_quarantine_show)
    p = cmds.add_parser("add", help="denylist an address (never sent to)")
    p.add_argument("address", help="an email address, a phone number or a device token")
    p.add_argument("--kind", choices=kinds, help=kind_help)
    p.add_argument("--reason", help="why (shown in the exclusion log)")
    p.set_defaults(func=cmd_quarantine_add)
    p = cmds.add_parser("remove", help="release an address")
    p.add_argument("address")
    p.add_argument("--kind", choices=kinds, help=kind_help)
    p.set_defaults(func=cmd_quarantine_remove)


def _register_tracking(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("tracking", help="opens and clicks (tracking log)")
    cmds = group.add_subparsers(dest="tracking_command", metavar="ACTION", required=True)
    p = cmds.add_parser("list", help="list opens and clicks, newest first")
    p.add_argument("--event", help="only this event (plId or primary key)")
    p.add_argument("--kind", choices=[track.OPEN, track.CLICK])
    p.add_argument("--human", action="store_true", help="leave out machine hits")
    p.add_argument("--limit", type=whole_number(), default=100)
    p.set_defaults(func=cmd_tracking_list)


def register(sub: argparse._SubParsersAction) -> None:
    _register_tracking(sub)
    _register_followup(sub)
    _register_quarantine(sub)
    group = sub.add_parser("exclusions", help="why events were not sent (exclusion log)")
    cmds = group.add_subparsers(dest="exclusions_command", metavar="ACTION", required=True)
    p = cmds.add_parser("list", help="list exclusion-log rows, newest first")
    p.add_argument("--since", help="only this recent, e.g. 24h")
    p.add_argument("--event", help="only this event (plId or primary key)")
    p.add_argument("--limit", type=whole_number(), default=100)
    p.set_defaults(func=cmd_exclusions_list)
    p = sub.add_parser("purge", help="delete events and logs past their retention")
    p.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    p.add_argument("--batch-size", type=whole_number(), default=housekeeping.DEFAULT_BATCH,
                   help="rows per transaction")
    p.set_defaults(func=cmd_purge)
