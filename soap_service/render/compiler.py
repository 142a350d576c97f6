"""Template source -> tree: finds the tags of both syntaxes and nests the blocks.

Every tag's inside is parsed by :mod:`soap_service.render.syntax`; blocks must close in
the syntax that opened them (``<% } %>`` closes ``<% if (...) { %>``, ``{% endif %}``
closes ``{% if %}``).  Errors carry the line and column of the offending tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from soap_service.errors import TemplateSyntaxError
from soap_service.render.syntax import (
    MAX_NESTING,
    MAX_SOURCE_CHARS,
    Expr,
    ExprParser,
    For,
    If,
    Locator,
    Node,
    Output,
    Path,
    Text,
    Tok,
    check_name,
    tokenize,
)

_OPEN = re.compile(r"<%=|<%|\{\{-?|\{%-?|\{#")
_CLOSERS = {"<%=": "%>", "<%": "%>", "{{": "}}", "{%": "%}", "{#": "#}"}
SUITE, JINJA = "suite", "jinja"


@dataclass
class Frame:
    kind: str  # root | if | for
    style: str
    pos: int
    nodes: list[Node] = field(default_factory=list)
    branches: list[tuple[Expr, tuple[Node, ...]]] = field(default_factory=list)
    cond: Expr | None = None
    in_else: bool = False
    var: str = ""
    source: Path | None = None


class Builder:
    """Receives text, outputs and block tags in order and nests them."""

    def __init__(self, loc: Locator) -> None:
        self.loc = loc
        self.stack = [Frame("root", "", 0)]

    @property
    def scope(self) -> frozenset[str]:
        return frozenset(f.var for f in self.stack if f.kind == "for")

    def add(self, node: Node) -> None:
        self.stack[-1].nodes.append(node)

    def push(self, frame: Frame) -> None:
        if len(self.stack) > MAX_NESTING:
            raise self.loc.error(f"blocks nested deeper than {MAX_NESTING}", frame.pos)
        self.stack.append(frame)

    def top(self, kind: str, style: str, pos: int, what: str) -> Frame:
        frame = self.stack[-1]
        if frame.kind == "root":
            raise self.loc.error(f"{what} without an open block", pos)
        if (kind and frame.kind != kind) or frame.style != style:
            opened = self.loc.error("", frame.pos)
            raise self.loc.error(
                f"{what} does not match the {frame.kind} block opened at line "
                f"{opened.line}, column {opened.column}", pos)
        return frame

    def branch(self, cond: Expr | None, style: str, pos: int) -> None:
        frame = self.top("if", style, pos, "else" if cond is None else "else if")
        if frame.in_else:
            raise self.loc.error("nothing may follow the else branch", pos)
        assert frame.cond is not None
        frame.branches.append((frame.cond, tuple(frame.nodes)))
        frame.nodes = []
        if cond is None:
            frame.in_else = True
        else:
            frame.cond = cond

    def close(self, kind: str, style: str, pos: int) -> None:
        frame = self.top(kind, style, pos, "block end")
        self.stack.pop()
        if frame.kind == "for":
            assert frame.source is not None
            self.add(For(frame.var, frame.source, tuple(frame.nodes)))
            return
        assert frame.cond is not None
        if frame.in_else:
            self.add(If(tuple(frame.branches), tuple(frame.nodes)))
        else:
            self.add(If((*frame.branches, (frame.cond, tuple(frame.nodes))), ()))

    def finish(self) -> tuple[Node, ...]:
        if len(self.stack) > 1:
            frame = self.stack[-1]
            raise self.loc.error(f"this {frame.kind} block is never closed", frame.pos)
        return tuple(self.stack[0].nodes)


def compile_source(source: str, part: str = "") -> tuple[Node, ...]:
    """Parse ``source``; raises :class:`TemplateSyntaxError` with line and column."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSyntaxError(f"template larger than {MAX_SOURCE_CHARS} characters",
                                  1, 1, part)
    loc = Locator(source, part)
    builder = Builder(loc)
    pos, lstrip = 0, False
    while True:
        m = _OPEN.search(source, pos)
        text = source[pos:m.start() if m else len(source)]
        if lstrip:
            text = text.lstrip()
        if m and m.group().endswith("-"):
            text = text.rstrip()
        if text:
            builder.add(Text(text))
        if not m:
            return builder.finish()
        opener = m.group().rstrip("-")
        closer = _CLOSERS[opener]
        end = find_close(source, m.end(), closer, quoted=opener != "{#")
        if end < 0:
            raise loc.error(f"{opener} is never closed (missing {closer})", m.start())
        inner_end, lstrip = end, False
        if closer in ("}}", "%}") and end > m.end() and source[end - 1] == "-":
            inner_end, lstrip = end - 1, True
        handle_tag(builder, opener, source[m.end():inner_end], m.end(), m.start())
        pos = end + len(closer)


