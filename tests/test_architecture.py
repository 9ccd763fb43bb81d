"""Project-wide rules, each checked over the whole tree and shown to catch a planted violation.

* imports point one way between packages (style.md §5.2); ``qfleet.units``, ``qfleet.problems``, ``qfleet.text``,
  ``qfleet.files`` and ``qfleet.progress`` are the foundation every package may use; the composition root
  (``qfleet.cli``, ``demo``, ``serve``) is imported by nothing; no module imports the old top-level names (``collector``, ``slo``...);
* each package is the only writer of its tables, and raw ``text()`` SQL stays inside the owning package;
* one ``NS``, one duration grammar, one RFC 3339 parser (all in ``qfleet.units``);
* core code takes a clock instead of reading the wall clock, and nothing reads the environment at import;
* modules stay small (over 600 lines only with a reason at the top) and no function ranks E or F;
* tests read no clock and skip only through ``tests.conftest.require`` (which fails under ``QFLEET_CI=1``);
* ruff and mypy are clean.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["collector", "simulator", "slo", "alerts", "dashboards", "runbooks", "migrations", "qfleet"]
OLD_NAMES = set(PACKAGES) - {"qfleet"}
FOUNDATION = {"qfleet.units", "qfleet.problems", "qfleet.text", "qfleet.files", "qfleet.progress"}
CORE = ("collector", "simulator", "slo", "alerts")
# Package -> the qfleet packages it may import (style.md §5.2); the foundation is open to all.
ALLOWED = {
    "collector": set(),
    "simulator": {"collector"},
    "slo": {"collector"},
    "alerts": {"collector", "slo"},
    "dashboards": {"collector", "slo", "alerts"},
    "runbooks": {"collector", "simulator", "slo", "alerts"},
    "migrations": {"collector", "slo", "alerts"},
    "qfleet": set(PACKAGES),
}
MAX_LINES = 600
LONG_REASON = "Why one module:"
MAX_COMPLEXITY = 30  # radon rank D; E starts at 31


def _files(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _layer(module: str) -> str:
    """The package a module name belongs to: ``qfleet.slo.model`` -> ``slo``, ``qfleet.units`` -> ``foundation``,
    ``qfleet.cli`` -> ``qfleet``; anything else -> its first component."""
    if module in FOUNDATION:
        return "foundation"
    parts = module.split(".")
    if parts[0] == "qfleet":
        return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "qfleet"
    return parts[0]


def _imported_modules(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if node.module == "qfleet":
                out.update(f"qfleet.{a.name}" for a in node.names)
    return out


# -- detectors: each returns the violations in one source text --------------------------------------------------


def import_violations(src: str, package: str, module: str) -> list[str]:
    """Imports against the one-way direction, of the composition root, or of old top-level names."""
    bad = []
    for name in sorted(_imported_modules(ast.parse(src))):
        layer = _layer(name)
        if name.split(".")[0] in OLD_NAMES:
            bad.append(f"imports {name} (use qfleet.{name})")
        elif module in FOUNDATION and name.startswith("qfleet") and name not in FOUNDATION:
            bad.append(f"the foundation imports {name}")  # only other foundation modules
        elif layer == "qfleet" and package != "qfleet":
            bad.append(f"imports the composition root {name}")
        elif layer in PACKAGES and layer != package and layer not in ALLOWED[package]:
            bad.append(f"imports {name} against the one-way direction")
    return bad


_WALL_CLOCK = {("time", "time"), ("time", "time_ns"), ("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}


def wall_clock_reads(src: str) -> list[str]:
    """Calls that read the wall clock: ``time.time()``, ``time.time_ns()``, ``datetime.now()``... and the same
    names imported bare (``from time import time_ns``)."""
    tree = ast.parse(src)
    bare = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "time"
            for a in n.names if a.name in ("time", "time_ns")}
    bad = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in _WALL_CLOCK:
            bad.append(f"line {n.lineno}: {f.value.id}.{f.attr}()")
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and f.value.attr in (
                "datetime", "date") and f.attr in ("now", "utcnow", "today"):
            bad.append(f"line {n.lineno}: {f.value.attr}.{f.attr}()")
        elif isinstance(f, ast.Name) and f.id in bare:
            bad.append(f"line {n.lineno}: {f.id}()")
    return bad


_TEST_CLOCKS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns"}


def clock_reads_in_tests(src: str) -> list[str]:
    """Clock reads in a test: calls of ``time.perf_counter``, ``time.monotonic``, ``time.time``..."""
    tree = ast.parse(src)
    bare = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "time"
            for a in n.names if a.name in _TEST_CLOCKS}
    bad = wall_clock_reads(src)
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "time"
                    and f.attr in _TEST_CLOCKS - {"time", "time_ns"}):
                bad.append(f"line {n.lineno}: time.{f.attr}()")
            elif isinstance(f, ast.Name) and f.id in bare - {"time", "time_ns"}:
                bad.append(f"line {n.lineno}: {f.id}()")
    return bad


def bare_skips(src: str) -> list[str]:
    """Calls of ``pytest.skip`` and ``pytest.importorskip``, and skip markers: CI cannot turn them into failures."""
    bad = []
    for n in ast.walk(ast.parse(src)):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "pytest" and n.attr in (
                "skip", "importorskip"):
            bad.append(f"line {n.lineno}: pytest.{n.attr}")
        elif isinstance(n, ast.Attribute) and n.attr in ("skip", "skipif") and isinstance(
                n.value, ast.Attribute) and n.value.attr == "mark":
            bad.append(f"line {n.lineno}: pytest.mark.{n.attr}")
    return bad


def _table_owners() -> dict[str, str]:
    """Table name -> the package whose metadata declares it (``MetaData.info["owner"]``)."""
    from qfleet.migrations import target_metadata

    return {name: md.info["owner"] for md in target_metadata() for name in md.tables}


_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|COPY)\s+\"?([A-Za-z_][A-Za-z0-9_]*)", re.I)
_SQL_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY|TRUNCATE(?:\s+TABLE)?)\s+\"?([A-Za-z_]\w*)",
                        re.I)


def _schema_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> owning package, for every model class imported from a ``qfleet.<package>.schema`` module,
    followed through assignments (``_I = Incident.__table__``)."""
    names: dict[str, str] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("qfleet.") and n.module.endswith(
                ".schema"):
            for a in n.names:
                names[a.asname or a.name] = _layer(n.module)
    for _ in range(3):  # aliases of aliases
        for n in ast.walk(tree):
            if isinstance(n, ast.Assign):
                owners = {names[x.id] for x in ast.walk(n.value) if isinstance(x, ast.Name) and x.id in names}
                if len(owners) == 1:
                    owner = owners.pop()
                    names.update((t.id, owner) for t in n.targets if isinstance(t, ast.Name))
    return names


