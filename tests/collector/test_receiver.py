"""The OTLP/HTTP receiver, in-process on port 0, over a real migrated database.

Clients are the real OpenTelemetry OTLP/HTTP exporters or plain http.client requests with
hand-built protobuf/JSON bodies; the database is read back with SQL.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import random
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from sqlalchemy import Engine, text

from qfleet.collector.receiver import Receiver, ReceiverConfig
from qfleet.collector.store import Store, open_engine
from qfleet.units import NS
from tests.collector.otlp_payloads import (
    T0,
    gauge_request,
    get,
    make_span,
    metric,
    post,
    random_spans,
    scrape,
    span_keys,
    sqlite_write_lock,
    trace_request,
    wait_until,
)
from tests.conftest import FakeClock, require_tool

TOKEN = "s3cret-test-token"
KNOWN_TRACE_ID = "5b8efff798038103d269b633813fc60c"
KNOWN_SPAN_ID = "eee19b7ec3c1b174"


@contextmanager
def serving(engine: Engine, *, store_clock: Callable[[], int] | None = None, **config: Any) -> Iterator[Receiver]:
    """A started receiver on a free port; stopped on exit. ``store_clock``: the store's wall clock (what
    ``/metrics`` measures the fleet series' staleness by)."""
    clock = config.pop("clock", None)
    cfg = ReceiverConfig(port=0, token=TOKEN, **config)
    rx = Receiver(Store(engine, **({"clock": store_clock} if store_clock else {})), cfg,
                  **({"clock": clock} if clock else {}))
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(text(sql), params))


def count(engine: Engine, table: str) -> int:
    return rows(engine, f"SELECT COUNT(*) FROM {table}")[0][0]


def attrs_of(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else json.loads(v)


def sqlite_path(engine: Engine) -> str:
    assert engine.url.database
    return engine.url.database


# ---------------------------------------------------------------------------
# Real OpenTelemetry exporters


def test_real_otlp_span_exporter_lands_spans(engine: Engine) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    n_roots = 40
    with serving(engine) as rx:
        host, port = rx.address
        exporter = OTLPSpanExporter(endpoint=f"http://{host}:{port}/v1/traces",
                                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        memory = InMemorySpanExporter()
        tp = TracerProvider(resource=Resource.create({"service.name": "scheduler"}))
        tp.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=10_000, max_export_batch_size=64))
        tp.add_span_processor(SimpleSpanProcessor(memory))
        tracer = tp.get_tracer("qfleet.tests")
        for i in range(n_roots):
            with tracer.start_as_current_span("job.run", attributes={"qfleet.node.id": f"node-{i % 3}",
                                                                      "qfleet.job.id": f"job-{i}",
                                                                      "shots": 1000 + i}) as root:
                root.add_event("queued", {"position": i})
                with tracer.start_as_current_span("circuit.execute", attributes={"depth": 12}):
                    pass
        assert tp.force_flush(30_000)
        tp.shutdown()
        sent = memory.get_finished_spans()
        assert len(sent) == 2 * n_roots
        wait_until(lambda: count(engine, "spans") == 2 * n_roots, what="all spans stored")

    stored = {(r.trace_id, r.span_id): r for r in rows(
        engine, "SELECT trace_id, span_id, parent_span_id, name, service_name, attributes, node_id, "
                "job_id, kind FROM spans")}
    for sp in sent:
        key = (format(sp.context.trace_id, "032x"), format(sp.context.span_id, "016x"))
        row = stored[key]
        assert row.name == sp.name
        assert row.service_name == "scheduler"
        assert row.parent_span_id == (format(sp.parent.span_id, "016x") if sp.parent else None)
        assert attrs_of(row.attributes) == dict(sp.attributes)
        if sp.name == "job.run":
            assert row.node_id == sp.attributes["qfleet.node.id"]
            assert row.job_id == sp.attributes["qfleet.job.id"]
    events = rows(engine, "SELECT trace_id, span_id, name, attributes FROM span_events")
    assert len(events) == n_roots
    roots = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")): s
             for s in sent if s.name == "job.run"}
    for ev in events:
        assert ev.name == "queued"
        assert attrs_of(ev.attributes) == {"position": roots[ev.trace_id, ev.span_id].events[0]
                                           .attributes["position"]}


