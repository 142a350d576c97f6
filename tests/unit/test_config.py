"""Settings: environment over TOML over defaults, and refusal of values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service.config import load_settings
from soap_service.errors import ConfigError
from soap_service.models import Channel, make_plid, split_plid


def test_environment_overrides_toml_file(tmp_path: Path) -> None:
    """A value in the environment wins over the TOML file, which wins over the default."""
    toml = tmp_path / "mc.toml"
    toml.write_text('instance_id = 7\nsmtp_port = 2525\n', encoding="utf-8")
    settings = load_settings({"MC_CONFIG": str(toml), "MC_SMTP_PORT": "1025"})
    assert (settings.instance_id, settings.smtp_port) == (7, 1025)
    assert settings.max_events_per_call == 1000


@pytest.mark.parametrize("value", ["128", "255", "-1", "abc"])
def test_instance_id_must_keep_plid_a_signed_long(value: str) -> None:
    """Instance ids whose plIds would overflow a signed xsd:long are refused with one line."""
    with pytest.raises(ConfigError, match="MC_INSTANCE_ID"):
        load_settings({"MC_INSTANCE_ID": value})


def test_largest_plid_fits_a_signed_long() -> None:
    """With instance 127 and the largest key, plId still fits in 63 bits and splits back."""
    plid = make_plid(127, (1 << 56) - 1)
    assert plid == 2**63 - 1
    assert split_plid(plid) == (127, (1 << 56) - 1)


def test_bad_tls_mode_is_refused() -> None:
    """MC_SMTP_TLS accepts none, starttls and tls only."""
    with pytest.raises(ConfigError, match="MC_SMTP_TLS"):
        load_settings({"MC_SMTP_TLS": "ssl3"})


CONNECTORS_TOML = """
[[connectors]]
name = "smsc-a"
channel = "sms"
kind = "smpp"
host = "smsc.example.net"
port = 2775
system_id = "mc"
password_file = "{pw}"
priority = 2
rate = 50

[[connectors]]
name = "sms-http"
channel = "sms"
kind = "http-sms"
token_env = "SMS_TOKEN"
priority = 1

[[connectors]]
name = "relay-a"
channel = "email"
kind = "smtp"
password = "inline-secret"
"""


def test_connectors_from_toml_with_secrets_from_file_env_and_inline(tmp_path: Path) -> None:
    """[[connectors]] tables become ConnectorConfigs ordered by priority per channel; secrets
    come from *_file, *_env or inline, and never appear in the repr."""
    pw = tmp_path / "smsc.pw"
    pw.write_text("s3cret\n", encoding="utf-8")
    toml = tmp_path / "mc.toml"
    toml.write_text(CONNECTORS_TOML.format(pw=pw), encoding="utf-8")
    settings = load_settings({"MC_CONFIG": str(toml)})
    sms = settings.channel_connectors(Channel.SMS)
    assert [c.name for c in sms] == ["sms-http", "smsc-a"]
    smsc = sms[1]
    assert (smsc.kind, smsc.option("port"), smsc.rate, smsc.concurrency) == ("smpp", 2775, 50, 8)
    assert smsc.secret("password") == "s3cret"
    assert sms[0].secret("token", {"SMS_TOKEN": "tok"}) == "tok"
    relay = settings.channel_connectors(Channel.EMAIL)[0]
    assert relay.secret("password") == "inline-secret"
    assert "inline-secret" not in repr(relay) and "s3cret" not in repr(settings)
    with pytest.raises(ConfigError, match="SMS_TOKEN"):
        sms[0].secret("token", {})


def test_default_smtp_relay_when_no_email_connector_is_declared() -> None:
    """MC_SMTP_* make the email connector named "smtp" when the TOML declares none."""
    [relay] = load_settings({"MC_SMTP_CONCURRENCY": "3"}).channel_connectors(Channel.EMAIL)
    assert (relay.name, relay.kind, relay.concurrency) == ("smtp", "smtp", 3)
    assert load_settings({}).channel_connectors(Channel.PUSH) == []


@pytest.mark.parametrize(("table", "message"), [
    ('name = "a"\nchannel = "fax"\nkind = "x"', "channel must be one of"),
    ('channel = "sms"\nkind = "smpp"', "name is required"),
    ('name = "a"\nchannel = "sms"', "kind is required"),
    ('name = "a"\nchannel = "sms"\nkind = "smpp"\nconcurrency = 0', "concurrency"),
    ('name = "a"\nchannel = "sms"\nkind = "smpp"\nrate = "fast"', "numbers"),
])
def test_bad_connector_tables_are_refused_with_one_line(tmp_path: Path, table: str,
                                                        message: str) -> None:
    """A connector table that cannot work is a ConfigError naming the problem."""
    toml = tmp_path / "mc.toml"
    toml.write_text(f"[[connectors]]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings({"MC_CONFIG": str(toml)})


def test_duplicate_connector_names_are_refused(tmp_path: Path) -> None:
    """Two connectors with one name would make the delivery log ambiguous."""
    toml = tmp_path / "mc.toml"
    toml.write_text('[[connectors]]\nname = "a"\nchannel = "sms"\nkind = "smpp"\n' * 2,
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="unique: a"):
        load_settings({"MC_CONFIG": str(toml)})


def test_event_ids_from_toml_table_or_environment(tmp_path: Path) -> None:
    """Suite eventIDs map to event types from an [event_ids] table or MC_EVENT_IDS (which
    wins); an unmapped eventID is the type's own name; a malformed pair is refused."""
    toml = tmp_path / "mc.toml"
    toml.write_text('[event_ids]\nEVTcart = "cart_abandoned"\n', encoding="utf-8")
    settings = load_settings({"MC_CONFIG": str(toml)})
    assert settings.event_type_for("EVTcart") == "cart_abandoned"
    assert settings.event_type_for("order_confirmation") == "order_confirmation"
    env = {"MC_CONFIG": str(toml), "MC_EVENT_IDS": "EVTorder=order_confirmation, EVTx=x"}
    assert load_settings(env).event_ids == (("EVTorder", "order_confirmation"), ("EVTx", "x"))
    for bad in ("EVTorder", "=x", "EVTa=b,EVTc"):
        with pytest.raises(ConfigError, match="MC_EVENT_IDS"):
            load_settings({"MC_EVENT_IDS": bad})


