"""Template syntax: source text -> a small, closed AST (no Python, no evaluation here).

Two surface syntaxes compile to the same tree, so they render identically:

* the suite's: ``<%= expr %>``, ``<% if (c) { %>``, ``<% } else if (c) { %>``,
  ``<% } else { %>``, ``<% } %>``, ``<% for each (var a in path) { %>``;
* Jinja-style: ``{{ expr }}``, ``{% if c %}`` / ``elif`` / ``else`` / ``endif``,
  ``{% for a in path %}`` / ``endfor``, ``{# comment #}``, ``{{-`` / ``-}}`` trimming.

Expressions are data look-ups only (``rtEvent.ctx.a.b``, ``.@attr``, ``[0]``,
``profile.firstName``, ``profile.attributes.tier``,
``["name"]``), literals, comparisons, ``&&``/``and``, ``||``/``or``, ``!``/``not`` and a
fixed list of functions/filters.  Anything else is a :class:`TemplateSyntaxError` with
line and column, raised when the template is compiled (at save and publish time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soap_service.errors import TemplateSyntaxError

MAX_SOURCE_CHARS = 512 * 1024
MAX_NESTING = 32
MAX_EXPR_DEPTH = 40
MAX_EXPR_OPERATORS = 100  # operators and filters in one tag (chains evaluate recursively)
MAX_NUMBER_DIGITS = 1000  # digits in a number literal (Python's int() stops at 4,300)
ROOT_NAME = "rtEvent"
PROFILE_NAME = "profile"  # a profile-based event's profile (profile.firstName ...)

# name -> (minimum, maximum) number of arguments, the value itself included
FUNCTIONS: dict[str, tuple[int, int]] = {
    "required": (1, 1),
    "default": (2, 2),
    "upper": (1, 1),
    "lower": (1, 1),
    "trim": (1, 1),
    "capitalize": (1, 1),
    "title": (1, 1),
    "length": (1, 1),
    "count": (1, 1),
    "number": (1, 2),
    "urlencode": (1, 1),
    "truncate": (2, 2),
    "replace": (3, 3),
    "unsubscribeUrl": (0, 0),  # the message's signed one-click link (profile-based)
}
KEYWORDS = {"and", "or", "not", "in", "var", "each", "true", "false", "null"}


# ---------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Literal:
    value: str | float | bool | None


@dataclass(frozen=True)
class Path:
    root: str
    steps: tuple[tuple[str, str | int], ...]  # ("child", name) | ("attr", name) | ("index", n)
    text: str  # as written, for error messages ("rtEvent.ctx.client.firstname")


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class BinOp:
    op: str  # == != < > <= >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]


Expr = Literal | Path | Not | BinOp | Call


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Output:
    expr: Expr


@dataclass(frozen=True)
class If:
    branches: tuple[tuple[Expr, tuple[Node, ...]], ...]
    otherwise: tuple[Node, ...]


@dataclass(frozen=True)
class For:
    var: str
    source: Path
    body: tuple[Node, ...]


Node = Text | Output | If | For


# ---------------------------------------------------------------- expression lexer

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<attr>@[A-Za-z_][\w\-:]*)
    | (?P<name>[A-Za-z_]\w*)
    | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!().,\[\]|{};])
    )""",
    re.VERBOSE,
)
_BLANK_END = re.compile(r"\s*\Z")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Tok:
    kind: str  # num str attr name op end
    value: str
    pos: int  # offset in the whole source


class Locator:
    """Turns an offset in the source into (line, column), both from 1."""

    def __init__(self, source: str, part: str) -> None:
        self.source = source
        self.part = part

    def error(self, message: str, pos: int) -> TemplateSyntaxError:
        line = self.source.count("\n", 0, pos) + 1
        column = pos - (self.source.rfind("\n", 0, pos) + 1) + 1
        return TemplateSyntaxError(message, line=line, column=column, part=self.part)


def tokenize(code: str, offset: int, loc: Locator) -> list[Tok]:
    tokens: list[Tok] = []
    pos = 0
    while pos < len(code):
        if _BLANK_END.match(code, pos):  # not code[pos:].strip(): that is quadratic
            break
        m = _TOKEN.match(code, pos)
        if not m or m.end() == pos:
            bad = pos + len(code[pos:]) - len(code[pos:].lstrip())
            raise loc.error(f"unexpected character {code[bad]!r}", offset + bad)
        kind = m.lastgroup or "op"
        start = offset + m.start(kind)
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), value[1:-1])
        elif kind == "attr":
            value = value[1:]
        tokens.append(Tok(kind, value, start))
        pos = m.end()
    tokens.append(Tok("end", "", offset + len(code)))
    return tokens


# ---------------------------------------------------------------- expression parser


