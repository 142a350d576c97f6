"""The options of an ``smpp`` connector, read and checked once when it is built.

docs/channels.md lists them with their defaults; a missing, unknown or out-of-range key
stops the service at start with one line naming the connector and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from soap_service.channels.options import (
    check_known,
    opt_bool,
    opt_float,
    opt_int,
    opt_str,
)
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError

_NUMERIC_SOURCE = re.compile(r"^\+?[0-9]{1,20}$")
_ALPHA_SOURCE = re.compile(r"^[ -~]{1,11}$")  # printable ASCII, 11 characters at most

_OPTIONS = ("host", "port", "system_id", "system_type", "source_addr", "source_ton",
            "source_npi", "dest_ton", "dest_npi", "service_type", "registered_delivery",
            "window", "max_parts", "enquire_link_interval", "response_timeout",
            "connect_timeout", "reconnect_min", "reconnect_max", "throttle_pause",
            "permanent_statuses", "temporary_statuses")


@dataclass(frozen=True)
class SmppOptions:
    """The ``[[connectors]]`` keys of kind ``smpp`` (docs/channels.md lists them)."""

    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    source_addr: str = ""
    source_ton: int = 5  # alphanumeric
    source_npi: int = 0
    dest_ton: int = 1  # international
    dest_npi: int = 1  # E.164
    service_type: str = ""
    registered_delivery: bool = True
    window: int = 10
    max_parts: int = 6
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    connect_timeout: float = 5.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    throttle_pause: float = 1.0
    permanent_statuses: frozenset[int] = frozenset()
    temporary_statuses: frozenset[int] = frozenset()

    @classmethod
    def from_config(cls, config: ConnectorConfig) -> SmppOptions:
        check_known(config, _OPTIONS, secrets=("password",))
        source = opt_str(config, "source_addr")
        if source and not (_NUMERIC_SOURCE.match(source) or _ALPHA_SOURCE.match(source)):
            raise ConfigError(f"connector {config.name!r}: source_addr must be a number of at "
                              "most 20 digits or at most 11 printable ASCII characters")
        low = opt_float(config, "reconnect_min", 0.5, 0.01, 3600)
        return cls(
            host=opt_str(config, "host", required=True),
            port=opt_int(config, "port", 2775, 1, 65535),
            system_id=opt_str(config, "system_id", required=True, max_len=15),
            password=_password(config),
            system_type=opt_str(config, "system_type", max_len=12),
            source_addr=source,
            source_ton=opt_int(config, "source_ton", 5, 0, 6),
            source_npi=opt_int(config, "source_npi", 0, 0, 18),
            dest_ton=opt_int(config, "dest_ton", 1, 0, 6),
            dest_npi=opt_int(config, "dest_npi", 1, 0, 18),
            service_type=opt_str(config, "service_type", max_len=5),
            registered_delivery=opt_bool(config, "registered_delivery", True),
            window=opt_int(config, "window", 10, 1, 1000),
            max_parts=opt_int(config, "max_parts", 6, 1, 255),
            enquire_link_interval=opt_float(config, "enquire_link_interval", 30.0, 0.01, 3600),
            response_timeout=opt_float(config, "response_timeout", 10.0, 0.01, 600),
            connect_timeout=opt_float(config, "connect_timeout", 5.0, 0.01, 600),
            reconnect_min=low,
            reconnect_max=opt_float(config, "reconnect_max", 30.0, low, 3600),
            throttle_pause=opt_float(config, "throttle_pause", 1.0, 0, 600),
            permanent_statuses=_statuses(config, "permanent_statuses"),
            temporary_statuses=_statuses(config, "temporary_statuses"),
        )


def _password(config: ConnectorConfig) -> str:
    password = config.secret("password")
    if len(password) > 8:
        raise ConfigError(f"connector {config.name!r}: password is longer than the 8 "
                          "characters SMPP 3.4 allows")
    return password


def _statuses(config: ConnectorConfig, key: str) -> frozenset[int]:
    value = config.option(key, [])
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 0xFFFFFFFF
            for v in value):
        raise ConfigError(f"connector {config.name!r}: {key} must be a list of "
                          "command_status numbers (e.g. [0x401, 0x402])")
    return frozenset(value)
