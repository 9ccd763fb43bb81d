"""Live parity: a real Prometheus and qfleet's own SLO engine alert on the same paced simulation with a node outage.

The pieces, all real and on 127.0.0.1: ``qfleet collector serve`` on a fresh SQLite file; ``qfleet sim run --fleet
mesh --speed realtime --start <this instant> --otlp ...`` with an injected F5 node outage (``--start now`` would
floor the start to the minute, stamping the data up to 60 s behind the wall clock both engines evaluate on);
Debian's ``prometheus`` scraping the collector's ``/metrics`` every ``--scrape`` seconds (the simulator's metric
step at realtime, 5 s) and evaluating the rule file ``qfleet slo rules default`` writes every ``--eval`` seconds.
Meanwhile qfleet's own engine (the alert service's ``evaluate_slos``) evaluates the same SLOs over the same store
whenever the store's metric data change (a write or a rollup, about every 5 s). Both sides' first firing instant
of every (SLO, segment, pair) is recorded: Prometheus' from the ``activeAt`` of its alerts (``/api/v1/rules``; the
rules have no ``for:``, so that is the evaluation that fired), qfleet's from the first evaluation whose pair fires.

Why the first-firing instants may differ (docs/prometheus.md, "Live parity"):

- qfleet counts per whole minute: an event enters its windows when its minute closes and is rolled up (the next
  write after the collector's 2 s settle time, i.e. within one sim step); Prometheus sees it at the next scrape
  and acts on it at its group's next evaluation. With ``--eval 60`` both act once per minute, at different phases,
  so ``|prometheus - qfleet| <= eval + scrape``.
- ``increase()`` extrapolates to the window edges; qfleet counts exactly. In a ratio both counters of an SLO are
  extrapolated alike, so this rarely moves a threshold crossing.
- The gauge SLO (node availability) counts one event per stored sample in qfleet (a node's every 5 s step; burn
  rates are event-weighted for Timeslices too) and one per series per rule evaluation in Prometheus (every 60 s):
  the first bad sample weighs 12 times less in qfleet, so its lowest-threshold pair can fire on it alone while the
  others wait for more. An outage of one of a segment's two nodes is far above every threshold in both.

    .venv/bin/python bench/parity_prometheus.py [--duration 14m] [--outage-at 3m] [--outage 8m] [--target sc-e]

Prints the table for docs/prometheus.md and the machine (cores, load average). ``--scrape-cost DB_URL`` instead times ``/metrics`` renders
over an existing store (e.g. one ``qfleet sim run --speed max --db`` wrote). Needs ``prometheus`` on PATH (Debian: apt-get install
prometheus). The test suite runs a short version (tests/slo/test_parity_prometheus.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qfleet.alerts.service import evaluate_slos
from qfleet.collector import Store, open_engine
from qfleet.collector.schema import Signal
from qfleet.slo.rules import prometheus_label
from qfleet.slo.spec import builtin_specs_path, load_slos
from qfleet.units import NS, format_rfc3339, parse_duration, parse_rfc3339

#: (SLO, segment value or "" when unsegmented, pair)
Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One (SLO, segment, pair): each side's first firing instant (Unix ns), or None if it never fired."""

    slo: str
    segment: str
    pair: str
    severity: str
    prometheus_ns: int | None
    qfleet_ns: int | None


@dataclass(frozen=True, slots=True)
class Parity:
    """The outcome of one run.

    Args:
        start_ns: the simulation's first instant (wall time: --start now).
        onset_ns: the outage's start.
        observed_until_ns: the last instant both sides were watched.
        eval_s, scrape_s: Prometheus' evaluation and scrape intervals.
        verdicts: every (SLO, segment, pair) that fired on either side, sorted.
        qfleet_evaluations: how many times qfleet evaluated; qfleet_eval_s_max: the slowest one (wall seconds).
        prometheus_evaluations: group evaluations seen (one per group per interval).
        prometheus_slos: the SLOs whose 1h error ratio Prometheus recorded at the end (its rules found their
            series on /metrics); qfleet_slos: those qfleet's last evaluation had data for.
    """

    start_ns: int
    onset_ns: int
    observed_until_ns: int
    eval_s: int
    scrape_s: int
    verdicts: tuple[Verdict, ...]
    qfleet_evaluations: int
    qfleet_eval_s_max: float
    prometheus_evaluations: int
    prometheus_slos: frozenset[str]
    qfleet_slos: frozenset[str]


