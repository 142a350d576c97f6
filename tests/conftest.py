"""Shared fixtures: real databases (SQLite file, PostgreSQL when reachable) and live servers.

PostgreSQL: ``MC_TEST_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
names a server; each test session creates its own throw-away database on it, so parallel
runs never share tables.  When the server is unreachable, PostgreSQL tests are skipped —
unless ``MC_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), where they fail instead.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from soap_service.config import Settings, load_settings
from soap_service.store import Database, make_engine, schema

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL = os.environ.get("MC_TEST_DATABASE_URL", DEFAULT_PG)
REQUIRE_PG = os.environ.get("MC_REQUIRE_POSTGRES") == "1"

# Property-based suites: a few hundred examples by default (seconds, for CI);
# MC_HYPOTHESIS_PROFILE=long runs thousands (minutes) when hunting for bugs.
_HYPOTHESIS_COMMON = {"deadline": None, "print_blob": True,
                      "suppress_health_check": [HealthCheck.too_slow,
                                                HealthCheck.function_scoped_fixture]}
hypothesis_settings.register_profile("ci", max_examples=150, **_HYPOTHESIS_COMMON)
hypothesis_settings.register_profile("long", max_examples=5000, **_HYPOTHESIS_COMMON)
hypothesis_settings.load_profile(os.environ.get("MC_HYPOTHESIS_PROFILE", "ci"))


def _pg_admin_engine():
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@contextmanager
def throwaway_postgres(prefix: str = "mc_test") -> Iterator[str]:
    """URL of a new PostgreSQL database, dropped on exit; skips (or, in CI, fails) the
    test when the server is unreachable."""
    try:
        admin = _pg_admin_engine()
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not reachable"
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped afterwards)."""
    with throwaway_postgres() as url:
        yield url


def _reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, then PostgreSQL (test runs twice)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mc.db"
    url = request.getfixturevalue("pg_server_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mc.db"


@pytest.fixture
def postgres_url(pg_server_url: str) -> str:
    _reset_postgres(pg_server_url)
    return pg_server_url


def make_settings(database_url: str, **overrides) -> Settings:
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    return load_settings(env, **overrides)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """A migrated database (SQLite file and PostgreSQL)."""
    database = Database(make_engine(settings), settings)
    schema.upgrade(database)
    yield database
    database.dispose()


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def msgcenter_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "soap_service.cli", *args]


@dataclass
class CliResult:
    """What ``msgcenter ARGS`` did: its exit code and output (as ``CompletedProcess``)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(env: dict[str, str], *args: str, check: bool = True,
            stdin: str = "") -> CliResult:
    """Run ``msgcenter ARGS`` in this process, through ``soap_service.cli.main(argv)``: the
    environment as given (over ours), the working directory at the project root (or
    ``env["_CWD"]``), standard input ``stdin`` (not a terminal), output captured.  What a
    process exit would drop is dropped afterwards: pooled connections and the catalog's
    cache.  Use :func:`run_cli_process` where the process itself is under test."""
    from soap_service import catalog, cli, store

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_stdin = sys.stdin
    out, err = io.StringIO(), io.StringIO()
    os.environ.update({k: v for k, v in env.items() if not k.startswith("_")})
    try:
        os.chdir(env.get("_CWD", str(ROOT)))
        sys.stdin = io.StringIO(stdin)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse: usage errors and --help
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        store.disconnect_all()
        catalog.clear_cache()
    result = CliResult(["msgcenter", *args], code, out.getvalue(), err.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(f"msgcenter {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def run_cli_process(env: dict[str, str], *args: str,
                    check: bool = True) -> subprocess.CompletedProcess:
    """Run ``msgcenter ARGS`` as a user would, in a subprocess."""
    proc = subprocess.run(
        msgcenter_cmd(*args), env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120, cwd=env.get("_CWD", str(ROOT)),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"msgcenter {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path | None = None  # the server's stdout and stderr

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    @property
    def soap_url(self) -> str:
        return f"{self.url}/nl/jsp/soaprouter.jsp"

    def wsdl_url(self, schema_name: str = "nms:rtEvent") -> str:
        return f"{self.url}/nl/jsp/schemawsdl.jsp?schema={schema_name}"

    def cli(self, *args: str, check: bool = True) -> CliResult:
        return run_cli(self.env, *args, check=check)


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
              log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            out = out or (log_path.read_text(errors="replace") if log_path else "")
            raise AssertionError(f"server exited with {proc.returncode}: {out[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start ``msgcenter serve`` on a free loopback port; stopped at teardown.

    No dispatch worker unless ``worker=True``; the server's output goes to a file
    (``LiveServer.log()``), never to an unread pipe that would fill up and block it.
    """
    started: list[subprocess.Popen] = []

    def _start(database_url: str, *extra_args: str, env: dict[str, str] | None = None,
               init: bool = True, worker: bool = False) -> LiveServer:
        port = free_port()
        full_env = {
            "MC_DATABASE_URL": database_url,
            "MC_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MC_SQLITE_SYNCHRONOUS": "normal",
            "MC_MAIL_DIR": str(tmp_path / "mail"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        if init:
            run_cli(full_env, "init")
        log_path = tmp_path / f"serve-{port}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                msgcenter_cmd("serve", "--host", "127.0.0.1", "--port", str(port),
                              *([] if worker else ["--no-worker"]), *extra_args),
                env={**os.environ, **full_env}, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=str(ROOT),
            )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc=proc, log_path=log_path)
        return LiveServer(url=base, env=full_env, process=proc, log_path=log_path)

    yield _start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
