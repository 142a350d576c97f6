"""URLs from event data in the HTML part: only http, https, mailto, tel (or relative)
survive in URL attributes, whatever the obfuscation; the template author's own links and
every other use of the data are untouched; tracking never rewrites or redirects to them."""

from __future__ import annotations

import html
import re

import lxml.html
import pytest
from lxml import etree

from soap_service import track
from soap_service.models import Channel, TemplateContent
from soap_service.render.personalize import EventData, parse_ctx, render_source

# the <link> element's content as written in the event's XML (entities decoded by it)
UNSAFE = [
    "javascript:alert(1)", " JaVaScRiPt:alert(1)", "&#9;javascript:alert(1)",
    "java&#9;script:alert(1)", "java&#10;script:alert(1)", "java&#13;script:alert(1)",
    "javascript&#58;alert(1)", "vbscript:msgbox(1)", "data:text/html;base64,PHNjcmlwdD4=",
    "DATA:text/html,x", "jav&#x61;script:alert(1)", "livescript:x", "file:///etc/passwd",
    "\u00a0javascript:alert(1)",
]
SAFE = ["https://shop.example/o?id=1&amp;x=2", "http://shop.example/", "mailto:ann@example.com",
        "tel:+33123456789", "/account", "shop.example/path", "#top",
        "&amp;#106;avascript:alert(1)"]  # text "&#106;..." once decoded: a relative URL
BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:", "file:")
URL_ATTRS = ("href", "src", "action")


def render(source: str, link: str) -> str:
    """``source`` rendered as the HTML part with ``rtEvent.ctx.link`` = ``link`` (XML)."""
    data = EventData(attributes={}, ctx=parse_ctx(f"<ctx><link>{link}</link></ctx>"))
    return render_source(source, data, escape=True, part="html")


def text_of(link: str) -> str:
    return str(etree.fromstring(f"<l>{link}</l>").text)


def live_urls(out: str) -> list[str]:
    """URL attribute values as a browser reads them (lxml's HTML parser decodes the
    entities), with tabs and newlines removed and leading spaces dropped."""
    found = []
    for el in lxml.html.fragment_fromstring(out, create_parent="div").iter():
        for name in URL_ATTRS:
            value = el.get(name)
            if value is not None:
                found.append(re.sub(r"[\t\n\r]", "", value).lstrip(" \x00\x0c").lower())
    return found


@pytest.mark.parametrize("link", UNSAFE)
@pytest.mark.parametrize("source", [
    '<a href="{{ rtEvent.ctx.link }}">go</a>',
    "<a href='{{ rtEvent.ctx.link }}'>go</a>",
    "<a href={{ rtEvent.ctx.link }}>go</a>",
    '<a class="b" HREF = "{{ rtEvent.ctx.link }}" title="t">go</a>',
    '<img src="{{ rtEvent.ctx.link }}">',
    '<form action="{{ rtEvent.ctx.link }}"></form>',
    '<a href="<%= rtEvent.ctx.link %>">go</a>',
    '<a href="java{{ rtEvent.ctx.link.@none }}script:{{ rtEvent.ctx.link }}">go</a>',
])
def test_unsafe_personalised_urls_are_dropped(source: str, link: str) -> None:
    """Script, data and other schemes from event data lose their attribute."""
    out = render(source, link)
    assert not [u for u in live_urls(out) if u.startswith(BAD_SCHEMES)], out
    assert "\ue000" not in out and "\ue001" not in out
    if "{{ rtEvent.ctx.link }}>" not in source and "java{{" not in source:  # quoted values
        assert live_urls(out) == []


@pytest.mark.parametrize("link", SAFE)
def test_safe_personalised_urls_are_kept(link: str) -> None:
    """Safe schemes and relative URLs stay, escaped as before."""
    out = render('<a href="{{ rtEvent.ctx.link }}">{{ rtEvent.ctx.link }}</a>', link)
    escaped = html.escape(text_of(link))
    assert out == f'<a href="{escaped}">{escaped}</a>'


def test_only_personalised_urls_are_checked() -> None:
    """The author's own links and a value in text or a non-URL attribute are left alone;
    data after a static scheme cannot change it."""
    source = ('<a href="javascript:history.back()" title="{{ rtEvent.ctx.link }}">back</a>'
              '<a href="https://shop.example/{{ rtEvent.ctx.link }}">x</a>{{ rtEvent.ctx.link }}')
    out = render(source, "javascript:alert(1)")
    assert out == ('<a href="javascript:history.back()" title="javascript:alert(1)">back</a>'
                   '<a href="https://shop.example/javascript:alert(1)">x</a>javascript:alert(1)')


def test_data_cannot_add_attributes_to_an_unquoted_value() -> None:
    """An unquoted URL attribute cut short by a space: what follows, from the data, does
    not become an attribute (``onerror=...``)."""
    out = render("<img src={{ rtEvent.ctx.link }}>", "x.png onerror=alert(1)")
    assert out == "<img src=x.png>"


def test_markers_in_the_data_are_not_trusted() -> None:
    """The private-use marker characters sent in the data are dropped, so data cannot
    close its own marked region early."""
    out = render('<a href="{{ rtEvent.ctx.link }}">go</a>', "\ue001javascript:alert(1)")
    assert out == "<a>go</a>"


@pytest.mark.parametrize("link", UNSAFE)
def test_the_message_and_its_tracking_never_carry_them(link: str) -> None:
    """Through render_message and the tracking rewrite: no unsafe link in the HTML or the
    derived text part, and no click token is made for it."""
    from soap_service.models import Event, EventStatus, Queue
    from soap_service.render import render_message

    event = Event(id=1, queue=Queue.RT, event_type="t", status=EventStatus.PENDING,
                  email="a@b.co", ctx_xml=f"<ctx><link>{link}</link></ctx>")
    content = TemplateContent(from_addr="x@shop.example", subject="s",
                              html='<p><a href="{{ rtEvent.ctx.link }}">go</a></p>')
    rendered = render_message(content, event, Channel.EMAIL)
    assert "href" not in rendered.html and "(" + text_of(link) not in rendered.text
    tracked = track.instrument_html(rendered.html, 1, "https://mc.example", "s3cret")
    assert "/r/c/" not in tracked


@pytest.mark.parametrize("target", ["javascript:alert(1)", " JaVaScRiPt:alert(1)",
                                    "data:text/html,x", "vbscript:x", "java\tscript:x"])
def test_a_signed_click_token_to_an_unsafe_target_does_not_verify(target: str) -> None:
    """Even signed with the real secret, a click token whose target is not http(s) is
    refused, so the redirect endpoint answers 404 and never sends such a Location."""
    token = track.make_token("s3cret", track.CLICK, 1, target)
    assert track.verify_token("s3cret", token, track.CLICK) is None
