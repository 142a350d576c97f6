"""``create_console``: the web console as a Flask application, served under ``/console/``
beside the JSON API by ``http/app.py``'s ``WebApp``.

Server-rendered HTML (Jinja2, autoescaped) that works without JavaScript; the guard
(zones, sessions, CSRF, rights, headers) is ``security.py``; the pages are the
``views_*.py`` modules.  Every error is a console page, never a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template, request
from werkzeug.exceptions import HTTPException

from soap_service.auth import Authenticator
from soap_service.config import Settings
from soap_service.errors import (
    AuthError,
    Conflict,
    MessageCenterError,
    NotFound,
    ServerError,
)
from soap_service.http.console import base, security
from soap_service.store import Database

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
PREFIX = "/console"


def create_console(settings: Settings, db: Database, authenticator: Authenticator) -> Flask:
    from soap_service.http.console import (  # noqa: F401 - the imports add the routes
        views_admin,
        views_auth,
        views_history,
        views_monitoring,
        views_templates,
    )

    app = Flask("soap_service.http.console", template_folder=str(HERE / "templates"),
                static_folder=str(HERE / "static"), static_url_path=f"{PREFIX}/static")
    secret = settings.secret.encode()
    app.config.update(
        SECRET_KEY=hmac.new(secret, b"console-cookie", hashlib.sha256).hexdigest(),
        SESSION_COOKIE_NAME="mc_console", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https:"),
        MAX_CONTENT_LENGTH=4 * 1024 * 1024, MAX_FORM_MEMORY_SIZE=1024 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["console"] = security.ConsoleContext(
        settings, db, authenticator, hmac.new(secret, b"console-csrf", hashlib.sha256).digest())
    app.url_map.strict_slashes = False
    app.register_blueprint(base.blueprint, url_prefix=PREFIX)
    app.jinja_env.globals.update(csrf_token=security.csrf_token, can=security.can,
                                 nav=base.nav, plid=base.plid, when=base.when)
    app.jinja_env.filters["number"] = base.number

    @app.before_request
    def guard() -> None:
        g.user = None
        if request.path.startswith(f"{PREFIX}/static/") or request.routing_exception:
            return  # static files; or no such page / method: answered as such (404, 405)
        security.check_zone()
        security.load_user()
        security.check_csrf()

    app.after_request(security.secure_headers)

    @app.errorhandler(Exception)
    def on_error(exc: Exception) -> Any:
        return error_page(exc)

    return app


def error_page(exc: Exception) -> tuple[str, int, dict[str, str]]:
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        text = exc.description if isinstance(exc, security.ConsoleHTTPError) else {
            404: "There is no such page.", 405: "This page cannot be used that way.",
            413: "What you sent is too large.",
        }.get(code, exc.description or "The request could not be served.")
    elif isinstance(exc, NotFound):
        code, text = 404, exc.message
    elif isinstance(exc, AuthError):
        code, text = 403, exc.message
    elif isinstance(exc, Conflict):
        code, text = 409, exc.message
    elif isinstance(exc, MessageCenterError) and not isinstance(exc, ServerError):
        code, text = 400, exc.message
    else:
        log.exception("console.error path=%s", request.path)
        code, text = 500, "Something went wrong on our side; it has been logged."
    titles = {400: "Cannot do that", 401: "Log in", 403: "Not allowed", 404: "Not found",
              405: "Not allowed", 409: "Cannot do that now", 413: "Too large",
              429: "Too many attempts"}
    headers = exc.extra_headers if isinstance(exc, security.ConsoleHTTPError) else {}
    return render_template("error.html", code=code, title=titles.get(code, "Error"),
                           text=text), code, headers
