"""A simulated fleet-day: the 100-node fleet, 24 h, the default job mix (> 1,000,000 jobs), one fault of each kind
F1-F8, into a fresh SQLite file through the collector's bulk path. Target: under 5 minutes on 2 cores.

Prints the wall time, the split (control-plane loop, physics, telemetry building in the engine process; storage in
the writer process, which overlaps), jobs, spans and samples, and one final JSON line.

    .venv/bin/python bench/bench_fleet_day.py [--hours 24] [--db sqlite:///path.db]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from qfleet.collector import open_engine, upgrade
from qfleet.simulator.engine import NS, RunConfig, Simulation
from qfleet.simulator.faults import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import ProcessStoreSink


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file in a temporary directory)")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="qfleet-fleetday-")
    url = args.db or f"sqlite:///{Path(tmp.name) / 'fleetday.db'}"
    fleet = load_fleet(builtin_fleet_path("fleet100"))
    faults = load_faults(builtin_faults_path("fleet100-day"), fleet)
    t_start = time.perf_counter()
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    sim = Simulation(fleet, faults, RunConfig(duration_ns=int(args.hours * 3600) * NS, seed=args.seed))
    sink = ProcessStoreSink(url, {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id,
                                  "qfleet.fleet": fleet.name})
    for step in sim.steps():
        sink.write(step)
    t_engine = time.perf_counter() - t_start
    sink.close()
    wall = time.perf_counter() - t_start
    size = Path(url.removeprefix("sqlite:///")).stat().st_size if url.startswith("sqlite:///") else None
    kinds = sorted({f.kind.value for f in faults.faults})
    out = {"bench": "fleet_day", "fleet": fleet.name, "hours": args.hours, "faults": kinds, "jobs": sim.jobs_total,
           "success_ratio": round(sim.outcomes["success"] / max(1, sim.jobs_total), 4), "spans": sink.stats.spans,
           "samples": sink.stats.samples, "wall_s": round(wall, 1), "engine_done_s": round(t_engine, 1),
           "split_s": {"control_plane": round(sim.timings.control_s, 1), "physics": round(sim.timings.physics_s, 1),
                       "telemetry": round(sim.timings.telemetry_s, 1), "storage": round(sink.stats.seconds, 1)},
           "jobs_per_wall_s": round(sim.jobs_total / wall), "db_bytes": size, "target_s": 300}
    print(f"{fleet.name}: {args.hours:g} h simulated, faults {', '.join(kinds)}")
    print(f"  {sim.jobs_total:,} jobs ({out['success_ratio']:.2%} successful), {sink.stats.spans:,} spans, "
          f"{sink.stats.samples:,} samples{f', {size / 1e9:.2f} GB' if size else ''}")
    print(f"  wall {wall:.1f} s (target < 300 s); engine finished at {t_engine:.1f} s")
    print("  split: " + ", ".join(f"{k.replace('_', ' ')} {v} s" for k, v in out["split_s"].items())
          + " (storage runs in a writer process, overlapping the engine)")
    print(json.dumps(out))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
