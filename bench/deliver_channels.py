"""The worker's SMS and push throughput: ``python bench/deliver.py --channel sms|push``.

One ``msgcenter worker`` (its own process) drains N pre-inserted events of the demo type
``order_confirmation`` -- claim, render the SMS / push template, send through the
channel's connector, record -- and the rate is taken over the span of the delivery log
(first to last attempt).  Beside it, in the same run and against the same server, a
plain client of the protocol sends N messages of the same size, so the ratio says what
the pipeline costs:

* **sms** -- to ``msgcenter devsmsc`` (another process, storing every SMS as a file and
  sending a DELIVRD receipt for each, which the worker records): the ``smpp`` connector
  with a window of ``--window``, vs smpplib pipelining the same window
  (``bench/deliver_sms.py``);
* **push** -- to devpush's APNs (HTTP/2 + TLS, every check made, nothing written; another
  process): the ``apns`` connector (its own HTTP/2 client, ``channels/h2client.py``) with
  ``--concurrency`` streams, vs one plain httpx HTTP/2 client (``bench/deliver_push.py``);
  ``--platform android`` uses FCM instead.  The server's CPU per message is printed too.

A script, not a test: numbers vary ±30 % with what else runs on the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import deliver_push
import deliver_sms
from deliver import cpu_seconds
from sqlalchemy import func, select

from soap_service import clock
from soap_service.store import Database
from soap_service.store.events import insert_events
from soap_service.tables import delivery_log, events

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1000.0  # messages/s per channel with one worker (issue 9)
PHONE = "+33612345678"
IOS_TOKEN = "5a" * 32
ANDROID_TOKEN = "bench:APA91b" + "x" * 140
CTX = ('<ctx><client><firstname>John{n}</firstname></client><order id="A-{n}"/></ctx>')


def queue_channel_events(db: Database, n: int, wished: int, address: dict[str, str]) -> None:
    now = clock.utcnow()
    for first in range(0, n, 1000):
        insert_events(db, [{
            "queue": "rt", "event_type": "order_confirmation", "priority": 1,
            "wished_channel": wished, "ctx_xml": CTX.format(n=i), "process_at": now,
            "created_at": now, "updated_at": now, **address}
            for i in range(first, min(first + 1000, n))])


def _processed(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)
                                .where(events.c.status == "processed")).scalar_one())


def run_worker(db: Database, database_url: str, config: Path, n: int,
               extra_env: dict[str, str] | None = None) -> tuple[float, float, float | None]:
    """One ``msgcenter worker`` draining n events: (rate over the delivery log, rate over
    the wall clock, the worker's CPU µs per message -- start-up included)."""
    env = {**os.environ, "MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           "MC_CONFIG": str(config), **(extra_env or {})}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "soap_service.cli", "worker"], env=env,
                            cwd=str(ROOT), stderr=subprocess.DEVNULL)
    try:
        while _processed(db) < n:
            if proc.poll() is not None:
                raise SystemExit("the worker exited early")
            time.sleep(0.2)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) or None  # 0: not Linux
    finally:
        proc.terminate()
        proc.wait(60)
    with db.connect() as conn:
        first, last, sent = conn.execute(select(
            func.min(delivery_log.c.created_at), func.max(delivery_log.c.created_at),
            func.count())).one()
    assert sent == n, f"{sent} attempts for {n} events"
    return (n / max((last - first).total_seconds(), 1e-3), n / wall,
            None if cpu is None else cpu / n * 1e6)


def bench_sms(db: Database, database_url: str, n: int, window: int, tmp: Path
              ) -> dict[str, Any]:
    port = deliver_sms.free_port()
    sms_dir = tmp / "sms"
    smsc = subprocess.Popen([sys.executable, "-m", "soap_service.cli", "devsmsc", "--port",
                             str(port), "--dir", str(sms_dir)], cwd=str(ROOT),
                            stdout=subprocess.DEVNULL)
    try:
        deliver_sms.wait_port(port)
        texts = [f"DemoShop: order A-{i} is confirmed. Thank you, John{i}!" for i in range(n)]
        plain = deliver_sms.plain_smpplib(port, texts, window)
        config = tmp / "sms.toml"
        config.write_text(f"""[[connectors]]
name = "devsmsc"
channel = "sms"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "bench"
window = {window}
concurrency = {window}
""", encoding="utf-8")
        queue_channel_events(db, n, 1, {"mobile_phone": PHONE})
        rate, wall, cpu = run_worker(db, database_url, config, n)
    finally:
        smsc.terminate()
        smsc.wait(30)
    with db.connect() as conn:
        receipts = conn.execute(select(func.count()).select_from(delivery_log)
                                .where(delivery_log.c.receipt == "delivered")).scalar_one()
    return {"worker": rate, "wall": wall, "plain": plain, "ratio": rate / plain,
            "worker_cpu_us": cpu, "receipts_recorded": int(receipts),
            "plain_client": f"smpplib window {window}"}


