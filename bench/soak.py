"""Soak: ``msgcenter serve`` (worker on) under steady load for N minutes; errors and the
memory of every process over time.

Sets up a throw-away database (SQLite file, or a new PostgreSQL database with
``--database postgresql+psycopg://...``) with the demo event type and its published
template, a local SMTP sink (Postfix's ``smtp-sink`` when installed, else aiosmtpd), and
``msgcenter serve --workers W`` with its dispatch worker.  Then:

1. capacity: closed-loop ``PushEvent`` from 8 connections for ``--probe`` seconds, worker
   sending meanwhile (skipped with ``--rate``);
2. soak: open-loop ``PushEvent`` at half that rate for ``--minutes``, one sample line every
   ``--sample`` seconds: pushes answered, errors, ack p99, events waiting, events sent,
   and the RSS (MiB) of the supervisor, the gunicorn master, each HTTP process and the
   dispatch worker;
3. drain: wait for the queue to empty, stop the server with SIGTERM, and print a summary
   (RSS first sample -> last, errors, every pushed event sent) as a Markdown table.

Usage: ``python bench/soak.py [--minutes 10] [--workers 2] [--rate N] [--database URL]``
A script, not a test: it runs for minutes and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import deliver  # bench/deliver.py: sink and database set-up
from ingest import envelope, free_port, wait_ready  # bench/ingest.py
from sqlalchemy import func, select

from soap_service.tables import events

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "demo/demo"  # noqa: S105 - the demo operator of the throw-away database
BODY = envelope("PushEvent", 1).replace(b"bench/bench-password", TOKEN.encode())


# ---------------------------------------------------------------- processes


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree(root: int) -> dict[int, str]:
    """``{pid: role}`` for ``msgcenter serve`` and every process under it."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        commands[int(entry.name)] = cmd
    roles = {root: "supervisor"}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in roles and pid not in roles:
                cmd = commands[pid]
                parent = roles[ppid]
                if " worker" in cmd and "soap_service.cli" in cmd:
                    roles[pid] = "dispatch"
                elif parent == "supervisor":
                    roles[pid] = "gunicorn"
                else:
                    roles[pid] = "http"
                changed = True
    return roles


def labelled(roles: dict[int, str]) -> dict[str, int]:
    """Stable labels: supervisor, gunicorn, http1, http2..., dispatch."""
    out: dict[str, int] = {}
    n = 0
    for pid, role in sorted(roles.items()):
        if role == "http":
            n += 1
            out[f"http{n}"] = pid
        else:
            out[role] = pid
    return out


# ---------------------------------------------------------------- load


@dataclass
class Window:
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[int, int, list[float]]:
        with self.lock:
            out = (self.ok, self.errors, self.latencies)
            self.ok, self.errors, self.latencies = 0, 0, []
        return out


def push(conn: http.client.HTTPConnection) -> bool:
    conn.request("POST", "/nl/jsp/soaprouter.jsp", BODY,
                 {"Content-Type": "text/xml; charset=utf-8",
                  "SOAPAction": '"nms:rtEvent#PushEvent"'})
    resp = conn.getresponse()
    resp.read()
    return resp.status == 200


def closed_loop(port: int, seconds: float, conns: int = 8) -> float:
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.monotonic() < stop:
            n += push(conn)
        with lock:
            done[0] += n

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / seconds


def open_loop(port: int, rate: float, until: float, window: Window, threads_n: int = 8
              ) -> list[threading.Thread]:
    """Pushes at ``rate``/s until ``until``; latency counted from the scheduled time."""
    start = time.perf_counter() + 0.1
    interval = threads_n / rate

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        k = 0
        while True:
            scheduled = start + i / rate + k * interval
            if time.monotonic() >= until:
                return
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                ok = push(conn)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with window.lock:
                if ok:
                    window.ok += 1
                    window.latencies.append(time.perf_counter() - scheduled)
                else:
                    window.errors += 1
            k += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads_n)]
    for t in threads:
        t.start()
    return threads


