"""Catalog storage: event types, templates (drafts), published versions, seeds.

Every function takes a connection inside the caller's transaction and returns values.
A published version row is written once and never updated, except for its
``unpublished_at`` stamp.  Also here: releasing a template's ``paused`` events and
recording proof sends in the delivery log (``is_proof``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from soap_service.models import (
    WISHED_CHANNELS,
    Channel,
    EventStatus,
    EventType,
    Lane,
    TemplateContent,
    TemplateVersion,
)
from soap_service.tables import (
    delivery_log,
    event_status_log,
    event_types,
    events,
    seeds,
    template_versions,
    templates,
)

WAITING = (EventStatus.PENDING.value, EventStatus.PROCESSING.value, EventStatus.PAUSED.value)


@dataclass(frozen=True)
class Template:
    """A template as stored: its draft and switches (versions are separate)."""

    id: int
    name: str
    event_type: str
    channel: Channel
    draft: TemplateContent
    paused: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionInfo:
    version: TemplateVersion
    unpublished_at: datetime | None


@dataclass(frozen=True)
class Seed:
    id: int
    template: str
    address: str
    ctx_xml: str
    external_id: str | None
    created_at: datetime


# ---------------------------------------------------------------- content encoding


def content_to_json(content: TemplateContent) -> str:
    return json.dumps(dataclasses.asdict(content), sort_keys=True, ensure_ascii=False)


def content_from_json(raw: str) -> TemplateContent:
    data = json.loads(raw or "{}")
    known = {f.name for f in dataclasses.fields(TemplateContent)}
    return TemplateContent(**{k: v for k, v in data.items() if k in known})


def content_hash(content: TemplateContent) -> str:
    return hashlib.sha256(content_to_json(content).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- event types


def _event_type(row: Any) -> EventType:
    return EventType(name=row.name, label=row.label, lane=Lane(row.lane),
                     max_attempts=row.max_attempts, validity_seconds=row.validity_seconds,
                     retention_seconds=row.retention_seconds)


def insert_event_type(conn: Connection, et: EventType, now: datetime) -> None:
    conn.execute(insert(event_types).values(
        name=et.name, label=et.label, lane=et.lane.value, max_attempts=et.max_attempts,
        validity_seconds=et.validity_seconds, retention_seconds=et.retention_seconds,
        created_at=now, updated_at=now))


def update_event_type(conn: Connection, et: EventType, now: datetime) -> None:
    conn.execute(update(event_types).where(event_types.c.name == et.name).values(
        label=et.label, lane=et.lane.value, max_attempts=et.max_attempts,
        validity_seconds=et.validity_seconds, retention_seconds=et.retention_seconds,
        updated_at=now))


def get_event_type(conn: Connection, name: str) -> EventType | None:
    row = conn.execute(select(event_types).where(event_types.c.name == name)).first()
    return _event_type(row) if row else None


def list_event_types(conn: Connection) -> list[EventType]:
    rows = conn.execute(select(event_types).order_by(event_types.c.name))
    return [_event_type(r) for r in rows]


def event_type_usage(conn: Connection, name: str) -> tuple[int, int]:
    """(templates of this type, events of this type still waiting to be sent)."""
    n_templates = conn.execute(select(func.count()).select_from(templates)
                               .where(templates.c.event_type == name)).scalar_one()
    n_events = conn.execute(select(func.count()).select_from(events).where(
        events.c.event_type == name, events.c.status.in_(WAITING))).scalar_one()
    return int(n_templates), int(n_events)


def delete_event_type(conn: Connection, name: str) -> bool:
    return conn.execute(delete(event_types).where(event_types.c.name == name)).rowcount > 0


# ---------------------------------------------------------------- templates


def _template(row: Any) -> Template:
    return Template(id=row.id, name=row.name, event_type=row.event_type,
                    channel=Channel(row.channel), draft=content_from_json(row.draft),
                    paused=bool(row.paused), created_at=row.created_at,
                    updated_at=row.updated_at)


def insert_template(conn: Connection, name: str, event_type: str, channel: Channel,
                    draft: TemplateContent, now: datetime) -> None:
    conn.execute(insert(templates).values(
        name=name, event_type=event_type, channel=channel.value,
        draft=content_to_json(draft), paused=False, created_at=now, updated_at=now))


def get_template(conn: Connection, name: str, *, for_update: bool = False) -> Template | None:
    query = select(templates).where(templates.c.name == name)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return _template(row) if row else None


def list_templates(conn: Connection) -> list[Template]:
    return [_template(r) for r in conn.execute(select(templates).order_by(templates.c.name))]


def update_draft(conn: Connection, template_id: int, draft: TemplateContent,
                 now: datetime) -> None:
    conn.execute(update(templates).where(templates.c.id == template_id).values(
        draft=content_to_json(draft), updated_at=now))


def set_paused(conn: Connection, template_id: int, paused: bool, now: datetime) -> None:
    conn.execute(update(templates).where(templates.c.id == template_id).values(
        paused=paused, updated_at=now))


def delete_template(conn: Connection, template_id: int) -> None:
    conn.execute(delete(template_versions).where(template_versions.c.template_id == template_id))
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


def insert_version(conn: Connection, tpl: Template, content: TemplateContent, operator: str,
                   now: datetime) -> VersionInfo:
    number = (conn.execute(select(func.max(template_versions.c.version))
                           .where(template_versions.c.template_id == tpl.id)).scalar() or 0) + 1
    conn.execute(insert(template_versions).values(
        template_id=tpl.id, version=number, content=content_to_json(content),
        content_hash=content_hash(content), published_at=now, published_by=operator))
    info = get_version(conn, tpl, number)
    assert info is not None
    return info


def get_version(conn: Connection, tpl: Template, number: int | None = None) -> VersionInfo | None:
    """Version ``number`` of the template, or its latest version when ``number`` is None."""
    query = select(template_versions).where(template_versions.c.template_id == tpl.id)
    if number is None:
        query = query.order_by(template_versions.c.version.desc()).limit(1)
    else:
        query = query.where(template_versions.c.version == number)
    row = conn.execute(query).first()
    return _version(row, tpl) if row else None


def list_versions(conn: Connection, tpl: Template) -> list[VersionInfo]:
    rows = conn.execute(select(template_versions).where(template_versions.c.template_id == tpl.id)
                        .order_by(template_versions.c.version))
    return [_version(r, tpl) for r in rows]


def unpublish(conn: Connection, version_id: int, now: datetime) -> int:
    """Stamp one version (the live one) unpublished; superseded versions keep their history."""
    return conn.execute(update(template_versions).where(
        template_versions.c.id == version_id,
        template_versions.c.unpublished_at.is_(None)).values(unpublished_at=now)).rowcount


def route_candidates(conn: Connection, event_type: str, channel: Channel
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
    out: list[tuple[Template, VersionInfo | None]] = []
    for row in conn.execute(query):
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


# ---------------------------------------------------------------- paused events


def _channel_condition(channel: Channel) -> Any:
    numbers = [n for n, c in WISHED_CHANNELS.items() if c is channel]
    if channel is Channel.EMAIL:  # unknown wishedChannel values fall back to email
        others = [n for n, c in WISHED_CHANNELS.items() if c is not Channel.EMAIL]
        return events.c.wished_channel.notin_(others)
    return events.c.wished_channel.in_(numbers)


def release_paused(conn: Connection, event_type: str, channel: Channel, now: datetime,
                   reason: str) -> int:
    """Move this type and channel's ``paused`` events back to ``pending``, due now."""
    where = (events.c.status == EventStatus.PAUSED.value, events.c.event_type == event_type,
             _channel_condition(channel))
    ids = [r.id for r in conn.execute(select(events.c.id).where(*where))]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        conn.execute(update(events).where(events.c.id.in_(chunk), *where).values(
            status=EventStatus.PENDING.value, process_at=now, claimed_by=None,
            claimed_until=None, updated_at=now))
        conn.execute(insert(event_status_log), [
            {"event_id": i, "status": EventStatus.PENDING.value, "reason": reason,
             "created_at": now} for i in chunk])
    return len(ids)


