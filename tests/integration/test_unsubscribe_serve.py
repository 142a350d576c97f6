"""The unsubscribe link against a real ``msgcenter serve`` (with its worker) and a real
SMTP sink: RFC 8058 headers on the mail, the GET confirmation page, the one-click POST
recording the opt-out (and its webhook), a later event ignored; a forged or altered
token records nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from conftest import make_settings
from dispatch_support import wait_until
from lxml import etree

from soap_service import ingest, profiles
from soap_service.devsmtp import MailSink
from soap_service.models import Channel, EventStatus, Queue, split_plid
from soap_service.store import Database, make_engine
from soap_service.store.events import get_event
from soap_service.tables import webhook_deliveries, webhook_outbox


def _open(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers={
        "Content-Type": "application/x-www-form-urlencoded"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _alter(url: str) -> str:
    """The same link with one character of the signature changed."""
    last = url[-1]
    return url[:-1] + ("A" if last != "A" else "B")


def test_one_click_unsubscribe_against_serve(database_url, start_server, tmp_path) -> None:
    with MailSink() as sink:
        server = start_server(database_url, worker=True, env={
            "MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port),
            "MC_SECRET": "s3cret-for-this-test"})
        html = tmp_path / "news.html"
        html.write_text('<p>Hi {{ profile.firstName }}</p>'
                        '<a href="{{ unsubscribeUrl() }}">unsubscribe</a>', encoding="utf-8")
        server.cli("eventtype", "add", "news", "--targeting", "profile")
        server.cli("template", "create", "news_email", "--event-type", "news",
                   "--from", "shop@example.org", "--subject", "News", "--html", str(html))
        server.cli("template", "publish", "news_email", "--operator", "test")
        server.cli("profile", "set", "C1", "--email", "ann@example.com", "--first-name", "Ann")
        server.cli("webhook", "add", "http://127.0.0.1:9/hook", "--status", "unsubscribed")
        settings = make_settings(database_url)
        db = Database(make_engine(settings), settings)

        def push() -> int:
            el = etree.fromstring('<e type="news" externalId="C1"><ctx/></e>')
            return split_plid(ingest.store_event(db, settings, el, Queue.RT))[1]

        first = push()
        [mail] = sink.wait_for(1, timeout=60)
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = mail.message["List-Unsubscribe"].strip("<>")
        assert link.startswith(f"{server.url}/u/")

        # forged / altered tokens: 404, nothing recorded
        for bad in (_alter(link), f"{server.url}/u/not-a-token", f"{server.url}/u/"):
            assert _open(bad, "POST", b"List-Unsubscribe=One-Click")[0] == 404
        assert _open(_alter(link))[0] == 404
        assert profiles.require(db, "C1").unsubscribed == {}

        status, page = _open(link)  # a person following the link: a form, nothing yet
        assert status == 200 and '<form method="post"' in page and "Unsubscribe" in page
        assert profiles.require(db, "C1").unsubscribed == {}

        status, page = _open(link, "POST", b"List-Unsubscribe=One-Click")  # RFC 8058
        assert status == 200 and "You are unsubscribed" in page
        assert set(profiles.require(db, "C1").unsubscribed) == {Channel.EMAIL}
        assert _open(link, "POST", b"List-Unsubscribe=One-Click")[0] == 200  # idempotent

        def deliveries() -> list:
            with db.connect() as conn:
                return list(conn.execute(webhook_deliveries.select()))

        # the serve's worker fans the outbox row out to the subscription
        wait_until(deliveries, 60, "the unsubscribed webhook delivery")
        [row] = deliveries()  # the repeated POST recorded nothing new
        payload = json.loads(row.payload)
        assert row.kind == payload["type"] == "unsubscribed"
        assert payload["data"]["channel"] == "email" and payload["data"]["externalId"] == "C1"
        with db.connect() as conn:
            assert list(conn.execute(webhook_outbox.select())) == []

        later = push()
        wait_until(lambda: get_event(db, later).status is EventStatus.IGNORED, 60,
                   "the later event ignored")
        assert get_event(db, later).last_error == "unsubscribed"
        assert get_event(db, first).status is EventStatus.PROCESSED
        assert len(sink.messages) == 1
        db.dispose()
