"""Authenticator on real databases (SQLite file and PostgreSQL): zones, passwords,
sessions, API keys, rights, and how long in-process caches keep stale answers."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from soap_service import auth, clock
from soap_service.errors import (
    Conflict,
    Forbidden,
    InvalidCredentials,
    NotFound,
    SessionExpired,
    ValidationFailed,
    ZoneDenied,
)
from soap_service.store import Database
from soap_service.store import auth as store
from soap_service.tables import api_keys, sessions

PASSWORD = "s3cret/with/slashes"
T0 = datetime(2030, 1, 1, 12, 0, 0)


@pytest.fixture(scope="module")
def pw_hash() -> str:
    return auth.hash_password(PASSWORD)


@pytest.fixture
def setup(db: Database, pw_hash: str) -> Database:
    """Operators alice (mc) and root (admin); zones: lan, dmz (session only), trusted, proxy."""
    store.add_operator(db, "alice", pw_hash, frozenset({"mc"}))
    store.add_operator(db, "root", pw_hash, frozenset({"admin"}))
    auth.create_zone(db, "lan", "10.0.0.0/8", allow_user_password=True)
    auth.create_zone(db, "dmz", "10.9.0.0/16", session_token_only=True, allow_user_password=True)
    auth.create_zone(db, "trusted", "127.0.0.0/8", allow_empty_password=True)
    auth.create_zone(db, "v6", "2001:db8::/32", allow_user_password=True)
    auth.create_zone(db, "lb", "10.9.9.9/32", is_proxy=True)
    return db


def creds(token: str = "", ip: str = "10.1.1.1", bearer: str | None = None,
          xff: str | None = None) -> auth.Credentials:
    return auth.Credentials(token=token, bearer=bearer, remote_addr=ip, forwarded_for=xff)


def test_login_password_token(setup: Database):
    """``login/password`` (split at the first slash) authenticates in an allowing zone."""
    authn = auth.Authenticator(setup, setup.settings)
    principal = authn.authenticate(creds(f"alice/{PASSWORD}"))
    assert principal.login == "alice" and principal.via == "password"
    assert principal.rights == frozenset({"mc"}) and principal.operator_id is not None
    assert authn.authenticate(creds(f"alice/{PASSWORD}", ip="2001:db8::1")).login == "alice"


@pytest.mark.parametrize("token", ["alice/wrong", "alice/s3cret", "nobody/" + PASSWORD])
def test_wrong_password_is_invalid_credentials_never_expired(setup: Database, token: str):
    """A wrong password or login is InvalidCredentials with the suite's text, never XSV-350008."""
    authn = auth.Authenticator(setup, setup.settings)
    with pytest.raises(InvalidCredentials) as err:
        authn.authenticate(creds(token))
    assert err.value.message == "Invalid login or password. Connection denied."
    assert not isinstance(err.value, SessionExpired)
    assert "XSV-350008" not in err.value.message + err.value.detail


def test_caller_outside_every_zone_is_denied(setup: Database):
    """An address in no zone gets ZoneDenied (XSV-350013), even with good credentials."""
    authn = auth.Authenticator(setup, setup.settings)
    for ip in ("192.168.1.1", "2001:db9::1", "not-an-ip"):
        with pytest.raises(ZoneDenied) as err:
            authn.authenticate(creds(f"alice/{PASSWORD}", ip=ip))
        assert err.value.message.startswith("XSV-350013")


def test_no_zones_means_nobody_gets_in(db: Database, pw_hash: str):
    """With no zone declared at all every caller is refused (deny by default)."""
    store.add_operator(db, "alice", pw_hash, frozenset({"mc"}))
    with pytest.raises(ZoneDenied):
        auth.Authenticator(db, db.settings).authenticate(creds(f"alice/{PASSWORD}", "127.0.0.1"))


