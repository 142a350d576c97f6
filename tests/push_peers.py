"""Local protocol peers for the push connectors: an APNs server (HTTP/2 over TLS) and an
FCM server with its OAuth2 token endpoint, both strict and scripted.

They are written from the providers' documentation, not from our connectors: the APNs
peer verifies the provider token's ES256 signature with the public key and checks every
header; the FCM peer verifies the JWT-bearer assertion's RS256 signature against the
service account's public key and the bearer token of every send, and answers FCM v1's
real error JSON.  Outcomes are scripted per device token (a list consumed one attempt at
a time, then "ok").  Served by hypercorn with certificates from trustme.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from soap_service.devserve import AsgiServer

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.shop"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass
class Seen:
    """One request as the peer received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    http_version: str
    bearer: str = ""
    client: tuple[str, int] | None = None  # the connection's (host, port)


class FakeClock:
    """Unix seconds that only move when a test says so (shared by a connector and a peer)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Tls:
    ca_file: Path
    cert_file: Path


def make_tls(directory: Path) -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file = directory / "ca.pem", directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    return Tls(ca_file, cert_file)


def pem_private(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: Any = None,
                  headers: dict[str, str] | None = None) -> None:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]})
    await send({"type": "http.response.body", "body": raw})


class Peer:
    """Common parts: the outcome script, the request log, lifespan, a clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.script: dict[str, list[str]] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()  # lets "slow" requests finish (or the test ends)
        self._lock = threading.Lock()

    def outcome(self, token: str) -> str:
        with self._lock:
            queue = self.script.get(token)
            return queue.pop(0) if queue else "ok"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        await self.handle(scope, headers, await _body(receive), send)

    async def handle(self, scope: dict[str, Any], headers: dict[str, str], body: bytes,
                     send: Any) -> None:
        raise NotImplementedError

    async def slow(self) -> None:
        while not self.release.is_set():
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------- APNs


class ApnsPeer(Peer):
    """APNs as documented by Apple: ``POST /3/device/{token}`` over HTTP/2."""

    def __init__(self, public_key: Any, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.public_key = public_key
        self.expired: set[str] = set()  # provider tokens answered ExpiredProviderToken

    def provider_tokens(self) -> list[str]:
        """Distinct provider tokens seen, in order of first use."""
        return list(dict.fromkeys(s.bearer for s in self.seen))

    def expire_seen_tokens(self) -> None:
        self.expired.update(self.provider_tokens())

    def _auth_problem(self, authorization: str) -> str:
        if not authorization.startswith("bearer "):
            return "MissingProviderToken"
        token = authorization[len("bearer "):]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                options={"verify_iat": False, "require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if header.get("kid") != KEY_ID or claims["iss"] != TEAM_ID \
                or set(claims) != {"iss", "iat"}:
            return "InvalidProviderToken"
        if token in self.expired or self.clock() - claims["iat"] > 3600:
            return "ExpiredProviderToken"
        if claims["iat"] > self.clock() + 60:
            return "InvalidProviderToken"
        return ""

    async def handle(self, scope: dict[str, Any], headers: dict[str, str], body: bytes,
                     send: Any) -> None:
        path = scope["path"]
        authorization = headers.get("authorization", "")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"unparsable": body.decode("latin-1")}
        bearer = authorization[len("bearer "):] if authorization.startswith("bearer ") else ""
        self.seen.append(Seen(path, headers, payload, scope["http_version"], bearer,
                              tuple(scope["client"]) if scope.get("client") else None))
        if scope["method"] != "POST" or not path.startswith("/3/device/"):
            return await _answer(send, 404, {"reason": "BadPath"})
        problem = self._auth_problem(authorization)
        if problem:
            return await _answer(send, 403, {"reason": problem})
        for name in ("apns-topic", "apns-push-type", "apns-priority", "apns-expiration"):
            if name not in headers:
                return await _answer(send, 400, {"reason": f"Missing {name}"})
        if headers["apns-topic"] != TOPIC:
            return await _answer(send, 400, {"reason": "TopicDisallowed"})
        if not isinstance(payload.get("aps"), dict):
            return await _answer(send, 400, {"reason": "PayloadEmpty"})
        outcome = self.outcome(path[len("/3/device/"):])
        await self.reply(outcome, send)

    async def reply(self, outcome: str, send: Any) -> None:
        replies: dict[str, tuple[int, Any, dict[str, str]]] = {
            "unregistered": (410, {"reason": "Unregistered",
                                   "timestamp": int(self.clock() * 1000)}, {}),
            "bad-token": (400, {"reason": "BadDeviceToken"}, {}),
            "not-for-topic": (400, {"reason": "DeviceTokenNotForTopic"}, {}),
            "bad-collapse": (400, {"reason": "BadCollapseId"}, {}),
            "forbidden": (403, {"reason": "InvalidProviderToken"}, {}),
            "throttled": (429, {"reason": "TooManyRequests"}, {"retry-after": "7"}),
            "internal": (500, {"reason": "InternalServerError"}, {}),
            "unavailable": (503, {"reason": "ServiceUnavailable"}, {"retry-after": "11"}),
            "garbage": (502, b"<html>bad gateway</html>", {}),
        }
        if outcome == "slow":
            await self.slow()
            outcome = "ok"
        if outcome == "ok":
            return await _answer(send, 200, None, {"apns-id": str(uuid.uuid4()).upper()})
        status, body, headers = replies[outcome]
        await _answer(send, status, body, headers)


@dataclass
class ApnsSetup:
    peer: ApnsPeer
    url: str
    ca_file: Path
    key_file: Path
    server: AsgiServer

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"base_url": self.url, "team_id": TEAM_ID, "key_id": KEY_ID,
                "key_file": str(self.key_file), "topic": TOPIC, "ca_file": str(self.ca_file),
                **extra}