def test_real_otlp_metric_exporter_lands_metrics(engine: Engine) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    with serving(engine) as rx:
        host, port = rx.address
        exporter = OTLPMetricExporter(endpoint=f"http://{host}:{port}/v1/metrics",
                                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        mp = MeterProvider(metric_readers=[reader])
        meter = mp.get_meter("qfleet.tests")
        jobs = meter.create_counter("qfleet.jobs", unit="{job}")
        fidelity = meter.create_gauge("qfleet.link.fidelity", unit="1", description="Link fidelity")
        latency = meter.create_histogram("qfleet.feedforward.latency", unit="s")
        jobs.add(5, {"qfleet.node.id": "node-1"})
        jobs.add(2, {"qfleet.node.id": "node-1"})
        fidelity.set(0.93, {"qfleet.link.id": "link-a"})
        for v in (0.001, 0.002, 0.5):
            latency.record(v)
        assert mp.force_flush(30_000)
        mp.shutdown()
        samples = scrape(rx.address)
        assert metric(samples, "qfleet_collector_stored_total", signal="metric_points") > 0
        assert metric(samples, "qfleet_collector_requests_total", path="/v1/metrics", code="200") >= 1

    series = {r.metric_name: r for r in rows(
        engine, "SELECT s.metric_name, s.node_id, s.link_id, m.value FROM metric_series s "
                "JOIN metric_samples m ON m.series_id = s.id")}
    assert series["qfleet_jobs_total"].value == 7
    assert series["qfleet_jobs_total"].node_id == "node-1"
    assert series["qfleet_link_fidelity_ratio"].value == pytest.approx(0.93)
    assert series["qfleet_link_fidelity_ratio"].link_id == "link-a"
    assert series["qfleet_feedforward_latency_seconds_count"].value == 3
    assert series["qfleet_feedforward_latency_seconds_sum"].value == pytest.approx(0.503)


# ---------------------------------------------------------------------------
# OTLP/JSON


def json_trace_body(trace_id: str = KNOWN_TRACE_ID, span_id: str = KNOWN_SPAN_ID) -> bytes:
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "json"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "json.op", "kind": 2,
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 5000),
            "attributes": [{"key": "big", "value": {"intValue": "9007199254740993"}},
                           {"key": "qfleet.node.id", "value": {"stringValue": "node-j"}}],
            "status": {"code": 2, "message": "boom"},
            "unknownFieldMustBeIgnored": True,
        }]}],
    }]}
    return json.dumps(doc).encode()


def test_json_known_hex_id_is_stored_unchanged(engine: Engine) -> None:
    with serving(engine) as rx:
        r = post(rx.address, "/v1/traces", json_trace_body(), token=TOKEN, content_type="application/json")
        assert r.status == 200, r.body
        assert r.headers["Content-Type"] == "application/json"
        assert json.loads(r.body) == {}
    [row] = rows(engine, "SELECT trace_id, span_id, kind, status_code, status_message, attributes, node_id "
                         "FROM spans")
    assert (row.trace_id, row.span_id) == (KNOWN_TRACE_ID, KNOWN_SPAN_ID)
    assert (row.kind, row.status_code, row.status_message) == (2, 2, "boom")
    assert attrs_of(row.attributes)["big"] == 9007199254740993  # 64-bit int sent as a string
    assert row.node_id == "node-j"


def test_json_bad_hex_id_rejects_the_span_naming_the_field(sqlite_engine: Engine) -> None:
    # A bad id fails its span (OTLP partial success), as for protobuf, not the whole request.
    with serving(sqlite_engine) as rx:
        r = post(rx.address, "/v1/traces", json_trace_body(trace_id="zz" * 16), token=TOKEN,
                 content_type="application/json")
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json"
        partial = json.loads(r.body)["partialSuccess"]
        assert partial["rejectedSpans"] == "1"
        assert "traceId" in partial["errorMessage"] and "hex" in partial["errorMessage"]
        samples = scrape(rx.address)
        assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="invalid") == 1
    assert count(sqlite_engine, "spans") == 0


