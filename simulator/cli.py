"""`qfleet sim run | experiment | chain`: simulate a fleet into the store or a collector, or one protocol alone.

This is the simulator's edge: it reads files, the environment and the clocks (pacing, progress, timings); the
engine, the physics and the chain model below it read none of them. Each subcommand imports what it needs when it
runs, so ``qfleet sim experiment`` loads Stim and numpy but not the store, SQLAlchemy or the OTLP exporters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from qfleet.units import NS, format_rfc3339, parse_duration, parse_rfc3339

if TYPE_CHECKING:
    from qfleet.simulator.engine import Simulation
    from qfleet.simulator.faults import FaultSchedule
    from qfleet.simulator.fleet import Fleet
    from qfleet.simulator.sinks import OtlpSink, ProcessStoreSink

__all__ = ["Clock", "main", "parse_speed", "parse_start_ns"]

_SPEED = re.compile(r"^(\d+(?:\.\d+)?)x$")
_MINUTE_NS = 60 * NS


@dataclass(frozen=True, slots=True)
class Clock:
    """The clocks the command line reads (tests pass their own): wall time in ns, a monotonic seconds counter
    for pacing, progress and timings, and sleep."""

    now_ns: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


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
        ValueError: not ``now`` or an RFC 3339 time with a zone (the message says how to write one).
    """
    if text == "now":
        return now_ns // _MINUTE_NS * _MINUTE_NS
    try:
        return parse_rfc3339(text)
    except ValueError as err:
        raise ValueError(f"--start {text!r} is not valid; use now or {err}") from err


