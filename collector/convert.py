"""Pure conversion of telemetry into store rows.

Three inputs meet one output: OTLP protobuf requests (also OTLP/JSON, which is parsed to
protobuf first), the OpenTelemetry SDK's ``ReadableSpan`` and ``MetricsData``, and the
columnar :class:`SpanColumns` of bulk producers. Each becomes a :class:`TelemetryBatch`
of plain tuples in the store's column order. Nothing here touches I/O.

Invalid items (bad ids, missing timestamps, end before start) are counted and described
in the batch, never raised: the receiver reports them as OTLP partial success.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from qfleet.collector.schema import PROMOTED_ATTRIBUTES, MetricType, Temporality

__all__ = [
    "DecodeFailure",
    "ResourceRow",
    "SdkSpanConverter",
    "SdkSpanRows",
    "SERIES_COLUMNS",
    "SPAN_COLUMNS",
    "SeriesRow",
    "SpanColumns",
    "TelemetryBatch",
    "decode_metrics_request",
    "decode_trace_request",
    "fingerprint",
    "json_safe",
    "from_metrics_data",
    "from_metrics_request",
    "from_readable_spans",
    "from_trace_request",
    "prometheus_name",
]

#: Column order of a span row tuple (the ``spans`` table).
SPAN_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "resource_fingerprint",
    "service_name",
    "scope_name",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ns",
    "status_code",
    "status_message",
    "trace_state",
    "flags",
    "attributes",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "node_id",
    "link_id",
    "job_id",
    "run_id",
    "hardware_type",
)
#: Column order of a span event row tuple (the ``span_events`` table).
EVENT_COLUMNS = (
    "trace_id",
    "span_id",
    "seq",
    "time_unix_nano",
    "name",
    "attributes",
    "dropped_attributes_count",
)
#: Column order of a span link row tuple (the ``span_links`` table).
LINK_COLUMNS = (
    "trace_id",
    "span_id",
    "seq",
    "linked_trace_id",
    "linked_span_id",
    "trace_state",
    "attributes",
)
#: Column order of a series row (the ``metric_series`` table, without its surrogate id).
SERIES_COLUMNS = (
    "fingerprint",
    "metric_name",
    "metric_type",
    "temporality",
    "is_monotonic",
    "unit",
    "description",
    "labels",
    "resource_fingerprint",
    "node_id",
    "link_id",
    "hardware_type",
)

_PROMOTED_KEYS = tuple(PROMOTED_ATTRIBUTES.values())
# Times are stored as signed 64-bit integers (BIGINT): good until the year 2262.
_MAX_NS = 2**63 - 1
_NODE_KEY, _LINK_KEY, _HW_KEY = (
    PROMOTED_ATTRIBUTES["node_id"],
    PROMOTED_ATTRIBUTES["link_id"],
    PROMOTED_ATTRIBUTES["hardware_type"],
)


class DecodeFailure(ValueError):
    """A request body that cannot be decoded at all (answered with HTTP 400)."""


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """A resource, keyed by the fingerprint of its attributes."""

    fingerprint: str
    service_name: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A metric series; ``values`` follows :data:`SERIES_COLUMNS`."""

    values: tuple[Any, ...]


@dataclass(slots=True)
class TelemetryBatch:
    """Rows ready for the store, plus what was refused while converting.

    ``samples`` hold ``(series_fingerprint, time_unix_nano, value)``; the store maps the
    fingerprint to the series id. ``rejected_*`` count invalid items and ``errors``
    describes the first few of them.
    """

    resources: dict[str, ResourceRow] = field(default_factory=dict)
    spans: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    links: list[tuple[Any, ...]] = field(default_factory=list)
    series: dict[str, SeriesRow] = field(default_factory=dict)
    samples: list[tuple[str, int, float]] = field(default_factory=list)
    rejected_spans: int = 0
    rejected_points: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def item_count(self) -> int:
        """Spans plus samples: the unit the receiver's queue is bounded in."""
        return len(self.spans) + len(self.samples)

    def extend(self, other: TelemetryBatch) -> None:
        """Append ``other``'s rows to this batch."""
        self.resources.update(other.resources)
        self.spans.extend(other.spans)
        self.events.extend(other.events)
        self.links.extend(other.links)
        self.series.update(other.series)
        self.samples.extend(other.samples)
        self.rejected_spans += other.rejected_spans
        self.rejected_points += other.rejected_points
        self.errors.extend(other.errors)

    def _reject_span(self, why: str) -> None:
        self.rejected_spans += 1
        if len(self.errors) < 10:
            self.errors.append(why)

    def _reject_point(self, why: str) -> None:
        self.rejected_points += 1
        if len(self.errors) < 10:
            self.errors.append(why)


