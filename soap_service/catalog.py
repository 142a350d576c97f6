"""The catalog: event types, templates and their lifecycle (SPEC §3.1-3.3).

Draft -> ``publish`` (a new immutable version: number, time, operator, content hash) ->
``unpublish`` (the template stops routing) / ``pause`` (matching events are held as
``paused``) / ``resume`` (held events go back to ``pending``).  Template syntax is checked
when a draft is saved and again at publish, so a broken template never reaches the worker.

The worker calls :func:`find_route` and :func:`get_event_type` for every event; both
cache for :data:`CACHE_SECONDS` (writes made through this module clear the cache at once;
other processes see them within that time).
"""

from __future__ import annotations

import dataclasses
import difflib
import email.utils
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from soap_service import clock, render, wakeup
from soap_service.errors import Conflict, NotFound, ValidationFailed
from soap_service.models import Channel, Event, EventType, Lane, TemplateContent
from soap_service.route import Candidate, Route, select_version
from soap_service.store import Database
from soap_service.store import catalog as store
from soap_service.store.catalog import Seed, Template, VersionInfo

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
CACHE_MAX_ENTRIES = 4096  # events with ever-new unknown types must not grow it forever
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_cache: dict[tuple[str, Any], tuple[float, Any]] = {}


def clear_cache() -> None:
    _cache.clear()


def _cached(db: Database, key: Any, load: Any) -> Any:
    full_key = (str(db.engine.url), key)
    hit = _cache.get(full_key)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    value = load()
    if len(_cache) >= CACHE_MAX_ENTRIES:
        _cache.clear()
    _cache[full_key] = (now + CACHE_SECONDS, value)
    return value


def _check_length(what: str, value: str | None, limit: int) -> None:
    """The columns' sizes, checked here: PostgreSQL would refuse a longer value with an
    error no user should see (SQLite would store it)."""
    if value is not None and len(value) > limit:
        raise ValidationFailed(f"{what} is too long (at most {limit} characters)")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name or ""):
        raise ValidationFailed(f"invalid {kind} name {name!r}: use letters, digits, '_', '.', "
                               "'-' (at most 64 characters)")


# ---------------------------------------------------------------- durations

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)\s*([wdhms])")
# 50 years: fits the INTEGER columns (validity, retention, follow-up delay) and datetimes
MAX_DURATION = 50 * 365 * 86400


def parse_duration(text: str) -> int:
    """``"90"`` (seconds), ``"15m"``, ``"36h"``, ``"1d"``, ``"1h30m"``, ``"2w"`` -> seconds."""
    raw = text.strip().lower()
    if raw.isdecimal():  # not isdigit(): "²" is a digit that int() refuses
        seconds = int(raw)
    else:
        parts = _DURATION.findall(raw)
        if not parts or _DURATION.sub("", raw).strip():
            raise ValidationFailed(f"invalid duration {text!r} (examples: 90s, 15m, 36h, 1d, 2w)")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds > MAX_DURATION:
        raise ValidationFailed(f"duration {text!r} is too long (at most {MAX_DURATION // 86400}d)")
    return seconds


def format_duration(seconds: int) -> str:
    if seconds <= 0:
        return "0s"
    out = ""
    for unit, size in _UNITS.items():
        if unit == "w" and seconds % size:
            continue  # "10d" reads better than "1w3d"
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


# ---------------------------------------------------------------- event types


def add_event_type(db: Database, et: EventType) -> EventType:
    _check_name("event type", et.name)
    _check_event_type(et)
    try:
        with db.begin() as conn:
            store.insert_event_type(conn, et, clock.utcnow())
    except IntegrityError as exc:
        raise Conflict(f"event type {et.name!r} already exists") from exc
    clear_cache()
    log.info("eventtype.added name=%s", et.name)
    return et


def update_event_type(db: Database, name: str, **changes: Any) -> EventType:
    with db.begin() as conn:
        current = store.get_event_type(conn, name)
        if current is None:
            raise NotFound(f"no event type {name!r}")
        updated = dataclasses.replace(current, **{k: v for k, v in changes.items()
                                                  if v is not None})
        _check_event_type(updated)
        store.update_event_type(conn, updated, clock.utcnow())
    clear_cache()
    log.info("eventtype.updated name=%s", name)
    return updated


