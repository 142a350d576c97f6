"""``schema/event.xsd`` describes the event element SPEC §2.4 defines and ingest accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from soap_service.soap.envelope import HttpFacts, event_list, normalise, single_event
from soap_service.soap.router import METHODS
from soap_service.xmlsafe import parse_document

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "soap"
SPEC_ATTRIBUTES = {
    "type", "email", "mobilePhone", "wishedChannel", "emailFormat", "externalId", "origin",
    "language", "country", "scheduled", "expiration", "registrationToken", "idempotencyKey",
}


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(ROOT / "schema" / "event.xsd")))


def _events(name: str) -> list[etree._Element]:
    request = normalise(parse_document((FIXTURES / name).read_bytes(), 64), HttpFacts())
    assert (request.service, request.method) in METHODS
    params = request.args[1:]  # these fixtures all send the token first
    if request.method == "PushEvent":
        event = single_event(params[0], request.namespace)
        return [event] if event is not None else []
    return event_list(params[0], request.namespace)


def test_every_spec_attribute_is_declared() -> None:
    """Each attribute of SPEC §2.4 (and our idempotencyKey) is declared; unknown ones allowed."""
    doc = etree.parse(str(ROOT / "schema" / "event.xsd"))
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    event_type = doc.find("xs:complexType[@name='Event']", xs)
    assert event_type is not None
    declared = {a.get("name") for a in event_type.iterfind("xs:attribute", xs)}
    assert declared == SPEC_ATTRIBUTES
    assert event_type.find("xs:anyAttribute", xs) is not None


@pytest.mark.parametrize(
    "name",
    ["push_doclit_prefixed.xml", "push_default_ns.xml", "push_rpc_encoded.xml",
     "push_sdk_batch.xml", "pushevents_wrapped.xml", "pushevents_sdk_batch.xml"],
)
def test_normalised_fixture_events_are_valid(schema: etree.XMLSchema, name: str) -> None:
    """Events of the dialect fixtures, once normalised, validate against the XSD."""
    events = _events(name)
    assert events
    for event in events:
        assert schema.validate(event), schema.error_log


@pytest.mark.parametrize(
    "markup",
    [
        '<rtEvent email="a@example.com"><ctx/></rtEvent>',  # no type
        '<rtEvent type="t" email="a@example.com"/>',  # no ctx
        '<rtEvent type="t" wishedChannel="7"><ctx/></rtEvent>',  # unknown channel
        '<rtEvent type="t" scheduled="tomorrow"><ctx/></rtEvent>',  # not ISO 8601
    ],
)
def test_invalid_events_are_rejected(schema: etree.XMLSchema, markup: str) -> None:
    """What SPEC §2.4 forbids does not validate."""
    assert not schema.validate(etree.fromstring(markup))


def test_unknown_attributes_and_ctx_content_are_allowed(schema: etree.XMLSchema) -> None:
    """Unknown attributes are kept, not rejected; ctx holds any XML."""
    event = etree.fromstring(
        '<batchEvent type="t" custom="x" scheduled="2026-01-02T03:04:05Z">'
        '<mobileApp uuid="u1"/><ctx a="1"><any><thing/></any>text</ctx></batchEvent>'
    )
    assert schema.validate(event), schema.error_log
