"""Email as one connector kind among others: two ``smtp`` relays with failover, through
the whole pipeline (worker rounds, the real catalog and renderer), on SQLite and
PostgreSQL; and a relay refusing the recipient quarantines the email address only."""

from __future__ import annotations

import pytest
from channel_support import (
    attempts,
    connector,
    dispatcher_factory,
    publish_templates,
    push_event,
    status,
)

from soap_service import exclusions
from soap_service.devserve import free_port
from soap_service.devsmtp import Fault, MailSink
from soap_service.models import AddressKind, Channel, EventStatus

make_dispatcher = pytest.fixture(dispatcher_factory, name="make_dispatcher")


def _relay(name: str, port: int, priority: int, **options) -> object:
    return connector(name, Channel.EMAIL, "smtp", priority, host="127.0.0.1", port=port,
                     timeout=5, **options)


def test_a_relay_that_is_down_fails_over_to_the_next(db, settings, make_dispatcher):
    """relay-a (priority 1) refuses connections: the mail goes through relay-b, whose name
    the delivery log records; MC_SMTP_* are not used once relays are declared."""
    publish_templates(db)
    with MailSink() as sink:
        pk = push_event(db, settings, email="ann@example.com")
        d = make_dispatcher(settings.replace(connectors=(
            _relay("relay-a", free_port(), 1), _relay("relay-b", sink.port, 2)),
            smtp_port=free_port()), db)
        assert d.tick().sent == 1
        [mail] = sink.wait_for(1)
    assert mail.rcpt_tos == ("ann@example.com",)
    [attempt] = attempts(db, pk)
    assert (attempt.channel, attempt.connector, attempt.outcome) == ("email", "relay-b", "sent")
    assert attempt.message_id == mail.message_id


def test_a_refused_recipient_quarantines_the_email_address_only(db, settings,
                                                                make_dispatcher):
    """550 at RCPT: deliveryFailed, the address quarantined as an email (the default relay
    `smtp` named in the entry); the next event to it is ignored."""
    publish_templates(db)
    plan = lambda rcpt, attempt: Fault("550 5.1.1 no such user", "rcpt")  # noqa: E731
    with MailSink(plan=plan) as sink:
        first = push_event(db, settings, email="gone@example.com")
        d = make_dispatcher(settings.replace(smtp_host=sink.host, smtp_port=sink.port), db)
        d.tick()
        second = push_event(db, settings, email="GONE@example.com")
        d.tick()
    assert status(db, first) is EventStatus.DELIVERY_FAILED
    entry = exclusions.lookup(db, "gone@example.com", AddressKind.EMAIL)
    assert entry is not None and "(smtp)" in entry.reason
    assert status(db, second) is EventStatus.IGNORED
    assert attempts(db, first)[0].connector == "smtp"
