"""Prometheus remote write 1.0 on the wire: snappy-block-compressed protobuf ``prometheus.WriteRequest``.

The messages (``WriteRequest``, ``TimeSeries``, ``Label``, ``Sample``, ``Exemplar``,
``MetricMetadata``, with Prometheus' field numbers from ``prompb/remote.proto`` and
``prompb/types.proto``) are built at import from a descriptor, for the installed protobuf
runtime: no generated code, no ``protoc``. Native histograms (``TimeSeries`` field 4) are
declared without fields, only so that they can be counted. :func:`decode_write_request`
checks the size a snappy block declares before decompressing it; :func:`encode_write_request`
builds a body as Prometheus sends it. Nothing here touches I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from qfleet.collector.decode import BodyTooLarge
from qfleet.collector.otlp import DecodeFailure

__all__ = [
    "METRIC_TYPES",
    "STALE_NAN_BITS",
    "Metadata",
    "Series",
    "WriteRequest",
    "decode_write_request",
    "encode_write_request",
    "is_stale",
    "snappy_length",
]

#: The value of a Prometheus staleness marker: a NaN with this bit pattern ("the series ended").
STALE_NAN_BITS: Final = 0x7FF0000000000002
_STALE_BYTES = struct.pack("<Q", STALE_NAN_BITS)
#: ``MetricMetadata.MetricType`` values by name (``prompb/types.proto``).
METRIC_TYPES: Final = {"unknown": 0, "counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4,
                       "summary": 5, "info": 6, "stateset": 7}

_F = descriptor_pb2.FieldDescriptorProto
_REPEATED, _OPTIONAL = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL


def _message(fd: descriptor_pb2.FileDescriptorProto, name: str,
             fields: Sequence[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
    msg = fd.message_type.add(name=name)
    for fname, number, label, ftype, type_name in fields:
        f = msg.field.add(name=fname, number=number, label=label, type=ftype)
        if type_name:
            f.type_name = type_name
    return msg


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="qfleet/prompb.proto", package="prometheus", syntax="proto3")
    msg, string, double, int64, enum = _F.TYPE_MESSAGE, _F.TYPE_STRING, _F.TYPE_DOUBLE, _F.TYPE_INT64, _F.TYPE_ENUM
    _message(fd, "WriteRequest", [("timeseries", 1, _REPEATED, msg, ".prometheus.TimeSeries"),
                                  ("metadata", 3, _REPEATED, msg, ".prometheus.MetricMetadata")])
    _message(fd, "TimeSeries", [("labels", 1, _REPEATED, msg, ".prometheus.Label"),
                                ("samples", 2, _REPEATED, msg, ".prometheus.Sample"),
                                ("exemplars", 3, _REPEATED, msg, ".prometheus.Exemplar"),
                                ("histograms", 4, _REPEATED, msg, ".prometheus.Histogram")])
    _message(fd, "Label", [("name", 1, _OPTIONAL, string, ""), ("value", 2, _OPTIONAL, string, "")])
    _message(fd, "Sample", [("value", 1, _OPTIONAL, double, ""), ("timestamp", 2, _OPTIONAL, int64, "")])
    _message(fd, "Exemplar", [("labels", 1, _REPEATED, msg, ".prometheus.Label"),
                              ("value", 2, _OPTIONAL, double, ""), ("timestamp", 3, _OPTIONAL, int64, "")])
    _message(fd, "Histogram", [])  # native histograms: counted, not stored (their fields stay unknown)
    meta = _message(fd, "MetricMetadata", [("type", 1, _OPTIONAL, enum, ".prometheus.MetricMetadata.MetricType"),
                                           ("metric_family_name", 2, _OPTIONAL, string, ""),
                                           ("help", 4, _OPTIONAL, string, ""), ("unit", 5, _OPTIONAL, string, "")])
    kinds = meta.enum_type.add(name="MetricType")
    for name, number in METRIC_TYPES.items():
        kinds.value.add(name=name.upper(), number=number)
    return fd


# A pool of our own: another "prometheus" package in the default pool cannot clash with this one.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
#: The ``prometheus.WriteRequest`` message class (its instances are typed ``Any``: built at run time).
WriteRequest: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.WriteRequest"))


@dataclass(frozen=True, slots=True)
class Series:
    """One time series to encode: its labels (``__name__`` included) and ``(timestamp ms, value)`` samples."""

    labels: Mapping[str, str]
    samples: Sequence[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class Metadata:
    """What Prometheus sends about a metric family (``MetricMetadata``); ``kind`` is a :data:`METRIC_TYPES` key."""

    family: str
    kind: str
    help: str = ""
    unit: str = ""


def is_stale(value: float) -> bool:
    """Whether ``value`` is Prometheus' staleness marker (not any NaN).

    >>> is_stale(struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]), is_stale(math.nan), is_stale(1.0)
    (True, False, False)
    """
    return math.isnan(value) and struct.pack("<d", value) == _STALE_BYTES


def snappy_length(body: bytes) -> int:
    """The uncompressed size a snappy block declares in its header (a varint of at most 32 bits).

    Raises:
        DecodeFailure: the header is missing or not a valid varint.

    >>> snappy_length(bytes(cramjam.snappy.compress_raw(b"x" * 300)))
    300
    """
    n = shift = 0
    for i, b in enumerate(body[:5]):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            if n >= 1 << 32:
                break
            return n
        shift += 7
        if i == 4:
            break
    raise DecodeFailure("body is not snappy block format (Content-Encoding: snappy): no valid length header")


def decode_write_request(body: bytes, max_bytes: int) -> Any:
    """The ``WriteRequest`` in a snappy-compressed ``body``, decompressed only if it declares ``<= max_bytes``.

    Raises:
        BodyTooLarge: the declared uncompressed size exceeds ``max_bytes`` (``args[0]`` is that size).
        DecodeFailure: not snappy block format, or not a valid ``WriteRequest`` (the message says which).

    >>> body = encode_write_request([Series({"__name__": "up", "job": "a"}, [(1000, 1.0)])])
    >>> decode_write_request(body, 1 << 20).timeseries[0].samples[0].timestamp
    1000
    >>> decode_write_request(body, 10)
    Traceback (most recent call last):
    ...
    qfleet.collector.decode.BodyTooLarge: 42
    """
    declared = snappy_length(body)
    if declared > max_bytes:
        raise BodyTooLarge(declared)
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as err:
        raise DecodeFailure(f"body is not valid snappy block format (Content-Encoding: snappy): {err}") from None
    req = WriteRequest()
    try:
        req.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise DecodeFailure(f"body is not a valid protobuf prometheus.WriteRequest: {err}") from None
    except RecursionError:
        raise DecodeFailure("body is nested too deeply to decode") from None
    return req


def encode_write_request(series: Iterable[Series], metadata: Iterable[Metadata] = ()) -> bytes:
    """A remote write 1.0 body: ``series`` (labels sorted by name, as the spec requires) and ``metadata``,
    serialised and snappy-block compressed.

    >>> len(encode_write_request([])) > 0
    True
    """
    req = WriteRequest()
    for s in series:
        ts = req.timeseries.add()
        for name in sorted(s.labels):
            ts.labels.add(name=name, value=s.labels[name])
        for t, v in s.samples:
            ts.samples.add(timestamp=t, value=v)
    for m in metadata:
        req.metadata.add(type=METRIC_TYPES[m.kind], metric_family_name=m.family, help=m.help, unit=m.unit)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
