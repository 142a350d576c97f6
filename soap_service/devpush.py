"""Development push sink: a local APNs and FCM stand-in that stores every notification.

``msgcenter devpush`` runs it so push works end to end on a laptop; tests use the same
classes in-process.  One ASGI app (:class:`DevPushApp`) served by hypercorn:

* **APNs** on the TLS port (HTTP/2, certificate made at first start under ``<dir>/tls/``;
  clients trust ``<dir>/tls/ca.pem``): ``POST /3/device/{token}`` with APNs' checks —
  a well-formed ES256 provider token with ``kid`` and ``iss`` (its signature too when
  ``apns_key`` is given), ``apns-topic``, push type, priority, expiration, collapse id,
  a JSON payload with ``aps`` of at most 4 KB — answering as APNs does.
* **FCM** on the plain port (HTTP/1.1, or HTTP/2 with prior knowledge), and on the TLS
  port too (HTTP/2, as Google serves it; cheaper per message than HTTP/1.1):
  ``POST /token`` grants access tokens for a JWT-bearer assertion (RS256, ``iss``,
  ``scope``, ``aud``; its signature too when ``fcm_key`` is given), and
  ``POST /v1/projects/{project}/messages:send`` checks the bearer token and the message
  and answers ``{"name": ...}`` or FCM's error JSON.

Each accepted notification becomes ``<dir>/<time>-<n>-<platform>.json`` (platform, token,
title, body, data, headers or android options, id; written to a temporary name, then
renamed).  At first start it also writes throwaway credentials a connector can use
(``<dir>/credentials/apns-key.p8``, ``fcm-service-account.json``).  A fault plan
(:class:`PushFault`) scripts failures for tests.  It relays nothing anywhere.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from soap_service.devpush_checks import (
    FAULT_KINDS,
    FCM_GRANT,
    Reply,
    check_apns_request,
    check_assertion,
    check_fcm_message,
    fault_reply,
    fcm_error,
    load_public_key,
)
from soap_service.devserve import AsgiServer, ensure_tls
from soap_service.errors import ConfigError

MAX_BODY = 64 * 1024  # bytes read of any request; APNs allows 4 KB of payload
_FCM_SEND = re.compile(r"^/v1/projects/([^/]+)/messages:send$")


@dataclass(frozen=True)
class PushFault:
    """A scripted failure, answered in the platform's own shape: ``unregistered``,
    ``bad-token``, ``throttled``, ``unavailable`` or ``internal``."""

    kind: str
    retry_after: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")


FaultPlan = Callable[[str, str], PushFault | None]  # (platform, token) -> fault or None


@dataclass(frozen=True)
class Notification:
    """One accepted notification, as stored."""

    platform: str  # ios | android
    token: str
    title: str
    body: str
    data: dict[str, Any]
    headers: dict[str, str]  # APNs: the apns-* request headers; FCM: the android options
    id: str  # the apns-id, or the FCM message name
    received_at: str
    path: Path | None = field(default=None, compare=False)


class PushStore:
    """Notifications as JSON files in ``directory`` (and in memory when ``keep``)."""

    def __init__(self, directory: Path | str | None, keep: bool = True) -> None:
        self.directory = Path(directory) if directory else None
        self.keep = keep  # False: files only (a long-running sink must not grow in memory)
        self._items: list[Notification] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, note: Notification) -> Notification:
        if self.directory is not None:
            n = next(self._counter)
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{n:06d}-{note.platform}.json"
            record = {k: v for k, v in asdict(note).items() if k != "path"}
            tmp = self.directory / f".{name}.tmp"
            tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n",
                           encoding="utf-8")
            final = self.directory / name
            tmp.rename(final)
            note = Notification(**{**record, "path": final})
        if self.keep:
            with self._lock:
                self._items.append(note)
        return note

    @property
    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._items)


class DevPushApp:
    """The ASGI app: APNs on https, FCM (token endpoint and messages:send) on http."""

    def __init__(self, store: PushStore, *, apns_key: Any = None, fcm_key: Any = None,
                 plan: FaultPlan | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.apns_key = apns_key
        self.fcm_key = fcm_key
        self.plan = plan
        self.clock = clock
        self._access: dict[str, float] = {}  # issued FCM access tokens -> expiry
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body, complete = await _read_body(receive)
        reply = self.handle(scope, body) if complete else \
            Reply(413, {"reason": "PayloadTooLarge"})
        headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.body is not None:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": reply.encoded()})

    def handle(self, scope: dict[str, Any], body: bytes) -> Reply:
        path, method = scope["path"], scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if path.startswith("/3/device/") and scope.get("scheme") == "https":
            if method != "POST":
                return Reply(405, {"reason": "MethodNotAllowed"})
            return self._apns(path[len("/3/device/"):], headers, body)
        if path == "/token" and method == "POST":
            return self._grant(body)
        match = _FCM_SEND.match(path)
        if match and method == "POST":
            return self._fcm(match.group(1), headers, body)
        if path.startswith("/3/device/"):
            return Reply(404, {"reason": "BadPath"})
        return fcm_error(404, "NOT_FOUND", f"no such endpoint: {method} {path}"[:200])

    def _apns(self, token: str, headers: dict[str, str], body: bytes) -> Reply:
        refusal, payload = check_apns_request(token, headers, body, self.apns_key,
                                              self.clock())
        if refusal is not None:
            return refusal
        fault = self.plan("ios", token) if self.plan else None
        if fault is not None:
            return fault_reply("ios", fault.kind, fault.retry_after, self.clock())
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        alert = payload["aps"].get("alert")
        alert = alert if isinstance(alert, dict) else {"body": alert or ""}
        self.store.add(Notification(
            "ios", token, str(alert.get("title", "")), str(alert.get("body", "")),
            {k: v for k, v in payload.items() if k != "aps"},
            {k: v for k, v in headers.items() if k.startswith("apns-")}, apns_id, _now()))
        return Reply(200, None, {"apns-id": apns_id})

    def _grant(self, body: bytes) -> Reply:
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("grant_type", [""])[0] != FCM_GRANT:
            return Reply(400, {"error": "unsupported_grant_type",
                               "error_description": "Invalid grant_type"})
        problem = check_assertion(form.get("assertion", [""])[0], self.fcm_key, self.clock())
        if problem:
            return Reply(400, {"error": "invalid_grant", "error_description": problem})
        token = f"devpush.{secrets.token_urlsafe(24)}"
        with self._lock:
            now = self.clock()
            self._access = {t: e for t, e in self._access.items() if e > now}
            self._access[token] = now + 3600
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _fcm(self, project: str, headers: dict[str, str], body: bytes) -> Reply:
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else ""
        with self._lock:
            known = self._access.get(bearer, 0) > self.clock()
        if not known:
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                             "credentials. Expected OAuth 2 access token.")
        refusal, message = check_fcm_message(body)
        if refusal is not None:
            return refusal
        token = message["token"]
        fault = self.plan("android", token) if self.plan else None
        if fault is not None:
            return fault_reply("android", fault.kind, fault.retry_after, self.clock())
        name = f"projects/{project}/messages/0:{secrets.token_hex(8)}"
        notification = message.get("notification") or {}
        android = message.get("android") or {}
        self.store.add(Notification(
            "android", token, str(notification.get("title", "")),
            str(notification.get("body", "")), dict(message.get("data") or {}),
            {str(k): str(v) for k, v in android.items()}, name, _now()))
        return Reply(200, {"name": name})


async def _read_body(receive: Any) -> tuple[bytes, bool]:
    """The request body, or (what was read, False) once it passes :data:`MAX_BODY`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), size <= MAX_BODY


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- running it


