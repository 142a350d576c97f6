"""Who is calling: passwords, session tokens, security zones and API keys -> Principal.

The SOAP edge builds :class:`Credentials` from the request and asks
:meth:`Authenticator.authenticate`; it gets a :class:`Principal` or one of
``InvalidCredentials`` (wrong login/password, unknown key, missing right),
``SessionExpired`` (``XSV-350008``: unknown/expired ``___`` token, never a wrong
password) or ``ZoneDenied`` (``XSV-350013``).  The hot path (~1,000 requests/s) is
served from small in-process caches: zones, sessions, API keys and operators for
``settings.auth_cache_ttl`` seconds (so a removed zone, revoked key or logoff in another
process takes effect within that delay), and successful password checks for
``settings.credential_cache_ttl`` seconds, keyed by a hash that includes the stored
password hash (a password change invalidates it).  Clear secrets are never stored,
cached or logged.  This module builds no SQL (that is ``store/auth.py``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from soap_service import clock
from soap_service.cache import TtlCache
from soap_service.config import Settings
from soap_service.errors import (
    Forbidden,
    InvalidCredentials,
    SessionExpired,
    ValidationFailed,
    ZoneDenied,
)
from soap_service.models import ApiKey, Operator, Zone
from soap_service.store import Database
from soap_service.store import auth as store

log = logging.getLogger(__name__)

# admin: everything; mc: push, templates, history; viewer: reads only (the console)
RIGHTS = frozenset({"mc", "admin", "viewer"})
# API key scopes (SPEC §8) and the right each one grants: ``push`` may push events (SOAP
# and REST), ``read`` may read events and their status, ``admin`` may do anything
# (retry, cancel, webhooks).  A key bound to an operator never exceeds the operator.
SCOPES = ("push", "read", "admin")
SCOPE_RIGHTS = {"push": "mc", "read": "read", "admin": "admin"}
DEFAULT_SCOPES = frozenset({"push"})
SESSION_PREFIX = "___"
API_KEY_PREFIX = "mc_"
TRUSTED_LOGIN = "mc"
CACHE_MAX_ENTRIES = 10_000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Credentials:
    token: str                 # sessiontoken as received (element/cookie/header), '' if none
    bearer: str | None         # API key from `Authorization: Bearer ...`
    remote_addr: str           # REMOTE_ADDR
    forwarded_for: str | None  # X-Forwarded-For header, honoured only from zones flagged proxy


@dataclass(frozen=True)
class Principal:
    operator_id: int | None
    login: str
    rights: frozenset[str]
    via: str                   # "session" | "password" | "apikey" | "trusted"

    def has_right(self, right: str) -> bool:
        """``admin`` holds every right."""
        return right in self.rights or "admin" in self.rights


# ---------------------------------------------------------------- passwords and tokens

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 128 * 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): salted, slow, self-describing."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password`'s output.

    Also reads ``pbkdf2_sha256$iterations$salt$hash``. A malformed hash never matches.
    """
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            expected = _unb64(parts[5])
            got = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(parts[4]), n=n, r=r, p=p,
                                 maxmem=_SCRYPT_MAXMEM, dklen=len(expected))
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            expected = _unb64(parts[3])
            got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), _unb64(parts[2]),
                                      int(parts[1]), dklen=len(expected))
        else:
            return False
    except (ValueError, OverflowError):
        return False
    return hmac.compare_digest(got, expected)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_session_token() -> str:
    return f"{SESSION_PREFIX}{uuid.uuid4()}"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def split_token(token: str) -> tuple[str, str] | None:
    """``login/password`` split at the **first** ``/`` (as the suite's SDK does), else None.

    A session token (``___...``) is never split, even if it contains a slash.
    """
    if token.startswith(SESSION_PREFIX) or "/" not in token:
        return None
    login, _, password = token.partition("/")
    return login, password


def parse_rights(rights: Iterable[str]) -> frozenset[str]:
    result = frozenset(r.strip() for r in rights if r.strip())
    unknown = result - RIGHTS
    if unknown:
        raise ValidationFailed(f"unknown right(s): {', '.join(sorted(unknown))} "
                               f"(known: {', '.join(sorted(RIGHTS))})")
    return result or frozenset({"mc"})


def parse_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """``["push", "read"]`` or ``["push,read"]`` -> scopes; unknown ones are refused."""
    result = frozenset(s.strip() for item in scopes for s in item.split(",") if s.strip())
    unknown = result - set(SCOPES)
    if unknown:
        raise ValidationFailed(f"unknown scope(s): {', '.join(sorted(unknown))} "
                               f"(known: {', '.join(SCOPES)})")
    return result or DEFAULT_SCOPES


