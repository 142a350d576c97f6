"""Argument types shared by the commands: numbers are checked where they are read, so an
out-of-range value is a usage error (exit 1), never a database overflow (a traceback)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

INT32_MAX = 2**31 - 1  # INTEGER columns (versions, attempts); also a sane LIMIT


def whole_number(low: int = -INT32_MAX - 1, high: int = INT32_MAX) -> Callable[[str], int]:
    """An argparse ``type``: a whole number between ``low`` and ``high`` (inclusive).
    The default range only keeps values storable; commands check their own minimum."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:  # also for more digits than int() converts (4,300)
            raise argparse.ArgumentTypeError(f"not a whole number: {raw[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse
