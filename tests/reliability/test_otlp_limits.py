"""Issue 12 item 2: per-request limits on decoded OTLP data (OTel SDK semantics), on both backends.

Oracle: arithmetic on the input (kept = limit, dropped count = sent dropped count + the excess).
Before: every attribute, event and link was converted and stored, whatever their number.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Engine, text

from qfleet.collector.decode import decode_body
from qfleet.collector.limits import Limits, LimitsError
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.store import Store
from tests.collector.otlp_payloads import kvs, make_span, row_attributes
from tests.collector.test_convert import to_otlp_json

T0 = 1_795_000_000_000_000_000


def _request(n_attrs: int, *, dropped: int = 0, n_events: int = 0, n_links: int = 0,
             value: str = "v") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    sp = make_span(b"\1" * 16, b"\2" * 8, "big", attrs={f"a{i:04d}": value for i in range(n_attrs)})
    sp.dropped_attributes_count = dropped
    sp.dropped_events_count = 3
    for i in range(n_events):
        sp.events.add(name=f"e{i}", time_unix_nano=T0 + i)
    for i in range(n_links):
        sp.links.add(trace_id=b"\3" * 16, span_id=(i + 1).to_bytes(8, "big"))
    ss.spans.append(sp)
    return req


def _decode(req: ExportTraceServiceRequest, limits: Limits | None = None, as_json: bool = False) -> TelemetryBatch:
    if as_json:
        body, ctype = to_otlp_json(req), "application/json"
    else:
        body, ctype = req.SerializeToString(), "application/x-protobuf"
    return decode_body("spans", body, ctype, gzipped=False, max_bytes=len(body), limits=limits or Limits())


def test_limits_are_validated_at_construction() -> None:
    with pytest.raises(LimitsError, match="max_attributes_per_item=0"):
        Limits(max_attributes_per_item=0)
    with pytest.raises(LimitsError, match="max_links_per_span=True"):
        Limits(max_links_per_span=True)


def test_thousand_attributes_store_128_and_count_the_rest(engine: Engine) -> None:
    batch = _decode(_request(1000, dropped=5, n_events=200, n_links=130))
    Store(engine, clock=lambda: T0).write(batch)
    with engine.connect() as c:
        attrs, d_attrs, d_events, d_links = c.execute(text(
            "SELECT attributes, dropped_attributes_count, dropped_events_count, dropped_links_count "
            "FROM spans")).one()
        n_events = c.execute(text("SELECT count(*) FROM span_events")).scalar_one()
        n_links = c.execute(text("SELECT count(*) FROM span_links")).scalar_one()
    attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
    assert sorted(attrs) == [f"a{i:04d}" for i in range(128)]
    assert (d_attrs, d_events, d_links) == (5 + 872, 3 + 72, 2)
    assert (n_events, n_links) == (128, 128)
    assert batch.adjusted == {"attributes": 872, "events": 72, "links": 2}


def test_long_value_is_truncated_to_the_limit() -> None:
    batch = _decode(_request(2, value="x" * 5000))
    assert row_attributes(batch.spans[0]) == {"a0000": "x" * 4096, "a0001": "x" * 4096}
    assert batch.adjusted["values truncated"] == 2


def test_request_budget_bounds_attributes_across_spans() -> None:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(10):
        ss.spans.append(make_span((i + 1).to_bytes(16, "big"), (i + 1).to_bytes(8, "big"), "s",
                                  attrs={f"k{j}": j for j in range(100)}))
    batch = _decode(req, Limits(max_attributes_per_request=250))
    assert [len(row_attributes(s)) for s in batch.spans] == [100, 100, 50] + [0] * 7
    assert [s[16] for s in batch.spans] == [0, 0, 50] + [100] * 7


def test_metric_point_over_the_limit_is_rejected_not_merged() -> None:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="g")
    m.gauge.data_points.add(time_unix_nano=T0, as_double=1.0).attributes.extend(kvs({f"l{i}": i for i in range(3)}))
    m.gauge.data_points.add(time_unix_nano=T0, as_double=2.0).attributes.extend(kvs({"l0": 0}))
    body = req.SerializeToString()
    batch = decode_body("metric_points", body, "application/x-protobuf", gzipped=False, max_bytes=len(body),
                        limits=Limits(max_attributes_per_item=2))
    assert batch.rejected_points == 1 and [s[2] for s in batch.samples] == [2.0]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), dropped=st.integers(0, 2**32 - 1), per_item=st.integers(1, 200),
       as_json=st.booleans())
def test_dropped_count_is_input_arithmetic(n: int, dropped: int, per_item: int, as_json: bool) -> None:
    batch = _decode(_request(n, dropped=dropped), Limits(max_attributes_per_item=per_item), as_json)
    kept = min(n, per_item)
    assert len(row_attributes(batch.spans[0])) == kept
    assert batch.spans[0][16] == min(dropped + n - kept, 2**31 - 1)
