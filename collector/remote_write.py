"""Prometheus remote write 1.0 requests into store rows: how a Prometheus series becomes a qfleet series.

* ``__name__`` is the metric name. ``job`` and ``instance`` form the resource
  (``service.name`` and ``service.instance.id``, as the OpenTelemetry Collector's Prometheus
  receiver does); every other label is kept as sent, under its Prometheus name
  (``qfleet_outcome``, never rewritten to the OpenTelemetry key ``qfleet.outcome``: turning
  ``_`` back into ``.`` is ambiguous). The promoted columns are read from the Prometheus
  form of their OTel key (``qfleet_node_id``, ``qfleet_link_id``, ``qfleet_hardware_type``).
  ``le`` and ``quantile`` values are written as the OTLP path writes them (``repr(float)``,
  ``+Inf``), so ``le="1"`` and ``le="1.0"`` are one bucket. A label with an empty value is
  absent (Prometheus' own rule).
* The type comes from the metric's metadata when Prometheus sent it (in its own requests:
  :class:`TypeCache` remembers it for later ones), else from the series: ``_bucket`` with
  ``le`` is a histogram bucket, a ``quantile`` label a summary, ``_count``/``_sum`` of such a
  family are its parts, ``_total`` a cumulative monotonic counter, anything else a gauge. A
  series keeps the type it was first stored with.
* Timestamps are milliseconds; stored as nanoseconds.
* Not stored, counted in :attr:`Converted.skipped`: staleness markers (``stale_marker``:
  the end of a series, not a value), other NaN values (``nan``: the store holds no NaN),
  exemplars (``exemplar``). Rejected as invalid samples (the request is answered 400 once
  the valid ones are stored, as the spec asks): a series without a valid ``__name__``, with an
  invalid or repeated label name, a NUL in a value, labels beyond :class:`Limits`, a ``le``
  or ``quantile`` that is not a number; a timestamp outside 1 ms .. year 2262; native
  histogram samples.

Nothing here touches I/O.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qfleet.collector.limits import Limits
from qfleet.collector.metric_rows import series_fingerprint
from qfleet.collector.prompb import METRIC_TYPES, is_stale
from qfleet.collector.rows import MAX_NS, ResourceRow, SeriesRow, TelemetryBatch, resource_row
from qfleet.collector.schema import PROMOTED_ATTRIBUTES, MetricType, Temporality

__all__ = ["SKIP_REASONS", "Converted", "Kind", "TypeCache", "from_write_request"]

#: Why a sample was not stored without being an error (``qfleet_collector_skipped_total``).
SKIP_REASONS = ("stale_marker", "nan", "exemplar")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MS = 1_000_000
_MAX_MS = MAX_NS // _MS
# The labels the promoted columns of metric_series (SERIES_COLUMNS order) are read from: the Prometheus form of
# their OTel keys (a label name cannot hold the dots).
_PROMOTED_LABELS = tuple(re.sub(r"[^a-zA-Z0-9_]", "_", PROMOTED_ATTRIBUTES[col])
                         for col in ("node_id", "link_id", "hardware_type"))
# Label names seen valid, so the pattern runs once per name, not once per series (bounded).
_VALID_NAMES: set[str] = set()
_MAX_VALID_NAMES = 100_000
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info")
_C = Temporality.CUMULATIVE


@dataclass(frozen=True, slots=True)
class Kind:
    """How a series is stored: type, temporality, monotonic, unit, description."""

    mtype: MetricType
    temporality: Temporality = Temporality.UNSPECIFIED
    monotonic: bool = False
    unit: str = ""
    description: str = ""


_GAUGE = Kind(MetricType.GAUGE)
_COUNTER = Kind(MetricType.SUM, _C, True)


class TypeCache:
    """Metric family -> Prometheus type (a :data:`~qfleet.collector.prompb.METRIC_TYPES` key), help and unit;
    thread-safe, bounded.

    Filled from the ``metadata`` of requests (Prometheus sends it apart from the samples, every
    ``metadata_config.send_interval``) and from series that show their family's type (a
    ``_bucket`` with ``le``, a ``quantile`` label). Metadata wins over what series show. Once
    ``max_families`` are known, new families are not remembered (each request still infers them).

    Examples:
        >>> c = TypeCache(max_families=1)
        >>> c.learn("qpu_jobs", "counter", metadata=True), c.learn("other", "gauge", metadata=True)
        (True, False)
        >>> c.get("qpu_jobs")
        ('counter', '', '')
    """

    def __init__(self, *, max_families: int = 10_000) -> None:
        self.max_families = max_families
        self._types: dict[str, tuple[str, str, str, bool]] = {}
        self._lock = threading.Lock()

    def learn(self, family: str, kind: str, *, help: str = "", unit: str = "", metadata: bool) -> bool:
        """Remember ``family``'s type; ``False`` when the cache is full or metadata already said otherwise."""
        with self._lock:
            old = self._types.get(family)
            if (old is None and len(self._types) >= self.max_families) or (old and old[3] and not metadata):
                return False
            self._types[family] = (kind, help, unit, metadata)
            return True

    def get(self, family: str) -> tuple[str, str, str] | None:
        """``(kind, help, unit)`` of ``family``, if known."""
        got = self._types.get(family)
        return None if got is None else got[:3]


