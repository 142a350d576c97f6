"""``msgcenter quarantine`` per address kind (email, phone, token), in process through
``cli.main(argv)``, on SQLite and PostgreSQL: the kind guessed or given, numbers stored
in E.164 (read in the default country), the same string under two kinds two entries,
and list / remove by kind."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

TOKEN = "0f" * 32


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           "MC_DEFAULT_COUNTRY_CODE": "FR"}
    run_cli(env, "init")
    return env


def _add(env: dict[str, str], *args: str) -> dict:
    return json.loads(run_cli(env, "quarantine", "add", *args, "--json").stdout)


def test_each_kind_is_guessed_or_given_and_numbers_stored_in_e164(env) -> None:
    """An @ is an email, a number a phone (06... read in France), the rest a device
    token; --kind overrides the guess."""
    assert (_add(env, "Ops@Example.com")["kind"], _add(env, "06 12 34 56 78")["address"]) == (
        "email", "+33612345678")
    assert _add(env, TOKEN)["kind"] == "token"
    forced = _add(env, "123456", "--kind", "token", "--reason", "test device")
    assert (forced["kind"], forced["address"], forced["source"]) == ("token", "123456",
                                                                     "manual")
    rows = json.loads(run_cli(env, "quarantine", "list", "--json").stdout)
    assert sorted((r["kind"], r["address"]) for r in rows) == [
        ("email", "ops@example.com"), ("phone", "+33612345678"), ("token", TOKEN),
        ("token", "123456")]
    phones = json.loads(run_cli(env, "quarantine", "list", "--kind", "phone", "--json").stdout)
    assert [r["address"] for r in phones] == ["+33612345678"]


def test_the_same_string_under_two_kinds_is_two_entries(env) -> None:
    """Removing one kind's entry leaves the other; removing what is not there is an error."""
    _add(env, "123456", "--kind", "token")
    _add(env, "+33612345678")
    _add(env, "+33612345678", "--kind", "token")
    removed = json.loads(run_cli(env, "quarantine", "remove", "+33 6 12 34 56 78",
                                 "--json").stdout)
    assert (removed["kind"], removed["address"]) == ("phone", "+33612345678")
    left = json.loads(run_cli(env, "quarantine", "list", "--json").stdout)
    assert sorted((r["kind"], r["address"]) for r in left) == [
        ("token", "+33612345678"), ("token", "123456")]
    again = run_cli(env, "quarantine", "remove", "+33612345678", check=False)
    assert again.returncode == 1 and "not in quarantine (phone)" in again.stderr
