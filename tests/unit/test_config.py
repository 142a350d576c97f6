"""Settings: environment over TOML over defaults, and refusal of values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service.config import load_settings
from soap_service.errors import ConfigError
from soap_service.models import make_plid, split_plid


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
