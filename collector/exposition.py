"""The receiver's Prometheus view: its own health counters and the fleet's latest series.

:class:`ReceiverMetrics` owns the ``qfleet_collector_*`` series every pipeline stage counts
into (received, stored, rejected, refused, dropped, requests, write durations) in one
registry that ``GET /metrics`` serves. :class:`FleetSeriesCollector` adds, at each scrape,
the latest stored sample of every fresh series the fleet pushed (counters, gauges,
histograms), named and labelled as ``qfleet slo rules`` selects them, so that a
Prometheus can scrape the fleet through the collector and run the SLO rules on it.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from qfleet.collector.consumer import POINTS, REFUSE_REASONS, REJECT_REASONS, SIGNALS, SignalName
from qfleet.collector.remote_write import SKIP_REASONS
from qfleet.collector.schema import PROMOTED_ATTRIBUTES, MetricType, Temporality
from qfleet.collector.store import SeriesSample, Store
from qfleet.units import NS

__all__ = ["CONTENT_TYPE", "OMIT_REASONS", "FleetLimits", "FleetSeriesCollector", "ReceiverMetrics", "label_name",
           "le_text"]

logger = logging.getLogger(__name__)

#: Content-Type of :meth:`ReceiverMetrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ReceiverMetrics:
    """The ``qfleet_collector_*`` series, in ``registry`` (a new one by default).

    A new registry also gets the process, platform and GC collectors; a given one does not
    (it may already have them). Never the global registry, so that several receivers can
    live in one process.

    Examples:
        >>> m = ReceiverMetrics(CollectorRegistry())
        >>> m.refused("spans", "queue_full", 40)
        >>> b'qfleet_collector_refused_total{reason="queue_full",signal="spans"} 40.0' in m.exposition()
        True
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.own_registry = registry is None
        reg = self.registry = registry if registry is not None else CollectorRegistry()
        if self.own_registry:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
        received = Counter("qfleet_collector_received_total", "Spans and metric points decoded from "
                           "OTLP requests", ["signal"], registry=reg)
        stored = Counter("qfleet_collector_stored_total", "Spans and metric points committed to the "
                         "database (re-deliveries included)", ["signal"], registry=reg)
        rejected = Counter("qfleet_collector_rejected_total", "Data refused for good: reason=invalid "
                           "counts items rejected by partial success, unstorable items the database "
                           "refused (400), too_large items over the queue size or requests over the "
                           "decompression limit, malformed whole requests answered 400",
                           ["signal", "reason"], registry=reg)
        refused = Counter("qfleet_collector_refused_total", "Items answered 503 (408 for "
                          "reason=body_timeout) for the client to retry; reason=inflight, inflight_bytes, "
                          "body_timeout and stopping count requests (refused before decoding)",
                          ["signal", "reason"], registry=reg)
        dropped = Counter("qfleet_collector_dropped_total", "Queued items discarded without a commit "
                          "when the receiver stopped (should stay 0)", ["signal"], registry=reg)
        skipped = Counter("qfleet_collector_skipped_total", "Remote-write samples not stored, by design, "
                          "not as an error: reason=stale_marker (Prometheus' end-of-series marker), nan (a NaN "
                          "value: the store holds none), exemplar (exemplars are not stored)",
                          ["signal", "reason"], registry=reg)
        self._requests = Counter("qfleet_collector_requests_total", "Requests by path and status code "
                                 "(OTLP/gRPC: the method and the status name)", ["path", "code"], registry=reg)
        self._unparsable = Counter("qfleet_collector_unparsable_requests_total", "Requests whose request "
                                   "line or headers did not parse (answered 400 by the HTTP server, "
                                   "e.g. a malformed Content-Length)", registry=reg)
        self._write_failures = Counter("qfleet_collector_write_failures_total",
                                       "Failed write transactions", registry=reg)
        self._rollup_failures = Counter("qfleet_collector_rollup_failures_total",
                                        "Failed rollup refreshes", registry=reg)
        self._write_seconds = Histogram("qfleet_collector_write_seconds", "Duration of one write "
                                        "transaction", registry=reg, buckets=_WRITE_BUCKETS)
        # Every label set exists from the start, so a scrape shows zeros rather than nothing.
        self._received = {s: received.labels(s) for s in SIGNALS}
        self._stored = {s: stored.labels(s) for s in SIGNALS}
        self._dropped = {s: dropped.labels(s) for s in SIGNALS}
        self._skipped = {r: skipped.labels(POINTS, r) for r in SKIP_REASONS}
        self._rejected = {(s, r): rejected.labels(s, r) for s in SIGNALS for r in REJECT_REASONS}
        self._refused = {(s, r): refused.labels(s, r) for s in SIGNALS for r in REFUSE_REASONS}

    def received(self, signal: SignalName, n: int) -> None:
        """``n`` items decoded from a request."""
        self._received[signal].inc(n)

    def stored(self, signal: SignalName, n: int) -> None:
        """``n`` items committed."""
        self._stored[signal].inc(n)

    def rejected(self, signal: SignalName, reason: str, n: int = 1) -> None:
        """``n`` items (or one request) refused for good; ``reason`` is one of ``REJECT_REASONS``."""
        self._rejected[signal, reason].inc(n)

    def refused(self, signal: SignalName, reason: str, n: int) -> None:
        """``n`` items (or one request) answered 503; ``reason`` is one of ``REFUSE_REASONS``."""
        self._refused[signal, reason].inc(n)

    def skipped(self, reason: str, n: int) -> None:
        """``n`` remote-write samples not stored by design; ``reason`` is one of ``SKIP_REASONS``."""
        self._skipped[reason].inc(n)

    def dropped(self, signal: SignalName, n: int) -> None:
        """``n`` queued items discarded at stop."""
        self._dropped[signal].inc(n)

    def request(self, path: str, code: int | str) -> None:
        """One answer: an HTTP status code, or a gRPC status name such as ``UNAVAILABLE``."""
        self._requests.labels(path, str(code)).inc()

    def unparsable(self) -> None:
        """One request the HTTP parser refused (400 before the application saw it)."""
        self._unparsable.inc()

    def write_failed(self) -> None:
        """One failed write transaction."""
        self._write_failures.inc()

    def rollup_failed(self) -> None:
        """One failed rollup refresh."""
        self._rollup_failures.inc()

    def observe_write(self, seconds: float) -> None:
        """The duration of one committed write transaction."""
        self._write_seconds.observe(seconds)

    def gauge(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        """A gauge read from ``value`` at every scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(value)

    def constant(self, name: str, documentation: str, value: float) -> None:
        """A gauge with a fixed value (a configured limit)."""
        Gauge(name, documentation, registry=self.registry).set(value)

    def add_fleet_series(self, store: Store, limits: FleetLimits | None = None) -> None:
        """Serve the latest value of every fresh fleet series stored in ``store`` too (:class:`FleetSeriesCollector`)."""
        reserved = ("qfleet_collector_", "process_", "python_") if self.own_registry else ("qfleet_collector_",)
        self.registry.register(FleetSeriesCollector(store, reserved_prefixes=reserved, limits=limits))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, without ``*_created`` series."""
        return generate_latest(_WithoutCreated(self.registry))


# ------------------------------------------------------------------------------------------------------------
# The fleet's series


def label_name(key: str) -> str:
    """The Prometheus label name of an attribute key, as Prometheus' OTLP translator writes it (``NormalizeLabel``).

    Every mark but letters, digits and ``_`` becomes ``_``; a leading digit gets ``key_`` and a leading single ``_``
    gets ``key``. A ``__`` prefix, which Prometheus reserves, is kept for the caller to refuse (the rules raise,
    the exposition leaves the series out); the empty key becomes ``key_``. ``qfleet.slo.rules`` writes its label
    names with this function too, so the rules select exactly the labels ``/metrics`` serves.

    >>> [label_name(k) for k in ("qfleet.hardware.type", "2fa", "_x", "__name__", "")]
    ['qfleet_hardware_type', 'key_2fa', 'key_x', '__name__', 'key_']
    """
    name = _LABEL_INVALID.sub("_", key)
    if not name or name[0].isdigit():
        return "key_" + name
    if name[0] == "_" and not name.startswith("__"):
        return "key" + name
    return name


def le_text(bound: float) -> str:
    """A bucket bound (or quantile) as Prometheus' OTLP ingestion writes its label: the shortest decimal that reads
    back as ``bound``, without an exponent (Go's ``FormatFloat(b, 'f', -1, 64)``).

    >>> [le_text(b) for b in (1.0, 1e-05, 0.01, 250.0, float("inf"))]
    ['1', '0.00001', '0.01', '250', '+Inf']
    """
    if math.isinf(bound):
        return "+Inf" if bound > 0 else "-Inf"
    if math.isnan(bound):
        return "NaN"
    return format(Decimal(repr(bound)).normalize(), "f")


def _label_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def _bound_label(text: str) -> str:
    """A stored ``le``/``quantile`` label (Python's ``repr`` of the bound) in :func:`le_text` form."""
    try:
        return le_text(float(text))
    except ValueError:
        return text


#: Why a fresh fleet series is missing from a scrape: the ``reason`` of ``qfleet_collector_fleet_series_omitted``.
OMIT_REASONS = ("series_limit", "bytes_limit", "reserved_name", "invalid_name", "reserved_label", "delta", "nan",
                "duplicate", "type_conflict", "histogram_inconsistent")


@dataclass(frozen=True, slots=True)
class FleetLimits:
    """What one scrape of the fleet's series may cost, and how old a series may be.

    Args:
        max_series: series read from the store per scrape (in metric-name order); beyond it, whole families.
        max_bytes: an upper bound on the fleet families' text per scrape; families past it are left out whole.
        stale_after_ns: a series whose newest sample is older than this (by the store's clock) is no longer
            served, as the OpenTelemetry Collector's Prometheus exporter expires series (``metric_expiration``,
            5m); Prometheus then marks it stale.

    Raises:
        ValueError: a limit that is not a positive integer.
    """

    max_series: int = 10_000
    max_bytes: int = 4 * 1024 * 1024
    stale_after_ns: int = 5 * 60 * NS

    def __post_init__(self) -> None:
        for field in ("max_series", "max_bytes", "stale_after_ns"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"FleetLimits {field}={v!r}: must be a positive integer")


class _Row(NamedTuple):
    """One exposable series: its family, the sample's name and labels, value and identity."""

    family: str
    kind: str  # counter | gauge | histogram | summary | untyped
    name: str
    labels: dict[str, str]
    value: float
    time: int
    series_id: int
    description: str


def _family_of(s: SeriesSample) -> tuple[str, str]:
    """``(family name, type)`` of a stored series, from how the store shaped it (metric_rows.py)."""
    name, mtype = s.metric_name, s.metric_type
    if mtype == MetricType.GAUGE or (mtype == MetricType.SUM and not s.is_monotonic):
        return name, "gauge"  # a non-monotonic sum is a gauge in Prometheus
    if mtype == MetricType.SUM:
        if name.endswith("_total") and len(name) > 6:
            return name[:-6], "counter"
        return name, "untyped"  # a counter without _total cannot be typed without renaming it
    if mtype in (MetricType.HISTOGRAM, MetricType.EXPONENTIAL_HISTOGRAM, MetricType.SUMMARY):
        kind = "summary" if mtype == MetricType.SUMMARY else "histogram"
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and len(name) > len(suffix) and not (kind == "summary" and suffix == "_bucket"):
                return name[:-len(suffix)], kind
        return (name, kind) if kind == "summary" else (name, "untyped")
    return name, "untyped"


class FleetSeriesCollector(Collector):
    """Exposes the latest stored sample of every fresh fleet series, typed as Prometheus would type it.

    What a scrape serves (docs/prometheus.md, "Scrape qfleet"):

    - names as stored (the OTLP translation, metric_rows.py); cumulative monotonic sums named ``*_total`` are
      counters, gauges and non-monotonic sums gauges, ``_bucket``/``_count``/``_sum`` histograms and summaries
      (``le`` and ``quantile`` written as Prometheus' OTLP ingestion writes them: ``le="1"``, not ``"1.0"``);
      anything else is untyped;
    - labels: the point's attributes through :func:`label_name`, plus the promoted ``qfleet.node.id``,
      ``qfleet.link.id`` and ``qfleet.hardware.type`` when they came from the resource (as Prometheus'
      ``promote_resource_attributes`` does); empty values are left out (Prometheus treats them as absent);
    - no timestamps: the scrape stamps them, as with any exporter; series with no sample for
      ``limits.stale_after_ns`` (by the store's clock) are not served;
    - left out, and counted by reason in ``qfleet_collector_fleet_series_omitted``: names with a reserved prefix
      or a ``:`` (recording-rule names), invalid names, a ``__`` label, delta temporality (a delta's latest value
      is not a counter), NaN, a histogram whose series disagree (missing ``+Inf`` or ``_count``, decreasing
      buckets, different times), a series whose family already has another type, and whatever the limits cut;
    - two resources reporting the same name and labels (two runs of the simulator, say): the one with the newest
      sample is served (ties: the newer series), the others are counted as ``duplicate``.

    A failing query (database not migrated or not reachable) is logged and counted; the scrape still serves the
    receiver's own metrics.
    """

    def __init__(self, store: Store, *, reserved_prefixes: tuple[str, ...] = (),
                 limits: FleetLimits | None = None) -> None:
        self._store = store
        self._reserved = reserved_prefixes
        self._limits = limits or FleetLimits()
        self._lock = threading.Lock()
        self._failures = 0

    def collect(self) -> Iterable[Metric]:
        """One query per scrape; a family per metric (histograms: per base name)."""
        lim = self._limits
        try:
            rows, total = self._store.latest_samples(since_ns=self._store.clock() - lim.stale_after_ns,
                                                     limit=lim.max_series)
        except Exception as err:  # the scrape must still serve the receiver's own metrics
            logger.warning("fleet series unavailable (is the database migrated and reachable?): %s", err)
            with self._lock:
                self._failures += 1
            return self._own(None)
        families, omitted = self._families(rows, total)
        return [*families, *self._own(omitted, sum(len(f.samples) for f in families))]

    def _own(self, omitted: dict[str, int] | None, exposed: int = 0) -> list[Metric]:
        with self._lock:
            failures = self._failures
        fails = CounterMetricFamily("qfleet_collector_fleet_query_failures", "Scrapes whose query of the fleet's "
                                    "series failed (they served no fleet series)", value=failures)
        out: list[Metric] = [fails]
        if omitted is not None:
            out.append(GaugeMetricFamily("qfleet_collector_fleet_series_exposed", "Fleet series in this scrape",
                                         value=exposed))
            om = GaugeMetricFamily("qfleet_collector_fleet_series_omitted", "Fresh fleet series left out of this "
                                   "scrape, by reason (series with no sample for the staleness horizon are "
                                   "expired, not counted)", labels=["reason"])
            for reason in OMIT_REASONS:
                om.add_metric([reason], omitted[reason])
            out.append(om)
        return out

    def _families(self, rows: list[SeriesSample], total: int) -> tuple[list[Metric], dict[str, int]]:
        omitted = dict.fromkeys(OMIT_REASONS, 0)
        if total > len(rows) and rows:
            # The limit may have cut the last family in two: leave it out whole.
            cut = _family_of(rows[-1])[0]
            rows = [r for r in rows if _family_of(r)[0] != cut]
        omitted["series_limit"] = max(total - len(rows), 0)
        kinds: dict[str, str] = {}
        chosen: dict[tuple[str, frozenset[tuple[str, str]]], _Row] = {}
        for s in rows:
            row = self._row(s, omitted)
            if row is None:
                continue
            if kinds.setdefault(row.family, row.kind) != row.kind:
                omitted["type_conflict"] += 1
                continue
            key = (row.name, frozenset(row.labels.items()))
            prev = chosen.get(key)
            if prev is not None:
                omitted["duplicate"] += 1
                if (prev.time, prev.series_id) > (row.time, row.series_id):
                    continue
            chosen[key] = row
        by_family: dict[str, list[_Row]] = {}
        for row in chosen.values():
            by_family.setdefault(row.family, []).append(row)
        out: list[Metric] = []
        budget = self._limits.max_bytes
        for fam in sorted(by_family):
            members = by_family[fam]
            if kinds[fam] == "histogram":
                members = _consistent_histograms(members, omitted)
                if not members:
                    continue
            metric = _metric(fam, kinds[fam], members)
            size = _text_bytes(metric)
            if size > budget:
                omitted["bytes_limit"] += len(members)
                continue
            budget -= size
            out.append(metric)
        return out, omitted

    def _row(self, s: SeriesSample, omitted: dict[str, int]) -> _Row | None:
        """The exposable form of ``s``, or None (counted in ``omitted``)."""
        name = s.metric_name
        if not _METRIC_NAME.fullmatch(name):
            omitted["invalid_name"] += 1
            return None
        if name.startswith(self._reserved) or ":" in name:  # ours, or a recording rule's
            omitted["reserved_name"] += 1
            return None
        if s.temporality == Temporality.DELTA:
            omitted["delta"] += 1
            return None
        if s.value is None or math.isnan(s.value):
            omitted["nan"] += 1
            return None
        labels: dict[str, str] = {}
        for k, v in s.labels.items():
            text = _label_value(v)
            if text:
                labels.setdefault(label_name(str(k)), text)  # two keys that sanitise alike: the first wins
        for column, value in (("node_id", s.node_id), ("link_id", s.link_id), ("hardware_type", s.hardware_type)):
            if value:
                labels.setdefault(label_name(PROMOTED_ATTRIBUTES[column]), value)
        if any(k.startswith("__") for k in labels):
            omitted["reserved_label"] += 1
            return None
        family, kind = _family_of(s)
        for bound in ("le", "quantile"):
            if bound in labels and kind in ("histogram", "summary"):
                labels[bound] = _bound_label(labels[bound])
        return _Row(family, kind, name, labels, float(s.value), s.time_unix_nano, s.series_id, s.description)


def _consistent_histograms(members: list[_Row], omitted: dict[str, int]) -> list[_Row]:
    """The series of the family's histograms that Prometheus can read as histograms, in exposition order.

    A histogram (one label set without ``le``) must have a ``+Inf`` bucket equal to its ``_count``, buckets that
    never decrease, and all its series from one point in time; otherwise all of its series are left out.
    """
    groups: dict[frozenset[tuple[str, str]], list[_Row]] = {}
    for r in members:
        groups.setdefault(frozenset((k, v) for k, v in r.labels.items() if k != "le"), []).append(r)
    out: list[_Row] = []
    for key in sorted(groups, key=sorted):
        rows = groups[key]
        buckets = sorted((r for r in rows if r.name.endswith("_bucket")), key=lambda r: float(r.labels.get("le", "nan")))
        count = [r for r in rows if r.name.endswith("_count")]
        rest = [r for r in rows if not r.name.endswith(("_bucket", "_count"))]
        values = [b.value for b in buckets]
        ok = (len(count) == 1 and buckets and buckets[-1].labels.get("le") == "+Inf"
              and values[-1] == count[0].value and all(a <= b for a, b in itertools.pairwise(values))
              and len({r.time for r in rows}) == 1)
        if not ok:
            omitted["histogram_inconsistent"] += len(rows)
            continue
        out += [*buckets, *count, *rest]
    return out


def _metric(family: str, kind: str, members: list[_Row]) -> Metric:
    doc = next((r.description for r in members if r.description), f"Latest stored value of the fleet's {family}")
    m = Metric(family, doc, kind)
    if kind != "histogram":  # histograms come ordered by _consistent_histograms
        members = sorted(members, key=lambda r: (r.name, sorted(r.labels.items())))
    for r in members:
        m.add_sample(r.name, r.labels, r.value)
    return m


def _text_bytes(m: Metric) -> int:
    """An upper bound on the bytes of ``m`` in the text format (each value at most 24 characters, each label value
    escaped at most to twice its length)."""
    n = 2 * len(m.name) + len(m.documentation) * 2 + 40
    for s in m.samples:
        n += len(s.name) + 28 + sum(len(k) + 2 * len(v.encode()) + 4 for k, v in s.labels.items())
    return n


class _WithoutCreated:
    """The registry's metrics minus the ``*_created`` series (noise for Prometheus 2.x scrapes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for m in self._registry.collect():
            if m.type in ("counter", "histogram", "summary"):
                created = m.name + "_created"
                m.samples = [s for s in m.samples if s.name != created]
            yield m
