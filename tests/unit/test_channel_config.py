"""Channel settings: the default SMTP relay from MC_SMTP_*, mobile apps and the default
push platform, the default country code, and the Twilio status callback defaulting to
our public URL -- each wrong value refused at start in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service.config import load_settings
from soap_service.errors import ConfigError
from soap_service.models import Channel, PushPlatform


def _toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "mc.toml"
    path.write_text(text, encoding="utf-8")
    return {"MC_CONFIG": str(path)}


def test_mc_smtp_makes_the_default_relay_when_no_email_connector_is_declared() -> None:
    """No email [[connectors]]: one `smtp` connector from MC_SMTP_* (password kept out
    of its repr)."""
    settings = load_settings({"MC_SMTP_HOST": "relay.example", "MC_SMTP_PORT": "2525",
                              "MC_SMTP_TLS": "starttls", "MC_SMTP_USER": "mc",
                              "MC_SMTP_PASSWORD": "hunter2", "MC_SMTP_CONCURRENCY": "3"})
    [relay] = settings.channel_connectors(Channel.EMAIL)
    assert (relay.name, relay.kind, relay.concurrency) == ("smtp", "smtp", 3)
    assert relay.options["host"] == "relay.example" and relay.options["port"] == 2525
    assert relay.secret("password") == "hunter2" and "hunter2" not in repr(relay)


def test_declared_email_relays_replace_the_default(tmp_path: Path) -> None:
    """Two [[connectors]] relays: those, by priority; MC_SMTP_* no longer count."""
    env = _toml(tmp_path, """
[[connectors]]
name = "relay-b"
channel = "email"
kind = "smtp"
host = "b.example"
priority = 2

[[connectors]]
name = "relay-a"
channel = "email"
kind = "smtp"
host = "a.example"
""")
    names = [c.name for c in load_settings(env).channel_connectors(Channel.EMAIL)]
    assert names == ["relay-a", "relay-b"]


def test_apps_and_the_default_platform(tmp_path: Path) -> None:
    """[[apps]] give a platform per <mobileApp uuid>; MC_PUSH_DEFAULT_PLATFORM the rest."""
    env = _toml(tmp_path, """
[[apps]]
uuid = "shop-ios"
platform = "ios"
name = "Shop for iPhone"
""")
    settings = load_settings({**env, "MC_PUSH_DEFAULT_PLATFORM": "android"})
    assert settings.app_platform("shop-ios") is PushPlatform.IOS
    assert settings.app_platform("other") is PushPlatform.ANDROID
    assert settings.app_platform(None) is PushPlatform.ANDROID
    assert load_settings(env).app_platform("other") is None


@pytest.mark.parametrize(("env", "text", "problem"), [
    ({"MC_PUSH_DEFAULT_PLATFORM": "windows"}, "", "MC_PUSH_DEFAULT_PLATFORM must be ios or"),
    ({"MC_DEFAULT_COUNTRY_CODE": "Atlantis"}, "", "MC_DEFAULT_COUNTRY_CODE: default country"),
    ({}, '[[apps]]\nplatform = "ios"\n', "apps[0]: uuid is required"),
    ({}, '[[apps]]\nuuid = "x"\nplatform = "symbian"\n', "platform must be ios or android"),
    ({}, '[[apps]]\nuuid = "x"\nplatform = "ios"\nbundle = "y"\n', "the keys are uuid"),
    ({}, '[[apps]]\nuuid = "x"\nplatform = "ios"\n[[apps]]\nuuid = "x"\nplatform = "ios"\n',
     "each uuid may appear once"),
])
def test_bad_channel_settings_are_refused_in_one_line(tmp_path: Path, env: dict[str, str],
                                                      text: str, problem: str) -> None:
    """Each mistake stops the start with a message naming the setting."""
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[")):
        load_settings({**env, **(_toml(tmp_path, text) if text else {})})


@pytest.mark.parametrize("code", ["33", "+33", "FR", "fr"])
def test_default_country_code_takes_a_calling_code_or_a_region(code: str) -> None:
    assert load_settings({"MC_DEFAULT_COUNTRY_CODE": code}).default_country_code == code


def test_a_twilio_connector_reports_to_our_public_url_unless_told(tmp_path: Path) -> None:
    """StatusCallback defaults to {MC_PUBLIC_URL}/callbacks/sms/{name}; an explicit
    status_callback (even empty) wins."""
    env = _toml(tmp_path, """
[[connectors]]
name = "tw"
channel = "sms"
kind = "http-sms"
format = "twilio"

[[connectors]]
name = "tw-quiet"
channel = "sms"
kind = "http-sms"
format = "twilio"
status_callback = ""
""")
    settings = load_settings({**env, "MC_PUBLIC_URL": "https://mc.example.com/"})
    by_name = {c.name: c for c in settings.channel_connectors(Channel.SMS)}
    assert by_name["tw"].options["status_callback"] == \
        "https://mc.example.com/callbacks/sms/tw"
    assert by_name["tw-quiet"].options["status_callback"] == ""
