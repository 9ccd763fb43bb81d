"""Project-wide rules: one-way imports between packages, lint clean, time injected."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["collector", "simulator", "slo", "alerts", "dashboards", "runbooks", "migrations", "qfleet"]
# Package -> the qfleet packages it may import (style.md §5.2). qfleet is the composition root.
ALLOWED = {
    "collector": set(),
    "simulator": {"collector"},
    "slo": {"collector"},
    "alerts": {"collector", "slo"},
    "dashboards": {"collector", "slo", "alerts"},
    "runbooks": {"collector", "simulator", "slo", "alerts"},
    "migrations": {"collector"},
    "qfleet": set(PACKAGES),
}


def _package_of(module: str) -> str:
    """``qfleet.slo.model`` -> ``slo``; ``qfleet.cli`` -> ``qfleet``; a bare old name stays as it is."""
    parts = module.split(".")
    if parts[0] == "qfleet":
        return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "qfleet"
    return parts[0]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_package_of(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(_package_of(node.module))
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    bad = {}
    for path in (ROOT / package).rglob("*.py"):
        wrong = (_imports(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        if wrong:
            bad[str(path.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"imports against the one-way direction: {bad}"


def test_nothing_imports_the_composition_root() -> None:
    for package in PACKAGES:
        if package == "qfleet":
            continue
        for path in (ROOT / package).rglob("*.py"):
            assert "qfleet" not in _imports(path), f"{path} imports qfleet"


def test_core_code_does_not_read_the_wall_clock() -> None:
    offenders = []
    for package in ("collector", "simulator", "slo", "alerts"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "cli.py":
                continue
            src = path.read_text()
            for needle in ("time.time()", "datetime.now(", "datetime.utcnow("):
                if needle in src:
                    offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders


def _reads_env(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv"):
            return True
        if isinstance(n, ast.Name) and n.id in ("environ", "getenv"):
            return True
    return False


def test_no_module_reads_the_environment_at_import() -> None:
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:  # module level, not inside functions
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _reads_env(node):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        from tests.conftest import require

        require(False, "ruff is not installed (pip install -e '.[test]')")
    res = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
