"""``msgcenter template variant``: a template's language variants (SPEC §10).

``variant add NAME --language fr --subject ... --html FILE`` adds the French parts to the
draft; ``update`` changes some, ``remove`` drops the variant, ``list`` shows them.  They
are published with the template (``template publish``), previewed and proofed with
``template preview|proof NAME --language fr``.
"""

from __future__ import annotations

import argparse
from typing import Any

from soap_service import catalog, languages
from soap_service.cli.context import CliContext
from soap_service.errors import ValidationFailed


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    from soap_service.cli.catalog import _content_changes

    return _content_changes(args)


def _rows(name: str, ctx: CliContext) -> list[dict[str, Any]]:
    from soap_service.cli.catalog import _content_row

    tpl = catalog.get_template(ctx.db, name).template
    return [{"language": lang, **_content_row(content, tpl.channel)}
            for lang, content in tpl.draft.variants.items()]


def cmd_variant_add(args: argparse.Namespace, ctx: CliContext) -> int:
    languages.add_variant(ctx.db, args.name, args.language, **_changes(args))
    ctx.emit(_rows(args.name, ctx))
    return 0


def cmd_variant_update(args: argparse.Namespace, ctx: CliContext) -> int:
    changes = _changes(args)
    if all(v is None for v in changes.values()):
        raise ValidationFailed("nothing to change: give at least one option (see --help)")
    languages.update_variant(ctx.db, args.name, args.language, **changes)
    ctx.emit(_rows(args.name, ctx))
    return 0


def cmd_variant_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    languages.remove_variant(ctx.db, args.name, args.language)
    ctx.emit({"name": args.name, "language": languages.check_language(args.language),
              "removed": True})
    return 0


def cmd_variant_list(args: argparse.Namespace, ctx: CliContext) -> int:
    rows = _rows(args.name, ctx)
    ctx.emit(rows, ["language", *(k for k in (rows[0] if rows else {}) if k != "language")])
    return 0


def register(template_actions: argparse._SubParsersAction,
             content_options: Any) -> None:
    """``template variant ...``, under the ``template`` command's actions."""
    p = template_actions.add_parser("variant", help="language variants of a template's draft")
    s = p.add_subparsers(dest="variant_action", metavar="ACTION", required=True)
    for action, func, text in (("add", cmd_variant_add, "add a language's parts"),
                               ("update", cmd_variant_update, "change a variant's parts")):
        q = s.add_parser(action, help=text)
        q.add_argument("name")
        q.add_argument("--language", required=True, help="a language tag: fr, fr-CA")
        content_options(q)
        q.set_defaults(func=func)
    q = s.add_parser("remove", help="remove a variant")
    q.add_argument("name")
    q.add_argument("--language", required=True)
    q.set_defaults(func=cmd_variant_remove)
    q = s.add_parser("list", help="a template's variants (draft)")
    q.add_argument("name")
    q.set_defaults(func=cmd_variant_list)
