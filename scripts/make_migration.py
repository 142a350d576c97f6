"""Regenerate the initial migration from ``soap_service.tables`` (before the first release).

Until a release ships, the schema is one migration, ``0001_initial``, regenerated from the
table definitions; after that, add migrations with ``alembic revision --autogenerate``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from soap_service.config import load_settings
from soap_service.store import Database, make_engine
from soap_service.store.schema import MIGRATIONS, alembic_config

target = MIGRATIONS / "versions" / "0001_initial.py"
target.unlink(missing_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    settings = load_settings({"MC_DATABASE_URL": f"sqlite:///{tmp}/gen.db"})
    db = Database(make_engine(settings), settings)
    command.revision(
        alembic_config(db), message="initial schema", autogenerate=True, rev_id="0001",
    )
    generated = next((MIGRATIONS / "versions").glob("0001_*.py"))
    if generated != target:
        generated.rename(target)
shown = Path(target).relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target
print(f"wrote {shown}")
