"""The modules setup.py compiles with mypyc (qfleet/native.py) against the same modules interpreted: the oracle is
the interpreted code, run in its own process with ``QFLEET_INTERPRETED=1``."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import qfleet
from qfleet import native
from tests.conftest import require

NOT_COMPILED = (f"the mypyc modules are not in use ({qfleet.NATIVE}); `pip install -e .` on a machine with a C "
                "compiler builds them")
# Every table a simulation writes, in a fixed order.
TABLES = {
    "spans": "trace_id, span_id",
    "metric_series": "fingerprint",
    "metric_samples": "series_id, time_unix_nano",
    "span_rollups": "bucket_start_unix_nano, name, status_code, node_id, link_id, hardware_type",
    "metric_rollups": "series_id, bucket_start_unix_nano",
    "resources": "fingerprint",
}
# Columns that hold the wall-clock time of the write, not simulated values.
WALL_CLOCK = {"first_seen_unix_nano"}

_PROBE = ("import sys, qfleet, qfleet.simulator.engine as e, qfleet.collector.metric_rows as m; "
          "print(qfleet.NATIVE, e.__file__, m.__file__)")


def _run(tmp: Path, name: str, interpreted: bool) -> tuple[str, Path]:
    env = {k: v for k, v in os.environ.items() if k != "QFLEET_INTERPRETED"}
    if interpreted:
        env["QFLEET_INTERPRETED"] = "1"
    probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    db = tmp / f"{name}.db"
    # The CLI stores through its writer process, which inherits the setting: engine and writer run the same way.
    run = subprocess.run([sys.executable, "-m", "qfleet.cli", "sim", "run", "--fleet", "mesh", "--faults", "example",
                          "--duration", "60m", "--seed", "11", "--db", f"sqlite:///{db}", "--no-progress"],
                         env=env, capture_output=True, text=True, cwd=tmp)
    assert run.returncode == 0, run.stderr
    return probe.stdout, db


def _tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    con = sqlite3.connect(db)
    try:
        cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})") if r[1] not in WALL_CLOCK] for t in TABLES}
        return {t: con.execute(f"SELECT {', '.join(cols[t])} FROM {t} ORDER BY {key}").fetchall()
                for t, key in TABLES.items()}
    finally:
        con.close()


def test_the_listed_modules_are_compiled_and_current() -> None:
    require(qfleet.NATIVE == "compiled", NOT_COMPILED)
    assert native.compiled_modules() == list(native.COMPILED)


def test_compiled_and_interpreted_runs_store_the_same_rows(tmp_path: Path) -> None:
    require(qfleet.NATIVE == "compiled", NOT_COMPILED)
    probe_c, db_c = _run(tmp_path, "compiled", interpreted=False)
    probe_i, db_i = _run(tmp_path, "interpreted", interpreted=True)
    assert probe_c.startswith("compiled ") and ".py" not in probe_c, probe_c
    assert probe_i.startswith("QFLEET_INTERPRETED=1 ") and probe_i.split()[1:] == [
        p.rsplit(".", 1)[0].rsplit(".cpython", 1)[0] + ".py" for p in probe_c.split()[1:]], (probe_i, probe_c)
    compiled, interpreted = _tables(db_c), _tables(db_i)
    assert len(compiled["spans"]) > 1000 and len(compiled["metric_samples"]) > 1000
    # mesh's example faults start within the 60 minutes: the fault spans are among the rows compared.
    assert any(row[6] == "qfleet.fault" for row in compiled["spans"])
    for table in TABLES:
        assert compiled[table] == interpreted[table], table


def test_a_source_edited_after_the_build_is_stale(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("X = 1\n")
    record = {"qfleet.x": native.source_digest(src), "qfleet.y": hashlib.sha256(b"").hexdigest()}
    sources = {"qfleet.x": src, "qfleet.y": tmp_path / "missing.py"}
    assert native.stale(record, sources) == ["qfleet.y"]
    src.write_text("X = 2\n")
    assert native.stale(record, sources) == ["qfleet.x", "qfleet.y"]
