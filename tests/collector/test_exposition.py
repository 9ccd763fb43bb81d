"""``GET /metrics``'s fleet series: every fresh series typed as Prometheus types it, labelled as the SLO rules select.

Oracles from outside the code under test: ``promtool check metrics`` (Prometheus 2.42), the latest samples read back
with plain ``sqlite3``, the selectors of the rule file ``qfleet slo rules default`` writes, and counts of omissions
fixed by how each test builds its data.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.metric_rows import from_metrics_request
from qfleet.collector.store import Store, open_engine
from qfleet.units import NS
from tests.collector.otlp_payloads import T0, gauge_request, kvs
from tests.conftest import FakeClock, require_tool

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _exposition(store: Store, **limits: int) -> str:
    m = ReceiverMetrics(CollectorRegistry())
    if limits:
        from qfleet.collector.exposition import FleetLimits

        m.add_fleet_series(store, FleetLimits(**limits))
    else:
        m.add_fleet_series(store)
    return m.exposition().decode()


def _parse(text: str) -> tuple[dict[str, str], Samples]:
    """(family -> type, every sample keyed by name and labels), by prometheus_client's text parser."""
    types, samples = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return types, samples


def _fleet(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if k[0].startswith("qfleet_") and not k[0].startswith("qfleet_collector")}


def _omitted(samples: Samples) -> dict[str, float]:
    return {dict(k[1])["reason"]: v for k, v in samples.items() if k[0] == "qfleet_collector_fleet_series_omitted"}


def _promtool_check(text: str) -> None:
    promtool = require_tool("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout.decode() + check.stderr.decode())


# -- a real simulated fleet -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three simulated minutes of the mesh fleet, stored by the simulator itself (as `qfleet sim run --db` does)."""
    path = tmp_path_factory.mktemp("fleet") / "fleet.db"
    run = subprocess.run([sys.executable, "-m", "qfleet.cli", "sim", "run", "--fleet", "mesh", "--duration", "3m",
                          "--speed", "max", "--db", f"sqlite:///{path}", "--no-progress", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    yield path


def _latest_by_sql(path: Path) -> tuple[int, list[tuple[str, str, str, float]]]:
    """The store's newest time, and (name, labels JSON, hardware type, value) of each series' latest sample: plain
    sqlite3, independent of the store's query."""
    with sqlite3.connect(path) as c:
        newest = c.execute("SELECT max(time_unix_nano) FROM metric_samples").fetchone()[0]
        rows = c.execute("""
            SELECT s.metric_name, s.labels, coalesce(s.hardware_type, ''), m.value FROM metric_series s
            JOIN metric_samples m ON m.series_id = s.id
            WHERE m.time_unix_nano = (SELECT max(time_unix_nano) FROM metric_samples WHERE series_id = s.id)
        """).fetchall()
    return newest, rows


def test_every_stored_series_is_served_typed_and_passes_promtool(fleet_db: Path) -> None:
    newest, latest = _latest_by_sql(fleet_db)
    engine = open_engine(f"sqlite:///{fleet_db}")
    try:
        text = _exposition(Store(engine, clock=lambda: newest))  # the run just ended: every series is fresh
    finally:
        engine.dispose()
    _promtool_check(text)
    types, samples = _parse(text)
    assert (types["qfleet_jobs"], types["qfleet_job_fidelity"], types["qfleet_node_up"]) == (
        "counter", "histogram", "gauge")
    assert types["qfleet_coherence_window_usage"] == "histogram"
    fleet = _fleet(samples)
    # One served sample per stored series (the simulator gives every series its own name and attributes) ...
    assert len(fleet) == len(latest)
    # ... whose value is the series' latest, e.g. every counter total and every +Inf bucket.
    served = sorted((name, value) for (name, _labels), value in fleet.items())
    assert served == sorted((name, value) for name, _labels, _hw, value in latest)
    assert _omitted(samples) == dict.fromkeys(_omitted(samples), 0.0)
    assert samples["qfleet_collector_fleet_series_exposed", frozenset()] == len(latest)


_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_][a-zA-Z0-9_]*)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~|=)"((?:[^"\\]|\\.)*)"')
_BY = re.compile(r"\b(?:count|sum) by \(([^)]*)\) \(([^)]*)")


def _rule_selectors(rules: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str, str]], tuple[str, ...]]]:
    """Every selector of a fleet series in the rules: (metric, matchers, the `by` labels of its aggregation)."""
    out = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            by = {m.group(2).split("{")[0].split("[")[0].removeprefix("increase("): tuple(
                x.strip() for x in m.group(1).split(",")) for m in _BY.finditer(expr)}
            for m in _SELECTOR.finditer(expr):
                if m.group(1).startswith("qfleet_slo"):
                    continue
                out.append((m.group(1), _MATCHER.findall(m.group(2)), by.get(m.group(1), ())))
    return out


