"""Human tables and JSON for the CLI; errors as one line on stderr."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit(rows: list[dict] | dict, columns: list[str] | None = None, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, default=_default, indent=2, sort_keys=False))
        return
    if isinstance(rows, dict):
        width = max((len(k) for k in rows), default=0)
        for key, value in rows.items():
            print(f"{key.ljust(width)}  {_cell(value)}")
        return
    if not rows:
        print("(none)")
        return
    cols = columns or list(rows[0].keys())
    table = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def error(message: str) -> None:
    first_line = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"msgcenter: error: {first_line}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)
