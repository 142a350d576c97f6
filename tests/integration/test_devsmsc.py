"""`msgcenter devsmsc`: a development SMPP server, driven by smpplib's own blocking client
(a third-party peer: its PDUs, its GSM encoder, its UDH splitting) and by our connector."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
from conftest import ROOT, free_port, msgcenter_cmd
from dispatch_support import wait_until

import soap_service.channels.smpp  # noqa: F401  (registers the smpp kind)
from soap_service.channels.base import build_connector
from soap_service.config import ConnectorConfig
from soap_service.devsmsc import DevSmsc
from soap_service.models import Channel, Receipt, ReceiptState, SendOutcome, SmsMessage


class Peer:
    """smpplib's client, collecting submit_sm_resp ids and deliver_sm receipts."""

    def __init__(self, port: int, system_id: str = "shop", password: str = "pw") -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=5,
                                            allow_unknown_opt_params=True)
        self.ids: list[str] = []
        self.receipts: list[Any] = []
        self.client.set_message_sent_handler(lambda pdu: self.ids.append(
            pdu.message_id.decode()))
        self.client.set_message_received_handler(lambda pdu: self.receipts.append(pdu))
        self.client.connect()
        self.client.bind_transceiver(system_id=system_id, password=password)

    def send(self, text: str, to: str = "33612345678", receipt: bool = True) -> int:
        parts, coding, esm_class = smpplib.gsm.make_parts(text)
        for part in parts:
            self.client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="MyShop",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr=to,
                short_message=part, data_coding=coding, esm_class=esm_class,
                registered_delivery=receipt)
        return len(parts)

    def read_until(self, ids: int, receipts: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.ids) < ids or len(self.receipts) < receipts:
            assert time.monotonic() < deadline, "devsmsc did not answer in time"
            self.client.read_once()

    def close(self) -> None:
        self.client.unbind()
        self.client.disconnect()


def test_smpplib_client_sends_and_gets_receipts(tmp_path: Path) -> None:
    """A GSM text and a long UCS-2 text (smpplib's UDH parts): each stored once as a file
    with its text reassembled; one DELIVRD receipt per part naming the part's id."""
    long_text = "Ваш заказ отправлен, спасибо! " * 6
    with DevSmsc(port=0, directory=tmp_path, keep=True) as smsc:
        peer = Peer(smsc.port)
        try:
            parts = peer.send("Hello {world} 10€") + peer.send(long_text)
            peer.read_until(ids=parts, receipts=parts)
        finally:
            peer.close()
        stored = smsc.wait_for(2)
    assert parts == 4
    assert [(m.text, m.encoding) for m in stored] == [
        ("Hello {world} 10€", "GSM 03.38"), (long_text, "UCS-2")]
    assert [m.message_ids for m in stored] == [tuple(peer.ids[:1]), tuple(peer.ids[1:])]
    receipted = [r.receipted_message_id.decode() for r in peer.receipts]
    assert receipted == peer.ids
    assert all(r.message_state == 2 and b"stat:DELIVRD" in r.short_message
               for r in peer.receipts)
    files = sorted(tmp_path.glob("*.sms"))
    assert len(files) == 2 and not list(tmp_path.glob(".*.tmp"))
    first = files[0].read_text(encoding="utf-8")
    assert first.startswith("From: MyShop\nTo: +33612345678\nEncoding: GSM 03.38\nParts: 1\n"
                            f"Message-Id: {peer.ids[0]}\nReceived: ")
    assert first.endswith("\n\nHello {world} 10€\n")
    assert long_text in files[1].read_text(encoding="utf-8")


def test_no_receipt_unless_asked() -> None:
    """registered_delivery 0: an answer, no receipt."""
    with DevSmsc(port=0, keep=True) as smsc:
        peer = Peer(smsc.port)
        try:
            peer.send("quiet", receipt=False)
            peer.send("loud")
            peer.read_until(ids=2, receipts=1)
        finally:
            peer.close()
    assert [r.receipted_message_id.decode() for r in peer.receipts] == [peer.ids[1]]


def test_credentials_are_checked_when_configured() -> None:
    """With system_id/password set, a wrong password is refused with 0x0E."""
    with DevSmsc(port=0, system_id="shop", password="pw") as smsc:
        client = smpplib.client.Client("127.0.0.1", smsc.port, timeout=5,
                                       allow_unknown_opt_params=True)
        client.connect()
        try:
            with pytest.raises(smpplib.exceptions.PDUError) as refused:
                client.bind_transceiver(system_id="shop", password="nope")
        finally:
            client.disconnect()
        assert refused.value.args[1] == 0x0E
        Peer(smsc.port).close()


def test_our_connector_to_devsmsc() -> None:
    """The smpp connector sends a multi-part text through devsmsc; the receipts of every
    part reach the sink."""
    received: list[Receipt] = []
    text = "Votre commande est partie. " * 10
    with DevSmsc(port=0, keep=True) as smsc:
        connector = build_connector(ConnectorConfig(
            "dev", Channel.SMS, "smpp", options={"host": "127.0.0.1", "port": smsc.port,
                                                 "system_id": "mc", "source_addr": "MyShop"}),
            received.append)

        async def go() -> Any:
            try:
                result = await connector.send(SmsMessage(text=text, reference="r"),
                                              "+33612345678")
                deadline = time.monotonic() + 10
                while len(received) < len(result.part_ids) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                return result
            finally:
                await connector.close()
        result = asyncio.run(go())
        stored = smsc.wait_for(1)
    assert result.outcome is SendOutcome.SENT and len(result.part_ids) == 2
    assert (stored[0].text, stored[0].destination) == (text, "+33612345678")
    assert sorted(r.provider_id for r in received) == sorted(result.part_ids)
    assert {r.state for r in received} == {ReceiptState.DELIVERED}


def test_cli_devsmsc_stores_files(tmp_path: Path) -> None:
    """`msgcenter devsmsc --port P --dir D` serves SMPP and writes one .sms per message."""
    port = free_port()
    directory = tmp_path / "sms"
    proc = subprocess.Popen(msgcenter_cmd("devsmsc", "--port", str(port), "--dir",
                                          str(directory)),
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _port_open(port), 30, "devsmsc to listen")
        peer = Peer(port)
        try:
            peer.send("from the CLI")
            peer.read_until(ids=1, receipts=1)
        finally:
            peer.close()
        wait_until(lambda: len(list(directory.glob("*.sms"))) == 1, 10, "one .sms file")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert "from the CLI" in next(directory.glob("*.sms")).read_text(encoding="utf-8")


def test_cli_devsmsc_on_a_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    """A port another program holds: one error line, non-zero exit, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(msgcenter_cmd("devsmsc", "--port", str(port), "--dir",
                                            str(tmp_path / "sms")),
                              cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert f"devsmsc cannot start on 127.0.0.1:{port}" in line
    assert "SMPP on" not in proc.stdout


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
