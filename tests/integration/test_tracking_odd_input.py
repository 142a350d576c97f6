"""Odd caller input at the tracking endpoints: a User-Agent with a NUL or other control
character (which PostgreSQL cannot store) is recorded without them, and does not make the
other hits written in the same batch fail."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from test_tracking_web import hits
from tracking_support import sent_events, wsgi_server

from soap_service import track
from soap_service.http.tracking import TrackingApp
from soap_service.store import Database


def raw_get(base: str, path: str, agent: bytes) -> bytes:
    """A GET with the User-Agent bytes exactly as given (http.client refuses these)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.0\r\nUser-Agent: " + agent +
                     b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_control_characters_in_the_user_agent(db: Database) -> None:
    [pk] = sent_events(db, 1)
    app = TrackingApp(db, db.settings)
    try:
        with wsgi_server(app) as base:
            for n, agent in enumerate((b"Mozilla\x00/5.0", b"Mozilla/5.0\x01\x7f (X11)",
                                       b"Mozilla/5.0")):
                url = track.click_url("", db.settings.secret, pk, f"https://shop.example/{n}")
                assert raw_get(base, url, agent).startswith(b"HTTP/1.0 302")
        app.recorder.flush()
    finally:
        app.recorder.close()
    recorded = hits(db, pk)
    assert sorted(h.user_agent for h in recorded) == ["Mozilla/5.0", "Mozilla/5.0",
                                                      "Mozilla/5.0 (X11)"]
