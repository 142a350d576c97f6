"""Profile-based events through the real pipeline (catalog, renderer, worker, an SMTP
sink), on SQLite and PostgreSQL: every targeting policy path, unsubscribed profiles,
fatigue rules at N and N+1, RFC 8058 headers."""

from __future__ import annotations

import pytest
from lxml import etree

from soap_service import catalog, fatigue, ingest, profiles, proof, unsubscribe
from soap_service.devsmtp import MailSink
from soap_service.models import (
    Channel,
    EventStatus,
    EventType,
    FatigueRule,
    Lane,
    MissingProfile,
    Queue,
    ReconcileOn,
    Targeting,
    TemplateContent,
    split_plid,
)
from soap_service.store import exclusions as store_exclusions
from soap_service.store.events import get_event
from soap_service.worker import Dispatcher

HTML = ('<p>Hello {{ profile.firstName }} <%= profile.lastName %>, tier '
        '{{ profile.attributes.tier }} / <%= profile.attributes.tier %>; order '
        '<%= rtEvent.ctx.order.@id %></p><p><a href="https://shop.example.com/">shop</a> '
        '<a href="{{ unsubscribeUrl() }}">unsubscribe</a></p>')


def _type(db, name: str, *, missing: MissingProfile = MissingProfile.FAIL,
          reconcile: ReconcileOn = ReconcileOn.EXTERNAL_ID, lane: Lane = Lane.TRANSACTIONAL):
    catalog.add_event_type(db, EventType(name=name, lane=lane, targeting=Targeting.PROFILE,
                                         reconcile_on=reconcile, missing_profile=missing))
    catalog.create_template(db, f"{name}_email", name, Channel.EMAIL, TemplateContent(
        from_addr="shop@example.org", subject="Hi {{ profile.firstName }}", html=HTML))
    catalog.publish(db, f"{name}_email", "test")


def _push(db, settings, attrs: str, event_type: str = "news") -> int:
    xml = f'<e type="{event_type}" {attrs}><ctx><order id="A-1"/></ctx></e>'
    return split_plid(ingest.store_event(db, settings, etree.fromstring(xml), Queue.RT))[1]


@pytest.fixture
def world(settings, db):
    """A dispatcher on a real SMTP sink, and one profile C1."""
    profiles.put(db, "C1", {"email": "ann@example.com", "firstName": "Ann", "lastName": "Lee",
                            "attributes": {"tier": "gold"}})
    with MailSink() as sink:
        s = settings.replace(smtp_host=sink.host, smtp_port=sink.port,
                             public_url="https://mc.example.com")
        d = Dispatcher(s, db)
        try:
            yield db, s, d, sink
        finally:
            d.close()
            fatigue.clear_cache()


def _status(db, pk: int) -> tuple[EventStatus, str | None]:
    e = get_event(db, pk)
    assert e is not None
    return e.status, e.last_error


def test_profile_found_address_and_data_from_the_profile(world) -> None:
    """An event naming C1 by externalId, without an email, is sent to the profile's
    address with profile data in both syntaxes, a one-click link (not click-tracked)
    and RFC 8058 headers whose link verifies."""
    db, s, d, sink = world
    _type(db, "news")
    pk = _push(db, s, 'externalId="C1"')
    d.tick()
    [mail] = sink.wait_for(1)
    assert _status(db, pk)[0] is EventStatus.PROCESSED
    mime = mail.message
    assert mime["To"] == "ann@example.com" and mime["Subject"] == "Hi Ann"
    html = mime.get_body(preferencelist=("html",)).get_content()
    assert "Hello Ann Lee, tier gold / gold; order A-1" in html
    link = mime["List-Unsubscribe"].strip("<>")
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.startswith("https://mc.example.com/u/") and f'href="{link}"' in html
    assert "/r/c/" in html  # the other link is click-tracked
    token = unsubscribe.verify_token(s.secret, link.rsplit("/", 1)[1])
    assert token == unsubscribe.UnsubscribeToken(Channel.EMAIL, pk, "C1")


def test_profile_by_email(world) -> None:
    """Reconciliation on email finds the profile case-insensitively."""
    db, s, d, sink = world
    _type(db, "news", reconcile=ReconcileOn.EMAIL)
    pk = _push(db, s, 'email="ANN@example.com"')
    d.tick()
    [mail] = sink.wait_for(1)
    assert _status(db, pk)[0] is EventStatus.PROCESSED and mail.message["Subject"] == "Hi Ann"


