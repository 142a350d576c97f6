"""CPU per PushEvent on the HTTP side, in process: no sockets, no other process.

Builds the application as ``msgcenter serve`` does (``RequestLog(create_app(settings))``,
logging at info to a discarded stream, prometheus-client in multiprocess mode) on a fresh
SQLite database made like ``bench/deliver.py``'s, and sends it the PushEvent envelope of
``bench/deliver.py`` N times, one at a time:

* ``--mode wsgi``: straight to the WSGI callable, with the environ ``httpd.py`` builds;
* ``--mode front``: the raw HTTP request bytes into ``httpd.HttpProtocol`` (a fake
  transport), the application run on the loop (no thread);
* ``--mode threads``: the same with the thread pool of ``serve`` (``MC_HTTP_THREADS``),
  so the hand-off to a thread and back is counted.

Prints CPU microseconds per request (``time.process_time``: every thread of this
process), and with ``--profile`` a yappi cpu-clock profile (top by self and by total
time).  ``--no-store`` replaces the database insert by a stub, to see the edge alone.

Usage: ``python bench/soap_edge.py [--mode wsgi|front|threads] [-n 3000] [--profile]
[--database-url postgresql+psycopg://...]
[--no-store] [--rounds 3]``.  A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):  # A/B: a tree
    if _entry:
        sys.path.insert(0, _entry)
_METRICS_DIR = tempfile.mkdtemp(prefix="mc-edge-metrics-")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _METRICS_DIR)  # before prometheus_client

import logging  # noqa: E402

from bench.deliver import envelope, fresh_db  # noqa: E402

HEADERS = {"Content-Type": "text/xml", "SOAPAction": "nms:rtEvent#PushEvent"}


def raw_request(n: int) -> bytes:
    """What ``http.client`` sends for ``bench/deliver.py``'s PushEvent."""
    body = envelope(n)
    head = ("POST /nl/jsp/soaprouter.jsp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
            "Accept-Encoding: identity\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()) + "\r\n")
    return head.encode() + body


class FakeTransport(asyncio.Transport):
    def __init__(self, done: Any) -> None:
        super().__init__()
        self.done = done
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))
        self.done()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def setup(no_store: bool, url: str | None = None) -> Any:
    from soap_service.cli.serve import RequestLog
    from soap_service.http import app as web

    logging.basicConfig(level=logging.WARNING, stream=open(os.devnull, "w"),  # noqa: SIM115
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("soap_service").setLevel("INFO")
    tmp = Path(tempfile.mkdtemp(prefix="mc-edge-"))
    settings, _db = fresh_db(url, tmp)
    app = web.create_app(settings)
    if no_store:
        from soap_service.store import events as event_store

        class Stored:
            def __init__(self, n: int) -> None:
                self.ids = list(range(1, n + 1))
                self.replayed = [False] * n

        event_store.insert_events = lambda db, rows, **kw: Stored(len(rows))  # type: ignore
    return settings, RequestLog(app)


def run_wsgi(app: Any, n: int, first: int) -> None:
    from soap_service.httpd import Front, HttpProtocol, Limits, _Request

    class Conn(HttpProtocol):
        def __init__(self) -> None:  # only what _environ reads
            self.front = Front(app, Limits(), None, "8080")
            self.peer = ("127.0.0.1", 40000)

    conn = Conn()
    seen: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen.append(status)

    for i in range(first, first + n):
        body = envelope(i)
        req = _Request(url=b"/nl/jsp/soaprouter.jsp", method="POST", headers=[
            (b"Host", b"127.0.0.1:8080"), (b"Accept-Encoding", b"identity"),
            (b"Content-Length", str(len(body)).encode()),
            *((k.encode(), v.encode()) for k, v in HEADERS.items())], parts=[body],
            size=len(body))
        out = b"".join(app(conn._environ(req), start_response))
        if not seen[-1].startswith("200"):
            raise SystemExit(f"answer {seen[-1]}: {out[:400]!r}")


_EXECUTORS: list[Any] = []


def run_front(app: Any, n: int, first: int, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from soap_service.httpd import Front, Limits

    async def main() -> None:
        if threads and not _EXECUTORS:  # one pool for every round: its threads live on
            _EXECUTORS.append(ThreadPoolExecutor(threads, thread_name_prefix="mc-http"))
        executor = _EXECUTORS[0] if threads else None
        front = Front(app, Limits(), executor, "8080")
        waiter: list[asyncio.Future[None]] = []

        def done() -> None:
            if waiter and not waiter[0].done():
                waiter[0].set_result(None)

        proto = front.protocol()
        transport = FakeTransport(done)
        proto.connection_made(transport)
        loop = asyncio.get_running_loop()
        for i in range(first, first + n):
            waiter[:] = [loop.create_future()]
            proto.data_received(raw_request(i))
            await waiter[0]
            answer = transport.out.pop()
            if not answer.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"answer: {answer[:600]!r}")
        proto.connection_lost(None)

    asyncio.run(main())


def switches() -> int:
    """Context switches of this process's threads so far."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:  # a thread that just ended
            continue
        total += sum(int(x.split()[1]) for x in lines if "ctxt_switches:" in x)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["wsgi", "front", "threads"], default="wsgi")
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-store", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (a fresh database is made on it); "
                             "default: a SQLite file")
    args = parser.parse_args()
    _settings, app = setup(args.no_store, args.database_url)

    def once(first: int) -> None:
        if args.mode == "wsgi":
            run_wsgi(app, args.n, first)
        else:
            run_front(app, args.n, first, args.threads if args.mode == "threads" else 0)

    once(10_000_000)  # warm: caches, password check, first inserts
    if args.profile:
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()
    results = []
    for r in range(args.rounds):
        cpu, wall, switched = time.process_time(), time.perf_counter(), switches()
        once(r * args.n)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        switched = switches() - switched
        results.append(cpu / args.n * 1e6)
        print(f"round {r + 1}: {cpu / args.n * 1e6:7.1f} µs CPU/request  "
              f"{wall / args.n * 1e6:7.1f} µs wall/request  "
              f"{switched / args.n:4.1f} context switches/request  ({args.mode}"
              f"{', no store' if args.no_store else ''}, n={args.n})", flush=True)
    import soap_service

    tree = Path(soap_service.__file__).parent.parent
    print(f"{tree}: best {min(results):.1f}  median {sorted(results)[len(results) // 2]:.1f} "
          "µs CPU/request")
    if args.profile:
        import yappi

        yappi.stop()
        stats = yappi.get_func_stats()
        for key, title in (("tsub", "self"), ("ttot", "total")):
            print(f"\n--- top {args.top} by {title} time (µs per request) ---")
            stats.sort(key, "desc")
            total = args.rounds * args.n
            for s in list(stats)[: args.top]:
                where = f"{Path(s.module).name}:{s.lineno}"
                print(f"{s.tsub / total * 1e6:8.1f} self {s.ttot / total * 1e6:8.1f} total "
                      f"{s.ncall / total:7.1f} calls  {s.name}  ({where})")


if __name__ == "__main__":
    try:
        main()
    finally:
        from bench.deliver import drop_created

        drop_created()  # the PostgreSQL database made for the run
