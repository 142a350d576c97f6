"""``msgcenter eventtype|template|seed`` round trips through a real database, each command
run in process through ``cli.main(argv)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_settings, run_cli

from soap_service import catalog
from soap_service.models import Channel, Event, EventStatus, Queue
from soap_service.store import Database, make_engine

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "templates"


def _init(url: str) -> dict[str, str]:
    environment = {"MC_DATABASE_URL": url, "MC_SQLITE_SYNCHRONOUS": "normal",
                   "MC_OPERATOR": "carol"}
    run_cli(environment, "init")
    return environment


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    """A migrated database on SQLite and on PostgreSQL."""
    return _init(database_url)


def cli_json(env: dict[str, str], *args: str):
    return json.loads(run_cli(env, "--json", *args).stdout)


def test_eventtype_commands(env: dict[str, str]) -> None:
    """add with options and defaults, update, list, show, remove; errors exit non-zero."""
    made = cli_json(env, "eventtype", "add", "order_confirmation", "--label", "Order",
                    "--lane", "critical", "--max-attempts", "3", "--validity", "6h",
                    "--retention", "90d")
    assert made == {"name": "order_confirmation", "label": "Order", "lane": "critical",
                    "max_attempts": 3, "validity": "6h", "retention": "90d"}
    cli_json(env, "eventtype", "add", "reset")
    assert cli_json(env, "eventtype", "show", "reset") == {
        "name": "reset", "label": "", "lane": "transactional", "max_attempts": 5,
        "validity": "1d", "retention": "30d"}
    assert cli_json(env, "eventtype", "update", "reset", "--lane", "bulk")["lane"] == "bulk"
    idle = run_cli(env, "eventtype", "update", "reset", check=False)
    assert idle.returncode == 1 and "nothing to change" in idle.stderr
    assert [t["name"] for t in cli_json(env, "eventtype", "list")] == \
        ["order_confirmation", "reset"]
    dup = run_cli(env, "eventtype", "add", "reset", check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = run_cli(env, "eventtype", "add", "x", "--validity", "soon", check=False)
    assert bad.returncode == 1 and "invalid duration" in bad.stderr
    run_cli(env, "eventtype", "remove", "reset")
    gone = run_cli(env, "eventtype", "show", "reset", check=False)
    assert gone.returncode == 1 and "no event type 'reset'" in gone.stderr


def test_template_lifecycle_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    """create -> seed -> preview -> publish -> edit -> diff -> versions -> pause -> resume
    -> unpublish, all through the command line; routing sees each state."""
    env = env
    run_cli(env, "eventtype", "add", "order_confirmation")
    run_cli(env, "template", "create", "order", "--event-type", "order_confirmation",
            "--from", "shop@example.com", "--subject", "Order <%= rtEvent.ctx.order.@id %>",
            "--html", str(FIX / "order_suite.html"))
    run_cli(env, "seed", "add", "order", "qa@example.com", "--ctx", str(FIX / "order_ctx.xml"),
            "--external-id", "QA1")
    seeds = cli_json(env, "seed", "list", "order")
    assert [(s["address"], s["external_id"]) for s in seeds] == [("qa@example.com", "QA1")]

    shown = cli_json(env, "template", "preview", "order")
    assert shown["subject"] == "Order A-1042" and shown["to"] == "qa@example.com"
    assert "<td>Cable &lt;2m&gt;</td>" in shown["html"] and "Cable <2m>" in shown["text"]
    out = tmp_path / "preview"
    run_cli(env, "template", "preview", "order", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["body.html", "body.txt", "subject.txt"]
    assert (out / "body.html").read_text(encoding="utf-8") == shown["html"]
    part = run_cli(env, "template", "preview", "order", "--part", "subject").stdout
    assert part == "Order A-1042"
    human = run_cli(env, "template", "preview", "order").stdout.splitlines()
    assert human[:4] == ["template order (draft) to qa@example.com", "from shop@example.com",
                         "--- subject ---", "Order A-1042"]

    v1 = cli_json(env, "template", "publish", "order")
    assert (v1["version"], v1["published_by"], v1["state"]) == (1, "carol", "live")
    run_cli(env, "template", "edit", "order", "--subject", "Your order {{ rtEvent.ctx.order.@id }}")
    listed = cli_json(env, "template", "list")
    assert [(t["name"], t["state"], t["version"], t["draft_changed"]) for t in listed] == \
        [("order", "published", 1, True)]
    diff = run_cli(env, "template", "diff", "order", "1", "draft").stdout.splitlines()
    assert diff[-2:] == ["-Order <%= rtEvent.ctx.order.@id %>",
                         "+Your order {{ rtEvent.ctx.order.@id }}"]
    bad_diff = run_cli(env, "template", "diff", "order", "1", "v2", check=False)
    assert bad_diff.returncode == 1 and bad_diff.stderr.count("\n") == 1
    assert "invalid version 'v2'" in bad_diff.stderr
    run_cli(env, "template", "publish", "order", "--operator", "dave")
    versions = cli_json(env, "template", "versions", "order")
    assert [(v["version"], v["published_by"], v["state"]) for v in versions] == \
        [(1, "carol", "superseded"), (2, "dave", "live")]
    old = cli_json(env, "template", "show", "order", "--version", "1")
    assert (old["subject"], old["state"]) == ("Order <%= rtEvent.ctx.order.@id %>", "superseded")
    assert cli_json(env, "template", "show", "order", "--version", "2")["state"] == "live"
    assert cli_json(env, "template", "preview", "order", "--version", "1")["subject"] == \
        "Order A-1042"

    assert route_status(env) is None
    run_cli(env, "template", "pause", "order")
    assert route_status(env) is EventStatus.PAUSED
    assert cli_json(env, "template", "resume", "order")["events_released"] == 0
    run_cli(env, "template", "unpublish", "order")
    assert route_status(env) is EventStatus.ROUTING_FAILED
    assert cli_json(env, "template", "show", "order")["state"] == "unpublished"
    run_cli(env, "template", "delete", "order")
    assert cli_json(env, "template", "list") == []


def route_status(env: dict[str, str]) -> EventStatus | None:
    settings = make_settings(env["MC_DATABASE_URL"])
    db = Database(make_engine(settings), settings)
    catalog.clear_cache()
    try:
        event = Event(id=1, queue=Queue.RT, event_type="order_confirmation", ctx_xml="<ctx/>")
        return catalog.find_route(db, event).status
    finally:
        db.dispose()


def test_syntax_errors_and_bad_input_exit_non_zero(env: dict[str, str], tmp_path: Path) -> None:
    """Broken templates are refused at create and edit with part, line and column."""
    run_cli(env, "eventtype", "add", "order_confirmation")
    bad = tmp_path / "bad.html"
    bad.write_text("<p>ok</p>\n<p>{{ rtEvent.ctx.a.__class__ }}</p>\n", encoding="utf-8")
    proc = run_cli(env, "template", "create", "t", "--event-type", "order_confirmation",
                   "--html", str(bad), check=False)
    assert proc.returncode == 1
    assert "html line 2, column 21: names starting with '_' are not allowed" in proc.stderr
    run_cli(env, "template", "create", "t", "--event-type", "order_confirmation",
            "--channel", "sms", "--sms", str(FIX / "order_ctx.xml"))
    proc = run_cli(env, "template", "edit", "t", "--sms", str(bad), check=False)
    assert proc.returncode == 1 and "sms line 2" in proc.stderr
    proc = run_cli(env, "template", "edit", "t", check=False)
    assert proc.returncode == 1 and "nothing to change" in proc.stderr
    missing = run_cli(env, "template", "create", "u", "--event-type", "order_confirmation",
                      "--html", str(tmp_path / "nope.html"), check=False)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    wrong_part = run_cli(env, "template", "preview", "t", "--part", "html", check=False)
    assert wrong_part.returncode == 1 and "no part 'html'" in wrong_part.stderr


def test_seed_from_json(env: dict[str, str], tmp_path: Path) -> None:
    """seed add --ctx-json converts JSON to ctx and the preview uses it."""
    run_cli(env, "eventtype", "add", "push_news")
    run_cli(env, "template", "create", "news", "--event-type", "push_news", "--channel", "push",
            "--push-title", "Hi {{ rtEvent.ctx.client.firstname }}",
            "--push-data", "id={{ rtEvent.ctx.items.item[1].@id }}")
    data = tmp_path / "ctx.json"
    data.write_text(json.dumps({"client": {"firstname": "Ann"},
                                "items": {"item": [{"@id": "a"}, {"@id": "b"}]}}))
    run_cli(env, "seed", "add", "news", "device-token-1", "--ctx-json", str(data))
    shown = cli_json(env, "template", "preview", "news")
    assert json.loads(shown["push"]) == {"title": "Hi Ann", "body": "", "data": {"id": "b"}}
    assert shown["to"] == "device-token-1"
    shown = cli_json(env, "template", "show", "news")
    assert shown["channel"] == Channel.PUSH.value
    assert shown["push_title"] == "Hi {{ rtEvent.ctx.client.firstname }}"
    assert "subject" not in shown and "sms" not in shown  # only a push template's parts