def free_port() -> int:
    """A port no one listens on now (the OS picks it; a tiny race with other processes remains)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _poll(pred: Callable[[], bool], what: str, *, polls: int, interval_s: float) -> None:
    for _ in range(polls):
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(interval_s)
    raise RuntimeError(f"gave up waiting for {what}")


@contextmanager
def _process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with output to ``log``; stop it (by its own handle) on the way out."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)


def _prometheus_config(work: Path, collector_port: int, scrape_s: int, eval_s: int) -> Path:
    cfg = work / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: {scrape_s}s
  scrape_timeout: {max(1, scrape_s - 1)}s
  evaluation_interval: {eval_s}s
rule_files:
  - qfleet-slo.rules.yml
scrape_configs:
  - job_name: qfleet
    static_configs:
      - targets: ["127.0.0.1:{collector_port}"]
""")
    return cfg


def _faults(work: Path, target: str, at_s: int, duration_s: int) -> Path:
    f = work / "outage.yaml"
    f.write_text(f"""version: 1
kind: FaultSchedule
faults:
  - {{id: parity-outage, type: F5, target: {target}, start: {at_s}s, duration: {duration_s}s}}
""")
    return f


def run(work: Path, *, duration_s: int, outage_at_s: int, outage_s: int, target: str = "sc-e", scrape_s: int = 5,
        eval_s: int = 60, seed: int = 7, tail_s: int | None = None, log: Callable[[str], None] = print) -> Parity:
    """One live run in ``work`` (a fresh directory); see the module docstring.

    Args:
        duration_s: simulated (= wall) seconds; the outage may last to the end.
        outage_at_s, outage_s: the F5 outage of ``target``, from the simulation's start.
        tail_s: how long to keep watching after the simulation ends (default one evaluation plus one scrape
            interval, so that the last data are acted on by both).
    """
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    py = [sys.executable, "-m", "qfleet.cli"]
    db = f"sqlite:///{work / 'qfleet.db'}"
    token = work / "token"
    token.write_text("parity-token\n")
    os.chmod(token, 0o600)
    subprocess.run([*py, "slo", "rules", "default", "-o", str(work / "qfleet-slo.rules.yml")], check=True,
                   capture_output=True, timeout=60)
    slos = {s.name: s for s in load_slos(builtin_specs_path())}
    cport, pport = free_port(), free_port()
    api = f"http://127.0.0.1:{pport}/api/v1"
    with ExitStack() as stack:
        collector = stack.enter_context(_process(
            [*py, "collector", "serve", "--db", db, "--port", str(cport), "--token-file", str(token)],
            work / "collector.log"))
        _poll(lambda: urllib.request.urlopen(f"http://127.0.0.1:{cport}/readyz", timeout=5).status == 200,
              "the collector", polls=300, interval_s=0.1)
        stack.enter_context(_process(
            [prometheus, f"--config.file={_prometheus_config(work, cport, scrape_s, eval_s)}",
             f"--storage.tsdb.path={work / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{pport}"],
            work / "prometheus.log"))
        _poll(lambda: len(_get_json(f"{api}/rules")["data"]["groups"]) == len(slos), "Prometheus and its rules",
              polls=300, interval_s=0.1)
        sim = stack.enter_context(_process(
            # An explicit start: `--start now` floors to the minute, so the data would be stamped up to 60 s behind
            # the wall clock that both Prometheus (scrape times) and qfleet's evaluations (`at`) run on.
            [*py, "sim", "run", "--fleet", "mesh", "--speed", "realtime", "--start", format_rfc3339(time.time_ns()),
             "--duration", f"{duration_s}s", "--faults", str(_faults(work, target, outage_at_s, outage_s)), "--seed", str(seed),
             "--otlp", f"http://127.0.0.1:{cport}", "--token-file", str(token), "--no-progress", "--json"],
            work / "sim.log"))
        launched_ns = time.time_ns()
        engine = open_engine(db)
        stack.callback(engine.dispose)
        store = Store(engine)
        prom: dict[Key, tuple[str, int]] = {}
        ours: dict[Key, tuple[str, int]] = {}
        group_evals: dict[str, str] = {}
        marker, n_evals, slowest, prom_evals = 0, 0, 0.0, 0
        stop_after = None
        tail_ns = (eval_s + scrape_s if tail_s is None else tail_s) * NS
        while True:
            now = time.time_ns()
            if stop_after is None and sim.poll() is not None:
                stop_after = now + tail_ns
            if stop_after is not None and now >= stop_after:
                break
            if collector.poll() is not None:
                raise RuntimeError(f"the collector exited: see {work / 'collector.log'}")
            # Prometheus: group evaluations and alerts, one snapshot.
            for g in _get_json(f"{api}/rules")["data"]["groups"]:
                if group_evals.get(g["name"]) != g["lastEvaluation"]:
                    group_evals[g["name"]] = g["lastEvaluation"]
                    prom_evals += 1
                for r in g["rules"]:
                    for a in r.get("alerts", ()) if r["type"] == "alerting" else ():
                        lab = a["labels"]
                        if a["state"] != "firing":
                            continue
                        slo = slos[lab["slo"]]
                        seg = ",".join(lab.get(prometheus_label(k), "") for k in slo.group_by)
                        key = (lab["slo"], seg, lab["pair"])
                        t = parse_rfc3339(a["activeAt"])
                        if key not in prom or t < prom[key][1]:
                            prom[key] = (lab["severity"], t)
            # qfleet: evaluate whenever the store changed (a write or a rollup) since the last evaluation.
            touched = store.touched_since(marker, signal=Signal.METRICS)
            if touched.buckets and touched.marker != marker:
                marker = touched.marker
                at = time.time_ns()
                reports = evaluate_slos(list(slos.values()), engine, at)
                slowest = max(slowest, (time.time_ns() - at) / NS)
                n_evals += 1
                for rep in reports:
                    seg = ",".join(v for _k, v in rep.segment)
                    for c in rep.conditions:
                        if c.firing and (rep.slo, seg, c.name) not in ours:
                            ours[rep.slo, seg, c.name] = (c.severity, at)
            time.sleep(0.5)
        observed_until = time.time_ns()
        query = urllib.parse.quote("count by (slo) (qfleet_slo:error_ratio:rate1h)")
        prom_slos = frozenset(r["metric"]["slo"] for r in _get_json(f"{api}/query?query={query}")["data"]["result"])
        our_slos = frozenset(r.slo for r in evaluate_slos(list(slos.values()), engine, time.time_ns())
                             if r.windows.get("1h") is not None and r.windows["1h"].total)
        summary = (work / "sim.log").read_text().strip().splitlines()
        if sim.returncode != 0 or not summary:
            raise RuntimeError(f"the simulation failed (exit {sim.returncode}): see {work / 'sim.log'}")
        start_ns = parse_rfc3339(json.loads(summary[-1])["start"])
    log(f"simulation launched {(launched_ns - start_ns) / NS:.1f} s after its start instant")
    verdicts = tuple(Verdict(k[0], k[1], k[2], (prom.get(k) or ours[k])[0], prom[k][1] if k in prom else None,
                             ours[k][1] if k in ours else None) for k in sorted(prom.keys() | ours.keys()))
    log(f"observed {len(verdicts)} firing (SLO, segment, pair) keys; qfleet evaluated {n_evals} times "
        f"(slowest {slowest:.2f} s), Prometheus {prom_evals} group evaluations")
    return Parity(start_ns, start_ns + outage_at_s * NS, observed_until, eval_s, scrape_s, verdicts, n_evals, slowest,
                  prom_evals, prom_slos, our_slos)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdicts sorted by what they say.

    Args:
        both: fired on both sides.
        unlabelled: Prometheus alerts of a segmented SLO without the segment label: events that carry no segment
            value (jobs that never reached a node have an empty hardware type). ``sum by`` keeps them as a segment of
            their own; qfleet drops them ("a segment with an empty label is no segment", slo/sli.py).
        undecided: fired on one side less than ``eval + scrape`` before the end of the watch, so the other side
            may not have had its chance.
        one_sided: fired on one side only, with time for the other to follow: a real disagreement.
    """

    both: tuple[Verdict, ...]
    unlabelled: tuple[Verdict, ...]
    undecided: tuple[Verdict, ...]
    one_sided: tuple[Verdict, ...]

    @property
    def max_abs_difference_s(self) -> float:
        """The largest |qfleet - Prometheus| first-firing difference over ``both``, in seconds (0 if none)."""
        return max((abs(v.qfleet_ns - v.prometheus_ns) / NS for v in self.both
                    if v.qfleet_ns is not None and v.prometheus_ns is not None), default=0.0)


def compare(p: Parity) -> Comparison:
    """Sort ``p``'s verdicts (see :class:`Comparison`)."""
    segmented = {s.name for s in load_slos(builtin_specs_path()) if s.group_by}
    horizon = p.observed_until_ns - (p.eval_s + p.scrape_s) * NS
    both, unlabelled, undecided, one_sided = [], [], [], []
    for v in p.verdicts:
        if v.prometheus_ns is not None and v.qfleet_ns is not None:
            both.append(v)
        elif v.slo in segmented and not v.segment and v.qfleet_ns is None:
            unlabelled.append(v)
        elif (v.prometheus_ns or v.qfleet_ns or 0) > horizon:
            undecided.append(v)
        else:
            one_sided.append(v)
    return Comparison(tuple(both), tuple(unlabelled), tuple(undecided), tuple(one_sided))


