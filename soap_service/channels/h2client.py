"""A lean HTTP/2 client for the push connectors: many requests multiplexed over one TLS
connection, written directly on the ``h2`` state machine.

Why not httpx: sending a notification through ``httpx.AsyncClient(http2=True)`` costs
about a millisecond of CPU, most of it httpx's and httpcore's own bookkeeping around
``h2`` (locks, per-request connection-pool scans, per-stream event queues).  This client
does only what APNs and FCM need -- ``POST`` small bodies, read small answers -- and keeps
what HTTP/2 requires:

* **one connection per origin**, opened on first use (TLS with ALPN ``h2``, the caller's
  ``ssl.SSLContext`` so a test CA can be trusted), reopened after it is lost;
* **streams**: at most ``min(max_streams, the server's SETTINGS_MAX_CONCURRENT_STREAMS)``
  in flight; further requests wait, first come first served, for a stream to end.  The
  first request waits for the server's SETTINGS before opening any stream;
* **flow control**: request bodies are sent as the server's connection and stream
  windows allow (the rest waits for ``WINDOW_UPDATE``), received data is acknowledged as
  it is consumed, and the connection window is opened wide for answers;
* **GOAWAY**: no new stream on that connection; streams the server says it did not
  process (id above its last-stream-id) are sent again, once, on a new connection; the
  others are still read to their end on the old one, which then closes (h2 itself stops
  reading at a GOAWAY: :class:`_H2Connection` keeps it reading).  A stream reset with
  ``REFUSED_STREAM`` was not processed either, and is sent again once too;
* **loss** (reset, protocol error, TLS close): the streams in flight fail with
  :class:`ConnectionLost`; the next request connects again;
* **timeout**: ``timeout`` seconds per request, connecting and waiting for a stream
  included; on expiry the stream is reset (``CANCEL``) and :class:`RequestTimeout` raised.
  When the server sent nothing at all while the request waited, the connection is
  presumed dead (a silent drop): later requests open a new one.

Every failure is a :class:`TransportError` (the connectors make it a temporary result).
Writes are coalesced: what every request of one event-loop iteration produced goes out
in one TLS write.  Nothing is logged but connection events (never a path or a header).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from h2.errors import ErrorCodes
from hpack import NeverIndexedHeaderTuple

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of an answer; a longer one resets the stream (push answers are tiny)
CONNECTION_WINDOW = 1 << 24  # our receive window for the whole connection
# Outbound headers are built here already lower-case and valid, so h2's per-request
# normalisation and validation (a fifth of the CPU of a request) are skipped; answers from
# the server are still validated.
_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                    validate_inbound_headers=True,
                                    normalize_outbound_headers=False,
                                    validate_outbound_headers=False)
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


class _H2Connection(h2.connection.H2Connection):
    """h2's connection, except that a received GOAWAY does not stop it from reading: the
    streams the server still answers (ids up to its last stream id) can finish, as RFC
    9113 §6.8 intends.  No new stream is opened on it (``_Connection.usable``)."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        if state is not h2.connection.ConnectionState.CLOSED:
            self.state_machine.state = state
        return result


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: in pure Python, Huffman-coding the provider token of
    every request cost more CPU than the rest of the request's headers (RFC 7541 lets
    each string choose; the cost is ~50 bytes a request)."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


class TransportError(Exception):
    """No HTTP answer came back (the base of every failure of this module)."""


class ConnectFailed(TransportError):
    """TCP connect, TLS handshake or ALPN failed."""


class RequestTimeout(TransportError):
    """No complete answer within the request's timeout."""


class ConnectionLost(TransportError):
    """The connection or the stream ended before the answer was complete."""


