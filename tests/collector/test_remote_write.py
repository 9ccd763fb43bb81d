"""Prometheus remote write 1.0 into the receiver (``POST /api/v1/write``).

The oracle is the real Prometheus (Debian's 2.42): it scrapes a prometheus_client target whose values the
test sets, remote-writes to a running receiver, and what the receiver stored must equal the raw samples
Prometheus itself returns for the same series (a range selector at ``/api/v1/query``). The same Prometheus,
with its own remote write receiver on, checks that :func:`encode_write_request` is what it reads. The codec
and the refusals are checked over HTTP against exact counts in ``/metrics``.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cramjam
import pytest
from sqlalchemy import Engine, text

from qfleet.collector.decode import BodyTooLarge
from qfleet.collector.migrate import upgrade
from qfleet.collector.otlp import DecodeFailure
from qfleet.collector.prompb import (
    STALE_NAN_BITS,
    Metadata,
    Series,
    decode_write_request,
    encode_write_request,
)
from qfleet.collector.receiver import Receiver, ReceiverConfig
from qfleet.collector.store import Store, open_engine
from tests.collector.otlp_payloads import Reply, metric, post, scrape, sqlite_write_lock, wait_until
from tests.conftest import require_tool

TOKEN = "remote-write-test-token"
PATH = "/api/v1/write"
RW_HEADERS = {"Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0"}
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
T_MS = 1_795_000_000_000  # a fixed 2026 time in ms
POINTS = "metric_points"
# Series Prometheus adds to every target by itself (not the target's own: never marked stale on a failed scrape).
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added"}


@contextmanager
def serving(engine: Engine, **config: Any) -> Iterator[Receiver]:
    rx = Receiver(Store(engine), ReceiverConfig(port=0, token=config.pop("token", TOKEN), **config))
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


def send(rx: Receiver, body: bytes, *, token: str | None = TOKEN, headers: dict[str, str] | None = None) -> Reply:
    return post(rx.address, PATH, body, token=token, headers=RW_HEADERS if headers is None else headers)


def stored(engine: Engine) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]]:
    """(name, Prometheus label set without __name__) -> [(ms, value)] of every stored sample, in time order."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]] = {}
    with engine.connect() as c:
        for name, labels, attrs, t, v in c.execute(text(
                "SELECT s.metric_name, s.labels, r.attributes, m.time_unix_nano, m.value FROM metric_samples m "
                "JOIN metric_series s ON s.id = m.series_id JOIN resources r ON r.fingerprint = s.resource_fingerprint "
                "ORDER BY m.time_unix_nano")):
            lab = {**json.loads(labels)}
            res = json.loads(attrs)
            lab.update({k: res[a] for k, a in (("job", "service.name"), ("instance", "service.instance.id"))
                        if a in res})
            assert t % 1_000_000 == 0
            out.setdefault((name, frozenset(lab.items())), []).append((t // 1_000_000, v))
    return out


def series_types(engine: Engine) -> dict[str, set[tuple[int, int, bool]]]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT metric_name, metric_type, temporality, is_monotonic FROM metric_series"))
        out: dict[str, set[tuple[int, int, bool]]] = {}
        for name, mtype, temp, mono in rows:
            out.setdefault(name, set()).add((mtype, temp, bool(mono)))
        return out


def sample_count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT COUNT(*) FROM metric_samples")).scalar_one())


# ---------------------------------------------------------------------------
# The codec


def test_codec_round_trip_keeps_labels_sorted_samples_and_metadata() -> None:
    body = encode_write_request(
        [Series({"job": "qpu", "__name__": "qpu_jobs_total", "qfleet_outcome": "ok"},
                [(T_MS, 7.0), (T_MS + 1000, 9.5), (T_MS + 2000, STALE)])],
        [Metadata("qpu_jobs", "counter", "Jobs run", "")])
    req = decode_write_request(body, 1 << 20)
    (ts,) = req.timeseries
    assert [(lab.name, lab.value) for lab in ts.labels] == [("__name__", "qpu_jobs_total"), ("job", "qpu"),
                                                            ("qfleet_outcome", "ok")]
    assert [(s.timestamp, s.value) for s in ts.samples[:2]] == [(T_MS, 7.0), (T_MS + 1000, 9.5)]
    assert struct.pack("<d", ts.samples[2].value) == struct.pack("<Q", STALE_NAN_BITS)  # the exact bits survive
    (meta,) = req.metadata
    assert (meta.type, meta.metric_family_name, meta.help) == (1, "qpu_jobs", "Jobs run")  # COUNTER = 1


def test_codec_refuses_bad_snappy_an_oversized_declaration_and_bad_protobuf() -> None:
    with pytest.raises(DecodeFailure, match="snappy"):
        decode_write_request(b"\xff\xff\xff\xff\xff\xff", 1 << 20)  # no valid length header
    with pytest.raises(DecodeFailure, match="snappy"):
        decode_write_request(b"\x10\x00\x01", 1 << 20)  # declares 16 bytes, holds garbage
    # Declares 2**31 bytes in 6 bytes: refused on the header, nothing is decompressed.
    with pytest.raises(BodyTooLarge) as too_large:
        decode_write_request(b"\x80\x80\x80\x80\x08\x00", 1 << 20)
    assert too_large.value.args[0] == 2**31
    with pytest.raises(DecodeFailure, match="prometheus.WriteRequest"):
        decode_write_request(bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a")), 1 << 20)  # truncated field


# ---------------------------------------------------------------------------
# Over HTTP, with exact counts


def test_refusals_have_the_right_status_and_are_counted(sqlite_engine: Engine) -> None:
    good = encode_write_request([Series({"__name__": "g", "job": "j"}, [(T_MS, 1.0)])])
    with serving(sqlite_engine, max_body_bytes=4096, max_inflight_bytes=8192) as rx:
        answers = {
            "no token": send(rx, good, token=None),
            "wrong token": send(rx, good, token="nope"),
            "gzip": send(rx, good, headers={"Content-Encoding": "gzip"}),
            "json": send(rx, good, headers={**RW_HEADERS, "Content-Type": "application/json"}),
            "remote write 2.0": send(rx, good, headers={
                **RW_HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}),
            "not snappy": send(rx, b"\xff\xff\xff\xff\xff\xff"),
            "not protobuf": send(rx, bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a"))),
            "declares too much": send(rx, bytes(cramjam.snappy.compress_raw(b"\x00" * 5000))),
            "GET": Reply(*_get(rx)),
        }
        samples = scrape(rx.address)
    assert {k: r.status for k, r in answers.items()} == {
        "no token": 401, "wrong token": 401, "gzip": 415, "json": 415, "remote write 2.0": 415,
        "not snappy": 400, "not protobuf": 400, "declares too much": 413, "GET": 405}
    assert b"max_body_bytes=4096" in answers["declares too much"].body
    assert answers["not protobuf"].body.count(b"\n") == 1  # one line, which Prometheus logs as is
    assert metric(samples, "qfleet_collector_rejected_total", signal=POINTS, reason="malformed") == 2
    assert metric(samples, "qfleet_collector_rejected_total", signal=POINTS, reason="too_large") == 1
    assert metric(samples, "qfleet_collector_requests_total", path=PATH, code="401") == 2
    assert metric(samples, "qfleet_collector_received_total", signal=POINTS) == 0
    assert sample_count(sqlite_engine) == 0


def _get(rx: Receiver) -> tuple[int, Any, bytes]:
    import http.client

    c = http.client.HTTPConnection(*rx.address, timeout=30)
    try:
        c.request("GET", PATH)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def test_stale_markers_and_nan_are_skipped_and_counted_the_rest_stored(sqlite_engine: Engine) -> None:
    body = encode_write_request([
        Series({"__name__": "qpu_fridge_temperature_kelvin", "job": "fridge", "instance": "f1:9100",
                "qfleet_node_id": "qpu-a"}, [(T_MS, 0.0125), (T_MS + 1000, STALE)]),
        Series({"__name__": "qpu_jobs_total", "job": "fridge", "qfleet_outcome": "success"},
               [(T_MS, 3.0), (T_MS + 1000, math.nan), (T_MS + 2000, 4.0), (T_MS + 3000, STALE)]),
    ])
    with serving(sqlite_engine) as rx:
        r = send(rx, body)
        samples = scrape(rx.address)
    assert (r.status, r.body) == (204, b"")
    assert metric(samples, "qfleet_collector_skipped_total", signal=POINTS, reason="stale_marker") == 2
    assert metric(samples, "qfleet_collector_skipped_total", signal=POINTS, reason="nan") == 1
    assert metric(samples, "qfleet_collector_received_total", signal=POINTS) == 3
    assert metric(samples, "qfleet_collector_stored_total", signal=POINTS) == 3
    assert stored(sqlite_engine) == {
        ("qpu_fridge_temperature_kelvin", frozenset({("job", "fridge"), ("instance", "f1:9100"),
                                                     ("qfleet_node_id", "qpu-a")})): [(T_MS, 0.0125)],
        ("qpu_jobs_total", frozenset({("job", "fridge"), ("qfleet_outcome", "success")})):
            [(T_MS, 3.0), (T_MS + 2000, 4.0)],
    }
    with sqlite_engine.connect() as c:
        node = c.execute(text("SELECT node_id FROM metric_series WHERE metric_name = "
                              "'qpu_fridge_temperature_kelvin'")).scalar_one()
    assert node == "qpu-a"  # the promoted column, from the Prometheus form of qfleet.node.id


def test_invalid_samples_are_answered_400_after_the_valid_ones_are_stored(sqlite_engine: Engine) -> None:
    body = encode_write_request([
        Series({"__name__": "ok_total", "job": "j"}, [(T_MS, 1.0), (T_MS + 1000, 2.0)]),
        Series({"__name__": "bad-name", "job": "j"}, [(T_MS, 1.0), (T_MS + 1000, 2.0)]),
        Series({"__name__": "bad_label", "job": "j", "9x": "v"}, [(T_MS, 1.0)]),
        Series({"__name__": "bad_le_bucket", "job": "j", "le": "many"}, [(T_MS, 1.0)]),
        Series({"__name__": "bad_time", "job": "j"}, [(0, 1.0), (T_MS, 5.0)]),
    ])
    with serving(sqlite_engine) as rx:
        r = send(rx, body)
        retry = send(rx, body)  # Prometheus does not resend a 400; resending anyway stores nothing twice
        samples = scrape(rx.address)
    assert r.status == 400 and retry.status == 400
    assert r.body.startswith(b"3 samples stored; 5 invalid data points rejected")
    assert b"bad-name" in r.body and r.body.count(b"\n") == 1
    assert metric(samples, "qfleet_collector_rejected_total", signal=POINTS, reason="invalid") == 10
    assert metric(samples, "qfleet_collector_stored_total", signal=POINTS) == 6  # re-deliveries included
    assert stored(sqlite_engine) == {
        ("ok_total", frozenset({("job", "j")})): [(T_MS, 1.0), (T_MS + 1000, 2.0)],
        ("bad_time", frozenset({("job", "j")})): [(T_MS, 5.0)],
    }


def test_types_come_from_metadata_else_from_the_series(sqlite_engine: Engine) -> None:
    gauge, counter, histogram, summary = (1, 0, False), (2, 2, True), 3, 4
    with serving(sqlite_engine) as rx:
        # Prometheus sends metadata in requests of its own, before or after the samples.
        assert send(rx, encode_write_request([], [Metadata("qpu_shots", "counter", "Shots run"),
                                                  Metadata("qpu_wait_seconds", "summary")])).status == 204
        labels = {"job": "j"}
        r = send(rx, encode_write_request([
            Series({"__name__": "qpu_shots", **labels}, [(T_MS, 1000.0)]),  # a counter without _total
            Series({"__name__": "qpu_wait_seconds_count", **labels}, [(T_MS, 3.0)]),
            Series({"__name__": "qpu_lat_seconds_count", **labels}, [(T_MS, 4.0)]),  # its buckets show the type
            Series({"__name__": "qpu_lat_seconds_bucket", "le": "1", **labels}, [(T_MS, 2.0)]),
            Series({"__name__": "qpu_lat_seconds_bucket", "le": "+Inf", **labels}, [(T_MS, 4.0)]),
            Series({"__name__": "qpu_lat_seconds_sum", **labels}, [(T_MS, 2.5)]),
            Series({"__name__": "qpu_errors_total", **labels}, [(T_MS, 1.0)]),
            Series({"__name__": "qpu_qubits_count", **labels}, [(T_MS, 20.0)]),  # nothing says otherwise: gauge
        ]))
    assert r.status == 204
    types = series_types(sqlite_engine)
    assert types == {
        "qpu_shots": {counter}, "qpu_wait_seconds_count": {(summary, 2, True)},
        "qpu_lat_seconds_count": {(histogram, 2, True)}, "qpu_lat_seconds_bucket": {(histogram, 2, True)},
        "qpu_lat_seconds_sum": {(histogram, 2, False)}, "qpu_errors_total": {counter},
        "qpu_qubits_count": {gauge}}
    buckets = {dict(k[1]).get("le") for k in stored(sqlite_engine) if k[0] == "qpu_lat_seconds_bucket"}
    assert buckets == {"1.0", "+Inf"}  # as the OTLP path writes bounds (what slo.sli matches)
    with sqlite_engine.connect() as c:
        assert c.execute(text("SELECT description FROM metric_series WHERE metric_name = 'qpu_shots'")
                         ).scalar_one() == "Shots run"


def test_queue_full_is_503_with_retry_after_and_the_retry_is_stored(sqlite_engine: Engine) -> None:
    first = encode_write_request([Series({"__name__": "a", "job": "j", "i": str(i)}, [(T_MS, float(i))])
                                  for i in range(3)])
    second = encode_write_request([Series({"__name__": "b", "job": "j", "i": str(i)}, [(T_MS, float(i))])
                                   for i in range(2)])
    with serving(sqlite_engine, queue_items=4, ack_timeout_s=30, retry_after_s=2) as rx:
        result: list[int] = []
        db = sqlite_engine.url.database
        assert db
        with sqlite_write_lock(db):  # the writer cannot commit: the first request stays queued
            t = threading.Thread(target=lambda: result.append(send(rx, first).status))
            t.start()
            wait_until(lambda: rx.health()["queue_items"] == 3, what="first request queued")
            refused = send(rx, second)
        t.join(30)
        retried = send(rx, second)  # what Prometheus does after Retry-After
        samples = scrape(rx.address)
    assert (refused.status, refused.headers["Retry-After"]) == (503, "2")
    assert b"queue is full" in refused.body
    assert result == [204] and retried.status == 204
    assert metric(samples, "qfleet_collector_refused_total", signal=POINTS, reason="queue_full") == 2
    assert sample_count(sqlite_engine) == 5


# ---------------------------------------------------------------------------
# The real Prometheus as sender and as oracle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prom_get(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _raw_samples(port: int, selector: str) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]]:
    """Every raw sample Prometheus holds for ``selector`` in the last 10 minutes, by (name, other labels)."""
    got = _prom_get(port, "/api/v1/query", query=f"{selector}[10m]")
    assert got["status"] == "success" and got["data"]["resultType"] == "matrix", got
    out = {}
    for s in got["data"]["result"]:
        labels = dict(s["metric"])
        name = labels.pop("__name__")
        out[name, frozenset(labels.items())] = [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
    return out


@contextmanager
def _target() -> Iterator[tuple[int, Any]]:
    """A prometheus_client HTTP target on 127.0.0.1 with a counter, a gauge and a histogram of known values."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

    reg = CollectorRegistry()
    jobs = Counter("qpu_jobs", "Jobs run", ["qfleet_outcome"], registry=reg)
    jobs.labels("success").inc(7)
    jobs.labels("failure").inc(2)
    Gauge("qpu_fridge_temperature_kelvin", "Mixing chamber", ["qfleet_node_id", "qfleet_hardware_type"],
          registry=reg).labels("qpu-a", "superconducting").set(0.0125)
    lat = Histogram("qpu_job_duration_seconds", "Job time", buckets=(0.1, 0.5, 1.0, 2.5), registry=reg)
    for v in (0.05, 0.3, 0.3, 2.0):
        lat.observe(v)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield int(server.server_port), server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def _prometheus(tmp_path: Path, config: str) -> Iterator[tuple[int, Path]]:
    binary = require_tool("prometheus")
    port = _free_port()
    (tmp_path / "prometheus.yml").write_text(config)
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--web.enable-remote-write-receiver", "--log.level=debug"],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is None and _ready(port), timeout=30, interval=0.1,
                       what=f"prometheus ready ({log})")
            yield port, log
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_real_prometheus_remote_write_stores_what_prometheus_holds(tmp_path: Path, sqlite_engine: Engine) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")  # a trailing newline, as editors write it: Prometheus trims it
    other_engine = open_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other_engine)
    with (serving(sqlite_engine) as rx, serving(other_engine, token="a-different-token") as other, _target()
          as (target_port, target)):
        rw = "\n".join(
            f"""  - url: http://{host}:{port}{PATH}
    name: {name}
    authorization: {{credentials_file: {tmp_path / 'token'}}}
    queue_config: {{batch_send_deadline: 500ms, min_backoff: 100ms, max_backoff: 500ms}}
    metadata_config: {{send: true, send_interval: 1s}}"""
            for name, (host, port) in (("qfleet", rx.address), ("wrong_token", other.address)))
        config = f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: qpu
    static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
remote_write:
{rw}
"""
        with _prometheus(tmp_path, config) as (prom, log):
            wait_until(lambda: len(stored(sqlite_engine)) > 0 and min(
                len(v) for v in stored(sqlite_engine).values()) >= 3, timeout=30, what="3 scrapes stored")
            oracle = _raw_samples(prom, '{job="qpu"}')

            def caught_up() -> bool:
                have = stored(sqlite_engine)
                return all(set(v) <= set(have.get(k, [])) for k, v in oracle.items())

            wait_until(caught_up, timeout=30, what="every sample Prometheus holds stored in qfleet")
            have = stored(sqlite_engine)
            assert set(have) == set(oracle)
            for key, samples in oracle.items():
                # Samples of a series are appended in time order: those up to the last one Prometheus showed.
                assert [s for s in have[key] if s[0] <= samples[-1][0]] == samples, key
            assert have["qpu_jobs_total", frozenset({("job", "qpu"), ("instance", f"127.0.0.1:{target_port}"),
                                                     ("qfleet_outcome", "success")})][0][1] == 7.0

            # The encoder, read back by Prometheus' own remote write receiver.
            t0 = max(t for v in oracle.values() for t, _ in v)
            mine = [(t0 - 3000, 1.5), (t0 - 2000, -2.25), (t0 - 1000, 1e300)]
            r = post(("127.0.0.1", prom), PATH, encode_write_request(
                [Series({"__name__": "qfleet_encoded", "job": "encoded", "k": "v"}, mine)]), token=None,
                headers=RW_HEADERS)
            assert r.status == 204, r
            assert _raw_samples(prom, '{job="encoded"}') == {
                ("qfleet_encoded", frozenset({("job", "encoded"), ("k", "v")})): mine}

            # The target goes away: Prometheus marks its series stale, and the markers are skipped, not stored.
            own = {k for k in oracle if k[0] not in SYNTHETIC}
            target.shutdown()
            target.server_close()  # connections refused from now on: the next scrape fails at once
            wait_until(lambda: metric(scrape(rx.address), "qfleet_collector_skipped_total", signal=POINTS,
                                      reason="stale_marker") >= len(own), timeout=30, what="stale markers")
            samples = scrape(rx.address)
            wait_until(lambda: b"401" in log.read_bytes(), timeout=30, what="Prometheus logging the 401")
            refused = scrape(other.address)
    assert metric(samples, "qfleet_collector_skipped_total", signal=POINTS, reason="stale_marker") == len(own)
    assert metric(samples, "qfleet_collector_rejected_total", signal=POINTS, reason="invalid") == 0
    types = series_types(sqlite_engine)
    assert types["qpu_jobs_total"] == {(2, 2, True)}
    assert types["qpu_fridge_temperature_kelvin"] == {(1, 0, False)}
    assert types["qpu_job_duration_seconds_bucket"] == {(3, 2, True)}
    assert types["qpu_job_duration_seconds_sum"] == {(3, 2, False)}
    with sqlite_engine.connect() as c:
        assert c.execute(text("SELECT node_id, hardware_type FROM metric_series WHERE metric_name = "
                              "'qpu_fridge_temperature_kelvin'")).one() == ("qpu-a", "superconducting")
    # The wrong token: refused before reading the body, nothing stored, the refusal counted.
    assert metric(refused, "qfleet_collector_requests_total", path=PATH, code="401") >= 1
    assert metric(refused, "qfleet_collector_requests_total", path=PATH, code="204") == 0
    assert sample_count(other_engine) == 0
    other_engine.dispose()
