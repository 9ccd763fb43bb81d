"""OTLP request bodies (protobuf or OTLP/JSON) into the generated protobuf messages.

OTLP/JSON writes trace and span ids as hex, where protobuf's JSON parser expects base64
for bytes fields: ids are converted before parsing, and a bad id fails the request with a
message that names the field. Nothing here touches I/O.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from qfleet.collector.limits import Limits
from qfleet.collector.rows import finite

__all__ = [
    "MEDIA_JSON",
    "MEDIA_PROTOBUF",
    "REPLACEMENT",
    "AttributeReader",
    "DecodeFailure",
    "decode_metrics_request",
    "decode_trace_request",
    "media_type",
]

#: The OTLP/JSON media type.
MEDIA_JSON = "application/json"
#: The OTLP protobuf media types (the first is the one OTLP/HTTP specifies).
MEDIA_PROTOBUF = ("application/x-protobuf", "application/protobuf")


class DecodeFailure(ValueError):
    """A request body that cannot be decoded at all (answered with HTTP 400)."""


_M = TypeVar("_M", bound=Message)
_T = TypeVar("_T")


def media_type(content_type: str) -> str:
    """The lower-case media type of a Content-Type header, without parameters.

    >>> media_type("Application/JSON; charset=utf-8")
    'application/json'
    """
    return content_type.split(";", 1)[0].strip().lower()


def decode_trace_request(body: bytes, content_type: str, *, rejects: list[str] | None = None,
                         limits: Limits | None = None,
                         cut: dict[str, int] | None = None) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP traces body (protobuf or OTLP/JSON).

    Args:
        rejects: when given, an OTLP/JSON span that cannot be parsed (a bad id, a number out
            of its field's range) is left out and described here instead of failing the request.
        limits: when given, OTLP/JSON lists beyond the per-item limits are cut before parsing
            (so parsing costs no more than the limits), adding to the dropped counts, and what
            was cut is counted in ``cut`` (``attributes``, ``events``, ``links``).

    Raises:
        DecodeFailure: the body is not a valid request; the message says what is wrong.
    """
    fix = functools.partial(_fix_trace_json, rejects=rejects, limits=limits,
                            cut={} if cut is None else cut)
    return _decode(body, content_type, ExportTraceServiceRequest(), fix, rejects)


def decode_metrics_request(body: bytes, content_type: str) -> ExportMetricsServiceRequest:
    """Parse an OTLP/HTTP metrics body (protobuf or OTLP/JSON).

    Raises:
        DecodeFailure: the body is not a valid request; the message says what is wrong.
    """
    return _decode(body, content_type, ExportMetricsServiceRequest(), _fix_metrics_json, None)


def _decode(body: bytes, content_type: str, msg: _M, fix_json: Callable[[dict[str, Any]], None],
            rejects: list[str] | None) -> _M:
    media = media_type(content_type)
    if media == MEDIA_JSON:
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
            if rejects is None or not _drop_unparsable_spans(doc, rejects):
                raise DecodeFailure(f"JSON body is not an OTLP request: {err}") from None
            msg.Clear()
            try:  # the spans that failed are gone: what fails now is outside every span
                json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
            except (json_format.ParseError, TypeError, ValueError) as err2:
                raise DecodeFailure(f"JSON body is not an OTLP request: {err2}") from None
        return msg
    if media in MEDIA_PROTOBUF:
        try:
            msg.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as err:
            raise DecodeFailure(f"body is not a valid protobuf {type(msg).__name__}: {err}") from None
        return msg
    raise DecodeFailure(
        f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json"
    )


def _drop_unparsable_spans(doc: dict[str, Any], rejects: list[str]) -> bool:
    """Leave out (and describe) each span that fails to parse alone; whether any did.

    Only runs once the whole request failed to parse, so valid requests pay nothing.
    """
    dropped = False
    for w, ss in _scope_spans(doc):
        kept = []
        for k, sp in enumerate(ss["spans"]):
            try:
                json_format.ParseDict(sp, OtlpSpan(), ignore_unknown_fields=True)
            except (json_format.ParseError, TypeError, ValueError) as err:
                rejects.append(f"{w}.spans[{k}] (name {_name(sp)!r}): {err}")
                dropped = True
                continue
            kept.append(sp)
        ss["spans"] = kept
    return dropped


