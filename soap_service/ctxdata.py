"""Event data typed by people: a ``<ctx>`` from JSON or from an XML file or string.

Used by ``msgcenter push`` (``--ctx`` / ``--ctx-json``), by seeds and previews, and by the
REST API (both ways: :func:`ctx_to_json` shows a SOAP event's ``<ctx>`` as JSON). JSON maps
to XML the same way everywhere: objects are elements, lists repeat an element, ``"@name"``
keys are attributes and ``"#text"`` is an element's own text.  XML is parsed with the
hardened parser (``xmlsafe``).  Pure: no I/O beyond parsing the given text.
"""

from __future__ import annotations

import copy
import functools
import json
import re
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
        fill_ctx(ctx, data)
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
    if ctx.tail is None and not ctx.nsmap:  # nothing to clean (JSON events): no copy
        return etree.tostring(ctx, encoding="unicode")
    clean = copy.deepcopy(ctx)
    clean.tail = None
    etree.cleanup_namespaces(clean)
    return etree.tostring(clean, encoding="unicode")


def fill_ctx(el: etree._Element, value: Any) -> None:
    """Fill ``el`` from a JSON value; ``ValueError`` for a key that is not an XML name.

    On the REST ingest path (every event's ctx): exact type checks, strings first."""
    if type(value) is dict:
        sub = etree.SubElement
        for key, child in value.items():
            if key[:1] == "@":
                el.set(key[1:], child if type(child) is str else _scalar(child))
            elif key == "#text":
                el.text = child if type(child) is str else _scalar(child)
            elif type(child) is list:
                for item in child:
                    fill_ctx(sub(el, key), item)
            elif type(child) is str:
                sub(el, key).text = child
            else:
                fill_ctx(sub(el, key), child)
    elif isinstance(value, dict):  # a dict subclass: the slow path, same result
        fill_ctx(el, dict(value))
    else:
        el.text = value if type(value) is str else _scalar(value)


_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# characters XML 1.0 cannot carry (control characters, lone surrogates, U+FFFE/U+FFFF)
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})


@functools.lru_cache(maxsize=4096)  # a few names, met again and again (every event's ctx)
def _is_name(name: str) -> bool:
    if _ASCII_NAME.fullmatch(name):
        return True
    if not name or ":" in name:
        return False
    try:
        etree.Element(name)  # libxml2's own judgement for the rest
    except ValueError:
        return False
    return True


def xml_name(name: str) -> str:
    """``name`` if it is an XML name without a namespace prefix, else ``ValueError``
    (ASCII names by a pattern; others as libxml2 judges them)."""
    if _is_name(name):
        return name
    raise ValueError(f"{name[:64]!r} is not a valid XML name")


def text_xml(value: str) -> str:
    return value.translate(_TEXT_ESCAPES)


def attribute_xml(value: str) -> str:
    return value.translate(_ATTR_ESCAPES)


def ctx_markup(value: Any, tag: str = "ctx") -> str:
    """The XML text :func:`fill_ctx` would build, written as a string -- several times
    cheaper than element by element, for the REST ingest path.  ``ValueError`` for a key
    that is not an XML name; the caller checks the text for :data:`NOT_XML` characters."""
    if type(value) is not dict:
        if isinstance(value, dict):
            value = dict(value)
        else:  # a scalar: its text, even empty
            own = value if type(value) is str else _scalar(value)
            return f"<{tag}>{own.translate(_TEXT_ESCAPES)}</{tag}>"
    attrs: list[str] = []
    text: str | None = None
    children: list[str] = []
    for key, child in value.items():
        if key[:1] == "@":
            item = child if type(child) is str else _scalar(child)
            attrs.append(f' {xml_name(key[1:])}="{item.translate(_ATTR_ESCAPES)}"')
        elif key == "#text":
            text = (child if type(child) is str else _scalar(child)).translate(_TEXT_ESCAPES)
        elif type(child) is list:
            name = xml_name(key)
            children.extend(ctx_markup(item, name) for item in child)
        elif type(child) is str:
            name = xml_name(key)
            children.append(f"<{name}>{child.translate(_TEXT_ESCAPES)}</{name}>")
        else:
            children.append(ctx_markup(child, xml_name(key)))
    start = "".join(attrs)
    if text is None and not children:
        return f"<{tag}{start}/>"
    return f"<{tag}{start}>{text or ''}{''.join(children)}</{tag}>"


def ctx_to_json(xml: str) -> dict[str, Any]:
    """A stored ``<ctx>`` as JSON, the inverse of :func:`ctx_from_json` (values are
    strings: XML does not say which text was a number).  Unparsable -> ``{}``."""
    try:
        root = parse_xml(xml)
    except InvalidXml:
        return {}
    value = _element_json(root)
    if isinstance(value, dict):
        return value
    return {"#text": value} if value.strip() else {}


def _element_json(el: etree._Element) -> Any:
    """An element's attributes, children (repeated ones as a list) and own text; an
    element with none of the first two is just its text."""
    out: dict[str, Any] = {f"@{etree.QName(k).localname}": v for k, v in el.attrib.items()}
    children: dict[str, list[Any]] = {}
    for child in el:
        if isinstance(child.tag, str):
            children.setdefault(etree.QName(child).localname, []).append(_element_json(child))
    for name, values in children.items():
        out[name] = values[0] if len(values) == 1 else values
    if not out:
        return el.text or ""
    text = (el.text or "").strip()
    if text:
        out["#text"] = text
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
