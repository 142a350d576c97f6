"""Event data typed by people: a ``<ctx>`` from JSON or from an XML file or string.

Used by ``msgcenter push`` (``--ctx`` / ``--ctx-json``) and by seeds and previews. JSON maps
to XML the same way everywhere: objects are elements, lists repeat an element, ``"@name"``
keys are attributes and ``"#text"`` is an element's own text.  XML is parsed with the
hardened parser (``xmlsafe``).  Pure: no I/O beyond parsing the given text.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from lxml import etree

from soap_service.errors import ValidationFailed
from soap_service.xmlsafe import InvalidXml, local_name, parse_xml


def ctx_from_json(text: str) -> etree._Element:
    """JSON object text -> ``<ctx>`` element (``ValidationFailed`` if it cannot be one)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationFailed("JSON event data must be an object")
    ctx = etree.Element("ctx")
    try:
        _fill(ctx, data)
    except ValueError as exc:
        raise ValidationFailed(f"JSON key is not a valid XML name: {exc}") from exc
    return ctx


def ctx_from_xml(text: str, *, wrap_bare: bool = True) -> etree._Element:
    """The first ``<ctx>`` of an XML text — a ``<ctx>``, an event element or a whole SOAP
    request (still in its tree: ``getparent()`` is the event).  Without one, bare content
    such as ``<client/><order/>`` is wrapped in a new ``<ctx>`` when ``wrap_bare``, else
    refused."""
    try:
        root = parse_xml(text.strip())
    except InvalidXml as exc:
        if not wrap_bare:
            raise ValidationFailed(f"invalid XML: {exc.detail}") from exc
        root = None
    if root is not None:
        for el in root.iter():
            if local_name(el) == "ctx":
                return el
        if not wrap_bare:
            raise ValidationFailed("the XML has no <ctx> element")
    try:
        return parse_xml(f"<ctx>{text}</ctx>")
    except InvalidXml as exc:
        raise ValidationFailed(f"invalid XML: {exc.detail}") from exc


def ctx_text(ctx: etree._Element) -> str:
    """A ``<ctx>`` element as text, without the namespace declarations it does not use
    (an event taken out of a SOAP envelope carries the envelope's)."""
    clean = copy.deepcopy(ctx)
    clean.tail = None
    etree.cleanup_namespaces(clean)
    return etree.tostring(clean, encoding="unicode")


def _fill(el: etree._Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if key.startswith("@"):
                el.set(key[1:], _scalar(child))
            elif key == "#text":
                el.text = _scalar(child)
            else:
                for item in child if isinstance(child, list) else [child]:
                    _fill(etree.SubElement(el, key), item)
    else:
        el.text = _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
