"""SMS delivery benchmark: our connectors against plain clients of the same protocols.

Measures, in one run, messages per second of:
  * **smpp** — our ``smpp`` connector (one link, ``--window`` PDUs outstanding) sending
    ``--messages`` short texts to ``msgcenter devsmsc`` (another process, storing every
    SMS as a file), and a plain **smpplib** client sending the same texts to the same
    SMSC with the same window (it pipelines ``submit_sm`` and reads the answers as they
    come, so the comparison is window to window, not round trip to window);
  * **http-sms** — our ``http-sms`` connector (format json) and plain **httpx**
    (``AsyncClient``, the same JSON, token and connection limit) posting to a minimal
    HTTP/1.1 keep-alive provider in another process.

Rounds of ours and plain alternate (load from elsewhere hits both alike); the medians and
their ratio (ours / plain) are printed.  Usage: ``python bench/deliver_sms.py [--messages
5000] [--rounds 3] [--window 64] [--http-concurrency 16] [--only smpp|http]``.  A
script, not a test: numbers vary ±30 % with what else runs on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import smpplib.client  # noqa: E402
import smpplib.consts  # noqa: E402
import smpplib.gsm  # noqa: E402

from soap_service.channels.http_sms import HttpSmsConnector  # noqa: E402
from soap_service.channels.smpp import SmppConnector  # noqa: E402
from soap_service.config import ConnectorConfig  # noqa: E402
from soap_service.models import Channel, SendOutcome, SmsMessage  # noqa: E402

TARGET_RATE = 1000.0  # smpp, one connector
TARGET_RATIO = 0.7  # http-sms against plain httpx
TO = "+33612345678"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def texts(n: int, offset: int = 0) -> list[str]:
    return [f"Your order A-{offset + i} has shipped. Track it at example.com/t/{i}"
            for i in range(n)]


# ----------------------------------------------------------------------------- smpp


async def ours_smpp(port: int, messages: list[str], window: int) -> float:
    connector = SmppConnector(ConnectorConfig(
        "bench", Channel.SMS, "smpp", concurrency=window,
        options={"host": "127.0.0.1", "port": port, "system_id": "bench",
                 "source_addr": "MyShop", "window": window, "registered_delivery": False}))
    try:
        warm = await asyncio.gather(*(connector.send(SmsMessage(t, "w"), TO)
                                      for t in texts(200, 10**6)))
        assert all(r.outcome is SendOutcome.SENT for r in warm), warm[0]
        started = time.perf_counter()
        results = await asyncio.gather(*(connector.send(SmsMessage(t, f"r{i}"), TO)
                                         for i, t in enumerate(messages)))
        elapsed = time.perf_counter() - started
    finally:
        await connector.close()
    failed = [r for r in results if r.outcome is not SendOutcome.SENT]
    assert not failed, failed[0]
    return len(messages) / elapsed


def plain_smpplib(port: int, messages: list[str], window: int) -> float:
    client = smpplib.client.Client("127.0.0.1", port, timeout=30,
                                   allow_unknown_opt_params=True)
    answered = 0

    def sent(pdu: object) -> None:
        nonlocal answered
        answered += 1

    client.set_message_sent_handler(sent)
    client.connect()
    client.bind_transceiver(system_id="bench", password="")
    try:
        encoded = [smpplib.gsm.make_parts(t) for t in messages]
        started = time.perf_counter()
        submitted = 0
        for parts, coding, esm_class in encoded:
            for part in parts:
                while submitted - answered >= window:
                    client.read_once()
                client.send_message(source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                                    source_addr="MyShop",
                                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                                    dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                                    destination_addr=TO[1:], short_message=part,
                                    data_coding=coding, esm_class=esm_class,
                                    registered_delivery=False)
                submitted += 1
        while answered < submitted:
            client.read_once()
        elapsed = time.perf_counter() - started
    finally:
        client.unbind()
        client.disconnect()
    return len(messages) / elapsed


def bench_smpp(n: int, window: int, rounds: int) -> dict[str, float]:
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="mc-bench-sms-"))
    smsc = subprocess.Popen([sys.executable, "-m", "soap_service.cli", "devsmsc", "--port",
                             str(port), "--dir", str(directory)],
                            cwd=str(ROOT), stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        ours, plain = [], []
        for r in range(rounds):  # interleaved, so load from elsewhere hits both alike
            ours.append(asyncio.run(ours_smpp(port, texts(n, 2 * r * n), window)))
            plain.append(plain_smpplib(port, texts(n, (2 * r + 1) * n), window))
        stored = len(list(directory.glob("*.sms")))
    finally:
        smsc.terminate()
        smsc.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    assert stored == rounds * (2 * n + 200), f"devsmsc stored {stored} messages"
    return summary(ours, plain)


def summary(ours: list[float], plain: list[float]) -> dict[str, float]:
    mine, theirs = statistics.median(ours), statistics.median(plain)
    return {"ours": mine, "plain": theirs, "ratio": mine / theirs}


# ----------------------------------------------------------------------------- http


async def _serve_http(port: int) -> None:
    counter = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                counter += 1
                body = json.dumps({"id": f"p-{counter}"}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def ours_http(url: str, messages: list[str], concurrency: int) -> float:
    connector = HttpSmsConnector(ConnectorConfig(
        "bench", Channel.SMS, "http-sms", concurrency=concurrency,
        options={"url": url, "token": "bench-token", "from": "MyShop"}))
    try:
        await asyncio.gather(*(connector.send(SmsMessage(t, "w"), TO)
                               for t in texts(200, 10**6)))
        started = time.perf_counter()
        results = await asyncio.gather(*(connector.send(SmsMessage(t, f"r{i}"), TO)
                                         for i, t in enumerate(messages)))
        elapsed = time.perf_counter() - started
    finally:
        await connector.close()
    failed = [r for r in results if r.outcome is not SendOutcome.SENT]
    assert not failed, failed[0]
    return len(messages) / elapsed


async def plain_httpx(url: str, messages: list[str], concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def one(i: int, text: str) -> int:
            async with gate:
                response = await client.post(url, json={
                    "to": TO, "from": "MyShop", "text": text, "reference": f"r{i}"},
                    headers={"Authorization": "Bearer bench-token"})
                response.json()
                return response.status_code
        await asyncio.gather(*(one(i, t) for i, t in enumerate(texts(200, 10**6))))
        started = time.perf_counter()
        codes = await asyncio.gather(*(one(i, t) for i, t in enumerate(messages)))
        elapsed = time.perf_counter() - started
    assert set(codes) == {200}
    return len(messages) / elapsed


def bench_http(n: int, concurrency: int, rounds: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-http", str(port)])
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/send"
        ours, plain = [], []
        for r in range(rounds):
            ours.append(asyncio.run(ours_http(url, texts(n, 2 * r * n), concurrency)))
            plain.append(asyncio.run(plain_httpx(url, texts(n, (2 * r + 1) * n), concurrency)))
    finally:
        server.terminate()
        server.wait(30)
    return summary(ours, plain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="per round (5000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of each; medians reported (3)")
    parser.add_argument("--window", type=int, default=64,
                        help="SMPP window and connector concurrency (64)")
    parser.add_argument("--http-concurrency", type=int, default=16)
    parser.add_argument("--only", choices=("smpp", "http"))
    parser.add_argument("--serve-http", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_http:
        asyncio.run(_serve_http(args.serve_http))
        return 0
    ok = True
    if args.only in (None, "smpp"):
        r = bench_smpp(args.messages, args.window, args.rounds)
        print(f"smpp      ours {r['ours']:7.0f} msg/s   smpplib {r['plain']:7.0f} msg/s   "
              f"ratio {r['ratio']:.2f}   (window {args.window}, median of {args.rounds} x "
              f"{args.messages} messages, devsmsc storing files)")
        met = r["ours"] >= TARGET_RATE
        print(f"  target >= {TARGET_RATE:,.0f} msg/s with one connector:",
              "met" if met else "NOT met")
        ok &= met
    if args.only in (None, "http"):
        r = bench_http(args.messages, args.http_concurrency, args.rounds)
        print(f"http-sms  ours {r['ours']:7.0f} msg/s   httpx   {r['plain']:7.0f} msg/s   "
              f"ratio {r['ratio']:.2f}   (concurrency {args.http_concurrency}, median of "
              f"{args.rounds} x {args.messages} messages)")
        # httpx itself is the ceiling here (its pool costs ~1 ms of CPU per request); what
        # the connector controls is how close it stays to that ceiling
        met = r["ratio"] >= TARGET_RATIO
        print(f"  target ratio >= {TARGET_RATIO} of plain httpx:", "met" if met else "NOT met")
        ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
