"""The web console in process: a ``WebApp`` on a real database, a werkzeug client that
keeps cookies, and pages parsed with lxml (never matched as strings).

``console_app`` makes the three operators ``ann`` (admin), ``mia`` (mc) and ``vic``
(viewer), all with password ``pw-123456``, a zone for loopback that allows
login/password, the event type ``order_confirmation`` and an email template ``order``
with a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lxml.html
from werkzeug.test import Client

from soap_service import auth, catalog
from soap_service.config import Settings
from soap_service.http.app import WebApp
from soap_service.models import Channel, EventType, TemplateContent
from soap_service.store import Database

PASSWORD = "pw-123456"
OPERATORS = {"admin": "ann", "mc": "mia", "viewer": "vic"}
CTX = ('<ctx><client firstname="Zoë" lastname="Marsh"/><order id="A-1042" total="42.50">'
       '<line sku="TEA" qty="2"/></order></ctx>')
HTML_PART = ("<p>Hello {{ rtEvent.ctx.client.@firstname }},</p>\n"
             "<p>your order {{ rtEvent.ctx.order.@id }} is confirmed.</p>\n")


@dataclass
class Page:
    status: int
    headers: Any
    body: bytes

    @property
    def doc(self) -> Any:
        """The page parsed as a browser would: decoded by the charset of its
        Content-Type (a preview frame has no ``<meta charset>`` of its own)."""
        charset = self.headers.get("Content-Type", "").partition("charset=")[2] or "utf-8"
        text = self.body.decode(charset.strip()) if self.body else "<html></html>"
        return lxml.html.document_fromstring(text)

    @property
    def location(self) -> str:
        return str(self.headers.get("Location", ""))

    def one(self, xpath: str) -> Any:
        found = self.doc.xpath(xpath)
        assert len(found) == 1, f"{xpath}: {len(found)} matches"
        return found[0]

    def texts(self, xpath: str) -> list[str]:
        return [" ".join(e.text_content().split()) for e in self.doc.xpath(xpath)]

    def text(self, xpath: str) -> str:
        return " ".join(self.one(xpath).text_content().split())

    def csrf(self) -> str:
        values = set(self.doc.xpath("//input[@name='csrf']/@value"))
        assert len(values) == 1, values
        return values.pop()

    def flashes(self) -> list[str]:
        return self.texts("//*[contains(@class, 'flash')]")


class Browser:
    """A client with cookies, answering parsed pages; requests come from ``ip``."""

    def __init__(self, app: WebApp, ip: str = "127.0.0.1") -> None:
        self.client = Client(app)
        self.ip = ip

    def _open(self, method: str, path: str, **kw: Any) -> Page:
        kw.setdefault("environ_base", {"REMOTE_ADDR": self.ip})
        reply = self.client.open(path, method=method, **kw)
        return Page(reply.status_code, reply.headers, reply.get_data())

    def get(self, path: str, **kw: Any) -> Page:
        return self._open("GET", path, **kw)

    def post(self, path: str, data: dict[str, Any], **kw: Any) -> Page:
        return self._open("POST", path, data=data, **kw)

    def submit(self, page_path: str, form_xpath: str, values: dict[str, Any],
               button: tuple[str, str] | None = None) -> Page:
        """Fill the form found on ``page_path`` as a browser would: its fields and their
        current values, overridden by ``values``; sent to its action."""
        page = self.get(page_path)
        assert page.status == 200, (page_path, page.status)
        form = page.one(form_xpath)
        data: dict[str, Any] = {}
        for field in form.xpath(".//input[@name] | .//textarea[@name] | .//select[@name]"):
            if field.tag == "input" and field.get("type") in {"submit", "button"}:
                continue
            data[field.get("name")] = field.value or ""
        data.update(values)
        if button:
            data[button[0]] = button[1]
        return self.post(form.get("action") or page_path, data)

    def login(self, login: str, password: str = PASSWORD) -> Page:
        page = self.get("/console/login")
        return self.post("/console/login", {"csrf": page.csrf(), "login": login,
                                            "password": password, "next": ""})


def console_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(auth_cache_ttl=0, credential_cache_ttl=0, **changes)


def populate(db: Database) -> None:
    for right, login in OPERATORS.items():
        auth.create_operator(db, login, PASSWORD, [right])
    auth.create_zone(db, "local", "127.0.0.0/8", allow_user_password=True)
    catalog.add_event_type(db, EventType(name="order_confirmation", label="Order confirmed"))
    catalog.create_template(db, "order", "order_confirmation", Channel.EMAIL, TemplateContent(
        from_addr="Shop <shop@example.com>", subject="Order {{ rtEvent.ctx.order.@id }}",
        html=HTML_PART))
    catalog.add_seed(db, "order", "zoe@example.com", CTX)
    catalog.clear_cache()


def logged_in(app: WebApp, right: str) -> Browser:
    browser = Browser(app)
    reply = browser.login(OPERATORS[right])
    assert reply.status == 303, reply.body[:500]
    return browser


def unlabelled_fields(page: Page) -> list[str]:
    """Visible form fields with no label (``<label for>``, ``aria-label`` or
    ``aria-labelledby``): what a screen reader could not name."""
    doc = page.doc
    labelled = set(doc.xpath("//label/@for"))
    missing = []
    for field in doc.xpath("//input | //select | //textarea"):
        if field.get("type") in {"hidden", "submit", "button"}:
            continue
        if field.get("id") in labelled or field.get("aria-label") or \
                field.get("aria-labelledby"):
            continue
        missing.append(field.get("name") or "?")
    return missing
