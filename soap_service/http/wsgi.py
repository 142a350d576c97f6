"""Request, response and route: the plain WSGI pieces every hand-written handler uses.

A handler takes the application (settings, database, metrics, SOAP services, the
tracker) and a :class:`Request`, and returns a :class:`Response`; :func:`answer` writes
it.  Nothing here knows a route or a handler, so any module of ``http/`` can use these
without importing the application (``app.py`` imports the handlers, never the reverse).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]


@dataclass
class Request:
    environ: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.environ.get("REQUEST_METHOD", "GET")).upper()

    @property
    def path(self) -> str:
        return str(self.environ.get("PATH_INFO", "") or "/")

    @property
    def query(self) -> dict[str, str]:
        parsed = parse_qs(str(self.environ.get("QUERY_STRING", "")), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def header(self, name: str) -> str:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return str(self.environ.get(key, "") or "")
        return str(self.environ.get("HTTP_" + key, "") or "")

    @property
    def remote_addr(self) -> str:
        return str(self.environ.get("REMOTE_ADDR", "") or "")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


Handler = Callable[[Any, Request], Response]  # (the application, the request)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    prefix: bool = False

    def matches(self, path: str) -> bool:
        """Whether a request for ``path`` (``Request.path``, read once per request) is
        this route's."""
        return path.startswith(self.path) if self.prefix else path == self.path


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def answer(response: Response, environ: dict[str, Any],
           start_response: StartResponse) -> list[bytes]:
    """Write ``response`` (headers, and the body unless the request is a HEAD)."""
    headers = [("Content-Type", response.content_type),
               ("Content-Length", str(len(response.body))), *response.headers]
    if response.close and not str(environ.get("SERVER_SOFTWARE", "")).startswith("WSGIServer"):
        headers.append(("Connection", "close"))  # wsgiref refuses hop-by-hop headers
    start_response(status_line(response.status), headers)
    if str(environ.get("REQUEST_METHOD", "")).upper() == "HEAD":
        return [b""]
    return [response.body]
