"""Prometheus rules from SLO specs, checked by the real promtool (``check rules`` and ``test rules``).

promtool 2.42 (the Debian 12 package the project uses) compares sample values exactly and evaluates ranges
as closed intervals ``[t - W, t]``. Counters here start at 0 at t = 0, so ``increase`` never extrapolates and
every window's ratio is an exact quotient of integers, rounded once, like the expected values below.
"""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from qfleet.slo.model import (
    SLO,
    AlertPolicy,
    Calendar,
    GaugeThresholdIndicator,
    HistogramIndicator,
    MetricRatioIndicator,
    Pair,
    Period,
    SpanRatioIndicator,
    SpanThresholdIndicator,
)
from qfleet.slo.rules import (
    ALERT_NAME,
    RuleExportError,
    le_value,
    prometheus_label,
    prometheus_rules,
    promql_number,
    recorded_windows,
    rules_yaml,
    skipped,
)
from qfleet.units import NS
from tests.conftest import require_tool

M, H, D = 60 * NS, 3600 * NS, 86400 * NS

# sre.md §3: sre_workbook_30d (identical to Sloth's google-30d) and Pyrra's defaults (factors, 4d/6h).
WORKBOOK = AlertPolicy(name="sre_workbook_30d", pairs=(
    Pair(name="page_fast", severity="page", long_ns=H, short_ns=5 * M, budget_fraction=Fraction(2, 100)),
    Pair(name="page_slow", severity="page", long_ns=6 * H, short_ns=30 * M, budget_fraction=Fraction(5, 100)),
    Pair(name="ticket_fast", severity="ticket", long_ns=D, short_ns=2 * H, budget_fraction=Fraction(10, 100)),
    Pair(name="ticket_slow", severity="ticket", long_ns=3 * D, short_ns=6 * H,
         budget_fraction=Fraction(10, 100)),
))
PYRRA = AlertPolicy(name="pyrra_28d", pairs=(
    Pair(name="fast", severity="page", long_ns=H, short_ns=5 * M, burn_threshold=Fraction(14)),
    Pair(name="medium", severity="page", long_ns=6 * H, short_ns=30 * M, burn_threshold=Fraction(7)),
    Pair(name="slow", severity="ticket", long_ns=D, short_ns=2 * H, burn_threshold=Fraction(2)),
    Pair(name="long_term", severity="ticket", long_ns=4 * D, short_ns=6 * H, burn_threshold=Fraction(1)),
))
JOBS = MetricRatioIndicator(metric="qfleet_jobs_total", good_match=(("qfleet.outcome", "success"),))


def _slo(name: str = "jobs", target: str = "0.999", *, period: Period | None = None, **kw: Any) -> SLO:
    kw.setdefault("indicator", JOBS)
    kw.setdefault("policy", WORKBOOK)
    return SLO(name=name, service="scheduler", target=Fraction(target), period=period or Period(30 * D),
               budgeting="Occurrences", **kw)


def _counter(*segments: tuple[int, int]) -> str:
    """promtool values of a counter from 0 at t = 0 growing by ``per_minute`` for ``minutes`` per segment."""
    out, value = [], 0
    for i, (per_minute, minutes) in enumerate(segments):
        if i == 0:
            out.append(f"0+{per_minute}x{minutes}")
        else:
            out.append(f"{value + per_minute}+{per_minute}x{minutes - 1}")
        value += per_minute * minutes
    return " ".join(out)


def _jobs_series(segment: str | None, *phases: tuple[int, int, int]) -> list[dict[str, str]]:
    """``qfleet_jobs_total`` success and failure counters; each phase is (total/min, bad/min, minutes)."""
    seg = f',qfleet_hardware_type="{segment}"' if segment else ""
    return [
        {"series": f'qfleet_jobs_total{{qfleet_outcome="success"{seg}}}',
         "values": _counter(*((total - bad, n) for total, bad, n in phases))},
        {"series": f'qfleet_jobs_total{{qfleet_outcome="failure"{seg}}}',
         "values": _counter(*((bad, n) for total, bad, n in phases))},
    ]


def _labels(slo: SLO, **segment: str) -> dict[str, str]:
    slo_labels = {prometheus_label(k): v for k, v in slo.labels}
    return {**slo_labels, "service": slo.service, "slo": slo.name, **segment}


def _series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _sample(record: str, slo: SLO, value: float | Fraction, **segment: str) -> dict[str, Any]:
    """An expected sample of the recorded series ``record`` for ``slo`` (and a segment)."""
    return {"labels": _series(record, _labels(slo, **segment)), "value": float(value)}


