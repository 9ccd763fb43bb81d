"""Spans into store rows, from each of the three inputs: OTLP requests, SDK spans, columns.

Every input is validated the same way (16-byte trace id, 8-byte span id, ``0 < start <=
end < 2**63``, OTLP's span kinds and status codes); OTLP requests also within
:class:`~qfleet.collector.limits.Limits` (attributes, events, links cut and counted), events
and links checked, NUL characters replaced, dropped counts clipped. An invalid span is counted and described in the batch, never raised, so the
receiver can answer with OTLP partial success. Nothing here touches I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from qfleet.collector.limits import INT32_MAX, Limits
from qfleet.collector.otlp import AttributeReader
from qfleet.collector.rows import (
    MAX_NS,
    PROMOTED_KEYS,
    ResourceRow,
    TelemetryBatch,
    attributes_json,
    fingerprint,
    finite,
    promoted,
    resource_row,
)

__all__ = [
    "COMPILED",
    "SdkSpanConverter",
    "SdkSpanRows",
    "SpanColumns",
    "from_readable_spans",
    "from_trace_protobuf",
    "from_trace_request",
    "sdk_attributes",
]

_DEFAULT_LIMITS = Limits()


def _compiled() -> Any:
    """The compiled wire decoder, if it was built and reads the installed proto's fields exactly."""
    try:
        from qfleet.collector import _span_wire
    except ImportError:  # installed without a C compiler (setup.py marks the extension optional)
        return None
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    for name, numbers in _span_wire.KNOWN_FIELDS.items():
        try:
            declared = tuple(sorted(f.number for f in pool.FindMessageTypeByName(name).fields))
        except KeyError:
            return None
        if declared != numbers:
            return None  # a newer proto: a field the decoder would skip as unknown may mean something
    return _span_wire


_WIRE = _compiled()
#: Whether the compiled fast path converts plain OTLP protobuf trace requests (else the full path does all).
COMPILED = _WIRE is not None


# OTLP's enums: SpanKind 0 (unspecified) .. 5 (consumer), Status.StatusCode 0 (unset) .. 2 (error).
# Protobuf enums are open (any int32 parses); stored as SMALLINT, an unknown value would wrap
# on PostgreSQL and be stored as sent on SQLite: rejected on both.
_MAX_KIND = 5
_MAX_STATUS = 2


def _span_problem(name: str, trace_id: str, span_id: str, parent_span_id: str | None, kind: int,
                  start: int, end: int, status_code: int) -> str | None:
    """Why a span cannot be stored, or None."""
    name = name[:100]
    if len(trace_id) != 32 or trace_id == "0" * 32:
        return f"span {name!r}: invalid trace_id {trace_id[:100]!r} (need 16 non-zero bytes)"
    if len(span_id) != 16 or span_id == "0" * 16:
        return f"span {name!r}: invalid span_id {span_id[:100]!r} (need 8 non-zero bytes)"
    if parent_span_id is not None and len(parent_span_id) != 16:
        return f"span {name!r}: invalid parent_span_id {parent_span_id[:100]!r} (need 8 bytes)"
    if start <= 0 or end < start or end > MAX_NS:
        return (f"span {name!r} ({trace_id}/{span_id}): start_time_unix_nano={start} "
                f"end_time_unix_nano={end}; need 0 < start <= end < 2**63")
    if not 0 <= kind <= _MAX_KIND:
        return f"span {name!r} ({trace_id}/{span_id}): kind={kind} is not an OTLP SpanKind (0..5)"
    if not 0 <= status_code <= _MAX_STATUS:
        return (f"span {name!r} ({trace_id}/{span_id}): status.code={status_code} is not an OTLP "
                "StatusCode (0 unset, 1 ok, 2 error)")
    return None


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
    """The span's row in :data:`~qfleet.collector.rows.SPAN_COLUMNS` order, or why it is invalid.

    Dropped counts are clipped to the INTEGER columns (:data:`INT32_MAX`), never wrapped.
    """
    why = _span_problem(name, trace_id, span_id, parent_span_id, kind, start, end, status_code)
    if why is not None:
        return why
    return _span_row(res, scope_name, trace_id, span_id, parent_span_id, name, kind, start, end, status_code,
                     status_message, trace_state, flags, attrs, dropped)


