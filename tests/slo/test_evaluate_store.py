"""SLO evaluation over a real store filled by the real simulator: counts from the rollups equal a naive scan of the
raw data, a fault pages on the SLO it breaks and nothing pages on a calm fleet, and the history is stored."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from sqlalchemy import Engine, text

from qfleet.collector import Store
from qfleet.collector.exporters import SqlMetricExporter
from qfleet.simulator.engine import NS, RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.slo.budget import report_json
from qfleet.slo.cli import main as slo_main
from qfleet.slo.evaluate import evaluate_store, record, window_starts
from qfleet.slo.model import (
    SLO,
    AlertPolicy,
    Counts,
    GaugeThresholdIndicator,
    HistogramIndicator,
    MetricRatioIndicator,
    Pair,
    Period,
    SpanRatioIndicator,
    SpanThresholdIndicator,
)
from qfleet.slo.sli import SliSource

MIN, H, DAY = 60 * NS, 3600 * NS, 86400 * NS
POLICY = AlertPolicy(name="sre_workbook_30d", pairs=(
    Pair(name="page_fast", severity="page", long_ns=H, short_ns=5 * MIN, budget_fraction=Fraction(2, 100)),
    Pair(name="page_slow", severity="page", long_ns=6 * H, short_ns=30 * MIN, budget_fraction=Fraction(5, 100)),
    Pair(name="ticket_fast", severity="ticket", long_ns=DAY, short_ns=2 * H, budget_fraction=Fraction(10, 100)),
    Pair(name="ticket_slow", severity="ticket", long_ns=3 * DAY, short_ns=6 * H, budget_fraction=Fraction(10, 100))))


def _slo(name: str, indicator: Any, target: str = "0.99", **kw: Any) -> SLO:
    return SLO(name=name, service="fleet", target=Fraction(target), period=Period(rolling_ns=30 * DAY),
               budgeting=kw.pop("budgeting", "Occurrences"), indicator=indicator, policy=POLICY, **kw)


SLOS = [
    _slo("entanglement-success", MetricRatioIndicator(metric="qfleet_entanglement_requests_total",
                                                      good_match=(("qfleet.outcome", "success"),)),
         group_by=("hardware_type",)),
    _slo("job-success", SpanRatioIndicator(span="qfleet.job"), target="0.9"),
    _slo("job-success-by-link", SpanRatioIndicator(span="qfleet.entanglement.request"), group_by=("link_id",)),
    _slo("feedforward-window", SpanThresholdIndicator(span="qfleet.feedforward", attribute="qfleet.feedforward.latency_s",
                                                      op="lte", threshold_attribute="qfleet.coherence_window_s",
                                                      margin=Fraction(1, 2))),
    _slo("coherence-usage", HistogramIndicator(metric="qfleet_coherence_window_usage", threshold=Fraction(1),
                                               buckets=(Fraction(1, 2), Fraction(1)))),
    _slo("node-up", GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1)),
         target="0.995", group_by=("node_id",)),
]


def _simulate(engine: Engine, faults: list[Fault], minutes: int, seed: int = 4) -> Simulation:
    fleet = load_fleet(builtin_fleet_path("line"))
    sim = Simulation(fleet, FaultSchedule(tuple(faults)), RunConfig(duration_ns=minutes * MIN, seed=seed))
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
    for step in sim.steps():
        sink.write(step)
    sink.close()
    return sim


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Simulation]:
    from qfleet.collector import open_engine, upgrade

    engine = open_engine(f"sqlite:///{tmp_path_factory.mktemp('slo') / 'fleet.db'}")
    upgrade(engine)
    drop = Fault(id="cut", kind=FaultKind.F1, target="qpu-a~qpu-b", start_ns=60 * MIN, duration_ns=30 * MIN,
                 magnitude=0.0)
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=70 * MIN, duration_ns=15 * MIN)
    sim = _simulate(engine, [drop, outage], 100)
    yield engine, sim
    engine.dispose()


def _naive_spans(engine: Engine, slo: SLO, at: int) -> dict[tuple[str, int], tuple[int, int]]:
    ind = slo.indicator
    out: dict[tuple[str, int], list[int]] = {}
    with engine.connect() as c:
        rows = c.execute(text("SELECT start_time_unix_nano, status_code, attributes, link_id FROM spans "
                              "WHERE name = :n"), {"n": ind.span}).all()
    for start, status, attrs, link in rows:
        end = (start // MIN + 1) * MIN
        if isinstance(ind, SpanThresholdIndicator):
            a = json.loads(attrs)
            if ind.attribute not in a:
                continue
            good = Fraction(a[ind.attribute]) <= Fraction(a[ind.threshold_attribute]) * ind.margin
        else:
            good = status != 2
        seg = f"link_id={link or ''}" if slo.group_by else ""
        for s in window_starts(slo, at):
            if s < end <= at:
                cell = out.setdefault((seg, s), [0, 0])
                cell[0] += good
                cell[1] += 1
    return {k: (g, n) for k, (g, n) in out.items()}


def _window_start(name: str, at: int) -> int:
    from qfleet.units import parse_duration

    return at - (parse_duration(name) if name in ("5m", "30m", "1h", "2h", "6h", "1d", "3d") else 30 * DAY)


def test_span_slo_counts_from_rollups_equal_a_naive_scan(faulty: tuple[Engine, Simulation]) -> None:
    engine, sim = faulty
    at = sim.config.start_ns + 80 * MIN
    span_slos = [s for s in SLOS if isinstance(s.indicator, (SpanRatioIndicator, SpanThresholdIndicator))]
    reports = evaluate_store(span_slos, SliSource(engine), at)
    checked = 0
    for r in reports:
        slo = next(s for s in span_slos if s.name == r.slo)
        truth = _naive_spans(engine, slo, at)
        seg = ",".join(f"{k}={v}" for k, v in r.segment)
        for name, w in report_json(r)["windows"].items():
            assert (w["good"], w["total"]) == truth.get((seg, _window_start(name, at)), (0, 0)), (r.slo, seg, name)
            checked += 1
    assert checked >= 8 * 5 and any(r.windows["1h"].total > 100 for r in reports)


def test_the_link_drop_pages_on_entanglement_success_and_the_outage_on_node_up(
    faulty: tuple[Engine, Simulation],
) -> None:
    engine, sim = faulty
    source = SliSource(engine)
    during = evaluate_store(SLOS, source, sim.config.start_ns + 80 * MIN)
    before = evaluate_store(SLOS, source, sim.config.start_ns + 55 * MIN)
    page = {(r.slo, r.segment): r.severities["page"] for r in during}
    assert page[("entanglement-success", (("hardware_type", "trapped-ion"),))]
    assert page[("node-up", (("node_id", "qpu-d"),))]
    assert not any(on for (slo, seg), on in page.items() if slo == "node-up" and seg != (("node_id", "qpu-d"),))
    assert not any(r.severities["page"] for r in before)  # nothing pages before the faults
    ent = next(r for r in during if r.slo == "entanglement-success")
    assert ent.windows["5m"].burn_rate is not None and ent.windows["5m"].burn_rate > 14
    # The history keeps what the dashboards plot.
    assert record(engine, during) == len(during)
    with engine.connect() as c:
        rows = c.execute(text("SELECT slo, segment, page FROM slo_evaluations WHERE at_unix_nano = :t"),
                         {"t": sim.config.start_ns + 80 * MIN}).all()
    assert ("node-up", "node_id=qpu-d", 1) in [tuple(r) for r in rows] or (
        "node-up", "node_id=qpu-d", True) in [tuple(r) for r in rows]
    assert record(engine, during) == len(during)  # re-recording the same instant replaces it


def test_cli_eval_over_the_store_and_offline_csv(faulty: tuple[Engine, Simulation], tmp_path: Path) -> None:
    engine, sim = faulty
    spec = tmp_path / "job.yaml"
    spec.write_text("""apiVersion: openslo/v1
