"""Queries for authentication: operators, sessions, security zones and API keys.

Only hashes are stored here (password hashes, sha256 of session tokens and API keys);
clear secrets never reach this module.  Functions take the :class:`Database`, open their
own short transaction and return values from ``models`` (``Operator``, ``Zone``,
``ApiKey``), never rows.  Policy (who may do what, caching) lives in ``auth.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, Select, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from soap_service import clock
from soap_service.errors import Conflict, NotFound, ServerError
from soap_service.models import ApiKey, Operator, Zone
from soap_service.store import Database
from soap_service.tables import api_keys, operators, security_zones, sessions


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every table here has an autoincrement key
        raise ServerError("insert returned no primary key")
    return int(key[0])


def _rights(raw: str) -> frozenset[str]:
    return frozenset(r.strip() for r in raw.split(",") if r.strip())


def _operator(row: RowMapping) -> Operator:
    return Operator(
        id=row["id"], login=row["login"], password_hash=row["password_hash"],
        rights=_rights(row["rights"]), created_at=row["created_at"], updated_at=row["updated_at"],
    )


# ---------------------------------------------------------------- operators


def add_operator(db: Database, login: str, password_hash: str, rights: frozenset[str]) -> Operator:
    """Insert an operator; :class:`Conflict` when the login exists."""
    now = clock.utcnow()
    values = {"login": login, "password_hash": password_hash,
              "rights": ",".join(sorted(rights)), "created_at": now, "updated_at": now}
    try:
        with db.begin() as conn:
            new_id = _new_id(conn.execute(insert(operators).values(**values)))
    except IntegrityError as exc:
        raise Conflict(f"operator {login!r} already exists") from exc
    return Operator(id=new_id, login=login, password_hash=password_hash, rights=rights,
                    created_at=now, updated_at=now)


def get_operator(db: Database, login: str) -> Operator | None:
    with db.connect() as conn:
        row = conn.execute(select(operators).where(operators.c.login == login)).mappings().first()
    return _operator(row) if row else None


def list_operators(db: Database) -> list[Operator]:
    with db.connect() as conn:
        rows = conn.execute(select(operators).order_by(operators.c.login)).mappings().all()
    return [_operator(r) for r in rows]


def set_password_hash(db: Database, login: str, password_hash: str) -> None:
    """Replace an operator's password hash; :class:`NotFound` for an unknown login."""
    stmt = (update(operators).where(operators.c.login == login)
            .values(password_hash=password_hash, updated_at=clock.utcnow()))
    with db.begin() as conn:
        if conn.execute(stmt).rowcount == 0:
            raise NotFound(f"no operator {login!r}")


# ---------------------------------------------------------------- sessions


def add_session(db: Database, token_hash: str, operator_id: int, expires_at: datetime) -> None:
    """Store a session (by token hash) and drop sessions that have expired."""
    now = clock.utcnow()
    with db.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
        conn.execute(insert(sessions).values(token_hash=token_hash, operator_id=operator_id,
                                             created_at=now, expires_at=expires_at))


def find_session(db: Database, token_hash: str) -> tuple[Operator, datetime] | None:
    """The session's operator and expiry time, or None (expiry is the caller's check)."""
    stmt = (select(operators, sessions.c.expires_at)
            .join(sessions, sessions.c.operator_id == operators.c.id)
            .where(sessions.c.token_hash == token_hash))
    with db.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return (_operator(row), row["expires_at"]) if row else None


def find_session_times(db: Database, token_hash: str
                       ) -> tuple[Operator, datetime, datetime] | None:
    """The session's operator, creation and expiry times, or None."""
    stmt = (select(operators, sessions.c.created_at.label("session_created_at"),
                   sessions.c.expires_at)
            .join(sessions, sessions.c.operator_id == operators.c.id)
            .where(sessions.c.token_hash == token_hash))
    with db.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return (_operator(row), row["session_created_at"], row["expires_at"]) if row else None


def touch_session(db: Database, token_hash: str, expires_at: datetime) -> bool:
    """Move a session's deadline (the console's idle timeout); False when it is gone."""
    stmt = (update(sessions).where(sessions.c.token_hash == token_hash)
            .values(expires_at=expires_at))
    with db.begin() as conn:
        return conn.execute(stmt).rowcount > 0


def delete_session(db: Database, token_hash: str) -> bool:
    with db.begin() as conn:
        result = conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))
        return result.rowcount > 0


# ---------------------------------------------------------------- zones


