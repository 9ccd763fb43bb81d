"""The HTTP transport alone, over real HTTP on 127.0.0.1, against in-memory consumers (no database).

What the transport promises, checked from the client's side: it refuses what it must
(401, 411, 413, 415, 400) before anything reaches the consumer; it hands over JSON and
protobuf alike; it answers 200 only after the consumer says "committed", and 503 with
``Retry-After`` (counted) when the consumer is full. Ordering is made deterministic with
events the test controls, never with sleeps.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from qfleet.collector.consumer import COMMITTED, MemoryConsumer, Outcome, SignalName
from qfleet.collector.rows import SPAN_COLUMNS, TelemetryBatch
from qfleet.collector.transport import HttpTransport, TransportConfig
from tests.collector.otlp_payloads import (
    T0,
    Reply,
    gauge_request,
    get,
    make_span,
    metric,
    post,
    random_spans,
    scrape,
    span_keys,
    trace_request,
    wait_until,
)

TOKEN = "transport-test-token"
KNOWN_TRACE_ID = "5b8efff798038103d269b633813fc60c"
KNOWN_SPAN_ID = "eee19b7ec3c1b174"
GATE_S = 30  # the longest any test waits for an event it controls


class GatedConsumer:
    """Takes every batch, then holds it until the test opens :attr:`commit` (or refuses it with :attr:`verdict`)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.commit = threading.Event()
        self.verdict = COMMITTED
        self.batches: list[tuple[SignalName, TelemetryBatch]] = []

    def consume(self, batch: TelemetryBatch, signal: SignalName) -> Outcome:
        self.batches.append((signal, batch))
        self.arrived.set()
        if not self.commit.wait(GATE_S):
            return Outcome("write_error", "the test never released the gate")
        return self.verdict