class ExprParser:
    """Recursive descent over one tag's tokens; ``scope`` holds the loop variables."""

    def __init__(self, tokens: list[Tok], loc: Locator, scope: frozenset[str]) -> None:
        self.toks = tokens
        self.i = 0
        self.loc = loc
        self.scope = scope
        self.depth = 0
        self.operators = 0

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, *values: str) -> bool:
        if self.tok.kind in ("op", "name") and self.tok.value in values:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> Tok:
        if not (self.tok.kind in ("op", "name") and self.tok.value == value):
            raise self.fail(f"expected {value!r}")
        return self.take()

    def fail(self, message: str, tok: Tok | None = None) -> TemplateSyntaxError:
        tok = tok or self.tok
        found = "end of tag" if tok.kind == "end" else repr(tok.value)
        return self.loc.error(f"{message}, found {found}", tok.pos)

    def count(self) -> None:
        self.operators += 1
        if self.operators > MAX_EXPR_OPERATORS:
            raise self.fail(f"expression too long (more than {MAX_EXPR_OPERATORS} operators)")

    def expression(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_EXPR_DEPTH:
            raise self.fail("expression nested too deeply")
        left = self.conjunction()
        while self.accept("||", "or"):
            self.count()
            left = BinOp("or", left, self.conjunction())
        self.depth -= 1
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.accept("&&", "and"):
            self.count()
            left = BinOp("and", left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.accept("!", "not"):
            self.depth += 1
            if self.depth > MAX_EXPR_DEPTH:
                raise self.fail("expression nested too deeply")
            return Not(self.negation())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.filtered()
        ops = {"==": "==", "===": "==", "!=": "!=", "!==": "!=", "<": "<", ">": ">",
               "<=": "<=", ">=": ">="}
        if self.tok.kind == "op" and self.tok.value in ops:
            op = ops[self.take().value]
            return BinOp(op, left, self.filtered())
        return left

    def filtered(self) -> Expr:
        value = self.primary()
        while self.accept("|"):
            self.count()
            name_tok = self.take()
            if name_tok.kind != "name":
                raise self.fail("expected a filter name", name_tok)
            extra = self.arguments() if self.accept("(") else ()
            value = self.call(name_tok, (value, *extra))
        return value

    def arguments(self) -> tuple[Expr, ...]:
        args: list[Expr] = []
        if not self.accept(")"):
            args.append(self.expression())
            while self.accept(","):
                args.append(self.expression())
            self.expect(")")
        return tuple(args)

    def call(self, name_tok: Tok, args: tuple[Expr, ...]) -> Call:
        name = name_tok.value
        if name not in FUNCTIONS:
            raise self.loc.error(f"unknown function or filter {name!r}", name_tok.pos)
        low, high = FUNCTIONS[name]
        if not low <= len(args) <= high:
            raise self.loc.error(f"{name} takes {low - 1} to {high - 1} extra arguments",
                                 name_tok.pos)
        return Call(name, args)

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind == "num":
            return Literal(self.number(tok))
        if tok.kind == "str":
            return Literal(tok.value)
        if tok.kind == "op" and tok.value == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if tok.kind == "name":
            if tok.value in ("true", "false"):
                return Literal(tok.value == "true")
            if tok.value == "null":
                return Literal(None)
            if self.tok.kind == "op" and self.tok.value == "(":
                self.take()
                return self.call(tok, self.arguments())
            return self.path(tok)
        raise self.fail("expected a value", tok)

    def number(self, tok: Tok) -> int | float:
        if sum(c.isdigit() for c in tok.value) > MAX_NUMBER_DIGITS:
            raise self.loc.error(f"number too long (more than {MAX_NUMBER_DIGITS} digits)",
                                 tok.pos)
        return float(tok.value) if "." in tok.value else int(tok.value)

    def path(self, root: Tok) -> Path:
        check_name(root, self.loc)
        if root.value not in (ROOT_NAME, PROFILE_NAME) and root.value not in self.scope:
            raise self.loc.error(f"unknown name {root.value!r} (use {ROOT_NAME}.…, "
                                 f"{PROFILE_NAME}.… or a loop variable)", root.pos)
        steps: list[tuple[str, str | int]] = []
        while True:
            if self.accept("."):
                tok = self.take()
                if tok.kind == "name":
                    check_name(tok, self.loc)
                    steps.append(("child", tok.value))
                elif tok.kind == "attr":
                    steps.append(("attr", tok.value))
                else:
                    raise self.fail("expected a field name after '.'", tok)
            elif self.tok.kind == "attr":  # rtEvent.ctx.article@num
                steps.append(("attr", self.take().value))
            elif self.accept("["):
                steps.append(self.subscript())
            else:
                break
        return Path(root.value, tuple(steps), path_text(root.value, steps))

    def subscript(self) -> tuple[str, str | int]:
        tok = self.take()
        self.expect("]")
        if tok.kind == "num" and "." not in tok.value:
            return ("index", int(self.number(tok)))
        if tok.kind == "str":
            if tok.value.startswith("@"):
                return ("attr", tok.value[1:])
            return ("child", tok.value)
        raise self.fail("expected a whole number or a quoted name in [ ]", tok)


def check_name(tok: Tok, loc: Locator) -> None:
    if tok.value.startswith("_"):
        raise loc.error(f"names starting with '_' are not allowed: {tok.value!r}", tok.pos)
    if tok.value in KEYWORDS:
        raise loc.error(f"unexpected keyword {tok.value!r}", tok.pos)


def path_text(root: str, steps: list[tuple[str, str | int]]) -> str:
    """A path written back as text, for messages: ``rtEvent.ctx.article[0].@num``."""
    out = root
    for kind, value in steps:
        if kind == "index":
            out += f"[{value}]"
        else:
            out += f".@{value}" if kind == "attr" else f".{value}"
    return out
