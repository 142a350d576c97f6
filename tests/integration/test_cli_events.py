"""``msgcenter events list|show`` and ``push`` argument handling, run in process through
``cli.main(argv)``; one test runs the real command as a process (exit codes, output)."""

from __future__ import annotations

import argparse
import json

import pytest
from conftest import make_settings, run_cli, run_cli_process
from lxml import etree

from soap_service import ingest
from soap_service.cli.events import build_event
from soap_service.errors import ValidationFailed
from soap_service.models import split_plid
from soap_service.store import connect


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           "MC_INSTANCE_ID": "3"}
    run_cli(env, "init")
    return env


def push_direct(env: dict[str, str], xml: str, queue: str = "rt") -> int:
    settings = make_settings(env["MC_DATABASE_URL"], instance_id=3)
    return ingest.store_event(connect(settings), settings, etree.fromstring(xml), queue)


def test_events_list_filters_and_json(cli_env: dict[str, str]):
    """`events list --json` returns newest first, filtered by type, queue and status."""
    a = push_direct(cli_env, '<e type="welcome" email="a@example.com"><ctx/></e>')
    b = push_direct(cli_env,
                    '<e type="otp" wishedChannel="1" mobilePhone="+33612345678"><ctx/></e>')
    c = push_direct(cli_env, '<e type="welcome" email="c@example.com"><ctx/></e>', "batch")
    rows = json.loads(run_cli(cli_env, "events", "list", "--json").stdout)
    assert [r["plId"] for r in rows] == [str(c), str(b), str(a)]
    assert rows[1]["address"] == "+33612345678" and rows[1]["status"] == "pending"
    welcome = json.loads(run_cli(cli_env, "--json", "events", "list", "--type", "welcome").stdout)
    assert [r["plId"] for r in welcome] == [str(c), str(a)]
    batch = json.loads(run_cli(cli_env, "events", "list", "--queue", "batch", "--json").stdout)
    assert [r["plId"] for r in batch] == [str(c)]
    done = json.loads(run_cli(cli_env, "events", "list", "--status", "processed",
                              "--json").stdout)
    assert done == []
    limited = json.loads(run_cli(cli_env, "events", "list", "--limit", "1", "--json").stdout)
    assert len(limited) == 1