@dataclass(frozen=True, slots=True)
class Converted:
    """A request's rows (``batch``; invalid samples counted in ``batch.rejected_points``) and what was
    skipped, by :data:`SKIP_REASONS`."""

    batch: TelemetryBatch
    skipped: Mapping[str, int] = field(default_factory=dict)


def _number(text: str) -> str | None:
    """The stored text of a ``le``/``quantile`` value, as the OTLP path writes it; ``None`` if not a number.

    >>> _number("1"), _number("+Inf"), _number("0.25"), _number("x")
    ('1.0', '+Inf', '0.25', None)
    """
    try:
        v = float(text)
    except ValueError:
        return None
    if math.isnan(v):
        return None
    return repr(v) if math.isfinite(v) else ("+Inf" if v > 0 else "-Inf")


def _kind_from(kind: str, suffix: str, help: str, unit: str) -> Kind | None:
    """The storage kind of a series with ``suffix`` in a family of Prometheus type ``kind``."""
    if kind == "counter" and suffix in ("", "_total"):
        return Kind(MetricType.SUM, _C, True, unit, help)
    if kind in ("histogram", "summary") and suffix in ("", "_bucket", "_count", "_sum"):
        mtype = MetricType.HISTOGRAM if kind == "histogram" else MetricType.SUMMARY
        return Kind(mtype, _C, suffix in ("_bucket", "_count"), unit, help)
    if suffix == "" or (kind == "info" and suffix == "_info"):
        return Kind(MetricType.GAUGE, Temporality.UNSPECIFIED, False, unit, help)
    return None


def _split(name: str) -> tuple[str, str]:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], suffix
    return name, ""


def kind_of(name: str, labels: Mapping[str, str], types: TypeCache) -> Kind:
    """How the series ``name`` with ``labels`` is stored (see the module docstring).

    >>> c = TypeCache()
    >>> kind_of("qpu_jobs_total", {}, c).mtype.name, kind_of("qpu_temp_kelvin", {}, c).mtype.name
    ('SUM', 'GAUGE')
    >>> kind_of("lat_seconds_count", {}, c).mtype.name  # nothing known about the family yet
    'GAUGE'
    >>> _ = c.learn("lat_seconds", "histogram", metadata=False)
    >>> kind_of("lat_seconds_count", {}, c).monotonic, kind_of("lat_seconds_sum", {}, c).monotonic
    (True, False)
    """
    known = types.get(name)
    if known is not None:
        kind = _kind_from(known[0], "", known[1], known[2])
        if kind is not None:
            return kind
    base, suffix = _split(name)
    known = types.get(base) if suffix else None
    if known is not None:
        kind = _kind_from(known[0], suffix, known[1], known[2])
        if kind is not None:
            return kind
    if suffix == "_bucket" and "le" in labels:
        return Kind(MetricType.HISTOGRAM, _C, True)
    if "quantile" in labels:
        return Kind(MetricType.SUMMARY, _C, False)
    return _COUNTER if suffix == "_total" else _GAUGE


@functools.lru_cache(maxsize=1 << 14)
def _resource(job: str, instance: str) -> ResourceRow:
    # One fingerprint per scrape target, not one per series.
    attrs = {k: v for k, v in (("service.name", job), ("service.instance.id", instance)) if v}
    return resource_row(TelemetryBatch(), attrs)