def _parser() -> argparse.ArgumentParser:
    from qfleet.problems import OneLineParser

    p = OneLineParser(prog="qfleet sim", description="the Stim-powered fleet simulator")
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="simulate a fleet (with faults) into the store or a live collector")
    run.add_argument("--fleet", required=True, help="fleet YAML, or a built-in name: line, star, mesh, fleet100, fleet1000")
    run.add_argument("--duration", default="1h", help="simulated time, e.g. 90s, 30m, 24h (default 1h; at most 90d)")
    run.add_argument("--faults", help="fault schedule YAML, or a built-in name: example, fleet100-day")
    run.add_argument("--seed", type=int, default=7)
    where = run.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    where.add_argument("--otlp", help="send to a collector instead, e.g. http://127.0.0.1:4318")
    run.add_argument("--token-file", help="bearer token for --otlp (default $QFLEET_TOKEN_FILE or ./qfleet.token)")
    run.add_argument("--speed", default="max", help="max (fast-forward), realtime, or a factor such as 60x")
    run.add_argument("--start", help="simulated start: now, or RFC 3339 (default 2026-01-01T00:00:00Z for "
                                     "--speed max, now when paced)")
    run.add_argument("--load", type=float, default=1.0,
                     help="multiply every tenant's job rate (default 1; the fleet's total at most 10000 jobs/s)")
    run.add_argument("--shots", type=int, help="override every tenant's shots per job (at most 100000)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    ex = sub.add_parser("experiment", help="run one protocol in isolation against its analytic prediction")
    ex.add_argument("protocol", help="bell, memory, swap-chain, purify, ghz, teleport-cnot or link")
    ex.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a protocol parameter")
    ex.add_argument("--profile", metavar="NAME",
                    help="take parameters from a built-in hardware profile or link preset (e.g. nv, ion-photonic, "
                         "sc-microwave); --param values override them")
    ex.add_argument("--shots", type=int, default=10_000)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--json", action="store_true")

    ch = sub.add_parser("chain", help="the repeater-chain workload of the SeQUeNCe comparison")
    ch.add_argument("--nodes", type=int, required=True, help="routers in the chain (>= 2)")
    ch.add_argument("--preset", help="start from a named configuration, e.g. sequence-0.8.5-swap (flags override)")
    ch.add_argument("--memory-policy", help="pooled (default: any free memories, freed at the swap) or lanes")
    ch.add_argument("--hop-km", type=float, help="default 10")
    ch.add_argument("--attenuation-db-per-km", type=float, help="default 0.2")
    ch.add_argument("--raw-fidelity", type=float, help="default 0.99")
    ch.add_argument("--memories", type=int, help="memories per router and side (default 5)")
    ch.add_argument("--duration", help="simulated window, e.g. 500ms, 2s (default 500ms)")
    ch.add_argument("--cutoff", help="discard pairs stored longer than this, e.g. 10ms (pooled; default none)")
    ch.add_argument("--swap-success", type=float, help="probability that a swap succeeds (pooled; default 1)")
    ch.add_argument("--seed", type=int, default=0)
    ch.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, clock: Clock | None = None) -> int:
    """Run a `qfleet sim` command; returns the exit status (2 for bad input, naming it)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    clk = clock or Clock()
    try:
        if args.cmd == "experiment":
            return _experiment(args, out)
        if args.cmd == "chain":
            return _chain(args, out, clk)
        return _run(args, env, out, err, clk)
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
    res = run_experiment(args.protocol, params, shots=args.shots, seed=args.seed, profile=args.profile)
    print(json.dumps(res.to_json_dict()) if args.json else res.format_text(), file=out)
    return 0


def _chain_seconds(flag: str, text: str) -> float:
    try:
        return parse_duration(text) / NS
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from err


def _chain(args: argparse.Namespace, out: TextIO, clock: Clock) -> int:
    from qfleet.simulator.chain import ChainConfig, run_chain
    from qfleet.simulator.chain_presets import peer_rule_fidelity, preset

    fields: dict[str, Any] = preset(args.preset) if args.preset else {}
    given = {"memory_policy": args.memory_policy, "hop_km": args.hop_km,
             "attenuation_db_per_km": args.attenuation_db_per_km, "raw_fidelity": args.raw_fidelity,
             "memories": args.memories, "swap_success": args.swap_success,
             "duration_s": None if args.duration is None else _chain_seconds("--duration", args.duration),
             "cutoff_s": None if args.cutoff is None else _chain_seconds("--cutoff", args.cutoff)}
    fields.update({k: v for k, v in given.items() if v is not None})
    if "duration_s" in fields and fields["duration_s"] == 0:
        raise ValueError(f"--duration {args.duration!r} simulates nothing; give e.g. 500ms")
    if "cutoff_s" in fields and fields["cutoff_s"] == 0:
        raise ValueError(f"--cutoff {args.cutoff!r} would discard every pair; give e.g. 10ms or leave it out")
    cfg = ChainConfig(nodes=args.nodes, **fields)
    t0 = clock.monotonic()
    res = run_chain(cfg, seed=args.seed)
    doc = res.to_json_dict(wall_s=clock.monotonic() - t0)
    doc["memory_policy"] = cfg.memory_policy
    if args.preset:
        doc["preset"] = args.preset
        if args.preset.startswith("sequence-"):
            doc["peer_rule_fidelity"] = peer_rule_fidelity(cfg.raw_fidelity, cfg.nodes)
    if args.json:
        print(json.dumps(doc), file=out)
    else:
        print("\n".join(f"{k:>20}: {v}" for k, v in doc.items()), file=out)
    return 0


def _resolve(name: str, builtin: Callable[[str], Path], kind: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ValueError(f"{kind} file {name!r} does not exist; give a path or a built-in name")
        return p
    return builtin(name)


@dataclass(slots=True)
class _Inputs:
    """What `qfleet sim run` simulates, read and checked before anything is written."""

    fleet: Fleet
    faults: FaultSchedule | None
    duration_ns: int
    speed: float | None
    start_ns: int


def _inputs(args: argparse.Namespace, clock: Clock) -> _Inputs:
    from qfleet.simulator.engine import DEFAULT_START_NS
    from qfleet.simulator.fault_files import builtin_faults_path, load_faults
    from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
    from qfleet.simulator.runstate import RunConfig, check_workload

    speed = parse_speed(args.speed)
    duration = _run_duration(args.duration)
    _check_load_and_shots(args.load, args.shots)
    fleet = load_fleet(_resolve(args.fleet, builtin_fleet_path, "fleet"))
    try:
        check_workload(fleet, RunConfig(duration_ns=duration, load=args.load, shots=args.shots))
    except ValueError as err:
        raise ValueError(f"--load {args.load:g}: {err}") from None
    faults = load_faults(_resolve(args.faults, builtin_faults_path, "faults"), fleet) if args.faults else None
    if args.start is not None:
        start = parse_start_ns(args.start, clock.now_ns())
    else:
        start = DEFAULT_START_NS if speed is None else parse_start_ns("now", clock.now_ns())
    return _Inputs(fleet, faults, duration, speed, start)


def _run_duration(text: str) -> int:
    from qfleet.simulator.runstate import MAX_RUN_NS

    try:
        duration = parse_duration(text)
    except ValueError as err:
        raise ValueError(f"--duration: {err}") from None
    if duration == 0:
        raise ValueError(f"--duration {text!r} simulates nothing; give e.g. 1h")
    if duration > MAX_RUN_NS:
        raise ValueError(f"--duration {text!r} is longer than the longest run, 90d (three 30-day SLO windows); "
                         "simulate at most 90d")
    return duration


def _check_load_and_shots(load: float, shots: int | None) -> None:
    from qfleet.simulator.policies import MAX_JOBS_PER_S, MAX_SHOTS

    if not (math.isfinite(load) and 0 <= load <= MAX_JOBS_PER_S):
        raise ValueError(f"--load {load:g} is out of range; give a factor in [0, {MAX_JOBS_PER_S:g}] "
                         "(1 = the tenants' own rates)")
    if shots is not None and not 1 <= shots <= MAX_SHOTS:
        raise ValueError(f"--shots {shots} is out of range; give 1 to {MAX_SHOTS} shots per job (e.g. 1000)")


def _collector(url: str, *, timeout_s: float = 5.0) -> None:
    """Check that a collector listens at ``url`` before simulating anything (the exporters would otherwise retry
    every step for their whole timeout, then fail with a traceback)."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:
        raise ValueError(f"--otlp {url!r} is not a URL ({err}); give e.g. http://127.0.0.1:4318") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--otlp {url!r} is not an http(s) URL; give e.g. http://127.0.0.1:4318")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"--otlp {url!r}: no collector answers at {parts.hostname}:{port} ({reason}); start "
                         "`qfleet collector serve` (or `qfleet serve`) there, or fix --otlp") from None


