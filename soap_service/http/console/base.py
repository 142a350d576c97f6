"""The console's blueprint and what every page shares: rendering, forms, errors.

Views live in ``views_*.py`` beside this module and add their routes to
:data:`blueprint`; they call the same core as the CLI (``catalog``, ``proof``,
``eventstatus``, ``report``, ``exclusions``, ``followup``...) and never build SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from soap_service.errors import ValidationFailed
from soap_service.http.console import security
from soap_service.models import make_plid

blueprint = Blueprint("console", __name__)
MAX_FIELD = 200_000  # characters of one form field (a template part)


def page(template: str, code: int = 200, /, **values: Any) -> tuple[str, int]:
    return render_template(template, **values), code


def form(name: str, default: str = "", limit: int = 2000) -> str:
    value = request.form.get(name, default)
    if len(value) > limit:
        raise ValidationFailed(f"{name} is too long (at most {limit} characters)")
    return value


def arg(name: str, limit: int = 320) -> str:
    return request.args.get(name, "").strip()[:limit]


def back(endpoint_url: str, message: str, category: str = "ok") -> WerkzeugResponse:
    flash(message, category)
    return redirect(endpoint_url, code=303)


def plid(event_id: int | None) -> str:
    return "" if event_id is None else str(make_plid(
        security.context().settings.instance_id, event_id))


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


SECTIONS = [("console.browse", "Browse", ("browse",)),
            ("console.templates", "Templates", ("template", "seed")),
            ("console.history", "History", ("history", "event")),
            ("console.monitoring", "Monitoring", ("monitoring",)),
            ("console.event_types", "Event types", ("event_type",)),
            ("console.followups", "Follow-ups", ("followup",)),
            ("console.quarantine", "Quarantine", ("quarantine",)),
            ("console.connectors", "Connectors", ("connectors",)),
            ("console.audit_log", "Audit log", ("audit_log",))]


def nav() -> list[tuple[str, str, bool]]:
    """The sections, each with whether the current page belongs to it."""
    view = (request.endpoint or "").removeprefix("console.")
    matches = [(len(v), endpoint) for endpoint, _, views in SECTIONS for v in views
               if view.startswith(v)]
    current = max(matches)[1] if matches else ""
    return [(endpoint, label, endpoint == current) for endpoint, label, _ in SECTIONS]


def number(value: float | int | None, grouped: bool = True) -> str:
    """A measure for people: whole numbers without ``.0``, others to 3 places at most
    (``grouped=False`` in form fields: no thousands separator to read back)."""
    if value is None:
        return "-"
    comma = "," if grouped else ""
    if float(value).is_integer():
        return f"{int(value):{comma}}"
    return f"{value:{comma}.3f}".rstrip("0").rstrip(".")
