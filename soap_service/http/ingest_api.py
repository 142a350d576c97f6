"""The two JSON ingest endpoints, written without the framework: they are a hot path.

``POST /api/v1/events`` (one event, or a batch in one transaction) and the suite's ``POST
/{ORGANIZATION}/campaign/{transactionalAPI}/{eventID}`` are served by :class:`IngestApp`
straight from the WSGI environ -- Flask's request and response machinery costs ~50 µs a
request, as much as the rest of a one-event push (measured: ``docs/http.md``).  Every
other JSON route goes on to the Flask application.  The Flask views of these two routes
call the same functions (:func:`push_events`, :func:`push_suite`), so there is one
implementation: auth (``X-Api-Key`` or ``Authorization: Bearer``, scope ``push``), body
limits, the JSON -> event conversion, and ``ingest`` -- the same core as SOAP.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from soap_service import ingest
from soap_service.auth import API_KEY_PREFIX, Principal
from soap_service.ctxdata import NOT_XML
from soap_service.errors import ClientError, InvalidBatchItem, TooManyEvents, ValidationFailed
from soap_service.http import body, problems
from soap_service.http.jsonevent import build_event, queue_of
from soap_service.models import WISHED_CHANNEL_OF, WISHED_CHANNELS, Channel

JSON = "application/json"
EVENTS_PATH = "/api/v1/events"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # a JSON value
    headers: tuple[tuple[str, str], ...] = ()


def _header(environ: dict[str, Any], name: str) -> str:
    return str(environ.get("HTTP_" + name.upper().replace("-", "_"), "") or "")


def pick_api_key(x_api_key: str, authorization: str) -> str:
    """``X-Api-Key`` or ``Authorization: Bearer``; when both are sent (suite callers send
    an access token as Bearer *and* the key), the one that is one of ours (``mc_``)."""
    candidates = [x_api_key.strip()]
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        candidates.append(token.strip())
    present = [c for c in candidates if c]
    ours = [c for c in present if c.startswith(API_KEY_PREFIX)]
    return (ours or present or [""])[0]


def authenticate(ctx: Any, environ: dict[str, Any], scope: str) -> Principal:
    """The caller's key checked for ``scope`` (``ctx`` is the API's context)."""
    key = pick_api_key(_header(environ, "X-Api-Key"), _header(environ, "Authorization"))
    principal: Principal = ctx.authenticator.authenticate_key(
        key, str(environ.get("REMOTE_ADDR", "") or ""),
        _header(environ, "X-Forwarded-For") or None, scope)
    return principal


def read_json(ctx: Any, environ: dict[str, Any]) -> Any:
    """The body as JSON, within the configured size and depth."""
    content_type = str(environ.get("CONTENT_TYPE", "") or "").split(";", 1)[0].strip().lower()
    if content_type and content_type != JSON and not content_type.endswith("+json"):
        raise problems.UnsupportedMediaType(
            f"Content-Type {content_type[:60]!r} is not JSON; send application/json.")
    raw = body.read_body(environ, ctx.settings.max_json_bytes)
    return body.parse_json(raw, ctx.settings.max_json_depth)


def as_field(exc: ClientError) -> ClientError:
    """ingest speaks SOAP ("attribute 'email'", "element <ctx>"); JSON callers send
    fields.  Same exception class and index, JSON wording."""
    exc.message = (exc.message.replace("attribute '", "field '")
                   .replace("element <ctx>", "field 'ctx'"))
    return exc


def printable(value: str, what: str) -> str:
    """``value`` unless it holds a control character (a NUL breaks PostgreSQL queries;
    none belongs in a header or a query parameter)."""
    if NOT_XML.search(value) or "\x7f" in value:
        raise ValidationFailed(f"{what} holds a control character")
    return value


def _idempotency_key(environ: dict[str, Any]) -> str | None:
    key = _header(environ, "Idempotency-Key").strip()
    return printable(key, "the Idempotency-Key header") or None


# ---------------------------------------------------------------- POST /api/v1/events


def push_events(ctx: Any, environ: dict[str, Any]) -> Answer:
    authenticate(ctx, environ, "push")
    data = read_json(ctx, environ)
    if not isinstance(data, dict):
        raise ValidationFailed('the body must be a JSON object: an event, or {"events": [...]}')
    if "events" in data:
        return _push_batch(ctx, environ, data)
    header_key = _idempotency_key(environ)
    event = build_event(data, header_key=header_key)
    try:
        plid = ingest.store_event(ctx.db, ctx.settings, event.wire, event.queue,
                                  idempotency_key=header_key)
    except ClientError as exc:
        raise as_field(exc) from exc
    href = f"{EVENTS_PATH}/{plid}"
    return Answer(201, {"plId": str(plid), "status": "pending", "href": href},
                  (("Location", href),))


def _push_batch(ctx: Any, environ: dict[str, Any], data: dict[str, Any]) -> Answer:
    items = data["events"]
    if not isinstance(items, list):
        raise ValidationFailed("field 'events' must be an array of events")
    if not items:
        raise ValidationFailed("field 'events' is empty")
    limit = ctx.settings.max_events_per_call
    if len(items) > limit:
        raise TooManyEvents(f"too many events in one request: {len(items)} (at most {limit})")
    if _idempotency_key(environ):
        raise ValidationFailed("Idempotency-Key applies to one event: give each event of a "
                               "batch its own 'idempotencyKey' field")
    unknown = set(data) - {"events", "queue"}
    if unknown:
        raise ValidationFailed(f"unknown batch field(s): {', '.join(sorted(unknown))[:200]} "
                               "(a batch has 'events' and an optional 'queue')")
    queue = queue_of(data.get("queue"))
    built = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict) and "queue" in item:
                raise ValidationFailed("set 'queue' on the batch, not on its events")
            built.append(build_event(item, default_queue=queue))
        except ValidationFailed as exc:
            raise InvalidBatchItem(index, f"events[{index}]: {exc.message}") from exc
    try:
        stored = ingest.store_events(ctx.db, ctx.settings, [b.wire for b in built], queue)
    except ClientError as exc:
        position = getattr(exc, "index", None)
        if isinstance(position, int):  # ingest numbers from 1 ("event #3"); JSON from 0
            exc.message = f"events[{position}]: " + exc.message.split(": ", 1)[-1]
        raise as_field(exc) from exc
    return Answer(201, {"events": [{"plId": str(plid), "externalId": external_id}
                                   for plid, external_id in stored]})


# ---------------------------------------------------------------- the suite's POST


def suite_route(path: str) -> tuple[str, str, str] | None:
    """``/{ORGANIZATION}/campaign/{transactionalAPI}/{eventID}`` -> its three names."""
    parts = path.split("/")
    if len(parts) == 5 and parts[2] == "campaign" and all(parts[i] for i in (1, 3, 4)):
        return parts[1], parts[3], parts[4]
    return None


def _wished_channel(data: dict[str, Any]) -> str:
    """As given, else SMS when only ``mobilePhone`` is there, else email."""
    given = data.get("wishedChannel")
    if given is not None:
        return str(given)
    if data.get("mobilePhone") and not data.get("email"):
        return str(WISHED_CHANNEL_OF[Channel.SMS])
    return str(WISHED_CHANNEL_OF[Channel.EMAIL])


def suite_object(*, public_url: str, plid: int, ctx: Any, email: str | None,
                 mobile_phone: str | None, scheduled: str | None, expiration: str | None,
                 api: str, event_id: str, status: str, channel: Channel) -> dict[str, Any]:
    """SPEC §8's object: PKey, ctx, email, scheduled, expiration, href, serverUrl, status,
    type (the channel); ``mobilePhone`` too when the event has one (it is echoed)."""
    out: dict[str, Any] = {
        "PKey": str(plid), "ctx": ctx, "email": email, "scheduled": scheduled,
        "expiration": expiration, "href": f"{api}/{event_id}/{plid}",
        "serverUrl": public_url, "status": status, "type": channel.value,
    }
    if mobile_phone:
        out["mobilePhone"] = mobile_phone
    return out


def push_suite(ctx: Any, environ: dict[str, Any], organization: str, api: str,
               event_id: str) -> Answer:
    authenticate(ctx, environ, "push")
    data = read_json(ctx, environ)
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object (the event)")
    if "queue" in data:
        raise ValidationFailed("field 'queue' is not part of this API (events are real-time)")
    wished = _wished_channel(data)
    header_key = _idempotency_key(environ)
    event = build_event(data, extra={"type": ctx.settings.event_type_for(event_id),
                                     "wishedChannel": wished}, header_key=header_key)
    try:
        plid = ingest.store_event(ctx.db, ctx.settings, event.wire, event.queue,
                                  idempotency_key=header_key)
    except ClientError as exc:
        raise as_field(exc) from exc
    found = suite_object(
        public_url=ctx.settings.public_url, plid=plid, ctx=json.loads(event.ctx_json),
        email=data.get("email"), mobile_phone=data.get("mobilePhone"),
        scheduled=data.get("scheduled"), expiration=data.get("expiration"), api=api,
        event_id=event_id, status="pending",
        channel=WISHED_CHANNELS.get(int(wished), Channel.EMAIL))
    return Answer(201, found, (("Location", f"/{organization}/campaign/{found['href']}"),))


# ---------------------------------------------------------------- WSGI


StartResponse = Callable[..., Any]


class IngestApp:
    """Serves the two ingest routes itself and hands every other request to ``rest``."""

    def __init__(self, ctx: Any, rest: Callable[[dict[str, Any], StartResponse], Any]) -> None:
        self.ctx = ctx
        self.rest = rest

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        if str(environ.get("REQUEST_METHOD", "")).upper() != "POST":
            return self.rest(environ, start_response)
        path = str(environ.get("PATH_INFO", "") or "")
        try:
            if path == EVENTS_PATH:
                answer = push_events(self.ctx, environ)
            elif (names := suite_route(path)) is not None:
                answer = push_suite(self.ctx, environ, *names)
            else:
                return self.rest(environ, start_response)
        except Exception as exc:  # every error is a problem, never a traceback
            return self._problem(problems.problem_for(exc), path, environ, start_response)
        payload = json.dumps(answer.body, separators=(",", ":")).encode()
        start_response(status_line(answer.status), [
            ("Content-Type", JSON), ("Content-Length", str(len(payload))), *answer.headers])
        return [payload]

    @staticmethod
    def _problem(found: problems.Problem, path: str, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        payload = found.body(path)
        start_response(status_line(found.status), [
            ("Content-Type", problems.CONTENT_TYPE), ("Content-Length", str(len(payload))),
            *hop_safe(found.headers, environ)])
        return [payload]


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def hop_safe(headers: Iterable[tuple[str, str]], environ: dict[str, Any]
             ) -> list[tuple[str, str]]:
    """Without ``Connection`` under wsgiref (the tests' in-process server), which refuses
    hop-by-hop headers; gunicorn sends it."""
    if str(environ.get("SERVER_SOFTWARE", "")).startswith("WSGIServer"):
        return [(k, v) for k, v in headers if k.lower() != "connection"]
    return list(headers)
