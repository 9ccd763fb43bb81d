"""Metric points into store rows (series and samples), named and shaped as Prometheus does.

Two inputs share one :class:`MetricSink`: decoded OTLP metrics requests and the
OpenTelemetry SDK's ``MetricsData``. Histograms become ``_bucket`` (cumulative, with ``le``),
``_count`` and ``_sum`` series; summaries become quantile, ``_sum`` and ``_count`` series.
Invalid points (no time, NaN) are counted and described in the batch, never raised.
Nothing here touches I/O.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric as OtlpMetric

from qfleet.collector.limits import Limits
from qfleet.collector.otlp import AttributeReader
from qfleet.collector.rows import (
    MAX_NS,
    ResourceRow,
    SeriesRow,
    TelemetryBatch,
    fingerprint,
    promoted,
    resource_row,
)
from qfleet.collector.schema import PROMOTED_ATTRIBUTES, MetricType, Temporality
from qfleet.collector.span_rows import sdk_attributes

__all__ = ["MetricSink", "from_metrics_data", "from_metrics_request", "prometheus_name", "series_fingerprint"]

_DEFAULT_LIMITS = Limits()

_NODE_KEY, _LINK_KEY, _HW_KEY = (
    PROMOTED_ATTRIBUTES["node_id"],
    PROMOTED_ATTRIBUTES["link_id"],
    PROMOTED_ATTRIBUTES["hardware_type"],
)
_UNIT_SUFFIX = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "m": "meters",
    "km": "kilometers",
    "K": "kelvin",
    "Hz": "hertz",
    "dB": "decibels",
}
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")


def prometheus_name(name: str, unit: str, *, counter: bool, gauge: bool) -> str:
    """The Prometheus name of an OTel metric, as OTel's Prometheus exporters build it.

    >>> prometheus_name("qfleet.feedforward.latency", "s", counter=False, gauge=False)
    'qfleet_feedforward_latency_seconds'
    >>> prometheus_name("qfleet.jobs", "{job}", counter=True, gauge=False)
    'qfleet_jobs_total'
    >>> prometheus_name("qfleet.link.fidelity", "1", counter=False, gauge=True)
    'qfleet_link_fidelity_ratio'
    """
    out = _INVALID_NAME.sub("_", name)
    if out[:1].isdigit():
        out = "_" + out
    suffix = _UNIT_SUFFIX.get(unit) or ("ratio" if unit == "1" and gauge else "")
    if suffix and not out.endswith("_" + suffix):
        out += "_" + suffix
    if counter and not out.endswith("_total"):
        out += "_total"
    return out


@functools.lru_cache(maxsize=1 << 16)
def _cached_fingerprint(name: str, resource_fp: str, items: tuple[tuple[str, Any], ...]) -> str:
    return fingerprint([name, resource_fp, dict(items)])


def series_fingerprint(name: str, resource_fp: str, labels: dict[str, Any]) -> str:
    """A series' identity in ``metric_series.fingerprint``: its name, its resource and its labels."""
    # The same series arrives every scrape or step: hash its identity once (lists are not hashable: no cache).
    try:
        return _cached_fingerprint(name, resource_fp, tuple(labels.items()))
    except TypeError:
        return fingerprint([name, resource_fp, labels])


def _le(bound: float) -> str:
    # slo.sli matches bucket bounds by this exact text.
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"


