"""End-to-end benchmark: ``msgcenter serve`` on its defaults, worker on, pushed to sent.

For each database (SQLite with its default ``synchronous=FULL``, and PostgreSQL), in one
run and against one postfix ``smtp-sink`` relay, with the demo's published email
template (``order_confirmation``: every event is rendered, instrumented and sent):

1. **ingest only** -- ``serve --no-worker``; ``wrk`` pushes ``PushEvent`` (real-time,
   closed loop, ``--connections``) for ``--duration`` seconds: events acked per second,
   ack p50 / p99 (wrk's, closed loop);
2. **end to end** -- ``serve`` (worker on, every default); the same load; then the bench
   waits until no event is ``pending`` / ``processing``.  *Pushed-to-sent* is the number
   of events over the span from the first event's ``created_at`` to the last
   delivery-log row (counted from the database), with the acks seen meanwhile;
3. **real-time latency** -- another ``serve`` (worker on, fresh database) relaying to an
   aiosmtpd sink that logs each message's arrival: ``PushEvent`` at a fixed open-loop
   ``--rate`` for ``--duration`` seconds, spread over 16 connections so that one slow
   answer does not hold back the calls behind it; ack p50 / p99 (from each call's scheduled
   time) and ack -> SMTP p50 / p99 (from the client's ack to the sink's arrival);
4. the CPU each role of the box spent per event sent during (2), from ``/proc``: serve's
   HTTP processes, its worker, PostgreSQL's backends, the relay and ``wrk`` -- on two
   cores, 2,000 ms of CPU per second is all there is, so this says what a rate costs
   and which part to make cheaper;
5. with ``--profile`` (``py-spy`` installed), a second end-to-end run sampled by
   ``py-spy --idle`` in every process of the server: the wall time per event spent in
   each stage (SOAP edge, auth, insert, commit, write-lock wait, claim, render, SMTP,
   record), summed over threads -- *where the time goes*, not a measured rate (the
   sampler itself costs CPU, so that run's rates are not reported).

Usage: ``python bench/e2e.py [--duration 10] [--rate 300] [--databases sqlite,postgres]
[--profile] [--quick]``.  A/B: ``--compare DIR`` also serves from another source tree
(``git archive COMMIT | tar -x -C DIR``), the two alternating ``--rounds`` times per
database so that both see the same noise; rows are labelled ``[A]`` (DIR) and ``[B]``;
``--a-env`` / ``--b-env NAME=VALUE`` set one side's environment (without ``--compare``
both sides serve this tree: ``--a-env MC_HTTP_WORKERS=1 --b-env MC_HTTP_WORKERS=2``).
A script, not a test: on a shared 2-core machine numbers vary ±30 % and more; compare
rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import deliver  # noqa: E402 - the sinks, fresh databases, envelopes, open-loop pushes
import ingest  # noqa: E402 - servers, wrk
from sqlalchemy import func, select  # noqa: E402

from soap_service.store import Database  # noqa: E402
from soap_service.tables import delivery_log, events  # noqa: E402

ROOT = BENCH.parent
GOALS = {"rate": 1000.0, "ratio": 0.5, "ack_p99_ms": 50.0, "send_p99_ms": 250.0}
# issue 13's "before" (worker on, measured the same way on this machine, November 2026)
BASELINE = {"SQLite": "ingest ~900-1,300 ev/s; e2e ~280 ev/s (acks p99 180-260 ms); 0.21x",
            "PostgreSQL": "ingest ~1,250-1,480 ev/s; e2e ~740 ev/s; 0.50x"}


# ---------------------------------------------------------------- servers


@dataclass(frozen=True)
class Side:
    """What one side of an A/B serves: a source tree and extra environment."""

    tree: Path = ROOT
    env: tuple[tuple[str, str], ...] = ()


def start_serve(url: str, sink_port: int, *, worker: bool, label: str,
                side: Side = Side()) -> ingest.Server:
    """``msgcenter serve`` on its defaults (HTTP workers, threads, batch sizes, the log
    level: one ``http.request`` line per call, here to /dev/null): only the database, the
    relay's port and the public URL are set."""
    port = ingest.free_port()
    env = {**os.environ, "MC_DATABASE_URL": url, "MC_SMTP_PORT": str(sink_port),
           "MC_PUBLIC_URL": f"http://127.0.0.1:{port}", "PYTHONPATH": str(side.tree),
           **dict(side.env)}
    env.pop("MC_SQLITE_SYNCHRONOUS", None)  # the default (FULL) is what is measured
    cmd = [sys.executable, "-m", "soap_service.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port)]
    proc = subprocess.Popen(cmd + ([] if worker else ["--no-worker"]), env=env, cwd=side.tree,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ingest.wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return ingest.Server(label, port, proc)


def wait_worker(db: Database, timeout: float = 30.0) -> None:
    """Until the worker's first heartbeat (its connectors are built, its jobs run)."""
    from soap_service.tables import worker_heartbeats

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connect() as conn:
            if conn.execute(select(func.count()).select_from(worker_heartbeats)).scalar_one():
                return
        time.sleep(0.2)
    raise SystemExit("the worker did not start")


# ---------------------------------------------------------------- load


@dataclass
class Wrk:
    rate: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    errors: int  # of which timeouts (wrk gives up after 2 s; the request may still succeed)
    timeouts: int = 0


def wrk(port: int, body: bytes, seconds: int, conns: int) -> Wrk:
    """Closed-loop PushEvent with wrk: rate and wrk's latency percentiles."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "body").write_bytes(body)
        script = Path(tmp, "post.lua")
        script.write_text(
            f'local f = io.open("{tmp}/body", "rb")\n'
            "wrk.method = 'POST'\nwrk.body = f:read('*all')\nf:close()\n"
            "wrk.headers['Content-Type'] = 'text/xml; charset=utf-8'\n"
            "wrk.headers['SOAPAction'] = '\"nms:rtEvent#PushEvent\"'\n"
            "done = function(summary, latency, requests)\n"
            "  local e = summary.errors\n"
            "  io.write(string.format('RESULT %d %d %d %d %d\\n', summary.requests,\n"
            "    e.status + e.connect + e.read + e.write + e.timeout, e.timeout,\n"
            "    latency:percentile(50.0), latency:percentile(99.0)))\nend\n")
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", str(script),
                              f"http://127.0.0.1:{port}/nl/jsp/soaprouter.jsp"],
                             capture_output=True, text=True, check=True).stdout
    _, reqs, errs, timeouts, p50, p99 = next(
        x for x in out.splitlines() if x.startswith("RESULT")).split()
    return Wrk((int(reqs) - int(errs)) / seconds, int(p50) / 1000, int(p99) / 1000, int(errs),
               int(timeouts))


def count(db: Database, *statuses: str) -> int:
    with db.connect() as conn:
        stmt = select(func.count()).select_from(events)
        if statuses:
            stmt = stmt.where(events.c.status.in_(statuses))
        return int(conn.execute(stmt).scalar_one())


def wait_drained(db: Database, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not count(db, "pending", "processing"):
            return True
        time.sleep(0.25)
    return False


def pushed_to_sent(db: Database) -> tuple[int, float, float, float]:
    """(events sent, events/s from the first receipt to the last send, p50 / p99 of
    receipt -> send in ms), from the database."""
    with db.connect() as conn:
        rows = conn.execute(select(events.c.created_at, func.max(delivery_log.c.created_at))
                            .join(delivery_log, delivery_log.c.event_id == events.c.id)
                            .where(events.c.status == "processed")
                            .group_by(events.c.id, events.c.created_at)).all()
    if not rows:
        return 0, 0.0, float("nan"), float("nan")
    first = min(r[0] for r in rows)
    last = max(r[1] for r in rows)
    lat = sorted((sent - got).total_seconds() * 1000 for got, sent in rows)
    span = max((last - first).total_seconds(), 1e-3)
    return len(rows), len(rows) / span, statistics.median(lat), _p99(lat)


def _p99(values: list[float]) -> float:
    return values[int(0.99 * (len(values) - 1))] if values else float("nan")


def realtime_latency(url: str | None, args: argparse.Namespace, tmp: Path, name: str,
                     side: Side) -> dict[str, float]:
    """Open-loop PushEvent at ``--rate`` through ``serve`` (worker on, a fresh database)
    to an aiosmtpd sink that logs when each message arrives: ack latency, and ack -> the
    relay's acceptance (``deliver.sink_child_main``'s log, by X-MC-Event-Id)."""
    settings, db = deliver.fresh_db(url, tmp / f"{name}-rt")
    sink, sink_port, sink_log = deliver.start_sink("aiosmtpd", tmp)
    server = start_serve(settings.database_url, sink_port, worker=True, label=name, side=side)
    try:
        wait_worker(db)
        deliver.push_at_rate(server.port, 50, 1)  # warm-up (password checks...)
        wait_drained(db, 60)
        ack_ms: list[float] = []
        acks = deliver.push_at_rate(server.port, args.rate, args.duration, ack_ms)
        ack_ms.sort()
        wait_drained(db, 120)
        arrived: dict[int, float] = {}
        deadline = time.monotonic() + 30
        while len(arrived) < len(acks) and time.monotonic() < deadline:
            for line in sink_log.read_text().splitlines():
                at, event = line.split(" ", 1)
                if event.isdigit() and int(event) in acks:
                    arrived[int(event)] = float(at)
            time.sleep(0.2)
    finally:
        server.stop()
        sink.terminate()
        sink.wait(10)
    sent = sorted((arrived[k] - acks[k]) * 1000 for k in arrived)
    return {"pushed": len(acks), "sent": len(sent), "ack_p50": statistics.median(ack_ms),
            "ack_p99": _p99(ack_ms), "send_p50": statistics.median(sent) if sent else 0.0,
            "send_p99": _p99(sent)}


def pg_commits(db: Database) -> int:
    """Transactions committed in the database so far (PostgreSQL; -1 on SQLite)."""
    if not db.is_postgres:
        return -1
    from sqlalchemy import text

    time.sleep(1.0)  # backends flush their statistics about once a second when idle
    with db.connect() as conn:
        return int(conn.execute(text("SELECT xact_commit FROM pg_stat_database "
                                     "WHERE datname = current_database()")).scalar_one())


def worker_rounds(port: int, events_sent: int) -> dict[str, float]:
    """The worker's round stages from serve's /metrics (``mc_worker_round_seconds``):
    rounds, events per round, and mean ms per round of each stage."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mc_worker_round_seconds_sum":
                sums[s.labels["stage"]] = s.value
            elif s.name == "mc_worker_round_seconds_count":
                counts[s.labels["stage"]] = s.value
    rounds = counts.get("record", 0.0)
    out = {"rounds": rounds, "per_round": events_sent / rounds if rounds else 0.0}
    for stage in ("claim", "prepare", "send", "record"):
        if counts.get(stage):
            out[stage] = sums[stage] / counts[stage] * 1000
    return out


# ---------------------------------------------------------------- CPU per event

ROLES = ("HTTP processes", "worker", "database server", "relay + load generator")


def _processes_named(*names: str) -> list[int]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in names:
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


class CpuMeter:
    """CPU seconds used by each role of the box between :meth:`start` and :meth:`stop`:
    serve's HTTP processes, its worker, PostgreSQL's backends, smtp-sink and wrk."""

    def __init__(self, serve_pid: int) -> None:
        self.serve_pid = serve_pid
        self.before: dict[int, float] = {}
        self.roles: dict[int, str] = {}
        self.used: Counter[str] = Counter()

    def _census(self) -> None:
        for pid in [self.serve_pid, *profile_pids(self.serve_pid)]:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            self.roles[pid] = ROLES[1] if b"cli\0worker" in cmd else ROLES[0]
        for pid in _processes_named("postgres"):
            self.roles[pid] = ROLES[2]
        for pid in _processes_named("smtp-sink"):
            self.roles[pid] = ROLES[3]

    @staticmethod
    def _children() -> float:
        """CPU of this script's children that ended and were waited for (wrk)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self._census()
        self.before = {pid: deliver.cpu_seconds(pid) for pid in self.roles}
        self.children = self._children()

    def stop(self) -> None:
        known = set(self.roles)
        self._census()  # wrk and PostgreSQL backends started meanwhile count from zero
        for pid, role in self.roles.items():
            start = self.before.get(pid, 0.0) if pid in known else 0.0
            self.used[role] += max(deliver.cpu_seconds(pid) - start, 0.0)
        self.used[ROLES[3]] += self._children() - self.children


# ---------------------------------------------------------------- profile


IDLE = re.compile(r"select \(selectors|Condition\.wait|Event\.wait|sleep|recv|"
                  r"_worker \(concurrent/futures/thread\.py:81\)|wait_for_signals")
STAGES: list[tuple[str, re.Pattern[str]]] = [  # the deepest match on a stack wins
    ("SOAP edge", re.compile(r"soap_service/(http|soap)/|soap_service/httpd\.py|"
                             r"soap_service/ingest\.py|cli/serve\.py")),
    ("auth", re.compile(r"soap_service/(store/)?auth\.py")),
    ("insert", re.compile(r"store/events\.py")),
    ("claim", re.compile(r"store/queue\.py.*claim_events|claim_events.*store/queue\.py")),
    ("render", re.compile(r"soap_service/(steps|render/|track|messages)")),
    ("SMTP", re.compile(r"channels/")),
    ("record", re.compile(r"record_outcomes|settle \(")),
    ("commit", re.compile(r"\bcommit\b|_commit_impl|do_commit|GroupCommit\.insert")),
    ("write-lock wait", re.compile(r"_on_begin")),
]


def profile_pids(root: int) -> list[int]:
    """Every descendant of ``root`` that runs Python (gunicorn workers, the worker)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
        if pid != root:
            found.append(pid)
    return found


def start_profilers(pids: list[int], seconds: int, tmp: Path, name: str
                    ) -> list[tuple[subprocess.Popen, Path]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = []
    for pid in pids:
        path = tmp / f"spy-{name}-{pid}.txt"
        out.append((subprocess.Popen([spy, "record", "--pid", str(pid), "--idle",
                                      "--nonblocking", "--rate", "50", "--format", "raw",
                                      "--duration", str(seconds), "--output", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                    path))
    return out


def stage_seconds(files: list[Path], rate: int = 50) -> Counter[str]:
    """Sampled wall seconds per stage (every thread), from py-spy's raw stacks."""
    total: Counter[str] = Counter()
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            stage = None
            for frame in frames:  # root first: the deepest match wins
                for name, pattern in STAGES:
                    if pattern.search(frame):
                        stage = name
            if "Dispatcher.finish" in stack and "Future.result" in stack:
                stage = "SMTP"  # a round waiting for its sends
            elif IDLE.search(frames[-1]) and stage in (None, "SOAP edge", "SMTP"):
                stage = None  # a thread waiting for work, not for a stage
            if stage is not None:
                total[stage] += int(n) / rate
    return total


# ---------------------------------------------------------------- one database


@dataclass
class Result:
    name: str
    ingest: Wrk | None = None
    e2e: Wrk | None = None
    sent: int = 0
    e2e_rate: float = 0.0
    e2e_send_p50: float = 0.0
    e2e_send_p99: float = 0.0
    drained: bool = True
    rt: dict[str, float] = field(default_factory=dict)
    stages: Counter[str] = field(default_factory=Counter)
    profiled: int = 0
    commits: float = -1.0  # PostgreSQL transactions committed per event sent, end to end
    cpu: Counter[str] = field(default_factory=Counter)  # CPU seconds by role, end to end
    rounds: dict[str, float] = field(default_factory=dict)  # from the worker's /metrics


def run_database(name: str, url: str | None, args: argparse.Namespace, tmp: Path,
                 sink_port: int, side: Side = Side()) -> Result:
    res = Result(name)
    tmp = tmp / str(len(list(tmp.iterdir())))  # a fresh directory per run
    tmp.mkdir(parents=True)
    body = deliver.envelope(0)
    print(f"-- {name}: ingest only", flush=True)
    settings, db = deliver.fresh_db(url, tmp / f"{name}-ingest")
    server = start_serve(settings.database_url, sink_port, worker=False, label=name,
                         side=side)
    try:
        wrk(server.port, body, 3, args.connections)  # warm-up (password checks...)
        res.ingest = wrk(server.port, body, args.duration, args.connections)
    finally:
        server.stop()
    print(f"-- {name}: end to end", flush=True)
    settings, db = deliver.fresh_db(url, tmp / f"{name}-e2e")
    server = start_serve(settings.database_url, sink_port, worker=True, label=name,
                         side=side)
    try:
        wait_worker(db)
        commits = pg_commits(db)
        meter = CpuMeter(server.proc.pid)
        meter.start()
        res.e2e = wrk(server.port, body, args.duration, args.connections)
        res.drained = wait_drained(db, 300)
        meter.stop()
        res.cpu = meter.used
        res.sent, res.e2e_rate, res.e2e_send_p50, res.e2e_send_p99 = pushed_to_sent(db)
        res.commits = (pg_commits(db) - commits) / max(res.sent, 1) if commits >= 0 else -1.0
        res.rounds = worker_rounds(server.port, res.sent)
    finally:
        server.stop()
    print(f"-- {name}: real-time latency at {args.rate:.0f}/s", flush=True)
    res.rt = realtime_latency(url, args, tmp, name, side)
    if args.profile:
        print(f"-- {name}: end to end under py-spy", flush=True)
        settings, db = deliver.fresh_db(url, tmp / f"{name}-spy")
        server = start_serve(settings.database_url, sink_port, worker=True, label=name,
                         side=side)
        try:
            wait_worker(db)
            wrk(server.port, body, 2, args.connections)  # warm-up (password checks...)
            wait_drained(db, 300)
            before = count(db, "processed")
            spy_dir = args.spy_dir or tmp
            spy_dir.mkdir(parents=True, exist_ok=True)
            spies = start_profilers(profile_pids(server.proc.pid), args.duration, spy_dir,
                                    name)
            wrk(server.port, body, args.duration, args.connections)
            for proc, _ in spies:
                proc.wait(60)
            wait_drained(db, 300)
            res.profiled = count(db, "processed") - before
            res.stages = stage_seconds([p for _, p in spies])
        finally:
            server.stop()
    return res


# ---------------------------------------------------------------- report


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(f"End to end: msgcenter serve on its defaults, {args.connections} connections "
          f"(wrk, closed loop), {args.duration}s per phase; postfix smtp-sink relay; "
          f"real-time latency at {args.rate:.0f} events/s open loop (16 connections)")
    print()
    print("| database | ingest only ev/s | ack p50/p99 ms | e2e acked ev/s | e2e ack p50/p99 ms "
          "| pushed-to-sent ev/s | ratio | received->sent p50/p99 ms (saturated) "
          "| real-time ack p50/p99 ms | real-time ack->SMTP p50/p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        assert r.ingest is not None and r.e2e is not None
        ratio = r.e2e_rate / r.ingest.rate if r.ingest.rate else 0.0
        drained = "" if r.drained else " (not drained)"
        rt = r.rt
        print(f"| {r.name} | {r.ingest.rate:,.0f} | {r.ingest.p50_ms:.1f} / {r.ingest.p99_ms:.1f} "
              f"| {r.e2e.rate:,.0f} | {r.e2e.p50_ms:.1f} / {r.e2e.p99_ms:.1f} "
              f"| {r.e2e_rate:,.0f}{drained} | {ratio:.2f} "
              f"| {r.e2e_send_p50:.0f} / {r.e2e_send_p99:.0f} "
              f"| {rt['ack_p50']:.1f} / {rt['ack_p99']:.1f} "
              f"| {rt['send_p50']:.0f} / {rt['send_p99']:.0f} "
              f"({rt['sent']:.0f}/{rt['pushed']:.0f}) |")
        errors = r.ingest.errors + r.e2e.errors
        if errors:
            print(f"  ! {r.name}: {errors} failed requests "
                  f"({r.ingest.timeouts + r.e2e.timeouts} of them wrk's 2 s timeout)")
    print()
    print(f"Goals (issue 13): pushed-to-sent >= {GOALS['rate']:,.0f} ev/s and >= "
          f"{GOALS['ratio']}x ingest only; real-time ack->SMTP p99 <= "
          f"{GOALS['send_p99_ms']:.0f} ms; PushEvent ack p99 <= {GOALS['ack_p99_ms']:.0f} ms.")
    for name, text in BASELINE.items():
        print(f"Before (issue 13, {name}): {text}")
    with_rounds = [r for r in results if r.rounds.get("rounds")]
    if with_rounds:
        print()
        print("The worker's rounds in the end-to-end phase (serve's /metrics, "
              "mc_worker_round_seconds), and PostgreSQL commits per event sent:")
        print("| database | rounds | events/round | claim ms | prepare ms | send ms "
              "| record ms | commits/event |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in with_rounds:
            w = r.rounds
            commits = f"{r.commits:.2f}" if r.commits >= 0 else "-"
            print(f"| {r.name} | {w['rounds']:,.0f} | {w['per_round']:.1f} | "
                  + " | ".join(f"{w.get(s, 0.0):.1f}" for s in
                               ("claim", "prepare", "send", "record"))
                  + f" | {commits} |")
    with_cpu = [r for r in results if r.cpu and r.sent]
    if with_cpu:
        print()
        print("CPU per event sent in the end-to-end phase (user + system ms, from /proc; "
              f"the box has {os.cpu_count()} cores = {os.cpu_count() or 1:,}000 ms per second):")
        print("| database | " + " | ".join(ROLES) + " | all |")
        print("|---|" + "---:|" * (len(ROLES) + 1))
        for r in with_cpu:
            per = [r.cpu[role] * 1000 / r.sent for role in ROLES]
            print(f"| {r.name} | " + " | ".join(f"{v:.2f}" for v in per)
                  + f" | {sum(per):.2f} |")
    profiled = [r for r in results if r.stages]
    if args.profile and not profiled:
        print("\n(--profile: py-spy recorded nothing; is it installed, and may it attach?)")
    if not profiled:
        return
    print()
    print("Where the time goes (py-spy --idle, every thread of every server process; wall "
          "ms per event processed, summed over threads -- time waiting counts):")
    names = [n for n, _ in STAGES]
    print("| database | events | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for r in profiled:
        per = [r.stages[n] * 1000 / max(r.profiled, 1) for n in names]
        print(f"| {r.name} | {r.profiled:,} | " + " | ".join(f"{v:.2f}" for v in per) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rate", type=float, default=300.0,
                   help="real-time latency phase: PushEvent calls per second")
    p.add_argument("--databases", default="sqlite,postgres")
    p.add_argument("--database-url", default=ingest.PG_URL, help="PostgreSQL server URL")
    p.add_argument("--profile", action="store_true",
                   help="also a run under py-spy: time per stage")
    p.add_argument("--compare", type=Path,
                   help="A/B: also serve from this source tree ([A]), alternating with this "
                        "one ([B]) --rounds times per database")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment of the [A] servers only (repeatable); without --compare "
                        "both sides serve this tree, e.g. --a-env MC_HTTP_WORKERS=1 "
                        "--b-env MC_HTTP_WORKERS=2")
    p.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment of the [B] servers only (repeatable)")
    p.add_argument("--spy-dir", type=Path, help="keep py-spy's raw stacks in this directory")
    p.add_argument("--quick", action="store_true", help="4 s per phase")
    args = p.parse_args()
    if args.quick:
        args.duration = 4
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="mc-e2e-"))
    sink, sink_port, _ = deliver.start_sink("smtp-sink", tmp)
    results = []
    a_env = tuple(tuple(kv.split("=", 1)) for kv in args.a_env)
    b_env = tuple(tuple(kv.split("=", 1)) for kv in args.b_env)
    ab = args.compare is not None or bool(a_env or b_env)
    sides = [("", Side())] if not ab else [
        ("[A] ", Side((args.compare or ROOT).resolve(), a_env)),  # type: ignore[arg-type]
        ("[B] ", Side(ROOT, b_env))]  # type: ignore[arg-type]
    urls = {"sqlite": ("SQLite", None), "postgres": ("PostgreSQL", args.database_url)}
    try:
        for db in args.databases.split(","):
            name, url = urls[db]
            for _ in range(args.rounds if ab else 1):
                for tag, side in sides:
                    results.append(run_database(f"{tag}{name}", url, args, tmp, sink_port,
                                                side))
    finally:
        sink.terminate()
        sink.wait(10)
        deliver.drop_created()
        shutil.rmtree(tmp, ignore_errors=True)
        if results:  # what was measured, even if a later phase failed
            report(results, args)


if __name__ == "__main__":
    main()
