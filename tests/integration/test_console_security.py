"""The console's guard, on SQLite and PostgreSQL: logins, sessions, rights, CSRF, zones,
the login rate limit, the audit log and the security headers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import run_cli
from console_support import (
    PASSWORD,
    Browser,
    console_settings,
    logged_in,
    populate,
)
from sqlalchemy import select, update

from soap_service import audit, catalog, clock
from soap_service.auth import Authenticator
from soap_service.config import Settings
from soap_service.errors import Forbidden
from soap_service.http.app import WebApp
from soap_service.store import Database
from soap_service.tables import sessions

PAGES = ["/console/browse", "/console/templates", "/console/templates/order",
         "/console/templates/order/preview", "/console/history", "/console/monitoring",
         "/console/eventtypes", "/console/followups", "/console/quarantine",
         "/console/connectors", "/console/audit"]


@pytest.fixture
def app(db: Database, settings: Settings) -> WebApp:
    populate(db)
    return WebApp(console_settings(settings), db)


def test_logged_out_visitors_are_sent_to_the_login_page(app: WebApp) -> None:
    """Every page redirects a visitor without a session to the login page, keeping
    where they wanted to go; a POST changes nothing."""
    browser = Browser(app)
    for path in PAGES:
        reply = browser.get(path)
        assert reply.status == 302, path
        assert reply.location.startswith("/console/login?next=" + path)
    login = browser.get("/console/login")
    reply = browser.post("/console/templates/order/publish", {"csrf": login.csrf()})
    assert reply.status == 302 and reply.location.startswith("/console/login")
    assert catalog.get_template(app.db, "order").latest is None
    assert browser.get("/console/nope").status == 404
    assert browser._open("PUT", "/console/login").status == 405


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(app: WebApp) -> None:
    """A good password opens a session in an HttpOnly, SameSite=Strict cookie scoped to
    /console; after logout the same cookie no longer opens any page."""
    browser = Browser(app)
    page = browser.get("/console/login")
    assert page.one("//label[@for='login']") is not None
    reply = browser.post("/console/login", {"csrf": page.csrf(), "login": "ann",
                                            "password": PASSWORD,
                                            "next": "/console/history"})
    assert reply.status == 303 and reply.location == "/console/history"
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    home = browser.get("/console/history")
    assert home.status == 200
    assert home.text("//form[@class='who']/span").startswith("ann")
    saved = browser.client.get_cookie("mc_console", path="/console")
    assert saved is not None
    assert browser.post("/console/logout", {"csrf": home.csrf()}).status == 303
    thief = Browser(app)
    thief.client.set_cookie("mc_console", saved.value, path="/console")
    assert thief.get("/console/history").status == 302
    actions = [e.action for e in audit.list_entries(app.db)]
    assert actions[:2] == ["logout", "login.ok"]


def test_next_never_leaves_the_console(app: WebApp) -> None:
    """After login, ``next`` pointing elsewhere (another site) leads to the console."""
    browser = Browser(app)
    page = browser.get("/console/login")
    reply = browser.post("/console/login", {"csrf": page.csrf(), "login": "ann",
                                            "password": PASSWORD,
                                            "next": "https://evil.example/console/"})
    assert reply.status == 303 and reply.location == "/console/"


def test_wrong_password_is_refused_and_audited(app: WebApp) -> None:
    """A wrong password answers 401 with the form again (login kept, password not) and
    writes a login.failed row naming the login and the address."""
    browser = Browser(app)
    reply = browser.login("ann", "nope")
    assert reply.status == 401
    assert reply.text("//*[@id='login-error']") == "Wrong login or password."
    assert reply.one("//input[@id='login']").value == "ann"
    assert not reply.one("//input[@id='password']").value
    entry = audit.list_entries(app.db)[0]
    assert (entry.action, entry.actor, entry.ip) == ("login.failed", "ann", "127.0.0.1")
    assert browser.get("/console/history").status == 302


def test_idle_session_ends(app: WebApp) -> None:
    """A session idle past its deadline is gone: the next page asks to log in again and
    says why."""
    browser = logged_in(app, "admin")
    with app.db.begin() as conn:
        conn.execute(update(sessions).values(expires_at=clock.utcnow() - timedelta(seconds=1)))
    reply = browser.get("/console/history")
    assert reply.status == 302
    page = browser.get(reply.location)
    assert "Your session has ended" in " ".join(page.flashes())


def test_a_session_ends_after_its_maximum_life_even_when_active(app: WebApp) -> None:
    """A login older than ``console_session_max`` is over, however recent its activity."""
    browser = logged_in(app, "admin")
    assert browser.get("/console/history").status == 200
    with app.db.begin() as conn:
        conn.execute(update(sessions).values(
            created_at=clock.utcnow() - timedelta(seconds=app.settings.console_session_max + 1)))
    assert browser.get("/console/history").status == 302
    with app.db.connect() as conn:
        assert conn.execute(select(sessions.c.id)).first() is None


def test_activity_moves_the_idle_deadline(db: Database, settings: Settings) -> None:
    """Each request pushes the deadline to now + idle timeout (when it has grown stale)."""
    populate(db)
    app = WebApp(console_settings(settings, console_idle_timeout=3600), db)
    browser = logged_in(app, "viewer")
    soon = clock.utcnow() + timedelta(seconds=100)
    with db.begin() as conn:
        conn.execute(update(sessions).values(expires_at=soon))
    assert browser.get("/console/browse").status == 200
    with db.connect() as conn:
        deadline = conn.execute(select(sessions.c.expires_at)).scalar_one()
    assert deadline > soon + timedelta(seconds=3000)


def test_login_rate_limit_per_account(db: Database, settings: Settings) -> None:
    """After the allowed failures for one account, even its right password is refused
    (429) without being checked; other accounts still log in."""
    populate(db)
    app = WebApp(console_settings(settings, console_login_max_failures=3), db)
    browser = Browser(app)
    for _ in range(3):
        assert browser.login("ann", "wrong").status == 401
    blocked = browser.login("ann")
    assert blocked.status == 429 and blocked.headers["Retry-After"] == "900"
    assert browser.get("/console/history").status == 302
    assert browser.login("mia").status == 303
    assert [e.action for e in audit.list_entries(db, actor="ann")] == ["login.failed"] * 3


def test_login_rate_limit_per_address(db: Database, settings: Settings) -> None:
    """Failures spread over many logins from one address block that address."""
    populate(db)
    app = WebApp(console_settings(settings, console_login_ip_max_failures=4), db)
    browser = Browser(app)
    for n in range(4):
        assert browser.login(f"nobody{n}", "x").status == 401
    assert browser.login("ann").status == 429
    assert Browser(app, ip="127.0.0.2").login("ann").status == 303


def test_security_zones_apply_and_can_be_switched_off(db: Database, settings: Settings
                                                      ) -> None:
    """Outside every zone the console (login page included) is refused; with
    console_zones off it answers."""
    populate(db)
    outside = Browser(WebApp(console_settings(settings), db), ip="192.0.2.7")
    reply = outside.get("/console/login")
    assert reply.status == 403
    assert "security zone" in reply.text("//p[@role='alert']")
    open_app = WebApp(console_settings(settings, console_zones=False), db)
    assert Browser(open_app, ip="192.0.2.7").get("/console/login").status == 200


def test_missing_or_forged_csrf_changes_nothing(app: WebApp) -> None:
    """A POST without the form's token, or with another one, is refused (400) and the
    template stays unpublished."""
    browser = logged_in(app, "admin")
    assert browser.post("/console/templates/order/publish", {}).status == 400
    forged = browser.post("/console/templates/order/publish", {"csrf": "0" * 64})
    assert forged.status == 400
    assert "nothing was changed" in forged.text("//p[@role='alert']")
    other = logged_in(app, "mc").get("/console/browse").csrf()
    assert browser.post("/console/templates/order/publish", {"csrf": other}).status == 400
    assert catalog.get_template(app.db, "order").latest is None
    good = browser.post("/console/templates/order/publish",
                        {"csrf": browser.get("/console/browse").csrf()})
    assert good.status == 303
    assert catalog.get_template(app.db, "order").latest is not None


def test_viewer_reads_everything_and_changes_nothing(app: WebApp) -> None:
    """A viewer sees every page but gets 403 for publishing, editing, retrying, denylist
    changes and thresholds, with nothing changed, and sees no change button."""
    browser = logged_in(app, "viewer")
    for path in PAGES:
        assert browser.get(path).status == 200, path
    page = browser.get("/console/templates/order")
    assert not page.doc.xpath("//form[contains(@action, '/publish')]")
    csrf = page.csrf()
    for path, data in [("/console/templates/order/publish", {}),
                       ("/console/templates/order/edit", {"subject": "x"}),
                       ("/console/templates", {"name": "t2", "event_type":
                                               "order_confirmation", "channel": "sms"}),
                       ("/console/quarantine", {"address": "a@example.com"}),
                       ("/console/monitoring/thresholds", {"orange_queue_due": "1"}),
                       ("/console/eventtypes", {"name": "x"})]:
        reply = browser.post(path, {"csrf": csrf, **data})
        assert reply.status == 403, path
    summary = catalog.get_template(app.db, "order")
    assert summary.latest is None and summary.template.draft.subject.startswith("Order")
    assert [t.template.name for t in catalog.list_templates(app.db)] == ["order"]
    assert app.db and not [e for e in audit.list_entries(app.db) if e.actor == "vic"
                           and e.action not in {"login.ok"}]


def test_mc_edits_templates_but_admin_pages_are_refused(app: WebApp) -> None:
    """``mc`` publishes, but may not change event types or the denylist (admin)."""
    browser = logged_in(app, "mc")
    csrf = browser.get("/console/browse").csrf()
    assert browser.post("/console/templates/order/publish", {"csrf": csrf}).status == 303
    assert browser.post("/console/quarantine", {"csrf": csrf,
                                                "address": "a@example.com"}).status == 403
    assert catalog.get_template(app.db, "order").latest.version.published_by == "mia"


def test_security_headers(app: WebApp) -> None:
    """Console pages forbid framing and inline script; the preview frame is sandboxed."""
    browser = logged_in(app, "admin")
    page = browser.get("/console/browse")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    frame = browser.get("/console/templates/order/preview/frame?seed=zoe@example.com")
    assert frame.status == 200
    assert frame.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "default-src 'none'" in frame.headers["Content-Security-Policy"]


def test_viewer_right_from_the_cli(db: Database, settings: Settings) -> None:
    """``msgcenter operator add --right viewer`` makes a read-only operator who can log in
    to the console; an API key bound to it reads but never pushes."""
    env = {"MC_DATABASE_URL": settings.database_url}
    run_cli(env, "operator", "add", "val", "--password", "pw-val", "--right", "viewer")
    listed = run_cli(env, "--json", "operator", "list").stdout
    assert '"viewer"' in listed
    populate(db)
    browser = Browser(WebApp(console_settings(settings), db))
    assert browser.login("val", "pw-val").status == 303
    assert browser.get("/console/templates/order/edit").status == 403
    key = json.loads(run_cli(env, "--json", "apikey", "create", "val-key", "--operator", "val",
                             "--scope", "push,read").stdout)["key"]
    authenticator = Authenticator(db, console_settings(settings))
    assert authenticator.authenticate_key(key, "127.0.0.1", None, "read").login == "val"
    with pytest.raises(Forbidden):
        authenticator.authenticate_key(key, "127.0.0.1", None, "push")
