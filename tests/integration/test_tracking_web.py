"""Open pixel and click redirect over real HTTP (wsgiref on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from tracking_support import add_events, event_row, sent_events, wsgi_server

from soap_service import clock, track
from soap_service.http.tracking import PIXEL, TrackingApp
from soap_service.models import TrackingHit
from soap_service.store import Database
from soap_service.store import tracking as tracking_store

T0 = datetime(2026, 3, 2, 9, 0, 0)
PERSON = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"


@pytest.fixture
def tracker(db: Database) -> Iterator[tuple[TrackingApp, str]]:
    app = TrackingApp(db, db.settings)
    with wsgi_server(app) as base:
        yield app, base
    app.recorder.close()


def get(base: str, path: str, agent: str = PERSON, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, headers={"User-Agent": agent, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def hits(db: Database, event_id: int) -> list[TrackingHit]:
    return list(reversed(tracking_store.list_tracking(db, event_id)))


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_open_pixel_records_an_open(db: Database, tracker) -> None:
    """GET /r/o/<token> answers a 1x1 GIF and logs an open with delivery, agent and IP."""
    app, base = tracker
    with clock.frozen_clock(T0) as advance:
        [pk] = sent_events(db, 1)
        advance(timedelta(minutes=10))
        url = track.open_url("http://x", db.settings.secret, pk)
        status, headers, body = get(base, path_of(url))
        app.recorder.flush()
    assert (status, headers["content-type"], body) == (200, "image/gif", PIXEL)
    assert "no-store" in headers["cache-control"]
    [hit] = hits(db, pk)
    assert (hit.kind, hit.url, hit.user_agent, hit.ip, hit.machine) == (
        "open", None, PERSON, "127.0.0.1", False)
    assert hit.delivery_id is not None and hit.created_at == T0 + timedelta(minutes=10)


def test_click_redirects_and_records(db: Database, tracker) -> None:
    """GET /r/c/<token> redirects (302) to the signed target and logs the click with its URL."""
    app, base = tracker
    target = "https://shop.example.com/order?id=12&utm=mail"
    with clock.frozen_clock(T0) as advance:
        [pk] = sent_events(db, 1)
        advance(timedelta(hours=1))
        html = track.instrument_html(f'<a href="{target}">x</a>', pk, base, db.settings.secret)
        [link] = [part.split('"')[0] for part in html.split('href="')[1:]]
        status, headers, _ = get(base, path_of(link))
        app.recorder.flush()
    assert (status, headers["location"]) == (302, target)
    [hit] = hits(db, pk)
    assert (hit.kind, hit.url, hit.machine) == ("click", target, False)


@pytest.mark.parametrize("path", [
    "/r/o/bm90LWEtdG9rZW4.AAAAAAAAAAAAAAAAAAAAAA",
    "/r/c/",
    "/r/x/abc",
    "/r/o/",
    "/elsewhere",
])
def test_garbage_paths_get_404(db: Database, tracker, path: str) -> None:
    """Unsigned, empty or unknown tracking paths are a plain 404 and record nothing."""
    app, base = tracker
    [pk] = sent_events(db, 1)
    status, headers, _ = get(base, path)
    app.recorder.flush()
    assert status == 404 and "location" not in headers
    assert hits(db, pk) == []


def test_forged_click_is_not_redirected(db: Database, tracker) -> None:
    """A click token re-signed with another secret, or with its URL swapped, gets 404."""
    app, base = tracker
    [pk] = sent_events(db, 1)
    forged = track.click_url("", "wrong-secret", pk, "https://evil.example/")
    good = track.make_token(db.settings.secret, track.CLICK, pk, "https://shop.example/")
    other = track.make_token(db.settings.secret, track.CLICK, pk, "https://evil.example/")
    swapped = other.split(".")[0] + "." + good.split(".")[1]
    for path in (forged, f"/r/c/{swapped}"):
        status, headers, _ = get(base, path)
        assert status == 404 and "location" not in headers
    app.recorder.flush()
    assert hits(db, pk) == []


def test_open_token_does_not_work_as_click(db: Database, tracker) -> None:
    """A valid open token under /r/c/ is refused (the kind is part of the signature)."""
    _app, base = tracker
    [pk] = sent_events(db, 1)
    token = track.make_token(db.settings.secret, track.OPEN, pk)
    assert get(base, f"/r/c/{token}")[0] == 404


def test_machine_opens_are_flagged(db: Database, tracker) -> None:
    """An image proxy, and any open within two seconds of sending, are flagged machine."""
    app, base = tracker
    with clock.frozen_clock(T0) as advance:
        [pk] = sent_events(db, 1)
        path = path_of(track.open_url("", db.settings.secret, pk))
        advance(timedelta(seconds=1))
        get(base, path)  # prefetch right after sending
        advance(timedelta(minutes=5))
        get(base, path, agent="Mozilla/5.0 (via ggpht.com GoogleImageProxy)")
        get(base, path)  # the person
        app.recorder.flush()
    assert [h.machine for h in hits(db, pk)] == [True, True, False]


def test_head_request_records_nothing(db: Database, tracker) -> None:
    """HEAD (link checkers) gets the same status but is not an open."""
    app, base = tracker
    [pk] = sent_events(db, 1)
    assert get(base, path_of(track.open_url("", db.settings.secret, pk)), method="HEAD")[0] == 200
    app.recorder.flush()
    assert hits(db, pk) == []


def test_open_of_unsent_or_missing_event(db: Database, tracker) -> None:
    """A token for an event never sent records without delivery; one for a missing event not."""
    app, base = tracker
    [pk] = add_events(db, [event_row(1)])
    get(base, path_of(track.open_url("", db.settings.secret, pk)))
    get(base, path_of(track.open_url("", db.settings.secret, pk + 1000)))
    app.recorder.flush()
    [hit] = hits(db, pk)
    assert hit.delivery_id is None
    assert hits(db, pk + 1000) == []


def test_redirect_answers_even_when_recording_fails(db: Database, tmp_path, caplog) -> None:
    """With a database that cannot record (no schema), the click still redirects at once."""
    from soap_service.store import make_engine

    broken_settings = db.settings.replace(database_url=f"sqlite:///{tmp_path}/empty.db")
    broken = Database(make_engine(broken_settings), broken_settings)
    app = TrackingApp(broken, broken_settings)
    target = "https://shop.example.com/"
    with wsgi_server(app) as base, caplog.at_level(logging.ERROR):
        status, headers, _ = get(base, path_of(track.click_url("", broken_settings.secret, 5,
                                                                target)))
        app.recorder.flush()
    app.recorder.close()
    broken.dispose()
    assert (status, headers["location"]) == (302, target)
    assert "tracking.record_failed" in caplog.text


def test_routes_of_the_service_app(db: Database) -> None:
    """The service's own WSGI app (http/app.py) serves the pixel and the redirect under /r/."""
    from soap_service.http.app import WebApp

    app = WebApp(db.settings, db)
    target = "https://shop.example.com/a"
    with clock.frozen_clock(T0) as advance, wsgi_server(app) as base:
        [pk] = sent_events(db, 1)
        advance(timedelta(days=1))
        opened = get(base, path_of(track.open_url("", db.settings.secret, pk)))
        clicked = get(base, path_of(track.click_url("", db.settings.secret, pk, target)))
        forged = get(base, path_of(track.click_url("", "forged", pk, target)))
        tracker = app.tracker
        tracker.recorder.flush()
    assert app.close_tracking()
    assert (opened[0], opened[1]["content-type"], opened[2]) == (200, "image/gif", PIXEL)
    assert (clicked[0], clicked[1]["location"]) == (302, target)
    assert forged[0] == 404 and "location" not in forged[1]
    assert [(h.kind, h.url) for h in hits(db, pk)] == [("open", None), ("click", target)]