def bench_push(db: Database, database_url: str, n: int, concurrency: int, platform: str,
               tmp: Path) -> dict[str, Any]:
    from soap_service.devpush_checks import write_credentials

    ready = tmp / "ready.json"
    sink = subprocess.Popen([sys.executable, deliver_push.__file__, "--serve-sink", str(tmp),
                             str(ready)], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if sink.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the push sink did not start")
            time.sleep(0.1)
        ports = json.loads(ready.read_text())
        deliver_push.SERVER_PID = sink.pid
        url = f"https://127.0.0.1:{ports['tls']}"
        key, account = write_credentials(tmp / "credentials", f"{url}/token")
        deliver_push.ROUNDS = 1
        if platform == "ios":
            measured = asyncio.run(deliver_push.bench_apns(url, ports["ca"], str(key), n,
                                                           concurrency))
            table = (f'kind = "apns"\nbase_url = "{url}"\nteam_id = "TEAM123456"\n'
                     f'key_id = "KEY1234567"\nkey_file = "{key}"\n'
                     f'topic = "com.example.shop"\nca_file = "{ports["ca"]}"')
            wished, address = 41, {"registration_token": IOS_TOKEN}
        else:
            measured = asyncio.run(deliver_push.bench_fcm(url, ports["ca"], str(account), n,
                                                          concurrency, True))
            table = (f'kind = "fcm"\nbase_url = "{url}"\nservice_account_file = "{account}"\n'
                     f'token_uri = "{url}/token"\nca_file = "{ports["ca"]}"')
            wished, address = 42, {"registration_token": ANDROID_TOKEN}
        config = tmp / "push.toml"
        config.write_text(f'[[connectors]]\nname = "devpush"\nchannel = "push"\n{table}\n'
                          f"concurrency = {concurrency}\n", encoding="utf-8")
        queue_channel_events(db, n, wished, address)
        server = cpu_seconds(sink.pid)
        rate, wall, cpu = run_worker(db, database_url, config, n)
        server = cpu_seconds(sink.pid) - server
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(30)
    plain = measured["plain"]
    return {"worker": rate, "wall": wall, "plain": plain, "ratio": rate / plain,
            "worker_cpu_us": cpu, "plain_cpu_us": measured["plain_cpu_us"],
            "server_cpu_us": server / n * 1e6,
            "plain_server_cpu_us": measured["plain_server_cpu_us"],
            "plain_client": f"httpx HTTP/2, {concurrency} in flight"}


def main_channel(args: Any, fresh_db: Any) -> None:
    """``deliver.py --channel sms|push``: the worker's rate and the plain client's."""
    tmp = Path(tempfile.mkdtemp(prefix=f"mc-bench-{args.channel}-"))
    settings, db = fresh_db(args.database, tmp)
    if args.channel == "sms":
        r = bench_sms(db, settings.database_url, args.events, args.window, tmp)
        what = "smpp → devsmsc (files, a receipt each)"
    else:
        r = bench_push(db, settings.database_url, args.events, args.concurrency,
                       args.platform, tmp)
        what = f"{'apns' if args.platform == 'ios' else 'fcm'} → devpush (HTTP/2 + TLS)"
    print(f"{args.channel}: {what}; database: {settings.database_url.split(':')[0]}; "
          f"events: {args.events}")
    print(f"plain client ({r['plain_client']}) : {r['plain']:8.0f} msg/s")
    print(f"msgcenter worker x1 : {r['worker']:8.0f} msg/s sustained ({r['wall']:.0f} msg/s "
          f"incl. start-up)  ratio {r['ratio']:.2f}  (target >= {TARGET:.0f})")
    if r.get("worker_cpu_us"):
        plain_cpu = f", plain client {r['plain_cpu_us']:.0f}" if "plain_cpu_us" in r else ""
        print(f"CPU per message (µs): worker {r['worker_cpu_us']:.0f} (render, send, record, "
              f"start-up included){plain_cpu}")
    if "server_cpu_us" in r:
        print(f"server CPU per message (µs): during the worker's run {r['server_cpu_us']:.0f}"
              f", during the plain client's {r['plain_server_cpu_us']:.0f}")
    if "receipts_recorded" in r:
        print(f"receipts recorded   : {r['receipts_recorded']} of {args.events}")