def table(p: Parity) -> str:
    """The verdicts as a markdown table; instants in seconds after the outage's onset."""

    def rel(t: int | None) -> str:
        return "never" if t is None else f"{(t - p.onset_ns) / NS:+.0f} s"

    lines = ["| SLO | segment | pair | Prometheus fired | qfleet fired | qfleet − Prometheus |",
             "|---|---|---|---|---|---|"]
    for v in p.verdicts:
        diff = ("—" if v.prometheus_ns is None or v.qfleet_ns is None
                else f"{(v.qfleet_ns - v.prometheus_ns) / NS:+.0f} s")
        lines.append(f"| {v.slo} | {v.segment or '(none)'} | {v.pair} | {rel(v.prometheus_ns)} | {rel(v.qfleet_ns)} "
                     f"| {diff} |")
    return "\n".join(lines)


def scrape_cost(url: str, *, renders: int = 5) -> str:
    """What one ``/metrics`` render costs over the store at ``url``, as if the store's newest sample were now."""
    from prometheus_client import CollectorRegistry

    from qfleet.collector.exposition import ReceiverMetrics

    engine = open_engine(url)
    try:
        newest = Store(engine).newest_unix_nano() or 0
        store = Store(engine, clock=lambda: newest)
        m = ReceiverMetrics(CollectorRegistry())
        m.add_fleet_series(store)
        times = []
        for _ in range(renders):
            t0 = time.perf_counter()
            body = m.exposition()
            times.append(time.perf_counter() - t0)
        fresh = store.latest_samples(since_ns=newest - 5 * 60 * NS, limit=10**9)[1]
    finally:
        engine.dispose()
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return (f"{url}: {fresh} fresh series, {samples} samples served (with the collector's own), {len(body)} bytes, "
            f"median {sorted(times)[renders // 2] * 1000:.0f} ms per render ({renders} renders)")