class _Request:
    """The state of converting one request: its batch, skip counts and what is left of the label budget."""

    def __init__(self, limits: Limits, types: TypeCache) -> None:
        self.batch = TelemetryBatch()
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)
        self.limits = limits
        self.types = types
        self.budget = limits.max_attributes_per_request

    def reject(self, n: int, why: str) -> None:
        if n:
            self.batch.reject_point(why)
            self.batch.rejected_points += n - 1

    def labels(self, ts: Any) -> tuple[str, str, str, dict[str, str]] | str:
        """``(name, job, instance, labels)`` of a series, or why it is invalid."""
        lim = self.limits
        if len(ts.labels) > lim.max_attributes_per_item + 3 or len(ts.labels) > self.budget:
            return (f"{len(ts.labels)} labels exceed max_attributes_per_item={lim.max_attributes_per_item} or what "
                    f"is left of max_attributes_per_request={lim.max_attributes_per_request}")
        self.budget -= len(ts.labels)
        name = job = instance = ""
        labels: dict[str, str] = {}
        seen: set[str] = set()
        for lab in ts.labels:
            k, v = lab.name, lab.value
            if k in seen:
                return f"label {k[:100]!r} repeated"
            seen.add(k)
            if k == "__name__":
                name = v
                continue
            if k not in _VALID_NAMES:
                if not _LABEL_NAME.fullmatch(k):
                    return f"label name {k[:100]!r} is not [a-zA-Z_][a-zA-Z0-9_]*"
                if len(_VALID_NAMES) < _MAX_VALID_NAMES:
                    _VALID_NAMES.add(k)
            if len(v) > lim.max_attribute_value_length or "\x00" in v:
                return (f"label {k!r}: value of {len(v)} characters exceeds max_attribute_value_length="
                        f"{lim.max_attribute_value_length} or holds NUL")
            elif not v:
                continue  # an empty value is no label (Prometheus' own rule)
            elif k == "job":
                job = v
            elif k == "instance":
                instance = v
            elif k in ("le", "quantile"):
                text = _number(v)
                if text is None:
                    return f"label {k}={v[:100]!r} is not a number"
                labels[k] = text
            else:
                labels[k] = v
        if len(name) > lim.max_attribute_value_length or not _METRIC_NAME.fullmatch(name):
            return (f"__name__ {name[:100]!r} is missing, not [a-zA-Z_:][a-zA-Z0-9_:]* or longer than "
                    f"max_attribute_value_length={lim.max_attribute_value_length}")
        if len(labels) > lim.max_attributes_per_item:
            return f"{len(labels)} labels exceed max_attributes_per_item={lim.max_attributes_per_item}"
        return name, job, instance, labels

    def series(self, ts: Any) -> None:
        """Rows of one ``TimeSeries``; what cannot be stored is counted."""
        n = len(ts.samples)
        self.skipped["exemplar"] += len(ts.exemplars)
        if ts.histograms:
            self.reject(len(ts.histograms), "native histogram samples are not stored; send classic histograms "
                                            "(remote_write send_native_histograms: false)")
        if not n:
            return
        got = self.labels(ts)
        if isinstance(got, str):
            self.reject(n, f"series rejected: {got}")
            return
        name, job, instance, labels = got
        res = _resource(job, instance)
        self.batch.resources.setdefault(res.fingerprint, res)
        fp = series_fingerprint(name, res.fingerprint, labels)
        if fp not in self.batch.series:
            k = kind_of(name, labels, self.types)
            self.batch.series[fp] = SeriesRow((fp, name, int(k.mtype), int(k.temporality), k.monotonic, k.unit,
                                               k.description, labels, res.fingerprint,
                                               *map(labels.get, _PROMOTED_LABELS)))
        append = self.batch.samples.append
        for s in ts.samples:
            v, t = s.value, s.timestamp
            if v != v:  # NaN: a staleness marker or a value the store cannot hold
                self.skipped["stale_marker" if is_stale(v) else "nan"] += 1
            elif 0 < t <= _MAX_MS:
                append((fp, t * _MS, v))
            else:
                self.reject(1, f"metric {name!r}: timestamp {t} ms is outside 1 .. {_MAX_MS}")


def _learn(req: Any, types: TypeCache) -> None:
    """Remember the types the request tells: its metadata first, then what its series show."""
    names = {v: k for k, v in METRIC_TYPES.items()}
    for m in req.metadata:
        types.learn(m.metric_family_name, names.get(m.type, "unknown"), help=m.help, unit=m.unit, metadata=True)
    for ts in req.timeseries:
        name = ""
        shows = ""
        for lab in ts.labels:
            if lab.name == "__name__":
                name = lab.value
            elif lab.name in ("le", "quantile"):
                shows = lab.name
        if shows == "le" and name.endswith("_bucket"):
            base = name[:-len("_bucket")]
            if types.get(base) is None:
                types.learn(base, "histogram", metadata=False)
        elif shows == "quantile" and types.get(name) is None:
            types.learn(name, "summary", metadata=False)


def from_write_request(req: Any, limits: Limits, types: TypeCache) -> Converted:
    """Store rows of a decoded ``WriteRequest`` (see the module docstring); ``types`` learns from it.

    Examples:
        >>> from qfleet.collector.prompb import Series, decode_write_request, encode_write_request
        >>> body = encode_write_request([Series({"__name__": "qpu_jobs_total", "job": "qpu", "qfleet_outcome": "ok"},
        ...                                     [(1_700_000_000_000, 5.0), (1_700_000_001_000, float("nan"))])])
        >>> out = from_write_request(decode_write_request(body, 1 << 20), Limits(), TypeCache())
        >>> out.batch.samples[0][1:], out.skipped["nan"], list(out.batch.resources.values())[0].service_name
        ((1700000000000000000, 5.0), 1, 'qpu')
    """
    _learn(req, types)
    conv = _Request(limits, types)
    for ts in req.timeseries:
        conv.series(ts)
    return Converted(conv.batch, {k: v for k, v in conv.skipped.items() if v})
