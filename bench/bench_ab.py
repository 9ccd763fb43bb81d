"""Two builds of qfleet on one machine, alternating: the engine alone, the writer alone and the fleet-day slice.

A speed change of 10-20 % is lost in this machine class's drift unless both sides run in turn in one script. This
one compares the checkout it sits in with ``--other``, another checkout with its own virtual environment
(``.venv``, made with ``pip install -e .`` there, so that its mypyc modules are built as this one's are), each
measurement a fresh process of that side's own Python and code, in alternating order (other first in odd rounds):

* ``engine``: ``Simulation.steps()`` alone on fleet100's first ``--minutes`` (fleet100-day's faults, seed 7),
  nothing stored: its CPU seconds;
* ``writer``: each side's writer-process loop (``bench/bench_writer.py``'s ``write``) on the same steps, pickled
  once by this side's engine (the engine's output is the same rows on both sides: check with
  ``bench/sim_fingerprint.py``), all queued (``behind``, 32 steps a transaction) and one at a time (``pace``): its
  CPU seconds;
* ``slice``: each side's own ``bench/bench_fleet_day.py --hours (minutes / 60) --no-pacing``: its wall time and
  when the engine finished.

Prints every run, the medians and their ratio (other / this: above 1, this side is faster), the machine (cores,
load average before and after) and one JSON line.

    git worktree add ../qfleet-base 56bf262
    (cd ../qfleet-base && python3 -m venv .venv && .venv/bin/pip install -e .)
    .venv/bin/python bench/bench_ab.py --other ../qfleet-base          # --minutes 120 --runs 3 --only engine,slice
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KINDS = ("engine", "writer", "slice")

# Run in each side's Python: the engine alone, its CPU seconds as JSON (the API both sides share).
_ENGINE = """
import json, sys, time
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.units import NS
fleet = load_fleet(builtin_fleet_path("fleet100"))
sim = Simulation(fleet, load_faults(builtin_faults_path("fleet100-day"), fleet),
                 RunConfig(duration_ns=int(sys.argv[1]) * 60 * NS, seed=7))
t0 = time.process_time()
for _ in sim.steps():
    pass
