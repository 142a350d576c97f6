"""Delivery benchmark: sustained dispatch rate vs plain aiosmtplib, and real-time latency.

``--channel sms|push`` measures the worker on those channels instead (one worker,
pre-inserted events, render + send + record, to devsmsc / devpush, beside a plain
smpplib / httpx client): see ``bench/deliver_channels.py``.  What follows is email.

Measures, in one run:
  * **ceiling** — plain aiosmtplib (through our channel's pool, same concurrency) sending
    the same rendered messages to the same SMTP sink, which runs in another process;
  * **worker** — ``msgcenter worker`` (a separate process) draining N queued events to
    that sink: rate over the span of the delivery log (first to last attempt);
  * **latency** — ``msgcenter serve`` (gunicorn + worker) with a batch backlog queued;
    real-time ``PushEvent`` calls at a fixed rate; latency from the HTTP ack to the
    sink's acceptance of the message (the sink records arrival times), p50 / p99.

The sink is Postfix's ``smtp-sink`` when installed (throughput part), else an aiosmtpd
sink in a child process (``--sink aiosmtpd``); the latency part always uses an aiosmtpd
child that records when each message arrived.

Usage: ``python bench/deliver.py [--quick] [--events 20000] [--backlog 100000]
[--rate 100] [--duration 30] [--database URL]``.  A script, not a test: numbers vary
±30 % with what else runs on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from soap_service import demo  # noqa: E402
from soap_service.channels.direct import send_messages  # noqa: E402
from soap_service.config import Settings, load_settings  # noqa: E402
from soap_service.models import EmailMessage  # noqa: E402
from soap_service.store import Database, make_engine, schema  # noqa: E402
from soap_service.store.events import insert_events  # noqa: E402
from soap_service.tables import delivery_log, events  # noqa: E402

TARGETS = {"rate": 400.0, "ratio": 0.6, "p50_ms": 50.0, "p99_ms": 250.0}
CTX = ("<ctx><client><firstname>John{n}</firstname><lastname>Doe</lastname></client>"
       '<order id="A-{n}"/><orderdetails><article num="1"><name>USB key</name><price>20</price>'
       "</article><article num=\"2\"><name>Cable</name><price>9.5</price></article>"
       "</orderdetails></ctx>")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; 0 once it is
    gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- sinks


def sink_child_main(port: int, log_path: str) -> None:
    """Child process: aiosmtpd sink writing ``<unix time> <event id>`` per message."""
    from aiosmtpd.controller import Controller

    out = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.time()
            data = envelope.content
            start = data.find(b"X-MC-Event-Id: ")
            ev = data[start + 15:data.find(b"\r\n", start)].decode() if start >= 0 else "-"
            out.write(f"{now:.6f} {ev}\n")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    threading.Event().wait()


def start_sink(kind: str, tmp: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log_path = tmp / f"sink-{port}.log"
    if kind == "smtp-sink":
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        proc = subprocess.Popen([exe, *(["-u", "nobody"] if os.getuid() == 0 else []),
                                 f"127.0.0.1:{port}", "1024"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen([sys.executable, __file__, "--sink-child", str(port),
                                 str(log_path)])
    _wait_port(port)
    return proc, port, log_path


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"sink on port {port} did not start")


# ---------------------------------------------------------------- database


_CREATED: list[tuple[str, str]] = []  # (server URL, database) to drop at exit
_OPEN: list[Database] = []


def drop_created() -> None:
    from sqlalchemy import create_engine, text

    for db in _OPEN:
        db.dispose()
    for url, name in _CREATED:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def fresh_db(url: str | None, tmp: Path) -> tuple[Settings, Database]:
    if url and url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        name = f"mc_deliver_bench_{os.getpid()}_{len(_CREATED)}"
        _CREATED.append((url, name))
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = url.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tmp}/bench.db"
    settings = load_settings({"MC_DATABASE_URL": url, "MC_SQLITE_SYNCHRONOUS": "normal"})
    db = Database(make_engine(settings), settings)
    _OPEN.append(db)
    schema.upgrade(db)
    demo.ensure_access(db)
    demo.ensure_catalog(db)
    return settings, db


def queue_events(db: Database, n: int, queue: str, start: int = 0) -> None:
    from soap_service import clock

    now = clock.utcnow()
    rank = 0 if queue == "rt" else 10
    for first in range(start, start + n, 1000):
        rows = [{"queue": queue, "event_type": "order_confirmation", "priority": rank + 1,
                 "email": f"user{i}@example.com", "ctx_xml": CTX.format(n=i),
                 "process_at": now, "created_at": now, "updated_at": now}
                for i in range(first, min(first + 1000, start + n))]
        insert_events(db, rows)


def count_status(db: Database, status: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)
                                .where(events.c.status == status)).scalar_one())


# ---------------------------------------------------------------- throughput


def ceiling(settings: Settings, n: int) -> float:
    """Plain aiosmtplib (our pooled channel, nothing else) sending n rendered messages."""
    from soap_service import render
    from soap_service.models import Event, Queue

    version = demo_version(settings)
    msgs = []
    for i in range(n):
        ev = Event(id=i + 1, queue=Queue.RT, event_type="order_confirmation",
                   ctx_xml=CTX.format(n=i), email=f"user{i}@example.com")
        r = render.render_message(version, ev)
        msgs.append(EmailMessage(from_addr=r.from_addr, to=ev.email or "", subject=r.subject,
                                 message_id=f"<bench.{i}@x>", html=r.html, text=r.text))
    started = time.perf_counter()
    results = send_messages(settings, msgs)
    elapsed = time.perf_counter() - started
    assert all(r.outcome.value == "sent" for r in results), results[:3]
    return n / elapsed


def demo_version(settings: Settings) -> Any:
    from soap_service import catalog
    from soap_service.store import connect

    return catalog.get_version(connect(settings), demo.demo_spec()["template"]).version


def worker_rate(settings: Settings, db: Database, n: int, sink_port: int,
                workers: int = 1) -> tuple[float, float]:
    """Queue n events, run ``msgcenter worker`` processes, rate over the delivery log."""
    queue_events(db, n, "rt")
    env = {**os.environ, "MC_DATABASE_URL": settings.database_url,
           "MC_SQLITE_SYNCHRONOUS": "normal", "MC_SMTP_PORT": str(sink_port)}
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "soap_service.cli", "worker"], env=env,
                              cwd=str(ROOT), stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        while count_status(db, "processed") < n:
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a worker exited early")
            time.sleep(0.2)
        wall = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    with db.connect() as conn:
        first, last = conn.execute(select(func.min(delivery_log.c.created_at),
                                          func.max(delivery_log.c.created_at))).one()
    span = max((last - first).total_seconds(), 1e-3)
    return n / span, n / wall


# ---------------------------------------------------------------- latency


def envelope(n: int) -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{demo.OPERATOR[0]}/{demo.OPERATOR[1]}</urn:sessiontoken>"
        f'<urn:domEvent><rtEvent type="order_confirmation" email="rt{n}@example.com">'
        f"{CTX.format(n=n)}</rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def push_at_rate(port: int, rate: float, duration: float,
                 latencies: list[float] | None = None, connections: int = 16
                 ) -> dict[int, float]:
    """Open-loop PushEvent calls; returns {primary key: ack time}.  ``latencies`` gets each
    call's ack latency in ms, counted from its scheduled send time (no omission).

    Call ``i`` goes out on connection ``i % connections`` at its scheduled time, or as
    soon as that connection's previous answer is in: with enough connections one slow
    answer does not hold back the calls behind it (real callers do not wait for each
    other), and a call that had to wait still counts its wait."""
    from soap_service.models import split_plid

    acks: dict[int, float] = {}
    lock = threading.Lock()
    total = int(rate * duration)
    t0 = time.time() + 0.5

    def client(offset: int, step: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(offset, total, step):
            scheduled = t0 + i / rate
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            conn.request("POST", "/nl/jsp/soaprouter.jsp", body=envelope(i), headers={
                "Content-Type": "text/xml", "SOAPAction": "nms:rtEvent#PushEvent"})
            body = conn.getresponse().read()
            acked = time.time()
            start = body.find(b">", body.find(b"<plId")) + 1
            plid = int(body[start:body.find(b"<", start)])
            with lock:
                acks[split_plid(plid)[1]] = acked
                if latencies is not None:
                    latencies.append((acked - scheduled) * 1000)

    threads = [threading.Thread(target=client, args=(k, connections))
               for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acks


def latency(settings: Settings, db: Database, backlog: int, rate: float, duration: float,
            tmp: Path) -> dict[str, float]:
    queue_events(db, backlog, "batch")
    sink, sink_port, sink_log = start_sink("aiosmtpd", tmp)
    http_port = free_port()
    env = {**os.environ, "MC_DATABASE_URL": settings.database_url,
           "MC_SQLITE_SYNCHRONOUS": "normal", "MC_SMTP_PORT": str(sink_port),
           "MC_PUBLIC_URL": f"http://127.0.0.1:{http_port}"}
    serve = subprocess.Popen([sys.executable, "-m", "soap_service.cli", "serve", "--port",
                              str(http_port)], env=env, cwd=str(ROOT),
                             stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        _wait_port(http_port, 60)
        while count_status(db, "processed") < min(500, backlog // 2):
            time.sleep(0.2)  # the backlog is draining
        acks = push_at_rate(http_port, rate, duration)
        deadline = time.time() + 120
        arrived: dict[int, float] = {}
        while time.time() < deadline and len(arrived) < len(acks):
            time.sleep(0.5)
            arrived = {}
            for line in sink_log.read_text().splitlines():
                at, ev = line.split(" ", 1)
                if ev.isdigit() and int(ev) in acks:
                    arrived[int(ev)] = float(at)
        left = backlog - count_status(db, "processed") + len(acks)
    finally:
        for proc in (serve, sink):
            proc.terminate()
            proc.wait(30)
    lat = sorted((arrived[k] - acks[k]) * 1000 for k in arrived)
    return {"sent": len(lat), "pushed": len(acks), "backlog_left": left,
            "p50_ms": statistics.median(lat) if lat else float("nan"),
            "p99_ms": lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")}


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--backlog", type=int, default=100000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--database", default=None, help="PostgreSQL URL (default: SQLite)")
    p.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes for the throughput part (PostgreSQL for > 1)")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--channel", choices=["email", "sms", "push"], default="email")
    p.add_argument("--window", type=int, default=64, help="sms: SMPP window (64)")
    p.add_argument("--concurrency", type=int, default=100,
                   help="push: streams in flight (100)")
    p.add_argument("--platform", choices=["ios", "android"], default="ios",
                   help="push: APNs (ios) or FCM (android)")
    args = p.parse_args()
    if args.quick:
        args.events, args.backlog, args.duration = 2000, 5000, 5.0
    if args.channel != "email":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from deliver_channels import main_channel

        return main_channel(args, fresh_db)
    kind = args.sink or ("smtp-sink" if shutil.which("smtp-sink")
                         or Path("/usr/sbin/smtp-sink").exists() else "aiosmtpd")
    tmp = Path(tempfile.mkdtemp(prefix="mc-bench-"))
    settings, db = fresh_db(args.database, tmp)
    sink, port, _ = start_sink(kind, tmp)
    try:
        s = settings.replace(smtp_port=port)
        top = ceiling(s, args.events)
        sustained, wall = worker_rate(s, db, args.events, port, args.workers)
    finally:
        sink.terminate()
        sink.wait(10)
    print(f"sink: {kind}; database: {settings.database_url.split(':')[0]}; "
          f"events: {args.events}")
    print(f"plain aiosmtplib ceiling : {top:8.0f} msg/s")
    print(f"msgcenter worker x{args.workers}      : {sustained:8.0f} msg/s sustained "
          f"({wall:.0f} msg/s incl. start-up)  ratio {sustained / top:.2f}  "
          f"(targets >= {TARGETS['rate']:.0f}, >= {TARGETS['ratio']})")
    if not args.skip_latency:
        settings2, db2 = fresh_db(args.database, tmp / "lat")
        r = latency(settings2, db2, args.backlog, args.rate, args.duration, tmp)
        print(f"real-time latency        : p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms "
              f"({r['sent']}/{r['pushed']} at {args.rate:.0f}/s, backlog {args.backlog}, "
              f"{r['backlog_left']} left)  (targets p50 <= {TARGETS['p50_ms']:.0f}, "
              f"p99 <= {TARGETS['p99_ms']:.0f})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--sink-child":
        sink_child_main(int(sys.argv[2]), sys.argv[3])
    else:
        try:
            main()
        finally:
            drop_created()