class MetricSink:
    """Adds series and samples to ``batch``; shared by the protobuf and SDK metric paths.

    Examples:
        >>> batch = TelemetryBatch()
        >>> sink = MetricSink(batch)
        >>> res = resource_row(batch, {"service.name": "agent"})
        >>> sink.add(res, "qfleet_link_fidelity_ratio", MetricType.GAUGE, 0, False, "1", "",
        ...          {"qfleet.link.id": "a~b"}, 10**18, 0.93)
        >>> len(batch.series), batch.samples[0][1:]
        (1, (1000000000000000000, 0.93))
    """

    def __init__(self, batch: TelemetryBatch, reader: AttributeReader | None = None) -> None:
        self.batch = batch
        self.reader = reader if reader is not None else AttributeReader(_DEFAULT_LIMITS)

    def labels(self, name: str, kvs: Sequence[KeyValue]) -> dict[str, Any] | None:
        """A data point's OTLP attributes as labels, or None (rejected) when a limit would cut them.

        Dropping or truncating labels would merge distinct series: the point is refused instead.
        """
        r = self.reader
        before = r.truncated
        labels, dropped = r.read(kvs)
        if dropped or r.truncated != before:
            r.truncated = before
            lim = r.limits
            self.batch.reject_point(
                f"metric {name[:100]!r}: a data point with {len(kvs)} attributes exceeds "
                f"max_attributes_per_item={lim.max_attributes_per_item}, "
                f"max_attribute_value_length={lim.max_attribute_value_length} or what is left of "
                f"max_attributes_per_request={lim.max_attributes_per_request}; split the request "
                "or shorten the labels")
            return None
        return labels

    def add(
        self, res: ResourceRow, name: str, mtype: MetricType, temporality: int, monotonic: bool,
        unit: str, description: str, labels: dict[str, Any], t: int, value: float,
    ) -> None:
        """One sample of the series ``(name, labels)`` under ``res``; invalid points are rejected."""
        if t <= 0 or t > MAX_NS:
            self.batch.reject_point(f"metric {name!r}: time_unix_nano={t} is missing or out of range")
            return
        if isinstance(value, float) and math.isnan(value):
            self.batch.reject_point(f"metric {name!r}: NaN value at {t} (not storable)")
            return
        fp = series_fingerprint(name, res.fingerprint, labels)
        if fp not in self.batch.series:
            ra = res.attributes
            self.batch.series[fp] = SeriesRow(
                (fp, name, int(mtype), int(temporality), monotonic, unit, description, labels,
                 res.fingerprint, promoted(labels, ra, _NODE_KEY),
                 promoted(labels, ra, _LINK_KEY), promoted(labels, ra, _HW_KEY))
            )
        self.batch.samples.append((fp, t, float(value)))

    def histogram(
        self, res: ResourceRow, base: str, temporality: int, unit: str, description: str,
        labels: dict[str, Any], t: int, count: int, total: float | None,
        bounds: Sequence[float], bucket_counts: Sequence[int],
    ) -> None:
        """One histogram point as Prometheus series: cumulative ``_bucket``s, ``_count``, ``_sum``."""
        if bucket_counts and len(bucket_counts) != len(bounds) + 1:
            self.batch.reject_point(
                f"histogram {base!r}: {len(bucket_counts)} bucket counts for {len(bounds)} "
                "bounds (need bounds + 1)"
            )
            return
        h = MetricType.HISTOGRAM
        running = 0
        for bound, c in zip(bounds, bucket_counts, strict=False):
            running += c
            self.add(res, base + "_bucket", h, temporality, True, unit, description,
                     {**labels, "le": _le(bound)}, t, running)
        self.add(res, base + "_bucket", h, temporality, True, unit, description,
                 {**labels, "le": "+Inf"}, t, count)
        self.add(res, base + "_count", h, temporality, True, unit, description, labels, t, count)
        if total is not None:
            self.add(res, base + "_sum", h, temporality, False, unit, description, labels, t, total)


# ---------------------------------------------------------------------------
# OTLP protobuf


def from_metrics_request(req: ExportMetricsServiceRequest, limits: Limits | None = None) -> TelemetryBatch:
    """Convert a decoded OTLP metrics request to store rows (histograms Prometheus-style).

    Data points whose labels exceed ``limits`` (default :class:`Limits`), or of a metric with
    an aggregation temporality outside OTLP's (0..2), are rejected and described.
    """
    batch = TelemetryBatch()
    reader = AttributeReader(limits or _DEFAULT_LIMITS)
    sink = MetricSink(batch, reader)
    for rm in req.resource_metrics:
        attrs, dropped = reader.read(rm.resource.attributes)
        batch.adjust("attributes", dropped)
        res = resource_row(batch, attrs)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data") or ""
                convert = _OTLP_KINDS.get(kind)
                if convert is None:
                    batch.reject_point(f"metric {m.name[:100]!r}: no data (gauge, sum, histogram or summary)")
                    continue
                temporality = getattr(m, kind).aggregation_temporality if kind in _TEMPORAL else 0
                if not 0 <= temporality <= _MAX_TEMPORALITY:
                    for _ in getattr(m, kind).data_points:
                        batch.reject_point(f"metric {m.name[:100]!r}: aggregation_temporality="
                                           f"{temporality} is not OTLP's (0..2)")
                    continue
                convert(sink, res, m)
    batch.adjust("values truncated", reader.truncated)
    batch.adjust("NULs replaced", reader.nuls)
    return batch


def _otlp_number(sink: MetricSink, res: ResourceRow, m: OtlpMetric) -> None:
    is_sum = m.HasField("sum")
    data = m.sum if is_sum else m.gauge
    temp = m.sum.aggregation_temporality if is_sum else 0
    mono = bool(is_sum and m.sum.is_monotonic)
    unit, desc = sink.reader.text(m.unit), sink.reader.text(m.description)
    name = prometheus_name(m.name, unit, counter=mono, gauge=not is_sum)
    mtype = MetricType.SUM if is_sum else MetricType.GAUGE
    for dp in data.data_points:
        which = dp.WhichOneof("value")
        if which is None or dp.flags & 1:  # flag 1: no recorded value
            sink.batch.reject_point(f"metric {m.name[:100]!r}: data point without a value")
            continue
        labels = sink.labels(m.name, dp.attributes)
        if labels is None:
            continue
        v = dp.as_double if which == "as_double" else dp.as_int
        sink.add(res, name, mtype, temp, mono, unit, desc, labels, dp.time_unix_nano, v)