def test_the_default_rules_select_served_series_with_their_label_names_and_le(fleet_db: Path) -> None:
    from qfleet.slo.rules import prometheus_rules
    from qfleet.slo.spec import builtin_specs_path, load_slos

    newest, _latest = _latest_by_sql(fleet_db)
    engine = open_engine(f"sqlite:///{fleet_db}")
    try:
        _types, samples = _parse(_exposition(Store(engine, clock=lambda: newest)))
    finally:
        engine.dispose()
    selectors = _rule_selectors(prometheus_rules(load_slos(builtin_specs_path())))
    assert len({s[0] for s in selectors}) >= 5  # counters, histogram buckets, the node gauge
    for metric, matchers, by in selectors:
        hits = [dict(labels) for (name, labels) in samples if name == metric and all(
            (dict(labels).get(k, "") == v) if op == "=" else re.fullmatch(v, dict(labels).get(k, ""))
            for k, op, v in matchers)]
        assert hits, f"no served series matches {metric}{matchers}"
        for label in by:
            assert all(label in h for h in hits), f"{metric}{matchers}: served series without the `by` label {label}"


# -- label names shared with the rules --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(key=st.text(min_size=1, max_size=12))
def test_a_served_label_name_is_the_rules_label_name(tmp_path_factory: pytest.TempPathFactory, key: str) -> None:
    from qfleet.collector.migrate import upgrade
    from qfleet.collector.schema import PROMOTED_ATTRIBUTES
    from qfleet.slo.rules import prometheus_label

    # A spec's `hardware_type` (a store column) means the attribute qfleet.hardware.type: not an attribute key.
    assume(key not in PROMOTED_ATTRIBUTES)

    url = f"sqlite:///{tmp_path_factory.mktemp('labels') / 'q.db'}"
    engine = open_engine(url)
    try:
        upgrade(engine)
        store = Store(engine, clock=FakeClock(T0))
        store.write(from_metrics_request(gauge_request("probe", "", [(T0, 1.0, {key: "v"})])))
        _types, samples = _parse(_exposition(store))
    finally:
        engine.dispose()
    served = [dict(labels) for (name, labels) in samples if name == "probe"]
    rule_label = prometheus_label(key)
    if rule_label.startswith("__"):  # reserved: the rules refuse it, /metrics leaves the series out and counts it
        assert served == [] and _omitted(samples)["reserved_label"] == 1
    else:
        assert served == [{rule_label: "v"}]


# -- what a scrape leaves out, and why ------------------------------------------------------------------------


def _counter_request(name: str, points: list[tuple[int, float, dict[str, Any]]], *, service: str = "svc",
                     delta: bool = False, resource: Mapping[str, Any] | None = None) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": service, **(resource or {})}))
    m = rm.scope_metrics.add().metrics.add(name=name, unit="{job}")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = 1 if delta else 2
    for t, v, attrs in points:
        m.sum.data_points.add(time_unix_nano=t, as_double=v).attributes.extend(kvs(attrs))
    return req


def _histogram_request(name: str, points: list[tuple[int, list[float], list[int]]]) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": "svc"}))
    m = rm.scope_metrics.add().metrics.add(name=name, unit="s")
    m.histogram.aggregation_temporality = 2
    for t, bounds, counts in points:
        dp = m.histogram.data_points.add(time_unix_nano=t, count=sum(counts), sum=1.0)
        dp.explicit_bounds.extend(bounds)
        dp.bucket_counts.extend(counts)
    return req


@pytest.fixture
def crafted(engine: Engine) -> Store:
    """A store (each backend) holding one case of every rule, at the fake clock's T0 + 10 min."""
    clock = FakeClock(T0 + 600 * NS)
    store = Store(engine, clock=clock)
    fresh, old = T0 + 590 * NS, T0 + 200 * NS  # 10 s and 400 s before "now"; the horizon is 300 s
    for req in [
        _counter_request("qfleet.jobs", [(fresh, 7, {"qfleet.outcome": "success", "qfleet.hardware.type": "ion"})]),
        # qfleet.node.id on the resource only: served as the label qfleet_node_id all the same.
        _counter_request("qfleet.heartbeats", [(fresh, 4, {})], resource={"qfleet.node.id": "n1"}),
        gauge_request("qfleet.node.up", "", [(old, 1.0, {"qfleet.node.id": "a"})]),          # stale: not counted
        gauge_request("qfleet.node.up", "", [(fresh, 0.0, {"qfleet.node.id": "b"})]),
        _counter_request("qfleet.deltas", [(fresh, 3, {})], delta=True),                     # delta
        gauge_request("qfleet_collector.fake", "", [(fresh, 1.0, {})]),                      # reserved name
        gauge_request("qfleet.weird", "", [(fresh, 1.0, {"__x": "y"})]),                     # reserved label
        # Two resources (two runs) with one name and label set: the newest sample wins, one duplicate.
        _counter_request("qfleet.runs", [(fresh - NS, 5, {"k": "v"})], service="run-1"),
        _counter_request("qfleet.runs", [(fresh, 9, {"k": "v"})], service="run-2"),
        # A histogram whose bounds changed: its le="2" bucket is from an older point than the rest.
        _histogram_request("qfleet.lat", [(fresh - NS, [1.0, 2.0], [1, 1, 1]), (fresh, [1.0], [2, 2])]),
        _histogram_request("qfleet.ok", [(fresh, [0.5, 1.0], [1, 2, 3])]),
    ]:
        store.write(from_metrics_request(req))
    return store


