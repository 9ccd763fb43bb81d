"""The in-process exporters against real databases: SDK spans and metrics land exactly,
nothing is dropped under a burst, failures are counted, and rollups agree with raw rows."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from sqlalchemy import Engine, select, text

from qfleet.collector.exporters import (
    BlockingSpanProcessor,
    ExportStats,
    ProcessorStats,
    SqlMetricExporter,
    SqlSpanExporter,
    SqlSpanProcessor,
    meter_provider,
    tracer_provider,
)
from qfleet.collector.migrate import upgrade
from qfleet.collector.schema import ROLLUP_STEP_NS, Base, MetricType, Temporality
from qfleet.collector.store import Store, open_engine
from tests.collector.otlp_payloads import wait_until

T0 = 1_800_000_000_000_000_000  # a whole minute in unix ns
MS = 1_000_000


def _rows(store: Store, table: str, *order: str) -> list[dict[str, Any]]:
    t = Base.metadata.tables[table]
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t).order_by(*(t.c[o] for o in order)))]


def _hex_ids(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# ---------------------------------------------------------------------------
# Spans


def _sql_processor(store: Store, how: str, **kwargs: Any) -> tuple[BlockingSpanProcessor, SqlSpanExporter]:
    """The two in-process paths into the store: convert on the worker, or as each span ends."""
    if how == "exporter":
        exporter = SqlSpanExporter(store)
        return BlockingSpanProcessor(exporter, **kwargs), exporter
    processor = SqlSpanProcessor(store, **kwargs)
    return processor, processor.sql_exporter


@pytest.mark.parametrize("how", ["exporter", "processor"])
def test_sdk_spans_land_exactly_with_events_links_and_promoted_columns(store: Store, how: str) -> None:
    resource = Resource({"service.name": "qpu-agent", "qfleet.hardware.type": "superconducting"})
    provider = TracerProvider(resource=resource)
    processor, exporter = _sql_processor(store, how)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("qfleet.tests")
    other = SpanContext(trace_id=0xABCDEF0123456789ABCDEF0123456789, span_id=0x1122334455667788,
                        is_remote=True, trace_flags=TraceFlags(1),
                        trace_state=TraceState([("vendor", "x")]))

    root = tracer.start_span(
        "job.run", kind=SpanKind.SERVER, start_time=T0,
        attributes={"qfleet.job.id": "job-42", "qfleet.run.id": "run-7", "qfleet.node.id": "qpu-a",
                    "shots": 1000})
    child = tracer.start_span(
        "link.teleport", context=set_span_in_context(root), start_time=T0 + 1 * MS,
        attributes={"qfleet.link.id": "qpu-a~qpu-b", "qfleet.node.id": "qpu-b",
                    "qfleet.hardware.type": "trapped-ion", "fidelity": 0.93},
        links=[Link(other, {"reason": "entanglement"})])
    child.add_event("decoherence.alarm", {"t2_us": 41.5}, timestamp=T0 + 2 * MS)
    grandchild = tracer.start_span("circuit.execute", kind=SpanKind.CLIENT,
                                   context=set_span_in_context(child), start_time=T0 + 3 * MS)
    grandchild.set_status(Status(StatusCode.OK))
    grandchild.end(end_time=T0 + 4 * MS)
    child.add_event("retry", timestamp=T0 + 5 * MS)
    child.set_status(Status(StatusCode.ERROR, "heralding failed"))
    child.end(end_time=T0 + 6 * MS)
    root.end(end_time=T0 + 10 * MS)

    assert provider.force_flush()
    provider.shutdown()

    tid, root_id = _hex_ids(root)
    _, child_id = _hex_ids(child)
    _, gc_id = _hex_ids(grandchild)
    assert len(tid) == 32 and len(root_id) == len(child_id) == len(gc_id) == 16
    [res] = _rows(store, "resources", "fingerprint")
    assert res["service_name"] == "qpu-agent"
    assert res["attributes"] == {"service.name": "qpu-agent", "qfleet.hardware.type": "superconducting"}

    flags = int(root.get_span_context().trace_flags)
    assert flags & 1, "sampled"  # the SDK also sets W3C level 2's random-trace-id bit (2)
    common = {"trace_id": tid, "resource_fingerprint": res["fingerprint"], "service_name": "qpu-agent",
              "scope_name": "qfleet.tests", "trace_state": "", "flags": flags,
              "dropped_attributes_count": 0, "dropped_events_count": 0, "dropped_links_count": 0}
    expected = [
        {**common, "span_id": root_id, "parent_span_id": None, "name": "job.run", "kind": 2,
         "start_time_unix_nano": T0, "end_time_unix_nano": T0 + 10 * MS, "duration_ns": 10 * MS,
         "status_code": 0, "status_message": "",
         "attributes": {"qfleet.job.id": "job-42", "qfleet.run.id": "run-7",
                        "qfleet.node.id": "qpu-a", "shots": 1000},
         "node_id": "qpu-a", "link_id": None, "job_id": "job-42", "run_id": "run-7",
         "hardware_type": "superconducting"},  # from the resource: the span does not set it
        {**common, "span_id": child_id, "parent_span_id": root_id, "name": "link.teleport", "kind": 1,
         "start_time_unix_nano": T0 + MS, "end_time_unix_nano": T0 + 6 * MS, "duration_ns": 5 * MS,
         "status_code": 2, "status_message": "heralding failed",
         "attributes": {"qfleet.link.id": "qpu-a~qpu-b", "qfleet.node.id": "qpu-b",
                        "qfleet.hardware.type": "trapped-ion", "fidelity": 0.93},
         "node_id": "qpu-b", "link_id": "qpu-a~qpu-b", "job_id": None, "run_id": None,
         "hardware_type": "trapped-ion"},
        {**common, "span_id": gc_id, "parent_span_id": child_id, "name": "circuit.execute", "kind": 3,
         "start_time_unix_nano": T0 + 3 * MS, "end_time_unix_nano": T0 + 4 * MS, "duration_ns": MS,
         "status_code": 1, "status_message": "", "attributes": {},
         "node_id": None, "link_id": None, "job_id": None, "run_id": None,
         "hardware_type": "superconducting"},
    ]
    assert _rows(store, "spans", "start_time_unix_nano") == expected
    assert _rows(store, "span_events", "time_unix_nano") == [
        {"trace_id": tid, "span_id": child_id, "seq": 0, "time_unix_nano": T0 + 2 * MS,
         "name": "decoherence.alarm", "attributes": {"t2_us": 41.5}, "dropped_attributes_count": 0},
        {"trace_id": tid, "span_id": child_id, "seq": 1, "time_unix_nano": T0 + 5 * MS,
         "name": "retry", "attributes": {}, "dropped_attributes_count": 0},
    ]
    assert _rows(store, "span_links", "seq") == [
        {"trace_id": tid, "span_id": child_id, "seq": 0,
         "linked_trace_id": "abcdef0123456789abcdef0123456789", "linked_span_id": "1122334455667788",
         "trace_state": "vendor=x", "attributes": {"reason": "entanglement"}},
    ]
    assert exporter.stats == ExportStats(exported=3)


# The burst test's sizes: a small queue and batch, and a burst that cannot fit in both.
QUEUE, BATCH, BURST = 64, 16, 1000


class _GatedSqlExporter(SqlSpanExporter):
    """The store's exporter, holding every export until the test opens :attr:`gate`."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.gate = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return super().export(spans)


