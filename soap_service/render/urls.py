"""URLs that personalisation puts into HTML attributes: only safe schemes survive.

HTML escaping keeps event data from breaking out of an attribute, but not from *being* a
dangerous URL: ``href="{{ rtEvent.ctx.link }}"`` with ``javascript:alert(1)`` (or
``data:``, ``vbscript:``, `` JaVaScRiPt:``, ``java&#9;script:``, ``javascript&colon;``)
stays a live script link.  The interpreter wraps every value it inserts into the HTML
part between two private-use marker characters; :func:`guard` then looks at each
URL-bearing attribute (``href``, ``src``, ``action``...) that holds a marked value, reads
its scheme the way a browser would (entities decoded, tabs and newlines removed, leading
spaces and control characters dropped) and removes the attribute unless the URL is
relative or its scheme is http, https, mailto or tel.  Finally the markers go.  URLs
written by the template author alone are left as they are: the author is trusted, the
event's data is not.
"""

from __future__ import annotations

import html
import logging
import re

log = logging.getLogger(__name__)

OPEN, CLOSE = "\ue000", "\ue001"  # around each personalised value in the HTML part
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "background", "poster",
                            "cite", "data", "longdesc", "usemap", "xlink:href", "lowsrc",
                            "dynsrc", "codebase", "manifest", "ping", "icon", "profile"})

_TAG = re.compile(r"""<[A-Za-z][^\s/>]*(?:[^>"']|"[^"]*"|'[^']*')*>""")
# an attribute as browsers split them: name, then after "=" (spaces skipped) its value
_ATTRIBUTE = re.compile(r"""\s+([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]*))?""")
_IGNORED = re.compile(r"[\t\n\r]")  # removed anywhere in a URL by browsers
_SCHEME = re.compile(r"^([^/?#]*?):")


def mark(text: str) -> str:
    """A value inserted into the HTML part, marked (markers in the data itself dropped)."""
    return OPEN + text.replace(OPEN, "").replace(CLOSE, "") + CLOSE


def scheme_of(value: str) -> str | None:
    """The scheme a browser would see in an attribute value as written in HTML, lower
    case; None for a relative URL.  Anything before a ``:`` that comes before the first
    ``/``, ``?`` or ``#`` counts, even when it is no valid scheme (``&#106;avascript``)."""
    text = _IGNORED.sub("", html.unescape(value))
    text = text.lstrip("".join(chr(c) for c in range(33)))
    found = _SCHEME.match(text)
    return found.group(1).lower() if found else None


def is_safe(value: str) -> bool:
    scheme = scheme_of(value)
    return scheme is None or scheme in SAFE_SCHEMES


def guard(html_text: str) -> str:
    """Drop URL attributes whose personalised value is unsafe; remove every marker."""
    if OPEN not in html_text:
        return html_text
    return _TAG.sub(_guard_tag, html_text).replace(OPEN, "").replace(CLOSE, "")


def _guard_tag(match: re.Match[str]) -> str:
    tag = match.group(0)
    if OPEN not in tag:
        return tag
    clean, marked = _unmark(tag)
    kept: list[str] = []
    pos = 0
    for attr in _ATTRIBUTE.finditer(clean):
        name = attr.group(1).lower()
        value = attr.group(2)
        if any(marked[attr.start(1):attr.end(1)]):  # data never names an attribute
            reason = "name"
        elif (value is not None and name in URL_ATTRIBUTES
              and any(marked[attr.start(2):attr.end(2)])
              and not is_safe(_unquote(value))):
            reason = scheme_of(_unquote(value)) or ""
        else:
            continue
        log.info("render.unsafe_attribute_dropped attribute=%s reason=%s", name[:30],
                 reason[:20])
        kept.append(clean[pos:attr.start()])
        pos = attr.end()
    kept.append(clean[pos:])
    return "".join(kept)


def _unmark(text: str) -> tuple[str, list[bool]]:
    """``text`` without markers, and for each character whether it came from data."""
    chars: list[str] = []
    marked: list[bool] = []
    inside = False
    for ch in text:
        if ch == OPEN:
            inside = True
        elif ch == CLOSE:
            inside = False
        else:
            chars.append(ch)
            marked.append(inside)
    return "".join(chars), marked


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