class FixedConsumer:
    """Answers every batch with one outcome and keeps nothing (a consumer that refuses)."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.calls = 0

    def consume(self, batch: TelemetryBatch, signal: SignalName) -> Outcome:
        self.calls += 1
        return self.outcome


@contextmanager
def serving(consumer: Any, **config: Any) -> Iterator[HttpTransport]:
    """A started transport on a free port in front of ``consumer``; stopped on exit."""
    transport = HttpTransport(consumer, TransportConfig(port=0, token=TOKEN, **config))
    transport.start()
    try:
        yield transport
    finally:
        transport.stop(timeout_s=GATE_S)


def spans_body(n: int, seed: int) -> bytes:
    return trace_request(random_spans(random.Random(seed), n)).SerializeToString()


def status_of(r: Reply) -> status_pb2.Status:
    return status_pb2.Status.FromString(r.body)


def stored_keys(consumer: MemoryConsumer | GatedConsumer) -> set[tuple[str, str]]:
    i, j = SPAN_COLUMNS.index("trace_id"), SPAN_COLUMNS.index("span_id")
    return {(row[i], row[j]) for _, b in consumer.batches for row in b.spans}


# ---------------------------------------------------------------------------
# Refused before the consumer sees anything


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer",
                                           f"Bearer {TOKEN}x", f"bearer {TOKEN[:-1]}"])
def test_missing_or_wrong_token_is_401_and_nothing_is_consumed(authorization: str | None) -> None:
    consumer = MemoryConsumer()
    body = spans_body(2, seed=1)
    with serving(consumer) as t:
        headers = {"Authorization": authorization} if authorization else {}
        r = post(t.address, "/v1/traces", body, token=None, headers=headers)
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="qfleet"'
        assert status_of(r).code == 16  # UNAUTHENTICATED
        assert consumer.batches == []
        # The control: the same request with the token, on a case-insensitive scheme.
        assert post(t.address, "/v1/traces", body, token=None,
                    headers={"Authorization": f"bearer {TOKEN}"}).status == 200
    assert consumer.items == 2


def test_body_over_the_limit_is_413_without_reading_it() -> None:
    consumer = MemoryConsumer()
    body = spans_body(100, seed=2)
    assert len(body) > 1000
    with serving(consumer, max_body_bytes=1000) as t:
        r = post(t.address, "/v1/traces", body, token=TOKEN)
        assert r.status == 413
        assert f"body of {len(body)} bytes exceeds max_body_bytes=1000" in status_of(r).message
        # Announce 1 GB and send none of it: the answer comes anyway, and the connection closes.
        c = http.client.HTTPConnection(*t.address, timeout=GATE_S)
        c.putrequest("POST", "/v1/traces")
        c.putheader("Authorization", f"Bearer {TOKEN}")
        c.putheader("Content-Type", "application/x-protobuf")
        c.putheader("Content-Length", str(10**9))
        c.endheaders()
        resp = c.getresponse()
        assert (resp.status, resp.getheader("Connection")) == (413, "close")
        c.close()
        assert post(t.address, "/v1/traces", spans_body(3, seed=3), token=TOKEN).status == 200  # the control
    assert consumer.items == 3


def test_gzip_bomb_is_413_and_counted_and_nothing_is_consumed() -> None:
    consumer = MemoryConsumer()
    bomb = gzip.compress(b"\0" * 1_000_000)  # ~1 KB that inflates to 1 MB
    limit = 10_000
    assert len(bomb) < limit
    with serving(consumer, max_body_bytes=limit) as t:
        r = post(t.address, "/v1/traces", bomb, token=TOKEN, headers={"Content-Encoding": "gzip"})
        assert r.status == 413
        assert status_of(r).message == f"decompressed body exceeds max_body_bytes={limit}"
        good = gzip.compress(spans_body(4, seed=4))
        assert post(t.address, "/v1/traces", good, token=TOKEN, headers={"Content-Encoding": "gzip"}).status == 200
        samples = scrape(t.address)
    assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="too_large") == 1
    assert consumer.items == 4


@pytest.mark.parametrize(("body", "content_type", "encoding", "problem"), [
    (b"\x0a\x05garbage", "application/x-protobuf", None, "not a valid protobuf ExportTraceServiceRequest"),
    (b"{not json", "application/json", None, "body is not valid JSON"),
    (b"[]", "application/json", None, "JSON body must be an object, got list"),
    # A bad span id now fails its span alone (partial success); a bad resource fails the request.
    (json.dumps({"resourceSpans": [{"resource": {"attributes": 5}}]}).encode(),
     "application/json", None, "JSON body is not an OTLP request"),
    (json.dumps({"resourceSpans": {"a": 1}}).encode(), "application/json", None,
     ".resourceSpans must be a list, got dict"),
    (b"not gzip at all", "application/x-protobuf", "gzip", "the body is not valid gzip"),
    (gzip.compress(b"x" * 100)[:-12], "application/x-protobuf", "gzip", "gzip body is truncated"),
], ids=["protobuf", "json syntax", "json list", "bad resource", "json shape", "not gzip", "truncated gzip"])
def test_malformed_body_is_400_naming_the_problem_and_nothing_is_consumed(
        body: bytes, content_type: str, encoding: str | None, problem: str) -> None:
    consumer = MemoryConsumer()
    headers = {"Content-Encoding": encoding} if encoding else {}
    with serving(consumer) as t:
        r = post(t.address, "/v1/traces", body, token=TOKEN, content_type=content_type, headers=headers)
        samples = scrape(t.address)
    assert r.status == 400
    as_json = content_type == "application/json"
    assert r.headers["Content-Type"] == ("application/json" if as_json else "application/x-protobuf")
    status = json.loads(r.body) if as_json else {"code": status_of(r).code, "message": status_of(r).message}
    assert status["code"] == 3 and problem in status["message"], status  # INVALID_ARGUMENT
    assert consumer.batches == []
    assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="malformed") == 1
    assert metric(samples, "qfleet_collector_requests_total", path="/v1/traces", code="400") == 1


@pytest.mark.parametrize(("headers", "content_type", "code"), [
    ({"Content-Encoding": "br"}, "application/x-protobuf", 415),
    ({}, "text/plain", 415),
    ({"Content-Length": "12x"}, "application/x-protobuf", 400),
])
def test_unsupported_encoding_type_or_length_is_refused_on_the_headers(
        headers: dict[str, str], content_type: str, code: int) -> None:
    consumer = MemoryConsumer()
    with serving(consumer) as t:
        r = post(t.address, "/v1/traces", b"", token=TOKEN, content_type=content_type, headers=headers)
    assert r.status == code
    assert consumer.batches == []


# ---------------------------------------------------------------------------
# Handed over


def json_trace_body() -> bytes:
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "json"}, "spans": [{
            "traceId": KNOWN_TRACE_ID, "spanId": KNOWN_SPAN_ID, "name": "json.op", "kind": 2,
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 5000),
            "attributes": [{"key": "big", "value": {"intValue": "9007199254740993"}}],
        }]}],
    }]}
    return json.dumps(doc).encode()


def test_json_and_protobuf_are_handed_over_as_rows() -> None:
    consumer = MemoryConsumer()
    proto = trace_request(random_spans(random.Random(5), 3))
    with serving(consumer) as t:
        rj = post(t.address, "/v1/traces", json_trace_body(), token=TOKEN, content_type="application/json")
        rp = post(t.address, "/v1/traces", proto.SerializeToString(), token=TOKEN,
                  content_type="application/protobuf")
        rm = post(t.address, "/v1/metrics", gauge_request("qfleet.link.fidelity", "1", [(T0, 0.9, {})])
                  .SerializeToString(), token=TOKEN)
        samples = scrape(t.address)
    assert (rj.status, rj.headers["Content-Type"], json.loads(rj.body)) == (200, "application/json", {})
    assert (rp.status, rp.headers["Content-Type"]) == (200, "application/x-protobuf")
    assert not ExportTraceServiceResponse.FromString(rp.body).HasField("partial_success")
    assert rm.status == 200
    assert not ExportMetricsServiceResponse.FromString(rm.body).HasField("partial_success")
    assert [(s, b.item_count) for s, b in consumer.batches] == [("spans", 1), ("spans", 3), ("metric_points", 1)]
    assert stored_keys(consumer) == {(KNOWN_TRACE_ID, KNOWN_SPAN_ID)} | span_keys(proto)
    attrs = consumer.batches[0][1].spans[0][SPAN_COLUMNS.index("attributes")]
    assert attrs == {"big": 9007199254740993}  # a 64-bit int sent as a JSON string
    assert metric(samples, "qfleet_collector_received_total", signal="spans") == 4
    assert metric(samples, "qfleet_collector_received_total", signal="metric_points") == 1


def test_partial_success_hands_over_only_the_valid_spans() -> None:
    consumer = MemoryConsumer()
    rng = random.Random(6)
    good = random_spans(rng, 2)
    bad = make_span(b"\0" * 16, rng.randbytes(8), "zero-trace")
    with serving(consumer) as t:
        r = post(t.address, "/v1/traces", trace_request([*good, bad]).SerializeToString(), token=TOKEN)
        samples = scrape(t.address)
    assert r.status == 200
    partial = ExportTraceServiceResponse.FromString(r.body).partial_success
    assert partial.rejected_spans == 1 and "invalid trace_id" in partial.error_message
    assert stored_keys(consumer) == span_keys(trace_request(good))
    assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="invalid") == 1


def test_a_request_of_only_invalid_spans_reaches_no_consumer() -> None:
    consumer = FixedConsumer(Outcome("write_error"))  # would turn any hand-over into a 503
    bad = make_span(b"\0" * 16, b"\1" * 8, "zero-trace")
    with serving(consumer) as t:
        r = post(t.address, "/v1/traces", trace_request([bad]).SerializeToString(), token=TOKEN)
    assert r.status == 200
    assert ExportTraceServiceResponse.FromString(r.body).partial_success.rejected_spans == 1
    assert consumer.calls == 0


# ---------------------------------------------------------------------------
# Ack after commit, backpressure


def test_the_answer_waits_for_the_consumers_commit() -> None:
    consumer = GatedConsumer()
    replies: list[Reply] = []
    answered = threading.Event()

    def client(address: tuple[str, int]) -> None:
        replies.append(post(address, "/v1/traces", spans_body(5, seed=7), token=TOKEN, timeout=GATE_S))
        answered.set()

    with serving(consumer) as t:
        sender = threading.Thread(target=client, args=(t.address,))
        sender.start()
        assert consumer.arrived.wait(GATE_S)
        # The consumer holds the batch: no answer can come, however long the client waits
        # (a transport that answered early would be caught within this wait).
        assert not answered.wait(0.2) and replies == []
        assert t.inflight == 1
        health = json.loads(get(t.address, "/healthz").body)
        assert health == {"status": "ok", "inflight_requests": 1}
        consumer.commit.set()
        assert answered.wait(GATE_S)
        sender.join(GATE_S)
    assert [r.status for r in replies] == [200]
    assert sum(b.item_count for _, b in consumer.batches) == 5


def test_a_consumer_that_fails_after_taking_the_batch_gets_the_client_to_retry() -> None:
    consumer = GatedConsumer()
    consumer.verdict = Outcome("write_error")
    consumer.commit.set()
    with serving(consumer, retry_after_s=4) as t:
        r = post(t.address, "/v1/traces", spans_body(3, seed=8), token=TOKEN)
        samples = scrape(t.address)
    assert (r.status, r.headers["Retry-After"]) == (503, "4")
    assert status_of(r).message == "database write failed; retry later"
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="write_error") == 3


def test_a_full_consumer_is_503_with_retry_after_and_counted() -> None:
    consumer = MemoryConsumer(capacity_items=5)
    with serving(consumer, retry_after_s=7) as t:
        assert post(t.address, "/v1/traces", spans_body(5, seed=9), token=TOKEN).status == 200
        r = post(t.address, "/v1/traces", spans_body(4, seed=10), token=TOKEN)
        samples = scrape(t.address)
    assert (r.status, r.headers["Retry-After"]) == (503, "7")
    assert status_of(r).code == 14  # UNAVAILABLE
    assert status_of(r).message == "in-memory consumer is full; retry later"  # the consumer's own words
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="queue_full") == 4
    assert consumer.items == 5


def test_too_many_requests_in_flight_is_503_before_the_body_is_read() -> None:
    consumer = GatedConsumer()
    replies: list[int] = []
    with serving(consumer, max_inflight=1) as t:
        first = threading.Thread(target=lambda: replies.append(
            post(t.address, "/v1/traces", spans_body(2, seed=11), token=TOKEN, timeout=GATE_S).status))
        first.start()
        assert consumer.arrived.wait(GATE_S)
        r = post(t.address, "/v1/traces", spans_body(2, seed=12), token=TOKEN)
        assert (r.status, r.headers["Retry-After"]) == (503, "1")
        assert status_of(r).message == "too many requests in flight; retry later"
        consumer.commit.set()
        first.join(GATE_S)
        samples = scrape(t.address)
    assert replies == [200]
    assert len(consumer.batches) == 1
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="inflight") == 1  # a request


@pytest.mark.parametrize(("outcome", "code", "counter"), [
    (Outcome("unstorable", "the database refused this request's data"), 400, "rejected_total"),
    (Outcome("too_large"), 413, "rejected_total"),
    (Outcome("stopping"), 503, "refused_total"),
    (Outcome("ack_timeout"), 503, "refused_total"),
])
def test_consumer_refusals_map_to_status_codes_and_counters(outcome: Outcome, code: int, counter: str) -> None:
    consumer = FixedConsumer(outcome)
    with serving(consumer) as t:
        r = post(t.address, "/v1/metrics", gauge_request("g", "1", [(T0, 1.0, {}), (T0 + 1, 2.0, {})])
                 .SerializeToString(), token=TOKEN)
        samples = scrape(t.address)
    assert r.status == code
    assert ("Retry-After" in r.headers) == (code == 503)
    message = status_of(r).message
    assert message == outcome.message if outcome.message else message  # the consumer's words, or a default
    assert metric(samples, f"qfleet_collector_{counter}", signal="metric_points", reason=outcome.reason) == 2


# ---------------------------------------------------------------------------
# Lifecycle and the unauthenticated endpoints


def test_close_refuses_new_requests_on_open_connections() -> None:
    consumer = MemoryConsumer()
    t = HttpTransport(consumer, TransportConfig(port=0, token=TOKEN))
    t.start()
    try:
        c = http.client.HTTPConnection(*t.address, timeout=GATE_S)
        assert post(t.address, "/v1/traces", spans_body(1, seed=13), token=TOKEN, conn=c).status == 200
        t.close()
        r = post(t.address, "/v1/traces", spans_body(1, seed=14), token=TOKEN, conn=c)
        assert r.status == 503 and status_of(r).message == "the collector is shutting down; retry later"
        assert metric(scrape_via(c), "qfleet_collector_refused_total", signal="spans", reason="stopping") == 1
        c.close()
        with pytest.raises(OSError):
            post(t.address, "/v1/traces", spans_body(1, seed=15), token=TOKEN, timeout=2)
    finally:
        t.stop(timeout_s=GATE_S)
    assert consumer.items == 1


def scrape_via(conn: http.client.HTTPConnection) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` over an open keep-alive connection (the listening socket may be closed)."""
    from prometheus_client.parser import text_string_to_metric_families

    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_healthz_reports_the_health_callback_without_a_token() -> None:
    state = {"status": "ok"}
    t = HttpTransport(MemoryConsumer(), TransportConfig(port=0, token=TOKEN), health=lambda: dict(state))
    t.start()
    try:
        assert (get(t.address, "/healthz").status, json.loads(get(t.address, "/healthz").body)) == (200, state)
        state["status"] = "unavailable"
        assert get(t.address, "/healthz").status == 503
        assert get(t.address, "/metrics").status == 200
        assert get(t.address, "/nope").status == 404
    finally:
        t.stop()


