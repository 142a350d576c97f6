"""The engine's sandbox and limits, and syntax errors reported with line and column."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from soap_service.errors import RenderError, TemplateSyntaxError
from soap_service.models import Channel, Event, Queue, TemplateContent
from soap_service.render import check_content, personalize, render_message
from soap_service.render.compiler import compile_source
from soap_service.render.personalize import EventData, Limits, parse_ctx, render_source

BIG = "<ctx>" + "".join(f"<i n='{n}'>{n}</i>" for n in range(300)) + "</ctx>"


def data(ctx: str = BIG) -> EventData:
    return EventData(attributes={"email": "a@example.com"}, ctx=parse_ctx(ctx))


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ config }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ rtEvent.__class__ }}",
    "{{ rtEvent.ctx._private }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{% import 'os' as os %}",
    "{% include '/etc/passwd' %}",
    "{% set x = 1 %}",
    "{{ rtEvent.ctx | attr('__class__') }}",
    "{{ 7*7 }}",
    "<%= rtEvent.constructor.constructor('return process')() %>",
    "<%= this.constructor %>",
    "<% var x = require('fs'); %>",
    "<%= eval('1') %>",
    "<%@ include view='x' %>",
    "<% while (true) { %>",
    "{{ open('/etc/passwd').read() }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_escape_payloads_refused_at_compile_time(payload: str) -> None:
    """Classic template-injection payloads are syntax errors, never evaluated."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_source(payload, "html")
    assert info.value.line == 1 and info.value.column >= 1


def test_subscript_names_only_reach_event_data() -> None:
    """``["__class__"]`` looks up an XML child of that name: data, never a Python object."""
    out = render_source('{{ rtEvent["__class__"] }}|{{ rtEvent.ctx["__init__"] }}|'
                        '{{ rtEvent.ctx["i"][2] }}', data(), escape=False)
    assert out == "||2"


def test_output_bomb_is_bounded() -> None:
    """Nested loops multiplying output stop at the output limit with a RenderError."""
    src = ("{% for a in rtEvent.ctx.i %}{% for b in rtEvent.ctx.i %}"
           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}")
    with pytest.raises(RenderError, match="output limit"):
        render_source(src, data(), escape=False,
                      limits=Limits(max_output_chars=100_000, max_steps=10**7))


def test_huge_loop_is_bounded_by_steps() -> None:
    """Three nested loops over 300 elements (27 million steps) stop at the step budget."""
    src = ("<% for each (var a in rtEvent.ctx.i) { %><% for each (var b in rtEvent.ctx.i) { %>"
           "<% for each (var c in rtEvent.ctx.i) { %><% } %><% } %><% } %>")
    with pytest.raises(RenderError, match="step limit"):
        render_source(src, data(), escape=False)


def test_time_limit() -> None:
    """A render that runs past its wall-clock allowance fails with a RenderError."""
    src = ("{% for a in rtEvent.ctx.i %}{% for b in rtEvent.ctx.i %}{% if b.@n == a.@n %}"
           "{% endif %}{% endfor %}{% endfor %}")
    with pytest.raises(RenderError, match="time limit"):
        render_source(src, data(), escape=False,
                      limits=Limits(max_steps=10**9, max_seconds=0.0))


def test_clock_is_read_at_every_step(monkeypatch) -> None:
    """One step can scan a whole ctx (a look-up in a loop, the text of a large element), so
    the time limit is checked at every step, not every thousand (which let a render over a
    large ctx run 15 s past a 2 s limit)."""
    calls = itertools.count()  # a clock that moves one second per reading
    monkeypatch.setattr(personalize, "time", SimpleNamespace(monotonic=lambda: next(calls)))
    ctx = "<ctx><i>" + "<x/>" * 5000 + "</i><j><y/><y/><y/></j></ctx>"
    src = "{% for a in rtEvent.ctx.j.y %}{{ rtEvent.ctx }}{% endfor %}"
    with pytest.raises(RenderError, match="time limit"):
        render_source(src, data(ctx), escape=False, limits=Limits(max_seconds=3.5))
    assert next(calls) == 5  # the deadline, then one reading per step until the 4th second


def test_replace_cannot_amplify_without_bound() -> None:
    """``replace`` refuses results larger than the output limit."""
    ctx = "<ctx><s>" + "a" * 50_000 + "</s></ctx>"
    with pytest.raises(RenderError, match="output limit"):
        render_source("{{ rtEvent.ctx.s | replace('a', '" + "b" * 100 + "') }}", data(ctx),
                      escape=False)


