"""The push connectors' HTTP/2 client (``channels/h2client.py``) against real HTTP/2 servers
over TLS on loopback: the scriptable peer of ``tests/h2_peer.py`` (asyncio + h2) for what
must be provoked -- a stream limit, GOAWAY, a stall, a cut connection, small windows --
and hypercorn (the push peers' server) for a second, independent implementation."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from soap_service.channels.h2client import (
    ConnectFailed,
    ConnectionLost,
    H2Client,
    RequestTimeout,
    Response,
)
from soap_service.devserve import AsgiServer, free_port
from tests.h2_peer import H2Peer
from tests.push_peers import make_tls


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _run(ca: trustme.CA, test: Callable[[H2Peer], Awaitable[Any]], **peer_options: Any) -> Any:
    async def main() -> Any:
        peer = await H2Peer(ca, **peer_options).start()
        try:
            return await test(peer)
        finally:
            await peer.stop()
    return asyncio.run(main())


def _client(peer: H2Peer, timeout: float = 10.0, max_streams: int = 100) -> H2Client:
    return H2Client(peer.origin, peer.client_context(), timeout=timeout,
                    max_streams=max_streams)


async def _gather(client: H2Client, bodies: list[bytes]) -> list[Response | BaseException]:
    return list(await asyncio.gather(
        *(client.post(f"/echo/{i}", body, {"x-n": str(i)}) for i, body in enumerate(bodies)),
        return_exceptions=True))


def test_many_concurrent_requests_are_streams_of_one_connection(ca: trustme.CA) -> None:
    """300 requests, 100 streams allowed by the client: the server sees exactly 100 in
    flight at once (it holds every answer until 100 are there), all on one connection,
    and every answer goes back to its own request."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer, max_streams=100)
        try:
            bodies = [f"body {i}".encode() for i in range(300)]
            results = await _gather(client, bodies)
        finally:
            await client.aclose()
        assert [r.body if isinstance(r, Response) else r for r in results] == bodies
        assert {r.status for r in results if isinstance(r, Response)} == {200}
        assert peer.max_active == 100
        assert peer.connections == 1 and client.connections == 1
        assert sorted(int(r.headers["x-n"]) for r in peer.received) == list(range(300))
        assert {r.headers[":method"] for r in peer.received} == {"POST"}
        assert {r.headers["content-length"] for r in peer.received[:1]} == {"6"}
    _run(ca, test, hold_until=100)


def test_the_servers_limit_on_concurrent_streams_is_honoured(ca: trustme.CA) -> None:
    """The server allows 5 concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS): 50
    requests from a client that would allow 100 never have more than 5 in flight, and
    all succeed (a sixth stream would have been a protocol error)."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer, max_streams=100)
        try:
            results = await _gather(client, [b"x"] * 50)
        finally:
            await client.aclose()
        assert all(isinstance(r, Response) and r.status == 200 for r in results), results
        assert peer.max_active == 5
        assert peer.connections == 1
    _run(ca, test, max_streams=5, hold_until=5)


def test_status_and_headers_of_an_answer(ca: trustme.CA) -> None:
    """Status, lower-case headers, repeated ones joined with ", ", and the body."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            answer = await client.post(f"{peer.origin}/status/429", b"", {"X-Upper": "1"})
        finally:
            await client.aclose()
        assert answer.status == 429
        assert answer.headers["x-twice"] == "one, two"
        assert answer.headers["retry-after"] == "7"
        assert answer.body == b"" and answer.text == ""
        [seen] = peer.received
        assert seen.headers["x-upper"] == "1" and "content-length" not in seen.headers
    _run(ca, test)


