"""Every third-party module imported under ``src/`` comes from a declared runtime dependency.

``make run`` installs ``pip install -e .`` without the test extra, so a package that only the test extra (or
another package, by chance) brings in makes ``roomtape serve`` die at import on a fresh machine — wave 1 shipped
exactly that with numpy. This reads the imports statically (lazy imports inside functions included) and maps
each top-level module to the distribution that provides it in this environment.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "roomtape"


def _imported_top_level_modules() -> dict[str, list[str]]:
    """Top-level module name -> files (relative to the repo) that import it, for absolute imports."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def _runtime_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(spec).name) for spec in project["dependencies"]}


def test_every_third_party_import_is_a_runtime_dependency() -> None:
    providers = packages_distributions()
    declared = _runtime_requirements()
    missing: list[str] = []
    for module, files in sorted(_imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module in {"roomtape", "__future__"}:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported in {files[0]}) is not installed in this environment"
        if not dists & declared:
            missing.append(f"{module} (from {', '.join(sorted(dists))}; imported in {files[0]})")
    assert not missing, "imported under src/ but not in [project].dependencies: " + "; ".join(missing)


def test_the_check_sees_lazy_imports() -> None:
    """The walk covers imports inside functions (``serve`` imports uvicorn lazily) — else it proves little."""
    modules = _imported_top_level_modules()
    assert "uvicorn" in modules and "numpy" in modules and "av" in modules