def _name(sp: Any) -> str:
    n = sp.get("name") if isinstance(sp, dict) else None
    return n[:200] if isinstance(n, str) else ""


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
        raise DecodeFailure(f"{where}.{key}={v[:100]!r} is not hex (OTLP/JSON ids are hex strings)") from None
    if len(raw) != nbytes:
        raise DecodeFailure(f"{where}.{key}={v[:100]!r} must be {nbytes * 2} hex characters")
    obj[key] = base64.b64encode(raw).decode()


def _list(obj: Any, key: str, where: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    if v is None:
        return []
    if not isinstance(v, list):
        raise DecodeFailure(f"{where}.{key} must be a list, got {type(v).__name__}")
    return v


def _scope_spans(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each ``scopeSpans`` object (with a ``spans`` list) and where it is."""
    for i, rs in enumerate(_list(doc, "resourceSpans", "")):
        for j, ss in enumerate(_list(rs, "scopeSpans", f"resourceSpans[{i}]")):
            w = f"resourceSpans[{i}].scopeSpans[{j}]"
            if _list(ss, "spans", w):
                yield w, ss


_UINT32_MAX = 2**32 - 1


def _cut_list(obj: dict[str, Any], key: str, count_key: str, keep: int, cut: dict[str, int],
              what: str) -> None:
    # Cut obj[key] to ``keep`` entries and add the rest to obj[count_key], as the protobuf
    # path does after parsing (the stored count saturates below 2**32 - 1, so capping it
    # here gives the same row). A count that is not a valid uint32 is left for the parser.
    xs = obj.get(key)
    if not isinstance(xs, list) or len(xs) <= keep:
        return
    n = obj.get(count_key, 0)
    try:
        old = int(n) if isinstance(n, (int, str)) and not isinstance(n, bool) else -1
    except ValueError:
        old = -1
    if not 0 <= old <= _UINT32_MAX:
        return
    extra = len(xs) - keep
    del xs[keep:]
    obj[count_key] = min(old + extra, _UINT32_MAX)
    cut[what] = cut.get(what, 0) + extra


def _fix_trace_json(doc: dict[str, Any], *, rejects: list[str] | None, limits: Limits | None,
                    cut: dict[str, int]) -> None:
    if limits is not None:
        for rs in _list(doc, "resourceSpans", ""):
            if isinstance(rs, dict) and isinstance(rs.get("resource"), dict):
                _cut_list(rs["resource"], "attributes", "droppedAttributesCount",
                          limits.max_attributes_per_item, cut, "attributes")
    for w, ss in _scope_spans(doc):
        kept = []
        for k, sp in enumerate(ss["spans"]):
            try:
                _fix_span_json(sp, f"{w}.spans[{k}]", limits, cut)
            except DecodeFailure as err:
                if rejects is None:
                    raise
                rejects.append(f"span {_name(sp)!r}: {err}")
                continue
            kept.append(sp)
        ss["spans"] = kept


def _fix_span_json(sp: Any, ws: str, limits: Limits | None, cut: dict[str, int]) -> None:
    if not isinstance(sp, dict):
        raise DecodeFailure(f"{ws} must be an object")
    if limits is not None:
        per_item = limits.max_attributes_per_item
        _cut_list(sp, "attributes", "droppedAttributesCount", per_item, cut, "attributes")
        _cut_list(sp, "events", "droppedEventsCount", limits.max_events_per_span, cut, "events")
        _cut_list(sp, "links", "droppedLinksCount", limits.max_links_per_span, cut, "links")
        for key in ("events", "links"):
            for x in _list(sp, key, ws):
                if isinstance(x, dict):
                    _cut_list(x, "attributes", "droppedAttributesCount", per_item, cut, "attributes")
    _hex_to_b64(sp, "traceId", ws, 16)
    _hex_to_b64(sp, "spanId", ws, 8)
    _hex_to_b64(sp, "parentSpanId", ws, 8)
    for m, ln in enumerate(_list(sp, "links", ws)):
        if isinstance(ln, dict):
            _hex_to_b64(ln, "traceId", f"{ws}.links[{m}]", 16)
            _hex_to_b64(ln, "spanId", f"{ws}.links[{m}]", 8)


_METRIC_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


def _fix_metrics_json(doc: dict[str, Any]) -> None:
    for i, rm in enumerate(_list(doc, "resourceMetrics", "")):
        for j, sm in enumerate(_list(rm, "scopeMetrics", f"resourceMetrics[{i}]")):
            w = f"resourceMetrics[{i}].scopeMetrics[{j}]"
            for k, m in enumerate(_list(sm, "metrics", w)):
                if not isinstance(m, dict):
                    raise DecodeFailure(f"{w}.metrics[{k}] must be an object")
                for kind in _METRIC_KINDS:
                    data = m.get(kind)
                    if isinstance(data, dict):
                        _fix_exemplars(data, f"{w}.metrics[{k}].{kind}")


def _fix_exemplars(data: dict[str, Any], where: str) -> None:
    for p, dp in enumerate(_list(data, "dataPoints", where)):
        we = f"{where}.dataPoints[{p}]"
        for e, ex in enumerate(_list(dp, "exemplars", we)):
            if isinstance(ex, dict):
                _hex_to_b64(ex, "traceId", f"{we}.exemplars[{e}]", 16)
                _hex_to_b64(ex, "spanId", f"{we}.exemplars[{e}]", 8)


#: What replaces a NUL character in stored text (PostgreSQL text and JSONB cannot hold NUL;
#: SQLite could: one behaviour on both backends).
REPLACEMENT = "\ufffd"


class AttributeReader:
    """Converts one request's OTLP attributes and text under :class:`Limits`, counting changes.

    One reader per request: it holds what is left of ``max_attributes_per_request``. Values
    become JSON-storable (bytes as base64 text, non-finite floats as text), strings are cut to
    ``max_attribute_value_length`` characters (bytes to as many bytes), NUL characters replaced by U+FFFD; only the kept
    attributes are ever converted, so the cost is bounded by the limits, not by the body.

    Examples:
        >>> r = AttributeReader(Limits(max_attributes_per_item=2, max_attribute_value_length=3))
        >>> r.read([KeyValue(key=k, value=AnyValue(string_value="abcdef")) for k in "xyz"])
        ({'x': 'abc', 'y': 'abc'}, 1)
        >>> r.truncated, r.text("a\\x00b"), r.nuls
        (2, 'a\\ufffdb', 1)
    """

    __slots__ = ("budget", "limits", "nuls", "truncated")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        #: Attribute values this request may still convert.
        self.budget = limits.max_attributes_per_request
        #: Values cut to the length limit, and arrays/maps cut by the request budget.
        self.truncated = 0
        #: Strings whose NUL characters were replaced.
        self.nuls = 0

    def text(self, s: str) -> str:
        """``s`` with NUL characters replaced by U+FFFD (counted)."""
        if "\x00" in s:
            self.nuls += 1
            return s.replace("\x00", REPLACEMENT)
        return s

    def read(self, kvs: Sequence[KeyValue]) -> tuple[dict[str, Any], int]:
        """The kept attributes of one item, and how many were dropped by the limits."""
        n = len(kvs)
        take = min(n, self.limits.max_attributes_per_item, self.budget)
        if take <= 0:
            return {}, n
        self.budget -= take
        value, text = self.value, self.text
        max_len = self.limits.max_attribute_value_length
        out: dict[str, Any] = {}
        for kv in kvs if take == n else kvs[:take]:
            k = kv.key
            if "\x00" in k:
                k = text(k)
            v = kv.value
            # The common case, inlined: a non-empty string_value is set only when the value is a string (a
            # oneof), so this skips WhichOneof; an empty string takes value() like every other kind.
            s = v.string_value
            if s and len(s) <= max_len and "\x00" not in s:
                out[k] = s
                continue
            out[k] = value(v)
        return out, n - take

    def value(self, v: AnyValue) -> Any:
        """The Python value of an ``AnyValue`` (bytes as base64 text, non-finite floats as text), within the limits."""
        k = v.WhichOneof("value")
        if k == "string_value":
            s = v.string_value
            if len(s) > self.limits.max_attribute_value_length:
                s = s[:self.limits.max_attribute_value_length]
                self.truncated += 1
            return self.text(s)
        if k == "int_value":
            return v.int_value
        if k == "double_value":
            return finite(v.double_value)
        if k == "bool_value":
            return v.bool_value
        if k == "array_value":
            return [self.value(x) for x in self._cut(v.array_value.values)]
        if k == "kvlist_value":
            return {self.text(kv.key): self.value(kv.value) for kv in self._cut(v.kvlist_value.values)}
        if k == "bytes_value":
            b = v.bytes_value
            if len(b) > self.limits.max_attribute_value_length:
                b = b[:self.limits.max_attribute_value_length]
                self.truncated += 1
            return base64.b64encode(b).decode()
        return None

    def _cut(self, xs: Sequence[_T]) -> Sequence[_T]:
        # Nested values count against the request budget too: one attribute can hold a map
        # of a million entries.
        n = len(xs)
        take = min(n, self.budget)
        self.budget -= take
        if take < n:
            self.truncated += 1
            return xs[:take]
        return xs
