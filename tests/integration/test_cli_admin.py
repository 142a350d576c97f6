"""``msgcenter operator|zone|apikey`` as an admin would run them (in process through
``cli.main(argv)``), on SQLite and PostgreSQL; results checked through the Authenticator
on the same database."""

from __future__ import annotations

import json

import pytest
from conftest import make_settings, run_cli

from soap_service import auth
from soap_service.errors import InvalidCredentials, ZoneDenied
from soap_service.store import Database, make_engine

PASSWORD = "Corr3ct-h0rse/battery"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    environment = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
                   "MC_OPERATOR_PASSWORD": ""}
    run_cli(environment, "init")
    return environment


@pytest.fixture
def authn(database_url: str):
    settings = make_settings(database_url, auth_cache_ttl=0, credential_cache_ttl=0)
    db = Database(make_engine(settings), settings)
    yield auth.Authenticator(db, settings)
    db.dispose()


def cli_json(env: dict[str, str], *args: str):
    return json.loads(run_cli(env, "--json", *args).stdout)


def creds(token: str = "", bearer: str | None = None, ip: str = "127.0.0.1") -> auth.Credentials:
    return auth.Credentials(token=token, bearer=bearer, remote_addr=ip, forwarded_for=None)


def test_operator_add_list_passwd(env: dict[str, str], authn: auth.Authenticator):
    """Operators are added with rights, listed without secrets, and passwd changes the password."""
    run_cli(env, "zone", "add", "local", "127.0.0.1/32", "--allow-user-password")
    added = run_cli(env, "operator", "add", "alice", "--password", PASSWORD,
                    "--right", "mc", "--right", "admin")
    rows = cli_json(env, "operator", "list")
    assert [(r["login"], r["rights"]) for r in rows] == [("alice", "admin,mc")]
    table = run_cli(env, "operator", "list").stdout
    assert "LOGIN" in table and "alice" in table
    for text in (added.stdout, added.stderr, table, json.dumps(rows)):
        assert PASSWORD not in text and "scrypt" not in text
    assert authn.authenticate(creds(f"alice/{PASSWORD}"), right="admin").login == "alice"

    changed = run_cli({**env, "MC_OPERATOR_PASSWORD": "n3w-pass"}, "operator", "passwd", "alice")
    assert "n3w-pass" not in changed.stdout + changed.stderr
    with pytest.raises(InvalidCredentials):
        authn.authenticate(creds(f"alice/{PASSWORD}"))
    assert authn.authenticate(creds("alice/n3w-pass")).login == "alice"


def test_operator_errors(sqlite_url: str):
    """Duplicates, unknown logins, a missing password and bad rights fail with one line.

    (CLI error handling only: duplicate detection on PostgreSQL is in test_auth_authenticator.)
    """
    env = {"MC_DATABASE_URL": sqlite_url, "MC_OPERATOR_PASSWORD": ""}
    run_cli(env, "init")
    run_cli(env, "operator", "add", "bob", "--password", PASSWORD)
    for args in (("operator", "add", "bob", "--password", "x"),
                 ("operator", "passwd", "nobody", "--password", "x"),
                 ("operator", "add", "carol"),  # no --password, empty env, no terminal
                 ("operator", "add", "a/b", "--password", "x")):
        proc = run_cli(env, *args, check=False)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("msgcenter: error: ") and proc.stderr.count("\n") == 1
    assert run_cli(env, "operator", "add", "x", "--password", "x", "--right", "root",
                   check=False).returncode == 1  # a usage error is the caller's
    from_env = run_cli({**env, "MC_OPERATOR_PASSWORD": PASSWORD}, "operator", "add", "dave")
    assert "dave" in from_env.stdout
    assert [r["login"] for r in cli_json(env, "operator", "list")] == ["bob", "dave"]


def test_zone_add_list_remove(env: dict[str, str], authn: auth.Authenticator):
    """Zones keep their flags and normalised CIDR; removing one locks its callers out."""
    run_cli(env, "operator", "add", "alice", "--password", PASSWORD)
    zone = cli_json(env, "zone", "add", "lan", "10.1.2.3/8", "--allow-user-password",
                    "--show-errors", "--proxy")
    assert zone["cidr"] == "10.0.0.0/8"
    assert (zone["allow_user_password"], zone["show_errors"], zone["is_proxy"]) == (True,) * 3
    assert (zone["allow_empty_password"], zone["session_token_only"]) == (False, False)
    cli_json(env, "zone", "add", "v6", "2001:db8::/32", "--allow-empty-password",
             "--session-token-only")
    listed = {z["name"]: z for z in cli_json(env, "zone", "list")}
    assert set(listed) == {"lan", "v6"}
    assert listed["v6"]["session_token_only"] and listed["v6"]["allow_empty_password"]
    assert authn.authenticate(creds(f"alice/{PASSWORD}", ip="10.7.7.7")).login == "alice"

    run_cli(env, "zone", "remove", "lan")
    with pytest.raises(ZoneDenied):
        authn.authenticate(creds(f"alice/{PASSWORD}", ip="10.7.7.7"))
    for args in (("zone", "remove", "lan"), ("zone", "add", "bad", "10.0.0.300/8"),
                 ("zone", "add", "v6", "10.0.0.0/8")):
        assert run_cli(env, *args, check=False).returncode == 1, args


def test_apikey_create_list_revoke(env: dict[str, str], authn: auth.Authenticator):
    """A key is printed once at creation, works as a Bearer key with the scopes it was given
    (default push), and stops working when revoked; an unknown scope is refused."""
    run_cli(env, "zone", "add", "local", "127.0.0.1/32")
    run_cli(env, "operator", "add", "root", "--password", PASSWORD, "--right", "admin")
    created = cli_json(env, "apikey", "create", "ops", "--operator", "root",
                       "--scope", "push,read", "--scope", "admin")
    key = created["key"]
    assert key.startswith("mc_") and created["prefix"] == key[:8]
    human = run_cli(env, "apikey", "create", "shop")
    assert "not shown again" in human.stderr
    listing = run_cli(env, "--json", "apikey", "list").stdout
    assert key not in listing
    keys = {k["name"]: k for k in json.loads(listing)}
    assert keys["ops"]["operator"] == "root" and keys["ops"]["active"]
    assert keys["shop"]["operator"] is None
    assert keys["ops"]["scopes"] == "admin,push,read" and keys["shop"]["scopes"] == "push"
    assert authn.authenticate(creds(bearer=key), right="admin").login == "root"

    run_cli(env, "apikey", "revoke", "ops")
    with pytest.raises(InvalidCredentials):
        authn.authenticate(creds(bearer=key))
    assert not {k["name"]: k for k in cli_json(env, "apikey", "list")}["ops"]["active"]
    for args in (("apikey", "revoke", "ops"), ("apikey", "create", "x", "--operator", "nobody"),
                 ("apikey", "create", "y", "--scope", "write")):
        assert run_cli(env, *args, check=False).returncode == 1, args
