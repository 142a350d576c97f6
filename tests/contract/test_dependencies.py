"""Dependencies are what the code uses: pyproject's runtime list and soap_service's imports
name the same distributions (nothing declared and never imported, nothing imported and
only there by accident of another package's requirements)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "soap_service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "soap_service"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# declared on purpose although no module of ours imports them, each with its reason
NOT_IMPORTED_ON_PURPOSE = {
    "sniffio",  # httpcore tries to import it on every request; missing, that costs ~1 ms each
}


def test_declared_runtime_dependencies_are_exactly_the_imported_ones() -> None:
    """Every third-party module soap_service imports belongs to a declared runtime
    dependency, and every declared runtime dependency is imported somewhere."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normalise(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0])
                for spec in project["dependencies"]}
    owners = packages_distributions()
    imported = {_normalise(dist) for module in _imported_top_levels()
                for dist in owners.get(module, [module])}
    assert imported - declared == set(), "imported but not declared in pyproject.toml"
    assert declared - imported - NOT_IMPORTED_ON_PURPOSE == set(), \
        "declared in pyproject.toml but never imported"
