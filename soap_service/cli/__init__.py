"""The ``msgcenter`` command: argument parsing, output and exit codes.

Each sibling module registers one group of sub-commands (``register(subparsers)``) and
sets ``func(args, ctx) -> int`` on its parsers. Errors from the domain (our exception
tree) become a one-line message on stderr and a non-zero exit code here, nowhere else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from soap_service.cli import output
from soap_service.cli.context import CliContext
from soap_service.errors import ClientError, MessageCenterError

# Modules providing ``register(subparsers)``; order is the order in ``--help``.
COMMAND_MODULES = (
    "soap_service.cli.base",  # init
    "soap_service.cli.serve",  # serve
    "soap_service.cli.worker",  # worker, devsmtp, devsmsc
    "soap_service.cli.devpush",  # devpush
    "soap_service.cli.connector",  # connector
    "soap_service.cli.admin",  # operator, zone, apikey
    "soap_service.cli.events",  # events, push
    "soap_service.cli.eventtype",  # eventtype
    "soap_service.cli.catalog",  # template, seed
    "soap_service.cli.profile",  # profile, fatigue
    "soap_service.cli.tracking",  # followup, quarantine, exclusions, purge
    "soap_service.cli.bounces",  # bounced, bounces
    "soap_service.cli.observe",  # status, history
    "soap_service.cli.webhook",  # webhook
)

EXIT_OK = 0
EXIT_CLIENT_ERROR = 1
EXIT_SERVER_ERROR = 2
EXIT_USAGE = 64


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage mistake; 2 is ours (the server's), a usage mistake is
    the caller's: exit 1 (sub-command parsers inherit this class)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CLIENT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="msgcenter", description="Message Center: transactional messaging over SOAP."
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not written yet
                continue
            raise
        module.register(sub)
    _add_json_flag(sub)
    return parser


def _add_json_flag(sub: argparse._SubParsersAction) -> None:
    """Let ``--json`` also follow the sub-command (``msgcenter events list --json``)."""
    for child in set(sub.choices.values()):
        if not any("--json" in a.option_strings for a in child._actions):
            child.add_argument(
                "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
        for action in child._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_json_flag(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    ctx = CliContext(json=bool(getattr(args, "json", False)))
    try:
        return int(args.func(args, ctx) or EXIT_OK)
    except MessageCenterError as exc:
        output.error(exc.message + (f": {exc.detail}" if exc.detail and ctx.verbose_errors else ""))
        return EXIT_CLIENT_ERROR if isinstance(exc, ClientError) else EXIT_SERVER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