def _ratio_sample(window: str, slo: SLO, value: Fraction, **segment: str) -> dict[str, Any]:
    return _sample(f"qfleet_slo:error_ratio:rate{window}", slo, value, **segment)


def _render(template: str, labels: dict[str, str], value: float) -> str:
    """Expand the few Go-template actions the generated annotations use, as Prometheus does."""
    text = template.replace('{{ "{{" }}', "\0")
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
    text = text.replace("{{ $value | humanizePercentage }}", "%.4g%%" % (value * 100))  # Go: %.4g of v*100
    return text.replace("\0", "{{")


def _expected(slo: SLO, pair: str, long_ratio: Fraction, **segment: str) -> dict[str, Any]:
    """The alert promtool must report: labels of the series and the rule, annotations expanded."""
    rule = next(r for r in prometheus_rules([slo])["groups"][0]["rules"]
                if r.get("alert") and r["labels"]["pair"] == pair)
    labels = {**_labels(slo, **segment), **rule["labels"]}
    value = float(long_ratio)  # the left operand of `and`: the long window's error ratio
    return {"exp_labels": labels,
            "exp_annotations": {k: _render(v, labels, value) for k, v in rule["annotations"].items()}}


def _promtool_test(tmp_path: Path, slos: list[SLO], tests: list[dict[str, Any]], *,
                   extra_rules: list[dict[str, Any]] = (), evaluation_interval: str = "1m") -> str:
    """Run ``promtool test rules`` on the rules of ``slos`` (``extra_rules`` appended to the first group:
    groups are not evaluated in a fixed order, rules within a group are)."""
    promtool = require_tool("promtool")
    rules = prometheus_rules(slos)
    rules["groups"][0]["rules"] += list(extra_rules)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=1_000_000))
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": evaluation_interval, "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False, width=1_000_000))
    res = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


# ------------------------------------------------------------------------------------------------------------
# promtool check rules


def test_promtool_check_accepts_every_indicator_kind_and_option(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    slos = [
        _slo("jobs-segmented", group_by=("hardware_type",), min_events=100, runbook="https://runbooks/F1.md",
             labels=(("team", "ops"), ("qfleet.site", "delft")), description="braces {{ in user text }}"),
        _slo("jobs-28d", "0.99", period=Period(28 * D), policy=PYRRA, indicator=MetricRatioIndicator(
            metric="qfleet_jobs_total", good_match=(("qfleet.outcome", "success"),),
            total_match=(("qfleet.job.kind", ["ghz", "teleport"]),))),
        _slo("latency", "0.99", indicator=HistogramIndicator(
            metric="qfleet_orchestrator_latency_seconds", threshold=Fraction("0.1"),
            buckets=(Fraction("0.01"), Fraction("0.1"), Fraction(1)), match=(("qfleet.tenant", 'a"b'),))),
        _slo("fidelity", "0.95", period=Period(28 * D), group_by=("node_id",), min_events=10,
             indicator=HistogramIndicator(metric="qfleet_job_fidelity_ratio", threshold=Fraction("0.9"),
                                          op="gt")),
        _slo("heralding", "0.99", group_by=("link_id", "qfleet.tenant"), min_events=5,
             indicator=GaugeThresholdIndicator(metric="qfleet_link_heralding_probability_ratio", op="gte",
                                               threshold=Fraction("0.9"))),
        _slo("node-up", "0.9", indicator=GaugeThresholdIndicator(metric="qfleet_node_up", op="lt",
                                                                threshold=Fraction(1, 3))),
        _slo("monthly", "0.995",
             period=Period(calendar=Calendar(count=1, unit="M", start="2025-01-01 00:00:00"))),
    ]
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml(slos))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    n = sum(len(g["rules"]) for g in prometheus_rules(slos)["groups"])
    assert f"SUCCESS: {n} rules found" in res.stdout


