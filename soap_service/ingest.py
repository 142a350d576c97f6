"""Ingest: a wire event -> validated column values -> stored, with its plId.

One path for every API.  An event arrives as a :class:`WireEvent` -- its attributes as
sent (unknown ones too), its ``<ctx>`` as XML text -- built by the REST edge from JSON,
or here from the lxml element the SOAP edge hands us (any local name, the method
namespace already stripped; :func:`wire_event`).  We validate what SPEC §2.4 requires,
compute the dispatch priority, and store the call's events in one transaction: a caller
that got a plId never loses its event.  No SQL here (``store.events`` does it), no faults
(we raise ``errors.*``; the edges map them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from lxml import etree

from soap_service import catalog, clock, wakeup
from soap_service.addresses import is_email_address
from soap_service.clock import parse_iso_utc
from soap_service.config import Settings
from soap_service.ctxdata import ctx_text
from soap_service.errors import (
    BatchItemConflict,
    Conflict,
    InvalidBatchItem,
    TooManyEvents,
    ValidationFailed,
)
from soap_service.models import (
    TEXT_ATTRIBUTE_FIELDS,
    WISHED_CHANNELS,
    Channel,
    Lane,
    Queue,
    make_plid,
)
from soap_service.phone import normalise_phone
from soap_service.store import Database
from soap_service.store import events as event_store
from soap_service.xmlsafe import local_name

log = logging.getLogger(__name__)

_MAX_LENGTH = event_store.TEXT_COLUMN_LENGTHS
_QUEUE_RANK = {q: i for i, q in enumerate(Queue)}
_LANE_RANK = {lane.value: lane.rank for lane in Lane}  # Lane(name).rank, once per event
_TRANSACTIONAL_RANK = Lane.TRANSACTIONAL.rank
EMAIL_FORMATS = frozenset({0, 1, 2})  # unknown, text, html


# ---------------------------------------------------------------- public interface


@dataclass(frozen=True)
class WireEvent:
    """One event as received, from any API, before validation."""

    attributes: dict[str, str]  # every attribute as sent
    ctx_xml: str | None  # the <ctx> element as text; None when there is none
    mobile_app_uuid: str | None = None  # <mobileApp uuid>
    # set when the event carries an idempotency key (or a header key applies to it): a
    # digest of the event, equal for equal events, to tell a replay from a reuse
    payload_hash: str | None = None
    ctx_json: str | None = None  # the ctx as a JSON caller sent it (REST returns it)


Incoming: TypeAlias = WireEvent | etree._Element


def store_event(
    db: Database, settings: Settings, event: Incoming, queue: Queue | str,
    *, idempotency_key: str | None = None,
) -> int:
    """Validate and store one event; returns its plId once it is committed.

    ``idempotency_key`` (the HTTP ``Idempotency-Key`` header) applies when the event has
    no ``idempotencyKey`` attribute of its own.
    """
    row = build_row(event, Queue(queue), catalog.event_type_lanes(db), clock.utcnow(),
                    header_key=idempotency_key,
                    default_country_code=settings.default_country_code,
                    profile_based=catalog.profile_based_types(db))
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
    db: Database, settings: Settings, events: Sequence[Incoming], queue: Queue | str,
) -> list[tuple[int, str | None]]:
    """Validate and store a whole ``PushEvents`` call (or REST batch), all or nothing.

    Returns ``(plId, externalId)`` per event, in order.  A bad event fails the call with
    its 1-based index in the message (``"event #3: missing attribute 'type'"``) and its
    0-based ``index`` on the exception (``InvalidBatchItem`` / ``BatchItemConflict``).
    """
    if len(events) > settings.max_events_per_call:
        raise TooManyEvents(
            f"too many events in one call: {len(events)} "
            f"(at most {settings.max_events_per_call})"
        )
    lanes = catalog.event_type_lanes(db)
    profile_based = catalog.profile_based_types(db)
    now = clock.utcnow()
    q = Queue(queue)
    rows = []
    for index, event in enumerate(events, start=1):
        try:
            rows.append(build_row(event, q, lanes, now,
                                  default_country_code=settings.default_country_code,
                                  profile_based=profile_based))
        except ValidationFailed as exc:
            raise InvalidBatchItem(index - 1, f"event #{index}: {exc.message}",
                                   exc.detail) from exc
    if not rows:
        return []
    try:
        stored = event_store.insert_events(db, rows)
    except event_store.IdempotencyConflict as exc:
        log.info("event.idempotency_conflict index=%s", exc.index + 1)
        raise BatchItemConflict(exc.index, f"event #{exc.index + 1}: {exc.message}") from exc
    if not all(stored.replayed):
        wakeup.notify_after_commit(db)
    log.debug("events.received count=%s queue=%s", len(rows), q)
    return [
        (make_plid(settings.instance_id, pk), row["external_id"])
        for pk, row in zip(stored.ids, rows, strict=True)
    ]


def wire_event(element: etree._Element, header_key: str | None = None) -> WireEvent:
    """The SOAP edge's event element as plain values (the C14N digest only when a key
    makes it needed: it costs as much as the rest)."""
    attrs = _attributes(element)
    ctx = _child(element, "ctx")
    app = _child(element, "mobileApp")
    keyed = bool((attrs.get("idempotencyKey") or header_key or "").strip())
    return WireEvent(
        attributes=attrs, ctx_xml=None if ctx is None else ctx_text(ctx),
        mobile_app_uuid=None if app is None else (app.get("uuid") or "").strip() or None,
        payload_hash=payload_hash(element) if keyed else None,
    )


# ---------------------------------------------------------------- validation


def build_row(
    incoming: Incoming, queue: Queue, lanes: dict[str, str], now: datetime,
    *, header_key: str | None = None, default_country_code: str = "",
    profile_based: Collection[str] = (),
) -> dict[str, Any]:
    """Validate one event and return the ``events`` column values to insert.

    ``mobilePhone`` is stored in E.164 (read in ``default_country_code`` when written
    without its country code); see :func:`_check_address` for when it may not be.  An
    event of a ``profile_based`` type may come without its channel's address: its
    profile gives it (``targeting``)."""
    event = incoming if isinstance(incoming, WireEvent) else wire_event(incoming, header_key)
    attrs = event.attributes
    event_type = attrs.get("type", "").strip()
    if not event_type:
        raise ValidationFailed("missing attribute 'type'")
    _check_length("type", event_type, "event_type")
    if event.ctx_xml is None:
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
    _check_address(row, default_country_code, address_required=event_type not in profile_based)
    row["mobile_app_uuid"] = event.mobile_app_uuid
    if event.mobile_app_uuid is not None:
        _check_length("mobileApp/@uuid", event.mobile_app_uuid, "mobile_app_uuid")
    row["scheduled_at"] = _date_attr(attrs, "scheduled")
    row["expiration_at"] = _date_attr(attrs, "expiration")
    row["process_at"] = row["scheduled_at"] or now
    row["priority"] = priority(queue, lanes.get(event_type))
    row["attributes"] = json.dumps(attrs, ensure_ascii=False)
    row["ctx_xml"] = event.ctx_xml
    row["ctx_json"] = event.ctx_json
    key = (attrs.get("idempotencyKey") or header_key or "").strip() or None
    if key is not None:
        _check_length("idempotencyKey", key, "idempotency_key")
        if event.payload_hash is None:  # pragma: no cover - the edges always set it
            raise ValueError("an event with an idempotency key needs its payload hash")
        row["payload_hash"] = event.payload_hash
    row["idempotency_key"] = key
    row["created_at"] = row["updated_at"] = now
    return row


def priority(queue: Queue, lane: str | None) -> int:
    """Dispatch order (lower first): queue rank * 10 + lane rank; unknown -> transactional."""
    lane_rank = _LANE_RANK.get(lane, _TRANSACTIONAL_RANK) if lane else _TRANSACTIONAL_RANK
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


def _check_address(row: dict[str, Any], default_country_code: str = "",
                   address_required: bool = True) -> None:
    """The event's channel needs its address: email for email, ``mobilePhone`` for SMS,
    ``registrationToken`` for push.  ``mobilePhone`` is normalised to E.164: an SMS event
    whose number cannot be is refused (a fault naming the attribute and the problem,
    never the number); an event of another channel keeps a number that cannot be
    normalised as it was sent (email callers that pass a phone number along keep
    working; it is data for templates there, not an address)."""
    channel = WISHED_CHANNELS.get(row["wished_channel"])
    if channel is None:
        raise ValidationFailed(
            f"invalid attribute 'wishedChannel': {row['wished_channel']} "
            "(0 email, 1 SMS, 40/41/42 push)"
        )
    email = row["email"]
    if email is not None and not is_email_address(email):
        raise ValidationFailed("malformed attribute 'email'")
    if channel is Channel.EMAIL and email is None and address_required:
        raise ValidationFailed("missing attribute 'email' (required for the email channel)")
    if channel is Channel.SMS and row["mobile_phone"] is None and address_required:
        raise ValidationFailed("missing attribute 'mobilePhone' (required for the SMS channel)")
    if channel is Channel.PUSH and row["registration_token"] is None and address_required:
        raise ValidationFailed(
            "missing attribute 'registrationToken' (required for the push channel)")
    if row["mobile_phone"] is not None:
        try:
            row["mobile_phone"] = normalise_phone(row["mobile_phone"], default_country_code,
                                                  field="attribute 'mobilePhone'")
        except ValidationFailed:
            if channel is Channel.SMS:  # SPEC §7: E.164, refused here when it cannot be
                raise


def _date_attr(attrs: dict[str, str], name: str) -> datetime | None:
    """ISO 8601 -> naive UTC (a date without an offset is taken as UTC)."""
    raw = attrs.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_iso_utc(raw)
    except ValueError:
        raise ValidationFailed(f"invalid attribute '{name}': not an ISO 8601 date") from None