def test_json_partial_success_counts_rejected_spans(sqlite_engine: Engine) -> None:
    doc = json.loads(json_trace_body())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad = dict(spans[0], spanId="0000000000000001", endTimeUnixNano=str(T0 - 1))  # ends before start
    spans.append(bad)
    with serving(sqlite_engine) as rx:
        r = post(rx.address, "/v1/traces", json.dumps(doc).encode(), token=TOKEN,
                 content_type="application/json; charset=utf-8")
    assert r.status == 200
    partial = json.loads(r.body)["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "end_time_unix_nano" in partial["errorMessage"]
    assert count(sqlite_engine, "spans") == 1


# ---------------------------------------------------------------------------
# Protobuf: success, partial success, errors


def test_partial_success_for_all_zero_trace_id(engine: Engine) -> None:
    rng = random.Random(1)
    good = random_spans(rng, 3)
    bad = make_span(b"\0" * 16, rng.randbytes(8), "zero-trace")
    with serving(engine) as rx:
        r = post(rx.address, "/v1/traces", trace_request([*good, bad]).SerializeToString(), token=TOKEN)
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/x-protobuf"
        resp = ExportTraceServiceResponse.FromString(r.body)
        assert resp.partial_success.rejected_spans == 1
        assert "trace_id" in resp.partial_success.error_message
        samples = scrape(rx.address)
    assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="invalid") == 1
    assert metric(samples, "qfleet_collector_received_total", signal="spans") == 3
    assert metric(samples, "qfleet_collector_stored_total", signal="spans") == 3
    stored = {(t, s) for t, s in rows(engine, "SELECT trace_id, span_id FROM spans")}
    assert stored == span_keys(trace_request(good))


def test_full_success_has_empty_response(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine) as rx:
        r = post(rx.address, "/v1/traces", trace_request(random_spans(random.Random(2), 2))
                 .SerializeToString(), token=TOKEN)
    assert r.status == 200
    assert not ExportTraceServiceResponse.FromString(r.body).HasField("partial_success")


def test_metrics_partial_success_rejected_data_points(sqlite_engine: Engine) -> None:
    req = gauge_request("qfleet.cryostat.temperature", "K", [(T0, 0.012, {}), (0, 0.013, {})])
    with serving(sqlite_engine) as rx:
        r = post(rx.address, "/v1/metrics", req.SerializeToString(), token=TOKEN)
    assert r.status == 200
    resp = ExportMetricsServiceResponse.FromString(r.body)
    assert resp.partial_success.rejected_data_points == 1
    assert count(sqlite_engine, "metric_samples") == 1


def test_data_the_database_cannot_hold_is_not_answered_retry(engine: Engine) -> None:
    # end_time_unix_nano is fixed64; beyond int64 no BIGINT column holds it. Retrying such a
    # request can never succeed, so 503 (retry) would be the wrong answer.
    rng = random.Random(18)
    good = random_spans(rng, 2)
    huge = make_span(rng.randbytes(16), rng.randbytes(8), "huge", start=T0, duration=2**63)
    with serving(engine) as rx:
        r = post(rx.address, "/v1/traces", trace_request([*good, huge]).SerializeToString(), token=TOKEN)
        if r.status == 200:  # rejected while converting: partial success (the better answer)
            assert ExportTraceServiceResponse.FromString(r.body).partial_success.rejected_spans == 1
            expected = span_keys(trace_request(good))
        else:  # refused by the database: the whole request, for good
            assert r.status == 400, r
            assert "resending cannot help" in status_pb2.Status.FromString(r.body).message
            expected = set()
        assert {tuple(x) for x in rows(engine, "SELECT trace_id, span_id FROM spans")} == expected
        # The writer and the database connection are fine afterwards.
        again = trace_request(random_spans(rng, 3))
        assert post(rx.address, "/v1/traces", again.SerializeToString(), token=TOKEN).status == 200
        samples = scrape(rx.address)
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="write_error") == 0
    assert count(engine, "spans") == len(expected) + 3


