"""A JSON event (REST) -> the event element that ``ingest`` validates and stores.

The REST API takes the SOAP event's attributes as JSON fields with the same names
(``type``, ``email``, ``mobilePhone``, ``wishedChannel``, ``scheduled``...), ``ctx`` as an
object and ``mobileApp`` as ``{"uuid": ...}``; it is turned into the same ``<rtEvent>``
element a SOAP caller would have sent, so validation, idempotency, priority and storage
are ``ingest``'s, once, for both APIs.  Unknown fields are kept as attributes, as SOAP
keeps unknown attributes (an object or array value is kept as its JSON text).  Only the
shape of the JSON is checked here (types, names); what the values mean is ``ingest``'s.
Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lxml import etree

from soap_service.ctxdata import fill_ctx
from soap_service.errors import ValidationFailed
from soap_service.models import Queue

STRING_FIELDS = ("type", "email", "mobilePhone", "externalId", "origin", "language", "country",
                 "scheduled", "expiration", "registrationToken", "idempotencyKey")
INTEGER_FIELDS = ("wishedChannel", "emailFormat")
# fields of the JSON API that are not event attributes
API_FIELDS = ("ctx", "mobileApp", "queue")
MAX_FIELD_NAME = 64


@dataclass(frozen=True)
class JsonEvent:
    """One event from a JSON body, ready for ``ingest``."""

    element: etree._Element
    queue: Queue
    ctx_json: str  # the ctx object as sent, compact JSON


def build_event(data: Any, *, default_queue: Queue = Queue.RT,
                extra: dict[str, str] | None = None) -> JsonEvent:
    """Check the JSON shape of one event and build its element.

    ``extra`` sets attributes the URL decides (the suite endpoint's event type and
    channel).  ``ValidationFailed`` names the field (``field 'email': ...``).
    """
    if not isinstance(data, dict):
        raise ValidationFailed("an event must be a JSON object")
    event = etree.Element("rtEvent")
    for name, value in data.items():
        if name in API_FIELDS:
            continue
        text = _attribute_text(name, value)
        if text is not None:
            _set(event, name, text)
    for name, value in (extra or {}).items():
        _set(event, name, value)
    queue = _queue(data.get("queue"), default_queue)
    ctx = data.get("ctx")
    if ctx is None:
        raise ValidationFailed("missing field 'ctx' (an object: the data for personalisation)")
    if not isinstance(ctx, dict):
        raise ValidationFailed("field 'ctx' must be an object")
    _append_mobile_app(event, data.get("mobileApp"))
    event.append(_ctx_element(ctx))
    return JsonEvent(event, queue, json.dumps(ctx, ensure_ascii=False, separators=(",", ":")))


def _attribute_text(name: str, value: Any) -> str | None:
    """The attribute text of a JSON field, or None to leave it out (null)."""
    if value is None:
        return None
    if name in STRING_FIELDS:
        if not isinstance(value, str):
            raise ValidationFailed(f"field '{name}' must be a string")
        return value
    if name in INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValidationFailed(f"field '{name}' must be an integer")
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _set(event: etree._Element, name: str, value: str) -> None:
    if len(name) > MAX_FIELD_NAME:
        raise ValidationFailed(f"field name longer than {MAX_FIELD_NAME} characters")
    try:
        event.set(name, value)
    except ValueError as exc:  # not an XML name, or a control character in the value
        raise ValidationFailed(f"field {name[:MAX_FIELD_NAME]!r}: {exc}") from None


def _queue(raw: Any, default: Queue) -> Queue:
    if raw is None:
        return default
    try:
        return Queue(raw)
    except ValueError:
        raise ValidationFailed("field 'queue' must be \"rt\" or \"batch\"") from None


def _append_mobile_app(event: etree._Element, raw: Any) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict) or not isinstance(raw.get("uuid", ""), str):
        raise ValidationFailed("field 'mobileApp' must be an object with a string 'uuid'")
    app = etree.SubElement(event, "mobileApp")
    if raw.get("uuid"):
        _set(app, "uuid", raw["uuid"])


def _ctx_element(ctx: dict[str, Any]) -> etree._Element:
    element = etree.Element("ctx")
    try:
        fill_ctx(element, ctx)
    except ValueError as exc:
        raise ValidationFailed(f"field 'ctx': {exc}") from None
    return element
