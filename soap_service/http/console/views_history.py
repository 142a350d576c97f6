"""History: search events (plId, address, type, status, queue, period), an event's page,
and retry / cancel -- the same ``eventstatus`` calls as the REST API and the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from flask import redirect, request, url_for

from soap_service import clock, eventstatus
from soap_service.ctxdata import ctx_to_json
from soap_service.errors import NotFound, ValidationFailed
from soap_service.http.console import security
from soap_service.http.console.base import arg, back, blueprint, form, page
from soap_service.models import EventStatus, Queue

PAGE = 50
PERIODS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def _date(name: str) -> datetime | None:
    raw = arg(name, 40)
    if not raw:
        return None
    try:
        return clock.parse_iso_utc(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: write a date as 2026-11-30 or 2026-11-30T08:00"
                               ) from None


@blueprint.get("/history")
@security.require()
def history() -> Any:
    ctx = security.context()
    wanted = arg("plid", 40)
    if wanted:  # a plId goes straight to its page; an unknown one is said on this page
        try:
            pk = eventstatus.primary_key(wanted, ctx.settings.instance_id)
            eventstatus.get_event(ctx.db, pk)
        except NotFound as exc:
            return page("history.html", 404, events=[], next_url=None, args=request.args,
                        statuses=[s.value for s in EventStatus],
                        queues=[q.value for q in Queue], periods=list(PERIODS),
                        missing=exc.message)
        return redirect(url_for("console.event", plid=wanted.strip()))
    status, queue, period = arg("status", 20), arg("queue", 8), arg("period", 8)
    if status and status not in {s.value for s in EventStatus}:
        raise ValidationFailed(f"unknown status {status!r}")
    if queue and queue not in {q.value for q in Queue}:
        raise ValidationFailed(f"unknown queue {queue!r}")
    since, until = _date("since"), _date("until")
    if period in PERIODS and since is None:
        since = clock.utcnow() - timedelta(seconds=PERIODS[period])
    found, cursor = eventstatus.list_page(
        ctx.db, status=status or None, event_type=arg("type", 64) or None,
        since=since, until=until, cursor=arg("cursor", 100) or None, limit=PAGE,
        address=arg("address") or None, queue=queue or None)
    query: dict[str, Any] = {k: v for k, v in request.args.items() if k != "cursor" and v}
    next_url = url_for("console.history", cursor=cursor, **query) if cursor else None
    return page("history.html", events=found, next_url=next_url, args=request.args,
                statuses=[s.value for s in EventStatus], queues=[q.value for q in Queue],
                periods=list(PERIODS))


def _pretty_ctx(view: eventstatus.EventView) -> str:
    e = view.event
    if e.ctx_json:
        try:
            return json.dumps(json.loads(e.ctx_json), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return json.dumps(ctx_to_json(e.ctx_xml), indent=2, ensure_ascii=False)


@blueprint.get("/events/<plid>")
@security.require()
def event(plid: str) -> Any:
    ctx = security.context()
    pk = eventstatus.primary_key(plid, ctx.settings.instance_id)
    view = eventstatus.view(ctx.db, ctx.settings, pk)
    return page("event.html", view=view, e=view.event, ctx_pretty=_pretty_ctx(view),
                ctx_xml=view.event.ctx_xml, plid_text=str(view.plid),
                can_retry=view.event.status.value in {
                    "deliveryFailed", "routingFailed", "targetingFailed", "tooOld"},
                can_cancel=view.event.status.value in {"pending", "paused"})


def _move(plid: str, verb: str) -> Any:
    ctx = security.context()
    pk = eventstatus.primary_key(plid, ctx.settings.instance_id)
    reason = form("reason", limit=eventstatus.MAX_REASON + 50) or None
    who = security.user().login
    if verb == "retry":
        moved = eventstatus.retry(ctx.db, pk, by=who, reason=reason)
    else:
        moved = eventstatus.cancel(ctx.db, pk, by=who, reason=reason)
    security.record(f"event.{verb}", plid, reason or "")
    return back(url_for("console.event", plid=plid),
                f"Event {plid} {'retried' if verb == 'retry' else 'cancelled'}: "
                f"now {moved.status.value}.")


@blueprint.post("/events/<plid>/retry")
@security.require("admin")
def event_retry(plid: str) -> Any:
    return _move(plid, "retry")


@blueprint.post("/events/<plid>/cancel")
@security.require("admin")
def event_cancel(plid: str) -> Any:
    return _move(plid, "cancel")
