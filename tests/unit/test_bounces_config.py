"""Bounce settings: defaults that keep everything off or refused, and bad values refused."""

from __future__ import annotations

import pytest

from soap_service.bounces.sns import DEFAULT_ORIGIN_PATTERN
from soap_service.config import load_settings
from soap_service.errors import ConfigError


def test_defaults() -> None:
    """Out of the box: no bounce domain, the listener on loopback, 20 MiB, no SNS topic, the
    AWS origin only, no Postmark credentials."""
    s = load_settings({})
    assert (s.bounce_domain, s.bounce_smtp_host, s.bounce_smtp_port) == ("", "127.0.0.1", 2525)
    assert s.bounce_max_bytes == 20 * 1024 * 1024
    assert s.sns_topic_arns == "" and s.sns_origin_pattern == DEFAULT_ORIGIN_PATTERN
    assert not (s.postmark_webhook_user or s.postmark_webhook_password
                or s.postmark_webhook_token)


def test_from_environment() -> None:
    """MC_* variables set every bounce setting."""
    s = load_settings({"MC_BOUNCE_DOMAIN": "bounce.shop.example.com",
                       "MC_BOUNCE_SMTP_PORT": "25", "MC_BOUNCE_MAX_BYTES": "1048576",
                       "MC_SNS_TOPIC_ARNS": "arn:a,arn:b"})
    assert (s.bounce_domain, s.bounce_smtp_port, s.bounce_max_bytes, s.sns_topic_arns) == (
        "bounce.shop.example.com", 25, 1048576, "arn:a,arn:b")


@pytest.mark.parametrize("env", [
    {"MC_BOUNCE_DOMAIN": "bounces@shop.example.com"},
    {"MC_BOUNCE_MAX_BYTES": "10"},
    {"MC_BOUNCE_SMTP_PORT": "twenty-five"},
    {"MC_SNS_ORIGIN_PATTERN": "https://(unclosed"},
])
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    """An address instead of a domain, a silly size limit, a non-number port or a broken
    pattern: a one-line ConfigError."""
    with pytest.raises(ConfigError):
        load_settings(env)
