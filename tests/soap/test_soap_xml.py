"""Hardened parsing: DTDs, entities, depth and garbage are refused, never expanded."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service.xmlsafe import InvalidXml, parse_document

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "soap"


def test_well_formed_envelope_parses() -> None:
    """A plain envelope parses to its root element."""
    root = parse_document((FIXTURES / "push_doclit_prefixed.xml").read_bytes(), 64)
    assert root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"


def test_leading_whitespace_before_declaration_is_tolerated() -> None:
    """A newline before the XML declaration (seen from some clients) does not fail the call."""
    body = b"\r\n  " + (FIXTURES / "push_rpc_encoded.xml").read_bytes()
    assert parse_document(body, 64).tag.endswith("}Envelope")


@pytest.mark.parametrize("body", [b"", b"   \n", b"not xml", b"<a><b></a>", b"\xff\xfe<a/>"])
def test_garbage_is_invalid(body: bytes) -> None:
    """Empty, blank and malformed bodies raise InvalidXml with a parser message."""
    with pytest.raises(InvalidXml) as info:
        parse_document(body, 64)
    assert info.value.detail


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml", "external_dtd.xml"])
def test_any_dtd_is_refused(name: str) -> None:
    """Any DOCTYPE (entity bombs, external entities, external DTDs) is refused."""
    with pytest.raises(InvalidXml) as info:
        parse_document((FIXTURES / name).read_bytes(), 64)
    assert "DTD" in info.value.detail
    assert "root:" not in info.value.detail  # /etc/passwd never leaks


def test_depth_limit() -> None:
    """Nesting deeper than max_depth is refused; exactly max_depth is accepted."""
    def nested(depth: int) -> bytes:
        return b"<a>" * depth + b"</a>" * depth

    parse_document(nested(10), 10)
    with pytest.raises(InvalidXml) as info:
        parse_document(nested(11), 10)
    assert "deeper" in info.value.detail


def test_libxml_depth_cap_without_our_limit() -> None:
    """Even with a huge configured limit, libxml2's own depth cap still refuses the body."""
    depth = 5000
    with pytest.raises(InvalidXml):
        parse_document(b"<a>" * depth + b"</a>" * depth, 100_000)
