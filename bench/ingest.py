"""Ingest benchmark: SOAP and REST throughput and ack latency against ``msgcenter serve``.

Measures, in one run and side by side:
  * a trivial Spyne PushEvent service (no database) — the ceiling;
  * ``msgcenter serve`` on SQLite (WAL, synchronous=FULL unless --sqlite-sync) and PostgreSQL.
For each: sustained PushEvent req/s (closed loop, ``wrk`` when installed, else a Python client),
PushEvents with 100 events per call (events/s), the same event as JSON through
``POST /api/v1/events`` one at a time and 100 per batch (events/s) -- SOAP and JSON
alternating, two rounds of half the duration, the better one kept -- and ack latency p50 /
p99 of PushEvent at a fixed open-loop rate (default 500 events/s, latency counted from the
scheduled send time).

Usage: ``python bench/ingest.py [--duration 10] [--workers 2] [--rate 500] [--quick]``

A/B: ``--compare DIR`` also runs ``msgcenter serve`` from another source tree (e.g. an
earlier commit: ``git archive COMMIT | tar -x -C DIR``), alternating the two ``--rounds``
times per database so that both see the same noise on a shared machine; every round's
rows are printed, labelled ``[A]`` (DIR) and ``[B]`` (this tree).  ``--a-env`` /
``--b-env NAME=VALUE`` set the environment of one side only (without ``--compare`` both
sides run this tree: e.g. ``--a-env MC_HTTP_THREADS=1 --b-env MC_HTTP_THREADS=4``).
This is a script, not a test: numbers vary ±30 % with what else runs on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("MC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKEN = "bench/bench-password"  # noqa: S105 - the throw-away bench operator
TARGETS = {"PushEvent": 1000.0, "PushEvents": 5000.0, "p99_ms": 25.0, "ratio": 0.6}

EVENT = (
    '<rtEvent type="order_confirmation" email="john.doe@example.com" origin="bench" '
    'wishedChannel="0" externalId="{n}"><ctx><client><firstname>John</firstname>'
    "<lastname>Doe</lastname></client><orderdetails><article num=\"1\"><name>USB key</name>"
    "<price>20</price></article></orderdetails></ctx></rtEvent>"
)


JSON_EVENT = {"type": "order_confirmation", "email": "john.doe@example.com", "origin": "bench",
              "wishedChannel": 0, "ctx": {
                  "client": {"firstname": "John", "lastname": "Doe"},
                  "orderdetails": {"article": {"@num": "1", "name": "USB key", "price": 20}}}}


def json_body(events: int) -> bytes:
    """The SOAP benchmark's event as JSON: one event, or a batch of ``events``."""
    if events == 1:
        return json.dumps({**JSON_EVENT, "externalId": "0"}).encode()
    return json.dumps({"events": [{**JSON_EVENT, "externalId": str(i)}
                                  for i in range(events)]}).encode()


def envelope(method: str, events: int) -> bytes:
    body = "".join(EVENT.format(n=i) for i in range(events))
    param = "domEvent" if method == "PushEvent" else "domEventCollection"
    if method == "PushEvents":
        body = f"<Events>{body}</Events>"
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Header/><soapenv:Body>'
        f"<urn:{method}><urn:sessiontoken>{TOKEN}</urn:sessiontoken>"
        f"<urn:{param}>{body}</urn:{param}></urn:{method}></soapenv:Body></soapenv:Envelope>"
    ).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} not ready")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    path: str = "/nl/jsp/soaprouter.jsp"
    api_key: str = ""  # empty: no JSON API (the trivial Spyne service)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def msgcenter(env: dict[str, str], *args: str, tree: Path = ROOT) -> str:
    return subprocess.run([sys.executable, "-m", "soap_service.cli", *args], env=env,
                          check=True, cwd=tree, stdout=subprocess.PIPE, text=True).stdout


