"""RFC 9457 problem details: every error of the JSON API, with a stable ``type``.

Each kind of problem has a name, an HTTP status and a title; its ``type`` is the URN
``urn:msgcenter:problem:<name>`` -- constant across versions and deployments, so callers
can match on it (``docs/rest.md`` lists them).  :func:`problem_for` maps our exception
tree (and the body errors of ``body.py``) to a problem; this is the one place where the
JSON API decides status codes.  A Server error's detail is never shown: the answer
carries an ``errorId`` that is also in the log line.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from soap_service import errors
from soap_service.http import body

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:msgcenter:problem:"


@dataclass(frozen=True)
class ProblemType:
    name: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.name


_TYPES = [
    ProblemType("invalid-json", 400, "The request body is not JSON"),
    ProblemType("json-too-deep", 400, "The JSON body is nested too deeply"),
    ProblemType("bad-request", 400, "The request is malformed"),
    ProblemType("unauthorized", 401, "Missing, unknown or revoked API key"),
    ProblemType("insufficient-scope", 403, "The API key lacks the scope this call needs"),
    ProblemType("unverified-callback", 403, "The callback's signature does not verify"),
    ProblemType("zone-denied", 403, "The caller's address is outside every security zone"),
    ProblemType("not-found", 404, "No such resource"),
    ProblemType("method-not-allowed", 405, "Method not allowed on this resource"),
    ProblemType("idempotency-conflict", 409,
                "The idempotency key was already used for a different event"),
    ProblemType("invalid-state", 409, "The event is not in a state that allows this"),
    ProblemType("conflict", 409, "The request conflicts with the current state"),
    ProblemType("body-too-large", 413, "The request body is too large"),
    ProblemType("unsupported-media-type", 415, "The request body must be JSON"),
    ProblemType("validation-failed", 422, "The request is not acceptable"),
    ProblemType("too-many-events", 422, "Too many events in one request"),
    ProblemType("internal-error", 500, "Internal error"),
    ProblemType("unavailable", 503, "A dependency (the database) is unavailable"),
]
TYPES: dict[str, ProblemType] = {t.name: t for t in _TYPES}


class UnsupportedMediaType(errors.ClientError):
    """A body that does not say it is JSON."""


@dataclass
class Problem:
    """One problem answer; ``extra`` holds extension members (``index``, ``errors``...)."""

    type: ProblemType
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.type.status

    def document(self, instance: str = "") -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type.uri, "title": self.type.title,
                               "status": self.status}
        if self.detail:
            doc["detail"] = self.detail
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc

    def body(self, instance: str = "") -> bytes:
        return json.dumps(self.document(instance), ensure_ascii=False).encode("utf-8")


def problem(name: str, detail: str = "", **extra: Any) -> Problem:
    return Problem(TYPES[name], detail, dict(extra))


_CLIENT_MAP: list[tuple[type[errors.ClientError], str]] = [
    (body.BodyTooLarge, "body-too-large"),
    (body.JsonTooDeep, "json-too-deep"),
    (body.InvalidJson, "invalid-json"),
    (UnsupportedMediaType, "unsupported-media-type"),
    (errors.TooManyEvents, "too-many-events"),
    (errors.ZoneDenied, "zone-denied"),
    (errors.Forbidden, "insufficient-scope"),
    (errors.AuthError, "unauthorized"),
    (errors.NotFound, "not-found"),
    (errors.InvalidState, "invalid-state"),
    (errors.Conflict, "conflict"),
    (errors.ValidationFailed, "validation-failed"),
]
_IDEMPOTENCY = "idempotency key"


def problem_for(exc: BaseException) -> Problem:
    """The problem answering ``exc``; unexpected exceptions are logged with an error id."""
    if isinstance(exc, errors.ClientError):
        name = next((n for cls, n in _CLIENT_MAP if isinstance(exc, cls)), "bad-request")
        if name == "conflict" and _IDEMPOTENCY in exc.message:
            name = "idempotency-conflict"
        found = problem(name, _client_detail(exc))
        index = getattr(exc, "index", None)
        if isinstance(index, int):
            found.extra["index"] = index
        if name == "unauthorized":
            found.headers.append(("WWW-Authenticate", 'Bearer realm="msgcenter"'))
        if name == "body-too-large":
            found.headers.append(("Connection", "close"))
        return found
    error_id = uuid.uuid4().hex[:12]
    if isinstance(exc, errors.Unavailable):
        log.warning("api.unavailable error_id=%s", error_id)
        found = problem("unavailable", "The database is unavailable; try again later.",
                        errorId=error_id)
        found.headers.append(("Retry-After", "5"))
        return found
    log.error("api.error error_id=%s", error_id, exc_info=exc)
    return problem("internal-error", f"Internal error {error_id}.", errorId=error_id)


def _client_detail(exc: errors.ClientError) -> str:
    """The caller's message; for auth failures a plain one (never which part was wrong
    beyond what a caller may know: missing, unknown or revoked key)."""
    if isinstance(exc, errors.InvalidCredentials):
        return exc.detail[:1].upper() + exc.detail[1:] + "." if exc.detail else "Invalid API key."
    if isinstance(exc, errors.ZoneDenied):
        return exc.detail or exc.message
    return exc.message