def test_promtool_check_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check has teeth: the same file with one expression broken fails."""
    promtool = require_tool("promtool")
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml([_slo()]).replace("sum (increase", "sum by (increase", 1))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0


# ------------------------------------------------------------------------------------------------------------
# promtool test rules: firing and not firing


def test_last_hour_at_2_percent_pages_fast_for_that_segment_only(tmp_path: Path) -> None:
    """sre.md §3 worked example "last 1h at 2 % errors": burns 20, 20, 10.25, 3.75, 1.3125, 0.771: page_fast.

    3 days at 10,000 jobs/min with 5 bad (burn 0.5), then 1 hour at 200 bad. A second hardware type stays at
    burn 0.5: the alert carries the segment label, and fires for that segment only.
    """
    slo = _slo(group_by=("hardware_type",))
    sc = {"qfleet_hardware_type": "superconducting"}
    ti = {"qfleet_hardware_type": "trapped_ion"}
    series = (_jobs_series("superconducting", (10_000, 5, 3 * 1440), (10_000, 200, 60))
              + _jobs_series("trapped_ion", (10_000, 5, 3 * 1440 + 60)))
    t, on_sc = "73h", 'qfleet_hardware_type="superconducting"'
    # window -> error ratio: the last hour's 200 bad/min plus 5 bad/min for the rest of the window
    ratio = {w: Fraction(60 * 200 + (minutes - 60) * 5, minutes * 10_000)
             for w, minutes in (("1h", 60), ("2h", 120), ("6h", 360), ("1d", 1440), ("3d", 4320))}
    ratio["5m"] = Fraction(200, 10_000)
    burns = [float(ratio[w] / slo.error_budget) for w in ("5m", "1h", "2h", "6h", "1d", "3d")]
    assert burns == [20, 20, 10.25, 3.75, 1.3125, 0.7708333333333334]
    period = Fraction(60 * 200 + 4320 * 5, 4380 * 10_000)  # the 30d window holds all 73 h
    period_burn = float(period) / 0.001  # Prometheus divides two binary64s, as here
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": t, "alertname": ALERT_NAME,
                             "exp_alerts": [_expected(slo, "page_fast", ratio["1h"], **sc)]}],
        "promql_expr_test": [
            *({"expr": f"qfleet_slo:error_ratio:rate{w}{{{on_sc}}}", "eval_time": t,
               "exp_samples": [_ratio_sample(w, slo, r, **sc)]} for w, r in ratio.items()),
            {"expr": 'qfleet_slo:error_ratio:rate1h{qfleet_hardware_type="trapped_ion"}', "eval_time": t,
             "exp_samples": [_ratio_sample("1h", slo, Fraction(5, 10_000), **ti)]},
            {"expr": f"qfleet_slo:period_burn_rate:ratio{{{on_sc}}}", "eval_time": t,
             "exp_samples": [_sample("qfleet_slo:period_burn_rate:ratio", slo, period_burn, **sc)]},
            {"expr": f"qfleet_slo:period_error_budget_remaining:ratio{{{on_sc}}}", "eval_time": t,
             "exp_samples": [_sample("qfleet_slo:period_error_budget_remaining:ratio", slo, 1 - period_burn,
                                     **sc)]},
        ]}], evaluation_interval="1h")


def test_page_fast_fires_at_the_first_minute_the_hour_passes_the_threshold(tmp_path: Path) -> None:
    """Baseline 1 bad per 10,000/min, then 2 %. Hand count over the closed 1h window (60 one-minute steps):

    k minutes into the incident, bad = 200 k + (60 - k): k = 43 gives 8617 / 600,000 = 1.436 % (not above
    1.44 %), k = 44 gives 8816 / 600,000 = 1.469 %, so the page starts at 2h + 44m. (A left-open window, as in
    Prometheus 3, holds 59 steps and crosses one minute earlier.)
    """
    slo = _slo(policy=AlertPolicy(name="fast_only", pairs=WORKBOOK.pairs[:1]))
    series = _jobs_series(None, (10_000, 1, 120), (10_000, 200, 60))
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "163m", "alertname": ALERT_NAME, "exp_alerts": []},
            {"eval_time": "164m", "alertname": ALERT_NAME,
             "exp_alerts": [_expected(slo, "page_fast", Fraction(8816, 600_000))]},
        ],
        "promql_expr_test": [{"expr": "qfleet_slo:error_ratio:rate1h", "eval_time": "163m",
                              "exp_samples": [_ratio_sample("1h", slo, Fraction(8617, 600_000))]}],
    }])


def test_at_0_1_percent_nothing_fires_and_the_budget_is_exactly_spent(tmp_path: Path) -> None:
    """sre.md §5: 1 bad per 1,000 at 99.9 % is burn exactly 1: ticket_slow (> 1) is quiet, remaining is 0."""
    slo = _slo()
    t = "73h"
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": _jobs_series(None, (10_000, 10, 73 * 60)),
        "alert_rule_test": [{"eval_time": t, "alertname": ALERT_NAME, "exp_alerts": []}],
        "promql_expr_test": [
            {"expr": "qfleet_slo:error_ratio:rate3d", "eval_time": t,
             "exp_samples": [_ratio_sample("3d", slo, Fraction(1, 1000))]},
            *({"expr": record, "eval_time": t, "exp_samples": [_sample(record, slo, value)]}
              for record, value in (("qfleet_slo:objective:ratio", 0.999),
                                    ("qfleet_slo:error_budget:ratio", 0.001),
                                    ("qfleet_slo:period_burn_rate:ratio", 1),
                                    ("qfleet_slo:period_error_budget_remaining:ratio", 0))),
        ]}], evaluation_interval="1h")


def test_a_burn_exactly_at_the_threshold_does_not_page(tmp_path: Path) -> None:
    """sre.md §3 boundary: T = 93.75 % (B = 1/16) at 90 % errors is burn exactly 14.4: no page_fast; 91 % is.

    The slower pairs (thresholds 6, 3, 1, i.e. 37.5 %, 18.75 %, 6.25 % errors) fire in both cases.
    """
    slo = _slo(target="0.9375")
    slower = ["page_slow", "ticket_fast", "ticket_slow"]

    def case(bad: int, firing: list[str]) -> dict[str, Any]:
        return {"interval": "1m", "input_series": _jobs_series(None, (100, bad, 8 * 60)),
                "alert_rule_test": [{"eval_time": "8h", "alertname": ALERT_NAME,
                                     "exp_alerts": [_expected(slo, p, Fraction(bad, 100)) for p in firing]}],
                "promql_expr_test": [{"expr": "qfleet_slo:error_ratio:rate1h", "eval_time": "8h",
                                      "exp_samples": [_ratio_sample("1h", slo, Fraction(bad, 100))]}]}

    assert "> 0.9 and" in rules_yaml([slo])
    _promtool_test(tmp_path, [slo], [case(90, slower), case(91, ["page_fast", *slower])],
                   evaluation_interval="1h")


def test_the_float_product_would_page_where_the_exact_threshold_does_not(tmp_path: Path) -> None:
    """28 d at 99 %: page_slow's threshold is 5.6 x 0.01 = 0.056 exactly, but 5.6 * 0.01 in binary64 is
    0.055999999999999994 (sre.md §11). At exactly 5.6 % errors the generated rules stay quiet on page_slow;
    the same condition written Sloth/Pyrra style as `> (5.6 * 0.01)` fires, so this test tells them apart."""
    slo = _slo("lat28", "0.99", period=Period(28 * D))
    assert 5.6 * 0.01 < 0.056
    text = rules_yaml([slo])
    assert "> 0.056 and" in text and "> 0.1344 and" in text and "> 0.028 and" in text
    assert '> (7 / 750) and' in text  # 14/15 x 0.01: no finite decimal, written as an exact quotient
    naive = [{"alert": "NaiveProduct",
              "expr": 'qfleet_slo:error_ratio:rate6h{slo="lat28"} > (5.6 * 0.01) and '
                      'qfleet_slo:error_ratio:rate30m{slo="lat28"} > (5.6 * 0.01)'}]
    ratio = Fraction(56, 1000)
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": _jobs_series(None, (1000, 56, 7 * 60)),
        "alert_rule_test": [
            {"eval_time": "7h", "alertname": ALERT_NAME,
             "exp_alerts": [_expected(slo, "ticket_fast", ratio), _expected(slo, "ticket_slow", ratio)]},
            {"eval_time": "7h", "alertname": "NaiveProduct", "exp_alerts": [{"exp_labels": _labels(slo)}]},
        ]}], extra_rules=naive, evaluation_interval="1h")


def _histogram_series(metric: str, per_minute: dict[str, int], minutes: int) -> list[dict[str, str]]:
    return [{"series": f'{metric}_bucket{{le="{le}"}}', "values": _counter((n, minutes))}
            for le, n in per_minute.items()]


def test_histogram_latency_at_or_below_a_bucket_bound(tmp_path: Path) -> None:
    """1,000 decisions/min: 500 <= 10 ms, 950 <= 100 ms, 990 <= 1 s. At 99 %: 100 ms gives 5 % errors, burn 5
    (tickets fire, pages do not); 1 s gives 1 %, burn exactly 1 (nothing fires)."""
    metric = "qfleet_orchestrator_latency_seconds"
    buckets = (Fraction("0.01"), Fraction("0.1"), Fraction(1))
    fast, slow = (_slo(f"latency-{name}", "0.99", indicator=HistogramIndicator(
        metric=metric, threshold=Fraction(bound), buckets=buckets))
        for name, bound in (("100ms", "0.1"), ("1s", "1")))
    assert 'le="0.1"' in rules_yaml([fast]) and 'le="1"' in rules_yaml([slow])
    series = _histogram_series(metric, {"0.01": 500, "0.1": 950, "1": 990, "+Inf": 1000}, 8 * 60)
    five = Fraction(5, 100)
    _promtool_test(tmp_path, [fast, slow], [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": "8h", "alertname": ALERT_NAME, "exp_alerts": [
            _expected(fast, "ticket_fast", five), _expected(fast, "ticket_slow", five)]}],
        "promql_expr_test": [
            {"expr": 'qfleet_slo:error_ratio:rate1h{slo="latency-100ms"}', "eval_time": "8h",
             "exp_samples": [_ratio_sample("1h", fast, five)]},
            {"expr": 'qfleet_slo:error_ratio:rate5m{slo="latency-1s"}', "eval_time": "8h",
             "exp_samples": [_ratio_sample("5m", slow, Fraction(1, 100))]},
        ]}], evaluation_interval="1h")


def test_histogram_good_above_a_bound(tmp_path: Path) -> None:
    """Fidelity, good above 0.9 (op gt): the le="0.9" bucket holds the bad jobs. 10 of 100/min is 10 %, at
    95 % burn 2: only ticket_slow (> 1) fires; ticket_fast needs > 3."""
    metric = "qfleet_job_fidelity_ratio"
    slo = _slo("fidelity", "0.95",
               indicator=HistogramIndicator(metric=metric, threshold=Fraction("0.9"), op="gt"))
    series = _histogram_series(metric, {"0.5": 1, "0.9": 10, "+Inf": 100}, 8 * 60)
    tenth = Fraction(1, 10)
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": "8h", "alertname": ALERT_NAME,
                             "exp_alerts": [_expected(slo, "ticket_slow", tenth)]}],
        "promql_expr_test": [{"expr": "qfleet_slo:error_ratio:rate6h", "eval_time": "8h",
                              "exp_samples": [_ratio_sample("6h", slo, tenth)]}]}], evaluation_interval="1h")


def test_gauge_samples_are_events_and_equality_is_good(tmp_path: Path) -> None:
    """Heralding probability, good iff >= 0.9 (sre.md §8: equality is good for gte). link-a sits at exactly
    0.9: all good, no alert; link-b at 0.85: every sample bad, all four pairs fire, with the link label."""
    slo = _slo("heralding", "0.99", group_by=("link_id",), indicator=GaugeThresholdIndicator(
        metric="qfleet_link_heralding_probability_ratio", op="gte", threshold=Fraction("0.9")))
    series = [{"series": f'qfleet_link_heralding_probability_ratio{{qfleet_link_id="{link}"}}',
               "values": f"{value}+0x180"} for link, value in (("link-a", "0.9"), ("link-b", "0.85"))]
    a, b = {"qfleet_link_id": "link-a"}, {"qfleet_link_id": "link-b"}
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": "3h", "alertname": ALERT_NAME, "exp_alerts": [
            _expected(slo, p.name, Fraction(1), **b) for p in WORKBOOK.pairs]}],
        "promql_expr_test": [
            {"expr": "qfleet_slo:error_ratio:rate1h", "eval_time": "3h",
             "exp_samples": [_ratio_sample("1h", slo, Fraction(0), **a),
                             _ratio_sample("1h", slo, Fraction(1), **b)]},
            {"expr": "qfleet_slo:gauge_good_samples:count", "eval_time": "3h",
             "exp_samples": [_sample("qfleet_slo:gauge_good_samples:count", slo, 1, **a)]},
        ]}])


def test_min_events_guards_each_window(tmp_path: Path) -> None:
    """min_events 1000, every job failing. 100 jobs/min: the 5m window holds 500 < 1000, so page_fast stays
    quiet while page_slow (30m: 3,000) and both tickets fire. 1 job/min never reaches 1000 in 7 h: nothing."""
    slo = _slo(min_events=1000, group_by=("hardware_type",))
    # "small" never succeeds, so it has no success series at all: the ratio must still be 1, not absent.
    series = _jobs_series("big", (100, 100, 7 * 60)) + _jobs_series("small", (1, 1, 7 * 60))[1:]
    big = {"qfleet_hardware_type": "big"}
    assert '(sum by (qfleet_hardware_type) (increase(qfleet_jobs_total{qfleet_hardware_type!=""}[5m])) >= 1000)' in rules_yaml([slo])
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": "7h", "alertname": ALERT_NAME, "exp_alerts": [
            _expected(slo, p, Fraction(1), **big) for p in ("page_slow", "ticket_fast", "ticket_slow")]}],
        "promql_expr_test": [{"expr": 'qfleet_slo:error_ratio:rate5m{qfleet_hardware_type="small"}',
                              "eval_time": "7h", "exp_samples": [
                                  _ratio_sample("5m", slo, Fraction(1), qfleet_hardware_type="small")]}]}],
        evaluation_interval="1h")


def test_a_window_without_events_records_nothing(tmp_path: Path) -> None:
    """sre.md §10: no events -> null (no sample, never NaN), and a pair using that window is false.

    60 min of 10 jobs/min all failing, then 30 min without jobs: 5m and 30m hold no events, so page_fast (5m)
    and page_slow (30m) are quiet although every event was bad; the tickets (short windows 2h, 6h) fire."""
    slo = _slo()
    _promtool_test(tmp_path, [slo], [{
        "interval": "1m", "input_series": _jobs_series(None, (10, 10, 60), (0, 0, 30)),
        "alert_rule_test": [{"eval_time": "90m", "alertname": ALERT_NAME, "exp_alerts": [
            _expected(slo, "ticket_fast", Fraction(1)), _expected(slo, "ticket_slow", Fraction(1))]}],
        "promql_expr_test": [
            {"expr": "qfleet_slo:error_ratio:rate5m", "eval_time": "90m", "exp_samples": []},
            {"expr": "qfleet_slo:error_ratio:rate1h", "eval_time": "90m",
             "exp_samples": [_ratio_sample("1h", slo, Fraction(1))]},
        ]}])


# ------------------------------------------------------------------------------------------------------------
# The text of the rules


def test_exact_decimals_in_the_rule_text() -> None:
    """sre.md §2 and §11: thresholds 14.4, 6, 3, 1 (30 d) and 13.44, 5.6, 2.8, 14/15 (28 d), at 99.9 %."""
    text30 = rules_yaml([_slo()])
    for needle in ("vector(0.999)", "vector(0.001)", "/ 0.001\n", "> 0.0144 and", "> 0.006 and",
                   "> 0.003 and", 'rate3d{slo="jobs"} > 0.001 and'):
        assert needle in text30, needle
    text28 = rules_yaml([_slo(period=Period(28 * D))])
    for needle in ("> 0.01344 and", "> 0.0056 and", "> 0.0028 and", "> (7 / 7500) and", "rate28d"):
        assert needle in text28, needle
    assert "vector(0.0001)" in rules_yaml([_slo(target="0.9999")])
    for text in (text30, text28):
        assert not re.search(r"\d\.\d*(0{6,}|9{6,})\d", text), "a float artefact in the rules"
        assert "0.0010000000000000009" not in text and "0.0009999999999999432" not in text


def test_rule_group_layout_names_and_labels() -> None:
    slo = _slo(group_by=("hardware_type", "qfleet.tenant"), labels=(("team", "ops"),),
               runbook="runbooks/F2.md")
    (group,) = prometheus_rules([slo])["groups"]
    assert group["name"] == "qfleet-slo-jobs"
    records = [r["record"] for r in group["rules"] if "record" in r]
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
    assert records == [f"qfleet_slo:error_ratio:rate{w}" for w in windows] + [
        "qfleet_slo:objective:ratio", "qfleet_slo:error_budget:ratio", "qfleet_slo:period_burn_rate:ratio",
        "qfleet_slo:period_error_budget_remaining:ratio"]
    assert all(r["labels"] == {"team": "ops", "service": "scheduler", "slo": "jobs"}
               for r in group["rules"] if "record" in r)
    assert all(" by (qfleet_hardware_type, qfleet_tenant) " in r["expr"]
               for r in group["rules"] if r.get("record", "").startswith("qfleet_slo:error_ratio"))
    alerts = [r for r in group["rules"] if "alert" in r]
    assert [(a["labels"]["severity"], a["labels"]["pair"], a["labels"]["long"], a["labels"]["short"])
            for a in alerts] == [("page", "page_fast", "1h", "5m"), ("page", "page_slow", "6h", "30m"),
                                 ("ticket", "ticket_fast", "1d", "2h"), ("ticket", "ticket_slow", "3d", "6h")]
    assert all(a["alert"] == ALERT_NAME for a in alerts)
    assert all(a["annotations"]["runbook_url"] == "runbooks/F2.md" for a in alerts)
    assert "{{ $labels.qfleet_hardware_type }}" in alerts[0]["annotations"]["summary"]
    assert "gone in 50h" in alerts[0]["annotations"]["description"]
    assert "and on (" not in alerts[0]["expr"]  # min_events 0: no traffic guard


def test_an_unfireable_pair_says_so() -> None:
    """sre.md §9 (sloth#341): at 90 % the page_fast threshold 14.4 x 0.1 = 144 % errors can never be reached."""
    alerts = [r for r in prometheus_rules([_slo(target="0.9")])["groups"][0]["rules"] if "alert" in r]
    assert alerts[0]["annotations"]["description"].startswith("This pair can never fire")
    assert "> 1.44 and" in alerts[0]["expr"]
    assert not any(a["annotations"]["description"].startswith("This pair") for a in alerts[1:])


def test_event_weighted_never_an_average_of_ratios() -> None:
    """sre.md §4: Σbad / Σtotal over the window; no *_over_time of a ratio, no avg."""
    for ind in (JOBS, HistogramIndicator(metric="h_seconds", threshold=Fraction(1)),
                GaugeThresholdIndicator(metric="g", op="gt", threshold=Fraction(0))):
        for rule in prometheus_rules([_slo(indicator=ind)])["groups"][0]["rules"]:
            assert "avg" not in rule["expr"] and "ratio_rate" not in rule["expr"]
            if rule.get("record", "").startswith("qfleet_slo:error_ratio:rate"):
                w = rule["record"].removeprefix("qfleet_slo:error_ratio:rate")
                assert rule["expr"].count(f"[{w}]") >= 3  # total, good and the guard all span the window


def test_matchers_escape_values_and_lists_become_anchored_alternatives() -> None:
    ind = MetricRatioIndicator(
        metric="qfleet_jobs_total", good_match=(("qfleet.outcome", "success"),),
        total_match=(("qfleet.job.kind", ["ghz.4", "teleport"]), ("note", 'say "hi"\\')))
    expr = prometheus_rules([_slo(indicator=ind)])["groups"][0]["rules"][0]["expr"]
    assert 'qfleet_job_kind=~"ghz\\\\.4|teleport"' in expr
    assert 'note="say \\"hi\\"\\\\"' in expr


def test_pyrra_windows_and_28d_period() -> None:
    slo = _slo(target="0.99", period=Period(28 * D), policy=PYRRA)
    assert recorded_windows(slo) == ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "4d", "28d")
    alerts = [r for r in prometheus_rules([slo])["groups"][0]["rules"] if "alert" in r]
    assert alerts[-1]["expr"] == ('qfleet_slo:error_ratio:rate4d{slo="jobs"} > 0.01 and '
                                  'qfleet_slo:error_ratio:rate6h{slo="jobs"} > 0.01')
    assert alerts[0]["expr"].startswith('qfleet_slo:error_ratio:rate1h{slo="jobs"} > 0.14 and')


