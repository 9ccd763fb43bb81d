"""The modules setup.py compiles with mypyc (qfleet/native.py) against the same modules interpreted, in one script.

Each run is a fresh process, alternating compiled and ``QFLEET_INTERPRETED=1`` (this machine class drifts within
minutes): the engine alone on ``fleet100`` with fleet100-day's faults (no storage), then the writer's row building
on every step it produced (``MetricPoints.to_batch`` and ``SpanColumns.to_batch``, what the writer process does
before SQLite). With ``--pipeline`` it also runs ``bench/bench_fleet_day.py --no-pacing`` both ways (engine and
writer process into SQLite). Prints each run, the medians and their ratios, the machine (cores, load average
before and after) and one JSON line. Exits 2 when the compiled modules are not in use (nothing to compare).

    .venv/bin/python bench/bench_native.py [--minutes 60] [--runs 3] [--pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import qfleet

REPO = Path(__file__).resolve().parents[1]

# One run, in its own process (the mode is chosen when qfleet is first imported).
_ONE = """
import json, sys, time
import qfleet
from qfleet.simulator import gcpolicy
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.units import NS

fleet = load_fleet(builtin_fleet_path("fleet100"))
faults = load_faults(builtin_faults_path("fleet100-day"), fleet)
sim = Simulation(fleet, faults, RunConfig(duration_ns=int(sys.argv[1]) * 60 * NS, seed=7))
steps = []
t0 = time.perf_counter()
for step in sim.steps():
    steps.append(step)
engine_s = time.perf_counter() - t0
with gcpolicy.fewer_collections():  # as the writer process runs
    t0 = time.perf_counter()
    rows = 0
    for step in steps:
        rows += len(step.points.to_batch().samples)
        rows += len(step.spans.to_batch(service_name="qfleet-simulator").spans)
    rows_s = time.perf_counter() - t0
print(json.dumps({"native": qfleet.NATIVE, "engine_s": round(engine_s, 3), "rows_s": round(rows_s, 3),
                  "jobs": steps[-1].jobs_total, "rows": rows}))
"""


def _machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _env(interpreted: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QFLEET_INTERPRETED"}
    if interpreted:
        env["QFLEET_INTERPRETED"] = "1"
    return env


def _json_line(cmd: list[str], interpreted: bool, prefix: str) -> dict[str, Any]:
    out = subprocess.run(cmd, cwd=REPO, env=_env(interpreted), capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(prefix)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"bench_native: {' '.join(cmd[1:3])} failed: {(out.stderr or out.stdout)[-800:]}")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def _engine(minutes: int, interpreted: bool) -> dict[str, Any]:
    return _json_line([sys.executable, "-c", _ONE, str(minutes)], interpreted, '{"native"')


def _pipeline(minutes: int, interpreted: bool) -> dict[str, Any]:
    return _json_line([sys.executable, str(REPO / "bench" / "bench_fleet_day.py"), "--hours", f"{minutes / 60:g}",
                       "--no-pacing"], interpreted, '{"bench": "fleet_day"')


def _alternating(run: Any, minutes: int, runs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    compiled: list[dict[str, Any]] = []
    interpreted: list[dict[str, Any]] = []
    for i in range(runs):
        for interp in ((False, True) if i % 2 == 0 else (True, False)):
            (interpreted if interp else compiled).append(run(minutes, interp))
    return compiled, interpreted


def _compare(label: str, key: str, compiled: list[dict[str, Any]], interpreted: list[dict[str, Any]]
             ) -> dict[str, Any]:
    c = statistics.median(r[key] for r in compiled)
    i = statistics.median(r[key] for r in interpreted)
    ratio = round(i / c, 2) if c else None
    print(f"  {label:<34} interpreted {i:7.2f} s   compiled {c:7.2f} s   {ratio}x   "
          f"(runs: {', '.join(str(r[key]) for r in interpreted)} / {', '.join(str(r[key]) for r in compiled)})")
    return {"interpreted_s": i, "compiled_s": c, "ratio": ratio, "interpreted_runs_s": [r[key] for r in interpreted],
            "compiled_runs_s": [r[key] for r in compiled]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=int, default=60, help="simulated minutes of fleet100 (default 60)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each mode, alternating; medians compared")
    ap.add_argument("--pipeline", action="store_true", help="also bench_fleet_day.py (engine + writer) both ways")
    args = ap.parse_args(argv)
    if args.minutes < 1 or args.runs < 1:
        print(f"bench_native: --minutes {args.minutes} and --runs {args.runs} must be at least 1", file=sys.stderr)
        return 2
    if qfleet.NATIVE != "compiled":
        print(f"bench_native: the compiled modules are not in use ({qfleet.NATIVE}); build them with "
              "`pip install -e .` on a machine with a C compiler", file=sys.stderr)
        return 2
    before = _machine()
    results: dict[str, Any] = {}
    comp, interp = _alternating(_engine, args.minutes, args.runs)
    if any((c["jobs"], c["rows"]) != (i["jobs"], i["rows"]) for c, i in zip(comp, interp, strict=True)):
        raise SystemExit("bench_native: compiled and interpreted runs differ in jobs or rows")
    print(f"fleet100, {args.minutes} simulated minutes, fleet100-day's faults, seed 7: {comp[0]['jobs']:,} jobs, "
          f"{comp[0]['rows']:,} rows (medians of {args.runs} alternating runs)")
    results["engine"] = _compare("engine alone", "engine_s", comp, interp)
    results["rows"] = _compare("writer's row building", "rows_s", comp, interp)
    if args.pipeline:
        comp, interp = _alternating(_pipeline, args.minutes, args.runs)
        results["pipeline"] = _compare("bench_fleet_day.py (wall)", "wall_s", comp, interp)
        results["pipeline_engine_done"] = _compare("  engine finished at", "engine_done_s", comp, interp)
    after = _machine()
    print(f"  machine: {before['cores']} cores, load average {' '.join(map(str, before['loadavg']))} before, "
          f"{' '.join(map(str, after['loadavg']))} after")
    print(json.dumps({"bench": "native", "minutes": args.minutes, "runs": args.runs, "results": results,
                      "machine_before": before, "machine_after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