def fingerprint(payload: Any) -> str:
    """16 hex characters of SHA-256 over canonical JSON of ``payload``.

    >>> fingerprint({"b": 1, "a": "x"}) == fingerprint({"a": "x", "b": 1})
    True
    >>> len(fingerprint({}))
    16
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resource(batch: TelemetryBatch, attributes: dict[str, Any]) -> ResourceRow:
    fp = fingerprint(attributes)
    row = batch.resources.get(fp)
    if row is None:
        name = attributes.get("service.name")
        row = ResourceRow(fp, str(name) if name is not None else "unknown_service", attributes)
        batch.resources[fp] = row
    return row


def _promoted(attrs: Mapping[str, Any], res: Mapping[str, Any], key: str) -> str | None:
    v = attrs.get(key)
    if v is None:
        v = res.get(key)
    return None if v is None else str(v)


def _finite(v: float) -> float | str:
    # JSON (and PostgreSQL's JSONB) has no NaN or infinity: keep them as text.
    return v if math.isfinite(v) else str(v)


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float (not representable in JSON) replaced by its text.

    >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, 'nan'], 'b': 'inf'}
    """
    if isinstance(v, float):
        return _finite(v)
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


# ---------------------------------------------------------------------------
# Spans


def _span_tuple(
    res: ResourceRow,
    scope_name: str,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    kind: int,
    start: int,
    end: int,
    status_code: int,
    status_message: str,
    trace_state: str,
    flags: int,
    attrs: dict[str, Any],
    dropped: tuple[int, int, int],
) -> tuple[Any, ...] | str:
    """The span's row in :data:`SPAN_COLUMNS` order, or why it is invalid."""
    if len(trace_id) != 32 or trace_id == "0" * 32:
        return f"span {name!r}: invalid trace_id {trace_id!r} (need 16 non-zero bytes)"
    if len(span_id) != 16 or span_id == "0" * 16:
        return f"span {name!r}: invalid span_id {span_id!r} (need 8 non-zero bytes)"
    if parent_span_id is not None and len(parent_span_id) != 16:
        return f"span {name!r}: invalid parent_span_id {parent_span_id!r}"
    if start <= 0 or end < start or end > _MAX_NS:
        return (f"span {name!r} ({trace_id}/{span_id}): start_time_unix_nano={start} "
                f"end_time_unix_nano={end}; need 0 < start <= end < 2**63")
    ra = res.attributes
    return (
        trace_id,
        span_id,
        parent_span_id,
        res.fingerprint,
        res.service_name,
        scope_name,
        name,
        kind,
        start,
        end,
        end - start,
        status_code,
        status_message,
        trace_state,
        flags,
        attrs,
        dropped[0],
        dropped[1],
        dropped[2],
        *[_promoted(attrs, ra, k) for k in _PROMOTED_KEYS],
    )


def _span_row(batch: TelemetryBatch, res: ResourceRow, *fields: Any) -> bool:
    row = _span_tuple(res, *fields)
    if isinstance(row, str):
        batch._reject_span(row)
        return False
    batch.spans.append(row)
    return True


