"""The OTLP/gRPC receiver (issue 18): real gRPC on 127.0.0.1, real SQLite files, the real OTLP/gRPC exporters.

Oracles come from outside the receiver: the OpenTelemetry SDK's own spans and metrics (what the unmodified
``opentelemetry-exporter-otlp-proto-grpc`` exporters sent), the OTLP specification's status codes and
``google.rpc.RetryInfo`` (decoded here from ``grpc-status-details-bin`` with a raw gRPC client), and the
OTLP/HTTP path's answer to the same bytes. Races are made deterministic by holding SQLite's write lock.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import random
import re
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy import Engine, text

from qfleet.collector.cli import main as collector_main
from qfleet.collector.receiver import Receiver, ReceiverConfig
from qfleet.collector.store import Store
from tests.collector.otlp_payloads import (
    T0,
    gauge_request,
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
from tests.collector.test_receiver_reliability import db_span_keys, qfleet_executable

TOKEN = "grpc-test-token"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
WAIT_S = 30.0  # the longest a test waits for something it controls


@contextmanager
def serving(engine: Engine, **config: Any) -> Iterator[Receiver]:
    """A started receiver with HTTP and gRPC on free ports; stopped on exit."""
    rx = Receiver(Store(engine), ReceiverConfig(port=0, grpc_port=0, token=TOKEN, **config))
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


def target(rx: Receiver) -> str:
    address = rx.grpc_address
    assert address is not None
    return f"{address[0]}:{address[1]}"


def raw_call(rx: Receiver, method: str, body: bytes, *, token: str | None = TOKEN) -> bytes:
    """One unary call with raw bytes in and out (no SDK): what the receiver answers, or ``grpc.RpcError``."""
    with grpc.insecure_channel(target(rx)) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        metadata = [] if token is None else [("authorization", f"Bearer {token}")]
        return call(body, metadata=metadata, timeout=WAIT_S)


def status_details(err: grpc.RpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer (empty if absent)."""
    trailers = dict(err.trailing_metadata() or ())
    return status_pb2.Status.FromString(trailers.get("grpc-status-details-bin", b""))


