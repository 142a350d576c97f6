"""``msgcenter template|seed``: write, test (seeds, previews, proofs) and publish templates.

Template parts are read from files (``--html FILE``; ``-`` reads standard input); short
parts (``--subject``, ``--from``, ``--push-title``) are given inline.  ``publish`` records
the operator from ``--operator``, ``$MC_OPERATOR`` or the login name.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from soap_service import catalog, proof
from soap_service.cli.argtypes import whole_number
from soap_service.cli.context import CliContext
from soap_service.errors import ValidationFailed
from soap_service.models import Channel, RenderedMessage, TemplateContent, VersionInfo

# preview part name -> (RenderedMessage field, file name for --out)
PARTS = {"subject": ("subject", "subject.txt"), "html": ("html", "body.html"),
         "text": ("text", "body.txt"), "sms": ("sms", "sms.txt"),
         "push": ("push_body", "push.json")}
CHANNEL_PARTS = {Channel.EMAIL: ("subject", "html", "text"), Channel.SMS: ("sms",),
                 Channel.PUSH: ("push",)}
CONTENT_FIELDS = {Channel.EMAIL: ("from", "reply_to", "subject", "html", "text"),
                  Channel.SMS: ("sms",), Channel.PUSH: ("push_title", "push_body", "push_data")}


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"cannot read {path}: {exc}") from exc


# ---------------------------------------------------------------- template


def _content_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "from_addr": args.from_addr, "reply_to": args.reply_to, "subject": args.subject,
        "html": _read(args.html), "text": _read(args.text), "sms": _read(args.sms),
        "push_title": args.push_title, "push_body": _read(args.push_body),
    }
    if args.push_data:
        data: dict[str, str] = {}
        for item in args.push_data:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValidationFailed(f"--push-data expects KEY=VALUE, got {item!r}")
            data[key] = value
        changes["push_data"] = data
    return changes


def _summary_row(s: catalog.TemplateSummary) -> dict[str, Any]:
    t = s.template
    return {"name": t.name, "event_type": t.event_type, "channel": t.channel.value,
            "state": s.state, "version": s.latest.version.version if s.latest else None,
            "draft_changed": s.draft_changed, "paused": t.paused, "updated_at": t.updated_at}


def _content_row(content: TemplateContent, channel: Channel) -> dict[str, Any]:
    """The parts a template of ``channel`` has (an SMS template shows no subject)."""
    row = {"from": content.from_addr, "reply_to": content.reply_to, "subject": content.subject,
           "html": content.html, "text": content.text, "sms": content.sms,
           "push_title": content.push_title, "push_body": content.push_body,
           "push_data": content.push_data}
    out = {k: v for k, v in row.items() if k in CONTENT_FIELDS[channel]}
    if content.variants:  # the languages (template variant list shows their parts)
        out["variants"] = ", ".join(content.variants)
    return out


def _version_row(info: VersionInfo, latest: int | None = None) -> dict[str, Any]:
    v = info.version
    state = "unpublished" if info.unpublished_at else (
        "live" if latest in (None, v.version) else "superseded")
    return {"version": v.version, "published_at": v.published_at,
            "published_by": v.published_by, "hash": v.content_hash[:12], "state": state,
            "unpublished_at": info.unpublished_at}


def cmd_template_create(args: argparse.Namespace, ctx: CliContext) -> int:
    changes = {k: v for k, v in _content_changes(args).items() if v is not None}
    catalog.create_template(ctx.db, args.name, args.event_type, Channel(args.channel),
                            TemplateContent(**changes))
    ctx.emit(_summary_row(catalog.get_template(ctx.db, args.name)))
    return 0


def cmd_template_edit(args: argparse.Namespace, ctx: CliContext) -> int:
    changes = _content_changes(args)
    if all(v is None for v in changes.values()):
        raise ValidationFailed("nothing to change: give at least one option (see --help)")
    catalog.edit_template(ctx.db, args.name, **changes)
    ctx.emit(_summary_row(catalog.get_template(ctx.db, args.name)))
    return 0


def cmd_template_show(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.version is not None:
        info = catalog.get_version(ctx.db, args.name, args.version)
        latest = catalog.get_version(ctx.db, args.name).version.version
        ctx.emit({"name": args.name, **_version_row(info, latest),
                  **_content_row(info.version.content, info.version.channel)})
        return 0
    summary = catalog.get_template(ctx.db, args.name)
    tpl = summary.template
    ctx.emit({**_summary_row(summary), **_content_row(tpl.draft, tpl.channel)})
    return 0


def cmd_template_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_summary_row(s) for s in catalog.list_templates(ctx.db)],
             ["name", "event_type", "channel", "state", "version", "draft_changed",
              "updated_at"])
    return 0


def _operator(args: argparse.Namespace) -> str:
    if args.operator:
        return str(args.operator)
    try:
        return os.environ.get("MC_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cmd_template_publish(args: argparse.Namespace, ctx: CliContext) -> int:
    info = catalog.publish(ctx.db, args.name, _operator(args))
    ctx.emit({"name": args.name, **_version_row(info)})
    return 0


def cmd_template_unpublish(args: argparse.Namespace, ctx: CliContext) -> int:
    info = catalog.unpublish(ctx.db, args.name)
    ctx.emit({"name": args.name, **_version_row(info)})
    return 0


def cmd_template_pause(args: argparse.Namespace, ctx: CliContext) -> int:
    catalog.pause(ctx.db, args.name)
    ctx.emit({"name": args.name, "paused": True})
    return 0


def cmd_template_resume(args: argparse.Namespace, ctx: CliContext) -> int:
    released = catalog.resume(ctx.db, args.name)
    ctx.emit({"name": args.name, "paused": False, "events_released": released})
    return 0


def cmd_template_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    summary = catalog.get_template(ctx.db, args.name)
    if summary.state in ("published", "paused"):
        raise ValidationFailed(f"template {args.name!r} is published: unpublish it first")
    catalog.delete_template(ctx.db, args.name)
    ctx.emit({"name": args.name, "deleted": True})
    return 0


def cmd_template_versions(args: argparse.Namespace, ctx: CliContext) -> int:
    infos = catalog.versions(ctx.db, args.name)
    latest = infos[-1].version.version if infos else None
    ctx.emit([_version_row(i, latest) for i in infos],
             ["version", "published_at", "published_by", "hash", "state"])
    return 0


def cmd_template_diff(args: argparse.Namespace, ctx: CliContext) -> int:
    text = catalog.diff(ctx.db, args.name, args.old, args.new)
    if ctx.json:
        ctx.emit({"name": args.name, "old": args.old, "new": args.new, "diff": text})
    else:
        sys.stdout.write(text or f"(no difference between {args.old} and {args.new})\n")
    return 0


def _parts(message: RenderedMessage) -> dict[str, str]:
    out = {name: getattr(message, field) for name, (field, _f) in PARTS.items()}
    out["push"] = json.dumps({"title": message.push_title, "body": message.push_body,
                              "data": message.push_data}, ensure_ascii=False, indent=2)
    return {p: out[p] for p in CHANNEL_PARTS[message.channel]}


def cmd_template_preview(args: argparse.Namespace, ctx: CliContext) -> int:
    event_xml = _read(args.event)
    result = proof.preview(ctx.db, args.name, version=args.version, seed=args.seed,
                           event_xml=event_xml, language=args.language)
    parts = _parts(result.message)
    if args.part:
        if args.part not in parts:
            raise ValidationFailed(f"a {result.message.channel.value} template has no part "
                                   f"{args.part!r} (parts: {', '.join(parts)})")
        parts = {args.part: parts[args.part]}
    if args.out:
        return _write_preview(Path(args.out), parts, ctx)
    if ctx.json:
        ctx.emit({"template": args.name, "version": result.version, "to": result.address,
                  "from": result.message.from_addr, "reply_to": result.message.reply_to,
                  **({"language": result.message.language} if args.language else {}),
                  **parts})
    elif args.part:
        sys.stdout.write(parts[args.part])
    else:
        variant = f", {result.message.language or 'default'} variant" if args.language else ""
        print(f"template {args.name} ({result.version}{variant}) to "
              f"{result.address or '(no address)'}")
        if result.message.from_addr or result.message.reply_to:
            print(f"from {result.message.from_addr}"
                  + (f", reply to {result.message.reply_to}" if result.message.reply_to else ""))
        for name, body in parts.items():
            print(f"--- {name} ---")
            print(body)
    return 0


def _write_preview(out: Path, parts: dict[str, str], ctx: CliContext) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in parts.items():
        path = out / PARTS[name][1]
        path.write_text(body, encoding="utf-8")
        written.append({"part": name, "file": str(path), "chars": len(body)})
    ctx.emit(written, ["part", "file", "chars"])
    return 0


def cmd_template_proof(args: argparse.Namespace, ctx: CliContext) -> int:
    results = proof.send_proofs(ctx.db, ctx.settings, args.name, to=args.to, seeds=args.seeds,
                                version=args.version, language=args.language)
    ctx.emit([{"address": r.address, "outcome": r.outcome, "code": r.code,
               "message_id": r.message_id, "response": r.text} for r in results],
             ["address", "outcome", "code", "message_id", "response"])
    return 0 if all(r.outcome == "sent" for r in results) else 1


# ---------------------------------------------------------------- seed


def cmd_seed_add(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.ctx and args.ctx_json:
        raise ValidationFailed("give --ctx or --ctx-json, not both")
    if args.ctx:
        ctx_xml = proof.ctx_from_xml(_read(args.ctx) or "")
    elif args.ctx_json:
        ctx_xml = proof.ctx_from_json(_read(args.ctx_json) or "")
    else:
        ctx_xml = "<ctx/>"
    seed = catalog.add_seed(ctx.db, args.template, args.address, ctx_xml, args.external_id)
    ctx.emit(_seed_row(seed))
    return 0


def _seed_row(seed: Any) -> dict[str, Any]:
    return {"template": seed.template, "address": seed.address,
            "external_id": seed.external_id, "ctx": seed.ctx_xml, "created_at": seed.created_at}


def cmd_seed_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_seed_row(s) for s in catalog.list_seeds(ctx.db, args.template)],
             ["template", "address", "external_id", "ctx"])
    return 0


def cmd_seed_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    catalog.remove_seed(ctx.db, args.template, args.address)
    ctx.emit({"template": args.template, "address": args.address, "removed": True})
    return 0


# ---------------------------------------------------------------- parsers


def register(sub: argparse._SubParsersAction) -> None:
    _register_template(sub)
    _register_seed(sub)


def _content_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_addr", help="From: address (may be personalised)")
    p.add_argument("--reply-to", help="Reply-To: address")
    p.add_argument("--subject", help="subject line")
    p.add_argument("--html", metavar="FILE", help="HTML part ('-' reads stdin)")
    p.add_argument("--text", metavar="FILE", help="text part (derived from HTML if absent)")
    p.add_argument("--sms", metavar="FILE", help="SMS text")
    p.add_argument("--push-title", help="push notification title")
    p.add_argument("--push-body", metavar="FILE", help="push notification body")
    p.add_argument("--push-data", metavar="KEY=VALUE", action="append",
                   help="push data entry (repeatable; replaces all entries)")


def _register_template(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("template", help="templates: edit, preview, proof, publish")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = s.add_parser("create", help="create a template (its draft)")
    create.add_argument("name")
    create.add_argument("--event-type", required=True, metavar="TYPE",
                        help="the event type it serves (msgcenter eventtype add)")
    create.add_argument("--channel", choices=[c.value for c in Channel], default="email",
                        help="channel (default email)")
    _content_options(create)
    create.set_defaults(func=cmd_template_create)
    edit = s.add_parser("edit", help="change the draft (published versions never change)")
    edit.add_argument("name")
    _content_options(edit)
    edit.set_defaults(func=cmd_template_edit)
    show = s.add_parser("show", help="show the draft, or a published version")
    show.add_argument("name")
    show.add_argument("--version", type=whole_number())
    show.set_defaults(func=cmd_template_show)
    s.add_parser("list", help="list templates").set_defaults(func=cmd_template_list)
    simple = (("publish", cmd_template_publish, "publish the draft as a new version"),
              ("unpublish", cmd_template_unpublish, "stop routing events to the template"),
              ("pause", cmd_template_pause, "hold matching events in the queue"),
              ("resume", cmd_template_resume, "release held events"),
              ("versions", cmd_template_versions, "list published versions"),
              ("delete", cmd_template_delete, "delete an unpublished template"))
    for name, func, text in simple:
        q = s.add_parser(name, help=text)
        q.add_argument("name")
        if name == "publish":
            q.add_argument("--operator", help="recorded as the author (default: $MC_OPERATOR "
                                              "or your login)")
        q.set_defaults(func=func)
    diff = s.add_parser("diff", help="compare two versions (a number, 'draft' or 'latest')")
    diff.add_argument("name")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.set_defaults(func=cmd_template_diff)
    _register_preview_proof(s)
    from soap_service.cli import variant

    variant.register(s, _content_options)


def _register_preview_proof(s: argparse._SubParsersAction) -> None:
    prev = s.add_parser("preview", help="render the draft or a version with test data")
    prev.add_argument("name")
    prev.add_argument("--version", type=whole_number(),
                      help="a published version (default: the draft)")
    data = prev.add_mutually_exclusive_group()
    data.add_argument("--seed", metavar="ADDRESS", help="use this seed's data")
    data.add_argument("--event", metavar="FILE.xml", help="use an <rtEvent> file")
    prev.add_argument("--part", choices=list(PARTS), help="print only this part, raw")
    prev.add_argument("--language", help="render the variant this language gets (fr-CA -> "
                                         "fr -> default)")
    prev.add_argument("--out", metavar="DIR", help="write the parts as files into DIR")
    prev.set_defaults(func=cmd_template_preview)
    pr = s.add_parser("proof", help="send proofs by email through the SMTP relay")
    pr.add_argument("name")
    pr.add_argument("--version", type=whole_number(),
                    help="a published version (default: the draft)")
    to = pr.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="ADDRESS", action="append", help="repeatable")
    to.add_argument("--seeds", action="store_true", help="every seed, with its own data")
    pr.add_argument("--language", help="send the variant this language gets")
    pr.set_defaults(func=cmd_template_proof)


def _register_seed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seed", help="seed addresses with test data for a template")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = s.add_parser("add", help="add or replace a seed")
    add.add_argument("template")
    add.add_argument("address")
    add.add_argument("--ctx", metavar="FILE.xml",
                     help="<ctx> as XML (or an <rtEvent>, or a SOAP request holding one)")
    add.add_argument("--ctx-json", metavar="FILE.json", help="ctx as JSON")
    add.add_argument("--external-id")
    add.set_defaults(func=cmd_seed_add)
    lst = s.add_parser("list", help="list seeds")
    lst.add_argument("template", nargs="?")
    lst.set_defaults(func=cmd_seed_list)
    rm = s.add_parser("remove", help="remove a seed")
    rm.add_argument("template")
    rm.add_argument("address")
    rm.set_defaults(func=cmd_seed_remove)