def _check_event_type(et: EventType) -> None:
    if not 1 <= et.max_attempts <= 100:
        raise ValidationFailed("max attempts must be between 1 and 100")
    if et.validity_seconds < 1 or et.retention_seconds < 1:
        raise ValidationFailed("validity and retention must be positive durations")
    _check_length("label", et.label, 255)
    Lane(et.lane)


def get_event_type(db: Database, name: str) -> EventType | None:
    """The event type called ``name`` (cached briefly), or None when it is not defined."""
    def load() -> EventType | None:
        with db.connect() as conn:
            return store.get_event_type(conn, name)
    found: EventType | None = _cached(db, ("eventtype", name), load)
    return found


def require_event_type(db: Database, name: str) -> EventType:
    with db.connect() as conn:
        et = store.get_event_type(conn, name)
    if et is None:
        raise NotFound(f"no event type {name!r}")
    return et


def list_event_types(db: Database) -> list[EventType]:
    with db.connect() as conn:
        return store.list_event_types(conn)


def remove_event_type(db: Database, name: str) -> None:
    """Delete an event type; refused while templates or waiting events use it."""
    with db.begin() as conn:
        if store.get_event_type(conn, name) is None:
            raise NotFound(f"no event type {name!r}")
        n_templates, n_events = store.event_type_usage(conn, name)
        if n_templates or n_events:
            raise Conflict(f"event type {name!r} is in use: {n_templates} template(s), "
                           f"{n_events} event(s) waiting to be sent")
        store.delete_event_type(conn, name)
    clear_cache()
    log.info("eventtype.removed name=%s", name)


# ---------------------------------------------------------------- templates


@dataclass(frozen=True)
class TemplateSummary:
    template: Template
    latest: VersionInfo | None

    @property
    def state(self) -> str:
        if self.latest is None:
            return "draft"
        if self.latest.unpublished_at is not None:
            return "unpublished"
        return "paused" if self.template.paused else "published"

    @property
    def draft_changed(self) -> bool:
        return self.latest is None or \
            store.content_hash(self.template.draft) != self.latest.version.content_hash


def _check_parts(content: TemplateContent, channel: Channel) -> None:
    """Refuse parts the channel has no use for (``--subject`` on an SMS template is a slip,
    not something to store silently), then check the others' syntax, and that a From or
    Reply-To written out (not personalised) is an address."""
    own = [*render.CHANNEL_PARTS[channel], *(["push_data"] if channel is Channel.PUSH else [])]
    foreign = [f.name for f in dataclasses.fields(TemplateContent)
               if f.name not in own and getattr(content, f.name)]
    if foreign:
        article = "an" if channel is Channel.EMAIL else "a"
        raise ValidationFailed(f"{article} {channel.value} template has no {_options(foreign)} "
                               f"(its parts: {_options(own)})")
    render.check_content(content, channel)
    for option, value in (("--from", content.from_addr), ("--reply-to", content.reply_to)):
        personalised = "<%" in value or "{{" in value or "{%" in value
        if value.strip() and not personalised and "@" not in email.utils.parseaddr(value)[1]:
            raise ValidationFailed(f"{option} {value!r} is not an email address (write "
                                   "'name@example.com' or 'Name <name@example.com>')")


def _options(fields: list[str]) -> str:
    return ", ".join("--" + f.removesuffix("_addr").replace("_", "-") for f in fields)


def create_template(db: Database, name: str, event_type: str, channel: Channel,
                    content: TemplateContent) -> Template:
    _check_name("template", name)
    _check_parts(content, channel)
    with db.begin() as conn:
        if store.get_event_type(conn, event_type) is None:
            raise NotFound(f"no event type {event_type!r} (create it with: msgcenter "
                           f"eventtype add {event_type})")
        if store.get_template(conn, name) is not None:
            raise Conflict(f"template {name!r} already exists")
        store.insert_template(conn, name, event_type, channel, content, clock.utcnow())
        tpl = store.get_template(conn, name)
    assert tpl is not None
    log.info("template.created name=%s type=%s channel=%s", name, event_type, channel.value)
    return tpl


