"""The console's guard: security zones, logins, sessions, rights, CSRF, headers.

- **Zones** (``console_zones``, on by default): the caller's address (X-Forwarded-For
  read only from zones flagged proxy, as for SOAP) must be in a security zone that allows
  login/password; anyone else gets a 403 page, the login page included.
- **Logins** check the operator's scrypt password (``Authenticator.check_password``).
  Failed logins are audit-log rows; an account with ``console_login_max_failures`` of
  them in ``console_login_window`` seconds, or an address with
  ``console_login_ip_max_failures``, is refused (429) before any password is checked.
- **Sessions** are rows of the ``sessions`` table (a random ``console_...`` token, stored
  as its sha256 -- never usable as a SOAP session token, which starts ``___``) whose
  deadline moves with each request: idle for ``console_idle_timeout`` seconds, it is
  gone, and ``console_session_max`` seconds after login it ends anyway.  The browser
  holds the token in Flask's signed cookie ``mc_console`` (HttpOnly,
  SameSite=Strict, Secure behind https, path ``/console``); logging out deletes the row.
- **CSRF**: every form carries ``csrf``, an HMAC of the session token (or, before login,
  of a random value kept in the cookie); a POST without the right one changes nothing (400).
- **Rights**: every operator reads; ``mc`` edits templates and their seeds, proofs and
  publishes; ``admin`` does everything (retry / cancel of events, event types, follow-up
  rules, quarantine, thresholds).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import current_app, g, redirect, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from soap_service import audit, clock
from soap_service.auth import Authenticator, Principal, sha256_hex
from soap_service.config import Settings
from soap_service.errors import InvalidCredentials
from soap_service.store import Database
from soap_service.store import auth as auth_store

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
TOKEN_PREFIX = "console_"  # noqa: S105 - a prefix that marks console tokens, not a secret
TOUCH_EVERY = 60  # seconds: how stale the stored idle deadline may be before it moves


@dataclass(frozen=True)
class ConsoleContext:
    settings: Settings
    db: Database
    authenticator: Authenticator
    secret: bytes  # for CSRF tokens (the cookie is signed with Flask's SECRET_KEY)


class ConsoleHTTPError(HTTPException):
    """An HTTP error shown as a console page (``code`` and a sentence)."""

    def __init__(self, code: int, description: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.extra_headers = headers or {}


def context() -> ConsoleContext:
    ctx: ConsoleContext = current_app.extensions["console"]
    return ctx


def client_ip() -> str:
    return context().authenticator.client_ip(request.remote_addr or "",
                                              request.headers.get("X-Forwarded-For"))


# ---------------------------------------------------------------- zones


def check_zone() -> None:
    ctx = context()
    if not ctx.settings.console_zones:
        return
    zone = ctx.authenticator.zone_for(request.remote_addr or "",
                                      request.headers.get("X-Forwarded-For"))
    if zone is None or not zone.allow_user_password:
        log.info("console.zone_denied ip=%s", client_ip())
        raise ConsoleHTTPError(403, "The console cannot be reached from your network "
                                    "(no security zone allows it).")


# ---------------------------------------------------------------- sessions


def load_user() -> None:
    """``g.user``: the logged-in operator as a Principal, or None."""
    g.user = None
    token = session.get("sid")
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return
    ctx = context()
    token_hash = sha256_hex(token)
    found = auth_store.find_session_times(ctx.db, token_hash)
    now = clock.utcnow()
    too_old = found is not None and \
        found[1] <= now - timedelta(seconds=ctx.settings.console_session_max)
    if found is None or found[2] <= now or too_old:
        if too_old:
            auth_store.delete_session(ctx.db, token_hash)
        session.pop("sid", None)
        g.session_expired = True
        return
    op, _, deadline = found
    g.user = Principal(op.id, op.login, op.rights, "console")
    idle = ctx.settings.console_idle_timeout
    if deadline - now < timedelta(seconds=max(idle - TOUCH_EVERY, 0)):
        auth_store.touch_session(ctx.db, token_hash, now + timedelta(seconds=idle))


def user() -> Principal:
    found: Principal | None = g.get("user")
    if found is None:  # views are guarded by require(); this is a programming error
        raise ConsoleHTTPError(401, "Log in first.")
    return found


def login_blocked(login: str) -> bool:
    ctx = context()
    window = ctx.settings.console_login_window
    return (audit.failures_since(ctx.db, window, login=login)
            >= ctx.settings.console_login_max_failures
            or audit.failures_since(ctx.db, window, ip=client_ip())
            >= ctx.settings.console_login_ip_max_failures)


def log_in(login: str, password: str) -> Principal:
    """Check the password and open a session; ``InvalidCredentials`` otherwise (audited)."""
    ctx = context()
    ip = client_ip()
    try:
        op = ctx.authenticator.check_password(login, password)
    except InvalidCredentials:
        audit.record(ctx.db, login, audit.LOGIN_FAILED, ip=ip)
        raise
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    deadline = clock.utcnow() + timedelta(seconds=ctx.settings.console_idle_timeout)
    auth_store.add_session(ctx.db, sha256_hex(token), op.id, deadline)
    session.clear()
    session["sid"] = token
    audit.record(ctx.db, op.login, "login.ok", ip=ip)
    return Principal(op.id, op.login, op.rights, "console")


def log_out() -> None:
    token = session.get("sid")
    current = g.get("user")
    if isinstance(token, str):
        auth_store.delete_session(context().db, sha256_hex(token))
    if current is not None:
        audit.record(context().db, current.login, "logout", ip=client_ip())
    session.clear()


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path of this site, never another site."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/console/") \
                and "\\" not in target:
            return target
    return url_for("console.home")


# ---------------------------------------------------------------- rights


def require(right: str | None = None) -> Callable[[F], F]:
    """Logged in (else to the login page), and holding ``right`` (else 403)."""
    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            current = g.get("user")
            if current is None:
                extra: dict[str, Any] = {"expired": 1} if g.get("session_expired") else {}
                return redirect(url_for("console.login", next=request.full_path.rstrip("?"),
                                        **extra))
            if right is not None and not current.has_right(right):
                log.info("console.forbidden login=%s right=%s", current.login, right)
                raise ConsoleHTTPError(403, f"This needs the right {right!r}; you have "
                                            f"{', '.join(sorted(current.rights)) or 'none'}.")
            return view(*args, **kwargs)
        return guarded  # type: ignore[return-value]
    return decorate


def can(right: str) -> bool:
    current = g.get("user")
    return current is not None and current.has_right(right)


def record(action: str, target: str = "", detail: str = "") -> None:
    """Write an audit entry for the logged-in operator."""
    audit.record(context().db, user().login, action, target, detail, ip=client_ip())


# ---------------------------------------------------------------- CSRF


def csrf_token() -> str:
    base = session.get("sid")
    if not isinstance(base, str):
        base = session.get("pre")
        if not isinstance(base, str):
            base = secrets.token_urlsafe(16)
            session["pre"] = base
    return hmac.new(context().secret, ("csrf\0" + base).encode(), hashlib.sha256).hexdigest()


def check_csrf() -> None:
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    sent = request.form.get("csrf", "")
    base = session.get("sid") or session.get("pre")
    if not isinstance(base, str) or not hmac.compare_digest(sent, csrf_token()):
        log.info("console.csrf_refused path=%s", request.path)
        raise ConsoleHTTPError(400, "This form has expired or was not sent by the console; "
                                    "nothing was changed. Reload the page and try again.")


# ---------------------------------------------------------------- headers

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
# the rendered template: nothing runs, nothing is fetched but images, no form is sent
PREVIEW_CSP = ("sandbox; default-src 'none'; img-src data: https: http:; "
               "style-src 'unsafe-inline'; font-src data:; form-action 'none'; "
               "frame-ancestors 'self'; base-uri 'none'")


def secure_headers(response: WerkzeugResponse) -> WerkzeugResponse:
    preview = bool(g.get("preview_frame"))
    response.headers["Content-Security-Policy"] = PREVIEW_CSP if preview else CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN" if preview else "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response
