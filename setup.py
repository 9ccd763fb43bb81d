"""The compiled parts of qfleet (everything else is in pyproject.toml):

* the OTLP span decoder's fast path (Cython, ``collector/_span_wire.pyx``);
* the simulator's per-job path and the row building of its writer process: the typed modules listed in
  ``qfleet/native.py``, compiled as they are by mypyc (1.59x the engine alone and 1.32x the writer's row building
  on 2026-12-08 04:53 UTC, 1.1-1.42x and 1.0-1.35x in earlier sessions; docs/benchmarks.md).

Both are optional: on a machine without a C compiler (or with ``QFLEET_INTERPRETED=1``) the install still succeeds
and the same code runs interpreted, with the same results. The mypyc modules build all or none (a module's shim
without the group's shared library would not import), and a successful build records its sources' digests, so
that an edited source runs interpreted until the next build (``qfleet/native.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def installed_layout(tree: Path) -> Path:
    """``tree/qfleet`` laid out as the wheel installs it (pyproject's package-dir mapping), as symbolic links:
    what mypy and mypyc need to see the modules under their ``qfleet.`` names. Returns ``tree``."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    pkg = tree / "qfleet"
    pkg.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in (ROOT / "qfleet").glob("*.py")} | {n.split(".", 1)[1] for n in mapping if n != "qfleet"}
    for stale in pkg.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for src in (ROOT / "qfleet").glob("*.py"):
        _link(pkg / src.name, src)
    for name, folder in mapping.items():
        if name != "qfleet":
            _link(pkg / name.split(".", 1)[1], ROOT / folder)
    return tree


def _link(at: Path, target: Path) -> None:
    if at.is_symlink() and at.resolve() == target.resolve():
        return
    if at.is_symlink() or at.exists():
        at.unlink()
    at.symlink_to(target)


def _native() -> Any:
    """``qfleet/native.py`` loaded on its own (the list of compiled modules; the package is not installed yet)."""
    spec = importlib.util.spec_from_file_location("_qfleet_native", ROOT / "qfleet" / "native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mypyc_extensions(native: Any) -> list[Any]:
    if os.environ.get("QFLEET_INTERPRETED", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    tree = installed_layout(ROOT / "build" / "layout")
    paths = [str((tree / m.replace(".", "/")).relative_to(ROOT)) + ".py" for m in native.COMPILED]
    # No config file: pyproject's [tool.mypy] is for the type check (tests/typecheck.py); compiling needs only
    # the annotations, and imports of untyped libraries are Any.
    exts = mypycify(["--config-file=", "--ignore-missing-imports", "--follow-imports=silent", *paths],
                    opt_level="3", group_name=native.GROUP)
    for ext in exts:
        ext.optional = True
    return list(exts)


def main() -> None:
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    from setuptools.command.build_ext import build_ext

    native = _native()
    mypyc = _mypyc_extensions(native)
    mypyc_names = {e.name for e in mypyc}

    class BuildExt(build_ext):
        """Builds the mypyc group all or none, then records the digests of the sources it compiled."""

        built = False

        def build_extensions(self) -> None:
            group = [e for e in self.extensions if e.name in mypyc_names]
            self.extensions = [e for e in self.extensions if e.name not in mypyc_names]
            try:
                super().build_extensions()
                self.built = self._build_group(group)
            finally:
                self.extensions += group

        def _build_group(self, group: list[Any]) -> bool:
            try:
                for ext in group:
                    build_ext.build_extension(self, ext)  # raises, optional or not
            except Exception as e:  # noqa: BLE001 - any compiler or linker failure: fall back to interpreted
                for ext in group:
                    Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
                print(f"qfleet: the mypyc modules were not compiled ({type(e).__name__}: {e}); "
                      "they run interpreted")
                return False
            return bool(group)

        def run(self) -> None:
            super().run()  # builds into build_lib, then copies into the checkout for an editable install
            # The record goes beside the compiled modules: in the checkout (editable) or into the wheel.
            out = (ROOT if self.inplace else Path(self.build_lib)) / "qfleet" / native.RECORD
            if not self.built:
                out.unlink(missing_ok=True)
                return
            record = {m: native.source_digest(ROOT / "build" / "layout" / (m.replace(".", "/") + ".py"))
                      for m in native.COMPILED}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")

    setup(
        ext_modules=cythonize(
            [Extension("qfleet.collector._span_wire", ["collector/_span_wire.pyx"], optional=True)],
            compiler_directives={"language_level": "3"},
        ) + mypyc,
        cmdclass={"build_ext": BuildExt},
    )


if __name__ == "__main__":
    main()