def test_webhook_settings_are_checked() -> None:
    """A retry schedule that is not durations, a zero timeout or concurrency, a JSON depth
    of 0 or beyond 256 are refused."""
    for env in ({"MC_WEBHOOK_RETRY_SCHEDULE": "5s,later"}, {"MC_WEBHOOK_TIMEOUT": "0"},
                {"MC_WEBHOOK_CONCURRENCY": "0"}, {"MC_MAX_JSON_DEPTH": "0"},
                {"MC_MAX_JSON_DEPTH": "5000"}):
        with pytest.raises(ConfigError):
            load_settings(env)


@pytest.mark.parametrize(("name", "value"), [("MC_HTTP_READ_TIMEOUT", "0"),
                                             ("MC_HTTP_READ_TIMEOUT", "-1"),
                                             ("MC_HTTP_THREADS", "0")])
def test_http_front_settings_are_checked(name: str, value: str) -> None:
    """A read timeout that would close every connection at once, or no request thread,
    is refused with a one-line configuration error."""
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
    assert load_settings({}).http_threads == 8 and load_settings({}).http_read_timeout == 30


@pytest.mark.parametrize("value", ["-0.1", "2"])
def test_worker_linger_is_bounded(value: str) -> None:
    """A negative linger, or one that would hold every round back for seconds, is refused."""
    with pytest.raises(ConfigError, match="MC_WORKER_LINGER"):
        load_settings({"MC_WORKER_LINGER": value})
    assert load_settings({}).worker_linger == 0.01


def test_http_workers_follow_the_cores_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` runs one HTTP process per core (at least 2) on either database;
    ``MC_HTTP_WORKERS`` sets the number; a negative one is refused."""
    from soap_service.cli.serve import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 6)
    for url in ("sqlite:///x.db", "postgresql+psycopg://u@h/d"):
        assert default_workers(load_settings({"MC_DATABASE_URL": url})) == 6
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert default_workers(load_settings({})) == 2
    assert default_workers(load_settings({"MC_HTTP_WORKERS": "3"})) == 3
    with pytest.raises(ConfigError, match="MC_HTTP_WORKERS"):
        load_settings({"MC_HTTP_WORKERS": "-1"})
