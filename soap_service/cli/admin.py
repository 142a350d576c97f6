"""``msgcenter operator|zone|apikey``: who may call the service, and from where.

Passwords are taken from ``--password``, ``MC_OPERATOR_PASSWORD`` or a prompt, and are
never printed; an API key is printed once, at creation, and cannot be shown again.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from soap_service import auth
from soap_service.cli.context import CliContext
from soap_service.errors import NotFound, ValidationFailed
from soap_service.models import ApiKey, Operator, Zone
from soap_service.store import auth as store

PASSWORD_ENV = "MC_OPERATOR_PASSWORD"  # noqa: S105 - a variable name, not a secret
ZONE_FLAGS = ("allow_user_password", "allow_empty_password", "session_token_only",
              "show_errors", "is_proxy")


def _password(args: argparse.Namespace) -> str:
    """``--password``, else ``$MC_OPERATOR_PASSWORD``, else a prompt (twice) on a terminal."""
    if args.password:
        return str(args.password)
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise ValidationFailed(f"no password: use --password, {PASSWORD_ENV} or a terminal")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValidationFailed("passwords do not match")
    return first


def _operator_row(op: Operator) -> dict:
    return {"id": op.id, "login": op.login, "rights": ",".join(sorted(op.rights)),
            "created_at": op.created_at, "updated_at": op.updated_at}


def cmd_operator_add(args: argparse.Namespace, ctx: CliContext) -> int:
    op = auth.create_operator(ctx.db, args.login, _password(args), args.right or ["mc"])
    ctx.emit(_operator_row(op))
    return 0


def cmd_operator_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_operator_row(op) for op in store.list_operators(ctx.db)],
             ["id", "login", "rights", "created_at", "updated_at"])
    return 0


def cmd_operator_passwd(args: argparse.Namespace, ctx: CliContext) -> int:
    if store.get_operator(ctx.db, args.login) is None:  # fail before prompting
        raise NotFound(f"no operator {args.login!r}")
    auth.change_password(ctx.db, args.login, _password(args))
    ctx.emit({"login": args.login, "password": "changed"})
    return 0


def _zone_row(zone: Zone) -> dict:
    row: dict = {"name": zone.name, "cidr": zone.cidr}
    row.update({flag: getattr(zone, flag) for flag in ZONE_FLAGS})
    row["created_at"] = zone.created_at
    return row


def cmd_zone_add(args: argparse.Namespace, ctx: CliContext) -> int:
    flags = {flag: bool(getattr(args, flag)) for flag in ZONE_FLAGS}
    ctx.emit(_zone_row(auth.create_zone(ctx.db, args.name, args.cidr, **flags)))
    return 0


def cmd_zone_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_zone_row(z) for z in store.list_zones(ctx.db)], ["name", "cidr", *ZONE_FLAGS])
    return 0


def cmd_zone_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    store.remove_zone(ctx.db, args.name)
    ctx.emit({"name": args.name, "removed": True})
    return 0


def _key_row(key: ApiKey) -> dict:
    return {"name": key.name, "prefix": key.prefix, "scopes": ",".join(sorted(key.scopes)),
            "operator": key.operator_login, "created_at": key.created_at,
            "revoked_at": key.revoked_at, "active": key.revoked_at is None}


def cmd_apikey_create(args: argparse.Namespace, ctx: CliContext) -> int:
    key, record = auth.create_api_key(ctx.db, args.name, args.operator, args.scope or ["push"])
    ctx.emit({**_key_row(record), "key": key})
    if not ctx.json:
        print("Store this key now: it is not shown again.", file=sys.stderr)
    return 0


def cmd_apikey_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit([_key_row(k) for k in store.list_api_keys(ctx.db)],
             ["name", "prefix", "scopes", "operator", "active", "created_at", "revoked_at"])
    return 0


def cmd_apikey_revoke(args: argparse.Namespace, ctx: CliContext) -> int:
    store.revoke_api_key(ctx.db, args.name)
    ctx.emit({"name": args.name, "revoked": True})
    return 0


def _register_operator(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("operator", help="operators (logins, passwords, rights)")
    cmds = group.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    p = cmds.add_parser("add", help="add an operator")
    p.add_argument("login")
    p.add_argument("--password", help=f"password (else ${PASSWORD_ENV}, else prompt)")
    p.add_argument("--right", action="append", choices=sorted(auth.RIGHTS),
                   help="right to grant (repeatable; default mc)")
    p.set_defaults(func=cmd_operator_add)
    cmds.add_parser("list", help="list operators").set_defaults(func=cmd_operator_list)
    p = cmds.add_parser("passwd", help="change an operator's password")
    p.add_argument("login")
    p.add_argument("--password", help=f"new password (else ${PASSWORD_ENV}, else prompt)")
    p.set_defaults(func=cmd_operator_passwd)


def _register_zone(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("zone", help="security zones (networks allowed to call)")
    cmds = group.add_subparsers(dest="zone_command", metavar="ACTION", required=True)
    p = cmds.add_parser("add", help="add a zone")
    p.add_argument("name")
    p.add_argument("cidr", help="network, e.g. 10.0.0.0/8 or 2001:db8::/32")
    p.add_argument("--allow-user-password", action="store_true",
                   help="accept login/password as the session token")
    p.add_argument("--allow-empty-password", action="store_true",
                   help="trust 'mc/' (empty password) from this network")
    p.add_argument("--session-token-only", action="store_true",
                   help="accept only Logon session tokens and API keys")
    p.add_argument("--show-errors", action="store_true", help="detailed faults for callers")
    p.add_argument("--proxy", dest="is_proxy", action="store_true",
                   help="addresses here are proxies: honour their X-Forwarded-For")
    p.set_defaults(func=cmd_zone_add)
    cmds.add_parser("list", help="list zones").set_defaults(func=cmd_zone_list)
    p = cmds.add_parser("remove", help="remove a zone")
    p.add_argument("name")
    p.set_defaults(func=cmd_zone_remove)


def _register_apikey(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("apikey", help="API keys (Authorization: Bearer / X-Api-Key)")
    cmds = group.add_subparsers(dest="apikey_command", metavar="ACTION", required=True)
    p = cmds.add_parser("create", help="create a key (printed once)")
    p.add_argument("name")
    p.add_argument("--scope", action="append", metavar="SCOPES",
                   help="push, read, admin (comma-separated or repeated; default push)")
    p.add_argument("--operator", help="bind to this operator (never more than its rights)")
    p.set_defaults(func=cmd_apikey_create)
    cmds.add_parser("list", help="list keys").set_defaults(func=cmd_apikey_list)
    p = cmds.add_parser("revoke", help="revoke a key")
    p.add_argument("name")
    p.set_defaults(func=cmd_apikey_revoke)


def register(sub: argparse._SubParsersAction) -> None:
    _register_operator(sub)
    _register_zone(sub)
    _register_apikey(sub)
