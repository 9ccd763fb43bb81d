"""In-process span export: qfleet's SQLite exporter against the SDK's own no-op baseline.

A burst of N spans from one thread, each ``start_as_current_span`` with 7 attributes and an
empty body, timed end to end (creation plus ``force_flush``):

* (a) baseline: ``TracerProvider`` + ``BatchSpanProcessor`` (queue >= N, so nothing drops)
  + a no-op ``SpanExporter`` that returns ``SUCCESS``;
* (b) qfleet: ``TracerProvider`` + ``BlockingSpanProcessor`` + ``SqlSpanExporter`` on a
  fresh migrated SQLite file; asserts that all N spans are stored;
* (c) diagnostic: ``BlockingSpanProcessor`` + the no-op exporter (the processor's own cost).

With ``--prototype``, three more variants of (b) show what proposed changes would buy
(nothing here changes qfleet itself; the prototypes live in this script):

* (d) a faster ``from_readable_spans`` (see :func:`prototype_from_readable_spans`) plus the
  SQLite pragmas ``cache_size=-65536`` and ``wal_autocheckpoint=10000``;
* (e) (d) with the process's GC thresholds raised to (10000, 10, 10) during the burst;
* (f) (b) with only the GC thresholds raised.

Median of ``--runs`` (variants interleaved). Prints a table and one JSON line.

    .venv/bin/python bench/bench_exporter.py --spans 200000 --runs 3 [--prototype] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import event

import collector.exporters as exporters_module
from collector import convert
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
    """Delegates to a real exporter and adds up the wall and CPU time spent inside export."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.busy_s = 0.0
        self.cpu_s = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        t, c = time.perf_counter(), time.thread_time()
        try:
            return self.inner.export(spans)
        finally:
            self.busy_s += time.perf_counter() - t
            self.cpu_s += time.thread_time() - c

    def shutdown(self) -> None:
        self.inner.shutdown()


class ProfiledProcessor(BlockingSpanProcessor):
    """Profiles only the export worker: cProfile follows the thread it is enabled in."""

    profile = cProfile.Profile()

    def _export(self, batch: list[ReadableSpan]) -> None:
        self.profile.enable()
        try:
            super()._export(batch)
        finally:
            self.profile.disable()


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


# ---------------------------------------------------------------------------
# Prototype of a convert.py change (not used by qfleet; proves the gain)

_OTLP_KIND = {k: k.value + 1 for k in SpanKind}  # Python API counts from INTERNAL=0, OTLP from 1
_PLAIN = (str, int, bool)


def _attrs_fast(sp: Any) -> dict[str, Any]:
    # ReadableSpan.attributes is a MappingProxyType over BoundedAttributes, whose items()
    # runs Python-level __iter__/__getitem__ per key (~2 us per span). Read the dict inside
    # when the SDK has one, and copy it at C speed when no value needs cleaning.
    raw = getattr(getattr(sp, "_attributes", None), "_dict", None)
    if raw is None:
        return convert._sdk_attrs(sp.attributes)
    for v in raw.values():
        if type(v) not in _PLAIN:
            return convert._sdk_attrs(raw)
    return dict(raw)


def _events_or_links(sp: Any, private: str, public: str) -> Sequence[Any]:
    # ReadableSpan.events/links copy a BoundedList through a Python __iter__ even when
    # empty (~0.8 us each); most spans have neither.
    dq = getattr(getattr(sp, private, None), "_dq", None)
    if dq is not None and not dq:
        return ()
    return getattr(sp, public)  # type: ignore[no-any-return]