def _span_row(res: ResourceRow, scope_name: str, trace_id: str, span_id: str, parent_span_id: str | None,
              name: str, kind: int, start: int, end: int, status_code: int, status_message: str, trace_state: str,
              flags: int, attrs: dict[str, Any], dropped: tuple[int, int, int]) -> tuple[Any, ...]:
    """:func:`_span_tuple` for a span already checked (the OTLP path checks before reading attributes)."""
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
        min(dropped[0], INT32_MAX),
        min(dropped[1], INT32_MAX),
        min(dropped[2], INT32_MAX),
        *[promoted(attrs, ra, k) for k in PROMOTED_KEYS],
    )


# ---------------------------------------------------------------------------
# OTLP protobuf


def from_trace_protobuf(body: bytes, limits: Limits = _DEFAULT_LIMITS) -> TelemetryBatch | None:
    """The rows of a protobuf ``ExportTraceServiceRequest``, read straight from its bytes by the compiled decoder.

    None when the decoder is not installed, or when the request is not the plain case (valid spans with scalar
    attributes, within ``limits``, no events or links): the caller then converts the parsed request with
    :func:`from_trace_request`, whose rows are the same (attributes as a dict instead of their JSON text).
    """
    if _WIRE is None:
        return None
    batch = TelemetryBatch()
    if not _WIRE.span_rows(body, limits.max_attributes_per_item, limits.max_attribute_value_length,
                           limits.max_attributes_per_request, PROMOTED_KEYS,
                           lambda attrs: resource_row(batch, attrs), batch.spans):
        return None
    return batch


def from_trace_request(req: ExportTraceServiceRequest, limits: Limits = _DEFAULT_LIMITS, *,
                       rejected: Sequence[str] = (), cut: Mapping[str, int] | None = None) -> TelemetryBatch:
    """Convert a decoded OTLP traces request to store rows, within ``limits``.

    Args:
        rejected: spans already refused while parsing (described, counted as rejected).
        cut: what parsing already cut by the limits (counted in ``adjusted``).
    """
    batch = TelemetryBatch()
    for why in rejected:
        batch.reject_span(why)
    for what, n in (cut or {}).items():
        batch.adjust(what, n)
    reader = AttributeReader(limits)
    for rs in req.resource_spans:
        attrs, dropped = reader.read(rs.resource.attributes)
        batch.adjust("attributes", dropped)  # resources store no dropped count: reported only
        res = resource_row(batch, attrs)
        for ss in rs.scope_spans:
            scope = reader.text(ss.scope.name)
            for sp in ss.spans:
                _add_otlp_span(batch, res, scope, sp, reader)
    batch.adjust("values truncated", reader.truncated)
    batch.adjust("NULs replaced", reader.nuls)
    return batch


def _parts_problem(sp: OtlpSpan, events: Sequence[OtlpSpan.Event], links: Sequence[OtlpSpan.Link]) -> str | None:
    """Why the kept events or links of a span cannot be stored, or None."""
    for i, ev in enumerate(events):
        if ev.time_unix_nano > MAX_NS:
            return (f"span {sp.name[:100]!r}: events[{i}].time_unix_nano={ev.time_unix_nano} "
                    "does not fit (need < 2**63)")
    for i, ln in enumerate(links):
        if len(ln.trace_id) != 16 or len(ln.span_id) != 8:
            return (f"span {sp.name[:100]!r}: links[{i}] has a {len(ln.trace_id)}-byte trace_id and a "
                    f"{len(ln.span_id)}-byte span_id (need 16 and 8)")
    return None


