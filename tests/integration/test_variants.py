"""Language variants end to end (SQLite and PostgreSQL): ``template variant`` commands,
publish freezing every variant in one version, the worker picking by the event's or the
profile's language with the fallback chain, the delivery log naming the variant,
preview and proof per variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_settings, run_cli
from lxml import etree

from soap_service import catalog, ingest, profiles
from soap_service.devsmtp import MailSink
from soap_service.models import EventStatus, Queue, split_plid
from soap_service.store import Database, make_engine
from soap_service.store import queue as queue_store
from soap_service.store.events import get_event
from soap_service.worker import Dispatcher


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    environment = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
                   "MC_OPERATOR": "carol"}
    run_cli(environment, "init")
    (tmp_path / "en.html").write_text("<p>Hello {{ rtEvent.ctx.name }}</p>", encoding="utf-8")
    (tmp_path / "fr.html").write_text("<p>Bonjour {{ rtEvent.ctx.name }}</p>",
                                      encoding="utf-8")
    (tmp_path / "qc.html").write_text("<p>Allô {{ rtEvent.ctx.name }}</p>", encoding="utf-8")
    run_cli(environment, "eventtype", "add", "welcome")
    run_cli(environment, "template", "create", "welcome_email", "--event-type", "welcome",
            "--from", "shop@example.org", "--subject", "Welcome", "--html",
            str(tmp_path / "en.html"))
    return environment


def cli_json(env: dict[str, str], *args: str):
    return json.loads(run_cli(env, "--json", *args).stdout)


def test_variant_commands_and_publish(env: dict[str, str], tmp_path: Path) -> None:
    """add / update / list / remove; bad languages, duplicates, a foreign part or broken
    syntax are refused; an incomplete variant blocks publish; publish freezes the
    variants in one version and a later draft change does not touch it."""
    rows = cli_json(env, "template", "variant", "add", "welcome_email", "--language", "FR",
                    "--subject", "Bienvenue", "--html", str(tmp_path / "fr.html"))
    assert [(r["language"], r["subject"], r["from"]) for r in rows] == [
        ("fr", "Bienvenue", "")]
    dup = run_cli(env, "template", "variant", "add", "welcome_email", "--language", "fr",
                  "--subject", "x", check=False)
    assert dup.returncode == 1 and "already has a fr variant" in dup.stderr
    bad = run_cli(env, "template", "variant", "add", "welcome_email", "--language", "french!",
                  "--subject", "x", check=False)
    assert bad.returncode == 1 and "invalid language" in bad.stderr
    sms = run_cli(env, "template", "variant", "add", "welcome_email", "--language", "de",
                  "--sms", str(tmp_path / "en.html"), check=False)
    assert sms.returncode == 1 and "variant de" in sms.stderr
    broken = run_cli(env, "template", "variant", "add", "welcome_email", "--language", "de",
                     "--subject", "{{ rtEvent.ctx.name ", check=False)
    assert broken.returncode == 1 and "variant de: subject line 1" in broken.stderr
    cli_json(env, "template", "variant", "add", "welcome_email", "--language", "fr-ca",
             "--html", str(tmp_path / "qc.html"))
    incomplete = run_cli(env, "template", "publish", "welcome_email", check=False)
    assert incomplete.returncode == 1 and "variant fr-CA" in incomplete.stderr
    assert "missing subject" in incomplete.stderr
    cli_json(env, "template", "variant", "update", "welcome_email", "--language", "fr-CA",
             "--subject", "Bienvenue!")
    assert [r["language"] for r in cli_json(env, "template", "variant", "list",
                                            "welcome_email")] == ["fr", "fr-CA"]
    run_cli(env, "template", "publish", "welcome_email")
    settings = make_settings(env["MC_DATABASE_URL"])
    db = Database(make_engine(settings), settings)
    frozen = catalog.get_version(db, "welcome_email").version.content
    assert sorted(frozen.variants) == ["fr", "fr-CA"]
    assert frozen.variants["fr-CA"].subject == "Bienvenue!"
    run_cli(env, "template", "variant", "remove", "welcome_email", "--language", "fr-CA")
    assert sorted(catalog.get_version(db, "welcome_email").version.content.variants) == \
        ["fr", "fr-CA"]  # the published version did not change
    assert cli_json(env, "template", "show", "welcome_email")["variants"] == "fr"
    gone = run_cli(env, "template", "variant", "remove", "welcome_email", "--language", "it",
                   check=False)
    assert gone.returncode == 1 and "has no it variant" in gone.stderr
    diff = run_cli(env, "template", "diff", "welcome_email", "1", "draft").stdout
    assert "welcome_email@1/variants/fr-CA/subject" in diff and "-Bienvenue!" in diff
    db.dispose()


def test_worker_picks_by_language_and_logs_the_variant(env: dict[str, str],
                                                       tmp_path: Path) -> None:
    """fr-CA -> the fr-CA variant, fr-BE -> fr, de -> default, no language -> the
    profile's language; each delivery-log row names the variant used."""
    for lang, html, subject in (("fr", "fr.html", "Bienvenue"),
                                ("fr-CA", "qc.html", "Bienvenue au Québec")):
        run_cli(env, "template", "variant", "add", "welcome_email", "--language", lang,
                "--subject", subject, "--html", str(tmp_path / html))
    run_cli(env, "template", "publish", "welcome_email")
    settings = make_settings(env["MC_DATABASE_URL"])
    db = Database(make_engine(settings), settings)
    profiles.put(db, "P1", {"email": "p1@example.com", "language": "fr-CA"})
    run_cli(env, "eventtype", "update", "welcome", "--targeting", "profile",
            "--missing-profile", "send")
    catalog.clear_cache()

    def push(attrs: str) -> int:
        el = etree.fromstring(f'<e type="welcome" {attrs}><ctx><name>Ann</name></ctx></e>')
        return split_plid(ingest.store_event(db, settings, el, Queue.RT))[1]

    cases = {push('email="a@example.com" language="fr-CA"'): ("fr-CA", "Allô Ann"),
             push('email="b@example.com" language="fr-BE"'): ("fr", "Bonjour Ann"),
             push('email="c@example.com" language="de"'): (None, "Hello Ann"),
             push('email="d@example.com"'): (None, "Hello Ann"),
             push('externalId="P1"'): ("fr-CA", "Allô Ann")}
    with MailSink() as sink:
        d = Dispatcher(settings.replace(smtp_host=sink.host, smtp_port=sink.port), db)
        try:
            d.tick()
            sink.wait_for(len(cases))
        finally:
            d.close()
    bodies = {m.message["X-MC-Event-Id"]: m.message.get_body(("html",)).get_content()
              for m in sink.messages}
    for pk, (variant, text) in cases.items():
        assert get_event(db, pk).status is EventStatus.PROCESSED
        [attempt] = queue_store.delivery_attempts(db, pk)
        assert attempt.variant == variant
        assert text in bodies[str(pk)]
    shown = cli_json(env, "events", "show", str(next(iter(cases))))
    assert shown["attempts"][0]["variant"] == "fr-CA"
    db.dispose()


