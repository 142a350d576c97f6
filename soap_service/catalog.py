"""The catalog: event types, templates and their lifecycle (SPEC §3.1-3.3).

Draft -> ``publish`` (a new immutable version: number, time, operator, content hash) ->
``unpublish`` (the template stops routing) / ``pause`` (matching events are held as
``paused``) / ``resume`` (held events go back to ``pending``).  Template syntax is checked
when a draft is saved and again at publish, so a broken template never reaches the worker.

The worker calls :func:`find_route` and :func:`get_event_type` for every event, ingest
:func:`event_type_lanes` for every call; all three are answered from one cache, for
:data:`CACHE_SECONDS` (writes made through this module clear it at once; other processes
see them within that time).  No SQL here: ``store.catalog`` owns every query and
transaction.
"""

from __future__ import annotations

import dataclasses
import difflib
import email.utils
import logging
import re
from dataclasses import dataclass
from typing import Any

from soap_service import clock, render, wakeup
from soap_service.addresses import is_email_address
from soap_service.cache import TtlCache
from soap_service.errors import Conflict, NotFound, ValidationFailed
from soap_service.models import (
    Channel,
    Event,
    EventType,
    Lane,
    MissingProfile,
    ReconcileOn,
    Seed,
    Targeting,
    Template,
    TemplateContent,
    VersionInfo,
)
from soap_service.route import Candidate, Route, select_version
from soap_service.store import Database
from soap_service.store import catalog as store

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# (database, what) -> answer: the event types, and the route candidates of a type+channel
_cache: TtlCache[Any] = TtlCache(CACHE_SECONDS)


def clear_cache() -> None:
    """Forget every cached answer (after a write; or to read another process's at once)."""
    _cache.clear()


def _check_length(what: str, value: str | None, limit: int) -> None:
    """The columns' sizes, checked here: PostgreSQL would refuse a longer value with an
    error no user should see (SQLite would store it)."""
    if value is not None and len(value) > limit:
        raise ValidationFailed(f"{what} is too long (at most {limit} characters)")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name or ""):
        raise ValidationFailed(f"invalid {kind} name {name!r}: use letters, digits, '_', '.', "
                               "'-' (at most 64 characters)")


# ---------------------------------------------------------------- event types


def add_event_type(db: Database, et: EventType) -> EventType:
    _check_name("event type", et.name)
    _check_event_type(et)
    store.insert_event_type(db, et, clock.utcnow())
    clear_cache()
    log.info("eventtype.added name=%s", et.name)
    return et


def update_event_type(db: Database, name: str, **changes: Any) -> EventType:
    def change(current: EventType) -> EventType:
        updated = dataclasses.replace(current, **{k: v for k, v in changes.items()
                                                  if v is not None})
        _check_event_type(updated)
        return updated

    updated = store.update_event_type(db, name, change, clock.utcnow())
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
    Targeting(et.targeting)
    ReconcileOn(et.reconcile_on)
    MissingProfile(et.missing_profile)


@dataclass(frozen=True)
class _EventTypes:
    """Every declared event type, as one cached snapshot."""

    by_name: dict[str, EventType]
    lanes: dict[str, str]
    profile_based: frozenset[str]


def _event_types(db: Database) -> _EventTypes:
    def load() -> _EventTypes:
        types = {et.name: et for et in store.list_event_types(db)}
        return _EventTypes(types, {name: et.lane.value for name, et in types.items()},
                           frozenset(name for name, et in types.items()
                                     if et.targeting is Targeting.PROFILE))

    snapshot: _EventTypes = _cache.get_or_load((db, "eventtypes"), load)
    return snapshot


def get_event_type(db: Database, name: str) -> EventType | None:
    """The event type called ``name`` (cached briefly), or None when it is not defined."""
    return _event_types(db).by_name.get(name)


def event_type_lanes(db: Database) -> dict[str, str]:
    """``{event type name: lane}`` for ingest's dispatch priority (cached briefly, with
    :func:`get_event_type`'s answers: one read of the event types per process and period)."""
    return _event_types(db).lanes


def profile_based_types(db: Database) -> frozenset[str]:
    """The names of the profile-based event types (cached with :func:`get_event_type`):
    ingest accepts their events without an address (the profile has it)."""
    return _event_types(db).profile_based


