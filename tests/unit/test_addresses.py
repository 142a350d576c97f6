"""The one email-address check (events at ingest, seeds, From / Reply-To, proof targets)."""

from __future__ import annotations

import pytest

from soap_service.addresses import is_email_address


@pytest.mark.parametrize("address", [
    "a@example.com", "first.last+tag@mail.example.co.uk", "x_y-z@a-b.example",
    "o'neil@example.org", "1@2.example",
])
def test_accepted(address: str) -> None:
    """Ordinary addresses, with dots, plus tags, apostrophes and hyphenated domains."""
    assert is_email_address(address)


@pytest.mark.parametrize("address", [
    "", "a", "@example.com", "a@", "a@b", "root@localhost", "a b@example.com",
    "a@exa mple.com", "a@@example.com", "<a@example.com>", "a@example.com\n",
    '"quoted"@example.com', "a@[192.0.2.1]", "a@-example.com", "a@example-.com",
    "a@example..com", "a,b@example.com", "a;b@example.com", "a@bücher.example",
])
def test_refused(address: str) -> None:
    """No single-label domain, no spaces, brackets, quotes, separators, address literals,
    empty labels or non-ASCII domains; nothing after the address (a newline neither)."""
    assert not is_email_address(address)
