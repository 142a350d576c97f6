"""The JSON API as a Flask application: our ``/api/v1`` and the suite-compatible routes.

:func:`create_api` builds it for one process and shares the SOAP side's
:class:`~soap_service.auth.Authenticator` (one set of caches).  Every answer is JSON;
every error is an RFC 9457 problem (``problems.py``), never Flask's HTML page nor a
traceback.  Auth (``ingest_api.authenticate``): an API key in ``X-Api-Key`` (the suite's header) or
``Authorization: Bearer``; when both are sent -- suite callers send an access token as
Bearer *and* the key -- the one that looks like one of our keys (``mc_``) is used.  Each
endpoint names the scope it needs (push, read, admin).  Bodies are read by ``body.py``
(size and depth limits), never by Flask's own parser.  The two ingest routes are served
without Flask in ``msgcenter serve`` (``ingest_api.IngestApp``), by the same functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from soap_service.auth import Authenticator, Principal
from soap_service.config import Settings
from soap_service.http import ingest_api, problems
from soap_service.store import Database

log = logging.getLogger(__name__)

JSON = "application/json"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ApiContext:
    """What the views need, one per process."""

    settings: Settings
    db: Database
    authenticator: Authenticator


def context() -> ApiContext:
    from flask import current_app

    ctx: ApiContext = current_app.extensions["msgcenter"]
    return ctx


def json_response(value: Any, status: int = 200,
                  headers: list[tuple[str, str]] | None = None) -> Response:
    from flask import json

    return Response(json.dumps(value), status=status, headers=headers or [], mimetype=JSON)


def problem_response(found: problems.Problem) -> Response:
    return Response(found.body(request.path), status=found.status,
                    headers=ingest_api.hop_safe(found.headers, request.environ),
                    mimetype=problems.CONTENT_TYPE)


# ---------------------------------------------------------------- auth


def require(scope: str) -> Principal:
    """Authenticate the request for ``scope``; raises the auth errors (401/403)."""
    principal = ingest_api.authenticate(context(), request.environ, scope)
    g.principal = principal
    return principal


def json_body() -> Any:
    """The request's JSON value, read with the configured limits (``body.py``)."""
    return ingest_api.read_json(context(), request.environ)


# ---------------------------------------------------------------- the application


def create_api(settings: Settings, db: Database, authenticator: Authenticator) -> Flask:
    """The Flask application serving ``/api/v1/...`` and ``/{ORG}/campaign/...``."""
    from soap_service.http import events_api, openapi, profiles_api, suite_api, webhooks_api

    app = Flask("soap_service.http.api")
    app.extensions["msgcenter"] = ApiContext(settings, db, authenticator)
    app.url_map.strict_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    app.register_blueprint(events_api.blueprint)
    app.register_blueprint(webhooks_api.blueprint)
    app.register_blueprint(profiles_api.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(suite_api.blueprint)

    @app.errorhandler(Exception)
    def on_error(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return problem_response(_http_problem(exc))
        return problem_response(problems.problem_for(exc))

    return app


def _http_problem(exc: HTTPException) -> problems.Problem:
    """Flask's own errors (unknown path, wrong method...) as problems."""
    code = exc.code or 500
    if code == 404:
        return problems.problem("not-found", "No such resource.")
    if code == 405:
        found = problems.problem("method-not-allowed", f"{request.method} is not allowed here.")
        allowed = exc.get_headers()
        found.headers.extend((k, v) for k, v in allowed if k.lower() == "allow")
        return found
    if code == 413:
        return problems.problem("body-too-large", "The request body is too large.")
    if code == 415:
        return problems.problem("unsupported-media-type", "The request body must be JSON.")
    if code < 500:
        return problems.problem("bad-request", exc.description or "Bad request.")
    return problems.problem_for(exc)
