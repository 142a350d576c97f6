"""The SOAP edge in process: the real WSGI application on a real database, called with a
WSGI environ (no socket), for tests that send many requests (caller-input audits, the
property-based suite).  An operator ``pusher`` / ``s3cret`` may push from 127.0.0.0/8."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from soap_service import auth
from soap_service.config import Settings
from soap_service.http.app import WebApp, create_app
from soap_service.store import Database, schema

TOKEN = "pusher/s3cret"
SOAP_PATH = "/nl/jsp/soaprouter.jsp"
_FAULT = re.compile(rb"<faultcode>([^<]*)</faultcode>\s*<faultstring[^>]*>([^<]*)<", re.S)
_PLID = re.compile(rb"<plId[^>]*>(\d+)</plId>|plId=\"(\d+)\"")


@dataclass
class Answer:
    status: int
    body: bytes

    @property
    def fault(self) -> tuple[str, str] | None:
        """(faultcode, faultstring) of a fault answer, else None."""
        found = _FAULT.search(self.body)
        return (found.group(1).decode(), found.group(2).decode()) if found else None

    @property
    def plids(self) -> list[int]:
        return [int(a or b) for a, b in _PLID.findall(self.body)]


def make_app(settings: Settings) -> WebApp:
    app = create_app(settings.replace(auth_cache_ttl=0))
    schema.upgrade(app.db)
    auth.create_operator(app.db, "pusher", "s3cret")
    auth.create_zone(app.db, "local", "127.0.0.0/8", allow_user_password=True)
    return app


def call(app: WebApp, body: bytes, headers: dict[str, str] | None = None,
         path: str = SOAP_PATH, method: str = "POST", query: str = "") -> Answer:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "text/xml; charset=utf-8",
               "wsgi.input": io.BytesIO(body), "REMOTE_ADDR": "127.0.0.1",
               "SERVER_SOFTWARE": "test"}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: list[str] = []
    out = b"".join(app(environ, lambda status, _headers, _exc=None: seen.append(status)))
    return Answer(int(seen[0].split()[0]), out)


def push_envelope(event: str, token: str = TOKEN, method: str = "PushEvent",
                  service: str = "rtEvent") -> bytes:
    param = "domEvent" if method == "PushEvent" else "domEventCollection"
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:urn="urn:nms:{service}"><soapenv:Body><urn:{method}>'
        f"<urn:sessiontoken>{token}</urn:sessiontoken><urn:{param}>{event}</urn:{param}>"
        f"</urn:{method}></soapenv:Body></soapenv:Envelope>"
    ).encode()


def count_events(db: Database) -> int:
    from sqlalchemy import text

    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