def test_malformed_protobuf_is_400_and_nothing_is_written(sqlite_engine: Engine) -> None:
    valid = trace_request(random_spans(random.Random(3), 5)).SerializeToString()
    with serving(sqlite_engine) as rx:
        r = post(rx.address, "/v1/traces", valid[:-7] + b"\xff\xff\xff", token=TOKEN)
        assert r.status == 400
        status = status_pb2.Status.FromString(r.body)
        assert status.code == 3
        assert "not a valid protobuf ExportTraceServiceRequest" in status.message
        # The connection stays usable and a good request after a bad one succeeds.
        assert post(rx.address, "/v1/metrics", b"\x0a\x05garbage", token=TOKEN).status == 400
    assert count(sqlite_engine, "spans") == 0
    assert count(sqlite_engine, "resources") == 0


def test_gzip_body_is_accepted(engine: Engine) -> None:
    req = trace_request(random_spans(random.Random(4), 20))
    with serving(engine) as rx:
        r = post(rx.address, "/v1/traces", gzip.compress(req.SerializeToString()), token=TOKEN,
                 headers={"Content-Encoding": "gzip"})
        assert r.status == 200
        bad = post(rx.address, "/v1/traces", b"not gzip at all", token=TOKEN,
                   headers={"Content-Encoding": "gzip"})
        assert bad.status == 400 and b"gzip" in bad.body
    assert {tuple(r) for r in rows(engine, "SELECT trace_id, span_id FROM spans")} == span_keys(req)


def test_oversized_content_length_is_413_without_reading_the_body(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine, max_body_bytes=10_000) as rx:
        body = trace_request(random_spans(random.Random(5), 200)).SerializeToString()
        assert len(body) > 10_000
        r = post(rx.address, "/v1/traces", body, token=TOKEN)
        assert r.status == 413
        assert "max_body_bytes=10000" in status_pb2.Status.FromString(r.body).message
        # Announce 1 GB and send none of it: the answer must come anyway.
        c = http.client.HTTPConnection(*rx.address, timeout=10)
        c.putrequest("POST", "/v1/traces")
        c.putheader("Authorization", f"Bearer {TOKEN}")
        c.putheader("Content-Type", "application/x-protobuf")
        c.putheader("Content-Length", str(10**9))  # 1 GB
        c.endheaders()
        resp = c.getresponse()
        assert resp.status == 413
        assert resp.getheader("Connection") == "close"
        c.close()
    assert count(sqlite_engine, "spans") == 0


def test_gzip_bomb_is_413_and_nothing_is_written(sqlite_engine: Engine) -> None:
    # A valid request that only exceeds the limit once decompressed.
    spans = [make_span(bytes([1]) * 15 + bytes([i % 256]), (i + 1).to_bytes(8, "big"), "x" * 2000)
             for i in range(200)]
    raw = trace_request(spans).SerializeToString()
    bomb = gzip.compress(raw)
    limit = 100_000
    assert len(bomb) < limit < len(raw)
    with serving(sqlite_engine, max_body_bytes=limit) as rx:
        r = post(rx.address, "/v1/traces", bomb, token=TOKEN, headers={"Content-Encoding": "gzip"})
        assert r.status == 413
        assert "decompressed" in status_pb2.Status.FromString(r.body).message
        samples = scrape(rx.address)
        assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="too_large") == 1
    assert count(sqlite_engine, "spans") == 0
    # The same body under a larger limit is fine: the limit, not the body, caused the 413.
    with serving(sqlite_engine, max_body_bytes=len(raw)) as rx:
        r = post(rx.address, "/v1/traces", bomb, token=TOKEN, headers={"Content-Encoding": "gzip"})
        assert r.status == 200
    assert count(sqlite_engine, "spans") == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer",
                                           f"Bearer {TOKEN}x"])
