"""Rendering: template content + event -> :class:`RenderedMessage`, pure and sandboxed.

``render_message`` is what the worker, previews and proofs call.  HTML parts are
HTML-escaped, every other part (subject, text, SMS, push) is inserted raw; an email with
HTML and no text part gets a text part derived from the rendered HTML.  Syntax is checked
by ``check_content`` when a draft is saved and when it is published, never first at send
time.  Tracking (link rewriting, open pixel) is added later by the worker, not here.
"""

from __future__ import annotations

import re
from typing import Any

import lxml.html
from lxml import etree

from soap_service.errors import RenderError, TemplateSyntaxError, ValidationFailed
from soap_service.models import (
    EVENT_ATTRIBUTE_FIELDS,
    Channel,
    Event,
    RenderedMessage,
    TemplateContent,
    TemplateVersion,
)
from soap_service.render.personalize import (
    DEFAULT_LIMITS,
    EventData,
    Limits,
    compile_template,
    parse_ctx,
    render_source,
)
from soap_service.render.variants import merged, select_variant

__all__ = ["check_complete", "check_content", "check_ctx", "event_data", "html_to_text",
           "render_message", "render_part"]

# part name -> TemplateContent field, per channel; "html" is the only escaped part
CHANNEL_PARTS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("from_addr", "reply_to", "subject", "html", "text"),
    Channel.SMS: ("from_addr", "sms"),  # from: the sender (a name or a number), optional
    Channel.PUSH: ("push_title", "push_body"),
}
ESCAPED_PARTS = {"html"}



def check_content(content: TemplateContent, channel: Channel, where: str = "") -> None:
    """Compile every part (of every language variant too); raises
    :class:`TemplateSyntaxError` naming part (``variant fr subject``), line, column."""
    for key, variant in content.variants.items():
        check_content(variant, channel, f"variant {key} ")
    for part in (*CHANNEL_PARTS[channel], "push_data"):
        if part == "push_data":
            for key, source in content.push_data.items():
                compile_template(source, f"{where}push_data.{key}")
            continue
        source = getattr(content, part)
        if source:
            compile_template(source, where + part)


def check_complete(content: TemplateContent, channel: Channel) -> None:
    """What a publishable template must have (beyond valid syntax); each language
    variant too (with the parts it inherits)."""
    check_content(content, channel)
    for key in content.variants:
        try:
            check_complete(merged(content, key), channel)
        except ValidationFailed as exc:
            raise ValidationFailed(f"variant {key}: {exc.message}", exc.detail) from exc
    missing: list[str] = []
    if channel is Channel.EMAIL:
        missing += [p for p in ("from_addr", "subject") if not getattr(content, p).strip()]
        if not (content.html.strip() or content.text.strip()):
            missing.append("html or text")
    elif channel is Channel.SMS and not content.sms.strip():
        missing.append("sms")
    elif channel is Channel.PUSH and not (content.push_title.strip() or content.push_body.strip()):
        missing.append("push_title or push_body")
    if missing:
        names = ", ".join(m.replace("from_addr", "from") for m in missing)
        raise ValidationFailed(f"template is incomplete: missing {names}")


def check_ctx(ctx_xml: str) -> None:
    """Refuse test data that is not well-formed XML (seeds are checked when saved)."""
    try:
        parse_ctx(ctx_xml)
    except RenderError as exc:
        raise ValidationFailed(f"ctx is not well-formed XML: {exc.detail}") from exc


def event_data(event: Event) -> EventData:
    attributes = {str(k): str(v) for k, v in event.attributes.items()}
    # the event's own fields, under the names the suite's templates use (rtEvent.email ...)
    for name, attr in EVENT_ATTRIBUTE_FIELDS.items():
        value = getattr(event, attr)
        if value is not None and value != "":
            attributes[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    profile = None
    if event.profile is not None:
        profile = {k: v for k, v in event.profile.to_dict().items()
                   if k not in ("createdAt", "updatedAt", "unsubscribedAt")}
    return EventData(attributes=attributes, ctx=parse_ctx(event.ctx_xml), profile=profile,
                     unsubscribe_url=event.unsubscribe_url)


def event_language(event: Event) -> str | None:
    """The language that picks a template variant: the event's ``language``, else its
    profile's (SPEC §10)."""
    if event.language:
        return event.language
    return event.profile.language if event.profile is not None else None


def render_part(source: str, data: EventData, part: str,
                limits: Limits = DEFAULT_LIMITS) -> str:
    return render_source(source, data, escape=part in ESCAPED_PARTS, part=part, limits=limits)


def render_message(version_or_content: TemplateVersion | TemplateContent, event: Event,
                   channel: Channel | None = None,
                   limits: Limits = DEFAULT_LIMITS) -> RenderedMessage:
    """Render every part of a version (or bare content) for one event.

    Raises :class:`RenderError` for a missing required field (its name is in the message
    and in ``detail``), a limit hit, or a template that does not compile.
    """
    if isinstance(version_or_content, TemplateVersion):
        content, channel = version_or_content.content, version_or_content.channel
    else:
        content, channel = version_or_content, channel or event.channel
    language, content = select_variant(content, event_language(event))
    data = event_data(event)
    parts: dict[str, Any] = {}
    try:
        for part in CHANNEL_PARTS[channel]:
            parts[part] = render_part(getattr(content, part), data, part, limits)
        if channel is Channel.PUSH:
            parts["push_data"] = {k: render_part(v, data, "push_data", limits)
                                  for k, v in content.push_data.items()}
    except TemplateSyntaxError as exc:
        raise RenderError(f"template does not compile: {exc.message}") from exc
    if channel is Channel.EMAIL:
        for header in ("subject", "from_addr", "reply_to"):  # no header injection
            parts[header] = " ".join(parts[header].split())
        if parts["html"].strip() and not parts["text"].strip():
            parts["text"] = html_to_text(parts["html"])
    return RenderedMessage(channel=channel, language=language, **parts)


# ---------------------------------------------------------------- HTML -> text

_BLOCKS = {"p", "div", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
           "blockquote", "section", "article", "header", "footer", "hr", "pre"}
_DROP = {"script", "style", "head", "title", "noscript", "template"}


def html_to_text(html: str) -> str:
    """A readable plain-text alternative: paragraphs, line breaks, list items, links."""
    if not html.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return re.sub(r"<[^>]*>", "", html).strip()
    out: list[str] = []
    _walk(root, out)
    text = "".join(out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n[ \t]+", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _walk(el: Any, out: list[str]) -> None:
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in _DROP:
        _tail(el, out)
        return
    if tag in _BLOCKS:
        out.append("\n\n")
    elif tag in ("br", "tr"):
        out.append("\n")
    elif tag == "li":
        out.append("\n- ")
    elif tag in ("td", "th"):
        out.append(" ")
    if el.text and tag:
        out.append(re.sub(r"\s+", " ", el.text))
    for child in el:
        _walk(child, out)
    href = el.get("href", "") if tag == "a" else ""
    if href and not href.startswith(("#", "mailto:")):
        label = " ".join("".join(el.itertext()).split())
        if label != href:
            out.append(f" ({href})")
    if tag in _BLOCKS:
        out.append("\n\n")
    _tail(el, out)


def _tail(el: Any, out: list[str]) -> None:
    if el.tail:
        out.append(re.sub(r"\s+", " ", el.tail))
