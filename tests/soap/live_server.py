"""A live ``msgcenter serve`` per test module and database (SQLite file, PostgreSQL).

Imported by the HTTP test modules (``from live_server import live_fixture``); the process
and database plumbing comes from the root ``conftest.py``.

Set up as a user would, with the CLI: ``init``, an operator ``pusher`` (password
``s3cret``, right ``mc``) and a zone ``local`` (127.0.0.0/8, login/password allowed,
declared as a proxy so ``X-Forwarded-For`` can place a caller outside every zone).
Small limits keep the hostile-input tests fast.  The server's output goes to a file the
tests read to check that no body or password is ever logged.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, free_port, msgcenter_cmd, run_cli, throwaway_postgres, wait_http
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine

from soap_service.models import split_plid
from soap_service.tables import events

FIXTURES = ROOT / "tests" / "fixtures" / "soap"
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
    wait_http(f"{url}/healthz", timeout=60, proc=proc)
    return Live(url, env, proc, log_path, create_engine(database_url))


@pytest.fixture(name="live", scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A running server with an operator and a zone, on SQLite then PostgreSQL."""
    workdir = tmp_path_factory.mktemp(f"soap-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{workdir}/mc.db"
        else:
            database_url = stack.enter_context(throwaway_postgres("mc_soap"))
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
