"""Bad input and bad credentials over real HTTP: a SOAP 1.1 fault each, nothing stored.

For every case: HTTP 500 with a ``SOAP-ENV:Fault`` in the suite's form, the server still
answers afterwards, no event of the call is stored, and no stack trace reaches the caller.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

import pytest
from live_server import TOKEN, Live, live_fixture, run_cli  # noqa: F401 - the `live` fixture
from sqlalchemy import update

from soap_service.tables import sessions

MARKER = "BODY-MARKER-7f3a"


def _fault(reply, code: str = "Client") -> str:
    """The faultstring of a fault reply (asserts the form)."""
    assert reply.status == 500, reply.text
    assert f"<faultcode>SOAP-ENV:{code}</faultcode>".encode() in reply.body, reply.text
    assert b"<SOAP-ENV:Fault>" in reply.body and b"<detail" in reply.body
    assert b"Traceback" not in reply.body
    match = re.search(r"<faultstring[^>]*>(.*?)</faultstring>", reply.text, re.S)
    assert match
    return match.group(1)


def _detail(reply) -> str:
    match = re.search(r"<detail[^>]*>(.*?)</detail>", reply.text, re.S)
    assert match
    return match.group(1)


def _nothing_stored(live: Live, before: int) -> None:
    assert live.count_events() == before
    assert live.request("GET", "/healthz").status == 200


def _push(email: str = "john.doe@example.com", attrs: str = 'type="order_confirmation"',
          ctx: str = "<ctx/>", token: str = TOKEN) -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{token}</urn:sessiontoken><urn:domEvent>"
        f'<rtEvent {attrs} email="{email}" externalId="{MARKER}">{ctx}</rtEvent>'
        "</urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "detail_part"),
    [
        (b"", "empty"),
        (b"this is not xml " + MARKER.encode(), "Start tag expected"),
        (b"<hello>" + MARKER.encode() + b"</hello>", "not a SOAP 1.1 Envelope"),
    ],
)
def test_not_soap(live: Live, body: bytes, detail_part: str) -> None:
    """Empty bodies, non-XML and non-SOAP XML get the suite's 'XML SOAP message is invalid'."""
    before = live.count_events()
    reply = live.post(body, {"SOAPAction": "nms:rtEvent#PushEvent"})
    assert _fault(reply) == (
        "The XML SOAP message is invalid (service 'nms:rtEvent', method 'PushEvent')."
    )
    assert detail_part in _detail(reply)
    assert MARKER not in reply.text
    _nothing_stored(live, before)


def test_soap12_is_version_mismatch(live: Live) -> None:
    """A SOAP 1.2 envelope is answered with a SOAP 1.1 VersionMismatch fault."""
    before = live.count_events()
    reply = live.post(live.fixture("soap12.xml"), {"Content-Type": "application/soap+xml"})
    _fault(reply, "VersionMismatch")
    _nothing_stored(live, before)


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml", "external_dtd.xml"])
def test_dtds_are_refused(live: Live, name: str) -> None:
    """Entity bombs, external entities and external DTDs are refused, never expanded."""
    before = live.count_events()
    reply = live.post(live.fixture(name))
    assert _fault(reply).startswith("The XML SOAP message is invalid")
    assert "DTD" in _detail(reply)
    assert "root:" not in reply.text
    _nothing_stored(live, before)


def test_nesting_too_deep(live: Live) -> None:
    """A ctx nested past MC_MAX_XML_DEPTH (40 here) is refused."""
    before = live.count_events()
    deep = "<a>" * 60 + "</a>" * 60
    reply = live.post(_push(ctx=f"<ctx>{deep}</ctx>"))
    assert _fault(reply).startswith("The XML SOAP message is invalid")
    assert "deeper than the limit of 40" in _detail(reply)
    _nothing_stored(live, before)


def _big_body() -> bytes:
    return _push(ctx="<ctx><pad>" + "x" * 250_000 + "</pad></ctx>")


def test_body_too_large_with_content_length(live: Live) -> None:
    """A body over MC_MAX_BODY_BYTES with Content-Length is rejected, and the caller sees it."""
    before = live.count_events()
    reply = live.post(_big_body())
    assert _fault(reply) == "Request body too large."
    assert "200000" in _detail(reply)
    _nothing_stored(live, before)


