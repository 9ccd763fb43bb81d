"""Every reported CLI failure ends in one line on stderr and exit status 2: no traceback, no hang, nothing created
or half-written (issue 12, "15 CLI invocations end in a Python traceback", `sim run --duration` that never ends,
`… | head` ending in BrokenPipeError, readers creating an empty SQLite file).

Commands run in-process through ``qfleet.cli.main`` (the console script's entry point) with stdout and stderr
captured; a subprocess where the behaviour is the process's (a closed stdout, a port held by another socket, a
run that must end).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from qfleet.cli import main, user_error
from qfleet.collector.migrate import current_revisions, head_revisions, open_existing, upgrade
from qfleet.collector.store import StoreError, open_engine
from qfleet.simulator.fleet import builtin_fleet_path

Result = tuple[int, str, str]


@pytest.fixture
def qfleet(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[object]:
    """``qfleet(*argv) -> (status, stdout, stderr)``, run in ``tmp_path`` with no QFLEET_* environment."""
    for var in ("QFLEET_DATABASE_URL", "QFLEET_TOKEN_FILE", "QFLEET_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> Result:
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse's own exit
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def one_line_error(res: Result, *named: str) -> str:
    """Assert exit 2, no stdout, exactly one stderr line naming each of ``named``, and no traceback."""
    code, out, err = res
    assert "Traceback" not in err, err
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for word in named:
        assert word in err, (word, err)
    return err


def sqlite(tmp_path: Path, name: str = "qfleet.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def closed_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that refuses connections: bound by us, never listening (no race with others)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    yield from closed_port()


def fleet_file(tmp_path: Path, link: dict[str, object]) -> Path:
    doc = yaml.safe_load(builtin_fleet_path("line").read_text())
    doc["links"][0].update(link)
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# -- the simulator -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "named"), [
    (["--load", "1e9"], ["--load", "1e+09", "10000"]),
    (["--load", "4600"], ["--load 4600", "at most 4545"]),  # in range alone, too much for this fleet's rate
    (["--shots", str(10**12)], ["--shots", str(10**12), "100000"]),
    (["--shots", "1e12"], ["--shots", "'1e12'"]),
    (["--duration", "99999999999999h"], ["--duration", "99999999999999h"]),
    (["--duration", "91d"], ["--duration", "'91d'", "90d"]),
], ids=["load", "load-for-fleet", "shots", "shots-float", "duration-overflow", "duration-too-long"])
def test_sim_run_refuses_out_of_range_flags_before_writing(qfleet: object, tmp_path: Path, argv: list[str],
                                                          named: list[str]) -> None:
    db = tmp_path / "sim.db"
    res = qfleet("sim", "run", "--fleet", "line", "--duration", "1m", *argv,  # type: ignore[operator]
                 "--db", f"sqlite:///{db}", "--no-progress")
    one_line_error(res, *named)
    assert not db.exists()  # refused before the store was created


@pytest.mark.parametrize(("link", "named"), [
    ({"length_km": 1.0e308}, ["links[0].length_km", "1e+308", "100000"]),
    ({"memories": 99999999999}, ["links[0].memories", "99999999999", "10_000"]),
    ({"prep_time_s": 1.0e300}, ["links[0].prep_time_s", "1e+300"]),
], ids=["length_km", "memories", "prep_time_s"])
def test_fleet_values_beyond_their_maximum_are_file_errors(qfleet: object, tmp_path: Path,
                                                          link: dict[str, object], named: list[str]) -> None:
    path = fleet_file(tmp_path, link)
    db = tmp_path / "sim.db"
    res = qfleet("sim", "run", "--fleet", str(path), "--duration", "1m", "--db", f"sqlite:///{db}",  # type: ignore[operator]
                 "--no-progress")
    one_line_error(res, "fleet.yaml", *named)
    assert not db.exists()


def test_a_long_run_is_refused_at_once_not_simulated_for_ever(tmp_path: Path) -> None:
    """`--duration 50y` used to schedule and simulate 50 years (calibrations are pushed for the whole run up
    front); now it is over the 90d maximum. A subprocess, so that the old behaviour fails instead of hanging."""
    db = tmp_path / "sim.db"
    try:
        res = subprocess.run([sys.executable, "-m", "qfleet.cli", "sim", "run", "--fleet", "line", "--duration",
                              "50y", "--db", f"sqlite:///{db}", "--no-progress"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("`qfleet sim run --duration 50y` was still running after 120 s")
    one_line_error((res.returncode, res.stdout, res.stderr), "'50y'", "90d")
    assert not db.exists()


def test_sim_run_to_a_collector_that_is_not_there(qfleet: object, tmp_path: Path, refused_port: int) -> None:
    token = tmp_path / "tok"
    token.write_text("secret-token\n")
    token.chmod(0o600)
    url = f"http://127.0.0.1:{refused_port}"
    res = qfleet("sim", "run", "--fleet", "line", "--duration", "5m", "--otlp", url,  # type: ignore[operator]
                 "--token-file", str(token), "--no-progress")
    one_line_error(res, f"--otlp '{url}'", "qfleet collector serve")


# -- SLOs --------------------------------------------------------------------------------------------------


def test_slo_eval_on_a_missing_samples_file(qfleet: object, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.csv"
    res = qfleet("slo", "eval", "default", "--samples", str(missing), "--at", "now")  # type: ignore[operator]
    one_line_error(res, f"--samples '{missing}'", "No such file")


def test_slo_rules_to_an_unwritable_place(qfleet: object, tmp_path: Path) -> None:
    target = tmp_path / "no" / "dir" / "rules.yml"
    one_line_error(qfleet("slo", "rules", "default", "-o", str(target)), str(target))  # type: ignore[operator]
    assert not (tmp_path / "no").exists()


# -- the store: db commands ----------------------------------------------------------------------------------


def test_db_prune_with_a_horizon_beyond_the_maximum(qfleet: object, tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    assert qfleet("db", "upgrade", "--db", url)[0] == 0  # type: ignore[operator]
    for value in ("99999999999999999999w", "101y"):
        one_line_error(qfleet("db", "prune", "--older-than", value, "--db", url),  # type: ignore[operator]
                       f"'{value}'", "100y")


def test_db_upgrade_into_a_missing_directory(qfleet: object, tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x.db"
    one_line_error(qfleet("db", "upgrade", "--db", f"sqlite:///{target}"),  # type: ignore[operator]
                   str(target.parent), "mkdir")
    assert not (tmp_path / "nonexistent").exists()


def test_db_downgrade_to_an_unknown_revision_changes_nothing(qfleet: object, tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    assert qfleet("db", "upgrade", "--db", url)[0] == 0  # type: ignore[operator]
    one_line_error(qfleet("db", "downgrade", "nosuchrev", "--db", url), "'nosuchrev'")  # type: ignore[operator]
    engine = open_engine(url)
    assert current_revisions(engine) == head_revisions()
    engine.dispose()


@pytest.mark.parametrize("argv", [
    ["db", "current"], ["db", "prune", "--older-than", "14d"], ["db", "rollup"], ["db", "downgrade", "base"],
    ["slo", "eval", "default", "--at", "now"], ["incidents", "list"],
], ids=["current", "prune", "rollup", "downgrade", "slo-eval", "incidents-list"])
def test_readers_do_not_create_a_missing_sqlite_file(qfleet: object, tmp_path: Path, argv: list[str]) -> None:
    missing = tmp_path / "missing.db"
    one_line_error(qfleet(*argv, "--db", f"sqlite:///{missing}"), str(missing), "qfleet db upgrade")  # type: ignore[operator]
    assert not missing.exists()


def test_readers_say_to_upgrade_an_unmigrated_store(qfleet: object, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()  # an existing SQLite file without qfleet's tables
    url = f"sqlite:///{empty}"
    for argv in (["db", "prune", "--older-than", "14d"], ["slo", "eval", "default", "--at", "now"]):
        one_line_error(qfleet(*argv, "--db", url), f"run `qfleet db upgrade --db {url}`")  # type: ignore[operator]
    with sqlite3.connect(empty) as conn:  # no table was created in it (only the WAL header of the connection)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


# -- the collector -------------------------------------------------------------------------------------------


def test_collector_serve_with_a_token_file_in_a_missing_directory(qfleet: object, tmp_path: Path) -> None:
    token = tmp_path / "nonexistent" / "dir" / "tok"
    db = tmp_path / "c.db"
    one_line_error(qfleet("collector", "serve", "--token-file", str(token),  # type: ignore[operator]
                          "--db", f"sqlite:///{db}"), f"'{token}'", "--token-file")
    assert not db.exists() and not (tmp_path / "nonexistent").exists()


def test_collector_serve_on_a_port_in_use(tmp_path: Path) -> None:
    """A subprocess: the command installs signal handlers and, when it starts, serves until stopped."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    token = tmp_path / "tok"
    token.write_text("secret-token\n")
    token.chmod(0o600)
    try:
        res = subprocess.run([sys.executable, "-m", "qfleet.cli", "collector", "serve", "--port", str(port),
                              "--token-file", str(token), "--db", sqlite(tmp_path)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`qfleet collector serve --port {port}` served although the port is taken")
    finally:
        holder.close()
    one_line_error((res.returncode, res.stdout, res.stderr), f"127.0.0.1:{port}", "--port")


# -- databases that cannot be reached ------------------------------------------------------------------------


READERS_AND_WRITERS = [
    ["db", "current"], ["db", "upgrade"], ["db", "downgrade", "base"], ["db", "prune", "--older-than", "14d"],
    ["db", "rollup"], ["slo", "eval", "default", "--at", "now"],
    ["sim", "run", "--fleet", "line", "--duration", "1m", "--no-progress"],
    ["incidents", "list"],  # not this part's CLI: the top level turns the driver's error into one line
]
IDS = ["current", "upgrade", "downgrade", "prune", "rollup", "slo-eval", "sim-run", "incidents-list"]


@pytest.mark.parametrize("argv", READERS_AND_WRITERS, ids=IDS)
def test_a_closed_postgresql_is_one_line_with_the_password_masked(qfleet: object, refused_port: int,
                                                                  argv: list[str]) -> None:
    url = f"postgresql+psycopg://qfleet:s3cret-pw@127.0.0.1:{refused_port}/qfleet"
    err = one_line_error(qfleet(*argv, "--db", url), "cannot reach", str(refused_port))  # type: ignore[operator]
    assert "s3cret-pw" not in err


@pytest.mark.postgres
@pytest.mark.parametrize("argv", READERS_AND_WRITERS, ids=IDS)
def test_a_missing_postgresql_database_is_one_line(qfleet: object, pg_admin_url: str, argv: list[str]) -> None:
    name = f"qfleet_missing_{uuid.uuid4().hex[:12]}"
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    one_line_error(qfleet(*argv, "--db", url), "cannot reach", name)  # type: ignore[operator]


@pytest.mark.postgres
def test_an_unmigrated_postgresql_database_says_to_upgrade(qfleet: object, pg_url: str) -> None:
    for argv in (["db", "prune", "--older-than", "14d"], ["slo", "eval", "default", "--at", "now"]):
        one_line_error(qfleet(*argv, "--db", pg_url), "qfleet db upgrade --db")  # type: ignore[operator]
    with pytest.raises(StoreError, match="has no qfleet schema"):
        open_existing(pg_url)


# -- open_existing, the reader's entry point -----------------------------------------------------------------


def test_open_existing_creates_nothing_and_accepts_a_store_at_head(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="does not exist"):
        open_existing(f"sqlite:///{missing}")
    assert not missing.exists()
    url = sqlite(tmp_path)
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    reader = open_existing(url)
    assert current_revisions(reader) == head_revisions()
    reader.dispose()


# -- the top level -------------------------------------------------------------------------------------------


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    """`qfleet … | head`: the reader goes away. Deterministic: the pipe's read end is closed before the start."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run([sys.executable, "-m", "qfleet.cli", "slo", "validate", "default"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert res.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" at shutdown
    assert res.returncode == 1  # CPython's documented status for a closed pipe


def test_bugs_keep_their_traceback() -> None:
    assert user_error(KeyError("x")) is None
    assert user_error(StoreError("bad URL")) == "bad URL"