def serve_apns(directory: Path, clock: Callable[[], float] = time.time) -> Iterator[ApnsSetup]:
    """An APNs peer on a free TLS port; yields its setup, stops it afterwards."""
    tls = make_tls(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = directory / "AuthKey_KEY1234567.p8"
    key_file.write_text(pem_private(key), encoding="ascii")
    peer = ApnsPeer(key.public_key(), clock)
    server = AsgiServer(peer, "127.0.0.1", tls_port=0, certfile=tls.cert_file,
                        keyfile=tls.cert_file).start()
    try:
        yield ApnsSetup(peer, f"https://127.0.0.1:{server.tls_port}", tls.ca_file, key_file,
                        server)
    finally:
        peer.release.set()
        server.stop()


# ---------------------------------------------------------------- FCM


def fcm_error(http: int, status: str, message: str, code: str = "",
              field_violation: str = "") -> dict[str, Any]:
    """FCM v1's error body, as documented (google.rpc.Status + FcmError detail)."""
    details: list[dict[str, Any]] = []
    if code:
        details.append({"@type": FCM_ERROR, "errorCode": code})
    if field_violation:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field_violation,
                                             "description": "Invalid registration token"}]})
    error: dict[str, Any] = {"code": http, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


FCM_REPLIES: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "unregistered": (404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.",
                                    "UNREGISTERED"), {}),
    "invalid-token": (400, fcm_error(400, "INVALID_ARGUMENT", "The registration token is not "
                                     "a valid FCM registration token", "INVALID_ARGUMENT",
                                     "message.token"), {}),
    "invalid-payload": (400, fcm_error(400, "INVALID_ARGUMENT", "Invalid value at "
                                       "'message.data[0].value' (TYPE_STRING)",
                                       "INVALID_ARGUMENT"), {}),
    "sender-mismatch": (403, fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch",
                                       "SENDER_ID_MISMATCH"), {}),
    "third-party": (401, fcm_error(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push "
                                   "Service", "THIRD_PARTY_AUTH_ERROR"), {}),
    "permission": (403, fcm_error(403, "PERMISSION_DENIED", "Permission "
                                  "'cloudmessaging.messages.create' denied"), {}),
    "quota": (429, fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric",
                             "QUOTA_EXCEEDED"), {"retry-after": "13"}),
    "unavailable": (503, fcm_error(503, "UNAVAILABLE", "The service is currently "
                                   "unavailable.", "UNAVAILABLE"), {"retry-after": "17"}),
    "internal": (500, fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
                 {}),
}


