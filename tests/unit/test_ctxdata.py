"""Event data typed by people (push --ctx/--ctx-json, seeds, previews) becomes one <ctx>."""

from __future__ import annotations

import pytest
from lxml import etree

from soap_service.ctxdata import ctx_from_json, ctx_from_xml, ctx_text
from soap_service.errors import ValidationFailed


def test_json_objects_nest_lists_repeat_at_keys_are_attributes() -> None:
    """JSON objects nest, lists repeat, @keys are attributes, #text is text, booleans are
    written the way templates compare them."""
    ctx = ctx_from_json('{"client": {"firstname": "Ann", "@id": 7}, '
                        '"article": [{"name": "A"}, {"name": "B", "#text": "t"}], "vip": true}')
    assert etree.tostring(ctx) == (
        b'<ctx><client id="7"><firstname>Ann</firstname></client>'
        b"<article><name>A</name></article><article>t<name>B</name></article>"
        b"<vip>true</vip></ctx>")


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '{"bad name": 1}', '"text"'])
def test_json_that_cannot_be_a_ctx_is_refused(text: str) -> None:
    """A JSON array, invalid JSON or a key that is no XML name is a one-line client error."""
    with pytest.raises(ValidationFailed):
        ctx_from_json(text)


@pytest.mark.parametrize("text", [
    "<ctx><client>Ann</client></ctx>",
    '<rtEvent type="t"><ctx><client>Ann</client></ctx></rtEvent>',
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><PushEvent>'
    '<domEvent><rtEvent type="t"><ctx><client>Ann</client></ctx></rtEvent></domEvent>'
    "</PushEvent></s:Body></s:Envelope>",
    "<client>Ann</client>",
])
def test_xml_gives_the_first_ctx_or_wraps_bare_content(text: str) -> None:
    """A <ctx>, an event, a saved SOAP request or bare content all give the same <ctx>."""
    assert ctx_text(ctx_from_xml(text)) == "<ctx><client>Ann</client></ctx>"


def test_an_event_file_without_ctx_is_refused_when_not_wrapping() -> None:
    """Seeds and previews read event files: one without <ctx> is an error, not wrapped."""
    with pytest.raises(ValidationFailed, match="no <ctx>"):
        ctx_from_xml("<rtEvent type='x' email='a@example.com'/>", wrap_bare=False)
    assert ctx_text(ctx_from_xml("<client/>")) == "<ctx><client/></ctx>"


def test_xml_entities_are_not_expanded() -> None:
    """A DTD's entities are never expanded (no file or network access from test data)."""
    text = ('<!DOCTYPE ctx [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            "<ctx><a>&x;</a></ctx>")
    try:
        ctx = ctx_from_xml(text)
    except ValidationFailed:
        return
    assert b"root:" not in etree.tostring(ctx)