class _NotProcessed(ConnectionLost):
    """GOAWAY named a last stream below this one: the server never saw it (safe to resend)."""


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status, headers (lower-case names, repeated ones joined by
    ``", "``) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Stream:
    __slots__ = ("chunks", "future", "headers", "id", "pending", "size", "status")

    def __init__(self, stream_id: int, future: asyncio.Future[Response]) -> None:
        self.id = stream_id
        self.future = future
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.pending: memoryview | None = None  # request body still to send (flow control)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection (an asyncio protocol over the TLS transport)."""

    def __init__(self, client: H2Client) -> None:
        self.client = client
        self.loop = client.loop
        self.h2 = _H2Connection(config=_CONFIG)
        self.h2.encoder = _PlainEncoder()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.blocked: dict[int, _Stream] = {}  # streams waiting for window to send their body
        self.ready: asyncio.Future[None] = self.loop.create_future()  # server SETTINGS seen
        self.usable = True  # False once GOAWAY, lost, closed or out of stream ids
        self.limit = client.max_streams
        self.reads = 0  # data_received calls: did the server say anything lately?
        self._flush_pending = False

    # ---------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        codes = h2.settings.SettingCodes
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            codes.ENABLE_PUSH: 0, codes.MAX_CONCURRENT_STREAMS: 100,
            codes.MAX_HEADER_LIST_SIZE: 65536})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW)
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._abort(ConnectionLost(f"HTTP/2 protocol error from the server: {exc}"))
            return
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if event.flow_controlled_length:  # type: ignore[attr-defined]
                    self.h2.acknowledge_received_data(
                        event.flow_controlled_length,  # type: ignore[attr-defined]
                        event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    chunk = event.data  # type: ignore[attr-defined]
                    stream.size += len(chunk)
                    stream.chunks.append(chunk)
                    if stream.size > MAX_BODY:
                        self._reset(stream, ConnectionLost(
                            f"answer body over {MAX_BODY} bytes"))
            elif kind is h2.events.ResponseReceived:
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    self._headers(stream, event.headers)  # type: ignore[attr-defined]
            elif kind is h2.events.StreamEnded:
                stream = streams.pop(event.stream_id, None)  # type: ignore[attr-defined]
                if stream is not None:
                    self.blocked.pop(stream.id, None)
                    if not stream.future.done():
                        stream.future.set_result(Response(
                            stream.status, stream.headers, b"".join(stream.chunks)))
                    self.client._released(self)
            elif kind is h2.events.WindowUpdated:
                if self.blocked:
                    self._send_blocked()
            elif kind is h2.events.RemoteSettingsChanged:
                self._settings()
            elif kind is h2.events.StreamReset:
                stream = streams.pop(event.stream_id, None)  # type: ignore[attr-defined]
                if stream is not None:
                    self.blocked.pop(stream.id, None)
                    code = _code_name(event.error_code)  # type: ignore[attr-defined]
                    if not stream.future.done():  # REFUSED_STREAM: not processed (§8.7)
                        error = _NotProcessed if code == "REFUSED_STREAM" else ConnectionLost
                        stream.future.set_exception(
                            error(f"stream reset by the server ({code})"))
                    self.client._released(self)
            elif kind is h2.events.ConnectionTerminated:
                self._goaway(event)  # type: ignore[arg-type]
            elif kind is h2.events.InformationalResponseReceived:
                continue  # 100-continue and friends: the final answer follows
            elif kind is h2.events.PushedStreamReceived:  # never enabled; refuse anyway
                self.h2.reset_stream(event.pushed_stream_id,  # type: ignore[attr-defined]
                                     ErrorCodes.REFUSED_STREAM)
        self._flush_soon()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        why = f"connection lost: {exc}" if exc else "connection closed by the server"
        self._fail_all(ConnectionLost(why))
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(why))
        self.client._forget(self)

    # ---------------------------------------------------------------- requests

    def open_stream(self, method: str, authority: str, path: str,
                    headers: Mapping[str, str], body: bytes) -> _Stream:
        """Send the request's HEADERS (and as much of its body as the windows allow)."""
        h2c = self.h2
        stream_id = h2c.get_next_available_stream_id()
        request: list[Any] = [(b":method", method.encode()), (b":scheme", b"https"),
                              (b":authority", authority.encode()), (b":path", path.encode())]
        for name, value in headers.items():
            name = name.lower()
            if name in _SECRET_HEADERS:  # never in the HPACK table (as h2 would do)
                request.append(NeverIndexedHeaderTuple(name.encode(), value.encode()))
            else:
                request.append((name.encode(), value.encode()))
        if body:
            request.append((b"content-length", str(len(body)).encode()))
        h2c.send_headers(stream_id, request, end_stream=not body)
        stream = _Stream(stream_id, self.loop.create_future())
        self.streams[stream_id] = stream
        self._flush_soon()
        if body:
            try:
                if len(body) <= h2c.local_flow_control_window(stream_id) \
                        and len(body) <= h2c.max_outbound_frame_size:
                    h2c.send_data(stream_id, body, end_stream=True)
                else:
                    stream.pending = memoryview(body)
                    self._send_body(stream)
            except h2.exceptions.ProtocolError:
                self.cancel(stream)  # its slot must not leak
                raise
        return stream

    def cancel(self, stream: _Stream) -> None:
        """The caller gave up (timeout): reset the stream, free its slot."""
        if self.streams.pop(stream.id, None) is not None:
            self.blocked.pop(stream.id, None)
            if self.transport is not None and not self.transport.is_closing():
                with contextlib.suppress(h2.exceptions.ProtocolError):  # closed already
                    self.h2.reset_stream(stream.id, ErrorCodes.CANCEL)
                self._flush_soon()
            self.client._released(self)

    def close(self) -> None:
        """Say goodbye (GOAWAY) and close; streams still open fail."""
        self.usable = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
                transport.write(self.h2.data_to_send())
            transport.close()
        self._fail_all(ConnectionLost("the client closed the connection"))

    def free(self) -> bool:
        return self.usable and len(self.streams) < self.limit

    # ---------------------------------------------------------------- internals

    def _send_body(self, stream: _Stream) -> None:
        h2c = self.h2
        data = stream.pending
        assert data is not None
        while data:
            size = min(len(data), h2c.local_flow_control_window(stream.id),
                       h2c.max_outbound_frame_size)
            if size <= 0:
                stream.pending = data
                self.blocked[stream.id] = stream
                return
            h2c.send_data(stream.id, data[:size].tobytes(), end_stream=size == len(data))
            data = data[size:]
        stream.pending = None
        self.blocked.pop(stream.id, None)

    def _send_blocked(self) -> None:
        for stream in list(self.blocked.values()):
            try:
                self._send_body(stream)
            except h2.exceptions.ProtocolError as exc:  # the stream closed meanwhile
                self._reset(stream, ConnectionLost(f"cannot send the body: {exc}"))

    def _headers(self, stream: _Stream, raw: list[tuple[bytes, bytes]]) -> None:
        headers = stream.headers
        for name, value in raw:
            if name == b":status":
                if not (value.isdigit() and len(value) == 3):
                    self._reset(stream, ConnectionLost(f"bad :status {value[:20]!r}"))
                    return
                stream.status = int(value)
            elif name[:1] != b":":
                key = name.decode("ascii", "replace")
                text = value.decode("utf-8", "replace")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def _settings(self) -> None:
        remote = self.h2.remote_settings.max_concurrent_streams
        self.limit = min(self.client.max_streams, remote)  # 0: wait (until a new SETTINGS)
        if not self.ready.done():
            self.ready.set_result(None)
        if self.blocked:  # a new initial window size may unblock bodies
            self._send_blocked()
        self.client._released(self)

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """The server takes no new stream: the streams above its last stream id were
        never processed (sent again on a new connection), the others may still be
        answered here (the connection closes once they are)."""
        self.usable = False
        self.client._forget(self)
        last = event.last_stream_id or 0
        code = _code_name(event.error_code)
        log.info("h2client.goaway host=%s code=%s last_stream=%s in_flight=%d",
                 self.client.host, code, last, len(self.streams))
        for stream_id in [i for i in self.streams if i > last]:
            stream = self.streams.pop(stream_id)
            self.blocked.pop(stream_id, None)
            if not stream.future.done():
                stream.future.set_exception(
                    _NotProcessed(f"GOAWAY ({code}) before the server processed it"))
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(f"GOAWAY ({code}) on connect"))
        if not self.streams and self.transport is not None:
            self.transport.close()

    def _reset(self, stream: _Stream, exc: TransportError) -> None:
        if self.streams.pop(stream.id, None) is not None:
            self.blocked.pop(stream.id, None)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(stream.id, ErrorCodes.CANCEL)
            if not stream.future.done():
                stream.future.set_exception(exc)
            self.client._released(self)

    def _abort(self, exc: TransportError) -> None:
        self.usable = False
        self._fail_all(exc)
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.write(self.h2.data_to_send())
            self.transport.close()

    def _fail_all(self, exc: TransportError) -> None:
        streams, self.streams = self.streams, {}
        self.blocked.clear()
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(exc)

    def _flush_soon(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        if not self.usable and not self.streams and self.transport is not None:
            self.transport.close()  # retired (stream ids used up, closing) and idle


def _code_name(code: Any) -> str:
    return getattr(code, "name", None) or str(code)


class H2Client:
    """HTTP/2 requests to one ``https`` origin (see the module doc).  Create it on the
    event loop that will use it; :meth:`aclose` when done."""

    def __init__(self, origin: str, context: ssl.SSLContext, *, timeout: float,
                 max_streams: int = 100) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"an https origin is needed, not {origin!r}")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.authority = parts.netloc.rsplit("@", 1)[-1]
        self.context = context
        self.context.set_alpn_protocols(["h2"])
        self.timeout = timeout
        self.max_streams = max(1, max_streams)
        self.loop = asyncio.get_running_loop()
        self.connections = 0  # connections opened (tests, health)
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """``POST`` to ``url`` (this origin's, or a path) and the whole answer."""
        return await self.request("POST", url, headers, body)

    async def request(self, method: str, url: str, headers: Mapping[str, str],
                      body: bytes = b"") -> Response:
        path = self._path(url)
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await self._once(method, path, headers, body)
                except _NotProcessed:
                    return await self._once(method, path, headers, body)
        except TimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout:g} s") from None

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionLost("the client is closed"))

    # ---------------------------------------------------------------- internals

    def _path(self, url: str) -> str:
        if url.startswith("/"):
            return url
        parts = urlsplit(url)
        if parts.scheme != "https" or parts.hostname != self.host \
                or (parts.port or 443) != self.port:
            raise ValueError("the URL is not on this client's origin")
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def _once(self, method: str, path: str, headers: Mapping[str, str],
                    body: bytes) -> Response:
        conn = self._conn
        if conn is None or not conn.free() or self._waiters:
            conn = await self._acquire()
        try:
            stream = conn.open_stream(method, self.authority, path, headers, body)
        except h2.exceptions.NoAvailableStreamIDError:
            conn.usable = False  # 2^30 streams used: a fresh connection takes over
            self._forget(conn)
            conn = await self._acquire()
            stream = conn.open_stream(method, self.authority, path, headers, body)
        except h2.exceptions.ProtocolError as exc:
            raise TransportError(f"request refused by the HTTP/2 layer: {exc}") from None
        reads = conn.reads
        try:
            return await stream.future
        except asyncio.CancelledError:
            conn.cancel(stream)
            if conn.reads == reads and conn.usable:
                # not a byte from the server while this request waited: the connection
                # may be dead (a silent NAT drop); new requests go to a fresh one, the
                # old one closes once its streams end
                log.info("h2client.retired host=%s reason=silent", self.host)
                conn.usable = False
                self._forget(conn)
                conn._flush_soon()
            raise

    async def _acquire(self) -> _Connection:
        """A usable connection with a free stream slot (connecting, or waiting in line)."""
        woken = False
        while True:
            if self._closed:
                raise ConnectionLost("the client is closed")
            conn = self._conn
            if conn is None or not conn.usable:
                conn = await self._connect()
            if conn.free() and (woken or not self._waiters):
                return conn
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake(1)  # woken, but giving up (timeout): pass the turn on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            woken = True

    async def _connect(self) -> _Connection:
        task = self._connecting
        if task is None:
            task = self._connecting = self.loop.create_task(self._open())
            task.add_done_callback(self._connected)
        return await asyncio.shield(task)

    def _connected(self, task: asyncio.Task[_Connection]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._wake(task.result().limit)

    async def _open(self) -> _Connection:
        """Connect, bounded by ``timeout`` of its own: a server that accepts and never
        completes TLS or never sends SETTINGS must not keep later requests waiting on it."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._handshake()
        except TimeoutError:
            raise ConnectFailed(f"no HTTP/2 connection within {self.timeout:g} s") from None

    async def _handshake(self) -> _Connection:
        try:
            transport, conn = await self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port, ssl=self.context,
                server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        ssl_object = transport.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if protocol != "h2":
            transport.close()
            raise ConnectFailed(f"the server does not offer HTTP/2 (ALPN: {protocol})")
        try:
            await conn.ready
        except BaseException:
            conn.close()
            raise
        self.connections += 1
        log.debug("h2client.connected host=%s port=%s streams=%d", self.host, self.port,
                  conn.limit)
        if self._closed:
            conn.close()
            raise ConnectionLost("the client is closed")
        self._conn = conn
        return conn

    def _released(self, conn: _Connection) -> None:
        """A stream of ``conn`` ended (or its limit grew): let waiting requests in."""
        if conn is self._conn and self._waiters:
            self._wake(conn.limit - len(conn.streams))

    def _wake(self, slots: int) -> None:
        waiters = self._waiters
        while slots > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                slots -= 1

    def _forget(self, conn: _Connection) -> None:
        """``conn`` takes no new streams: the next request (and those waiting) connect."""
        if self._conn is conn:
            self._conn = None
            while self._waiters:  # they go on to open the new connection
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