print(json.dumps({"cpu_s": round(time.process_time() - t0, 2), "jobs": sim.jobs_total}))
"""

# Run in each side's Python with its own bench/ on the path: the writer alone on the pickled steps.
_WRITER = """
import json, pickle, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench_writer
run_id, steps = pickle.loads(Path(sys.argv[2]).read_bytes())
r = bench_writer.write(steps, 1 if sys.argv[3] == "pace" else len(steps), run_id, Path(sys.argv[4]))
print(json.dumps({"cpu_s": r["cpu_s"], "spans": r["spans"]}))
"""


def _machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _python(tree: Path) -> Path:
    return tree / ".venv" / "bin" / "python"


def _json_line(cmd: list[str], cwd: Path, what: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QFLEET_DATABASE_URL")}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"bench_ab: {what} in {cwd} failed: {(out.stderr or out.stdout)[-800:]}")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def _engine(tree: Path, minutes: int) -> float:
    return float(_json_line([str(_python(tree)), "-c", _ENGINE, str(minutes)], tree, "the engine")["cpu_s"])


def _writer(tree: Path, *, steps: Path, mode: str, work: Path) -> tuple[float]:
    db = work / f"ab-{mode}.db"
    doc = _json_line([str(_python(tree)), "-c", _WRITER, str(tree / "bench"), str(steps), mode, str(db)], tree,
                     f"the writer ({mode})")
    return (float(doc["cpu_s"]),)


def _slice(tree: Path, minutes: int) -> tuple[float, float]:
    doc = _json_line([str(_python(tree)), str(tree / "bench" / "bench_fleet_day.py"), "--hours", f"{minutes / 60:g}",
                      "--no-pacing"], tree, "the fleet-day slice")
    return float(doc["wall_s"]), float(doc["engine_done_s"])


def _steps(minutes: int, path: Path) -> None:
    """This side's engine's steps, pickled as the engine hands them to the writer process, into ``path``."""
    sys.path.insert(0, str(REPO / "bench"))
    import bench_writer  # noqa: PLC0415 - this script's own sibling, found once its folder is on the path

    run_id, steps, _folded, _jobs = bench_writer.simulate(minutes)
    path.write_bytes(pickle.dumps((run_id, steps), protocol=pickle.HIGHEST_PROTOCOL))


def _summary(this: list[float], other: list[float]) -> dict[str, Any]:
    a, b = statistics.median(this), statistics.median(other)
    return {"this": this, "other": other, "this_median": a, "other_median": b,
            "ratio": round(b / a, 2) if a else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--other", required=True, help="another checkout with its own built .venv")
    ap.add_argument("--minutes", type=int, default=120, help="simulated minutes of fleet100 (default 120)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each side per measurement (default 3)")
    ap.add_argument("--only", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    args = ap.parse_args(argv)
    other = Path(args.other).resolve()
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        print(f"bench_ab: --only {args.only!r}: choose from {', '.join(KINDS)}", file=sys.stderr)
        return 2
    if other == REPO:
        print(f"bench_ab: --other {args.other} is this checkout; give another one (a git worktree of the commit "
              "to compare with)", file=sys.stderr)
        return 2
    if not _python(other).is_file():
        print(f"bench_ab: --other {args.other}: no {_python(other)}; make one there with "
              "python3 -m venv .venv && .venv/bin/pip install -e .", file=sys.stderr)
        return 2
    if args.runs < 1 or args.minutes < 1:
        print(f"bench_ab: --runs {args.runs} and --minutes {args.minutes} must be at least 1", file=sys.stderr)
        return 2
    before = _machine()
    results: dict[str, Any] = {}

    def alternate(measure: Callable[[Path], tuple[float, ...]], *names: str) -> None:
        """``args.runs`` rounds of ``measure`` on both sides (the other side first in odd rounds); each value it
        returns summarized under the name in the same place."""
        runs: dict[Path, list[tuple[float, ...]]] = {REPO: [], other: []}
        for i in range(args.runs):
            for tree in ((other, REPO) if i % 2 == 0 else (REPO, other)):
                runs[tree].append(measure(tree))
        for k, name in enumerate(names):
            results[name] = _summary([r[k] for r in runs[REPO]], [r[k] for r in runs[other]])

    with tempfile.TemporaryDirectory(prefix="qfleet-ab-") as tmp:
        work = Path(tmp)
        if "engine" in kinds:
            alternate(lambda tree: (_engine(tree, args.minutes),), "engine")
        if "writer" in kinds:
            steps = work / "steps.pickle"
            _steps(args.minutes, steps)
            for mode in ("behind", "pace"):
                alternate(partial(_writer, steps=steps, mode=mode, work=work), f"writer {mode}")
        if "slice" in kinds:
            alternate(lambda tree: _slice(tree, args.minutes), "slice", "slice, engine finished at")
    after = _machine()
    what = {"engine": "engine alone, CPU s", "writer behind": "writer alone, behind, CPU s",
            "writer pace": "writer alone, keeping pace, CPU s", "slice": "fleet-day slice, wall s",
            "slice, engine finished at": "fleet-day slice, engine finished at s"}
    print(f"fleet100, {args.minutes} simulated minutes: this checkout ({REPO}) against {other}; "
          f"{args.runs} runs each, alternating")
    print("| what | this (each run) | other (each run) | other / this (medians) |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {what[name]} | {' / '.join(f'{x:g}' for x in r['this'])} | "
              f"{' / '.join(f'{x:g}' for x in r['other'])} | {r['ratio']} |")
    print(f"machine: {before['cores']} cores, load average {before['loadavg']} before, {after['loadavg']} after")
    print(json.dumps({"bench": "ab", "this": str(REPO), "other": str(other), "minutes": args.minutes,
                      "runs": args.runs, "results": results, "machine_before": before, "machine_after": after}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
