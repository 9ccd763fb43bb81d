"""What the cyclic garbage collector costs the engine: the same run at CPython's default generation-0 threshold and
under :mod:`qfleet.simulator.gcpolicy`, alternating, with the seconds spent inside collections (``gc.callbacks``).

Engine alone (no storage), fleet100 with fleet100-day's faults. Prints each run's wall seconds, seconds in the
collector and full collections, the medians, and the machine (cores, load average).

    .venv/bin/python bench/gc_share.py [--minutes 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from typing import Any

from qfleet.simulator import gcpolicy
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.units import NS

POLICY = gcpolicy.GEN0_THRESHOLD


def one(minutes: int, gen0: int) -> dict[str, Any]:
    """One engine run with the policy's generation-0 threshold set to ``gen0`` (700: CPython's default)."""
    fleet = load_fleet(builtin_fleet_path("fleet100"))
    faults = load_faults(builtin_faults_path("fleet100-day"), fleet)
    sim = Simulation(fleet, faults, RunConfig(duration_ns=minutes * 60 * NS, seed=7))
    gc.collect()
    gc.set_threshold(700, 10, 10)
    gcpolicy.GEN0_THRESHOLD = gen0
    spent = [0.0, 0.0]

    def timed(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            spent[1] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - spent[1]

    full = gc.get_stats()[2]["collections"]
    gc.callbacks.append(timed)
    t0 = time.perf_counter()
    try:
        for _ in sim.steps():
            pass
    finally:
        gc.callbacks.remove(timed)
    return {"gen0": gen0, "wall_s": round(time.perf_counter() - t0, 2), "gc_s": round(spent[0], 2),
            "full_collections": gc.get_stats()[2]["collections"] - full, "jobs": sim.jobs_total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    runs: dict[int, list[dict[str, Any]]] = {700: [], POLICY: []}
    for i in range(args.runs):
        for gen0 in ((700, POLICY) if i % 2 == 0 else (POLICY, 700)):
            r = one(args.minutes, gen0)
            runs[gen0].append(r)
            print(f"gen0 threshold {gen0:>6}: {r['wall_s']:6.2f} s, {r['gc_s']:5.2f} s in the collector "
                  f"({100 * r['gc_s'] / r['wall_s']:4.1f} %), {r['full_collections']} full collections")
    med = {g: (statistics.median(r["wall_s"] for r in rs), statistics.median(r["gc_s"] for r in rs))
           for g, rs in runs.items()}
    machine = {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(f"medians: default {med[700][0]:.2f} s ({med[700][1]:.2f} s collecting), policy {med[POLICY][0]:.2f} s "
          f"({med[POLICY][1]:.2f} s collecting): {med[700][0] / med[POLICY][0]:.2f}x; machine {machine}")
    print(json.dumps({"bench": "gc_share", "minutes": args.minutes, "runs": runs, **machine}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
