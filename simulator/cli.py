"""`qfleet sim run | experiment | chain`: simulate a fleet into the store or a collector, or one protocol alone.

This is the simulator's edge: it reads files, the environment and the wall clock (pacing, progress, timings);
the engine, the physics and the chain model below it read none of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main", "parse_speed", "parse_start_ns"]

_SPEED = re.compile(r"^(\d+(?:\.\d+)?)x$")


def parse_speed(text: str) -> float | None:
    """``max`` -> None (fast-forward), ``realtime`` -> 1.0, ``60x`` -> 60.0.

    >>> parse_speed("max"), parse_speed("realtime"), parse_speed("60x")
    (None, 1.0, 60.0)

    Raises:
        ValueError: anything else.
    """
    t = text.strip().lower()
    if t == "max":
        return None
    if t == "realtime":
        return 1.0
    m = _SPEED.match(t)
    if m and float(m.group(1)) > 0:
        return float(m.group(1))
    raise ValueError(f"--speed {text!r} is not valid; use max (fast-forward), realtime, or a factor such as 60x")


def parse_start_ns(text: str, now_ns: int) -> int:
    """``now`` (floored to the minute), or an RFC 3339 time such as ``2026-01-01T00:00:00Z``, as Unix ns.

    >>> parse_start_ns("2026-01-01T00:00:00Z", 0)
    1767225600000000000

    Raises:
        ValueError: not ``now`` or an RFC 3339 time with a zone.
    """
    if text == "now":
        return now_ns // 60_000_000_000 * 60_000_000_000
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        raise ValueError(f"--start {text!r} is not valid; use now or an RFC 3339 time with a zone, "
                         "e.g. 2026-01-01T00:00:00Z")
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qfleet sim", description="the Stim-powered fleet simulator")
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="simulate a fleet (with faults) into the store or a live collector")
    run.add_argument("--fleet", required=True, help="fleet YAML, or a built-in name: line, star, mesh, fleet100")
    run.add_argument("--duration", default="1h", help="simulated time, e.g. 90s, 30m, 24h (default 1h)")
    run.add_argument("--faults", help="fault schedule YAML, or a built-in name: example, fleet100-day")
    run.add_argument("--seed", type=int, default=7)
    where = run.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    where.add_argument("--otlp", help="send to a collector instead, e.g. http://127.0.0.1:4318")
    run.add_argument("--token-file", help="bearer token for --otlp (default $QFLEET_TOKEN_FILE or ./qfleet.token)")
    run.add_argument("--speed", default="max", help="max (fast-forward), realtime, or a factor such as 60x")
    run.add_argument("--start", help="simulated start: now, or RFC 3339 (default 2026-01-01T00:00:00Z for "
                                     "--speed max, now when paced)")
    run.add_argument("--load", type=float, default=1.0, help="multiply every tenant's job rate (default 1)")
    run.add_argument("--shots", type=int, help="override every tenant's shots per job")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    ex = sub.add_parser("experiment", help="run one protocol in isolation against its analytic prediction")
    ex.add_argument("protocol", help="bell, memory, swap-chain, purify, ghz, teleport-cnot or link")
    ex.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a protocol parameter")
    ex.add_argument("--shots", type=int, default=10_000)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--json", action="store_true")

    ch = sub.add_parser("chain", help="the repeater-chain workload of the SeQUeNCe comparison")
    ch.add_argument("--nodes", type=int, required=True, help="routers in the chain (>= 2)")
    ch.add_argument("--hop-km", type=float, default=10.0)
    ch.add_argument("--attenuation-db-per-km", type=float, default=0.2)
    ch.add_argument("--raw-fidelity", type=float, default=0.99)
    ch.add_argument("--memories", type=int, default=5)
    ch.add_argument("--duration", default="0.5s", help="simulated window (default 0.5s)")
    ch.add_argument("--seed", type=int, default=0)
    ch.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run a `qfleet sim` command; returns the exit status (2 for bad input, naming it)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.cmd == "experiment":
            return _experiment(args, out)
        if args.cmd == "chain":
            return _chain(args, out)
        return _run(args, env, out, err)
    except ValueError as e:  # every input error of the simulator is a ValueError subclass naming the value
        print(f"qfleet sim {args.cmd}: {e}", file=err)
        return 2


def _experiment(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.simulator.experiment import ExperimentError, run_experiment

    params: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ExperimentError(f"--param {item!r} is not NAME=VALUE; e.g. --param fidelity=0.95")
        params[name.strip()] = value.strip()
    res = run_experiment(args.protocol, params, shots=args.shots, seed=args.seed)
    print(json.dumps(res.to_json_dict()) if args.json else res.format_text(), file=out)
    return 0


def _chain(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.simulator.chain import ChainConfig, run_chain
    from qfleet.simulator.faults import parse_duration_ns

    cfg = ChainConfig(nodes=args.nodes, hop_km=args.hop_km, attenuation_db_per_km=args.attenuation_db_per_km,
                      raw_fidelity=args.raw_fidelity, memories=args.memories,
                      duration_s=parse_duration_ns(args.duration) / 1e9)
    t0 = time.perf_counter()
    res = run_chain(cfg, seed=args.seed)
    doc = res.to_json_dict(wall_s=time.perf_counter() - t0)
    if args.json:
        print(json.dumps(doc), file=out)
    else:
        print("\n".join(f"{k:>20}: {v}" for k, v in doc.items()), file=out)
    return 0


def _resolve(name: str, builtin: Any, kind: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ValueError(f"{kind} file {name!r} does not exist; give a path or a built-in name")
        return p
    return builtin(name)


def _run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    from qfleet.collector import Settings, load_token, open_engine, upgrade
    from qfleet.simulator.engine import DEFAULT_START_NS, NS, RunConfig, Simulation
    from qfleet.simulator.faults import builtin_faults_path, load_faults, parse_duration_ns
    from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
    from qfleet.simulator.sinks import OtlpSink, ProcessStoreSink

    speed = parse_speed(args.speed)
    duration = parse_duration_ns(args.duration)
    fleet = load_fleet(_resolve(args.fleet, builtin_fleet_path, "fleet"))
    faults = load_faults(_resolve(args.faults, builtin_faults_path, "faults"), fleet) if args.faults else None
    if args.start is not None:
        start = parse_start_ns(args.start, time.time_ns())
    else:
        start = DEFAULT_START_NS if speed is None else parse_start_ns("now", time.time_ns())
    # Paced runs flush often so that dashboards move; fast-forward flushes once per rollup minute.
    step = 60 * NS if speed is None else int(max(1.0, min(60.0, 5.0 * speed)) * NS)
    config = RunConfig(duration_ns=duration, start_ns=start, seed=args.seed, step_ns=step, load=args.load,
                       shots=args.shots)
    sim = Simulation(fleet, faults, config)
    resource = {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id, "qfleet.fleet": fleet.name}
    settings = Settings.from_env(env, database_url=args.db, token_file=args.token_file)
    if args.otlp:
        sink: ProcessStoreSink | OtlpSink = OtlpSink(args.otlp, load_token(settings.token_file, create=False), resource)
        where = args.otlp
    else:
        engine = open_engine(settings.database_url)
        upgrade(engine)
        where = engine.url.render_as_string(hide_password=True)
        engine.dispose()
        sink = ProcessStoreSink(settings.database_url, resource)
    progress = None if args.no_progress or args.json else _Progress(err, duration)
    wall0 = time.monotonic()
    try:
        for st in sim.steps():
            sink.write(st)
            if speed is not None:
                # Paced: simulated time may not run ahead of wall time * speed.
                ahead = (st.end_ns - start) / NS / speed - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
            if progress:
                progress.update(st.end_ns - start, st.jobs_total)
        sink.close()
    except BaseException:
        if isinstance(sink, ProcessStoreSink):
            sink.abandon()
        raise
    wall = time.monotonic() - wall0
    if progress:
        progress.done()
    summary = {
        "run_id": sim.run_id, "fleet": fleet.name, "seed": args.seed, "simulated_s": duration / NS,
        "start": datetime.fromtimestamp(start / NS, UTC).isoformat().replace("+00:00", "Z"),
        "faults": len(faults.faults) if faults else 0, "jobs": sim.jobs_total, "outcomes": sim.outcomes,
        "spans": sink.stats.spans, "samples": sink.stats.samples, "wall_s": round(wall, 3),
        "split_s": {"control_plane": round(sim.timings.control_s, 3), "physics": round(sim.timings.physics_s, 3),
                    "telemetry": round(sim.timings.telemetry_s, 3), "storage": round(sink.stats.seconds, 3)},
        "destination": where,
    }
    if args.json:
        print(json.dumps(summary), file=out)
    else:
        ok = sim.outcomes.get("success", 0)
        print(f"run {sim.run_id}: {fleet.name}, {duration / NS / 3600:g} h simulated in {wall:.1f} s -> {where}",
              file=out)
        print(f"  {sim.jobs_total:,} jobs, {ok / max(1, sim.jobs_total):.2%} successful; "
              + ", ".join(f"{k} {v:,}" for k, v in sim.outcomes.items() if v and k != "success"), file=out)
        print(f"  {sink.stats.spans:,} spans, {sink.stats.samples:,} metric samples", file=out)
        sp = summary["split_s"]
        print("  time: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in sp.items()), file=out)
    return 0


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second."""

    def __init__(self, stream: TextIO, total_ns: int) -> None:
        self.stream = stream
        self.total = total_ns
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done_ns: int, jobs: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done_ns < self.total:
            return
        self.last = now
        frac = min(1.0, done_ns / self.total)
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r[{bar:<30}] {frac:6.1%}  sim {_hms(done_ns)} / {_hms(self.total)}  "
                          f"{jobs:,} jobs  {now - self.t0:5.1f} s")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _hms(ns: int) -> str:
    s = int(ns // 1_000_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" if math.isfinite(s) else "?"
