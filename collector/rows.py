"""The shape every ingestion path converts to: store rows gathered in a :class:`TelemetryBatch`.

Rows are plain tuples in the store's column order (:data:`SPAN_COLUMNS` and friends), so a
batch costs little memory in a queue and goes to the database without another copy.
Nothing here touches I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from qfleet.collector.schema import PROMOTED_ATTRIBUTES

__all__ = [
    "EVENT_COLUMNS",
    "LINK_COLUMNS",
    "MAX_NS",
    "PROMOTED_KEYS",
    "SERIES_COLUMNS",
    "SPAN_COLUMNS",
    "ResourceRow",
    "SeriesRow",
    "TelemetryBatch",
    "attributes_json",
    "finite",
    "fingerprint",
    "json_safe",
    "promoted",
    "resource_row",
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

#: Attribute keys of the promoted span columns, in :data:`SPAN_COLUMNS` order.
PROMOTED_KEYS = tuple(PROMOTED_ATTRIBUTES.values())
#: Times are stored as signed 64-bit integers (BIGINT): good until the year 2262.
MAX_NS = 2**63 - 1
# Errors described per batch: enough to explain a partial success, bounded in memory.
_MAX_ERRORS = 10


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """A resource, keyed by the fingerprint of its attributes."""

    fingerprint: str
    service_name: str
    attributes: dict[str, Any]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled through the constructor (a batch may cross to the simulator's writer process): compiled by mypyc
        # (setup.py), a frozen class refuses the field-by-field restore that pickle's default does.
        return (ResourceRow, (self.fingerprint, self.service_name, self.attributes))


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A metric series; ``values`` follows :data:`SERIES_COLUMNS`."""

    values: tuple[Any, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        return (SeriesRow, (self.values,))  # as ResourceRow's


@dataclass(slots=True)
class TelemetryBatch:
    """Rows ready for the store, plus what was refused while converting.

    ``samples`` hold ``(series_fingerprint, time_unix_nano, value)``; the store maps the
    fingerprint to the series id. A span's ``attributes`` is a dict, or its JSON text when the
    compiled OTLP decoder wrote it straight from the wire (the store keeps such text as is). ``rejected_*`` count invalid items and ``errors``
    describes the first few of them. ``adjusted`` counts what was stored changed, by what
    (attributes dropped by a limit, values truncated, counts clipped, NULs replaced).

    Examples:
        >>> b = TelemetryBatch()
        >>> b.reject_span("span 'x': invalid trace_id")
        >>> (b.item_count, b.rejected_spans, b.errors)
        (0, 1, ["span 'x': invalid trace_id"])
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
    adjusted: dict[str, int] = field(default_factory=dict)

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
        for what, n in other.adjusted.items():
            self.adjust(what, n)

    def reject_span(self, why: str) -> None:
        """Count one invalid span; ``why`` is kept among the first few errors."""
        self.rejected_spans += 1
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(why)

    def adjust(self, what: str, n: int = 1) -> None:
        """Count ``n`` changes of kind ``what`` made to stored data (a limit, a clip)."""
        if n:
            self.adjusted[what] = self.adjusted.get(what, 0) + n

    def reject_point(self, why: str) -> None:
        """Count one invalid metric point; ``why`` is kept among the first few errors."""
        self.rejected_points += 1
        if len(self.errors) < _MAX_ERRORS:
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


def resource_row(batch: TelemetryBatch, attributes: dict[str, Any]) -> ResourceRow:
    """The batch's row for the resource with ``attributes`` (added on first use).

    >>> b = TelemetryBatch()
    >>> resource_row(b, {"service.name": "agent"}).service_name, len(b.resources)
    ('agent', 1)
    >>> resource_row(b, {}).service_name
    'unknown_service'
    """
    fp = fingerprint(attributes)
    row = batch.resources.get(fp)
    if row is None:
        name = attributes.get("service.name")
        row = ResourceRow(fp, str(name) if name is not None else "unknown_service", attributes)
        batch.resources[fp] = row
    return row


def promoted(attrs: Mapping[str, Any], resource_attrs: Mapping[str, Any], key: str) -> str | None:
    """The value of a promoted column: the item's attribute ``key``, else the resource's.

    >>> promoted({}, {"qfleet.node.id": "qpu-a"}, "qfleet.node.id")
    'qpu-a'
    """
    v = attrs.get(key)
    if v is None:
        v = resource_attrs.get(key)
    return None if v is None else str(v)


def finite(v: float) -> float | str:
    """``v``, or its text when it is NaN or infinite.

    JSON (and PostgreSQL's JSONB) has no NaN or infinity: such values are kept as text.

    >>> finite(1.5), finite(float("-inf"))
    (1.5, '-inf')
    """
    return v if math.isfinite(v) else str(v)


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float (not representable in JSON) replaced by its text.

    >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, 'nan'], 'b': 'inf'}
    """
    if isinstance(v, float):
        return finite(v)
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


# One encoder for all rows: json.dumps with options builds a new encoder per call.
_strict_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def attributes_json(v: Any) -> str:
    """JSON text of an attribute map, as the store keeps it; NaN and infinities (not JSON) become strings.

    A ``str`` is an attribute map already written as JSON text (see :class:`TelemetryBatch`): kept as is.

    >>> attributes_json({"a": 1, "f": float("nan"), "s": "null"})
    '{"a":1,"f":"nan","s":"null"}'
    """
    if type(v) is str:
        return v
    try:
        out = orjson.dumps(v)
    except (TypeError, orjson.JSONEncodeError):
        out = b"null"  # a type or an integer orjson does not take: the stdlib encoder decides below
    if b"null" not in out:
        return out.decode()
    # orjson writes NaN and infinities as null, indistinguishable from None: the strict encoder tells them apart
    # (rare: most attribute maps hold no null, and a string that merely contains "null" just takes this path).
    try:
        return _strict_json(v)
    except ValueError:
        return _strict_json(json_safe(v))
