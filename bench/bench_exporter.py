"""In-process span export: qfleet's SQLite path against the SDK's own no-op baseline.

A burst of N spans from one thread, each ``start_as_current_span`` with 7 attributes and an
empty body, timed end to end (creation plus ``force_flush``):

* (a) baseline: ``TracerProvider`` + ``BatchSpanProcessor`` (queue >= N, so nothing drops)
  + a no-op ``SpanExporter`` that returns ``SUCCESS``;
* (b) qfleet: ``SqlSpanProcessor`` (what :func:`collector.exporters.tracer_provider` wires)
  on a fresh migrated SQLite file; asserts that all N spans are stored;
* (c) diagnostic: ``BlockingSpanProcessor`` + the no-op exporter (the processor's own cost);
* (d) diagnostic: ``BlockingSpanProcessor`` + ``SqlSpanExporter``, the generic exporter seam
  that queues SDK span objects and converts them on the worker;
* (e) loss: the SDK's ``BatchSpanProcessor`` with its defaults (a 2048-span queue that drops
  when full) + ``SqlSpanExporter``: how many of the N spans reach SQLite at this machine's
  speed. (tests/collector/test_exporters.py shows the drop deterministically, with a gated
  exporter; the fraction lost depends on the machine, so it is measured here.)

Median of ``--runs`` (variants interleaved). Prints a table and one JSON line.

    .venv/bin/python bench/bench_exporter.py --spans 200000 --runs 3 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from qfleet.collector.exporters import BlockingSpanProcessor, SqlSpanExporter, SqlSpanProcessor
from qfleet.collector.migrate import upgrade
from qfleet.collector.store import Store, open_engine

NODES = [f"qpu-{c}" for c in "abcdefgh"]


class NoopExporter(SpanExporter):
    """Returns SUCCESS and only counts, like the reference's no-op baseline."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


class TimedSqlProcessor(SqlSpanProcessor):
    """Adds up the wall and CPU time the worker spends writing (and, with a profile, profiles it)."""

    profile: cProfile.Profile | None = None

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.busy_s = self.cpu_s = 0.0

    def _export_items(self, items: list[Any]) -> bool:
        t, c = time.perf_counter(), time.thread_time()
        if self.profile:
            self.profile.enable()
        try:
            return super()._export_items(items)
        finally:
            if self.profile:
                self.profile.disable()
            self.busy_s += time.perf_counter() - t
            self.cpu_s += time.thread_time() - c


