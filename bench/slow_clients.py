"""Slow clients: how long a ``PushEvent`` waits while N connections sit on half-sent
requests (headers announcing ``Content-Length: 1000``, a few bytes of body, then nothing).

For each server (this tree, and with ``--compare DIR`` another source tree first): start
``msgcenter serve --no-worker``, open ``--stalled`` such connections, then send
``--pushes`` PushEvents one after another, each on a new connection with a 90 s timeout,
and print the ack time of each (min / median / max) and how many failed.

Usage: ``python bench/slow_clients.py [--stalled 8] [--pushes 10] [--compare DIR]``
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import tempfile
import time
from pathlib import Path

from ingest import ROOT, envelope, start_msgcenter

STALL = (b"POST /nl/jsp/soaprouter.jsp HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
         b"Content-Length: 1000\r\n\r\n<soapenv:Envelope")


def one_push(port: int, body: bytes) -> float | None:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        conn.request("POST", "/nl/jsp/soaprouter.jsp", body,
                     {"Content-Type": "text/xml; charset=utf-8",
                      "SOAPAction": '"nms:rtEvent#PushEvent"'})
        resp = conn.getresponse()
        resp.read()
        return time.perf_counter() - started if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def measure(name: str, tree: Path, args: argparse.Namespace, tmp: str, n: int) -> None:
    server = start_msgcenter(name, f"sqlite:///{tmp}/slow-{n}.db", args.workers, tree)
    stalled = []
    try:
        body = envelope("PushEvent", 1)
        assert one_push(server.port, body) is not None  # warm: the server answers
        for _ in range(args.stalled):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(STALL)
            stalled.append(sock)
        times = [one_push(server.port, body) for _ in range(args.pushes)]
        ok = sorted(t for t in times if t is not None)
        if ok:
            print(f"| {name} | {args.stalled} | {len(ok)} / {len(times)} | "
                  f"{ok[0] * 1000:,.1f} | {statistics.median(ok) * 1000:,.1f} | "
                  f"{ok[-1] * 1000:,.1f} |", flush=True)
        else:
            print(f"| {name} | {args.stalled} | 0 / {len(times)} | - | - | - |", flush=True)
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stalled", type=int, default=8)
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="HTTP processes (serve's "
                        "default on 2 cores)")
    parser.add_argument("--compare", type=Path, help="also serve from this source tree, first")
    args = parser.parse_args()
    print("| server | stalled connections | pushes answered | min ms | median ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="mc-slow-") as tmp:
        runs = ([("[A] " + str(args.compare), args.compare.resolve())] if args.compare
                else []) + [("[B] this tree" if args.compare else "this tree", ROOT)]
        for n, (name, tree) in enumerate(runs):
            measure(name, tree, args, tmp, n)


if __name__ == "__main__":
    main()
