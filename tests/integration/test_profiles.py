"""Profiles through ``msgcenter profile``: set / show / list / erase, and the CSV import
with bad rows, on SQLite and PostgreSQL (each command run in process)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import make_settings, run_cli

from soap_service import ingest, profiles
from soap_service.models import Queue
from soap_service.store import Database, make_engine
from soap_service.store import profiles as store_profiles
from soap_service.tables import delivery_log, events, exclusion_log


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    environment = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    run_cli(environment, "init")
    return environment


def cli_json(env: dict[str, str], *args: str):
    return json.loads(run_cli(env, "--json", *args).stdout)


def _db(env: dict[str, str]) -> Database:
    settings = make_settings(env["MC_DATABASE_URL"])
    return Database(make_engine(settings), settings)


def test_set_show_list(env: dict[str, str]) -> None:
    """set creates then changes only the fields given; emails are lower-cased, numbers
    E.164, languages normalised; bad values exit 1 with the field named."""
    made = cli_json(env, "profile", "set", "C1", "--email", "Ann@Example.com",
                    "--mobile-phone", "+33 6 12 34 56 78", "--language", "fr_ca",
                    "--first-name", "Ann", "--attr", "tier=gold", "--push-token", "tok1")
    assert made["email"] == "ann@example.com" and made["mobilePhone"] == "+33612345678"
    assert made["language"] == "fr-CA" and made["attributes"] == {"tier": "gold"}
    assert made["pushTokens"] == ["tok1"]
    assert made["subscriptions"] == {"email": True, "sms": True, "push": True}
    changed = cli_json(env, "profile", "set", "C1", "--last-name", "Lee", "--attr", "vip=1",
                       "--unsubscribe", "sms")
    assert changed["firstName"] == "Ann" and changed["lastName"] == "Lee"
    assert changed["attributes"] == {"tier": "gold", "vip": "1"}
    assert changed["subscriptions"]["sms"] is False
    cli_json(env, "profile", "set", "C2", "--email", "bob@example.com")
    assert [p["externalId"] for p in cli_json(env, "profile", "list")] == ["C1", "C2"]
    assert [p["externalId"] for p in cli_json(env, "profile", "list", "--after", "C1")] == ["C2"]
    assert [p["externalId"] for p in cli_json(env, "profile", "list", "--email",
                                              "BOB@example.com")] == ["C2"]
    assert cli_json(env, "profile", "show", "C2")["email"] == "bob@example.com"
    bad = run_cli(env, "profile", "set", "C3", "--email", "not-an-address", check=False)
    assert bad.returncode == 1 and "email is not an email address" in bad.stderr
    bad = run_cli(env, "profile", "set", "C3", "--language", "french!", check=False)
    assert bad.returncode == 1 and "language" in bad.stderr
    missing = run_cli(env, "profile", "show", "nobody", check=False)
    assert missing.returncode == 1 and "no profile 'nobody'" in missing.stderr
    idle = run_cli(env, "profile", "set", "C1", check=False)
    assert idle.returncode == 1 and "nothing to set" in idle.stderr


def test_erase_blanks_events_and_logs_but_keeps_counts(env: dict[str, str]) -> None:
    """erase deletes the profile and blanks its events' addresses, ids and ctx and their
    log rows' addresses; other profiles' events are untouched; counts stay."""
    run_cli(env, "profile", "set", "C1", "--email", "ann@example.com")
    db = _db(env)
    settings = make_settings(env["MC_DATABASE_URL"])
    from lxml import etree

    def push(attrs: str) -> int:
        el = etree.fromstring(f'<rtEvent type="t" {attrs}><ctx><name>Ann</name></ctx></rtEvent>')
        return ingest.store_event(db, settings, el, Queue.RT) & ((1 << 56) - 1)

    mine = push('email="Ann@example.com"')
    by_id = push('externalId="C1" email="other@example.com"')
    other = push('email="zed@example.com"')
    from soap_service import clock

    with db.begin() as conn:
        for event_id, address in ((mine, "ann@example.com"), (other, "zed@example.com")):
            conn.execute(delivery_log.insert().values(
                event_id=event_id, channel="email", address=address, outcome="sent",
                response_text=f"250 ok {address}", created_at=clock.utcnow()))
        conn.execute(exclusion_log.insert().values(event_id=mine, address="ann@example.com",
                                                   reason="x", created_at=clock.utcnow()))
    counts = cli_json(env, "profile", "erase", "C1")
    assert counts["events"] == 2 and counts["deliveries"] == 1 and counts["exclusions"] == 1
    assert store_profiles.get_profile(db, "C1") is None
    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(events.select())}
        assert rows[mine].email is None and rows[mine].ctx_xml == "<ctx/>"
        assert rows[by_id].external_id is None and rows[by_id].email is None
        assert rows[other].email == "zed@example.com" and "Ann" in rows[other].ctx_xml
        logs = {r.event_id: r for r in conn.execute(delivery_log.select())}
        assert logs[mine].address is None and logs[mine].response_text is None
        assert logs[other].address == "zed@example.com"
        assert conn.execute(exclusion_log.select()).one().address is None
        assert len(rows) == 3 and len(logs) == 2  # counts kept
    db.dispose()
    gone = run_cli(env, "profile", "erase", "C1", check=False)
    assert gone.returncode == 1 and "no profile" in gone.stderr


def _rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_import_with_bad_rows(env: dict[str, str], tmp_path: Path) -> None:
    """A BOM and CRLF are accepted; wrong field counts, bad emails, duplicates (in one
    batch and across batches) and an over-long line are rejected with reasons and line
    numbers; the rest is imported; a second import updates."""
    src = tmp_path / "people.csv"
    lines = [
        "externalId,email,firstName,language,attributes.tier",
        "A1,a1@example.com,Ann,fr-CA,gold",
        "A2,not-an-email,Bob,en,",
        "A3,a3@example.com,Cy",  # too few fields
        "A4,a4@example.com,Dee,en,silver",
        "A1,dup@example.com,Again,en,",  # duplicate of line 2, same batch
        "A5,a5@example.com,\"Eve, Jr\",de,",
        "A6,a6@example.com," + "x" * 5000 + ",en,",  # over the test's line limit
        "",
        "A7,a7@example.com,Gus,en,",
        "A4,dup2@example.com,Again,en,",  # duplicate of line 5, an earlier batch
    ]
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    db = _db(env)
    report = profiles.import_csv(db, src, batch_rows=2, max_line_bytes=4096)
    assert (report.inserted, report.updated, report.rejected) == (4, 0, 5)
    rejects = _rejects(Path(report.rejects_file or ""))
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejects] == [
        ("3", "email is not an email address"),
        ("4", "expected 5 fields, found 3"),
        ("6", "duplicate externalId"),
        ("8", "line longer than 4096 bytes"),
        ("11", "duplicate externalId"),
    ]
    a1 = store_profiles.get_profile(db, "A1")
    assert a1 is not None and a1.email == "a1@example.com" and a1.first_name == "Ann"
    assert a1.language == "fr-CA" and a1.attributes == {"tier": "gold"}
    a5 = store_profiles.get_profile(db, "A5")
    assert a5 is not None and a5.first_name == "Eve, Jr" and a5.attributes == {}
    # a second import updates the columns it has, and leaves the others
    again = tmp_path / "again.csv"
    again.write_text("externalId,lastName\nA1,Lee\nB1,New\n", encoding="utf-8")
    out = cli_json(env, "profile", "import", str(again), "--quiet")
    assert (out["inserted"], out["updated"], out["rejected"]) == (1, 1, 0)
    assert out["rejects_file"] is None
    a1 = store_profiles.get_profile(db, "A1")
    assert a1 is not None and a1.last_name == "Lee" and a1.first_name == "Ann"
    db.dispose()


def test_import_refuses_a_bad_header_and_a_giant_line(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """An unknown column or no externalId refuses the file (exit 1, nothing written); a
    line of 1 GB is refused without being held in memory (a sparse file)."""
    bad = tmp_path / "bad.csv"
    bad.write_text("externalId,emial\nA1,a@example.com\n", encoding="utf-8")
    res = run_cli(env, "profile", "import", str(bad), check=False)
    assert res.returncode == 1 and "unknown column(s) emial" in res.stderr
    bad.write_text("email\na@example.com\n", encoding="utf-8")
    res = run_cli(env, "profile", "import", str(bad), check=False)
    assert res.returncode == 1 and "no externalId column" in res.stderr
    giant = tmp_path / "giant.csv"
    with giant.open("wb") as f:
        f.write(b"externalId,email\nG1,")
        f.seek(1024 ** 3, 1)  # a sparse gigabyte of NUL bytes: one line
        f.write(b"\nG2,g2@example.com\n")
    out = cli_json(env, "profile", "import", str(giant), "--quiet")
    assert (out["inserted"], out["rejected"]) == (1, 1)
    assert out["reasons"] == {"too_long": 1}
    assert cli_json(env, "profile", "show", "G2")["email"] == "g2@example.com"


def test_eventtype_targeting_options(env: dict[str, str]) -> None:
    """--targeting / --reconcile-on / --missing-profile are stored and shown; an event-based
    type shows none of them; bad values exit 1."""
    made = cli_json(env, "eventtype", "add", "welcome", "--targeting", "profile",
                    "--reconcile-on", "email", "--missing-profile", "send")
    assert (made["targeting"], made["reconcile_on"], made["missing_profile"]) == (
        "profile", "email", "send")
    changed = cli_json(env, "eventtype", "update", "welcome", "--missing-profile", "fail")
    assert (changed["reconcile_on"], changed["missing_profile"]) == ("email", "fail")
    back = cli_json(env, "eventtype", "update", "welcome", "--targeting", "event")
    assert "targeting" not in back
    bad = run_cli(env, "eventtype", "add", "x", "--reconcile-on", "phone", check=False)
    assert bad.returncode == 1 and "invalid choice" in bad.stderr


def test_import_progress_on_stderr(env: dict[str, str], tmp_path: Path) -> None:
    """Without --quiet, a file of 100,000 rows prints a progress line (with its bar) to
    stderr, and the summary alone to stdout."""
    src = tmp_path / "many.csv"
    with src.open("w", encoding="utf-8") as f:
        f.write("externalId,email\n")
        f.writelines(f"M{i},m{i}@example.com\n" for i in range(100_000))
    res = run_cli(env, "--json", "profile", "import", str(src))
    assert json.loads(res.stdout)["inserted"] == 100_000
    [line] = [x for x in res.stderr.splitlines() if x.strip()]
    assert line.startswith("[##############################] 100%  100,000 rows")
