"""OTLP request builders and a tiny HTTP client for the receiver tests.

Requests are built with the generated protobuf classes directly (fast, no SDK), so tests
control every id and timestamp.
"""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

T0 = 1_795_000_000_000_000_000  # a fixed 2026 timestamp in ns


def any_value(v: Any) -> AnyValue:
    """An OTLP AnyValue for a Python value (scalars, bytes, lists and dicts)."""
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(v)))
    return AnyValue(string_value=str(v))


def kvs(attrs: Mapping[str, Any]) -> list[KeyValue]:
    """OTLP KeyValues for a dict."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def row_attributes(row: Sequence[Any]) -> dict[str, Any]:
    """A span row's attributes as a dict, whether the row holds a dict or the JSON text the compiled decoder
    writes (what the store keeps either way)."""
    from qfleet.collector.rows import SPAN_COLUMNS

    a = row[SPAN_COLUMNS.index("attributes")]
    return json.loads(a) if isinstance(a, str) else dict(a)


def make_span(trace_id: bytes, span_id: bytes, name: str = "op", *, start: int = T0,
              duration: int = 1000, parent: bytes = b"", attrs: Mapping[str, Any] | None = None,
              events: Sequence[tuple[str, int, Mapping[str, Any]]] = (), kind: int = 1) -> Span:
    """One protobuf span; ``events`` are (name, time, attributes)."""
    sp = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
              start_time_unix_nano=start, end_time_unix_nano=start + duration)
    sp.attributes.extend(kvs(attrs or {}))
    for ev_name, t, ev_attrs in events:
        ev = sp.events.add(name=ev_name, time_unix_nano=t)
        ev.attributes.extend(kvs(ev_attrs))
    return sp


def trace_request(spans: Sequence[Span], *, service: str = "test-svc",
                  scope: str = "tests") -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest with one resource and one scope."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": service}))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    ss.spans.extend(spans)
    return req


def random_spans(rng: random.Random, n: int, *, start: int = T0, name: str = "op") -> list[Span]:
    """``n`` spans with random (distinct with overwhelming probability) ids."""
    out = []
    for i in range(n):
        out.append(make_span(rng.randbytes(16), rng.randbytes(8), name, start=start + i * 1000,
                             attrs={"qfleet.node.id": f"node-{i % 4}", "i": i}))
    return out


def span_keys(req: ExportTraceServiceRequest) -> set[tuple[str, str]]:
    """(trace_id, span_id) hex of every span in ``req``."""
    return {(sp.trace_id.hex(), sp.span_id.hex())
            for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans}


def gauge_request(name: str, unit: str, points: Sequence[tuple[int, float, Mapping[str, Any]]], *,
                  service: str = "test-svc", description: str = "") -> ExportMetricsServiceRequest:
    """An ExportMetricsServiceRequest with one gauge; ``points`` are (time, value, attributes)."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": service}))
    sm = rm.scope_metrics.add()
    m: Metric = sm.metrics.add(name=name, unit=unit, description=description)
    for t, v, attrs in points:
        dp: NumberDataPoint = m.gauge.data_points.add(time_unix_nano=t, as_double=v)
        dp.attributes.extend(kvs(attrs))
    return req


@dataclass
class Reply:
    """An HTTP answer."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


def post(address: tuple[str, int], path: str, body: bytes, *, token: str | None,
         content_type: str = "application/x-protobuf", headers: Mapping[str, str] | None = None,
         conn: http.client.HTTPConnection | None = None, timeout: float = 60.0) -> Reply:
    """POST ``body``; uses ``conn`` (keep-alive) when given, else a fresh connection."""
    own = conn is None
    c = conn or http.client.HTTPConnection(*address, timeout=timeout)
    h = {"Content-Type": content_type}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    try:
        c.request("POST", path, body=body, headers=h)
        resp = c.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        if own:
            c.close()


def get(address: tuple[str, int], path: str, method: str = "GET") -> Reply:
    """A GET (or another bodiless method) on a fresh connection."""
    c = http.client.HTTPConnection(*address, timeout=30)
    try:
        c.request(method, path)
        resp = c.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        c.close()


def scrape(address: tuple[str, int]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics`` keyed by (sample name, labels)."""
    r = get(address, "/metrics")
    assert r.status == 200, r
    out = {}
    for fam in text_string_to_metric_families(r.body.decode()):
        for s in fam.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def metric(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02) -> None:
    """Poll ``pred`` until true; fail with ``what`` after about ``timeout`` seconds of polls.

    A bounded number of polls, not a clock: a loaded machine only makes the wait longer.
    """
    for _ in range(max(1, round(timeout / interval))):
        if pred():
            return
        time.sleep(interval)
    if not pred():
        raise AssertionError(f"gave up after {timeout} s of polling for {what}")


@contextmanager
def sqlite_write_lock(path: str) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock from a separate connection, stalling every other writer."""
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    finally:
        con.execute("ROLLBACK")
        con.close()
