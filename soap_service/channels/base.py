"""The one delivery interface: every channel's connectors implement :class:`Connector`.

A connector sends one addressed message over one provider protocol (an SMTP relay, an
SMPP link, an HTTP SMS API, APNs, FCM) and answers with a
:class:`~soap_service.models.SendResult` value — accepted (with the provider's message
id), temporary failure or permanent failure, with the provider's code and text.  It never
raises for a delivery problem, and it never decides what an outcome means for the event
(retry, give up, quarantine): that is the worker's job.

Connectors are created from a :class:`~soap_service.config.ConnectorConfig` by the
factory registered for their ``kind`` (:func:`register_kind`; the built-in kinds are
imported on first use, :data:`KIND_MODULES`, so nothing loads httpx or aiosmtplib for a
channel that has no connector of that kind), live inside one running
asyncio event loop (the worker's channel loop), and are closed on that loop.  Delivery
receipts that arrive later on the connector's own link (SMPP ``deliver_sm``) are handed to
the ``on_receipt`` callback given at creation; it is called on the loop and must not block.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import Channel, ChannelMessage, Receipt, SendResult

ReceiptSink = Callable[[Receipt], None]


@runtime_checkable
class Connector(Protocol):
    """One provider link of one channel."""

    config: ConnectorConfig

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        """Send ``message`` to ``address``; the outcome is a value, never an exception.

        ``urgent`` messages (real-time events) go ahead of non-urgent ones waiting for the
        connector's concurrency slots.
        """
        ...

    async def close(self) -> None:
        """Release connections (unbind, QUIT, close HTTP clients); best effort."""
        ...


ConnectorFactory = Callable[[ConnectorConfig, ReceiptSink | None], Connector]

_KINDS: dict[str, tuple[Channel, ConnectorFactory]] = {}

# The built-in kinds and the module that registers each (imported when first needed).
KIND_MODULES: dict[str, str] = {
    "smtp": "soap_service.channels.smtp",
    "smpp": "soap_service.channels.smpp",
    "http-sms": "soap_service.channels.http_sms",
    "apns": "soap_service.channels.apns",
    "fcm": "soap_service.channels.fcm",
}


def register_kind(kind: str, channel: Channel, factory: ConnectorFactory) -> None:
    """Make ``kind`` (``smtp``, ``smpp``, ``http-sms``, ``apns``, ``fcm``) buildable."""
    _KINDS[kind] = (channel, factory)


def known_kinds() -> dict[str, Channel]:
    """Every buildable kind and its channel (the built-in ones imported)."""
    for kind in KIND_MODULES:
        _load(kind)
    return {kind: channel for kind, (channel, _factory) in _KINDS.items()}


def _load(kind: str) -> tuple[Channel, ConnectorFactory] | None:
    if kind not in _KINDS and kind in KIND_MODULES:
        importlib.import_module(KIND_MODULES[kind])
    return _KINDS.get(kind)


def build_connector(config: ConnectorConfig, on_receipt: ReceiptSink | None = None) -> Connector:
    """A connector for ``config``; a kind nobody registered, or on another channel, is a
    configuration error naming the connector."""
    entry = _load(config.kind)
    if entry is None:
        kinds = sorted(set(_KINDS) | set(KIND_MODULES))
        raise ConfigError(f"connector {config.name!r}: unknown kind {config.kind!r} "
                          f"(one of {', '.join(kinds)})")
    channel, factory = entry
    if channel is not config.channel:
        raise ConfigError(f"connector {config.name!r}: kind {config.kind!r} sends "
                          f"{channel.value}, not {config.channel.value}")
    return factory(config, on_receipt)
