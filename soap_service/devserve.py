"""Plumbing for local development servers: an ASGI app served by hypercorn in a thread,
and a self-made certificate authority for their TLS ports.

:class:`AsgiServer` binds its ports in :meth:`~AsgiServer.start` (so a busy port is an
``OSError`` there, not a log line later), serves HTTP/2 and HTTP/1.1 over TLS on the TLS
port (ALPN) and HTTP/1.1 or HTTP/2 with prior knowledge on the plain port, and stops
cleanly.  :func:`ensure_tls` writes a CA and a server certificate once into a directory
and reuses them, so clients can trust the CA file (``ca_file`` of a connector).  For
development and tests only: nothing here is meant to face the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


class AsgiServer:
    """``app`` served by hypercorn on ``tls_port`` (needs ``certfile``/``keyfile``) and/or
    ``plain_port``, in a background thread with its own event loop.  Port 0 picks a free
    port; :attr:`tls_port` / :attr:`plain_port` say which once started."""

    def __init__(self, app: Any, host: str = "127.0.0.1", *, tls_port: int | None = None,
                 plain_port: int | None = None, certfile: Path | str | None = None,
                 keyfile: Path | str | None = None, graceful_timeout: float = 1.0) -> None:
        if tls_port is None and plain_port is None:
            raise ValueError("at least one port is needed")
        if tls_port is not None and not (certfile and keyfile):
            raise ValueError("a TLS port needs certfile and keyfile")
        self.app = app
        self.host = host
        self.tls_port = tls_port
        self.plain_port = plain_port
        self._certfile = str(certfile) if certfile else None
        self._keyfile = str(keyfile) if keyfile else None
        self._graceful = graceful_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _config(self) -> Any:
        from hypercorn.config import Config

        config = Config()
        host = f"[{self.host}]" if ":" in self.host else self.host
        tls = [f"{host}:{self.tls_port}"] if self.tls_port is not None else []
        plain = [f"{host}:{self.plain_port}"] if self.plain_port is not None else []
        if tls:
            config.bind, config.insecure_bind = tls, plain
            config.certfile, config.keyfile = self._certfile, self._keyfile
        else:
            config.bind = plain
        config.accesslog = None
        config.errorlog = logging.getLogger("soap_service.devserve.hypercorn")
        config.graceful_timeout = self._graceful
        # APNs keeps connections for hours and allows ~1,000 concurrent streams; hypercorn's
        # defaults (close after 1,000 requests, 100 streams) would make clients reconnect
        config.keep_alive_max_requests = 2**62
        config.h2_max_concurrent_streams = 1000
        config.keep_alive_timeout = 3600
        return config

    def start(self) -> AsgiServer:
        """Bind (``OSError`` when a port is busy), then serve in a thread."""
        config = self._config()
        if config.ssl_enabled:
            config.create_ssl_context()  # an unusable certificate fails here, not in the thread
        sockets = config.create_sockets()
        try:
            for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
                sock.listen(config.backlog)  # connections queue from now on
        except OSError:
            for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
                sock.close()
            raise
        if self.tls_port is not None:
            self.tls_port = sockets.secure_sockets[0].getsockname()[1]
        if self.plain_port is not None:  # without TLS, hypercorn's `bind` is plain too
            self.plain_port = sockets.insecure_sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(config, sockets),
                                        name="devserve", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self, config: Any, sockets: Any) -> None:
        from hypercorn.asyncio.run import worker_serve
        from hypercorn.utils import wrap_app

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()

        async def main() -> None:
            assert self._stop is not None
            loop.call_soon(self._ready.set)
            await worker_serve(wrap_app(self.app, config.wsgi_max_body_size, "asgi"), config,
                               sockets=sockets, shutdown_trigger=self._stop.wait)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported by start() or logged; the thread ends
            self._error = exc
            self._ready.set()
            log.error("devserve.failed error=%s", exc)
        finally:
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open connections get ``graceful_timeout`` seconds) and join."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class TlsFiles:
    """``ca``: the CA certificate clients trust; ``cert``: server certificate + CA chain;
    ``key``: the server's private key (mode 0600)."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "msgcenter development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _covers(cert_path: Path, hosts: Sequence[str]) -> bool:
    """Does the existing server certificate name every host and stay valid a week?"""
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    fresh = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    return fresh and all(str(_normal(h)) in have for h in hosts)


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def ensure_tls(directory: Path | str, hosts: Sequence[str] = ()) -> TlsFiles:
    """A CA and a server certificate for ``localhost``, loopback and ``hosts`` in
    ``directory``; made on first use (or when a host is new), reused afterwards."""
    directory = Path(directory)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    wanted = [*LOCAL_NAMES, *(h for h in hosts if h and h not in ("0.0.0.0", "::"))]  # noqa: S104
    if all(p.exists() for p in (files.ca, files.cert, files.key)) and _covers(files.cert, wanted):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("msgcenter development CA"))
          .issuer_name(_name("msgcenter development CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(_san(wanted)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    _write(files.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()), private=True)
    _write(files.cert, cert.public_bytes(pem) + ca.public_bytes(pem))
    _write(files.ca, ca.public_bytes(pem))
    log.info("devserve.certificates_created dir=%s", directory)
    return files


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write through a temporary name so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
