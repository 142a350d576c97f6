"""Event storage, ingest side: insert events (idempotently), list them, show one.

Only SQLAlchemy Core here, and one transaction per call: the hot path of ``PushEvent``
is one ``INSERT ... RETURNING`` plus a commit; ``PushEvents`` is one multi-row insert.
Rows come in as plain column dicts (built and validated by ``soap_service.ingest``) and
go out as :class:`soap_service.models.Event` values.  Every insert into ``events`` is
here, a follow-up's child event too (:func:`insert_followup_child`, in the transaction of
``store.followups``).  The dispatch side (claims, leases, outcomes) lives in
``store.queue``, not here.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.exc import IntegrityError

from soap_service.errors import Conflict, ServerError
from soap_service.models import Event, EventStatus, FollowupRule, Queue, StatusChange
from soap_service.store import Database, dialect
from soap_service.tables import event_status_log, events

# Every column an ingested row may set; rows are padded to this set so that one
# executemany ("insertmanyvalues") statement carries the whole call.
INSERT_COLUMNS = (
    "queue", "event_type", "status", "priority", "email", "mobile_phone", "wished_channel",
    "email_format", "external_id", "origin", "language", "country", "registration_token",
    "mobile_app_uuid", "scheduled_at", "expiration_at", "attributes", "ctx_xml", "ctx_json",
    "error_count",
    "process_at", "idempotency_key", "payload_hash", "parent_id", "followup_rule_id",
    "created_at", "updated_at",
)
_INSERT_DEFAULTS: dict[str, Any] = {c: None for c in INSERT_COLUMNS} | {
    "status": EventStatus.PENDING.value, "priority": 1, "wished_channel": 0,
    "email_format": 0, "attributes": "{}", "error_count": 0,
}
_IDEMPOTENCY_RETRIES = 3
# rows written as one statement on PostgreSQL's driver (_insert_on_driver): 100 rows of all
# 27 columns are 2,700 bound parameters, far below PostgreSQL's 65,535; a larger call goes
# through SQLAlchemy in a transaction (which may split it into several statements)
ONE_STATEMENT_ROWS = 100
# the sizes of the text columns: ingest refuses a longer value (PostgreSQL would fail the
# whole insert with an error no caller should see; SQLite would store it)
TEXT_COLUMN_LENGTHS: dict[str, int] = {
    column.name: getattr(column.type, "length", 0) for column in events.c
    if isinstance(getattr(column.type, "length", None), int)
}


class IdempotencyConflict(Conflict):
    """An idempotency key already names a different event; ``index`` is its place in the call."""

    def __init__(self, index: int) -> None:
        super().__init__("idempotency key already used for a different event")
        self.index = index


@dataclass(frozen=True)
class StoredIds:
    """Primary keys of one call's events, in order; ``replayed`` marks idempotent repeats."""

    ids: list[int]
    replayed: list[bool]


# ---------------------------------------------------------------- insert


def insert_events(db: Database, rows: Sequence[Mapping[str, Any]]) -> StoredIds:
    """Insert ``rows`` in one transaction (all or none); on PostgreSQL the insert also
    wakes the dispatchers (``NOTIFY``), on SQLite the caller pokes ``wakeup``.

    A row with an ``idempotency_key`` already stored with the same ``payload_hash``
    yields the original id instead of a new row; with another hash the whole call
    fails with :class:`IdempotencyConflict`.  Two concurrent inserts of one key meet
    on the unique index: the loser retries, re-reads and compares.

    With ``settings.ingest_group_commit``, calls made at the same time by threads of
    one process share a transaction (:class:`GroupCommit`); each call still returns
    only once its rows are committed, and is all or none.
    """
    if not db.settings.ingest_group_commit:
        return _insert_alone(db, rows)
    committer = _committers.get(db)
    if committer is None or committer.pid != os.getpid():  # made after a fork
        committer = _committers[db] = GroupCommit()
    return committer.insert(db, rows)


