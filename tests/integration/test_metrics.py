"""``GET /metrics`` of ``msgcenter serve`` (prometheus-client, multiprocess mode): the
ingest-ack and ack -> send histograms and the worker's outcome counters per channel,
summed over every HTTP process and the worker, read over HTTP from a real server."""

from __future__ import annotations

import urllib.error
import urllib.request

from conftest import make_settings, run_cli
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from test_ingest_serve import wait_for

from soap_service import demo
from soap_service.devsmtp import Fault, MailSink
from soap_service.metrics import HttpMetrics, WorkerMetrics
from soap_service.store import Database, make_engine
from soap_service.tables import events

PUSHES = 12


def _envelope(n: int, email: str) -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{demo.OPERATOR[0]}/{demo.OPERATOR[1]}</urn:sessiontoken>"
        f'<urn:domEvent><rtEvent type="order_confirmation" email="{email}">'
        f"<ctx><client><firstname>N{n}</firstname></client></ctx></rtEvent></urn:domEvent>"
        "</urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    ).encode()


def _push(url: str, body: bytes) -> int:
    request = urllib.request.Request(f"{url}/nl/jsp/soaprouter.jsp", data=body, headers={
        "Content-Type": "text/xml", "SOAPAction": "nms:rtEvent#PushEvent"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _refuse_one(rcpt: str, _attempt: int) -> Fault | None:
    return Fault("550 5.1.1 mailbox unavailable", stage="rcpt") \
        if rcpt == "refused@example.com" else None


def test_metrics_show_ingest_acks_sends_and_outcomes_of_every_process(
        start_server, sqlite_url: str):
    """12 PushEvents through 2 HTTP processes, sent by serve's worker to a real SMTP
    sink, one of them refused by the relay (550): /metrics counts 12 ingest acks in the
    histogram whichever process answers, 11 sends and one failure for email, 11 ack ->
    send observations for the real-time queue, and the worker's round stages."""
    settings = make_settings(sqlite_url)
    run_cli({"MC_DATABASE_URL": sqlite_url}, "init")
    db = Database(make_engine(settings), settings)
    try:
        demo.ensure_access(db)
        demo.ensure_catalog(db)
        with MailSink(plan=_refuse_one) as sink:
            server = start_server(sqlite_url, "--workers", "2", init=False, worker=True,
                                  env={"MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port)})
            for n in range(PUSHES):
                email = "refused@example.com" if n == 0 else f"user{n}@example.com"
                assert _push(server.url, _envelope(n, email)) == 200
            wait_for(lambda: _processed_or_failed(db) == PUSHES, 60, "every event to end")
            text = wait_for(lambda: (t := _scrape(server.url)) and _value(
                t, "mc_worker_messages_total", channel="email", outcome="sent") == PUSHES - 1
                and t, 30, "the worker's counters on /metrics")
    finally:
        db.dispose()
    ack = {"api": "soap", "method": "PushEvent"}
    assert _value(text, "mc_ingest_ack_seconds_count", **ack) == PUSHES
    assert _value(text, "mc_ingest_ack_seconds_bucket", **ack, le="+Inf") == PUSHES
    assert _value(text, "mc_worker_messages_total", channel="email", outcome="failed") == 1
    assert _value(text, "mc_dispatch_ack_to_send_seconds_count", channel="email",
                  queue="rt") == PUSHES - 1
    assert _value(text, "mc_worker_round_seconds_count", stage="record") >= 1
    assert _value(text, "mc_soap_requests_total", service="nms:rtEvent",
                  method="PushEvent") == PUSHES


def _processed_or_failed(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events).where(
            events.c.status.in_(["processed", "deliveryFailed"]))).scalar_one())


def test_without_a_shared_directory_each_object_counts_its_own():
    """Outside serve (no PROMETHEUS_MULTIPROC_DIR), each metrics object has its own
    registry: two web applications in one process do not add up."""
    one, two = HttpMetrics(), HttpMetrics()
    one.observe("nms:rtEvent", "PushEvent", None, 0.002)
    two.observe("nms:rtEvent", "PushEvent", "Client", 0.002)
    text = one.render().decode()
    assert _value(text, "mc_soap_requests_total", service="nms:rtEvent",
                  method="PushEvent") == 1
    assert _value(text, "mc_soap_faults_total", service="nms:rtEvent", method="PushEvent",
                  code="Client") == 0
    assert _value(text, "mc_ingest_ack_seconds_count", api="soap", method="PushEvent") == 1
    worker = WorkerMetrics()
    worker.outcome("sms", "tooOld")
    assert _value(worker.render().decode(), "mc_worker_messages_total", channel="sms",
                  outcome="failed") == 1
