"""Responses and faults in the suite's exact form (SPEC §2.2, §2.6), byte for byte."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from soap_service.errors import (
    InvalidCredentials,
    ServerError,
    SessionExpired,
    ValidationFailed,
    ZoneDenied,
)
from soap_service.soap.envelope import VersionMismatch
from soap_service.soap.faults import fault_for
from soap_service.soap.response import Dom, Scalar, fault_envelope, ids_markup, result_envelope
from soap_service.xmlsafe import InvalidXml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "soap"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def test_push_event_response_is_the_spec_example_byte_for_byte() -> None:
    """PushEventResponse matches SPEC §2.2's example exactly, prefixes and spacing included."""
    body = result_envelope(
        "nms:rtEvent", "PushEvent", [Scalar("plId", "xsd:long", "72057594037935966")]
    )
    assert body == (FIXTURES / "response_pushevent.xml").read_bytes()


def test_push_events_ids_are_unqualified_and_in_order() -> None:
    """pdomIds holds <ids xmlns=""> with one <id plId externalId> per event, in order."""
    markup = ids_markup([(72057594037927937, "c-1"), (72057594037927938, None)])
    body = result_envelope("nms:rtEvent", "PushEvents", [Dom("pdomIds", markup)])
    root = etree.fromstring(body)
    ns = "{urn:nms:rtEvent}"
    pdom = root.find(f"{{{ENV}}}Body/{ns}PushEventsResponse/{ns}pdomIds")
    assert pdom is not None
    assert pdom.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "ns:Element"
    ids = pdom.find("ids")  # no namespace: the default one was undeclared
    assert ids is not None
    assert [(i.get("plId"), i.get("externalId")) for i in ids] == [
        ("72057594037927937", "c-1"), ("72057594037927938", None)
    ]
    assert b'<PushEventsResponse xmlns="urn:nms:rtEvent">' in body


def test_dom_element_without_namespace_is_undeclared() -> None:
    """An lxml element result gets xmlns="" so it stays out of the response namespace."""
    element = etree.fromstring(b"<schema name='rtEvent'><methods/></schema>")
    body = result_envelope("xtk:persist", "GetEntityIfMoreRecent", [Dom("pdomDoc", element)])
    root = etree.fromstring(body)
    assert root.find(".//{urn:xtk:persist}pdomDoc/schema/methods") is not None


def test_values_have_no_surrounding_whitespace_and_are_escaped() -> None:
    """Scalar values are written verbatim and escaped."""
    part = Scalar("pstrSessionToken", "xsd:string", "a<&>b")
    body = result_envelope("xtk:session", "Logon", [part])
    assert b'<pstrSessionToken xsi:type="xsd:string">a&lt;&amp;&gt;b</pstrSessionToken>' in body


def test_fault_form() -> None:
    """Faults are SOAP-ENV:Fault with faultcode, faultstring and detail, SOAP-ENV prefixed."""
    body = fault_envelope("Client", "bad <thing>", "longer")
    assert b"<SOAP-ENV:Fault>" in body
    assert b"<faultcode>SOAP-ENV:Client</faultcode>" in body
    assert b'<faultstring xsi:type="xsd:string">bad &lt;thing&gt;</faultstring>' in body
    assert b'<detail xsi:type="xsd:string">longer</detail>' in body
    etree.fromstring(body)


def test_fault_wording_per_error() -> None:
    """Each of our errors maps to the suite's wording and code (SPEC §2.6)."""
    bad = fault_for(InvalidCredentials("x", "no such operator"), "nms:rtEvent", "PushEvent")
    assert bad.code == "Client"
    assert bad.faultstring == (
        "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'."
    )
    assert bad.detail == "Invalid login or password. Connection denied."
    expired = fault_for(SessionExpired("Session token expired"), "nms:rtEvent", "PushEvent")
    assert expired.faultstring.startswith("XSV-350008")
    zone = fault_for(ZoneDenied("XSV-350013 IP address not allowed"), "nms:rtEvent", "PushEvent")
    assert zone.faultstring.startswith("XSV-350013")
    assert "XSV-350008" not in bad.faultstring + bad.detail
    xml = fault_for(InvalidXml("not well-formed", "line 1"), "nms:rtEvent", "PushEvent")
    assert xml.faultstring == (
        "The XML SOAP message is invalid (service 'nms:rtEvent', method 'PushEvent')."
    )
    assert xml.detail == "line 1"
    assert fault_for(VersionMismatch("v"), "", "").code == "VersionMismatch"
    validation = fault_for(ValidationFailed("event #3: missing attribute 'type'"), "s", "m")
    assert validation.code == "Client"
    assert validation.faultstring == "event #3: missing attribute 'type'"


def test_internal_errors_get_an_error_id_and_no_internals(caplog) -> None:
    """An unexpected exception is a Server fault with an error id that is also logged."""
    fault = fault_for(RuntimeError("secret internals /etc/x"), "nms:rtEvent", "PushEvent")
    assert fault.code == "Server"
    assert "secret" not in fault.faultstring + fault.detail
    error_id = fault.faultstring.split("error id ")[1].rstrip(").")
    assert error_id in caplog.text
    db = fault_for(ServerError("database unavailable", "conn refused at 10.0.0.1"), "s", "m")
    assert db.code == "Server" and "10.0.0.1" not in db.faultstring + db.detail
