"""`qfleet sim …` end to end: into real SQLite and PostgreSQL through the bulk path, over real OTLP/HTTP into a
running collector, paced, deterministic, and with clear errors for bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from qfleet.collector import Store, open_engine, upgrade
from qfleet.collector.receiver import Receiver, ReceiverConfig
from qfleet.simulator.cli import Clock, main
from qfleet.simulator.telemetry import SPAN_NAMES

TOKEN = "sim-test-token-0123456789"
PROMOTED = ("qfleet.node.id", "qfleet.link.id", "qfleet.job.id", "qfleet.run.id", "qfleet.hardware.type")


def _run(*argv: str, env: dict[str, str] | None = None, clock: Clock | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=env or {}, stdout=out, stderr=err, clock=clock)
    return code, out.getvalue(), err.getvalue()


class FakeClock:
    """Simulated wall time: it moves only when the command sleeps, so pacing is exact and needs no real clock."""

    def __init__(self, now_ns: int = 1_767_225_600 * 10**9) -> None:
        self.t = 0.0
        self.now = now_ns
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now_ns=lambda: self.now + round(self.t * 1e9), monotonic=lambda: self.t, sleep=self.sleep)


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    eng = create_engine(url)
    with eng.connect() as c:
        spans = c.execute(text(
            "SELECT trace_id, span_id, parent_span_id, name, kind, start_time_unix_nano, end_time_unix_nano, "
            "status_code, status_message, attributes, node_id, link_id, job_id, run_id, hardware_type, service_name "
            "FROM spans ORDER BY trace_id, span_id")).all()
        samples = c.execute(text(
            "SELECT s.metric_name, s.labels, m.time_unix_nano, m.value FROM metric_samples m "
            "JOIN metric_series s ON s.id = m.series_id ORDER BY s.metric_name, s.fingerprint, m.time_unix_nano")).all()
    eng.dispose()

    def plain(v: Any) -> Any:
        return json.dumps(json.loads(v) if isinstance(v, str) else v, sort_keys=True) if isinstance(
            v, (str, dict)) and (isinstance(v, dict) or v.startswith("{")) else v

    return {"spans": [tuple(plain(x) for x in r) for r in spans], "samples": [tuple(plain(x) for x in r)
                                                                             for r in samples]}


def test_run_into_sqlite_prints_a_summary_and_stores_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    code, out, err = _run("run", "--fleet", "line", "--faults", str(_faults(tmp_path)), "--duration", "10m",
                          "--db", url, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["jobs"] == sum(summary["outcomes"].values()) > 500
    assert set(summary["split_s"]) == {"control_plane", "physics", "telemetry", "storage"}
    store = Store(open_engine(url))
    assert store.count("spans") == summary["spans"] and store.count("metric_samples") == summary["samples"]
    with store.engine.connect() as c:
        truth = c.execute(text("SELECT link_id FROM spans WHERE name = :n"), {"n": SPAN_NAMES["fault"]}).all()
        rolled = c.execute(text("SELECT SUM(span_count) FROM span_rollups WHERE name = :n"),
                           {"n": SPAN_NAMES["job"]}).scalar_one()
    assert truth == [("qpu-b~qpu-c",)]
    assert rolled == summary["jobs"]  # the rollups are computed before the command returns
    store.engine.dispose()


def _faults(tmp_path: Path) -> Path:
    p = tmp_path / "faults.yaml"
    p.write_text("version: 1\nkind: FaultSchedule\nfaults:\n"
                 "  - {id: cut, type: F1, target: qpu-b~qpu-c, start: 2m, duration: 5m, magnitude: 0}\n")
    return p


def test_same_seed_gives_identical_stored_telemetry(tmp_path: Path, db_url: str) -> None:
    a, b, c = (f"sqlite:///{tmp_path / f'{n}.db'}" for n in "abc")
    args = ("run", "--fleet", "line", "--faults", str(_faults(tmp_path)), "--duration", "6m", "--no-progress")
    for url, seed in ((a, "3"), (b, "3"), (c, "4"), (db_url, "3")):
        code, _, err = _run(*args, "--seed", seed, "--db", url)
        assert code == 0, err
    da, db, dc, dpg = (_dump(u) for u in (a, b, c, db_url))
    assert da == db and da["spans"]
    assert da["spans"] != dc["spans"]
    # The other backend (PostgreSQL via binary COPY, or a second SQLite file) stores the same rows.
    assert dpg == da


def test_otlp_path_into_a_live_collector_stores_the_same_rows(tmp_path: Path) -> None:
    direct = f"sqlite:///{tmp_path / 'direct.db'}"
    via = f"sqlite:///{tmp_path / 'qfleet.collector.db'}"
    engine = open_engine(via)
    upgrade(engine)
    rx = Receiver(Store(engine), ReceiverConfig(port=0, token=TOKEN))
    rx.start()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    try:
        host, port = rx.address
        args = ("run", "--fleet", "line", "--duration", "4m", "--seed", "9", "--no-progress")
        code, _, err = _run(*args, "--otlp", f"http://{host}:{port}", "--token-file", str(token_file))
        assert code == 0, err
    finally:
        rx.stop()
        engine.dispose()
    assert _run(*args, "--db", direct)[0] == 0
    d, v = _dump(direct), _dump(via)
    # Over OTLP the promoted columns travel as attributes (OTLP has no columns); otherwise the rows are equal.
    strip = [r[:9] + (json.dumps({k: x for k, x in json.loads(r[9]).items() if k not in PROMOTED},
                                 sort_keys=True),) + r[10:] for r in v["spans"]]
    assert len(d["spans"]) > 1000 and strip == d["spans"]
    assert v["samples"] == d["samples"]


def test_paced_run_does_not_outrun_the_wall_clock(tmp_path: Path) -> None:
    fake = FakeClock()
    code, out, err = _run("run", "--fleet", "line", "--duration", "2m", "--speed", "240x",
                          "--db", f"sqlite:///{tmp_path / 'p.db'}", "--json", "--start", "2026-03-01T00:00:00Z",
                          clock=fake.clock())
    assert code == 0, err
    # 120 simulated seconds at 240x: two 60 s steps, each waited out to its share of the half second (the run
    # itself takes no time on this clock), so simulated time never ran ahead of wall time * speed.
    assert fake.sleeps == pytest.approx([0.25, 0.25])
    summary = json.loads(out)
    assert summary["start"] == "2026-03-01T00:00:00Z" and summary["wall_s"] == pytest.approx(0.5)


def test_paced_run_starts_now_floored_to_the_minute(tmp_path: Path) -> None:
    fake = FakeClock(now_ns=1_767_225_600 * 10**9 + 59 * 10**9 + 7)
    code, out, err = _run("run", "--fleet", "line", "--duration", "1m", "--speed", "600x", "--json",
                          "--db", f"sqlite:///{tmp_path / 'n.db'}", clock=fake.clock())
    assert code == 0, err
    assert json.loads(out)["start"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--fleet", "nowhere.yaml"], "nowhere.yaml"),
    (["run", "--fleet", "line", "--speed", "fast"], "--speed 'fast'"),
    (["run", "--fleet", "line", "--duration", "ten minutes"], "ten minutes"),
    (["run", "--fleet", "line", "--start", "yesterday"], "--start 'yesterday'"),
    (["run", "--fleet", "line", "--start", "2026-01-01T00:00:00"], "with a zone"),
    (["run", "--fleet", "line", "--duration", "1.5h"], "write 1h30m"),
    (["chain", "--nodes", "3", "--duration", "0.5s"], "write 500ms"),
    (["experiment", "bell", "--param", "fidelity=1.5"], "fidelity"),
    (["experiment", "warp-drive"], "warp-drive"),
    (["chain", "--nodes", "1"], "nodes"),
    (["chain", "--nodes", "3", "--preset", "netsquid-9"], "--preset 'netsquid-9'"),
    (["chain", "--nodes", "3", "--memory-policy", "shared"], "memory_policy='shared'"),
    (["chain", "--nodes", "3", "--memory-policy", "lanes", "--cutoff", "5ms"], "cutoff_s="),
], ids=["missing fleet file", "bad speed", "bad duration", "bad start", "start without a zone",
        "fractional duration", "fractional chain window", "out-of-range parameter", "unknown protocol",
        "chain too short", "unknown chain preset", "unknown memory policy", "cut-off needs pooled memories"])
def test_bad_input_exits_2_naming_the_value(argv: list[str], needle: str, tmp_path: Path) -> None:
    code, out, err = _run(*argv, "--db", f"sqlite:///{tmp_path / 'x.db'}") if argv[0] == "run" else _run(*argv)
    assert code == 2 and needle in err and out == ""
    assert not (tmp_path / "x.db").exists()  # nothing half-written


def test_invalid_fleet_file_names_the_field(tmp_path: Path) -> None:
    fleet = tmp_path / "bad.yaml"
    fleet.write_text("version: 1\nkind: Fleet\nname: bad\nnodes:\n  - {id: a, profile: nv, t2_s: -1}\n"
                     "  - {id: b, profile: nv}\nlinks:\n  - {a: a, b: b, length_km: 1}\n")
    code, _, err = _run("run", "--fleet", str(fleet), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and "nodes[0].t2_s" in err


def test_experiment_json_has_the_documented_keys() -> None:
    code, out, err = _run("experiment", "swap-chain", "--param", "links=3", "--param", "fidelity=0.95",
                          "--shots", "20000", "--seed", "1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc)[:7] == ["protocol", "params", "shots", "fidelity", "fidelity_stderr", "predicted_fidelity",
                             "success_probability"]
    assert doc["protocol"] == "swap-chain" and doc["params"]["links"] == 3 and doc["success_probability"] is None
    assert abs(doc["fidelity"] - doc["predicted_fidelity"]) < 4 * doc["fidelity_stderr"] + 1e-3
    code, out, _ = _run("experiment", "purify", "--param", "method=dejmps", "--param", "fidelity=0.9", "--json")
    assert code == 0 and 0 < json.loads(out)["success_probability"] < 1


def test_chain_json_has_the_documented_keys() -> None:
    code, out, err = _run("chain", "--nodes", "4", "--json", "--seed", "2")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc)[:5] == ["nodes", "simulated_s", "wall_s", "pairs_delivered", "mean_fidelity"]
    assert doc["nodes"] == 4 and doc["simulated_s"] == 0.5 and doc["pairs_delivered"] > 100
    assert 0.9 < doc["mean_fidelity"] < 1.0 and doc["wall_s"] >= 0  # its budget: bench/bench_chain_peer.py


def test_chain_sequence_preset_json_keeps_the_keys_and_adds_the_peer_rule() -> None:
    code, out, err = _run("chain", "--preset", "sequence-0.8.5-swap", "--nodes", "4", "--seed", "1", "--duration",
                          "100ms", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc)[:5] == ["nodes", "simulated_s", "wall_s", "pairs_delivered", "mean_fidelity"]
    assert doc["preset"] == "sequence-0.8.5-swap" and doc["memory_policy"] == "pooled"
    assert doc["simulated_s"] == 0.1 and doc["pairs_delivered"] > 100  # the flag overrides the preset's 0.5 s
    assert doc["peer_rule_fidelity"] == pytest.approx(0.99**3 * 0.95**2)
    code, out, err = _run("chain", "--nodes", "4", "--memory-policy", "lanes", "--json")
    assert code == 0, err
    assert json.loads(out)["memory_policy"] == "lanes"


def test_chain_window_is_a_duration() -> None:
    fake = FakeClock()
    code, out, err = _run("chain", "--nodes", "3", "--duration", "250ms", "--json", clock=fake.clock())
    assert code == 0, err
    doc = json.loads(out)
    assert doc["simulated_s"] == 0.25 and doc["wall_s"] == 0.0  # timed on the given clock


def test_experiment_imports_neither_the_store_nor_the_exporters() -> None:
    # `qfleet sim experiment` must start fast: Stim and numpy, not SQLAlchemy or the OTLP exporters.
    code = ("import sys; from qfleet.cli import main; rc = main(['sim', 'experiment', 'bell', '--shots', '100', "
            "'--json']); heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'opentelemetry') "
            "or m in ('qfleet.collector', 'qfleet.simulator.sinks', 'qfleet.simulator.engine')); "
            "print(heavy, file=sys.stderr); sys.exit(rc or bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
