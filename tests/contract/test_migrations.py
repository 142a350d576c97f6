"""The migrations create exactly the schema that ``soap_service.tables`` describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from soap_service.store import Database, schema
from soap_service.tables import metadata


def test_migrations_match_table_definitions(db: Database) -> None:
    """After ``upgrade`` there is no difference left for autogenerate to find."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_is_idempotent(db: Database) -> None:
    """Running ``init`` on an up-to-date database changes nothing and keeps the head."""
    before, after = schema.upgrade(db)
    assert before == after == schema.head_revision(db)
