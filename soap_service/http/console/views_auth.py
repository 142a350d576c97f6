"""Logging in and out, the start page and the audit log."""

from __future__ import annotations

import logging
from typing import Any

from flask import g, redirect, request, url_for

from soap_service import audit
from soap_service.errors import InvalidCredentials
from soap_service.http.console import security
from soap_service.http.console.base import arg, blueprint, form, page

AUDIT_PAGE = 50
log = logging.getLogger(__name__)


@blueprint.get("/")
@security.require()
def home() -> Any:
    return redirect(url_for("console.browse"))


@blueprint.get("/login")
def login() -> Any:
    if g.user is not None:
        return redirect(security.safe_next(arg("next", 500)))
    expired = bool(g.get("session_expired")) or arg("expired", 1) == "1"
    return page("login.html", next=arg("next", 500), login_value="", expired=expired)


@blueprint.post("/login")
def login_post() -> Any:
    login_value = form("login", limit=128).strip()
    password = form("password", limit=1024)
    target = form("next", limit=500)
    if security.login_blocked(login_value):
        # logged, not audited: a blocked attacker must not be able to grow a table
        log.info("console.login_blocked ip=%s", security.client_ip())
        window = security.context().settings.console_login_window
        raise security.ConsoleHTTPError(
            429, "Too many failed logins for this account or from your address. "
                 "Wait a few minutes, then try again.", {"Retry-After": str(window)})
    if not login_value or not password:
        return page("login.html", 400, next=target, login_value=login_value,
                    error="Enter your login and your password.")
    try:
        security.log_in(login_value, password)
    except InvalidCredentials:
        return page("login.html", 401, next=target, login_value=login_value,
                    error="Wrong login or password.")
    return redirect(security.safe_next(target), code=303)


@blueprint.post("/logout")
def logout() -> Any:
    security.log_out()
    return redirect(url_for("console.login"), code=303)


@blueprint.get("/audit")
@security.require()
def audit_log() -> Any:
    before = arg("before")
    entries = audit.list_entries(
        security.context().db, limit=AUDIT_PAGE + 1,
        before_id=int(before) if before.isdecimal() else None,
        actor=arg("actor", 128), action=arg("action", 64))
    more = len(entries) > AUDIT_PAGE
    entries = entries[:AUDIT_PAGE]
    query: dict[str, Any] = {k: v for k, v in request.args.items()
                             if k in {"actor", "action"} and v}
    next_url = url_for("console.audit_log", before=entries[-1].id, **query) if more else None
    return page("audit.html", entries=entries, next_url=next_url, actor=arg("actor", 128),
                action=arg("action", 64))