def test_missing_or_wrong_token_is_401(sqlite_engine: Engine, authorization: str | None,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = trace_request(random_spans(random.Random(6), 2)).SerializeToString()
    with serving(sqlite_engine) as rx:
        headers = {"Authorization": authorization} if authorization else {}
        r = post(rx.address, "/v1/traces", body, token=None, headers=headers)
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert status_pb2.Status.FromString(r.body).code == 16
        assert post(rx.address, "/v1/traces", body, token=TOKEN).status == 200  # the control
    assert count(sqlite_engine, "spans") == 2
    assert TOKEN not in caplog.text


def test_unknown_path_wrong_method_and_media_type(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine) as rx:
        assert post(rx.address, "/v1/logs", b"", token=TOKEN).status == 404
        assert get(rx.address, "/nope").status == 404
        r = get(rx.address, "/v1/traces")
        assert (r.status, r.headers["Allow"]) == (405, "POST")
        assert get(rx.address, "/v1/metrics", method="PUT").status == 405
        r = post(rx.address, "/healthz", b"x", token=TOKEN)
        assert (r.status, r.headers["Allow"]) == (405, "GET")
        assert post(rx.address, "/v1/traces", b"{}", token=TOKEN, content_type="text/plain").status == 415
        assert post(rx.address, "/v1/traces", b"", token=TOKEN,
                    headers={"Content-Encoding": "br"}).status == 415


def test_missing_content_length_is_411(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine) as rx:
        with socket.create_connection(rx.address, timeout=10) as s:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                      + b"\r\nContent-Type: application/x-protobuf\r\n\r\n")
            head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 411 ")


def test_expect_100_continue_is_refused_before_the_upload(sqlite_engine: Engine) -> None:
    body = trace_request(random_spans(random.Random(19), 3)).SerializeToString()

    def head(token: str, length: int) -> bytes:
        return (f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/x-protobuf\r\nContent-Length: {length}\r\n"
                "Expect: 100-continue\r\n\r\n").encode()

    with serving(sqlite_engine, max_body_bytes=10_000) as rx:
        for token, length, status in (("wrong", len(body), b"401"), (TOKEN, 10**9, b"413")):
            with socket.create_connection(rx.address, timeout=10) as s:
                s.sendall(head(token, length))
                assert s.recv(4096).startswith(b"HTTP/1.1 " + status + b" ")  # no 100 first
        with socket.create_connection(rx.address, timeout=10) as s:
            s.sendall(head(TOKEN, len(body)))
            assert s.recv(4096).startswith(b"HTTP/1.1 100 ")
            s.sendall(body)
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert count(sqlite_engine, "spans") == 3


def test_keep_alive_serves_many_requests_on_one_connection(sqlite_engine: Engine) -> None:
    rng = random.Random(7)
    with serving(sqlite_engine) as rx:
        c = http.client.HTTPConnection(*rx.address, timeout=30)
        for _ in range(5):
            body = trace_request(random_spans(rng, 10)).SerializeToString()
            assert post(rx.address, "/v1/traces", body, token=TOKEN, conn=c).status == 200
            assert post(rx.address, "/v1/traces", b"\xff", token=TOKEN, conn=c).status == 400
        sock = c.sock
        c.close()
        assert sock is not None  # http.client never had to reconnect
    assert count(sqlite_engine, "spans") == 50


def test_resending_a_request_leaves_one_copy(engine: Engine) -> None:
    rng = random.Random(8)
    spans = random_spans(rng, 30)
    spans[0].events.add(name="exception", time_unix_nano=T0 + 10)
    spans[1].links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
    body = trace_request(spans).SerializeToString()
    metrics_body = gauge_request("qfleet.link.fidelity", "1", [(T0, 0.9, {"qfleet.link.id": "l"})]) \
        .SerializeToString()
    with serving(engine) as rx:
        for _ in range(2):
            assert post(rx.address, "/v1/traces", body, token=TOKEN).status == 200
            assert post(rx.address, "/v1/metrics", metrics_body, token=TOKEN).status == 200
        samples = scrape(rx.address)
    assert metric(samples, "qfleet_collector_stored_total", signal="spans") == 60  # both deliveries
    assert count(engine, "spans") == 30
    assert count(engine, "span_events") == 1
    assert count(engine, "span_links") == 1
    assert count(engine, "metric_series") == 1
    assert count(engine, "metric_samples") == 1
    assert count(engine, "resources") == 1


# ---------------------------------------------------------------------------
# Health and Prometheus


