"""Push delivery benchmark: our APNs and FCM connectors vs a plain httpx client.

Measures, in one run and against the same local servers:
  * **connector** — :class:`ApnsConnector` / :class:`FcmConnector` called directly;
  * **channel** — the same connector inside a :class:`ConnectorSet` (priority slots,
    rate limiter off, circuit breaker): what the worker will call;
  * **plain** — one ``httpx.AsyncClient(http2=True)`` sending the same requests (same
    URL, headers, provider/access token and body bytes) at the same concurrency.

The connectors send over ``soap_service/channels/h2client.py`` (h2 driven directly);
httpx is the plain client of the protocol.  Besides the rates, the client's CPU per
message and the server's (the sink process) are printed: on a shared machine the server,
a Python HTTP/2 stack too, is often what caps the rate.

The server is devpush's ASGI app (every APNs and FCM check it makes, nothing written to
disk) under hypercorn in a child process, so client and server use different cores:
APNs over HTTP/2 + TLS, FCM over HTTP/2 + TLS as Google serves it (``--fcm-http1`` for
plain HTTP/1.1).  Rounds alternate ours and plain; the median of ``--rounds`` is kept.

Usage: ``python bench/deliver_push.py [--messages 5000] [--concurrency 100] [--rounds 3]
[--json]``.  A script, not a test: numbers vary ±30 % with what else runs on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from deliver import cpu_seconds  # noqa: E402

from soap_service.channels.apns import ApnsConnector, build_payload  # noqa: E402
from soap_service.channels.failover import ConnectorSet  # noqa: E402
from soap_service.channels.fcm import FcmConnector, build_body  # noqa: E402
from soap_service.config import ConnectorConfig  # noqa: E402
from soap_service.models import Channel, PushMessage, PushPlatform, SendOutcome  # noqa: E402

TARGET = 1000.0  # messages/s per connector (issue 9)
IOS_TOKEN = "5a" * 32
ANDROID_TOKEN = "bench:APA91b" + "x" * 140


def serve_sink(directory: str, ready_file: str) -> None:
    """Child process: devpush's app, no files, on a TLS port and a plain port."""
    from soap_service.devpush import DevPushApp, PushStore
    from soap_service.devserve import AsgiServer, ensure_tls

    tls = ensure_tls(Path(directory) / "tls")
    server = AsgiServer(DevPushApp(PushStore(None, keep=False)), "127.0.0.1", tls_port=0,
                        plain_port=0, certfile=tls.cert, keyfile=tls.key).start()
    Path(ready_file).write_text(json.dumps({"tls": server.tls_port, "plain": server.plain_port,
                                            "ca": str(tls.ca)}))
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


SERVER_PID: int | None = None  # the sink process, whose CPU per message is reported


async def _run(n: int, concurrency: int, send: Callable[[int], Awaitable[bool]]
               ) -> tuple[float, float, float]:
    """(messages/s, client CPU µs per message, server CPU µs per message) for ``n``
    sends, ``concurrency`` in flight.

    The CPU cost is what the client process spent (user + system): unlike the rate, it
    barely moves when other processes compete for the cores."""
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            if not await send(i):
                failures += 1

    started, cpu = time.perf_counter(), time.process_time()
    server = cpu_seconds(SERVER_PID) if SERVER_PID else 0.0
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = cpu_seconds(SERVER_PID) - server if SERVER_PID else 0.0
    if failures:
        raise SystemExit(f"{failures} of {n} sends failed")
    return n / elapsed, cpu / n * 1e6, server / n * 1e6


def _message(platform: PushPlatform, i: int) -> PushMessage:
    return PushMessage(platform, "Your order", f"Order {i} has shipped", f"mc.1.{i}",
                       {"order": str(i)})


async def bench_apns(url: str, ca: str, key_file: str, n: int, concurrency: int
                     ) -> dict[str, float]:
    config = ConnectorConfig("apns", Channel.PUSH, "apns", concurrency=concurrency, options={
        "base_url": url, "team_id": "TEAM123456", "key_id": "KEY1234567",
        "key_file": key_file, "topic": "com.example.shop", "ca_file": ca})
    connector = ApnsConnector(config)
    channel = ConnectorSet(Channel.PUSH, [ApnsConnector(config)])
    plain = httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=ca))
    headers = {"apns-topic": "com.example.shop", "apns-push-type": "alert",
               "apns-priority": "10", "apns-expiration": "0",
               "authorization": f"bearer {connector.token.current()}"}

    async def ours(i: int) -> bool:
        result = await connector.send(_message(PushPlatform.IOS, i), IOS_TOKEN, urgent=True)
        return result.outcome is SendOutcome.SENT

    async def through_channel(i: int) -> bool:
        result = await channel.send(_message(PushPlatform.IOS, i), IOS_TOKEN, urgent=True)
        return result.outcome is SendOutcome.SENT

    async def baseline(i: int) -> bool:
        response = await plain.post(f"{url}/3/device/{IOS_TOKEN}", headers=headers,
                                    content=build_payload(_message(PushPlatform.IOS, i)))
        return response.status_code == 200

    try:
        return await _rounds(n, concurrency, ours, through_channel, baseline)
    finally:
        await connector.close()
        await channel.close()
        await plain.aclose()


