"""A JSON event (REST) -> the :class:`~soap_service.ingest.WireEvent` that ``ingest``
validates and stores.

The REST API takes the SOAP event's attributes as JSON fields with the same names
(``type``, ``email``, ``mobilePhone``, ``wishedChannel``, ``scheduled``...), ``ctx`` as an
object and ``mobileApp`` as ``{"uuid": ...}``; they become the same plain values the SOAP
edge produces (attributes as sent, the ``<ctx>`` as XML text), so validation,
idempotency, priority and storage are ``ingest``'s, once, for both APIs.  Unknown fields
are kept as attributes, as SOAP keeps unknown attributes (an object or array value is
kept as its JSON text).  Only the shape of the JSON is checked here (types, names,
characters XML can carry); what the values mean is ``ingest``'s.  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from soap_service.ctxdata import NOT_XML, ctx_markup, xml_name
from soap_service.errors import ValidationFailed
from soap_service.ingest import WireEvent
from soap_service.models import Queue

STRING_FIELDS = ("type", "email", "mobilePhone", "externalId", "origin", "language", "country",
                 "scheduled", "expiration", "registrationToken", "idempotencyKey")
INTEGER_FIELDS = ("wishedChannel", "emailFormat")
# fields of the JSON API that are not event attributes
API_FIELDS = ("ctx", "mobileApp", "queue")
MAX_FIELD_NAME = 64
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # reused: cheaper


@dataclass(frozen=True)
class JsonEvent:
    """One event from a JSON body, ready for ``ingest``."""

    wire: WireEvent
    queue: Queue

    @property
    def ctx_json(self) -> str:
        return self.wire.ctx_json or "{}"


def build_event(data: Any, *, default_queue: Queue = Queue.RT,
                extra: dict[str, str] | None = None,
                header_key: str | None = None) -> JsonEvent:
    """Check the JSON shape of one event and turn it into plain values.

    ``extra`` sets attributes the URL decides (the suite endpoint's event type and
    channel); ``header_key`` is the request's ``Idempotency-Key``.  ``ValidationFailed``
    names the field (``field 'email': ...``).  The ``<ctx>`` is written as XML text
    directly (``ctx_markup``): no element tree on this path, which runs for every event
    of a batch.
    """
    if not isinstance(data, dict):
        raise ValidationFailed("an event must be a JSON object")
    attrs: dict[str, str] = {}
    for name, value in data.items():
        if name in API_FIELDS:
            continue
        text = value if type(value) is str else _attribute_text(name, value)
        if text is not None:
            attrs[_field_name(name)] = _xml_text(name, text)
    for name, text in (extra or {}).items():
        attrs[name] = text
    queue = queue_of(data.get("queue"), default_queue)
    ctx = data.get("ctx")
    if ctx is None:
        raise ValidationFailed("missing field 'ctx' (an object: the data for personalisation)")
    if not isinstance(ctx, dict):
        raise ValidationFailed("field 'ctx' must be an object")
    try:
        ctx_xml = _xml_text("ctx", ctx_markup(ctx))
    except ValueError as exc:
        raise ValidationFailed(f"field 'ctx': {exc}") from None
    uuid = _mobile_app_uuid(data.get("mobileApp"))
    key = (attrs.get("idempotencyKey") or header_key or "").strip()
    digest = None
    if key:  # equal for equal events, whatever the order of their fields
        canonical = json.dumps([attrs, ctx, uuid], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
    return JsonEvent(WireEvent(attrs, ctx_xml, uuid, digest, _COMPACT.encode(ctx)), queue)


def _xml_text(name: str, text: str) -> str:
    if NOT_XML.search(text):
        raise ValidationFailed(f"field '{name[:MAX_FIELD_NAME]}' holds a character XML "
                               "cannot carry")
    return text


def _attribute_text(name: str, value: Any) -> str | None:
    """The attribute text of a JSON field that is not a string, or None to leave it out."""
    if value is None:
        return None
    if name in STRING_FIELDS:
        raise ValidationFailed(f"field '{name}' must be a string")
    if name in INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationFailed(f"field '{name}' must be an integer")
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _COMPACT.encode(value)


def _field_name(name: str) -> str:
    if len(name) > MAX_FIELD_NAME:
        raise ValidationFailed(f"field name longer than {MAX_FIELD_NAME} characters")
    try:
        return xml_name(name)
    except ValueError as exc:
        raise ValidationFailed(f"field {name[:MAX_FIELD_NAME]!r}: {exc}") from None


def queue_of(raw: Any, default: Queue = Queue.RT) -> Queue:
    """The ``queue`` field: ``"rt"`` or ``"batch"`` (absent: ``default``)."""
    if raw is None:
        return default
    try:
        return Queue(raw)
    except ValueError:
        raise ValidationFailed("field 'queue' must be \"rt\" or \"batch\"") from None


def _mobile_app_uuid(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("uuid", ""), str):
        raise ValidationFailed("field 'mobileApp' must be an object with a string 'uuid'")
    return _xml_text("mobileApp", raw.get("uuid") or "").strip() or None