def require_event_type(db: Database, name: str) -> EventType:
    et = store.get_event_type(db, name)
    if et is None:
        raise NotFound(f"no event type {name!r}")
    return et


def list_event_types(db: Database) -> list[EventType]:
    return store.list_event_types(db)


def remove_event_type(db: Database, name: str) -> None:
    """Delete an event type; refused while templates or waiting events use it."""
    store.delete_event_type(db, name)
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


def check_parts(content: TemplateContent, channel: Channel) -> None:
    """Refuse parts the channel has no use for (``--subject`` on an SMS template is a slip,
    not something to store silently), then check the others' syntax, and that a From or
    Reply-To written out (not personalised) is an address."""
    own = [*render.CHANNEL_PARTS[channel], *(["push_data"] if channel is Channel.PUSH else [])]
    foreign = [f.name for f in dataclasses.fields(TemplateContent)
               if f.name not in own and f.name != "variants" and getattr(content, f.name)]
    if foreign:
        article = "an" if channel is Channel.EMAIL else "a"
        raise ValidationFailed(f"{article} {channel.value} template has no {_options(foreign)} "
                               f"(its parts: {_options(own)})")
    render.check_content(content, channel)
    if channel is Channel.SMS:
        _check_sms_sender(content.from_addr)
        return
    for option, value in (("--from", content.from_addr), ("--reply-to", content.reply_to)):
        personalised = "<%" in value or "{{" in value or "{%" in value
        if value.strip() and not personalised and \
                not is_email_address(email.utils.parseaddr(value)[1]):
            raise ValidationFailed(f"{option} {value!r} is not an email address (write "
                                   "'name@example.com' or 'Name <name@example.com>')")


_SMS_SENDER = re.compile(r"\+?[0-9]{1,20}|[A-Za-z0-9 .&_-]{1,11}")


def _check_sms_sender(value: str) -> None:
    """An SMS template's From is its sender: a number (up to 20 digits) or a name of at
    most 11 letters, digits and ``. & _ -`` (what SMS networks carry)."""
    personalised = "<%" in value or "{{" in value or "{%" in value
    if value.strip() and not personalised and not _SMS_SENDER.fullmatch(value.strip()):
        raise ValidationFailed(f"--from {value!r} is not an SMS sender (a number of up to 20 "
                               "digits, or a name of up to 11 letters and digits)")


def _options(fields: list[str]) -> str:
    return ", ".join("--" + f.removesuffix("_addr").replace("_", "-") for f in fields)


def create_template(db: Database, name: str, event_type: str, channel: Channel,
                    content: TemplateContent) -> Template:
    _check_name("template", name)
    check_parts(content, channel)
    tpl = store.insert_template(db, name, event_type, channel, content, clock.utcnow())
    log.info("template.created name=%s type=%s channel=%s", name, event_type, channel.value)
    return tpl


def edit_template(db: Database, name: str, **changes: Any) -> Template:
    """Change fields of the draft (``None`` leaves a field as it is); published versions
    are never touched."""
    def change(tpl: Template) -> TemplateContent:
        draft = dataclasses.replace(tpl.draft, **{k: v for k, v in changes.items()
                                                 if v is not None})
        check_parts(draft, tpl.channel)
        return draft

    tpl = store.update_draft(db, name, change, clock.utcnow())
    log.info("template.edited name=%s", name)
    return tpl


def get_template(db: Database, name: str) -> TemplateSummary:
    return TemplateSummary(*store.template_with_latest(db, name))


def list_templates(db: Database) -> list[TemplateSummary]:
    return [TemplateSummary(t, v) for t, v in store.list_templates(db)]


def delete_template(db: Database, name: str) -> None:
    store.delete_template(db, name)
    clear_cache()
    log.info("template.deleted name=%s", name)


# ---------------------------------------------------------------- lifecycle


def publish(db: Database, name: str, operator: str) -> VersionInfo:
    """Freeze the draft as a new published version; routing uses it from now on."""
    _check_length("operator", operator, 128)

    def check(tpl: Template, latest: VersionInfo | None) -> None:
        render.check_complete(tpl.draft, tpl.channel)
        if latest and latest.unpublished_at is None and \
                latest.version.content_hash == store.content_hash(tpl.draft):
            raise Conflict(f"nothing to publish: the draft is identical to version "
                           f"{latest.version.version}")

    info = store.publish(db, name, operator or "unknown", clock.utcnow(), check)
    clear_cache()
    log.info("template.published name=%s version=%s", name, info.version.version)
    return info


