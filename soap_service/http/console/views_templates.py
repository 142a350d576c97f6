"""Browse and Templates: find, create and edit templates, preview them on a seed's data,
proof, publish / unpublish / pause / resume, versions and diffs.

Every move is the CLI's: ``catalog`` (create, edit, lifecycle, seeds, versions, diff) and
``proof`` (preview, proofs).  A syntax error is shown on its part with its line and
column, the text as typed kept in the form.  The rendered HTML of a preview is served
alone (``.../preview/frame``) under a CSP sandbox and shown in an ``<iframe sandbox>``:
a template never runs in the operator's page.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from html import escape
from typing import Any

from flask import g, redirect, request, url_for

from soap_service import catalog, clock, languages, proof
from soap_service.errors import Conflict, RenderError, TemplateSyntaxError, ValidationFailed
from soap_service.http.console import security
from soap_service.http.console.base import MAX_FIELD, arg, back, blueprint, form, page
from soap_service.models import Channel, TemplateContent
from soap_service.render import CHANNEL_PARTS
from soap_service.store import templatestats

PART_LABELS = {"from_addr": "From", "reply_to": "Reply-To", "subject": "Subject",
               "html": "HTML part", "text": "Text part", "sms": "SMS text",
               "push_title": "Push title", "push_body": "Push body",
               "push_data": "Push data (one key: value a line)"}
MULTILINE = {"html", "text", "sms", "push_body", "push_data"}


def _parts(channel: Channel) -> list[str]:
    return [*CHANNEL_PARTS[channel], *(["push_data"] if channel is Channel.PUSH else [])]


def _state(summary: catalog.TemplateSummary) -> str:
    if summary.latest is None:
        return "draft"
    number = summary.latest.version.version
    return {"published": f"published v{number}", "paused": f"paused v{number}",
            "unpublished": f"unpublished v{number}"}[summary.state]


# ---------------------------------------------------------------- Browse / list


def _rows() -> list[dict[str, Any]]:
    db = security.context().db
    stats = templatestats.counts_since(db, clock.utcnow() - timedelta(hours=24))
    rows = []
    for s in catalog.list_templates(db):
        t, latest = s.template, s.latest
        counts = stats.get(t.name, {"sent": 0, "failed": 0, "opened": 0})
        rows.append({"name": t.name, "event_type": t.event_type, "channel": t.channel.value,
                     "state": s.state, "state_text": _state(s),
                     "published_by": latest.version.published_by if latest else "",
                     "published_at": latest.version.published_at if latest else None,
                     "draft_changed": s.draft_changed, **counts})
    return rows


def _filtered() -> tuple[list[dict[str, Any]], dict[str, str]]:
    wanted = {k: arg(k, 128) for k in ("type", "channel", "state", "q")}
    rows = [r for r in _rows()
            if (not wanted["type"] or r["event_type"] == wanted["type"])
            and (not wanted["channel"] or r["channel"] == wanted["channel"])
            and (not wanted["state"] or r["state"] == wanted["state"])
            and (not wanted["q"] or wanted["q"].lower() in r["name"].lower())]
    return rows, wanted


@blueprint.get("/browse")
@security.require()
def browse() -> Any:
    rows, wanted = _filtered()
    rows.sort(key=lambda r: (r["event_type"], r["channel"], r["name"]))
    types = [et.name for et in catalog.list_event_types(security.context().db)]
    with_template = {r["event_type"] for r in _rows()}
    # event types no template serves: their events end routingFailed
    bare = [t for t in types if t not in with_template
            and (not wanted["type"] or t == wanted["type"])
            and not (wanted["channel"] or wanted["state"] or wanted["q"])]
    return page("browse.html", rows=rows, wanted=wanted, types=types, bare=bare,
                channels=[c.value for c in Channel],
                states=["draft", "published", "paused", "unpublished"])


@blueprint.get("/templates")
@security.require()
def templates() -> Any:
    rows, wanted = _filtered()
    types = [et.name for et in catalog.list_event_types(security.context().db)]
    return page("templates.html", rows=rows, wanted=wanted, types=types,
                channels=[c.value for c in Channel],
                states=["draft", "published", "paused", "unpublished"])


@blueprint.post("/templates")
@security.require("mc")
def template_create() -> Any:
    name = form("name", "", 128).strip()
    channel_raw = form("channel", "email", 8)
    try:
        channel = Channel(channel_raw)
    except ValueError:
        raise ValidationFailed(f"unknown channel {channel_raw!r}") from None
    tpl = catalog.create_template(security.context().db, name, form("event_type", "", 64),
                                  channel, TemplateContent())
    security.record("template.create", tpl.name, f"{tpl.event_type} {tpl.channel.value}")
    return back(url_for("console.template_edit", name=tpl.name),
                f"Template {tpl.name} created: write its parts, then publish it.")


# ---------------------------------------------------------------- one template


@blueprint.get("/templates/<name>")
@security.require()
def template(name: str) -> Any:
    db = security.context().db
    summary = catalog.get_template(db, name)
    versions = list(reversed(catalog.versions(db, name)))
    return page("template.html", s=summary, t=summary.template, state=_state(summary),
                versions=versions, seeds=catalog.list_seeds(db, name),
                parts=_parts(summary.template.channel), labels=PART_LABELS,
                draft=summary.template.draft)


def _content_from_form(channel: Channel) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for part in _parts(channel):
        raw = form(part, "", MAX_FIELD).replace("\r\n", "\n")
        if part == "push_data":
            data: dict[str, str] = {}
            for number, line in enumerate(raw.splitlines(), 1):
                if not line.strip():
                    continue
                key, sep, value = line.partition(":")
                if not sep or not key.strip():
                    raise ValidationFailed(f"push data line {number}: write key: value")
                data[key.strip()] = value.strip()
            changes[part] = data
        else:
            changes[part] = raw
    return changes


def _source_lines(source: str, line: int, column: int) -> list[tuple[int, str, bool]]:
    lines = source.splitlines() or [""]
    start = max(line - 3, 0)
    return [(n + 1, text, n + 1 == line) for n, text in enumerate(lines[start:line + 2], start)]


@blueprint.get("/templates/<name>/edit")
@security.require("mc")
def template_edit(name: str) -> Any:
    summary = catalog.get_template(security.context().db, name)
    tpl = summary.template
    return page("edit.html", t=tpl, parts=_parts(tpl.channel), labels=PART_LABELS,
                multiline=MULTILINE, values=_values(tpl.draft), error=None,
                seeds=catalog.list_seeds(security.context().db, name),
                base=catalog.draft_hash(tpl))


def _values(content: TemplateContent) -> dict[str, str]:
    values = {f.name: getattr(content, f.name) for f in dataclasses.fields(TemplateContent)}
    values["push_data"] = "".join(f"{k}: {v}\n" for k, v in content.push_data.items())
    return values


@blueprint.post("/templates/<name>/edit")
@security.require("mc")
def template_save(name: str) -> Any:
    db = security.context().db
    tpl = catalog.get_template(db, name).template
    values = {p: form(p, "", MAX_FIELD).replace("\r\n", "\n") for p in _parts(tpl.channel)}
    again = {"t": tpl, "parts": _parts(tpl.channel), "labels": PART_LABELS,
             "multiline": MULTILINE, "values": values, "seeds": catalog.list_seeds(db, name),
             "base": form("base", "", 64) or catalog.draft_hash(tpl)}
    try:
        catalog.edit_template(db, name, expected_hash=form("base", "", 64) or None,
                              **_content_from_form(tpl.channel))
    except Conflict as exc:
        # the text typed stays; saving again (from the current draft) overwrites it
        return page("edit.html", 409, **{**again, "base": catalog.draft_hash(tpl), "error": {
            "part": "", "line": 0, "column": 0, "excerpt": [],
            "message": f"{exc.message}: compare with the draft's page before you save "
                       "again (saving again replaces their changes)."}})
    except TemplateSyntaxError as exc:
        part = exc.part.split(".", 1)[0]
        where = f"{exc.part} line {exc.line}, column {exc.column}: " if exc.part else ""
        message = exc.message.removeprefix(where) if where else exc.message
        excerpt = _source_lines(values.get(part, ""), exc.line, exc.column)
        return page("edit.html", 422, **again, error={
            "part": part, "line": exc.line, "column": exc.column, "message": message,
            "excerpt": excerpt})
    except ValidationFailed as exc:
        return page("edit.html", 422, **again, error={
            "part": "", "line": 0, "column": 0, "message": exc.message, "excerpt": []})
    security.record("template.edit", name)
    if request.form.get("then") == "preview":
        return back(url_for("console.template_preview", name=name, seed=form("seed", "", 320)),
                    "Draft saved.")
    return back(url_for("console.template", name=name), "Draft saved.")


# ---------------------------------------------------------------- preview


def _version_arg() -> int | None:
    raw = arg("version", 10)
    if not raw or raw == "draft":
        return None
    if not raw.isdecimal():
        raise ValidationFailed("version is a number (or draft)")
    return int(raw)


@blueprint.get("/templates/<name>/preview")
@security.require()
def template_preview(name: str) -> Any:
    db = security.context().db
    summary = catalog.get_template(db, name)
    seeds = catalog.list_seeds(db, name)
    seed, version, language = arg("seed") or None, _version_arg(), arg("language", 32)
    shown, error = None, None
    try:
        shown = proof.preview(db, name, version=version, seed=seed, language=language or None)
    except RenderError as exc:
        error = exc.message
    frame = url_for("console.template_preview_frame", name=name, seed=seed or "",
                    version=version or "draft", language=language)
    content = catalog.content_of(db, name, version)
    return page("preview.html", t=summary.template, seeds=seeds, seed=seed or "",
                version=version, versions=catalog.versions(db, name), shown=shown,
                error=error, frame=frame, languages=list(content.variants),
                language=language)


@blueprint.get("/templates/<name>/preview/frame")
@security.require()
def template_preview_frame(name: str) -> Any:
    """The rendered HTML alone, under a sandboxing CSP (``security.PREVIEW_CSP``)."""
    g.preview_frame = True
    try:
        shown = proof.preview(security.context().db, name, version=_version_arg(),
                              seed=arg("seed") or None, language=arg("language", 32) or None)
    except RenderError as exc:
        return _frame(f"<p>Cannot render: {escape(exc.message)}</p>")
    return _frame(_frame_body(shown))


@blueprint.post("/templates/<name>/preview/frame")
@security.require("mc")
def template_live_preview(name: str) -> Any:
    """The edit form's content, not saved, rendered into the edit page's sandboxed frame
    ("Preview without saving"; with JavaScript, on each pause in typing)."""
    g.preview_frame = True
    db = security.context().db
    tpl = catalog.get_template(db, name).template
    try:
        content = dataclasses.replace(tpl.draft, **_content_from_form(tpl.channel))
        shown = proof.preview_content(db, name, content, "unsaved draft",
                                      seed=form("seed", "", 320) or None)
    except (RenderError, ValidationFailed) as exc:
        return _frame(f"<p>Cannot render: {escape(exc.message)}</p>")
    return _frame(_frame_body(shown))


def _frame_body(shown: proof.Preview) -> str:
    """An email's HTML part as it is; other channels' text parts escaped."""
    m = shown.message
    if m.channel is Channel.EMAIL:
        return m.html or f"<pre>{escape(m.text)}</pre>"
    if m.channel is Channel.SMS:
        return f"<pre>{escape(m.sms)}</pre>"
    data = "".join(f"{escape(k)}: {escape(v)}\n" for k, v in m.push_data.items())
    return (f"<p><strong>{escape(m.push_title)}</strong></p><pre>{escape(m.push_body)}"
            f"</pre>" + (f"<pre>{data}</pre>" if data else ""))


def _frame(body: str) -> Any:
    return body, 200, {"Content-Type": "text/html; charset=utf-8"}


# ---------------------------------------------------------------- language variants


@blueprint.post("/templates/<name>/variants")
@security.require("mc")
def variant_add(name: str) -> Any:
    db = security.context().db
    tpl = catalog.get_template(db, name).template
    language = form("language", "", 32).strip()
    parts = {k: v for k, v in _content_from_form(tpl.channel).items() if v}
    languages.add_variant(db, name, language, **parts)
    security.record("variant.add", name, language)
    return back(url_for("console.template", name=name) + "#variants",
                f"Variant {language} added to the draft.")


@blueprint.post("/templates/<name>/variants/<language>/remove")
@security.require("mc")
def variant_remove(name: str, language: str) -> Any:
    languages.remove_variant(security.context().db, name, language)
    security.record("variant.remove", name, language)
    return back(url_for("console.template", name=name) + "#variants",
                f"Variant {language} removed from the draft.")


# ---------------------------------------------------------------- proofs and seeds


@blueprint.post("/templates/<name>/proof")
@security.require("mc")
def template_proof(name: str) -> Any:
    ctx = security.context()
    to = [a for a in form("to", "", 2000).replace(",", " ").split() if a]
    version_raw = form("version", "", 10).strip()
    version = int(version_raw) if version_raw.isdecimal() else None
    results = proof.send_proofs(ctx.db, ctx.settings, name, to=to or None, seeds=not to,
                                version=version, language=form("language", "", 32) or None)
    summary = ", ".join(f"{r.address}: {r.outcome}" for r in results)
    security.record("template.proof", name, summary)
    failed = [r for r in results if r.outcome != "sent"]
    return back(url_for("console.template", name=name), f"Proofs: {summary}.",
                "error" if failed else "ok")


@blueprint.post("/templates/<name>/seeds")
@security.require("mc")
def seed_add(name: str) -> Any:
    db = security.context().db
    data = form("ctx", "", MAX_FIELD).strip() or "<ctx/>"
    ctx_xml = proof.ctx_from_json(data) if data.startswith("{") else proof.ctx_from_xml(data)
    seed = catalog.add_seed(db, name, form("address", "", 320), ctx_xml,
                            form("external_id", "", 255).strip() or None)
    security.record("seed.add", name, seed.address)
    return back(url_for("console.template", name=name), f"Seed {seed.address} saved.")


@blueprint.post("/templates/<name>/seeds/remove")
@security.require("mc")
def seed_remove(name: str) -> Any:
    address = form("address", "", 320)
    catalog.remove_seed(security.context().db, name, address)
    security.record("seed.remove", name, address)
    return back(url_for("console.template", name=name), f"Seed {address} removed.")


# ---------------------------------------------------------------- lifecycle


@blueprint.post("/templates/<name>/<move>")
@security.require("mc")
def template_move(name: str, move: str) -> Any:
    db = security.context().db
    who = security.user().login
    if move == "publish":
        info = catalog.publish(db, name, who)
        text = f"Published version {info.version.version} of {name}."
    elif move == "unpublish":
        info = catalog.unpublish(db, name)
        text = f"{name} unpublished: its events now end routingFailed."
    elif move == "pause":
        catalog.pause(db, name)
        text = f"{name} paused: its events wait in the queue."
    elif move == "resume":
        released = catalog.resume(db, name)
        text = f"{name} resumed: {released} held event(s) released."
    else:
        raise security.ConsoleHTTPError(404, "There is no such page.")
    security.record(f"template.{move}", name)
    return back(url_for("console.template", name=name), text)


@blueprint.get("/templates/<name>/diff")
@security.require()
def template_diff(name: str) -> Any:
    db = security.context().db
    summary = catalog.get_template(db, name)
    old, new = arg("old", 10) or "latest", arg("new", 10) or "draft"
    text = catalog.diff(db, name, old, new)
    lines = []
    for line in text.splitlines():
        kind = ("hunk" if line.startswith("@@") else "file" if line.startswith(("---", "+++"))
                else "add" if line.startswith("+") else "del" if line.startswith("-")
                else "same")
        lines.append((kind, line))
    return page("diff.html", t=summary.template, old=old, new=new, lines=lines,
                versions=catalog.versions(db, name))


@blueprint.get("/templates/<name>/versions/<int:number>")
@security.require()
def template_version(name: str, number: int) -> Any:
    db = security.context().db
    info = catalog.get_version(db, name, number)
    tpl = catalog.get_template(db, name).template
    return page("version.html", t=tpl, info=info, parts=_parts(tpl.channel),
                labels=PART_LABELS, values=_values(info.version.content))


@blueprint.get("/templates/new")
@security.require("mc")
def template_new() -> Any:
    return redirect(url_for("console.templates") + "#new")