def test_missing_profile_fails_by_default(world) -> None:
    """No profile, policy fail: targetingFailed (final) with the reason; nothing sent;
    an event without the key says so."""
    db, s, d, sink = world
    _type(db, "news")
    unknown = _push(db, s, 'externalId="C9" email="x@example.com"')
    keyless = _push(db, s, 'email="y@example.com"')
    d.tick()
    assert _status(db, unknown) == (EventStatus.TARGETING_FAILED,
                                    "no profile with externalId 'C9'")
    assert _status(db, keyless) == (EventStatus.TARGETING_FAILED,
                                    "the event has no externalId to find its profile by")
    assert sink.messages == []


def test_missing_profile_sends_with_the_event_data(world) -> None:
    """No profile, policy send: sent with the event's own address and data (profile
    fields render empty, no unsubscribe header); without an address it fails."""
    db, s, d, sink = world
    _type(db, "news", missing=MissingProfile.SEND)
    sent = _push(db, s, 'externalId="C9" email="x@example.com"')
    no_address = _push(db, s, 'externalId="C9"')
    d.tick()
    [mail] = sink.wait_for(1)
    assert _status(db, sent)[0] is EventStatus.PROCESSED
    assert mail.message["To"] == "x@example.com" and mail.message["Subject"] == "Hi"
    assert mail.message["List-Unsubscribe"] is None
    status, reason = _status(db, no_address)
    assert status is EventStatus.DELIVERY_FAILED and "no email" in (reason or "")


def test_unsubscribed_profile_is_ignored_with_an_exclusion_row(world) -> None:
    """A profile that opted out of email: its events end ignored, exclusion log
    "unsubscribed"; its SMS opt-in does not matter to email and vice versa."""
    db, s, d, sink = world
    _type(db, "news")
    profiles.set_subscription(db, "C1", Channel.EMAIL, subscribed=False)
    pk = _push(db, s, 'externalId="C1"')
    d.tick()
    assert _status(db, pk) == (EventStatus.IGNORED, "unsubscribed")
    [row] = store_exclusions.list_exclusions(db, event_id=pk)
    assert row.reason == "unsubscribed" and row.address == "ann@example.com"
    assert sink.messages == []
    profiles.set_subscription(db, "C1", Channel.EMAIL, subscribed=True)
    again = _push(db, s, 'externalId="C1"')
    d.tick()
    sink.wait_for(1)
    assert _status(db, again)[0] is EventStatus.PROCESSED


def test_fatigue_rule_at_n_and_n_plus_one(world) -> None:
    """max 2 per 7d: the first two events are sent, the third ignored with an exclusion
    row naming the rule; critical-lane events are exempt (and not counted)."""
    db, s, d, sink = world
    _type(db, "news")
    _type(db, "alert", lane=Lane.CRITICAL)
    fatigue.add_rule(db, FatigueRule(name="weekly", max_count=2, period_seconds=7 * 86400))
    first = [_push(db, s, 'externalId="C1"') for _ in range(2)]
    d.tick()
    sink.wait_for(2)
    third = _push(db, s, 'externalId="C1"')
    critical = _push(db, s, 'externalId="C1"', event_type="alert")
    d.tick()
    sink.wait_for(3)
    assert [_status(db, pk)[0] for pk in first] == [EventStatus.PROCESSED] * 2
    status, reason = _status(db, third)
    assert status is EventStatus.IGNORED
    assert reason == "fatigue rule weekly: at most 2 per 1w"
    [row] = store_exclusions.list_exclusions(db, event_id=third)
    assert row.reason == reason
    assert _status(db, critical)[0] is EventStatus.PROCESSED
    assert len(sink.messages) == 3


def test_preview_with_a_seed_naming_a_profile(world) -> None:
    """A seed whose external id names a profile previews with that profile's data and a
    placeholder unsubscribe link that records nothing."""
    db, s, _d, _sink = world
    _type(db, "news")
    catalog.add_seed(db, "news_email", "qa@example.com", '<ctx><order id="Q-1"/></ctx>',
                     external_id="C1")
    shown = proof.preview(db, "news_email")
    assert shown.message.subject == "Hi Ann"
    assert "Hello Ann Lee, tier gold / gold; order Q-1" in shown.message.html
    assert "/u/preview" in shown.message.html
    assert unsubscribe.verify_token(s.secret, "preview") is None
    catalog.add_seed(db, "news_email", "nobody@example.com", "<ctx/>", external_id="C9")
    assert proof.preview(db, "news_email", seed="nobody@example.com").message.subject == "Hi"
