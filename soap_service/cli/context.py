"""What every CLI command gets: output mode, settings and the database, built lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from soap_service.config import Settings, load_settings
from soap_service.store import Database, connect


@dataclass
class CliContext:
    json: bool = False
    verbose_errors: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @cached_property
    def settings(self) -> Settings:
        return self._settings or load_settings()

    @cached_property
    def db(self) -> Database:
        return connect(self.settings)

    def emit(self, rows: list[dict] | dict, columns: list[str] | None = None) -> None:
        """Print ``rows`` as a table (people) or JSON (``--json``)."""
        from soap_service.cli import output

        output.emit(rows, columns, as_json=self.json)
