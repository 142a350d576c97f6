"""A live ``msgcenter serve`` for the JSON API tests, and a small HTTP client for it.

:func:`rest_stack` initialises a database (a SQLite file, or a throw-away PostgreSQL
database), lets loopback call, creates API keys for every scope and starts ``msgcenter
serve`` on a free port; it stops the server on exit.  :func:`call` speaks HTTP with the
standard library so that tests control every header and byte.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conftest import ROOT, free_port, msgcenter_cmd, run_cli, throwaway_postgres, wait_http

from soap_service.config import load_settings
from soap_service.store import Database, make_engine

SOAP_PASSWORD = "pw-123456"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    keys: dict[str, str]  # scope set -> key: "push", "read", "admin", "all"
    db: Database
    log_path: Path
    process: subprocess.Popen | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = "all",
             headers: dict[str, str] | None = None, raw: bytes | None = None,
             timeout: float = 30.0) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent.setdefault("Authorization", f"Bearer {self.keys.get(key, key)}")
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        return call(self.url, method, path, data, sent, timeout)

    def count_events(self) -> int:
        from soap_service.store import events as event_store

        return event_store.count_events(self.db)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def call(base: str, method: str, path: str, data: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def _keys(env: dict[str, str]) -> dict[str, str]:
    keys = {}
    for name, scopes in (("push", "push"), ("read", "read"), ("admin", "admin"),
                         ("all", "push,read,admin"), ("revoked", "push,read,admin")):
        out = run_cli(env, "--json", "apikey", "create", f"key-{name}", "--scope", scopes)
        keys[name] = json.loads(out.stdout)["key"]
    run_cli(env, "apikey", "revoke", "key-revoked")
    return keys


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/mc.db"
        return
    with throwaway_postgres("mc_rest") as url:
        yield url


@contextlib.contextmanager
def rest_stack(kind: str, tmp: Path, *, worker: bool = False,
               env: dict[str, str] | None = None,
               prepare: Callable[[Database], None] | None = None) -> Iterator[Stack]:
    """A served JSON API on ``kind`` ("sqlite" or "postgres"); ``prepare`` runs on the
    database before the server starts (templates, subscriptions)."""
    with database(kind, tmp) as url:
        port = free_port()
        full_env = {"MC_DATABASE_URL": url, "MC_PUBLIC_URL": f"http://127.0.0.1:{port}",
                    "MC_SQLITE_SYNCHRONOUS": "normal", "MC_MAIL_DIR": str(tmp / "mail"),
                    "PYTHONUNBUFFERED": "1", "HOME": str(tmp), **(env or {})}
        run_cli(full_env, "init")
        run_cli(full_env, "zone", "add", "loopback", "127.0.0.0/8", "--allow-user-password")
        run_cli(full_env, "operator", "add", "ops", "--password", SOAP_PASSWORD)
        keys = _keys(full_env)
        settings = load_settings({k: v for k, v in full_env.items() if k.startswith("MC_")})
        db = Database(make_engine(settings), settings)
        if prepare is not None:
            prepare(db)
        log_path = tmp / f"serve-{port}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                msgcenter_cmd("serve", "--host", "127.0.0.1", "--port", str(port),
                              "--workers", "2", *([] if worker else ["--no-worker"])),
                env={**os.environ, **full_env}, stdout=out, stderr=subprocess.STDOUT,
                cwd=str(ROOT))
        stack = Stack(f"http://127.0.0.1:{port}", full_env, keys, db, log_path, proc)
        try:
            wait_http(f"{stack.url}/healthz", proc=proc, log_path=log_path)
            yield stack
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            db.dispose()
