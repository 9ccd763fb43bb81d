"""Issue 12: the OTLP/HTTP transport bounded in connections, time and bytes (a real server on 127.0.0.1).

Each test reproduces a reported failure of the stdlib ``ThreadingHTTPServer`` transport:
``Content-Length: ²`` answered 500 with a traceback before auth; stalled uploads holding every
in-flight slot for 120 s; a silent or dripping client holding a connection; one thread per
connection without a cap; in-flight work bounded by request count only (8 concurrent
20 MiB requests reached 2.8 GB); a port in use ending in a bare ``OSError``. Ordering is made
deterministic with events the test controls and by reading answers (a socket timeout only
bounds a wait that, on the old code, never ends in time); no test reads a clock.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import threading
from typing import Any

import pytest
from google.rpc import status_pb2

from qfleet.collector.consumer import COMMITTED, MemoryConsumer, Outcome, SignalName
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.transport import HttpTransport, TransportConfig
from tests.collector.otlp_payloads import get, metric, post, scrape, wait_until
from tests.collector.test_transport import TOKEN, serving, spans_body

WAIT_S = 30  # the longest any test waits for an answer or an event it controls


class GatedConsumer:
    """Takes every batch, then holds it until the test opens :attr:`commit`; counts arrivals."""

    def __init__(self) -> None:
        self.arrivals = threading.Semaphore(0)
        self.commit = threading.Event()
        self.batches: list[tuple[SignalName, TelemetryBatch]] = []

    def consume(self, batch: TelemetryBatch, signal: SignalName) -> Outcome:
        self.batches.append((signal, batch))
        self.arrivals.release()
        if not self.commit.wait(WAIT_S):
            return Outcome("write_error", "the test never released the gate")
        return COMMITTED


def head(length: int | bytes, *, token: str = TOKEN, extra: bytes = b"") -> bytes:
    cl = length if isinstance(length, bytes) else str(length).encode()
    return (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
            + b"\r\nContent-Type: application/x-protobuf\r\nContent-Length: " + cl + b"\r\n" + extra + b"\r\n")


def answer(sock: socket.socket) -> http.client.HTTPResponse:
    """The next HTTP answer on ``sock`` (within the socket's timeout)."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    resp.read()
    return resp


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------------------
# Malformed requests: 400, no traceback


@pytest.mark.parametrize("length", [b"\xb2", b"\xc2\xb2", b"12x", b"-1", b"1e3", b"0x10", b"9" * 40])
def test_malformed_content_length_is_400_without_a_traceback(length: bytes,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # Old: "²" (latin-1 0xB2) passed str.isdigit(), int() raised, and the client got 500 after a
    # logged traceback, before the token was even checked.
    caplog.set_level(logging.DEBUG)
    consumer = MemoryConsumer()
    with serving(consumer) as t:
        for token in (TOKEN, "wrong-token"):
            with socket.create_connection(t.address, timeout=WAIT_S) as s:
                s.sendall(head(length, token=token))
                r = answer(s)
                assert r.status == 400, (length, r.status)
        assert post(t.address, "/v1/traces", spans_body(2, seed=1), token=TOKEN).status == 200  # still serving
        assert metric(scrape(t.address), "qfleet_collector_unparsable_requests_total") == 2  # counted
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    assert consumer.items == 2


# ---------------------------------------------------------------------------
# Time: stalled uploads and silent connections release what they hold


def test_stalled_uploads_are_answered_408_and_free_their_slots() -> None:
    # Old: 64 stalled authenticated uploads held every in-flight slot for 120 s (the handler's
    # socket timeout); here max_inflight + 1 of them, and body_timeout_s bounds each.
    consumer = MemoryConsumer()
    slots = 2
    with serving(consumer, max_inflight=slots, body_timeout_s=0.5, header_timeout_s=0.5) as t:
        stalled = [socket.create_connection(t.address, timeout=WAIT_S) for _ in range(slots + 1)]
        try:
            for s in stalled[:slots]:
                s.sendall(head(1000) + b"\x0a\x10partial")
            wait_until(lambda: t.inflight == slots, timeout=WAIT_S, what="the stalled uploads to be admitted")
            stalled[slots].sendall(head(1000) + b"\x0a\x10partial")
            over = answer(stalled[slots])
            assert (over.status, over.getheader("Retry-After")) == (503, "1")  # every slot is taken
            for s in stalled[:slots]:
                r = answer(s)  # old code: no answer before the 120 s handler timeout
                assert (r.status, r.getheader("Connection")) == (408, "close")
                assert closed_by_server(s)
            # Every slot is free again: a normal request is served.
            assert post(t.address, "/v1/traces", spans_body(3, seed=2), token=TOKEN).status == 200
            samples = scrape(t.address)
        finally:
            for s in stalled:
                s.close()
    assert consumer.items == 3
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="body_timeout") == slots
    assert metric(samples, "qfleet_collector_inflight_requests") == 0


def test_the_408_names_the_deadline() -> None:
    with serving(MemoryConsumer(), body_timeout_s=0.5) as t:
        with socket.create_connection(t.address, timeout=WAIT_S) as s:
            s.sendall(head(500) + b"\x0a")
            resp = http.client.HTTPResponse(s)
            resp.begin()
            status = status_pb2.Status.FromString(resp.read())
    assert resp.status == 408
    assert "body_timeout_s=0.5" in status.message and "1 of 500 bytes" in status.message


@pytest.mark.parametrize("sent", [b"", b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthor"],
                         ids=["silent", "partial head"])
def test_a_connection_without_a_complete_request_head_is_closed(sent: bytes) -> None:
    # Old: the handler thread waited 120 s for the head; uvicorn alone would wait forever.
    with serving(MemoryConsumer(), header_timeout_s=0.5, keep_alive_s=60) as t:
        with socket.create_connection(t.address, timeout=WAIT_S) as s:
            s.sendall(sent)
            assert closed_by_server(s)
        assert get(t.address, "/healthz").status == 200


def test_keep_alive_connection_idle_past_the_head_deadline_is_closed_after_its_answers() -> None:
    with serving(MemoryConsumer(), header_timeout_s=0.5, keep_alive_s=60) as t:
        with socket.create_connection(t.address, timeout=WAIT_S) as s:
            s.sendall(head(len(body := spans_body(2, seed=3))) + body)
            assert answer(s).status == 200
            assert closed_by_server(s)


# ---------------------------------------------------------------------------
# Connections: capped


def test_connections_beyond_max_connections_are_refused() -> None:
    # Old: one thread per connection, no cap at all.
    cap = 3
    with serving(MemoryConsumer(), max_connections=cap, keep_alive_s=60, header_timeout_s=60) as t:
        held = [http.client.HTTPConnection(*t.address, timeout=WAIT_S) for _ in range(cap)]
        try:
            for c in held:  # each connection served once and kept open
                c.request("GET", "/healthz")
                resp = c.getresponse()
                resp.read()
                assert resp.status == 200
            r = get(t.address, "/healthz")
            assert r.status == 503, r
            assert r.headers["Connection"] == "close"
            held.pop().close()
            # Once the server has seen that connection go, one more is served.
            wait_until(lambda: get(t.address, "/healthz").status == 200, timeout=WAIT_S,
                       what="a connection slot to free up")
        finally:
            for c in held:
                c.close()


# ---------------------------------------------------------------------------
# Bytes: bounded in flight


def test_bytes_in_flight_are_bounded() -> None:
    # Old: only the number of requests was bounded; 8 concurrent 20 MiB requests reached 2.8 GB.
    consumer = GatedConsumer()
    first, second = spans_body(200, seed=4), spans_body(200, seed=5)
    budget = len(first) + len(second) - 1  # both cannot be in flight at once
    replies: list[int] = []
    with serving(consumer, max_body_bytes=budget, max_inflight_bytes=budget, retry_after_s=2) as t:
        sender = threading.Thread(target=lambda: replies.append(
            post(t.address, "/v1/traces", first, token=TOKEN, timeout=WAIT_S).status))
        sender.start()
        assert consumer.arrivals.acquire(timeout=WAIT_S)  # the first is held by the consumer
        assert t.inflight_bytes == len(first)
        r = post(t.address, "/v1/traces", second, token=TOKEN)
        assert (r.status, r.headers["Retry-After"]) == (503, "2")
        assert f"max_inflight_bytes={budget}" in status_pb2.Status.FromString(r.body).message
        consumer.commit.set()
        sender.join(WAIT_S)
        assert replies == [200]
        assert post(t.address, "/v1/traces", second, token=TOKEN).status == 200  # the client's retry
        samples = scrape(t.address)
    assert len(consumer.batches) == 2
    assert metric(samples, "qfleet_collector_refused_total", signal="spans", reason="inflight_bytes") == 1
    assert metric(samples, "qfleet_collector_inflight_bytes") == 0


def test_a_gzip_body_holds_its_decompressed_size() -> None:
    consumer = GatedConsumer()
    raw = spans_body(300, seed=6)
    small = spans_body(20, seed=7)
    budget = len(raw) + len(small) - 1
    packed = gzip.compress(raw)
    assert len(packed) + len(small) < budget  # on Content-Length alone, both would fit
    replies: list[int] = []
    with serving(consumer, max_body_bytes=budget, max_inflight_bytes=budget) as t:
        sender = threading.Thread(target=lambda: replies.append(
            post(t.address, "/v1/traces", packed, token=TOKEN, headers={"Content-Encoding": "gzip"},
                 timeout=WAIT_S).status))
        sender.start()
        assert consumer.arrivals.acquire(timeout=WAIT_S)
        assert t.inflight_bytes == len(raw)
        assert post(t.address, "/v1/traces", small, token=TOKEN).status == 503
        consumer.commit.set()
        sender.join(WAIT_S)
    assert replies == [200]


@pytest.mark.parametrize(("field", "value"), [("max_inflight_bytes", 1000), ("max_connections", 0),
                                              ("body_timeout_s", 0), ("header_timeout_s", float("inf")),
                                              ("keep_alive_s", 0)])
def test_new_limits_are_validated(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"token": TOKEN, "max_body_bytes": 2000, field: value}
    with pytest.raises(ValueError, match=f"TransportConfig.{field}"):
        TransportConfig(**kwargs)


def test_readyz_is_503_once_closing_and_healthz_reports_the_callback() -> None:
    t = HttpTransport(MemoryConsumer(), TransportConfig(port=0, token=TOKEN), ready=lambda: {"status": "ok"})
    t.start()
    try:
        c = http.client.HTTPConnection(*t.address, timeout=WAIT_S)
        c.request("GET", "/readyz")
        first = c.getresponse()
        assert (first.status, first.read()) == (200, b'{"status": "ok"}\n')
        t.close()  # stop accepting; the open connection still gets answers
        c.request("GET", "/readyz")
        second = c.getresponse()
        assert second.status == 503 and b"shutting down" in second.read()
        c.close()
    finally:
        t.stop()


# ---------------------------------------------------------------------------
# A port in use: one line naming the address and the fix


def test_a_port_in_use_is_a_one_line_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        t = HttpTransport(MemoryConsumer(), TransportConfig(port=port, token=TOKEN))
        with pytest.raises(OSError) as err:
            t.start()
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "another port" in message, message
    assert "\n" not in message and not message.startswith("[Errno")