def test_zone_flags_restrict_login_password(setup: Database):
    """login/password is refused (ZoneDenied) where not allowed or in a session-token-only zone."""
    authn = auth.Authenticator(setup, setup.settings)
    for ip in ("127.0.0.1", "10.9.1.1"):  # trusted (no allow_user_password), dmz (token only)
        with pytest.raises(ZoneDenied):
            authn.authenticate(creds(f"alice/{PASSWORD}", ip=ip))
    token, _ = authn.logon("alice", PASSWORD, "10.9.1.1", None)  # Logon itself is fine there
    assert authn.authenticate(creds(token, ip="10.9.1.1")).via == "session"


def test_empty_password_trusted_only_where_allowed(setup: Database):
    """``mc/`` is trusted in an allow_empty_password zone, refused elsewhere."""
    authn = auth.Authenticator(setup, setup.settings)
    principal = authn.authenticate(creds("mc/", ip="127.0.0.1"))
    assert principal == auth.Principal(None, "mc", frozenset({"mc"}), "trusted")
    assert authn.authenticate(creds("alice/", ip="127.0.0.1")).operator_id is not None
    with pytest.raises(InvalidCredentials):
        authn.authenticate(creds("mc/", ip="10.1.1.1"))
    with pytest.raises(InvalidCredentials):
        authn.authenticate(creds("ghost/", ip="127.0.0.1"))


def test_logon_session_lifecycle(setup: Database):
    """Logon gives ``___<uuid>`` stored only as sha256; it works until session_ttl, then expires."""
    settings = setup.settings.replace(session_ttl=3600)
    authn = auth.Authenticator(setup, settings)
    with clock.frozen_clock(T0) as advance:
        token, principal = authn.logon("alice", PASSWORD, "10.1.1.1", None)
        assert token.startswith("___") and len(token) == 39 and principal.via == "session"
        with setup.connect() as conn:
            stored = conn.execute(select(sessions.c.token_hash, sessions.c.expires_at)).one()
        assert stored.token_hash == auth.sha256_hex(token)
        assert stored.expires_at == T0 + timedelta(seconds=3600)
        assert authn.authenticate(creds(token)).login == "alice"
        advance(timedelta(seconds=3599))
        assert authn.authenticate(creds(token)).login == "alice"
        advance(timedelta(seconds=1))
        with pytest.raises(SessionExpired) as err:
            authn.authenticate(creds(token))
        assert err.value.message.startswith("XSV-350008")


def test_logoff_ends_session_for_every_process(setup: Database):
    """After Logoff the token is refused here at once and by a fresh Authenticator (the DB)."""
    authn = auth.Authenticator(setup, setup.settings)
    token, _ = authn.logon("alice", PASSWORD, "10.1.1.1", None)
    authn.authenticate(creds(token))
    authn.logoff(token)
    for checker in (authn, auth.Authenticator(setup, setup.settings)):
        with pytest.raises(SessionExpired):
            checker.authenticate(creds(token))
    authn.logoff(token)  # twice is harmless
    authn.logoff("alice/whatever")  # not a session: no-op


@pytest.mark.parametrize("token", ["___00000000-0000-4000-8000-000000000000", "garbage", "___"])
def test_unknown_session_token_is_expired(setup: Database, token: str):
    """Unknown or malformed session tokens answer XSV-350008 (log on again)."""
    with pytest.raises(SessionExpired):
        auth.Authenticator(setup, setup.settings).authenticate(creds(token))


def test_logon_failures(setup: Database):
    """Logon: a wrong password is InvalidCredentials; outside every zone, ZoneDenied."""
    authn = auth.Authenticator(setup, setup.settings)
    with pytest.raises(InvalidCredentials):
        authn.logon("alice", "nope", "10.1.1.1", None)
    with pytest.raises(ZoneDenied):
        authn.logon("alice", PASSWORD, "192.168.0.1", None)
    with pytest.raises(InvalidCredentials):  # empty password outside a trusting zone
        authn.logon("alice", "", "10.1.1.1", None)


def test_no_credentials_at_all(setup: Database):
    """An empty token and no bearer key is InvalidCredentials."""
    with pytest.raises(InvalidCredentials):
        auth.Authenticator(setup, setup.settings).authenticate(creds(""))