def _sink(args: argparse.Namespace, env: Mapping[str, str], resource: dict[str, str], run_range: tuple[int, int]
          ) -> tuple[ProcessStoreSink | OtlpSink, str]:
    """The destination (the store, migrated first, or a collector) and its name for the summary.

    Into the store, the run is registered here, before the writer starts: a run over hours the store already
    holds is refused (:class:`qfleet.collector.RunOverlapError`, exit 2) with nothing written.
    """
    from qfleet.collector import Settings, load_token, open_engine, upgrade
    from qfleet.simulator.sinks import OtlpSink, ProcessStoreSink

    settings = Settings.from_env(env, database_url=args.db, token_file=args.token_file)
    if args.otlp:
        token = load_token(settings.token_file, create=False)
        _collector(args.otlp)
        return OtlpSink(args.otlp, token, resource), args.otlp
    engine = open_engine(settings.database_url)
    try:
        upgrade(engine)
        return ProcessStoreSink.for_run(engine, resource, run_range), engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()


@dataclass(slots=True)
class _Drive:
    """Feeds a simulation's steps into a sink, pacing simulated time against the clock when asked."""

    sim: Simulation
    sink: ProcessStoreSink | OtlpSink
    clock: Clock
    speed: float | None
    progress: _Progress | None
    wall_s: float = field(default=0.0)

    def run(self, start_ns: int) -> None:
        wall0 = self.clock.monotonic()
        try:
            for st in self.sim.steps():
                self.sink.write(st)
                if self.speed is not None:
                    # Paced: simulated time may not run ahead of wall time * speed.
                    ahead = (st.end_ns - start_ns) / NS / self.speed - (self.clock.monotonic() - wall0)
                    if ahead > 0:
                        self.clock.sleep(ahead)
                if self.progress:
                    self.progress.update(st.end_ns - start_ns, st.jobs_total)
            self.sink.close()
        except BaseException:
            from qfleet.simulator.sinks import ProcessStoreSink

            if isinstance(self.sink, ProcessStoreSink):
                self.sink.abandon()  # stop the writer; the committed steps stay
            raise
        self.wall_s = self.clock.monotonic() - wall0
        if self.progress:
            self.progress.done()


