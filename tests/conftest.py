"""Shared fixtures: real SQLite files, the real PostgreSQL on 127.0.0.1:5432, tool checks.

Tests skip only through :func:`require` (the architecture test forbids bare ``pytest.skip``). Under
``QFLEET_CI=1`` a missing service or tool fails the test instead, and any skip that still happens (a plugin's,
a marker's) turns into a failure too: CI must run everything.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qfleet.collector.migrate import upgrade
from qfleet.collector.store import Store, open_engine

PG_ADMIN_URL = os.environ.get("QFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _ci() -> bool:
    return os.environ.get("QFLEET_CI") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under QFLEET_CI=1, a skipped test is reported as failed, with the reason it skipped."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"QFLEET_CI=1 runs everything, but this test skipped: {reason}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (stable otherwise): on two workers, the longest files start at once instead of one of
    them running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under QFLEET_CI=1, any skip left (of a whole module, say) fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if _ci() and skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Put ``sys.modules["__main__"]`` back after each test: Streamlit's AppTest leaves a page script there, and a
    process spawned later (a process pool, a Dask worker) re-runs ``__main__``'s file before anything else."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, or fail under QFLEET_CI=1 (CI must run everything)."""
    if condition:
        return
    if _ci():
        pytest.fail(f"QFLEET_CI=1 and a required component is missing: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of executable ``name``, or skip/fail as :func:`require` does."""
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (apt-get install the package that provides it)")
    assert path is not None
    return path


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    require(_pg_available(), f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    import psycopg

    name = f"qfleet_test_{uuid.uuid4().hex[:12]}"
    admin = pg_admin_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'qfleet.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database on each backend in turn."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def _migrated(url: str) -> Iterator[Engine]:
    e = open_engine(url)
    upgrade(e)
    yield e
    e.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend in turn."""
    yield from _migrated(db_url)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated engine on a fresh SQLite file."""
    yield from _migrated(sqlite_url)


class FakeClock:
    """A settable clock in integer nanoseconds (time is injected, never patched)."""

    def __init__(self, now_ns: int = 1_800_000_000_000_000_000) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(engine: Engine, clock: FakeClock) -> Store:
    """A store on a migrated database of each backend, with a fake clock."""
    return Store(engine, clock=clock)


# -- golden files ----------------------------------------------------------------------

GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/ from the code")


@pytest.fixture
def golden(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """``golden(name, value)``: compare ``value`` (JSON-able) with ``tests/golden/<name>.json``."""
    import json

    update = request.config.getoption("--update-golden")

    def check(name: str, value: object) -> None:
        path = GOLDEN_DIR / f"{name}.json"
        text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}; run pytest --update-golden once and review it"
        assert json.loads(text) == json.loads(path.read_text()), f"output differs from {path}"

    return check
