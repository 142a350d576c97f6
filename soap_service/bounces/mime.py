"""Defensive reading of inbound MIME: headers, text of parts, RFC 822-style field blocks.

Every helper here takes parts of a message parsed by the stdlib (``compat32`` policy: no
structured header parsing, so no header can raise) and returns clean ``str`` values:
encoded words decoded, unknown charsets and bad bytes replaced, control characters,
NULs and lone surrogates removed, whitespace collapsed, length bounded.  Nothing here
raises on hostile input; size and depth limits are enforced by the caller (``parse``).
"""

from __future__ import annotations

import base64
import binascii
import email.header
import html
import quopri
import re
from collections.abc import Iterator
from email.message import Message

HEADER_LIMIT = 1000  # characters kept of one header or field value
TEXT_LIMIT = 256 * 1024  # bytes of one part's body that are decoded and scanned
MAX_WALK = 256  # parts visited in one message
MAX_DEPTH = 8  # message/rfc822 and multipart nesting we descend into

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_SPACE = re.compile(r"\s+")
_LOCAL = r"[^\s<>()\[\]\\,;:@\"'`]"  # any character an address local part may carry, UTF-8 too
# bounded repetitions and a start anchor keep this linear on hostile runs of letters
ADDRESS = re.compile(
    rf"(?<!{_LOCAL}){_LOCAL}{{1,64}}@"
    r"[^\W_](?:[\w-]{0,62}[^\W_])?(?:\.[^\W_](?:[\w-]{0,62}[^\W_])?){1,10}(?![\w-])"
)
_TAG = re.compile(r"<[^<>]{0,2000}>")


def clean(text: str, limit: int = HEADER_LIMIT) -> str:
    """One line of safe text: no control characters or surrogates, spaces collapsed."""
    text = _CONTROL.sub(" ", text[: limit * 4])
    return _SPACE.sub(" ", text).strip()[:limit]


def header(msg: Message, name: str, limit: int = HEADER_LIMIT) -> str:
    """The first ``name`` header of ``msg``, decoded (RFC 2047) and cleaned; "" if absent."""
    value = msg.get(name)
    if value is None:
        return ""
    return decode_words(str(value)[: limit * 4], limit)


def headers(msg: Message, name: str, limit: int = HEADER_LIMIT) -> list[str]:
    """Every ``name`` header of ``msg``, decoded and cleaned (at most 100)."""
    return [decode_words(str(v)[: limit * 4], limit) for v in msg.get_all(name, [])[:100]]


def decode_words(raw: str, limit: int = HEADER_LIMIT) -> str:
    try:
        parts = email.header.decode_header(raw)
        text = "".join(
            chunk.decode(_charset(charset), "replace") if isinstance(chunk, bytes) else chunk
            for chunk, charset in parts)
    except (ValueError, LookupError, TypeError, AssertionError):
        text = raw
    return clean(text, limit)


def _charset(name: str | None) -> str:
    """A codec Python knows for ``name``; utf-8 for unknown or missing ones."""
    import codecs

    try:
        return codecs.lookup(name or "utf-8").name
    except (LookupError, TypeError, ValueError):
        return "utf-8"


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except (ValueError, TypeError, AttributeError):
        return "text/plain"


def body_bytes(part: Message, limit: int = TEXT_LIMIT) -> bytes:
    """The decoded body of a leaf part (base64 / quoted-printable undone), cut at ``limit``.
    For ``message/*`` parts the stdlib parsed into sub-messages, their text re-joined."""
    payload = part.get_payload()
    if isinstance(payload, list):
        raw = "\n\n".join(_flatten(sub) for sub in payload[:MAX_WALK] if isinstance(sub, Message))
        data = raw.encode("utf-8", "surrogateescape")
        cte = header(part, "Content-Transfer-Encoding", 50).lower()
        data = _undo_transfer_encoding(data[: limit * 2], cte)
        return data[:limit]
    try:
        decoded: object = part.get_payload(decode=True)
    except (ValueError, TypeError, binascii.Error, LookupError):
        decoded = None
    if isinstance(decoded, bytes):
        return decoded[:limit]
    return str(payload or "")[:limit].encode("utf-8", "surrogateescape")