def test_body_too_large_chunked_is_rejected_not_truncated(live: Live) -> None:
    """A chunked body over the limit is rejected whole (a truncated prefix is never parsed)."""
    before = live.count_events()
    body = _big_body()
    reply = live.post(body[i : i + 8192] for i in range(0, len(body), 8192))
    assert _fault(reply) == "Request body too large."
    _nothing_stored(live, before)


def test_chunked_body_within_limit_is_accepted(live: Live) -> None:
    """Chunked transfer encoding itself works (the limit test above is not a false alarm)."""
    body = _push()
    reply = live.post(body[i : i + 100] for i in range(0, len(body), 100))
    assert reply.status == 200, reply.text
    assert b"<plId" in reply.body


def test_unknown_method(live: Live) -> None:
    """An unknown method of a known or unknown service is a Client fault naming it."""
    body = _push().replace(b"PushEvent>", b"PushEverything>")
    assert "Unknown method 'PushEverything' of service 'nms:rtEvent'" in _fault(live.post(body))
    reply = live.post(_push(), {"SOAPAction": "nms:nothing#Foo"})
    assert "Unknown method 'Foo' of service 'nms:nothing'" in _fault(reply)


@pytest.mark.parametrize(
    ("body_kwargs", "needle"),
    [
        ({"attrs": 'origin="x"'}, "type"),
        ({"ctx": ""}, "ctx"),
        ({"email": "not-an-email"}, "email"),
    ],
)
def test_invalid_event(live: Live, body_kwargs: dict, needle: str) -> None:
    """Missing type, missing <ctx> and a malformed email are Client faults naming the problem."""
    before = live.count_events()
    faultstring = _fault(live.post(_push(**body_kwargs)))
    assert needle in faultstring
    _nothing_stored(live, before)


def test_missing_event_element(live: Live) -> None:
    """A PushEvent whose DOM parameter is empty is a Client fault."""
    head = _push().split(b"<urn:domEvent>")[0]
    body = head + b"<urn:domEvent/></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    assert "missing event" in _fault(live.post(body))


def test_push_events_one_bad_event_stores_nothing(live: Live) -> None:
    """One bad event among good ones fails the whole call, naming its index."""
    before = live.count_events()
    faultstring = _fault(live.post(live.fixture("pushevents_one_bad.xml")))
    assert "event #3" in faultstring and "type" in faultstring
    _nothing_stored(live, before)


def test_push_events_too_many(live: Live) -> None:
    """More events than MC_MAX_EVENTS_PER_CALL (5 here) is a Client fault; nothing stored."""
    before = live.count_events()
    events = "".join(
        f'<rtEvent type="t" email="a{i}@example.com"><ctx/></rtEvent>' for i in range(6)
    )
    body = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        '<PushEvents xmlns="urn:nms:rtEvent"><sessiontoken>' + TOKEN + "</sessiontoken>"
        f"<domEventCollection><Events>{events}</Events></domEventCollection>"
        "</PushEvents></s:Body></s:Envelope>"
    ).encode()
    assert "too many events" in _fault(live.post(body))
    _nothing_stored(live, before)


# ---------------------------------------------------------------- credentials


def test_bad_password(live: Live) -> None:
    """A wrong password gets the suite's wording, never the session-expired code."""
    before = live.count_events()
    reply = live.post(_push(token="pusher/wrong-" + MARKER))
    assert _fault(reply) == (
        "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'."
    )
    assert _detail(reply) == "Invalid login or password. Connection denied."
    assert "XSV-350008" not in reply.text
    _nothing_stored(live, before)


def test_unknown_session_token(live: Live) -> None:
    """An unknown ___ session token is XSV-350008 (clients log on again)."""
    before = live.count_events()
    reply = live.post(_push(token=f"___{uuid.uuid4()}"))
    assert _fault(reply).startswith("XSV-350008")
    _nothing_stored(live, before)


def _logon(live: Live) -> str:
    body = live.fixture("logon.xml")
    reply = live.post(body, {"SOAPAction": "xtk:session#Logon"})
    assert reply.status == 200, reply.text
    match = re.search(rb'<pstrSessionToken xsi:type="xsd:string">(___[0-9a-f-]+)<', reply.body)
    assert match, reply.text
    return match.group(1).decode()


