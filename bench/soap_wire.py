"""CPU per PushEvent over the wire: ``msgcenter serve --no-worker`` under ``wrk``.

Starts ``serve`` (SQLite, its defaults, ``--workers`` HTTP processes) from this tree and,
with ``--compare DIR``, from another tree too, alternating them ``--rounds`` times; each
round runs ``wrk`` with ``bench/deliver.py``'s PushEvent envelope and reads the HTTP
processes' CPU (utime + stime from ``/proc/<pid>/stat``) before and after, and how many
of wrk's connections each process holds (``ss``) in the middle of the run.  Prints
requests/s, CPU µs per request (the HTTP processes together) and the spread of
connections and CPU over the processes.

Usage: ``python bench/soap_wire.py [--compare DIR] [--rounds 3] [--duration 8]
[--connections 8] [--workers 4]``.  A script, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deliver import envelope  # noqa: E402
from bench.ingest import TOKEN, start_msgcenter  # noqa: E402
from soap_service import demo  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(x) for x in text)
    return found


def cpu_times(pid: int) -> tuple[float, float]:
    """utime, stime in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def switches(pid: int) -> int:
    """Context switches (voluntary and not) of every thread of ``pid`` so far (threads
    that have exited are not counted: the HTTP threads live as long as the process)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.endswith("ctxt_switches:") or "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def http_pids(supervisor: int, workers: int) -> list[int]:
    for _ in range(200):
        masters = children(supervisor)
        pids = [c for m in masters for c in children(m)]
        if len(pids) >= workers:
            return pids
        time.sleep(0.1)
    raise SystemExit("no HTTP processes found")


def connections_per_pid(port: int, pids: list[int]) -> dict[int, int]:
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    counts = dict.fromkeys(pids, 0)
    for pid in re.findall(r"pid=(\d+)", out):
        if int(pid) in counts:
            counts[int(pid)] += 1
    return counts


def run_wrk(port: int, seconds: int, conns: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp, "body")
        # the operator bench/ingest.py's servers have instead of demo/demo
        body_file.write_bytes(envelope(1).replace("/".join(demo.OPERATOR).encode(),
                                                  TOKEN.encode()))
        script = Path(tmp, "post.lua")
        script.write_text(
            'local f = io.open("' + str(body_file) + '", "rb")\n'
            "wrk.method = 'POST'\nwrk.body = f:read('*all')\nf:close()\n"
            "wrk.headers['Content-Type'] = 'text/xml'\n"
            "wrk.headers['SOAPAction'] = 'nms:rtEvent#PushEvent'\n"
            "done = function(summary, latency, requests)\n"
            "  io.write(string.format('REQS %d ERRS %d\\n', summary.requests,\n"
            "    summary.errors.status + summary.errors.connect + summary.errors.read\n"
            "    + summary.errors.write + summary.errors.timeout))\nend\n")
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", str(script),
                              f"http://127.0.0.1:{port}/nl/jsp/soaprouter.jsp"],
                             capture_output=True, text=True, check=True).stdout
    _, reqs, _, errs = next(x for x in out.splitlines() if x.startswith("REQS")).split()
    if int(errs):
        print(f"  ! {errs} errors of {reqs}")
    return int(reqs) - int(errs)


def measure(tree: Path, label: str, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mc-wire-"))
    env = dict(os.environ)
    for item in args.env:
        k, _, v = item.partition("=")
        env[k] = v
    os.environ.update(env)
    url = args.database or f"sqlite:///{tmp}/wire.db"
    server = start_msgcenter(label, url, args.workers, tree=tree)
    try:
        pids = http_pids(server.proc.pid, args.workers)
        run_wrk(server.port, 2, args.connections)  # warm: password cache, first inserts
        before = {p: cpu_times(p) for p in pids}
        switched = sum(switches(p) for p in pids)
        seen: dict[int, int] = {}

        def sample() -> None:
            time.sleep(args.duration / 2)
            seen.update(connections_per_pid(server.port, pids))

        sampler = threading.Thread(target=sample)
        sampler.start()
        reqs = run_wrk(server.port, args.duration, args.connections)
        sampler.join()
        after = {p: cpu_times(p) for p in pids}
        switched = sum(switches(p) for p in pids) - switched
        user = sum(after[p][0] - before[p][0] for p in pids)
        system = sum(after[p][1] - before[p][1] for p in pids)
        used = {p: sum(after[p]) - sum(before[p]) for p in pids}
        total = user + system
        print(f"[{label}] {reqs / args.duration:7.0f} req/s  {total / reqs * 1e6:6.0f} µs CPU/"
              f"request (HTTP processes; user {user / reqs * 1e6:.0f} sys "
              f"{system / reqs * 1e6:.0f}; {switched / reqs:.1f} context switches)  "
              f"connections per process "
              f"{sorted(seen.values(), reverse=True)}  CPU s per process "
              f"{sorted((round(u, 1) for u in used.values()), reverse=True)}", flush=True)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="also serve from this source tree [A]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--database", help="a PostgreSQL URL (its public schema is DROPPED "
                        "and made again each round); default: a fresh SQLite file")
    args = parser.parse_args()
    for _ in range(args.rounds):
        if args.compare:
            measure(args.compare.resolve(), "A", args)
        measure(ROOT, "B", args)


if __name__ == "__main__":
    main()
