"""The layout the scale-out issue asks for (issue 13 point 7), checked statically and cheaply.

- Routers translate HTTP only: no module under ``roomtape.api.routers`` builds SQL statements itself
  (``select``/``insert``/``update``/``delete`` from SQLAlchemy); their queries live in ``roomtape.db`` (or a
  service) where an ``api`` and a ``media`` node can both call them.
- The jobs package has no import cycle (it had one: ``jobs.runner`` <-> ``jobs.distributed``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROUTERS = SRC / "roomtape" / "api" / "routers"
JOBS = SRC / "roomtape" / "jobs"

QUERY_BUILDERS = frozenset({"select", "insert", "update", "delete"})


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def query_builders_used(path: Path) -> set[str]:
    """SQLAlchemy statement builders a module imports or reaches as ``sqlalchemy.<name>``."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            used |= {alias.name for alias in node.names} & QUERY_BUILDERS
        elif isinstance(node, ast.Attribute) and node.attr in QUERY_BUILDERS:
            if isinstance(node.value, ast.Name) and node.value.id in ("sqlalchemy", "sa"):
                used.add(node.attr)
    return used


def router_files() -> dict[str, Path]:
    return {path.relative_to(ROUTERS).as_posix(): path for path in sorted(ROUTERS.rglob("*.py"))}


def test_query_builders_are_found() -> None:
    # The check itself: a module with a query is seen as one.
    assert query_builders_used(JOBS / "recording.py") == {"select"}


@pytest.mark.parametrize("name", sorted(router_files()))
def test_routers_build_no_sql(name: str) -> None:
    used = query_builders_used(router_files()[name])
    assert not used, f"{name} imports SQLAlchemy's {sorted(used)}: move the query to roomtape.db"


def imports_of(path: Path) -> set[str]:
    """``roomtape`` modules a module imports, at module level or inside functions (imports are absolute)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found.add(node.module or "")
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("roomtape.")}


def test_the_jobs_package_has_no_import_cycle() -> None:
    modules = {module_name(path): path for path in JOBS.glob("*.py")}
    graph = {name: imports_of(path) & modules.keys() - {name} for name, path in modules.items()}
    assert "roomtape.jobs.recording" in graph["roomtape.jobs.distributed"]  # the graph is really read

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    for name in sorted(graph):
        cycle = cycle_from(name, name, (name,))
        assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", ["roomtape.jobs.runner", "roomtape.jobs.distributed"])
def test_each_job_runner_imports_alone(module: str) -> None:
    # A fresh interpreter importing only this module: with a cycle, whichever came first would see the
    # other half-initialised.
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
