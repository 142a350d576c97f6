"""The HTTP/1.1 front of ``msgcenter serve``: read whole requests without a thread, then run
the WSGI application in a thread pool.

Why it exists: a WSGI server that hands a connection to a worker before its body has
arrived (gunicorn's sync and gthread workers) lets a few clients that announce a body and
never send it hold every worker.  Here each process runs one asyncio loop that parses
requests with ``httptools`` (llhttp, the C parser uvicorn uses) and buffers each one —
headers, then the body up to ``max_body`` bytes — under a deadline.  Only a complete
request reaches a thread, so a stalled client costs a socket and a timer, never a worker.

Rules, per connection:

* a request must arrive whole (headers and body) within ``read_timeout`` seconds of the
  connection's start or of the previous answer; otherwise the connection is closed (with
  ``408`` if part of a request had arrived).  Idle keep-alive connections end the same way;
* headers larger than ``max_header_bytes`` get ``431`` and the connection is closed;
* a body over ``max_body`` is read and discarded up to ``drain_cap`` bytes, then the
  application answers it (its SOAP fault says "too large") and the connection is closed
  by the application's ``Connection: close``; beyond ``drain_cap`` the connection is cut;
* malformed HTTP (including ``Content-Length`` together with ``Transfer-Encoding``, which
  llhttp refuses) gets ``400`` and the connection is closed;
* one request at a time per connection: a client that sends more while the application
  runs (pipelining) has reading paused until the answer, so it cannot queue unbounded
  work.  (Reading is not paused for every request: most clients send nothing before the
  answer, and a pause and a resume cost two ``epoll_ctl`` calls.)  An end of input that
  arrives while a request runs is kept: the answer is written, then the connection
  closes.

The application sees a complete ``wsgi.input`` (``wsgi.input_terminated`` is set); chunked
bodies keep their ``Transfer-Encoding`` header and carry no ``CONTENT_LENGTH``.  Header
names with an underscore are dropped (``X_Forwarded_For`` must not pass for
``X-Forwarded-For``).  :class:`Front` owns the thread pool and the open connections;
``soap_service.cli.serve`` runs one per gunicorn worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_Answer = tuple[str, list[tuple[str, str]], bytes]  # status line, headers, body
SERVER_SOFTWARE = "msgcenter"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    read_timeout: float = 30.0  # seconds for a whole request to arrive
    max_body: int = 2 * 1024 * 1024  # bytes buffered for the application
    drain_cap: int = 64 * 1024 * 1024  # bytes of an oversized body read and discarded
    max_header_bytes: int = 64 * 1024


def _plain(status: int, reason: str) -> bytes:
    body = f"{reason}\n".encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


BAD_REQUEST = _plain(400, "Bad Request")
TIMEOUT = _plain(408, "Request Timeout")
HEADERS_TOO_LARGE = _plain(431, "Request Header Fields Too Large")
INTERNAL_ERROR = _plain(500, "Internal Server Error")


class _Date:
    """The ``Date`` header, formatted once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


@dataclass
class _Request:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    size: int = 0  # body bytes received
    oversize: bool = False
    method: str = "GET"
    version: str = "1.1"
    keep_alive: bool = True
    chunked: bool = False


class Front:
    """What the connections of one process share: the app, the limits, the thread pool."""

    def __init__(self, app: WsgiApp, limits: Limits, executor: Executor | None,
                 server_port: str = "80") -> None:
        self.app = app
        self.limits = limits
        self.executor = executor  # None: run the application on the loop (tests)
        self.server_port = server_port
        self.connections: set[HttpProtocol] = set()
        self.stopping = False

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    async def shutdown(self, timeout: float) -> int:
        """Close idle connections now, let requests in progress finish (up to ``timeout``
        seconds), then cut what is left; returns how many connections were cut."""
        self.stopping = True
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = list(self.connections)
        for conn in left:
            conn.abort()
        return len(left)