def test_goaway_mid_flight_resends_what_the_server_did_not_process(ca: trustme.CA) -> None:
    """10 requests in flight; the server sends GOAWAY naming the 4th as its last: those 4
    are still answered on the first connection, the 6 above were not processed and are
    sent again on a new connection (never twice to the server), and all 10 succeed."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            results = await _gather(client, [f"m{i}".encode() for i in range(10)])
            after = await client.post("/after", b"later", {})
        finally:
            await client.aclose()
        assert [r.body if isinstance(r, Response) else r for r in results] == \
            [f"m{i}".encode() for i in range(10)]
        first = [r for r in peer.received if r.connection == 1]
        second = [r for r in peer.received if r.connection == 2]
        assert len(first) == 10 and peer.connections == 2
        processed = {r.headers["x-n"] for r in first if r.stream_id <= peer.goaway_ids[3]}
        resent = {r.headers["x-n"] for r in second if r.path != "/after"}
        assert len(processed) == 4 and len(resent) == 6 and not processed & resent
        assert after.body == b"later"
    _run(ca, test, hold_until=10, goaway_after=10, goaway_last=4)


def test_a_refused_stream_is_sent_again_once(ca: trustme.CA) -> None:
    """RST_STREAM REFUSED_STREAM means the server did not process the request: it is
    sent again (once) and answered."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            answer = await client.post("/refused", b"again", {})
        finally:
            await client.aclose()
        assert answer.body == b"again"
        assert [r.path for r in peer.received] == ["/refused", "/refused"]
    _run(ca, test)


def test_a_lost_connection_fails_what_is_in_flight_then_reconnects(ca: trustme.CA) -> None:
    """The server cuts the connection while 3 requests wait: all 3 fail as a lost
    connection (none hangs), and the next request opens a new connection."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            results = await asyncio.gather(
                client.post("/stall", b"", {}), client.post("/stall", b"", {}),
                client.post("/drop", b"", {}), return_exceptions=True)
            again = await client.post("/again", b"ok", {})
        finally:
            await client.aclose()
        assert all(isinstance(r, ConnectionLost) for r in results), results
        assert again.body == b"ok"
        assert peer.connections == 2 and client.connections == 2
    _run(ca, test, hold_until=3)


def test_a_stalled_answer_times_out_and_frees_its_stream(ca: trustme.CA) -> None:
    """No answer within the timeout → RequestTimeout; the stream is reset (the server
    sees RST_STREAM) and its slot freed.  The server said nothing at all meanwhile, so
    the connection is presumed dead: the next request goes through on a new one."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer, timeout=0.3, max_streams=1)
        try:
            client.timeout = 10.0
            await client.post("/warm", b"", {})  # the connection's set-up frames are done
            client.timeout = 0.3
            with pytest.raises(RequestTimeout, match=r"no answer within 0\.3 s"):
                await client.post("/stall", b"", {})
            client.timeout = 10.0
            answer = await client.post("/next", b"fine", {})
        finally:
            await client.aclose()
        assert answer.body == b"fine"
        assert peer.resets == 1 and peer.connections == 2
        assert [r.connection for r in peer.received] == [1, 1, 2]
    _run(ca, test)


def test_a_stall_while_other_answers_flow_keeps_the_connection(ca: trustme.CA) -> None:
    """One request stalls while others are answered on the same connection: it times
    out alone, and the connection (alive) is kept."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer, timeout=2.0)

        async def busy() -> list[Response]:
            answers = []
            for i in range(50):  # answered one after another while /stall waits
                answers.append(await client.post(f"/n/{i}", b"b", {}))
            return answers

        try:
            stalled, answers = await asyncio.gather(client.post("/stall", b"", {}), busy(),
                                                    return_exceptions=True)
            after = await client.post("/after", b"a", {})
        finally:
            await client.aclose()
        assert isinstance(stalled, RequestTimeout)
        assert not isinstance(answers, BaseException) and len(answers) == 50
        assert after.body == b"a" and peer.connections == 1
    _run(ca, test)


def test_requests_waiting_for_a_stream_time_out_too(ca: trustme.CA) -> None:
    """One stream allowed and it stalls: the request queued behind it times out as well
    (the timeout covers waiting for a stream), and no stream leaks."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer, timeout=0.3, max_streams=1)
        try:
            results = await asyncio.gather(client.post("/stall", b"", {}),
                                           client.post("/queued", b"", {}),
                                           return_exceptions=True)
            client.timeout = 10.0
            answer = await client.post("/next", b"n", {})
        finally:
            await client.aclose()
        assert [type(r) for r in results] == [RequestTimeout, RequestTimeout]
        assert answer.body == b"n"
        assert peer.max_active == 1
    _run(ca, test)


