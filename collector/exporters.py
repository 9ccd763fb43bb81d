"""In-process OpenTelemetry exporters that write straight into the store.

:class:`SqlSpanExporter` and :class:`SqlMetricExporter` implement the SDK's exporter seam
over :meth:`Store.write` (one transaction per export call). :class:`BlockingSpanProcessor`
replaces the SDK's ``BatchSpanProcessor``, which drops spans with only a log line when its
queue is full (telemetry.md §8: ~98 % lost in a burst against a real database): ours
blocks the producer instead. :class:`SqlSpanProcessor` is that processor specialised for
the store: it converts each span to rows as it ends, which keeps queued SDK objects (and
full garbage collections) out of the hot path. :func:`tracer_provider` and
:func:`meter_provider` wire the pieces together; neither sets a global provider.

Following the OpenTelemetry error policy, bad constructor arguments raise ``ValueError``,
while the export path never raises: it logs, counts and reports ``FAILURE``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from qfleet.collector.metric_rows import from_metrics_data
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.span_rows import SdkSpanConverter, from_readable_spans
from qfleet.collector.store import Store

__all__ = [
    "BlockingSpanProcessor",
    "ExportStats",
    "ProcessorStats",
    "SqlMetricExporter",
    "SqlSpanExporter",
    "SqlSpanProcessor",
    "meter_provider",
    "tracer_provider",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExportStats:
    """What an exporter did with the items it was given (spans, or metric samples).

    Args:
        exported: items committed to the store.
        rejected: invalid items refused by the conversion (bad ids, missing times).
        failed: valid items lost because the export failed (database error, shutdown).

    Examples:
        >>> ExportStats(exported=3) + ExportStats(exported=1, failed=2)
        ExportStats(exported=4, rejected=0, failed=2)
    """

    exported: int = 0
    rejected: int = 0
    failed: int = 0

    def __add__(self, other: ExportStats) -> ExportStats:
        return ExportStats(self.exported + other.exported, self.rejected + other.rejected,
                           self.failed + other.failed)


@dataclass(frozen=True, slots=True)
class ProcessorStats:
    """What a :class:`BlockingSpanProcessor` did with the spans that ended.

    Args:
        queued: spans accepted into the queue.
        exported: spans the exporter reported as exported (``SUCCESS``).
        failed: spans in export calls that returned ``FAILURE`` or raised.
        blocked: times a producer had to wait for room in the queue (backpressure).
        refused: spans that could not be queued: ended after :meth:`shutdown`, or ended
            on the export thread itself (by instrumentation inside the exporter).
    """

    queued: int = 0
    exported: int = 0
    failed: int = 0
    blocked: int = 0
    refused: int = 0


class _Counter:
    """Thread-safe counters behind a frozen :class:`ExportStats` snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = ExportStats()

    def add(self, *, exported: int = 0, rejected: int = 0, failed: int = 0) -> None:
        with self._lock:
            self._stats = self._stats + ExportStats(exported, rejected, failed)

    @property
    def snapshot(self) -> ExportStats:
        return self._stats


def _write_converted(store: Store, counter: _Counter, who: str, kind: str,
                     convert: Callable[[Any], TelemetryBatch], data: Any, n_in: int) -> bool:
    """Convert ``data`` and write it in one transaction; count and log, never raise.

    Invalid items are counted as rejected (re-sending could not help); a failed
    conversion or write counts the items as failed and returns ``False``.
    """
    try:
        batch = convert(data)
    except Exception:
        # Data the converter cannot even read: refuse the whole call, loudly.
        logger.exception("%s could not convert %d %s", who, n_in, kind)
        counter.add(failed=n_in)
        return False
    rows = batch.spans if kind == "spans" else batch.samples
    rejected = batch.rejected_spans + batch.rejected_points
    if rejected:
        logger.warning("%s rejected %d invalid %s: %s", who, rejected, kind, "; ".join(batch.errors[:3]))
    try:
        if rows:
            store.write(batch)
    except Exception:
        logger.exception("%s failed to write %d %s", who, len(rows), kind)
        counter.add(rejected=rejected, failed=len(rows))
        return False
    counter.add(exported=len(rows), rejected=rejected)
    return True


