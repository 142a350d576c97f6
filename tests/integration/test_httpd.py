"""The HTTP/1.1 front (``soap_service.httpd``) over real loopback sockets: whole requests
reach the application, keep-alive and pipelining, chunked and ``Expect`` bodies, limits
(headers, body, drain cap, read timeout), malformed HTTP and graceful shutdown.

The application behind it is a small WSGI function that echoes what it received, so each
test sees exactly what the front handed over."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from soap_service import httpd

LIMITS = httpd.Limits(read_timeout=1.0, max_body=1000, drain_cap=5000, max_header_bytes=2000)


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers JSON describing the request; ``/close`` asks for Connection: close."""
    body = environ["wsgi.input"].read()
    seen = {k: v for k, v in environ.items() if isinstance(v, str)}
    seen["body"] = body.decode("latin-1")
    out = json.dumps(seen).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    if environ["PATH_INFO"] == "/close":
        headers.append(("Connection", "close"))
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("application failure")
    start_response("200 OK", headers)
    return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [out]


def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """``echo_app``, a quarter of a second later: the client acts while it runs."""
    time.sleep(0.25)
    return echo_app(environ, start_response)


class Running:
    """A front on its own loop thread, accepting as ``serve`` does (:class:`httpd.Acceptor`
    on a listening socket; ``spread`` as with several HTTP processes)."""

    def __init__(self, limits: httpd.Limits = LIMITS, app: Any = echo_app,
                 spread: bool = False, listener: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = ThreadPoolExecutor(2)
        self.front: httpd.Front | None = None
        self.own_listener = listener is None
        self.listener = listener or socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                self.front = httpd.Front(app, limits, self.executor, "0")
                self.acceptor = httpd.Acceptor(self.front, self.listener, spread=spread)
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def shutdown(self, timeout: float) -> int:
        assert self.front is not None
        future = asyncio.run_coroutine_threadsafe(self.front.shutdown(timeout), self.loop)
        return future.result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.acceptor.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.executor.shutdown()
        if self.own_listener:
            self.listener.close()


@pytest.fixture
def server() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


@pytest.fixture
def patient_server() -> Iterator[Running]:
    """A front whose read timeout never fires during a test."""
    running = Running(httpd.Limits(read_timeout=60.0, max_body=1000))
    yield running
    running.stop()


_readers: weakref.WeakKeyDictionary[socket.socket, Any] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from the socket (Content-Length framed); bytes of the next
    response already received stay buffered for the next call."""
    reader = _readers.setdefault(sock, sock.makefile("rb"))
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("closed before a response")
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (reads until EOF, 10 s at most)."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, TimeoutError):
        return False
    return True


def test_keep_alive_and_pipelining(server: Running) -> None:
    """Three requests on one connection, the last two pipelined in one write: three
    answers in order, the connection stays open."""
    sock = server.connect()
    sock.sendall(b"GET /one?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body = read_response(sock)
    assert status == 200 and "connection" not in headers and "date" in headers
    assert json.loads(body)["QUERY_STRING"] == "x=1"
    sock.sendall(b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                 b"GET /three HTTP/1.1\r\nHost: h\r\n\r\n")
    first, second = read_response(sock), read_response(sock)
    assert json.loads(first[2])["body"] == "abc" and json.loads(first[2])["PATH_INFO"] == "/two"
    assert json.loads(second[2])["PATH_INFO"] == "/three"
    sock.close()


def test_chunked_and_expect_continue_bodies_arrive_whole(server: Running) -> None:
    """A chunked body is decoded and handed over whole, without Content-Length; a client
    that waits for 100 Continue gets it before sending its body."""
    sock = server.connect()
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    seen = json.loads(read_response(sock)[2])
    assert seen["body"] == "abcde" and "CONTENT_LENGTH" not in seen
    assert seen["HTTP_TRANSFER_ENCODING"] == "chunked"
    sock.sendall(b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 4\r\n\r\n")
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"wxyz")
    assert json.loads(read_response(sock)[2])["body"] == "wxyz"


def test_http10_head_underscores_and_percent_decoding(server: Running) -> None:
    """HTTP/1.0 closes unless it asks for keep-alive; HEAD gets headers only; a header
    name with an underscore is dropped; the path is percent-decoded."""
    sock = server.connect()
    sock.sendall(b"GET /a%20b HTTP/1.0\r\nX_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\n\r\n")
    status, headers, body = read_response(sock)
    seen = json.loads(body)
    assert seen["PATH_INFO"] == "/a b" and seen["HTTP_X_OK"] == "1"
    assert "HTTP_X_FORWARDED_FOR" not in seen
    assert headers["connection"] == "close" and closed(sock)
    sock = server.connect()
    sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body = read_response(sock)
    assert status == 200 and int(headers["content-length"]) > 0 and body.startswith(b"HTTP/1.1")
    sock.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n", 431),
])
def test_bad_requests_are_refused_and_closed(server: Running, request_bytes: bytes,
                                             status: int) -> None:
    """Malformed HTTP, request smuggling shapes, control characters and oversized headers:
    a 4xx and the connection is closed; the application never sees them."""
    sock = server.connect()
    sock.sendall(request_bytes)
    assert read_response(sock)[0] == status
    assert closed(sock)


def test_an_oversized_body_is_drained_then_answered_and_closed(server: Running) -> None:
    """Over max_body: the application gets the declared length and no body (it answers
    its own error), the body is read and discarded, the connection closes; past the drain
    cap the connection is cut."""
    sock = server.connect()
    sock.sendall(b"POST /close HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000)
    status, headers, body = read_response(sock)
    assert status == 200
    seen = json.loads(body)
    assert seen["CONTENT_LENGTH"] == "3000" and seen["body"] == ""
    assert headers["connection"] == "close" and closed(sock)
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(4):  # 8,000 bytes: past the drain cap
        sock.sendall(b"7d0\r\n" + b"y" * 2000 + b"\r\n")
    assert closed(sock)


def test_read_timeout_closes_stalled_and_idle_connections(server: Running) -> None:
    """A request stalled mid-body gets 408; an idle connection is just closed."""
    stalled, idle = server.connect(), server.connect()
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
    assert read_response(stalled)[0] == 408 and closed(stalled)
    assert idle.recv(10) == b"" and closed(idle)


def test_application_errors_are_a_500_and_the_server_goes_on(server: Running) -> None:
    sock = server.connect()
    sock.sendall(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
    assert read_response(sock)[0] == 500 and closed(sock)
    sock = server.connect()
    sock.sendall(b"GET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
    assert read_response(sock)[0] == 200


def test_shutdown_closes_idle_connections_and_lets_requests_finish(
        patient_server: Running) -> None:
    """Graceful shutdown: idle keep-alive connections are closed at once; a request whose
    body is still arriving is answered once complete (with Connection: close)."""
    server = patient_server
    idle, busy = server.connect(), server.connect()
    busy.sendall(b"POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab")
    deadline = time.monotonic() + 10  # both connections accepted and the body begun
    while server.front is not None and len(server.front.connections) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(server.shutdown(5)))
    waiter.start()
    assert closed(idle)
    busy.sendall(b"cd")
    status, headers, body = read_response(busy)
    assert status == 200 and json.loads(body)["body"] == "abcd"
    assert headers["connection"] == "close"
    waiter.join(10)
    assert result == [0]


def test_input_that_arrives_while_a_request_runs() -> None:
    """Reading goes on while the application runs: a request pipelined meanwhile is
    answered after the first, in order, and a client that ends its input (half-close)
    before the answer still gets every answer, then the connection closes."""
    server = Running(httpd.Limits(read_timeout=5.0, max_body=1000), app=slow_app)
    try:
        sock = server.connect()
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n")
        time.sleep(0.1)  # the application is running
        sock.sendall(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        first, second = read_response(sock), read_response(sock)
        assert json.loads(first[2])["PATH_INFO"] == "/one"
        assert json.loads(second[2])["PATH_INFO"] == "/two"
        assert closed(sock)
    finally:
        server.stop()


# ---------------------------------------------------------------- accepting


def test_the_wait_before_accepting_grows_with_the_connections_held_and_is_capped() -> None:
    """Spreading: a process holding no connection accepts at once; one holding more
    waits longer (so that a less loaded process takes the connection), never beyond
    ``MAX_WAIT``."""
    waits = [httpd.Acceptor.wait_for(held) for held in range(20)]
    assert waits[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(waits) if b < httpd.Acceptor.MAX_WAIT)
    assert max(waits) == httpd.Acceptor.MAX_WAIT


def _connect_and_get(running: Running, opened: list[socket.socket]) -> int:
    """A new connection (kept in ``opened``) and one GET on it: the answer's status."""
    sock = running.connect()
    opened.append(sock)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return read_response(sock)[0]


def test_a_spreading_front_that_holds_connections_still_accepts_and_answers() -> None:
    """With ``spread`` on and five connections held (each answered once), a sixth is
    accepted after the wait and answered; so is every one of a burst of five more
    opened at once -- the wait delays a connection, never drops it."""
    running = Running(spread=True)
    held: list[socket.socket] = []
    try:
        for _ in range(6):
            assert _connect_and_get(running, held) == 200
        burst = [running.connect() for _ in range(5)]
        held.extend(burst)
        for sock in burst:
            sock.sendall(b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [read_response(sock)[0] for sock in burst] == [200] * 5
        assert running.front is not None and len(running.front.connections) == 11
    finally:
        for sock in held:
            sock.close()
        running.stop()


def test_two_fronts_on_one_listening_socket_share_it_and_both_answer() -> None:
    """Two fronts (as two HTTP processes) accept from one listening socket: every
    connection is answered by one of them, and each connection is held by exactly one."""
    listener = socket.create_server(("127.0.0.1", 0))
    first, second = Running(spread=True, listener=listener), Running(spread=True,
                                                                     listener=listener)
    socks: list[socket.socket] = []
    try:
        for _ in range(8):
            assert _connect_and_get(first, socks) == 200
        assert first.front is not None and second.front is not None
        assert len(first.front.connections) + len(second.front.connections) == 8
    finally:
        for sock in socks:
            sock.close()
        first.stop()
        second.stop()
        listener.close()


class _Exhausted:
    """A listening socket whose first ``accept`` fails as when the process is out of file
    descriptors (``EMFILE``); the rest is the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.failures = 1

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_an_accept_that_fails_for_lack_of_descriptors_pauses_then_goes_on(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """``EMFILE`` on accept: one warning, accepting pauses (no busy loop on a socket that
    stays readable), then resumes and the waiting connection is answered."""
    monkeypatch.setattr(httpd.Acceptor, "RETRY_AFTER", 0.2)
    listener = _Exhausted(socket.create_server(("127.0.0.1", 0)))
    running = Running(listener=listener)
    try:
        with caplog.at_level("WARNING", logger="soap_service.httpd"):
            sock = running.connect()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
        failures = [r for r in caplog.records if "http.accept_failed" in r.getMessage()]
        assert len(failures) == 1 and f"errno={errno.EMFILE}" in failures[0].getMessage()
        sock.close()
    finally:
        running.stop()
        listener.sock.close()