def test_logon_push_logoff(live: Live) -> None:
    """Logon answers token, session info and security token; the token pushes until Logoff."""
    body = live.fixture("logon.xml")
    reply = live.post(body)
    assert reply.status == 200, reply.text
    text = reply.text
    assert '<LogonResponse xmlns="urn:xtk:session">' in text
    order = [text.index(n) for n in ("<pstrSessionToken", "<pSessionInfo", "<pstrSecurityToken")]
    assert order == sorted(order)
    assert 'xsi:type="ns:Element"' in text and "<serverInfo " in text and "<userInfo " in text
    assert re.search(r'<pstrSecurityToken xsi:type="xsd:string">[^<]+<', text)
    token = _logon(live)
    assert live.post(_push(token=token)).status == 200
    logoff = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f'<Logoff xmlns="urn:xtk:session"><sessiontoken>{token}</sessiontoken></Logoff>'
        "</s:Body></s:Envelope>"
    ).encode()
    reply = live.post(logoff)
    assert reply.status == 200 and b'<LogoffResponse xmlns="urn:xtk:session"/>' in reply.body
    assert _fault(live.post(_push(token=token))).startswith("XSV-350008")


def test_logon_bad_password(live: Live) -> None:
    """A failed Logon is the 'Error while reading parameters' fault, not XSV-350008."""
    reply = live.post(live.fixture("logon.xml").replace(b"s3cret", b"nope"))
    assert _fault(reply) == (
        "Error while reading parameters of method 'Logon' of service 'xtk:session'."
    )
    assert "XSV-350008" not in reply.text


def test_expired_session_token(live: Live) -> None:
    """A session token past its expiry is XSV-350008."""
    token = _logon(live)
    with live.engine.begin() as conn:
        conn.execute(update(sessions).values(expires_at=datetime(2000, 1, 1)))
    before = live.count_events()
    assert _fault(live.post(_push(token=token))).startswith("XSV-350008")
    _nothing_stored(live, before)


def test_caller_outside_every_zone(live: Live) -> None:
    """A caller placed outside every zone (via a declared proxy's X-Forwarded-For) is refused."""
    before = live.count_events()
    reply = live.post(_push(), {"X-Forwarded-For": "203.0.113.9"})
    assert _fault(reply).startswith("XSV-350013")
    _nothing_stored(live, before)


def test_bearer_api_key_with_empty_token(live: Live) -> None:
    """`Authorization: Bearer <key>` with an empty token element pushes; a bad key faults."""
    out = run_cli(live.env, "--json", "apikey", "create", f"k-{uuid.uuid4().hex[:6]}").stdout
    data = json.loads(out)
    key = data["key"] if isinstance(data, dict) else data[0]["key"]
    body = live.fixture("push_empty_token.xml")
    reply = live.post(body, {"Authorization": f"Bearer {key}"})
    assert reply.status == 200, reply.text
    reply = live.post(body, {"Authorization": "Bearer mc_not-a-key"})
    assert _fault(reply).startswith("Error while reading parameters")


def test_get_entity_if_more_recent_is_dispatched(live: Live) -> None:
    """xtk:persist#GetEntityIfMoreRecent answers the schema document in pdomDoc."""
    body = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        '<m:GetEntityIfMoreRecent xmlns:m="urn:xtk:persist">'
        f"<sessiontoken>{TOKEN}</sessiontoken><pk>xtk:schema|nms:rtEvent</pk><md5/>"
        "<mustExist>false</mustExist></m:GetEntityIfMoreRecent></s:Body></s:Envelope>"
    ).encode()
    reply = live.post(body)
    assert reply.status == 200, reply.text
    assert b'<GetEntityIfMoreRecentResponse xmlns="urn:xtk:persist">' in reply.body
    assert b'<schema xmlns="" ' in reply.body


def test_no_body_or_password_in_the_logs(live: Live) -> None:
    """After all the above, the server log holds neither body content nor a password."""
    live.post(_push(token="pusher/wrong-" + MARKER))
    log = live.server_log()
    assert "soap.fault" in log
    assert MARKER not in log
    assert "s3cret" not in log
    assert "Traceback" not in log