def _insert_alone(db: Database, rows: Sequence[Mapping[str, Any]]) -> StoredIds:
    """One call's rows in a transaction of their own (see :func:`insert_events`)."""
    if _on_driver(db, rows):
        ids = _insert_on_driver(db, rows)
        return StoredIds(ids, [False] * len(ids))
    for attempt in range(_IDEMPOTENCY_RETRIES):
        try:
            with _writing(db, many=len(rows) > 1) as conn:
                stored = _insert_in(conn, rows)
        except IntegrityError as exc:
            if attempt + 1 == _IDEMPOTENCY_RETRIES or not _has_keys(rows):
                raise ServerError("could not store the events", str(exc.orig)[:200]) from exc
            continue
        return stored
    raise AssertionError("unreachable")  # pragma: no cover


class _Call:
    """One caller's rows waiting for a group commit, and what became of them."""

    __slots__ = ("again", "done", "error", "result", "rows")

    def __init__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows = rows
        self.done = False
        self.result: StoredIds | None = None
        self.error: BaseException | None = None
        self.again = False  # to be stored alone (its savepoint met the unique index)


class GroupCommit:
    """Group commit: concurrent :func:`insert_events` calls of one process share one
    transaction -- one write lock and one fsync on SQLite, one ``COMMIT`` on PostgreSQL.

    Leader / followers: a caller queues its rows and takes the leader lock; if a former
    leader has committed its rows meanwhile it returns at once, else it becomes the
    leader and commits everything queued by then (up to ``MAX_ROWS``), while new callers
    queue for the next commit.  No id is returned before the commit that stored it: a
    failed commit stores none of the group, and every call of it is then tried again
    alone, so one caller's failure is never another's.  Calls without idempotency keys
    go out as one multi-row insert; a call with keys runs in a savepoint of its own
    (a race on the unique index sends that call back to :func:`_insert_alone`).  On
    PostgreSQL a call that finds nobody else waiting takes the single-call path unchanged.

    On SQLite the leader takes the write lock *before* the queue (:meth:`_lead`): the
    lock is often held by another process for an fsync, and what queues during that wait
    joins this commit; a lone call runs the same way.  Measured with 2 HTTP
    processes and 8 connections: 2,650 -> 3,250 ``PushEvent``/s, CPU per request 530 ->
    450 µs (``bench/soap_wire.py``).
    """

    MAX_ROWS = 1000

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self._queue: list[_Call] = []

    def insert(self, db: Database, rows: Sequence[Mapping[str, Any]]) -> StoredIds:
        call = _Call(rows)
        with self._queue_lock:
            self._queue.append(call)
        while not call.done:
            with self._leader:
                if call.done:
                    break
                self._lead(db)
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _take(self) -> list[_Call]:
        """The calls queued now (up to ``MAX_ROWS`` rows), off the queue."""
        with self._queue_lock:
            group, self._queue = self._split(self._queue)
        return group

    def _split(self, queue: list[_Call]) -> tuple[list[_Call], list[_Call]]:
        size = 0
        for n, call in enumerate(queue):
            size += len(call.rows)
            if size > self.MAX_ROWS and n:
                return queue[:n], queue[n:]
        return queue, []

    def _lead(self, db: Database) -> None:
        """As the leader: commit the queued calls as one group, or each alone if the
        group fails; every call taken is marked done, whatever happens.

        On SQLite the write lock is taken *before* the queue: the lock is often held by
        another process (a front-end, the worker) for an fsync, and the calls that queue
        while this leader waits for it go into this commit instead of the next one.  On
        PostgreSQL a group without idempotency keys of at most ``ONE_STATEMENT_ROWS``
        rows is one statement on the driver (:func:`_insert_on_driver`)."""
        lock_first = db.is_sqlite
        group = None if lock_first else self._take()
        try:
            if group is not None and len(group) == 1:
                self._alone(db, group[0])
                return
            try:
                if group is not None and _on_driver(
                        db, rows := [row for call in group for row in call.rows]):
                    self._share_ids(group, _insert_on_driver(db, rows))
                else:
                    with db.begin() as conn:
                        if group is None:
                            group = self._take()
                        self._insert_group(conn, group)
            except Exception:  # nothing of the group is stored: each call on its own
                group = self._take() if group is None else group
                for call in group:
                    self._alone(db, call)
                return
            for call in group:
                if call.again:
                    self._alone(db, call)
        finally:
            for call in group or ():
                call.done = True

    @staticmethod
    def _share_ids(group: list[_Call], ids: list[int]) -> None:
        """Each call of a group without keys gets the ids of its own rows, in order (none
        replayed: only a key replays)."""
        start = 0
        for call in group:
            end = start + len(call.rows)
            call.result = StoredIds(ids[start:end], [False] * (end - start))
            start = end

    @staticmethod
    def _alone(db: Database, call: _Call) -> None:
        call.result, call.error = None, None
        try:
            call.result = _insert_alone(db, call.rows)
        except Exception as exc:  # the caller's own error, raised in its thread
            call.error = exc

    @classmethod
    def _insert_group(cls, conn: Connection, group: list[_Call]) -> None:
        plain = [c for c in group if not _has_keys(c.rows)]
        if plain:  # no keys, so nothing is replayed
            cls._share_ids(plain, _insert_in(conn, [row for c in plain for row in c.rows]).ids)
        for call in group:
            if not _has_keys(call.rows):
                continue
            try:
                with conn.begin_nested():
                    call.result = _insert_in(conn, call.rows)
            except IdempotencyConflict as exc:
                call.error = exc
            except IntegrityError:
                call.again = True