async def bench_fcm(url: str, ca: str, account: str, n: int, concurrency: int,
                    http2: bool) -> dict[str, float]:
    config = ConnectorConfig("fcm", Channel.PUSH, "fcm", concurrency=concurrency, options={
        "base_url": url, "service_account_file": account, "ca_file": ca,
        "token_uri": f"{url}/token"})
    connector = FcmConnector(config)
    channel = ConnectorSet(Channel.PUSH, [FcmConnector(config)])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    plain = httpx.AsyncClient(http2=http2, limits=limits,
                              verify=ssl.create_default_context(cafile=ca))
    access = await connector.access.get()
    headers = {"authorization": f"Bearer {access}", "content-type": "application/json"}
    send_url = connector.url

    async def ours(i: int) -> bool:
        result = await connector.send(_message(PushPlatform.ANDROID, i), ANDROID_TOKEN,
                                      urgent=True)
        return result.outcome is SendOutcome.SENT

    async def through_channel(i: int) -> bool:
        result = await channel.send(_message(PushPlatform.ANDROID, i), ANDROID_TOKEN,
                                    urgent=True)
        return result.outcome is SendOutcome.SENT

    async def baseline(i: int) -> bool:
        body = build_body(_message(PushPlatform.ANDROID, i), ANDROID_TOKEN, time.time())
        response = await plain.post(send_url, headers=headers, content=json.dumps(
            body, ensure_ascii=False, separators=(",", ":")).encode())
        return response.status_code == 200

    try:
        return await _rounds(n, concurrency, ours, through_channel, baseline)
    finally:
        await connector.close()
        await channel.close()
        await plain.aclose()


async def _rounds(n: int, concurrency: int, *sends: Callable[[int], Awaitable[bool]]
                  ) -> dict[str, float]:
    names = ("connector", "channel", "plain")
    for send in sends:  # warm up: connections, TLS, tokens
        await _run(min(n, 200), concurrency, send)
    rates: dict[str, list[float]] = {name: [] for name in names}
    costs: dict[str, list[float]] = {name: [] for name in names}
    server: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(ROUNDS):
        for name, send in zip(names, sends, strict=True):
            rate, cost, server_cost = await _run(n, concurrency, send)
            rates[name].append(rate)
            costs[name].append(cost)
            server[name].append(server_cost)
    out = {name: statistics.median(values) for name, values in rates.items()}
    out.update({f"{name}_cpu_us": statistics.median(v) for name, v in costs.items()})
    out.update({f"{name}_server_cpu_us": statistics.median(v) for name, v in server.items()})
    out["ratio"] = out["connector"] / out["plain"]
    out["channel_ratio"] = out["channel"] / out["plain"]
    out["cpu_ratio"] = out["plain_cpu_us"] / out["connector_cpu_us"]
    return out


ROUNDS = 3


def main() -> None:
    global ROUNDS, SERVER_PID
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=5000, help="per round and client")
    p.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fcm-http1", action="store_true", help="FCM over plain HTTP/1.1")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve-sink", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_sink:
        return serve_sink(*args.serve_sink)
    ROUNDS = max(1, args.rounds)
    with tempfile.TemporaryDirectory(prefix="mc-bench-push-") as tmp:
        from soap_service.devpush_checks import write_credentials

        ready = Path(tmp) / "ready.json"
        sink = subprocess.Popen([sys.executable, __file__, "--serve-sink", tmp, str(ready)],
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 60
            while not ready.exists() or not ready.read_text():
                if sink.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the push sink did not start")
                time.sleep(0.1)
            ports = json.loads(ready.read_text())
            SERVER_PID = sink.pid
            tls_url = f"https://127.0.0.1:{ports['tls']}"
            fcm_url = f"http://127.0.0.1:{ports['plain']}" if args.fcm_http1 else tls_url
            key, account = write_credentials(Path(tmp) / "credentials", f"{fcm_url}/token")
            results = {
                "apns": asyncio.run(bench_apns(tls_url, ports["ca"], str(key), args.messages,
                                               args.concurrency)),
                "fcm": asyncio.run(bench_fcm(fcm_url, ports["ca"], str(account),
                                             args.messages, args.concurrency,
                                             not args.fcm_http1)),
            }
        finally:
            sink.send_signal(signal.SIGTERM)
            sink.wait(30)
    report(results, args)


def report(results: dict[str, dict[str, float]], args: Any) -> None:
    if args.json:
        print(json.dumps(results, indent=2))
        return
    fcm_proto = "HTTP/1.1" if args.fcm_http1 else "HTTP/2 + TLS"
    print(f"push delivery, {args.messages} messages x {args.rounds} rounds, "
          f"{args.concurrency} in flight (median msgs/s)")
    print(f"{'':6} {'connector':>10} {'channel':>10} {'plain httpx':>12} {'ratio':>7}  target")
    for name, r in results.items():
        proto = "HTTP/2 + TLS" if name == "apns" else fcm_proto
        ok = "ok" if r["connector"] >= TARGET else "BELOW"
        print(f"{name:6} {r['connector']:10.0f} {r['channel']:10.0f} {r['plain']:12.0f} "
              f"{r['ratio']:7.2f}  >= {TARGET:.0f}: {ok}  ({proto})")
    print("client CPU per message (µs; one free core sends 1e6 / this per second)")
    for name, r in results.items():
        print(f"{name:6} {r['connector_cpu_us']:10.0f} {r['channel_cpu_us']:10.0f} "
              f"{r['plain_cpu_us']:12.0f} {r['cpu_ratio']:7.2f}")
    print("server CPU per message (µs; the sink process, same runs)")
    for name, r in results.items():
        print(f"{name:6} {r['connector_server_cpu_us']:10.0f} "
              f"{r['channel_server_cpu_us']:10.0f} {r['plain_server_cpu_us']:12.0f}")


if __name__ == "__main__":
    main()
