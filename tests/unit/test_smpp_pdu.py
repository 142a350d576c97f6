"""SMPP PDU helpers: command statuses to outcomes, receipts read from deliver_sm PDUs that
smpplib built (text form, TLV form, both), and decoding what smpplib cannot parse."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from smpplib import smpp
from smpplib.client import SimpleSequenceGenerator

from soap_service.channels import smpp_pdu as wire
from soap_service.models import ReceiptState, SendOutcome


@pytest.mark.parametrize(("status", "outcome", "refused"), [
    (0x58, SendOutcome.TEMPORARY, False),
    (0x08, SendOutcome.TEMPORARY, False),
    (0x14, SendOutcome.TEMPORARY, False),
    (0x0B, SendOutcome.PERMANENT, True),
    (0x50, SendOutcome.PERMANENT, True),
    (0x0A, SendOutcome.PERMANENT, False),
    (0x01, SendOutcome.PERMANENT, False),
    (0x66, SendOutcome.PERMANENT, False),
    (0x123, SendOutcome.TEMPORARY, False),
])
def test_statuses_classify(status: int, outcome: SendOutcome, refused: bool) -> None:
    """Temporary, permanent, address refused; unknown codes are temporary."""
    kind = wire.classify_status(status)
    assert (kind.outcome, kind.address_refused) == (outcome, refused)
    assert kind.text.endswith(f"(0x{status:02X})")


def test_overrides_win() -> None:
    """A connector may declare a code permanent or temporary."""
    assert wire.classify_status(0x401, permanent=frozenset({0x401})).outcome \
        is SendOutcome.PERMANENT
    assert wire.classify_status(0x0A, temporary=frozenset({0x0A})).outcome \
        is SendOutcome.TEMPORARY


def deliver_sm(**fields: Any) -> wire.Pdu:
    pdu = smpp.make_pdu("deliver_sm", client=SimpleSequenceGenerator(), source_addr="336",
                        destination_addr="MyShop", data_coding=0, **fields)
    return wire.decode(pdu.generate())


RECEIPT = (b"id:A1B2 sub:001 dlvrd:001 submit date:2611201200 done date:2611201201 "
           b"stat:DELIVRD err:000 text:Your order")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"esm_class": 4, "short_message": RECEIPT},
     ("A1B2", "DELIVRD", ReceiptState.DELIVERED, "000",
      datetime(2026, 11, 20, 12, 1, tzinfo=UTC))),
    ({"esm_class": 4, "short_message": RECEIPT.replace(b"DELIVRD", b"UNDELIV")
      .replace(b"err:000", b"err:0B1").replace(b"2611201201", b"261120120159")},
     ("A1B2", "UNDELIV", ReceiptState.FAILED, "0B1",
      datetime(2026, 11, 20, 12, 1, 59, tzinfo=UTC))),
    ({"esm_class": 4, "short_message": b"", "receipted_message_id": "X9",
      "message_state": 8}, ("X9", "REJECTD", ReceiptState.FAILED, "", None)),
    ({"esm_class": 4, "short_message": RECEIPT, "receipted_message_id": "TLV-ID",
      "message_state": 3}, ("TLV-ID", "EXPIRED", ReceiptState.FAILED, "000",
                            datetime(2026, 11, 20, 12, 1, tzinfo=UTC))),
    ({"esm_class": 0x20, "short_message": b"id:77 stat:ENROUTE"},
     ("77", "ENROUTE", ReceiptState.PENDING, "", None)),
    ({"esm_class": 4, "short_message": b"id:77 stat:ACCEPTD done date:9999999999"},
     ("77", "ACCEPTD", ReceiptState.PENDING, "", None)),
    ({"esm_class": 4, "short_message": b"id:77 stat:DELETED"},
     ("77", "DELETED", ReceiptState.FAILED, "", None)),
    ({"esm_class": 4, "short_message": b"id:77 stat:WHATEVER"},
     ("77", "WHATEVER", ReceiptState.PENDING, "", None)),
    ({"esm_class": 4, "short_message": b"id:1 stat:UNDELIV err:001 text:id:2 stat:DELIVRD"},
     ("1", "UNDELIV", ReceiptState.FAILED, "001", None)),
])
def test_receipts_are_read(fields: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """Text and TLV receipts; the TLVs win; the quoted text: field is not read."""
    receipt = wire.parse_receipt(deliver_sm(**fields))
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.state, receipt.err, receipt.done) \
        == expected


@pytest.mark.parametrize("fields", [
    {"esm_class": 0, "short_message": b"STOP"},  # a mobile-originated message
    {"esm_class": 0, "short_message": RECEIPT},  # receipt-looking text, not flagged
    {"esm_class": 4, "short_message": b"stat:DELIVRD"},  # no id
    {"esm_class": 4, "short_message": b"id:5"},  # no state
])
def test_what_is_not_a_receipt(fields: dict[str, Any]) -> None:
    """Anything without the receipt flag (or TLV), an id and a state is not a receipt."""
    assert wire.parse_receipt(deliver_sm(**fields)) is None


def test_a_response_smpplib_cannot_parse_still_gives_its_message_id() -> None:
    """A submit_sm_resp with a TLV smpplib does not expect: header and id read by hand."""
    body = b"ABC123\0" + struct.pack(">HH", 0x001D, 3) + b"ok\0"
    raw = wire.HEADER.pack(16 + len(body), 0x80000004, 0, 42) + body
    pdu = wire.decode(raw)
    assert (pdu.command, pdu.sequence, pdu.status, pdu.message_id) \
        == ("submit_sm_resp", 42, 0, "ABC123")


def test_unknown_commands_decode_to_their_header() -> None:
    """An unknown command id: no body, a name from the id, still answerable."""
    pdu = wire.decode(wire.HEADER.pack(16, 0x00000099, 0, 7))
    assert (pdu.command, pdu.body, pdu.is_response, pdu.sequence) == ("0x00000099", None,
                                                                       False, 7)


@pytest.mark.parametrize("length", [0, 15, 70_000])
def test_impossible_lengths_are_refused(length: int) -> None:
    """A command_length under the header size or over 64 KiB is a broken stream."""
    with pytest.raises(ValueError):
        wire.read_length(struct.pack(">L", length))


def test_submit_sm_as_smpplib_reads_it() -> None:
    """The PDU we build, parsed by smpplib: every field where we put it."""
    raw = wire.submit_sm(9, source="MyShop", source_ton=5, source_npi=0,
                         destination="33612345678", dest_ton=1, dest_npi=1,
                         payload=b"\x05\x00\x03\x01\x02\x01hello", data_coding=0,
                         esm_class=0x40, registered_delivery=1, service_type="")
    pdu = smpp.parse_pdu(raw, client=SimpleSequenceGenerator())
    assert (pdu.command, pdu.sequence, pdu.source_addr, pdu.destination_addr) == (
        "submit_sm", 9, b"MyShop", b"33612345678")
    assert (pdu.esm_class, pdu.registered_delivery, pdu.sm_length) == (0x40, 1, 11)
    assert pdu.short_message == b"\x05\x00\x03\x01\x02\x01hello"