def _count(batch: TelemetryBatch, n: int) -> int:
    """``n`` clipped to the INTEGER columns, counting a clip."""
    if n > INT32_MAX:
        batch.adjust("counts clipped to 2**31-1")
        return INT32_MAX
    return n


def _add_otlp_span(batch: TelemetryBatch, res: ResourceRow, scope: str, sp: OtlpSpan,
                   reader: AttributeReader) -> None:
    trace_id = sp.trace_id.hex()
    span_id = sp.span_id.hex()
    parent = sp.parent_span_id.hex() or None
    name = reader.text(sp.name)
    status = sp.status
    kind, start, end, code = sp.kind, sp.start_time_unix_nano, sp.end_time_unix_nano, status.code
    why = _span_problem(name, trace_id, span_id, parent, kind, start, end, code)
    lim = reader.limits
    all_events, all_links = sp.events, sp.links
    n_ev, n_ln = len(all_events), len(all_links)
    # Only the kept events and links are ever looked at: the rest cost nothing.
    events = all_events if n_ev <= lim.max_events_per_span else all_events[:lim.max_events_per_span]
    links = all_links if n_ln <= lim.max_links_per_span else all_links[:lim.max_links_per_span]
    if why is None and (n_ev or n_ln):
        why = _parts_problem(sp, events, links)
    if why is not None:
        batch.reject_span(why)
        return
    attrs, dropped = reader.read(sp.attributes)
    counts = (sp.dropped_attributes_count + dropped, sp.dropped_events_count + n_ev - len(events),
              sp.dropped_links_count + n_ln - len(links))
    if dropped or n_ev > len(events) or n_ln > len(links) or max(counts) > INT32_MAX:  # rare: count it
        batch.adjust("attributes", dropped)
        batch.adjust("events", n_ev - len(events))
        batch.adjust("links", n_ln - len(links))
        counts = (_count(batch, counts[0]), _count(batch, counts[1]), _count(batch, counts[2]))
    batch.spans.append(_span_row(res, scope, trace_id, span_id, parent, name, kind, start, end, code,
                                 reader.text(status.message), reader.text(sp.trace_state), sp.flags, attrs,
                                 counts))
    for seq, ev in enumerate(events):
        ea, ed = reader.read(ev.attributes)
        if ed:
            batch.adjust("attributes", ed)
        batch.events.append((trace_id, span_id, seq, ev.time_unix_nano, reader.text(ev.name), ea,
                             _count(batch, ev.dropped_attributes_count + ed)))
    for seq, ln in enumerate(links):
        la, ld = reader.read(ln.attributes)
        batch.adjust("attributes", ld)  # span_links store no dropped count: reported only
        batch.links.append((trace_id, span_id, seq, ln.trace_id.hex(), ln.span_id.hex(),
                            reader.text(ln.trace_state), la))


# ---------------------------------------------------------------------------
# The OpenTelemetry SDK's ReadableSpan


def sdk_attributes(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """SDK attributes as a JSON-storable dict (non-finite floats as text).

    >>> sdk_attributes({"f": float("nan"), "xs": (1.0, float("inf")), "s": "x"})
    {'f': 'nan', 'xs': [1.0, 'inf'], 's': 'x'}
    """
    if not attrs:
        return {}
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, float):
            out[k] = finite(v)
        elif isinstance(v, (tuple, list)):
            out[k] = [finite(x) if isinstance(x, float) else x for x in v]
        else:
            out[k] = v
    return out


#: One converted SDK span: its resource, its row (or why it is invalid), events and links.
SdkSpanRows = tuple[ResourceRow, "tuple[Any, ...] | str", "Sequence[tuple[Any, ...]]", "Sequence[tuple[Any, ...]]"]