def test_healthz_and_metrics_need_no_token_and_counters_move(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine, queue_items=1234) as rx:
        h = get(rx.address, "/healthz")
        assert h.status == 200
        health = json.loads(h.body)
        assert health["status"] == "ok" and health["writer_alive"] is True
        assert (health["queue_items"], health["queue_capacity_items"]) == (0, 1234)
        before = scrape(rx.address)
        assert metric(before, "qfleet_collector_stored_total", signal="spans") == 0
        assert metric(before, "qfleet_collector_queue_capacity_items") == 1234
        assert metric(before, "qfleet_collector_dropped_total", signal="spans") == 0
        body = trace_request(random_spans(random.Random(9), 25)).SerializeToString()
        for _ in range(3):
            assert post(rx.address, "/v1/traces", body, token=TOKEN).status == 200
        after = scrape(rx.address)
    assert metric(after, "qfleet_collector_received_total", signal="spans") == 75
    assert metric(after, "qfleet_collector_stored_total", signal="spans") == 75
    assert metric(after, "qfleet_collector_requests_total", path="/v1/traces", code="200") == 3
    assert metric(after, "qfleet_collector_queue_items") == 0
    assert 1 <= metric(after, "qfleet_collector_write_seconds_count") <= 3
    assert metric(after, "qfleet_collector_write_failures_total") == 0
    assert not any(name.endswith("_created") for name, _ in after)
    assert rx.health()["writer_alive"] is False  # stopped


def test_metrics_pass_promtool_and_show_latest_pushed_gauge(sqlite_engine: Engine) -> None:
    promtool = require_tool("promtool")
    points = [(T0, 0.91, {"qfleet.link.id": "link-a", "weird-key.1": "v\"q"}),
              (T0 + NS, 0.97, {"qfleet.link.id": "link-a", "weird-key.1": "v\"q"})]
    req = gauge_request("qfleet.link.fidelity", "1", points, description="Bell-pair fidelity")
    with serving(sqlite_engine, store_clock=FakeClock(T0 + NS)) as rx:
        assert post(rx.address, "/v1/metrics", req.SerializeToString(), token=TOKEN).status == 200
        assert post(rx.address, "/v1/traces", b"\xff", token=TOKEN).status == 400
        text_out = get(rx.address, "/metrics").body.decode()
        samples = scrape(rx.address)
    assert "# HELP qfleet_link_fidelity_ratio Bell-pair fidelity" in text_out
    assert metric(samples, "qfleet_link_fidelity_ratio", qfleet_link_id="link-a",
                  weird_key_1='v"q') == pytest.approx(0.97)
    check = subprocess.run([promtool, "check", "metrics"], input=text_out.encode(), capture_output=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_metrics_endpoint_works_before_the_schema_exists(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)  # not migrated: the gauge query fails
    try:
        with serving(engine) as rx:
            r = get(rx.address, "/metrics")
            assert r.status == 200
            assert b"qfleet_collector_queue_items" in r.body
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------
# Backpressure and failures with a real stalled or failing database


def test_inflight_limit_answers_503_immediately(sqlite_engine: Engine) -> None:
    rng = random.Random(10)
    first = trace_request(random_spans(rng, 5)).SerializeToString()
    second = trace_request(random_spans(rng, 5)).SerializeToString()
    with serving(sqlite_engine, max_inflight=1, ack_timeout_s=20) as rx:
        with sqlite_write_lock(sqlite_path(sqlite_engine)):
            result: list[int] = []
            t = threading.Thread(target=lambda: result.append(
                post(rx.address, "/v1/traces", first, token=TOKEN).status))
            t.start()
            wait_until(lambda: rx.health()["inflight_requests"] == 1, what="first request in flight")
            # Answered while the first request still waits for the database (we hold its lock):
            # refused at once, not queued (a queued request would wait for ack_timeout_s).
            r = post(rx.address, "/v1/traces", second, token=TOKEN)
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            status = status_pb2.Status.FromString(r.body)
            assert status.code == 14 and "too many requests in flight" in status.message
            assert t.is_alive()
        t.join(30)
        assert result == [200]
        samples = scrape(rx.address)
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="inflight") == 1
    assert count(sqlite_engine, "spans") == 5


