"""The store on real SQLite and PostgreSQL: retention, rollups, gauges, errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from qfleet.collector import upgrade
from qfleet.collector.convert import SpanColumns, TelemetryBatch, from_metrics_request
from qfleet.collector.schema import ROLLUP_STEP_NS
from qfleet.collector.store import Store, StoreError, open_engine
from qfleet.units import NS
from tests.collector.test_convert import kv
from tests.conftest import FakeClock

DAY = 86_400 * NS
MIN = ROLLUP_STEP_NS


def spans_at(times: list[int], *, prefix: int, name: str = "job.run", node: str = "n1",
             status: list[int] | None = None, durations: list[int] | None = None) -> TelemetryBatch:
    n = len(times)
    durations = durations or [1_000] * n
    return SpanColumns(
        trace_id=[f"{prefix:08x}{i:024x}" for i in range(n)],
        span_id=[f"{prefix:04x}{i + 1:012x}" for i in range(n)],
        name=[name] * n,
        start_time_unix_nano=times,
        end_time_unix_nano=[t + d for t, d in zip(times, durations, strict=True)],
        status_code=status,
        node_id=[node] * n,
        attributes=[{"i": i} for i in range(n)],
    ).to_batch(service_name="sim")


def with_events(batch: TelemetryBatch) -> TelemetryBatch:
    for s in batch.spans:
        batch.events.append((s[0], s[1], 0, s[8] + 1, "photon.lost", {}, 0))
    return batch


def test_prune_deletes_only_past_the_horizon_and_keeps_rollups(store: Store, clock: FakeClock) -> None:
    now = clock.now_ns
    old = [now - 20 * DAY + i * MIN for i in range(30)]   # 30 minutes, 20 days ago
    new = [now - 1 * DAY + i * MIN for i in range(10)]
    edge = [now - 14 * DAY + 5]                           # just inside a 14-day horizon
    store.write(with_events(spans_at(old, prefix=1)))
    store.write(with_events(spans_at(new, prefix=2)))
    store.write(spans_at(edge, prefix=3))
    store.refresh_rollups()
    rollup_rows_before = store.count("span_rollups")

    res = store.prune(older_than_ns=14 * DAY, relative_to="now", batch_size=7)  # many small batches

    assert (res.spans, res.span_events) == (30, 30)
    assert store.count("spans") == 11 and store.count("span_events") == 10
    with store.engine.connect() as conn:
        left = sorted(conn.execute(text("SELECT start_time_unix_nano FROM spans")).scalars())
        hist = conn.execute(text(
            "SELECT SUM(span_count) FROM span_rollups WHERE bucket_start_unix_nano < :h"),
            {"h": now - 14 * DAY}).scalar_one()
    assert left == sorted(new + edge)
    assert store.count("span_rollups") == rollup_rows_before  # history kept
    assert hist == 30


def test_prune_computes_pending_rollups_first(store: Store, clock: FakeClock) -> None:
    store.write(spans_at([clock.now_ns - 30 * DAY + i for i in range(5)], prefix=9))
    store.prune(older_than_ns=14 * DAY, relative_to="now")
    assert store.count("spans") == 0
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT SUM(span_count) FROM span_rollups")).scalar_one() == 5


def test_prune_samples(store: Store, clock: FakeClock) -> None:
    batch = TelemetryBatch()
    from qfleet.collector.convert import MetricSink, resource_row  # the conversion's own sample builder
    from qfleet.collector.schema import MetricType

    res = resource_row(batch, {"service.name": "agent"})
    sink = MetricSink(batch)
    for i, t in enumerate([clock.now_ns - 20 * DAY, clock.now_ns - 15 * DAY, clock.now_ns - DAY]):
        sink.add(res, "qfleet_qubit_t1_seconds", MetricType.GAUGE, 0, False, "s", "", {}, t, float(i))
    store.write(batch)
    assert store.prune(older_than_ns=14 * DAY, relative_to="now").samples == 2
    assert store.count("metric_samples") == 1
    assert store.count("metric_rollups") >= 2


@pytest.mark.parametrize("bad", [0, -5])
def test_prune_rejects_a_non_positive_horizon(store: Store, bad: int) -> None:
    with pytest.raises(StoreError, match="must be positive"):
        store.prune(older_than_ns=bad)


def _rollups(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT bucket_start_unix_nano, name, status_code, node_id, span_count, duration_sum_ns, "
            "duration_min_ns, duration_max_ns FROM span_rollups ORDER BY 1, 2, 3, 4"))]


def test_span_rollups_match_hand_computed_values_and_late_data(store: Store) -> None:
    b0 = 1_800_000_000 * NS // MIN * MIN
    store.write(spans_at([b0 + 1, b0 + 2, b0 + MIN + 3], prefix=1, status=[0, 2, 0],
                         durations=[10, 20, 30]))
    store.write(spans_at([b0 + 4], prefix=2, node="n2", durations=[7]))
    assert store.refresh_rollups().span_buckets == 2
    assert _rollups(store) == [
        (b0, "job.run", 0, "n1", 1, 10, 10, 10),
        (b0, "job.run", 0, "n2", 1, 7, 7, 7),
        (b0, "job.run", 2, "n1", 1, 20, 20, 20),
        (b0 + MIN, "job.run", 0, "n1", 1, 30, 30, 30),
    ]
    # Late data for an already rolled-up minute: the bucket is recomputed, not double counted.
    store.write(spans_at([b0 + 5], prefix=3, durations=[40]))
    store.write(spans_at([b0 + 5], prefix=3, durations=[40]))  # re-delivery
    assert store.refresh_rollups().span_buckets == 1
    assert store.refresh_rollups().span_buckets == 0
    assert _rollups(store)[0] == (b0, "job.run", 0, "n1", 2, 50, 10, 40)


def test_pending_rollups_survive_a_new_process(db_url: str) -> None:
    """Pending buckets are rows written with the data: a restart loses no rollup work."""
    from qfleet.collector.migrate import upgrade

    e1 = open_engine(db_url)
    upgrade(e1)
    Store(e1).write(spans_at([1_800_000_000 * NS], prefix=4))
    e1.dispose()  # the writer "crashes" before any rollup ran
    e2 = open_engine(db_url)
    assert Store(e2).refresh_rollups().span_buckets == 1
    assert Store(e2).count("span_rollups") == 1
    e2.dispose()


def test_counter_rollup_increase_handles_resets(store: Store) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    b0 = 1_800_000_000 * NS // MIN * MIN
    # Minute 0: 5, 8; minute 1: 11, 2 (reset), 6. Increase: m0 = 3; m1 = (11-8) + 2 + (6-2) = 9.
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "agent")])
    m = rm.scope_metrics.add().metrics.add(name="qfleet.entanglement.attempts")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    for t, v in [(b0 + 1, 5), (b0 + 2, 8), (b0 + MIN + 1, 11), (b0 + MIN + 2, 2), (b0 + MIN + 3, 6)]:
        m.sum.data_points.add(time_unix_nano=t, as_int=v)
    store.write(from_metrics_request(req))
    store.refresh_rollups()
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT bucket_start_unix_nano, sample_count, last_value, increase FROM metric_rollups "
            "ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [(b0, 2, 8.0, 3.0), (b0 + MIN, 3, 6.0, 9.0)]


def test_latest_samples_returns_the_newest_sample_of_each_fresh_series(store: Store) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "agent"), kv("qfleet.node.id", "node-1")])
    g = rm.scope_metrics.add().metrics.add(name="qfleet.link.fidelity", unit="1")
    for t, v in [(10**18 + 2, 0.9), (10**18 + 1, 0.8), (10**18 + 3, 0.95)]:
        g.gauge.data_points.add(time_unix_nano=t, as_double=v).attributes.extend([kv("qfleet.link.id", "a~b")])
    store.write(from_metrics_request(req))
    (gv,), n = store.latest_samples(since_ns=10**18, limit=10)
    assert (gv.metric_name, gv.value, gv.time_unix_nano, n) == ("qfleet_link_fidelity_ratio", 0.95, 10**18 + 3, 1)
    assert gv.node_id == "node-1" and gv.labels["qfleet.link.id"] == "a~b"
    # A series whose newest sample is older than since_ns is left out, and counted as not qualifying.
    assert store.latest_samples(since_ns=10**18 + 4, limit=10) == ([], 0)


def test_a_failed_transaction_writes_nothing(sqlite_engine: Any) -> None:
    store = Store(sqlite_engine)
    batch = spans_at([10**18 + i for i in range(100)], prefix=5)
    batch.events.append(("a" * 32, "b" * 16, 0, 1, "x", {"bad": object()}, 0))  # not JSON: fails mid-write
    with pytest.raises(TypeError):
        store.write(batch)
    assert store.count("spans") == 0 and store.count("resources") == 0


def test_bad_urls_and_tables_are_named() -> None:
    with pytest.raises(StoreError, match="cannot be parsed"):
        open_engine("not a url")
    with pytest.raises(StoreError, match="backend 'mysql' is not supported"):
        open_engine("mysql://x@localhost/db")
    with pytest.raises(StoreError, match="unknown table 'nope'"):
        Store(open_engine("sqlite://")).count("nope")


def test_live_buckets_are_rolled_up_once_settled(store: Store, clock: FakeClock) -> None:
    b0 = clock.now_ns // MIN * MIN
    store.write(spans_at([b0 + 1], prefix=1))
    clock.advance(NS)
    store.write(spans_at([b0 + 2], prefix=2))  # the live minute is written again
    # Not settled for 5 s yet: nothing rolled up, still pending.
    assert store.refresh_rollups(settle_ns=5 * NS).span_buckets == 0
    assert store.count("span_rollups") == 0 and store.count("rollup_pending") == 1
    clock.advance(5 * NS)
    assert store.refresh_rollups(settle_ns=5 * NS).span_buckets == 1
    assert _rollups(store)[0][4] == 2


def test_a_new_sqlite_file_gets_16_kib_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """The page size applies only to a file with nothing in it yet; either way, automatic checkpoints come after
    about 40 MB of WAL (read back with the stdlib's sqlite3, not through the store)."""
    old = tmp_path / "old.db"
    raw = sqlite3.connect(old)
    raw.execute("PRAGMA page_size=4096")
    raw.execute("PRAGMA journal_mode=WAL")   # fixes the page size before any table exists
    raw.close()
    for path, page in ((tmp_path / "new.db", 16_384), (old, 4_096)):
        engine = open_engine(f"sqlite:///{path}")
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 40_960_000 // page
        engine.dispose()
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA page_size").fetchone()[0] == page
        assert raw.execute("SELECT count(*) FROM spans").fetchone()[0] == 0   # migrated and readable
        raw.close()