@pytest.mark.parametrize(("proxy", "expected"), [(True, "203.0.113.9"), (False, "127.0.0.1")])
def test_client_ip_behind_declared_proxy(db: Database, proxy: bool, expected: str) -> None:
    """X-Forwarded-For gives the logged IP only when the peer is a declared proxy zone."""
    from soap_service import auth
    from soap_service.http.app import WebApp

    auth.create_zone(db, "local", "127.0.0.0/8", is_proxy=proxy, allow_user_password=True)
    app = WebApp(db.settings, db)
    [pk] = sent_events(db, 1)
    with wsgi_server(app) as base:
        get(base, path_of(track.open_url("", db.settings.secret, pk)),
            headers={"X-Forwarded-For": "203.0.113.9"})
        tracker = app.tracker
        tracker.recorder.flush()
    assert app.close_tracking()
    assert [h.ip for h in hits(db, pk)] == [expected]


def test_tracking_list_cli(db: Database, database_url: str) -> None:
    """``msgcenter tracking list --event <plId> --human`` shows that event's human hits."""
    from conftest import run_cli

    from soap_service.http.tracking import Hit, record_hit
    from soap_service.models import make_plid

    with clock.frozen_clock(T0) as advance:
        [pk, other] = sent_events(db, 2)
        advance(timedelta(hours=1))
        for agent in (PERSON, "GoogleImageProxy"):
            record_hit(db, Hit(track.TrackingToken("open", pk), agent, "10.0.0.1", clock.utcnow()))
        record_hit(db, Hit(track.TrackingToken("open", other), PERSON, "", clock.utcnow()))
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    plid = make_plid(db.settings.instance_id, pk)
    rows = json.loads(run_cli(env, "--json", "tracking", "list", "--event", str(plid),
                              "--human").stdout)
    assert [(r["plId"], r["event_id"], r["kind"], r["machine"], r["user_agent"])
            for r in rows] == [(plid, pk, "open", False, PERSON)]
    table = run_cli(env, "tracking", "list", "--event", str(plid)).stdout
    assert "PLID" in table.splitlines()[0] and str(plid) in table
    everything = json.loads(run_cli(env, "--json", "tracking", "list").stdout)
    assert len(everything) == 3


def test_recorder_writes_a_burst_in_batches(db: Database) -> None:
    """A burst of hits (more than one batch, one for a missing event) is written in full."""
    from soap_service.http.tracking import BATCH, Hit, Recorder

    [pk] = sent_events(db, 1)
    recorder = Recorder(db)
    burst = 2 * BATCH + 7
    for n in range(burst):
        recorder.submit(Hit(track.TrackingToken("open", pk), f"{PERSON} {n}", "", clock.utcnow()))
    recorder.submit(Hit(track.TrackingToken("open", pk + 99), PERSON, "", clock.utcnow()))
    recorder.flush()
    recorder.close()
    stored = tracking_store.list_tracking(db, None, limit=10 * BATCH)
    assert len(stored) == burst and {h.event_id for h in stored} == {pk}
