"""``msgcenter serve``: the SOAP front-end under gunicorn, plus one dispatch worker.

Process layout (``serve`` is a small supervisor, never a server itself)::

    msgcenter serve            supervisor: starts both, forwards SIGTERM/SIGINT, stops both
    ├── gunicorn master        ``python -m soap_service.cli.serve``: builds the app (and the
    │   └── N HTTP processes   WSDLs for MC_PUBLIC_URL) once, then forks the processes
    ├── msgcenter worker       the dispatch loop (unless --no-worker), restarted if it dies
    └── msgcenter bounced      the bounce listener, when MC_BOUNCE_DOMAIN is set (unless
                               --no-bounced), restarted if it dies

The supervisor exists because gunicorn's master reaps *every* child it has (it calls
``waitpid(-1)``): a dispatch worker started from inside it could not be watched.  The
gunicorn master preloads the application, so the WSDLs are built before forking, and each
forked worker drops the database connections it inherited.  One log line per request
(``http.request``: method, path, status, milliseconds, plIds) -- never a body.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gunicorn.workers.base import Worker as GunicornWorker

from soap_service import httpd
from soap_service.cli.context import CliContext
from soap_service.config import Settings
from soap_service.errors import ServerError, ValidationFailed
from soap_service.http.tracking import warn_if_default_secret

if TYPE_CHECKING:
    from soap_service.http.app import WebApp

log = logging.getLogger("soap_service.serve")
access_log = logging.getLogger("soap_service.access")

STOP_TIMEOUT = 20.0  # seconds each child gets to stop after SIGTERM before SIGKILL
WORKER_RESTART_DELAY = 2.0
# Within gunicorn's graceful timeout (STOP_TIMEOUT / 2 = 10 s, then SIGKILL) an HTTP
# process first finishes its requests, then writes its queued tracking hits.
FLUSH_TIMEOUT = 3.0
REQUESTS_TIMEOUT = STOP_TIMEOUT / 2 - FLUSH_TIMEOUT - 1.0


def default_workers(settings: Settings) -> int:
    """HTTP processes when ``--workers`` is not given: one per CPU core (at least 2), on
    SQLite and PostgreSQL alike; ``MC_HTTP_WORKERS`` (more than 0) sets it instead.

    Measured on 2 cores with the worker on (``bench/e2e.py``, docs/performance.md): with
    the acceptor spreading connections (``httpd.Acceptor``) and, on SQLite, the group
    commit's leader taking the write lock before the queue, 2 processes x 8 threads
    pushed 1,730-1,860 events/s to sent on SQLite where 1 process made 1,440-1,460, and
    1,290-1,360 on PostgreSQL where 4 processes made 1,130-1,170 (more processes than
    cores take the CPU the dispatch worker needs, and group fewer inserts per commit)."""
    if settings.http_workers:
        return settings.http_workers
    return max(2, os.cpu_count() or 1)


def dispatch_workers(settings: Settings) -> int:
    """Dispatch worker processes ``serve`` starts: ``MC_DISPATCH_WORKERS`` (default 1).
    Several claim side by side only on PostgreSQL (``FOR UPDATE SKIP LOCKED``; never the
    same message twice); SQLite serialises claims on its one writer, so one worker is
    its supported setup and more are refused."""
    n = settings.dispatch_workers
    if n > 1 and settings.database_url.startswith("sqlite"):
        raise ValidationFailed("MC_DISPATCH_WORKERS above 1 needs PostgreSQL "
                               "(on SQLite one worker is the supported setup)")
    return n


# ---------------------------------------------------------------- request log


class RequestLog:
    """WSGI middleware: one ``http.request`` line per request, after the response is built."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        seen: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        body = self.app(environ, capture)
        status = seen[0].split(" ", 1)[0] if seen else "-"
        plids = _count_plids(body) if status == "200" and isinstance(body, list) else 0
        access_log.info(
            "http.request method=%s path=%s status=%s ms=%.1f plIds=%d",
            environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-"), status,
            (time.perf_counter() - started) * 1000, plids,
        )
        return body


def _count_plids(body: list[bytes]) -> int:
    """plIds in a response: ``<plId ...>`` (PushEvent) or ``plId="..."`` (PushEvents)."""
    return sum(chunk.count(b"<plId") + chunk.count(b' plId="') for chunk in body)


# ---------------------------------------------------------------- the gunicorn master