def _run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO, clock: Clock) -> int:
    from qfleet.simulator.engine import RunConfig, Simulation

    inp = _inputs(args, clock)
    # Paced runs flush often so that dashboards move; fast-forward flushes once per rollup minute.
    step = 60 * NS if inp.speed is None else int(max(1.0, min(60.0, 5.0 * inp.speed)) * NS)
    config = RunConfig(duration_ns=inp.duration_ns, start_ns=inp.start_ns, seed=args.seed, step_ns=step,
                       load=args.load, shots=args.shots)
    sim = Simulation(inp.fleet, inp.faults, config)
    sink, where = _sink(args, env, {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id,
                                    "qfleet.fleet": inp.fleet.name},
                       (inp.start_ns, inp.start_ns + inp.duration_ns))
    progress = None if args.no_progress or args.json else _Progress(err, inp.duration_ns)
    drive = _Drive(sim, sink, clock, inp.speed, progress)
    try:
        drive.run(inp.start_ns)
    except RuntimeError as e:
        if progress:
            progress.done()
        if args.otlp and str(e).startswith("the collector did not accept"):  # OtlpSink.write, after retries
            raise ValueError(f"--otlp {args.otlp!r}: {e}") from None
        raise
    summary = _summary(args, inp, sim, drive, where)
    if args.json:
        print(json.dumps(summary), file=out)
    else:
        _print_summary(summary, sim, out)
    return 0


def _summary(args: argparse.Namespace, inp: _Inputs, sim: Simulation, drive: _Drive, where: str) -> dict[str, Any]:
    stats = drive.sink.stats
    return {
        "run_id": sim.run_id, "fleet": inp.fleet.name, "seed": args.seed, "simulated_s": inp.duration_ns / NS,
        "start": format_rfc3339(inp.start_ns), "faults": len(inp.faults.faults) if inp.faults else 0,
        "jobs": sim.jobs_total, "outcomes": sim.outcomes, "spans": stats.spans, "samples": stats.samples,
        "wall_s": round(drive.wall_s, 3),
        "split_s": {"control_plane": round(sim.timings.control_s, 3), "physics": round(sim.timings.physics_s, 3),
                    "telemetry": round(sim.timings.telemetry_s, 3), "storage": round(stats.seconds, 3)},
        "destination": where,
    }


def _print_summary(summary: Mapping[str, Any], sim: Simulation, out: TextIO) -> None:
    ok = sim.outcomes.get("success", 0)
    print(f"run {sim.run_id}: {summary['fleet']}, {summary['simulated_s'] / 3600:g} h simulated in "
          f"{summary['wall_s']:.1f} s -> {summary['destination']}", file=out)
    print(f"  {sim.jobs_total:,} jobs, {ok / max(1, sim.jobs_total):.2%} successful; "
          + ", ".join(f"{k} {v:,}" for k, v in sim.outcomes.items() if v and k != "success"), file=out)
    print(f"  {summary['spans']:,} spans, {summary['samples']:,} metric samples", file=out)
    print("  time: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in summary["split_s"].items()),
          file=out)


class _Progress:
    """Simulated time done of the run's total, on a terminal only (:class:`qfleet.progress.ProgressBar`)."""

    def __init__(self, stream: TextIO, total_ns: int) -> None:
        from qfleet.progress import ProgressBar

        self.total = total_ns
        self.bar = ProgressBar(stream)
        self.bar.start("simulating", total=total_ns / NS)

    def update(self, done_ns: int, jobs: int) -> None:
        self.bar.update(min(done_ns, self.total) / NS, info=f"sim {_hms(done_ns)} / {_hms(self.total)}  {jobs:,} jobs")

    def done(self) -> None:
        self.bar.close()


def _hms(ns: int) -> str:
    s = ns // NS
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
