"""Rule files (``kind: AlertRules``): every problem reported at once with its field path, Prometheus durations,
defaults filled in, the shipped rules load, and loading a rule file imports no database code."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qfleet.alerts import rules as rules_module
from qfleet.alerts.rule_queries import KIND_QUERIES, evaluate_rules, sync_rules
from qfleet.alerts.rules import KINDS, AlertRule, AlertRulesError, load_rules, rules_from_dict
from qfleet.problems import ProblemsError
from qfleet.units import NS

MIN = 60 * NS


def doc(*rules: dict[str, Any], **header: Any) -> dict[str, Any]:
    return {"version": 1, "kind": "AlertRules", "rules": list(rules), **header}


def problems(document: Any) -> list[str]:
    with pytest.raises(AlertRulesError) as err:
        rules_from_dict(document, source="x.yaml")
    assert isinstance(err.value, ProblemsError) and err.value.source == "x.yaml"
    return [str(p) for p in err.value.problems]


def test_every_problem_is_reported_with_its_field_path() -> None:
    got = problems(doc(
        {"name": "A", "kind": "heartbeat_mising", "labels": {"severity": "page"}},
        {"name": "B", "kind": "queue_age", "params": {"treshold": 3}, "for": "5 minutes"},
        {"name": "B", "kind": "readout_drift", "params": {"threshold": -1}},
    ))
    expected = [
        "rules[0].kind: unknown kind 'heartbeat_mising' (fix: did you mean 'heartbeat_missing'?",
        "rules[1].params.treshold: unknown parameter of queue_age (fix: did you mean 'threshold'?",
        "rules[1].for: duration '5 minutes' is not valid (fix: write whole numbers",
        "rules[2].name: duplicate rule name 'B'",
        "rules[2].params.threshold: must be a number >= 0, got -1",
    ]
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        assert line.startswith(want), (line, want)


@pytest.mark.parametrize(("rule", "path", "needle"), [
    ({"name": "1bad", "kind": "queue_age"}, "rules[0].name", "must be an alert name"),
    ({"name": "A", "kind": "queue_age", "for": "5m5m"}, "rules[0].for", "duration '5m5m' is not valid"),
    ({"name": "A", "kind": "queue_age", "params": {"lookback": "1m1h"}}, "rules[0].params.lookback",
     "duration '1m1h' is not valid"),
    ({"name": "A", "kind": "coherence_window", "params": {"min_events": 2.5}}, "rules[0].params.min_events",
     "must be a whole number"),
    ({"name": "A", "kind": "coherence_window", "params": {"latency_le": 0.1}}, "rules[0].params",
     "latency_le and latency_ratio go together"),
    ({"name": "A", "kind": "queue_age", "labels": {"alertname": "B"}}, "rules[0].labels.alertname",
     "is set from the rule name"),
    ({"name": "A", "kind": "queue_age", "labels": {"team": 1}}, "rules[0].labels", "must map label names to strings"),
    ({"name": "A", "kind": "queue_age", "severity": "page"}, "rules[0].severity", "unknown key"),
    ("not a rule", "rules[0]", "must be a mapping"),
], ids=["bad name", "repeated unit", "units out of order", "fractional int", "half a pair", "alertname label",
        "number label", "unknown field", "not a mapping"])
def test_one_bad_field(rule: Any, path: str, needle: str) -> None:
    [got] = problems(doc(rule))
    assert got.startswith(f"{path}: ") and needle in got, got


@pytest.mark.parametrize(("header", "needle"), [
    ({"version": 2}, "version: must be 1, got 2"),
    ({"kind": "PrometheusRule"}, "kind: must be AlertRules, got 'PrometheusRule'"),
    ({"rules": []}, "rules: must be a non-empty list"),
    ({"rulez": []}, "rulez: unknown key (fix: did you mean 'rules'?"),
])
def test_header_problems(header: dict[str, Any], needle: str) -> None:
    base = doc({"name": "A", "kind": "queue_age"})
    assert any(p.startswith(needle) for p in problems({**base, **header})), needle


def test_a_document_that_is_not_a_mapping() -> None:
    assert problems(["rules"])[0].startswith("the document is list, not a mapping")


def test_defaults_fill_missing_params_and_durations_use_prometheus_grammar() -> None:
    [r] = rules_from_dict(doc({"name": "Q", "kind": "queue_age", "for": "1m30s", "params": {"lookback": "90s"}}))
    assert r.param("threshold") == 20.0 and r.param("lookback") == 90 * NS and r.for_ns == 90 * NS
    [r] = rules_from_dict(doc({"name": "Q", "kind": "heartbeat_missing", "params": {"window": "1h30m"}}))
    assert r.param("window") == 90 * MIN and r.param("lookback") == 5 * MIN and r.for_ns == 0
    # An optional parameter without a default stays unset; int parameters come back as int.
    [r] = rules_from_dict(doc({"name": "C", "kind": "coherence_window", "params": {"min_events": 5.0}}))
    assert r.param("latency_le") is None and r.param("min_events") == 5 and isinstance(r.param("min_events"), int)


def test_alert_rule_checks_its_own_invariants() -> None:
    with pytest.raises(AlertRulesError, match="unknown kind 'nope'"):
        AlertRule(name="A", kind="nope")
    with pytest.raises(AlertRulesError, match="negative for_ns=-1"):
        AlertRule(name="A", kind="queue_age", for_ns=-1)


def test_load_rules_reads_files_and_names_them_in_errors(tmp_path: Path) -> None:
    shipped = load_rules()
    assert len({r.name for r in shipped}) == len(shipped) >= 7
    assert {r.kind for r in shipped} == set(KINDS)
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 2\nkind: AlertRules\nrules: []\n")
    with pytest.raises(AlertRulesError, match=r"r\.yaml: 2 problems") as err:
        load_rules(bad)
    assert [p.path for p in err.value.problems] == ["version", "rules"]
    with pytest.raises(AlertRulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("rules: [\n")
    with pytest.raises(AlertRulesError, match="not valid YAML"):
        load_rules(tmp_path / "broken.yaml")


def test_every_kind_has_a_query_and_the_queries_stay_importable_from_rules() -> None:
    assert set(KIND_QUERIES) == set(KINDS)
    assert rules_module.evaluate_rules is evaluate_rules and rules_module.sync_rules is sync_rules
    with pytest.raises(AttributeError, match="parse_duration_ns"):
        getattr(rules_module, "parse_duration_ns")  # noqa: B009 - the removed second duration parser


def test_loading_rule_files_imports_no_database_code() -> None:
    code = ("import sys; from qfleet.alerts.rules import load_rules; load_rules(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout


# -- measured signals only, and the new kinds on hand-made series ------------------------------------------------


def test_no_built_in_rule_or_slo_reads_ground_truth() -> None:
    from qfleet.alerts.rules import KIND_METRICS
    from qfleet.slo.spec import builtin_specs_path, load_slos
    from qfleet.slo.truth import truth_reference

    assert set(KIND_METRICS) == set(KINDS)
    assert not [m for ms in KIND_METRICS.values() for m in ms if truth_reference(m)]
    text = "\n".join(p.read_text() for p in (rules_module.DEFAULT_RULES_PATH, builtin_specs_path()))
    assert "truth" not in text.lower()
    assert load_rules() and load_slos(builtin_specs_path())


def test_a_rule_naming_a_truth_series_is_refused_with_a_fix() -> None:
    [line] = problems(doc({"name": "A", "kind": "t2_drop",
                           "annotations": {"description": "T2 is {{ $value }} of qfleet_truth_node_t2_seconds"}}))
    assert line.startswith("rules[0].annotations.description: 'qfleet_truth_node_t2_seconds' is simulator ground "
                           "truth") and "qfleet_node_t2_seconds" in line


_IDS = itertools.count()


def _store(tmp_path: Path) -> Any:
    from qfleet.collector import open_engine, upgrade

    engine = open_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    return engine


def _put(engine: Any, metric: str, labels: dict[str, str], points: list[tuple[int, float]], *, node: str = "",
         link: str = "", hw: str = "ion") -> None:
    from sqlalchemy import insert

    from qfleet.collector.schema import MetricSample, MetricSeries

    with engine.begin() as conn:
        sid = conn.execute(insert(MetricSeries.__table__).values(
            fingerprint=f"{next(_IDS):016d}",
            metric_name=metric, metric_type=1, temporality=2, is_monotonic=False, unit="", description="",
            labels=labels, node_id=node or None, link_id=link or None, hardware_type=hw)).inserted_primary_key[0]
        conn.execute(insert(MetricSample.__table__), [{"series_id": sid, "time_unix_nano": t, "value": v}
                                                       for t, v in points])


def _fired(engine: Any, kind: str, at: int) -> list[str]:
    [rule] = [r for r in load_rules() if r.kind == kind]
    return [a.label("node") or a.label("link") or a.label("tenant")
            for a in evaluate_rules([rule], engine, at)]


def test_t2_drop_reads_calibration_estimates_against_their_standard_error(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    # Estimates every 30 min, repeated every minute in between; b's last estimate is noisy, a's collapsed.
    def stale(values: list[float]) -> list[tuple[int, float]]:
        return [(m * MIN, values[min(m // 30, len(values) - 1)]) for m in range(1, 121)]
    _put(engine, "qfleet_node_t2_seconds", {}, stale([1.0, 1.02, 0.98, 0.3]), node="a")
    _put(engine, "qfleet_node_t2_stderr_seconds", {}, stale([0.05, 0.05, 0.05, 0.05]), node="a")
    _put(engine, "qfleet_node_t2_seconds", {}, stale([1.0, 1.02, 0.98, 0.6]), node="b")
    _put(engine, "qfleet_node_t2_stderr_seconds", {}, stale([0.05, 0.05, 0.05, 0.3]), node="b")
    assert _fired(engine, "t2_drop", 100 * MIN) == ["a"]
    assert _fired(engine, "t2_drop", 80 * MIN) == []          # before the last calibration


def test_canary_failures_localize_a_failing_node(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    for node, fail_after, stop_at in (("a", 100, 999), ("b", 999, 100), ("c", 999, 999)):
        passed = fails = 0.0
        pts_p, pts_f, beats = [], [], []
        for m in range(1, 131):
            if m < stop_at:
                bad = 10 if m > fail_after else 1
                passed += 50 - bad
                fails += bad
            pts_p.append((m * MIN, passed))
            pts_f.append((m * MIN, fails))
            beats.append((m * MIN, float(m)))
        _put(engine, "qfleet_canary_checks_total", {"qfleet.outcome": "pass"}, pts_p, node=node)
        _put(engine, "qfleet_canary_checks_total", {"qfleet.outcome": "fail"}, pts_f, node=node)
        _put(engine, "qfleet_node_heartbeats_total", {}, beats, node=node)
    assert _fired(engine, "canary_failures", 95 * MIN) == []
    assert _fired(engine, "canary_failures", 110 * MIN) == ["a"]


def test_link_silence_localizes_a_link_whose_ends_are_up_but_carry_no_request(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    # a~b: requests every minute until minute 100, both ends heartbeating; c~d: busy throughout; e~f: stops at
    # 100 because e went down (no heartbeats: an outage, not a deadlock); g~h: one request every 10 minutes (too
    # quiet to judge a 5-minute gap).
    for link, stop_at, every in (("a~b", 100, 1), ("c~d", 999, 1), ("e~f", 100, 1), ("g~h", 100, 10)):
        pts, n = [], 0.0
        for m in range(1, 131):
            if m < stop_at and m % every == 0:
                n += 3
            pts.append((m * MIN, n))
        _put(engine, "qfleet_entanglement_requests_total", {"qfleet.outcome": "success"}, pts, link=link)
    for node in "abcdefgh":
        beats = [(m * MIN, float(min(m, 100) if node == "e" else m)) for m in range(1, 131)]
        _put(engine, "qfleet_node_heartbeats_total", {}, beats, node=node)
    # Window 5m (alerts/rules/fleet.yaml): the last request was at minute 99.
    assert _fired(engine, "link_silence", 103 * MIN) == []
    assert _fired(engine, "link_silence", 106 * MIN) == ["a~b"]
