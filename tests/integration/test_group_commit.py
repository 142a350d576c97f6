"""Group commit on ingest (``store.events.GroupCommit``): concurrent calls of one process
share one transaction, each call is still all or none, no id is answered before its
commit -- and a SIGKILLed HTTP process leaves every acked event stored.

The in-process tests make the group deterministic: they hold the committer's leader
lock while the calls queue (polling the queue, never sleeping for timing), so the next
leader commits them all at once.
"""

from __future__ import annotations

import fcntl
import http.client
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from dispatch_support import event_row, wait_until
from sqlalchemy import create_engine, event, func, select, text

from soap_service.errors import ServerError, Unavailable
from soap_service.models import split_plid
from soap_service.store import Database
from soap_service.store import events as event_store
from soap_service.tables import events


def _committer(db: Database) -> event_store.GroupCommit:
    if db not in event_store._committers:
        event_store.insert_events(db, [event_row(-1)])  # makes this process's committer
    return event_store._committers[db]


def _count_commits(db: Database) -> list[int]:
    commits = [0]

    def on_commit(_conn: Any) -> None:
        commits[0] += 1

    event.listen(db.engine, "commit", on_commit)
    return commits


def _grouped(db: Database, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads that all queue behind a held leader lock, then let the
    next leader commit them as one group; returns each call's result or exception."""
    committer = _committer(db)
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with committer._leader:
        for t in threads:
            t.start()
        wait_until(lambda: len(committer._queue) == len(calls), 30, "every call to queue")
    for t in threads:
        t.join(60)
    return results


def _stored(db: Database) -> dict[str, int]:
    with db.connect() as conn:
        return {r.external_id: r.id for r in conn.execute(
            select(events.c.external_id, events.c.id).where(events.c.external_id.is_not(None)))}


def test_concurrent_calls_share_one_commit_and_each_gets_its_own_ids(db: Database):
    """Five plain calls (one of three rows), two with one idempotency key and the same
    payload, one reusing a stored key with another payload: one commit for the group;
    each call gets the ids of its own rows; the key stores one row and its repeat
    replays it; the reuse is a conflict for that call only."""
    commits = _count_commits(db)
    keyed = {"idempotency_key": "k-1", "payload_hash": "h-1", "external_id": "keyed"}
    old = {"idempotency_key": "k-0", "payload_hash": "h-0", "external_id": "old"}
    event_store.insert_events(db, [event_row(30, **old)])

    def call(*rows: dict[str, Any]) -> Callable[[], event_store.StoredIds]:
        return lambda: event_store.insert_events(db, list(rows))

    calls = [call(event_row(i, external_id=f"p{i}")) for i in range(4)]
    calls.append(call(*(event_row(10 + i, external_id=f"m{i}") for i in range(3))))
    calls.append(call(event_row(20, **keyed)))
    calls.append(call(event_row(21, **keyed)))
    calls.append(call(event_row(22, **{**old, "payload_hash": "other"})))
    _committer(db)
    before = commits[0]
    results = _grouped(db, calls)
    assert commits[0] - before == 1  # the whole group in one transaction
    stored = _stored(db)
    for i in range(4):
        assert results[i].ids == [stored[f"p{i}"]] and results[i].replayed == [False]
    assert results[4].ids == [stored[f"m{i}"] for i in range(3)]
    first, repeat = results[5], results[6]
    assert {first.replayed[0], repeat.replayed[0]} == {False, True}
    assert first.ids == repeat.ids == [stored["keyed"]]
    assert isinstance(results[7], event_store.IdempotencyConflict)
    with db.connect() as conn:
        total = conn.execute(select(func.count()).select_from(events)).scalar_one()
    assert total == 1 + 4 + 3 + 1  # k-0 (stored first), the plain rows, k-1 once


def test_a_failing_call_fails_alone_and_the_others_are_stored(db: Database):
    """A call whose row the database refuses (no event type) makes the group's
    transaction fail: nothing of the group was answered; every call is tried again
    alone, so only that call fails and the others get committed ids."""
    good = [lambda i=i: event_store.insert_events(db, [event_row(i, external_id=f"g{i}")])
            for i in range(3)]
    bad = lambda: event_store.insert_events(db, [event_row(9, external_id="bad",  # noqa: E731
                                                           event_type=None)])
    results = _grouped(db, [*good, bad])
    assert isinstance(results[3], ServerError)
    stored = _stored(db)
    assert "bad" not in stored
    assert [r.ids for r in results[:3]] == [[stored[f"g{i}"]] for i in range(3)]


def test_on_sqlite_calls_that_queue_while_the_leader_waits_for_the_write_lock_join_it(
        db: Database):
    """SQLite: another writer holds the write gate (as a front-end or the worker of
    another process does through its fsync); the first call becomes the leader and
    waits for the gate; three more calls queue meanwhile.  When the gate frees, the
    leader takes the queue *after* locking, so all four go out in one commit (taking
    the queue first would commit the leader's call alone, then the three)."""
    if not db.is_sqlite:
        return  # PostgreSQL has no database-wide write lock to wait for
    committer = _committer(db)
    commits = _count_commits(db)
    before = commits[0]
    results: list[Any] = [None] * 4

    def run(i: int) -> None:
        results[i] = event_store.insert_events(db, [event_row(i, external_id=f"w{i}")])

    gate = os.open(f"{db.sqlite_file}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # another writer
        threads[0].start()
        wait_until(lambda: committer._leader.locked() and len(committer._queue) == 1, 30,
                   "the first call to lead and wait for the gate")
        for t in threads[1:]:
            t.start()
        wait_until(lambda: len(committer._queue) == 4, 30, "the other calls to queue")
    finally:
        fcntl.flock(gate, fcntl.LOCK_UN)
        os.close(gate)
    for t in threads:
        t.join(60)
    assert commits[0] - before == 1
    stored = _stored(db)
    assert [r.ids for r in results] == [[stored[f"w{i}"]] for i in range(4)]


def test_a_database_that_fails_at_begin_fails_every_queued_call_and_none_hangs(
        db: Database, tmp_path: Path):
    """The transaction cannot even begin (here: a SQLite file in a directory that does
    not exist; on PostgreSQL, nobody listening): every call of the group gets the
    error -- none is left waiting for a commit that will not come."""
    url = (f"sqlite:///{tmp_path}/missing/mc.db" if db.is_sqlite
           else "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=5")
    broken = Database(create_engine(url), db.settings)
    event_store._committers[broken] = event_store.GroupCommit()  # no insert can make it
    try:
        calls = [lambda i=i: event_store.insert_events(broken, [event_row(i)])
                 for i in range(3)]
        results = _grouped(broken, calls)
    finally:
        broken.dispose()
    assert all(isinstance(r, Exception) for r in results), results


def test_on_postgresql_a_plain_group_goes_out_on_the_driver_with_each_calls_ids(
        db: Database):
    """PostgreSQL: a group without idempotency keys and of at most ``ONE_STATEMENT_ROWS``
    rows is one INSERT on the driver's own connection in autocommit (SQLAlchemy executes
    nothing for it), and every call gets the ids of its own rows, in order, whatever
    their number; a larger group runs in a SQLAlchemy transaction, since SQLAlchemy may
    split it into several statements."""
    if db.is_sqlite:
        return  # SQLite writes in BEGIN IMMEDIATE transactions (see the write-lock test)
    seen: list[bool] = []  # INSERTs executed through SQLAlchemy: the driver's autocommit

    def on_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            seen.append(bool(conn.connection.dbapi_connection.autocommit))

    def call(tag: str, n: int) -> Callable[[], event_store.StoredIds]:
        return lambda: event_store.insert_events(
            db, [event_row(i, external_id=f"{tag}-{i}") for i in range(n)])

    _committer(db)
    sizes = [1, 7, 30, 2, 40]  # 80 rows
    half = event_store.ONE_STATEMENT_ROWS // 2 + 1
    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        small = _grouped(db, [call(f"s{c}", n) for c, n in enumerate(sizes)])
        assert seen == []
        large = _grouped(db, [call(f"l{c}", half) for c in range(2)])
        assert seen and not any(seen)
    finally:
        event.remove(db.engine, "before_cursor_execute", on_execute)
    stored = _stored(db)
    assert [r.ids for r in small] == [[stored[f"s{c}-{i}"] for i in range(n)]
                                      for c, n in enumerate(sizes)]
    assert [r.ids for r in large] == [[stored[f"l{c}-{i}"] for i in range(half)]
                                      for c in range(2)]
    with db.connect() as conn:
        row = conn.execute(select(events).where(events.c.external_id == "s0-0")).one()
    # the columns event_row leaves out get their defaults, as through SQLAlchemy
    assert (row.status, row.attributes, row.error_count, row.wished_channel,
            row.email_format) == ("pending", "{}", 0, 0, 0)


def test_on_postgresql_a_connection_lost_under_an_insert_is_unavailable_then_renewed(
        db: Database):
    """PostgreSQL: the server ends every connection of the pool (as a restart does); the
    next insert is refused as *unavailable* (nothing stored, a SOAP Server fault for the
    caller), and the one after it gets a new connection and is stored."""
    if db.is_sqlite:
        return
    event_store.insert_events(db, [event_row(1, external_id="before")])
    with create_engine(db.engine.url, isolation_level="AUTOCOMMIT").connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    with pytest.raises(Unavailable):
        event_store.insert_events(db, [event_row(2, external_id="lost")])
    ids = event_store.insert_events(db, [event_row(3, external_id="after")]).ids
    stored = _stored(db)
    assert "lost" not in stored and ids == [stored["after"]]


def test_group_commit_can_be_switched_off(db: Database, settings):
    """``MC_INGEST_GROUP_COMMIT=false``: every call commits on its own (no committer)."""
    off = Database(db.engine, settings.replace(ingest_group_commit=False))
    ids = event_store.insert_events(off, [event_row(1)]).ids
    assert len(ids) == 1 and off not in event_store._committers


# ---------------------------------------------------------------- a SIGKILLed front-end

LOGIN, PASSWORD = "load", "load-password"
PLID_RE = re.compile(rb'<plId xsi:type="xsd:long">(\d+)</plId>')


def _envelope(client: int, n: int) -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{LOGIN}/{PASSWORD}</urn:sessiontoken><urn:domEvent>"
        f'<rtEvent type="order_confirmation" email="c{client}@example.com" '
        f'externalId="{client}-{n}"><ctx><n>{n}</n></ctx></rtEvent></urn:domEvent>'
        "</urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    ).encode()


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children")
            for c in task.read_text().split()]


def _push_until(port: int, client: int, acked: dict[str, int], stop: threading.Event) -> None:
    """PushEvent in a loop; an answered plId is recorded, a cut connection is not."""
    headers = {"Content-Type": "text/xml; charset=utf-8",
               "SOAPAction": '"nms:rtEvent#PushEvent"'}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    n = 0
    while not stop.is_set():
        n += 1
        try:
            conn.request("POST", "/nl/jsp/soaprouter.jsp", _envelope(client, n), headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):  # the process answering it was killed
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        match = PLID_RE.search(body)
        if resp.status == 200 and match is not None:
            acked[f"{client}-{n}"] = int(match.group(1))
    conn.close()


def test_sigkill_of_http_processes_loses_no_acked_event(start_server, database_url: str):
    """16 clients push through 2 HTTP processes of 8 threads each (their inserts group
    committed); both processes are SIGKILLed twice mid-load (gunicorn starts new ones):
    every plId answered is a stored row holding that client's event -- no id was
    answered for an event whose transaction died with its process."""
    env = {"MC_DATABASE_URL": database_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    run_cli(env, "init")
    run_cli(env, "zone", "add", "loopback", "127.0.0.0/8", "--allow-user-password")
    run_cli(env, "operator", "add", LOGIN, "--password", PASSWORD)
    server = start_server(database_url, "--workers", "2", init=False,
                          env={"MC_HTTP_THREADS": "8"})
    port = int(server.url.rsplit(":", 1)[1])
    acked: dict[str, int] = {}
    stop = threading.Event()
    clients = [threading.Thread(target=_push_until, args=(port, c, acked, stop))
               for c in range(16)]
    for t in clients:
        t.start()
    try:
        master = _children(server.process.pid)[0]  # serve's one child: gunicorn
        for round_ in range(2):
            wait_until(lambda r=round_: len(acked) >= 300 * (r + 1), 120, "acks under load")
            http_processes = _children(master)
            assert http_processes, "no HTTP process to kill"
            for pid in http_processes:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda old=set(http_processes): set(_children(master)) - old, 60,
                       "gunicorn to start new HTTP processes")
        count = len(acked)
        wait_until(lambda: len(acked) >= count + 300, 120, "acks after the kills")
    finally:
        stop.set()
        for t in clients:
            t.join(60)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = dict(conn.execute(select(events.c.external_id, events.c.id)).all())
    finally:
        engine.dispose()
    missing = {k: v for k, v in acked.items() if stored.get(k) != split_plid(v)[1]}
    assert missing == {}
    assert len(set(acked.values())) == len(acked)