class _GatedSqlProcessor(SqlSpanProcessor):
    """The converting processor, whose worker holds every batch until the test opens :attr:`gate`."""

    def __init__(self, store: Store, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.gate = threading.Event()

    def _export_items(self, items: list[Any]) -> bool:
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return super()._export_items(items)


def _burst(provider: TracerProvider) -> threading.Thread:
    """Ends BURST spans on a producer thread (started; the caller joins it)."""
    tracer = provider.get_tracer("qfleet.burst")

    def produce() -> None:
        for i in range(BURST):
            tracer.start_span("shot", attributes={"i": i, "qfleet.node.id": "qpu-a"}).end()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    return producer


def test_batch_span_processor_drops_a_burst_while_the_exporter_is_busy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # While the exporter is held, the SDK's processor can keep at most one batch in the
    # export call plus a full queue: the rest of a larger burst is lost, whatever the timing.
    store = Store(_migrated(tmp_path / "sdk.db"))
    exporter = _GatedSqlExporter(store)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=QUEUE, max_export_batch_size=BATCH))
    with caplog.at_level(logging.WARNING):
        producer = _burst(provider)
        producer.join(timeout=60)
        assert not producer.is_alive(), "the SDK's processor never blocks its producer"
        exporter.gate.set()
        provider.shutdown()
    stored = store.count("spans")
    assert 0 < stored <= QUEUE + BATCH < BURST
    assert exporter.stats == ExportStats(exported=stored)  # the loss is in the SDK's queue, not the exporter
    # The SDK said so only in its log.
    assert any("Queue full" in r.getMessage() for r in caplog.records)
    store.engine.dispose()