# one per database and process (a Database is made per process; tests make many)
_committers: weakref.WeakKeyDictionary[Database, GroupCommit] = weakref.WeakKeyDictionary()


def _writing(db: Database, *, many: bool) -> AbstractContextManager[Connection]:
    """The connection a call's insert runs on.

    (On PostgreSQL, rows without idempotency keys take :func:`_insert_on_driver` instead.)
    One row (``PushEvent``): :meth:`Database.one_statement` -- autocommit on PostgreSQL,
    because the only write is one ``INSERT`` statement, which saves the ``BEGIN`` and
    ``COMMIT`` round trips.  Several rows take a transaction: SQLAlchemy splits a large
    multi-row insert into several statements (``insertmanyvalues`` pages), which
    autocommit would commit one by one.  The idempotency lookup before the insert is a
    read; a race between the lookup and the insert ends on the unique index and is
    retried above.
    """
    return db.begin() if many else db.one_statement()


# Statements built once: building them per call costs more CPU than the insert itself.
# Where the dialect allows, the wake-up is folded into the insert (``pg_notify`` in
# RETURNING, delivered at commit, de-duplicated per transaction), which saves the
# separate NOTIFY round trip of ``dialect.wake_dispatcher``.
_INSERT_ONE = insert(events).returning(events.c.id)
_INSERT_MANY = insert(events).returning(events.c.id, sort_by_parameter_order=True)
_INSERT_ONE_WAKE = insert(events).returning(events.c.id, dialect.PG_NOTIFY)
_INSERT_MANY_WAKE = insert(events).returning(events.c.id, dialect.PG_NOTIFY,
                                             sort_by_parameter_order=True)


def _has_keys(rows: Sequence[Mapping[str, Any]]) -> bool:
    return any(r.get("idempotency_key") for r in rows)