def start_msgcenter(name: str, url: str, workers: int, tree: Path = ROOT,
                    extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {**os.environ, "MC_DATABASE_URL": url, "MC_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "PYTHONPATH": str(tree), **(extra_env or {})}  # the tree's soap_service first
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    msgcenter(env, "init", tree=tree)
    msgcenter(env, "operator", "add", "bench", "--password", "bench-password", "--right", "mc",
              tree=tree)
    msgcenter(env, "zone", "add", "loopback", "127.0.0.0/8", "--allow-user-password", tree=tree)
    key = ""  # a tree from before the JSON API (--compare) is measured on SOAP only
    if (tree / "soap_service" / "http" / "ingest_api.py").is_file():
        key = json.loads(msgcenter(env, "--json", "apikey", "create", "bench", tree=tree))["key"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "soap_service.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--no-worker"],
        env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return Server(name, port, proc, api_key=key)


def start_trivial(workers: int) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--no-control-socket", "--log-level", "warning", "bench.trivial_spyne:application"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = Server("trivial Spyne", port, proc, path="/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    raise SystemExit("trivial Spyne server not ready")


# ----------------------------------------------------------------- load generation


@dataclass(frozen=True)
class Load:
    """One kind of request: where, what, with which headers, and the success status."""

    path: str
    body: bytes
    headers: dict[str, str]
    ok: int


def soap_load(server: Server, method: str, events: int) -> Load:
    return Load(server.path, envelope(method, events),
                {"Content-Type": "text/xml; charset=utf-8",
                 "SOAPAction": f'"nms:rtEvent#{method}"'}, 200)


def rest_load(server: Server, events: int) -> Load:
    return Load("/api/v1/events", json_body(events),
                {"Content-Type": "application/json",
                 "Authorization": f"Bearer {server.api_key}"}, 201)


def post(conn: http.client.HTTPConnection, load: Load) -> int:
    conn.request("POST", load.path, load.body, load.headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def closed_loop_wrk(server: Server, load: Load, seconds: int, conns: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp, "body")
        body_file.write_bytes(load.body)
        script = Path(tmp, "post.lua")
        headers = "".join(f"wrk.headers['{k}'] = '{v}'\n" for k, v in load.headers.items())
        script.write_text(
            'local f = io.open("' + str(body_file) + '", "rb")\n'
            "wrk.method = 'POST'\nwrk.body = f:read('*all')\nf:close()\n"
            + headers +
            "done = function(summary, latency, requests)\n"
            "  io.write(string.format('REQS %d ERRS %d\\n', summary.requests,\n"
            "    summary.errors.status + summary.errors.connect + summary.errors.read\n"
            "    + summary.errors.write + summary.errors.timeout))\nend\n"
        )
        out = subprocess.run(
            ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", str(script),
             f"http://127.0.0.1:{server.port}{load.path}"],
            capture_output=True, text=True, check=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("REQS"))
    _, reqs, _, errs = line.split()
    if int(errs):
        print(f"  ! {server.name} {load.path}: {errs} errors (status >= 400 or socket) "
              f"of {reqs}")
    return (int(reqs) - int(errs)) / seconds


def closed_loop_python(server: Server, load: Load, seconds: int, conns: int) -> float:
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        n = 0
        while time.monotonic() < stop:
            if post(conn, load) == load.ok:
                n += 1
        with lock:
            done[0] += n

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / seconds


def throughput(server: Server, load: Load, events: int, seconds: int, conns: int) -> float:
    loop = closed_loop_wrk if shutil.which("wrk") else closed_loop_python
    return loop(server, load, seconds, conns) * events


def open_loop_latency(server: Server, rate: float, seconds: int) -> tuple[float, float, int]:
    """PushEvent at a fixed rate; latency from each request's scheduled time (no omission)."""
    load = soap_load(server, "PushEvent", 1)
    threads_n = 8
    interval = threads_n / rate
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        mine: list[float] = []
        k = 0
        while True:
            scheduled = start + (i / rate) + k * interval
            if scheduled > start + seconds:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            status = post(conn, load)
            mine.append(time.perf_counter() - scheduled)
            if status != 200:
                errors[0] += 1
            k += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return p50, p99, errors[0]


@dataclass
class Row:
    name: str
    results: dict[str, float] = field(default_factory=dict)


def measure(server: Server, args: argparse.Namespace) -> Row:
    row = Row(server.name)
    print(f"-- {server.name}", flush=True)
    conns, batch_conns = args.connections, max(2, args.connections // 2)
    throughput(server, soap_load(server, "PushEvent", 1), 1, 2, conns)  # warm-up
    # SOAP and JSON alternate, twice, half the duration each, and the better round counts:
    # other work on a shared machine drifts over minutes, and must not decide which of
    # the two looks faster
    half = max(1, args.duration // 2)
    pairs = [("PushEvent", soap_load(server, "PushEvent", 1), 1, conns),
             ("PushEvents", soap_load(server, "PushEvents", 100), 100, batch_conns)]
    if server.api_key:
        pairs = [pairs[0], ("REST", rest_load(server, 1), 1, conns),
                 pairs[1], ("REST batch", rest_load(server, 100), 100, batch_conns)]
    for _ in range(2):
        for name, load, events, n in pairs:
            got = throughput(server, load, events, half, n)
            row.results[name] = max(row.results.get(name, 0.0), got)
    p50, p99, errors = open_loop_latency(server, args.rate, args.duration)
    row.results["p50_ms"], row.results["p99_ms"] = p50, p99
    if errors:
        print(f"  ! {errors} failed requests in the latency run")
    return row


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    ceiling = rows[0].results if not args.no_ceiling else {"PushEvent": 0.0}
    print()
    print(f"Ingest, {args.workers} server processes, {args.connections} connections, "
          f"{args.duration}s per measurement, latency at {args.rate:.0f} events/s "
          f"({'wrk' if shutil.which('wrk') else 'python client'})")
    print()
    print("| service | PushEvent events/s | PushEvents (100/call) events/s "
          "| REST one events/s | REST batch (100) events/s "
          "| ack p50 ms | ack p99 ms | x ceiling (PushEvent) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        r = row.results
        ratio = r["PushEvent"] / ceiling["PushEvent"] if ceiling["PushEvent"] else 0.0
        rest = (f"{r['REST']:,.0f} | {r['REST batch']:,.0f}" if "REST" in r else "- | -")
        print(f"| {row.name} | {r['PushEvent']:,.0f} | {r['PushEvents']:,.0f} | {rest} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio:.2f} |")
    print()
    print(f"Targets: PushEvent ≥ {TARGETS['PushEvent']:,.0f}/s, PushEvents ≥ "
          f"{TARGETS['PushEvents']:,.0f}/s, p99 ≤ {TARGETS['p99_ms']:.0f} ms at 500/s, "
          f"≥ {TARGETS['ratio']}x the trivial Spyne service.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--sqlite-sync", default="full", help="MC_SQLITE_SYNCHRONOUS")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument("--compare", type=Path, help="A/B: also serve from this source tree")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds per database")
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the [A] servers only (repeatable)")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the [B] servers only (repeatable)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the trivial Spyne run")
    args = parser.parse_args()
    if args.quick:
        args.duration = 3
    os.environ["MC_SQLITE_SYNCHRONOUS"] = args.sqlite_sync
    rows: list[Row] = []
    servers: list[Callable[[], Server]] = []
    if not args.no_ceiling:
        servers.append(lambda: start_trivial(args.workers))
    tmp = tempfile.mkdtemp(prefix="mc-bench-")
    databases = []
    if "sqlite" in args.databases:
        databases.append((f"SQLite ({args.sqlite_sync})", f"sqlite:///{tmp}/bench-{{n}}.db"))
    if "postgres" in args.databases:
        databases.append(("PostgreSQL", PG_URL))
    a_env = dict(kv.split("=", 1) for kv in args.a_env)
    b_env = dict(kv.split("=", 1) for kv in args.b_env)
    ab = args.compare is not None or bool(a_env or b_env)
    trees = [("", ROOT, {})] if not ab else [
        ("[A] ", (args.compare or ROOT).resolve(), a_env), ("[B] ", ROOT, b_env)]
    for label, url in databases:
        for _ in range(args.rounds if ab else 1):
            for tag, tree, extra in trees:
                fresh = url.replace("{n}", str(len(servers)))  # a new SQLite file each run
                servers.append(lambda label=label, url=fresh, tag=tag, tree=tree, extra=extra:
                               start_msgcenter(f"{tag}msgcenter {label}", url, args.workers,
                                               tree, extra))
    try:
        for start in servers:
            server = start()
            try:
                rows.append(measure(server, args))
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows, args)


if __name__ == "__main__":
    main()
