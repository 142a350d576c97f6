"""The envelope address the smtp connector puts on MAIL FROM / RCPT TO: a plain address
takes a fast path, which must answer exactly what aiosmtplib's parser answers."""

from __future__ import annotations

import aiosmtplib.email
import pytest

from soap_service.channels.smtp import envelope_address

SAME = [
    "user@example.com",
    "  user@example.com  ",
    "first.last+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "x_y-z=1@a-b.example",
    "UPPER@EXAMPLE.COM",
    "a..b@example.com",  # not a dot-atom: the slow path decides
    ".a@example.com",
    "John Doe <john@example.com>",
    "<bounce+123@mc.example>",
    '"quoted local"@example.com',
    "user@[192.0.2.1]",
    "user",
    "user@localhost",
]


@pytest.mark.parametrize("address", SAME)
def test_same_answer_as_aiosmtplib(address: str) -> None:
    assert envelope_address(address) == aiosmtplib.email.parse_address(address)


@pytest.mark.parametrize("address", ["x@example.com>\r\nRCPT TO:<y@z", "a<b@example.com",
                                     'a"b@example.com', "a@b.com SIZE=1", "a@b.com\r\nDATA"])
def test_hostile_input_gets_aiosmtplib_answer_never_smtp_syntax(address: str) -> None:
    try:
        expected = aiosmtplib.email.parse_address(address)
    except ValueError:
        with pytest.raises(ValueError):
            envelope_address(address)
        return
    got = envelope_address(address)
    assert got == expected
    assert not any(c in got for c in " \r\n<>")