def test_ack_timeout_is_503_and_the_batch_still_commits(sqlite_engine: Engine) -> None:
    body = trace_request(random_spans(random.Random(11), 7)).SerializeToString()
    with serving(sqlite_engine, ack_timeout_s=0.5, retry_after_s=3) as rx:
        with sqlite_write_lock(sqlite_path(sqlite_engine)):
            r = post(rx.address, "/v1/traces", body, token=TOKEN)
            assert r.status == 503
            assert r.headers["Retry-After"] == "3"
            assert "resending is safe" in status_pb2.Status.FromString(r.body).message
        wait_until(lambda: count(sqlite_engine, "spans") == 7, what="the late commit")
        samples = scrape(rx.address)
        assert post(rx.address, "/v1/traces", body, token=TOKEN).status == 200  # the client's retry
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="ack_timeout") == 7
    assert metric(samples, "qfleet_collector_stored_total", signal="spans") == 7
    assert count(sqlite_engine, "spans") == 7


def test_failed_coalesced_write_is_retried_one_by_one(sqlite_engine: Engine) -> None:
    # A real database-side failure for one request only: a trigger that aborts on a name.
    with sqlite_engine.begin() as c:
        c.exec_driver_sql("CREATE TRIGGER poison BEFORE INSERT ON spans WHEN NEW.name = 'poison' "
                          "BEGIN SELECT RAISE(ABORT, 'poisoned span'); END")
    rng = random.Random(12)
    first = trace_request(random_spans(rng, 3))
    good = [trace_request(random_spans(rng, 4)) for _ in range(4)]
    poison = trace_request(random_spans(rng, 2, name="poison"))
    results: dict[int, int] = {}

    def send(i: int, req: Any) -> None:
        results[i] = post(rx.address, "/v1/traces", req.SerializeToString(), token=TOKEN).status

    with serving(sqlite_engine, ack_timeout_s=30) as rx:
        with sqlite_write_lock(sqlite_path(sqlite_engine)):
            threads = [threading.Thread(target=send, args=(0, first))]
            threads[0].start()
            wait_until(lambda: rx.health()["queue_items"] == 3, what="first request taken by the writer")
            for i, req in enumerate([*good[:2], poison, *good[2:]], start=1):
                threads.append(threading.Thread(target=send, args=(i, req)))
                threads[-1].start()
            wait_until(lambda: rx.health()["queue_items"] == 3 + 16 + 2, what="all requests queued")
        for t in threads:
            t.join(30)
        samples = scrape(rx.address)
    assert results == {0: 200, 1: 200, 2: 200, 3: 503, 4: 200, 5: 200}
    # The coalesced transaction failed, then the poisoned request alone.
    assert metric(samples, "qfleet_collector_write_failures_total") == 2
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="write_error") == 2
    stored = {tuple(r) for r in rows(sqlite_engine, "SELECT trace_id, span_id FROM spans")}
    assert stored == span_keys(first).union(*(span_keys(g) for g in good))


def test_queue_full_is_503_and_gauge_stays_within_capacity(sqlite_engine: Engine) -> None:
    rng = random.Random(13)
    bodies = [trace_request(random_spans(rng, 10)).SerializeToString() for _ in range(6)]
    with serving(sqlite_engine, queue_items=25, ack_timeout_s=30) as rx:
        with sqlite_write_lock(sqlite_path(sqlite_engine)):
            results: dict[int, int] = {}
            threads = []
            for i in (0, 1):
                threads.append(threading.Thread(target=lambda i=i: results.__setitem__(
                    i, post(rx.address, "/v1/traces", bodies[i], token=TOKEN).status)))
                threads[-1].start()
            wait_until(lambda: rx.health()["queue_items"] == 20, what="two requests queued")
            for i in range(2, 6):
                r = post(rx.address, "/v1/traces", bodies[i], token=TOKEN)
                assert (r.status, r.headers["Retry-After"]) == (503, "1")
            samples = scrape(rx.address)
            assert metric(samples, "qfleet_collector_queue_items") == 20
        for t in threads:
            t.join(30)
    assert results == {0: 200, 1: 200}
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="queue_full") == 40
    assert count(sqlite_engine, "spans") == 20


def test_request_larger_than_the_whole_queue_is_413(sqlite_engine: Engine) -> None:
    body = trace_request(random_spans(random.Random(14), 30)).SerializeToString()
    with serving(sqlite_engine, queue_items=20) as rx:
        r = post(rx.address, "/v1/traces", body, token=TOKEN)
    assert r.status == 413
    assert "queue_items=20" in status_pb2.Status.FromString(r.body).message
    assert count(sqlite_engine, "spans") == 0


