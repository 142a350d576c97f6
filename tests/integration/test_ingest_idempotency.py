"""Idempotency keys (SPEC 2.4) and the dispatcher wake-up, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from lxml import etree
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from soap_service import clock, ingest, wakeup
from soap_service.config import Settings, load_settings
from soap_service.errors import Conflict
from soap_service.models import Queue, split_plid
from soap_service.store import Database, make_engine, schema
from soap_service.store import events as event_store
from soap_service.store.dialect import WAKE_CHANNEL
from soap_service.tables import events


def keyed(key: str | None = "k-1", name: str = "John", attr_order: bool = False):
    attrs = (f'email="a@example.com" type="welcome" idempotencyKey="{key}"' if attr_order
             else f'type="welcome" idempotencyKey="{key}" email="a@example.com"')
    if key is None:
        attrs = 'type="welcome" email="a@example.com"'
    return etree.fromstring(f"<rtEvent {attrs}><ctx><n>{name}</n></ctx></rtEvent>")


def test_same_key_same_event_returns_the_original_plid(db: Database, settings: Settings):
    """A repeat with the same key and payload (attribute order and prefixes aside) gives
    back the first plId and stores nothing new."""
    first = ingest.store_event(db, settings, keyed(), Queue.RT)
    again = ingest.store_event(db, settings, keyed(attr_order=True), Queue.RT)
    wrapped = etree.fromstring(
        '<w xmlns:x="urn:unused"><rtEvent type="welcome" idempotencyKey="k-1" '
        'email="a@example.com"><ctx><n>John</n></ctx></rtEvent></w>')[0]
    third = ingest.store_event(db, settings, wrapped, Queue.RT)
    assert first == again == third
    assert event_store.count_events(db) == 1


def test_same_key_different_event_is_a_conflict(db: Database, settings: Settings):
    """The same key with a different payload raises Conflict (a Client fault)."""
    ingest.store_event(db, settings, keyed(), Queue.RT)
    with pytest.raises(Conflict, match="idempotency key"):
        ingest.store_event(db, settings, keyed(name="Jane"), Queue.RT)
    assert event_store.count_events(db) == 1


def test_header_key_applies_to_an_event_without_attribute(db: Database, settings: Settings):
    """The HTTP Idempotency-Key header (passed by the edge) works like the attribute."""
    a = ingest.store_event(db, settings, keyed(None), Queue.RT, idempotency_key="hdr-1")
    b = ingest.store_event(db, settings, keyed(None), Queue.RT, idempotency_key="hdr-1")
    c = ingest.store_event(db, settings, keyed(None), Queue.RT)
    assert a == b != c
    with pytest.raises(Conflict):
        ingest.store_event(db, settings, keyed(None, name="X"), Queue.RT, idempotency_key="hdr-1")


def test_push_events_with_keys(db: Database, settings: Settings):
    """In PushEvents a stored key maps to its original plId, a key repeated in the call
    maps to its first occurrence, and a mismatch fails the whole call with its index."""
    original = ingest.store_event(db, settings, keyed("k-old"), Queue.RT)
    result = ingest.store_events(
        db, settings, [keyed("k-old"), keyed("k-new"), keyed(None), keyed("k-new")], "rt")
    plids = [plid for plid, _ in result]
    assert plids[0] == original and plids[1] == plids[3]
    assert len(set(plids)) == 3 and event_store.count_events(db) == 3
    with pytest.raises(Conflict, match=r"^event #2: idempotency key"):
        ingest.store_events(db, settings, [keyed(None), keyed("k-new", name="Z")], "rt")
    with pytest.raises(Conflict, match=r"^event #2: "):
        ingest.store_events(db, settings, [keyed("k-x"), keyed("k-x", name="Z")], "rt")
    assert event_store.count_events(db) == 3


def test_concurrent_pushes_with_one_key_store_one_event(db: Database, settings: Settings):
    """Eight threads pushing the same keyed event at once all get the same plId."""
    barrier = threading.Barrier(8)

    def push(_: int) -> int:
        barrier.wait()
        return ingest.store_event(db, settings, keyed("race"), Queue.RT)

    with ThreadPoolExecutor(8) as pool:
        plids = list(pool.map(push, range(8)))
    assert len(set(plids)) == 1
    assert event_store.count_events(db) == 1


def _insert_uncommitted(url: str, element: etree._Element):
    """Insert the keyed event in an open, uncommitted transaction on its own engine."""
    engine = create_engine(url)
    conn = engine.connect()
    trans = conn.begin()
    row = ingest.build_row(element, Queue.RT, {}, clock.utcnow())
    conn.execute(insert(events), row)
    return engine, conn, trans


def _wait_for_lock_waiter(url: str, deadline_s: float = 30.0) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                waiting = conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )).scalar_one()
            if waiting:
                return
            time.sleep(0.05)
        raise AssertionError("the second insert never waited on the unique index")
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(("name", "conflict"), [("John", False), ("Jane", True)])
def test_unique_index_race_on_postgres(postgres_url: str, name: str, conflict: bool):
    """The loser of an insert race on one key (blocked on the unique index, then a
    unique violation) re-reads and returns the winner's plId, or Conflict if the
    payloads differ."""
    settings = load_settings({"MC_DATABASE_URL": postgres_url})
    db = Database(make_engine(settings), settings)
    schema.upgrade(db)
    engine, conn, trans = _insert_uncommitted(postgres_url, keyed("race-pg"))
    outcome: dict[str, object] = {}

    def loser() -> None:
        try:
            outcome["plid"] = ingest.store_event(db, settings, keyed("race-pg", name=name), "rt")
        except Conflict as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=loser)
    thread.start()
    try:
        _wait_for_lock_waiter(postgres_url)
    finally:
        trans.commit()
        conn.close()
        engine.dispose()
    thread.join(30)
    assert not thread.is_alive()
    assert event_store.count_events(db) == 1
    if conflict:
        assert isinstance(outcome.get("error"), Conflict)
    else:
        winner = event_store.list_events(db)[0]
        assert split_plid(outcome["plid"])[1] == winner.id  # type: ignore[arg-type]
    db.dispose()


def test_a_stored_event_wakes_the_dispatcher(db: Database, settings: Settings):
    """After the commit the dispatcher is poked: a datagram on the SQLite wake socket, a
    NOTIFY on PostgreSQL; an idempotent repeat does not wake it again."""
    if db.is_sqlite:
        path = wakeup.socket_path(db)
        assert path is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            sock.settimeout(10)
            ingest.store_event(db, settings, keyed("wake"), Queue.RT)
            assert sock.recv(16) == b"1"
            ingest.store_event(db, settings, keyed("wake"), Queue.RT)
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(16)
        path.unlink()
        return
    dsn = make_url(settings.database_url).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True) as listen:
        listen.execute(f"LISTEN {WAKE_CHANNEL}")

        def received_before_sentinel() -> list[str]:
            # notifications arrive in commit order: all earlier ones precede the sentinel
            listen.execute(f"NOTIFY {WAKE_CHANNEL}, 'sentinel'")
            got = []
            for note in listen.notifies(timeout=30):
                if note.payload == "sentinel":
                    return got
                got.append(note.channel)
            raise AssertionError("sentinel notification never arrived")

        ingest.store_events(db, settings, [keyed(None), keyed(None)], Queue.RT)
        assert received_before_sentinel() == [WAKE_CHANNEL]
        ingest.store_event(db, settings, keyed("wake"), Queue.RT)
        assert received_before_sentinel() == [WAKE_CHANNEL]
        ingest.store_event(db, settings, keyed("wake"), Queue.RT)
        assert received_before_sentinel() == []
