"""The receiver's decode stage: an OTLP/HTTP body in, a :class:`TelemetryBatch` out, and OTLP answers.

:func:`decode_body` undoes ``Content-Encoding: gzip`` within a byte limit (so a small
compressed body cannot inflate past it), parses protobuf or OTLP/JSON and converts it to
store rows within :class:`~qfleet.collector.limits.Limits`. :func:`export_response` encodes
the answer to a request, with ``partial_success`` when invalid items were rejected (or, with
none rejected, to warn of what limits cut); :func:`status_body` encodes the
``google.rpc.Status`` of an error answer. Nothing here touches I/O.
"""

from __future__ import annotations

import json
import zlib

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from qfleet.collector.consumer import SPANS, SignalName
from qfleet.collector.limits import Limits
from qfleet.collector.metric_rows import from_metrics_request
from qfleet.collector.otlp import (
    MEDIA_PROTOBUF,
    DecodeFailure,
    decode_metrics_request,
    decode_trace_request,
    media_type,
)
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.span_rows import from_trace_protobuf, from_trace_request

__all__ = [
    "BodyTooLarge",
    "DecodeFailure",
    "clip",
    "decode_body",
    "export_response",
    "gunzip",
    "rejected_items",
    "rejection_message",
    "status_body",
]

# google.rpc.Code of each HTTP status answered on the OTLP paths.
_RPC_CODE = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 500: 13, 503: 14}
_MAX_MESSAGE = 1000
_DEFAULT_LIMITS = Limits()


class BodyTooLarge(Exception):
    """The body exceeds the byte limit once decompressed; ``args[0]`` is the size reached."""


def gunzip(data: bytes, cap: int) -> bytes:
    """Decompress gzip ``data`` (one or more members), refusing output beyond ``cap`` bytes.

    Raises:
        BodyTooLarge: the output would exceed ``cap`` (decompression stops there).
        DecodeFailure: ``data`` is not gzip, or is truncated.

    >>> import gzip
    >>> gunzip(gzip.compress(b"ab") + gzip.compress(b"c"), 3)
    b'abc'
    >>> gunzip(gzip.compress(b"x" * 100), 99)
    Traceback (most recent call last):
    ...
    qfleet.collector.decode.BodyTooLarge: 100
    """
    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while True:
                # max_length bounds the output of one call; it is never 0 (0 means unlimited).
                chunk = d.decompress(pending, cap + 1 - total)
                total += len(chunk)
                if total > cap:
                    raise BodyTooLarge(total)
                out.append(chunk)
                pending = d.unconsumed_tail
                if not pending:
                    break
            if not d.eof:
                raise DecodeFailure("gzip body is truncated (Content-Encoding: gzip)")
            rest = d.unused_data
    except zlib.error as err:
        raise DecodeFailure(f"Content-Encoding is gzip but the body is not valid gzip: {err}") from None
    return b"".join(out)


def decode_body(signal: SignalName, body: bytes, content_type: str, *, gzipped: bool,
                max_bytes: int, limits: Limits = _DEFAULT_LIMITS) -> TelemetryBatch:
    """Store rows of one OTLP/HTTP request body; invalid items are counted in the batch.

    ``limits`` bound what one request may build (attributes, value lengths, events, links):
    what exceeds them is cut and counted (``batch.adjusted``), or rejected for metric points.
    An OTLP/JSON span that fails to parse is rejected alone, as an invalid protobuf span is.

    Raises:
        BodyTooLarge: the gzip body inflates beyond ``max_bytes``.
        DecodeFailure: the body is not a valid request (the message says what is wrong),
            including one nested too deeply to parse.
    """
    if gzipped:
        body = gunzip(body, max_bytes)
    try:
        if signal == SPANS:
            if media_type(content_type) in MEDIA_PROTOBUF:
                fast = from_trace_protobuf(body, limits)
                if fast is not None:
                    return fast
            rejects: list[str] = []
            cut: dict[str, int] = {}
            req = decode_trace_request(body, content_type, rejects=rejects, limits=limits, cut=cut)
            del body  # the parsed message holds what is needed: let the raw bytes go
            return from_trace_request(req, limits, rejected=rejects, cut=cut)
        return from_metrics_request(decode_metrics_request(body, content_type), limits)
    except RecursionError:
        raise DecodeFailure("body is nested too deeply to decode") from None