class SqlSpanExporter(SpanExporter):
    """An OpenTelemetry ``SpanExporter`` that writes finished spans into the store.

    Each :meth:`export` call is one transaction; re-exporting the same spans is harmless
    (inserts are idempotent). Use it behind :class:`BlockingSpanProcessor`, not the SDK's
    ``BatchSpanProcessor``, which drops spans when the database is slower than the producer.

    Args:
        store: where the spans go (a migrated database).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._counter = _Counter()
        self._shutdown = False

    @property
    def stats(self) -> ExportStats:
        """A snapshot of exported, rejected and failed span counts."""
        return self._counter.snapshot

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Convert and write ``spans`` in one transaction; never raises.

        Args:
            spans: finished SDK spans.

        Returns:
            ``SUCCESS`` once the valid spans are committed (invalid ones are counted as
            ``rejected`` and logged: re-sending them could not help); ``FAILURE`` when the
            write failed or the exporter is shut down (counted as ``failed``).
        """
        return self._export_with(from_readable_spans, spans, len(spans))

    def _export_with(self, convert: Callable[[Any], TelemetryBatch], data: Any, n: int) -> SpanExportResult:
        if self._shutdown:
            logger.warning("SqlSpanExporter is shut down; %d spans not exported", n)
            self._counter.add(failed=n)
            return SpanExportResult.FAILURE
        ok = _write_converted(self.store, self._counter, "SqlSpanExporter", "spans", convert, data, n)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Refuse further exports. The store (and its engine) stay open: the caller owns them."""
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here (every export commits before returning).

        Returns:
            Always ``True``.
        """
        return True


