"""Simulator speed against a baseline commit, in one script on one machine: the fleet-day slice and the demo.

Checks the baseline out into a temporary git worktree (default 8274248, the implementation the speed issue
measured), then runs, one after the other on the same machine:

* the fleet-day slice: each side's own ``bench/bench_fleet_day.py --hours H`` (fleet100, all eight faults, into a
  fresh SQLite file through the collector's bulk path), the baseline with ``PYTHONPATH`` at its worktree;
* ``qfleet demo --no-serve`` in an empty folder, each side's own code.

Prints both wall times, the speed-up (baseline / current) beside the targets, the machine's cores and load
average before and after, and one JSON line. Exit status 1 when a target is missed.

    .venv/bin/python bench/bench_speedup.py [--baseline 8274248] [--hours 2] [--skip-demo]
"""

from __future__ import annotations

import argparse
import json
import os
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--baseline", default="8274248", help="git revision to compare with (default 8274248)")
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours of the fleet-day slice")
    ap.add_argument("--skip-demo", action="store_true", help="time the fleet-day slice only")
    args = ap.parse_args(argv)
    before = _machine()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qfleet-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), args.baseline],
                       check=True)
        try:
            base, cur = _fleet_day(tree, args.hours, True), _fleet_day(REPO, args.hours, False)
            results["fleet_day"] = {"baseline_s": base["wall_s"], "current_s": cur["wall_s"],
                                    "baseline_split_s": base["split_s"], "current_split_s": cur["split_s"],
                                    "jobs": [base["jobs"], cur["jobs"]], "spans": [base["spans"], cur["spans"]]}
            if not args.skip_demo:
                bd, cd = _demo(tree, True), _demo(REPO, False)
                results["demo"] = {"baseline_s": bd["wall_s"], "current_s": cd["wall_s"],
                                   "summaries": [bd["summary"], cd["summary"]]}
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    after = _machine()
    missed = []
    print(f"simulator speed against {args.baseline} (same script, same machine)")
    for name, r in results.items():
        r["speedup"] = round(r["baseline_s"] / r["current_s"], 2) if r["current_s"] else None
        ok = r["speedup"] is not None and r["speedup"] >= TARGETS[name]
        if not ok:
            missed.append(name)
        label = f"fleet100 {args.hours:g} h, all faults" if name == "fleet_day" else "qfleet demo --no-serve"
        print(f"  {label:<32} baseline {r['baseline_s']:7.1f} s   current {r['current_s']:7.1f} s   "
              f"speed-up {r['speedup']}x (target >= {TARGETS[name]:g}x){'' if ok else '  MISSED'}")
    print(f"  machine: {before['cores']} cores, load average {' '.join(map(str, before['loadavg']))} before, "
          f"{' '.join(map(str, after['loadavg']))} after")
    print(json.dumps({"bench": "speedup", "baseline": args.baseline, "hours": args.hours, "results": results,
                      "machine_before": before, "machine_after": after, "missed": missed}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