class GcTimer:
    """Adds up the time spent in full (generation 2) garbage collections, in any thread."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.count += 1


def burst(provider: TracerProvider, n: int) -> tuple[float, float]:
    """Create n spans, then force_flush; returns (creation seconds, end-to-end seconds)."""
    tracer = provider.get_tracer("qfleet.bench")
    t0 = time.perf_counter()
    for i in range(n):
        with tracer.start_as_current_span("circuit.execute", attributes={
            "qfleet.node.id": NODES[i & 7], "qfleet.job.id": "job-0042", "qfleet.run.id": "run-7",
            "qfleet.hardware.type": "superconducting", "qfleet.shots": 1000,
            "qfleet.logical_errors": i % 7, "qfleet.distance": 5,
        }):
            pass
    t1 = time.perf_counter()
    assert provider.force_flush(600_000)
    return t1 - t0, time.perf_counter() - t0


@contextmanager
def sqlite_store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-") as d:
        engine = open_engine(f"sqlite:///{Path(d) / 'bench.db'}")
        upgrade(engine)
        try:
            yield Store(engine)
        finally:
            engine.dispose()


def timed_burst(processor: SpanProcessor, n: int) -> dict[str, float]:
    provider = TracerProvider()
    provider.add_span_processor(processor)
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    cpu0 = time.thread_time()
    try:
        created, total = burst(provider, n)
    finally:
        producer_cpu = time.thread_time() - cpu0
        gc.callbacks.remove(gc_timer)
    provider.shutdown()
    return {"created_s": created, "total_s": total, "producer_cpu_s": producer_cpu,
            "gc2_s": gc_timer.seconds}


def run_noop(n: int, processor: Callable[[SpanExporter], SpanProcessor]) -> dict[str, float]:
    exporter = NoopExporter()
    out = timed_burst(processor(exporter), n)
    assert exporter.count == n, exporter.count
    return out


def run_qfleet(n: int) -> dict[str, float]:
    with sqlite_store() as store:
        processor = TimedSqlProcessor(store)
        out = timed_burst(processor, n)
        stored = store.count("spans")
    assert stored == n and processor.sql_exporter.stats.exported == n, (stored, processor.stats)
    return {**out, "export_cpu_s": processor.cpu_s, "blocked": processor.stats.blocked}


def run_generic(n: int) -> dict[str, float]:
    with sqlite_store() as store:
        exporter = SqlSpanExporter(store)
        out = timed_burst(BlockingSpanProcessor(exporter), n)
        stored = store.count("spans")
    assert stored == n and exporter.stats.exported == n, (stored, exporter.stats)
    return out


def run_sdk_defaults_to_sqlite(n: int) -> dict[str, float]:
    with sqlite_store() as store:
        exporter = SqlSpanExporter(store)
        out = timed_burst(BatchSpanProcessor(exporter), n)
        stored = store.count("spans")
    assert exporter.stats.exported == stored, (stored, exporter.stats)
    return {**out, "stored": stored}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the export worker of one qfleet run (the producer runs unprofiled)")
    args = ap.parse_args(argv)
    n = args.spans

    variants: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
        "baseline": ("(a) SDK BatchSpanProcessor(queue=N) -> no-op", lambda: run_noop(
            n, lambda e: BatchSpanProcessor(e, max_queue_size=max(n, 2048)))),
        "qfleet": ("(b) SqlSpanProcessor -> SQLite", lambda: run_qfleet(n)),
        "blocking_noop": ("(c) BlockingSpanProcessor -> no-op", lambda: run_noop(
            n, BlockingSpanProcessor)),
        "generic": ("(d) BlockingSpanProcessor -> SqlSpanExporter", lambda: run_generic(n)),
    }
    results: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(args.runs):  # interleaved, so drift hits every variant alike
        for key, (_label, fn) in variants.items():
            results[key].append(fn())

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    base_rate = n / med("baseline", "total_s")
    print(f"\n{n} spans, 7 attributes each, one producer thread, median of {args.runs}")
    print(f"{'variant':<46} {'created/s':>10} {'end-to-end/s':>13} {'vs (a)':>7}   "
          "wall s | producer CPU s | gen-2 GC s")
    out: dict[str, Any] = {"bench": "exporter", "spans": n, "runs": args.runs}
    for key, (label, _fn) in variants.items():
        created, total = n / med(key, "created_s"), n / med(key, "total_s")
        times = {k: round(med(key, k), 2) for k in results[key][0] if k.endswith("_s")}
        out[key] = {"created_per_s": round(created), "end_to_end_per_s": round(total),
                    "ratio": round(total / base_rate, 3), **times}
        split = f"{times['total_s']:6.1f} | {times['producer_cpu_s']:14.1f} | {times['gc2_s']:4.2f}"
        print(f"{label:<46} {created:>10,.0f} {total:>13,.0f} {total / base_rate:>7.2f}   {split}")
    lossy = [run_sdk_defaults_to_sqlite(n) for _ in range(args.runs)]
    stored = statistics.median(r["stored"] for r in lossy)
    out["sdk_defaults_to_sqlite"] = {"stored": stored, "lost_fraction": round(1 - stored / n, 3)}
    print(f"{'(e) SDK BatchSpanProcessor(defaults) -> SQLite':<46} stored {stored:,.0f} of {n:,} "
          f"({1 - stored / n:.0%} dropped by the SDK's full queue)")
    out["ratio"] = out["qfleet"]["ratio"]
    out["target"] = 0.5
    print(f"ratio (b)/(a) = {out['ratio']:.2f} (target >= 0.5); (b) export worker CPU "
          f"{out['qfleet']['export_cpu_s']:.1f} s")

    if args.profile:
        TimedSqlProcessor.profile = cProfile.Profile()
        run_qfleet(n)
        print("\n--- cProfile of the export worker (SqlSpanProcessor._export_items) ---")
        pstats.Stats(TimedSqlProcessor.profile).sort_stats("tottime").print_stats(15)
    out["cores"], out["loadavg"] = os.cpu_count(), [round(x, 2) for x in os.getloadavg()]
    print(f"machine: {out['cores']} cores, load average {' '.join(map(str, out['loadavg']))}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