def edit_template(db: Database, name: str, **changes: Any) -> Template:
    """Change fields of the draft (``None`` leaves a field as it is); published versions
    are never touched."""
    with db.begin() as conn:
        tpl = _template(conn, name, for_update=True)
        draft = dataclasses.replace(tpl.draft, **{k: v for k, v in changes.items()
                                                 if v is not None})
        _check_parts(draft, tpl.channel)
        store.update_draft(conn, tpl.id, draft, clock.utcnow())
        tpl = _template(conn, name)
    log.info("template.edited name=%s", name)
    return tpl


def _template(conn: Any, name: str, for_update: bool = False) -> Template:
    tpl = store.get_template(conn, name, for_update=for_update)
    if tpl is None:
        raise NotFound(f"no template {name!r}")
    return tpl


def get_template(db: Database, name: str) -> TemplateSummary:
    with db.connect() as conn:
        tpl = _template(conn, name)
        return TemplateSummary(tpl, store.get_version(conn, tpl))


def list_templates(db: Database) -> list[TemplateSummary]:
    with db.connect() as conn:
        return [TemplateSummary(t, store.get_version(conn, t)) for t in store.list_templates(conn)]


def delete_template(db: Database, name: str) -> None:
    with db.begin() as conn:
        store.delete_template(conn, _template(conn, name).id)
    clear_cache()
    log.info("template.deleted name=%s", name)


# ---------------------------------------------------------------- lifecycle


def publish(db: Database, name: str, operator: str) -> VersionInfo:
    """Freeze the draft as a new published version; routing uses it from now on."""
    _check_length("operator", operator, 128)
    try:
        with db.begin() as conn:
            tpl = _template(conn, name, for_update=True)
            render.check_complete(tpl.draft, tpl.channel)
            latest = store.get_version(conn, tpl)
            if latest and latest.unpublished_at is None and \
                    latest.version.content_hash == store.content_hash(tpl.draft):
                raise Conflict(f"nothing to publish: the draft is identical to version "
                               f"{latest.version.version}")
            info = store.insert_version(conn, tpl, tpl.draft, operator or "unknown",
                                        clock.utcnow())
    except IntegrityError as exc:
        raise Conflict(f"template {name!r} was published concurrently; try again") from exc
    clear_cache()
    log.info("template.published name=%s version=%s", name, info.version.version)
    return info


def unpublish(db: Database, name: str) -> VersionInfo:
    """Stop routing to the template (events of its type and channel end routingFailed)."""
    with db.begin() as conn:
        tpl = _template(conn, name, for_update=True)
        latest = store.get_version(conn, tpl)
        if latest is None or latest.unpublished_at is not None:
            raise Conflict(f"template {name!r} is not published")
        store.unpublish(conn, latest.version.id, clock.utcnow())
        latest = store.get_version(conn, tpl)
    assert latest is not None
    clear_cache()
    log.info("template.unpublished name=%s version=%s", name, latest.version.version)
    return latest


def pause(db: Database, name: str) -> Template:
    """Hold events routed to this template in the queue (status ``paused``)."""
    with db.begin() as conn:
        tpl = _template(conn, name, for_update=True)
        if tpl.paused:
            raise Conflict(f"template {name!r} is already paused")
        store.set_paused(conn, tpl.id, True, clock.utcnow())
    clear_cache()
    log.info("template.paused name=%s", name)
    return dataclasses.replace(tpl, paused=True)


def resume(db: Database, name: str) -> int:
    """Un-pause the template and move its ``paused`` events back to ``pending``.

    Returns how many events were released."""
    with db.begin() as conn:
        tpl = _template(conn, name, for_update=True)
        if not tpl.paused:
            raise Conflict(f"template {name!r} is not paused")
        now = clock.utcnow()
        store.set_paused(conn, tpl.id, False, now)
        released = store.release_paused(conn, tpl.event_type, tpl.channel, now,
                                        f"template {name} resumed")
        if released:
            wakeup.notify_in_transaction(conn)
    clear_cache()
    log.info("template.resumed name=%s released=%s", name, released)
    if released:
        wakeup.notify_after_commit(db)
    return released


