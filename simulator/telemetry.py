"""What the simulated fleet emits: span rows in the OpenTelemetry model and simulated-time metrics.

Spans are built column by column into :class:`collector.SpanColumns` (the collector's bulk path) with explicit
simulated start and end times. Metrics are accumulated per run (cumulative counters, histograms, gauges) and
snapshotted once per step as the OpenTelemetry SDK's ``MetricsData`` with simulated timestamps, because the
SDK's instruments would stamp wall-clock time (style.md 5.3). Both go to the store or to an OTLP endpoint
unchanged.

Names live here so that SLO specs and dashboards can refer to one list (:data:`SPAN_NAMES`,
:data:`METRICS`).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from collector import SpanColumns

__all__ = [
    "METRICS",
    "MetricDef",
    "MetricsAccumulator",
    "SPAN_NAMES",
    "SpanBuffer",
    "run_hash",
]

SCOPE = "qfleet.simulator"

#: Span names the simulator emits, by role.
SPAN_NAMES: Mapping[str, str] = {
    "job": "qfleet.job",
    "entanglement": "qfleet.entanglement.request",
    "swap": "qfleet.entanglement.swap",
    "feedforward": "qfleet.feedforward",
    "measurement": "qfleet.measurement",
    "calibration": "qfleet.calibration",
    "command": "qfleet.control.command",
    # Ground truth and announcements, as spans so that every ingestion path carries them:
    "fault": "qfleet.fault",
    "maintenance": "qfleet.maintenance",
    "run": "qfleet.run",
}

_LAT_S = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_USAGE = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.0, 5.0)
_FID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One instrument: OTel name, kind (``counter`` | ``gauge`` | ``histogram``), unit, bucket bounds."""

    name: str
    kind: str
    unit: str
    description: str
    bounds: tuple[float, ...] = ()


#: Every metric of the simulated fleet. Label keys use the ``qfleet.`` attribute names, so the store promotes
#: node, link and hardware type to columns. Prometheus names follow OTel's rules (``qfleet_jobs_total``,
#: ``qfleet_feedforward_latency_seconds_bucket``...).
METRICS: Mapping[str, MetricDef] = {m.name: m for m in (
    MetricDef("qfleet.jobs", "counter", "{job}", "Finished jobs by tenant, kind, outcome and hardware type"),
    MetricDef("qfleet.entanglement.requests", "counter", "{request}",
              "Link entanglement requests (one per pair of a job shot) by link and outcome"),
    MetricDef("qfleet.entanglement.attempts", "counter", "{attempt}", "Heralding attempts by link"),
    MetricDef("qfleet.entanglement.latency", "histogram", "s", "Time to a heralded pair", _LAT_S),
    MetricDef("qfleet.feedforward.latency", "histogram", "s", "Classical feedforward latency per job", _LAT_S),
    MetricDef("qfleet.coherence_window.usage", "histogram", "1",
              "(storage wait + classical latency) / coherence window, per job", _USAGE),
    MetricDef("qfleet.job.fidelity", "histogram", "1", "Measured end-to-end fidelity per job", _FID),
    MetricDef("qfleet.orchestrator.latency", "histogram", "s", "Scheduling decision latency per job", _LAT_S),
    MetricDef("qfleet.node.heartbeats", "counter", "{heartbeat}", "Heartbeats received from each node"),
    MetricDef("qfleet.node.up", "gauge", "1", "1 while the node's heartbeats arrive, else 0"),
    MetricDef("qfleet.node.t1", "gauge", "s", "Calibrated-and-drifted T1 of the node's memory"),
    MetricDef("qfleet.node.t2", "gauge", "s", "Calibrated-and-drifted T2 of the node's memory"),
    MetricDef("qfleet.node.gate_error", "gauge", "1", "Depolarising gate error by qubits (1 or 2)"),
    MetricDef("qfleet.node.readout_error", "gauge", "1", "Readout error P(wrong | state) by prepared state"),
    MetricDef("qfleet.link.heralding_probability", "gauge", "1", "Per-attempt heralding success now"),
    MetricDef("qfleet.measurement.variance", "gauge", "1",
              "Variance of canary check outcomes on the node over the last step"),
    MetricDef("qfleet.scheduler.queue.depth", "gauge", "{job}", "Pending jobs by tenant"),
    MetricDef("qfleet.scheduler.queue.age", "gauge", "s", "Age of the oldest pending job by tenant"),
    MetricDef("qfleet.calibrations", "counter", "{calibration}", "Completed calibrations by node"),
    MetricDef("qfleet.audit.events", "counter", "{event}", "Control commands by node, principal, authorization"),
)}


def run_hash(payload: str) -> str:
    """16 hex characters naming a run (the first half of every trace id of that run)."""
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class SpanBuffer:
    """Columns of spans under construction; :meth:`take` hands them over as :class:`SpanColumns`."""

    __slots__ = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start", "end", "status_code",
                 "status_message", "attributes", "node_id", "link_id", "job_id", "run_id", "hardware_type")

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, [])

    def __len__(self) -> int:
        return len(self.trace_id)

    def add(self, trace_id: str, span_id: str, parent: str | None, name: str, start: int, end: int,
            attributes: dict[str, Any], *, node: str | None = None, link: str | None = None,
            job: str | None = None, run: str | None = None, hardware: str | None = None,
            error: str = "", kind: int = 1) -> None:
        """Append one span (times in ns; ``error`` non-empty sets status ERROR with that message)."""
        self.trace_id.append(trace_id)
        self.span_id.append(span_id)
        self.parent_span_id.append(parent)
        self.name.append(name)
        self.kind.append(kind)
        self.start.append(start)
        self.end.append(end)
        self.status_code.append(2 if error else 1)
        self.status_message.append(error)
        self.attributes.append(attributes)
        self.node_id.append(node)
        self.link_id.append(link)
        self.job_id.append(job)
        self.run_id.append(run)
        self.hardware_type.append(hardware)

    def take(self) -> SpanColumns:
        """The buffered spans as columns; the buffer starts empty again."""
        cols = SpanColumns(
            trace_id=self.trace_id, span_id=self.span_id, parent_span_id=self.parent_span_id, name=self.name,
            kind=self.kind, start_time_unix_nano=self.start, end_time_unix_nano=self.end,
            status_code=self.status_code, status_message=self.status_message, attributes=self.attributes,
            node_id=self.node_id, link_id=self.link_id, job_id=self.job_id, run_id=self.run_id,
            hardware_type=self.hardware_type)
        self.__init__()  # type: ignore[misc]
        return cols


