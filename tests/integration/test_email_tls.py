"""MC_SMTP_TLS (starttls / tls) and MC_SMTP_USER / MC_SMTP_PASSWORD against a real
aiosmtpd relay with a self-signed certificate made by openssl."""

from __future__ import annotations

import ssl
import subprocess

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from soap_service.channels.direct import send_messages
from soap_service.config import load_settings
from soap_service.devsmtp import MailSink
from soap_service.models import EmailMessage, SendOutcome

MSG = EmailMessage(from_addr="shop@example.org", to="john@example.com", subject="Hi",
                   message_id="<mc.1.1@example.org>", text="Hello")


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return str(crt), str(key)


def _server_ctx(cert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


class Auth:
    def __init__(self) -> None:
        self.logins: list[tuple[str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login, auth_data.password) == (b"relay-user", b"s3cret")
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


def _settings(sink: MailSink, **env: str):
    return load_settings({"MC_SMTP_HOST": "127.0.0.1", "MC_SMTP_PORT": str(sink.port), **env})


def _starttls_auth_sink(cert, auth: Auth) -> MailSink:
    """A relay that requires STARTTLS, then AUTH (refused in clear)."""
    return MailSink(tls_context=_server_ctx(cert), require_starttls=True, authenticator=auth,
                    auth_require_tls=True, auth_required=True)


def _send_with_login(sink: MailSink, cert, password: str):
    return send_messages(_settings(
        sink, MC_SMTP_TLS="starttls", MC_SMTP_USER="relay-user", MC_SMTP_PASSWORD=password,
        MC_SMTP_CA_FILE=cert[0]), [MSG])


def test_starttls_with_auth(cert):
    """STARTTLS is negotiated, the relay's certificate is verified against MC_SMTP_CA_FILE,
    and the user logs in before sending (the relay refuses AUTH in clear)."""
    auth = Auth()
    with _starttls_auth_sink(cert, auth) as sink:
        [result] = _send_with_login(sink, cert, "s3cret")
        sink.wait_for(1)
    assert result.outcome is SendOutcome.SENT
    assert auth.logins == [("relay-user", True)]
    assert len(sink.messages) == 1


def test_implicit_tls(cert):
    """MC_SMTP_TLS=tls connects over TLS from the first byte (port 465 style)."""
    with MailSink(ssl_context=_server_ctx(cert)) as sink:
        [result] = send_messages(_settings(sink, MC_SMTP_TLS="tls", MC_SMTP_CA_FILE=cert[0]),
                                 [MSG])
        sink.wait_for(1)
    assert result.outcome is SendOutcome.SENT
    assert len(sink.messages) == 1


def test_wrong_password_is_a_temporary_failure(cert):
    """A rejected login is a relay configuration problem: temporary, with the 535 code."""
    with _starttls_auth_sink(cert, Auth()) as sink:
        [result] = _send_with_login(sink, cert, "nope")
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code == 535
    assert "nope" not in result.text
    assert sink.messages == []


def test_untrusted_certificate_is_refused(cert):
    """Without the CA file the self-signed certificate fails verification: nothing sent."""
    with MailSink(tls_context=_server_ctx(cert), require_starttls=True) as sink:
        [result] = send_messages(_settings(sink, MC_SMTP_TLS="starttls"), [MSG])
    assert result.outcome is SendOutcome.TEMPORARY
    assert "certificate" in result.text.lower()
    assert sink.messages == []
