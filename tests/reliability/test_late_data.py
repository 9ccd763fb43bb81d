"""Issue 12 item 1: late data reach the SLO counts, on SQLite and PostgreSQL.

Before: ``SliSource.refresh`` recounted only from the last counted minute less a 5-minute settle window, so spans
and samples written later into an older minute (a second simulator run into the same store, OTLP retries, a
replica catching up) never changed ``slo_counts``. Oracles: plain SQL over the raw ``spans`` and
``metric_samples`` rows, counted here by each SLI's definition (not through the rollups or the SLO code), and a
count from scratch after clearing the SLO tables.
"""

from __future__ import annotations

import json
import threading
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import Engine, text

from qfleet.collector.exporters import SqlMetricExporter
from qfleet.collector.schema import Signal
from qfleet.collector.store import Store, open_engine
from qfleet.slo.model import SLO, GaugeThresholdIndicator, SpanRatioIndicator, SpanThresholdIndicator
from qfleet.slo.sli import SliSource, counts_key
from qfleet.units import NS
from tests.collector.test_store import spans_at
from tests.slo.test_evaluate_store import _node_up
from tests.slo.test_evaluate_store import _slo as slo

T0 = 1_893_456_000 * NS  # 2030-01-01T00:00:00Z: simulated time, years after the machine's clock
MIN = 60 * NS
HOUR_END = T0 + 60 * MIN  # the evaluation instant: the data fill the hour before it
JOB = "qfleet.job"
Cell = tuple[int, int]

SLOS: list[SLO] = [
    # from span_rollups, one segment per node
    slo("jobs", SpanRatioIndicator(span=JOB), group_by=("node_id",)),
    # from the raw spans (a per-event threshold no rollup keeps)
    slo("small-index", SpanThresholdIndicator(span=JOB, attribute="i", op="lt", threshold=Fraction(3))),
    # from metric_rollups and, in minutes with good and bad samples, the raw samples
    slo("node-up", GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1))),
]


def _statuses(n: int, every: int) -> list[int]:
    return [2 if i % every == 0 else 1 for i in range(n)]


def _on_time(store: Store) -> None:
    """An hour of jobs on two nodes (three a minute each) and one node-up sample a minute."""
    times = [T0 + m * MIN + k * 7 * NS for m in range(60) for k in range(3)]
    store.write(spans_at(times, prefix=1, name=JOB, node="qpu-a", status=_statuses(len(times), 11)))
    store.write(spans_at(times, prefix=2, name=JOB, node="qpu-b", status=_statuses(len(times), 5)))
    SqlMetricExporter(store).export(_node_up([(T0 + m * MIN + 30 * NS, 1.0) for m in range(60)]))


def _late(store: Store, prefix: int) -> None:
    """Late arrivals into minutes 10 and 20, forty and more minutes before the newest data."""
    times = [T0 + 10 * MIN + k * NS for k in range(8)] + [T0 + 20 * MIN + 1]
    store.write(spans_at(times, prefix=prefix, name=JOB, node="qpu-a", status=_statuses(len(times), 2)))
    SqlMetricExporter(store).export(_node_up([(T0 + 10 * MIN + prefix * NS, 0.0), (T0 + 20 * MIN + 5 * NS, 1.0)]))


def _attrs(v: Any) -> dict[str, Any]:
    return json.loads(v) if isinstance(v, str) else dict(v)


def oracle(engine: Engine) -> dict[str, dict[tuple[str, int], Cell]]:
    """Per SLO, ``(segment, minute start) -> (good, total)`` from the raw rows, by each SLI's definition."""
    out: dict[str, dict[tuple[str, int], list[int]]] = {s.name: {} for s in SLOS}

    def add(name: str, seg: str, t: int, good: bool) -> None:
        cell = out[name].setdefault((seg, t - t % MIN), [0, 0])
        cell[0] += good
        cell[1] += 1

    with engine.connect() as c:
        for start, status, node, attrs in c.execute(text(
                "SELECT start_time_unix_nano, status_code, node_id, attributes FROM spans WHERE name = :n"),
                {"n": JOB}):
            add("jobs", f"node_id={node}", start, status != 2)
            add("small-index", "", start, _attrs(attrs)["i"] < 3)
        for t, value in c.execute(text("SELECT time_unix_nano, value FROM metric_samples")):
            add("node-up", "", t, value >= 1)
    return {name: {k: (g, n) for k, (g, n) in cells.items()} for name, cells in out.items()}


