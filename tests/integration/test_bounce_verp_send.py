"""VERP on sends: with MC_BOUNCE_DOMAIN set, each email leaves a real SMTP relay (aiosmtpd)
with the event's signed return path as its envelope sender (MAIL FROM)."""

from __future__ import annotations

import pytest
from dispatch_support import (
    add_events,
    event_row,
    past,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
)
from sqlalchemy import update

from soap_service.bounces.verp import parse_return_path
from soap_service.devsmtp import Fault, MailSink
from soap_service.models import EventStatus
from soap_service.store.events import get_event
from soap_service.tables import events
from soap_service.worker import Dispatcher

DOMAIN = "bounce.shop.example"


@pytest.fixture
def make_dispatcher(settings, db):
    made: list[Dispatcher] = []

    def _make(sink: MailSink, **kw) -> Dispatcher:
        d = Dispatcher(sink_settings(settings, sink, **kw), db, router=stand_in_router,
                       renderer=stand_in_renderer, types=lambda db, name: None)
        made.append(d)
        return d

    yield _make
    for d in made:
        d.close()


def test_each_message_has_its_own_signed_return_path(db, settings, make_dispatcher):
    """MAIL FROM is bounces+<token>@<domain>; the token names the message's event and
    attempt 1 and verifies with the secret; the From header is the template's."""
    with MailSink() as sink:
        ids = add_events(db, [event_row(i) for i in range(3)])
        d = make_dispatcher(sink, bounce_domain=DOMAIN)
        d.tick()
        got = sink.wait_for(3)
    by_event = {int(m.message["X-MC-Event-Id"]): m for m in got}
    assert sorted(by_event) == sorted(ids)
    for pk, received in by_event.items():
        assert received.mail_from.startswith("bounces+")
        assert received.mail_from.endswith("@" + DOMAIN)
        assert parse_return_path(received.mail_from, settings.secret, DOMAIN) == (pk, 1)
        assert parse_return_path(received.mail_from, "another secret", DOMAIN) is None
        assert received.message["From"] == "shop@example.org"
    assert len({m.mail_from for m in got}) == 3


def test_retry_names_the_next_attempt(db, settings, make_dispatcher):
    """A message sent again after a temporary failure carries attempt 2."""

    def plan(rcpt: str, attempt: int) -> Fault | None:
        return Fault("451 4.3.0 try later", "rcpt") if attempt == 1 else None

    with MailSink(plan=plan) as sink:
        [pk] = add_events(db, [event_row(1)])
        d = make_dispatcher(sink, bounce_domain=DOMAIN)
        d.tick()
        assert get_event(db, pk).status is EventStatus.PENDING
        with db.begin() as conn:  # due again now, rather than after the backoff
            conn.execute(update(events).where(events.c.id == pk).values(process_at=past(1)))
        d.tick()
        [received] = sink.wait_for(1)
    assert parse_return_path(received.mail_from, settings.secret, DOMAIN) == (pk, 2)


def test_without_bounce_domain_the_from_address_is_the_envelope_sender(db, make_dispatcher):
    with MailSink() as sink:
        add_events(db, [event_row(1)])
        make_dispatcher(sink).tick()
        [received] = sink.wait_for(1)
    assert received.mail_from == "shop@example.org"


def test_metadata_header_carries_the_return_path(db, settings, make_dispatcher):
    """MC_BOUNCE_METADATA_HEADER (Postmark's metadata) repeats the return path in a header."""
    with MailSink() as sink:
        [pk] = add_events(db, [event_row(1)])
        make_dispatcher(sink, bounce_domain=DOMAIN,
                        bounce_metadata_header="X-PM-Metadata-mc-return-path").tick()
        [received] = sink.wait_for(1)
    assert received.message["X-PM-Metadata-mc-return-path"] == received.mail_from
    assert parse_return_path(received.mail_from, settings.secret, DOMAIN) == (pk, 1)


def test_metadata_header_must_be_a_header_name():
    from soap_service.config import load_settings
    from soap_service.errors import ConfigError

    with pytest.raises(ConfigError):
        load_settings({"MC_BOUNCE_METADATA_HEADER": "X-Bad: injected"})
