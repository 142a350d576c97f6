"""The personalisation engine: a compiled template + event data -> text, sandboxed.

Pure and closed: the tree from :mod:`compiler` runs here over plain data (the event's
attributes and its ``<ctx>`` XML), made once per source into closures, one per node
(:func:`compile_program`: the tree's meaning, node for node, without looking at it again
per message).  There is no Python attribute access, no import, no file or network: a
template can only read fields of ``rtEvent`` and call the functions listed in
:data:`syntax.FUNCTIONS`.  Work is bounded by a step budget, a wall clock deadline and a
maximum output size; exceeding one is a :class:`RenderError`.

Values are ``str``, numbers, ``bool``, ``None`` (missing) or :class:`Nodes` (the XML
elements a path selected, like an E4X XMLList).
"""

from __future__ import annotations

import html
import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from soap_service.errors import RenderError
from soap_service.render import urls
from soap_service.render.compiler import compile_source
from soap_service.render.syntax import (
    PROFILE_NAME,
    ROOT_NAME,
    BinOp,
    Call,
    Expr,
    For,
    If,
    Literal,
    Node,
    Not,
    Output,
    Path,
    Text,
)
from soap_service.xmlsafe import InvalidXml, local_name, parse_xml


@dataclass(frozen=True)
class Limits:
    max_output_chars: int = 1024 * 1024
    max_steps: int = 200_000
    max_seconds: float = 2.0


DEFAULT_LIMITS = Limits()


