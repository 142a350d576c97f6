"""``msgcenter serve`` end to end: push through zeep, request log, worker child, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import LiveServer, run_cli
from prometheus_client.parser import text_string_to_metric_families

LOGIN, PASSWORD = "ops", "s3cret-pass"
TOKEN = f"{LOGIN}/{PASSWORD}"


def prepare(database_url: str, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """A migrated database with an operator allowed to push from loopback."""
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           **(extra_env or {})}
    run_cli(env, "init")
    run_cli(env, "zone", "add", "loopback", "127.0.0.0/8", "--allow-user-password")
    run_cli(env, "operator", "add", LOGIN, "--password", PASSWORD)
    return env


def children_of(pid: int) -> dict[int, str]:
    """``{pid: command line}`` of the direct children of ``pid`` (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out[int(entry.name)] = cmdline
    return out


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def stop(server: LiveServer) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=60)


def test_push_through_the_served_wsdl_and_log_one_line(
    start_server, database_url: str, tmp_path: Path
):
    """`msgcenter push` (zeep, from the served WSDL) stores the event and prints its plId;
    the server logs one line per request with status and plId count and never the body."""
    prepare(database_url)
    server = start_server(database_url, "--workers", "2", init=False,
                          env={"HOME": str(tmp_path), "MC_INSTANCE_ID": "5"})
    out = server.cli("push", "--type", "welcome", "--email", "ann@example.com",
                     "--ctx-json", '{"client": {"firstname": "Annabelle"}}',
                     "--external-id", "cust-9", "--token", TOKEN, "--url", server.url)
    plid = int(out.stdout.strip())
    assert plid >> 56 == 5
    shown = json.loads(server.cli("events", "show", str(plid), "--json").stdout)
    assert shown["external_id"] == "cust-9" and shown["queue"] == "rt"
    assert shown["ctx_xml"] == "<ctx><client><firstname>Annabelle</firstname></client></ctx>"
    batch = json.loads(server.cli("push", "--batch", "--type", "welcome", "--email",
                                  "b@example.com", "--token", TOKEN, "--url", server.url,
                                  "--json").stdout)
    assert batch["queue"] == "batch"
    bad = server.cli("push", "--type", "welcome", "--email", "nope", "--token", TOKEN,
                     "--url", server.url, check=False)
    assert bad.returncode == 1 and "malformed attribute 'email'" in bad.stderr
    wrong = server.cli("push", "--type", "t", "--email", "a@example.com", "--token",
                       f"{LOGIN}/wrong", "--url", server.url, check=False)
    assert wrong.returncode == 1 and "Invalid login or password" in wrong.stderr + wrong.stdout
    assert stop(server) == 0
    log = server.log()
    lines = [ln for ln in log.splitlines() if "http.request method=POST" in ln]
    assert len(lines) == 4
    assert "status=200" in lines[0] and lines[0].endswith("plIds=1")
    assert "status=500" in lines[2] and lines[2].endswith("plIds=0")
    assert "Annabelle" not in log and "ann@example.com" not in log and PASSWORD not in log
    assert not (tmp_path / ".gunicorn").exists()  # the control socket is disabled


def test_wsdl_is_built_for_the_public_url(start_server, sqlite_url: str):
    """The served WSDL's address is MC_PUBLIC_URL (built at start-up, not from Host);
    SIGINT (Ctrl-C) stops the server cleanly too."""
    prepare(sqlite_url)
    server = start_server(sqlite_url, "--workers", "1", init=False,
                          env={"MC_PUBLIC_URL": "https://mc.example.net"})
    with urllib.request.urlopen(server.wsdl_url(), timeout=10) as resp:
        wsdl = resp.read().decode()
    assert 'location="https://mc.example.net/nl/jsp/soaprouter.jsp"' in wsdl
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=60) == 0
    assert not port_open(server.url)


def test_wsdl_without_public_url_names_the_served_port(start_server, sqlite_url: str):
    """With MC_PUBLIC_URL left unset (empty here), ``serve --port N`` advertises its own
    address in the WSDL, not the default port 8080 a generated client would then call."""
    prepare(sqlite_url)
    server = start_server(sqlite_url, "--workers", "1", init=False, env={"MC_PUBLIC_URL": ""})
    with urllib.request.urlopen(server.wsdl_url(), timeout=10) as resp:
        wsdl = resp.read().decode()
    assert f'location="{server.url}/nl/jsp/soaprouter.jsp"' in wsdl