def test_large_bodies_follow_the_flow_control_windows(ca: trustme.CA) -> None:
    """A 1,000,000-byte request to a server whose stream window is 16 KiB goes out as
    the server's WINDOW_UPDATEs allow, and comes back whole (the client acknowledging
    what it reads so the server can keep sending); a 300 KB answer arrives whole too."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        big = (bytes(range(256)) * 3907)[:1_000_000]
        try:
            echoed, sized = await asyncio.gather(client.post("/echo", big, {}),
                                                 client.post("/size/300000", b"", {}))
        finally:
            await client.aclose()
        assert len(big) == 1_000_000
        assert hashlib.sha256(echoed.body).digest() == hashlib.sha256(big).digest()
        assert sized.body == b"y" * 300_000
        assert peer.received[0].body == big or peer.received[1].body == big
    _run(ca, test, initial_window=16384)


def test_an_answer_over_the_size_limit_is_refused(ca: trustme.CA) -> None:
    """Push answers are tiny: one over 1 MiB resets its stream and fails, the
    connection stays usable."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            with pytest.raises(ConnectionLost, match="over 1048576 bytes"):
                await client.post("/size/2000000", b"", {})
            answer = await client.post("/echo", b"still", {})
        finally:
            await client.aclose()
        assert answer.body == b"still" and peer.connections == 1
    _run(ca, test)


def test_an_answer_with_a_bad_status_fails_alone(ca: trustme.CA) -> None:
    """``:status: 2x0`` is no HTTP answer: that request fails as a lost stream (not a
    crash of the connection's reader), and the next one is answered."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            with pytest.raises(ConnectionLost, match="status"):
                await client.post("/bad-status", b"", {})
            answer = await client.post("/echo", b"fine", {})
        finally:
            await client.aclose()
        assert answer.body == b"fine"
    _run(ca, test)


def test_connect_failures_are_connect_failed(ca: trustme.CA, tmp_path: Path) -> None:
    """Nothing listening, a certificate no trusted CA signed, a server without HTTP/2:
    each is ConnectFailed saying why."""
    async def test(peer: H2Peer) -> None:
        closed = H2Client(f"https://127.0.0.1:{free_port()}", peer.client_context(),
                          timeout=5)
        untrusted = H2Client(peer.origin, ssl.create_default_context(), timeout=5)
        http1 = await H2Peer(ca, alpn=["http/1.1"]).start()
        old = H2Client(http1.origin, http1.client_context(), timeout=5)
        try:
            for client, why in ((closed, "Connect call failed"),
                                (untrusted, "CERTIFICATE_VERIFY_FAILED"),
                                (old, "does not offer HTTP/2")):
                with pytest.raises(ConnectFailed, match=why):
                    await client.post("/x", b"", {})
                await client.aclose()
        finally:
            await http1.stop()
        assert peer.received == [] and http1.received == []
    _run(ca, test)


def test_a_server_that_never_sends_its_settings(ca: trustme.CA) -> None:
    """TLS completes (ALPN h2) but the server never sends SETTINGS: the request times
    out, no stream was opened, and the client does not keep the connection."""
    async def main() -> None:
        closed = asyncio.Event()
        opened: list[bytes] = []

        class Mute(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                opened.append(data)

            def connection_lost(self, exc: Exception | None) -> None:
                closed.set()

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        context.set_alpn_protocols(["h2"])
        server = await asyncio.get_running_loop().create_server(Mute, "127.0.0.1", 0,
                                                                ssl=context)
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        port = server.sockets[0].getsockname()[1]
        client = H2Client(f"https://127.0.0.1:{port}", client_context, timeout=0.5)
        try:
            with pytest.raises((RequestTimeout, ConnectFailed)):
                await client.post("/x", b"body", {})
            await asyncio.wait_for(closed.wait(), 10)
        finally:
            await client.aclose()
            server.close()
        received = b"".join(opened)
        assert received.startswith(b"PRI * HTTP/2.0")  # the preface and SETTINGS only
        assert b"body" not in received
    asyncio.run(main())


def test_requests_to_another_origin_are_refused(ca: trustme.CA) -> None:
    """A client belongs to one origin: a URL elsewhere is a ValueError, not a request."""
    async def test(peer: H2Peer) -> None:
        client = _client(peer)
        try:
            with pytest.raises(ValueError, match="origin"):
                await client.post("https://example.com/x", b"", {})
        finally:
            await client.aclose()
        assert peer.connections == 0
    _run(ca, test)


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app for hypercorn: echoes the body and the HTTP version."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"x-http", scope["http_version"].encode())]})
    await send({"type": "http.response.body", "body": body})


def test_against_hypercorn_too(tmp_path: Path) -> None:
    """The same client against hypercorn (another HTTP/2 implementation): 500
    concurrent requests, one connection, every body back, HTTP/2 on the server's side."""
    tls = make_tls(tmp_path)
    server = AsgiServer(_echo_app, "127.0.0.1", tls_port=0, certfile=tls.cert_file,
                        keyfile=tls.cert_file).start()

    async def main() -> list[Response]:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        client = H2Client(f"https://127.0.0.1:{server.tls_port}", context, timeout=30)
        try:
            return list(await asyncio.gather(*(client.post(f"/n/{i}", str(i).encode() * 50,
                                                           {}) for i in range(500))))
        finally:
            assert client.connections == 1
            await client.aclose()

    try:
        answers = asyncio.run(main())
    finally:
        server.stop()
    assert [a.body for a in answers] == [str(i).encode() * 50 for i in range(500)]
    assert {(a.status, a.headers["x-http"]) for a in answers} == {(201, "2")}


