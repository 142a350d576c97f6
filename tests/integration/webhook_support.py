"""A real webhook receiver on loopback that verifies signatures with ``standardwebhooks``.

The receiver is a threaded HTTP server.  Each request is verified with the public
``standardwebhooks`` library (``Webhook(secret).verify``) -- not our own code -- and
recorded (headers, body, verified payload or the verification error).  What it answers
is scripted: a queue of ``(status, delay_seconds)``; when the queue is empty it answers
``default``.  A delay longer than the sender's timeout makes the attempt time out.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: Any  # the verified payload, or None
    error: str  # the verification error, or ""
    answered: int


class Receiver:
    def __init__(self, secret: str = "", default: int = 200) -> None:
        self.secret = secret
        self.default = default
        self.script: deque[tuple[int, float]] = deque()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set to let held requests finish early
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    status, delay = (receiver.script.popleft() if receiver.script
                                     else (receiver.default, 0.0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload, error = None, ""
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except (WebhookVerificationError, ValueError) as exc:  # bad or no secret
                    error = str(exc) or type(exc).__name__
                with receiver.lock:
                    receiver.received.append(Received(headers, body, payload, error, status))
                if delay:
                    receiver.release.wait(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(f"answer {status}".encode())
                except OSError:  # the sender gave up (timeout): nothing to answer
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, *steps: tuple[int, float] | int) -> None:
        with self.lock:
            for step in steps:
                self.script.append(step if isinstance(step, tuple) else (step, 0.0))

    def verified(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.payload is not None]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 60.0,
                 what: str = "webhooks") -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                seen = list(self.received)
            if predicate(seen):
                return seen
            time.sleep(0.05)
        with self.lock:
            seen = [(r.answered, r.error, json.loads(r.body).get("type")) for r in self.received]
        raise AssertionError(f"timed out waiting for {what}; received {seen}")