def _on_driver(db: Database, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether these rows go out through :func:`_insert_on_driver`."""
    return db.is_postgres and len(rows) <= ONE_STATEMENT_ROWS and not _has_keys(rows)


def _insert_on_driver(db: Database, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """PostgreSQL, rows without idempotency keys (at most ``ONE_STATEMENT_ROWS``): one
    ``INSERT ... RETURNING`` on the driver's connection in autocommit
    (:func:`dialect.driver_autocommit`: the statement is atomic on its own, and this
    skips SQLAlchemy's execution layers, ~50 µs of CPU per insert), the wake-up folded
    in.  The NOT NULL columns' defaults are filled here, as SQLAlchemy fills a Column's
    default.  The ids are matched to the rows by sorting them: a ``VALUES`` list is read
    in its order and each row takes the next value of the id sequence as it is inserted,
    so the ids ascend with the rows (other sessions' inserts may take values in between).
    SQLAlchemy's own ordered multi-row insert (``sort_by_parameter_order``) sorts
    ascending ids the same way, after an ``INSERT ... SELECT ... ORDER BY``; the tests
    check the mapping on groups of up to 80 rows."""
    columns = tuple(c for c in INSERT_COLUMNS
                    if c in _DRIVER_DEFAULTS or any(r.get(c) is not None for r in rows))
    values = []
    for row in rows:
        for c in columns:
            value = row.get(c)
            values.append(_INSERT_DEFAULTS[c] if value is None else value)
    with dialect.driver_autocommit(db.engine, "could not store the events") as driver:
        found = driver.execute(_driver_insert_sql(columns, len(rows)), values).fetchall()
    return sorted(int(r[0]) for r in found)


_DRIVER_DEFAULTS = {c: v for c, v in _INSERT_DEFAULTS.items() if v is not None}


@functools.lru_cache(maxsize=512)
def _driver_insert_sql(columns: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    # every name is one of INSERT_COLUMNS, a constant; the values are bound parameters
    return (f'INSERT INTO "{events.name}" ({names}) VALUES {", ".join([one] * rows)} '  # noqa: S608
            f"RETURNING id, pg_notify('{dialect.WAKE_CHANNEL}', '')")


def _insert_in(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> StoredIds:
    ids: list[int | None] = [None] * len(rows)
    replayed = [False] * len(rows)
    if _has_keys(rows):
        _resolve_keys(conn, rows, ids, replayed)
    fresh = [i for i, pk in enumerate(ids) if pk is None and not replayed[i]]
    wake = dialect.wake_in_returning(conn)
    if len(fresh) == 1:
        (i,) = fresh
        one = _INSERT_ONE_WAKE if wake else _INSERT_ONE
        ids[i] = conn.execute(one, _uniform([rows[i]])[0]).scalar()
    elif fresh:
        many = _INSERT_MANY_WAKE if wake else _INSERT_MANY
        result = conn.execute(many, _uniform([rows[i] for i in fresh]))
        for i, pk in zip(fresh, result.scalars(), strict=True):
            ids[i] = pk
    _fill_duplicates(rows, ids)
    return StoredIds(ids=[int(pk) for pk in ids if pk is not None], replayed=replayed)


def _resolve_keys(
    conn: Connection, rows: Sequence[Mapping[str, Any]], ids: list[int | None],
    replayed: list[bool],
) -> None:
    """Map already-stored keys to their ids; raise on a key reused with another payload."""
    keys = {r["idempotency_key"] for r in rows if r.get("idempotency_key")}
    found = {
        key: (pk, digest)
        for key, pk, digest in conn.execute(
            select(events.c.idempotency_key, events.c.id, events.c.payload_hash).where(
                events.c.idempotency_key.in_(keys)
            )
        )
    }
    first_in_call: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = row.get("idempotency_key")
        if not key:
            continue
        if key in found:
            pk, digest = found[key]
            if digest != row.get("payload_hash"):
                raise IdempotencyConflict(i)
            ids[i], replayed[i] = pk, True
        elif key in first_in_call:
            if rows[first_in_call[key]].get("payload_hash") != row.get("payload_hash"):
                raise IdempotencyConflict(i)
            replayed[i] = True
        else:
            first_in_call[key] = i


def _fill_duplicates(rows: Sequence[Mapping[str, Any]], ids: list[int | None]) -> None:
    """A key repeated inside one call gets the id of its first occurrence."""
    by_key: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = row.get("idempotency_key")
        if not key:
            continue
        if ids[i] is None:
            ids[i] = by_key[key]
        else:
            by_key.setdefault(key, ids[i])  # type: ignore[arg-type]


def _uniform(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows with one key set: every column that is set (not None) in any of them.

    One key set lets the whole call go out as one multi-row statement; leaving out the
    columns nobody set keeps that statement (and its parameter list) short, which is
    most of the CPU of a 100-event ``PushEvents``.
    """
    if len(rows) == 1:  # PushEvent: the hot path
        return [{k: v for k, v in rows[0].items() if v is not None and k in _INSERT_DEFAULTS}]
    keys = [c for c in INSERT_COLUMNS
            if c in _INSERT_DEFAULTS and any(r.get(c) is not None for r in rows)]
    return [{k: row.get(k, _INSERT_DEFAULTS[k]) for k in keys} for row in rows]


# ---------------------------------------------------------------- follow-up children


_COPIED = ("queue", "priority", "email", "mobile_phone", "email_format", "external_id", "origin",
           "language", "country", "registration_token", "mobile_app_uuid", "ctx_xml")


def insert_followup_child(conn: Connection, parent_id: int, rule: FollowupRule, event_type: str,
                          wished_channel: int, at: datetime) -> int | None:
    """Create the follow-up event of ``parent_id`` for ``rule`` in the caller's transaction;
    None when one exists already (``uq_events_followup_once``) or the parent is gone."""
    parent = conn.execute(select(events).where(events.c.id == parent_id)).first()
    if parent is None:
        return None
    attributes = json.loads(parent.attributes or "{}")
    attributes.update(type=event_type, followup=rule.name, template=rule.template)
    values: dict[str, Any] = {name: getattr(parent, name) for name in _COPIED}
    values.update(
        event_type=event_type, status="pending", wished_channel=wished_channel,
        attributes=json.dumps(attributes), error_count=0, process_at=at, parent_id=parent_id,
        followup_rule_id=rule.id, created_at=at, updated_at=at,
    )
    stmt = dialect.insert_ignoring_conflict(events, conn, "uq_events_followup_once")
    row = conn.execute(stmt.values(**values).returning(events.c.id)).first()
    if row is None:
        return None
    conn.execute(insert(event_status_log).values(
        event_id=row.id, status="pending", reason=f"follow-up {rule.name} of {parent_id}",
        created_at=at))
    return int(row.id)


# ---------------------------------------------------------------- read


def event_from_row(row: Row[Any] | Mapping[str, Any]) -> Event:
    """Turn an ``events`` row into an :class:`Event`."""
    m = row._mapping if isinstance(row, Row) else row
    return Event(
        id=m["id"], queue=Queue(m["queue"]), event_type=m["event_type"], ctx_xml=m["ctx_xml"],
        status=EventStatus(m["status"]), email=m["email"], mobile_phone=m["mobile_phone"],
        wished_channel=m["wished_channel"], email_format=m["email_format"],
        external_id=m["external_id"], origin=m["origin"], language=m["language"],
        country=m["country"], registration_token=m["registration_token"],
        mobile_app_uuid=m["mobile_app_uuid"], scheduled_at=m["scheduled_at"],
        expiration_at=m["expiration_at"], attributes=json.loads(m["attributes"] or "{}"),
        error_count=m["error_count"], process_at=m["process_at"], created_at=m["created_at"],
        updated_at=m["updated_at"], parent_id=m["parent_id"], last_error=m["last_error"],
        ctx_json=m["ctx_json"], requeued_at=m["requeued_at"],
    )


def get_event(db: Database, pk: int) -> Event | None:
    """The event with primary key ``pk``, or None."""
    with db.connect() as conn:
        row = conn.execute(select(events).where(events.c.id == pk)).first()
    return None if row is None else event_from_row(row)


def list_events(
    db: Database, *, status: str | None = None, event_type: str | None = None,
    queue: str | None = None, external_id: str | None = None,
    since: datetime | None = None, until: datetime | None = None, limit: int = 50,
) -> list[Event]:
    """Newest events first, optionally filtered (received in ``[since, until)``)."""
    stmt = select(events).order_by(events.c.id.desc()).limit(limit)
    equal = {events.c.status: status, events.c.event_type: event_type,
             events.c.queue: queue, events.c.external_id: external_id}
    for column, value in equal.items():
        if value:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(events.c.created_at >= since)
    if until is not None:
        stmt = stmt.where(events.c.created_at < until)
    with db.connect() as conn:
        return [event_from_row(row) for row in conn.execute(stmt)]


def status_history(db: Database, pk: int) -> list[StatusChange]:
    """Status changes of one event, oldest first (``event_status_log``)."""
    stmt = (
        select(event_status_log.c.status, event_status_log.c.reason,
               event_status_log.c.created_at)
        .where(event_status_log.c.event_id == pk)
        .order_by(event_status_log.c.id)
    )
    with db.connect() as conn:
        return [StatusChange(**row._mapping) for row in conn.execute(stmt)]


def count_events(db: Database) -> int:
    """Number of stored events (tests and health output)."""
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())
