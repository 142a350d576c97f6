"""The one hardened XML parser, for every XML that does not come from us.

SOAP requests, event ``<ctx>`` data (at ingest, from the CLI, seeds and files, and again
at render time) all go through :func:`parse_xml`: no DTD loading, no entity expansion,
no network, no huge trees (libxml2's own depth and size caps stay on), comments and
processing instructions dropped, one parser per thread (lxml parsers are not
thread-safe).  Any document carrying a DOCTYPE is refused (billion laughs, external
entities); :func:`parse_document` (the HTTP edge) also refuses nesting deeper than
``settings.max_xml_depth``.  Parser messages are kept short for a fault's ``detail``;
the document itself is never logged or echoed.  :func:`local_name` is the one way to
take a tag's namespace off.
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


def parse_xml(data: bytes | str) -> etree._Element:
    """Parse ``data`` with the hardened parser; its root element, or :class:`InvalidXml`
    (``detail``: the parser's message, kept short)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if _has_doctype(data):  # refused before libxml2 reads a single declaration
        raise InvalidXml("DTD not allowed", _DTD_REFUSED)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidXml("not well-formed", _short(str(exc))) from exc
    except ValueError as exc:  # e.g. an unsupported encoding declaration
        raise InvalidXml("not well-formed", _short(str(exc))) from exc
    docinfo = root.getroottree().docinfo  # a new object at each access: read once
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise InvalidXml("DTD not allowed", _DTD_REFUSED)
    return root


def parse_document(body: bytes, max_depth: int) -> etree._Element:
    """Parse a request body safely and return its root element, or raise
    :class:`InvalidXml` (also for an empty body, or one nested deeper than ``max_depth``)."""
    body = body.lstrip(b" \t\r\n")  # some clients send a newline before <?xml ...?>
    if not body:
        raise InvalidXml("empty body", "The request body is empty.")
    root = parse_xml(body)
    tree = root.getroottree()
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


def local_name(node: etree._Element | str) -> str:
    """An element's tag, or a tag or attribute name, without its namespace (``""`` for a
    comment or processing instruction)."""
    tag = node if isinstance(node, str) else node.tag
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
