"""Every docstring example in the installed ``qfleet`` packages runs and prints what it shows.

Modules are imported by their installed names (``qfleet.collector.store``), the way users import them.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

# Streamlit pages run on import, and Alembic's env.py needs a migration context: neither holds examples.
_SKIP_PREFIXES = ("qfleet.dashboards.app", "qfleet.dashboards.views", "qfleet.migrations")


def _modules() -> list[str]:
    names = {"qfleet"}
    for pkg_name in ("qfleet", "qfleet.collector", "qfleet.simulator", "qfleet.slo", "qfleet.alerts",
                     "qfleet.dashboards", "qfleet.runbooks"):
        pkg = importlib.import_module(pkg_name)
        names.add(pkg_name)
        names.update(m.name for m in pkgutil.walk_packages(pkg.__path__, pkg_name + "."))
    return sorted(n for n in names if not n.startswith(_SKIP_PREFIXES))


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        if test.filename and module.__file__ and test.filename != module.__file__:
            continue  # an object re-exported from another module is tested there
        runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(out)


def test_the_examples_are_found() -> None:
    """The walk reaches every package (a broken walk would make the test above pass vacuously)."""
    attempted = 0
    for name in MODULES:
        for test in doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name), name):
            attempted += len(test.examples)
    assert {"qfleet.collector.store", "qfleet.simulator.physics", "qfleet.slo.budget",
            "qfleet.alerts.routing"} <= set(MODULES)
    assert attempted >= 200, attempted
