"""Alert-quality lab throughput: simulated game days per hour with 1 and 2 local worker processes and on a 2-worker
Dask LocalCluster, in one script on one machine, and the parallel efficiency per core.

Each setting runs the same campaign from an empty work directory (the built-in `quick` campaign's cells at
``--seeds`` seeds, 30-minute runs); the wall time covers starting the workers or the cluster (the cluster's own
start is also printed apart). Efficiency is
(runs/hour with N workers) / (N x runs/hour with 1); the target is >= 0.8. The reports of the three settings must
be identical (the script checks it). Prints the machine's cores and load average beside the figures, and one
final JSON line.

    .venv/bin/python bench/bench_lab.py [--seeds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qfleet.runbooks.campaign import builtin_campaign_path, expand, load_campaign
from qfleet.runbooks.lab import run_campaign

TARGET_EFFICIENCY = 0.8


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", type=int, default=8, help="runs per cell (the campaign has 3 cells and 1 calm run)")
    args = ap.parse_args(argv)
    campaign = replace(load_campaign(builtin_campaign_path("quick")), seeds=args.seeds)
    runs = len(expand(campaign))
    load_before = [round(x, 2) for x in os.getloadavg()]
    figures: dict[str, Any] = {"runs": runs, "cores": os.cpu_count(), "loadavg_before": load_before}
    reports = {}
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-lab-") as d:
        for label, kwargs in (("1 process", {"workers": 1}), ("2 processes", {"workers": 2}),
                              ("2-worker LocalCluster", {"dask": True})):
            work = Path(d) / label.replace(" ", "-")
            t0 = time.perf_counter()
            if kwargs.get("dask"):
                from distributed import LocalCluster

                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
                    figures["cluster_start_s"] = round(time.perf_counter() - t0, 2)
                    reports[label] = run_campaign(campaign, work, dask=c.scheduler_address)
            else:
                reports[label] = run_campaign(campaign, work, workers=int(kwargs["workers"]))
            wall = time.perf_counter() - t0
            figures[label] = {"wall_s": round(wall, 2), "runs_per_hour": round(runs / wall * 3600, 1)}
            print(f"{label:>22}: {runs} runs in {wall:6.1f} s = {runs / wall * 3600:7.1f} runs/hour", flush=True)
    base = figures["1 process"]["runs_per_hour"]
    for label in ("2 processes", "2-worker LocalCluster"):
        eff = figures[label]["runs_per_hour"] / (2 * base)
        figures[label]["efficiency"] = round(eff, 3)
        print(f"{label:>22}: parallel efficiency {eff:.2f} per core (target >= {TARGET_EFFICIENCY})")
    if "cluster_start_s" in figures:
        print(f"{'':>22}  (the LocalCluster took {figures['cluster_start_s']:.1f} s of that to start)")
    same = all(r == reports["1 process"] for r in reports.values())
    figures["identical_reports"] = same
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"identical reports: {same}; machine: {os.cpu_count()} cores, load average {load_before} before, "
          f"{figures['loadavg_after']} after")
    print(json.dumps(figures))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
