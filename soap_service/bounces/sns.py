"""Amazon SNS message verification: signature, signing certificate, allowed topics.

An SNS HTTP(S) subscription POSTs JSON messages (``Notification``,
``SubscriptionConfirmation``, ``UnsubscribeConfirmation``) signed with the key of a
certificate SNS serves at ``SigningCertURL``.  :class:`SnsVerifier` accepts a message only
when all of these hold:

- ``SigningCertURL`` (and ``SubscribeURL``) start with an allowed origin — by default
  ``https://sns.<region>.amazonaws.com`` — and the certificate path ends in ``.pem``; the
  certificate is fetched over that URL only (no redirects, 64 KiB at most) and cached;
- the certificate is within its validity period and holds an RSA key;
- ``Signature`` verifies over the canonical string of the message type's fields
  (SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA);
- ``TopicArn`` is one of the configured topics: the signature proves SNS sent it, not that
  it came from *our* topic — anyone can publish to a topic of their own.

What cannot be verified raises :class:`~soap_service.errors.UnverifiedCallback`; a
certificate host that does not answer raises :class:`~soap_service.errors.ServerError` (the
caller answers 5xx and SNS retries later).  Redelivered messages carry the same
``MessageId``: callers that must not act twice dedupe on it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from soap_service.errors import ServerError, UnreadableReport, UnverifiedCallback

DEFAULT_ORIGIN_PATTERN = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
MAX_MESSAGE_BYTES = 256 * 1024  # SNS messages are at most 256 KiB
_MAX_CERT_BYTES = 64 * 1024
_CACHE_SIZE = 32

_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1, "2": hashes.SHA256}  # SignatureVersion 1 is SHA1: SNS still uses it


@dataclass(frozen=True)
class SnsMessage:
    """A verified SNS message."""

    type: str  # Notification | SubscriptionConfirmation | UnsubscribeConfirmation
    message_id: str
    topic_arn: str
    message: str  # for SES notifications: the SES JSON document
    subscribe_url: str = ""  # confirmations: the URL that confirms the subscription
    timestamp: str = ""


def canonical_string(message: dict[str, str]) -> str:
    """The string SNS signs: ``Name\\nvalue\\n`` for each signed field present, in order.
    ``Subject`` is signed only when the message has one."""
    fields = _FIELDS.get(message.get("Type", ""))
    if fields is None:
        raise UnverifiedCallback(f"unknown SNS message type {message.get('Type', '')[:40]!r}")
    out = []
    for name in fields:
        if name not in message:
            if name == "Subject":
                continue
            raise UnverifiedCallback(f"SNS message without {name}")
        out.append(f"{name}\n{message[name]}\n")
    return "".join(out)


def decode_message(body: bytes) -> dict[str, str]:
    """The JSON body of an SNS POST as a flat dict of strings (UnreadableReport if not)."""
    if len(body) > MAX_MESSAGE_BYTES + 16 * 1024:
        raise UnreadableReport("SNS message over 256 KiB")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UnreadableReport("SNS message is not JSON") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for k, v in data.items()
                                             if k in {"Type", "Message", "Signature"}):
        raise UnreadableReport("SNS message is not a JSON object of strings")
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


class SnsVerifier:
    """Verifies SNS messages; one per process (it caches certificates, thread-safely).

    ``origin_pattern`` is a regular expression the ``scheme://host[:port]`` of the
    certificate and subscribe URLs must match in full (``MC_SNS_ORIGIN_PATTERN``; tests
    point it at a local server).  ``topic_arns``: the topics accepted; none → every
    message is refused.  ``ssl_context`` verifies the certificate host's TLS (the system
    trust store by default).
    """

    def __init__(self, topic_arns: Collection[str], origin_pattern: str = DEFAULT_ORIGIN_PATTERN,
                 timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.topic_arns = frozenset(t.strip() for t in topic_arns if t.strip())
        self.origin = re.compile(origin_pattern)
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.now = now or (lambda: datetime.now(UTC))
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._lock = threading.Lock()
        self.fetches = 0  # certificates fetched (the cache's misses)

    def url_allowed(self, url: str, *, certificate: bool = False) -> bool:
        """Whether ``url`` is on an allowed origin (and, for a certificate, a ``.pem``)."""
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            return False
        if parts.username or parts.password or not parts.hostname:
            return False
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if not self.origin.fullmatch(origin):
            return False
        return not certificate or (parts.path.endswith(".pem") and not parts.query)

    def verify(self, body: bytes) -> SnsMessage:
        """The verified message in ``body``; raises when anything does not check out."""
        message = decode_message(body)
        signed = canonical_string(message)
        version = message.get("SignatureVersion", "")
        algorithm = _HASHES.get(version)
        if algorithm is None:
            raise UnverifiedCallback(f"unsupported SNS SignatureVersion {version[:10]!r}")
        topic = message.get("TopicArn", "")
        if topic not in self.topic_arns:
            raise UnverifiedCallback("SNS topic not allowed (MC_SNS_TOPIC_ARNS)")
        cert_url = message.get("SigningCertURL") or message.get("SigningCertUrl") or ""
        if not self.url_allowed(cert_url, certificate=True):
            raise UnverifiedCallback("SNS SigningCertURL not on an allowed host")
        try:
            signature = base64.b64decode(message.get("Signature", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UnverifiedCallback("SNS Signature is not base64") from exc
        key = self.public_key(cert_url)
        try:
            key.verify(signature, signed.encode("utf-8"), padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise UnverifiedCallback("SNS signature does not verify") from exc
        subscribe_url = message.get("SubscribeURL", "")
        if subscribe_url and not self.url_allowed(subscribe_url):
            raise UnverifiedCallback("SNS SubscribeURL not on an allowed host")
        return SnsMessage(message["Type"], message.get("MessageId", ""), topic,
                          message.get("Message", ""), subscribe_url,
                          message.get("Timestamp", ""))

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at ``url``, from the cache or fetched once."""
        with self._lock:
            if url in self._keys:
                self._keys.move_to_end(url)
                return self._keys[url]
        pem = self._fetch(url)
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise UnverifiedCallback("SNS signing certificate is not a PEM certificate") from exc
        now = self.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise UnverifiedCallback("SNS signing certificate is expired or not yet valid")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise UnverifiedCallback("SNS signing certificate does not hold an RSA key")
        with self._lock:
            self._keys[url] = key
            while len(self._keys) > _CACHE_SIZE:
                self._keys.popitem(last=False)
        return key

    def _fetch(self, url: str) -> bytes:
        self.fetches += 1
        try:
            with _opener(self.ssl_context).open(url, timeout=self.timeout) as response:
                data = bytes(response.read(_MAX_CERT_BYTES + 1))
        except _Redirected as exc:
            raise UnverifiedCallback("SNS certificate URL redirects elsewhere") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServerError(f"cannot fetch the SNS signing certificate: "
                              f"{getattr(exc, 'reason', exc)}") from exc
        if len(data) > _MAX_CERT_BYTES:
            raise UnverifiedCallback("SNS signing certificate over 64 KiB")
        return data

    def confirm(self, subscribe_url: str) -> int:
        """Visit ``subscribe_url`` (a verified SubscriptionConfirmation's) to confirm the
        subscription; the HTTP status.  Refuses URLs off the allowed origins."""
        if not self.url_allowed(subscribe_url):
            raise UnverifiedCallback("SNS SubscribeURL not on an allowed host")
        try:
            with _opener(self.ssl_context).open(subscribe_url,
                                                    timeout=self.timeout) as response:
                response.read(_MAX_CERT_BYTES)
                return int(response.status)
        except _Redirected as exc:
            raise UnverifiedCallback("SNS SubscribeURL redirects elsewhere") from exc
        except urllib.error.HTTPError as exc:
            raise ServerError(f"SNS subscription confirmation answered {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServerError(f"cannot confirm the SNS subscription: "
                              f"{getattr(exc, 'reason', exc)}") from exc


class _Redirected(urllib.error.URLError):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off the allowed hosts: never follow one."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise _Redirected(f"redirect {code}")


def _opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=context))