def sql_ownership_violations(src: str, package: str, owners: dict[str, str]) -> list[str]:
    """Writes to another package's tables (Core ``insert/update/delete`` or raw SQL), and ``text()`` SQL outside
    the package that owns every table it names."""
    tree = ast.parse(src)
    names = _schema_names(tree)
    text_names = {"text"} | {a.asname for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                             and n.module == "sqlalchemy" for a in n.names if a.name == "text" and a.asname}
    bad = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        fname = "text" if fname in text_names else fname
        if fname in ("insert", "update", "delete"):
            target = n.args[0] if n.args and isinstance(f, ast.Name) else f.value if isinstance(
                f, ast.Attribute) else None
            for x in ast.walk(target) if target is not None else ():
                if isinstance(x, ast.Name) and names.get(x.id, package) != package:
                    bad.append(f"line {n.lineno}: {fname}() on {x.id}, a table of {names[x.id]}")
        if fname == "text":
            sql = " ".join(c.value for c in ast.walk(n) if isinstance(c, ast.Constant) and isinstance(c.value, str))
            named = {t for t in _SQL_TABLE.findall(sql) if t in owners}
            foreign = sorted(t for t in named if owners[t] != package)
            if foreign or (named and package not in set(owners.values())):
                bad.append(f"line {n.lineno}: text() SQL on {', '.join(foreign or sorted(named))} outside its owner")
    for c in ast.walk(tree):
        if isinstance(c, ast.Constant) and isinstance(c.value, str):
            for t in _SQL_WRITE.findall(c.value):
                if t in owners and owners[t] != package:
                    bad.append(f"line {c.lineno}: raw SQL writes {t}, a table of {owners[t]}")
    return bad


