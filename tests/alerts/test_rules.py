"""Rule files (``kind: AlertRules``): every problem reported at once with its field path, Prometheus durations,
defaults filled in, the shipped rules load, and loading a rule file imports no database code."""

from __future__ import annotations

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