@pytest.mark.parametrize("how", ["exporter", "processor"])
def test_blocking_processors_hold_the_producer_during_a_burst_and_store_every_span(tmp_path: Path,
                                                                                    how: str) -> None:
    store = Store(_migrated(tmp_path / f"{how}.db"))
    gated: _GatedSqlExporter | _GatedSqlProcessor
    if how == "exporter":
        gated = exporter = _GatedSqlExporter(store)
        processor: BlockingSpanProcessor = BlockingSpanProcessor(exporter, max_queue_size=QUEUE,
                                                                 max_export_batch_size=BATCH)
    else:
        gated = processor = _GatedSqlProcessor(store, max_queue_size=QUEUE, max_export_batch_size=BATCH)
        exporter = processor.sql_exporter
    provider = TracerProvider()
    provider.add_span_processor(processor)
    producer = _burst(provider)
    # The exporter is held: the queue fills, and the producer must wait for room.
    wait_until(lambda: processor.stats.blocked > 0, timeout=60, what="the producer to block on a full queue")
    assert producer.is_alive()
    assert processor.stats.queued <= QUEUE + BATCH < BURST
    gated.gate.set()
    producer.join(timeout=60)
    assert not producer.is_alive()
    provider.shutdown()
    assert store.count("spans") == BURST
    assert exporter.stats == ExportStats(exported=BURST)
    stats = processor.stats
    assert stats == ProcessorStats(queued=BURST, exported=BURST, blocked=stats.blocked)
    store.engine.dispose()


def _migrated(path: Path) -> Engine:
    engine = open_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


