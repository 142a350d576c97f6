"""``msgcenter init``: create or upgrade the database schema."""

from __future__ import annotations

import argparse

from soap_service.cli.context import CliContext
from soap_service.store import schema


def cmd_init(args: argparse.Namespace, ctx: CliContext) -> int:
    before, after = schema.upgrade(ctx.db)
    ctx.emit(
        {
            "database": ctx.db.engine.url.render_as_string(hide_password=True),
            "revision_before": before or "(empty)",
            "revision": after,
            "changed": before != after,
        }
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create or upgrade the database schema (safe to re-run)")
    p.set_defaults(func=cmd_init)
