"""PushEvent / PushEvents over real HTTP in every dialect, on SQLite and PostgreSQL.

Each accepted call must answer in the suite's exact form and have its event committed
(read back from the database); a zeep client generated from the served WSDL works too.
"""

from __future__ import annotations

import json
import re

import pytest
import zeep
from live_server import TOKEN, Live, live_fixture  # noqa: F401 - the `live` fixture
from lxml import etree

from soap_service.models import Queue

PLID = re.compile(rb'<plId xsi:type="xsd:long">(\d+)</plId>')
ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def _plid(reply) -> int:
    assert reply.status == 200, reply.text
    match = PLID.search(reply.body)
    assert match, reply.text
    return int(match.group(1))


@pytest.mark.parametrize(
    ("fixture", "headers", "external_id", "queue"),
    [
        ("push_doclit_prefixed.xml", {"SOAPAction": '"nms:rtEvent#PushEvent"'}, "1242", "rt"),
        ("push_doclit_unprefixed.xml", {}, "u-1", "rt"),
        ("push_default_ns.xml", {"SOAPAction": "nms:rtEvent#PushEvent"}, "d-1", "rt"),
        ("push_xmlns_empty.xml", {}, "e-1", "rt"),
        ("push_rpc_encoded.xml", {"Content-Type": "application/soap+xml;charset=UTF-8"}, "r-1",
         "rt"),
        ("push_positional.xml", {}, "p-1", "rt"),
        ("push_sdk_batch.xml", {"Content-Type": "application/soap+xml;charset=UTF-8",
                                "SoapAction": "nms:batchEvent#PushEvent"}, "b-1", "batch"),
    ],
)
def test_push_event_dialects_are_stored(
    live: Live, fixture: str, headers: dict[str, str], external_id: str, queue: str
) -> None:
    """Every PushEvent dialect is answered with a plId whose event is committed."""
    reply = live.post(live.fixture(fixture), headers)
    plid = _plid(reply)
    row = live.stored(plid)
    assert row is not None
    assert row["external_id"] == external_id
    assert row["queue"] == queue
    assert reply.headers["content-type"].startswith("text/xml")


def test_response_is_in_the_suite_form(live: Live) -> None:
    """The answer is byte-identical to the SPEC example apart from the plId value."""
    reply = live.post(live.fixture("push_doclit_prefixed.xml"))
    plid = _plid(reply)
    expected = live.fixture("response_pushevent.xml").replace(
        b"72057594037935966", str(plid).encode()
    )
    assert reply.body == expected


def test_unicode_ctx_is_kept(live: Live) -> None:
    """Non-ASCII ctx content survives the round trip into storage, without namespaces."""
    plid = _plid(live.post(live.fixture("push_default_ns.xml")))
    row = live.stored(plid)
    assert row is not None
    assert "Jöhn" in row["ctx_xml"]
    assert "urn:nms:rtEvent" not in row["ctx_xml"]


@pytest.mark.parametrize(
    "where",
    ["header", "query", "none"],
)
def test_method_from_soapaction_query_or_body(live: Live, where: str) -> None:
    """An unqualified method element works with SOAPAction or ?soapAction=, else faults."""
    body = live.fixture("push_body_only_method.xml")
    if where == "header":
        reply = live.post(body, {"SOAPAction": "nms:rtEvent#PushEvent"})
    elif where == "query":
        reply = live.post(body, path=live.soap_path + "?soapAction=nms%3ArtEvent%23PushEvent")
    else:
        reply = live.post(body)
        assert reply.status == 500
        assert b"<faultcode>SOAP-ENV:Client</faultcode>" in reply.body
        assert b"Unknown method" in reply.body
        return
    assert live.stored(_plid(reply)) is not None


def test_soap_path_alias(live: Live) -> None:
    """POST /soap is the same router."""
    assert live.stored(_plid(live.post(live.fixture("push_rpc_encoded.xml"), path="/soap")))


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "__sessiontoken=" + TOKEN},
        {"X-Session-Token": TOKEN},
    ],
)
def test_token_from_cookie_or_header(live: Live, headers: dict[str, str]) -> None:
    """An empty token element is completed from the cookie or X-Session-Token."""
    assert live.stored(_plid(live.post(live.fixture("push_empty_token.xml"), headers)))


def test_idempotency_key_header(live: Live) -> None:
    """The same Idempotency-Key returns the same plId; a different event with it faults."""
    body = live.fixture("push_doclit_unprefixed.xml")
    key = {"Idempotency-Key": "idem-http-1"}
    first = _plid(live.post(body, key))
    assert _plid(live.post(body, key)) == first
    other = body.replace(b'externalId="u-1"', b'externalId="u-2"')
    reply = live.post(other, key)
    assert reply.status == 500
    assert b"<faultcode>SOAP-ENV:Client</faultcode>" in reply.body


