"""Push through the whole pipeline: worker rounds (the real catalog, renderer and store)
against an APNs peer (HTTP/2 over TLS, provider tokens verified) and FCM peers (OAuth2
and messages:send), on SQLite and PostgreSQL.

Every outcome path: accepted (the delivery log names the connector and the apns-id /
message name), the platform from ``wishedChannel`` 41 / 42 / 40 (``[[apps]]`` or
``MC_PUSH_DEFAULT_PLATFORM``, and a clear failure with neither), real-time and batch
priority, the event's expiration, an unregistered token → ``deliveryFailed`` and the
token quarantined (the next event to it ``ignored``), temporary → retried with the
provider's Retry-After → processed, failover from an unavailable FCM project to a
second one, and an app whose platform no connector serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from channel_support import (
    ANDROID_TOKEN,
    IOS_TOKEN,
    attempts,
    connector,
    dispatcher_factory,
    event,
    publish_templates,
    push_notification,
    status,
)

from soap_service import clock, exclusions
from soap_service.models import AddressKind, Channel, EventStatus, MobileApp, PushPlatform
from tests.push_peers import ApnsSetup, FcmSetup, serve_apns, serve_fcm

make_dispatcher = pytest.fixture(dispatcher_factory, name="make_dispatcher")


@pytest.fixture
def apns(tmp_path: Path) -> Iterator[ApnsSetup]:
    (tmp_path / "apns").mkdir()
    yield from serve_apns(tmp_path / "apns")


@pytest.fixture
def fcm(tmp_path: Path) -> Iterator[FcmSetup]:
    (tmp_path / "fcm").mkdir()
    yield from serve_fcm(tmp_path / "fcm")


@pytest.fixture
def fcm_b(tmp_path: Path) -> Iterator[FcmSetup]:
    (tmp_path / "fcm-b").mkdir()
    yield from serve_fcm(tmp_path / "fcm-b")


@pytest.fixture
def setup(db, settings):
    publish_templates(db)
    return db, settings


def _push_settings(settings, apns: ApnsSetup | None = None, fcm: FcmSetup | None = None,
                   **kw):
    tables = []
    if apns is not None:
        tables.append(connector("apns", Channel.PUSH, "apns", **apns.options()))
    if fcm is not None:
        tables.append(connector("fcm", Channel.PUSH, "fcm", 2, **fcm.options()))
    return settings.replace(connectors=tuple(tables), **kw)


def test_ios_goes_to_apns_and_android_to_fcm(setup, apns, fcm, make_dispatcher):
    """wishedChannel 41 → APNs, 42 → FCM, in one round; each notification carries the
    rendered title, body and data; the attempts name the connector and the provider's
    id (apns-id, the FCM message name)."""
    db, settings = setup
    ios = push_notification(db, settings, IOS_TOKEN, "41", order="A7")
    android = push_notification(db, settings, ANDROID_TOKEN, "42", order="A8")
    d = make_dispatcher(_push_settings(settings, apns, fcm), db)
    assert d.tick().sent == 2
    [seen_ios] = apns.peer.seen
    [seen_android] = fcm.peer.seen
    assert seen_ios.path == f"/3/device/{IOS_TOKEN}"
    assert seen_ios.body["aps"]["alert"] == {"title": "Order A7", "body": "It has shipped"}
    assert seen_ios.body["order"] == "A7"
    message = seen_android.body["message"]
    assert (message["token"], message["notification"]) == (
        ANDROID_TOKEN, {"title": "Order A8", "body": "It has shipped"})
    assert message["data"] == {"order": "A8"}
    [a_ios] = attempts(db, ios)
    [a_android] = attempts(db, android)
    assert (a_ios.channel, a_ios.connector, a_ios.address) == ("push", "apns", IOS_TOKEN)
    assert a_ios.provider_id and len(a_ios.provider_id) == 36  # the apns-id
    assert a_android.connector == "fcm"
    assert (a_android.provider_id or "").startswith("projects/shop-app/messages/")
    assert status(db, ios) is status(db, android) is EventStatus.PROCESSED


def test_real_time_and_batch_priorities_and_the_events_expiration(setup, apns, fcm,
                                                                  make_dispatcher):
    """Real-time: apns-priority 10 / FCM high; batch: 5 / normal; the event's expiration
    becomes apns-expiration (Unix seconds) and the FCM ttl."""
    db, settings = setup
    expires = (clock.utcnow() + timedelta(hours=2)).replace(microsecond=0)
    push_notification(db, settings, IOS_TOKEN, "41", expiration=expires.isoformat() + "Z")
    push_notification(db, settings, "1f" * 32, "41", queue="batch")
    push_notification(db, settings, ANDROID_TOKEN, "42", queue="batch")
    d = make_dispatcher(_push_settings(settings, apns, fcm), db)
    assert d.tick().sent == 3
    by_token = {s.path.rsplit("/", 1)[1]: s.headers for s in apns.peer.seen}
    rt, batch = by_token[IOS_TOKEN], by_token["1f" * 32]
    assert rt["apns-priority"] == "10" and batch["apns-priority"] == "5"
    assert rt["apns-expiration"] == str(int(expires.replace(tzinfo=UTC).timestamp()))
    assert batch["apns-expiration"] == "0"
    [android] = fcm.peer.seen
    assert android.body["message"]["android"]["priority"] == "normal"


@pytest.mark.parametrize(("apps", "default", "uuid", "platform"), [
    ((MobileApp("shop-ios", PushPlatform.IOS),), "", "shop-ios", "ios"),
    ((MobileApp("shop-android", PushPlatform.ANDROID),), "ios", "shop-android", "android"),
    ((), "android", "unknown-app", "android"),
])
def test_wished_channel_40_takes_the_apps_platform(setup, apns, fcm, make_dispatcher, apps,
                                                   default, uuid, platform):
    """wishedChannel 40: the <mobileApp uuid>'s platform from [[apps]], else
    MC_PUSH_DEFAULT_PLATFORM."""
    db, settings = setup
    token = IOS_TOKEN if platform == "ios" else ANDROID_TOKEN
    pk = push_notification(db, settings, token, "40", app=uuid)
    d = make_dispatcher(_push_settings(settings, apns, fcm, apps=apps,
                                       push_default_platform=default), db)
    assert d.tick().sent == 1
    assert attempts(db, pk)[0].connector == ("apns" if platform == "ios" else "fcm")


def test_wished_channel_40_without_a_platform_fails_clearly(setup, apns, make_dispatcher):
    """An app nobody configured and no default platform: deliveryFailed saying what to
    configure; nothing is sent."""
    db, settings = setup
    pk = push_notification(db, settings, IOS_TOKEN, "40", app="who-knows")
    make_dispatcher(_push_settings(settings, apns), db).tick()
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    reason = event(db, pk).last_error or ""
    assert "who-knows" in reason and "[[apps]]" in reason and "MC_PUSH_DEFAULT_PLATFORM" in reason
    assert apns.peer.seen == []


def test_an_unregistered_token_is_quarantined_and_the_next_event_ignored(setup, apns,
                                                                        make_dispatcher):
    """APNs 410 Unregistered: deliveryFailed, the token quarantined as a device token;
    the next notification to it is ignored and never reaches APNs."""
    db, settings = setup
    apns.peer.script[IOS_TOKEN] = ["unregistered"]
    first = push_notification(db, settings, IOS_TOKEN, "41")
    d = make_dispatcher(_push_settings(settings, apns), db)
    d.tick()
    assert status(db, first) is EventStatus.DELIVERY_FAILED
    entry = exclusions.lookup(db, IOS_TOKEN, AddressKind.TOKEN)
    assert entry is not None and "Unregistered" in entry.reason
    second = push_notification(db, settings, IOS_TOKEN, "41")
    d.tick()
    assert status(db, second) is EventStatus.IGNORED
    assert len(apns.peer.seen) == 1


def test_unavailable_is_retried_after_the_providers_retry_after(setup, fcm, make_dispatcher):
    """FCM 503 UNAVAILABLE with Retry-After 17 is temporary: pending, due no sooner than
    the provider asked (more than our 1 s backoff); then sent once."""
    db, settings = setup
    fcm.peer.script[ANDROID_TOKEN] = ["unavailable"]
    pk = push_notification(db, settings, ANDROID_TOKEN, "42")
    d = make_dispatcher(_push_settings(settings, fcm=fcm, retry_base_seconds=1), db)
    start = clock.utcnow()
    with clock.frozen_clock(start) as advance:
        assert d.tick().deferred == 1
        waiting = event(db, pk)
        assert waiting.process_at is not None
        assert waiting.process_at >= start + timedelta(seconds=17)
        advance(timedelta(seconds=18))
        assert d.tick().sent == 1
    assert [a.outcome for a in attempts(db, pk)] == ["temporary", "sent"]
    assert len(fcm.peer.seen) == 2


def test_an_unavailable_project_fails_over_to_the_second(setup, fcm, fcm_b, make_dispatcher):
    """Two FCM projects: the first answers UNAVAILABLE, the second sends; the delivery
    log names the second."""
    db, settings = setup
    fcm.peer.script[ANDROID_TOKEN] = ["unavailable"]
    pk = push_notification(db, settings, ANDROID_TOKEN, "42")
    d = make_dispatcher(settings.replace(connectors=(
        connector("fcm-a", Channel.PUSH, "fcm", 1, **fcm.options()),
        connector("fcm-b", Channel.PUSH, "fcm", 2, **fcm_b.options()))), db)
    assert d.tick().sent == 1
    assert attempts(db, pk)[0].connector == "fcm-b"
    assert (len(fcm.peer.seen), len(fcm_b.peer.seen)) == (1, 1)


def test_a_platform_no_connector_serves_fails_permanently(setup, apns, make_dispatcher):
    """Only APNs is configured: an Android notification cannot be sent by anyone, ever:
    deliveryFailed "no connector for push (android)"."""
    db, settings = setup
    pk = push_notification(db, settings, ANDROID_TOKEN, "42")
    make_dispatcher(_push_settings(settings, apns), db).tick()
    assert status(db, pk) is EventStatus.DELIVERY_FAILED
    assert event(db, pk).last_error == "no connector for push (android)"


def test_apns_throttling_is_retried_then_sent(setup, apns, make_dispatcher):
    """APNs 429 TooManyRequests (Retry-After 7): pending, due no sooner than asked and
    after our backoff; the next round sends it once."""
    db, settings = setup
    apns.peer.script[IOS_TOKEN] = ["throttled"]
    pk = push_notification(db, settings, IOS_TOKEN, "41")
    d = make_dispatcher(_push_settings(settings, apns, retry_base_seconds=2), db)
    start = clock.utcnow()
    with clock.frozen_clock(start) as advance:
        assert d.tick().deferred == 1
        waiting = event(db, pk)
        assert waiting.process_at is not None
        assert waiting.process_at >= start + timedelta(seconds=7)
        advance(timedelta(seconds=8))
        assert d.tick().sent == 1
    assert [(a.outcome, a.response_code) for a in attempts(db, pk)] == [
        ("temporary", 429), ("sent", 200)]