def test_events_list_by_external_id_and_date(cli_env: dict[str, str]):
    """--external-id and --since/--until (received time, UTC) narrow the list."""
    from datetime import datetime

    from soap_service import clock

    with clock.frozen_clock(datetime(2030, 1, 1, 12, 0)):
        old = push_direct(cli_env, '<e type="t" email="a@example.com" externalId="c-1"><ctx/></e>')
    with clock.frozen_clock(datetime(2030, 1, 2, 12, 0)):
        new = push_direct(cli_env, '<e type="t" email="a@example.com" externalId="c-2"><ctx/></e>')

    def plids(*args: str) -> list[str]:
        return [r["plId"] for r in json.loads(run_cli(cli_env, "events", "list", "--json",
                                                      *args).stdout)]

    assert plids("--external-id", "c-1") == [str(old)]
    assert plids("--since", "2030-01-02") == [str(new)]
    assert plids("--until", "2030-01-02T00:00:00Z") == [str(old)]
    both = plids("--since", "2030-01-01T13:00+01:00", "--until", "2030-01-03")
    assert both == [str(new), str(old)]  # 13:00+01:00 is 12:00 UTC: inclusive
    bad = run_cli(cli_env, "events", "list", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_events_list_human_table(cli_env: dict[str, str]):
    """Without --json the list is a table with a header row."""
    plid = push_direct(cli_env, '<e type="welcome" email="a@example.com"><ctx/></e>')
    out = run_cli(cli_env, "events", "list").stdout.splitlines()
    assert out[0].split()[:4] == ["PLID", "QUEUE", "TYPE", "STATUS"]
    assert out[1].split()[:4] == [str(plid), "rt", "welcome", "pending"]


def test_events_show_by_plid_or_primary_key(cli_env: dict[str, str]):
    """`events show` accepts the plId or the primary key and prints attributes, ctx and
    the status history (received = pending)."""
    plid = push_direct(cli_env, '<e type="welcome" email="a@example.com" foo="bar">'
                                "<ctx><n>Ann</n></ctx></e>")
    by_plid = json.loads(run_cli(cli_env, "events", "show", str(plid), "--json").stdout)
    by_pk = json.loads(run_cli(cli_env, "events", "show", str(split_plid(plid)[1]),
                               "--json").stdout)
    assert by_plid == by_pk
    assert by_plid["plId"] == str(plid) and by_plid["attributes"]["foo"] == "bar"
    assert by_plid["ctx_xml"] == "<ctx><n>Ann</n></ctx>"
    assert [h["status"] for h in by_plid["history"]] == ["pending"]
    human = run_cli(cli_env, "events", "show", str(plid)).stdout
    assert "<ctx><n>Ann</n></ctx>" in human and "history" in human


def test_events_show_unknown_id_fails_cleanly(cli_env: dict[str, str]):
    """An unknown id, another instance's plId or garbage: one error line, exit code 1."""
    for bad in ("999999", str((9 << 56) | 1), "abc"):
        proc = run_cli(cli_env, "events", "show", bad, check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("msgcenter: error: ") and len(proc.stderr.splitlines()) == 1


def test_the_command_as_a_process_exits_with_the_documented_codes(cli_env: dict[str, str]):
    """``python -m soap_service.cli`` as a user runs it: output on stdout and exit 0, a
    caller's mistake as one line on stderr and exit 1, no command at all exits 64."""
    pk = push_direct(cli_env, '<e type="welcome" email="a@example.com"><ctx/></e>')
    listed = run_cli_process(cli_env, "--json", "events", "list")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["plId"] == str(pk)
    missing = run_cli_process(cli_env, "events", "show", "999999", check=False)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("msgcenter: error: ")
    assert len(missing.stderr.splitlines()) == 1
    assert run_cli_process(cli_env, check=False).returncode == 64


def test_reads_from_an_unreachable_database_fail_in_one_line():
    """A read (``events list``) from a database nobody answers for: "database unavailable"
    on one line and exit code 2 (ours), no traceback."""
    env = {"MC_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/none"}
    proc = run_cli(env, "events", "list", check=False)
    assert proc.returncode == 2
    assert proc.stderr == "msgcenter: error: database unavailable\n"


def test_push_without_a_server_fails_cleanly(tmp_path):
    """`push` to a port nobody listens on: one error line and exit code 2 (ours)."""
    env = {"MC_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    proc = run_cli(env, "push", "--type", "t", "--email", "a@example.com",
                   "--url", "http://127.0.0.1:9", "--timeout", "5", check=False)
    assert proc.returncode == 2
    assert "cannot reach http://127.0.0.1:9" in proc.stderr


def _push_args(**over: object) -> argparse.Namespace:
    base = {"type": "welcome", "email": None, "mobile": None, "external_id": None,
            "channel": None, "idempotency_key": None, "attr": None, "ctx": None,
            "ctx_json": None, "batch": False}
    return argparse.Namespace(**{**base, **over})


def test_push_builds_the_event_element():
    """The options become the event's attributes and ctx (XML, bare content or JSON)."""
    ev = build_event(_push_args(mobile="+336", external_id="x1", attr=["origin=cli"],
                                ctx="<a>1</a><b/>", batch=True))
    assert ev.tag == "batchEvent"
    assert dict(ev.attrib) == {"type": "welcome", "mobilePhone": "+336", "externalId": "x1",
                               "wishedChannel": "1", "origin": "cli"}
    assert etree.tostring(ev[0]) == b"<ctx><a>1</a><b/></ctx>"
    ev = build_event(_push_args(email="a@example.com", ctx="<ctx><x/></ctx>"))
    assert ev.tag == "rtEvent" and etree.tostring(ev[0]) == b"<ctx><x/></ctx>"
    with pytest.raises(ValidationFailed):
        build_event(_push_args(email="a@example.com", ctx="<a>"))
    with pytest.raises(ValidationFailed):
        build_event(_push_args(email="a@example.com", attr=["novalue"]))


