"""The modules setup.py compiles with mypyc, and the guard that keeps a stale build from running.

mypyc compiles these typed modules to C extensions (the simulator's per-job path and the row building its writer
process runs); each ``.so`` sits beside its ``.py`` and Python's import prefers it. A build records the SHA-256 of
every source it compiled in :data:`RECORD`. When ``qfleet`` is imported, :func:`install` compares the sources
with that record: if one was edited since the build (an editable install after ``git pull``, say), or
``QFLEET_INTERPRETED=1`` is set, every listed module is imported from its ``.py`` instead, so the code that runs is
always the code on disk. Compiled or not, the modules compute the same values (``tests/simulator/test_native.py``
compares the rows of both).

Importing this module imports nothing outside the standard library.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "GROUP", "RECORD", "compiled_modules", "install", "stale"]

#: What setup.py compiles, by installed module name (the order is mypyc's, not significant).
COMPILED: tuple[str, ...] = (
    "qfleet.collector.rows",
    "qfleet.collector.metric_rows",
    "qfleet.collector.span_rows",
    "qfleet.simulator.runstate",
    "qfleet.simulator.timeline",
    "qfleet.simulator.control",
    "qfleet.simulator.disturbances",
    "qfleet.simulator.engine",
    "qfleet.simulator.job_telemetry",
    "qfleet.simulator.telemetry",
    "qfleet.simulator.shots",
    "qfleet.simulator.noise_masks",
)
#: mypyc's shared library of the group, ``qfleet/_native__mypyc.*.so`` (inside the package: one import name).
GROUP = "qfleet._native"
#: The build's record (in this package's folder): installed module name -> SHA-256 of the source it compiled.
RECORD = "native.json"
_ENV = "QFLEET_INTERPRETED"


def source_digest(path: Path) -> str:
    """SHA-256 of a source file, as the build records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale(record: Mapping[str, str], sources: Mapping[str, Path]) -> list[str]:
    """The modules of ``record`` whose source in ``sources`` is missing or differs from the recorded digest."""
    out = []
    for name, digest in record.items():
        path = sources.get(name)
        if path is None or not path.is_file() or source_digest(path) != digest:
            out.append(name)
    return out


def _package_dirs() -> dict[str, Path]:
    """Each compiled module's package folder, as installed (the editable install maps them to the checkout)."""
    out: dict[str, Path] = {}
    for name in {m.rsplit(".", 1)[0] for m in COMPILED}:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            out[name] = Path(next(iter(spec.submodule_search_locations)))
    return out


def _sources() -> dict[str, Path]:
    dirs = _package_dirs()
    return {m: dirs[pkg] / f"{leaf}.py" for m in COMPILED
            for pkg, leaf in [m.rsplit(".", 1)] if pkg in dirs}


class _SourceFinder:
    """Finds the listed modules' ``.py`` files only, so that a compiled ``.so`` beside them is not used."""

    def __init__(self, sources: Mapping[str, Path]) -> None:
        self._sources = dict(sources)

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        src = self._sources.get(name)
        if src is None:
            return None
        return importlib.util.spec_from_file_location(name, src)


def compiled_modules() -> list[str]:
    """The listed modules that are imported from a compiled extension (imports each of them)."""
    import importlib

    return [m for m in COMPILED if not str(importlib.import_module(m).__file__).endswith(".py")]


def install() -> str:
    """Decide how the listed modules load; returns why (``compiled``, ``not built``, ``QFLEET_INTERPRETED=1`` or
    ``stale: <module>``). Called once, by ``qfleet/__init__.py``."""
    record_path = Path(__file__).with_name(RECORD)
    forced = os.environ.get(_ENV, "") not in ("", "0")
    if not forced and not record_path.is_file():
        return "not built"
    sources = _sources()
    if forced:
        why = f"{_ENV}=1"
    else:
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {m: "" for m in COMPILED}
        old = stale(record, sources)
        if not old:
            return "compiled"
        why = f"stale: {old[0]}"
        print(f"qfleet: {sources.get(old[0], old[0])} changed since it was compiled; running the interpreted "
              "modules (pip install -e . compiles them again)", file=sys.stderr)
    sys.meta_path.insert(0, _SourceFinder(sources))
    return why