def key_rights(scopes: frozenset[str], operator: Operator | None) -> frozenset[str]:
    """The rights an API key grants: its scopes, within what its operator (if any) holds
    (an operator with ``mc`` may push and read; ``admin`` may do everything)."""
    granted = {SCOPE_RIGHTS[s] for s in scopes if s in SCOPE_RIGHTS}
    if operator is None or "admin" in operator.rights:
        return frozenset(granted)
    allowed = {"mc", "read"} if "mc" in operator.rights else (
        {"read"} if "viewer" in operator.rights else set())
    return frozenset(granted & allowed)


# ---------------------------------------------------------------- zones and client address


@functools.lru_cache(maxsize=4096)  # pure; callers come from few addresses, on every request
def parse_ip(text: str) -> IPAddress | None:
    """An address from REMOTE_ADDR or an X-Forwarded-For hop; IPv4-mapped IPv6 -> IPv4."""
    value = text.strip()
    if value.startswith("[") and "]" in value:  # "[::1]:8080"
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # "10.0.0.1:8080"
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_cidr(cidr: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise ValidationFailed(f"invalid network {cidr!r}: {exc}") from exc


class ZoneTable:
    """Zones with parsed networks, most specific first (the first match wins)."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        parsed = [(parse_cidr(z.cidr), z) for z in zones]
        parsed.sort(key=lambda item: (-item[0].prefixlen, item[1].name))
        self._zones: Sequence[tuple[IPNetwork, Zone]] = parsed

    def match(self, ip: IPAddress | None) -> Zone | None:
        if ip is None:
            return None
        for network, zone in self._zones:
            if ip.version == network.version and ip in network:
                return zone
        return None

    def is_proxy(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(
            z.is_proxy and ip.version == n.version and ip in n for n, z in self._zones)

    def client_ip(self, remote_addr: str, forwarded_for: str | None) -> str:
        """REMOTE_ADDR, or the right-most X-Forwarded-For hop that is not a declared proxy.

        X-Forwarded-For is read only when REMOTE_ADDR is in a zone flagged ``is_proxy``; an
        unparsable hop is returned as is (it then matches no zone and is refused).
        """
        remote = parse_ip(remote_addr)
        if remote is None:
            return remote_addr.strip()
        if not forwarded_for or not self.is_proxy(remote):
            return str(remote)
        current = remote
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            ip = parse_ip(hop)
            if ip is None:
                return hop.strip()[:64]
            current = ip
            if not self.is_proxy(ip):
                break
        return str(current)


# ---------------------------------------------------------------- the authenticator


class Authenticator:
    """Turns :class:`Credentials` into a :class:`Principal`; one per process (caches)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # every entry is put with its own TTL (auth_cache_ttl or credential_cache_ttl)
        self._cache: TtlCache[Any] = TtlCache(settings.auth_cache_ttl, CACHE_MAX_ENTRIES)
        self._cache_secret = secrets.token_bytes(32)  # credential-cache keys are HMACs
        self._locks_lock = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._lock = threading.Lock()

    # -- zones
    def zones(self) -> ZoneTable:
        """The zone table, re-read from the database every ``auth_cache_ttl`` seconds."""
        table: ZoneTable | None = self._cache.get("zones")
        if table is not None:
            return table
        with self._lock:
            table = ZoneTable(store.list_zones(self.db))
            self._cache.put("zones", table, self.settings.auth_cache_ttl)
        return table

    def client_ip(self, remote_addr: str, forwarded_for: str | None) -> str:
        return self.zones().client_ip(remote_addr, forwarded_for)

    def zone_for(self, remote_addr: str, forwarded_for: str | None) -> Zone | None:
        """The caller's zone (for ``show_errors``), or None outside every zone."""
        table = self.zones()
        return table.match(parse_ip(table.client_ip(remote_addr, forwarded_for)))

    def _zone_or_deny(self, remote_addr: str, forwarded_for: str | None) -> Zone:
        table = self.zones()
        ip = table.client_ip(remote_addr, forwarded_for)
        zone = table.match(parse_ip(ip))
        if zone is None:
            log.info("auth.zone_denied ip=%s", ip)
            raise ZoneDenied(detail=f"address {ip} is outside every security zone")
        return zone

    # -- the hot path
    def authenticate(self, creds: Credentials, right: str = "mc") -> Principal:
        """Check the caller's zone and credentials, then that it holds ``right``."""
        zone = self._zone_or_deny(creds.remote_addr, creds.forwarded_for)
        token = creds.token.strip()
        if not token and creds.bearer:
            principal = self._by_api_key(creds.bearer.strip())
        elif not token:
            raise InvalidCredentials(detail="no session token")
        elif (pair := split_token(token)) is not None:
            principal = self._by_password(zone, *pair)
        else:
            principal = self._by_session(token)
        if not principal.has_right(right):
            log.info("auth.right_missing login=%s right=%s", principal.login, right)
            raise InvalidCredentials(detail=f"operator lacks the right {right!r}")
        return principal

    def _by_password(self, zone: Zone, login: str, password: str) -> Principal:
        if zone.session_token_only:
            log.info("auth.zone_denied zone=%s reason=session_token_only", zone.name)
            raise ZoneDenied(detail="only session tokens are accepted from this network")
        if password == "":
            return self._trusted(zone, login)
        if not zone.allow_user_password:
            log.info("auth.zone_denied zone=%s reason=user_password", zone.name)
            raise ZoneDenied(detail="login/password is not accepted from this network")
        op = self._check_password(login, password)
        return Principal(op.id, op.login, op.rights, "password")

    def _trusted(self, zone: Zone, login: str) -> Principal:
        """``login/`` with an empty password: only in a zone with ``allow_empty_password``."""
        if not zone.allow_empty_password:
            raise InvalidCredentials(detail="empty password")
        op = self._operator(login)
        if op is not None:
            return Principal(op.id, op.login, op.rights, "trusted")
        if login == TRUSTED_LOGIN:
            return Principal(None, TRUSTED_LOGIN, frozenset({"mc"}), "trusted")
        raise InvalidCredentials(detail="unknown login")

    def _operator(self, login: str) -> Operator | None:
        key = "op:" + login
        op = self._cache.get(key)
        if op is None:
            op = store.get_operator(self.db, login)
            if op is not None:
                self._cache.put(key, op, self.settings.auth_cache_ttl)
        return op

    def check_password(self, login: str, password: str) -> Operator:
        """The operator whose login and password these are (the console's login); else
        ``InvalidCredentials``, after the same work whether or not the login exists."""
        return self._check_password(login, password)

    def _check_password(self, login: str, password: str) -> Operator:
        op = self._operator(login)
        if op is None:
            verify_password(password, _dummy_hash())  # same cost as a real check: no enumeration
            raise InvalidCredentials(detail="unknown login")
        material = f"{op.id}\0{op.password_hash}\0{password}".encode()
        key = "pw:" + hmac.digest(self._cache_secret, material, "sha256").hex()  # C fast path
        if self._cache.get(key):
            return op
        # one check per credential at a time: the requests that arrive together on a cold
        # cache (every thread of a process just started) wait for it instead of each
        # spending ~50 ms of CPU on the same pbkdf2
        with self._verifying(key):
            if self._cache.get(key):
                return op
            if not verify_password(password, op.password_hash):
                log.info("auth.password_rejected operator_id=%s", op.id)
                raise InvalidCredentials(detail="wrong password")
            self._cache.put(key, True, self.settings.credential_cache_ttl)
        return op

    @contextlib.contextmanager
    def _verifying(self, key: str) -> Iterator[None]:
        """A lock per credential being checked (dropped when nobody waits on it)."""
        with self._locks_lock:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._locks_lock:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def _by_session(self, token: str) -> Principal:
        if not token.startswith(SESSION_PREFIX):
            raise SessionExpired(detail="not a session token")
        token_hash = sha256_hex(token)
        key = "s:" + token_hash
        found = self._cache.get(key)
        if found is None:
            found = store.find_session(self.db, token_hash)
            if found is None:
                raise SessionExpired(detail="unknown session token")
            self._cache.put(key, found, self.settings.auth_cache_ttl)
        op, expires_at = found
        if expires_at <= clock.utcnow():
            self._cache.pop(key)
            raise SessionExpired(detail="session token expired")
        return Principal(op.id, op.login, op.rights, "session")

    def _by_api_key(self, api_key: str) -> Principal:
        if not api_key.startswith(API_KEY_PREFIX):
            raise InvalidCredentials(detail="malformed API key")
        key_hash = sha256_hex(api_key)
        found = self._cache.get("k:" + key_hash)
        if found is None:
            found = store.find_api_key(self.db, key_hash)
            if found is None:
                raise InvalidCredentials(detail="unknown API key")
            self._cache.put("k:" + key_hash, found, self.settings.auth_cache_ttl)
        record, op = found
        if record.revoked_at is not None:
            raise InvalidCredentials(detail="API key revoked")
        rights = key_rights(record.scopes, op)
        if op is not None:
            return Principal(op.id, op.login, rights, "apikey")
        return Principal(None, f"apikey:{record.name}", rights, "apikey")

    def authenticate_key(self, api_key: str, remote_addr: str, forwarded_for: str | None,
                         scope: str) -> Principal:
        """The REST API's check: the caller's zone, then the key, then its ``scope``.

        ``InvalidCredentials`` for a missing, unknown, malformed or revoked key (401),
        ``Forbidden`` for a key without the scope (403), ``ZoneDenied`` outside every
        zone (403).  Zones apply as for SOAP; no password or session token here.
        """
        self._zone_or_deny(remote_addr, forwarded_for)
        if not api_key.strip():
            raise InvalidCredentials(detail="no API key")
        principal = self._by_api_key(api_key.strip())
        if not principal.has_right(SCOPE_RIGHTS[scope]):
            log.info("auth.scope_missing login=%s scope=%s", principal.login, scope)
            raise Forbidden(f"the API key lacks the scope {scope!r}")
        return principal

    # -- xtk:session
    def logon(self, login: str, password: str, remote_addr: str,
              forwarded_for: str | None) -> tuple[str, Principal]:
        """Check login/password and open a session: returns (``___<uuid>`` token, principal)."""
        zone = self._zone_or_deny(remote_addr, forwarded_for)
        if password == "":
            trusted = self._trusted(zone, login)
            op = self._operator(trusted.login)
            if op is None:  # the built-in trusted "mc" has no row to hang a session on
                raise InvalidCredentials(detail="no operator for a session")
        else:
            op = self._check_password(login, password)
        token = new_session_token()
        expires_at = clock.utcnow() + timedelta(seconds=self.settings.session_ttl)
        store.add_session(self.db, sha256_hex(token), op.id, expires_at)
        log.info("auth.logon operator_id=%s", op.id)
        return token, Principal(op.id, op.login, op.rights, "session")

    def logoff(self, token: str) -> None:
        """End a session (no-op for anything that is not a live ``___`` token)."""
        token = token.strip()
        if not token.startswith(SESSION_PREFIX):
            return
        token_hash = sha256_hex(token)
        self._cache.pop("s:" + token_hash)
        if store.delete_session(self.db, token_hash):
            log.info("auth.logoff")


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# ---------------------------------------------------------------- administration (CLI)


def create_operator(db: Database, login: str, password: str,
                    rights: Iterable[str] = ("mc",)) -> Operator:
    """Add an operator with a hashed password; ``/`` is refused in logins (token syntax)."""
    login = login.strip()
    if not login or "/" in login or login.startswith(SESSION_PREFIX):
        raise ValidationFailed("a login must be non-empty, without '/' and not start with '___'")
    if not password:
        raise ValidationFailed("a password must not be empty")
    op = store.add_operator(db, login, hash_password(password), parse_rights(rights))
    log.info("auth.operator_added operator_id=%s", op.id)
    return op


def change_password(db: Database, login: str, password: str) -> None:
    if not password:
        raise ValidationFailed("a password must not be empty")
    store.set_password_hash(db, login, hash_password(password))
    log.info("auth.password_changed login=%s", login)


def create_zone(db: Database, name: str, cidr: str, *, allow_user_password: bool = False,
                allow_empty_password: bool = False, session_token_only: bool = False,
                show_errors: bool = False, is_proxy: bool = False) -> Zone:
    """Add a zone; the CIDR is validated and normalised (``10.1.2.3/8`` -> ``10.0.0.0/8``)."""
    if not name.strip():
        raise ValidationFailed("a zone needs a name")
    zone = Zone(name=name.strip(), cidr=str(parse_cidr(cidr)),
                allow_user_password=allow_user_password,
                allow_empty_password=allow_empty_password,
                session_token_only=session_token_only, show_errors=show_errors, is_proxy=is_proxy)
    log.info("auth.zone_added name=%s", zone.name)
    return store.add_zone(db, zone)


def create_api_key(db: Database, name: str, operator_login: str | None = None,
                   scopes: Iterable[str] = ("push",)) -> tuple[str, ApiKey]:
    """A new key ``mc_...`` with ``scopes`` (push, read, admin): returned in clear once,
    stored as sha256."""
    if not name.strip():
        raise ValidationFailed("an API key needs a name")
    granted = parse_scopes(scopes)
    key = new_api_key()
    record = store.add_api_key(db, name.strip(), sha256_hex(key), key[:8], operator_login,
                               granted)
    log.info("auth.apikey_created name=%s scopes=%s", record.name, ",".join(sorted(granted)))
    return key, record
