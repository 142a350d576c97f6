"""Exit codes of ``msgcenter`` (in process, through ``cli.main``): a caller's or template
author's mistake exits 1 with one error line, never 2 (ours) and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service import cli

HUGE = "9" * 5000  # past Python's int() limit of 4,300 digits


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str):
    """``msgcenter ARGS`` in this process on a migrated database: (exit code, stderr)."""
    monkeypatch.setenv("MC_DATABASE_URL", database_url)
    monkeypatch.setenv("MC_SQLITE_SYNCHRONOUS", "normal")

    def _run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    assert _run("init")[0] == 0
    assert _run("eventtype", "add", "order")[0] == 0
    return _run


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    assert lines[-1].startswith("msgcenter") and ": error: " in lines[-1], err
    return lines[-1]


@pytest.mark.parametrize(("option", "content", "part"), [
    ("--subject", "Hi {{ " + HUGE + " }}", "subject"),
    ("--html", "<p>\n{{ rtEvent.ctx.items.item[" + HUGE + "] }}</p>", "html"),
    ("--subject", "{% if rtEvent.ctx.n > " + HUGE + ".5 %}x{% endif %}", "subject"),
])
def test_a_huge_number_literal_is_a_syntax_error_with_its_place(
        run, tmp_path: Path, option: str, content: str, part: str) -> None:
    """A number literal longer than int() converts (also as an index): one line naming
    the part, line and column, exit 1."""
    value = content
    if option == "--html":
        value = str(tmp_path / "t.html")
        Path(value).write_text(content, encoding="utf-8")
    code, err = run("template", "create", "t", "--event-type", "order", option, value)
    assert code == 1
    line = one_error_line(err)
    assert f"{part} line" in line and "column" in line and "number too long" in line
    assert HUGE not in err  # the message quotes no source


def test_a_render_limit_in_preview_exits_1(run, tmp_path: Path) -> None:
    """A template that hits the render step limit with its seed's data is the author's
    mistake: one error line, exit 1 (was 2, the code for our own failures)."""
    html = tmp_path / "loop.html"
    html.write_text("{% for a in rtEvent.ctx.i %}{% for b in rtEvent.ctx.i %}.{% endfor %}"
                    "{% endfor %}", encoding="utf-8")
    ctx = tmp_path / "ctx.xml"
    ctx.write_text("<ctx>" + "<i/>" * 700 + "</ctx>", encoding="utf-8")
    assert run("template", "create", "loop", "--event-type", "order", "--subject", "s",
               "--html", str(html))[0] == 0
    assert run("seed", "add", "loop", "qa@example.com", "--ctx", str(ctx))[0] == 0
    code, err = run("template", "preview", "loop", "--seed", "qa@example.com")
    assert code == 1
    assert "render step limit exceeded" in one_error_line(err)


@pytest.mark.parametrize("argv", [
    ("events", "list", "--limit", "99999999999999999999999"),
    ("events", "list", "--limit", HUGE),
    ("template", "show", "t", "--version", "99999999999"),
    ("tracking", "list", "--limit", "1e3"),
    ("eventtype", "update", "order", "--max-attempts", "99999999999"),
    ("operator", "add", "x", "--password", "x", "--right", "root"),
])
def test_usage_mistakes_exit_1_with_one_line(run, argv: tuple[str, ...]) -> None:
    """Out-of-range or malformed options (a database overflow and a traceback before) and
    other argparse usage errors exit 1, not 2."""
    code, err = run(*argv)
    assert code == 1, err
    one_error_line(err)
