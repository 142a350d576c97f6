"""Property-based (hypothesis): the template language is closed.  Generated templates —
both syntaxes, any expression the grammar allows and much it does not (Python attribute
names, calls of unknown functions, huge numbers, broken tags) — with generated event data
either compile or fail with a TemplateSyntaxError that places the error inside the
source; and a compiled template renders to text or fails with a RenderError, within the
render limits, never reaching a Python object (no repr, no attribute of one, no code).
Examples per run: the ``MC_HYPOTHESIS_PROFILE`` (tests/conftest.py).
"""

from __future__ import annotations

import re
import time
from html import escape

from hypothesis import event, given
from hypothesis import strategies as st

from soap_service.errors import RenderError, TemplateSyntaxError
from soap_service.render.personalize import (
    EventData,
    Limits,
    compile_template,
    parse_ctx,
    render_source,
)
from soap_service.render.syntax import FUNCTIONS

LIMITS = Limits(max_output_chars=20_000, max_steps=20_000, max_seconds=0.5)
# what Python objects look like when they leak into text
LEAKS = re.compile(r"<(bound method|built-in|function|class|module|generator)\b|object at 0x"
                   r"|__\w+__|Traceback|<lxml|_Element|Nodes\(")

names = st.sampled_from(["a", "b", "item", "n", "@id", "@x", "__class__", "__globals__",
                         "__dict__", "mro", "format", "keys", "tag", "text", "attrib",
                         "getparent", "ctx", "email", "type", "x y"])
FUNCS = [*sorted(FUNCTIONS), "eval", "exec", "__import__", "getattr", "open", "str", "len"]
literals = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.integers(20, 5000).map(lambda n: "9" * n),
    st.sampled_from(["1.5", "-0", "1e9", "nan", "0x10", "9" * 999 + ".5"]),
    st.text(st.sampled_from("ab'\"\\<>&{}%"), max_size=6).map(lambda t: repr(t)),
    st.sampled_from(["true", "false", "null", "None", "__builtins__"]),
)


def path() -> st.SearchStrategy[str]:
    root = st.sampled_from(["rtEvent", "rtEvent.ctx", "v", "w", "self", "rtEvent.__class__"])
    step = st.one_of(names.map(lambda n: "." + n if not n.startswith("@") else n),
                     st.integers(-3, 5).map(lambda i: f"[{i}]"),
                     names.map(lambda n: f'["{n}"]'))
    return st.builds(lambda r, s: r + "".join(s), root, st.lists(step, max_size=4))


@st.composite
def expression(draw: st.DrawFn, depth: int = 0) -> str:
    """An expression of the grammar (and beyond it), at most 3 levels deep."""
    kind = draw(st.integers(0, 2 if depth >= 3 else 6))
    if kind == 0:
        return draw(literals)
    if kind in (1, 2):
        return draw(path())
    inner = expression(depth + 1)
    if kind == 3:
        op = draw(st.sampled_from(["==", "!=", "<", ">=", "&&", "||", "and", "or", "+", "*",
                                   "."]))
        return f"{draw(inner)} {op} {draw(inner)}"
    if kind == 4:
        return draw(st.sampled_from(["!", "not ", "("])) + draw(inner) + (
            ")" if draw(st.booleans()) else "")
    args = draw(st.lists(inner, max_size=3))
    func = draw(st.sampled_from(FUNCS))
    if kind == 5:
        return f"{draw(inner)} | {func}" + (f"({', '.join(args)})" if args else "")
    return f"{func}({', '.join(args)})"


expressions = expression()
pieces = st.one_of(
    st.text(st.sampled_from("abc <>&\n{}%#'\""), max_size=12),
    expressions.map(lambda e: "{{ " + e + " }}"),
    expressions.map(lambda e: "<%= " + e + " %>"),
    expressions.map(lambda e: "{% if " + e + " %}"),
    st.just("{% else %}"), st.just("{% endif %}"), st.just("{% endfor %}"),
    st.builds(lambda v, p: "{% for " + v + " in " + p + " %}", st.sampled_from(["v", "w"]),
              path()),
    st.builds(lambda v, p: "<% for each (var " + v + " in " + p + ") { %>",
              st.sampled_from(["v", "w"]), path()),
    st.sampled_from(["<% } %>", "<% } else { %>", "{#", "#}", "{{", "}}", "{%", "<%", "%>",
                     "{{- 'x' -}}", "<a href=\"{{ rtEvent.ctx.a }}\">l</a>"]),
)
templates = st.lists(pieces, max_size=12).map("".join)


@st.composite
def ctx_xml(draw: st.DrawFn, depth: int = 0) -> str:
    text = escape(draw(st.text(st.sampled_from("ab1 .-<&'\"é"), max_size=8)))
    children = "" if depth > 2 else "".join(draw(st.lists(ctx_xml(depth + 1), max_size=3)))
    name = draw(st.sampled_from(["a", "b", "item", "n", "__class__"])) if depth else "ctx"
    attrs = "".join(f' {k}="{escape(v)}"' for k, v in draw(st.dictionaries(
        st.sampled_from(["id", "x", "n"]), st.text(st.sampled_from("12a<"), max_size=4),
        max_size=2)).items())
    return f"<{name}{attrs}>{text}{children}</{name}>"


@given(templates, ctx_xml(), st.booleans())
def test_generated_templates_stay_inside_the_language(source: str, ctx: str,
                                                      html: bool) -> None:
    try:
        compile_template(source, "html" if html else "text")
    except TemplateSyntaxError as exc:
        event("syntax error")
        assert exc.part == ("html" if html else "text")
        assert 1 <= exc.line <= source.count("\n") + 1 and exc.column >= 1
        assert len(exc.message) < 400  # a line, never the source quoted whole
        return
    data = EventData(attributes={"type": "order", "email": "a@b.co"}, ctx=parse_ctx(ctx))
    started = time.monotonic()
    try:
        out = render_source(source, data, escape=html, limits=LIMITS)
    except RenderError:
        event("render error")
        assert time.monotonic() - started < LIMITS.max_seconds + 1.0
        return
    event("rendered")
    assert time.monotonic() - started < LIMITS.max_seconds + 1.0
    assert isinstance(out, str) and len(out) <= LIMITS.max_output_chars
    assert "\ue000" not in out and "\ue001" not in out
    if not LEAKS.search(source + ctx):  # only the source or the data may hold such words
        assert not LEAKS.search(out), out[:300]
