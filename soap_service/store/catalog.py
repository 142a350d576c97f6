"""Catalog storage: event types, templates (drafts), published versions, seeds, proofs.

Every function runs in a transaction of its own and returns values from ``models``.  A
published version row is written once and never updated, except for its
``unpublished_at`` stamp.  A function given a name raises :class:`NotFound` when there is
no such event type or template, and :class:`Conflict` when a unique name or version
number is taken (also by a concurrent writer); the rules of the lifecycle (what may be
published, which address a seed may have) are the caller's, handed in as functions where
they must hold inside the transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.errors import Conflict, NotFound
from soap_service.models import (
    Channel,
    Delivery,
    EventStatus,
    EventType,
    Lane,
    MissingProfile,
    ReconcileOn,
    Seed,
    Targeting,
    Template,
    TemplateContent,
    TemplateVersion,
    VersionInfo,
)
from soap_service.store import Database, dialect
from soap_service.store.queue import release_paused_in
from soap_service.tables import (
    delivery_log,
    event_types,
    events,
    seeds,
    template_versions,
    templates,
)

WAITING = (EventStatus.PENDING.value, EventStatus.PROCESSING.value, EventStatus.PAUSED.value)


# ---------------------------------------------------------------- content encoding


def content_to_json(content: TemplateContent) -> str:
    """Content as JSON; ``variants`` only when there are some (so a template without
    language variants keeps the hash it always had)."""
    data = dataclasses.asdict(content)
    if not data["variants"]:
        del data["variants"]
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def _content_from_dict(data: dict[str, Any], nested: bool = False) -> TemplateContent:
    known = {f.name for f in dataclasses.fields(TemplateContent)}
    values = {k: v for k, v in data.items() if k in known and k != "variants"}
    if not nested and isinstance(data.get("variants"), dict):
        values["variants"] = {lang: _content_from_dict(v, nested=True)
                              for lang, v in data["variants"].items()}
    return TemplateContent(**values)


def content_from_json(raw: str) -> TemplateContent:
    return _content_from_dict(json.loads(raw or "{}"))


def content_hash(content: TemplateContent) -> str:
    return hashlib.sha256(content_to_json(content).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- event types


def _event_type(row: Any) -> EventType:
    return EventType(name=row.name, label=row.label, lane=Lane(row.lane),
                     max_attempts=row.max_attempts, validity_seconds=row.validity_seconds,
                     retention_seconds=row.retention_seconds,
                     targeting=Targeting(row.targeting), reconcile_on=ReconcileOn(row.reconcile_on),
                     missing_profile=MissingProfile(row.missing_profile))


def _targeting_values(et: EventType) -> dict[str, str]:
    return {"targeting": et.targeting.value, "reconcile_on": et.reconcile_on.value,
            "missing_profile": et.missing_profile.value}


def _event_type_in(conn: Connection, name: str) -> EventType | None:
    row = conn.execute(select(event_types).where(event_types.c.name == name)).first()
    return _event_type(row) if row else None


def insert_event_type(db: Database, et: EventType, now: datetime) -> None:
    try:
        with db.begin() as conn:
            conn.execute(insert(event_types).values(
                name=et.name, label=et.label, lane=et.lane.value, max_attempts=et.max_attempts,
                validity_seconds=et.validity_seconds, retention_seconds=et.retention_seconds,
                **_targeting_values(et), created_at=now, updated_at=now))
    except IntegrityError as exc:
        raise Conflict(f"event type {et.name!r} already exists") from exc


def update_event_type(db: Database, name: str, change: Callable[[EventType], EventType],
                      now: datetime) -> EventType:
    """Replace the type by ``change(current)`` (which may raise to refuse)."""
    with db.begin() as conn:
        current = _event_type_in(conn, name)
        if current is None:
            raise NotFound(f"no event type {name!r}")
        et = change(current)
        conn.execute(update(event_types).where(event_types.c.name == name).values(
            label=et.label, lane=et.lane.value, max_attempts=et.max_attempts,
            validity_seconds=et.validity_seconds, retention_seconds=et.retention_seconds,
            **_targeting_values(et), updated_at=now))
    return et


def get_event_type(db: Database, name: str) -> EventType | None:
    with db.connect() as conn:
        return _event_type_in(conn, name)


def list_event_types(db: Database) -> list[EventType]:
    with db.connect() as conn:
        rows = conn.execute(select(event_types).order_by(event_types.c.name))
        return [_event_type(r) for r in rows]


def delete_event_type(db: Database, name: str) -> None:
    """Delete an event type; refused while templates or waiting events use it."""
    with db.begin() as conn:
        if _event_type_in(conn, name) is None:
            raise NotFound(f"no event type {name!r}")
        n_templates = conn.execute(select(func.count()).select_from(templates)
                                   .where(templates.c.event_type == name)).scalar_one()
        n_events = conn.execute(select(func.count()).select_from(events).where(
            events.c.event_type == name, events.c.status.in_(WAITING))).scalar_one()
        if n_templates or n_events:
            raise Conflict(f"event type {name!r} is in use: {n_templates} template(s), "
                           f"{n_events} event(s) waiting to be sent")
        conn.execute(delete(event_types).where(event_types.c.name == name))


# ---------------------------------------------------------------- templates


def _template(row: Any) -> Template:
    return Template(id=row.id, name=row.name, event_type=row.event_type,
                    channel=Channel(row.channel), draft=content_from_json(row.draft),
                    paused=bool(row.paused), created_at=row.created_at,
                    updated_at=row.updated_at)


def _template_in(conn: Connection, name: str, *, for_update: bool = False) -> Template:
    query = select(templates).where(templates.c.name == name)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no template {name!r}")
    return _template(row)


def insert_template(db: Database, name: str, event_type: str, channel: Channel,
                    draft: TemplateContent, now: datetime) -> Template:
    try:
        with db.begin() as conn:
            if _event_type_in(conn, event_type) is None:
                raise NotFound(f"no event type {event_type!r} (create it with: msgcenter "
                               f"eventtype add {event_type})")
            if conn.execute(select(templates.c.id).where(templates.c.name == name)).first():
                raise Conflict(f"template {name!r} already exists")
            conn.execute(insert(templates).values(
                name=name, event_type=event_type, channel=channel.value,
                draft=content_to_json(draft), paused=False, created_at=now, updated_at=now))
            return _template_in(conn, name)
    except IntegrityError as exc:  # created concurrently
        raise Conflict(f"template {name!r} already exists") from exc


def get_template(db: Database, name: str) -> Template | None:
    try:
        with db.connect() as conn:
            return _template_in(conn, name)
    except NotFound:
        return None


def template_with_latest(db: Database, name: str) -> tuple[Template, VersionInfo | None]:
    """The template and its latest published version (if any)."""
    with db.connect() as conn:
        tpl = _template_in(conn, name)
        return tpl, _version_in(conn, tpl)


def list_templates(db: Database) -> list[tuple[Template, VersionInfo | None]]:
    """Every template with its latest published version, by name."""
    with db.connect() as conn:
        rows = list(conn.execute(select(templates).order_by(templates.c.name)))
        return [(t, _version_in(conn, t)) for t in map(_template, rows)]


def update_draft(db: Database, name: str, change: Callable[[Template], TemplateContent],
                 now: datetime) -> Template:
    """Replace the draft by ``change(template)`` (which may raise to refuse)."""
    with db.begin() as conn:
        tpl = _template_in(conn, name, for_update=True)
        conn.execute(update(templates).where(templates.c.id == tpl.id).values(
            draft=content_to_json(change(tpl)), updated_at=now))
        return _template_in(conn, name)


def set_paused(db: Database, name: str, paused: bool, now: datetime) -> bool:
    """Pause or un-pause the template; False when it already was."""
    with db.begin() as conn:
        tpl = _template_in(conn, name, for_update=True)
        if tpl.paused == paused:
            return False
        conn.execute(update(templates).where(templates.c.id == tpl.id).values(
            paused=paused, updated_at=now))
    return True


def resume(db: Database, name: str, now: datetime, reason: str) -> int | None:
    """Un-pause the template and release its held events in the same transaction
    (``queue.release_paused_in``); None when it was not paused, else how many."""
    with db.begin() as conn:
        tpl = _template_in(conn, name, for_update=True)
        if not tpl.paused:
            return None
        conn.execute(update(templates).where(templates.c.id == tpl.id).values(
            paused=False, updated_at=now))
        released = release_paused_in(conn, tpl.event_type, tpl.channel, now, reason)
        if released:
            dialect.wake_dispatcher(conn)
    return released


def delete_template(db: Database, name: str) -> None:
    with db.begin() as conn:
        template_id = _template_in(conn, name).id
        conn.execute(delete(template_versions)
                     .where(template_versions.c.template_id == template_id))
        conn.execute(delete(seeds).where(seeds.c.template_id == template_id))
        conn.execute(delete(templates).where(templates.c.id == template_id))


# ---------------------------------------------------------------- versions


def _version(row: Any, tpl: Template) -> VersionInfo:
    version = TemplateVersion(
        id=row.id, template_id=tpl.id, template_name=tpl.name, event_type=tpl.event_type,
        channel=tpl.channel, version=row.version, content=content_from_json(row.content),
        content_hash=row.content_hash, published_at=row.published_at,
        published_by=row.published_by)
    return VersionInfo(version, row.unpublished_at)


def _version_in(conn: Connection, tpl: Template, number: int | None = None
                ) -> VersionInfo | None:
    query = select(template_versions).where(template_versions.c.template_id == tpl.id)
    if number is None:
        query = query.order_by(template_versions.c.version.desc()).limit(1)
    else:
        query = query.where(template_versions.c.version == number)
    row = conn.execute(query).first()
    return _version(row, tpl) if row else None


def publish(db: Database, name: str, operator: str, now: datetime,
            check: Callable[[Template, VersionInfo | None], None]) -> VersionInfo:
    """Freeze the draft as the next version, once ``check(template, latest)`` accepts it
    (with the template row locked, so two publishes cannot both pass it)."""
    try:
        with db.begin() as conn:
            tpl = _template_in(conn, name, for_update=True)
            check(tpl, _version_in(conn, tpl))
            number = (conn.execute(select(func.max(template_versions.c.version))
                                   .where(template_versions.c.template_id == tpl.id)
                                   ).scalar() or 0) + 1
            conn.execute(insert(template_versions).values(
                template_id=tpl.id, version=number, content=content_to_json(tpl.draft),
                content_hash=content_hash(tpl.draft), published_at=now, published_by=operator))
            info = _version_in(conn, tpl, number)
    except IntegrityError as exc:  # SQLite has no row lock: the unique version number
        raise Conflict(f"template {name!r} was published concurrently; try again") from exc
    assert info is not None
    return info


def unpublish(db: Database, name: str, now: datetime) -> VersionInfo | None:
    """Stamp the live version unpublished (superseded versions keep their history);
    None when the template is not published."""
    with db.begin() as conn:
        tpl = _template_in(conn, name, for_update=True)
        latest = _version_in(conn, tpl)
        if latest is None or latest.unpublished_at is not None:
            return None
        conn.execute(update(template_versions).where(
            template_versions.c.id == latest.version.id,
            template_versions.c.unpublished_at.is_(None)).values(unpublished_at=now))
        return _version_in(conn, tpl)


def get_version(db: Database, name: str, number: int | None = None) -> VersionInfo | None:
    """Version ``number`` of the template, or its latest version when ``number`` is None."""
    with db.connect() as conn:
        return _version_in(conn, _template_in(conn, name), number)


def list_versions(db: Database, name: str) -> list[VersionInfo]:
    with db.connect() as conn:
        tpl = _template_in(conn, name)
        rows = conn.execute(select(template_versions)
                            .where(template_versions.c.template_id == tpl.id)
                            .order_by(template_versions.c.version))
        return [_version(r, tpl) for r in rows]


def route_candidates(db: Database, event_type: str, channel: Channel
                     ) -> list[tuple[Template, VersionInfo | None]]:
    """Templates of this type and channel, each with its latest version (if published)."""
    latest = (select(template_versions.c.template_id,
                     func.max(template_versions.c.version).label("version"))
              .group_by(template_versions.c.template_id).subquery())
    query = (select(templates, template_versions.c.id.label("version_id"),
                    template_versions.c.version, template_versions.c.content,
                    template_versions.c.content_hash, template_versions.c.published_at,
                    template_versions.c.published_by, template_versions.c.unpublished_at)
             .select_from(templates.outerjoin(latest, latest.c.template_id == templates.c.id)
                          .outerjoin(template_versions, and_(
                              template_versions.c.template_id == templates.c.id,
                              template_versions.c.version == latest.c.version)))
             .where(templates.c.event_type == event_type,
                    templates.c.channel == channel.value))
    with db.connect() as conn:
        rows = list(conn.execute(query))
    out: list[tuple[Template, VersionInfo | None]] = []
    for row in rows:
        tpl = _template(row)
        info = None
        if row.version_id is not None:
            version = TemplateVersion(
                id=row.version_id, template_id=tpl.id, template_name=tpl.name,
                event_type=tpl.event_type, channel=tpl.channel, version=row.version,
                content=content_from_json(row.content), content_hash=row.content_hash,
                published_at=row.published_at, published_by=row.published_by)
            info = VersionInfo(version, row.unpublished_at)
        out.append((tpl, info))
    return out


# ---------------------------------------------------------------- seeds


def _seeds_in(conn: Connection, template_id: int | None = None) -> list[Seed]:
    query = (select(seeds, templates.c.name.label("template_name"))
             .join(templates, templates.c.id == seeds.c.template_id)
             .order_by(templates.c.name, seeds.c.address))
    if template_id is not None:
        query = query.where(seeds.c.template_id == template_id)
    return [Seed(r.id, r.template_name, r.address, r.ctx_xml, r.external_id, r.created_at)
            for r in conn.execute(query)]


def upsert_seed(db: Database, template: str, address: str, ctx_xml: str,
                external_id: str | None, now: datetime) -> Seed:
    """Add the template's seed for ``address``, or replace its data."""
    with db.begin() as conn:
        template_id = _template_in(conn, template, for_update=True).id
        where = (seeds.c.template_id == template_id, seeds.c.address == address)
        if conn.execute(select(seeds.c.id).where(*where)).first():
            conn.execute(update(seeds).where(*where)
                         .values(ctx_xml=ctx_xml, external_id=external_id))
        else:
            conn.execute(insert(seeds).values(template_id=template_id, address=address,
                                              ctx_xml=ctx_xml, external_id=external_id,
                                              created_at=now))
        return next(s for s in _seeds_in(conn, template_id) if s.address == address)


def list_seeds(db: Database, template: str | None = None) -> list[Seed]:
    """Seeds of one template (or of every template), by template and address."""
    with db.connect() as conn:
        template_id = _template_in(conn, template).id if template else None
        return _seeds_in(conn, template_id)


def delete_seed(db: Database, template: str, address: str) -> bool:
    with db.begin() as conn:
        template_id = _template_in(conn, template).id
        return conn.execute(delete(seeds).where(seeds.c.template_id == template_id,
                                                seeds.c.address == address)).rowcount > 0


# ---------------------------------------------------------------- proofs


def record_proofs(db: Database, version_id: int | None, attempts: Sequence[Delivery],
                  now: datetime) -> None:
    """Proof sends in the delivery log (``is_proof``: no event, never counted as sent)."""
    if not attempts:
        return
    with db.begin() as conn:
        conn.execute(insert(delivery_log), [{
            "event_id": None, "template_version_id": version_id, "channel": d.channel,
            "address": d.address, "outcome": d.outcome, "response_code": d.response_code,
            "response_text": d.response_text[:1000], "message_id": d.message_id,
            "duration_ms": d.duration_ms, "is_proof": True, "created_at": now,
        } for d in attempts])