def test_metrics_count_every_http_worker(start_server, sqlite_url: str):
    """/metrics under `serve --workers 2` counts the requests of both workers, whichever
    answers the scrape: one worker is held on a half-sent request while the other serves
    6 faults, then finishes its own (7 in all, at most 6 in either worker)."""
    server = start_server(sqlite_url, "--workers", "2")
    host, port = server.url.removeprefix("http://").split(":")
    held = socket.create_connection((host, int(port)), timeout=30)
    held.sendall(b"POST /soap HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                 b"Content-Length: 7\r\nConnection: close\r\n\r\nnot")
    try:
        for _ in range(6):
            request = urllib.request.Request(f"{server.url}/soap", data=b"not xml")
            with pytest.raises(urllib.error.HTTPError) as info:  # a SOAP fault is HTTP 500
                urllib.request.urlopen(request, timeout=10)
            assert info.value.code == 500
        held.sendall(b" xml")
        assert held.recv(64).startswith(b"HTTP/1.1 500")
    finally:
        held.close()
    def faults() -> float:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples if sample.name == "mc_soap_faults_total"
                   and sample.labels == {"service": "unknown", "method": "unknown",
                                         "code": "Client"})

    wait_for(lambda: faults() == 7, timeout=30, what="all 7 faults in /metrics")
    assert all(faults() == 7 for _ in range(6))


def test_serve_runs_and_restarts_a_worker_and_stops_cleanly(start_server, sqlite_url: str):
    """Without --no-worker, serve starts `msgcenter worker` next to gunicorn, restarts it
    when it dies, and SIGTERM stops everything with exit code 0."""
    prepare(sqlite_url)
    server = start_server(sqlite_url, "--workers", "1", init=False, worker=True)
    supervisor = server.process.pid

    def worker_pid() -> int | None:
        return next((p for p, cmd in children_of(supervisor).items()
                     if cmd.endswith("soap_service.cli worker ")), None)

    first = wait_for(worker_pid, what="the dispatch worker")
    gunicorn = [p for p, cmd in children_of(supervisor).items() if "cli.serve" in cmd]
    assert len(gunicorn) == 1
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := worker_pid()) and p != first and p, what="a restart")
    assert second != first
    assert stop(server) == 0
    assert not port_open(server.url)
    for pid in (second, gunicorn[0]):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert "serve.worker_exited" in server.log() and "serve.stopped" in server.log()


@pytest.mark.postgres
def test_serve_runs_as_many_dispatch_workers_as_asked_on_postgresql(start_server,
                                                                    postgres_url: str):
    """``MC_DISPATCH_WORKERS=2`` on PostgreSQL: serve starts two ``msgcenter worker``
    processes, restarts the one that dies (the other goes on), and stops them all."""
    prepare(postgres_url)
    server = start_server(postgres_url, "--workers", "1", init=False, worker=True,
                          env={"MC_DISPATCH_WORKERS": "2"})
    supervisor = server.process.pid

    def worker_pids() -> set[int]:
        return {p for p, cmd in children_of(supervisor).items()
                if cmd.endswith("soap_service.cli worker ")}

    first = wait_for(lambda: len(pids := worker_pids()) == 2 and pids, what="two workers")
    killed, kept = sorted(first)
    os.kill(killed, signal.SIGKILL)
    again = wait_for(lambda: len(pids := worker_pids()) == 2 and killed not in pids and pids,
                     what="the dead worker restarted")
    assert kept in again
    assert stop(server) == 0
    assert server.log().count("serve.worker_started") == 3


def test_serve_refuses_bad_options(tmp_path: Path):
    """Bad --workers or a bad MC_* setting: one error line and a non-zero exit, no server."""
    env = {"MC_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    proc = run_cli(env, "serve", "--workers", "0", check=False)
    assert proc.returncode == 1 and "--workers" in proc.stderr
    proc = run_cli({**env, "MC_INSTANCE_ID": "999"}, "serve", check=False)
    assert proc.returncode == 2 and "MC_INSTANCE_ID" in proc.stderr
    proc = run_cli({**env, "MC_DISPATCH_WORKERS": "2"}, "serve", check=False)
    assert proc.returncode == 1 and "needs PostgreSQL" in proc.stderr
    proc = run_cli({**env, "MC_DISPATCH_WORKERS": "0"}, "serve", check=False)
    assert proc.returncode == 2 and "MC_DISPATCH_WORKERS" in proc.stderr


@pytest.mark.parametrize("events", [1, 3])
def test_request_log_counts_plids(events: int):
    """The request-log middleware counts plIds in PushEvent and PushEvents answers."""
    from soap_service.cli.serve import _count_plids

    single = [b'<PushEventResponse><plId xsi:type="xsd:long">72</plId></PushEventResponse>']
    many = [b"<ids>" + b"".join(b'<id plId="%d"/>' % i for i in range(events)) + b"</ids>"]
    assert _count_plids(single) == 1
    assert _count_plids(many) == events