def _any_value(v: Any) -> Any:
    k = v.WhichOneof("value")
    if k == "string_value":
        return v.string_value
    if k == "int_value":
        return v.int_value
    if k == "double_value":
        return _finite(v.double_value)
    if k == "bool_value":
        return v.bool_value
    if k == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if k == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if k == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def _attrs(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def decode_trace_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP traces body (protobuf or OTLP/JSON).

    Raises:
        DecodeFailure: the body is not a valid request; the message says what is wrong.
    """
    return _decode(body, content_type, ExportTraceServiceRequest(), _fix_trace_json)


def decode_metrics_request(body: bytes, content_type: str) -> ExportMetricsServiceRequest:
    """Parse an OTLP/HTTP metrics body (protobuf or OTLP/JSON).

    Raises:
        DecodeFailure: the body is not a valid request; the message says what is wrong.
    """
    return _decode(body, content_type, ExportMetricsServiceRequest(), _fix_metrics_json)


def _decode(body: bytes, content_type: str, msg: Any, fix_json: Any) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DecodeFailure(f"body is not valid JSON: {err}") from None
        if not isinstance(doc, dict):
            raise DecodeFailure(f"JSON body must be an object, got {type(doc).__name__}")
        fix_json(doc)
        try:
            json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
        except (json_format.ParseError, TypeError, ValueError) as err:
            raise DecodeFailure(f"JSON body is not an OTLP request: {err}") from None
        return msg
    if media in ("application/x-protobuf", "application/protobuf"):
        try:
            msg.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as err:
            raise DecodeFailure(f"body is not a valid protobuf {type(msg).__name__}: {err}") from None
        return msg
    raise DecodeFailure(
        f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json"
    )


def _hex_to_b64(obj: dict[str, Any], key: str, where: str, nbytes: int) -> None:
    # OTLP/JSON ids are hex, but protobuf's JSON parser reads bytes as base64 and would
    # silently turn a hex id into garbage: convert before parsing.
    v = obj.get(key)
    if v is None or v == "":
        return
    if not isinstance(v, str):
        raise DecodeFailure(f"{where}.{key} must be a hex string, got {v!r}")
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise DecodeFailure(f"{where}.{key}={v!r} is not hex (OTLP/JSON ids are hex strings)") from None
    if len(raw) != nbytes:
        raise DecodeFailure(f"{where}.{key}={v!r} must be {nbytes * 2} hex characters")
    obj[key] = base64.b64encode(raw).decode()


def _list(obj: Any, key: str, where: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    if v is None:
        return []
    if not isinstance(v, list):
        raise DecodeFailure(f"{where}.{key} must be a list, got {type(v).__name__}")
    return v


def _fix_trace_json(doc: dict[str, Any]) -> None:
    for i, rs in enumerate(_list(doc, "resourceSpans", "")):
        for j, ss in enumerate(_list(rs, "scopeSpans", f"resourceSpans[{i}]")):
            w = f"resourceSpans[{i}].scopeSpans[{j}]"
            for k, sp in enumerate(_list(ss, "spans", w)):
                if not isinstance(sp, dict):
                    raise DecodeFailure(f"{w}.spans[{k}] must be an object")
                ws = f"{w}.spans[{k}]"
                _hex_to_b64(sp, "traceId", ws, 16)
                _hex_to_b64(sp, "spanId", ws, 8)
                _hex_to_b64(sp, "parentSpanId", ws, 8)
                for m, ln in enumerate(_list(sp, "links", ws)):
                    if isinstance(ln, dict):
                        _hex_to_b64(ln, "traceId", f"{ws}.links[{m}]", 16)
                        _hex_to_b64(ln, "spanId", f"{ws}.links[{m}]", 8)


def _fix_metrics_json(doc: dict[str, Any]) -> None:
    for i, rm in enumerate(_list(doc, "resourceMetrics", "")):
        for j, sm in enumerate(_list(rm, "scopeMetrics", f"resourceMetrics[{i}]")):
            w = f"resourceMetrics[{i}].scopeMetrics[{j}]"
            for k, m in enumerate(_list(sm, "metrics", w)):
                if not isinstance(m, dict):
                    raise DecodeFailure(f"{w}.metrics[{k}] must be an object")
                for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                    data = m.get(kind)
                    if not isinstance(data, dict):
                        continue
                    for p, dp in enumerate(_list(data, "dataPoints", f"{w}.metrics[{k}].{kind}")):
                        we = f"{w}.metrics[{k}].{kind}.dataPoints[{p}]"
                        for e, ex in enumerate(_list(dp, "exemplars", we)):
                            if isinstance(ex, dict):
                                _hex_to_b64(ex, "traceId", f"{we}.exemplars[{e}]", 16)
                                _hex_to_b64(ex, "spanId", f"{we}.exemplars[{e}]", 8)


def from_trace_request(req: ExportTraceServiceRequest) -> TelemetryBatch:
    """Convert a decoded OTLP traces request to store rows."""
    batch = TelemetryBatch()
    events, links = batch.events, batch.links
    for rs in req.resource_spans:
        res = _resource(batch, _attrs(rs.resource.attributes))
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                trace_id = sp.trace_id.hex()
                span_id = sp.span_id.hex()
                attrs = _attrs(sp.attributes)
                ok = _span_row(
                    batch,
                    res,
                    scope,
                    trace_id,
                    span_id,
                    sp.parent_span_id.hex() or None,
                    sp.name,
                    sp.kind,
                    sp.start_time_unix_nano,
                    sp.end_time_unix_nano,
                    sp.status.code,
                    sp.status.message,
                    sp.trace_state,
                    sp.flags,
                    attrs,
                    (sp.dropped_attributes_count, sp.dropped_events_count, sp.dropped_links_count),
                )
                if not ok:
                    continue
                for seq, ev in enumerate(sp.events):
                    events.append(
                        (trace_id, span_id, seq, ev.time_unix_nano, ev.name,
                         _attrs(ev.attributes), ev.dropped_attributes_count)
                    )
                for seq, ln in enumerate(sp.links):
                    links.append(
                        (trace_id, span_id, seq, ln.trace_id.hex(), ln.span_id.hex(),
                         ln.trace_state, _attrs(ln.attributes))
                    )
    return batch


def _sdk_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    if not attrs:
        return {}
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, float):
            out[k] = _finite(v)
        elif isinstance(v, (tuple, list)):
            out[k] = [_finite(x) if isinstance(x, float) else x for x in v]
        else:
            out[k] = v
    return out


#: One converted SDK span: its resource, its row (or why it is invalid), events and links.
SdkSpanRows = tuple[ResourceRow, "tuple[Any, ...] | str", "Sequence[tuple[Any, ...]]", "Sequence[tuple[Any, ...]]"]


class SdkSpanConverter:
    """Converts SDK ``ReadableSpan`` objects one at a time, remembering resource rows.

    Converting each span as it ends (see ``collector.exporters.SqlSpanProcessor``) lets a
    queue hold compact rows instead of SDK span objects; :meth:`collect` then gathers the
    converted spans into one batch. Safe to share between threads: a race at worst
    fingerprints a resource twice.

    Args:
        max_resources: resource objects remembered before the cache starts over.
    """

    def __init__(self, max_resources: int = 1024) -> None:
        self._max = max_resources
        # id(resource) -> (resource, row): holding the resource keeps its id from reuse.
        self._resources: dict[int, tuple[Any, ResourceRow]] = {}

    def _resource(self, res: Any) -> ResourceRow:
        hit = self._resources.get(id(res))
        if hit is not None and hit[0] is res:
            return hit[1]
        attrs = _sdk_attrs(res.attributes)
        fp = fingerprint(attrs)
        name = attrs.get("service.name")
        row = ResourceRow(fp, str(name) if name is not None else "unknown_service", attrs)
        if len(self._resources) >= self._max:
            self._resources = {}
        self._resources[id(res)] = (res, row)
        return row

    def convert(self, sp: Any) -> SdkSpanRows:
        """Convert one finished span."""
        r = self._resource(sp.resource)
        ctx = sp.context
        trace_id = format(ctx.trace_id, "032x")
        span_id = format(ctx.span_id, "016x")
        scope = sp.instrumentation_scope
        parent = sp.parent
        status = sp.status
        ts = ctx.trace_state
        row = _span_tuple(
            r,
            scope.name if scope else "",
            trace_id,
            span_id,
            format(parent.span_id, "016x") if parent is not None else None,
            sp.name,
            sp.kind.value + 1,  # the Python API counts from INTERNAL=0, OTLP from INTERNAL=1
            sp.start_time or 0,
            sp.end_time or 0,
            status.status_code.value,
            status.description or "",
            ts.to_header() if ts else "",
            int(ctx.trace_flags),
            _sdk_attrs(sp.attributes),
            (sp.dropped_attributes, sp.dropped_events, sp.dropped_links),
        )
        if isinstance(row, str):
            return r, row, (), ()
        events = [
            (trace_id, span_id, seq, ev.timestamp, ev.name, _sdk_attrs(ev.attributes),
             getattr(ev, "dropped_attributes", 0))
            for seq, ev in enumerate(sp.events)
        ]
        links = [
            (trace_id, span_id, seq, format(ln.context.trace_id, "032x"),
             format(ln.context.span_id, "016x"),
             ln.context.trace_state.to_header() if ln.context.trace_state else "",
             _sdk_attrs(ln.attributes))
            for seq, ln in enumerate(sp.links)
        ]
        return r, row, events or (), links or ()

    @staticmethod
    def collect(converted: Iterable[SdkSpanRows]) -> TelemetryBatch:
        """Gather converted spans into one batch (invalid ones counted as rejected)."""
        batch = TelemetryBatch()
        resources, spans = batch.resources, batch.spans
        for res, row, events, links in converted:
            if isinstance(row, str):
                batch._reject_span(row)
                continue
            resources[res.fingerprint] = res
            spans.append(row)
            if events:
                batch.events.extend(events)
            if links:
                batch.links.extend(links)
        return batch


def from_readable_spans(spans: Sequence[Any]) -> TelemetryBatch:
    """Convert OpenTelemetry SDK ``ReadableSpan`` objects to store rows."""
    conv = SdkSpanConverter()
    return conv.collect([conv.convert(sp) for sp in spans])


@dataclass(frozen=True, slots=True)
class SpanColumns:
    """A columnar batch of spans for bulk producers (the simulator's fast path).

    Every column is a sequence of the same length. Optional columns may be left as
    ``None`` (all rows empty). Ids are lowercase hex; times are integer ns.

    Raises:
        ValueError: columns of different lengths (names the column and both lengths).
    """

    trace_id: Sequence[str]
    span_id: Sequence[str]
    name: Sequence[str]
    start_time_unix_nano: Sequence[int]
    end_time_unix_nano: Sequence[int]
    parent_span_id: Sequence[str | None] | None = None
    kind: Sequence[int] | None = None
    status_code: Sequence[int] | None = None
    status_message: Sequence[str] | None = None
    attributes: Sequence[dict[str, Any]] | None = None
    node_id: Sequence[str | None] | None = None
    link_id: Sequence[str | None] | None = None
    job_id: Sequence[str | None] | None = None
    run_id: Sequence[str | None] | None = None
    hardware_type: Sequence[str | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.trace_id)
        for f in self.__dataclass_fields__:
            col = getattr(self, f)
            if col is not None and len(col) != n:
                raise ValueError(
                    f"SpanColumns.{f} has {len(col)} values but trace_id has {n}; "
                    "every column must have one value per span"
                )

    def __len__(self) -> int:
        return len(self.trace_id)

    def to_batch(
        self, *, service_name: str, resource_attributes: Mapping[str, Any] | None = None,
        scope_name: str = "",
    ) -> TelemetryBatch:
        """Rows for the store, validated like every other input."""
        batch = TelemetryBatch()
        attrs = dict(resource_attributes or {})
        attrs.setdefault("service.name", service_name)
        res = _resource(batch, attrs)
        n = len(self)
        none = [None] * n

        def col(c: Sequence[Any] | None, default: Any) -> Sequence[Any]:
            return c if c is not None else [default] * n

        kinds = col(self.kind, 1)
        codes = col(self.status_code, 0)
        msgs = col(self.status_message, "")
        attrs_c = col(self.attributes, None)
        parents = self.parent_span_id or none
        promoted = [self.node_id or none, self.link_id or none, self.job_id or none,
                    self.run_id or none, self.hardware_type or none]
        fp, svc = res.fingerprint, res.service_name
        spans = batch.spans
        for i, (tid, sid, nm, st, en) in enumerate(
            zip(self.trace_id, self.span_id, self.name, self.start_time_unix_nano,
                self.end_time_unix_nano, strict=True)
        ):
            if len(tid) != 32 or len(sid) != 16 or st <= 0 or en < st or en > _MAX_NS:
                batch._reject_span(
                    f"row {i} ({tid!r}/{sid!r}, {nm!r}): need 32+16 hex ids and 0 < start <= end"
                )
                continue
            a = attrs_c[i]
            spans.append(
                (tid, sid, parents[i], fp, svc, scope_name, nm, kinds[i], st, en, en - st,
                 codes[i], msgs[i], "", 0, a if a is not None else {}, 0, 0, 0,
                 promoted[0][i], promoted[1][i], promoted[2][i], promoted[3][i], promoted[4][i])
            )
        return batch


# ---------------------------------------------------------------------------
# Metrics

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


def _series_fingerprint(name: str, resource_fp: str, labels: dict[str, Any]) -> str:
    # The same series arrives every scrape or step: hash its identity once (lists are not hashable: no cache).
    try:
        return _cached_fingerprint(name, resource_fp, tuple(labels.items()))
    except TypeError:
        return fingerprint([name, resource_fp, labels])


class _MetricSink:
    """Builds series and samples; shared by the protobuf and SDK metric paths."""

    def __init__(self, batch: TelemetryBatch) -> None:
        self.batch = batch

    def add(
        self, res: ResourceRow, name: str, mtype: MetricType, temporality: int, monotonic: bool,
        unit: str, description: str, labels: dict[str, Any], t: int, value: float,
    ) -> None:
        if t <= 0 or t > _MAX_NS:
            self.batch._reject_point(f"metric {name!r}: time_unix_nano={t} is missing or out of range")
            return
        if isinstance(value, float) and math.isnan(value):
            self.batch._reject_point(f"metric {name!r}: NaN value at {t} (not storable)")
            return
        fp = _series_fingerprint(name, res.fingerprint, labels)
        if fp not in self.batch.series:
            ra = res.attributes
            self.batch.series[fp] = SeriesRow(
                (fp, name, int(mtype), int(temporality), monotonic, unit, description, labels,
                 res.fingerprint, _promoted(labels, ra, _NODE_KEY),
                 _promoted(labels, ra, _LINK_KEY), _promoted(labels, ra, _HW_KEY))
            )
        self.batch.samples.append((fp, t, float(value)))

    def histogram(
        self, res: ResourceRow, base: str, temporality: int, unit: str, description: str,
        labels: dict[str, Any], t: int, count: int, total: float | None,
        bounds: Sequence[float], bucket_counts: Sequence[int],
    ) -> None:
        if bucket_counts and len(bucket_counts) != len(bounds) + 1:
            self.batch._reject_point(
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


def _le(bound: float) -> str:
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"


def from_metrics_request(req: ExportMetricsServiceRequest) -> TelemetryBatch:
    """Convert a decoded OTLP metrics request to store rows (histograms Prometheus-style)."""
    batch = TelemetryBatch()
    sink = _MetricSink(batch)
    for rm in req.resource_metrics:
        res = _resource(batch, _attrs(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                unit, desc = m.unit, m.description
                if kind in ("gauge", "sum"):
                    data = getattr(m, kind)
                    is_sum = kind == "sum"
                    temp = data.aggregation_temporality if is_sum else 0
                    mono = bool(is_sum and data.is_monotonic)
                    name = prometheus_name(m.name, unit, counter=mono, gauge=not is_sum)
                    mtype = MetricType.SUM if is_sum else MetricType.GAUGE
                    for dp in data.data_points:
                        which = dp.WhichOneof("value")
                        if which is None or dp.flags & 1:
                            batch._reject_point(f"metric {m.name!r}: data point without a value")
                            continue
                        v = dp.as_double if which == "as_double" else dp.as_int
                        sink.add(res, name, mtype, temp, mono, unit, desc, _attrs(dp.attributes),
                                 dp.time_unix_nano, v)
                elif kind == "histogram":
                    base = prometheus_name(m.name, unit, counter=False, gauge=False)
                    temp = m.histogram.aggregation_temporality
                    for dp in m.histogram.data_points:
                        sink.histogram(res, base, temp, unit, desc, _attrs(dp.attributes),
                                       dp.time_unix_nano, dp.count,
                                       dp.sum if dp.HasField("sum") else None,
                                       dp.explicit_bounds, dp.bucket_counts)
                elif kind == "exponential_histogram":
                    # Stored as count and sum only; the exponential buckets are not kept.
                    base = prometheus_name(m.name, unit, counter=False, gauge=False)
                    temp = m.exponential_histogram.aggregation_temporality
                    for dp in m.exponential_histogram.data_points:
                        sink.histogram(res, base, temp, unit, desc, _attrs(dp.attributes),
                                       dp.time_unix_nano, dp.count,
                                       dp.sum if dp.HasField("sum") else None, (), ())
                elif kind == "summary":
                    base = prometheus_name(m.name, unit, counter=False, gauge=False)
                    s, c = MetricType.SUMMARY, Temporality.CUMULATIVE
                    for dp in m.summary.data_points:
                        labels = _attrs(dp.attributes)
                        t = dp.time_unix_nano
                        for q in dp.quantile_values:
                            sink.add(res, base, s, c, False, unit, desc,
                                     {**labels, "quantile": repr(q.quantile)}, t, q.value)
                        sink.add(res, base + "_sum", s, c, False, unit, desc, labels, t, dp.sum)
                        sink.add(res, base + "_count", s, c, True, unit, desc, labels, t, dp.count)
                else:
                    batch._reject_point(f"metric {m.name!r}: no data (gauge, sum, histogram or summary)")
    return batch


def from_metrics_data(data: Any) -> TelemetryBatch:
    """Convert the OpenTelemetry SDK's ``MetricsData`` to store rows."""
    from opentelemetry.sdk.metrics.export import (  # the SDK's data model, only needed here
        ExponentialHistogram,
        Gauge,
        Histogram,
        Sum,
    )

    batch = TelemetryBatch()
    sink = _MetricSink(batch)
    for rm in data.resource_metrics:
        res = _resource(batch, _sdk_attrs(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                d, unit, desc = m.data, m.unit or "", m.description or ""
                if isinstance(d, (Gauge, Sum)):
                    is_sum = isinstance(d, Sum)
                    mono = bool(is_sum and d.is_monotonic)
                    temp = int(d.aggregation_temporality) if is_sum else 0
                    name = prometheus_name(m.name, unit, counter=mono, gauge=not is_sum)
                    mtype = MetricType.SUM if is_sum else MetricType.GAUGE
                    for dp in d.data_points:
                        sink.add(res, name, mtype, temp, mono, unit, desc,
                                 _sdk_attrs(dp.attributes), dp.time_unix_nano, dp.value)
                elif isinstance(d, (Histogram, ExponentialHistogram)):
                    base = prometheus_name(m.name, unit, counter=False, gauge=False)
                    temp = int(d.aggregation_temporality)
                    exp = isinstance(d, ExponentialHistogram)
                    for dp in d.data_points:
                        sink.histogram(res, base, temp, unit, desc, _sdk_attrs(dp.attributes),
                                       dp.time_unix_nano, dp.count, dp.sum,
                                       () if exp else dp.explicit_bounds,
                                       () if exp else dp.bucket_counts)
                else:
                    batch._reject_point(f"metric {m.name!r}: unsupported data {type(d).__name__}")
    return batch
