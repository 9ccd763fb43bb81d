"""Type-check qfleet with mypy under its installed names: ``python -m tests.typecheck [mypy args]``.

The product's folders install as ``qfleet.collector``, ``qfleet.slo``... through setuptools' package-dir
mapping, which an editable install serves with an import hook mypy cannot follow. So this builds the installed
layout as a tree of symbolic links under ``build/typecheck/`` and runs mypy on the ``qfleet`` package there,
with the settings of ``[tool.mypy]`` in pyproject.toml (strict on the core packages). Exit status is mypy's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def link_tree() -> Path:
    """``build/typecheck/qfleet`` laid out as the wheel installs it (package-dir mapping of pyproject.toml)."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    pkg = TREE / "qfleet"
    pkg.mkdir(parents=True, exist_ok=True)
    wanted = {"__init__.py", "py.typed"} | {p.name for p in (ROOT / "qfleet").glob("*.py")}
    wanted |= {name.split(".", 1)[1] for name in mapping if name != "qfleet"}
    for stale in pkg.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for src in (ROOT / "qfleet").glob("*.py"):
        _link(pkg / src.name, src)
    for name, folder in mapping.items():
        if name != "qfleet":
            _link(pkg / name.split(".", 1)[1], ROOT / folder)
    return TREE


def _link(at: Path, target: Path) -> None:
    if at.is_symlink() and at.resolve() == target.resolve():
        return
    if at.is_symlink() or at.exists():
        at.unlink()
    at.symlink_to(target)


def main(argv: list[str] | None = None) -> int:
    tree = link_tree()
    args = ["-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
            str(ROOT / "build" / "mypy-cache"), "-p", "qfleet", *(argv or [])]
    env = {**os.environ, "MYPYPATH": str(tree)}
    return subprocess.call([sys.executable, *args], cwd=tree, env=env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