def unpublish(db: Database, name: str) -> VersionInfo:
    """Stop routing to the template (events of its type and channel end routingFailed)."""
    latest = store.unpublish(db, name, clock.utcnow())
    if latest is None:
        raise Conflict(f"template {name!r} is not published")
    clear_cache()
    log.info("template.unpublished name=%s version=%s", name, latest.version.version)
    return latest


def pause(db: Database, name: str) -> Template:
    """Hold events routed to this template in the queue (status ``paused``)."""
    if not store.set_paused(db, name, True, clock.utcnow()):
        raise Conflict(f"template {name!r} is already paused")
    clear_cache()
    log.info("template.paused name=%s", name)
    tpl = store.get_template(db, name)
    if tpl is None:  # deleted in the meantime
        raise NotFound(f"no template {name!r}")
    return tpl


def resume(db: Database, name: str) -> int:
    """Un-pause the template and move its ``paused`` events back to ``pending``.

    Returns how many events were released (``store.queue.release_paused_in``: plain
    events of its type and channel, and follow-ups pinned to a template no longer paused)."""
    released = store.resume(db, name, clock.utcnow(), f"template {name} resumed")
    if released is None:
        raise Conflict(f"template {name!r} is not paused")
    clear_cache()
    log.info("template.resumed name=%s released=%s", name, released)
    if released:
        wakeup.notify_after_commit(db)
    return released


def versions(db: Database, name: str) -> list[VersionInfo]:
    return store.list_versions(db, name)


def get_version(db: Database, name: str, number: int | None = None) -> VersionInfo:
    """Version ``number`` of a template (its latest when None)."""
    info = store.get_version(db, name, number)
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
    return "".join(line + "\n" for line in _diff_lines(a, b, f"{name}@{old}/",
                                                         f"{name}@{new}/"))


def _diff_lines(a: TemplateContent, b: TemplateContent, left: str, right: str) -> list[str]:
    """Part by part; a language variant's parts as ``variants/fr/subject``."""
    out: list[str] = []
    for lang in sorted(set(a.variants) | set(b.variants)):
        empty = TemplateContent()
        out += _diff_lines(a.variants.get(lang, empty), b.variants.get(lang, empty),
                           f"{left}variants/{lang}/", f"{right}variants/{lang}/")
    for f in dataclasses.fields(TemplateContent):
        before, after = getattr(a, f.name), getattr(b, f.name)
        if before == after or f.name == "variants":
            continue
        if isinstance(before, dict):
            before, after = _dict_lines(before), _dict_lines(after)
        # lines compared without their ends, so a part's last line (usually without a
        # newline: a subject) still gets a line of its own in the diff
        out.extend(difflib.unified_diff(
            str(before).splitlines(), str(after).splitlines(),
            f"{left}{f.name}", f"{right}{f.name}", lineterm=""))
    return out


def _dict_lines(values: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in sorted(values.items()))


# ---------------------------------------------------------------- routing


def find_route(db: Database, event: Event) -> Route:
    """The version serving ``event`` (cached for a couple of seconds), or why none does."""
    channel = event.channel

    def load() -> list[Candidate]:
        rows = store.route_candidates(db, event.event_type, channel)
        return [Candidate(t.name, t.event_type, t.channel, v.version if v else None,
                          unpublished=bool(v and v.unpublished_at), paused=t.paused)
                for t, v in rows]

    candidates = _cache.get_or_load((db, "route", event.event_type, channel), load)
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
    tpl = store.get_template(db, template)
    if tpl is None:
        raise NotFound(f"no template {template!r}")
    if tpl.channel is Channel.EMAIL and not is_email_address(address.strip()):
        raise ValidationFailed(f"{address!r} is not an email address (template "
                               f"{template!r} is an email template)")
    seed = store.upsert_seed(db, template, address.strip(), ctx_xml, external_id,
                             clock.utcnow())
    log.info("seed.added template=%s", template)
    return seed


def list_seeds(db: Database, template: str | None = None) -> list[Seed]:
    return store.list_seeds(db, template)


def remove_seed(db: Database, template: str, address: str) -> None:
    if not store.delete_seed(db, template, address):
        raise NotFound(f"template {template!r} has no seed {address!r}")
