"""Where a simulation's telemetry goes: the store (bulk path) or an OTLP/HTTP endpoint (a live collector).

Both take :class:`qfleet.simulator.engine.SimStep` objects and count what they wrote. The store sink writes each step
in one transaction through the collector's columnar bulk path (``SpanColumns``) and its ``MetricsData``
conversion; the OTLP sink sends the same spans and metrics with the standard OpenTelemetry exporters, so the
rows a collector stores from it are the rows the store sink writes.
"""

from __future__ import annotations

import logging
import pickle
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from qfleet.collector import Runs, SpanColumns, Store, TelemetryBatch
from qfleet.simulator.gcpolicy import fewer_collections, paused_collections
from qfleet.simulator.telemetry import SCOPE
from qfleet.units import NS

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from qfleet.simulator.engine import SimStep

__all__ = ["OtlpSink", "ProcessStoreSink", "SinkStats", "StoreSink", "readable_spans", "step_rows"]

logger = logging.getLogger(__name__)

#: How far behind the step being written the writer process rolls up while idle: a step's metric samples also
#: touch the next minute, and most of its spans start in the minute before.
_ROLLUP_LAG_NS = 120 * NS
#: The writer process rolls up at most once per this much simulated time: each pass seeks every series' previous
#: value and commits, so a pass per one-minute step cost the demo's writer 3 s more than one per ten minutes.
_ROLLUP_EVERY_NS = 600 * NS
#: ... and also while behind the engine once this much simulated time waits for its rollups: the same work, done
#: before the close rather than all in it (a fleet100 day's writer, behind for its last hours, peaked at 1 GB).
_ROLLUP_BACKLOG_NS = 3600 * NS
#: Most queued steps, and rows (spans and samples), the writer process puts in one transaction. A step's samples
#: land on one leaf page per series (the key is series then time), so every commit rewrites a page per series
#: whatever the step count: late in a fleet100 day, a step per transaction made the writer about 1.9x slower per
#: simulated hour than thirty. The writer never waits for steps: behind the engine it finds many queued, and
#: catches up faster the further behind it is. The row cap bounds its memory on large fleets (fleet1000: 8 steps).
_COALESCE_STEPS = 32
_COALESCE_ROWS = 300_000
#: Steps waiting for the writer process from which the engine builds each step's rows itself (ProcessStoreSink):
#: deep enough that the writer, balancing around it, still finds many steps for each transaction.
_SHARE_BEHIND = 16
#: Longest the writer waits for a step the engine has put and the pipe has not delivered yet (see :func:`_take`).
_IN_TRANSIT_S = 60.0


@dataclass(slots=True)
class SinkStats:
    """What a sink wrote, and the seconds it spent writing (the benchmark's storage share)."""

    spans: int = 0
    samples: int = 0
    seconds: float = 0.0