def _flatten(msg: Message) -> str:
    lines = [f"{k}: {v}" for k, v in msg.items()[:200]]
    body = msg.get_payload()
    text = body if isinstance(body, str) else ""
    return ("\n".join(lines) + "\n\n" + text) if lines else text


def _undo_transfer_encoding(data: bytes, cte: str) -> bytes:
    try:
        if cte == "base64":
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", data) + b"==")
        if cte == "quoted-printable":
            return quopri.decodestring(data)
    except (ValueError, binascii.Error):
        pass
    return data


def body_text(part: Message, limit: int = TEXT_LIMIT) -> str:
    """The body of a leaf part as text (its charset, else utf-8; bad bytes replaced);
    HTML reduced to its text.  Control characters removed, lines kept."""
    data = body_bytes(part, limit)
    try:
        charset = part.get_content_charset() or "utf-8"
    except (ValueError, TypeError, AttributeError):
        charset = "utf-8"
    text = data.decode(_charset(charset), "replace")
    if content_type(part) == "text/html":
        text = html.unescape(_TAG.sub(" ", re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)))
    return _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def field_blocks(text: str) -> list[dict[str, list[str]]]:
    """RFC 822-style field blocks separated by blank lines (a delivery-status or a
    feedback-report body): ``[{"final-recipient": ["rfc822; a@b"], ...}, ...]``.
    Continuation lines are unfolded; names lower-cased; values cleaned."""
    blocks: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    last = ""
    for line in text.split("\n")[:5000]:
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        if line[:1] in " \t" and last:
            current[last][-1] = clean(current[last][-1] + " " + line)
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or " " in name:
            continue
        current.setdefault(name, []).append(clean(value))
        last = name
    if current:
        blocks.append(current)
    return blocks[:200]


def walk(msg: Message) -> Iterator[tuple[Message, int, bool]]:
    """``(part, depth, inside_attached_message)`` for each part, depth-first, bounded by
    :data:`MAX_WALK` parts and :data:`MAX_DEPTH` levels.  Parts inside a ``message/rfc822``
    are the original message, not the report: callers tell them apart by the flag."""
    count = 0
    stack: list[tuple[Message, int, bool]] = [(msg, 0, False)]
    while stack and count < MAX_WALK:
        part, depth, attached = stack.pop()
        count += 1
        yield part, depth, attached
        if depth >= MAX_DEPTH:
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        ctype = content_type(part)
        inner = attached or ctype == "message/rfc822"
        if ctype.startswith("message/") and ctype != "message/rfc822":
            continue  # delivery-status / feedback-report blocks: fields, not parts
        children = [(p, depth + 1, inner) for p in payload[:MAX_WALK] if isinstance(p, Message)]
        stack.extend(reversed(children))


def addresses(text: str, limit: int = 200) -> list[tuple[int, str]]:
    """``(position, lower-cased address)`` of the addresses in ``text``, in order."""
    out = []
    for match in ADDRESS.finditer(text):
        out.append((match.start(), match.group(0).strip(".").lower()))
        if len(out) >= limit:
            break
    return out


def first_address(value: str) -> str:
    """The first address in a header or field value (``rfc822; <A@B>`` → ``a@b``)."""
    match = ADDRESS.search(value)
    return match.group(0).strip(".").lower() if match else ""


def message_id(value: str) -> str:
    """A Message-ID without its angle brackets ("" when there is none)."""
    match = re.search(r"<([^<>\s]{1,250})>", value)
    if match:
        return match.group(1)
    value = value.strip()
    return value if value and " " not in value and len(value) <= 250 else ""