def prototype_from_readable_spans(spans: Sequence[Any]) -> convert.TelemetryBatch:
    """Same rows as ``convert.from_readable_spans``, ~40 % less CPU (checked in :func:`main`)."""
    batch = convert.TelemetryBatch()
    res_cache: dict[int, convert.ResourceRow] = {}
    out = batch.spans
    zero_t, zero_s = "0" * 32, "0" * 16
    for sp in spans:
        ctx = sp.context
        res = sp.resource
        r = res_cache.get(id(res))
        if r is None:
            r = res_cache[id(res)] = convert._resource(batch, convert._sdk_attrs(res.attributes))
        trace_id = format(ctx.trace_id, "032x")
        span_id = format(ctx.span_id, "016x")
        parent = sp.parent
        parent_id = format(parent.span_id, "016x") if parent is not None else None
        name = sp.name
        start = sp.start_time or 0
        end = sp.end_time or 0
        if (len(trace_id) != 32 or trace_id == zero_t or len(span_id) != 16 or span_id == zero_s
                or start <= 0 or end < start or end > convert._MAX_NS):
            # The rare invalid span takes the general path, which describes the problem.
            convert._span_row(batch, r, "", trace_id, span_id, parent_id, name, 0, start, end,
                              0, "", "", 0, {}, (0, 0, 0))
            continue
        scope = sp.instrumentation_scope
        status = sp.status
        ts = ctx.trace_state
        a = _attrs_fast(sp)
        ra = r.attributes
        promoted = []
        for k in convert._PROMOTED_KEYS:
            v = a.get(k)
            if v is None:
                v = ra.get(k)
            promoted.append(None if v is None else str(v))
        out.append((trace_id, span_id, parent_id, r.fingerprint, r.service_name,
                    scope.name if scope else "", name, _OTLP_KIND[sp.kind], start, end, end - start,
                    status.status_code.value, status.description or "",
                    ts.to_header() if ts else "", int(ctx.trace_flags), a,
                    sp.dropped_attributes, sp.dropped_events, sp.dropped_links, *promoted))
        for seq, ev in enumerate(_events_or_links(sp, "_events", "events")):
            batch.events.append((trace_id, span_id, seq, ev.timestamp, ev.name,
                                 convert._sdk_attrs(ev.attributes), getattr(ev, "dropped_attributes", 0)))
        for seq, ln in enumerate(_events_or_links(sp, "_links", "links")):
            batch.links.append((trace_id, span_id, seq, format(ln.context.trace_id, "032x"),
                                format(ln.context.span_id, "016x"),
                                ln.context.trace_state.to_header() if ln.context.trace_state else "",
                                convert._sdk_attrs(ln.attributes)))
    return batch


def check_prototype(n: int = 2000) -> float:
    """Assert the prototype builds exactly the same rows; returns its speed-up on n spans."""
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(SimpleSpanProcessor(mem))
    burst(provider, n)
    tracer = provider.get_tracer("check")
    with tracer.start_as_current_span("with-extras", attributes={"f": float("nan"), "l": (1.5, 2.5)}) as s:
        s.add_event("ev", {"x": 1})
    spans = mem.get_finished_spans()
    a, b = convert.from_readable_spans(spans), prototype_from_readable_spans(spans)
    assert (a.spans, a.events, a.links, a.resources) == (b.spans, b.events, b.links, b.resources)
    t0 = time.perf_counter()
    convert.from_readable_spans(spans)
    t1 = time.perf_counter()
    prototype_from_readable_spans(spans)
    return (t1 - t0) / (time.perf_counter() - t1)


@contextmanager
def gc_thresholds(thresholds: tuple[int, int, int] | None) -> Iterator[None]:
    old = gc.get_threshold()
    if thresholds:
        gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*old)


# ---------------------------------------------------------------------------
# Variants


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


