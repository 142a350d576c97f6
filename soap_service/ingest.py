"""Ingest: a wire event (lxml element) -> validated column values -> stored, with its plId.

The SOAP edge hands us the event root (any local name, the method namespace already
stripped) and the queue taken from the service namespace.  We validate what SPEC §2.4
requires, keep every attribute as sent (unknown ones too) and the raw ``<ctx>``, compute
the dispatch priority, and store the call's events in one transaction: a caller that got
a plId never loses its event.  No SQL here (``store.events`` does it), no faults (we
raise ``errors.*``; the edge maps them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lxml import etree

from soap_service import catalog, clock, wakeup
from soap_service.addresses import is_email_address
from soap_service.clock import parse_iso_utc
from soap_service.config import Settings
from soap_service.ctxdata import ctx_text
from soap_service.errors import Conflict, ValidationFailed
from soap_service.models import (
    TEXT_ATTRIBUTE_FIELDS,
    WISHED_CHANNELS,
    Channel,
    Lane,
    Queue,
    make_plid,
)
from soap_service.store import Database
from soap_service.store import events as event_store
from soap_service.xmlsafe import local_name

log = logging.getLogger(__name__)

_MAX_LENGTH = event_store.TEXT_COLUMN_LENGTHS
_QUEUE_RANK = {q: i for i, q in enumerate(Queue)}
EMAIL_FORMATS = frozenset({0, 1, 2})  # unknown, text, html


# ---------------------------------------------------------------- public interface


def store_event(
    db: Database, settings: Settings, element: etree._Element, queue: Queue | str,
    *, idempotency_key: str | None = None,
) -> int:
    """Validate and store one event; returns its plId once it is committed.

    ``idempotency_key`` (the HTTP ``Idempotency-Key`` header) applies when the event has
    no ``idempotencyKey`` attribute of its own.
    """
    row = build_row(element, Queue(queue), catalog.event_type_lanes(db), clock.utcnow(),
                    header_key=idempotency_key)
    try:
        stored = event_store.insert_events(db, [row])
    except event_store.IdempotencyConflict as exc:
        log.info("event.idempotency_conflict")
        raise Conflict(exc.message) from exc
    if not stored.replayed[0]:
        wakeup.notify_after_commit(db)
    plid = make_plid(settings.instance_id, stored.ids[0])
    log.debug("event.received plId=%s queue=%s replayed=%s", plid, queue, stored.replayed[0])
    return plid


def store_events(
    db: Database, settings: Settings, elements: Sequence[etree._Element], queue: Queue | str,
) -> list[tuple[int, str | None]]:
    """Validate and store a whole ``PushEvents`` call, all or nothing.

    Returns ``(plId, externalId)`` per event, in order.  A bad event fails the call with
    its 1-based index in the message (``"event #3: missing attribute 'type'"``).
    """
    if len(elements) > settings.max_events_per_call:
        raise ValidationFailed(
            f"too many events in one call: {len(elements)} "
            f"(at most {settings.max_events_per_call})"
        )
    lanes = catalog.event_type_lanes(db)
    now = clock.utcnow()
    q = Queue(queue)
    rows = []
    for index, element in enumerate(elements, start=1):
        try:
            rows.append(build_row(element, q, lanes, now))
        except ValidationFailed as exc:
            raise ValidationFailed(f"event #{index}: {exc.message}", exc.detail) from exc
    if not rows:
        return []
    try:
        stored = event_store.insert_events(db, rows)
    except event_store.IdempotencyConflict as exc:
        log.info("event.idempotency_conflict index=%s", exc.index + 1)
        raise Conflict(f"event #{exc.index + 1}: {exc.message}") from exc
    if not all(stored.replayed):
        wakeup.notify_after_commit(db)
    log.debug("events.received count=%s queue=%s", len(rows), q)
    return [
        (make_plid(settings.instance_id, pk), row["external_id"])
        for pk, row in zip(stored.ids, rows, strict=True)
    ]


# ---------------------------------------------------------------- validation


def build_row(
    element: etree._Element, queue: Queue, lanes: dict[str, str], now: datetime,
    *, header_key: str | None = None,
) -> dict[str, Any]:
    """Validate one event element and return the ``events`` column values to insert."""
    attrs = _attributes(element)
    event_type = attrs.get("type", "").strip()
    if not event_type:
        raise ValidationFailed("missing attribute 'type'")
    _check_length("type", event_type, "event_type")
    ctx = _child(element, "ctx")
    if ctx is None:
        raise ValidationFailed("missing element <ctx>")
    row: dict[str, Any] = {"queue": queue.value, "event_type": event_type}
    for attr, column in TEXT_ATTRIBUTE_FIELDS.items():
        value = attrs.get(attr, "").strip() or None
        if value is not None:
            _check_length(attr, value, column)
        row[column] = value
    row["wished_channel"] = _int_attr(attrs, "wishedChannel")
    row["email_format"] = _int_attr(attrs, "emailFormat")
    if row["email_format"] not in EMAIL_FORMATS:
        raise ValidationFailed(
            f"invalid attribute 'emailFormat': {row['email_format']} (0 unknown, 1 text, 2 html)"
        )
    _check_address(row)
    row["mobile_app_uuid"] = _mobile_app_uuid(element)
    row["scheduled_at"] = _date_attr(attrs, "scheduled")
    row["expiration_at"] = _date_attr(attrs, "expiration")
    row["process_at"] = row["scheduled_at"] or now
    row["priority"] = priority(queue, lanes.get(event_type))
    row["attributes"] = json.dumps(attrs, ensure_ascii=False)
    row["ctx_xml"] = ctx_text(ctx)
    key = (attrs.get("idempotencyKey") or header_key or "").strip() or None
    if key is not None:
        _check_length("idempotencyKey", key, "idempotency_key")
        row["payload_hash"] = payload_hash(element)
    row["idempotency_key"] = key
    row["created_at"] = row["updated_at"] = now
    return row


def priority(queue: Queue, lane: str | None) -> int:
    """Dispatch order (lower first): queue rank * 10 + lane rank; unknown -> transactional."""
    try:
        lane_rank = Lane(lane).rank if lane else Lane.TRANSACTIONAL.rank
    except ValueError:
        lane_rank = Lane.TRANSACTIONAL.rank
    return _QUEUE_RANK[queue] * 10 + lane_rank


def payload_hash(element: etree._Element) -> str:
    """SHA-256 of the event's C14N 2.0 form with prefixes rewritten: equal for equal
    events, whatever the prefixes, attribute order or in-scope namespaces of the envelope
    around it.  (C14N 1.0, exclusive or not, refuses relative namespace URIs such as
    ``xmlns="rel/ative"``, which XML namespaces only deprecate: a caller may send them.)"""
    canonical = etree.canonicalize(element, rewrite_prefixes=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _attributes(element: etree._Element) -> dict[str, str]:
    """Every attribute as sent; a namespaced one (``xsi:type``) keeps its prefix, so it
    can never stand in for the event's own ``type``."""
    attrs: dict[str, str] = {}
    for name, value in element.attrib.items():
        if name.startswith("{"):
            ns, local = name[1:].split("}", 1)
            prefix = next((p for p, uri in element.nsmap.items() if uri == ns and p), None)
            name = f"{prefix}:{local}" if prefix else f"{{{ns}}}{local}"
        attrs[name] = value
    return attrs