def counted(engine: Engine) -> dict[str, dict[tuple[str, int], Cell]]:
    """Per SLO, what ``slo_counts`` holds, read with plain SQL."""
    with engine.connect() as c:
        return {s.name: {(seg, b): (g, n) for seg, b, g, n in c.execute(text(
            "SELECT segment, bucket_start_unix_nano, good, total FROM slo_counts WHERE slo = :k"),
            {"k": counts_key(s)})} for s in SLOS}


def refresh(engine: Engine) -> int:
    return SliSource(engine).refresh(SLOS, HOUR_END, since_ns=T0 - 60 * MIN)


@pytest.fixture
def counted_hour(engine: Engine) -> Store:
    """A store with an hour of data, rolled up and counted (as ``qfleet serve`` leaves it)."""
    store = Store(engine)
    _on_time(store)
    store.refresh_rollups()
    refresh(engine)
    assert counted(engine) == oracle(engine)  # the starting point is right
    return store


def test_late_spans_and_samples_in_counted_minutes_are_recounted(engine: Engine, counted_hour: Store) -> None:
    before = counted(engine)
    _late(counted_hour, prefix=3)
    counted_hour.refresh_rollups()
    refresh(engine)
    want = oracle(engine)
    assert counted(engine) == want
    assert want != before  # the late data did change minutes 10 and 20 of every SLO
    # minute 10 on qpu-a: 3 on time (indexes 30-32, none a multiple of 11), 8 late (every other one an error)
    assert want["jobs"][("node_id=qpu-a", T0 + 10 * MIN)] == (3 + 4, 3 + 8)
    assert want["node-up"][("", T0 + 10 * MIN)] == (1, 2)


def test_late_data_are_recounted_when_the_rollup_pass_comes_after_the_refresh(engine: Engine,
                                                                           counted_hour: Store) -> None:
    _late(counted_hour, prefix=3)
    refresh(engine)  # the rollups of minutes 10 and 20 are not recomputed yet: the span ratio reads them
    counted_hour.refresh_rollups()
    refresh(engine)
    assert counted(engine) == oracle(engine)


def test_refreshing_again_changes_nothing_and_a_count_from_scratch_agrees(engine: Engine,
                                                                          counted_hour: Store) -> None:
    _late(counted_hour, prefix=3)
    _late(counted_hour, prefix=3)  # a retried batch: idempotent in the store
    _late(counted_hour, prefix=4)  # a second late batch
    counted_hour.refresh_rollups()
    refresh(engine)
    once = counted(engine)
    refresh(engine)
    refresh(engine)
    assert counted(engine) == once == oracle(engine)
    with engine.begin() as c:
        c.execute(text("DELETE FROM slo_counts"))
        c.execute(text("DELETE FROM slo_count_marks"))
    refresh(engine)
    assert counted(engine) == once


def _waiting_for_the_sequence(engine: Engine) -> int:
    """Sessions of this database blocked on a lock while incrementing the write sequence."""
    with engine.connect() as c:
        return int(c.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE '%INTO write_sequence%'")).scalar_one())


@pytest.mark.postgres
def test_a_writer_that_commits_late_is_not_missed_by_a_reader_on_postgresql(pg_url: str) -> None:
    """Two writers: A takes its sequence number, B starts after it, a reader looks while A is still open; the next
    look from the reader's marker reports A's and B's minutes. (B must commit after A: the sequence row is locked
    from A's increment to A's commit. Were B's commit, with the higher number, visible first, a reader's marker
    would pass A's number before A's minute became visible, and A's change would be lost.)"""
    from qfleet.collector.migrate import upgrade

    engine = open_engine(pg_url)
    upgrade(engine)
    store = Store(engine)
    try:
        # Committed first, so that A and B share no resource row: the sequence is all they contend for.
        store.write(spans_at([T0], prefix=9, name=JOB))
        conn_a = engine.connect()
        tx_a = conn_a.begin()
        # A stops before its commit: the store's own write body, in a transaction the test holds open.
        store._write(conn_a, spans_at([T0 + 5 * MIN], prefix=1, name=JOB), {})
        b = threading.Thread(target=store.write, args=(spans_at([T0 + 7 * MIN], prefix=2, name=JOB),))
        b.start()
        for _ in range(1000):  # until B waits for A (a bounded poll; nothing is timed)
            if _waiting_for_the_sequence(engine) == 1:
                break
            threading.Event().wait(0.01)
        assert _waiting_for_the_sequence(engine) == 1, "the second writer did not wait for the first one's commit"
        seen = store.touched_since(0, signal=Signal.SPANS)
        assert seen.buckets == (T0,)
        tx_a.commit()
        conn_a.close()
        b.join(30)
        assert not b.is_alive()
        assert store.touched_since(seen.marker, signal=Signal.SPANS).buckets == (T0 + 5 * MIN, T0 + 7 * MIN)
    finally:
        engine.dispose()
