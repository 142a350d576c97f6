"""A local stand-in for SNS's certificate host: a test CA, an HTTPS server on loopback that
serves signing certificates (and a SubscribeURL), and messages signed like SNS signs them."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from soap_service.bounces.sns import canonical_string

NOW = dt.datetime.now(dt.UTC)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None,
          issuer_key: rsa.RSAPrivateKey, *, ca: bool = False, ip: str = "",
          not_after: dt.datetime | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=2))
               .not_valid_after(not_after or NOW + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    """A CA, the HTTPS server's certificate, and SNS-like signing certificates."""

    ca: x509.Certificate
    server_pem: bytes
    server_key_pem: bytes
    signing_key: rsa.RSAPrivateKey
    signing_pem: bytes
    expired_key: rsa.RSAPrivateKey
    expired_pem: bytes
    other_key: rsa.RSAPrivateKey  # a key no served certificate holds

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=_pem(self.ca).decode())
        return ctx


def make_pki() -> Pki:
    ca_key = _key()
    ca = _cert("Test SNS CA", ca_key, None, ca_key, ca=True)
    server_key = _key()
    server = _cert("127.0.0.1", server_key, ca, ca_key, ip="127.0.0.1")
    signing_key = _key()
    signing = _cert("sns.amazonaws.com", signing_key, ca, ca_key)
    expired_key = _key()
    expired = _cert("sns.amazonaws.com", expired_key, ca, ca_key,
                    not_after=NOW - dt.timedelta(days=1))
    return Pki(ca, _pem(server), server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), signing_key, _pem(signing), expired_key,
        _pem(expired), _key())


@dataclass
class CertHost:
    """The running HTTPS server: what it serves and what it was asked."""

    base: str
    routes: dict[str, tuple[int, bytes, dict[str, str]]]
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def cert_host(pki: Pki, tmp: Path) -> Iterator[CertHost]:
    """An HTTPS server on 127.0.0.1 (a free port) with the PKI's certificates."""
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = {
        "/SimpleNotificationService-good.pem": (200, pki.signing_pem, {}),
        "/SimpleNotificationService-expired.pem": (200, pki.expired_pem, {}),
        "/junk.pem": (200, b"-----BEGIN CERTIFICATE-----\nnot base64\n", {}),
        "/missing.pem": (404, b"not found", {}),
        "/moved.pem": (302, b"", {"Location": "https://elsewhere.invalid/x.pem"}),
        "/confirm": (200, b"<ConfirmSubscriptionResponse/>", {}),
    }
    host = CertHost("", routes)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.hits.append(self.path)
            status, body, headers = routes.get(self.path.split("?")[0], (404, b"", {}))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    (tmp / "server.pem").write_bytes(pki.server_pem)
    (tmp / "server.key").write_bytes(pki.server_key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host.base = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def sign(message: dict[str, str], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, str]:
    """``message`` with SignatureVersion and Signature set as SNS sets them."""
    message = dict(message, SignatureVersion=version)
    # SNS SignatureVersion 1 is SHA1withRSA: the test signs as SNS does
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(canonical_string(message).encode(), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"


def notification(ses: dict[str, object], cert_url: str, subject: str | None = None,
                 message_id: str = "c6a0e8f2-5d4b-5c1e-9a3f-0b1d2e3f4a5b") -> dict[str, str]:
    message = {
        "Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
        "Message": json.dumps(ses), "Timestamp": "2026-11-12T10:15:00.123Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&x=1",
    }
    if subject is not None:
        message["Subject"] = subject
    return message