class SqlMetricExporter(MetricExporter):
    """An OpenTelemetry ``MetricExporter`` that writes metric points into the store.

    Series are named Prometheus style (``qfleet_jobs_total``, histograms as ``_bucket``
    with ``le``, ``_sum`` and ``_count``). Temporality is cumulative unless
    ``preferred_temporality`` says otherwise: the store's rollups compute reset-aware
    increases from cumulative counters.

    Args:
        store: where the samples go (a migrated database).
        preferred_temporality: per instrument type, passed to the SDK's metric reader.
        preferred_aggregation: per instrument type, passed to the SDK's metric reader.
    """

    def __init__(
        self,
        store: Store,
        *,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        # None leaves the reader's default, which is cumulative for every instrument.
        super().__init__(preferred_temporality=preferred_temporality,
                         preferred_aggregation=preferred_aggregation)
        self.store = store
        self._counter = _Counter()
        self._shutdown = False

    @property
    def stats(self) -> ExportStats:
        """A snapshot of exported, rejected and failed sample counts."""
        return self._counter.snapshot

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        """Convert and write ``metrics_data`` in one transaction; never raises.

        Args:
            metrics_data: what the SDK's metric reader collected.
            timeout_millis: not enforced; a database transaction cannot be cut short safely.

        Returns:
            ``SUCCESS`` once the valid samples are committed (invalid points are counted as
            ``rejected``); ``FAILURE`` when the write failed or the exporter is shut down.
        """
        if self._shutdown:
            logger.warning("SqlMetricExporter is shut down; metrics not exported")
            return MetricExportResult.FAILURE
        ok = _write_converted(self.store, self._counter, "SqlMetricExporter", "samples",
                              from_metrics_data, metrics_data, 0)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing is buffered here (every export commits before returning).

        Returns:
            Always ``True``.
        """
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Refuse further exports; the store stays open (the caller owns it)."""
        self._shutdown = True


class _Marker:
    """A queue item asking the worker to export what it holds, then signal (and maybe stop)."""

    __slots__ = ("done", "stop")

    def __init__(self, *, stop: bool) -> None:
        self.done = threading.Event()
        self.stop = stop


class BlockingSpanProcessor(SpanProcessor):
    """A ``BatchSpanProcessor`` replacement that never drops a span.

    Ended spans go into a bounded queue; one worker thread exports them in batches. When
    the queue is full, :meth:`on_end` blocks the producing thread until there is room, so a
    burst slows the producer down instead of losing spans (the SDK's processor drops them).

    Args:
        exporter: receives batches of at most ``max_export_batch_size`` spans.
        max_queue_size: spans held before producers block.
        max_export_batch_size: spans per export call (one transaction for a SQL exporter).
        schedule_delay_millis: longest a span waits for its batch to fill before export.

    Raises:
        ValueError: a non-positive size or negative delay, or a batch larger than the queue.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 8192,
        max_export_batch_size: int = 4096,
        schedule_delay_millis: float = 200,
    ) -> None:
        if max_queue_size <= 0 or max_export_batch_size <= 0:
            raise ValueError(f"{max_queue_size=} and {max_export_batch_size=} must be positive")
        if max_export_batch_size > max_queue_size:
            raise ValueError(f"{max_export_batch_size=} exceeds {max_queue_size=}; "
                             "a batch must fit in the queue")
        if schedule_delay_millis < 0:
            raise ValueError(f"{schedule_delay_millis=} must be >= 0")
        self.exporter = exporter
        self._max_queue = max_queue_size
        self._max_batch = max_export_batch_size
        self._delay_s = schedule_delay_millis / 1000
        # A deque under one lock with two conditions: the worker wakes once per batch
        # (first span, full batch, marker), not once per span as with queue.Queue.
        self._items: deque[Any] = deque()  # what _encode made of each span, and markers
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._markers = 0
        self._shutdown = False
        self._queued = self._exported = self._failed = self._blocked = self._refused = 0
        self._refused_on_worker = 0  # written by the worker only, so it needs no lock
        self._worker = threading.Thread(target=self._run, name="qfleet-span-export", daemon=True)
        self._worker.start()

    @property
    def stats(self) -> ProcessorStats:
        """A snapshot of queued, exported, failed, blocked and refused span counts."""
        return ProcessorStats(self._queued, self._exported, self._failed, self._blocked,
                              self._refused + self._refused_on_worker)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a finished sampled span, blocking while the queue is full."""
        if not span.context.trace_flags.sampled:
            return
        if threading.get_ident() == self._worker.ident:
            # A span ended by the exporter itself (instrumentation that ignores the
            # suppression flag): waiting for room on the worker would wait on itself.
            self._refused_on_worker += 1
            if self._refused_on_worker == 1:
                logger.warning("BlockingSpanProcessor refuses spans ended on its export thread "
                               "(first: %r); they are counted in stats.refused", span.name)
            return
        try:
            item = self._encode(span)
        except Exception:
            # on_end runs in the instrumented program's thread: never raise into it.
            logger.exception("BlockingSpanProcessor could not queue span %r", span.name)
            with self._lock:
                self._refused += 1
            return
        with self._lock:
            if self._shutdown:
                self._refused += 1
                logger.warning("BlockingSpanProcessor is shut down; span %r not exported", span.name)
                return
            if len(self._items) - self._markers >= self._max_queue:
                self._blocked += 1
                while len(self._items) - self._markers >= self._max_queue:
                    self._room.wait()  # backpressure: wait for the worker to make room
            self._items.append(item)
            self._queued += 1
            n = len(self._items)
            if n == 1 or n >= self._max_batch:
                self._more.notify()

    def _put_marker(self, marker: _Marker) -> bool:
        with self._lock:
            if self._shutdown:
                return False
            if marker.stop:
                self._shutdown = True
            self._items.append(marker)
            self._markers += 1
            self._more.notify()
        return True

    def force_flush(self, timeout_millis: int | None = 30000) -> bool:
        """Export every span queued before this call.

        Args:
            timeout_millis: how long to wait; ``None`` waits as long as it takes.

        Returns:
            ``True`` when everything queued so far was handed to the exporter and no export
            failed meanwhile; ``False`` on a timeout or a failed export (see :attr:`stats`).
        """
        timeout = None if timeout_millis is None else timeout_millis / 1000
        deadline = None if timeout is None else time.monotonic() + timeout
        failed_before = self._failed
        marker = _Marker(stop=False)
        if not self._put_marker(marker):
            return True  # shutdown drained the queue already
        if not marker.done.wait(timeout) or self._failed != failed_before:
            return False
        left_ms = 30000 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        # The SDK's base SpanExporter.force_flush returns None: only an explicit False fails.
        return self.exporter.force_flush(left_ms) is not False

    def shutdown(self) -> None:
        """Export everything still queued, stop the worker and shut the exporter down."""
        if not self._put_marker(_Marker(stop=True)):
            return
        self._worker.join()
        self.exporter.shutdown()

    def _encode(self, span: ReadableSpan) -> Any:
        """What the queue holds for ``span`` (the span itself; subclasses may convert it)."""
        return span

    def _export_items(self, items: list[Any]) -> bool:
        """Hand one batch of queued items to the exporter; ``True`` on success."""
        return self.exporter.export(items) is SpanExportResult.SUCCESS

    def _take(self) -> tuple[list[Any], _Marker | None]:
        """Wait for a full batch, a marker or the batch deadline; take that batch."""
        with self._lock:
            while not self._items:
                self._more.wait()
            # A started batch leaves when full or at its deadline, so a trickle of spans is
            # still exported within schedule_delay_millis.
            deadline = time.monotonic() + self._delay_s
            while len(self._items) < self._max_batch and not self._markers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._more.wait(left)
            batch: list[Any] = []
            marker = None
            pop = self._items.popleft
            while self._items and len(batch) < self._max_batch:
                item = pop()
                if isinstance(item, _Marker):
                    self._markers -= 1
                    marker = item
                    break
                batch.append(item)
            self._room.notify_all()
        return batch, marker

    def _run(self) -> None:
        while True:
            batch, marker = self._take()
            self._export(batch)
            if marker is not None:
                marker.done.set()
                if marker.stop:
                    return

    def _export(self, batch: list[Any]) -> None:
        if not batch:
            return
        # Keep instrumented libraries used by the exporter (database drivers) from
        # tracing the export itself, which would feed spans back into this queue.
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            ok = self._export_items(batch)
        except Exception:
            # The exporter broke the no-raise rule: count and carry on, the worker must live.
            logger.exception("BlockingSpanProcessor: exporter raised on %d spans", len(batch))
            ok = False
        finally:
            detach(token)
        if ok:
            self._exported += len(batch)
        else:
            self._failed += len(batch)
            logger.error("BlockingSpanProcessor: export of %d spans failed", len(batch))


class SqlSpanProcessor(BlockingSpanProcessor):
    """A :class:`BlockingSpanProcessor` into the store that converts each span as it ends.

    The queue then holds compact row tuples instead of SDK span objects. Queued SDK spans
    live long enough to be promoted to the oldest GC generation and make full collections
    frequent (a third of the export cost in ``bench/bench_exporter.py``); row tuples of
    plain values are untracked by the collector. Writes go through a
    :class:`SqlSpanExporter` (``self.exporter``), whose :attr:`SqlSpanExporter.stats`
    count exported, rejected and failed spans.

    Args:
        store: where the spans go (a migrated database).
        **kwargs: queue and batch sizes, as for :class:`BlockingSpanProcessor`.
    """

    def __init__(self, store: Store, **kwargs: Any) -> None:
        self.sql_exporter = SqlSpanExporter(store)
        self._converter = SdkSpanConverter()
        super().__init__(self.sql_exporter, **kwargs)

    def _encode(self, span: ReadableSpan) -> Any:
        return self._converter.convert(span)

    def _export_items(self, items: list[Any]) -> bool:
        result = self.sql_exporter._export_with(SdkSpanConverter.collect, items, len(items))
        return result is SpanExportResult.SUCCESS


def tracer_provider(store: Store, *, resource: Resource | None = None) -> TracerProvider:
    """A ``TracerProvider`` whose finished spans go to ``store`` without ever being dropped.

    Wires a :class:`SqlSpanProcessor`. The provider is not
    made global; call ``shutdown()`` on it to export what is left.

    Args:
        store: where the spans go.
        resource: the process's resource (``service.name`` etc.); the SDK default if ``None``.

    Returns:
        The provider; ``provider.get_tracer(...)`` creates tracers.
    """
    provider = TracerProvider(resource=resource) if resource is not None else TracerProvider()
    provider.add_span_processor(SqlSpanProcessor(store))
    return provider


def meter_provider(store: Store, *, resource: Resource | None = None,
                   export_interval_millis: float = 15_000) -> MeterProvider:
    """A ``MeterProvider`` that exports to ``store`` every ``export_interval_millis``.

    Wires a ``PeriodicExportingMetricReader`` over :class:`SqlMetricExporter` (cumulative
    temporality). The provider is not made global; ``force_flush()`` exports now and
    ``shutdown()`` exports a last time.

    Args:
        store: where the samples go.
        resource: the process's resource; the SDK default if ``None``.
        export_interval_millis: collection period (15 s, a usual Prometheus scrape interval).

    Returns:
        The provider; ``provider.get_meter(...)`` creates meters.
    """
    reader = PeriodicExportingMetricReader(SqlMetricExporter(store),
                                           export_interval_millis=export_interval_millis)
    if resource is not None:
        return MeterProvider(metric_readers=[reader], resource=resource)
    return MeterProvider(metric_readers=[reader])