def test_calendar_period_uses_its_nominal_length() -> None:
    slo = _slo(period=Period(calendar=Calendar(count=1, unit="Q", start="2025-01-01 00:00:00")))
    assert recorded_windows(slo)[-1] == "90d"
    assert "qfleet_slo:error_ratio:rate90d{slo=\"jobs\"} / 0.001" in rules_yaml([slo])


def test_yaml_round_trips_and_starts_with_a_header() -> None:
    slos = [_slo(), _slo("lat", indicator=HistogramIndicator(metric="h_seconds", threshold=Fraction("0.25")))]
    text = rules_yaml(slos)
    assert text.startswith("# Generated by qfleet")
    assert yaml.safe_load(text) == prometheus_rules(slos)
    assert all(len(line) < 2000 for line in text.splitlines())  # one expression per line, never folded


def _doc_yaml_blocks() -> list[str]:
    doc = Path(__file__).resolve().parents[2] / "docs" / "prometheus.md"
    return re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)


def test_the_documented_prometheus_config_loads_the_generated_rules(tmp_path: Path) -> None:
    """docs/prometheus.md §4: its prometheus.yml, with the generated file under rules/, passes promtool."""
    promtool = require_tool("promtool")
    config = next(b for b in _doc_yaml_blocks() if "rule_files:" in b)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "qfleet-slo.rules.yml").write_text(rules_yaml([_slo(group_by=("hardware_type",))]))
    (tmp_path / "prometheus.yml").write_text(config)
    res = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS: 1 rule files found" in res.stdout, res.stdout + res.stderr


