"""Connector building: the smpp kind's options validated at build time, and the urgent-first
concurrency slots every SMS connector uses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import soap_service.channels.http_sms  # registers http-sms
import soap_service.channels.smpp  # noqa: F401
from soap_service.channels.base import build_connector, known_kinds
from soap_service.channels.slots import Slots
from soap_service.channels.smpp import SmppConnector
from soap_service.config import ConnectorConfig, parse_connectors
from soap_service.errors import ConfigError
from soap_service.models import Channel

BASE = {"host": "smsc.example.net", "system_id": "mc", "password": "pw",
        "source_addr": "MyShop"}


def smpp_config(**options: Any) -> ConnectorConfig:
    return ConnectorConfig("smsc-a", Channel.SMS, "smpp", options=BASE | options)


def test_the_sms_kinds_are_registered() -> None:
    """Importing the modules registers smpp and http-sms on the SMS channel."""
    assert known_kinds()["smpp"] is Channel.SMS
    assert known_kinds()["http-sms"] is Channel.SMS


def test_a_toml_table_builds_an_smpp_connector(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Any) -> None:
    """SPEC §7's example table, the password from a file; defaults where unset."""
    secret = tmp_path / "smsc.pw"
    secret.write_text("s3cret\n")
    (config,) = parse_connectors([{
        "name": "smsc-a", "channel": "sms", "kind": "smpp", "host": "smsc.example.net",
        "port": 2775, "system_id": "mc", "password_file": str(secret), "system_type": "",
        "source_addr": "MyShop", "source_ton": 5, "source_npi": 0, "priority": 1}])
    connector = build_connector(config)
    assert isinstance(connector, SmppConnector)
    options = connector.options
    assert (options.password, options.port, options.window, options.max_parts) == (
        "s3cret", 2775, 10, 6)
    assert "s3cret" not in repr(config) and "s3cret" not in repr(options)


def test_http_sms_options_never_show_their_secrets() -> None:
    """The token and callback secret stay out of repr (and so out of any log line)."""
    connector = build_connector(ConnectorConfig("h", Channel.SMS, "http-sms", options={
        "url": "https://sms.example.net", "token": "tok-SECRET",
        "callback_secret": "cb-SECRET"}))
    shown = repr(connector.options)  # type: ignore[attr-defined]
    assert "SECRET" not in shown and "sms.example.net" in shown


@pytest.mark.parametrize(("options", "problem"), [
    ({"host": ""}, "host is required"),
    ({"system_id": ""}, "system_id is required"),
    ({"system_id": "x" * 16}, "system_id is longer than 15 characters"),
    ({"password": "123456789"}, "password is longer than the 8 characters"),
    ({"port": 70000}, "port must be a whole number from 1 to 65535"),
    ({"window": 0}, "window must be a whole number from 1 to 1000"),
    ({"max_parts": 256}, "max_parts must be a whole number from 1 to 255"),
    ({"source_addr": "A very long sender"}, "source_addr must be a number"),
    ({"registered_delivery": "yes"}, "registered_delivery must be true or false"),
    ({"permanent_statuses": ["0x401"]}, "permanent_statuses must be a list"),
    ({"passwrd": "x"}, "unknown option(s) passwrd"),
    ({"password": "", "password_env": "MC_TEST_UNSET_VAR"}, "MC_TEST_UNSET_VAR"),
])
def test_bad_smpp_options_are_refused_at_build(options: dict[str, Any], problem: str) -> None:
    """One line naming the connector and the option; never the password's value."""
    with pytest.raises(ConfigError) as caught:
        build_connector(smpp_config(**options))
    assert "'smsc-a'" in caught.value.message and problem in caught.value.message
    assert "123456789" not in caught.value.message


def test_a_kind_on_the_wrong_channel_is_refused() -> None:
    """smpp sends SMS, not push."""
    with pytest.raises(ConfigError, match="sends sms, not push"):
        build_connector(ConnectorConfig("x", Channel.PUSH, "smpp", options=BASE))


def test_slots_serve_urgent_waiters_first_and_survive_cancellation() -> None:
    """With every slot taken: urgent waiters before older batch waiters; a cancelled waiter
    gives up its place without losing a slot."""
    async def go() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        await slots.acquire()

        async def wait(name: str, urgent: bool) -> None:
            async with slots.take(urgent):
                order.append(name)

        tasks = {name: asyncio.ensure_future(wait(name, urgent)) for name, urgent in
                 [("b1", False), ("gone", False), ("b2", False), ("u1", True)]}
        while slots.waiting < 4:
            await asyncio.sleep(0)
        tasks["gone"].cancel()
        slots.release()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert (slots.busy, slots.waiting) == (0, 0)
        return order

    assert asyncio.run(go()) == ["u1", "b1", "b2"]
