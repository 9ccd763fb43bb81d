"""Same seed, same rows: a SHA-256 over every span and metric point a simulation emits, for speed work.

A change that only makes the engine faster must leave the digest as it was; a change that alters the physics or
the random streams changes it on purpose (and says so in its commit). Runs ``mesh`` for 60 simulated minutes with
its built-in faults and ``fleet100`` for 15 with fleet100-day's, both with seed 11, and hashes the rows as the store
would receive them (span columns converted to rows, metrics to series and samples), in order.

    .venv/bin/python bench/sim_fingerprint.py [--seed 11] [--day]

``--day`` adds the whole ``fleet100`` day with all eight of fleet100-day's faults (they start from 2 h on, so the
short cases above see none of them; about four minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

from qfleet.collector.convert import from_metrics_data
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.units import NS

#: (fleet, built-in fault file, simulated minutes)
CASES = (("mesh", "example", 60), ("fleet100", "fleet100-day", 15))
DAY = ("fleet100", "fleet100-day", 24 * 60)


def digest(fleet_name: str, faults_name: str, minutes: int, seed: int) -> tuple[str, int, int]:
    """(hex digest, spans, samples) of one run."""
    fleet = load_fleet(builtin_fleet_path(fleet_name))
    faults = load_faults(builtin_faults_path(faults_name), fleet)
    sim = Simulation(fleet, faults, RunConfig(duration_ns=minutes * 60 * NS, seed=seed))
    h = hashlib.sha256()
    spans = samples = 0
    for step in sim.steps():
        batch = step.spans.to_batch(service_name="fingerprint")
        for row in batch.spans:
            h.update(json.dumps(row, sort_keys=True, default=repr).encode())
        metrics = from_metrics_data(step.metrics)
        for fp, t, v in metrics.samples:
            h.update(f"{fp} {t} {v!r}\n".encode())
        spans += len(batch.spans)
        samples += len(metrics.samples)
    return h.hexdigest(), spans, samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--day", action="store_true", help="also the whole fleet100 day with its eight faults")
    args = ap.parse_args(argv)
    total = hashlib.sha256()
    for fleet_name, faults_name, minutes in (*CASES, DAY) if args.day else CASES:
        d, spans, samples = digest(fleet_name, faults_name, minutes, args.seed)
        total.update(d.encode())
        print(f"{fleet_name:9} {minutes:4d} min  {spans:9,d} spans {samples:9,d} samples  {d}")
    print(f"all: {total.hexdigest()}  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