class SdkSpanConverter:
    """Converts SDK ``ReadableSpan`` objects one at a time, remembering resource rows.

    Converting each span as it ends (see ``qfleet.collector.exporters.SqlSpanProcessor``)
    lets a queue hold compact rows instead of SDK span objects; :meth:`collect` then gathers
    the converted spans into one batch. Safe to share between threads: a race at worst
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
        attrs = sdk_attributes(res.attributes)
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
            sdk_attributes(sp.attributes),
            (sp.dropped_attributes, sp.dropped_events, sp.dropped_links),
        )
        if isinstance(row, str):
            return r, row, (), ()
        events = [
            (trace_id, span_id, seq, ev.timestamp, ev.name, sdk_attributes(ev.attributes),
             getattr(ev, "dropped_attributes", 0))
            for seq, ev in enumerate(sp.events)
        ]
        links = [
            (trace_id, span_id, seq, format(ln.context.trace_id, "032x"),
             format(ln.context.span_id, "016x"),
             ln.context.trace_state.to_header() if ln.context.trace_state else "",
             sdk_attributes(ln.attributes))
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
                batch.reject_span(row)
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


# ---------------------------------------------------------------------------
# Columns (bulk producers)


@dataclass(frozen=True, slots=True)
class SpanColumns:
    """A columnar batch of spans for bulk producers (the simulator's fast path).

    Every column is a sequence of the same length. Optional columns may be left as
    ``None`` (all rows empty). Ids are lowercase hex; times are integer ns.

    Raises:
        ValueError: columns of different lengths (names the column and both lengths).

    Examples:
        >>> cols = SpanColumns(trace_id=["ab" * 16], span_id=["cd" * 8], name=["job.run"],
        ...                    start_time_unix_nano=[10], end_time_unix_nano=[15])
        >>> batch = cols.to_batch(service_name="sim")
        >>> batch.spans[0][6], batch.spans[0][10]  # name, duration_ns
        ('job.run', 5)
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by value through the constructor (the simulator's writer process gets these): compiled by mypyc
        # (setup.py), a frozen class refuses the field-by-field restore that pickle's default does.
        return (SpanColumns, tuple(getattr(self, f) for f in self.__dataclass_fields__))

    def to_batch(
        self, *, service_name: str, resource_attributes: Mapping[str, Any] | None = None,
        scope_name: str = "", json_attributes: bool = False,
    ) -> TelemetryBatch:
        """Rows for the store, validated like every other input; with ``json_attributes``, each span's attributes
        as the JSON text the store keeps (:func:`~qfleet.collector.rows.attributes_json`) instead of a dict."""
        batch = TelemetryBatch()
        attrs = dict(resource_attributes or {})
        attrs.setdefault("service.name", service_name)
        res = resource_row(batch, attrs)
        n = len(self)
        none = [None] * n

        def col(c: Sequence[Any] | None, default: Any) -> Sequence[Any]:
            return c if c is not None else [default] * n

        kinds = col(self.kind, 1)
        codes = col(self.status_code, 0)
        msgs = col(self.status_message, "")
        attrs_c = col(self.attributes, None)
        parents = self.parent_span_id or none
        promoted_cols = [self.node_id or none, self.link_id or none, self.job_id or none,
                         self.run_id or none, self.hardware_type or none]
        fp, svc = res.fingerprint, res.service_name
        spans = batch.spans
        for i, (tid, sid, nm, st, en) in enumerate(
            zip(self.trace_id, self.span_id, self.name, self.start_time_unix_nano,
                self.end_time_unix_nano, strict=True)
        ):
            if len(tid) != 32 or len(sid) != 16 or st <= 0 or en < st or en > MAX_NS:
                batch.reject_span(
                    f"row {i} ({tid!r}/{sid!r}, {nm!r}): need 32+16 hex ids and 0 < start <= end"
                )
                continue
            a = attrs_c[i]
            stored: Any = a if a is not None else {}
            if json_attributes:
                stored = attributes_json(stored)
            spans.append(
                (tid, sid, parents[i], fp, svc, scope_name, nm, kinds[i], st, en, en - st,
                 codes[i], msgs[i], "", 0, stored, 0, 0, 0,
                 promoted_cols[0][i], promoted_cols[1][i], promoted_cols[2][i], promoted_cols[3][i],
                 promoted_cols[4][i])
            )
        return batch