class Nodes:
    """Elements selected by a path (possibly none); never changed once made (a plain
    class: one is made per loop item, a frozen dataclass's ``__init__`` costs 3x)."""

    __slots__ = ("items",)
    items: tuple[Any, ...]  # lxml elements

    def __init__(self, items: tuple[Any, ...]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return type(other) is Nodes and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return f"Nodes(items={self.items!r})"

    def text(self) -> str:
        """The first element's text content (its own text when it has no children:
        ``itertext`` costs fifteen times as much)."""
        if not self.items:
            return ""
        first = self.items[0]
        if not len(first):
            return first.text or ""
        return "".join(first.itertext())


@dataclass(frozen=True)
class EventData:
    """What ``rtEvent`` means to a template: the event's attributes and its ``<ctx>``;
    for a profile-based event, what ``profile`` means (plain JSON data: strings,
    numbers, booleans, lists and objects -- nothing else is reachable) and the message's
    unsubscribe link."""

    attributes: dict[str, str]
    ctx: Any  # lxml element or None
    profile: dict[str, Any] | None = None
    unsubscribe_url: str = ""
    # the ctx elements' children by local name, filled as paths step through them: the
    # parts of a message (subject, HTML, text) look up the same fields (:func:`children`)
    children: dict[Any, dict[str, list[Any]]] = field(default_factory=dict, compare=False,
                                                      repr=False)


Value = str | int | float | bool | None | Nodes

def parse_ctx(ctx_xml: str) -> Any:
    """The ``<ctx>`` element of an event (or ``None`` when there is none / it is empty)."""
    if not ctx_xml or not ctx_xml.strip():
        return None
    try:
        root = parse_xml(ctx_xml)
    except InvalidXml as exc:
        raise RenderError("event ctx is not well-formed XML", exc.detail) from exc
    if local_name(root) != "ctx":
        found = [c for c in root if local_name(c) == "ctx"]
        return found[0] if found else root
    return root


@lru_cache(maxsize=1024)
def compile_template(source: str, part: str = "") -> tuple[Node, ...]:
    """Compile once per distinct source (the worker renders the same versions again)."""
    return compile_source(source, part)


def render_source(source: str, data: EventData, *, escape: bool, part: str = "",
                  limits: Limits = DEFAULT_LIMITS) -> str:
    """Render one template part. ``escape`` HTML-escapes every inserted value."""
    if "<%" not in source and "{{" not in source and "{%" not in source and "{#" not in source:
        return source
    return Interpreter(data, escape, limits).execute(compile_program(source, part))


@lru_cache(maxsize=1024)
def compile_program(source: str, part: str = "") -> Run:
    """The template's tree made into closures, once per distinct source."""
    return compile_nodes(compile_template(source, part))


CLOCK_EVERY = 64  # cheap steps between two readings of the clock, at most


class Interpreter:
    """The state of one render: the event's data, the steps taken, the output so far.
    The template itself runs as closures made by :func:`compile_nodes` (one per node of
    the tree, made once per source), each taking this state."""

    def __init__(self, data: EventData, escape: bool, limits: Limits) -> None:
        self.data = data
        self.escape = escape
        self.limits = limits
        self.max_steps = limits.max_steps
        self.max_output = limits.max_output_chars
        self.steps = 0
        self.size = 0
        self.next_clock = CLOCK_EVERY
        # steps >= alarm: the step limit or the clock is due (one comparison per step)
        self.alarm = min(CLOCK_EVERY, self.max_steps + 1)
        self.deadline = time.monotonic() + limits.max_seconds
        self.out: list[str] = []
        self.scope: dict[str, Nodes] = {}

    def run(self, nodes: tuple[Node, ...]) -> str:
        return self.execute(compile_nodes(nodes))

    def execute(self, program: Run) -> str:
        program(self)
        out = "".join(self.out)
        return urls.guard(out) if self.escape else out  # no script URL from event data

    def tick(self, cost: int = 1) -> None:
        """Count a step (the step limit); the clock is read every :data:`CLOCK_EVERY`
        steps and by :meth:`clock` before any work that grows with the data.  (The
        closures do the same inline: ``steps += 1``, and :meth:`due` past ``alarm``.)"""
        self.steps += cost
        if self.steps >= self.alarm:
            self.due()

    def due(self) -> None:
        if self.steps > self.max_steps:
            raise RenderError(f"render step limit exceeded ({self.limits.max_steps})")
        if self.steps >= self.next_clock:
            self.clock()

    def clock(self) -> None:
        """Read the clock.  One step can scan a whole ctx (a child look-up, the text of a
        large element), so every step that touches XML reads it -- a step over elements,
        a path that ends on elements (their text is read next), a function that returns
        a long text -- and other steps (constant work each) read it every
        :data:`CLOCK_EVERY` steps: a render never runs more than one such scan past its
        time limit."""
        if time.monotonic() > self.deadline:
            self.time_limit()
        self.clocked()

    def time_limit(self) -> None:
        raise RenderError(f"render time limit exceeded ({self.limits.max_seconds}s)")

    def clocked(self) -> None:
        """The clock was just read: the next reading is due in :data:`CLOCK_EVERY` steps."""
        due = self.next_clock = self.steps + CLOCK_EVERY
        self.alarm = due if due <= self.max_steps else self.max_steps + 1

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.max_output:
            self.output_limit()
        self.out.append(text)

    def output_limit(self) -> None:
        raise RenderError(f"render output limit exceeded ({self.limits.max_output_chars} "
                          "characters)")

    def walk(self, items: tuple[Any, ...], steps: tuple[tuple[str, str | int], ...]
             ) -> Value:
        """A path's steps from ``items`` (elements): children, an attribute, an index.
        Each step counts one step per element it starts from and reads the clock, as does
        a path that ends on elements (their text is read next): :meth:`clock`."""
        monotonic, deadline, names = time.monotonic, self.deadline, _LOCAL_NAMES
        index = self.data.children
        last = len(steps) - 1
        for i, (kind, key) in enumerate(steps):
            self.steps += len(items)
            if self.steps > self.max_steps:
                raise RenderError(f"render step limit exceeded ({self.limits.max_steps})")
            if monotonic() > deadline:
                self.time_limit()
            if kind == "child":
                if len(items) == 1:
                    found = index.get(items[0])
                    if found is None and len(index) < MAX_INDEXED:
                        found = children(items[0], index)
                    if found is not None:
                        items = tuple(found.get(key, ()))  # type: ignore[arg-type]
                        continue
                items = tuple([c for el in items for c in el
                               if (names.get(c.tag) or _local(c.tag)) == key])
            elif kind == "attr":  # a text: a step after it reads nothing
                self.clocked()
                return attribute(items, key) if i == last else None  # type: ignore[arg-type]
            elif -len(items) <= key < len(items):  # type: ignore[operator]
                items = (items[key],)  # type: ignore[index]
            else:
                self.clocked()
                return None
        self.clock()  # the elements' text is read next
        return Nodes(items)

    def profile_value(self, steps: tuple[tuple[str, str | int], ...]) -> Value:
        """``profile.firstName``, ``profile.attributes.tier``, ``profile.pushTokens[0]``:
        a walk over plain JSON data; an object or a list itself reads as nothing."""
        value: Any = self.data.profile
        for kind, key in steps:
            self.tick()
            if isinstance(value, dict) and kind in ("child", "attr") and isinstance(key, str):
                value = value.get(key)
            elif isinstance(value, list) and kind == "index" and isinstance(key, int):
                value = value[key] if -len(value) <= key < len(value) else None
            else:
                return None
        if isinstance(value, bool | int | float | str):
            return value
        return None


# ---------------------------------------------------------------- tree -> closures
#
# Every closure counts its own step first, as an interpreter's ``block`` / ``eval``
# would: ``steps = it.steps = it.steps + 1`` then ``it.due()`` past ``it.alarm``.

Run = Callable[[Interpreter], None]
Eval = Callable[[Interpreter], Value]


def compile_nodes(nodes: tuple[Node, ...]) -> Run:
    runs = tuple(_compile_node(node) for node in nodes)
    if len(runs) == 1:
        return runs[0]

    def block(it: Interpreter) -> None:
        for run in runs:
            run(it)
    return block


def _compile_node(node: Node) -> Run:
    if isinstance(node, Text):
        return _text(node.value)
    if isinstance(node, Output):
        return _output(compile_expr(node.expr))
    if isinstance(node, If):
        return _if(tuple((compile_expr(c), compile_nodes(b)) for c, b in node.branches),
                   compile_nodes(node.otherwise))
    if isinstance(node, For):
        return _for(node.var, compile_expr(node.source), compile_nodes(node.body))
    raise RenderError("unknown node")  # pragma: no cover - the tree is closed


def _text(value: str) -> Run:
    size = len(value)

    def text(it: Interpreter) -> None:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        it.size += size
        if it.size > it.max_output:
            it.output_limit()
        it.out.append(value)
    return text


def _output(expr: Eval) -> Run:
    escape, mark = html.escape, urls.mark

    def output(it: Interpreter) -> None:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        value = expr(it)
        text = value if type(value) is str else to_text(value)
        it.write(mark(escape(text, quote=True)) if it.escape else text)
    return output


def _if(branches: tuple[tuple[Eval, Run], ...], otherwise: Run) -> Run:
    def branch(it: Interpreter) -> None:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        for cond, body in branches:
            if truthy(cond(it)):
                body(it)
                return
        otherwise(it)
    return branch


def _for(var: str, source: Eval, body: Run) -> Run:
    def loop(it: Interpreter) -> None:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        value = source(it)
        items = value.items if isinstance(value, Nodes) else ()
        scope = it.scope
        saved = scope.get(var)
        try:
            for item in items:
                steps = it.steps = it.steps + 1
                if steps >= it.alarm:
                    it.due()
                scope[var] = Nodes((item,))
                body(it)
        finally:
            if saved is None:
                scope.pop(var, None)
            else:
                scope[var] = saved
    return loop


def compile_expr(expr: Expr) -> Eval:
    if isinstance(expr, Literal):
        return _literal(expr.value)
    if isinstance(expr, Path):
        return _path(expr)
    if isinstance(expr, Not):
        return _not(compile_expr(expr.operand))
    if isinstance(expr, BinOp):
        return _binop(expr.op, compile_expr(expr.left), compile_expr(expr.right))
    if isinstance(expr, Call):
        return _call(expr)
    raise RenderError("unknown expression")  # pragma: no cover - the tree is closed


def _literal(value: Value) -> Eval:
    def literal(it: Interpreter) -> Value:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        return value
    return literal


def _not(operand: Eval) -> Eval:
    def negation(it: Interpreter) -> Value:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        return not truthy(operand(it))
    return negation


def _binop(op: str, left: Eval, right: Eval) -> Eval:
    if op == "and":
        def both(it: Interpreter) -> Value:
            steps = it.steps = it.steps + 1
            if steps >= it.alarm:
                it.due()
            return truthy(left(it)) and truthy(right(it))
        return both
    if op == "or":
        def either(it: Interpreter) -> Value:
            steps = it.steps = it.steps + 1
            if steps >= it.alarm:
                it.due()
            return truthy(left(it)) or truthy(right(it))
        return either

    def comparison(it: Interpreter) -> Value:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        a = left(it)
        return compare(op, a, right(it))
    return comparison


def _path(path: Path) -> Eval:
    root, path_steps = path.root, path.steps
    if root == ROOT_NAME:  # never a loop variable (refused at compile time)
        first = path_steps[0] if path_steps else ("index", 0)
        if first == ("child", "ctx"):
            rest = path_steps[1:]

            def ctx_path(it: Interpreter) -> Value:
                steps = it.steps = it.steps + 1
                if steps >= it.alarm:
                    it.due()
                ctx = it.data.ctx
                return it.walk((ctx,) if ctx is not None else (), rest)
            return ctx_path
        kind, key = first
        if kind in ("child", "attr") and isinstance(key, str) and len(path_steps) == 1:
            def attribute_path(it: Interpreter) -> Value:
                steps = it.steps = it.steps + 1
                if steps >= it.alarm:
                    it.due()
                return it.data.attributes.get(key)
            return attribute_path
        return _literal(None)  # rtEvent, rtEvent[0], rtEvent.email.more: nothing

    def scoped_path(it: Interpreter) -> Value:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        nodes = it.scope.get(root)
        if nodes is not None:
            return it.walk(nodes.items, path_steps)
        if root == PROFILE_NAME:
            return it.profile_value(path_steps)
        return None
    return scoped_path


def _call(expr: Call) -> Eval:
    name = expr.name
    if name == "unsubscribeUrl":
        def unsubscribe_url(it: Interpreter) -> Value:
            steps = it.steps = it.steps + 1
            if steps >= it.alarm:
                it.due()
            return it.data.unsubscribe_url
        return unsubscribe_url
    args = tuple(compile_expr(a) for a in expr.args)
    if name == "required":
        arg = args[0]
        first = expr.args[0]
        label = first.text if isinstance(first, Path) else "value"

        def required(it: Interpreter) -> Value:
            steps = it.steps = it.steps + 1
            if steps >= it.alarm:
                it.due()
            value = arg(it)
            if to_text(value) == "":
                raise RenderError(f"required field missing: {label}", label)
            return value
        return required
    function = FUNCTIONS[name]
    if len(args) == 1:
        (only,) = args

        def call1(it: Interpreter) -> Value:
            steps = it.steps = it.steps + 1
            if steps >= it.alarm:
                it.due()
            result = function(only(it))
            if type(result) is str and len(result) > LONG_TEXT:
                it.clock()
            return result
        return call1
    if len(args) == 2:
        one, two = args

        def call2(it: Interpreter) -> Value:
            steps = it.steps = it.steps + 1
            if steps >= it.alarm:
                it.due()
            value = one(it)
            result = function(value, two(it))
            if type(result) is str and len(result) > LONG_TEXT:
                it.clock()
            return result
        return call2

    def call(it: Interpreter) -> Value:
        steps = it.steps = it.steps + 1
        if steps >= it.alarm:
            it.due()
        result = function(*[a(it) for a in args])
        if type(result) is str and len(result) > LONG_TEXT:
            it.clock()
        return result
    return call


LONG_TEXT = 4096  # a function returning a longer text reads the clock
_LOCAL_NAMES: dict[Any, str] = {}


def _local(tag: Any) -> str:
    """:func:`local_name` of an lxml tag, cached per tag (a ctx has few distinct tags)."""
    try:
        return _LOCAL_NAMES[tag]
    except KeyError:
        pass
    name = local_name(tag) if isinstance(tag, str) else ""
    if len(_LOCAL_NAMES) < 10_000:
        _LOCAL_NAMES[tag] = name
    return name


MAX_INDEXED = 1000  # elements whose children one message's data indexes, at most


def children(element: Any, index: dict[Any, dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """``element``'s children by local name, in document order; made once per element and
    message (``index``: :attr:`EventData.children`; an lxml element keeps its identity
    while referenced)."""
    found = index.get(element)
    if found is None:
        found = index[element] = {}
        for child in element:
            tag = child.tag
            name = _LOCAL_NAMES.get(tag) or _local(tag)
            same = found.get(name)
            if same is None:
                found[name] = [child]
            else:
                same.append(child)
    return found


def attribute(items: tuple[Any, ...], key: str) -> str | None:
    if not items:
        return None
    for name, value in items[0].attrib.items():
        if _local(name) == key:
            return str(value)
    return None


def to_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, Nodes):
        return value.text()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def truthy(value: Value) -> bool:
    if isinstance(value, Nodes):
        if not value.items:
            return False
        first = value.items[0]
        return bool(value.text() or len(first) or first.attrib)
    if isinstance(value, str):
        return value != ""
    return bool(value)


def to_number(value: Value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if type(value) is int and -_EXACT < value < _EXACT:  # float(str(n)), without the text
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    text = to_text(value).strip()
    if not text or "_" in text:  # float() accepts "1_000"; event data is not Python
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None  # "nan", "inf", "1e999" stay text


_EXACT = 2 ** 53

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def compare(op: str, left: Value, right: Value) -> bool:
    """Numbers compare as numbers when both sides are numeric, otherwise as text."""
    a, b = to_number(left), to_number(right)
    if a is not None and b is not None:
        return _COMPARE[op](a, b)
    return _COMPARE[op](to_text(left), to_text(right))


def _number(value: Value, places: Value = 2) -> str:
    num = to_number(value)
    digits = to_number(places)
    if num is None:
        return to_text(value)
    return f"{num:.{max(0, min(int(digits or 0), 10))}f}"


def _length(value: Value) -> int:
    if isinstance(value, Nodes):
        return len(value.items)
    return len(to_text(value))


def _truncate(value: Value, size: Value) -> str:
    text, n = to_text(value), int(to_number(size) or 0)
    if n <= 0:
        return ""
    return text if len(text) <= n else text[: n - 1] + "…"


def _replace(value: Value, old: Value, new: Value) -> str:
    text, a, b = to_text(value), to_text(old), to_text(new)
    if not a:
        return text
    if len(text) + text.count(a) * (len(b) - len(a)) > DEFAULT_LIMITS.max_output_chars:
        raise RenderError("render output limit exceeded (replace)")
    return text.replace(a, b)


FUNCTIONS: dict[str, Callable[..., Value]] = {
    "default": lambda v, d: v if to_text(v) != "" else d,
    "upper": lambda v: to_text(v).upper(),
    "lower": lambda v: to_text(v).lower(),
    "trim": lambda v: to_text(v).strip(),
    "capitalize": lambda v: to_text(v)[:1].upper() + to_text(v)[1:].lower(),
    "title": lambda v: to_text(v).title(),
    "length": _length,
    "count": _length,
    "number": _number,
    "urlencode": lambda v: urllib.parse.quote(to_text(v), safe=""),
    "truncate": _truncate,
    "replace": _replace,
}
