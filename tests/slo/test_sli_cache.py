"""What ``SliSource`` keeps between evaluations is never stale: the decoded series metadata is per database and
re-read when a series is added, and the batched reads answer what the one-SLO reads answer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from sqlalchemy import Engine, text

from qfleet.collector import Store, open_engine, upgrade
from qfleet.collector.exporters import SqlMetricExporter
from qfleet.slo.model import GaugeThresholdIndicator
from qfleet.slo.sli import SliSource, counts_key
from qfleet.units import NS
from tests.slo.test_evaluate_store import _slo

T0, MIN = 1_767_225_600 * NS, 60 * NS  # 2026-01-01T00:00:00Z
UP = _slo("up", GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1)),
          group_by=("node_id",))


def _node_up(node: str, points: list[tuple[int, float]]) -> MetricsData:
    dps = [NumberDataPoint(attributes={"qfleet.node.id": node}, start_time_unix_nano=0, time_unix_nano=t, value=v)
           for t, v in points]
    metric = Metric(name="qfleet.node.up", description="", unit="", data=Gauge(data_points=dps))
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=Resource({"service.name": "qpu-agent"}),
        scope_metrics=[ScopeMetrics(scope=InstrumentationScope("t"), metrics=[metric], schema_url="")],
        schema_url="")])


def _write(engine: Engine, node: str, points: list[tuple[int, float]]) -> None:
    store = Store(engine)
    SqlMetricExporter(store).export(_node_up(node, points))
    store.refresh_rollups()


def _counted(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    with engine.connect() as c:
        return {(seg, b): (g, n) for seg, b, g, n in c.execute(text(
            "SELECT segment, bucket_start_unix_nano, good, total FROM slo_counts WHERE slo = :k"),
            {"k": counts_key(UP)})}


def test_a_series_added_after_a_refresh_is_counted_even_in_counted_minutes(engine: Engine, db_url: str) -> None:
    at = T0 + 10 * MIN
    _write(engine, "qpu-a", [(T0 + m * MIN + NS, 1.0) for m in range(5)])
    SliSource(engine).refresh([UP], at, since_ns=T0)
    assert set(_counted(engine)) == {("node_id=qpu-a", T0 + m * MIN) for m in range(5)}
    # A new node: a new series, late into a counted minute and into a new one.
    _write(engine, "qpu-b", [(T0 + 2 * MIN + NS, 0.0), (T0 + 6 * MIN + NS, 1.0)])
    SliSource(engine).refresh([UP], at, since_ns=T0)
    got = _counted(engine)
    assert got[("node_id=qpu-b", T0 + 2 * MIN)] == (0, 1) and got[("node_id=qpu-b", T0 + 6 * MIN)] == (1, 1)
    # A count from scratch through another engine (nothing cached) agrees.
    with engine.begin() as c:
        c.execute(text("DELETE FROM slo_counts"))
        c.execute(text("DELETE FROM slo_count_marks"))
    fresh = open_engine(db_url)
    try:
        SliSource(fresh).refresh([UP], at, since_ns=T0)
    finally:
        fresh.dispose()
    assert _counted(engine) == got


def test_databases_with_the_same_series_ids_do_not_share_metadata(tmp_path: Path) -> None:
    engines = [open_engine(f"sqlite:///{tmp_path / f'{node}.db'}") for node in ("qpu-a", "qpu-b")]
    try:
        for engine, node in zip(engines, ("qpu-a", "qpu-b"), strict=True):
            upgrade(engine)
            _write(engine, node, [(T0 + NS, 1.0)])  # series id 1 in both, for another node
            SliSource(engine).refresh([UP], T0 + MIN, since_ns=T0)
            assert _counted(engine) == {(f"node_id={node}", T0): (1, 1)}
    finally:
        for engine in engines:
            engine.dispose()


def test_batched_interval_counts_equal_one_slo_at_a_time(sqlite_engine: Engine) -> None:
    _write(sqlite_engine, "qpu-a", [(T0 + m * MIN + NS, float(m % 3 != 0)) for m in range(30)])
    _write(sqlite_engine, "qpu-b", [(T0 + m * MIN + NS, 1.0) for m in range(0, 30, 2)])
    at = T0 + 30 * MIN
    other = _slo("up-all", UP.indicator)  # another key, unsegmented
    source = SliSource(sqlite_engine)
    source.refresh([UP, other], at, since_ns=T0)
    wanted = [(UP, [at - 5 * MIN, at - 20 * MIN, T0]), (other, [at - 5 * MIN, at - 20 * MIN, T0]),
              (UP, [at - 7 * MIN, at]), (UP, [at]), (other, [at - 29 * MIN])]
    batched = source.interval_counts_many(wanted, at)
    assert batched == [source.interval_counts(slo, at, starts) for slo, starts in wanted]
    assert batched[0]["node_id=qpu-b"] and batched[3] == {}
