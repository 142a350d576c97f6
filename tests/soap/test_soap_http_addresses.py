"""Channel addresses at ingest, over real HTTP (SOAP ``PushEvent``), on SQLite and
PostgreSQL: an SMS event's ``mobilePhone`` is stored in E.164 or refused with a Client
fault naming the attribute (never echoing the number), nothing stored; an email event
keeps a number it cannot normalise as sent (existing callers work unchanged); a push
event needs its ``registrationToken``."""

from __future__ import annotations

import re

import pytest
from live_server import TOKEN, Live, live_fixture  # noqa: F401 - the `live` fixture

PLID = re.compile(rb'<plId xsi:type="xsd:long">(\d+)</plId>')


def _push(attrs: str) -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{TOKEN}</urn:sessiontoken><urn:domEvent>"
        f'<rtEvent type="order_shipped" {attrs}><ctx/></rtEvent>'
        "</urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    ).encode()


def _stored(live: Live, attrs: str) -> dict:
    reply = live.post(_push(attrs))
    assert reply.status == 200, reply.text
    match = PLID.search(reply.body)
    assert match
    row = live.stored(int(match.group(1)))
    assert row is not None
    return row


@pytest.mark.parametrize(("number", "problem"), [
    ("+331", "is too short"),
    ("06 12 34 56 78", "has no country code"),
    ("+33 6 12 34 56 78 90 12", "is too long"),
    ("+33 call me", "is not a phone number"),
    ("+999 1234567", "has an unknown country code"),
])
def test_an_sms_number_that_cannot_be_e164_is_a_client_fault(live: Live, number: str,
                                                            problem: str) -> None:
    """The fault names the attribute and the problem, never the number; nothing stored."""
    before = live.count_events()
    reply = live.post(_push(f'wishedChannel="1" mobilePhone="{number}"'))
    assert reply.status == 500 and b"<faultcode>SOAP-ENV:Client</faultcode>" in reply.body
    faultstring = re.search(r"<faultstring[^>]*>(.*?)</faultstring>", reply.text, re.S)
    assert faultstring and f"attribute 'mobilePhone' {problem}" in faultstring.group(1)
    assert number not in reply.text
    assert live.count_events() == before


def test_an_sms_number_is_stored_in_e164(live: Live) -> None:
    """0033 6 12-34-56-78 → +33612345678."""
    row = _stored(live, 'wishedChannel="1" mobilePhone="0033 6 12-34-56-78"')
    assert row["mobile_phone"] == "+33612345678"


def test_an_email_event_keeps_a_number_it_cannot_normalise(live: Live) -> None:
    """An email event's mobilePhone is template data: normalised when it can be, else
    kept as sent, never refused."""
    kept = _stored(live, 'email="a@example.com" mobilePhone="ext. 42"')
    normalised = _stored(live, 'email="a@example.com" mobilePhone="+33 6 12 34 56 78"')
    assert (kept["mobile_phone"], normalised["mobile_phone"]) == ("ext. 42", "+33612345678")


def test_a_push_event_needs_a_registration_token(live: Live) -> None:
    """wishedChannel 41 without registrationToken: a Client fault naming it."""
    before = live.count_events()
    reply = live.post(_push('wishedChannel="41"'))
    assert reply.status == 500 and b"registrationToken" in reply.body
    assert live.count_events() == before