def _child(element: etree._Element, local: str) -> etree._Element | None:
    for child in element:
        if local_name(child) == local:
            return child
    return None


def _check_length(attr: str, value: str, column: str) -> None:
    limit = _MAX_LENGTH.get(column) or 0
    if limit and len(value) > limit:
        raise ValidationFailed(f"attribute '{attr}' is longer than {limit} characters")


def _int_attr(attrs: dict[str, str], name: str) -> int:
    raw = attrs.get(name, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"invalid attribute '{name}': not a number") from None


def _check_address(row: dict[str, Any]) -> None:
    channel = WISHED_CHANNELS.get(row["wished_channel"])
    if channel is None:
        raise ValidationFailed(
            f"invalid attribute 'wishedChannel': {row['wished_channel']} "
            "(0 email, 1 SMS, 40/41/42 push)"
        )
    email = row["email"]
    if email is not None and not is_email_address(email):
        raise ValidationFailed("malformed attribute 'email'")
    if channel is Channel.EMAIL and email is None:
        raise ValidationFailed("missing attribute 'email' (required for the email channel)")
    if channel is Channel.SMS and row["mobile_phone"] is None:
        raise ValidationFailed("missing attribute 'mobilePhone' (required for the SMS channel)")


def _mobile_app_uuid(element: etree._Element) -> str | None:
    app = _child(element, "mobileApp")
    if app is None:
        return None
    uuid = (app.get("uuid") or "").strip() or None
    if uuid is not None:
        _check_length("mobileApp/@uuid", uuid, "mobile_app_uuid")
    return uuid


def _date_attr(attrs: dict[str, str], name: str) -> datetime | None:
    """ISO 8601 -> naive UTC (a date without an offset is taken as UTC)."""
    raw = attrs.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_iso_utc(raw)
    except ValueError:
        raise ValidationFailed(f"invalid attribute '{name}': not an ISO 8601 date") from None
