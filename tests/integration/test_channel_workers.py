"""Several ``msgcenter worker`` processes on one PostgreSQL queue of SMS and push events:
every message reaches its server exactly once (counted at the SMSC and at the FCM peer),
and every worker did part of the work.  Real processes, real SMPP and HTTP/2; polling
with deadlines, never sleeping for timing."""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

from channel_support import ANDROID_TOKEN, PHONE, TYPE, publish_templates
from conftest import ROOT, make_settings, msgcenter_cmd
from dispatch_support import add_events, event_row, wait_until
from servers.smsc import Smsc
from sqlalchemy import func, select

from soap_service.store import Database, make_engine, schema
from soap_service.tables import events, worker_heartbeats
from tests.push_peers import serve_fcm


def _counts(db: Database) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(select(events.c.status, func.count()).group_by(events.c.status))
        return {status: n for status, n in rows}


def _live(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(worker_heartbeats))
                   .scalar_one())


def _rows(n: int, start: int) -> list[dict]:
    """n SMS and n push events, each with its own order number in the ctx."""
    rows = []
    for i in range(start, start + n):
        ctx = f'<ctx><order id="N{i}"/></ctx>'
        rows.append(event_row(i, event_type=TYPE, email=None, wished_channel=1,
                              mobile_phone=PHONE, ctx_xml=ctx))
        rows.append(event_row(i, event_type=TYPE, email=None, wished_channel=42,
                              registration_token=ANDROID_TOKEN, ctx_xml=ctx))
    for row in rows:
        row["email"] = None
    return rows


def test_three_workers_send_each_sms_and_notification_once(postgres_url, tmp_path: Path):
    """3 workers, 1,000 SMS and 1,000 push events pushed while they run: each order
    number arrives once at the SMSC and once at FCM; each worker sent some."""
    settings = make_settings(postgres_url)
    db = Database(make_engine(settings), settings)
    schema.upgrade(db)
    publish_templates(db)
    n = 1000
    procs: list[tuple[subprocess.Popen, Path]] = []
    (tmp_path / "fcm").mkdir()
    fcm_setup = serve_fcm(tmp_path / "fcm")
    fcm = next(fcm_setup)
    try:
        with Smsc() as smsc:
            config = tmp_path / "mc.toml"
            fcm_options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in fcm.options().items())
            config.write_text(f"""
[[connectors]]
name = "smsc-a"
channel = "sms"
kind = "smpp"
host = "127.0.0.1"
port = {smsc.port}
system_id = "mc"
password = "secret"
window = 32

[[connectors]]
name = "fcm"
channel = "push"
kind = "fcm"
{fcm_options}
""", encoding="utf-8")
            env = {**os.environ, "MC_DATABASE_URL": postgres_url, "MC_CONFIG": str(config),
                   "MC_WORKER_BATCH_SIZE": "50", "PYTHONUNBUFFERED": "1"}
            for k in range(3):
                log_path = tmp_path / f"worker-{k}.log"
                with log_path.open("wb") as out:
                    procs.append((subprocess.Popen(msgcenter_cmd("-v", "worker"), cwd=str(ROOT),
                                                   env=env, stdout=out,
                                                   stderr=subprocess.STDOUT), log_path))
            wait_until(lambda: _live(db) == 3, 60, "three workers to be running")
            for start in range(0, n, 250):
                add_events(db, _rows(250, start))
            wait_until(lambda: _counts(db) == {"processed": 2 * n}, 180,
                       f"every event processed (now {_counts(db)})")
            smsc.wait(lambda: len(smsc.messages) >= n)  # stored just after each answer
            sms_orders = collections.Counter(m.text.split()[1] for m in smsc.messages)
        push_orders = collections.Counter(s.body["message"]["data"]["order"]
                                          for s in fcm.peer.seen)
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fcm_setup.close()
        db.dispose()
    assert len(sms_orders) == n and set(sms_orders.values()) == {1}
    assert len(push_orders) == n and set(push_orders.values()) == {1}
    sent = [path.read_text(errors="replace").count("message.sent") for _, path in procs]
    assert sum(sent) == 2 * n and all(count > 0 for count in sent), sent


def test_a_worker_with_a_bad_connector_table_refuses_to_start(tmp_path: Path):
    """An unknown kind, or a secret file that cannot be read, stops `msgcenter worker` at
    start: one line naming the connector, a non-zero exit, no traceback."""
    db_url = f"sqlite:///{tmp_path}/mc.db"
    env = {**os.environ, "MC_DATABASE_URL": db_url}
    subprocess.run(msgcenter_cmd("init"), cwd=str(ROOT), env=env, check=True,
                   capture_output=True, timeout=60)
    for table, words in (
            ('kind = "pigeon"', "connector 'x': unknown kind 'pigeon'"),
            ('kind = "smpp"\nhost = "h"\nsystem_id = "mc"\npassword_file = "/nonexistent/pw"',
             "connector 'x': cannot read password_file /nonexistent/pw")):
        config = tmp_path / "bad.toml"
        config.write_text(f'[[connectors]]\nname = "x"\nchannel = "sms"\n{table}\n',
                          encoding="utf-8")
        proc = subprocess.run(msgcenter_cmd("worker"), cwd=str(ROOT), timeout=60,
                              env={**env, "MC_CONFIG": str(config)}, capture_output=True,
                              text=True)
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert words in line and "Traceback" not in proc.stderr