def test_the_documented_alertmanager_config_is_valid(tmp_path: Path) -> None:
    """docs/prometheus.md §5. amtool ships with prometheus-alertmanager (installed by .ci/run)."""
    amtool = require_tool("amtool")
    config = next(b for b in _doc_yaml_blocks() if "inhibit_rules:" in b)
    (tmp_path / "alertmanager.yml").write_text(config)
    res = subprocess.run([amtool, "check-config", "alertmanager.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_promoted_columns_match_the_collector() -> None:
    from qfleet.collector.schema import PROMOTED_ATTRIBUTES
    from qfleet.slo import rules

    assert rules._PROMOTED == PROMOTED_ATTRIBUTES


# ------------------------------------------------------------------------------------------------------------
# Errors and skipping


def _span_slo(name: str = "swaps") -> SLO:
    return _slo(name, indicator=SpanRatioIndicator(span="qfleet.entanglement.swap"))


@pytest.mark.parametrize(("slo", "rule"), [
    (_span_slo(), "span_indicator_not_in_promql"),
    (_slo(indicator=SpanThresholdIndicator(span="qfleet.feedforward", attribute="latency_us", op="lte",
                                           threshold=Fraction(5))), "span_indicator_not_in_promql"),
    (_slo(indicator=HistogramIndicator(metric="h_seconds", threshold=Fraction("0.2"),
                                       buckets=(Fraction("0.1"), Fraction("0.25")))),
     "threshold_not_on_bucket_boundary"),
    (_slo(indicator=MetricRatioIndicator(metric="qfleet.jobs", good_match=(("o", "ok"),))),
     "invalid_metric_name"),
    (_slo(target="1"), "target_out_of_range"),
    (_slo(group_by=("service",)), "group_by_label_collision"),
    (_slo(group_by=("__name__",)), "reserved_label"),
], ids=["span ratio", "span threshold", "threshold off the buckets", "dotted metric name", "target 1",
        "group_by on a rule label", "reserved label"])
def test_rules_error_names_the_slo_the_rule_and_the_fix(slo: SLO, rule: str) -> None:
    with pytest.raises(RuleExportError) as info:
        prometheus_rules([slo])
    assert info.value.rule == rule and info.value.slo == slo.name
    assert isinstance(info.value, ValueError)
    assert f"SLO {slo.name!r}" in str(info.value) and "fix:" in str(info.value)
    assert skipped([slo]) == [(slo.name, str(info.value))]


def test_strict_false_leaves_out_and_skipped_lists_them() -> None:
    slos = [_span_slo("a"), _slo("b"), _span_slo("c")]
    with pytest.raises(RuleExportError):
        rules_yaml(slos)
    assert [g["name"] for g in prometheus_rules(slos, strict=False)["groups"]] == ["qfleet-slo-b"]
    assert [name for name, _ in skipped(slos)] == ["a", "c"]
    assert skipped([_slo("b")]) == []


def test_duplicate_names_are_always_an_error() -> None:
    with pytest.raises(RuleExportError, match="duplicate_slo_name"):
        prometheus_rules([_slo(), _slo()], strict=False)


def test_interval_is_written_when_given() -> None:
    assert prometheus_rules([_slo()], interval="30s")["groups"][0]["interval"] == "30s"
    assert "interval" not in prometheus_rules([_slo()])["groups"][0]


# ------------------------------------------------------------------------------------------------------------
# Properties


fractions = st.fractions(min_value=-10**6, max_value=10**6, max_denominator=10**6)


@given(fractions)
def test_promql_number_is_exact(f: Fraction) -> None:
    text = promql_number(f)
    if text.startswith("("):
        p, q = text.strip("()").split(" / ")
        assert Fraction(int(p), int(q)) == f and f.denominator == int(q)
        rest = f.denominator
        for prime in (2, 5):
            while rest % prime == 0:
                rest //= prime
        assert rest != 1  # only quotients without a finite decimal are written as (p / q)
    else:
        assert Fraction(text) == f and "e" not in text.lower()
        assert not (("." in text) and text.endswith("0"))


# Targets with up to 6 decimals and the four workbook pairs on 28 or 30 days.
targets = st.integers(1, 6).flatmap(lambda k: st.integers(1, 10**k - 1).map(lambda n: Fraction(n, 10**k)))


@given(targets, st.sampled_from(WORKBOOK.pairs), st.sampled_from([28, 30]), st.integers(1, 10**4))
def test_a_ratio_exactly_at_the_threshold_never_fires_one_event_more_does(
        target: Fraction, pair: Pair, days: int, scale: int) -> None:
    """Prometheus compares binary64s: bad / total (one correctly rounded division) against the parsed literal.
    Python's float does the same IEEE operations, so this is the PromQL comparison, exactly."""
    exact = pair.threshold(days * D) * (1 - target)
    if exact >= 1:
        return  # unfireable (sre.md §9)
    total = exact.denominator * scale
    bad = exact.numerator * scale
    text = promql_number(exact)
    if text.startswith("("):  # PromQL evaluates `(p / q)` as one binary64 division
        p, q = text.strip("()").split(" / ")
        literal = int(p) / int(q)
    else:
        literal = float(text)
    assert literal == float(exact)
    assert not (bad / total > literal)
    if total < 2**50:  # one event more is then more than an ulp away
        assert (bad + 1) / total > literal


@given(st.text(min_size=1, max_size=30))
def test_prometheus_label_is_a_valid_name_and_idempotent(name: str) -> None:
    label = prometheus_label(name)
    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label)
    assert prometheus_label(label) == label


@given(st.fractions(min_value=0, max_value=10**9, max_denominator=10**9))
def test_le_value_reads_back_as_the_same_float(f: Fraction) -> None:
    text = le_value(f)
    assert float(text) == float(f) and "e" not in text.lower() and not text.endswith(".0")
