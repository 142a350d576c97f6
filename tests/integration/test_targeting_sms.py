"""A profile-based SMS (SQLite and PostgreSQL): the number comes from the profile, the
template reads the profile and writes the unsubscribe link, and an SMS opt-out ignores
later SMS but not email."""

from __future__ import annotations

import pytest
from channel_support import (
    TYPE,
    attempts,
    dispatcher_factory,
    publish_templates,
    push_event,
    smpp,
)
from servers.smsc import Smsc

from soap_service import catalog, profiles
from soap_service.models import Channel, EventStatus, Targeting
from soap_service.store.events import get_event

make_dispatcher = pytest.fixture(dispatcher_factory, name="make_dispatcher")


def test_profile_based_sms(db, settings, make_dispatcher) -> None:
    """An SMS event naming C1 without a number reaches C1's number with the profile's
    first name and a link; after an SMS opt-out the next one ends ignored, unsent."""
    publish_templates(db)
    catalog.update_event_type(db, TYPE, targeting=Targeting.PROFILE)
    catalog.edit_template(db, "ship_sms", sms="Hi {{ profile.firstName }}, order "
                          "<%= rtEvent.ctx.order.@id %> shipped. Stop: {{ unsubscribeUrl() }}")
    catalog.publish(db, "ship_sms", "test")
    profiles.put(db, "C1", {"mobilePhone": "+33612345678", "firstName": "Ann",
                            "email": "ann@example.com"})
    s = settings.replace(public_url="https://mc.example.com")
    with Smsc() as smsc:
        d = make_dispatcher(s.replace(connectors=(smpp("smsc-a", smsc.port),)), db)
        sent = push_event(db, s, wishedChannel="1", externalId="C1")
        d.tick()
        smsc.wait(lambda: len(smsc.messages) == 1)
        [message] = smsc.messages
        assert message.destination == "33612345678"
        assert message.text.startswith("Hi Ann, order A1 shipped. Stop: https://mc.example.com/u/")
        [attempt] = attempts(db, sent)
        assert attempt.address == "+33612345678"
        profiles.set_subscription(db, "C1", Channel.SMS, subscribed=False)
        later = push_event(db, s, wishedChannel="1", externalId="C1")
        d.tick()
    assert get_event(db, later).status is EventStatus.IGNORED
    assert get_event(db, later).last_error == "unsubscribed"
    assert len(smsc.messages) == 1