class FcmPeer(Peer):
    """FCM HTTP v1 ``messages:send`` and Google's OAuth2 token endpoint (``/token``)."""

    def __init__(self, account: dict[str, Any], public_key: Any, project: str,
                 clock: Callable[[], float] = time.time, expires_in: int = 3599) -> None:
        super().__init__(clock)
        self.account = account
        self.public_key = public_key
        self.project = project
        self.expires_in = expires_in
        self.token_requests = 0
        self.token_failure: tuple[int, dict[str, Any]] | None = None
        self.token_slow = False  # True: the token endpoint hangs until released
        self.issued: dict[str, float] = {}  # access token -> expiry (peer clock)
        self.accept_tokens = True  # False: every send is 401 (a project that refuses us)
        self.token_uri = ""  # set once the port is known

    def revoke_all(self) -> None:
        self.issued.clear()

    async def handle(self, scope: dict[str, Any], headers: dict[str, str], body: bytes,
                     send: Any) -> None:
        if scope["path"] == "/token" and scope["method"] == "POST":
            return await self.grant(body, send)
        if scope["path"] == f"/v1/projects/{self.project}/messages:send":
            return await self.message(scope, headers, body, send)
        await _answer(send, 404, fcm_error(404, "NOT_FOUND", "not found"))

    async def grant(self, body: bytes, send: Any) -> None:
        self.token_requests += 1
        if self.token_slow:
            await self.slow()
        if self.token_failure is not None:
            return await _answer(send, *self.token_failure)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return await _answer(send, 400, {"error": "unsupported_grant_type"})
        try:
            header = jwt.get_unverified_header(form.get("assertion", ""))
            claims = jwt.decode(form["assertion"], self.public_key, algorithms=["RS256"],
                                audience=self.token_uri, options={"verify_exp": False,
                                                                  "verify_iat": False})
        except (jwt.PyJWTError, KeyError):
            return await _answer(send, 400, {"error": "invalid_grant",
                                             "error_description": "Invalid JWT Signature."})
        now = self.clock()
        if header.get("kid") != self.account["private_key_id"] \
                or claims.get("iss") != self.account["client_email"] \
                or claims.get("scope") != FCM_SCOPE \
                or not claims["iat"] - 60 <= now <= claims["exp"] \
                or claims["exp"] - claims["iat"] > 3600:
            return await _answer(send, 400, {"error": "invalid_grant",
                                             "error_description": "Invalid JWT claims."})
        token = f"ya29.{secrets.token_urlsafe(16)}"
        self.issued[token] = now + self.expires_in
        await _answer(send, 200, {"access_token": token, "expires_in": self.expires_in,
                                  "token_type": "Bearer"})

    async def message(self, scope: dict[str, Any], headers: dict[str, str], body: bytes,
                      send: Any) -> None:
        authorization = headers.get("authorization", "")
        bearer = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        self.seen.append(Seen(scope["path"], headers, request, scope["http_version"], bearer,
                              tuple(scope["client"]) if scope.get("client") else None))
        if self.issued.get(bearer, 0) <= self.clock() or not self.accept_tokens:
            return await _answer(send, 401, fcm_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
        message = request.get("message") if isinstance(request, dict) else None
        if headers.get("content-type") != "application/json" or not isinstance(message, dict) \
                or not isinstance(message.get("token"), str):
            return await _answer(send, 400, fcm_error(400, "INVALID_ARGUMENT",
                                                      "Invalid JSON payload received."))
        outcome = self.outcome(message["token"])
        if outcome == "slow":
            await self.slow()
            outcome = "ok"
        if outcome == "ok":
            name = f"projects/{self.project}/messages/0:{secrets.token_hex(8)}"
            return await _answer(send, 200, {"name": name})
        await _answer(send, *FCM_REPLIES[outcome])


@dataclass
class FcmSetup:
    peer: FcmPeer
    url: str  # https (HTTP/2)
    plain_url: str  # http (HTTP/1.1)
    ca_file: Path
    account_file: Path
    server: AsgiServer
    extra: dict[str, Any] = field(default_factory=dict)

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"base_url": self.url, "service_account_file": str(self.account_file),
                "ca_file": str(self.ca_file), **extra}


def make_service_account(directory: Path, project: str = "shop-app",
                         token_uri: str = "") -> tuple[Path, dict[str, Any], Any]:
    """A throwaway service-account JSON like Google's, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {
        "type": "service_account", "project_id": project,
        "private_key_id": secrets.token_hex(20), "private_key": pem_private(key),
        "client_email": f"mc-sender@{project}.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(account, indent=2), encoding="utf-8")
    return path, account, key.public_key()


def serve_fcm(directory: Path, clock: Callable[[], float] = time.time,
              project: str = "shop-app", expires_in: int = 3599) -> Iterator[FcmSetup]:
    """An FCM peer on a free TLS port and a free plain port (the same app)."""
    tls = make_tls(directory)
    path, account, public_key = make_service_account(directory, project)
    peer = FcmPeer(account, public_key, project, clock, expires_in)
    server = AsgiServer(peer, "127.0.0.1", tls_port=0, plain_port=0, certfile=tls.cert_file,
                        keyfile=tls.cert_file).start()
    url = f"https://127.0.0.1:{server.tls_port}"
    peer.token_uri = f"{url}/token"
    account["token_uri"] = peer.token_uri
    path.write_text(json.dumps(account, indent=2), encoding="utf-8")
    try:
        yield FcmSetup(peer, url, f"http://127.0.0.1:{server.plain_port}", tls.ca_file, path,
                       server)
    finally:
        peer.release.set()
        server.stop()