class StoreSink:
    """Writes every step into the store in one transaction, then computes the pending rollups at the end.

    A simulated run (its resource has ``qfleet.run.id``) is registered in the store's runs before its first row:
    over ``run_range`` when given, else over each step as it comes (extended step by step). A run that would
    overlap a stored one is refused with :class:`qfleet.collector.RunOverlapError` before anything is written.

    Args:
        store: a store on a migrated database.
        resource: the simulator's resource attributes (``service.name``, ``qfleet.run.id``, ``qfleet.fleet``...).
        run_range: the run's planned simulated ``[start_ns, end_ns)``; registering it whole refuses an overlap
            before the first step and saves a small transaction per step.
        registered: the caller registered the run already (over ``run_range``); the sink only finishes it.
    """

    def __init__(self, store: Store, resource: Mapping[str, Any], *,
                 run_range: tuple[int, int] | None = None, registered: bool = False) -> None:
        self.store = store
        self.resource = dict(resource)
        self.stats = SinkStats()
        self.run_range = run_range
        self._run_id: str | None = resource.get("qfleet.run.id")
        self._runs = Runs(store.engine, clock=store.clock)
        self._registered = registered
        self._end_ns: int | None = run_range[1] if registered and run_range is not None else None

    def begin(self, start_ns: int | None = None, end_ns: int | None = None) -> None:
        """Register the run now (idempotent; the first write does it otherwise).

        Raises:
            qfleet.collector.RunOverlapError: the run overlaps a stored one; nothing was written.
        """
        if self._registered or self._run_id is None:
            return
        lo, hi = self.run_range if self.run_range is not None else (start_ns, end_ns)
        if lo is None or hi is None:
            raise ValueError("StoreSink.begin: give the run's range (run_range=, or begin(start_ns, end_ns))")
        self._runs.register(self._run_id, fleet=str(self.resource.get("qfleet.fleet", "")), start_ns=lo, end_ns=hi)
        self._registered = True
        self._end_ns = hi

    def write(self, step: SimStep) -> None:
        """Convert and write one step (raises on a database error: nothing of the step is written)."""
        self.write_parts(step.spans, step.points.to_batch(), step.start_ns, step.end_ns)

    def write_parts(self, spans: SpanColumns, metrics: TelemetryBatch, start_ns: int,
                    end_ns: int | None = None) -> None:
        """Write one step given as span columns and already converted metric rows; ``end_ns`` (default: the step
        start plus one ns) is where the step ends, for a run registered step by step."""
        t0 = time.perf_counter()
        rows = step_rows(spans, metrics, self.resource)
        self.stats.seconds += time.perf_counter() - t0
        self.write_steps([(rows, start_ns, end_ns)])

    def write_steps(self, steps: Sequence[tuple[TelemetryBatch, int, int | None]]) -> None:
        """Write several steps, each as its rows (:func:`step_rows`), start and end (as :meth:`write_parts`
        takes them), in time order, in one transaction."""
        if not steps:
            return
        t0 = time.perf_counter()
        start_ns, end_ns = steps[0][1], steps[-1][2]
        end = end_ns if end_ns is not None else steps[-1][1] + 1
        if not self._registered:
            self.begin(start_ns, end)
        elif self._run_id is not None and self._end_ns is not None and end > self._end_ns:
            self._runs.extend(self._run_id, end)  # before the rows: an overlap refuses these steps whole
            self._end_ns = end
        batch = steps[0][0]
        if len(steps) > 1:
            batch = TelemetryBatch()
            for rows, _start, _end in steps:
                batch.extend(rows)
        if batch.rejected_spans or batch.rejected_points:
            # The simulator builds valid rows; a refusal here is a bug, but never a silent one.
            logger.error("store refused %d spans and %d points of the steps from %d: %s", batch.rejected_spans,
                         batch.rejected_points, start_ns, "; ".join(batch.errors[:3]))
        self.store.write(batch)
        self.stats.spans += len(batch.spans)
        self.stats.samples += len(batch.samples)
        self.stats.seconds += time.perf_counter() - t0

    def roll_up_before(self, t_ns: int) -> None:
        """Compute the pending rollups of the minutes that start before ``t_ns`` (a later step may still touch
        them, which only leaves them pending again)."""
        t0 = time.perf_counter()
        self.store.refresh_rollups(before_ns=t_ns)
        self.stats.seconds += time.perf_counter() - t0

    def checkpoint(self) -> None:
        """Copy the committed WAL into the SQLite database file without waiting for anyone (nothing on PostgreSQL);
        a writer with nothing to do calls it, so that its later commits seldom checkpoint."""
        t0 = time.perf_counter()
        self.store.checkpoint()
        self.stats.seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Compute every pending rollup (the dashboards and SLOs read them) and mark the run finished."""
        t0 = time.perf_counter()
        self.store.refresh_rollups()
        if self._registered and self._run_id is not None:
            self._runs.finish(self._run_id)
        self.stats.seconds += time.perf_counter() - t0


def step_rows(spans: SpanColumns, metrics: TelemetryBatch, resource: Mapping[str, Any]) -> TelemetryBatch:
    """One step's store rows: its spans under the simulator's ``resource`` (their attributes as the JSON text the
    store keeps), then its metric rows. Either process of :class:`ProcessStoreSink` may build them."""
    batch = spans.to_batch(service_name=resource["service.name"], resource_attributes=resource, scope_name=SCOPE,
                           json_attributes=True)
    batch.extend(metrics)
    return batch


def _unpickled(item: bytes | None, sink: StoreSink) -> tuple[TelemetryBatch, int, int] | None:
    """A step as the engine pickled it (:meth:`ProcessStoreSink.write`): its rows, built here (on the writer's
    core, counted in ``sink``'s seconds) unless the engine built them already, and its start and end."""
    if item is None:
        return None
    first, points, start_ns, end_ns = pickle.loads(item)
    if points is None:
        return first, start_ns, end_ns
    t0 = time.perf_counter()
    rows = step_rows(first, points.to_batch(), sink.resource)
    sink.stats.seconds += time.perf_counter() - t0
    return rows, start_ns, end_ns


def _queued(inbox: Any) -> int | None:
    """Steps the engine has put in ``inbox`` that the writer has not taken yet (None where the platform cannot count
    them: ``multiprocessing`` queues on macOS)."""
    try:
        return int(inbox.qsize())
    except NotImplementedError:
        return None


def _idle(inbox: Any) -> bool:
    """Nothing waits for the writer: no step put and not taken (``empty`` only sees the pipe; see :func:`_take`)."""
    n = _queued(inbox)
    return bool(inbox.empty()) if n is None else n == 0


def _take(inbox: Any) -> bytes | None:
    """The next step the engine has already put in ``inbox``; raises :class:`queue.Empty` when there is none.

    A step put may still be on its way: the engine's feeder thread writes it (hundreds of kB for fleet100) through
    a pipe in pieces, each between the engine's turns at the GIL, and ``get_nowait`` alone sees an empty pipe at
    such a moment. With that test alone, a writer sixteen steps behind committed them one at a time, the dearest
    way to write them (bench/bench_writer.py: `pace` against `behind`).
    """
    try:
        return cast("bytes | None", inbox.get_nowait())
    except queue.Empty:
        if not _queued(inbox):
            raise
    # Put, so it is coming; the timeout only guards against an engine that died while sending it.
    return cast("bytes | None", inbox.get(timeout=_IN_TRANSIT_S))


def _writer_process(url: str, resource: dict[str, Any], run: tuple[tuple[int, int] | None, bool], inbox: Any,
                    outbox: Any) -> None:
    """Body of :class:`ProcessStoreSink`'s writer: a :class:`StoreSink` fed from ``inbox``."""
    from qfleet.collector import open_engine

    engine = open_engine(url)
    sink = StoreSink(Store(engine), resource, run_range=run[0], registered=run[1])
    rolled_to: int | None = None  # rolled up before this; None: nothing yet (then from the first step's start)
    try:
        with fewer_collections():  # a dedicated process: the policy holds for its whole life
            while True:
                # No cyclic collection while a batch is alive: its rows hold no cycles, and die with it (gcpolicy).
                with paused_collections():
                    item = _unpickled(inbox.get(), sink)
                    steps: list[tuple[TelemetryBatch, int, int | None]] = []
                    rows = 0
                    # Behind the engine, the steps already queued share one transaction (see _COALESCE_STEPS).
                    while item is not None:
                        steps.append(item)
                        rows += len(item[0].spans) + len(item[0].samples)
                        if len(steps) >= _COALESCE_STEPS or rows >= _COALESCE_ROWS:
                            break
                        try:
                            item = _unpickled(_take(inbox), sink)
                        except queue.Empty:
                            break
                    sink.write_steps(steps)
                    last = item is None
                    first_start, last_start = (steps[0][1], steps[-1][1]) if steps else (0, 0)
                    del steps, item  # freed here, before the collector may run again
                if last:
                    sink.close()
                    outbox.put(("done", sink.stats))
                    return
                before = last_start - _ROLLUP_LAG_NS
                if rolled_to is None and not _idle(inbox):
                    rolled_to = first_start  # behind from the start: the backlog counts from here
                pending = None if rolled_to is None else before - rolled_to
                if pending is None or (pending >= _ROLLUP_EVERY_NS and _idle(inbox)) or pending >= _ROLLUP_BACKLOG_NS:
                    # Waiting for the engine anyway (or too far behind): roll up the minutes behind these steps now.
                    sink.roll_up_before(before)
                    rolled_to = before
                    if _idle(inbox):
                        # Still idle: copy the WAL into the database file now (about 20 MB per ten simulated minutes
                        # of fleet100), not in a commit that passes 10,000 pages when the writer may be behind.
                        sink.checkpoint()
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        outbox.put(("error", f"{type(e).__name__}: {e}"))
    finally:
        engine.dispose()


class ProcessStoreSink:
    """A :class:`StoreSink` in a writer process, so that storage runs on a second core beside the engine.

    A thread would not do: the engine keeps the GIL busy, and a writer thread waits for it before every
    statement. Steps cross over as span columns and metric points through a bounded queue (backpressure: the
    simulation waits when the writer falls behind, memory stays flat), and the writer builds their rows. While
    ``share_behind`` or more steps wait for the writer, the engine builds a step's rows itself before handing it
    over (:func:`step_rows`, the same rows): the writer, then the slower of the two, is left the database work
    alone, and the two balance around that many steps in the queue. A failed write stops the writer and is raised
    from the next :meth:`write` or from :meth:`close`; the transaction of the failed steps is rolled back (a writer
    that falls behind puts the steps it finds queued, up to :data:`_COALESCE_STEPS` or :data:`_COALESCE_ROWS`, in
    one transaction), earlier steps stay committed.

    Args:
        url: the database URL (the writer opens its own engine; the schema must be migrated).
        resource: the simulator's resource attributes.
        depth: steps that may wait for the writer (the default, :data:`_COALESCE_STEPS`, lets the engine run as
            far ahead as the writer puts in one transaction).
        run_range: the run's planned simulated range (see :class:`StoreSink`).
        registered: the caller registered the run already (:meth:`qfleet.collector.Runs.register`, which refuses
            an overlap before the writer starts); the writer only finishes it.
        share_behind: steps waiting for the writer from which the engine builds the rows (0: always, None:
            never; also never where the queue cannot count them, as on macOS).
    """

    def __init__(self, url: str, resource: Mapping[str, Any], *, depth: int = _COALESCE_STEPS,
                 run_range: tuple[int, int] | None = None, registered: bool = False,
                 share_behind: int | None = _SHARE_BEHIND) -> None:
        import multiprocessing

        self._resource = dict(resource)
        self._share_behind = share_behind

        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads and sockets
        self._inbox = ctx.Queue(maxsize=depth)
        self._outbox = ctx.Queue()
        self._proc = ctx.Process(target=_writer_process, args=(url, dict(resource), (run_range, registered),
                                                                  self._inbox, self._outbox),
                                 name="qfleet-sim-store", daemon=True)
        # A spawned child re-runs the parent's __main__ script unless told not to; the writer needs none of it
        # (and a host such as a Streamlit test runner may have swapped in a script that must not run twice).
        import sys
        import types

        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self._proc.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main
        self.stats = SinkStats()
        self._failed: str | None = None

    @classmethod
    def for_run(cls, engine: Engine, resource: Mapping[str, Any], run_range: tuple[int, int]) -> ProcessStoreSink:
        """Register the run of ``resource`` over ``run_range`` in ``engine``'s (migrated) store, then start a
        writer on the same database: a run over hours the store already holds is refused before the writer
        starts, with nothing written.

        Raises:
            qfleet.collector.RunOverlapError: the run overlaps a stored one.
        """
        Runs(engine).register(str(resource["qfleet.run.id"]), fleet=str(resource.get("qfleet.fleet", "")),
                              start_ns=run_range[0], end_ns=run_range[1])
        return cls(engine.url.render_as_string(hide_password=False), resource, run_range=run_range,
                   registered=True)

    def _check(self, block: bool = False, timeout: float | None = None) -> tuple[str, Any] | None:
        try:
            msg: tuple[str, Any] = self._outbox.get(block, timeout)
        except queue.Empty:
            return None
        if msg[0] == "error":
            self._failed = msg[1]
        return msg

    def write(self, step: SimStep) -> None:
        """Hand one step to the writer (blocks while it is ``depth`` steps behind).

        Raises:
            RuntimeError: the writer failed on an earlier step.
        """
        self._check()
        if self._failed:
            raise RuntimeError(f"writing the simulation into the store failed: {self._failed}")
        # Pickled here, not by the queue's feeder thread: pickling there took the GIL from the engine in small
        # slices and cost it about twice the pickling itself (bench/bench_fleet_day.py; docs/benchmarks.md as of
        # commit 42c4947, "What changed on 2026-12-07").
        share = self._share_behind
        if share is not None and (behind := _queued(self._inbox)) is not None and behind >= share:
            rows = step_rows(step.spans, step.points.to_batch(), self._resource)
            item = pickle.dumps((rows, None, step.start_ns, step.end_ns), protocol=pickle.HIGHEST_PROTOCOL)
        else:
            item = pickle.dumps((step.spans, step.points, step.start_ns, step.end_ns),
                                protocol=pickle.HIGHEST_PROTOCOL)
        while True:
            try:
                self._inbox.put(item, timeout=1.0)
                return
            except queue.Full:
                if not self._proc.is_alive():
                    raise RuntimeError("the store writer process died; see its log above") from None

    def close(self) -> None:
        """Wait for every queued step and the rollups.

        Raises:
            RuntimeError: the writer failed.
        """
        if not self._failed and self._proc.is_alive():
            self._inbox.put(None)
        while self._failed is None:
            msg = self._check(block=True, timeout=1.0)
            if msg and msg[0] == "done":
                self.stats = msg[1]
                break
            if msg is None and not self._proc.is_alive():
                self._failed = "the store writer process exited without finishing"
        self._proc.join()
        if self._failed:
            raise RuntimeError(f"writing the simulation into the store failed: {self._failed}")

    def abandon(self) -> None:
        """Stop the writer now (the run is being interrupted); committed steps stay."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()


def readable_spans(columns: SpanColumns, resource: Resource) -> list[ReadableSpan]:
    """The SDK's ``ReadableSpan`` objects for ``columns`` (what an OTLP exporter sends).

    OTLP has no promoted columns: node, link, job, run and hardware type become their ``qfleet.*`` attributes,
    from which the collector promotes them again.
    """
    scope = InstrumentationScope(SCOPE)
    out = []
    status_codes = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
    n = len(columns)
    parents = columns.parent_span_id or [None] * n
    kinds = columns.kind or [1] * n
    codes = columns.status_code or [0] * n
    msgs = columns.status_message or [""] * n
    attrs = columns.attributes or [{}] * n
    promoted = [(key, col) for key, col in (
        ("qfleet.node.id", columns.node_id), ("qfleet.link.id", columns.link_id), ("qfleet.job.id", columns.job_id),
        ("qfleet.run.id", columns.run_id), ("qfleet.hardware.type", columns.hardware_type)) if col is not None]
    for i in range(n):
        tid = int(columns.trace_id[i], 16)
        ctx = SpanContext(tid, int(columns.span_id[i], 16), is_remote=False, trace_flags=TraceFlags(1))
        parent_id = parents[i]
        parent = SpanContext(tid, int(parent_id, 16), is_remote=False,
                             trace_flags=TraceFlags(1)) if parent_id else None
        code = status_codes[codes[i]]
        out.append(ReadableSpan(
            name=columns.name[i], context=ctx, parent=parent, resource=resource,
            attributes={**attrs[i], **{k: col[i] for k, col in promoted if col[i] is not None}},
            kind=SpanKind(kinds[i] - 1), status=Status(code, msgs[i] or None) if code is StatusCode.ERROR
            else Status(code), start_time=columns.start_time_unix_nano[i], end_time=columns.end_time_unix_nano[i],
            instrumentation_scope=scope))
    return out


class OtlpSink:
    """Sends every step to an OTLP/HTTP collector with the standard OpenTelemetry exporters.

    Args:
        endpoint: the collector's base URL, e.g. ``http://127.0.0.1:4318``.
        token: bearer token for the collector's ingestion endpoints.
        resource: the simulator's resource attributes.
        timeout_s: per-request timeout (the exporters retry 503/429 with backoff meanwhile).

    Raises:
        RuntimeError: from :meth:`write`, when the collector did not accept a step after the exporter's retries.
    """

    def __init__(self, endpoint: str, token: str, resource: Mapping[str, Any], *, timeout_s: float = 30.0) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"}
        # Held as the SDK's exporter interfaces, whose methods are typed (the OTLP classes' overrides are not).
        self._spans: SpanExporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers,
                                                     timeout=timeout_s)
        self._metrics: MetricExporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers,
                                                           timeout=timeout_s)
        self.resource = Resource(dict(resource))
        self.stats = SinkStats()

    def write(self, step: SimStep) -> None:
        """Send one step's spans, then its metrics."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        t0 = time.perf_counter()
        spans = readable_spans(step.spans, self.resource)
        for lo in range(0, len(spans), 2000):
            if self._spans.export(spans[lo:lo + 2000]) is not SpanExportResult.SUCCESS:
                raise RuntimeError(f"the collector did not accept the spans of the step at {step.start_ns} ns; "
                                   "is `qfleet collector serve` running and the token right?")
        if self._metrics.export(step.metrics) is not MetricExportResult.SUCCESS:
            raise RuntimeError(f"the collector did not accept the metrics of the step at {step.start_ns} ns")
        self.stats.spans += len(spans)
        self.stats.samples += sum(len(m.data.data_points) for rm in step.metrics.resource_metrics
                                  for sm in rm.scope_metrics for m in sm.metrics)
        self.stats.seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Shut the exporters down (the collector computes its own rollups)."""
        self._spans.shutdown()
        self._metrics.shutdown()
