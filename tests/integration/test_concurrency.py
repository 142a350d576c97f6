"""Concurrent ingest against ``msgcenter serve`` on PostgreSQL: no event lost or doubled."""

from __future__ import annotations

import http.client
import re
import threading
import time

import pytest
from conftest import run_cli
from sqlalchemy import create_engine, select

from soap_service.models import split_plid
from soap_service.tables import events

CLIENTS = 8
PER_CLIENT = 500
LOGIN, PASSWORD = "load", "load-password"
PLID_RE = re.compile(rb'<plId xsi:type="xsd:long">(\d+)</plId>')


def envelope(client: int, n: int) -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Header/><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{LOGIN}/{PASSWORD}</urn:sessiontoken><urn:domEvent>"
        f'<rtEvent type="order_confirmation" email="c{client}@example.com" '
        f'externalId="{client}-{n}"><ctx><client><firstname>C{client}</firstname></client>'
        f"<n>{n}</n></ctx></rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def run_client(port: int, client: int, results: dict[str, int], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "text/xml; charset=utf-8",
               "SOAPAction": '"nms:rtEvent#PushEvent"'}
    for n in range(PER_CLIENT):
        try:
            conn.request("POST", "/nl/jsp/soaprouter.jsp", envelope(client, n), headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
        except OSError as exc:  # a refused or reset connection is a failure, not a retry
            errors.append(f"{client}-{n}: {type(exc).__name__}")
            conn.close()
            continue
        match = PLID_RE.search(body)
        if resp.status != 200 or match is None:
            errors.append(f"{client}-{n}: HTTP {resp.status} {body[:200]!r}")
            continue
        results[f"{client}-{n}"] = int(match.group(1))


@pytest.mark.postgres
def test_parallel_push_event_clients_get_distinct_committed_ids(
    start_server, postgres_url: str
):
    """8 clients x 500 PushEvent in parallel: 4,000 distinct plIds, 4,000 rows, and each
    plId is the row holding that client's event (committed before the answer)."""
    env = {"MC_DATABASE_URL": postgres_url}
    run_cli(env, "init")
    run_cli(env, "zone", "add", "loopback", "127.0.0.0/8", "--allow-user-password")
    run_cli(env, "operator", "add", LOGIN, "--password", PASSWORD)
    server = start_server(postgres_url, "--workers", "4", init=False)
    port = int(server.url.rsplit(":", 1)[1])
    results: dict[str, int] = {}
    errors: list[str] = []
    threads = [threading.Thread(target=run_client, args=(port, c, results, errors))
               for c in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.perf_counter() - started
    assert errors == []
    assert len(results) == CLIENTS * PER_CLIENT
    assert len(set(results.values())) == CLIENTS * PER_CLIENT
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.external_id, events.c.id)).all()
    engine.dispose()
    assert len(rows) == CLIENTS * PER_CLIENT
    stored = dict(rows)
    assert {k: split_plid(v)[1] for k, v in results.items()} == stored
    print(f"\n{CLIENTS * PER_CLIENT} PushEvent in {elapsed:.1f}s: "
          f"{CLIENTS * PER_CLIENT / elapsed:.0f} events/s")