def test_rights_are_enforced(setup: Database):
    """An operator without the needed right is refused; admin holds every right."""
    authn = auth.Authenticator(setup, setup.settings)
    with pytest.raises(InvalidCredentials):
        authn.authenticate(creds(f"alice/{PASSWORD}"), right="admin")
    assert authn.authenticate(creds(f"root/{PASSWORD}"), right="mc").login == "root"
    assert authn.authenticate(creds(f"root/{PASSWORD}"), right="admin").login == "root"


def test_api_keys(setup: Database):
    """Bearer keys: stored as sha256; a key's scopes are its rights (push = mc); a bound key
    with the admin scope acts as its admin operator; an unbound default key gets mc."""
    authn = auth.Authenticator(setup, setup.settings)
    bound, _ = auth.create_api_key(setup, "ops", "root", ["push,admin"])
    free, record = auth.create_api_key(setup, "shop")
    assert record.prefix == free[:8]
    with setup.connect() as conn:
        hashes = set(conn.execute(select(api_keys.c.key_hash)).scalars())
    assert hashes == {auth.sha256_hex(bound), auth.sha256_hex(free)}
    assert authn.authenticate(creds(bearer=bound), right="admin").login == "root"
    principal = authn.authenticate(creds(bearer=free, ip="10.9.1.1"))  # token-only zone: OK
    assert principal == auth.Principal(None, "apikey:shop", frozenset({"mc"}), "apikey")
    with pytest.raises(InvalidCredentials):
        authn.authenticate(creds(bearer=free), right="admin")
    for bad in ("mc_" + "x" * 43, "nope"):
        with pytest.raises(InvalidCredentials):
            authn.authenticate(creds(bearer=bad))
    with pytest.raises(ZoneDenied):
        authn.authenticate(creds(bearer=free, ip="192.168.0.1"))


def test_revoked_key_and_removed_zone_take_effect_after_cache_ttl(setup: Database):
    """A revoked key or removed zone is honoured by a running process within auth_cache_ttl."""
    settings = setup.settings.replace(auth_cache_ttl=5)
    with clock.frozen_clock(T0) as advance:
        authn = auth.Authenticator(setup, settings)
        key, _ = auth.create_api_key(setup, "shop")
        authn.authenticate(creds(bearer=key))
        store.revoke_api_key(setup, "shop")
        store.remove_zone(setup, "lan")
        authn.authenticate(creds(bearer=key))  # still cached: the documented delay
        advance(timedelta(seconds=5))
        with pytest.raises(ZoneDenied):
            authn.authenticate(creds(bearer=key))
        with pytest.raises(InvalidCredentials):
            authn.authenticate(creds(bearer=key, ip="127.0.0.1"))


def test_password_change_invalidates_cached_check(setup: Database):
    """A changed password stops working once the operator cache refreshes, though the
    successful check of the old one was cached for much longer (key includes the hash)."""
    settings = setup.settings.replace(auth_cache_ttl=5, credential_cache_ttl=3600)
    with clock.frozen_clock(T0) as advance:
        authn = auth.Authenticator(setup, settings)
        authn.authenticate(creds(f"alice/{PASSWORD}"))
        auth.change_password(setup, "alice", "n3w")
        advance(timedelta(seconds=6))
        with pytest.raises(InvalidCredentials):
            authn.authenticate(creds(f"alice/{PASSWORD}"))
        assert authn.authenticate(creds("alice/n3w")).login == "alice"


def test_forwarded_for_only_from_proxy_zone(setup: Database):
    """Behind a declared proxy the X-Forwarded-For client decides; elsewhere XFF is ignored."""
    authn = auth.Authenticator(setup, setup.settings)
    token = f"alice/{PASSWORD}"
    assert authn.client_ip("10.9.9.9", "192.168.7.7, 10.1.1.1") == "10.1.1.1"
    assert authn.authenticate(creds(token, ip="10.9.9.9", xff="10.1.1.1")).login == "alice"
    with pytest.raises(ZoneDenied):  # the proxy forwards an outsider
        authn.authenticate(creds(token, ip="10.9.9.9", xff="192.168.7.7"))
    with pytest.raises(ZoneDenied):  # an outsider cannot claim to be inside
        authn.authenticate(creds(token, ip="192.168.7.7", xff="10.1.1.1"))
    zone = authn.zone_for("10.9.9.9", "10.9.1.2")
    assert zone is not None and zone.name == "dmz"


