"""Sending outside the worker: proofs and ``msgcenter connector test``.

The worker keeps its connectors open in its channel loop; a proof or a connector test
sends a few messages and is done.  These helpers build the connectors in an event loop
of their own (``asyncio.run``), send through a :class:`~.failover.ConnectorSet` (so
limits, failover and the connector contract apply as in the worker), and close them.
Delivery receipts arriving meanwhile are not recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from soap_service.channels.failover import ConnectorSet
from soap_service.config import ConnectorConfig, Settings
from soap_service.models import Channel, ChannelMessage, EmailMessage, SendResult


async def _send(channel: Channel, configs: Sequence[ConnectorConfig],
                items: Sequence[tuple[ChannelMessage, str]]) -> list[SendResult]:
    connectors = ConnectorSet.from_configs(channel, configs)
    try:
        return list(await asyncio.gather(*(connectors.send(m, a) for m, a in items)))
    finally:
        await connectors.close()


def send_messages(settings: Settings, messages: Sequence[EmailMessage]) -> list[SendResult]:
    """Emails through the email channel's connectors (failover included), results in
    the order of ``messages``."""
    configs = settings.channel_connectors(Channel.EMAIL)
    return asyncio.run(_send(Channel.EMAIL, configs, [(m, m.to) for m in messages]))


def send_through(config: ConnectorConfig, message: ChannelMessage, address: str) -> SendResult:
    """One message through one connector, no failover (``msgcenter connector test``)."""
    [result] = asyncio.run(_send(config.channel, [config], [(message, address)]))
    return result