def test_stop_commits_the_queue_and_refreshes_rollups_once(sqlite_engine: Engine) -> None:
    clock = FakeClock()
    rng = random.Random(15)
    bodies = [trace_request(random_spans(rng, 10, start=T0 + i * 60 * NS)).SerializeToString()
              for i in range(3)]
    results: list[int] = []
    rx = Receiver(Store(sqlite_engine), ReceiverConfig(port=0, token=TOKEN, rollup_interval_s=3600,
                                                       ack_timeout_s=30), clock=clock)
    rx.start()
    try:
        with sqlite_write_lock(sqlite_path(sqlite_engine)):
            threads = [threading.Thread(target=lambda b=b: results.append(
                post(rx.address, "/v1/traces", b, token=TOKEN).status)) for b in bodies]
            for t in threads:
                t.start()
            wait_until(lambda: rx.health()["queue_items"] == 30, what="requests queued")
            stopper = threading.Thread(target=rx.stop)
            stopper.start()
            stopper.join(timeout=0.3)
            assert stopper.is_alive()  # waiting for the queue to be committed (we hold the lock)
            assert count(sqlite_engine, "span_rollups") == 0  # the rollup interval never passed
        stopper.join(30)
        for t in threads:
            t.join(30)
    finally:
        rx.stop()
    assert results == [200, 200, 200]
    assert count(sqlite_engine, "spans") == 30
    assert rows(sqlite_engine, "SELECT SUM(span_count) FROM span_rollups")[0][0] == 30


def test_rollups_follow_the_injected_clock(sqlite_engine: Engine) -> None:
    # The scheduler's own decisions are tested without threads in test_pipeline.py; here the
    # receiver's writer must follow the injected clock: nothing is due until it moves.
    clock = FakeClock()
    body = trace_request(random_spans(random.Random(16), 5)).SerializeToString()
    # settle 0: the store stamps writes with the real clock, which this test must not wait for.
    with serving(sqlite_engine, clock=clock, rollup_interval_s=60, rollup_settle_s=0) as rx:
        assert post(rx.address, "/v1/traces", body, token=TOKEN).status == 200
        assert count(sqlite_engine, "span_rollups") == 0
        clock.advance(61 * NS)
        wait_until(lambda: count(sqlite_engine, "span_rollups") > 0, timeout=10, what="rollup refresh")


def test_requests_during_stop_are_refused(sqlite_engine: Engine) -> None:
    body = trace_request(random_spans(random.Random(17), 2)).SerializeToString()
    with serving(sqlite_engine) as rx:
        c = http.client.HTTPConnection(*rx.address, timeout=10)
        assert post(rx.address, "/v1/traces", body, token=TOKEN, conn=c).status == 200
        rx.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            post(rx.address, "/v1/traces", body, token=TOKEN, conn=c)  # the idle connection was closed
        c.close()
        with pytest.raises(OSError):
            post(rx.address, "/v1/traces", body, token=TOKEN, timeout=2)  # nothing listens any more


# ---------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(("field", "value"), [
    ("token", ""), ("token", "two words"), ("port", 70000), ("queue_items", 0), ("max_inflight", 0),
    ("max_body_bytes", -1), ("max_batch_items", True), ("ack_timeout_s", 0), ("rollup_interval_s", -1.0),
    ("retry_after_s", -1), ("ack_timeout_s", float("nan")),
])
def test_config_validation_names_the_field(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"token": TOKEN, field: value}
    with pytest.raises(ValueError, match=field):
        ReceiverConfig(**kwargs)


def test_config_requires_a_token() -> None:
    with pytest.raises(TypeError):
        ReceiverConfig()  # type: ignore[call-arg]


def test_start_twice_and_address_before_start(sqlite_engine: Engine) -> None:
    rx = Receiver(Store(sqlite_engine), ReceiverConfig(port=0, token=TOKEN))
    with pytest.raises(RuntimeError, match="after start"):
        _ = rx.address
    rx.start()
    try:
        with pytest.raises(RuntimeError, match="twice"):
            rx.start()
    finally:
        rx.stop()
        rx.stop()  # idempotent
