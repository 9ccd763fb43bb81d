"""Type-check qfleet with mypy under its installed names: ``python -m tests.typecheck [mypy args]``.

The product's folders install as ``qfleet.collector``, ``qfleet.slo``... through setuptools' package-dir
mapping, which an editable install serves with an import hook mypy cannot follow. So this builds the installed
layout as a tree of symbolic links under ``build/typecheck/`` and runs mypy on the ``qfleet`` package there,
with the settings of ``[tool.mypy]`` in pyproject.toml (strict on the core packages). Exit status is mypy's.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def link_tree() -> Path:
    """``build/typecheck/qfleet`` laid out as the wheel installs it (setup.py's ``installed_layout``, which the
    mypyc build uses too)."""
    spec = importlib.util.spec_from_file_location("_qfleet_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # defines the helpers; setup() runs only as __main__
    tree: Path = setup.installed_layout(TREE)
    return tree


def main(argv: list[str] | None = None) -> int:
    tree = link_tree()
    args = ["-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
            str(ROOT / "build" / "mypy-cache"), "-p", "qfleet", *(argv or [])]
    env = {**os.environ, "MYPYPATH": str(tree)}
    return subprocess.call([sys.executable, *args], cwd=tree, env=env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
