"""What ``msgcenter devpush`` checks and answers: the APNs and FCM wire rules, pure.

Each check takes a request's parts and returns either a refusal (:class:`Reply`, shaped
as the real service shapes it: APNs ``{"reason": ...}``, FCM's ``{"error": {"code",
"message", "status", "details"}}``, OAuth's ``{"error", "error_description"}``) or what
was accepted.  Also the keys devpush verifies signatures with, and the throwaway
credentials it writes for a demo's connectors.  No I/O except reading and writing key
files.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)

from soap_service.errors import ConfigError

FCM_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPES = {"https://www.googleapis.com/auth/firebase.messaging",
              "https://www.googleapis.com/auth/cloud-platform"}
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
APNS_MAX_PAYLOAD = 4096
APNS_TOKEN_LIFETIME = 3600  # APNs refuses provider tokens older than an hour
APNS_PUSH_TYPES = {"alert", "background", "location", "voip", "complication",
                   "fileprovider", "mdm", "liveactivity", "pushtotalk", "widgets"}
FAULT_KINDS = ("unregistered", "bad-token", "throttled", "unavailable", "internal")
_HEX = re.compile(r"^[0-9a-fA-F]{1,200}$")
_FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{1,4096}$")
_TTL = re.compile(r"^\d{1,10}(\.\d{1,9})?s$")
_MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns",
                   "fcm_options", "token", "topic", "condition"}


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, a JSON-able body (None: empty) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode("utf-8")


def apns_refusal(status: int, reason: str, **headers: str) -> Reply:
    return Reply(status, {"reason": reason}, headers)


def fcm_error(http: int, status: str, message: str, error_code: str = "",
              token_field: bool = False, headers: dict[str, str] | None = None) -> Reply:
    """FCM v1's error JSON (google.rpc.Status with an FcmError detail)."""
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": FCM_ERROR, "errorCode": error_code})
    if token_field:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [
            {"field": "message.token", "description": "Invalid registration token"}]})
    error: dict[str, Any] = {"code": http, "message": message, "status": status}
    if details:
        error["details"] = details
    return Reply(http, {"error": error}, headers or {})


def fault_reply(platform: str, kind: str, retry_after: int, now: float) -> Reply:
    """A scripted failure in the platform's own shape."""
    wait = {"retry-after": str(retry_after)}
    if platform == "ios":
        return {
            "unregistered": Reply(410, {"reason": "Unregistered", "timestamp": int(now * 1000)}),
            "bad-token": apns_refusal(400, "BadDeviceToken"),
            "throttled": Reply(429, {"reason": "TooManyRequests"}, wait),
            "unavailable": Reply(503, {"reason": "ServiceUnavailable"}, wait),
            "internal": Reply(500, {"reason": "InternalServerError"}),
        }[kind]
    return {
        "unregistered": fcm_error(404, "NOT_FOUND", "Requested entity was not found.",
                                  "UNREGISTERED"),
        "bad-token": fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a "
                               "valid FCM registration token", "INVALID_ARGUMENT",
                               token_field=True),
        "throttled": fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric "
                               "'Send requests'", "QUOTA_EXCEEDED", headers=wait),
        "unavailable": fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.",
                                 "UNAVAILABLE", headers=wait),
        "internal": fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
    }[kind]


# ---------------------------------------------------------------- APNs


def check_provider_token(authorization: str, key: Any, now: float) -> str:
    """The APNs reason refusing ``authorization`` ("" when it is acceptable)."""
    if not authorization.lower().startswith("bearer "):
        return "MissingProviderToken"
    token = authorization[7:].strip()
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "ES256" or not header.get("kid"):
            return "InvalidProviderToken"
        if key is not None:
            claims = jwt.decode(token, key, algorithms=["ES256"],
                                options={"verify_iat": False})
        else:
            claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "InvalidProviderToken"
    iat = claims.get("iat")
    if not claims.get("iss") or not isinstance(iat, int) or isinstance(iat, bool):
        return "InvalidProviderToken"
    if now - iat > APNS_TOKEN_LIFETIME:
        return "ExpiredProviderToken"
    return ""