def _ids(reply) -> list[tuple[int, str | None]]:
    assert reply.status == 200, reply.text
    root = etree.fromstring(reply.body)
    ids = root.find(f".//{{{ENV}}}Body/*/*/ids")
    assert ids is not None, reply.text
    return [(int(i.get("plId")), i.get("externalId")) for i in ids]


def test_push_events_answers_ids_in_order(live: Live) -> None:
    """PushEvents stores every event and answers one <id> per event, in order."""
    ids = _ids(live.post(live.fixture("pushevents_wrapped.xml")))
    assert [ext for _, ext in ids] == ["c-1", None, "c-3"]
    emails = [live.stored(plid)["email"] for plid, _ in ids]
    assert emails == ["a@example.com", "b@example.com", "c@example.com"]
    assert len({plid for plid, _ in ids}) == 3


def test_push_events_sdk_batch_form(live: Live) -> None:
    """The SDK's PushEvents (batch namespace, wrapper named after the parameter) works."""
    reply = live.post(live.fixture("pushevents_sdk_batch.xml"),
                      {"Content-Type": "application/soap+xml;charset=UTF-8"})
    ids = _ids(reply)
    assert [ext for _, ext in ids] == ["x-1", "x-2"]
    assert all(live.stored(plid)["queue"] == Queue.BATCH.value for plid, _ in ids)
    assert b'<PushEventsResponse xmlns="urn:nms:batchEvent">' in reply.body


@pytest.mark.parametrize("schema", ["nms:rtEvent", "nms:batchEvent"])
def test_zeep_client_from_served_wsdl(live: Live, schema: str) -> None:
    """A zeep client generated from the served WSDL pushes events and reads the answers."""
    client = zeep.Client(f"{live.url}/nl/jsp/schemawsdl.jsp?schema={schema}")
    name = schema.split(":")[1]
    event = etree.fromstring(
        f'<{name} type="order_confirmation" email="z@example.com" externalId="z-1">'
        f"<ctx><x>1</x></ctx></{name}>"
    )
    plid = client.service.PushEvent(sessiontoken=TOKEN, domEvent={"_value_1": event})
    row = live.stored(int(plid))
    assert row is not None and row["external_id"] == "z-1"
    assert row["queue"] == ("rt" if schema == "nms:rtEvent" else "batch")
    events = etree.fromstring(
        f'<Events><{name} type="t1" email="a@example.com" externalId="z-2"><ctx/></{name}>'
        f'<{name} type="t2" email="b@example.com"><ctx/></{name}></Events>'
    )
    result = client.service.PushEvents(
        sessiontoken=TOKEN, domEventCollection={"_value_1": events}
    )
    ids = result[0]  # pdomIds: mixed content, its one element child is <ids>
    assert ids.tag == "ids"
    assert [i.get("externalId") for i in ids] == ["z-2", None]
    assert all(live.stored(int(i.get("plId"))) for i in ids)


def test_wsdl_metrics_and_health(live: Live) -> None:
    """WSDLs, /healthz and /metrics answer; metrics count requests and faults per method."""
    for schema in ("nms:rtEvent", "nms:batchEvent", "xtk:session"):
        reply = live.request("GET", f"/nl/jsp/schemawsdl.jsp?schema={schema}")
        assert reply.status == 200 and f'targetNamespace="urn:{schema}"'.encode() in reply.body
        assert live.url.encode() + b"/nl/jsp/soaprouter.jsp" in reply.body
    assert live.request("GET", "/nl/jsp/schemawsdl.jsp?schema=nms:nothing").status == 404
    health = live.request("GET", "/healthz")
    assert health.status == 200 and json.loads(health.body)["status"] == "ok"
    # one server, several worker processes: count until every worker has seen a request
    for _ in range(6):
        live.post(live.fixture("push_rpc_encoded.xml"))
        live.post(b"not xml")
    text = ""
    for _ in range(10):
        text = live.request("GET", "/metrics").text
        if 'mc_soap_faults_total{code="Client",method="unknown",service="unknown"}' in text:
            break
    # multiprocess mode exposes labels in name order
    assert 'mc_soap_requests_total{method="PushEvent",service="nms:rtEvent"}' in text
    assert 'mc_soap_faults_total{code="Client",method="unknown",service="unknown"}' in text
