"""SMPP 3.4 PDUs for the ``smpp`` connector (pure): building, decoding, statuses, receipts.

PDU bodies are encoded and decoded by ``smpplib``'s command classes (a mature library; its
blocking client does not fit an asyncio connector, its PDU classes do).  Around them:

* the 16-octet header is read here with ``struct`` (a PDU smpplib cannot parse still has
  a status and a sequence number we must answer or match);
* :func:`classify_status` maps a ``command_status`` to temporary or permanent, and says
  when the destination itself was refused;
* :func:`parse_receipt` reads a delivery receipt from a ``deliver_sm``: the
  ``receipted_message_id`` and ``message_state`` TLVs when present, else the de-facto
  standard text ``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:...``.

No I/O here.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smpplib import command_codes, consts, smpp

from soap_service.models import ReceiptState, SendOutcome

HEADER = struct.Struct(">LLLL")  # command_length, command_id, command_status, sequence
MAX_PDU = 64 * 1024  # octets; a longer command_length is a broken stream, not a PDU
MAX_SEQUENCE = 0x7FFFFFFF

COMMAND_NAMES = {code: name for name, code in command_codes.commands.items()}
RESPONSE_BIT = 0x80000000

# --------------------------------------------------------------------- statuses

THROTTLED = 0x58
ADDRESS_STATUSES = frozenset({
    0x0B,  # invalid destination address
    0x50,  # invalid destination TON
    0x51,  # invalid destination NPI
})
TEMPORARY_STATUSES = frozenset({
    0x04,  # incorrect bind status (our link is confused: reconnect and retry)
    0x08,  # system error
    0x14,  # message queue full
    0x45,  # submit_sm failed (SMSC-side, unspecified)
    THROTTLED,
    0x64,  # ESME received temporary application error
    0xFF,  # unknown error
})
PERMANENT_STATUSES = frozenset({
    0x01,  # invalid message length
    0x02, 0x03,  # invalid command length / id (our PDU is wrong: resending will not help)
    0x06, 0x07,  # invalid priority / registered_delivery flag
    0x0A,  # invalid source address
    0x15,  # invalid service type
    0x43,  # invalid esm_class
    0x48, 0x49,  # invalid source TON / NPI
    0x61, 0x62, 0x63,  # invalid schedule / expiry / predefined message
    0x65, 0x66,  # permanent application error / message rejected
    0xC0, 0xC1, 0xC2, 0xC3, 0xC4,  # optional parameter errors
}) | ADDRESS_STATUSES


@dataclass(frozen=True)
class StatusClass:
    outcome: SendOutcome
    address_refused: bool
    text: str


def describe_status(status: int) -> str:
    return f"{consts.DESCRIPTIONS.get(status, 'SMSC error')} (0x{status:02X})"


def classify_status(status: int, *, permanent: frozenset[int] = frozenset(),
                    temporary: frozenset[int] = frozenset()) -> StatusClass:
    """A non-zero ``command_status`` as an outcome.  ``permanent``/``temporary`` are the
    connector's overrides (vendor codes 0x400-0x4FF); codes nobody knows are temporary, so
    an unknown refusal is retried a bounded number of times rather than lost at once."""
    if status in temporary:
        outcome = SendOutcome.TEMPORARY
    elif status in permanent or status in PERMANENT_STATUSES:
        outcome = SendOutcome.PERMANENT
    else:
        outcome = SendOutcome.TEMPORARY
    refused = outcome is SendOutcome.PERMANENT and status in ADDRESS_STATUSES
    return StatusClass(outcome, refused, describe_status(status))


# --------------------------------------------------------------------- building


class _NoSequence:
    """smpplib asks its client for sequence numbers; ours are set on each PDU instead."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_CLIENT = _NoSequence()


