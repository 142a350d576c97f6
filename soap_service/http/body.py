"""Request bodies with limits: read (size checked before and while reading), drain, parse.

Shared by every edge that takes a body (SOAP and JSON).  A declared ``Content-Length``
over the limit is refused before reading; a chunked body is read up to the limit + 1
byte, never silently truncated.  An oversized body is read and discarded up to
:data:`DRAIN_CAP` before the answer, so clients that send the whole body before reading
(urllib, many SOAP and HTTP stacks) see the error instead of a reset connection; the
answer then carries ``Connection: close``.  JSON is parsed by the standard library and
refused when nested deeper than a limit (the C parser would otherwise recurse until
``RecursionError``).
"""

from __future__ import annotations

import json
from typing import Any

from soap_service.errors import ClientError, ValidationFailed
from soap_service.xmlsafe import BodyTooLarge  # the one "too large" error, SOAP's and ours

__all__ = ["BodyTooLarge", "InvalidJson", "JsonTooDeep", "parse_json", "read_body"]

DRAIN_CAP = 64 * 1024 * 1024  # bytes of an oversized body read and discarded before answering
_READ_CHUNK = 64 * 1024


class InvalidJson(ClientError):
    """The body is not JSON (or not UTF-8)."""


class JsonTooDeep(ClientError):
    """The JSON body nests objects and arrays deeper than allowed."""


def _drain(stream: Any, budget: int) -> None:
    while budget > 0:
        chunk = stream.read(min(_READ_CHUNK, budget))
        if not chunk:
            return
        budget -= len(chunk)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole body, or raise :class:`BodyTooLarge` after draining up to the cap."""
    stream = environ["wsgi.input"]
    error = BodyTooLarge("Request body too large.",
                         f"The request body exceeds the limit of {limit} bytes.")
    declared = str(environ.get("CONTENT_LENGTH", "") or "").strip()
    if declared:
        try:
            length = int(declared)
        except ValueError as exc:
            raise ClientError("Invalid Content-Length header.") from exc
        if length > limit:
            _drain(stream, min(length, DRAIN_CAP))
            raise error
        return stream.read(length) if length > 0 else b""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if not chunked and not environ.get("wsgi.input_terminated"):
        return b""  # no length, not chunked: a server that cannot tell us where it ends
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            _drain(stream, DRAIN_CAP - total)
            raise error
        parts.append(chunk)


def parse_json(body: bytes, max_depth: int) -> Any:
    """UTF-8 JSON text -> value; :class:`InvalidJson` or :class:`JsonTooDeep`.

    Duplicate keys keep the last value (as every JSON parser does); ``NaN`` and
    ``Infinity`` are refused (not JSON).  The depth walk is recursive but bounded by
    ``max_depth``, which configuration keeps far below the interpreter's recursion limit.
    """
    if not body.strip():
        raise InvalidJson("The request body is empty; a JSON object is expected.")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidJson("The request body is not UTF-8.", str(exc)[:200]) from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels.") from exc
    except ValueError as exc:  # JSONDecodeError, and our constant refusal
        raise InvalidJson("The request body is not valid JSON.", str(exc)[:200]) from exc
    if json_depth(value, max_depth) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels.")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def json_depth(value: Any, stop_above: int, _depth: int = 0) -> int:
    """Nesting depth of objects and arrays (a scalar is 0, ``{}`` is 1); the walk stops
    as soon as ``stop_above`` is passed, so it never goes deeper than the limit + 1."""
    if type(value) is dict:
        children: Any = value.values()
    elif type(value) is list:
        children = value
    else:
        return _depth
    deepest = _depth + 1
    if deepest > stop_above:
        return deepest
    for child in children:
        if type(child) is dict or type(child) is list:
            found = json_depth(child, stop_above, _depth + 1)
            if found > deepest:
                deepest = found
                if deepest > stop_above:
                    return deepest
    return deepest


def require_object(value: Any, what: str = "The request body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed(f"{what} must be a JSON object.")
    return value
