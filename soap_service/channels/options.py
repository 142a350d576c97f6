"""Typed reading of a connector's options, with errors that name the connector and key.

Connectors read their ``[[connectors]]`` table once, when they are built, so a typo or a
value out of range stops the service at start with one line instead of failing the first
message.  Unknown keys are refused too (``pasword_file`` would otherwise silently mean
"no password").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError


def _where(config: ConnectorConfig, key: str) -> str:
    return f"connector {config.name!r}: {key}"


def check_known(config: ConnectorConfig, keys: Iterable[str], secrets: Iterable[str] = ()) -> None:
    """Refuse options this kind does not read; each secret may also be ``*_file``/``*_env``."""
    known = set(keys)
    for secret in secrets:
        known |= {secret, f"{secret}_file", f"{secret}_env"}
    unknown = sorted(set(config.options) - known)
    if unknown:
        raise ConfigError(f"connector {config.name!r}: unknown option(s) {', '.join(unknown)} "
                          f"for kind {config.kind!r} (known: {', '.join(sorted(known))})")


def opt_str(config: ConnectorConfig, key: str, default: str = "", *,
            required: bool = False, max_len: int = 0) -> str:
    value = config.option(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{_where(config, key)} must be a string")
    if required and not value:
        raise ConfigError(f"{_where(config, key)} is required")
    if max_len and len(value) > max_len:
        raise ConfigError(f"{_where(config, key)} is longer than {max_len} characters")
    return value


def opt_choice(config: ConnectorConfig, key: str, default: str, choices: Iterable[str]) -> str:
    allowed = list(choices)
    value = config.option(key, default)
    if value not in allowed:
        raise ConfigError(f"{_where(config, key)} must be one of {', '.join(allowed)}")
    return str(value)


def opt_int(config: ConnectorConfig, key: str, default: int, low: int, high: int) -> int:
    value: Any = config.option(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{_where(config, key)} must be a whole number from {low} to {high}")
    return value


def opt_float(config: ConnectorConfig, key: str, default: float, low: float,
              high: float) -> float:
    value: Any = config.option(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not low <= value <= high:
        raise ConfigError(f"{_where(config, key)} must be a number from {low} to {high}")
    return float(value)


def opt_bool(config: ConnectorConfig, key: str, default: bool) -> bool:
    value = config.option(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(config, key)} must be true or false")
    return value