def test_duplicates_and_unknown_names(setup: Database, pw_hash: str):
    """Duplicate logins, zone and key names are Conflict; unknown names NotFound (both DBs)."""
    with pytest.raises(Conflict):
        store.add_operator(setup, "alice", pw_hash, frozenset({"mc"}))
    with pytest.raises(Conflict):
        auth.create_zone(setup, "lan", "192.168.0.0/16")
    auth.create_api_key(setup, "shop")
    with pytest.raises(Conflict):
        auth.create_api_key(setup, "shop")
    with pytest.raises(NotFound):
        auth.create_api_key(setup, "other", "nobody")
    with pytest.raises(NotFound):
        store.set_password_hash(setup, "nobody", pw_hash)
    with pytest.raises(NotFound):
        store.remove_zone(setup, "nowhere")
    with pytest.raises(ValidationFailed):
        auth.create_operator(setup, "a/b", "pw")
    assert [op.login for op in store.list_operators(setup)] == ["alice", "root"]


def test_api_key_scopes(setup: Database):
    """REST keys: a missing scope is Forbidden (403), a revoked or unknown key is
    InvalidCredentials (401); a bound key never exceeds its operator (alice has only mc,
    so an admin-scoped key bound to her cannot retry or cancel); unknown scopes refused."""
    authn = auth.Authenticator(setup, setup.settings)
    push, record = auth.create_api_key(setup, "pusher")
    assert record.scopes == frozenset({"push"})
    reader, _ = auth.create_api_key(setup, "reader", scopes=["read"])
    admin, _ = auth.create_api_key(setup, "boss", scopes=["admin"])
    alice, _ = auth.create_api_key(setup, "alice-key", "alice", ["push", "read", "admin"])
    ip = "127.0.0.1"
    assert authn.authenticate_key(push, ip, None, "push").login == "apikey:pusher"
    with pytest.raises(Forbidden):
        authn.authenticate_key(push, ip, None, "read")
    with pytest.raises(Forbidden):
        authn.authenticate_key(reader, ip, None, "push")
    with pytest.raises(InvalidCredentials):  # SOAP: a read-only key may not push
        authn.authenticate(creds(bearer=reader))
    for scope in auth.SCOPES:
        assert authn.authenticate_key(admin, ip, None, scope).login == "apikey:boss"
    assert authn.authenticate_key(alice, ip, None, "read").login == "alice"
    with pytest.raises(Forbidden):
        authn.authenticate_key(alice, ip, None, "admin")
    for bad in ("", "mc_" + "y" * 43, "Bearer"):
        with pytest.raises(InvalidCredentials):
            authn.authenticate_key(bad, ip, None, "push")
    with pytest.raises(ZoneDenied):
        authn.authenticate_key(push, "192.168.0.1", None, "push")
    store.revoke_api_key(setup, "pusher")
    fresh = auth.Authenticator(setup, setup.settings)
    with pytest.raises(InvalidCredentials):
        fresh.authenticate_key(push, ip, None, "push")
    with pytest.raises(ValidationFailed):
        auth.create_api_key(setup, "bad", scopes=["push,write"])


def test_concurrent_first_checks_of_one_password_verify_it_once(setup: Database, monkeypatch):
    """Eight threads authenticating the same login/password on a cold cache (a process
    that just started): one pbkdf2 check, the others wait for its answer; all get in."""
    import threading

    checks = []
    real = auth.verify_password

    def counted(password: str, encoded: str) -> bool:
        checks.append(password)
        return real(password, encoded)

    monkeypatch.setattr(auth, "verify_password", counted)
    authn = auth.Authenticator(setup, setup.settings)
    start = threading.Barrier(8)
    logins: list[str] = []

    def run() -> None:
        start.wait()
        logins.append(authn.authenticate(creds(f"alice/{PASSWORD}")).login)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert logins == ["alice"] * 8
    assert len(checks) == 1
