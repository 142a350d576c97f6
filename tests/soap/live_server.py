"""A live ``msgcenter serve`` per test module and database (SQLite file, PostgreSQL).

Imported by the HTTP test modules (``from live_server import live_fixture``); self-contained
because a second ``conftest.py`` module cannot import the root one by name.

Set up as a user would, with the CLI: ``init``, an operator ``pusher`` (password
``s3cret``, right ``mc``) and a zone ``local`` (127.0.0.0/8, login/password allowed,
declared as a proxy so ``X-Forwarded-For`` can place a caller outside every zone).
Small limits keep the hostile-input tests fast.  The server's output goes to a file the
tests read to check that no body or password is ever logged.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine, make_url

from soap_service.models import split_plid
from soap_service.tables import events

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "soap"
PG_URL = os.environ.get(
    "MC_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("MC_REQUIRE_POSTGRES") == "1"
TOKEN = "pusher/s3cret"
LIMITS = {"MC_MAX_BODY_BYTES": "200000", "MC_MAX_EVENTS_PER_CALL": "5", "MC_MAX_XML_DEPTH": "40",
          "MC_AUTH_CACHE_TTL": "0"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Live:
    url: str
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    engine: Engine

    @property
    def soap_path(self) -> str:
        return "/nl/jsp/soaprouter.jsp"

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        """One HTTP request on a fresh connection (chunked when ``body`` is an iterable)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            conn.request(method, path, body=body, headers=headers or {},
                         encode_chunked=chunked)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def post(self, body: bytes | Iterable[bytes], headers: dict[str, str] | None = None,
             path: str | None = None) -> Reply:
        all_headers = {"Content-Type": "text/xml; charset=utf-8", **(headers or {})}
        return self.request("POST", path or self.soap_path, body, all_headers)

    def fixture(self, name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    def stored(self, plid: int) -> dict | None:
        """The stored event row of ``plid`` (None when nothing was stored)."""
        _, pk = split_plid(plid)
        with self.engine.connect() as conn:
            row = conn.execute(select(events).where(events.c.id == pk)).mappings().first()
        return dict(row) if row else None

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())

    def server_log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def msgcenter_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "soap_service.cli", *args]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(msgcenter_cmd(*args), env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 0, f"msgcenter {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200 (generous deadline; fails if the server exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s")


def _postgres_database() -> Iterator[str]:
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not reachable"
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    name = f"mc_soap_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _start(database_url: str, workdir: Path) -> Live:
    port = free_port()
    env = {
        "MC_DATABASE_URL": database_url, "MC_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MC_SQLITE_SYNCHRONOUS": "normal", "MC_MAIL_DIR": str(workdir / "mail"),
        "PYTHONUNBUFFERED": "1", **LIMITS,
    }
    run_cli(env, "init")
    run_cli(env, "operator", "add", "pusher", "--password", "s3cret", "--right", "mc")
    run_cli(env, "zone", "add", "local", "127.0.0.0/8", "--allow-user-password", "--proxy")
    log_path = workdir / "server.log"
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        msgcenter_cmd("serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker",
                      "--workers", "2"),
        env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(ROOT),
    )
    log_file.close()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    return Live(url, env, proc, log_path, create_engine(database_url))


@pytest.fixture(name="live", scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A running server with an operator and a zone, on SQLite then PostgreSQL."""
    workdir = tmp_path_factory.mktemp(f"soap-{request.param}")
    pg = None
    if request.param == "sqlite":
        database_url = f"sqlite:///{workdir}/mc.db"
    else:
        pg = _postgres_database()
        database_url = next(pg)
    server = _start(database_url, workdir)
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        server.engine.dispose()
        if pg is not None:
            next(pg, None)
