"""Golden and property tests of the pure conversion: OTLP protobuf/JSON -> store rows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from qfleet.collector.convert import (
    SPAN_COLUMNS,
    DecodeFailure,
    SpanColumns,
    decode_metrics_request,
    decode_trace_request,
    from_metrics_request,
    from_trace_request,
)
from tests.collector.otlp_payloads import any_value

KNOWN_TRACE = "5b8efff798038103d269b633813fc60c"
KNOWN_SPAN = "eee19b7ec3c1b174"
T0 = 1_800_000_000_000_000_000


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def trace_request() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "orchestrator"), kv("qfleet.node.id", "node-7"),
                                   kv("qfleet.hardware.type", "trapped_ion")])
    ss = rs.scope_spans.add()
    ss.scope.name = "qfleet.sim"
    sp = ss.spans.add(
        trace_id=bytes.fromhex(KNOWN_TRACE), span_id=bytes.fromhex(KNOWN_SPAN),
        parent_span_id=bytes.fromhex("00f067aa0ba902b7"), name="link.entangle", kind=3,
        start_time_unix_nano=T0, end_time_unix_nano=T0 + 2_500, trace_state="k=v", flags=1,
        dropped_attributes_count=2,
    )
    sp.attributes.extend([
        kv("qfleet.link.id", "node-7~node-9"), kv("qfleet.job.id", "job-1"), kv("attempts", 41),
        kv("fidelity", 0.91), kv("heralded", True), kv("raw", b"\x01\x02"), kv("path", ["a", "b"]),
        kv("nested", {"x": 1}), kv("bad", float("nan")),
    ])
    sp.status.code = 2
    sp.status.message = "heralding timeout"
    sp.events.add(time_unix_nano=T0 + 1_000, name="photon.lost").attributes.extend([kv("detector", "D1")])
    ln = sp.links.add(trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
                      span_id=bytes.fromhex("b7ad6b7169203331"), trace_state="")
    ln.attributes.extend([kv("why", "swap")])
    return req


def _rows(batch: Any) -> dict[str, Any]:
    return {
        "resources": {fp: [r.service_name, r.attributes] for fp, r in batch.resources.items()},
        "spans": [dict(zip(SPAN_COLUMNS, s, strict=True)) for s in batch.spans],
        "events": [list(e) for e in batch.events],
        "links": [list(link) for link in batch.links],
        "series": {fp: list(s.values) for fp, s in batch.series.items()},
        "samples": [list(s) for s in batch.samples],
        "rejected": [batch.rejected_spans, batch.rejected_points],
    }


def test_trace_request_rows_golden(golden: Any) -> None:
    batch = from_trace_request(trace_request())
    golden("convert_trace_request", _rows(batch))
    span = dict(zip(SPAN_COLUMNS, batch.spans[0], strict=True))
    # The promoted columns come from span attributes first, then from the resource.
    assert (span["node_id"], span["link_id"], span["job_id"], span["hardware_type"]) == (
        "node-7", "node-7~node-9", "job-1", "trapped_ion")
    assert span["trace_id"] == KNOWN_TRACE and span["duration_ns"] == 2_500


def to_otlp_json(msg: Any) -> bytes:
    """OTLP/JSON as a real emitter writes it: hex ids, integer enums."""
    doc = json_format.MessageToDict(msg, use_integers_for_enums=True)

    def fix(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in list(o.items()):
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    import base64

                    o[k] = base64.b64decode(v).hex()
                else:
                    fix(v)
        elif isinstance(o, list):
            for v in o:
                fix(v)

    fix(doc)
    return json.dumps(doc).encode()


def test_json_hex_ids_are_stored_unchanged() -> None:
    body = to_otlp_json(trace_request())
    assert KNOWN_TRACE.encode() in body  # the emitter really wrote hex
    batch = from_trace_request(decode_trace_request(body, "application/json"))
    assert batch.spans[0][0] == KNOWN_TRACE and batch.spans[0][1] == KNOWN_SPAN
    # Same rows as the protobuf encoding of the same request.
    assert _rows(batch) == _rows(from_trace_request(trace_request()))


def test_json_accepts_int64_as_strings_and_integer_enums() -> None:
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": KNOWN_TRACE, "spanId": KNOWN_SPAN, "name": "s", "kind": 2,
        "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 5), "unknownField": 1,
        "status": {"code": 1}}]}]}]}
    batch = from_trace_request(decode_trace_request(json.dumps(doc).encode(), "application/json"))
    row = dict(zip(SPAN_COLUMNS, batch.spans[0], strict=True))
    assert (row["kind"], row["start_time_unix_nano"], row["status_code"]) == (2, T0, 1)


@pytest.mark.parametrize(
    ("body", "ctype", "needle"),
    [
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "application/json",
         "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}', "application/json",
         "must be 16 hex characters"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xff\xff\xff", "application/x-protobuf", "not a valid protobuf"),
        (b"{}", "text/plain", "unsupported Content-Type"),
    ],
    ids=["hex id that is not hex", "span id of wrong length", "JSON array", "broken JSON",
         "garbage protobuf", "unknown content type"],
)
def test_malformed_bodies_name_the_problem(body: bytes, ctype: str, needle: str) -> None:
    with pytest.raises(DecodeFailure, match=None) as exc:
        decode_trace_request(body, ctype)
    assert needle in str(exc.value)


def test_invalid_spans_are_counted_not_stored() -> None:
    req = trace_request()
    bad = req.resource_spans[0].scope_spans[0].spans.add(
        trace_id=b"\0" * 16, span_id=b"\1" * 8, name="zero-trace", start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1)
    req.resource_spans[0].scope_spans[0].spans.add(
        trace_id=b"\2" * 16, span_id=b"\3" * 8, name="backwards", start_time_unix_nano=T0 + 10,
        end_time_unix_nano=T0)
    assert bad.name == "zero-trace"
    batch = from_trace_request(req)
    assert len(batch.spans) == 1 and batch.rejected_spans == 2
    assert any("zero-trace" in e for e in batch.errors) and any("backwards" in e for e in batch.errors)


def metrics_request() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "node-agent"), kv("qfleet.node.id", "node-3")])
    sm = rm.scope_metrics.add()
    g = sm.metrics.add(name="qfleet.qubit.t1", unit="s", description="T1 of a qubit")
    g.gauge.data_points.add(time_unix_nano=T0, as_double=0.012).attributes.extend([kv("qubit", 0)])
    c = sm.metrics.add(name="qfleet.jobs", unit="{job}")
    c.sum.is_monotonic = True
    c.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    c.sum.data_points.add(time_unix_nano=T0, as_int=17)
    h = sm.metrics.add(name="qfleet.feedforward.latency", unit="s")
    h.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    h.histogram.data_points.add(time_unix_nano=T0, count=10, sum=0.004, explicit_bounds=[0.0001, 0.001],
                                bucket_counts=[3, 5, 2])
    sm.metrics.add(name="qfleet.empty")
    return req


def test_metrics_request_rows_golden(golden: Any) -> None:
    batch = from_metrics_request(metrics_request())
    golden("convert_metrics_request", _rows(batch))
    by_name: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for fp, _t, v in batch.samples:
        s = batch.series[fp].values
        by_name.setdefault(s[1], []).append((s[7], v))
    assert by_name["qfleet_qubit_t1_seconds"] == [({"qubit": 0}, 0.012)]
    assert by_name["qfleet_jobs_total"] == [({}, 17.0)]
    # Prometheus histograms: cumulative buckets, +Inf equal to the count.
    assert [(lab["le"], v) for lab, v in by_name["qfleet_feedforward_latency_seconds_bucket"]] == [
        ("0.0001", 3.0), ("0.001", 8.0), ("+Inf", 10.0)]
    assert by_name["qfleet_feedforward_latency_seconds_count"] == [({}, 10.0)]
    assert batch.rejected_points == 1  # the metric with no data


def test_metrics_json_exemplar_ids_are_hex() -> None:
    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "gauge": {"dataPoints": [
        {"timeUnixNano": str(T0), "asDouble": 1.5,
         "exemplars": [{"traceId": KNOWN_TRACE, "spanId": KNOWN_SPAN, "asDouble": 1.5}]}]}}]}]}]}
    req = decode_metrics_request(json.dumps(doc).encode(), "application/json")
    ex = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].exemplars[0]
    assert ex.trace_id.hex() == KNOWN_TRACE
    with pytest.raises(DecodeFailure, match=r"exemplars\[0\]\.traceId"):
        doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0][
            "exemplars"][0]["traceId"] = "xyz"
        decode_metrics_request(json.dumps(doc).encode(), "application/json")


hex_id = st.binary(min_size=16, max_size=16).filter(lambda b: any(b))
span_id = st.binary(min_size=8, max_size=8).filter(lambda b: any(b))
attr_value = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(hex_id, span_id, st.text(min_size=1, max_size=30),
                          st.integers(1, 2**62), st.integers(0, 10**12),
                          st.dictionaries(st.text(min_size=1, max_size=10), attr_value, max_size=5)),
                min_size=1, max_size=8))
def test_protobuf_and_json_encodings_give_identical_rows(spans: list[Any]) -> None:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for tid, sid, name, start, dur, attrs in spans:
        sp = ss.spans.add(trace_id=tid, span_id=sid, name=name, start_time_unix_nano=start,
                          end_time_unix_nano=start + dur, kind=trace_pb2.Span.SPAN_KIND_CLIENT)
        sp.attributes.extend([kv(k, v) for k, v in attrs.items()])
    from_pb = from_trace_request(decode_trace_request(req.SerializeToString(), "application/x-protobuf"))
    from_js = from_trace_request(decode_trace_request(to_otlp_json(req), "application/json"))
    assert _rows(from_pb) == _rows(from_js)
    assert [s[0] for s in from_pb.spans] == [t.hex() for t, *_ in spans]


def test_span_columns_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="SpanColumns.span_id has 1 values but trace_id has 2"):
        SpanColumns(trace_id=["a" * 32, "b" * 32], span_id=["c" * 16], name=["x", "y"],
                    start_time_unix_nano=[1, 2], end_time_unix_nano=[2, 3])