@dataclass(frozen=True)
class Credentials:
    """Throwaway credentials written at first start, for the connectors of a demo."""

    apns_key: Path  # an ES256 .p8 key (key_id DEVPUSH001, any team_id)
    fcm_service_account: Path  # a service-account JSON whose token_uri is this devpush


class DevPush:
    """The devpush server: :class:`DevPushApp` on an APNs (TLS) and an FCM (plain) port."""

    def __init__(self, host: str = "127.0.0.1", apns_port: int = 0, fcm_port: int = 0,
                 directory: Path | str | None = None, *, keep: bool = True,
                 apns_key: Path | str | None = None, fcm_key: Path | str | None = None,
                 plan: FaultPlan | None = None, tls_dir: Path | str | None = None) -> None:
        """``directory`` None keeps notifications in memory only (and TLS files in
        ``tls_dir``, which is then required); ``apns_key`` / ``fcm_key`` name the key
        files to verify signatures with (a .p8 / PEM key, or a service-account JSON)."""
        self.directory = Path(directory) if directory is not None else None
        if tls_dir is not None:
            tls_home = Path(tls_dir)
        elif self.directory is not None:
            tls_home = self.directory / "tls"
        else:
            raise ValueError("directory or tls_dir is needed")
        self.store = PushStore(self.directory, keep)
        self.tls = ensure_tls(tls_home, [host])
        self.app = DevPushApp(self.store, apns_key=load_public_key(apns_key),
                              fcm_key=load_public_key(fcm_key), plan=plan)
        self.server = AsgiServer(self.app, host, tls_port=apns_port, plain_port=fcm_port,
                                 certfile=self.tls.cert, keyfile=self.tls.key)
        self.host = host

    @property
    def apns_url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.server.tls_port}"

    @property
    def fcm_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.server.plain_port}"

    @property
    def notifications(self) -> list[Notification]:
        return self.store.notifications

    def write_credentials(self) -> Credentials:
        """Throwaway APNs and FCM credentials under ``<dir>/credentials/`` (kept)."""
        from soap_service.devpush_checks import write_credentials

        if self.directory is None:
            raise ValueError("credentials need a directory")
        apns, fcm = write_credentials(self.directory / "credentials", f"{self.fcm_url}/token")
        return Credentials(apns, fcm)

    def start(self) -> DevPush:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> DevPush:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Notification]:
        """Block until at least ``count`` notifications arrived (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.store.notifications) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.store.notifications


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):  # noqa: S104 - listening everywhere; connect locally
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def start_devpush(host: str, apns_port: int, fcm_port: int, directory: Path | str, *,
                  apns_key: str | None = None, fcm_key: str | None = None) -> DevPush:
    """Start the sink of ``msgcenter devpush``; a busy port is a one-line error."""
    try:
        sink = DevPush(host, apns_port, fcm_port, directory, keep=False,
                       apns_key=apns_key, fcm_key=fcm_key)
        return sink.start()
    except OSError as exc:  # port in use, unknown host, directory not writable
        raise ConfigError(f"devpush cannot start on {host} (APNs port {apns_port}, FCM port "
                          f"{fcm_port}): {exc.strerror or exc}") from exc




def serve_forever(sink: DevPush) -> None:
    """Run a started sink until Ctrl-C or SIGTERM, then stop it."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sink.stop()