def run_qfleet(n: int, processor_cls: type[BlockingSpanProcessor] = BlockingSpanProcessor, *,
               pragmas: Sequence[str] = (), converter: Callable[..., Any] | None = None,
               gc_threshold: tuple[int, int, int] | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-") as d:
        engine = open_engine(f"sqlite:///{Path(d) / 'bench.db'}")
        upgrade(engine)
        if pragmas:
            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                for p in pragmas:
                    dbapi_conn.execute(p)

            engine.dispose()
        store = Store(engine)
        sql = SqlSpanExporter(store)
        timed = TimedExporter(sql)
        processor = processor_cls(timed)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        original = exporters_module.from_readable_spans
        if converter is not None:
            exporters_module.from_readable_spans = converter  # type: ignore[assignment]
        gc_timer = GcTimer()
        gc.callbacks.append(gc_timer)
        cpu0 = time.thread_time()
        try:
            with gc_thresholds(gc_threshold):
                created, total = burst(provider, n)
        finally:
            producer_cpu = time.thread_time() - cpu0
            gc.callbacks.remove(gc_timer)
            exporters_module.from_readable_spans = original
        provider.shutdown()
        stored = store.count("spans")
        engine.dispose()
    assert stored == n and sql.stats.exported == n, (stored, sql.stats)
    return {"created_s": created, "total_s": total, "worker_busy_s": timed.busy_s,
            "producer_cpu_s": producer_cpu, "export_cpu_s": timed.cpu_s,
            "gc2_s": gc_timer.seconds, "blocked": processor.stats.blocked}


PRAGMAS = ("PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=10000")
GC_10K = (10_000, 10, 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prototype", action="store_true",
                    help="also run variants with proposed convert/store changes and GC tuning")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the export worker of one qfleet run (the producer runs unprofiled)")
    args = ap.parse_args(argv)
    n = args.spans

    variants: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
        "baseline": ("(a) SDK BatchSpanProcessor(queue=N) -> no-op", lambda: run_baseline(n)),
        "blocking_noop": ("(c) BlockingSpanProcessor -> no-op", lambda: run_blocking_noop(n)),
        "qfleet": ("(b) BlockingSpanProcessor -> SqlSpanExporter", lambda: run_qfleet(n)),
    }
    if args.prototype:
        speedup = check_prototype()
        print(f"prototype from_readable_spans: identical rows, {speedup:.2f}x faster in isolation")
        variants["proto"] = ("(d) (b) + fast convert + SQLite pragmas", lambda: run_qfleet(
            n, pragmas=PRAGMAS, converter=prototype_from_readable_spans))
        variants["proto_gc"] = ("(e) (d) + gc.set_threshold(10000, 10, 10)", lambda: run_qfleet(
            n, pragmas=PRAGMAS, converter=prototype_from_readable_spans, gc_threshold=GC_10K))
        variants["gc_only"] = ("(f) (b) + gc.set_threshold(10000, 10, 10)", lambda: run_qfleet(
            n, gc_threshold=GC_10K))

    results: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(args.runs):  # interleaved, so drift hits every variant alike
        for key, (_label, fn) in variants.items():
            results[key].append(fn())

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    base_rate = n / med("baseline", "total_s")
    print(f"\n{n} spans, 7 attributes each, one producer thread, median of {args.runs}")
    print(f"{'variant':<46} {'created/s':>10} {'end-to-end/s':>13} {'vs (a)':>7}   "
          "wall s | CPU s: producer, export | gen-2 GC s")
    out: dict[str, Any] = {"bench": "exporter", "spans": n, "runs": args.runs}
    for key, (label, _fn) in variants.items():
        created, total = n / med(key, "created_s"), n / med(key, "total_s")
        split = ""
        out[key] = {"created_per_s": round(created), "end_to_end_per_s": round(total),
                    "ratio": round(total / base_rate, 3)}
        if "export_cpu_s" in results[key][0]:
            times = {k: round(med(key, k), 2) for k in ("total_s", "producer_cpu_s", "export_cpu_s", "gc2_s")}
            split = (f"{times['total_s']:6.1f} | {times['producer_cpu_s']:5.1f}, "
                     f"{times['export_cpu_s']:5.1f} | {times['gc2_s']:4.1f}")
            out[key].update(times)
        print(f"{label:<46} {created:>10,.0f} {total:>13,.0f} {total / base_rate:>7.2f}   {split}")
    out["ratio"] = out["qfleet"]["ratio"]
    out["target"] = 0.5
    print(f"ratio (b)/(a) = {out['ratio']:.2f} (target >= 0.5)")

    if args.profile:
        run_qfleet(n, ProfiledProcessor)
        print("\n--- cProfile of the export worker (BlockingSpanProcessor._export) ---")
        pstats.Stats(ProfiledProcessor.profile).sort_stats("tottime").print_stats(15)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
