"""Interop: our signed webhooks verified in Node by the public ``standardwebhooks`` package.

``webhook_receiver.js`` is a receiver as an integrator would write it (docs/webhooks.md);
the worker's webhook job delivers a real notification to it over loopback; a request
signed with another secret is refused by the same code.  Needs Node and ``npm ci`` in
``tests/interop`` (skips without them unless ``MC_REQUIRE_INTEROP=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_settings

from soap_service import clock, eventstatus, outbox, webhooks
from soap_service.models import make_plid
from soap_service.store import Database, make_engine, schema
from soap_service.store import events as event_store
from soap_service.store import webhooks as store

HERE = Path(__file__).resolve().parent
REQUIRE = os.environ.get("MC_REQUIRE_INTEROP") == "1"


def _node() -> str:
    exe = shutil.which("node")
    if exe is None or not (HERE / "node_modules" / "standardwebhooks").is_dir():
        message = "node and the npm package standardwebhooks (npm ci in tests/interop)"
        if REQUIRE:
            pytest.fail(message + " (MC_REQUIRE_INTEROP=1)")
        pytest.skip(message)
    return exe


def _line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline() if proc.stdout else ""
    assert line, "the Node receiver printed nothing"
    return line.strip()


def test_node_standardwebhooks_verifies_our_signature(sqlite_url: str):
    """A delivered webhook verifies in Node; one signed with another secret does not."""
    node = _node()
    settings = make_settings(sqlite_url)
    db = Database(make_engine(settings), settings)
    schema.upgrade(db)
    secret = webhooks.new_secret()
    proc = subprocess.Popen([node, str(HERE / "webhook_receiver.js")], cwd=str(HERE),
                            env={**os.environ, "MC_WEBHOOK_SECRET": secret},
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(_line(proc).split()[1])
        endpoint = store.add_endpoint(db, f"http://127.0.0.1:{port}/hook", secret,
                                      frozenset(), frozenset(), clock.utcnow())
        (pk,) = event_store.insert_events(db, [_row()]).ids
        eventstatus.cancel(db, pk, reason="interop")
        box = outbox.Outbox(settings, db)
        try:
            assert box.tick().delivered == 1
        finally:
            box.close()
        got = json.loads(_line(proc))
        assert got == {"ok": True, "id": got["id"], "type": "ignored",
                       "plId": str(make_plid(settings.instance_id, pk))}
        assert got["id"].startswith("msg_")

        other = store.add_endpoint(db, f"http://127.0.0.1:{port}/hook", webhooks.new_secret(),
                                   frozenset(), frozenset(), clock.utcnow())
        tested = outbox.send_test(settings, db, other.id)
        refused = json.loads(_line(proc))
        assert refused["ok"] is False and tested.status == "failed"
        assert endpoint.id != other.id
    finally:
        proc.terminate()
        proc.wait(10)
        db.dispose()


def _row() -> dict:
    now = clock.utcnow()
    return {"queue": "rt", "event_type": "order", "priority": 1, "email": "n@example.com",
            "ctx_xml": "<ctx/>", "process_at": now, "created_at": now, "updated_at": now}