def retry_delay_s(st: status_pb2.Status) -> float | None:
    for detail in st.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def stored_keys(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as c:
        return {(t, s) for t, s in c.execute(text("SELECT trace_id, span_id FROM spans"))}


def sdk_key(span: Any) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def sdk_spans(n_roots: int, service: str = "scheduler") -> list[Any]:
    """Finished SDK spans (job.run with an event, and a child each), captured in memory."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tp.get_tracer("qfleet.tests")
    for i in range(n_roots):
        with tracer.start_as_current_span("job.run", attributes={"qfleet.node.id": f"node-{i % 3}",
                                                                  "qfleet.job.id": f"job-{i}", "shots": 1000 + i}) as s:
            s.add_event("queued", {"position": i})
            with tracer.start_as_current_span("circuit.execute", attributes={"depth": 12}):
                pass
    tp.shutdown()
    return list(memory.get_finished_spans())


def span_exporter(address: str, token: str | None, **kwargs: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    headers = () if token is None else (("authorization", f"Bearer {token}"),)
    return OTLPSpanExporter(endpoint=f"http://{address}", insecure=True, headers=headers, **kwargs)


# ---------------------------------------------------------------------------
# The real exporters


def test_real_grpc_span_exporter_lands_every_span_exactly(sqlite_engine: Engine) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    sent = sdk_spans(30)
    with serving(sqlite_engine) as rx:
        exporter = span_exporter(target(rx), TOKEN, timeout=WAIT_S)
        # Acknowledged means committed: the rows are there as soon as export() returns.
        assert exporter.export(sent[:20]) is SpanExportResult.SUCCESS
        assert stored_keys(sqlite_engine) == {sdk_key(s) for s in sent[:20]}
        assert exporter.export(sent[20:]) is SpanExportResult.SUCCESS
        exporter.shutdown()
        samples = scrape(rx.address)
        assert rx.health()["grpc_serving"] is True
        assert rx.readiness()["status"] == "ok"
    assert rx.health()["grpc_serving"] is False
    assert metric(samples, "qfleet_collector_requests_total", path=TRACES, code="OK") == 2
    assert metric(samples, "qfleet_collector_stored_total", signal="spans") == len(sent)
    with sqlite_engine.connect() as c:
        stored = {(r.trace_id, r.span_id): r for r in c.execute(text(
            "SELECT trace_id, span_id, parent_span_id, name, service_name, attributes, start_time_unix_nano, "
            "end_time_unix_nano FROM spans"))}
        events = list(c.execute(text("SELECT trace_id, span_id, name, attributes FROM span_events")))
    assert set(stored) == {sdk_key(s) for s in sent}
    for sp in sent:
        row = stored[sdk_key(sp)]
        assert (row.name, row.service_name) == (sp.name, "scheduler")
        assert row.parent_span_id == (format(sp.parent.span_id, "016x") if sp.parent else None)
        assert (row.start_time_unix_nano, row.end_time_unix_nano) == (sp.start_time, sp.end_time)
        attrs = row.attributes if isinstance(row.attributes, dict) else json.loads(row.attributes)
        assert attrs == dict(sp.attributes)
    roots = {sdk_key(s): s for s in sent if s.name == "job.run"}
    assert len(events) == len(roots)
    for ev in events:
        assert json.loads(ev.attributes) == dict(roots[ev.trace_id, ev.span_id].events[0].attributes)


def test_real_grpc_metric_exporter_with_gzip_lands_the_points(sqlite_engine: Engine) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    with serving(sqlite_engine) as rx:
        exporter = OTLPMetricExporter(endpoint=f"http://{target(rx)}", insecure=True, timeout=WAIT_S,
                                      headers=(("authorization", f"Bearer {TOKEN}"),),
                                      compression=grpc.Compression.Gzip)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        mp = MeterProvider(metric_readers=[reader])
        meter = mp.get_meter("qfleet.tests")
        meter.create_counter("qfleet.jobs", unit="{job}").add(7, {"qfleet.node.id": "node-1"})
        meter.create_gauge("qfleet.link.fidelity", unit="1").set(0.93, {"qfleet.link.id": "link-a"})
        latency = meter.create_histogram("qfleet.feedforward.latency", unit="s")
        for v in (0.001, 0.002, 0.5):
            latency.record(v)
        assert mp.force_flush(int(WAIT_S * 1000))
        mp.shutdown()
        samples = scrape(rx.address)
    assert metric(samples, "qfleet_collector_requests_total", path=METRICS, code="OK") >= 1
    with sqlite_engine.connect() as c:
        series = {r.metric_name: r for r in c.execute(text(
            "SELECT s.metric_name, s.node_id, s.link_id, m.value FROM metric_series s "
            "JOIN metric_samples m ON m.series_id = s.id"))}
    assert (series["qfleet_jobs_total"].value, series["qfleet_jobs_total"].node_id) == (7, "node-1")
    assert series["qfleet_link_fidelity_ratio"].value == pytest.approx(0.93)
    assert series["qfleet_feedforward_latency_seconds_count"].value == 3
    assert series["qfleet_feedforward_latency_seconds_sum"].value == pytest.approx(0.503)


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_wrong_or_missing_token_fails_the_export_and_stores_nothing(sqlite_engine: Engine,
                                                                    token: str | None) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    with serving(sqlite_engine) as rx:
        exporter = span_exporter(target(rx), token, timeout=WAIT_S)
        assert exporter.export(sdk_spans(3)) is SpanExportResult.FAILURE
        exporter.shutdown()
        with pytest.raises(grpc.RpcError) as raised:
            raw_call(rx, TRACES, trace_request(random_spans(random.Random(1), 2)).SerializeToString(), token=token)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
        samples = scrape(rx.address)
    # UNAUTHENTICATED is not retryable: one attempt by the exporter, one raw call.
    assert metric(samples, "qfleet_collector_requests_total", path=TRACES, code="UNAUTHENTICATED") == 2
    assert metric(samples, "qfleet_collector_received_total", signal="spans") == 0
    assert stored_keys(sqlite_engine) == set()


# ---------------------------------------------------------------------------
# Backpressure, partial success, bad messages


def test_backpressure_is_unavailable_with_retry_info_and_the_exporter_retries(
        sqlite_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    caplog.set_level(logging.WARNING, logger="opentelemetry.exporter.otlp.proto.grpc.exporter")
    rng = random.Random(3)
    first = trace_request(random_spans(rng, 10)).SerializeToString()
    over = trace_request(random_spans(rng, 11)).SerializeToString()
    sent = sdk_spans(8)  # 16 spans: never fit beside the 10 held
    # 3 s: a delay the exporter's own jittered backoff (0.8-1.2, 1.6-2.4, 3.2-4.8 s) cannot produce.
    with serving(sqlite_engine, queue_items=20, retry_after_s=3) as rx:
        exporter = span_exporter(target(rx), TOKEN, timeout=60)
        results: dict[str, Any] = {}
        with sqlite_write_lock(str(sqlite_engine.url.database)):
            held = threading.Thread(target=lambda: results.__setitem__("first", raw_call(rx, TRACES, first)))
            held.start()
            wait_until(lambda: rx.health()["queue_items"] == 10, timeout=WAIT_S, what="the first request queued")
            with pytest.raises(grpc.RpcError) as raised:
                raw_call(rx, TRACES, over)
            err = raised.value
            assert err.code() is grpc.StatusCode.UNAVAILABLE
            st = status_details(err)
            assert (st.code, st.message) == (grpc.StatusCode.UNAVAILABLE.value[0], err.details())
            assert retry_delay_s(st) == 3.0
            assert "queue is full" in err.details()

            exporting = threading.Thread(target=lambda: results.__setitem__("export", exporter.export(sent)))
            exporting.start()
            wait_until(lambda: metric(scrape(rx.address), "qfleet_collector_refused_total", signal="spans",
                                      reason="queue_full") == 11 + 16, timeout=WAIT_S, what="the exporter refused")
        # The writer commits the first request; the exporter's retry, 3 s later, fits.
        exporting.join(WAIT_S * 2)
        held.join(WAIT_S)
        exporter.shutdown()
        samples = scrape(rx.address)
    assert results["export"] is SpanExportResult.SUCCESS
    assert not ExportTraceServiceResponse.FromString(results["first"]).HasField("partial_success")
    assert "retrying in 3.00s" in caplog.text  # the exporter waited the RetryInfo delay, not its backoff
    assert metric(samples, "qfleet_collector_requests_total", path=TRACES, code="UNAVAILABLE") >= 2
    assert stored_keys(sqlite_engine) == {sdk_key(s) for s in sent} | span_keys(
        ExportTraceServiceRequest.FromString(first))


def test_partial_success_matches_the_http_path_for_the_same_bytes(sqlite_engine: Engine) -> None:
    rng = random.Random(4)
    good = random_spans(rng, 3)
    bad = [make_span(b"\0" * 16, rng.randbytes(8), "zero-trace"), make_span(rng.randbytes(16), b"\x01" * 7, "short")]
    spans_body = trace_request([*good, *bad]).SerializeToString()
    points_body = gauge_request("qfleet.cryostat.temperature", "K", [(T0, 0.012, {}), (0, 0.013, {})]) \
        .SerializeToString()
    with serving(sqlite_engine) as rx:
        over_grpc = ExportTraceServiceResponse.FromString(raw_call(rx, TRACES, spans_body))
        r = post(rx.address, "/v1/traces", spans_body, token=TOKEN)
        assert r.status == 200
        over_http = ExportTraceServiceResponse.FromString(r.body)
        points_grpc = ExportMetricsServiceResponse.FromString(raw_call(rx, METRICS, points_body))
        points_http = ExportMetricsServiceResponse.FromString(post(rx.address, "/v1/metrics", points_body,
                                                                   token=TOKEN).body)
        samples = scrape(rx.address)
    assert over_grpc.partial_success.rejected_spans == over_http.partial_success.rejected_spans == 2
    assert over_grpc.partial_success.error_message == over_http.partial_success.error_message != ""
    assert points_grpc.partial_success == points_http.partial_success
    assert points_grpc.partial_success.rejected_data_points == 1
    assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="invalid") == 4
    assert stored_keys(sqlite_engine) == span_keys(trace_request(good))


def test_malformed_and_oversized_messages_are_refused_and_counted(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine, max_body_bytes=2000, max_inflight_bytes=4000) as rx:
        with pytest.raises(grpc.RpcError) as malformed:
            raw_call(rx, TRACES, b"\x0a\x05\x0a\x03")  # a field longer than the message
        with pytest.raises(grpc.RpcError) as oversized:
            raw_call(rx, TRACES, trace_request(random_spans(random.Random(5), 40)).SerializeToString())
        with pytest.raises(grpc.RpcError) as unknown:
            raw_call(rx, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", b"")
        # Still serving.
        assert raw_call(rx, TRACES, trace_request(random_spans(random.Random(6), 2)).SerializeToString()) == b""
        samples = scrape(rx.address)
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert oversized.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # refused by gRPC, never retried
    assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert metric(samples, "qfleet_collector_rejected_total", signal="spans", reason="malformed") == 1
    # The oversized message is refused by gRPC itself (the client sees RESOURCE_EXHAUSTED above); whether the
    # handler is even invoked for it depends on grpcio's timing: then it finds no message (INVALID_ARGUMENT) or a
    # cancelled call (CANCELLED). So the malformed call is counted, and at most one more for the oversized one.
    invalid = metric(samples, "qfleet_collector_requests_total", path=TRACES, code="INVALID_ARGUMENT")
    cancelled = metric(samples, "qfleet_collector_requests_total", path=TRACES, code="CANCELLED")
    assert invalid >= 1 and invalid + cancelled <= 2
    assert metric(samples, "qfleet_collector_requests_total", path="other", code="UNIMPLEMENTED") == 1
    assert len(stored_keys(sqlite_engine)) == 2


# ---------------------------------------------------------------------------
# SIGKILL mid-stream: nothing acknowledged is lost


def start_collector(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``qfleet collector serve --port 0 --grpc-port 0 ARGS`` and its start-up line (stderr to ``log``)."""
    with log.open("ab") as err:
        proc = subprocess.Popen([qfleet_executable(), "collector", "serve", "--port", "0", "--grpc-port", "0", *args],
                                stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def read() -> None:
        with stdout:
            for line in iter(stdout.readline, b""):
                lines.put(line)

    threading.Thread(target=read, daemon=True).start()  # ends at EOF, when the process is gone
    try:
        return proc, lines.get(timeout=60).decode()
    except queue.Empty:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the collector did not start: {log.read_text()}") from None


def test_sigkill_mid_stream_loses_no_span_the_exporter_was_told_is_stored(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    db, token_file, log = tmp_path / "q.db", tmp_path / "token", tmp_path / "server.log"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    n_threads, per_thread, roots_per_batch = 4, 40, 25  # 4 x 40 batches of 50 spans
    spans = sdk_spans(n_threads * per_thread * roots_per_batch)
    batches = [spans[i:i + 2 * roots_per_batch] for i in range(0, len(spans), 2 * roots_per_batch)]
    acked: list[int] = []
    lock = threading.Lock()
    proc, banner = start_collector(["--db", f"sqlite:///{db}", "--token-file", str(token_file)], log)
    try:
        m = re.search(r"OTLP/gRPC on ([\d.]+:\d+)", banner)
        assert m, banner

        def produce(t: int) -> None:
            exporter = span_exporter(m.group(1), TOKEN, timeout=5)
            for i in range(t, len(batches), n_threads):
                if exporter.export(batches[i]) is not SpanExportResult.SUCCESS:
                    break  # the collector is gone: stop, as a client would after its retries
                with lock:
                    acked.append(i)
            exporter.shutdown()

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        wait_until(lambda: len(acked) >= len(batches) // 3, timeout=60, what="a third of the batches acknowledged")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with lock:
        acked_before = set(acked)
    assert len(batches) // 3 <= len(acked_before) < len(batches), "the kill must land mid-stream"
    on_disk = set(db_span_keys(db))
    acked_keys = {sdk_key(s) for i in acked_before for s in batches[i]}
    assert acked_keys <= on_disk
    print(f"sigkill: {len(acked_before)}/{len(batches)} batches acknowledged before the kill; {len(on_disk)} spans on "
          f"disk, {len(on_disk) - len(acked_keys)} committed but unacknowledged")
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        con.close()
    assert "Traceback" not in log.read_text()


# ---------------------------------------------------------------------------
# Command lines


@pytest.mark.parametrize(("argv", "expected"), [
    (["--grpc-port", "70000"], "grpc_port=70000: use 0-65535"),
    (["--grpc-port", "-1"], "grpc_port=-1: use 0-65535"),
    (["--port", "4318", "--grpc-port", "4318"], "grpc_port=4318 is also the HTTP port"),
])
def test_collector_serve_rejects_a_bad_grpc_port_in_one_line(tmp_path: Path, argv: list[str],
                                                            expected: str) -> None:
    err = io.StringIO()
    db = tmp_path / "q.db"
    rc = collector_main(["collector", "serve", "--db", f"sqlite:///{db}", "--token-file",
                         str(tmp_path / "token"), *argv], environ={}, stdout=io.StringIO(), stderr=err)
    assert rc == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in lines[0], lines
    assert not db.exists()  # failed before touching the database


@pytest.mark.parametrize("command", [["collector", "serve"], ["serve"]])
def test_a_non_numeric_or_taken_grpc_port_is_one_line_exit_2(tmp_path: Path, command: Sequence[str]) -> None:
    base = [qfleet_executable(), *command, "--db", f"sqlite:///{tmp_path / 'q.db'}", "--token-file", str(tmp_path / "token"),
            "--port", "0"]
    bad = subprocess.run([*base, "--grpc-port", "abc"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1 and "'abc'" in bad.stderr, bad.stderr
    with grpc_port_taken() as port:
        taken = subprocess.run([*base, "--grpc-port", str(port)], capture_output=True, text=True, timeout=60,
                               cwd=tmp_path)
    assert taken.returncode == 2, taken.stderr
    ours = [ln for ln in taken.stderr.splitlines() if ln.startswith("qfleet")]
    assert len(ours) == 1 and f"127.0.0.1:{port}" in ours[0] and "gRPC" in ours[0], taken.stderr
    assert "Traceback" not in taken.stderr


@contextmanager
def grpc_port_taken() -> Iterator[int]:
    """A port some other gRPC server listens on."""
    from concurrent import futures

    other = grpc.server(futures.ThreadPoolExecutor(1))
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        yield port
    finally:
        other.stop(None)