class BufferingWorker(GunicornWorker):
    """A gunicorn worker that serves with :class:`httpd.Front`: one asyncio loop reads whole
    requests (no thread is held by a slow client), ``MC_HTTP_THREADS`` threads run them."""

    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event
    graceful = True

    def init_process(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        super().init_process()  # last: it loads the app, installs signals and calls run()

    def init_signals(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        self.loop.add_signal_handler(signal.SIGTERM, self._stop, True)  # graceful
        self.loop.add_signal_handler(signal.SIGINT, self._stop, False)  # quick
        self.loop.add_signal_handler(signal.SIGQUIT, self._stop, False)
        self.loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)

    def _stop(self, graceful: bool) -> None:
        self.alive = False
        self.graceful = self.graceful and graceful
        self.wake.set()

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self.wake = asyncio.Event()
        settings = self.wsgi.app.settings
        # the larger of the SOAP and JSON limits: each edge checks its own on what it gets
        limits = httpd.Limits(read_timeout=settings.http_read_timeout,
                              max_body=max(settings.max_body_bytes, settings.max_json_bytes))
        executor = ThreadPoolExecutor(settings.http_threads, thread_name_prefix="mc-http")
        port = str(self.sockets[0].sock.getsockname()[1]) if self.sockets else "80"
        front = httpd.Front(self.wsgi, limits, executor, port)
        acceptors = [httpd.Acceptor(front, s.sock, spread=self.cfg.workers > 1)
                     for s in self.sockets]
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)
        for acceptor in acceptors:
            acceptor.close()
        cut = await front.shutdown(REQUESTS_TIMEOUT if self.graceful else 0.0)
        if cut:
            log.warning("serve.connections_cut count=%d", cut)
        executor.shutdown(wait=True)


def flush_on_exit(app: WebApp) -> None:
    """What an HTTP process writes before it exits: queued tracking hits, held SMS
    receipts (its metrics are in the shared directory already)."""
    app.close_tracking(timeout=FLUSH_TIMEOUT)
    app.close_receipts()


def run_gunicorn(bind: str, workers: int, log_level: str) -> None:
    """Run the gunicorn master in this process (blocks until it stops)."""
    from gunicorn.app.base import BaseApplication

    from soap_service.config import load_settings
    from soap_service.http import app as web

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": bind, "workers": workers,
                "worker_class": f"{__name__}.BufferingWorker",
                "preload_app": True, "control_socket_disable": True,
                "accesslog": None, "errorlog": "-", "loglevel": log_level,
                "timeout": 60, "graceful_timeout": int(STOP_TIMEOUT / 2),
                "proc_name": "msgcenter-serve", "post_fork": self.post_fork,
                "worker_exit": self.worker_exit,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            settings = load_settings()
            self.app = web.create_app(settings)  # builds the WSGIs before any fork
            return RequestLog(self.app)

        def post_fork(self, _server: Any, _worker: Any) -> None:
            # connections opened by the master must not be shared with the children
            self.app.db.engine.dispose(close=False)

        def worker_exit(self, _server: Any, _worker: Any) -> None:
            flush_on_exit(self.app)  # runs in the worker process, after its last request

    Server().run()


# ---------------------------------------------------------------- the supervisor


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def worker_command() -> list[str] | None:
    """The dispatch worker command, or None while ``msgcenter worker`` does not exist."""
    if importlib.util.find_spec("soap_service.cli.worker") is None:
        return None
    return [sys.executable, "-m", "soap_service.cli", "worker"]


class Child:
    """A supervised child process that is started again ``WORKER_RESTART_DELAY`` seconds
    after it dies (a dispatch worker, the bounce listener); ``kind`` names its log lines
    (``serve.<kind>_started`` / ``serve.<kind>_exited``)."""

    def __init__(self, kind: str, cmd: list[str]) -> None:
        self.kind = kind
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_at = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=_child_env())
        log.info("serve.%s_started pid=%s", self.kind, self.proc.pid)

    def watch(self) -> None:
        """Called every tick: notice a death, restart after the delay."""
        if self.proc is None or self.proc.poll() is None:
            return
        if not self.restart_at:
            log.error("serve.%s_exited code=%s", self.kind, self.proc.returncode)
            self.restart_at = time.monotonic() + WORKER_RESTART_DELAY
        elif time.monotonic() >= self.restart_at:
            self.restart_at = 0.0
            self.start()


