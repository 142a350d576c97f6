"""A scriptable HTTP/2 server over TLS (asyncio + h2, certificates from trustme) for the
tests of :mod:`soap_service.channels.h2client`: what hypercorn cannot be told to do --
refuse more than N concurrent streams, hold answers until N requests are in flight,
send GOAWAY mid-flight, stall, drop the connection, keep its receive windows small.

It runs on the test's event loop, on a free port, and speaks HTTP/2 only (ALPN ``h2``;
``alpn=["http/1.1"]`` makes it an HTTP/1.1-only server for the negotiation test).
Every request's answer is ``200`` with the request body echoed, unless its path says
otherwise: ``/stall`` (never answered), ``/drop`` (the connection is cut),
``/size/N`` (N bytes of answer), ``/status/N`` (that status, two ``x-twice`` headers),
``/bad-status`` (``:status: 2x0``), ``/refused`` (RST_STREAM ``REFUSED_STREAM`` the first
time).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import trustme
from hyperframe.frame import GoAwayFrame


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int  # 1 for the first connection the peer accepted, 2 for the next...
    stream_id: int


@dataclass
class H2Peer:
    ca: trustme.CA
    max_streams: int = 1000  # SETTINGS_MAX_CONCURRENT_STREAMS
    initial_window: int = 65535  # SETTINGS_INITIAL_WINDOW_SIZE (per stream)
    hold_until: int = 0  # answers wait until this many requests were in flight at once
    goaway_after: int = 0  # on the first connection: GOAWAY once this many requests came
    goaway_last: int = 0  # ... naming the N-th of them as the last one processed
    goaway_ids: list[int] = field(default_factory=list)  # (stream ids then in flight)
    alpn: list[str] = field(default_factory=lambda: ["h2"])
    received: list[Received] = field(default_factory=list)
    active: int = 0  # requests received and not yet answered (or reset)
    max_active: int = 0
    connections: int = 0
    resets: int = 0  # streams the client reset
    port: int = 0
    _server: asyncio.Server | None = None
    _released: asyncio.Event | None = None

    async def start(self) -> H2Peer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        context.set_alpn_protocols(self.alpn)
        self._released = asyncio.Event()
        if not self.hold_until:
            self._released.set()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _PeerConnection(self), "127.0.0.1",
                                                0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(_PeerConnection.live):
                if conn.peer is self and conn.transport is not None:
                    conn.transport.abort()

    def _arrived(self) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        if self.hold_until and self.active >= self.hold_until:
            assert self._released is not None
            self._released.set()


class _PeerConnection(asyncio.Protocol):
    live: set[_PeerConnection] = set()

    def __init__(self, peer: H2Peer) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.requests: dict[int, tuple[dict[str, str], list[bytes]]] = {}
        self.window_opened = asyncio.Event()
        self.number = 0
        self.count = 0  # requests that arrived on this connection

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.live.add(self)
        self.peer.connections += 1
        self.number = self.peer.connections
        codes = h2.settings.SettingCodes
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            codes.MAX_CONCURRENT_STREAMS: self.peer.max_streams,
            codes.INITIAL_WINDOW_SIZE: self.peer.initial_window})
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.window_opened.set()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = (dict(event.headers), [])  # type: ignore
                self.peer._arrived()
                self.count += 1
                if self.peer.goaway_after and self.number == 1 \
                        and self.count == self.peer.goaway_after:
                    self.goaway()
            elif isinstance(event, h2.events.DataReceived):
                self.requests[event.stream_id][1].append(event.data)  # type: ignore
                self.h2.acknowledge_received_data(event.flow_controlled_length,  # type: ignore
                                                  event.stream_id)  # type: ignore
            elif isinstance(event, h2.events.StreamEnded):
                asyncio.get_running_loop().create_task(self.answer(event.stream_id))  # type: ignore
            elif isinstance(event, h2.events.StreamReset):
                if self.requests.pop(event.stream_id, None) is not None:  # type: ignore
                    self.peer.active -= 1
                    self.peer.resets += 1
            elif isinstance(event, h2.events.WindowUpdated):
                self.window_opened.set()
        self.flush()

    def goaway(self) -> None:
        """GOAWAY naming the ``goaway_last``-th stream in flight as the last processed
        (written raw: h2 would refuse to answer anything after it)."""
        self.peer.goaway_ids = sorted(self.requests)
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.peer.goaway_ids[self.peer.goaway_last - 1]
        frame.error_code = 0
        self.flush()
        assert self.transport is not None
        self.transport.write(frame.serialize())

    async def answer(self, stream_id: int) -> None:
        peer = self.peer
        if stream_id not in self.requests:
            return
        headers, chunks = self.requests[stream_id]
        body = b"".join(chunks)
        path = headers[":path"]
        peer.received.append(Received(path, headers, body, self.number, stream_id))
        assert peer._released is not None
        await peer._released.wait()
        if path == "/stall":
            return
        if path == "/refused" and not any(r.path == "/refused" for r in
                                          peer.received[:-1]):
            self.requests.pop(stream_id, None)
            peer.active -= 1
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            self.flush()
            return
        if path == "/drop":
            assert self.transport is not None
            self.transport.abort()
            return
        status, extra = "200", [("content-type", "application/octet-stream")]
        if path == "/bad-status":
            status = "2x0"
        elif path.startswith("/size/"):
            body = b"y" * int(path[len("/size/"):])
        elif path.startswith("/status/"):
            status = path[len("/status/"):]
            extra = [("x-twice", "one"), ("x-twice", "two"), ("retry-after", "7")]
        if stream_id not in self.requests:
            return  # reset by the client meanwhile
        self.h2.send_headers(stream_id, [(":status", status),
                                         ("content-length", str(len(body))), *extra],
                             end_stream=not body)
        self.flush()
        while body:
            size = min(len(body), self.h2.local_flow_control_window(stream_id),
                       self.h2.max_outbound_frame_size)
            if size <= 0:
                self.window_opened.clear()
                await self.window_opened.wait()
                if self.transport is None or self.transport.is_closing():
                    return
                continue
            self.h2.send_data(stream_id, body[:size], end_stream=size == len(body))
            body = body[size:]
            self.flush()
        self.requests.pop(stream_id, None)
        peer.active -= 1