# ---------------------------------------------------------------- seeds


def upsert_seed(conn: Connection, template_id: int, address: str, ctx_xml: str,
                external_id: str | None, now: datetime) -> None:
    where = (seeds.c.template_id == template_id, seeds.c.address == address)
    if conn.execute(select(seeds.c.id).where(*where)).first():
        conn.execute(update(seeds).where(*where).values(ctx_xml=ctx_xml, external_id=external_id))
    else:
        conn.execute(insert(seeds).values(template_id=template_id, address=address,
                                          ctx_xml=ctx_xml, external_id=external_id,
                                          created_at=now))


def list_seeds(conn: Connection, template_id: int | None = None) -> list[Seed]:
    query = (select(seeds, templates.c.name.label("template_name"))
             .join(templates, templates.c.id == seeds.c.template_id)
             .order_by(templates.c.name, seeds.c.address))
    if template_id is not None:
        query = query.where(seeds.c.template_id == template_id)
    return [Seed(r.id, r.template_name, r.address, r.ctx_xml, r.external_id, r.created_at)
            for r in conn.execute(query)]


def delete_seed(conn: Connection, template_id: int, address: str) -> bool:
    return conn.execute(delete(seeds).where(seeds.c.template_id == template_id,
                                            seeds.c.address == address)).rowcount > 0


# ---------------------------------------------------------------- proofs


def record_proof(conn: Connection, *, version_id: int | None, channel: Channel, address: str,
                 outcome: str, code: int | None, text: str, message_id: str | None,
                 duration_ms: int, now: datetime) -> None:
    conn.execute(insert(delivery_log).values(
        event_id=None, template_version_id=version_id, channel=channel.value, address=address,
        outcome=outcome, response_code=code, response_text=text[:1000], message_id=message_id,
        duration_ms=duration_ms, is_proof=True, created_at=now))