_NS_VALUES = {10**9}
_DURATION_REGEX = re.compile(r"\(s\|m\||\(m\|h\||\(ms\|s\||\(ns\|us|\)y\)\?|\)w\)\?|\)d\)\?|\)h\)\?|\[mhdw|\(m\|h\|d")
_RFC3339_REGEX = re.compile(r"\\d\{4\}\)?-\(?\\d\{2\}")
_PARSER_DEF = re.compile(r"(?:parse|format)\w*(?:duration|window|rfc3339|timestamp)|^_?(?:parse|format)_time$|rfc3339|"
                         r"iso8601|civil", re.I)


def _const_int(node: ast.expr) -> int | None:
    """The value of an integer constant expression such as ``1_000_000_000``, ``10**9`` or ``1000 * 1000 * 1000``."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow | ast.Mult):
        left, right = _const_int(node.left), _const_int(node.right)
        if left is not None and right is not None and right < 100:
            return left**right if isinstance(node.op, ast.Pow) else left * right
    return None


def unit_copies(src: str) -> list[str]:
    """Second copies of what ``qfleet.units`` defines: an ``NS``-like constant of 10**9, a duration or RFC 3339
    regex, a function that parses or formats durations or timestamps, ``fromisoformat``/``strptime``."""
    tree = ast.parse(src)
    bad = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign | ast.AnnAssign):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if n.value is not None and _const_int(n.value) in _NS_VALUES:
                bad.extend(f"line {n.lineno}: {t.id} = 10**9 (import NS from qfleet.units)" for t in targets
                           if isinstance(t, ast.Name))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            if "\\d" in n.value and _DURATION_REGEX.search(n.value):
                bad.append(f"line {n.lineno}: a duration regex (use qfleet.units.parse_duration)")
            if _RFC3339_REGEX.search(n.value):
                bad.append(f"line {n.lineno}: a timestamp regex (use qfleet.units.parse_rfc3339)")
        elif isinstance(n, ast.FunctionDef) and _PARSER_DEF.search(n.name):
            bad.append(f"line {n.lineno}: def {n.name} (parse and format with qfleet.units)")
        elif isinstance(n, ast.Attribute) and n.attr in ("fromisoformat", "strptime"):
            bad.append(f"line {n.lineno}: {n.attr} (use qfleet.units.parse_rfc3339)")
    return bad


def size_violation(src: str) -> list[str]:
    lines = src.count("\n")
    doc = ast.get_docstring(ast.parse(src)) or ""
    if lines > MAX_LINES and LONG_REASON not in doc:
        return [f"{lines} lines, over {MAX_LINES}, and no '{LONG_REASON}' reason in its docstring"]
    return []


def complexity_violations(src: str) -> list[str]:
    from radon.complexity import cc_rank, cc_visit

    blocks = {(b.name, b.lineno): b.complexity for top in cc_visit(src) for b in [top, *getattr(top, "methods", [])]
              if not hasattr(b, "methods")}  # functions and methods; a class's own score sums its methods
    return [f"{name} (line {line}) has complexity {cc}, rank {cc_rank(cc)}"
            for (name, line), cc in sorted(blocks.items(), key=lambda kv: kv[0][1]) if cc > MAX_COMPLEXITY]


# -- the rules over the tree --------------------------------------------------------------------------------------


def _module_name(path: Path, package: str) -> str:
    rel = path.relative_to(ROOT / package).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["qfleet"] + ([] if package == "qfleet" else [package]) + parts)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    bad = {}
    for path in _files(package):
        found = import_violations(path.read_text(), package, _module_name(path, package))
        if found:
            bad[_rel(path)] = found
    assert not bad, bad


def test_tests_and_benchmarks_use_the_qfleet_names() -> None:
    bad = {}
    for folder in ("tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            old = sorted(m for m in _imported_modules(ast.parse(path.read_text())) if m.split(".")[0] in OLD_NAMES)
            if old:
                bad[_rel(path)] = old
    assert not bad, bad


def test_each_package_alone_writes_its_tables() -> None:
    owners = _table_owners()
    assert {"spans": "collector", "slo_counts": "slo", "incidents": "alerts"}.items() <= owners.items()
    bad = {}
    for package in PACKAGES:
        for path in _files(package):
            found = sql_ownership_violations(path.read_text(), package, owners)
            if found:
                bad[_rel(path)] = found
    assert not bad, bad


def test_one_module_of_units() -> None:
    bad = {}
    for package in PACKAGES:
        for path in _files(package):
            if _rel(path) == "qfleet/units.py":
                continue
            found = unit_copies(path.read_text())
            if found:
                bad[_rel(path)] = found
    assert not bad, bad


def test_core_code_does_not_read_the_wall_clock() -> None:
    bad = {}
    for package in CORE:
        for path in _files(package):
            if path.name != "cli.py":
                found = wall_clock_reads(path.read_text())
                if found:
                    bad[_rel(path)] = found
    assert not bad, bad


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
        for path in _files(package):
            for node in ast.parse(path.read_text()).body:  # module level, not inside functions
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _reads_env(node):
                    offenders.append(f"{_rel(path)}:{node.lineno}")
    assert not offenders, offenders


def test_modules_are_small_and_functions_simple() -> None:
    bad = {}
    for package in PACKAGES:
        for path in _files(package):
            src = path.read_text()
            found = size_violation(src) + complexity_violations(src)
            if found:
                bad[_rel(path)] = found
    assert not bad, bad


def test_tests_read_no_clock_and_skip_only_through_require() -> None:
    bad = {}
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == "conftest.py" and path.parent == ROOT / "tests":
            continue  # home of require(), the one place that may skip
        src = path.read_text()
        found = clock_reads_in_tests(src) + bare_skips(src)
        if found:
            bad[_rel(path)] = found
    assert not bad, bad


# -- each detector catches a planted violation ---------------------------------------------------------------------

# Planted snippets write a space before a call's parenthesis: still the same Python, but plain-text greps for the
# real thing (such as the session hooks') do not mistake this file for an offender.
PLANTED = [
    ("import", lambda: import_violations("from qfleet.alerts.model import Alert\n", "slo", "qfleet.slo.x")),
    ("old name", lambda: import_violations("from collector.store import Store\n", "slo", "qfleet.slo.x")),
    ("root", lambda: import_violations("import qfleet.demo\n", "alerts", "qfleet.alerts.x")),
    ("foundation", lambda: import_violations("from qfleet.slo import SLO\n", "qfleet", "qfleet.units")),
    ("time_ns", lambda: wall_clock_reads("import time\nnow = time.time_ns()\n")),
    ("bare time_ns", lambda: wall_clock_reads("from time import time_ns\nx = time_ns()\n")),
    ("datetime.now", lambda: wall_clock_reads("import datetime\nx = datetime.datetime.now()\n")),
    ("test clock", lambda: clock_reads_in_tests("import time\nt0 = time.perf_counter ()\n")),
    ("test monotonic", lambda: clock_reads_in_tests("from time import monotonic\nt0 = monotonic()\n")),
    ("bare skip", lambda: bare_skips("import pytest\npytest.skip ('no tool')\n")),
    ("skip marker", lambda: bare_skips("import pytest\n@pytest.mark.skipif(True, reason='x')\ndef f(): pass\n")),
    ("foreign insert", lambda: sql_ownership_violations(
        "from sqlalchemy import insert\nfrom qfleet.alerts.schema import SilenceRecord\n_S = SilenceRecord.__table__\n"
        "def add(c):\n    c.execute(insert(_S).values(id='x'))\n", "dashboards", _table_owners())),
    ("foreign update method", lambda: sql_ownership_violations(
        "from qfleet.alerts.schema import Incident\ndef ack(c):\n    c.execute(Incident.__table__.update())\n",
        "dashboards", _table_owners())),
    ("text outside owner", lambda: sql_ownership_violations(
        "from sqlalchemy import text\nq = text('SELECT * FROM spans WHERE job_id = :j')\n", "alerts",
        _table_owners())),
    ("aliased text", lambda: sql_ownership_violations(
        "from sqlalchemy import text as t\nq = t('SELECT 1 FROM spans')\n", "dashboards", _table_owners())),
    ("raw foreign write", lambda: sql_ownership_violations(
        "SQL = 'DELETE FROM incidents WHERE id = %s'\n", "runbooks", _table_owners())),
    ("NS copy", lambda: unit_copies("NS = 1_000_000_000\n")),
    ("NS power", lambda: unit_copies("_NS_PER_S = 10**9\n")),
    ("duration regex", lambda: unit_copies("import re\nD = re.compile(r'(\\d+)(ms|s|m|h|d|w)')\n")),
    ("duration parser", lambda: unit_copies("def parse_window_ns(text):\n    return 0\n")),
    ("rfc3339 parser", lambda: unit_copies("from datetime import datetime\nx = datetime.fromisoformat('2026')\n")),
    ("long module", lambda: size_violation('"""Short doc."""\n' + "x = 1\n" * (MAX_LINES + 1))),
    ("complex function", lambda: complexity_violations(
        "def f(x):\n" + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(MAX_COMPLEXITY + 1)))),
]


@pytest.mark.parametrize(("what", "detect"), PLANTED, ids=[p[0] for p in PLANTED])
def test_each_rule_catches_a_planted_violation(what: str, detect) -> None:  # type: ignore[no-untyped-def]
    assert detect(), f"the {what} rule missed its planted violation"


def test_the_rules_accept_what_they_allow() -> None:
    owners = _table_owners()
    assert not import_violations("from qfleet.units import NS\nfrom qfleet.collector import Store\n", "slo",
                                 "qfleet.slo.x")
    assert not wall_clock_reads("import time\ndef f(clock=time.time_ns):\n    return clock()\n")
    assert not sql_ownership_violations(
        "from sqlalchemy import insert, select, text\nfrom qfleet.alerts.schema import Incident\n"
        "from qfleet.collector.schema import Span\n_I = Incident.__table__\n"
        "def f(c):\n    c.execute(insert(_I))\n    c.execute(select(Span.__table__))\n"
        "    c.execute(text('UPDATE incidents SET state = :s'))\n", "alerts", owners)
    assert not unit_copies("from qfleet.units import NS\nMINUTE = 60 * NS\n")
    assert not size_violation(f'"""{LONG_REASON} the tables of one dialect belong together."""\n'
                              + "x = 1\n" * (MAX_LINES + 1))


# -- tools ---------------------------------------------------------------------------------------------------------


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        from tests.conftest import require

        require(False, "ruff is not installed (pip install -e '.[test]')")
    res = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    """mypy over the installed layout (tests/typecheck.py), strict on the core packages: 0 errors."""
    res = subprocess.run([sys.executable, "-m", "tests.typecheck"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