def versions(db: Database, name: str) -> list[VersionInfo]:
    with db.connect() as conn:
        return store.list_versions(conn, _template(conn, name))


def get_version(db: Database, name: str, number: int | None = None) -> VersionInfo:
    """Version ``number`` of a template (its latest when None)."""
    with db.connect() as conn:
        tpl = _template(conn, name)
        info = store.get_version(conn, tpl, number)
    if info is None:
        what = f"version {number}" if number is not None else "published version"
        raise NotFound(f"template {name!r} has no {what}")
    return info


def content_of(db: Database, name: str, which: str | int | None) -> TemplateContent:
    """The draft (``None`` / ``"draft"``) or a version's content (a number, ``"latest"``)."""
    if which is None or which == "draft":
        return get_template(db, name).template.draft
    if which == "latest":
        return get_version(db, name).version.content
    if isinstance(which, str) and not which.isdecimal():
        raise ValidationFailed(f"invalid version {which!r}: use a number, 'draft' or 'latest'")
    return get_version(db, name, int(which)).version.content


def diff(db: Database, name: str, old: str, new: str) -> str:
    """A unified diff, part by part, between two versions (numbers, ``draft``, ``latest``)."""
    a, b = content_of(db, name, old), content_of(db, name, new)
    out: list[str] = []
    for f in dataclasses.fields(TemplateContent):
        before, after = getattr(a, f.name), getattr(b, f.name)
        if before == after:
            continue
        if isinstance(before, dict):
            before, after = _dict_lines(before), _dict_lines(after)
        # lines compared without their ends, so a part's last line (usually without a
        # newline: a subject) still gets a line of its own in the diff
        out.extend(difflib.unified_diff(
            str(before).splitlines(), str(after).splitlines(),
            f"{name}@{old}/{f.name}", f"{name}@{new}/{f.name}", lineterm=""))
    return "".join(line + "\n" for line in out)


def _dict_lines(values: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in sorted(values.items()))


# ---------------------------------------------------------------- routing


def find_route(db: Database, event: Event) -> Route:
    """The version serving ``event`` (cached for a couple of seconds), or why none does."""
    channel = event.channel

    def load() -> list[Candidate]:
        with db.connect() as conn:
            rows = store.route_candidates(conn, event.event_type, channel)
        return [Candidate(t.name, t.event_type, t.channel, v.version if v else None,
                          unpublished=bool(v and v.unpublished_at), paused=t.paused)
                for t, v in rows]

    candidates = _cached(db, ("route", event.event_type, channel), load)
    pinned = event.attributes.get("template") if event.parent_id is not None else None
    if pinned:  # a follow-up is sent with its rule's template, not any of its type
        candidates = [c for c in candidates if c.template_name == pinned]
    return select_version(candidates, event.event_type, channel, event.queue)


# ---------------------------------------------------------------- seeds


def add_seed(db: Database, template: str, address: str, ctx_xml: str,
             external_id: str | None = None) -> Seed:
    """Add (or replace) a seed address with its test data for a template."""
    if not address.strip():
        raise ValidationFailed("a seed needs an address")
    _check_length("address", address.strip(), 320)
    _check_length("external id", external_id, 255)
    render.check_ctx(ctx_xml)
    with db.begin() as conn:
        tpl = _template(conn, template)
        if tpl.channel is Channel.EMAIL and not _EMAIL.match(address.strip()):
            raise ValidationFailed(f"{address!r} is not an email address (template "
                                   f"{template!r} is an email template)")
        store.upsert_seed(conn, tpl.id, address.strip(), ctx_xml, external_id, clock.utcnow())
        seed = next(s for s in store.list_seeds(conn, tpl.id) if s.address == address.strip())
    log.info("seed.added template=%s", template)
    return seed


def list_seeds(db: Database, template: str | None = None) -> list[Seed]:
    with db.connect() as conn:
        tpl_id = _template(conn, template).id if template else None
        return store.list_seeds(conn, tpl_id)


def remove_seed(db: Database, template: str, address: str) -> None:
    with db.begin() as conn:
        if not store.delete_seed(conn, _template(conn, template).id, address):
            raise NotFound(f"template {template!r} has no seed {address!r}")