class Supervisor:
    """Start gunicorn, the dispatch workers and the bounce listener, restart a worker or
    the listener if it dies, stop them all on a signal."""

    def __init__(self, gunicorn_cmd: list[str], worker_cmd: list[str] | None,
                 bounced_cmd: list[str] | None = None, dispatchers: int = 1) -> None:
        self.gunicorn_cmd = gunicorn_cmd
        self.stopping = False
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.children = [Child("worker", worker_cmd) for _ in range(dispatchers)
                         if worker_cmd]
        if bounced_cmd:  # the bounce listener, when MC_BOUNCE_DOMAIN is set
            self.children.append(Child("bounced", bounced_cmd))

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.gunicorn = subprocess.Popen(self.gunicorn_cmd, env=_child_env())
        log.info("serve.started pid=%s gunicorn=%s", os.getpid(), self.gunicorn.pid)
        for child in self.children:
            child.start()
        try:
            return self._watch()
        finally:
            self._stop_all()

    def _watch(self) -> int:
        assert self.gunicorn is not None
        while not self.stopping:
            code = self.gunicorn.poll()
            if code is not None:
                log.error("serve.gunicorn_exited code=%s", code)
                return code or 1
            for child in self.children:
                child.watch()
            time.sleep(0.2)
        log.info("serve.stopping")
        return 0

    def _stop_all(self) -> None:
        procs = [c.proc for c in self.children] + [self.gunicorn]
        running = [p for p in procs if p is not None]
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("serve.kill pid=%s", proc.pid)
                proc.kill()
                proc.wait()
        log.info("serve.stopped")


def advertised_url(configured: str, host: str, port: int) -> str:
    """``MC_PUBLIC_URL``; left unset (empty or its default), this server's own address,
    so that ``--port 9000`` does not publish a WSDL pointing at port 8080."""
    if configured and configured != Settings().public_url:
        return configured
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is no address to call
        host = "127.0.0.1"
        log.warning("serve.public_url_guessed url=http://%s:%s (set MC_PUBLIC_URL)", host, port)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{port}"


def cmd_serve(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.workers is not None and args.workers < 1:
        raise ValidationFailed("--workers must be at least 1")
    if not 0 < args.port < 65536:
        raise ValidationFailed("--port must be between 1 and 65535")
    workers = args.workers or default_workers(ctx.settings)  # (a bad MC_* value fails here)
    # gunicorn and the worker read it from the environment: WSDL address, tracking links
    os.environ["MC_PUBLIC_URL"] = advertised_url(ctx.settings.public_url, args.host, args.port)
    logging.getLogger("soap_service").setLevel(args.log_level.upper())
    warn_if_default_secret(ctx.settings)
    dispatchers = 1
    worker_cmd = None
    if not args.no_worker:
        dispatchers = dispatch_workers(ctx.settings)
        worker_cmd = worker_command()
        if worker_cmd is None:
            log.warning("serve.no_worker_command (running as --no-worker)")
    bounced_cmd = None
    if ctx.settings.bounce_domain and not args.no_bounced:  # MC_BOUNCE_SMTP_HOST / _PORT
        bounced_cmd = [sys.executable, "-m", "soap_service.cli", "bounced"]
    host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    gunicorn_cmd = [sys.executable, "-m", "soap_service.cli.serve",
                    f"{host}:{args.port}", str(workers), args.log_level]
    # prometheus-client's multiprocess mode: every HTTP process and the worker write their
    # values there, /metrics sums them (soap_service.metrics)
    metrics_dir = tempfile.mkdtemp(prefix="msgcenter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        code = Supervisor(gunicorn_cmd, worker_cmd, bounced_cmd, dispatchers).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if code:
        raise ServerError(f"the HTTP server stopped unexpectedly (exit code {code})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the SOAP API (gunicorn) and run a dispatch worker")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    p.add_argument("--workers", type=int, default=None,
                   help="HTTP worker processes (default: MC_HTTP_WORKERS, else one per CPU "
                        "core, at least 2)")
    p.add_argument("--no-worker", action="store_true", help="do not start a dispatch worker")
    p.add_argument("--no-bounced", action="store_true",
                   help="do not start the bounce listener (started when MC_BOUNCE_DOMAIN is set)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)


def _main(argv: list[str]) -> None:
    bind, workers, log_level = argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("soap_service").setLevel(log_level.upper())
    run_gunicorn(bind, int(workers), log_level)


if __name__ == "__main__":
    _main(sys.argv[1:])
