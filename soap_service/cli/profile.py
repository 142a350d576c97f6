"""``msgcenter profile``: show, list, set, erase and import customer profiles;
``msgcenter fatigue``: the fatigue rules of profile-based messages (SPEC §10)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from soap_service import fatigue, profiles
from soap_service.cli.argtypes import whole_number
from soap_service.cli.context import CliContext
from soap_service.durations import format_duration, parse_duration
from soap_service.errors import ValidationFailed
from soap_service.models import Channel, FatigueRule, Lane, Profile
from soap_service.store import profiles as store_profiles

LIST_COLUMNS = ["externalId", "email", "mobilePhone", "language", "firstName", "lastName",
                "unsubscribed"]


def _row(p: Profile) -> dict[str, Any]:
    return p.to_dict()


def _list_row(p: Profile) -> dict[str, Any]:
    row = p.to_dict()
    row["unsubscribed"] = ",".join(ch.value for ch in p.unsubscribed) or ""
    return row


def cmd_show(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(_row(profiles.require(ctx.db, args.external_id)))
    return 0


def cmd_list(args: argparse.Namespace, ctx: CliContext) -> int:
    email = args.email.strip().lower() if args.email else None
    found = store_profiles.list_profiles(ctx.db, limit=args.limit, after=args.after, email=email)
    ctx.emit([_list_row(p) for p in found], LIST_COLUMNS)
    return 0


def _attribute_pairs(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed(f"--attr {pair!r}: write NAME=VALUE")
        out[key.strip()] = value
    return out


def cmd_set(args: argparse.Namespace, ctx: CliContext) -> int:
    data: dict[str, Any] = {}
    for option, name in (("email", "email"), ("mobile_phone", "mobilePhone"),
                         ("language", "language"), ("country", "country"),
                         ("first_name", "firstName"), ("last_name", "lastName")):
        value = getattr(args, option)
        if value is not None:
            data[name] = value
    if args.push_token is not None:
        data["pushTokens"] = args.push_token
    if args.attr:
        current = store_profiles.get_profile(ctx.db, args.external_id)
        merged = dict(current.attributes) if current else {}
        for key, value in _attribute_pairs(args.attr).items():
            if value == "":
                merged.pop(key, None)  # NAME= removes the attribute
            else:
                merged[key] = value
        data["attributes"] = merged
    changes = bool(data) or args.subscribe or args.unsubscribe
    if not changes:
        raise ValidationFailed("nothing to set: give at least one option (see --help)")
    profile, _created = profiles.put(ctx.db, args.external_id, data,
                                     ctx.settings.default_country_code)
    for channel in args.unsubscribe or []:
        profile = profiles.set_subscription(ctx.db, profile.external_id, Channel(channel),
                                            subscribed=False)
    for channel in args.subscribe or []:
        profile = profiles.set_subscription(ctx.db, profile.external_id, Channel(channel),
                                            subscribed=True)
    ctx.emit(_row(profile))
    return 0


def cmd_erase(args: argparse.Namespace, ctx: CliContext) -> int:
    counts = profiles.erase(ctx.db, args.external_id)
    ctx.emit({"externalId": args.external_id, "erased": True, **counts})
    return 0


class _Progress:
    """A progress bar on stderr, redrawn in place on a terminal; elsewhere a line per
    100,000 rows (logs stay short)."""

    def __init__(self, total_bytes: int) -> None:
        self.started = time.monotonic()
        self.total = max(total_bytes, 1)
        self.tty = sys.stderr.isatty()
        self.next_line = 100_000

    def __call__(self, report: profiles.ImportReport) -> None:
        if not self.tty and report.lines < self.next_line:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        share = min(report.bytes_read / self.total, 1.0)
        bar = "#" * int(share * 30)
        text = (f"[{bar:<30}] {share:4.0%}  {report.lines:,} rows, {report.inserted:,} new, "
                f"{report.updated:,} updated, {report.rejected:,} rejected "
                f"({report.lines / elapsed:,.0f} rows/s)")
        if self.tty:
            print("\r" + text, end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr)
            while self.next_line <= report.lines:
                self.next_line += 100_000

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def cmd_import(args: argparse.Namespace, ctx: CliContext) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise ValidationFailed(f"no such file: {path}")
    progress = _Progress(path.stat().st_size)
    try:
        report = profiles.import_csv(
            ctx.db, path, rejects_path=Path(args.rejects) if args.rejects else None,
            default_country_code=ctx.settings.default_country_code,
            batch_rows=args.batch, progress=None if args.quiet else progress)
    finally:
        progress.done()
    ctx.emit(report.to_dict())
    return 0


# ---------------------------------------------------------------- fatigue


def _rule_row(rule: FatigueRule) -> dict[str, Any]:
    return {"name": rule.name, "max": rule.max_count, "per": format_duration(rule.period_seconds),
            "channel": rule.channel.value if rule.channel else "any",
            "lane": rule.lane.value if rule.lane else "any",
            "critical_exempt": rule.exempt_critical}


def cmd_fatigue_add(args: argparse.Namespace, ctx: CliContext) -> int:
    rule = FatigueRule(name=args.name, max_count=args.max, period_seconds=parse_duration(args.per),
                       channel=Channel(args.channel) if args.channel else None,
                       lane=Lane(args.lane) if args.lane else None,
                       exempt_critical=not args.include_critical)
    ctx.emit(_rule_row(fatigue.add_rule(ctx.db, rule)))
    return 0


def cmd_fatigue_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_rule_row(r) for r in fatigue.list_rules(ctx.db)],
             ["name", "max", "per", "channel", "lane", "critical_exempt"])
    return 0


def cmd_fatigue_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    fatigue.remove_rule(ctx.db, args.name)
    ctx.emit({"name": args.name, "removed": True})
    return 0


# ---------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="customer profiles (profile-based messages)")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = s.add_parser("show", help="show one profile")
    q.add_argument("external_id", metavar="EXTERNAL_ID")
    q.set_defaults(func=cmd_show)
    q = s.add_parser("list", help="list profiles by external id")
    q.add_argument("--limit", type=whole_number(1), default=100)
    q.add_argument("--after", metavar="EXTERNAL_ID", help="start after this external id")
    q.add_argument("--email", help="only profiles with this email")
    q.set_defaults(func=cmd_list)
    q = s.add_parser("set", help="create a profile or change its fields")
    q.add_argument("external_id", metavar="EXTERNAL_ID")
    q.add_argument("--email")
    q.add_argument("--mobile-phone")
    q.add_argument("--language", help="e.g. fr, fr-CA")
    q.add_argument("--country", help="e.g. FR, CA")
    q.add_argument("--first-name")
    q.add_argument("--last-name")
    q.add_argument("--push-token", action="append", help="repeat for several devices")
    q.add_argument("--attr", action="append", metavar="NAME=VALUE",
                   help="set an attribute (NAME= removes it); repeatable")
    channels = [c.value for c in Channel]
    q.add_argument("--unsubscribe", action="append", choices=channels, help="opt out")
    q.add_argument("--subscribe", action="append", choices=channels, help="opt back in")
    q.set_defaults(func=cmd_set)
    q = s.add_parser("erase", help="delete a profile and blank its events' personal data")
    q.add_argument("external_id", metavar="EXTERNAL_ID")
    q.set_defaults(func=cmd_erase)
    q = s.add_parser("import", help="import profiles from a CSV file (docs/profiles.md)")
    q.add_argument("file", metavar="FILE.csv")
    q.add_argument("--rejects", metavar="PATH",
                   help="where rejected rows go (default FILE.csv.rejects.csv)")
    q.add_argument("--batch", type=whole_number(1, 10_000), default=profiles.BATCH_ROWS,
                   help="rows per database transaction")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.set_defaults(func=cmd_import)

    f = sub.add_parser("fatigue", help="fatigue rules: at most N messages per profile and period")
    fs = f.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = fs.add_parser("add", help="add a rule")
    q.add_argument("name")
    q.add_argument("--max", type=whole_number(1), required=True, help="messages allowed")
    q.add_argument("--per", required=True, help="the period, e.g. 7d, 24h")
    q.add_argument("--channel", choices=channels, help="count this channel only")
    q.add_argument("--lane", choices=[lane.value for lane in Lane], help="this lane only")
    q.add_argument("--include-critical", action="store_true",
                   help="also hold back events of the critical lane (exempt by default)")
    q.set_defaults(func=cmd_fatigue_add)
    fs.add_parser("list", help="list the rules").set_defaults(func=cmd_fatigue_list)
    q = fs.add_parser("remove", help="remove a rule")
    q.add_argument("name")
    q.set_defaults(func=cmd_fatigue_remove)