class _Hist:
    __slots__ = ("bounds", "counts", "total", "n", "lo", "hi")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0
        self.lo = float("inf")
        self.hi = float("-inf")

    def observe(self, v: float) -> None:
        # OTel explicit buckets are upper-inclusive: v <= bound falls in that bucket.
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.total += v
        self.n += 1
        if v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v


class MetricsAccumulator:
    """Cumulative counters and histograms plus last-value gauges, snapshotted as ``MetricsData``.

    Labels are passed as a tuple of ``(key, value)`` pairs so that they can key a dict cheaply.

    Args:
        resource: attributes of the simulator's resource (``service.name``, ``qfleet.run.id``).
        start_ns: the run's start: the start time of every cumulative point.
    """

    def __init__(self, resource: Mapping[str, Any], start_ns: int) -> None:
        self.resource = Resource(dict(resource))
        self.start_ns = start_ns
        self._counters: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}
        self._hists: dict[str, dict[tuple[tuple[str, Any], ...], _Hist]] = {}
        self._gauges: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}
        for m in METRICS.values():
            {"counter": self._counters, "histogram": self._hists, "gauge": self._gauges}[m.kind][m.name] = {}

    def add(self, name: str, labels: tuple[tuple[str, Any], ...], value: float = 1.0) -> None:
        """Add to a counter."""
        c = self._counters[name]
        c[labels] = c.get(labels, 0.0) + value

    def observe(self, name: str, labels: tuple[tuple[str, Any], ...], value: float) -> None:
        """Record one histogram observation."""
        h = self._hists[name]
        hist = h.get(labels)
        if hist is None:
            hist = h[labels] = _Hist(METRICS[name].bounds)
        hist.observe(value)

    def set(self, name: str, labels: tuple[tuple[str, Any], ...], value: float) -> None:
        """Set a gauge."""
        self._gauges[name][labels] = value

    def forget_gauge(self, name: str, labels: tuple[tuple[str, Any], ...]) -> None:
        """Stop reporting one gauge series (e.g. a node whose measurement has no fresh value)."""
        self._gauges[name].pop(labels, None)

    def snapshot(self, t_ns: int) -> MetricsData:
        """Every series' current value as points at simulated time ``t_ns``."""
        start = self.start_ns
        metrics: list[Metric] = []
        for name, series in self._counters.items():
            if series:
                m = METRICS[name]
                pts = [NumberDataPoint(attributes=dict(k), start_time_unix_nano=start, time_unix_nano=t_ns,
                                       value=v) for k, v in series.items()]
                metrics.append(Metric(name=name, description=m.description, unit=m.unit, data=Sum(
                    data_points=pts, aggregation_temporality=AggregationTemporality.CUMULATIVE,
                    is_monotonic=True)))
        for name, hs in self._hists.items():
            if hs:
                m = METRICS[name]
                hp = [HistogramDataPoint(attributes=dict(k), start_time_unix_nano=start, time_unix_nano=t_ns,
                                         count=h.n, sum=h.total, bucket_counts=list(h.counts),
                                         explicit_bounds=list(h.bounds), min=h.lo, max=h.hi)
                      for k, h in hs.items()]
                metrics.append(Metric(name=name, description=m.description, unit=m.unit, data=Histogram(
                    data_points=hp, aggregation_temporality=AggregationTemporality.CUMULATIVE)))
        for name, gs in self._gauges.items():
            if gs:
                m = METRICS[name]
                pts = [NumberDataPoint(attributes=dict(k), start_time_unix_nano=0, time_unix_nano=t_ns,
                                       value=v) for k, v in gs.items()]
                metrics.append(Metric(name=name, description=m.description, unit=m.unit,
                                      data=Gauge(data_points=pts)))
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=self.resource, scope_metrics=[ScopeMetrics(
                scope=InstrumentationScope(SCOPE), metrics=metrics, schema_url="")], schema_url="")])

    def counter_value(self, name: str, **labels: Any) -> float:
        """Sum of a counter over every series whose labels include ``labels`` (for summaries and tests)."""
        want = set(labels.items())
        return sum(v for k, v in self._counters[name].items() if want <= set(k))


def labels(**kv: Any) -> tuple[tuple[str, Any], ...]:
    """A label tuple from keyword arguments (``node="qpu-a"`` becomes ``("qfleet.node.id", "qpu-a")``)."""
    return tuple((_KEYS.get(k, k), v) for k, v in kv.items())


_KEYS = {"node": "qfleet.node.id", "link": "qfleet.link.id", "hardware": "qfleet.hardware.type",
         "tenant": "qfleet.tenant", "kind": "qfleet.job.kind", "outcome": "qfleet.outcome"}


def spans_of(columns: Iterable[SpanColumns]) -> int:
    """Total number of spans in ``columns``."""
    return sum(len(c) for c in columns)
