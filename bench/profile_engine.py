"""Where the simulator engine's time goes: cProfile over ``Simulation.steps()`` alone (no storage), own time by module.

Runs fleet100 with fleet100-day's faults (or any built-in fleet without faults) for the given simulated minutes,
then prints the own (``tottime``) seconds per source module, the top built-in and library functions by own time,
the jobs simulated and the machine's cores and load average. The profiler slows the run down about twofold: read
the shares, not the seconds. Last, the cumulative share of the per-job work a columnar step would turn into arrays
(one job's timing, its noise inputs, its spans and metric points; docs/benchmarks.md, "What 5× needs"), and of the
rest, which bounds what that alone could give.

    .venv/bin/python bench/profile_engine.py [--minutes 120] [--fleet fleet100] [--top 14]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import sys
from pathlib import Path

from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.units import NS

REPO = Path(__file__).resolve().parents[1]
#: The per-job functions a columnar step would replace, as (source file, function): they call one another never.
PER_JOB = (("simulator/timeline.py", "_start"), ("simulator/shots.py", "link_noise"),
           ("simulator/job_telemetry.py", "job"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=int, default=120, help="simulated minutes")
    ap.add_argument("--fleet", default="fleet100", help="built-in fleet (fleet100 gets fleet100-day's faults)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--top", type=int, default=14, help="rows per table")
    args = ap.parse_args(argv)
    fleet = load_fleet(builtin_fleet_path(args.fleet))
    faults = load_faults(builtin_faults_path("fleet100-day"), fleet) if args.fleet == "fleet100" else None
    sim = Simulation(fleet, faults, RunConfig(duration_ns=args.minutes * 60 * NS, seed=args.seed))
    load = [round(x, 2) for x in os.getloadavg()]
    prof = cProfile.Profile()
    prof.enable()
    for _ in sim.steps():
        pass
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_module: collections.Counter[str] = collections.Counter()
    library: list[tuple[float, int, str]] = []
    for (path, _line, fn), (_cc, calls, own, _cum, _callers) in stats.items():
        inside = path.startswith(str(REPO) + os.sep) and ".venv" not in path
        by_module[str(Path(path).relative_to(REPO)) if inside else "builtins and libraries"] += own
        if not inside:
            library.append((own, calls, f"{fn} ({Path(path).name})"))
    total = sum(by_module.values())
    print(f"{fleet.name}, {args.minutes} simulated minutes: {sim.jobs_total:,} jobs; {total:.2f} s of own time "
          f"under the profiler; machine: {os.cpu_count()} cores, load average {' '.join(map(str, load))}")
    for name, own in by_module.most_common(args.top):
        print(f"  {name:<44} {own:7.2f} s  {own / total:6.1%}")
    print("top built-in and library functions by own time:")
    for own, calls, name in sorted(library, reverse=True)[:args.top]:
        print(f"  {own:7.2f} s  {calls:>10,} calls  {name}")
    cum = {(str(Path(path).relative_to(REPO)) if path.startswith(str(REPO) + os.sep) else path, fn): c
           for (path, _line, fn), (_cc, _calls, _own, c, _callers) in stats.items()}
    if any(key not in cum for key in PER_JOB):
        # Compiled functions are opaque to cProfile (bench_native.py): their share needs the interpreted run.
        print("per-job work by cumulative time: not seen (compiled modules); run with QFLEET_INTERPRETED=1")
        return 0
    whole = max(cum.values())  # Simulation.steps, which holds everything else
    print("per-job work a columnar step would turn into arrays, by cumulative time:")
    for key in PER_JOB:
        print(f"  {key[0] + ' ' + key[1]:<44} {cum[key]:7.2f} s  {cum[key] / whole:6.1%}")
    rest = whole - sum(cum[key] for key in PER_JOB)
    print(f"  {'everything else':<44} {rest:7.2f} s  {rest / whole:6.1%}  (so at most {whole / rest:.2f}x with the "
          "per-job work free)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
