"""``msgcenter webhook ...`` in subprocesses, against a real receiver, on both databases.

``add`` prints the secret once (``--json`` too) and ``list`` never shows it; ``test``
sends one signed notification (verified by ``standardwebhooks``) and its exit code says
whether it was delivered; ``deliveries`` shows every attempt; ``replay`` makes a
delivery due again; bad input is a one-line error and a non-zero exit.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from webhook_support import Receiver


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    environment = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    run_cli(environment, "init")
    return environment


def cli_json(env: dict[str, str], *args: str):
    return json.loads(run_cli(env, "--json", *args).stdout)


def test_webhook_commands(env: dict[str, str]):
    """add / list / test / deliveries / replay / disable / enable / remove, as SPEC §8."""
    with Receiver() as receiver:
        added = cli_json(env, "webhook", "add", receiver.url, "--status", "processed",
                         "--status", "clicked,opened", "--type", "order_confirmation")
        secret = added["secret"]
        assert secret.startswith("whsec_") and added["statuses"] == "clicked,opened,processed"
        receiver.secret = secret
        human = run_cli(env, "webhook", "add", receiver.url + "/2")
        assert "not shown again" in human.stderr and "(default)" in human.stdout
        listing = run_cli(env, "webhook", "list").stdout
        assert secret not in listing and receiver.url in listing
        endpoint = str(added["id"])

        tested = run_cli(env, "--json", "webhook", "test", endpoint)
        assert tested.returncode == 0 and json.loads(tested.stdout)["status"] == "delivered"
        (got,) = receiver.verified()
        assert got.payload["type"] == "test" and got.headers["webhook-id"].startswith("msg_")

        receiver.answer(503)
        failed = run_cli(env, "--json", "webhook", "test", endpoint, check=False)
        assert failed.returncode == 1 and json.loads(failed.stdout)["code"] == 503

        rows = cli_json(env, "webhook", "deliveries")
        assert [r["code"] for r in rows] == [503, 200]
        failed_only = cli_json(env, "webhook", "deliveries", "--status", "failed")
        assert len(failed_only) == 1 and failed_only[0]["response"] == "answer 503"
        table = run_cli(env, "webhook", "deliveries").stdout
        assert "WEBHOOK_ID" in table and "answer 503" in table

        replayed = cli_json(env, "webhook", "replay", str(failed_only[0]["delivery"]))
        assert replayed["status"] == "pending"
        assert replayed["webhook_id"] == failed_only[0]["webhook_id"]

        assert cli_json(env, "webhook", "disable", endpoint)["enabled"] is False
        assert cli_json(env, "webhook", "enable", endpoint)["enabled"] is True
        run_cli(env, "webhook", "remove", endpoint)
        assert str(receiver.url + "/2") in run_cli(env, "webhook", "list").stdout
        assert cli_json(env, "webhook", "deliveries") == []


@pytest.mark.parametrize("args", [
    ("webhook", "add", "not-a-url"),
    ("webhook", "add", "https://hooks.example.com/x", "--status", "sent"),
    ("webhook", "remove", "999"),
    ("webhook", "test", "999"),
    ("webhook", "replay", "999"),
])
def test_bad_webhook_commands_fail_cleanly(env: dict[str, str], args):
    """Each is one error line on stderr and exit code 1, never a traceback."""
    out = run_cli(env, *args, check=False)
    assert out.returncode == 1 and out.stderr.startswith("msgcenter: error: ")
    assert "Traceback" not in out.stderr
