"""Unit tests for ``soap_service.soap.persist``: request values -> schema document."""

from __future__ import annotations

import pytest
from lxml import etree

from soap_service.errors import ClientError
from soap_service.soap import persist


def _methods(doc: etree._Element) -> dict[str, list[tuple[str, str, str]]]:
    return {
        m.get("name"): [(p.get("name"), p.get("type"), p.get("inout")) for p in m.iter("param")]
        for m in doc.find("methods")
    }


@pytest.mark.parametrize(
    ("pk", "namespace", "name", "element"),
    [
        ("xtk:schema|nms:rtEvent", "nms", "rtEvent", "rtEvent"),
        ("xtk:schema|nms:batchEvent", "nms", "batchEvent", "batchEvent"),
    ],
)
def test_schema_document_describes_push_methods(pk, namespace, name, element):
    """Each schema names itself and declares PushEvent / PushEvents as the SDK reads them."""
    doc = persist.get_entity_if_more_recent(pk)
    assert doc is not None
    assert doc.tag == "schema"
    assert (doc.get("namespace"), doc.get("name")) == (namespace, name)
    assert doc.get("implements") is None  # would make the SDK fetch xtk:session too
    assert doc.find("element").get("name") == element
    assert _methods(doc) == {
        "PushEvent": [("event", "DOMDocument", "in"), ("id", "int64", "out")],
        "PushEvents": [("eventCollection", "DOMDocument", "in"), ("ids", "DOMDocument", "out")],
    }
    assert all(m.get("static") == "true" for m in doc.iter("method"))


def test_md5_is_stable_and_current_md5_returns_nothing():
    """The document carries an upper-case md5; asking again with it means 'not more recent'."""
    doc = persist.get_entity_if_more_recent("xtk:schema|nms:rtEvent")
    md5 = doc.get("md5")
    assert md5 and len(md5) == 32 and md5 == md5.upper()
    assert persist.get_entity_if_more_recent("xtk:schema|nms:rtEvent").get("md5") == md5
    assert persist.get_entity_if_more_recent("xtk:schema|nms:rtEvent", md5.lower()) is None
    other = persist.get_entity_if_more_recent("xtk:schema|nms:batchEvent").get("md5")
    assert other != md5
    assert persist.get_entity_if_more_recent("xtk:schema|nms:rtEvent", other) is not None


def test_returned_documents_are_independent_copies():
    """A caller that edits the returned element does not change what the next caller gets."""
    first = persist.schema_document("nms:rtEvent")
    first.set("name", "tampered")
    first.find("methods").clear()
    second = persist.schema_document("nms:rtEvent")
    assert second.get("name") == "rtEvent"
    assert len(second.find("methods")) == 2


@pytest.mark.parametrize(
    "pk",
    [
        "xtk:schema|xtk:session",
        "xtk:schema|nms:recipient",
        "xtk:srcSchema|nms:rtEvent",
        "xtk:form|nms:rtEvent",
        "nms:rtEvent",
        "xtk:schema|",
        "x" * 500,
    ],
)
def test_anything_else_is_a_client_fault(pk):
    """Entities we do not describe give a short Client error naming the entity and what exists."""
    with pytest.raises(ClientError) as info:
        persist.get_entity_if_more_recent(pk, must_exist=False)
    err = info.value
    assert err.fault_code == "Client"
    assert "is not available on this server" in err.message
    assert len(err.message) < 200
    assert "xtk:schema|nms:rtEvent" in err.detail
    assert "XSV-350008" not in err.message + err.detail  # never read as "session expired"


def test_handler_takes_positional_values_and_elements():
    """The dispatch entry accepts strings or parameter elements by position; pk is required."""
    pk = etree.fromstring(
        '<pk xsi:type="xsd:string" xmlns:xsi="urn:x"> xtk:schema|nms:batchEvent </pk>'
    )
    doc = persist.handle_get_entity_if_more_recent([pk, "", "false"])
    assert doc.get("name") == "batchEvent"
    doc = persist.handle_get_entity_if_more_recent(["xtk:schema|nms:rtEvent"])
    assert doc.get("name") == "rtEvent"
    with pytest.raises(ClientError, match="Missing parameter 'pk'"):
        persist.handle_get_entity_if_more_recent([])