class _GatedExporter(SpanExporter):
    """A test exporter that holds every export until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        self.names.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS


def test_blocking_processor_blocks_the_producer_when_full_then_delivers_in_order() -> None:
    exporter = _GatedExporter()
    processor = BlockingSpanProcessor(exporter, max_queue_size=4, max_export_batch_size=2,
                                      schedule_delay_millis=0)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")

    def produce() -> None:
        for i in range(20):
            tracer.start_span(f"s{i}").end()

    producer = threading.Thread(target=produce)
    producer.start()
    # Queue (4) plus the batch held by the stuck exporter (2) cannot take 20 spans.
    wait_until(lambda: processor.stats.blocked >= 1, timeout=30, what="the producer to block")
    assert producer.is_alive()
    exporter.gate.set()
    producer.join(timeout=10)
    assert not producer.is_alive()
    assert processor.force_flush()
    assert exporter.names == [f"s{i}" for i in range(20)]
    assert processor.stats == ProcessorStats(queued=20, exported=20, blocked=processor.stats.blocked)
    provider.shutdown()


def test_blocking_processor_shutdown_drains_the_queue_and_refuses_later_spans(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    # A long delay: only shutdown can make these spans leave.
    processor = BlockingSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(5):
        tracer.start_span(f"s{i}").end()
    processor.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == [f"s{i}" for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="qfleet.collector.exporters"):
        tracer.start_span("late").end()
    assert processor.stats == ProcessorStats(queued=5, exported=5, refused=1)
    assert any("shut down" in r.getMessage() for r in caplog.records)
    processor.shutdown()  # idempotent


def test_blocking_processor_exports_a_trickle_within_the_schedule_delay() -> None:
    exporter = InMemorySpanExporter()
    processor = BlockingSpanProcessor(exporter, max_export_batch_size=1000, schedule_delay_millis=50)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.get_tracer("t").start_span("lonely").end()
    # No flush: the batch is far from full, so only its deadline can send it.
    wait_until(lambda: bool(exporter.get_finished_spans()), timeout=10, what="the lonely span's export")
    assert [s.name for s in exporter.get_finished_spans()] == ["lonely"]
    provider.shutdown()


class _SelfTracingExporter(SpanExporter):
    """Ends a span of its own inside export, like database instrumentation that ignores
    the SDK's suppression flag."""

    def __init__(self) -> None:
        self.tracer: Any = None
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.tracer.start_span("db.insert").end()
        self.names.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS


def test_spans_ended_on_the_export_thread_are_refused_without_deadlock() -> None:
    exporter = _SelfTracingExporter()
    processor = BlockingSpanProcessor(exporter, max_queue_size=2, max_export_batch_size=1,
                                      schedule_delay_millis=0)
    # No exit hook: if this deadlocked, shutting down at exit would hang the test run.
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    exporter.tracer = provider.get_tracer("t")

    def produce() -> None:
        for i in range(10):
            exporter.tracer.start_span(f"s{i}").end()
        processor.force_flush(10_000)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(timeout=20)
    assert not producer.is_alive(), "deadlock: the export thread waited on its own queue"
    assert exporter.names == [f"s{i}" for i in range(10)]
    stats = processor.stats
    assert (stats.queued, stats.exported, stats.refused) == (10, 10, 10)
    provider.shutdown()


def test_blocking_processor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_queue_size"):
        BlockingSpanProcessor(InMemorySpanExporter(), max_queue_size=0)
    with pytest.raises(ValueError, match="must fit in the queue"):
        BlockingSpanProcessor(InMemorySpanExporter(), max_queue_size=10, max_export_batch_size=11)
    with pytest.raises(ValueError, match="schedule_delay_millis"):
        BlockingSpanProcessor(InMemorySpanExporter(), schedule_delay_millis=-1)


def test_tracer_provider_helper_stores_spans(sqlite_engine: Engine) -> None:
    store = Store(sqlite_engine)
    provider = tracer_provider(store, resource=Resource({"service.name": "sim"}))
    tracer = provider.get_tracer("t")
    for i in range(10):
        with tracer.start_as_current_span("op", attributes={"i": i}):
            pass
    assert provider.force_flush()
    assert store.count("spans") == 10
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT service_name FROM spans")).scalars().all() == ["sim"]
    provider.shutdown()