def _machine() -> str:
    """The machine beside the figures, as every benchmark prints it: cores and load average."""
    return f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--duration", default="14m")
    ap.add_argument("--outage-at", default="3m")
    ap.add_argument("--outage", default="8m")
    ap.add_argument("--target", default="sc-e")
    ap.add_argument("--scrape", type=int, default=5, help="Prometheus scrape interval, s (the sim's step at realtime)")
    ap.add_argument("--eval", type=int, default=60, help="Prometheus evaluation interval, s")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="also write the verdicts to this file")
    ap.add_argument("--keep", help="work in this (new) directory and keep its logs and data")
    ap.add_argument("--scrape-cost", metavar="DB_URL", help="instead: time /metrics renders over this store")
    args = ap.parse_args(argv)
    if args.scrape_cost:
        print(scrape_cost(args.scrape_cost))
        print(_machine())
        return 0
    with ExitStack() as stack:
        if args.keep:
            Path(args.keep).mkdir(parents=True)
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="qfleet-parity-"))
        p = run(Path(tmp), duration_s=parse_duration(args.duration) // NS,
                outage_at_s=parse_duration(args.outage_at) // NS, outage_s=parse_duration(args.outage) // NS,
                target=args.target, scrape_s=args.scrape, eval_s=args.eval, seed=args.seed)
    print(f"outage of {args.target} from {args.outage_at} for {args.outage}; scrape {p.scrape_s} s, evaluation "
          f"{p.eval_s} s; watched until {(p.observed_until_ns - p.onset_ns) / NS:.0f} s after the onset")
    print(table(p))
    c = compare(p)
    print(f"fired in both: {len(c.both)} (largest |qfleet - Prometheus| {c.max_abs_difference_s:.0f} s; bound "
          f"eval + scrape = {p.eval_s + p.scrape_s} s); Prometheus only, events without the segment label: "
          f"{len(c.unlabelled)}; undecided at the end: {len(c.undecided)}; one side only: {len(c.one_sided)}")
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(v) for v in p.verdicts], indent=1))
    print(_machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
