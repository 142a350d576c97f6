"""Responses and faults written directly in the suite's exact form (SPEC §2.2, §2.6).

Whatever dialect came in, the answer is: ``SOAP-ENV`` as the envelope prefix, the result
element unprefixed with a default namespace (``<PushEventResponse xmlns="urn:nms:rtEvent">``),
scalar results typed with a literal ``xsi:type``, values with no surrounding whitespace,
DOM results typed ``ns:Element`` with the literalxml encoding style and their content
undeclared from the default namespace (``xmlns=""``: lxml would not write it), and faults
as ``SOAP-ENV:Fault`` with ``faultcode``, ``faultstring`` and ``detail``.  Some clients
(the suite's own SDK) compare these names literally, prefixes included.

Strings are assembled by hand: it is several times cheaper than a serialiser and the form
is fixed.  Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

ENVELOPE_OPEN = (
    '<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">\n'
    " <SOAP-ENV:Body>\n"
)
ENVELOPE_CLOSE = " </SOAP-ENV:Body>\n</SOAP-ENV:Envelope>"
LITERALXML = "http://xml.apache.org/xml-soap/literalxml"
CONTENT_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True)
class Scalar:
    """A typed scalar result: ``<plId xsi:type="xsd:long">42</plId>``."""

    name: str
    xsd_type: str
    value: str


@dataclass(frozen=True)
class Dom:
    """An XML result: an element (or pre-serialised, trusted XML text) inside ``name``."""

    name: str
    content: etree._Element | str | None


Part = Scalar | Dom


def _text(value: str) -> str:
    return escape(value)


def _dom_markup(content: etree._Element | str | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    markup = etree.tostring(content, encoding="unicode", with_tail=False)
    tag = content.tag
    if isinstance(tag, str) and not tag.startswith("{") and None not in content.nsmap:
        # No namespace: undeclare the response element's default namespace for it.
        name_end = len(tag) + 1
        markup = markup[:name_end] + ' xmlns=""' + markup[name_end:]
    return markup


def _part(part: Part, service: str) -> str:
    if isinstance(part, Scalar):
        return (
            f'   <{part.name} xsi:type="{part.xsd_type}">{_text(part.value)}</{part.name}>\n'
        )
    # As the suite does, ``ns`` is the service's namespace, where the WSDL declares the type
    # ``Element``: .NET's XmlSerializer rejects an xsi:type the WSDL does not declare.
    return (
        f'   <{part.name} xmlns:ns="urn:{service}" xsi:type="ns:Element" '
        f'SOAP-ENV:encodingStyle="{LITERALXML}">{_dom_markup(part.content)}</{part.name}>\n'
    )


def result_envelope(service: str, method: str, parts: list[Part]) -> bytes:
    """``<{method}Response xmlns="urn:{service}">`` with ``parts`` in order."""
    inner = "".join(_part(p, service) for p in parts)
    if inner:
        element = (
            f'  <{method}Response xmlns="urn:{service}">\n{inner}  </{method}Response>\n'
        )
    else:
        element = f'  <{method}Response xmlns="urn:{service}"/>\n'
    return (ENVELOPE_OPEN + element + ENVELOPE_CLOSE).encode("utf-8")


def fault_envelope(code: str, faultstring: str, detail: str = "") -> bytes:
    """A SOAP 1.1 fault; ``code`` is ``Client``, ``Server`` or ``VersionMismatch``."""
    element = (
        "  <SOAP-ENV:Fault>\n"
        f"   <faultcode>SOAP-ENV:{code}</faultcode>\n"
        f'   <faultstring xsi:type="xsd:string">{_text(faultstring)}</faultstring>\n'
        f'   <detail xsi:type="xsd:string">{_text(detail or faultstring)}</detail>\n'
        "  </SOAP-ENV:Fault>\n"
    )
    return (ENVELOPE_OPEN + element + ENVELOPE_CLOSE).encode("utf-8")


def ids_markup(ids: list[tuple[int, str | None]]) -> str:
    """The ``PushEvents`` result: ``<ids xmlns=""><id plId=".." externalId=".."/>...</ids>``."""
    items = []
    for plid, external_id in ids:
        extra = "" if external_id is None else f" externalId={quoteattr(external_id)}"
        items.append(f'<id plId="{plid}"{extra}/>')
    return '<ids xmlns="">' + "".join(items) + "</ids>"


def attr(value: str) -> str:
    """An attribute value, quoted and escaped (for handlers that build markup)."""
    return quoteattr(value)