def find_close(source: str, start: int, closer: str, quoted: bool) -> int:
    """Offset of ``closer`` after ``start``, skipping quoted strings inside the tag."""
    if not quoted:
        return source.find(closer, start)
    i = start
    while i < len(source):
        ch = source[i]
        if ch in "\"'":
            j = i + 1
            while j < len(source) and source[j] != ch:
                j += 2 if source[j] == "\\" else 1
            i = j + 1
            continue
        if source.startswith(closer, i):
            return i
        i += 1
    return -1


def handle_tag(builder: Builder, opener: str, code: str, offset: int, tag_pos: int) -> None:
    if opener == "{#":
        return
    loc = builder.loc
    tokens = tokenize(code, offset, loc)
    if opener in ("<%=", "{{"):
        if tokens[0].kind == "end":
            raise loc.error("empty expression", tag_pos)
        parser = ExprParser(tokens, loc, builder.scope)
        expr = parser.expression()
        if parser.tok.kind == "op" and parser.tok.value == ";":
            parser.take()
        if parser.tok.kind != "end":
            raise parser.fail("unexpected text after the expression")
        builder.add(Output(expr))
    elif opener == "<%":
        suite_statement(builder, tokens, tag_pos)
    else:
        jinja_statement(builder, tokens, tag_pos)


def _words(tokens: list[Tok]) -> list[str]:
    return [t.value if t.kind in ("op", "name") else f"<{t.kind}>" for t in tokens]


def suite_statement(builder: Builder, tokens: list[Tok], pos: int) -> None:
    """``if (c) {``, ``} else if (c) {``, ``} else {``, ``}``, ``for each (var a in p) {``."""
    while len(tokens) > 1 and tokens[-2].kind == "op" and tokens[-2].value == ";":
        del tokens[-2]
    words = _words(tokens)
    p = ExprParser(tokens, builder.loc, builder.scope)
    if words[:2] == ["}", "<end>"]:
        builder.close("", SUITE, pos)
        return
    if words[:3] == ["}", "else", "if"]:
        p.i = 3
        cond = p.expression()
        _expect_end(p, "{")
        builder.branch(cond, SUITE, pos)
        return
    if words[:2] == ["}", "else"]:
        p.i = 2
        _expect_end(p, "{")
        builder.branch(None, SUITE, pos)
        return
    if words[:1] == ["if"]:
        p.i = 1
        cond = p.expression()
        _expect_end(p, "{")
        builder.push(Frame("if", SUITE, pos, cond=cond))
        return
    if words[:3] == ["for", "each", "("]:
        p.i = 3
        p.accept("var")
        var, source = _loop_head(p)
        p.expect(")")
        _expect_end(p, "{")
        builder.push(Frame("for", SUITE, pos, var=var, source=source))
        return
    raise builder.loc.error(
        "unsupported statement (supported: if (…) {, } else if (…) {, } else {, }, "
        "for each (var x in …) {)", tokens[0].pos if tokens[0].kind != "end" else pos)


def jinja_statement(builder: Builder, tokens: list[Tok], pos: int) -> None:
    """``if c`` / ``elif c`` / ``else`` / ``endif`` / ``for a in p`` / ``endfor``."""
    words = _words(tokens)
    p = ExprParser(tokens, builder.loc, builder.scope)
    head = words[0]
    if head in ("if", "elif"):
        p.i = 1
        cond = p.expression()
        _expect_end(p)
        if head == "if":
            builder.push(Frame("if", JINJA, pos, cond=cond))
        else:
            builder.branch(cond, JINJA, pos)
    elif head == "for":
        p.i = 1
        var, source = _loop_head(p)
        _expect_end(p)
        builder.push(Frame("for", JINJA, pos, var=var, source=source))
    elif head in ("else", "endif", "endfor") and words[1] == "<end>":
        if head == "else":
            builder.branch(None, JINJA, pos)
        else:
            builder.close(head[3:], JINJA, pos)
    else:
        raise builder.loc.error(
            "unsupported statement (supported: if, elif, else, endif, for … in …, endfor)",
            tokens[0].pos if tokens[0].kind != "end" else pos)


def _loop_head(p: ExprParser) -> tuple[str, Path]:
    var_tok = p.take()
    if var_tok.kind != "name":
        raise p.fail("expected a loop variable name", var_tok)
    check_name(var_tok, p.loc)
    if var_tok.value == "rtEvent":
        raise p.loc.error("the loop variable cannot be called rtEvent", var_tok.pos)
    p.expect("in")
    start = p.tok
    source = p.expression()
    if not isinstance(source, Path):
        raise p.fail("a loop runs over a field path such as rtEvent.ctx.items.item", start)
    return var_tok.value, source


def _expect_end(p: ExprParser, *words: str) -> None:
    for word in words:
        p.expect(word)
    if p.tok.kind != "end":
        raise p.fail("unexpected text at the end of the statement")