def counts(db: deliver.Database) -> tuple[int, int]:
    """(events waiting or in progress, events sent)."""
    with db.connect() as conn:
        rows = dict(conn.execute(select(events.c.status, func.count())
                                 .group_by(events.c.status)).all())
    waiting = sum(n for s, n in rows.items() if s in ("pending", "processing"))
    return int(waiting), int(rows.get("processed", 0))


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="HTTP processes")
    parser.add_argument("--rate", type=float, help="events/s (default: half the capacity)")
    parser.add_argument("--probe", type=float, default=20.0, help="capacity probe seconds")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds per sample line")
    parser.add_argument("--database", help="postgresql+psycopg://... (default: SQLite)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mc-soak-"))
    kind = "smtp-sink" if shutil.which("smtp-sink") or Path("/usr/sbin/smtp-sink").exists() \
        else "aiosmtpd"
    sink, sink_port, _ = deliver.start_sink(kind, tmp)
    settings, db = deliver.fresh_db(args.database, tmp)
    port = free_port()
    env = {**os.environ, "MC_DATABASE_URL": settings.database_url,
           "MC_SQLITE_SYNCHRONOUS": settings.sqlite_synchronous,
           "MC_PUBLIC_URL": f"http://127.0.0.1:{port}", "MC_SMTP_HOST": "127.0.0.1",
           "MC_SMTP_PORT": str(sink_port), "MC_SECRET": "soak-secret"}
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "soap_service.cli", "serve", "--port", str(port),
             "--workers", str(args.workers), "--log-level", "warning"],
            env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        run_soak(args, port, server, db, kind)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = -9
        print(f"\nserve stopped with exit code {code}")
        sink.terminate()
        sink.wait()
        deliver.drop_created()
        shutil.rmtree(tmp, ignore_errors=True)


def run_soak(args: argparse.Namespace, port: int, server: subprocess.Popen,
             db: deliver.Database, sink_kind: str) -> None:
    closed_loop(port, 3)  # warm-up
    if args.rate:
        rate = args.rate
        print(f"rate {rate:.0f} events/s (given)")
    else:
        capacity = closed_loop(port, args.probe)
        rate = capacity / 2
        print(f"capacity {capacity:,.0f} PushEvent/s with the worker sending; soak at "
              f"{rate:,.0f}/s")
    deadline = time.monotonic() + 120
    while counts(db)[0] and time.monotonic() < deadline:  # let the probe's backlog drain
        time.sleep(1)
    procs = labelled(tree(server.pid))
    names = list(procs)
    print(f"processes: {', '.join(f'{n}={pid}' for n, pid in procs.items())}; sink "
          f"{sink_kind}")
    print("\n| min | pushed/s | errors | ack p99 ms | waiting | sent | "
          + " | ".join(f"{n} MiB" for n in names) + " |")
    print("|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names))
    window = Window()
    started = time.monotonic()
    until = started + args.minutes * 60
    threads = open_loop(port, rate, until, window)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    total_ok = total_errors = 0
    while time.monotonic() < until:
        time.sleep(min(args.sample, max(0.0, until - time.monotonic())))
        ok, errors, lat = window.take()
        total_ok, total_errors = total_ok + ok, total_errors + errors
        waiting, sent = counts(db)
        rss = {n: rss_mib(pid) for n, pid in procs.items()}
        first = first or rss
        last = rss
        p99 = statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) > 100 else 0.0
        print(f"| {(time.monotonic() - started) / 60:.1f} | {ok / args.sample:,.0f} | {errors} "
              f"| {p99:.1f} | {waiting:,} | {sent:,} | "
              + " | ".join(f"{rss[n]:.0f}" for n in names) + " |", flush=True)
    for t in threads:
        t.join(timeout=35)
    total_ok, total_errors = total_ok + window.ok, total_errors + window.errors
    deadline = time.monotonic() + 300
    while counts(db)[0] and time.monotonic() < deadline:
        time.sleep(1)
    waiting, sent = counts(db)
    with db.connect() as conn:
        failed = int(conn.execute(select(func.count()).select_from(events)
                                  .where(events.c.status.notin_(("processed",)))).scalar_one())
    print(f"\nSoak: {args.minutes:g} min at {rate:,.0f} events/s, {args.workers} HTTP "
          f"processes + 1 dispatch worker: {total_ok:,} pushes acknowledged, {total_errors} "
          f"errors; after the drain {sent:,} sent in all (warm-up and probe included), "
          f"{waiting} waiting, {failed} not processed.")
    print("RSS first sample -> last: " + ", ".join(
        f"{n} {first.get(n, 0):.0f} -> {last.get(n, 0):.0f} MiB" for n in names))


if __name__ == "__main__":
    main()
