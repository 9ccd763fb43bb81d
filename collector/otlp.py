"""OTLP request bodies (protobuf or OTLP/JSON) into the generated protobuf messages.

OTLP/JSON writes trace and span ids as hex, where protobuf's JSON parser expects base64
for bytes fields: ids are converted before parsing, and a bad id fails the request with a
message that names the field. Nothing here touches I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from qfleet.collector.rows import finite

__all__ = [
    "MEDIA_JSON",
    "MEDIA_PROTOBUF",
    "DecodeFailure",
    "any_value",
    "attributes",
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


def media_type(content_type: str) -> str:
    """The lower-case media type of a Content-Type header, without parameters.

    >>> media_type("Application/JSON; charset=utf-8")
    'application/json'
    """
    return content_type.split(";", 1)[0].strip().lower()


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


def _decode(body: bytes, content_type: str, msg: _M, fix_json: Callable[[dict[str, Any]], None]) -> _M:
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
            raise DecodeFailure(f"JSON body is not an OTLP request: {err}") from None
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


def any_value(v: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (bytes as base64 text; non-finite floats as text).

    >>> any_value(AnyValue(int_value=7)), any_value(AnyValue(bytes_value=b"hi"))
    (7, 'aGk=')
    """
    k = v.WhichOneof("value")
    if k == "string_value":
        return v.string_value
    if k == "int_value":
        return v.int_value
    if k == "double_value":
        return finite(v.double_value)
    if k == "bool_value":
        return v.bool_value
    if k == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if k == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if k == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP ``KeyValue`` attributes as a dict.

    >>> attributes([KeyValue(key="shots", value=AnyValue(int_value=1000))])
    {'shots': 1000}
    """
    return {kv.key: any_value(kv.value) for kv in kvs}
