"""``msgcenter eventtype``: define event types (lane, retries, validity, retention).

Defaults (lane ``transactional``, 5 attempts, validity ``1d``, retention ``30d``) come from
:class:`~soap_service.models.EventType`; durations are parsed by :mod:`soap_service.catalog`.
"""

from __future__ import annotations

import argparse
from typing import Any

from soap_service import catalog
from soap_service.cli.argtypes import whole_number
from soap_service.cli.context import CliContext
from soap_service.durations import format_duration, parse_duration
from soap_service.errors import ValidationFailed
from soap_service.models import EventType, Lane, MissingProfile, ReconcileOn, Targeting


def _type_row(et: EventType) -> dict[str, Any]:
    """The type's settings; a profile-based type's targeting too (an event-based type,
    the default, shows none)."""
    row: dict[str, Any] = {"name": et.name, "label": et.label, "lane": et.lane.value,
                           "max_attempts": et.max_attempts,
                           "validity": format_duration(et.validity_seconds),
                           "retention": format_duration(et.retention_seconds)}
    if et.targeting is Targeting.PROFILE:
        row.update(targeting=et.targeting.value, reconcile_on=et.reconcile_on.value,
                   missing_profile=et.missing_profile.value)
    return row


def _type_changes(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "label": args.label,
        "lane": Lane(args.lane) if args.lane else None,
        "max_attempts": args.max_attempts,
        "validity_seconds": parse_duration(args.validity) if args.validity else None,
        "retention_seconds": parse_duration(args.retention) if args.retention else None,
        "targeting": Targeting(args.targeting) if args.targeting else None,
        "reconcile_on": ReconcileOn(args.reconcile_on) if args.reconcile_on else None,
        "missing_profile": MissingProfile(args.missing_profile) if args.missing_profile
        else None,
    }


def cmd_type_add(args: argparse.Namespace, ctx: CliContext) -> int:
    changes = {k: v for k, v in _type_changes(args).items() if v is not None}
    ctx.emit(_type_row(catalog.add_event_type(ctx.db, EventType(name=args.name, **changes))))
    return 0


def cmd_type_update(args: argparse.Namespace, ctx: CliContext) -> int:
    changes = _type_changes(args)
    if all(v is None for v in changes.values()):
        raise ValidationFailed("nothing to change: give at least one option (see --help)")
    ctx.emit(_type_row(catalog.update_event_type(ctx.db, args.name, **changes)))
    return 0


def cmd_type_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_type_row(t) for t in catalog.list_event_types(ctx.db)],
             ["name", "label", "lane", "max_attempts", "validity", "retention", "targeting"])
    # (an event-based type's TARGETING cell is empty)
    return 0


def cmd_type_show(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(_type_row(catalog.require_event_type(ctx.db, args.name)))
    return 0


def cmd_type_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    catalog.remove_event_type(ctx.db, args.name)
    ctx.emit({"name": args.name, "removed": True})
    return 0



# ---------------------------------------------------------------- parser


def _type_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    d = EventType(name="")  # the defaults, shown in --help
    hint = (lambda v: f" (default {v})") if defaults else (lambda v: "")
    p.add_argument("--label", help="human-readable name")
    p.add_argument("--lane", choices=[lane.value for lane in Lane],
                   help="dispatch priority lane" + hint(d.lane.value))
    p.add_argument("--max-attempts", type=whole_number(),
                   help="send attempts before tooOld" + hint(d.max_attempts))
    p.add_argument("--validity", help="how long an event may wait, e.g. 1d, 6h"
                   + hint(format_duration(d.validity_seconds)))
    p.add_argument("--retention", help="how long events and logs are kept"
                   + hint(format_duration(d.retention_seconds)))
    p.add_argument("--targeting", choices=[t.value for t in Targeting],
                   help="event-based (the event has the address) or profile-based"
                   + hint(d.targeting.value))
    p.add_argument("--reconcile-on", choices=[r.value for r in ReconcileOn],
                   help="profile-based: the event attribute naming the profile"
                   + hint(d.reconcile_on.value))
    p.add_argument("--missing-profile", choices=[m.value for m in MissingProfile],
                   help="profile-based, no profile found: fail (targetingFailed) or send "
                   "with the event's data" + hint(d.missing_profile.value))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eventtype", help="event types: lane, retries, validity, retention")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = s.add_parser("add", help="define an event type")
    add.add_argument("name")
    _type_options(add, defaults=True)
    add.set_defaults(func=cmd_type_add)
    upd = s.add_parser("update", help="change an event type's settings")
    upd.add_argument("name")
    _type_options(upd, defaults=False)
    upd.set_defaults(func=cmd_type_update)
    s.add_parser("list", help="list event types").set_defaults(func=cmd_type_list)
    for name, func, text in (("show", cmd_type_show, "show one event type"),
                             ("remove", cmd_type_remove,
                              "delete an event type (refused while in use)")):
        q = s.add_parser(name, help=text)
        q.add_argument("name")
        q.set_defaults(func=func)