def _otlp_histogram(sink: MetricSink, res: ResourceRow, m: OtlpMetric) -> None:
    unit, desc = sink.reader.text(m.unit), sink.reader.text(m.description)
    base = prometheus_name(m.name, unit, counter=False, gauge=False)
    temp = m.histogram.aggregation_temporality
    for dp in m.histogram.data_points:
        labels = sink.labels(m.name, dp.attributes)
        if labels is not None:
            sink.histogram(res, base, temp, unit, desc, labels, dp.time_unix_nano, dp.count,
                           dp.sum if dp.HasField("sum") else None, dp.explicit_bounds, dp.bucket_counts)


def _otlp_exponential_histogram(sink: MetricSink, res: ResourceRow, m: OtlpMetric) -> None:
    # Stored as count and sum only; the exponential buckets are not kept.
    unit, desc = sink.reader.text(m.unit), sink.reader.text(m.description)
    base = prometheus_name(m.name, unit, counter=False, gauge=False)
    temp = m.exponential_histogram.aggregation_temporality
    for dp in m.exponential_histogram.data_points:
        labels = sink.labels(m.name, dp.attributes)
        if labels is not None:
            sink.histogram(res, base, temp, unit, desc, labels, dp.time_unix_nano, dp.count,
                           dp.sum if dp.HasField("sum") else None, (), ())


def _otlp_summary(sink: MetricSink, res: ResourceRow, m: OtlpMetric) -> None:
    unit, desc = sink.reader.text(m.unit), sink.reader.text(m.description)
    base = prometheus_name(m.name, unit, counter=False, gauge=False)
    s, c = MetricType.SUMMARY, Temporality.CUMULATIVE
    for dp in m.summary.data_points:
        labels = sink.labels(m.name, dp.attributes)
        if labels is None:
            continue
        t = dp.time_unix_nano
        for q in dp.quantile_values:
            sink.add(res, base, s, c, False, unit, desc, {**labels, "quantile": repr(q.quantile)}, t, q.value)
        sink.add(res, base + "_sum", s, c, False, unit, desc, labels, t, dp.sum)
        sink.add(res, base + "_count", s, c, True, unit, desc, labels, t, dp.count)


_TEMPORAL = ("sum", "histogram", "exponential_histogram")
_MAX_TEMPORALITY = 2
_OTLP_KINDS: dict[str, Callable[[MetricSink, ResourceRow, OtlpMetric], None]] = {
    "gauge": _otlp_number,
    "sum": _otlp_number,
    "histogram": _otlp_histogram,
    "exponential_histogram": _otlp_exponential_histogram,
    "summary": _otlp_summary,
}


# ---------------------------------------------------------------------------
# The OpenTelemetry SDK's MetricsData


def from_metrics_data(data: Any) -> TelemetryBatch:
    """Convert the OpenTelemetry SDK's ``MetricsData`` to store rows."""
    from opentelemetry.sdk.metrics.export import (  # the SDK's data model, only needed here
        ExponentialHistogram,
        Gauge,
        Histogram,
        Sum,
    )

    batch = TelemetryBatch()
    sink = MetricSink(batch)
    for rm in data.resource_metrics:
        res = resource_row(batch, sdk_attributes(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                d, unit, desc = m.data, m.unit or "", m.description or ""
                if isinstance(d, Sum):
                    mono = bool(d.is_monotonic)
                    _sdk_number(sink, res, prometheus_name(m.name, unit, counter=mono, gauge=False),
                                MetricType.SUM, int(d.aggregation_temporality), mono, unit, desc, d.data_points)
                elif isinstance(d, Gauge):
                    _sdk_number(sink, res, prometheus_name(m.name, unit, counter=False, gauge=True),
                                MetricType.GAUGE, 0, False, unit, desc, d.data_points)
                elif isinstance(d, Histogram):
                    base = prometheus_name(m.name, unit, counter=False, gauge=False)
                    for hp in d.data_points:
                        sink.histogram(res, base, int(d.aggregation_temporality), unit, desc,
                                       sdk_attributes(hp.attributes), hp.time_unix_nano, hp.count, hp.sum,
                                       hp.explicit_bounds, hp.bucket_counts)
                elif isinstance(d, ExponentialHistogram):
                    # Stored as count and sum only, as for OTLP requests.
                    base = prometheus_name(m.name, unit, counter=False, gauge=False)
                    for ep in d.data_points:
                        sink.histogram(res, base, int(d.aggregation_temporality), unit, desc,
                                       sdk_attributes(ep.attributes), ep.time_unix_nano, ep.count, ep.sum,
                                       (), ())
                else:
                    batch.reject_point(f"metric {m.name!r}: unsupported data {type(d).__name__}")
    return batch


def _sdk_number(sink: MetricSink, res: ResourceRow, name: str, mtype: MetricType, temporality: int,
                monotonic: bool, unit: str, desc: str, points: Sequence[Any]) -> None:
    for dp in points:
        sink.add(res, name, mtype, temporality, monotonic, unit, desc, sdk_attributes(dp.attributes),
                 dp.time_unix_nano, dp.value)
