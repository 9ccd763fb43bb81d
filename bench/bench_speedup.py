"""Simulator speed against a baseline commit, in one script on one machine: the fleet-day slice and the demo.

Checks the baseline out into a temporary git worktree (default 8274248, the implementation the speed issue
measured), then runs, one after the other on the same machine:

* the fleet-day slice: each side's own ``bench/bench_fleet_day.py --hours H`` (fleet100, all eight faults, into a
  fresh SQLite file through the collector's bulk path), the baseline with ``PYTHONPATH`` at its worktree;
* ``qfleet demo --no-serve`` in an empty folder, each side's own code.

The current side runs as installed: with the modules setup.py compiles (mypyc) when they are built and current,
which the output reports; ``QFLEET_INTERPRETED=1`` in the environment runs it from the sources instead.

Each side runs ``--runs`` times, interleaved in alternating order; prints the median wall times, the speed-up
(baseline median / current median) and every run's ratio beside the targets, the machine's cores and load
average before and after, and one JSON line. Exit status 1 when a target is missed.

    .venv/bin/python bench/bench_speedup.py [--baseline 8274248] [--hours 2] [--runs 3] [--skip-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Targets of the speed issue: the fleet-day slice >= 5x the baseline, the demo >= 2x.
TARGETS = {"fleet_day": 5.0, "demo": 2.0}


def _machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QFLEET_DATABASE_URL")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)  # the baseline's top-level packages win over the installed ones
    return env


def _fleet_day(tree: Path, hours: float, baseline: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(tree / "bench" / "bench_fleet_day.py"), "--hours", f"{hours:g}"]
    if not baseline:
        cmd.append("--no-pacing")  # the baseline's bench has no such flag; its pacing check runs after the JSON
    out = subprocess.run(cmd, cwd=tree, env=_env(tree if baseline else None), capture_output=True, text=True,
                         check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"bench": "fleet_day"')]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"bench_speedup: the {'baseline' if baseline else 'current'} fleet-day failed: "
                         f"{(out.stderr or out.stdout)[-800:]}")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def _demo(tree: Path, baseline: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qfleet-speedup-demo-") as folder:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "qfleet.cli", "demo", "--no-serve"], cwd=folder,
                             env=_env(tree if baseline else None), capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    head = next((ln for ln in out.stdout.splitlines() if ln.startswith("game day ")), "")
    if not head:
        raise SystemExit(f"bench_speedup: the {'baseline' if baseline else 'current'} demo failed: "
                         f"{(out.stderr or out.stdout)[-800:]}")
    return {"wall_s": round(wall, 1), "exit": out.returncode, "summary": head}


def _pair(name: str, run: Any, tree: Path, runs: int) -> dict[str, Any]:
    """``runs`` runs of each side, interleaved and in alternating order (this machine class drifts over minutes:
    back-to-back blocks would hand one side the slow stretch); the medians and every run's ratio."""
    base: list[dict[str, Any]] = []
    cur: list[dict[str, Any]] = []
    for i in range(runs):
        for baseline in ((True, False) if i % 2 == 0 else (False, True)):
            (base if baseline else cur).append(run(tree if baseline else REPO, baseline))
    b = statistics.median(r["wall_s"] for r in base)
    c = statistics.median(r["wall_s"] for r in cur)
    out: dict[str, Any] = {"baseline_s": b, "current_s": c, "baseline_runs_s": [r["wall_s"] for r in base],
                           "current_runs_s": [r["wall_s"] for r in cur],
                           "run_ratios": [round(x["wall_s"] / y["wall_s"], 2) for x, y in zip(base, cur, strict=True)]}
    if name == "fleet_day":
        out.update(baseline_split_s=base[-1]["split_s"], current_split_s=cur[-1]["split_s"],
                   jobs=[base[-1]["jobs"], cur[-1]["jobs"]], spans=[base[-1]["spans"], cur[-1]["spans"]],
                   current_modules=cur[-1].get("native", "unknown"))
    else:
        out["summaries"] = [base[-1]["summary"], cur[-1]["summary"]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--baseline", default="8274248", help="git revision to compare with (default 8274248)")
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours of the fleet-day slice")
    ap.add_argument("--runs", type=int, default=3, help="runs of each side (interleaved); the medians are compared")
    ap.add_argument("--skip-demo", action="store_true", help="time the fleet-day slice only")
    args = ap.parse_args(argv)
    if args.runs < 1:
        print(f"bench_speedup: --runs {args.runs} must be at least 1", file=sys.stderr)
        return 2
    before = _machine()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qfleet-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), args.baseline],
                       check=True)
        try:
            results["fleet_day"] = _pair("fleet_day", lambda t, b: _fleet_day(t, args.hours, b), tree, args.runs)
            if not args.skip_demo:
                results["demo"] = _pair("demo", _demo, tree, args.runs)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    after = _machine()
    missed = []
    print(f"simulator speed against {args.baseline} (same script, same machine; medians of {args.runs} "
          f"interleaved runs)")
    for name, r in results.items():
        r["speedup"] = round(r["baseline_s"] / r["current_s"], 2) if r["current_s"] else None
        ok = r["speedup"] is not None and r["speedup"] >= TARGETS[name]
        if not ok:
            missed.append(name)
        label = f"fleet100 {args.hours:g} h, all faults" if name == "fleet_day" else "qfleet demo --no-serve"
        print(f"  {label:<32} baseline {r['baseline_s']:7.1f} s   current {r['current_s']:7.1f} s   "
              f"speed-up {r['speedup']}x (target >= {TARGETS[name]:g}x){'' if ok else '  MISSED'}; "
              f"per run {', '.join(f'{x}x' for x in r['run_ratios'])}")
    print(f"  machine: {before['cores']} cores, load average {' '.join(map(str, before['loadavg']))} before, "
          f"{' '.join(map(str, after['loadavg']))} after"
          + (f"; current side's modules: {results['fleet_day']['current_modules']}" if "fleet_day" in results else ""))
    print(json.dumps({"bench": "speedup", "baseline": args.baseline, "hours": args.hours, "runs": args.runs,
                      "results": results, "machine_before": before, "machine_after": after, "missed": missed}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