def test_push_transport_is_h2_for_https_and_httpx_for_plain_http(tmp_path: Path) -> None:
    """``push_http.make_transport``: an https base URL gets the HTTP/2 client, a plain
    http one (a local stand-in) httpx over HTTP/1.1 -- with the same answers and the
    same failures (here: nothing listening is ConnectFailed, a temporary result)."""
    from soap_service.channels import push_http
    from soap_service.config import ConnectorConfig
    from soap_service.models import Channel, SendOutcome

    tls = make_tls(tmp_path)
    server = AsgiServer(_echo_app, "127.0.0.1", tls_port=0, plain_port=0,
                        certfile=tls.cert_file, keyfile=tls.cert_file).start()
    config = ConnectorConfig("c", Channel.PUSH, "fcm", options={"ca_file": str(tls.ca_file)})

    async def main() -> tuple[list[Response], Exception]:
        answers = []
        for url in (f"https://127.0.0.1:{server.tls_port}",
                    f"http://127.0.0.1:{server.plain_port}"):
            transport = push_http.make_transport(config, url, 10)
            try:
                answers.append(await transport.post(f"{url}/x", b"hello",
                                                    {"content-type": "text/plain"}))
            finally:
                await transport.aclose()
        closed_url = f"http://127.0.0.1:{free_port()}"
        closed = push_http.make_transport(config, closed_url, 10)
        try:
            await closed.post(f"{closed_url}/x", b"", {})
        except Exception as exc:  # the failure is the result
            return answers, exc
        finally:
            await closed.aclose()
        raise AssertionError("a closed port answered")

    try:
        (h2, http1), failure = asyncio.run(main())
    finally:
        server.stop()
    assert isinstance(h2, Response) and isinstance(http1, Response)
    assert (h2.status, h2.headers["x-http"], h2.body) == (201, "2", b"hello")
    assert (http1.status, http1.headers["x-http"], http1.body) == (201, "1.1", b"hello")
    assert isinstance(failure, ConnectFailed)
    result = push_http.transport_failure(failure, 0.0)
    assert result.outcome is SendOutcome.TEMPORARY and "connection failed" in result.text