def _zone(row: RowMapping) -> Zone:
    return Zone(
        name=row["name"], cidr=row["cidr"], allow_user_password=row["allow_user_password"],
        allow_empty_password=row["allow_empty_password"],
        session_token_only=row["session_token_only"], show_errors=row["show_errors"],
        is_proxy=row["is_proxy"], created_at=row["created_at"],
    )


def add_zone(db: Database, zone: Zone) -> Zone:
    """Insert a zone (its CIDR already validated); :class:`Conflict` when the name exists."""
    now = clock.utcnow()
    values = {
        "name": zone.name, "cidr": zone.cidr, "allow_user_password": zone.allow_user_password,
        "allow_empty_password": zone.allow_empty_password,
        "session_token_only": zone.session_token_only, "show_errors": zone.show_errors,
        "is_proxy": zone.is_proxy, "created_at": now,
    }
    try:
        with db.begin() as conn:
            conn.execute(insert(security_zones).values(**values))
    except IntegrityError as exc:
        raise Conflict(f"zone {zone.name!r} already exists") from exc
    return dataclasses.replace(zone, created_at=now)


def list_zones(db: Database) -> list[Zone]:
    with db.connect() as conn:
        rows = conn.execute(select(security_zones).order_by(security_zones.c.name)).mappings().all()
    return [_zone(r) for r in rows]


def remove_zone(db: Database, name: str) -> None:
    with db.begin() as conn:
        if conn.execute(delete(security_zones).where(security_zones.c.name == name)).rowcount == 0:
            raise NotFound(f"no zone {name!r}")


# ---------------------------------------------------------------- API keys


def _operator_id(conn: Connection, login: str) -> int:
    found = conn.execute(select(operators.c.id).where(operators.c.login == login)).scalar()
    if found is None:
        raise NotFound(f"no operator {login!r}")
    return int(found)


def add_api_key(db: Database, name: str, key_hash: str, prefix: str,
                operator_login: str | None,
                scopes: frozenset[str] = frozenset({"push"})) -> ApiKey:
    """Insert a key (by hash); :class:`Conflict` for a duplicate name."""
    now = clock.utcnow()
    try:
        with db.begin() as conn:
            op_id = _operator_id(conn, operator_login) if operator_login else None
            new_id = _new_id(conn.execute(insert(api_keys).values(
                name=name, key_hash=key_hash, prefix=prefix, operator_id=op_id, created_at=now,
                scopes=",".join(sorted(scopes)),
            )))
    except IntegrityError as exc:
        raise Conflict(f"API key {name!r} already exists") from exc
    return ApiKey(id=new_id, name=name, prefix=prefix, operator_id=op_id,
                  operator_login=operator_login, created_at=now, revoked_at=None,
                  scopes=scopes)


def _api_key_select() -> Select[Any]:
    return select(api_keys, operators.c.login.label("operator_login")).outerjoin(
        operators, operators.c.id == api_keys.c.operator_id)


def _api_key(row: RowMapping) -> ApiKey:
    return ApiKey(id=row["id"], name=row["name"], prefix=row["prefix"],
                  operator_id=row["operator_id"], operator_login=row["operator_login"],
                  created_at=row["created_at"], revoked_at=row["revoked_at"],
                  scopes=_rights(row["scopes"]))


def find_api_key(db: Database, key_hash: str) -> tuple[ApiKey, Operator | None] | None:
    """The key (revoked or not) and its operator, or None for an unknown hash."""
    with db.connect() as conn:
        row = conn.execute(_api_key_select().where(api_keys.c.key_hash == key_hash)
                           ).mappings().first()
        if row is None:
            return None
        key = _api_key(row)
        op = None
        if key.operator_id is not None:
            op_row = conn.execute(select(operators).where(operators.c.id == key.operator_id)
                                  ).mappings().first()
            op = _operator(op_row) if op_row else None
    return key, op


def list_api_keys(db: Database) -> list[ApiKey]:
    with db.connect() as conn:
        rows = conn.execute(_api_key_select().order_by(api_keys.c.name)).mappings().all()
    return [_api_key(r) for r in rows]


def revoke_api_key(db: Database, name: str) -> None:
    """Mark a key revoked (kept for the record); :class:`NotFound` if unknown or revoked."""
    stmt = (update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=clock.utcnow()))
    with db.begin() as conn:
        if conn.execute(stmt).rowcount == 0:
            raise NotFound(f"no active API key {name!r}")
