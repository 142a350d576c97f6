"""Dialect normalisation (SPEC §2.3), in process: every form gives one canonical request."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from soap_service.soap.envelope import (
    HttpFacts,
    VersionMismatch,
    bind_params,
    event_list,
    normalise,
    parse_action,
    single_event,
    split_token,
)
from soap_service.soap.router import METHODS
from soap_service.xmlsafe import InvalidXml, parse_document

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "soap"


def _request(name: str, http: HttpFacts | None = None):
    root = parse_document((FIXTURES / name).read_bytes(), 64)
    request = normalise(root, http or HttpFacts())
    method = METHODS[(request.service, request.method)]
    token_el, args = split_token(request.args, method.names)
    token = "".join(token_el.itertext()).strip() if token_el is not None else ""
    return request, token or request.token, bind_params(args, method.params)


@pytest.mark.parametrize(
    ("name", "external_id"),
    [
        ("push_doclit_prefixed.xml", "1242"),
        ("push_doclit_unprefixed.xml", "u-1"),
        ("push_default_ns.xml", "d-1"),
        ("push_xmlns_empty.xml", "e-1"),
        ("push_rpc_encoded.xml", "r-1"),
        ("push_positional.xml", "p-1"),
    ],
)
def test_push_event_dialects_give_one_canonical_event(name: str, external_id: str) -> None:
    """Each PushEvent dialect yields service, method, token and an un-namespaced event."""
    request, token, params = _request(name)
    assert (request.service, request.method) == ("nms:rtEvent", "PushEvent")
    assert token == "pusher/s3cret"
    event = single_event(params[0], request.namespace)
    assert event is not None
    assert event.get("externalId") == external_id
    assert event.get("type") == "order_confirmation"
    # no namespace left anywhere in the event, and no stray declarations
    assert all("{" not in el.tag for el in event.iter())
    assert event.find("ctx") is not None
    assert b"xmlns" not in etree.tostring(event)


def test_sdk_batch_form_empty_xsi_type_and_event_root_named_event() -> None:
    """The SDK's batch call (`<event xsi:type="">` holding `<event>`) is understood."""
    request, token, params = _request("push_sdk_batch.xml")
    assert (request.service, request.method) == ("nms:batchEvent", "PushEvent")
    assert token == "pusher/s3cret"
    event = single_event(params[0], request.namespace)
    assert event is not None and event.tag == "event" and event.get("externalId") == "b-1"


def test_push_events_collections() -> None:
    """PushEvents finds events under any wrapper name, in order."""
    request, _, params = _request("pushevents_wrapped.xml")
    events = event_list(params[0], request.namespace)
    assert [e.get("email") for e in events] == ["a@example.com", "b@example.com", "c@example.com"]
    request, _, params = _request("pushevents_sdk_batch.xml")
    assert request.service == "nms:batchEvent"
    assert [e.get("externalId") for e in event_list(params[0], request.namespace)] == ["x-1", "x-2"]


@pytest.mark.parametrize(
    ("http", "expected"),
    [
        (HttpFacts(cookie="other=1; __sessiontoken=cookie/tok"), "cookie/tok"),
        (HttpFacts(cookie="__sessiontoken=a/p=ss,[]; x=1", session_header="h/t"), "a/p=ss,[]"),
        (HttpFacts(session_header="header/tok"), "header/tok"),
        (HttpFacts(), ""),
    ],
)
def test_token_fallbacks_when_element_empty(http: HttpFacts, expected: str) -> None:
    """An empty token element falls back to the cookie, then X-Session-Token."""
    _, token, _ = _request("push_empty_token.xml", http)
    assert token == expected


def test_bearer_is_read_from_authorization() -> None:
    """`Authorization: Bearer KEY` gives the request its bearer key."""
    root = parse_document((FIXTURES / "push_empty_token.xml").read_bytes(), 64)
    request = normalise(root, HttpFacts(authorization="Bearer mc_abc"))
    assert request.bearer == "mc_abc"
    assert normalise(root, HttpFacts(authorization="Basic eA==")).bearer is None


def test_token_from_sdk_header_cookie_element() -> None:
    """The SDK's `<Cookie>__sessiontoken=...</Cookie>` SOAP header is a token source."""
    root = parse_document((FIXTURES / "push_sdk_batch.xml").read_bytes(), 64)
    assert normalise(root, HttpFacts()).token == "pusher/s3cret"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"nms:rtEvent#PushEvent"', ("nms:rtEvent", "PushEvent")),
        ("nms:batchEvent#PushEvents", ("nms:batchEvent", "PushEvents")),
        ("urn:xtk:session#Logon", ("xtk:session", "Logon")),
        ('""', None),
        ("http://example.com/whatever", None),
    ],
)
def test_parse_action(value: str, expected: tuple[str, str] | None) -> None:
    """SOAPAction values: quotes and `urn:` optional; anything else is ignored."""
    assert parse_action(value) == expected


def test_method_from_soapaction_header_beats_body() -> None:
    """An unqualified body method is resolved by the SOAPAction header or ?soapAction=."""
    root = parse_document((FIXTURES / "push_body_only_method.xml").read_bytes(), 64)
    assert normalise(root, HttpFacts()).service == ""
    by_header = normalise(root, HttpFacts(soap_action='"nms:rtEvent#PushEvent"'))
    assert (by_header.service, by_header.method) == ("nms:rtEvent", "PushEvent")
    by_query = normalise(root, HttpFacts(query_action="nms:batchEvent#PushEvent"))
    assert (by_query.service, by_query.method) == ("nms:batchEvent", "PushEvent")


def test_logon_parameters_by_name_and_position() -> None:
    """Logon binds login and password; a missing token element is not taken from them."""
    request, token, params = _request("logon.xml")
    assert token == ""
    assert [p.text for p in params[:2]] == ["pusher", "s3cret"]
    body = (FIXTURES / "logon.xml").read_bytes().replace(b"<urn:sessiontoken/>", b"")
    root = parse_document(body, 64)
    request = normalise(root, HttpFacts())
    method = METHODS[("xtk:session", "Logon")]
    token_el, args = split_token(request.args, method.names)
    assert token_el is None
    assert [p.text for p in bind_params(args, method.params)[:2]] == ["pusher", "s3cret"]


def test_soap12_is_version_mismatch_and_non_soap_is_invalid() -> None:
    """A SOAP 1.2 envelope raises VersionMismatch; another root raises InvalidXml."""
    root = parse_document((FIXTURES / "soap12.xml").read_bytes(), 64)
    with pytest.raises(VersionMismatch):
        normalise(root, HttpFacts())
    with pytest.raises(InvalidXml):
        normalise(parse_document(b"<hello/>", 64), HttpFacts())
    envelope = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'
    with pytest.raises(InvalidXml):
        normalise(parse_document(envelope, 64), HttpFacts())
