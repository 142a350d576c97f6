"""``xtk:persist#GetEntityIfMoreRecent``: the schema documents schema-driven clients read.

The suite's own JavaScript SDK (``@adobe/acc-js-sdk``) does not know method signatures in
advance: before its first call on ``nms:rtEvent`` it asks this method for the entity
``xtk:schema|nms:rtEvent`` and reads ``<methods>`` from the answer to learn parameter
names, types and directions.  We describe exactly the two services we implement
(``nms:rtEvent`` and ``nms:batchEvent``) in the form the suite's server answers, and answer
a clear Client fault for any other entity.

What the SDK requires of a schema document (measured, see STACK-NOTES): ``namespace`` and
``name`` on the root, ``static='true'`` on each method, a ``type`` on each parameter
(``DOMDocument`` for events, ``int64`` for the id, which it keeps as an exact string).
No ``implements='xtk:persist'``: it would make the SDK fetch ``xtk:session`` as well.

Pure: values in, an lxml element out; no I/O, no authentication (the SOAP front checks the
session token before calling :func:`handle_get_entity_if_more_recent`).
"""

from __future__ import annotations

import hashlib
from functools import cache

from lxml import etree

from soap_service.errors import ClientError

SCHEMA_ENTITY = "xtk:schema"

# Attributes of the event element (SPEC §2.4): (name, xtk type, label).
_EVENT_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("type", "string", "Event type"),
    ("email", "string", "Email"),
    ("mobilePhone", "string", "Mobile phone"),
    ("wishedChannel", "byte", "Channel"),
    ("emailFormat", "byte", "Email format"),
    ("externalId", "string", "External identifier"),
    ("origin", "string", "Origin"),
    ("language", "string", "Language"),
    ("country", "string", "Country"),
    ("scheduled", "datetime", "Scheduled for"),
    ("expiration", "datetime", "Expiration date"),
    ("registrationToken", "string", "Registration token"),
    ("idempotencyKey", "string", "Idempotency key"),
)

# schema id -> (label, event element name)
_SERVICES: dict[str, tuple[str, str]] = {
    "nms:rtEvent": ("Real-time events", "rtEvent"),
    "nms:batchEvent": ("Batch events", "batchEvent"),
}

# (method, [(param name, type, inout, description)])
_METHODS: tuple[tuple[str, tuple[tuple[str, str, str, str], ...]], ...] = (
    (
        "PushEvent",
        (
            ("event", "DOMDocument", "in", "Event."),
            ("id", "int64", "out", "Technical identifier of the inserted event."),
        ),
    ),
    (
        "PushEvents",
        (
            ("eventCollection", "DOMDocument", "in", "Events, as children of one element."),
            ("ids", "DOMDocument", "out", "One <id> per event, in order."),
        ),
    ),
)


def supported_entities() -> tuple[str, ...]:
    """The primary keys this server answers, e.g. ``xtk:schema|nms:rtEvent``."""
    return tuple(f"{SCHEMA_ENTITY}|{schema_id}" for schema_id in _SERVICES)


def _build_schema(schema_id: str) -> etree._Element:
    namespace, name = schema_id.split(":", 1)
    label, element_name = _SERVICES[schema_id]
    root = etree.Element(
        "schema", namespace=namespace, name=name, label=label, xtkschema=SCHEMA_ENTITY
    )
    element = etree.SubElement(root, "element", name=element_name, label=label)
    for attr_name, attr_type, attr_label in _EVENT_ATTRIBUTES:
        etree.SubElement(element, "attribute", name=attr_name, type=attr_type, label=attr_label)
    etree.SubElement(element, "element", name="ctx", type="ANY", label="Event data")
    methods = etree.SubElement(root, "methods")
    for method_name, params in _METHODS:
        method = etree.SubElement(methods, "method", name=method_name, static="true")
        parameters = etree.SubElement(method, "parameters")
        for param_name, param_type, inout, desc in params:
            etree.SubElement(
                parameters, "param", name=param_name, type=param_type, inout=inout, desc=desc
            )
    # The md5 covers the document without itself; it changes only when the contract does.
    root.set("md5", hashlib.md5(etree.tostring(root), usedforsecurity=False).hexdigest().upper())
    return root


@cache
def _schema_bytes(schema_id: str) -> bytes:
    return etree.tostring(_build_schema(schema_id))


def schema_document(schema_id: str) -> etree._Element:
    """A fresh copy of the schema document for ``nms:rtEvent`` or ``nms:batchEvent``."""
    if schema_id not in _SERVICES:
        raise _unsupported(f"{SCHEMA_ENTITY}|{schema_id}")
    return etree.fromstring(_schema_bytes(schema_id))


def _unsupported(pk: str) -> ClientError:
    shown = pk if len(pk) <= 100 else pk[:100] + "..."
    return ClientError(
        f"Entity '{shown}' is not available on this server.",
        "GetEntityIfMoreRecent describes only " + " and ".join(supported_entities()) + ".",
    )


def get_entity_if_more_recent(
    pk: str, md5: str = "", must_exist: bool = False
) -> etree._Element | None:
    """The entity named by ``pk``, or ``None`` when the caller's ``md5`` is already current.

    ``pk`` is ``<entity type>|<entity name>`` (``xtk:schema|nms:rtEvent``).  Anything this
    server does not describe is a :class:`ClientError`, whatever ``must_exist`` says: a
    schema-driven client is better served by a clear fault than by an empty document.
    """
    entity_type, sep, name = pk.strip().partition("|")
    if not sep or entity_type != SCHEMA_ENTITY or name not in _SERVICES:
        raise _unsupported(pk.strip())
    doc = schema_document(name)
    if md5 and md5.strip().upper() == doc.get("md5"):
        return None
    return doc


def handle_get_entity_if_more_recent(
    params: list[str | etree._Element | None],
) -> etree._Element | None:
    """Dispatch entry: the parameters after the session token, by position.

    ``pk``, ``md5``, ``mustExist``, as strings or as the request's parameter elements.
    """
    values = [p if isinstance(p, str) else _text(p) for p in params]
    values += [""] * (3 - len(values))
    pk, md5, must_exist = values[:3]
    if not pk:
        raise ClientError(
            "Missing parameter 'pk' of method 'GetEntityIfMoreRecent' of service 'xtk:persist'.",
            "Expected a primary key such as 'xtk:schema|nms:rtEvent'.",
        )
    return get_entity_if_more_recent(pk, md5, must_exist.strip().lower() in {"true", "1"})


def _text(node: etree._Element | None) -> str:
    if node is None:
        return ""
    return "".join(node.itertext()).strip()