def _span(name: str, start: int, end: int, span_id: int = 0x1) -> ReadableSpan:
    ctx = SpanContext(trace_id=0x1, span_id=span_id, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(name=name, context=ctx, start_time=start, end_time=end,
                        resource=Resource({"service.name": "t"}),
                        instrumentation_scope=InstrumentationScope("t"))


def test_sql_processor_counts_invalid_spans_as_rejected_and_survives_unreadable_ones(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(sqlite_engine)
    processor = SqlSpanProcessor(store)
    processor.on_end(_span("good", T0, T0 + MS, 0x1))
    processor.on_end(_span("backwards", T0 + MS, T0, 0x2))

    class Unreadable(ReadableSpan):
        @property
        def attributes(self) -> Any:
            raise RuntimeError("a span the converter cannot read")

    bad = _span("unreadable", T0, T0 + MS, 0x3)
    bad.__class__ = Unreadable
    with caplog.at_level(logging.WARNING, logger="qfleet.collector.exporters"):
        processor.on_end(bad)  # must not raise into the program that ended the span
        assert processor.force_flush()
    assert [r["name"] for r in _rows(store, "spans", "span_id")] == ["good"]
    assert processor.sql_exporter.stats == ExportStats(exported=1, rejected=1)
    assert processor.stats == ProcessorStats(queued=2, exported=2, refused=1)
    assert any("backwards" in r.getMessage() for r in caplog.records)
    assert any("unreadable" in r.getMessage() and r.exc_info for r in caplog.records)
    processor.shutdown()


def test_span_exporter_counts_invalid_spans_as_rejected(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(sqlite_engine)
    exporter = SqlSpanExporter(store)
    spans = [_span("good", T0, T0 + MS, 0x1), _span("backwards", T0 + MS, T0, 0x2)]
    with caplog.at_level(logging.WARNING, logger="qfleet.collector.exporters"):
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.stats == ExportStats(exported=1, rejected=1)
    assert [r["name"] for r in _rows(store, "spans", "span_id")] == ["good"]
    assert any("backwards" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# Error policy


def test_exporters_report_failure_without_raising_on_an_unmigrated_database(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = open_engine(sqlite_url)  # no upgrade: there is no spans table
    store = Store(engine)
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("t")
    for i in range(3):
        tracer.start_span(f"s{i}", start_time=T0).end(end_time=T0 + MS)
    spans = mem.get_finished_spans()

    exporter = SqlSpanExporter(store)
    with caplog.at_level(logging.ERROR, logger="qfleet.collector.exporters"):
        assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.stats == ExportStats(failed=3)
    assert any(r.exc_info for r in caplog.records), "the failure must be logged with its traceback"

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    meters.get_meter("t").create_counter("qfleet.jobs").add(2)
    data = reader.get_metrics_data()
    assert data is not None
    metric_exporter = SqlMetricExporter(store)
    assert metric_exporter.export(data) is MetricExportResult.FAILURE
    assert metric_exporter.stats == ExportStats(failed=1)

    # Behind the processor, the failure is counted and force_flush says so.
    processor = BlockingSpanProcessor(SqlSpanExporter(store))
    processor.on_end(spans[0])
    assert processor.force_flush() is False
    assert processor.stats == ProcessorStats(queued=1, failed=1)
    processor.shutdown()
    meters.shutdown()
    engine.dispose()


def test_exporters_refuse_after_shutdown(sqlite_engine: Engine) -> None:
    exporter = SqlSpanExporter(Store(sqlite_engine))
    exporter.shutdown()
    assert exporter.export([_span("late", T0, T0 + 1)]) is SpanExportResult.FAILURE
    assert exporter.stats == ExportStats(failed=1)


# ---------------------------------------------------------------------------
# Metrics


def _samples(store: Store) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    """Latest value per (metric name, sorted labels)."""
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.metric_name, s.labels, m.value FROM metric_series s "
            "JOIN metric_samples m ON m.series_id = s.id ORDER BY m.time_unix_nano")).all()
    out = {}
    for name, labels, value in rows:
        if isinstance(labels, str):  # SQLite hands raw JSON text to text() queries
            labels = json.loads(labels)
        out[(name, tuple(sorted(labels.items())))] = value
    return out


def test_sdk_metrics_land_as_prometheus_series(store: Store) -> None:
    exporter = SqlMetricExporter(store)
    # No export thread (infinite interval): only force_flush exports, so the test is deterministic.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource({"service.name": "qpu-agent"}),
        views=[View(instrument_name="qfleet.feedforward.latency",
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=(0.001, 0.01, 0.1)))])
    meter = provider.get_meter("qfleet.tests")
    jobs = meter.create_counter("qfleet.jobs", unit="{job}")
    depth = meter.create_up_down_counter("qfleet.queue.depth", unit="{job}")
    latency = meter.create_histogram("qfleet.feedforward.latency", unit="s")

    def fidelity(_options: CallbackOptions) -> list[Observation]:
        return [Observation(0.93, {"qfleet.link.id": "a~b"}), Observation(0.81, {"qfleet.link.id": "b~c"})]

    meter.create_observable_gauge("qfleet.link.fidelity", callbacks=[fidelity], unit="1")
    jobs.add(3, {"qfleet.node.id": "qpu-a"})
    jobs.add(2, {"qfleet.node.id": "qpu-a"})
    jobs.add(4, {"qfleet.node.id": "qpu-b"})
    depth.add(5)
    depth.add(-2)
    for v in (0.0005, 0.005, 0.005, 0.05, 0.5):
        latency.record(v, {"qfleet.node.id": "qpu-a"})

    assert provider.force_flush()
    node_a = ("qfleet.node.id", "qpu-a")
    lat = "qfleet_feedforward_latency_seconds"
    expected = {
        ("qfleet_jobs_total", (node_a,)): 5.0,
        ("qfleet_jobs_total", (("qfleet.node.id", "qpu-b"),)): 4.0,
        ("qfleet_queue_depth", ()): 3.0,
        ("qfleet_link_fidelity_ratio", (("qfleet.link.id", "a~b"),)): 0.93,
        ("qfleet_link_fidelity_ratio", (("qfleet.link.id", "b~c"),)): 0.81,
        (f"{lat}_bucket", (("le", "0.001"), node_a)): 1.0,
        (f"{lat}_bucket", (("le", "0.01"), node_a)): 3.0,
        (f"{lat}_bucket", (("le", "0.1"), node_a)): 4.0,
        (f"{lat}_bucket", (("le", "+Inf"), node_a)): 5.0,
        (f"{lat}_count", (node_a,)): 5.0,
    }
    got = _samples(store)
    assert got.pop((f"{lat}_sum", (node_a,))) == pytest.approx(0.5605)
    assert got == expected
    assert exporter.stats == ExportStats(exported=11)

    # Cumulative by default: a second collection carries running totals.
    jobs.add(1, {"qfleet.node.id": "qpu-a"})
    assert provider.force_flush()
    assert _samples(store)[("qfleet_jobs_total", (node_a,))] == 6.0
    with store.engine.connect() as conn:
        meta = conn.execute(text(
            "SELECT metric_type, temporality, is_monotonic, node_id FROM metric_series "
            "WHERE metric_name = 'qfleet_jobs_total' ORDER BY node_id")).all()
    assert [tuple(r) for r in meta] == [
        (int(MetricType.SUM), int(Temporality.CUMULATIVE), True, "qpu-a"),
        (int(MetricType.SUM), int(Temporality.CUMULATIVE), True, "qpu-b"),
    ]
    provider.shutdown()


def test_meter_provider_helper_exports_on_force_flush(sqlite_engine: Engine) -> None:
    store = Store(sqlite_engine)
    provider = meter_provider(store, resource=Resource({"service.name": "sim"}),
                              export_interval_millis=math.inf)
    provider.get_meter("t").create_counter("qfleet.shots").add(7)
    assert provider.force_flush()
    assert _samples(store) == {("qfleet_shots_total", ()): 7.0}
    provider.shutdown()


# ---------------------------------------------------------------------------
# Rollups after exporting


def test_span_rollups_match_raw_counts_after_exporting(store: Store) -> None:
    provider = TracerProvider()
    provider.add_span_processor(BlockingSpanProcessor(SqlSpanExporter(store)))
    tracer = provider.get_tracer("t")
    expected: Counter[tuple[str, int, str]] = Counter()
    for i in range(300):
        name = ("job.run", "link.teleport", "circuit.execute")[i % 3]
        node = ("qpu-a", "qpu-b")[i % 2]
        start = T0 + (i % 150) * 1_000 * MS  # 150 s: three minute buckets
        span = tracer.start_span(name, start_time=start, attributes={"qfleet.node.id": node})
        error = i % 7 == 0
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + (i + 1) * MS)
        expected[(name, 2 if error else 0, node)] += 1
    assert provider.force_flush()
    provider.shutdown()

    result = store.refresh_rollups()
    assert result.span_buckets == 3
    with store.engine.connect() as conn:
        rolled = conn.execute(text(
            "SELECT name, status_code, node_id, SUM(span_count) FROM span_rollups "
            "GROUP BY name, status_code, node_id")).all()
        raw = conn.execute(text(
            "SELECT name, status_code, COALESCE(node_id, ''), COUNT(*) FROM spans "
            "GROUP BY name, status_code, COALESCE(node_id, '')")).all()
    assert {(n, s, nd): c for n, s, nd, c in rolled} == {(n, s, nd): c for n, s, nd, c in raw}
    assert {(n, s, nd): c for n, s, nd, c in rolled} == dict(expected)


