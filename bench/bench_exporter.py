"""In-process span export: qfleet's SQLite exporter against the SDK's own no-op baseline.

A burst of N spans from one thread, each ``start_as_current_span`` with 7 attributes and an
empty body, timed end to end (creation plus ``force_flush``):

* (a) baseline: ``TracerProvider`` + ``BatchSpanProcessor`` (queue >= N, so nothing drops)
  + a no-op ``SpanExporter`` that returns ``SUCCESS``;
* (b) qfleet: ``TracerProvider`` + ``BlockingSpanProcessor`` + ``SqlSpanExporter`` on a
  fresh migrated SQLite file; asserts that all N spans are stored;
* (c) diagnostic: ``BlockingSpanProcessor`` + the no-op exporter (the processor's own cost).

Median of ``--runs``. Prints a table and one JSON line.

    .venv/bin/python bench/bench_exporter.py --spans 200000 --runs 3
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from collector.exporters import BlockingSpanProcessor, SqlSpanExporter
from collector.migrate import upgrade
from collector.store import Store, open_engine

NODES = [f"qpu-{c}" for c in "abcdefgh"]


class NoopExporter(SpanExporter):
    """Returns SUCCESS and only counts, like the reference's no-op baseline."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


class TimedExporter(SpanExporter):
    """Delegates to a real exporter and adds up the time spent inside export (the worker's load)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.busy_s = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        t = time.perf_counter()
        try:
            return self.inner.export(spans)
        finally:
            self.busy_s += time.perf_counter() - t

    def shutdown(self) -> None:
        self.inner.shutdown()


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


def run_baseline(n: int) -> dict[str, float]:
    exporter = NoopExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=max(n, 2048)))
    created, total = burst(provider, n)
    provider.shutdown()
    assert exporter.count == n, exporter.count
    return {"created_s": created, "total_s": total}


def run_blocking_noop(n: int) -> dict[str, float]:
    exporter = NoopExporter()
    provider = TracerProvider()
    provider.add_span_processor(BlockingSpanProcessor(exporter))
    created, total = burst(provider, n)
    provider.shutdown()
    assert exporter.count == n, exporter.count
    return {"created_s": created, "total_s": total}


class ProfiledProcessor(BlockingSpanProcessor):
    """Profiles only the export worker: cProfile follows the thread it is enabled in."""

    profile = cProfile.Profile()

    def _export(self, batch: list[ReadableSpan]) -> None:
        self.profile.enable()
        try:
            super()._export(batch)
        finally:
            self.profile.disable()


def run_qfleet(n: int, processor_cls: type[BlockingSpanProcessor] = BlockingSpanProcessor) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-") as d:
        engine = open_engine(f"sqlite:///{Path(d) / 'bench.db'}")
        upgrade(engine)
        store = Store(engine)
        sql = SqlSpanExporter(store)
        timed = TimedExporter(sql)
        processor = processor_cls(timed)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        created, total = burst(provider, n)
        provider.shutdown()
        stored = store.count("spans")
        engine.dispose()
    assert stored == n and sql.stats.exported == n, (stored, sql.stats)
    return {"created_s": created, "total_s": total, "worker_busy_s": timed.busy_s,
            "blocked": processor.stats.blocked}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the export worker of one qfleet run (the producer runs unprofiled)")
    args = ap.parse_args(argv)
    n = args.spans

    results: dict[str, list[dict[str, float]]] = {"baseline": [], "blocking_noop": [], "qfleet": []}
    for _ in range(args.runs):  # interleaved, so drift hits every variant alike
        results["baseline"].append(run_baseline(n))
        results["blocking_noop"].append(run_blocking_noop(n))
        results["qfleet"].append(run_qfleet(n))

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    rows = {
        "baseline": "SDK BatchSpanProcessor(queue=N) -> no-op",
        "blocking_noop": "BlockingSpanProcessor -> no-op",
        "qfleet": "BlockingSpanProcessor -> SqlSpanExporter (SQLite)",
    }
    base_rate = n / med("baseline", "total_s")
    print(f"\n{n} spans, 7 attributes each, one producer thread, median of {args.runs}")
    print(f"{'variant':<52} {'created/s':>10} {'end-to-end/s':>13} {'vs (a)':>7}")
    out: dict[str, Any] = {"bench": "exporter", "spans": n, "runs": args.runs}
    for key, label in rows.items():
        created, total = n / med(key, "created_s"), n / med(key, "total_s")
        print(f"{label:<52} {created:>10,.0f} {total:>13,.0f} {total / base_rate:>7.2f}")
        out[key] = {"created_per_s": round(created), "end_to_end_per_s": round(total)}
    busy = med("qfleet", "worker_busy_s")
    out["qfleet"]["worker_busy_s"] = round(busy, 2)
    out["qfleet"]["total_s"] = round(med("qfleet", "total_s"), 2)
    out["ratio"] = round(n / med("qfleet", "total_s") / base_rate, 3)
    out["target"] = 0.5
    print(f"qfleet export worker busy {busy:.2f} s of {med('qfleet', 'total_s'):.2f} s end to end; "
          f"ratio (b)/(a) = {out['ratio']:.2f} (target >= 0.5)")

    if args.profile:
        run_qfleet(n, ProfiledProcessor)
        print("\n--- cProfile of the export worker (BlockingSpanProcessor._export) ---")
        pstats.Stats(ProfiledProcessor.profile).sort_stats("tottime").print_stats(15)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
