"""The receiver's stages one at a time: decode, the bounded queue, the store writer, the rollup scheduler.

No HTTP here (see test_transport.py and test_receiver.py). Threads only where a stage
blocks by design (``BatchQueue.consume`` waits for its commit); the test then observes the
queue, never the clock. Time-driven decisions (rollups) run on a :class:`FakeClock`.
"""

from __future__ import annotations

import gzip
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from qfleet.collector.batcher import BatchQueue
from qfleet.collector.consumer import COMMITTED, MemoryConsumer, Outcome, SignalName
from qfleet.collector.decode import BodyTooLarge, DecodeFailure, decode_body, gunzip
from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.rollups import RollupScheduler
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.store import Store, open_engine
from qfleet.collector.writer import StoreWriter
from qfleet.units import NS
from tests.collector.otlp_payloads import random_spans, trace_request, wait_until
from tests.collector.test_store import spans_at
from tests.conftest import FakeClock

GATE_S = 30
T = 1_800_000_000 * NS  # a fixed instant for span times


def spans(n: int, prefix: int) -> TelemetryBatch:
    return spans_at([T + i * NS for i in range(n)], prefix=prefix)


def sample(metrics: ReceiverMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def metrics() -> ReceiverMetrics:
    return ReceiverMetrics(CollectorRegistry())


class Consuming:
    """``queue.consume(batch, signal)`` on its own thread (it blocks until the commit)."""

    def __init__(self, queue: BatchQueue, batch: TelemetryBatch, signal: SignalName = "spans") -> None:
        self.outcome: Outcome | None = None
        self.thread = threading.Thread(target=self._run, args=(queue, batch, signal), daemon=True)
        self.thread.start()

    def _run(self, queue: BatchQueue, batch: TelemetryBatch, signal: SignalName) -> None:
        self.outcome = queue.consume(batch, signal)

    def result(self) -> Outcome | None:
        self.thread.join(GATE_S)
        return self.outcome


# ---------------------------------------------------------------------------
# Decode


def test_decode_body_gunzips_within_the_limit_and_names_what_is_wrong() -> None:
    raw = trace_request(random_spans(random.Random(1), 3)).SerializeToString()
    batch = decode_body("spans", gzip.compress(raw), "application/x-protobuf", gzipped=True, max_bytes=len(raw))
    assert batch.item_count == 3
    with pytest.raises(BodyTooLarge):
        decode_body("spans", gzip.compress(raw), "application/x-protobuf", gzipped=True, max_bytes=len(raw) - 1)
    deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(DecodeFailure, match="nested too deeply"):
        decode_body("spans", deep, "application/json", gzipped=False, max_bytes=len(deep))
    with pytest.raises(DecodeFailure, match="unsupported Content-Type 'text/csv'"):
        decode_body("metric_points", b"", "text/csv", gzipped=False, max_bytes=1)


def test_gunzip_reads_concatenated_members_and_stops_at_the_cap() -> None:
    assert gunzip(gzip.compress(b"a" * 10) + gzip.compress(b"b" * 5), 15) == b"a" * 10 + b"b" * 5
    with pytest.raises(BodyTooLarge) as err:
        gunzip(gzip.compress(b"\0" * (1 << 20)), 1000)
    assert err.value.args[0] == 1001  # decompression stopped one byte past the cap, not at 1 MiB


# ---------------------------------------------------------------------------
# The bounded queue


def test_consume_returns_only_once_the_writer_resolves_its_ticket(metrics: ReceiverMetrics) -> None:
    q = BatchQueue(capacity_items=10, ack_timeout_s=GATE_S, metrics=metrics)
    call = Consuming(q, spans(3, prefix=1))
    wait_until(lambda: q.items == 3, timeout=GATE_S, what="the batch to be queued")
    [ticket] = q.take(100, wait_s=0) or []
    assert ticket.items == 3 and call.thread.is_alive()  # taken, not committed: still waiting
    q.resolve(ticket, COMMITTED)
    assert call.result() == COMMITTED
    assert q.items == 0


def test_queue_refuses_what_cannot_fit(metrics: ReceiverMetrics) -> None:
    q = BatchQueue(capacity_items=5, ack_timeout_s=GATE_S, metrics=metrics)
    too_big = q.consume(spans(6, prefix=2), "spans")
    assert too_big.reason == "too_large" and "queue_items=5" in too_big.message
    call = Consuming(q, spans(4, prefix=3))
    wait_until(lambda: q.items == 4, timeout=GATE_S, what="the first batch to be queued")
    assert q.consume(spans(2, prefix=4), "spans") == Outcome("queue_full")  # answered at once
    assert q.items == 4
    [ticket] = q.take(100, wait_s=0) or []
    q.resolve(ticket, COMMITTED)
    assert call.result() == COMMITTED


def test_take_coalesces_in_order_up_to_the_limit_but_always_takes_one(metrics: ReceiverMetrics) -> None:
    q = BatchQueue(capacity_items=100, ack_timeout_s=GATE_S, metrics=metrics)
    calls = []
    for i, n in enumerate((4, 4, 9)):
        calls.append(Consuming(q, spans(n, prefix=10 + i)))
        wait_until(lambda i=i: q.items == (4, 8, 17)[i], timeout=GATE_S, what="the batches to be queued in order")
    assert [t.items for t in q.take(8, wait_s=0) or []] == [4, 4]
    assert [t.items for t in q.take(8, wait_s=0) or []] == [9]  # larger than the limit: alone
    assert q.take(8, wait_s=0) == []  # nothing queued, not stopping
    assert q.items == 17  # taken tickets count until resolved


def test_a_client_that_stopped_waiting_is_told_to_retry_and_a_late_failure_is_logged(
        metrics: ReceiverMetrics, caplog: pytest.LogCaptureFixture) -> None:
    q = BatchQueue(capacity_items=10, ack_timeout_s=0.01, metrics=metrics)
    outcome = q.consume(spans(2, prefix=20), "spans")  # nobody takes it
    assert outcome.reason == "ack_timeout" and "resending is safe" in outcome.message
    [ticket] = q.take(10, wait_s=0) or []  # still queued: it may yet commit
    with caplog.at_level(logging.WARNING, logger="qfleet.collector.batcher"):
        q.resolve(ticket, Outcome("write_error"))
    assert "client had stopped waiting" in caplog.text
    assert q.items == 0 and ticket.batch.item_count == 0  # rows freed


def test_closed_queue_refuses_then_drains_then_discards_past_the_deadline(metrics: ReceiverMetrics) -> None:
    dead = BatchQueue(capacity_items=10, ack_timeout_s=GATE_S, metrics=metrics, writer_alive=lambda: False)
    assert dead.consume(spans(1, prefix=30), "spans") == Outcome("write_error")

    q = BatchQueue(capacity_items=10, ack_timeout_s=GATE_S, metrics=metrics)
    call = Consuming(q, spans(3, prefix=31))
    wait_until(lambda: q.items == 3, timeout=GATE_S, what="the batch to be queued")
    q.close(drain_deadline=float("inf"))
    assert q.consume(spans(1, prefix=32), "spans") == Outcome("stopping")
    [ticket] = q.take(10, wait_s=0) or []  # before the deadline: the writer still gets it
    q.resolve(ticket, COMMITTED)
    assert call.result() == COMMITTED
    assert q.take(10, wait_s=0) is None  # closed and empty: the writer stops

    late = BatchQueue(capacity_items=10, ack_timeout_s=GATE_S, metrics=metrics)
    call = Consuming(late, spans(4, prefix=33), "spans")
    wait_until(lambda: late.items == 4, timeout=GATE_S, what="the batch to be queued")
    late.close(drain_deadline=0.0)  # long past
    assert late.take(10, wait_s=0) is None
    assert call.result() == Outcome("stopping")
    assert late.items == 0
    assert sample(metrics, "qfleet_collector_dropped_total", signal="spans") == 4


def test_memory_consumer_keeps_batches_up_to_its_capacity() -> None:
    c = MemoryConsumer(capacity_items=3)
    assert c.consume(spans(2, prefix=40), "spans") == COMMITTED
    assert c.consume(spans(2, prefix=41), "spans").reason == "queue_full"
    assert c.consume(spans(1, prefix=42), "spans").committed
    assert (c.items, [s for s, _ in c.batches]) == (3, ["spans", "spans"])


# ---------------------------------------------------------------------------
# The store writer


@pytest.fixture
def store(sqlite_engine: Engine) -> Store:
    return Store(sqlite_engine)


def _pipeline(store: Store, metrics: ReceiverMetrics) -> tuple[BatchQueue, StoreWriter]:
    # The queue accepts before the writer starts, so a test can queue first, then let it write.
    q = BatchQueue(capacity_items=100, ack_timeout_s=GATE_S, metrics=metrics)
    clock = FakeClock()
    rollups = RollupScheduler(store, interval_s=3600, settle_s=0, clock=clock, metrics=metrics)
    return q, StoreWriter(store, q, rollups, metrics, max_batch_items=1000, clock=clock)


def test_writer_commits_queued_batches_in_one_transaction_before_answering(
        store: Store, metrics: ReceiverMetrics) -> None:
    q, writer = _pipeline(store, metrics)
    calls = [Consuming(q, spans(5, prefix=50 + i)) for i in range(2)]
    wait_until(lambda: q.items == 10, timeout=GATE_S, what="both batches to be queued")
    writer.start()  # both are queued already: one take, one transaction
    for call in calls:
        assert call.result() == COMMITTED
        assert store.count("spans") >= 5  # committed before the answer
    assert store.count("spans") == 10
    assert sample(metrics, "qfleet_collector_write_seconds_count") == 1
    assert sample(metrics, "qfleet_collector_stored_total", signal="spans") == 10
    q.close(drain_deadline=float("inf"))
    assert writer.join(GATE_S)
    assert store.count("span_rollups") > 0  # the final, forced refresh


def test_writer_answers_unstorable_for_data_the_database_refuses(store: Store, metrics: ReceiverMetrics) -> None:
    q, writer = _pipeline(store, metrics)
    writer.start()
    bad = spans(1, prefix=60)
    bad.spans[0] = (*bad.spans[0][:9], 2**64, *bad.spans[0][10:])  # no 64-bit column holds it
    outcome = q.consume(bad, "spans")
    assert outcome.reason == "unstorable" and "resending cannot help" in outcome.message
    assert q.consume(spans(2, prefix=61), "spans") == COMMITTED  # the writer carries on
    assert sample(metrics, "qfleet_collector_write_failures_total") == 1
    q.close(drain_deadline=float("inf"))
    assert writer.join(GATE_S)


def test_writer_answers_write_error_when_the_database_is_unusable(tmp_path: Path,
                                                                  metrics: ReceiverMetrics) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/unmigrated.db")  # no tables
    q, writer = _pipeline(Store(engine), metrics)
    writer.start()
    assert q.consume(spans(2, prefix=70), "spans") == Outcome("write_error")
    q.close(drain_deadline=float("inf"))
    assert writer.join(GATE_S)
    assert sample(metrics, "qfleet_collector_rollup_failures_total") >= 1  # the final refresh failed, counted
    engine.dispose()


# ---------------------------------------------------------------------------
# The rollup scheduler


@pytest.fixture
def timed(sqlite_engine: Engine, metrics: ReceiverMetrics) -> Iterator[tuple[Store, RollupScheduler, FakeClock]]:
    clock = FakeClock()
    store = Store(sqlite_engine, clock=clock)  # the same fake time for "touched" and the interval
    scheduler = RollupScheduler(store, interval_s=60, settle_s=2, clock=clock, metrics=metrics)
    scheduler.start()
    yield store, scheduler, clock


def test_rollups_wait_for_the_interval_then_refresh_settled_buckets(
        timed: tuple[Store, RollupScheduler, FakeClock]) -> None:
    store, scheduler, clock = timed
    store.write(spans(3, prefix=80))
    scheduler.mark_dirty()
    scheduler.maybe_refresh(force=False)
    assert store.count("span_rollups") == 0  # the interval has not passed
    assert scheduler.idle_wait() == 1.0  # 60 s left: the writer still wakes every second
    clock.advance(60 * NS - NS // 200)
    assert scheduler.idle_wait() == 0.01  # 5 ms left: rounded up to the shortest nap
    clock.advance(NS)
    scheduler.maybe_refresh(force=False)
    assert store.count("span_rollups") == 1


def test_rollups_leave_a_live_minute_until_it_settles_but_stop_forces_everything(
        timed: tuple[Store, RollupScheduler, FakeClock]) -> None:
    store, scheduler, clock = timed
    clock.advance(61 * NS)
    store.write(spans(2, prefix=81))  # touched just now
    scheduler.mark_dirty()
    scheduler.maybe_refresh(force=False)  # due, but the bucket is not settled (2 s)
    assert store.count("span_rollups") == 0
    scheduler.maybe_refresh(force=True)
    assert store.count("span_rollups") == 1
    assert scheduler.idle_wait() == 1.0  # nothing pending after a forced refresh


def test_a_failed_refresh_is_counted_not_raised(tmp_path: Path, metrics: ReceiverMetrics) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/unmigrated.db")
    scheduler = RollupScheduler(Store(engine), interval_s=0, settle_s=0, clock=FakeClock(), metrics=metrics)
    scheduler.maybe_refresh(force=True)
    scheduler.maybe_refresh(force=False)
    assert sample(metrics, "qfleet_collector_rollup_failures_total") == 2
    engine.dispose()
