"""``msgcenter connector list|test``: the connectors of every channel.

``list`` reads the configuration (names, channels, kinds, priorities -- never an option's
value, so no secret), what live workers last reported of each connector (health, circuit)
and the delivery log's attempts of the last hour.  ``test NAME --to ADDRESS`` builds the
named connector in this process and sends one real message through it: the outcome is
printed and a failure exits 1.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from soap_service import messages, report
from soap_service.cli.context import CliContext
from soap_service.errors import NotFound
from soap_service.models import PushPlatform, SendOutcome


def cmd_list(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(report.connectors(ctx.db, ctx.settings), report.CONNECTOR_COLUMNS)
    return 0


def _test_sender(public_url: str) -> str:
    host = urlsplit(public_url).hostname or ""
    return f"msgcenter-test@{host if any(ch.isalpha() for ch in host) else 'localhost'}"


def cmd_test(args: argparse.Namespace, ctx: CliContext) -> int:
    from soap_service.channels.direct import send_through

    settings = ctx.settings
    config = next((c for c in settings.all_connectors() if c.name == args.name), None)
    if config is None:
        known = ", ".join(c.name for c in settings.all_connectors())
        raise NotFound(f"no connector {args.name!r} (configured: {known})")
    raw = config.option("platforms", ["android"])
    platforms = tuple(PushPlatform(p) for p in raw if p in set(PushPlatform)) \
        if isinstance(raw, list) else ()
    message, address = messages.connector_test_message(
        config.channel, config.name, config.kind, args.to,
        default_country_code=settings.default_country_code,
        from_addr=args.sender or _test_sender(settings.public_url), platforms=platforms)
    result = send_through(config, message, address)
    ctx.emit({"connector": config.name, "channel": config.channel.value,
              "outcome": result.outcome.value, "code": result.code, "text": result.text,
              "provider_id": result.provider_id, "ms": result.duration_ms})
    return 0 if result.outcome is SendOutcome.SENT else 1


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("connector", help="connectors of every channel: health, a test send")
    cmds = group.add_subparsers(dest="connector_command", metavar="ACTION", required=True)
    cmds.add_parser("list", help="every connector with its health and last hour's sends"
                    ).set_defaults(func=cmd_list)
    p = cmds.add_parser("test", help="send one real message through one connector")
    p.add_argument("name", help="the connector's name (as in [[connectors]], or smtp)")
    p.add_argument("--to", required=True,
                   help="an email address, a phone number or a device token")
    p.add_argument("--from", dest="sender",
                   help="email only: the From address (default msgcenter-test@<host>)")
    p.set_defaults(func=cmd_test)