def check_apns_request(token: str, headers: dict[str, str], body: bytes, key: Any,
                       now: float) -> tuple[Reply | None, dict[str, Any]]:
    """(refusal, None-like {}) or (None, the payload) for ``POST /3/device/{token}``."""
    reason = check_provider_token(headers.get("authorization", ""), key, now)
    if reason:
        return apns_refusal(403, reason), {}
    if not token:
        return apns_refusal(400, "MissingDeviceToken"), {}
    if not _HEX.match(token):
        return apns_refusal(400, "BadDeviceToken"), {}
    if not headers.get("apns-topic"):
        return apns_refusal(400, "MissingTopic"), {}
    push_type = headers.get("apns-push-type", "alert")
    if push_type not in APNS_PUSH_TYPES:
        return apns_refusal(400, "InvalidPushType"), {}
    if headers.get("apns-priority", "10") not in ("1", "5", "10"):
        return apns_refusal(400, "BadPriority"), {}
    if not headers.get("apns-expiration", "0").isdigit():
        return apns_refusal(400, "BadExpirationDate"), {}
    if len(headers.get("apns-collapse-id", "").encode("utf-8")) > 64:
        return apns_refusal(400, "BadCollapseId"), {}
    if "apns-id" in headers and not re.fullmatch(
            r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", headers["apns-id"]):
        return apns_refusal(400, "BadMessageId"), {}
    if len(body) > APNS_MAX_PAYLOAD:
        return apns_refusal(413, "PayloadTooLarge"), {}
    if not body:
        return apns_refusal(400, "PayloadEmpty"), {}
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        # APNs documents no reason for a payload that is not JSON with "aps"
        return apns_refusal(400, "BadPayload"), {}
    return None, payload


# ---------------------------------------------------------------- FCM


def check_assertion(assertion: str, key: Any, now: float) -> str:
    """Why a JWT-bearer assertion is refused ("" when it is acceptable)."""
    try:
        header = jwt.get_unverified_header(assertion)
        if header.get("alg") != "RS256":
            return "Invalid JWT: the assertion must be signed with RS256."
        if key is not None:
            claims = jwt.decode(assertion, key, algorithms=["RS256"],
                                options={"verify_aud": False, "verify_exp": False,
                                         "verify_iat": False})
        else:
            claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidSignatureError:
        return "Invalid JWT Signature."
    except jwt.PyJWTError:
        return "Invalid JWT: not a signed JWT."
    iat, exp = claims.get("iat"), claims.get("exp")
    if not claims.get("iss") or not claims.get("aud"):
        return "Invalid JWT: iss and aud are required."
    if not FCM_SCOPES & set(str(claims.get("scope", "")).split()):
        return "Invalid JWT: no scope that allows firebase.messaging."
    if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600 \
            or exp <= now or iat > now + 300:
        return ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.")
    return ""


def _invalid(message: str, token_field: bool = False) -> tuple[Reply, dict[str, Any]]:
    return fcm_error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT", token_field), {}


def check_fcm_message(body: bytes) -> tuple[Reply | None, dict[str, Any]]:
    """(refusal, {}) or (None, the message) for ``messages:send``."""
    try:
        request = json.loads(body)
    except ValueError:
        return _invalid("Invalid JSON payload received.")
    message = request.get("message") if isinstance(request, dict) else None
    if not isinstance(message, dict):
        return _invalid("Invalid JSON payload received. 'message' is required.")
    unknown = sorted(set(message) - _MESSAGE_FIELDS)
    if unknown:
        return _invalid(f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at "
                        "'message': Cannot find field.")
    token = message.get("token")
    if not isinstance(token, str) or not _FCM_TOKEN.match(token):
        if message.get("topic") or message.get("condition"):
            return _invalid("devpush accepts token targets only")
        return _invalid("The registration token is not a valid FCM registration token",
                        token_field=True)
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or not all(
            isinstance(notification.get(k, ""), str) for k in ("title", "body")):
        return _invalid("Invalid value at 'message.notification'")
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return _invalid("Invalid value at 'message.data' (TYPE_STRING)")
    android = message.get("android", {})
    if not isinstance(android, dict):
        return _invalid("Invalid value at 'message.android'")
    if str(android.get("priority", "normal")).lower() not in ("normal", "high"):
        return _invalid("Invalid value at 'message.android.priority'")
    if "ttl" in android and not _TTL.match(str(android["ttl"])):
        return _invalid("Invalid value at 'message.android.ttl' (type.googleapis.com/"
                        "google.protobuf.Duration)")
    return None, message


# ---------------------------------------------------------------- keys


def load_public_key(path: Path | str | None) -> Any:
    """The public key to verify signatures with, from a PEM key (private or public) or a
    service-account JSON; None when no path is given."""
    if not path:
        return None
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key {path}: {exc.strerror or exc}") from exc
    try:
        if raw.lstrip().startswith(b"{"):
            raw = str(json.loads(raw)["private_key"]).encode("utf-8")
        if b"PRIVATE KEY" in raw:
            return load_pem_private_key(raw, password=None).public_key()
        return load_pem_public_key(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} holds no PEM key (nor a service-account JSON)") from exc


def write_credentials(directory: Path, token_uri: str) -> tuple[Path, Path]:
    """A throwaway APNs ``.p8`` key and FCM service-account JSON (made once, kept; the
    JSON's ``token_uri`` follows the current FCM port)."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    apns = directory / "apns-key.p8"
    if not apns.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _private(apns, key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    fcm = directory / "fcm-service-account.json"
    try:
        account = json.loads(fcm.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        account = None
    if not isinstance(account, dict) or not account.get("private_key"):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        account = {
            "type": "service_account", "project_id": "devpush",
            "private_key_id": secrets.token_hex(20),
            "private_key": rsa_key.private_bytes(pem, pkcs8,
                                                 serialization.NoEncryption()).decode("ascii"),
            "client_email": "devpush@devpush.iam.gserviceaccount.com",
            "client_id": "100000000000000000000", "token_uri": token_uri,
        }
    if account.get("token_uri") != token_uri or not fcm.exists():
        account["token_uri"] = token_uri
        _private(fcm, (json.dumps(account, indent=2) + "\n").encode("utf-8"))
    return apns, fcm


def _private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)