def _make(command: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpp.make_pdu(command, client=_CLIENT, **fields)
    pdu.sequence = sequence  # smpplib ignores a sequence= keyword once its client has one
    return bytes(pdu.generate())


def bind_transceiver(sequence: int, *, system_id: str, password: str,
                     system_type: str) -> bytes:
    return _make("bind_transceiver", sequence, system_id=system_id, password=password,
                 system_type=system_type, addr_ton=0, addr_npi=0, address_range="")


def submit_sm(sequence: int, *, source: str, source_ton: int, source_npi: int,
              destination: str, dest_ton: int, dest_npi: int, payload: bytes,
              data_coding: int, esm_class: int, registered_delivery: int,
              service_type: str = "") -> bytes:
    return _make("submit_sm", sequence, service_type=service_type,
                 source_addr_ton=source_ton, source_addr_npi=source_npi, source_addr=source,
                 dest_addr_ton=dest_ton, dest_addr_npi=dest_npi, destination_addr=destination,
                 esm_class=esm_class, protocol_id=0, priority_flag=0,
                 schedule_delivery_time="", validity_period="",
                 registered_delivery=registered_delivery, replace_if_present_flag=0,
                 data_coding=data_coding, sm_default_msg_id=0, short_message=payload)


def enquire_link(sequence: int) -> bytes:
    return _make("enquire_link", sequence)


def unbind(sequence: int) -> bytes:
    return _make("unbind", sequence)


def response(command: str, sequence: int, status: int = 0) -> bytes:
    """A body-less response (``enquire_link_resp``, ``unbind_resp``, ``generic_nack``,
    ``deliver_sm_resp`` — whose message_id is unused and sent empty)."""
    if command == "deliver_sm_resp":
        return HEADER.pack(17, 0x80000005, status, sequence) + b"\0"
    return HEADER.pack(16, command_codes.get_command_code(command), status, sequence)


# --------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Pdu:
    """A received PDU: the header, and smpplib's parsed command (``None`` when smpplib
    could not parse the body)."""

    command_id: int
    status: int
    sequence: int
    body: Any
    raw: bytes

    @property
    def command(self) -> str:
        return COMMAND_NAMES.get(self.command_id, f"0x{self.command_id:08X}")

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def message_id(self) -> str:
        """``submit_sm_resp``'s message_id, read by hand if smpplib could not."""
        value = getattr(self.body, "message_id", None)
        if value is None and self.body is None and len(self.raw) > 16:
            value = self.raw[16:].split(b"\0", 1)[0]
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
        return str(value or "")


def read_length(head: bytes) -> int:
    """``command_length`` from the first 4 octets; ValueError when it cannot be a PDU."""
    (length,) = struct.unpack(">L", head)
    if not 16 <= length <= MAX_PDU:
        raise ValueError(f"command_length {length} out of range")
    return int(length)


def decode(raw: bytes) -> Pdu:
    _length, command_id, status, sequence = HEADER.unpack_from(raw)
    body = None
    if command_id in COMMAND_NAMES:
        try:
            body = smpp.parse_pdu(raw, client=_CLIENT, allow_unknown_opt_params=True)
        except Exception:  # (smpplib raises KeyError/struct.error/...)
            body = None
    return Pdu(command_id, status, sequence, body, raw)


# --------------------------------------------------------------------- receipts

RECEIPT_STATES = {
    "DELIVRD": ReceiptState.DELIVERED,
    "DELIVERED": ReceiptState.DELIVERED,
    "UNDELIV": ReceiptState.FAILED,
    "UNDELIVERABLE": ReceiptState.FAILED,
    "REJECTD": ReceiptState.FAILED,
    "REJECTED": ReceiptState.FAILED,
    "EXPIRED": ReceiptState.FAILED,
    "DELETED": ReceiptState.FAILED,
    "SKIPPED": ReceiptState.FAILED,  # SMPP 5: never sent
    "ENROUTE": ReceiptState.PENDING,
    "ACCEPTD": ReceiptState.PENDING,
    "ACCEPTED": ReceiptState.PENDING,
    "UNKNOWN": ReceiptState.PENDING,
}
# message_state TLV values (SMPP 3.4 §5.2.28) -> the receipt text's stat names
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD", 9: "SKIPPED"}
_RECEIPT_TYPES = {0x04, 0x20}  # esm_class message type: SMSC receipt, intermediate notice
_FIELD = re.compile(rb"(?i)\b(id|stat|err|done date):(\S+)")


@dataclass(frozen=True)
class ReceiptFields:
    message_id: str
    stat: str
    state: ReceiptState
    err: str
    done: datetime | None


def parse_receipt(pdu: Pdu) -> ReceiptFields | None:
    """The receipt a ``deliver_sm`` carries, or ``None`` for any other ``deliver_sm``
    (a mobile-originated message, or a receipt without an id)."""
    body = pdu.body
    if body is None:
        return None
    tlv_id = _text(getattr(body, "receipted_message_id", None))
    tlv_state = getattr(body, "message_state", None)
    is_receipt = ((getattr(body, "esm_class", 0) or 0) & 0x3C) in _RECEIPT_TYPES
    if not is_receipt and not tlv_id:
        return None
    fields: dict[str, str] = {}
    # the text: field quotes the message's start, which may itself contain "id:" or "stat:"
    head = re.split(rb"(?i)\btext:", _payload(body), maxsplit=1)[0]
    for match in _FIELD.finditer(head):
        fields.setdefault(match.group(1).lower().decode(),
                          match.group(2).decode("ascii", errors="replace"))
    message_id = tlv_id or fields.get("id", "")
    stat = MESSAGE_STATES.get(tlv_state, "") if isinstance(tlv_state, int) else ""
    stat = stat or fields.get("stat", "").upper()
    if not message_id or not stat:
        return None
    state = RECEIPT_STATES.get(stat, ReceiptState.PENDING)
    return ReceiptFields(message_id, stat, state, fields.get("err", ""),
                         _done_date(fields.get("done date", "")))


def _payload(body: Any) -> bytes:
    value = getattr(body, "short_message", None) or getattr(body, "message_payload", None)
    return value if isinstance(value, bytes) else b""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.rstrip(b"\0").decode("ascii", errors="replace")
    return str(value or "")


def _done_date(raw: str) -> datetime | None:
    """``YYMMDDhhmm`` (SMPP 3.4 appendix B) or ``YYMMDDhhmmss``; the SMSC's clock, taken
    as UTC; ``None`` when it does not parse."""
    for fmt, size in (("%y%m%d%H%M%S", 12), ("%y%m%d%H%M", 10)):
        if len(raw) == size and raw.isdigit():
            try:
                return datetime.strptime(raw, fmt).replace(tzinfo=UTC)
            except ValueError:
                return None
    return None