def test_a_scrape_serves_fresh_series_and_counts_each_one_it_leaves_out(crafted: Store) -> None:
    text = _exposition(crafted)
    _promtool_check(text)
    types, samples = _parse(text)
    fleet = _fleet(samples)
    assert types["qfleet_jobs"] == "counter" and types["qfleet_ok_seconds"] == "histogram"
    assert fleet["qfleet_jobs_total", frozenset({("qfleet_outcome", "success"), ("qfleet_hardware_type", "ion")})] == 7
    assert fleet["qfleet_heartbeats_total", frozenset({("qfleet_node_id", "n1")})] == 4
    assert ("qfleet_node_up", frozenset({("qfleet_node_id", "a")})) not in fleet       # stale
    assert fleet["qfleet_node_up", frozenset({("qfleet_node_id", "b")})] == 0
    assert fleet["qfleet_runs_total", frozenset({("k", "v")})] == 9                     # the newer run
    assert fleet["qfleet_ok_seconds_bucket", frozenset({("le", "1")})] == 3             # le as Prometheus writes it
    assert fleet["qfleet_ok_seconds_bucket", frozenset({("le", "+Inf")})] == 6
    assert not any(name.startswith("qfleet_lat") for name, _ in fleet)
    assert _omitted(samples) == {"series_limit": 0, "bytes_limit": 0, "reserved_name": 1, "invalid_name": 0,
                                 "reserved_label": 1, "delta": 1, "nan": 0, "duplicate": 1, "type_conflict": 0,
                                 "histogram_inconsistent": 5}  # le=1, the older le=2, +Inf, _count, _sum
    assert samples["qfleet_collector_fleet_series_exposed", frozenset()] == len(fleet) == 1 + 1 + 1 + 1 + 5


def test_the_series_and_byte_limits_cut_whole_families_and_count_them(crafted: Store) -> None:
    # The 18 fresh series sort as qfleet_collector_fake, qfleet_deltas_total, qfleet_heartbeats_total,
    # qfleet_jobs_total, then the 5 of qfleet_lat_seconds (_bucket le=1, le=2, +Inf, _count, _sum), qfleet_node_up,
    # the 5 of qfleet_ok_seconds, the 2 qfleet_runs_total and qfleet_weird. The store returns the first 5; the cut
    # family (qfleet_lat_seconds, 1 of them) goes whole, so 18 - 4 are left out by the limit, and of the 4 read
    # the two counters are servable.
    _types, samples = _parse(_exposition(crafted, max_series=5))
    assert _omitted(samples)["series_limit"] == 18 - 4
    assert set(_fleet(samples)) == {("qfleet_jobs_total", frozenset({("qfleet_outcome", "success"),
                                                                      ("qfleet_hardware_type", "ion")})),
                                    ("qfleet_heartbeats_total", frozenset({("qfleet_node_id", "n1")}))}
    served_before, seen = -1, set()
    for budget in (1, 300, 700, 1500, 4000):
        text = _exposition(crafted, max_bytes=budget)
        fleet_text = "".join(line + "\n" for line in text.splitlines()
                             if re.match(r"(# (HELP|TYPE) )?qfleet_(?!collector_)", line))
        _types, samples = _parse(text)
        om, served = _omitted(samples), len(_fleet(samples))
        assert len(fleet_text.encode()) <= budget
        assert served + om["bytes_limit"] == 9 and om["series_limit"] == 0  # every servable series: served or counted
        assert served >= served_before
        served_before = served
        seen.add(served)
    assert served_before == 9 and 0 in seen and len(seen) >= 3  # none, some, all


def test_limits_are_checked_when_built() -> None:
    from qfleet.collector.exposition import FleetLimits

    for bad in ({"max_series": 0}, {"max_bytes": -1}, {"stale_after_ns": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}=.*positive integer"):
            FleetLimits(**bad)  # type: ignore[arg-type]


def test_the_documented_scrape_config_loads_with_the_generated_rules(tmp_path: Path) -> None:
    """docs/prometheus.md §6: its prometheus.yml (scraping qfleet) passes ``promtool check config``."""
    from qfleet.slo.rules import rules_yaml
    from qfleet.slo.spec import builtin_specs_path, load_slos

    promtool = require_tool("promtool")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "prometheus.md").read_text()
    config = next(b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "job_name: qfleet" in b)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "qfleet-slo.rules.yml").write_text(rules_yaml(load_slos(builtin_specs_path())))
    (tmp_path / "prometheus.yml").write_text(config)
    res = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS: 1 rule files found" in res.stdout, res.stdout + res.stderr
