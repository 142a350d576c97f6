"""Durations as people type them: ``90`` (seconds), ``15m``, ``36h``, ``1d``, ``1h30m``, ``2w``.

One parser and one formatter for every option that takes a duration (event type validity
and retention, follow-up delays, ``--since``).  Pure.
"""

from __future__ import annotations

import re

from soap_service.errors import ValidationFailed

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)\s*([wdhms])")
# 50 years: fits the INTEGER columns (validity, retention, follow-up delay) and datetimes
MAX_DURATION = 50 * 365 * 86400
_MAX_DIGITS = len(str(MAX_DURATION))


def parse_duration(text: str) -> int:
    """``"90"`` (seconds), ``"15m"``, ``"36h"``, ``"1d"``, ``"1h30m"``, ``"2w"`` -> seconds."""
    raw = text.strip().lower()
    if raw.isdecimal():  # not isdigit(): "²" is a digit that int() refuses
        if len(raw.lstrip("0")) > _MAX_DIGITS:  # also keeps int() far from its digit limit
            raise ValidationFailed(f"duration {text[:40]!r} is too long "
                                   f"(at most {MAX_DURATION // 86400}d)")
        seconds = int(raw)
    else:
        parts = _DURATION.findall(raw)
        if not parts or _DURATION.sub("", raw).strip():
            raise ValidationFailed(f"invalid duration {text[:40]!r} "
                                   "(examples: 90s, 15m, 36h, 1d, 2w)")
        if any(len(n.lstrip("0")) > _MAX_DIGITS for n, _ in parts):
            raise ValidationFailed(f"duration {text[:40]!r} is too long "
                                   f"(at most {MAX_DURATION // 86400}d)")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds > MAX_DURATION:
        raise ValidationFailed(f"duration {text[:40]!r} is too long "
                               f"(at most {MAX_DURATION // 86400}d)")
    return seconds


def format_duration(seconds: int) -> str:
    """Seconds -> the shortest of our forms (``86400 * 30`` -> ``"30d"``)."""
    if seconds <= 0:
        return "0s"
    out = ""
    for unit, size in _UNITS.items():
        if unit == "w" and seconds % size:
            continue  # "10d" reads better than "1w3d"
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out
