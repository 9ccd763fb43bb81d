"""SLO spec files: OpenSLO v1 parsing, every validation rule (path and fix), policies as data, the default pack."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qfleet.problems import Problem, ProblemsError
from qfleet.slo.model import (
    SLO,
    Calendar,
    GaugeThresholdIndicator,
    HistogramIndicator,
    MetricRatioIndicator,
    Period,
    SpanRatioIndicator,
    SpanThresholdIndicator,
)
from qfleet.slo.spec import (
    BUILTIN_POLICIES,
    SpecError,
    Validation,
    builtin_specs_path,
    load_policy,
    load_slos,
    slos_from_documents,
    unfireable,
    validate_file,
    validate_text,
)
from qfleet.units import NS, parse_duration

DAY = 86400 * NS
EXT = "qfleet.dev/v1"
X = "slos/x: "  # the path prefix of the SLO named x


def _ratio_indicator() -> dict[str, Any]:
    return {"metadata": {"name": "jobs"}, "spec": {"ratioMetric": {
        "counter": True,
        "good": {"metricSource": {"type": "qfleet", "spec": {"metric": "qfleet_jobs_total",
                                                              "match": {"qfleet.outcome": "success"}}}},
        "total": {"metricSource": {"type": "qfleet", "spec": {"metric": "qfleet_jobs_total"}}}}}}


def _slo(name: str = "x", **spec: Any) -> dict[str, Any]:
    """A valid SLO document; keyword arguments replace (or, with value None, delete) spec fields."""
    body: dict[str, Any] = {
        "service": "job-execution",
        "indicator": _ratio_indicator(),
        "timeWindow": [{"duration": "30d", "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [{"target": "0.99"}],
    }
    for key, value in spec.items():
        key = EXT if key == "ext" else key
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": name}, "spec": body}


def _histogram(value: Any, op: str = "lte", buckets: list[Any] | None = None) -> dict[str, Any]:
    return {"indicator": {"metadata": {"name": "lat"}, "spec": {"thresholdMetric": {"metricSource": {
        "type": "qfleet", "spec": {"histogram": "qfleet_orchestrator_latency_seconds",
                                   "buckets": buckets or ["0.001", "0.01", "0.1"]}}}}},
        "objectives": [{"op": op, "value": value, "target": "0.99"}]}


def _check(*docs: dict[str, Any]) -> Validation:
    return slos_from_documents(copy.deepcopy(list(docs)), source="<test>")


def _at(v: Validation, path: str, *, warnings: bool = False) -> Problem:
    found = [p for p in (v.warnings if warnings else v.problems) if p.path == path]
    assert found, f"no problem at {path!r}; got {[str(p) for p in (v.warnings if warnings else v.problems)]}"
    return found[0]


def _only(v: Validation, path: str) -> Problem:
    assert len(v.problems) == 1, [str(p) for p in v.problems]
    return _at(v, path)


# ---------------------------------------------------------------------------------------------------------------
# The default pack


def test_the_default_pack_validates_with_no_problems_and_no_warnings() -> None:
    v = validate_file(builtin_specs_path())
    assert v.ok and v.problems == () and v.warnings == (), v.to_json()
    assert [s.name for s in v.slos] == ["entanglement-success", "job-success", "end-to-end-fidelity-ion",
                                        "end-to-end-fidelity-nv", "end-to-end-fidelity-sc",
                                        "feedforward-within-coherence-window", "node-availability",
                                        "orchestrator-latency"]


def test_the_default_pack_is_metric_based_segmented_30d_workbook() -> None:
    slos = {s.name: s for s in load_slos(builtin_specs_path())}
    for s in slos.values():
        assert isinstance(s.indicator, MetricRatioIndicator | HistogramIndicator | GaugeThresholdIndicator)
        assert s.period == Period(rolling_ns=30 * DAY)
        # Below 1 - 1/14.4 the Workbook's 14.4x pair can never fire (sre.md §9): those SLOs use the Workbook
        # policy without it, the other pairs unchanged.
        low = s.target <= 1 - Fraction(1) / Fraction("14.4")
        workbook = load_policy("sre_workbook_30d")
        assert s.policy == load_policy("sre_workbook_30d_low_target" if low else "sre_workbook_30d"), s.name
        assert set(s.policy.pairs) == set(workbook.pairs) - ({workbook.pairs[0]} if low else set())
        # Fidelity is one SLO per hardware type (each platform its own threshold); the orchestrator serves all.
        unsegmented = s.name == "orchestrator-latency" or s.name.startswith("end-to-end-fidelity-")
        assert s.group_by == (() if unsegmented else ("hardware_type",))
        assert s.runbook is not None and s.runbook.startswith("runbooks/F") and s.runbook.endswith(".md")
        assert [b.consumed_fraction for b in s.budget_policy] == [Fraction(1, 2), 1]
        assert not unfireable(s)
    assert slos["entanglement-success"].indicator == MetricRatioIndicator(
        metric="qfleet_entanglement_requests_total", good_match=(("qfleet.outcome", "success"),))
    assert slos["entanglement-success"].target == Fraction(99, 100)
    assert slos["job-success"].target == Fraction(85, 100)  # the nv-centre calm baseline is ~91.5 % (slo/specs/fleet.yaml)
    for name, hw, thr in (("ion", "trapped-ion", Fraction(8, 10)), ("nv", "nv-centre", Fraction(6, 10)),
                          ("sc", "superconducting", Fraction(6, 10))):
        fid = slos[f"end-to-end-fidelity-{name}"].indicator
        assert isinstance(fid, HistogramIndicator) and (fid.op, fid.threshold) == ("gt", thr)
        assert fid.match == (("qfleet.hardware.type", hw),)
    usage = slos["feedforward-within-coherence-window"].indicator
    assert isinstance(usage, HistogramIndicator) and (usage.op, usage.threshold) == ("lte", 1)
    up = slos["node-availability"]
    assert up.indicator == GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1))
    assert (up.budgeting, up.target, up.time_slice_target, up.time_slice_ns) == (
        "Timeslices", Fraction(995, 1000), Fraction(99, 100), 60 * NS)
    lat = slos["orchestrator-latency"].indicator
    assert isinstance(lat, HistogramIndicator) and lat.threshold == Fraction(1, 100)
    # The simulator's bucket bounds (simulator/telemetry.py), read exactly; 1e-05 is a YAML string, still exact.
    assert lat.buckets[0] == Fraction(1, 100_000) and lat.buckets[-1] == 5 and len(lat.buckets) == 17


def test_runbook_names_follow_the_failure_modes() -> None:
    names = {s.runbook for s in load_slos(builtin_specs_path())}
    allowed = {f"runbooks/{n}.md" for n in ("F1-entanglement-loss", "F2-decoherence", "F3-classical-latency",
                                             "F4-readout-miscalibration", "F5-node-outage", "F6-crosstalk",
                                             "F7-scheduler-deadlock", "F8-unauthorized-commands")}
    assert names <= allowed


# ---------------------------------------------------------------------------------------------------------------
# Policies as data: thresholds (sre.md §2 and §3)


@pytest.mark.parametrize(("days", "expected"), [
    # sre.md §2, 30-day table: 14.4, 6, 3, 1
    (30, [Fraction(144, 10), Fraction(6), Fraction(3), Fraction(1)]),
    # sre.md §2, 28-day table: 13.44, 5.6, 2.8, 0.9333... (14/15)
    (28, [Fraction(1344, 100), Fraction(56, 10), Fraction(28, 10), Fraction(14, 15)]),
], ids=["30-day period gives 14.4, 6, 3, 1", "28-day period gives 13.44, 5.6, 2.8, 14/15"])
def test_workbook_thresholds_rescale_with_the_period(days: int, expected: list[Fraction]) -> None:
    policy = load_policy("sre_workbook_30d")
    assert [p.name for p in policy.pairs] == ["page_fast", "page_slow", "ticket_fast", "ticket_slow"]
    assert [(p.severity, p.long_ns, p.short_ns) for p in policy.pairs] == [
        ("page", parse_duration("1h"), parse_duration("5m")), ("page", parse_duration("6h"), parse_duration("30m")),
        ("ticket", parse_duration("1d"), parse_duration("2h")),
        ("ticket", parse_duration("3d"), parse_duration("6h"))]
    assert [p.threshold(days * DAY) for p in policy.pairs] == expected


def test_pyrra_factors_are_fixed_burn_rates() -> None:
    # sre.md §3 Pyrra defaults: 1h/5m 14 critical, 6h/30m 7, 1d/2h 2 warning, 4d/6h 1
    policy = load_policy("pyrra_28d")
    assert [(p.severity, p.long_ns // NS, p.short_ns // NS) for p in policy.pairs] == [
        ("page", 3600, 300), ("page", 21600, 1800), ("ticket", 86400, 7200), ("ticket", 4 * 86400, 21600)]
    for days in (28, 30):
        assert [p.threshold(days * DAY) for p in policy.pairs] == [14, 7, 2, 1]


def test_a_28_day_slo_with_the_workbook_policy_gets_13_44() -> None:
    v = _check(_slo(timeWindow=[{"duration": "28d", "isRolling": True}]))
    (slo,) = v.slos
    assert slo.policy.pairs[0].threshold(slo.period.nominal_ns) == Fraction(1344, 100)


def test_builtin_policies_load_by_name_and_path(tmp_path: Path) -> None:
    assert BUILTIN_POLICIES == ("sre_workbook_30d", "sre_workbook_30d_low_target", "pyrra_28d")
    path = tmp_path / "fast.yaml"
    path.write_text("version: 1\nkind: AlertWindows\nname: fast\n"
                    "pairs: [{name: page_fast, severity: page, long: 1h, short: 5m, budgetPercent: 2.5}]\n")
    policy = load_policy(path)
    assert policy.name == "fast" and policy.pairs[0].budget_fraction == Fraction(25, 1000)
    assert load_policy(str(path)) == policy


def test_unknown_policy_name_names_the_builtins() -> None:
    with pytest.raises(SpecError) as err:
        load_policy("google_30d")
    assert "sre_workbook_30d" in err.value.problems[0].fix and "pyrra_28d" in err.value.problems[0].fix
    v = _check(_slo(ext={"alertPolicy": "google_30d"}))
    p = _only(v, X + 'spec."qfleet.dev/v1".alertPolicy')
    assert p.code == "unknown_policy" and "sre_workbook_30d" in p.fix and "inline" in p.fix


def test_a_policy_path_resolves_next_to_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "mine.yaml").write_text(
        "version: 1\nkind: AlertWindows\nname: mine\n"
        "pairs: [{name: page_fast, severity: page, long: 2h, short: 10m, burnRate: 10}]\n")
    spec = tmp_path / "slos.yaml"
    spec.write_text(yaml.safe_dump(_slo(ext={"alertPolicy": "policies/mine.yaml"})))
    (slo,) = load_slos(spec)
    assert slo.policy.name == "mine" and slo.policy.pairs[0].threshold(slo.period.nominal_ns) == 10
    spec.write_text(yaml.safe_dump(_slo(ext={"alertPolicy": "policies/missing.yaml"})))
    p = _only(validate_file(spec), X + 'spec."qfleet.dev/v1".alertPolicy')
    assert p.code == "policy_not_found"


def test_invalid_policy_file_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 2\nkind: AlertWindows\nname: bad\npairs:\n"
                    "  - {name: a, severity: urgent, long: 1h, short: 2h, budgetPercent: 2, burnRate: 3}\n")
    with pytest.raises(SpecError) as err:
        load_policy(path)
    codes = {p.code for p in err.value.problems}
    assert codes == {"bad_version", "bad_severity", "short_not_shorter_than_long:a", "bad_pair_threshold"}


def test_inline_policy_short_window_not_shorter_than_long() -> None:
    pairs = [{"name": "ok", "severity": "page", "long": "1h", "short": "5m", "budgetPercent": 2},
             {"name": "same", "severity": "ticket", "long": "6h", "short": "6h", "budgetPercent": 5}]
    v = _check(_slo(ext={"alertPolicy": {"name": "inline", "pairs": pairs}}))
    p = _only(v, X + 'spec."qfleet.dev/v1".alertPolicy.pairs[1].short')
    assert p.code == "short_not_shorter_than_long:same"
    assert "shorter than long" in p.fix and "30m" in p.fix  # about long/12
    pairs[1]["short"] = "30m"
    (slo,) = _check(_slo(ext={"alertPolicy": {"name": "inline", "pairs": pairs}})).slos
    assert slo.policy.name == "inline" and [p.name for p in slo.policy.pairs] == ["ok", "same"]


# ---------------------------------------------------------------------------------------------------------------
# Exact targets (sre.md §11)


def test_targets_parse_exactly_from_the_yaml_text() -> None:
    text = yaml.safe_dump(_slo()).replace("target: '0.99'", "target: 0.999")
    assert "target: 0.999" in text
    (slo,) = validate_text(text).slos
    assert slo.target == Fraction(999, 1000) and slo.error_budget == Fraction(1, 1000)
    assert 1 - 0.999 != 0.001  # the float trap the exact parse avoids


def test_the_yaml_text_is_kept_beyond_float_precision() -> None:
    # 20 nines is 1.0 as a binary64 float (which would be rejected); the text is just below 1.
    text = yaml.safe_dump(_slo()).replace("target: '0.99'", "target: 0." + "9" * 20)
    (slo,) = validate_text(text).slos
    assert slo.target == Fraction(10**20 - 1, 10**20)
    assert float("0." + "9" * 20) == 1.0


@pytest.mark.parametrize("objective", [{"target": "0.999"}, {"target": 0.999}, {"targetPercent": 99.9},
                                       {"targetPercent": "99.9"}],
                         ids=["quoted ratio", "float ratio", "float percent", "quoted percent"])
def test_every_spelling_of_99_9_percent_is_999_over_1000(objective: dict[str, Any]) -> None:
    (slo,) = _check(_slo(objectives=[objective])).slos
    assert slo.target == Fraction(999, 1000)


@settings(max_examples=150, deadline=None)
@given(digits=st.integers(1, 7), data=st.data())
def test_any_decimal_target_text_is_read_exactly(digits: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 10**digits - 1))
    text = f"0.{n:0{digits}d}"
    yaml_text = yaml.safe_dump(_slo()).replace("target: '0.99'", f"target: {text}")
    v = validate_text(yaml_text)
    assert v.ok and v.slos[0].target == Fraction(n, 10**digits)
    pct = format(Decimal(n).scaleb(2 - digits), "f")  # the same objective as a percent, e.g. 99.9
    v2 = validate_text(yaml_text.replace(f"target: {text}", f"targetPercent: {pct}"))
    assert v2.ok and v2.slos[0].target == v.slos[0].target


@pytest.mark.parametrize("target", ["1.0", "1", 1, 1.5, "0", 0, "-0.1"],
                         ids=["1.0 text", "1 text", "int 1", "1.5", "0 text", "int 0", "negative"])
def test_target_outside_0_1_is_rejected(target: Any) -> None:
    p = _only(_check(_slo(objectives=[{"target": target}])), X + "spec.objectives[0].target")
    assert p.code == "target_out_of_range"
    assert "strictly between 0 and 1" in p.fix and "0.999" in p.fix


def test_target_1_says_there_is_no_error_budget() -> None:
    p = _only(_check(_slo(objectives=[{"target": 1.0}])), X + "spec.objectives[0].target")
    assert "no error budget" in p.message and "[0.0, 1.0)" in p.message


@pytest.mark.parametrize("pct", [100, "100", 0, 120])
def test_target_percent_outside_0_100_is_rejected(pct: Any) -> None:
    p = _only(_check(_slo(objectives=[{"targetPercent": pct}])), X + "spec.objectives[0].targetPercent")
    assert p.code == "target_out_of_range" and "99.9" in p.fix


def test_both_target_and_target_percent_are_rejected() -> None:
    p = _only(_check(_slo(objectives=[{"target": 0.99, "targetPercent": 99}])), X + "spec.objectives[0].targetPercent")
    assert "keep one" in p.fix


def test_a_target_that_is_not_a_number_is_rejected() -> None:
    p = _only(_check(_slo(objectives=[{"target": "high"}])), X + "spec.objectives[0].target")
    assert p.code == "not_a_number" and "0.999" in p.fix


def test_missing_target_and_several_objectives() -> None:
    p = _only(_check(_slo(objectives=[{"displayName": "x"}])), X + "spec.objectives[0].target")
    assert "targetPercent" in p.fix
    p = _only(_check(_slo(objectives=[{"target": 0.9}, {"target": 0.99}])), X + "spec.objectives")
    assert "split" in p.fix


# ---------------------------------------------------------------------------------------------------------------
# Envelope, names, unknown keys


def test_wrong_api_version() -> None:
    doc = _slo()
    doc["apiVersion"] = "openslo/v1alpha"
    p = _only(_check(doc), X + "apiVersion")
    assert p.code == "wrong_api_version" and p.fix == "write apiVersion: openslo/v1"


def test_wrong_kind() -> None:
    doc = _slo()
    doc["kind"] = "ServiceLevelObjective"
    p = _only(_check(doc), "documents[0]: kind")
    assert p.code == "wrong_kind" and "kind: SLO" in p.fix


def test_alert_policy_documents_are_ignored_with_a_warning() -> None:
    other = {"apiVersion": "openslo/v1", "kind": "AlertPolicy", "metadata": {"name": "p"}, "spec": {}}
    v = _check(_slo(), other)
    assert v.ok and len(v.slos) == 1
    w = _at(v, "documents[1]: kind", warnings=True)
    assert w.code == "ignored" and "alertPolicy" in w.fix


def test_unknown_keys_name_the_allowed_ones() -> None:
    v = _check(_slo(windows=["30d"]))
    p = _only(v, X + "spec.windows")
    assert p.code == "unknown_key" and "budgetingMethod" in p.fix and "timeWindow" in p.fix and EXT in p.fix
    v = _check(_slo(ext={"alertpolicy": "pyrra_28d"}))
    p = _only(v, X + 'spec."qfleet.dev/v1".alertpolicy')
    assert "alertPolicy" in p.fix and "groupBy" in p.fix and "minEvents" in p.fix
    doc = _slo()
    doc["metadata"]["title"] = "Jobs"
    assert "displayName" in _only(_check(doc), X + "metadata.title").fix


def test_an_unknown_key_suggests_the_closest_allowed_one() -> None:
    p = _only(_check(_slo(ext={"alertpolicy": "pyrra_28d"})), X + 'spec."qfleet.dev/v1".alertpolicy')
    assert p.fix.startswith("did you mean 'alertPolicy'? ")


@pytest.mark.parametrize("name", ["Job-Success", "job_success", "-jobs", "jobs-", "a" * 64, ""],
                         ids=["upper case", "underscore", "leading dash", "trailing dash", "64 characters", "empty"])
def test_names_must_be_rfc_1123(name: str) -> None:
    v = _check(_slo(name=name))
    obj = f"slos/{name}" if name else "documents[0]"
    p = _only(v, f"{obj}: metadata.name")
    assert p.code == "bad_name" and "RFC 1123" in p.fix and "63" in p.fix


def test_63_character_names_are_fine() -> None:
    assert _check(_slo(name="a" * 63)).ok


def test_duplicate_slo_names() -> None:
    p = _only(_check(_slo(), _slo()), X + "metadata.name")
    assert p.code == "duplicate_name"


def test_missing_budgeting_method() -> None:
    p = _only(_check(_slo(budgetingMethod=None)), X + "spec.budgetingMethod")
    assert p.code == "missing_key" and "Occurrences" in p.fix and "Timeslices" in p.fix


def test_unknown_budgeting_method() -> None:
    p = _only(_check(_slo(budgetingMethod="Events")), X + "spec.budgetingMethod")
    assert "RatioTimeslices" in p.fix


# ---------------------------------------------------------------------------------------------------------------
# Timeslices


def test_timeslices_need_a_slice_target_and_window() -> None:
    v = _check(_slo(budgetingMethod="Timeslices"))
    assert {p.path for p in v.problems} == {X + "spec.objectives[0].timeSliceTarget",
                                             X + "spec.objectives[0].timeSliceWindow"}
    assert "timeSliceTarget: 0.99" in _at(v, X + "spec.objectives[0].timeSliceTarget").fix
    assert "timeSliceWindow: 1m" in _at(v, X + "spec.objectives[0].timeSliceWindow").fix


def test_timeslices_parse() -> None:
    obj = [{"target": 0.85, "timeSliceTarget": 0.8, "timeSliceWindow": "1m"}]
    (slo,) = _check(_slo(budgetingMethod="Timeslices", objectives=obj)).slos
    assert (slo.target, slo.time_slice_target, slo.time_slice_ns) == (Fraction(85, 100), Fraction(4, 5), 60 * NS)
    (slo,) = _check(_slo(budgetingMethod="RatioTimeslices", objectives=[{"target": 0.85, "timeSliceWindow": "5m"}])
                    ).slos
    assert (slo.budgeting, slo.time_slice_target, slo.time_slice_ns) == ("RatioTimeslices", None, 300 * NS)


def test_slice_fields_do_not_belong_to_occurrences() -> None:
    p = _only(_check(_slo(objectives=[{"target": 0.9, "timeSliceWindow": "1m"}])),
              X + "spec.objectives[0].timeSliceWindow")
    assert "Timeslices" in p.fix


@pytest.mark.parametrize("slice_target", [0, 1.5])
def test_slice_target_range(slice_target: float) -> None:
    obj = [{"target": 0.9, "timeSliceTarget": slice_target, "timeSliceWindow": "1m"}]
    _only(_check(_slo(budgetingMethod="Timeslices", objectives=obj)), X + "spec.objectives[0].timeSliceTarget")


# ---------------------------------------------------------------------------------------------------------------
# Time windows


def test_calendar_window() -> None:
    tw = [{"duration": "1M", "isRolling": False,
           "calendar": {"startTime": "2025-01-01 00:00:00", "timeZone": "America/New_York"}}]
    (slo,) = _check(_slo(timeWindow=tw)).slos
    assert slo.period == Period(calendar=Calendar(count=1, unit="M", start="2025-01-01 00:00:00",
                                                  time_zone="America/New_York"))


@pytest.mark.parametrize("duration", ["1M", "1Q", "1Y"])
def test_calendar_units_on_a_rolling_window_are_rejected(duration: str) -> None:
    p = _only(_check(_slo(timeWindow=[{"duration": duration, "isRolling": True}])), X + "spec.timeWindow[0].duration")
    assert p.code == "calendar_unit_on_rolling_window" and "30d" in p.fix and "isRolling: false" in p.fix


def test_bad_time_zone() -> None:
    tw = [{"duration": "1w", "isRolling": False, "calendar": {"startTime": "2025-01-06 00:00:00",
                                                              "timeZone": "Mars/Olympus_Mons"}}]
    p = _only(_check(_slo(timeWindow=tw)), X + "spec.timeWindow[0].calendar.timeZone")
    assert p.code == "bad_time_zone" and "America/New_York" in p.fix


def test_bad_start_time() -> None:
    tw = [{"duration": "1M", "isRolling": False, "calendar": {"startTime": "2025-01-01T00:00:00Z", "timeZone": "UTC"}}]
    p = _only(_check(_slo(timeWindow=tw)), X + "spec.timeWindow[0].calendar.startTime")
    assert "2025-01-01 00:00:00" in p.fix


@pytest.mark.parametrize("duration", ["30 days", "0d", "30s", "d", 30, "1.5d", "5m5m", "30m1h"])
def test_bad_duration(duration: Any) -> None:
    p = _only(_check(_slo(timeWindow=[{"duration": duration, "isRolling": True}])), X + "spec.timeWindow[0].duration")
    assert p.code == "bad_duration" and "30d" in p.fix


@pytest.mark.parametrize(("duration", "ns"), [("30d", 30 * DAY), ("4w", 28 * DAY), ("1h30m", 90 * 60 * NS),
                                              ("1w2d", 9 * DAY), ("1y", 365 * DAY)],
                         ids=["days", "weeks", "hours and minutes", "weeks and days", "a Prometheus year"])
def test_rolling_windows_are_prometheus_durations(duration: str, ns: int) -> None:
    (slo,) = _check(_slo(timeWindow=[{"duration": duration, "isRolling": True}])).slos
    assert slo.period == Period(rolling_ns=ns)


def test_a_zero_or_fractional_window_says_how_to_write_it() -> None:
    p = _only(_check(_slo(timeWindow=[{"duration": "0d", "isRolling": True}])), X + "spec.timeWindow[0].duration")
    assert "must be > 0" in p.message
    p = _only(_check(_slo(timeWindow=[{"duration": "1.5d", "isRolling": True}])), X + "spec.timeWindow[0].duration")
    assert "write 1d12h" in p.message  # qfleet.units' whole spelling of the fraction


@pytest.mark.parametrize(("duration", "count", "unit"), [("1d", 1, "d"), ("2w", 2, "w"), ("1w2d", 9, "d"),
                                                          ("3M", 3, "M"), ("1Q", 1, "Q"), ("1Y", 1, "Y")])
def test_calendar_windows_step_in_days_weeks_months_quarters_or_years(duration: str, count: int, unit: str) -> None:
    tw = [{"duration": duration, "isRolling": False, "calendar": {"startTime": "2025-01-06 00:00:00",
                                                                 "timeZone": "UTC"}}]
    (slo,) = _check(_slo(timeWindow=tw)).slos
    assert slo.period.calendar is not None
    assert (slo.period.calendar.count, slo.period.calendar.unit) == (count, unit)


@pytest.mark.parametrize("duration", ["12h", "1d12h", "1y", "0M", "M", "1.5M", "0d"])
def test_calendar_windows_refuse_other_steps(duration: str) -> None:
    tw = [{"duration": duration, "isRolling": False, "calendar": {"startTime": "2025-01-06 00:00:00",
                                                                 "timeZone": "UTC"}}]
    p = _only(_check(_slo(timeWindow=tw)), X + "spec.timeWindow[0].duration")
    assert p.code == "bad_duration" and ("1M" in p.fix or "30d" in p.fix)


def test_pair_windows_are_positive_whole_minutes() -> None:
    def pair(long: str, short: str) -> dict[str, Any]:
        return {"alertPolicy": {"name": "p", "pairs": [{"name": "a", "severity": "page", "long": long, "short": short,
                                                         "budgetPercent": 2}]}}
    where = X + 'spec."qfleet.dev/v1".alertPolicy.pairs[0].'
    (slo,) = _check(_slo(ext=pair("1h30m", "7m"))).slos
    assert (slo.policy.pairs[0].long_ns, slo.policy.pairs[0].short_ns) == (90 * 60 * NS, 7 * 60 * NS)
    assert "must be > 0" in _only(_check(_slo(ext=pair("1h", "0"))), where + "short").message
    assert "whole number of minutes" in _only(_check(_slo(ext=pair("1h", "90s"))), where + "short").message
    # long/12 is 7m30s here: the suggestion is a duration too (it used to fail on windows that are not whole minutes)
    p = _only(_check(_slo(ext=pair("90m", "90m"))), where + "short")
    assert p.code == "short_not_shorter_than_long:a" and "7m30s" in p.fix


def test_time_window_shape() -> None:
    p = _only(_check(_slo(timeWindow={"duration": "30d", "isRolling": True})), X + "spec.timeWindow")
    assert "list" in p.message and "[{duration: 30d, isRolling: true}]" in p.fix
    p = _only(_check(_slo(timeWindow=[{"duration": "30d", "isRolling": False}])), X + "spec.timeWindow[0].calendar")
    assert "startTime" in p.fix


# ---------------------------------------------------------------------------------------------------------------
# Indicators


@pytest.mark.parametrize(("value", "op", "threshold"), [("0.01", "lte", Fraction(1, 100)), (0.1, "gt", Fraction(1, 10))])
def test_histogram_threshold_on_a_bucket(value: Any, op: str, threshold: Fraction) -> None:
    (slo,) = _check(_slo(**_histogram(value, op))).slos
    assert slo.indicator == HistogramIndicator(metric="qfleet_orchestrator_latency_seconds", threshold=threshold,
                                               op=op, buckets=(Fraction(1, 1000), Fraction(1, 100), Fraction(1, 10)))


def test_histogram_threshold_off_the_buckets_is_rejected() -> None:
    p = _only(_check(_slo(**_histogram(0.02))), X + "spec.objectives[0].value")
    assert p.code == "threshold_not_on_bucket_boundary"
    assert p.fix == "use one of the bucket boundaries 0.001, 0.01, 0.1"


def test_histogram_op_must_be_lte_or_gt() -> None:
    p = _only(_check(_slo(**_histogram(0.01, "gte"))), X + "spec.objectives[0].op")
    assert "lte" in p.fix and "gt" in p.fix


def test_histogram_buckets_must_increase() -> None:
    v = _check(_slo(**_histogram(0.01, buckets=["0.01", "0.001"])))
    _at(v, X + "spec.indicator.spec.thresholdMetric.metricSource.spec.buckets[1]")


def test_histogram_base_name() -> None:
    spec = _histogram(0.01)
    spec["indicator"]["spec"]["thresholdMetric"]["metricSource"]["spec"]["histogram"] = "lat_seconds_bucket"
    p = _only(_check(_slo(**spec)), X + "spec.indicator.spec.thresholdMetric.metricSource.spec.histogram")
    assert p.fix == "write histogram: lat_seconds"


def test_gauge_threshold() -> None:
    ind = {"metadata": {"name": "up"}, "spec": {"thresholdMetric": {"metricSource": {
        "type": "qfleet", "spec": {"gauge": "qfleet_node_up", "match": {"qfleet.hardware.type": "nv-centre"}}}}}}
    (slo,) = _check(_slo(indicator=ind, objectives=[{"op": "gte", "value": 1, "target": 0.99}])).slos
    assert slo.indicator == GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1),
                                                    match=(("qfleet.hardware.type", "nv-centre"),))


def test_threshold_objective_needs_op_and_value() -> None:
    ind = {"metadata": {"name": "up"}, "spec": {"thresholdMetric": {"metricSource": {
        "type": "qfleet", "spec": {"gauge": "qfleet_node_up"}}}}}
    v = _check(_slo(indicator=ind))
    assert {p.path for p in v.problems} == {X + "spec.objectives[0].op", X + "spec.objectives[0].value"}


def test_ratio_objective_takes_no_op() -> None:
    p = _only(_check(_slo(objectives=[{"op": "gte", "target": 0.99}])), X + "spec.objectives[0].op")
    assert "remove op" in p.fix


def test_metric_ratio_good_match_is_goods_minus_totals() -> None:
    ind = _ratio_indicator()
    rm = ind["spec"]["ratioMetric"]
    rm["total"]["metricSource"]["spec"]["match"] = {"qfleet.job.kind": "teleport"}
    rm["good"]["metricSource"]["spec"]["match"] = {"qfleet.job.kind": "teleport", "qfleet.outcome": "success"}
    (slo,) = _check(_slo(indicator=ind)).slos
    assert slo.indicator == MetricRatioIndicator(metric="qfleet_jobs_total",
                                                 good_match=(("qfleet.outcome", "success"),),
                                                 total_match=(("qfleet.job.kind", "teleport"),))


def test_metric_ratio_good_must_contain_totals_match() -> None:
    ind = _ratio_indicator()
    ind["spec"]["ratioMetric"]["total"]["metricSource"]["spec"]["match"] = {"qfleet.job.kind": "ghz"}
    p = _only(_check(_slo(indicator=ind)), X + "spec.indicator.spec.ratioMetric.good.metricSource.spec.match")
    assert "repeat total's match" in p.fix


def test_metric_ratio_bad_is_not_supported() -> None:
    ind = _ratio_indicator()
    rm = ind["spec"]["ratioMetric"]
    rm["bad"] = rm.pop("good")
    p = _only(_check(_slo(indicator=ind)), X + "spec.indicator.spec.ratioMetric.bad")
    assert "good:" in p.fix


def test_label_values_must_be_strings() -> None:
    ind = _ratio_indicator()
    ind["spec"]["ratioMetric"]["good"]["metricSource"]["spec"]["match"] = {"qfleet.outcome": 1}
    p = _only(_check(_slo(indicator=ind)),
              X + 'spec.indicator.spec.ratioMetric.good.metricSource.spec.match."qfleet.outcome"')
    assert "quote" in p.fix


def test_span_ratio_good_and_bad() -> None:
    def ind(role: str, extra: dict[str, Any]) -> dict[str, Any]:
        where = {"qfleet.job.kind": "teleport"}
        return {"metadata": {"name": "s"}, "spec": {"ratioMetric": {
            role: {"metricSource": {"type": "qfleet", "spec": {"spans": "job", "where": where, **extra}}},
            "total": {"metricSource": {"type": "qfleet", "spec": {"spans": "job", "where": where}}}}}}
    want = SpanRatioIndicator(span="job", where=(("qfleet.job.kind", "teleport"),))
    for role, extra in (("good", {"status": "ok"}), ("good", {}), ("bad", {"status": "error"})):
        (slo,) = _check(_slo(indicator=ind(role, extra))).slos
        assert slo.indicator == want
    p = _only(_check(_slo(indicator=ind("good", {"status": "error"}))),
              X + "spec.indicator.spec.ratioMetric.good.metricSource.spec.status")
    assert "status: ok" in p.fix


def test_span_ratio_good_may_not_change_where() -> None:
    ind = {"metadata": {"name": "s"}, "spec": {"ratioMetric": {
        "good": {"metricSource": {"type": "qfleet", "spec": {"spans": "job", "where": {"error": ""}}}},
        "total": {"metricSource": {"type": "qfleet", "spec": {"spans": "job"}}}}}}
    p = _only(_check(_slo(indicator=ind)), X + "spec.indicator.spec.ratioMetric.good.metricSource.spec.where")
    assert "status: ok" in p.fix


def test_span_threshold_with_a_per_event_threshold() -> None:
    ind = {"metadata": {"name": "ff"}, "spec": {"thresholdMetric": {"metricSource": {"type": "qfleet", "spec": {
        "spans": "feedforward", "attribute": "latency_us", "thresholdAttribute": "coherence_window_us",
        "margin": 0.5}}}}}
    (slo,) = _check(_slo(indicator=ind, objectives=[{"op": "lte", "target": 0.99}])).slos
    assert slo.indicator == SpanThresholdIndicator(span="feedforward", attribute="latency_us", op="lte",
                                                   threshold_attribute="coherence_window_us", margin=Fraction(1, 2))
    p = _only(_check(_slo(indicator=ind, objectives=[{"op": "lte", "value": 1, "target": 0.99}])),
              X + "spec.objectives[0].value")
    assert "margin" in p.fix


def test_span_threshold_with_a_fixed_threshold() -> None:
    ind = {"metadata": {"name": "fid"}, "spec": {"thresholdMetric": {"metricSource": {"type": "qfleet", "spec": {
        "spans": "job", "attribute": "qfleet.job.fidelity"}}}}}
    (slo,) = _check(_slo(indicator=ind, objectives=[{"op": "gte", "value": 0.9, "target": 0.95}])).slos
    assert slo.indicator == SpanThresholdIndicator(span="job", attribute="qfleet.job.fidelity", op="gte",
                                                   threshold=Fraction(9, 10))


def test_metric_source_type_must_be_qfleet() -> None:
    ind = _ratio_indicator()
    ind["spec"]["ratioMetric"]["total"]["metricSource"]["type"] = "Prometheus"
    p = _only(_check(_slo(indicator=ind)), X + "spec.indicator.spec.ratioMetric.total.metricSource.type")
    assert p.fix.startswith("write type: qfleet")


def test_indicator_ref_to_an_sli_document() -> None:
    sli = {"apiVersion": "openslo/v1", "kind": "SLI", "metadata": {"name": "jobs"},
           "spec": _ratio_indicator()["spec"]}
    slo = _slo(indicator=None, indicatorRef="jobs")
    v = _check(slo, sli)  # the SLI may come after the SLO
    assert v.ok and isinstance(v.slos[0].indicator, MetricRatioIndicator)
    p = _only(_check(_slo(indicator=None, indicatorRef="nope"), sli), X + "spec.indicatorRef")
    assert p.code == "unknown_indicator" and "kind: SLI" in p.fix


def test_an_invalid_sli_is_reported_once_and_blocks_its_slos() -> None:
    spec = _ratio_indicator()["spec"]
    for role in ("good", "total"):
        spec["ratioMetric"][role]["metricSource"]["spec"]["metric"] = "bad name"
    sli = {"apiVersion": "openslo/v1", "kind": "SLI", "metadata": {"name": "jobs"}, "spec": spec}
    v = _check(sli, _slo(indicator=None, indicatorRef="jobs"))
    assert not v.slos
    assert {p.path for p in v.problems} == {"slis/jobs: spec.ratioMetric.total.metricSource.spec.metric",
                                            X + "spec.indicatorRef"}


def test_exactly_one_of_indicator_and_ref() -> None:
    p = _only(_check(_slo(indicator=None)), X + "spec.indicator")
    assert "indicatorRef" in p.fix


# ---------------------------------------------------------------------------------------------------------------
# qfleet.dev/v1


def test_extension_fields() -> None:
    ext = {"alertPolicy": "pyrra_28d", "groupBy": ["node_id", "hardware_type"], "minEvents": 50,
           "runbook": "runbooks/F5-node-outage.md",
           "budgetPolicy": [{"name": "freeze", "consumed": 0.5, "consequence": "freeze rollouts"}]}
    (slo,) = _check(_slo(ext=ext)).slos
    assert slo.policy.name == "pyrra_28d" and slo.group_by == ("node_id", "hardware_type")
    assert slo.min_events == 50 and slo.runbook == "runbooks/F5-node-outage.md"
    assert slo.budget_policy[0].consumed_fraction == Fraction(1, 2)
    (default,) = _check(_slo()).slos
    assert (default.policy.name, default.group_by, default.min_events, default.runbook) == (
        "sre_workbook_30d", (), 0, None)


def test_unknown_group_by() -> None:
    p = _only(_check(_slo(ext={"groupBy": ["hardware_type", "tenant"]})), X + 'spec."qfleet.dev/v1".groupBy[1]')
    assert p.code == "unknown_group_by" and p.fix == "use one of hardware_type, node_id, link_id"


@pytest.mark.parametrize("value", [-1, 1.5, "10", True])
def test_min_events_must_be_a_whole_number_at_least_0(value: Any) -> None:
    p = _only(_check(_slo(ext={"minEvents": value})), X + 'spec."qfleet.dev/v1".minEvents')
    assert p.code == "bad_min_events" and "use 0" in p.fix


def test_budget_policy_steps() -> None:
    bp = [{"name": "a", "consumed": 0, "consequence": "x"}, {"name": "b", "consequence": "y"}]
    v = _check(_slo(ext={"budgetPolicy": bp}))
    assert {p.path for p in v.problems} == {X + 'spec."qfleet.dev/v1".budgetPolicy[0].consumed',
                                            X + 'spec."qfleet.dev/v1".budgetPolicy[1].consumed'}


# ---------------------------------------------------------------------------------------------------------------
# Several problems at once; files; errors


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    bad = _slo(budgetingMethod=None, objectives=[{"target": 1.0}], ext={"groupBy": ["rack"], "minEvents": -5})
    bad2 = _slo("y", timeWindow=[{"duration": "1M", "isRolling": True}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([bad, bad2, _slo("good")]))
    v = validate_file(path)
    assert [s.name for s in v.slos] == ["good"] and not v.ok
    assert [p.path for p in v.problems] == [
        X + "spec.budgetingMethod", X + "spec.objectives[0].target", X + 'spec."qfleet.dev/v1".groupBy[0]',
        X + 'spec."qfleet.dev/v1".minEvents', "slos/y: spec.timeWindow[0].duration"]
    with pytest.raises(SpecError) as err:
        load_slos(path)
    assert err.value.problems == v.problems
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}: 5 problems (fix all of them):" and len(lines) == 6
    assert all(str(p) in str(err.value) for p in v.problems)
    assert isinstance(err.value, ProblemsError) and isinstance(err.value, ValueError)
    assert err.value.source == str(path) and err.value.to_json()["problems"][0]["path"] == X + "spec.budgetingMethod"


def test_yaml_syntax_errors_are_problems_with_a_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x\n")
    v = validate_file(path)
    assert not v.ok and v.problems[0].code == "yaml_syntax" and "line" in v.problems[0].path


def test_duplicate_yaml_keys_are_problems() -> None:
    v = validate_text("apiVersion: openslo/v1\nkind: SLO\nkind: SLI\n")
    assert v.problems[0].code == "yaml_syntax" and "duplicate key 'kind'" in v.problems[0].message


def test_empty_file_and_io_errors(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert validate_file(path).problems[0].code == "empty"
    with pytest.raises(OSError):
        validate_file(tmp_path / "missing.yaml")


def test_to_json_is_json() -> None:
    v = _check(_slo(objectives=[{"target": 0.93}]), _slo("z", objectives=[{"target": 2}]))
    out = json.loads(json.dumps(v.to_json()))
    assert out["ok"] is False and out["source"] == "<test>"
    assert out["slos"] == [{"name": "x", "service": "job-execution", "policy": "sre_workbook_30d",
                            "unfireable_conditions": ["page_fast"]}]
    assert out["problems"][0]["path"] == "slos/z: spec.objectives[0].target"
    assert out["warnings"][0]["code"] == "unfireable_condition:page_fast"


def test_load_slos_logs_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "low.yaml"
    path.write_text(yaml.safe_dump(_slo(objectives=[{"target": "0.9"}])))
    with caplog.at_level(logging.WARNING, logger="qfleet.slo.spec"):
        (slo,) = load_slos(path)
    assert "page_fast" in caplog.text and slo.target == Fraction(9, 10)


# ---------------------------------------------------------------------------------------------------------------
# Unfireable pairs (sre.md §9)


def _with_target(target: str, days: int = 30, policy: str = "sre_workbook_30d") -> SLO:
    v = _check(_slo(objectives=[{"target": target}], timeWindow=[{"duration": f"{days}d", "isRolling": True}],
                    ext={"alertPolicy": policy}))
    assert v.ok, v.problems
    return v.slos[0]


@pytest.mark.parametrize(("target", "names"), [
    ("0.93", ["page_fast"]),  # sloth#341: max burn 14.29 < 14.4
    ("0.9", ["page_fast"]),  # max burn 10: page_fast unfireable, page_slow (6) fine
    ("0.9305555555", ["page_fast"]),  # just below 1 - 1/14.4 = 67/72
    ("0.9306", []),  # just above: max burn 14.409... > 14.4
    ("0.999", []),
    ("0.5", ["page_fast", "page_slow", "ticket_fast"]),  # max burn 2: only ticket_slow (1) can fire
], ids=["93 %", "90 %", "just below 93.0556 %", "just above 93.0556 %", "99.9 %", "50 %"])
def test_unfireable_pairs(target: str, names: list[str]) -> None:
    slo = _with_target(target)
    assert [p.name for p in unfireable(slo)] == names
    v = _check(_slo(objectives=[{"target": target}]))
    assert v.ok and [w.code for w in v.warnings] == [f"unfireable_condition:{n}" for n in names]


def test_threshold_equal_to_max_burn_is_unfireable() -> None:
    # T = 67/72 makes 1/B exactly 14.4 (sre.md §9: fireable only when T > 1 - 1/14.4); strict > never fires.
    slo = _with_target("0.9")
    exact = replace(slo, target=Fraction(67, 72))
    assert [p.name for p in unfireable(exact)] == ["page_fast"]
    assert [p.name for p in unfireable(replace(slo, target=Fraction(67, 72) + Fraction(1, 10**9)))] == []


@settings(max_examples=200, deadline=None)
@given(num=st.integers(1, 9999), days=st.sampled_from([7, 28, 30, 90]),
       policy=st.sampled_from(["sre_workbook_30d", "pyrra_28d"]))
def test_unfireable_iff_threshold_at_least_one_over_budget(num: int, days: int, policy: str) -> None:
    slo = _with_target(f"0.{num:04d}", days, policy)
    period = days * DAY
    names = {p.name for p in unfireable(slo)}
    for pair in slo.policy.pairs:
        thr = pair.threshold(period)
        # A burn above thr needs e/B > thr with e <= 1, i.e. T > 1 - 1/thr.
        assert (pair.name in names) == (slo.target <= 1 - 1 / thr)


@settings(max_examples=100, deadline=None)
@given(days=st.integers(1, 400))
def test_workbook_thresholds_scale_linearly_with_the_period(days: int) -> None:
    policy = load_policy("sre_workbook_30d")
    thresholds = [p.threshold(days * DAY) for p in policy.pairs]
    # X × P / L with P in hours: 2 % × 24d / 1, 5 % × 24d / 6, 10 % × 24d / 24, 10 % × 24d / 72
    assert thresholds == [Fraction(2 * 24 * days, 100), Fraction(5 * 24 * days, 600), Fraction(10 * days, 100),
                          Fraction(10 * days, 300)]


_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=5)
    | st.sampled_from(["30d", "1M", "lte", "qfleet", "0.99", "Timeslices", "spans", "metric"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "name", "good", "total", "metricSource", "type", "duration",
                         "isRolling", "calendar", "target", "op", "value", "pairs", "x"]), inner, max_size=3),
    max_leaves=8)
_PLACES: list[tuple[Any, ...]] = [
    *(("spec", k) for k in ("service", "indicator", "timeWindow", "budgetingMethod", "objectives", EXT, "x")),
    ("metadata", "name"), ("metadata", "labels"), ("spec", "indicatorRef"), ("apiVersion",), ("kind",),
    ("spec", "objectives", 0, "target"), ("spec", "objectives", 0, "op"), ("spec", "objectives", 0, "value"),
    ("spec", "objectives", 0, "timeSliceWindow"), ("spec", "timeWindow", 0, "duration"),
    ("spec", "timeWindow", 0, "calendar"), ("spec", "indicator", "spec"),
    ("spec", "indicator", "spec", "ratioMetric", "good"), ("spec", "indicator", "spec", "ratioMetric", "bad"),
    ("spec", "indicator", "spec", "ratioMetric", "total", "metricSource", "spec"),
    ("spec", "indicator", "spec", "thresholdMetric"),
]


@settings(max_examples=400, deadline=None)
@given(place=st.sampled_from(_PLACES), junk=_JUNK, budgeting=st.sampled_from(["Occurrences", "Timeslices"]))
def test_content_problems_never_raise(place: tuple[Any, ...], junk: Any, budgeting: str) -> None:
    doc = _slo(budgetingMethod=budgeting)
    node: Any = doc
    for key in place[:-1]:
        node = node[key]
    node[place[-1]] = junk
    v = _check(doc)  # must not raise, whatever the content
    assert len(v.slos) == (1 if v.ok else 0)
    assert all(p.path and p.message and p.fix for p in v.problems + v.warnings)
