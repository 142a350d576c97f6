"""Hardened XML parsing for everything that arrives over HTTP.

One parser configuration for the whole edge: no DTD loading, no entity expansion, no
network, no huge trees (libxml2's own depth and size caps stay on), comments and
processing instructions dropped.  On top of that, any document carrying a DOCTYPE is
refused (billion laughs, external entities) and nesting deeper than
``settings.max_xml_depth`` is refused.  Parser messages are kept short for the fault
``detail``; the body itself is never logged or echoed.
"""

from __future__ import annotations

import re
import threading
from functools import cache

from lxml import etree

from soap_service.errors import ClientError


class InvalidXml(ClientError):
    """The body is not well-formed XML, carries a DTD, or is nested too deeply."""


class BodyTooLarge(ClientError):
    """The request body is over ``settings.max_body_bytes`` (never truncated)."""


_local = threading.local()
_ELEMENT_START = re.compile(rb"<[A-Za-z_:\x80-\xff]")
_DTD_REFUSED = "Document type declarations (DTD) are not accepted."


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers are not thread-safe)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


@cache
def _too_deep(max_depth: int) -> etree.XPath:
    """An XPath that is true when an element sits deeper than ``max_depth``."""
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def parse_document(body: bytes, max_depth: int) -> etree._Element:
    """Parse ``body`` safely and return its root element, or raise :class:`InvalidXml`."""
    body = body.lstrip(b" \t\r\n")  # some clients send a newline before <?xml ...?>
    if not body:
        raise InvalidXml("empty body", "The request body is empty.")
    if _has_doctype(body):  # refused before libxml2 reads a single declaration
        raise InvalidXml("DTD not allowed", _DTD_REFUSED)
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidXml("not well-formed", _short(str(exc))) from exc
    except ValueError as exc:  # e.g. an unsupported encoding declaration
        raise InvalidXml("not well-formed", _short(str(exc))) from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise InvalidXml("DTD not allowed", _DTD_REFUSED)
    if _too_deep(max_depth)(tree):
        raise InvalidXml(
            "nesting too deep", f"Elements are nested deeper than the limit of {max_depth}."
        )
    return root


def _has_doctype(body: bytes) -> bool:
    """A ``<!DOCTYPE`` in the prolog (before the first element); other encodings than
    ASCII-compatible ones are caught after parsing, behind libxml2's own entity guards."""
    index = body.find(b"<!DOCTYPE")
    return index >= 0 and _ELEMENT_START.search(body, 0, index) is None


def local_name(element: etree._Element) -> str:
    """The tag without its namespace."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def namespace_of(element: etree._Element) -> str:
    tag = element.tag
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].partition("}")[0]
    return ""


def child_elements(element: etree._Element) -> list[etree._Element]:
    """Element children only (no comments, PIs or entity references)."""
    return [c for c in element if isinstance(c.tag, str)]


def text_of(element: etree._Element | None) -> str:
    """Whole text content, stripped (a token or a login may arrive split by comments)."""
    if element is None:
        return ""
    return "".join(element.itertext()).strip()
