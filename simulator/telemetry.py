"""What the simulated fleet emits: span rows in the OpenTelemetry model and simulated-time metrics.

Spans are built column by column into :class:`qfleet.collector.SpanColumns` (the collector's bulk path) with explicit
simulated start and end times. Metrics are accumulated per run (cumulative counters, histograms, gauges) and
snapshotted once per step as the OpenTelemetry SDK's ``MetricsData`` with simulated timestamps, because the
SDK's instruments would stamp wall-clock time (style.md 5.3). Both go to the store or to an OTLP endpoint
unchanged.

Names live here so that SLO specs and dashboards can refer to one list (:data:`SPAN_NAMES`,
:data:`METRICS`). The fleet's metrics are what a control system measures (docs/signals.md); the simulator's ground
truth is kept apart under ``qfleet.truth.`` (:func:`is_truth_metric`), for scoring game days only.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
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

from qfleet.collector import SpanColumns, TelemetryBatch
from qfleet.collector.convert import MetricSink, prometheus_name, resource_row
from qfleet.collector.schema import MetricType
from qfleet.collector.span_rows import sdk_attributes
from qfleet.units import NS

__all__ = [
    "METRICS",
    "MetricDef",
    "MetricPoints",
    "MetricsAccumulator",
    "SPAN_NAMES",
    "SpanBuffer",
    "TRUTH_PREFIXES",
    "is_truth_metric",
    "run_hash",
]

SCOPE = "qfleet.simulator"
_Labels = tuple[tuple[str, Any], ...]

#: Span names the simulator emits, by role.
SPAN_NAMES: Mapping[str, str] = {
    "job": "qfleet.job",
    "entanglement": "qfleet.entanglement.request",
    "swap": "qfleet.entanglement.swap",
    "feedforward": "qfleet.feedforward",
    "measurement": "qfleet.measurement",
    "calibration": "qfleet.calibration",
    "command": "qfleet.control.command",
    # Ground truth (``qfleet.truth.*`` attributes) and announcements, as spans so that every ingestion path
    # carries them:
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
              "Link entanglement requests (one per job and fibre segment) by link and outcome"),
    MetricDef("qfleet.entanglement.pairs", "counter", "{pair}", "Heralded pairs delivered (one per job shot)"),
    MetricDef("qfleet.entanglement.attempts", "counter", "{attempt}", "Heralding attempts by link"),
    MetricDef("qfleet.entanglement.latency", "histogram", "s", "Time to a heralded pair", _LAT_S),
    MetricDef("qfleet.feedforward.latency", "histogram", "s", "Classical feedforward latency per job", _LAT_S),
    MetricDef("qfleet.coherence_window.usage", "histogram", "1",
              "(storage wait + classical latency) / coherence window, per job", _USAGE),
    MetricDef("qfleet.job.fidelity", "histogram", "1", "Measured end-to-end fidelity per job", _FID),
    MetricDef("qfleet.orchestrator.latency", "histogram", "s", "Scheduling decision latency per job", _LAT_S),
    MetricDef("qfleet.node.heartbeats", "counter", "{heartbeat}", "Heartbeats received from each node"),
    MetricDef("qfleet.node.up", "gauge", "", "1 while the node's heartbeats arrive, else 0"),
    # Measured at each calibration (simulator/calibration.py) and stale in between; see docs/signals.md.
    MetricDef("qfleet.node.t1", "gauge", "s", "T1 from the last calibration's relaxation sweep (1e9: no decay)"),
    MetricDef("qfleet.node.t1.stderr", "gauge", "s", "Standard error of qfleet.node.t1"),
    MetricDef("qfleet.node.t2", "gauge", "s", "T2 from the last calibration's Hahn-echo sweep"),
    MetricDef("qfleet.node.t2.stderr", "gauge", "s", "Standard error of qfleet.node.t2"),
    MetricDef("qfleet.node.gate_error", "gauge", "1",
              "Depolarising error per gate by qubits (1 or 2), from the last calibration's randomized benchmarking"),
    MetricDef("qfleet.node.readout_error", "gauge", "1",
              "Readout error P(wrong | state) by prepared state, from the last calibration's assignment shots"),
    MetricDef("qfleet.node.calibration.age", "gauge", "s", "Time since the node's last completed calibration"),
    MetricDef("qfleet.entanglement.heralds", "counter", "{herald}",
              "Heralded successes by link (measured heralding rate = rate(heralds) / rate(attempts))"),
    MetricDef("qfleet.canary.checks", "counter", "{check}",
              "Canary shots' stabilizer checks by node and outcome (pass | fail)"),
    MetricDef("qfleet.measurement.variance", "gauge", "1",
              "Variance of canary check outcomes on the node over the last step"),
    MetricDef("qfleet.scheduler.queue.depth", "gauge", "{job}", "Pending jobs by tenant"),
    MetricDef("qfleet.scheduler.queue.age", "gauge", "s", "Age of the oldest pending job by tenant"),
    MetricDef("qfleet.calibrations", "counter", "{calibration}", "Completed calibrations by node"),
    MetricDef("qfleet.audit.events", "counter", "{event}", "Control commands by node, principal, authorization"),
    # Ground truth: the simulator's own record of the device, which no control system sees. Never read by rules,
    # SLOs or dashboards (validation refuses them); only game-day scoring and tests use them.
    MetricDef("qfleet.truth.node.t1", "gauge", "s", "GROUND TRUTH: the node's true T1 now (1e9: no T1 process)"),
    MetricDef("qfleet.truth.node.t2", "gauge", "s", "GROUND TRUTH: the node's true T2 now"),
    MetricDef("qfleet.truth.node.gate_error", "gauge", "1",
              "GROUND TRUTH: the node's true depolarising gate error by qubits (1 or 2)"),
    MetricDef("qfleet.truth.node.readout_error", "gauge", "1",
              "GROUND TRUTH: the node's true readout error P(wrong | state) by prepared state"),
    MetricDef("qfleet.truth.link.heralding_probability", "gauge", "1",
              "GROUND TRUTH: the link's true per-attempt heralding probability (its worst segment)"),
)}

#: Name prefixes of ground truth, in OpenTelemetry and Prometheus spelling.
TRUTH_PREFIXES: tuple[str, ...] = ("qfleet.truth.", "qfleet_truth_")


def is_truth_metric(name: str) -> bool:
    """Whether ``name`` (OpenTelemetry or Prometheus spelling, any case) is a ground-truth series or attribute.

    >>> is_truth_metric("qfleet.truth.node.t2"), is_truth_metric("QFLEET_TRUTH_node_t2_seconds")
    (True, True)
    >>> is_truth_metric("qfleet_node_t2_seconds"), is_truth_metric("qfleet.node.t2")
    (False, False)
    """
    return name.lower().startswith(TRUTH_PREFIXES)


def run_hash(payload: str) -> str:
    """16 hex characters naming a run (the first half of every trace id of that run)."""
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class SpanBuffer:
    """Spans under construction, one tuple each; :meth:`take` hands them over as :class:`SpanColumns`."""

    __slots__ = ("rows",)

    _FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_time_unix_nano",
               "end_time_unix_nano", "status_code", "status_message", "attributes", "node_id", "link_id",
               "job_id", "run_id", "hardware_type")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, trace_id: str, span_id: str, parent: str | None, name: str, start: int, end: int,
            attributes: dict[str, Any], *, node: str | None = None, link: str | None = None,
            job: str | None = None, run: str | None = None, hardware: str | None = None,
            error: str = "", kind: int = 1) -> None:
        """Append one span (times in ns; ``error`` non-empty sets status ERROR with that message).

        The promoted values travel as columns, not attributes (a fleet-day holds millions of spans); over OTLP,
        which has no columns, :func:`qfleet.simulator.sinks.readable_spans` adds them as ``qfleet.*`` attributes.
        """
        # One tuple per span, transposed to columns at C speed in take(): the hot loop appends once.
        self.rows.append((trace_id, span_id, parent, name, kind, start, end, 2 if error else 0, error, attributes,
                          node, link, job, run, hardware))

    def take(self) -> SpanColumns:
        """The buffered spans as columns; the buffer starts empty again."""
        rows, self.rows = self.rows, []
        cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in self._FIELDS]
        return SpanColumns(**dict(zip(self._FIELDS, cols, strict=True)))


class _Hist:
    """One histogram series (updated by :meth:`MetricsAccumulator.observe`)."""

    __slots__ = ("bounds", "counts", "total", "n", "lo", "hi")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0
        self.lo = float("inf")
        self.hi = float("-inf")


class MetricsAccumulator:
    """Cumulative counters and histograms plus last-value gauges, snapshotted as ``MetricsData``.

    Labels are passed as a tuple of ``(key, value)`` pairs so that they can key a dict cheaply.

    A series is reported when its value changed since it was last reported, or when ``refresh_ns`` passed
    (Prometheus treats a series unreported for 5 minutes as stale), so that constant device parameters do not
    repeat every step; the metrics in ``every_step`` (probes, such as ``qfleet.node.up``) are reported every step.

    Args:
        resource: attributes of the simulator's resource (``service.name``, ``qfleet.run.id``).
        start_ns: the run's start: the start time of every cumulative point.
        refresh_ns: longest gap between two reports of an unchanged series.
    """

    def __init__(self, resource: Mapping[str, Any], start_ns: int, *, refresh_ns: int = 300 * NS,
                 every_step: frozenset[str] = frozenset({"qfleet.node.up"})) -> None:
        self.resource = Resource(dict(resource))
        self._resource_attrs = dict(resource)
        self.start_ns = start_ns
        self.refresh_ns = refresh_ns
        self.every_step = every_step
        # Per metric: the value and time each series was last reported at.
        self._reported: dict[str, dict[_Labels, tuple[float, int]]] = {name: {} for name in METRICS}
        self._counters: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}
        self._hists: dict[str, dict[tuple[tuple[str, Any], ...], _Hist]] = {}
        self._gauges: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}
        for m in METRICS.values():
            if m.kind == "counter":
                self._counters[m.name] = {}
            elif m.kind == "histogram":
                self._hists[m.name] = {}
            else:
                self._gauges[m.name] = {}

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
        # OTel explicit buckets are upper-inclusive: v <= bound falls in that bucket.
        hist.counts[bisect_left(hist.bounds, value)] += 1
        hist.total += value
        hist.n += 1
        if value < hist.lo:
            hist.lo = value
        if value > hist.hi:
            hist.hi = value

    def set(self, name: str, labels: tuple[tuple[str, Any], ...], value: float) -> None:
        """Set a gauge."""
        self._gauges[name][labels] = value

    def _due(self, name: str, values: Iterable[tuple[_Labels, float]], t_ns: int) -> list[_Labels]:
        """The labels of the series of ``name`` due for a report at ``t_ns``, from their ``(labels, value)``."""
        if name in self.every_step:
            return [k for k, _ in values]  # an availability probe: every step is one event of the SLI
        reported = self._reported[name]
        refresh = self.refresh_ns
        due = []
        for k, v in values:
            last = reported.get(k)
            if last is None or last[0] != v or t_ns - last[1] >= refresh:
                reported[k] = (v, t_ns)
                due.append(k)
        return due

    def snapshot(self, t_ns: int) -> MetricsData:
        """The series due for a report (see the class), as points at simulated time ``t_ns``."""
        return self.points(t_ns).to_metrics_data()

    def points(self, t_ns: int) -> MetricPoints:
        """What :meth:`snapshot` reports, as plain values (see :class:`MetricPoints`)."""
        due = self._due
        counters = []
        for name, series in self._counters.items():
            pts = tuple((k, series[k]) for k in due(name, series.items(), t_ns))
            if pts:
                counters.append((name, pts))
        hists = []
        for name, hs in self._hists.items():
            hp = []
            for k in due(name, ((lab, hist.n) for lab, hist in hs.items()), t_ns):
                h = hs[k]
                hp.append((k, h.n, h.total, tuple(h.counts), h.lo, h.hi))
            if hp:
                hists.append((name, tuple(hp)))
        gauges = []
        for name, gs in self._gauges.items():
            pts = tuple((k, gs[k]) for k in due(name, gs.items(), t_ns))
            if pts:
                gauges.append((name, pts))
        return MetricPoints(self._resource_attrs, self.start_ns, t_ns, tuple(counters), tuple(hists), tuple(gauges))


_Hpoint = tuple[_Labels, int, float, tuple[int, ...], float, float]  # labels, count, sum, bucket counts, min, max


@dataclass(frozen=True, slots=True)
class MetricPoints:
    """One snapshot's due series as plain values: cheap to pickle to another process, which builds the
    OpenTelemetry form there (:meth:`to_metrics_data`) instead of the engine.

    Attributes:
        resource: the resource's attributes.
        start_ns: start of every cumulative point (the run's start).
        t_ns: time of every point.
        counters: per counter, ``(labels, value)`` of its due series.
        histograms: per histogram, ``(labels, count, sum, bucket counts, min, max)`` (bounds: :data:`METRICS`).
        gauges: per gauge, ``(labels, value)``.
    """

    resource: Mapping[str, Any]
    start_ns: int
    t_ns: int
    counters: tuple[tuple[str, tuple[tuple[_Labels, float], ...]], ...]
    histograms: tuple[tuple[str, tuple[_Hpoint, ...]], ...]
    gauges: tuple[tuple[str, tuple[tuple[_Labels, float], ...]], ...]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by value through the constructor (the writer process gets these): compiled by mypyc (setup.py),
        # a frozen class refuses the field-by-field restore that pickle's default does.
        return (MetricPoints, tuple(getattr(self, f) for f in self.__dataclass_fields__))

    def to_metrics_data(self) -> MetricsData:
        """The points as OpenTelemetry ``MetricsData`` (what an exporter or the collector's converter takes)."""
        start, t_ns = self.start_ns, self.t_ns
        metrics: list[Metric] = []
        for name, pts in self.counters:
            m = METRICS[name]
            metrics.append(Metric(name=name, description=m.description, unit=m.unit, data=Sum(
                data_points=[NumberDataPoint(attributes=dict(k), start_time_unix_nano=start, time_unix_nano=t_ns,
                                             value=v) for k, v in pts],
                aggregation_temporality=AggregationTemporality.CUMULATIVE, is_monotonic=True)))
        for name, hps in self.histograms:
            m = METRICS[name]
            metrics.append(Metric(name=name, description=m.description, unit=m.unit, data=Histogram(
                data_points=[HistogramDataPoint(attributes=dict(k), start_time_unix_nano=start, time_unix_nano=t_ns,
                                                count=n, sum=total, bucket_counts=list(counts),
                                                explicit_bounds=list(m.bounds), min=lo, max=hi)
                             for k, n, total, counts, lo, hi in hps],
                aggregation_temporality=AggregationTemporality.CUMULATIVE)))
        for name, pts in self.gauges:
            m = METRICS[name]
            metrics.append(Metric(name=name, description=m.description, unit=m.unit, data=Gauge(
                data_points=[NumberDataPoint(attributes=dict(k), start_time_unix_nano=0, time_unix_nano=t_ns, value=v)
                             for k, v in pts])))
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=Resource(dict(self.resource)), scope_metrics=[ScopeMetrics(
                scope=InstrumentationScope(SCOPE), metrics=metrics, schema_url="")], schema_url="")])

    def to_batch(self) -> TelemetryBatch:
        """The points as store rows: what ``from_metrics_data(self.to_metrics_data())`` gives, row for row, without
        building the SDK's objects first (that round trip cost the simulator's writer process about 4 % of its
        instructions)."""
        batch = TelemetryBatch()
        sink = MetricSink(batch)
        res = resource_row(batch, sdk_attributes(self.resource))
        t_ns, cumulative = self.t_ns, int(AggregationTemporality.CUMULATIVE)
        for name, pts in self.counters:
            m = METRICS[name]
            pname = prometheus_name(name, m.unit, counter=True, gauge=False)
            for k, v in pts:
                sink.add(res, pname, MetricType.SUM, cumulative, True, m.unit, m.description, sdk_attributes(dict(k)),
                         t_ns, v)
        for name, hps in self.histograms:
            m = METRICS[name]
            base = prometheus_name(name, m.unit, counter=False, gauge=False)
            for k, n, total, counts, _lo, _hi in hps:
                sink.histogram(res, base, cumulative, m.unit, m.description, sdk_attributes(dict(k)), t_ns, n, total,
                               m.bounds, counts)
        for name, pts in self.gauges:
            m = METRICS[name]
            pname = prometheus_name(name, m.unit, counter=False, gauge=True)
            for k, v in pts:
                sink.add(res, pname, MetricType.GAUGE, 0, False, m.unit, m.description, sdk_attributes(dict(k)), t_ns,
                         v)
        return batch


def labels(**kv: Any) -> tuple[tuple[str, Any], ...]:
    """A label tuple from keyword arguments (``node="qpu-a"`` becomes ``("qfleet.node.id", "qpu-a")``)."""
    return tuple((_KEYS.get(k, k), v) for k, v in kv.items())


_KEYS = {"node": "qfleet.node.id", "link": "qfleet.link.id", "hardware": "qfleet.hardware.type",
         "tenant": "qfleet.tenant", "kind": "qfleet.job.kind", "outcome": "qfleet.outcome"}