def test_start_twice_address_before_start_and_config_validation() -> None:
    t = HttpTransport(MemoryConsumer(), TransportConfig(port=0, token=TOKEN))
    with pytest.raises(RuntimeError, match="after start"):
        _ = t.address
    t.start()
    try:
        with pytest.raises(RuntimeError, match="twice"):
            t.start()
    finally:
        t.stop()
    for field, value in (("port", -1), ("token", "a b"), ("max_body_bytes", 0), ("max_inflight", True),
                         ("retry_after_s", -1), ("host", "")):
        kwargs: dict[str, Any] = {"token": TOKEN, field: value}
        with pytest.raises(ValueError, match=f"TransportConfig.{field}"):
            TransportConfig(**kwargs)


def test_wait_idle_waits_for_the_request_in_flight() -> None:
    consumer = GatedConsumer()
    with serving(consumer) as t:
        sender = threading.Thread(target=post, args=(t.address, "/v1/traces", spans_body(1, seed=16)),
                                  kwargs={"token": TOKEN, "timeout": GATE_S})
        sender.start()
        assert consumer.arrived.wait(GATE_S)
        t.close()
        assert t.wait_idle(deadline=0.0) is False  # a deadline already past: one look, still busy
        consumer.commit.set()
        wait_until(lambda: t.inflight == 0, timeout=GATE_S, what="the request to be answered")
        assert t.wait_idle(deadline=0.0) is True
        sender.join(GATE_S)
