"""Caller input never makes an internal error: odd namespaces, control characters in the
headers that reach a query, overflowing numbers and dates each get a result or a Client
fault, on SQLite and PostgreSQL (the real application in process, real databases)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from edge_support import TOKEN, call, count_events, make_app, push_envelope
from lxml import etree
from sqlalchemy import select

from soap_service.config import Settings
from soap_service.http.app import WebApp
from soap_service.models import split_plid
from soap_service.tables import events


@pytest.fixture
def app(settings: Settings) -> Iterator[WebApp]:
    application = make_app(settings)
    yield application
    application.db.dispose()


def stored_ctx(app: WebApp, plid: int) -> str:
    with app.db.connect() as conn:
        return str(conn.execute(select(events.c.ctx_xml).where(
            events.c.id == split_plid(plid)[1])).scalar_one())


@pytest.mark.parametrize("event", [
    '<rtEvent type="t" email="a@b.co" idempotencyKey="k"><ctx xmlns="rel/ative"><x/></ctx>'
    "</rtEvent>",
    '<rtEvent xmlns:a="rel" a:flag="1" type="t" email="a@b.co" idempotencyKey="k"><ctx/>'
    "</rtEvent>",
])
def test_relative_namespace_with_idempotency_key_is_accepted(app: WebApp, event: str) -> None:
    """A relative namespace URI (which C14N 1.0 refuses) in an event with an idempotency
    key is stored, and the same event sent again is recognised (same plId, one row)."""
    first = call(app, push_envelope(event))
    assert first.status == 200, first.body
    again = call(app, push_envelope(event))
    assert again.status == 200 and again.plids == first.plids
    assert count_events(app.db) == 1
    if "rel/ative" in event:
        assert 'xmlns="rel/ative"' in stored_ctx(app, first.plids[0])


def test_idempotency_hash_ignores_prefixes_and_attribute_order(app: WebApp) -> None:
    """The same event written with other prefixes and attribute order is a replay; a
    different ctx under the same key is a Client conflict."""
    one = '<rtEvent type="t" email="a@b.co" idempotencyKey="k2"><ctx xmlns:p="u"><p:x y="1" ' \
          'z="2"/></ctx></rtEvent>'
    two = '<rtEvent idempotencyKey="k2" email="a@b.co" type="t"><ctx xmlns:q="u"><q:x z="2" ' \
          'y="1"/></ctx></rtEvent>'
    first, second = call(app, push_envelope(one)), call(app, push_envelope(two))
    assert first.status == second.status == 200 and first.plids == second.plids
    other = call(app, push_envelope(one.replace('y="1"', 'y="3"')))
    assert other.fault is not None and other.fault[0] == "SOAP-ENV:Client"


@pytest.mark.parametrize(("header", "value"), [
    ("Cookie", "__sessiontoken=pus\x00her/s3cret"),
    ("X-Session-Token", "pusher/s3\x00cret"),
    ("Authorization", "Bearer mc_\x00key"),
    ("Idempotency-Key", "key\x00one"),
    ("Idempotency-Key", "key\x1bone"),
])
def test_control_characters_in_headers_are_a_client_fault(app: WebApp, header: str,
                                                          value: str) -> None:
    """A NUL (which PostgreSQL refuses in a query) or another control character in a
    header that becomes a token or a key: Client fault, nothing stored."""
    event = '<rtEvent type="t" email="a@b.co"><ctx/></rtEvent>'
    token = "" if header != "Idempotency-Key" else TOKEN
    answer = call(app, push_envelope(event, token=token), {header: value})
    assert answer.fault is not None, answer.body
    assert answer.fault[0] == "SOAP-ENV:Client", answer.fault
    assert header in answer.body.decode()
    assert count_events(app.db) == 0


@pytest.mark.parametrize("attrs", [
    'scheduled="9999-12-31T23:59:59-14:00"', 'scheduled="0001-01-01T00:00:00+14:00"',
    'expiration="0000-01-01"', 'wishedChannel="99999999999999999999999"',
    'wishedChannel="' + "9" * 5000 + '"', 'emailFormat="-' + "9" * 30 + '"',
])
def test_overflowing_numbers_and_dates_are_client_faults(app: WebApp, attrs: str) -> None:
    """Numbers and dates past every range get a Client fault naming the attribute."""
    answer = call(app, push_envelope(f'<rtEvent type="t" email="a@b.co" {attrs}><ctx/>'
                                     "</rtEvent>"))
    assert answer.fault is not None and answer.fault[0] == "SOAP-ENV:Client", answer.body
    assert attrs.split("=")[0] in answer.fault[1]


def test_method_namespace_inside_another_namespace_is_kept(app: WebApp) -> None:
    """An element of the method's namespace inside an element of another default namespace
    keeps its namespace in the stored ctx (stripping it made it read as part of the other
    namespace: the data changed meaning).  Found by the property-based suite."""
    event = ('<rtEvent type="t" email="a@b.co"><ctx><urn:top/><a xmlns="urn:x"><urn:b/></a>'
             "</ctx></rtEvent>")
    answer = call(app, push_envelope(event))
    assert answer.status == 200, answer.body
    ctx = etree.fromstring(stored_ctx(app, answer.plids[0]).encode())
    assert [el.tag for el in ctx.iter()] == ["ctx", "top", "{urn:x}a", "{urn:nms:rtEvent}b"]
