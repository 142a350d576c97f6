"""SMS encoding and splitting: GSM 03.38 / UCS-2 choice, part sizes, UDH, character-safe cuts.

Expected bytes come from 3GPP TS 23.038 (the GSM default alphabet and its extension table)
and UTF-16BE, written out here, not computed by the code under test.
"""

from __future__ import annotations

import pytest

from soap_service.channels.sms_text import (
    GSM,
    UCS2,
    SmsTextError,
    count_parts,
    encode_text,
    split_text,
)


@pytest.mark.parametrize(("text", "encoding", "octets"), [
    ("Hello", GSM, b"Hello"),
    ("@£$¥è", GSM, bytes([0x00, 0x01, 0x02, 0x03, 0x04])),  # @ £ $ ¥ è
    ("§¿ÄÖÑÜà", GSM, bytes([0x5F, 0x60, 0x5B, 0x5C, 0x5D, 0x5E, 0x7F])),
    ("ΔΩ_", GSM, bytes([0x10, 0x15, 0x11])),
    ("€", GSM, bytes([0x1B, 0x65])),
    ("[]", GSM, bytes([0x1B, 0x3C, 0x1B, 0x3E])),
    ("{}^~|\\", GSM, bytes([0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x14, 0x1B, 0x3D, 0x1B, 0x40,
                            0x1B, 0x2F])),
    ("a\nb", GSM, b"a\nb"),
    ("`", UCS2, b"\x00`"),  # the grave accent is not in the GSM alphabet
    ("Привет", UCS2, "Привет".encode("utf-16-be")),
    ("é😀", UCS2, bytes([0x00, 0xE9, 0xD8, 0x3D, 0xDE, 0x00])),
    ("a\x1bb", UCS2, b"\x00a\x00\x1b\x00b"),  # a literal ESC would change the next character
])
def test_encoding_is_chosen_from_the_text(text: str, encoding: str, octets: bytes) -> None:
    """GSM when every character is in the default alphabet or its extension, else UCS-2."""
    assert encode_text(text) == (encoding, octets)


@pytest.mark.parametrize(("text", "parts", "first_chunk"), [
    ("a" * 160, 1, 160),
    ("a" * 161, 2, 153),
    ("a" * 306, 2, 153),
    ("a" * 307, 3, 153),
    ("€" * 80, 1, 160),  # 160 septets: one SMS
    ("€" * 81, 2, 152),  # a part never ends between ESC and its character
    ("a" + "€" * 80, 2, 153),
    ("я" * 70, 1, 140),
    ("я" * 71, 2, 134),
    ("😀" * 35, 1, 140),
    ("😀" * 36, 2, 132),  # never between the two halves of a surrogate pair
])
def test_long_texts_split_into_parts(text: str, parts: int, first_chunk: int) -> None:
    """Single SMS up to 160 septets / 140 octets; parts of 153 / 134 octets after the UDH."""
    sms = split_text(text, max_parts=10, reference=7)
    assert len(sms.payloads) == parts == count_parts(text)
    if parts == 1:
        assert sms.esm_class == 0
        assert len(sms.payloads[0]) == first_chunk
    else:
        assert sms.esm_class == 0x40
        assert len(sms.payloads[0]) == 6 + first_chunk


def test_parts_carry_a_udh_and_decode_on_their_own() -> None:
    """Each part: 05 00 03 ref total seq, then a chunk that decodes alone; together the text."""
    text = "Ваш заказ 😀 " * 20
    sms = split_text(text, max_parts=10, reference=300)
    total = len(sms.payloads)
    decoded = []
    for seq, payload in enumerate(sms.payloads, start=1):
        assert payload[:6] == bytes([0x05, 0x00, 0x03, 300 & 0xFF, total, seq])
        decoded.append(payload[6:].decode("utf-16-be"))  # strict: no broken pair
    assert "".join(decoded) == text
    assert (sms.encoding, sms.data_coding) == (UCS2, 0x08)


def test_gsm_parts_decode_on_their_own() -> None:
    """GSM parts split between characters: each chunk alone decodes without a dangling ESC."""
    import codecs

    text = "Prix: 10€ [promo] " * 12
    sms = split_text(text, max_parts=10, reference=1)
    chunks = [p[6:] for p in sms.payloads]
    assert not any(c.endswith(b"\x1b") for c in chunks)
    assert "".join(codecs.decode(c, "gsm03.38") for c in chunks) == text
    assert (sms.encoding, sms.data_coding, sms.label) == (GSM, 0x00, "GSM 03.38")


@pytest.mark.parametrize(("text", "max_parts", "problem"), [
    ("", 6, "the SMS text is empty"),
    ("a" * 154 * 2, 2, "the text needs 3 SMS parts (308 characters, GSM 03.38); "
                       "at most 2 are allowed (max_parts)"),
    ("я" * 71, 1, "the text needs 2 SMS parts (71 characters, UCS-2); "
                  "at most 1 are allowed (max_parts)"),
])
def test_unsendable_texts_are_refused_with_the_reason(text: str, max_parts: int,
                                                      problem: str) -> None:
    """Empty, or more parts than allowed: an error that says so."""
    with pytest.raises(SmsTextError) as caught:
        split_text(text, max_parts=max_parts, reference=0)
    assert str(caught.value) == problem