class Acceptor:
    """Accepts the connections of one listening socket that the HTTP processes share.

    asyncio's own server accepts every pending connection on each wake-up (up to its
    backlog), so when a client opens its pool (``wrk``'s 8 connections, a connection pool
    at start-up) the process that wakes first takes them all: measured with 2 processes,
    ``[8, 0]`` half the time, one process saturated (one core: the GIL) and the other
    idle.  Here a process accepts one connection per wake-up, and when ``spread`` is on
    (more than one process) it first waits ``held`` x ``STEP`` seconds (at most
    ``MAX_WAIT``), ``held`` being the connections it has open: every process is woken for
    a new connection, and the one holding the fewest takes it.  A connection is never
    refused for it; at worst it waits ``MAX_WAIT`` in the kernel's backlog.  With one
    process there is nobody to spread to and no wait.  An accept that fails for lack of
    resources (``EMFILE``...) pauses accepting for a second, logged, instead of spinning."""

    STEP = 0.0005
    MAX_WAIT = 0.003
    RETRY_AFTER = 1.0

    def __init__(self, front: Front, sock: Any, spread: bool) -> None:
        self.front = front
        self.sock = sock
        self.spread = spread
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[Any]] = set()  # connections being set up
        self.closed = False
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._ready)

    @classmethod
    def wait_for(cls, held: int) -> float:
        """Seconds a process holding ``held`` connections waits before accepting."""
        return min(held * cls.STEP, cls.MAX_WAIT)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            if self.timer is not None:
                self.timer.cancel()

    def _ready(self) -> None:
        wait = self.wait_for(len(self.front.connections) + len(self.tasks)) if self.spread else 0.0
        if wait <= 0.0:
            self._accept()
            return
        self.loop.remove_reader(self.sock.fileno())  # until the wait is over
        self.timer = self.loop.call_later(wait, self._after_wait)

    def _after_wait(self) -> None:
        self.timer = None
        if self.closed:
            return
        self.loop.add_reader(self.sock.fileno(), self._ready)
        self._accept()

    def _accept(self) -> None:
        try:
            conn, _addr = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it, or the client gave up first
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: wait, do not spin
            log.warning("http.accept_failed errno=%s retry_s=%.0f", exc.errno, self.RETRY_AFTER)
            self.loop.remove_reader(self.sock.fileno())
            self.timer = self.loop.call_later(self.RETRY_AFTER, self._after_wait)
            return
        conn.setblocking(False)
        task = self.loop.create_task(self._connect(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: Any) -> None:
        try:
            await self.loop.connect_accepted_socket(self.front.protocol, conn)
        except OSError:  # reset before its transport was made
            conn.close()


class HttpProtocol(asyncio.Protocol):
    """One client connection (see the module docstring for the rules)."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.limits = front.limits
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.request: _Request | None = None  # the one being read
        self.ready: deque[_Request] = deque()  # complete, waiting for the application
        self.busy = False  # the application is answering one of ours
        self.header_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.broken = False  # unparseable input: answer what was read, then close
        self.paused = False  # reading paused (input arrived while the application ran)
        self.eof = False  # the client's end of input came while a request was pending

    # -- connection life
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        self.front.connections.add(self)
        self._arm_timer()

    def eof_received(self) -> bool:
        """Keep the connection to answer the requests already read; else close it."""
        if self.busy or self.ready:
            self.eof = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.front.connections.discard(self)

    def _arm_timer(self) -> None:
        self._cancel_timer()
        self.timer = self.loop.call_later(self.limits.read_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.busy or self.ready:
            return
        if self.request is None:  # an idle keep-alive connection: nothing worth a line
            self._fail(None)
            return
        log.info("http.read_timeout peer=%s body_bytes=%d", self.peer[0], self.request.size)
        self._fail(TIMEOUT)

    def _fail(self, answer: bytes | None) -> None:
        """Answer (if given) and close; the rest of the input is ignored."""
        if self.transport is None or self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()
        self._cancel_timer()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if not self.busy and not self.ready and self.request is None:
            self._fail(None)

    # -- reading
    def data_received(self, data: bytes) -> None:
        if self.broken or self.transport is None or self.transport.is_closing():
            return
        if self.busy:  # pipelining: read no more until this answer is written
            self._pause()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self.transport.is_closing():
                return  # a limit callback already answered and closed
            raise
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            # malformed, or Upgrade / CONNECT (not served here): requests already read
            # are answered, then the connection closes
            self.broken = True
            self.request = None
            if not self.busy and not self.ready:
                self._fail(BAD_REQUEST)
                return
            self._pause()
        self._dispatch()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_begin(self) -> None:
        self.request = _Request()
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self.request is not None
        self.request.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.request is not None
        self.request.headers.append((name, value))
        self._count_header(len(name) + len(value) + 4)

    def _count_header(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > self.limits.max_header_bytes:
            self.request = None
            self._fail(HEADERS_TOO_LARGE)
            raise _Stop  # abandons this feed_data; the connection is closing

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None and self.transport is not None
        request.method = self.parser.get_method().decode("latin-1")
        request.version = self.parser.get_http_version()
        request.keep_alive = self.parser.should_keep_alive()
        expect = False
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"content-length" and value.strip().isdigit():
                request.oversize = int(value) > self.limits.max_body
            elif lower == b"transfer-encoding":
                request.chunked = b"chunked" in value.lower()
            elif lower == b"expect" and value.strip().lower() == b"100-continue":
                expect = True
        if expect and request.version == "1.1":
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        request = self.request
        assert request is not None
        request.size += len(body)
        if request.size > self.limits.drain_cap:
            self.request = None
            self._fail(None)  # nothing will answer this: the caller is flooding us
            raise _Stop
        if request.oversize:
            return  # drained: the application learns the size from the headers
        if request.size > self.limits.max_body:  # chunked, past the limit: keep limit + 1
            request.oversize = True
            kept = sum(len(p) for p in request.parts)
            request.parts.append(body[: self.limits.max_body + 1 - kept])
            return
        request.parts.append(body)

    def on_message_complete(self) -> None:
        assert self.request is not None
        self.ready.append(self.request)
        self.request = None
        self._cancel_timer()

    # -- answering
    def _dispatch(self) -> None:
        if self.busy or not self.ready or self.transport is None or self.transport.is_closing():
            return
        request = self.ready.popleft()
        try:
            environ = self._environ(request)
        except httptools.HttpParserError:  # a target llhttp let through but cannot split
            self._fail(BAD_REQUEST)
            return
        self.busy = True
        if self.front.executor is None:
            self._answer(request, self._run_app(environ))
            return
        self.front.executor.submit(self._run_in_thread, request, environ)

    def _environ(self, request: _Request) -> dict[str, Any]:
        url = httptools.parse_url(request.url) if request.url else None
        path = unquote_to_bytes(url.path or b"/").decode("latin-1") if url else "/"
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": (url.query or b"").decode("latin-1") if url else "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": self.front.server_port,
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "REMOTE_ADDR": self.peer[0],
            "REMOTE_PORT": str(self.peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b"".join(request.parts)),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.front.executor is not None,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper()
            if "_" in name:
                continue
            value = raw_value.decode("latin-1").strip()
            key = name.replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        if request.chunked:
            environ.pop("CONTENT_LENGTH", None)
        return environ

    def _run_in_thread(self, request: _Request, environ: dict[str, Any]) -> None:
        """In a pool thread: run the application, then answer on the loop (cheaper than
        ``run_in_executor``'s two chained futures)."""
        answer = self._run_app(environ)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process exits
            self.loop.call_soon_threadsafe(self._answer, request, answer)

    def _run_app(self, environ: dict[str, Any]) -> _Answer | None:
        """Run the application (in a pool thread): status, headers and whole body, or
        None if it raised (logged here, answered 500)."""
        try:
            return self._call_app(environ)
        except Exception:
            log.exception("http.app_error path=%s", str(environ.get("PATH_INFO"))[:100])
            return None

    def _call_app(self, environ: dict[str, Any]) -> _Answer:
        seen: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            seen[:] = [status, headers]
            return lambda _data: None

        result = self.front.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return seen[0], seen[1], body

    def _answer(self, request: _Request, answer: _Answer | None) -> None:
        self.busy = False
        if self.transport is None or self.transport.is_closing():
            return
        if answer is None:
            self._fail(INTERNAL_ERROR)
            return
        status, headers, body = answer
        keep = request.keep_alive and not self.front.stopping and not (
            self.broken and not self.ready)
        lines = [f"HTTP/1.1 {status}".encode("latin-1")]
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower == "connection":
                keep = keep and value.strip().lower() != "close"
                continue
            has_length = has_length or lower == "content-length"
            lines.append(f"{name}: {value}".encode("latin-1"))
        if not has_length:
            lines.append(b"Content-Length: %d" % len(body))
        lines.append(b"Date: " + _Date.now())
        if not keep:
            lines.append(b"Connection: close")
        elif request.version == "1.0":
            lines.append(b"Connection: keep-alive")
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        if not keep:
            self.transport.close()
            self._cancel_timer()
            return
        if self.ready:
            self._dispatch()
            return
        if self.eof:  # the client sent its end of input while this request ran
            self.transport.close()
            return
        self._arm_timer()
        if self.paused:
            self.paused = False
            self.transport.resume_reading()


class _Stop(Exception):
    """Raised from a parser callback to abandon the rest of a connection's input."""
