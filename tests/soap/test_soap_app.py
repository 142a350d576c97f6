"""The WSGI application in process: route table, internal errors, limits, HTTP details."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from soap_service.config import load_settings
from soap_service.http.app import Request, Response, Route, WebApp, create_app, read_body
from soap_service.soap import router
from soap_service.store import schema
from soap_service.xmlsafe import BodyTooLarge


@pytest.fixture
def app(tmp_path) -> Iterator[WebApp]:
    settings = load_settings({"MC_DATABASE_URL": f"sqlite:///{tmp_path}/mc.db",
                              "MC_MAX_BODY_BYTES": "1000", "MC_AUTH_CACHE_TTL": "0"})
    application = create_app(settings)
    schema.upgrade(application.db)
    yield application
    application.db.dispose()


def _call(app: WebApp, method: str, path: str, body: bytes = b"", query: str = "",
          **environ: str) -> tuple[str, dict[str, str], bytes]:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
           "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
           "REMOTE_ADDR": "127.0.0.1", **environ}
    seen: list = []
    out = b"".join(app(env, lambda status, headers: seen.append((status, headers))))
    return seen[0][0], dict(seen[0][1]), out


def test_internal_error_is_a_server_fault_with_a_logged_id(app: WebApp, caplog) -> None:
    """An unexpected exception in a handler: SOAP-ENV:Server, short text, id in the log."""
    def explode(call: router.Call) -> list:
        raise RuntimeError("internal detail that must stay private")

    router.register("test:boom", "Explode", (), explode)
    try:
        body = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                b'<Explode xmlns="urn:test:boom"/></s:Body></s:Envelope>')
        with caplog.at_level(logging.INFO):
            status, _, out = _call(app, "POST", "/nl/jsp/soaprouter.jsp", body)
    finally:
        del router.METHODS[("test:boom", "Explode")]
    assert status.startswith("500")
    assert b"<faultcode>SOAP-ENV:Server</faultcode>" in out
    assert b"private" not in out and b"Traceback" not in out
    error_id = re.search(rb"error id ([0-9a-f]{12})", out)
    assert error_id is not None
    assert f"id={error_id.group(1).decode()}" in caplog.text


def test_show_errors_zone_gets_the_internal_message(app: WebApp) -> None:
    """A caller in a zone flagged showErrors sees the internal message in the detail."""
    from soap_service.models import Zone
    from soap_service.store import auth as store_auth

    def explode(call: router.Call) -> list:
        raise RuntimeError("visible to developers")

    body = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<Explode xmlns="urn:test:boom"/></s:Body></s:Envelope>')
    router.register("test:boom", "Explode", (), explode)
    try:
        assert b"visible" not in _call(app, "POST", "/soap", body)[2]
        store_auth.add_zone(app.db, Zone(name="dev", cidr="127.0.0.0/8", show_errors=True))
        status, _, out = _call(app, "POST", "/soap", body)
    finally:
        del router.METHODS[("test:boom", "Explode")]
    assert status.startswith("500") and b"<faultcode>SOAP-ENV:Server</faultcode>" in out
    assert b"RuntimeError: visible to developers" in out


def test_route_table_takes_one_line_additions(app: WebApp) -> None:
    """A prefix route added in one line serves its subtree; others stay 404 / 405."""
    def pixel(app_: WebApp, request: Request) -> Response:
        return Response(200, request.path.encode(), "image/gif")

    app.add_route(Route("GET", "/x/t/", pixel, prefix=True))
    status, headers, out = _call(app, "GET", "/x/t/abc.gif")
    assert status.startswith("200") and out == b"/x/t/abc.gif"
    assert headers["Content-Type"] == "image/gif"
    assert _call(app, "GET", "/nowhere")[0].startswith("404")
    assert _call(app, "GET", "/nl/jsp/soaprouter.jsp")[0].startswith("405")
    status, _, out = _call(app, "HEAD", "/healthz")
    assert status.startswith("200") and out == b""


def test_oversized_body_answered_with_connection_close(app: WebApp) -> None:
    """A body over the limit is a fault, and the server asks to close the connection."""
    status, headers, out = _call(app, "POST", "/soap", b"<x>" + b"a" * 2000 + b"</x>",
                                 SERVER_SOFTWARE="gunicorn/27")
    assert status.startswith("500") and b"Request body too large." in out
    assert headers.get("Connection") == "close"


def test_read_body_never_truncates_unsized_input() -> None:
    """Input without Content-Length is read to the end, and refused past the limit."""
    environ = {"wsgi.input": io.BytesIO(b"a" * 1500), "wsgi.input_terminated": True}
    assert read_body(environ, 2000) == b"a" * 1500
    environ = {"wsgi.input": io.BytesIO(b"a" * 1500), "HTTP_TRANSFER_ENCODING": "chunked"}
    with pytest.raises(BodyTooLarge):
        read_body(environ, 1000)
    assert read_body({"wsgi.input": io.BytesIO(b"abc")}, 10) == b""  # no length, no end


@pytest.mark.parametrize(
    ("events", "accepted"),
    [
        ('<rtEvent type="t" email="a@example.com"><mobileApp uuid="u"/><ctx/></rtEvent>', True),
        ('<rtEvent type="t" email="a@example.com"><ctx/></rtEvent>' * 2, False),
        ('<Events><rtEvent type="t" email="a@example.com"><ctx/></rtEvent>'
         '<rtEvent type="t" email="b@example.com"><ctx/></rtEvent></Events>', False),
    ],
)
def test_push_events_limit_counts_events_not_their_children(
    tmp_path, events: str, accepted: bool
) -> None:
    """With MC_MAX_EVENTS_PER_CALL=1, one event sent without a wrapper is accepted
    whatever its children (mobileApp, ctx); two events, wrapped or not, are refused."""
    from soap_service.models import Zone
    from soap_service.store import auth as store_auth

    settings = load_settings({"MC_DATABASE_URL": f"sqlite:///{tmp_path}/mc.db",
                              "MC_MAX_EVENTS_PER_CALL": "1", "MC_AUTH_CACHE_TTL": "0"})
    application = create_app(settings)
    schema.upgrade(application.db)
    store_auth.add_zone(application.db, Zone(name="lo", cidr="127.0.0.0/8",
                                             allow_empty_password=True))
    body = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            '<PushEvents xmlns="urn:nms:rtEvent"><sessiontoken>mc/</sessiontoken>'
            f"<domEventCollection>{events}</domEventCollection></PushEvents>"
            "</s:Body></s:Envelope>").encode()
    try:
        status, _, out = _call(application, "POST", "/soap", body)
    finally:
        application.db.dispose()
    assert status.startswith("200" if accepted else "500"), out
    assert (b"too many events" in out) is not accepted
