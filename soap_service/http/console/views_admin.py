"""Event types, follow-up rules, quarantine / denylist and connectors' health: the same
``catalog``, ``followup``, ``exclusions`` and ``report`` calls as the CLI."""

from __future__ import annotations

from typing import Any

from flask import url_for

from soap_service import catalog, exclusions, followup, report
from soap_service.durations import format_duration, parse_duration
from soap_service.errors import ValidationFailed
from soap_service.http.console import security
from soap_service.http.console.base import arg, back, blueprint, form, page
from soap_service.models import AddressKind, EventType, Lane

QUARANTINE_PAGE = 500


# ---------------------------------------------------------------- event types


@blueprint.get("/eventtypes")
@security.require()
def event_types() -> Any:
    return page("eventtypes.html", types=catalog.list_event_types(security.context().db),
                lanes=[lane.value for lane in Lane], duration=format_duration)


def _event_type_fields() -> dict[str, Any]:
    lane = form("lane", "transactional", 16)
    if lane not in {x.value for x in Lane}:
        raise ValidationFailed(f"unknown lane {lane!r}")
    attempts = form("max_attempts", "5", 4).strip()
    if not attempts.isdecimal():
        raise ValidationFailed("max attempts is a whole number")
    return {"label": form("label", "", 255).strip(), "lane": Lane(lane),
            "max_attempts": int(attempts),
            "validity_seconds": parse_duration(form("validity", "24h", 16)),
            "retention_seconds": parse_duration(form("retention", "30d", 16))}


@blueprint.post("/eventtypes")
@security.require("admin")
def event_type_add() -> Any:
    name = form("name", "", 64).strip()
    et = catalog.add_event_type(security.context().db, EventType(name=name,
                                                                 **_event_type_fields()))
    security.record("eventtype.add", et.name)
    return back(url_for("console.event_types"), f"Event type {et.name} added.")


@blueprint.post("/eventtypes/<name>")
@security.require("admin")
def event_type_update(name: str) -> Any:
    catalog.update_event_type(security.context().db, name, **_event_type_fields())
    security.record("eventtype.update", name)
    return back(url_for("console.event_types"), f"Event type {name} saved.")


# ---------------------------------------------------------------- follow-up rules


@blueprint.get("/followups")
@security.require()
def followups() -> Any:
    db = security.context().db
    return page("followups.html", rules=followup.list_rules(db),
                templates=[t.template.name for t in catalog.list_templates(db)],
                types=[t.name for t in catalog.list_event_types(db)],
                conditions=followup.CONDITIONS, duration=format_duration)


@blueprint.post("/followups")
@security.require("admin")
def followup_add() -> Any:
    rule = followup.add_rule(security.context().db, form("name", "", 64).strip(),
                             form("event_type", "", 64), form("template", "", 128),
                             form("after", "", 16), form("condition", "", 16))
    security.record("followup.add", rule.name, f"{rule.template} after "
                    f"{format_duration(rule.after_seconds)} if {rule.condition}")
    return back(url_for("console.followups"), f"Follow-up rule {rule.name} added.")


@blueprint.post("/followups/<name>/<switch>")
@security.require("admin")
def followup_switch(name: str, switch: str) -> Any:
    if switch not in {"enable", "disable"}:
        raise ValidationFailed("use enable or disable")
    followup.set_enabled(security.context().db, name, switch == "enable")
    security.record(f"followup.{switch}", name)
    return back(url_for("console.followups"), f"Follow-up rule {name} {switch}d.")


# ---------------------------------------------------------------- quarantine / denylist


def _kind(raw: str) -> AddressKind | None:
    if not raw:
        return None
    try:
        return AddressKind(raw)
    except ValueError:
        raise ValidationFailed(f"unknown address kind {raw!r}") from None


@blueprint.get("/quarantine")
@security.require()
def quarantine() -> Any:
    ctx = security.context()
    source, kind, address = arg("source", 16), _kind(arg("kind", 8)), arg("address")
    if source and source not in {exclusions.SOURCE_BOUNCE, exclusions.SOURCE_MANUAL}:
        raise ValidationFailed(f"unknown source {source!r}")
    if address:
        found = exclusions.lookup(ctx.db, address, kind)
        entries = [found] if found else []
    else:
        entries = exclusions.list_entries(ctx.db, source or None, QUARANTINE_PAGE, kind)
    return page("quarantine.html", entries=entries, kinds=[k.value for k in AddressKind],
                source=source, kind=kind.value if kind else "", address=address,
                limit=QUARANTINE_PAGE)


@blueprint.post("/quarantine")
@security.require("admin")
def quarantine_add() -> Any:
    ctx = security.context()
    entry = exclusions.add(ctx.db, form("address", "", 1024), form("reason", "", 500).strip(),
                           _kind(form("kind", "", 8)), ctx.settings.default_country_code)
    security.record("quarantine.add", f"{entry.kind.value}:{entry.address}", entry.reason)
    return back(url_for("console.quarantine"), f"{entry.address} is on the denylist.")


@blueprint.post("/quarantine/remove")
@security.require("admin")
def quarantine_remove() -> Any:
    ctx = security.context()
    entry = exclusions.remove(ctx.db, form("address", "", 1024), _kind(form("kind", "", 8)),
                              ctx.settings.default_country_code)
    security.record("quarantine.remove", f"{entry.kind.value}:{entry.address}")
    return back(url_for("console.quarantine"), f"{entry.address} removed from quarantine.")


# ---------------------------------------------------------------- connectors


@blueprint.get("/connectors")
@security.require()
def connectors() -> Any:
    ctx = security.context()
    return page("connectors.html", rows=report.connectors(ctx.db, ctx.settings))