def test_preview_and_proof_per_variant(env: dict[str, str], tmp_path: Path) -> None:
    """preview --language renders the variant that language gets; proof --language sends
    it, marked with the variant."""
    run_cli(env, "template", "variant", "add", "welcome_email", "--language", "fr",
            "--subject", "Bienvenue", "--html", str(tmp_path / "fr.html"))
    run_cli(env, "seed", "add", "welcome_email", "qa@example.com", "--ctx-json",
            str(_write(tmp_path / "ctx.json", '{"name": "Zoé"}')))
    fr = cli_json(env, "template", "preview", "welcome_email", "--language", "fr-CA")
    assert fr["language"] == "fr" and fr["subject"] == "Bienvenue"
    assert "Bonjour Zoé" in fr["html"]
    default = cli_json(env, "template", "preview", "welcome_email")
    assert default["subject"] == "Welcome" and "Hello Zoé" in default["html"]
    with MailSink() as sink:
        proof_env = {**env, "MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port)}
        run_cli(proof_env, "template", "proof", "welcome_email", "--seeds", "--language", "fr")
        [mail] = sink.wait_for(1)
    assert mail.message["Subject"] == "[PROOF] Bienvenue"
    assert mail.message["X-MC-Proof"] == "welcome_email@draft/fr"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