def _counter_data(points: list[tuple[int, float]]) -> MetricsData:
    dps = [NumberDataPoint(attributes={"qfleet.node.id": "qpu-a"}, start_time_unix_nano=T0,
                           time_unix_nano=t, value=v) for t, v in points]
    metric = Metric(name="qfleet.jobs", description="", unit="{job}",
                    data=Sum(data_points=dps, aggregation_temporality=AggregationTemporality.CUMULATIVE,
                             is_monotonic=True))
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=Resource({"service.name": "qpu-agent"}),
        scope_metrics=[ScopeMetrics(scope=InstrumentationScope("t"), metrics=[metric], schema_url="")],
        schema_url="")])


def test_metric_rollup_increase_of_a_cumulative_counter_across_a_reset(store: Store) -> None:
    s = 1_000_000_000
    points = [(T0 + 10 * s, 10.0), (T0 + 40 * s, 25.0),                       # minute 0
              (T0 + 70 * s, 30.0), (T0 + 100 * s, 4.0), (T0 + 110 * s, 9.0),  # minute 1: reset to 4
              (T0 + 130 * s, 20.0)]                                           # minute 2
    exporter = SqlMetricExporter(store)
    assert exporter.export(_counter_data(points)) is MetricExportResult.SUCCESS
    store.refresh_rollups()
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT bucket_start_unix_nano, sample_count, increase, last_value FROM metric_rollups "
            "ORDER BY bucket_start_unix_nano")).all()
    # By hand: minute 0: 25-10 = 15 (the first sample has no predecessor);
    # minute 1: (30-25) + 4 (the reset: the new value is all increase) + (9-4) = 14;
    # minute 2: 20-9 = 11.
    step = ROLLUP_STEP_NS
    assert [tuple(r) for r in rows] == [
        (T0, 2, 15.0, 25.0), (T0 + step, 3, 14.0, 9.0), (T0 + 2 * step, 1, 11.0, 20.0)]
    assert exporter.stats == ExportStats(exported=6)

    # A later export continues from the last rollup, across a second refresh.
    assert exporter.export(_counter_data([(T0 + 190 * s, 26.0)])) is MetricExportResult.SUCCESS
    store.refresh_rollups()
    with store.engine.connect() as conn:
        inc = conn.execute(text("SELECT increase FROM metric_rollups WHERE bucket_start_unix_nano = :b"),
                           {"b": T0 + 3 * step}).scalar_one()
    assert inc == 6.0