def test_ctx_entities_are_not_expanded() -> None:
    """A ctx with an external entity does not read local files."""
    ctx = ('<!DOCTYPE ctx [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           "<ctx><name>&x;</name></ctx>")
    ev = Event(id=1, queue=Queue.RT, event_type="t", ctx_xml=ctx)
    try:
        text = render_message(TemplateContent(text="{{ rtEvent.ctx.name }}"), ev).text
    except RenderError:
        return
    assert "root:" not in text


SYNTAX_ERRORS = [
    # (source, line, column, words in the message)
    ("Hello\n  {{ rtEvent.ctx.a ", 2, 3, "never closed"),
    ("{% if rtEvent.ctx.a %}\nx", 1, 1, "never closed"),
    ("a\nb {% endif %}", 2, 3, "without an open block"),
    ("<% if (rtEvent.ctx.a) { %>\n{% endif %}", 2, 1, "does not match"),
    ("x {{ rtEvent.ctx.a == }}", 1, 23, "expected a value"),
    ("line1\nline2 <%= foo.bar %>", 2, 11, "unknown name 'foo'"),
    ("{{ rtEvent.ctx.a | shout }}", 1, 20, "unknown function"),
    ("{% for a in 'abc' %}{% endfor %}", 1, 13, "field path"),
    ("{% if x %}{% else %}{% else %}{% endif %}", 1, 7, "unknown name"),
    ("{% if rtEvent.a %}{% else %}{% elif rtEvent.b %}{% endif %}", 1, 29, "else branch"),
    ("<% } %>", 1, 1, "without an open block"),
    ("{{ a }}{% for a in rtEvent.ctx.i %}{{ a }}{% endfor %}{{ a }}", 1, 4, "unknown name 'a'"),
    ("{{ rtEvent.ctx.a $ 1 }}", 1, 18, "unexpected character"),
    ("{{ }}", 1, 1, "empty expression"),
    ("{{ " + "(" * 60 + "1" + ")" * 60 + " }}", 1, 44, "nested too deeply"),
    ("{{ " + " or ".join(["true"] * 5000) + " }}", 1, 812, "expression too long"),
    ("{{ 'x'" + " | upper" * 5000 + " }}", 1, 810, "expression too long"),
    ("{{ " + "not " * 5000 + "true }}", 1, 164, "nested too deeply"),
]


@pytest.mark.parametrize(("source", "line", "column", "words"), SYNTAX_ERRORS)
def test_syntax_errors_have_line_and_column(source: str, line: int, column: int,
                                            words: str) -> None:
    """Unsupported or broken syntax is refused with the position of the problem."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_source(source, "text")
    err = info.value
    assert (err.line, err.column) == (line, column), err.message
    assert words in err.message
    assert err.message.startswith(f"text line {line}, column {column}:")


def test_check_content_names_the_part() -> None:
    """Content checking reports which part of the template is wrong."""
    content = TemplateContent(subject="ok {{ rtEvent.email }}", html="<p>\n{{ rtEvent.ctx.a |}}")
    with pytest.raises(TemplateSyntaxError) as info:
        check_content(content, Channel.EMAIL)
    assert info.value.part == "html" and info.value.line == 2
    bad_push = TemplateContent(push_body="ok", push_data={"k": "{% for %}"})
    with pytest.raises(TemplateSyntaxError, match=r"push_data\.k"):
        check_content(bad_push, Channel.PUSH)


def test_quoted_closers_inside_tags() -> None:
    """A closing delimiter inside a quoted string does not end the tag."""
    assert render_source("{{ 'a }} b' }}<%= \"%>\" %>", data(), escape=False) == "a }} b%>"


def test_profile_data_is_plain_data_only() -> None:
    """profile.* reads plain JSON values in both syntaxes; an object or a list reads as
    nothing, names starting with '_' are refused at compile time, HTML is escaped, and
    an event without a profile renders empty."""
    from soap_service.models import Profile

    profile = Profile(id=1, external_id="C1", first_name="<b>Ann</b>", push_tokens=("t1",),
                      attributes={"tier": "gold", "address": {"city": "Montréal"},
                                  "n": 3, "tags": ["a", "b"]})
    event = Event(id=1, queue=Queue.RT, event_type="t", ctx_xml="<ctx/>", email="a@b.example",
                  profile=profile)
    html = ("{{ profile.firstName }}|<%= profile.attributes.tier %>|"
            "{{ profile.attributes.address.city }}|{{ profile.attributes.address }}|"
            "{{ profile.attributes.tags }}|{{ profile.attributes.tags[1] }}|"
            "{{ profile.pushTokens[0] }}|{{ profile.attributes.n | number(1) }}|"
            "{{ profile.nope.deeper }}|{{ profile.subscriptions.email }}")
    content = TemplateContent(from_addr="x@y.example", subject="s", html=html)
    out = render_message(content, event, Channel.EMAIL).html
    assert out == ("&lt;b&gt;Ann&lt;/b&gt;|gold|Montréal|||b|t1|3.0||true")
    plain = Event(id=2, queue=Queue.RT, event_type="t", ctx_xml="<ctx/>")
    assert render_message(content, plain, Channel.EMAIL).html == "|||||||||"
    with pytest.raises(TemplateSyntaxError):
        check_content(TemplateContent(subject="{{ profile.__class__ }}"), Channel.EMAIL)