def rejected_items(batch: TelemetryBatch, signal: SignalName) -> int:
    """Invalid items of ``signal`` dropped while converting (reported as partial success)."""
    return batch.rejected_spans if signal == SPANS else batch.rejected_points


def clip(message: str) -> str:
    """``message``, cut to a length fit for a response.

    >>> len(clip("x" * 5000))
    1003
    """
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "..."


def rejection_message(batch: TelemetryBatch, signal: SignalName) -> str:
    """The partial-success ``error_message``: what was rejected and why, and what was cut.

    Empty when nothing was rejected or changed. OTLP lets a server send a message with zero
    rejected items as a warning: limits applied (attributes, events, links dropped and
    counted in the stored ``dropped_*_count``), values truncated, counts clipped, NULs replaced.

    >>> b = TelemetryBatch()
    >>> b.reject_span("span 'a': bad id")
    >>> rejection_message(b, "spans")
    "1 invalid spans rejected: span 'a': bad id"
    >>> b = TelemetryBatch()
    >>> b.adjust("attributes", 872)
    >>> rejection_message(b, "spans")
    'stored within limits: 872 attributes dropped'
    """
    rejected = rejected_items(batch, signal)
    parts = []
    if rejected:
        shown = batch.errors[:5]
        more = f" (first {len(shown)} shown)" if rejected > len(shown) else ""
        what = "spans" if signal == SPANS else "data points"
        parts.append(f"{rejected} invalid {what} rejected{more}: " + "; ".join(shown))
    if batch.adjusted:
        changes = ", ".join(f"{n} {what}" + (" dropped" if what in _DROPPABLE else "")
                            for what, n in sorted(batch.adjusted.items()))
        parts.append(f"stored within limits: {changes}")
    return clip("; ".join(parts))


_DROPPABLE = ("attributes", "events", "links")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def status_body(http_code: int, message: str, as_json: bool) -> bytes:
    """A ``google.rpc.Status`` (code, message) as OTLP/JSON or protobuf.

    Encoded by hand (two fields) so the receiver needs no googleapis-common-protos.

    >>> status_body(400, "bad", False)
    b'\\x08\\x03\\x12\\x03bad'
    >>> status_body(400, "bad", True)
    b'{"code":3,"message":"bad"}'
    """
    code = _RPC_CODE.get(http_code, 2)
    if as_json:
        return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()
    msg = message.encode("utf-8", "replace")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def export_response(signal: SignalName, as_json: bool, rejected: int, message: str) -> bytes:
    """An ``Export*ServiceResponse``; ``partial_success`` when something was rejected or ``message`` warns.

    >>> export_response("spans", True, 0, "")
    b'{}'
    >>> export_response("spans", True, 0, "stored within limits: 3 events dropped")
    b'{"partialSuccess": {"errorMessage": "stored within limits: 3 events dropped"}}'
    >>> export_response("metric_points", True, 2, "2 invalid data points rejected")
    b'{"partialSuccess": {"rejectedDataPoints": "2", "errorMessage": "2 invalid data points rejected"}}'
    """
    if as_json:
        if not rejected and not message:
            return b"{}"
        key = "rejectedSpans" if signal == SPANS else "rejectedDataPoints"
        # OTLP/JSON writes 64-bit integers as strings, and omits zero values.
        partial = {key: str(rejected)} if rejected else {}
        return json.dumps({"partialSuccess": {**partial, "errorMessage": message}}).encode()
    if signal == SPANS:
        tr = ExportTraceServiceResponse()
        if rejected or message:
            tr.partial_success.rejected_spans = rejected
            tr.partial_success.error_message = message
        return tr.SerializeToString()
    mr = ExportMetricsServiceResponse()
    if rejected or message:
        mr.partial_success.rejected_data_points = rejected
        mr.partial_success.error_message = message
    return mr.SerializeToString()
