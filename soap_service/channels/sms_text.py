"""SMS text on the wire (pure): GSM 03.38 or UCS-2, and concatenated parts with a UDH.

A text whose every character is in the GSM 03.38 default alphabet or its extension table
(``€ [ ] { } ^ ~ | \\`` and form feed, each two septets: ESC + code) is sent as GSM
(``data_coding`` 0, one septet per octet, unpacked, as SMPP carries it); anything else
(emoji, Cyrillic, CJK...) as UCS-2 (``data_coding`` 8, UTF-16 big-endian, so characters
outside the BMP take two code units).  The codec is the ``gsm0338`` package's.

One SMS holds 160 GSM septets or 140 octets of UCS-2 (70 code units).  A longer text is
split into parts that each start with a 6-octet user data header (IEI 0x00: 8-bit
reference, total, sequence), leaving 153 septets or 134 octets (67 code units) per part,
and the ``esm_class`` UDHI bit (0x40) is set.  Parts are cut on character boundaries:
never between an escape and its character, nor inside a UTF-16 surrogate pair, so each
part decodes on its own.  No I/O here.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM = "gsm"
UCS2 = "ucs2"
DATA_CODING = {GSM: 0x00, UCS2: 0x08}
ESM_UDHI = 0x40
_SINGLE = {GSM: 160, UCS2: 140}  # octets in one SMS (GSM: one septet per octet)
_PER_PART = {GSM: 153, UCS2: 134}  # octets per part after the 6-octet UDH
_ESC = 0x1B


class SmsTextError(ValueError):
    """A text that cannot be sent (empty, or more parts than allowed); the message is
    short and names the problem."""


@dataclass(frozen=True)
class SmsParts:
    """A text ready for ``submit_sm``: one payload per part (each with its UDH when there
    are several), the encoding and the PDU flags it needs."""

    encoding: str  # GSM | UCS2
    payloads: tuple[bytes, ...]
    chars: int  # characters of the text

    @property
    def data_coding(self) -> int:
        return DATA_CODING[self.encoding]

    @property
    def esm_class(self) -> int:
        return ESM_UDHI if len(self.payloads) > 1 else 0

    @property
    def label(self) -> str:
        return "GSM 03.38" if self.encoding == GSM else "UCS-2"


def encode_text(text: str) -> tuple[str, bytes]:
    """``(GSM, septets)`` when the whole text fits the GSM alphabet, else ``(UCS2, octets)``."""
    if "\x1b" not in text:  # a literal ESC would turn the next character into another one
        try:
            return GSM, codecs.encode(text, "gsm03.38")
        except UnicodeEncodeError:
            pass
    return UCS2, text.encode("utf-16-be")


def decode_text(encoding: str, data: bytes) -> str:
    """The inverse of :func:`encode_text` (``devsmsc`` uses it on reassembled parts)."""
    if encoding == GSM:
        return codecs.decode(data, "gsm03.38", errors="replace")
    return data.decode("utf-16-be", errors="replace")


def count_parts(text: str) -> int:
    """How many SMS the text takes (1 for a short one)."""
    encoding, data = encode_text(text)
    if len(data) <= _SINGLE[encoding]:
        return 1
    return len(_cut(data, encoding))


def split_text(text: str, *, max_parts: int, reference: int) -> SmsParts:
    """The text as ``submit_sm`` payloads; ``reference`` (0-255) ties the parts together.

    Raises :class:`SmsTextError` for an empty text or one needing more than ``max_parts``.
    """
    if not text:
        raise SmsTextError("the SMS text is empty")
    encoding, data = encode_text(text)
    if len(data) <= _SINGLE[encoding]:
        return SmsParts(encoding, (data,), len(text))
    chunks = _cut(data, encoding)
    if len(chunks) > max_parts:
        label = "GSM 03.38" if encoding == GSM else "UCS-2"
        raise SmsTextError(f"the text needs {len(chunks)} SMS parts ({len(text)} characters, "
                           f"{label}); at most {max_parts} are allowed (max_parts)")
    total = len(chunks)
    payloads = tuple(bytes((0x05, 0x00, 0x03, reference & 0xFF, total, seq)) + chunk
                     for seq, chunk in enumerate(chunks, start=1))
    return SmsParts(encoding, payloads, len(text))


def _cut(data: bytes, encoding: str) -> list[bytes]:
    """Chunks of at most one part's size, cut between characters."""
    size = _PER_PART[encoding]
    chunks: list[bytes] = []
    start = i = 0
    while i < len(data):
        unit = _unit(data, i, encoding)
        if i + unit - start > size:
            chunks.append(data[start:i])
            start = i
        i += unit
    chunks.append(data[start:])
    return chunks


def _unit(data: bytes, i: int, encoding: str) -> int:
    """Octets of the character starting at ``i``."""
    if encoding == GSM:
        return 2 if data[i] == _ESC and i + 1 < len(data) else 1
    high_surrogate = 0xD8 <= data[i] <= 0xDB and i + 3 < len(data)
    return 4 if high_surrogate else 2
