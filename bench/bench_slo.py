"""SLO evaluation over 30 days of a fleet with 10 million spans: from the rollups against a naive full scan.

Writes 30 days of job spans (10 M by default, ~231 a minute) for 10 span-based SLOs into a fresh SQLite file with
the collector's bulk path, computes the collector's rollups and the SLO engine's per-minute counts (one-time,
incremental work, timed separately), then evaluates the 10 SLOs x every window (5m ... 3d and the 30-day period) at
the end of the month from ``slo_counts``, and the same answers by a naive full scan of the raw ``spans`` table.
Asserts that both give identical counts for every SLO and window.

    .venv/bin/python bench/bench_slo.py [--spans 10000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from sqlalchemy import text

from qfleet.collector import SpanColumns, Store, open_engine, upgrade
from qfleet.slo.budget import report_json
from qfleet.slo.evaluate import evaluate_store, window_starts
from qfleet.slo.model import SLO, AlertPolicy, Pair, Period, SpanRatioIndicator, SpanThresholdIndicator
from qfleet.slo.sli import SliSource
from qfleet.units import NS, DurationError, parse_duration

MIN = 60 * NS
DAY = 86400 * NS
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
HW = ("trapped-ion", "nv-centre", "superconducting")
NAMES = ("qfleet.job", "qfleet.entanglement.request", "qfleet.feedforward", "qfleet.measurement")


def policy() -> AlertPolicy:
    return AlertPolicy(name="sre_workbook_30d", pairs=(
        Pair(name="page_fast", severity="page", long_ns=3600 * NS, short_ns=300 * NS, budget_fraction=Fraction(2, 100)),
        Pair(name="page_slow", severity="page", long_ns=6 * 3600 * NS, short_ns=1800 * NS,
             budget_fraction=Fraction(5, 100)),
        Pair(name="ticket_fast", severity="ticket", long_ns=DAY, short_ns=2 * 3600 * NS,
             budget_fraction=Fraction(10, 100)),
        Pair(name="ticket_slow", severity="ticket", long_ns=3 * DAY, short_ns=6 * 3600 * NS,
             budget_fraction=Fraction(10, 100))))


def slos() -> list[SLO]:
    base = {"service": "fleet", "period": Period(rolling_ns=30 * DAY), "budgeting": "Occurrences", "policy": policy()}
    out = []
    for name in NAMES:
        out.append(SLO(name=f"{name.split('.')[-1].replace('_', '-')}-ok", target=Fraction(99, 100),
                       indicator=SpanRatioIndicator(span=name), **base))
        out.append(SLO(name=f"{name.split('.')[-1].replace('_', '-')}-ok-by-hw", target=Fraction(995, 1000),
                       indicator=SpanRatioIndicator(span=name), group_by=("hardware_type",), **base))
    out.append(SLO(name="fidelity", target=Fraction(95, 100), indicator=SpanThresholdIndicator(
        span="qfleet.measurement", attribute="qfleet.fidelity", op="gte", threshold=Fraction(8, 10)), **base))
    out.append(SLO(name="feedforward-window", target=Fraction(99, 100), indicator=SpanThresholdIndicator(
        span="qfleet.feedforward", attribute="qfleet.feedforward.latency_s", op="lte",
        threshold_attribute="qfleet.coherence_window_s", margin=Fraction(1, 2)), group_by=("hardware_type",), **base))
    return out


def populate(store: Store, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    per_min = n / (30 * 24 * 60)
    batch = 200_000
    made = 0
    t = T0
    while made < n:
        cols: dict[str, list] = {k: [] for k in ("trace_id", "span_id", "name", "start_time_unix_nano",
                                                   "end_time_unix_nano", "status_code", "attributes",
                                                   "hardware_type")}
        while len(cols["trace_id"]) < batch and made < n:
            made += 1
            t = T0 + int(made / per_min * MIN)
            name = NAMES[made % 4]
            bad_rate = 0.05 if (20 * DAY < t - T0 < 20 * DAY + 3 * 3600 * NS) else 0.004
            cols["trace_id"].append(f"{made:032x}")
            cols["span_id"].append("0000000000000001")
            cols["name"].append(name)
            cols["start_time_unix_nano"].append(t)
            cols["end_time_unix_nano"].append(t + 1000)
            cols["status_code"].append(2 if rng.random() < bad_rate else 0)
            window = 0.004
            cols["attributes"].append({"qfleet.fidelity": round(rng.uniform(0.7, 1.0), 3),
                                       "qfleet.feedforward.latency_s": rng.uniform(0, 0.0021),
                                       "qfleet.coherence_window_s": window})
            cols["hardware_type"].append(HW[made % 3])
        store.write(SpanColumns(**cols).to_batch(service_name="bench"))


def naive(engine, slo: SLO, at: int) -> dict[tuple[str, int], tuple[int, int]]:  # type: ignore[no-untyped-def]
    """The same windows by scanning every raw span of the SLO's name, in Python (no rollups, no counts)."""
    ind = slo.indicator
    starts = window_starts(slo, at)
    out: dict[tuple[str, int], list[int]] = {}
    with engine.connect() as c:
        rows = c.execute(text("SELECT start_time_unix_nano, status_code, attributes, hardware_type FROM spans "
                              "WHERE name = :n"), {"n": ind.span})
        for start, status, attrs, hw in rows:
            end = (start // MIN + 1) * MIN  # the minute step the event belongs to
            if isinstance(ind, SpanThresholdIndicator):
                a = json.loads(attrs)
                limit = Fraction(a[ind.threshold_attribute]) * ind.margin if ind.threshold_attribute else ind.threshold
                v = Fraction(a[ind.attribute])
                good = v >= limit if ind.op == "gte" else v <= limit
            else:
                good = status != 2
            seg = f"hardware_type={hw}" if slo.group_by else ""
            for s in starts:
                if s < end <= at:
                    cell = out.setdefault((seg, s), [0, 0])
                    cell[0] += good
                    cell[1] += 1
    return {k: (g, n) for k, (g, n) in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--spans", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qfleet-slo-bench-") as d:
        engine = open_engine(f"sqlite:///{Path(d) / 'qfleet.slo.db'}")
        upgrade(engine)
        store = Store(engine)
        t = time.perf_counter()
        populate(store, args.spans)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        store.refresh_rollups()
        t_rollup = time.perf_counter() - t
        specs = slos()
        at = T0 + 30 * DAY
        source = SliSource(engine)
        t = time.perf_counter()
        source.refresh(specs, at, since_ns=T0)
        t_counts = time.perf_counter() - t
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            reports = evaluate_store(specs, source, at, refresh=False)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        truth = {s.name: naive(engine, s, at) for s in specs}
        t_naive = time.perf_counter() - t
        checked = 0
        for r in reports:
            slo = next(s for s in specs if s.name == r.slo)
            seg = ",".join(f"{k}={v}" for k, v in r.segment)
            doc = report_json(r)
            for name, win in doc["windows"].items():
                start = at - _window_ns(name, slo)
                g, n = truth[slo.name].get((seg, start), (0, 0))
                assert (win["good"], win["total"]) == (g, n), (slo.name, seg, name, win, (g, n))
                checked += 1
        fast = statistics.median(times)
        out = {"bench": "slo", "spans": args.spans, "slos": len(specs), "segments": len(reports),
               "windows_checked": checked, "evaluate_s": round(fast, 4), "naive_scan_s": round(t_naive, 2),
               "speedup": round(t_naive / fast), "write_s": round(t_write, 1), "rollups_s": round(t_rollup, 1),
               "slo_counts_s": round(t_counts, 1), "target_s": 1.0}
        print(f"{args.spans:,} spans over 30 days, {len(specs)} SLOs ({len(reports)} segments), "
              f"{checked} window answers identical to the naive scan")
        print(f"  evaluation from rollups: {fast * 1000:.1f} ms (median of {args.runs}; target < 1 s)")
        print(f"  naive full scan of the raw spans: {t_naive:.1f} s ({t_naive / fast:,.0f}x slower)")
        print(f"  one-time work: bulk write {t_write:.1f} s, collector rollups {t_rollup:.1f} s, "
              f"SLO per-minute counts {t_counts:.1f} s")
        out["cores"], out["loadavg"] = os.cpu_count(), [round(x, 2) for x in os.getloadavg()]
        print(f"machine: {out['cores']} cores, load average {' '.join(map(str, out['loadavg']))}")
        print(json.dumps(out))
        engine.dispose()
    return 0


def _window_ns(name: str, slo: SLO) -> int:
    try:
        return parse_duration(name)
    except DurationError:
        assert slo.period.rolling_ns is not None
        return slo.period.rolling_ns


if __name__ == "__main__":
    sys.exit(main())