kind: SLO
metadata: {name: job-success}
spec:
  service: fleet
  budgetingMethod: Occurrences
  timeWindow: [{duration: 30d, isRolling: true}]
  objectives: [{target: 0.9}]
  indicator:
    metadata: {name: jobs}
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: qfleet, spec: {metric: qfleet_jobs_total, match: {qfleet.outcome: success}}}}
        total: {metricSource: {type: qfleet, spec: {metric: qfleet_jobs_total}}}
""")
    out = io.StringIO()
    url = str(engine.url)
    at = "2026-01-01T01:20:00Z"
    assert slo_main(["eval", str(spec), "--db", url, "--at", at, "--json", "--record"], environ={}, stdout=out) == 0
    [doc] = json.loads(out.getvalue())["slos"]
    assert set(doc) >= {"error_budget", "windows", "budget", "alerts"}
    assert set(doc["windows"]) >= {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert doc["budget"]["total"] > 0 and doc["error_budget"] == pytest.approx(0.1)
    csv = tmp_path / "s.csv"
    csv.write_text("ts,good,total\n2026-01-01T00:59:00Z,90,100\n2026-01-01T01:00:00Z,10,100\n")
    out = io.StringIO()
    assert slo_main(["eval", str(spec), "--samples", str(csv), "--at", "2026-01-01T01:00:00Z", "--json"],
                    environ={}, stdout=out) == 0
    [doc] = json.loads(out.getvalue())["slos"]
    assert doc["windows"]["5m"]["bad"] == 100 and doc["windows"]["1h"]["total"] == 200
    # Every window holds the same 100 bad of 200: burn 0.5 / 0.1 = 5 — below both page thresholds (14.4, 6),
    # above ticket_fast's 3 on both its windows.
    assert doc["alerts"]["severities"] == {"page": False, "ticket": True}


def _node_up(points: list[tuple[int, float]]) -> MetricsData:
    """``qfleet.node.up`` of one node, as the OpenTelemetry SDK hands it to an exporter."""
    dps = [NumberDataPoint(attributes={"qfleet.node.id": "qpu-a"}, start_time_unix_nano=0, time_unix_nano=t,
                           value=v) for t, v in points]
    metric = Metric(name="qfleet.node.up", description="", unit="", data=Gauge(data_points=dps))
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=Resource({"service.name": "qpu-agent"}),
        scope_metrics=[ScopeMetrics(scope=InstrumentationScope("t"), metrics=[metric], schema_url="")],
        schema_url="")])


def test_gauge_counts_and_window_sums_read_the_same_on_every_backend(engine: Engine) -> None:
    """A minute whose samples are partly good is counted sample by sample (from the raw samples, as the rollup
    keeps only min and max), and the interval sums an evaluation reads match the minutes, on SQLite and
    PostgreSQL."""
    t0, s = 1_767_225_600 * NS, NS  # 2026-01-01T00:00:00Z
    store = Store(engine)
    exporter = SqlMetricExporter(store)
    # minute 0: 1, 1 (all good); minute 1: 1, 0, 1 (mixed); minute 2: 0.
    points = [(t0 + 10 * s, 1.0), (t0 + 40 * s, 1.0), (t0 + 70 * s, 1.0), (t0 + 100 * s, 0.0),
              (t0 + 110 * s, 1.0), (t0 + 130 * s, 0.0)]
    assert exporter.export(_node_up(points)) is MetricExportResult.SUCCESS
    store.refresh_rollups()
    slo = _slo("up", GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1)))
    at = t0 + 3 * MIN
    source = SliSource(engine)
    assert source.refresh([slo], at, since_ns=t0) == 3
    # Oracle: the samples above, counted by hand (good = value >= 1); a minute's step ends a minute after it.
    assert source.minute_counts(slo, t0 - MIN, at) == {
        "": [(t0 + MIN, Counts(2, 2)), (t0 + 2 * MIN, Counts(2, 3)), (t0 + 3 * MIN, Counts(0, 1))]}
    intervals = source.interval_counts(slo, at, [at - MIN, at - 2 * MIN, at - 100 * MIN])
    assert sorted(intervals[""]) == [(at - 2 * MIN, Counts(2, 2)), (at - MIN, Counts(2, 3)), (at, Counts(0, 1))]
    assert source.interval_counts(slo, at, [at]) == {}  # no window reaches back before `at`
