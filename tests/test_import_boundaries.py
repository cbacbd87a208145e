"""The core's import rules: no Dagster or FastAPI in axiom_dagster/ outside its entry points
(definitions, cli, demo), and each subpackage imports only the subpackages before it in the
data flow."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "axiom_dagster"
# Each subpackage may import itself and the ones before it. The pipeline calls rules, the
# catalog and destinations, so those come before it; sources retrieve into ingest and may
# hand studies to the pipeline.
ORDER = [
    "config", "dicom", "store", "ingest", "deid", "crosswalks", "ai", "rules",
    "catalog", "destinations", "pipeline", "sources",
]
# Top-level modules that assemble or drive the Dagster side (the CLI starts the services).
ENTRY_POINTS = {"definitions.py", "cli.py", "demo.py", "sources_cli.py"}
ADAPTER_LIBRARIES = {"dagster", "dagster_postgres", "dagster_gcp", "dagster_celery", "celery", "fastapi", "starlette", "uvicorn"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def core_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name not in ENTRY_POINTS)


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_no_adapter_library(path):
    leaked = {m for m in imported_modules(path) if m.split(".")[0] in ADAPTER_LIBRARIES}
    assert not leaked, f"{path.name} imports {sorted(leaked)}"


def test_every_subpackage_has_a_place_in_the_order():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(ORDER)


@pytest.mark.parametrize("subpackage", ORDER)
def test_subpackage_imports_only_earlier_ones(subpackage):
    allowed = set(ORDER[: ORDER.index(subpackage) + 1])
    wrong = []
    for path in (PACKAGE / subpackage).rglob("*.py"):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "axiom_dagster" and len(parts) > 1 and parts[1] not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "\n".join(wrong)
