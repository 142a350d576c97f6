"""Slow and stalled clients against a real ``msgcenter serve``: they hold sockets, never the
workers; pushes keep being answered and none is lost; the server closes what stalls."""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time

import pytest
from conftest import LiveServer
from sqlalchemy import create_engine, text
from test_ingest_serve import TOKEN, prepare, stop

PUSH = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
    f"<urn:sessiontoken>{TOKEN}</urn:sessiontoken><urn:domEvent>"
    '<rtEvent type="welcome" email="ann@example.com" externalId="{n}"><ctx><n>{n}</n></ctx>'
    "</rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
)


def address(server: LiveServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def stall(server: LiveServer, kind: str) -> socket.socket:
    """A connection that starts a request and stops: mid-body or mid-headers."""
    sock = socket.create_connection(address(server), timeout=30)
    if kind == "body":
        sock.sendall(b"POST /nl/jsp/soaprouter.jsp HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<soapenv:En")
    else:
        sock.sendall(b"POST /nl/jsp/soaprouter.jsp HTTP/1.1\r\nHost: x\r\nContent-Ty")
    return sock


def push(server: LiveServer, n: int, timeout: float) -> str:
    """One PushEvent over a fresh connection; its plId (raises on a fault or no answer)."""
    conn = http.client.HTTPConnection(*address(server), timeout=timeout)
    try:
        conn.request("POST", "/nl/jsp/soaprouter.jsp", PUSH.replace("{n}", str(n)).encode(),
                     {"Content-Type": "text/xml; charset=utf-8",
                      "SOAPAction": '"nms:rtEvent#PushEvent"'})
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, body
    found = re.search(r"<plId[^>]*>(\d+)</plId>", body)
    assert found, body
    return found.group(1)


def stored_external_ids(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT external_id FROM events"))]
    finally:
        engine.dispose()


def test_fifty_stalled_connections_do_not_stop_pushes(start_server, database_url: str):
    """50 connections stalled mid-body and mid-headers (more than the server has threads in
    all its processes) while 4 clients push 80 events: every push is answered within the
    client's 10 s timeout (gunicorn's sync workers made each wait for the 60 s worker
    timeout), and every acknowledged event is stored."""
    prepare(database_url)
    server = start_server(database_url, "--workers", "2", init=False)
    stalled = [stall(server, "body" if i % 2 else "headers") for i in range(50)]
    answered: dict[int, str] = {}
    errors: list[BaseException] = []

    def client(first: int) -> None:
        for n in range(first, first + 20):
            try:
                answered[n] = push(server, n, timeout=10)
            except BaseException as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(i * 20,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(answered) == 80 and len(set(answered.values())) == 80
    assert sorted(stored_external_ids(database_url), key=int) == [str(n) for n in range(80)]
    # the stalled connections were held, not dropped: each is still open now
    for sock in stalled:
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        sock.close()
    assert stop(server) == 0


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (or the deadline)."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server did not close the connection; got {received[:200]!r}")


def test_a_stalled_connection_is_closed_after_the_read_timeout(start_server, sqlite_url: str):
    """With MC_HTTP_READ_TIMEOUT=1, a request stalled mid-body gets 408 and is closed, a
    request stalled mid-headers and an idle keep-alive connection are closed; the server
    still answers afterwards."""
    prepare(sqlite_url)
    server = start_server(sqlite_url, "--workers", "1", init=False,
                          env={"MC_HTTP_READ_TIMEOUT": "1"})
    body, headers = stall(server, "body"), stall(server, "headers")
    idle = socket.create_connection(address(server), timeout=30)
    deadline = time.monotonic() + 30
    assert read_until_closed(body, deadline).startswith(b"HTTP/1.1 408 ")
    assert read_until_closed(headers, deadline).startswith(b"HTTP/1.1 408 ")
    assert read_until_closed(idle, deadline) == b""
    assert push(server, 1, timeout=10)
    assert "http.read_timeout" in server.log()
    assert stop(server) == 0
