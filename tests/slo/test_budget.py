"""The exact SLO maths against sre.md's worked examples (§3, §5, §6, §7, §10, §12); Hypothesis properties."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qfleet.slo.budget import (
    INF,
    BudgetError,
    SampleError,
    StepCounts,
    burn_exceeds,
    evaluate_slo,
    read_samples_csv,
    report_json,
)
from qfleet.slo.model import (
    SLO,
    AlertPolicy,
    BudgetStep,
    Calendar,
    ConditionReport,
    Counts,
    MetricRatioIndicator,
    Pair,
    Period,
    SLOReport,
    SpanRatioIndicator,
    StandardWindows,
)
from qfleet.units import NS, parse_rfc3339

MIN = 60 * NS
H = 60 * MIN
DAY = 24 * H
NOW = parse_rfc3339("2025-03-10T12:00:00Z")

# The Workbook pairs (sre.md §3, qfleet policy sre_workbook_30d).
WORKBOOK = AlertPolicy(
    name="sre_workbook_30d",
    pairs=(
        Pair(
            name="page_fast", severity="page", long_ns=H, short_ns=5 * MIN, budget_fraction=Fraction(2, 100)
        ),
        Pair(
            name="page_slow",
            severity="page",
            long_ns=6 * H,
            short_ns=30 * MIN,
            budget_fraction=Fraction(5, 100),
        ),
        Pair(
            name="ticket_fast",
            severity="ticket",
            long_ns=DAY,
            short_ns=2 * H,
            budget_fraction=Fraction(10, 100),
        ),
        Pair(
            name="ticket_slow",
            severity="ticket",
            long_ns=3 * DAY,
            short_ns=6 * H,
            budget_fraction=Fraction(10, 100),
        ),
    ),
)


def make_slo(target: str = "0.999", **kw: object) -> SLO:
    fields: dict[str, object] = dict(
        name="jobs",
        service="fleet",
        target=Fraction(target),
        period=Period(rolling_ns=30 * DAY),
        budgeting="Occurrences",
        indicator=MetricRatioIndicator(metric="qfleet_jobs_total", good_match=()),
        policy=WORKBOOK,
    )
    fields.update(kw)
    return SLO(**fields)  # type: ignore[arg-type]


def minutes(count: int, per_step: Callable[[int], tuple[int, int]], now: int = NOW) -> StepCounts:
    """``count`` per-minute samples; ``per_step(i)`` gives (good, total) of the step ending at now - i min."""
    return StepCounts((now - i * MIN, *per_step(i)) for i in range(count))


def firing(report: SLOReport) -> set[str]:
    return {c.name for c in report.conditions if c.firing}


def cond(report: SLOReport, name: str) -> ConditionReport:
    return next(c for c in report.conditions if c.name == name)


# ------------------------------------------------------------------------------------------------------------
# sre.md §3 "Worked examples": 99.9 %, 30 d, baseline 10,000 events/min with 5 bad (burn 0.5).

BASE = (9_995, 10_000)
ALL_BAD = (0, 10_000)


def at_rate(bad: int) -> tuple[int, int]:
    return 10_000 - bad, 10_000


SCENARIOS = [
    pytest.param(lambda i: BASE, ["0.5"] * 7, set(), id="steady state"),
    pytest.param(
        lambda i: at_rate(200) if i < 60 else BASE,
        ["20", "20", "20", "10.25", "3.75", "1.3125", "0.771"],
        {"page_fast"},
        id="last 1h at 2 % errors",
    ),
    pytest.param(
        lambda i: ALL_BAD if 40 <= i < 50 else BASE,
        ["0.5", "0.5", "167.1", "83.8", "28.3", "7.44", "2.81"],
        {"ticket_fast", "ticket_slow"},
        id="10-min full outage ended 40 min ago: ticket only",
    ),
    pytest.param(
        lambda i: ALL_BAD if 20 <= i < 30 else BASE,
        ["0.5", "333.7", "167.1", "83.8", "28.3", "7.44", "2.81"],
        {"page_slow", "ticket_fast", "ticket_slow"},
        id="same outage ended 20 min ago: page slow + ticket",
    ),
    pytest.param(
        lambda i: at_rate(80) if i < 360 else BASE,
        ["8", "8", "8", "8", "8", "2.375", "1.125"],
        {"page_slow", "ticket_slow"},
        id="last 6h at 0.8 %",
    ),
    pytest.param(
        lambda i: at_rate(15) if i < 3 * 1440 else BASE,
        ["1.5"] * 7,
        {"ticket_slow"},
        id="last 3d at 0.15 %: ticket slow only",
    ),
    # Outage over (now-20m, now-5m] (steps ending now-19m..now-5m), then no traffic over (now-5m, now].
    pytest.param(
        lambda i: (0, 0) if i < 5 else ALL_BAD if i < 20 else BASE,
        [None, "600.2", "273.1", "130.9", "42.7", "10.9", "3.97"],
        {"page_slow", "ticket_fast", "ticket_slow"},
        id="outage then zero traffic: 5m null, page_fast false",
    ),
]


@pytest.mark.parametrize(("per_step", "burns", "fires"), SCENARIOS)
def test_sre_md_3_worked_examples(
    per_step: Callable[[int], tuple[int, int]], burns: list[str | None], fires: set[str]
) -> None:
    report = evaluate_slo(make_slo(), minutes(30 * 1440 + 10, per_step), NOW)
    for window, want in zip(StandardWindows, burns, strict=True):
        got = report.windows[window].burn_rate
        if want is None:
            assert got is None, window
        else:
            decimals = len(want.partition(".")[2])
            assert f"{float(got):.{decimals}f}" == want, (window, got)
    assert firing(report) == fires
    assert report.severities == {
        "page": bool(fires & {"page_fast", "page_slow"}),
        "ticket": bool(fires & {"ticket_fast", "ticket_slow"}),
    }


def test_worked_examples_exact_values() -> None:
    # Hand-computed from the §3 scenarios: exact Fractions, no rounding.
    steady = evaluate_slo(make_slo(), minutes(30 * 1440, lambda i: BASE), NOW)
    assert steady.budget.remaining_fraction == Fraction(1, 2)
    assert steady.windows["30d"].burn_rate == Fraction(1, 2)
    outage = evaluate_slo(make_slo(), minutes(4 * 1440, lambda i: ALL_BAD if 40 <= i < 50 else BASE), NOW)
    # 1h: 10 outage minutes (100,000 bad) + 50 baseline minutes (250 bad) over 600,000 events.
    assert outage.windows["1h"].burn_rate == Fraction(100_250, 600_000) * 1000
    assert outage.windows["1h"].error_ratio == Fraction(100_250, 600_000)
    zero = evaluate_slo(
        make_slo(), minutes(4 * 1440, lambda i: (0, 0) if i < 5 else ALL_BAD if i < 20 else BASE), NOW
    )
    assert zero.windows["5m"] == type(zero.windows["5m"])(0, 0, 0, None, None)
    # 30m: 15 outage minutes + 10 baseline minutes over 25 minutes with traffic.
    assert zero.windows["30m"].burn_rate == Fraction(150_050, 250_000) * 1000
    pf = cond(zero, "page_fast")
    assert (pf.short_burn_rate, pf.firing, pf.low_traffic) == (None, False, False)


def test_bad_minutes_stamped_exactly_at_now_minus_5m_and_1h_are_outside() -> None:
    # sre.md §3 boundary cases: 5m burn 0.5, 1h 17.16 -> page_fast quiet, page_slow fires.
    steps = minutes(4 * 1440, lambda i: ALL_BAD if i in (5, 60) else BASE)
    report = evaluate_slo(make_slo(), steps, NOW)
    assert report.windows["5m"].burn_rate == Fraction(1, 2)
    assert report.windows["1h"].burn_rate == Fraction(10_000 + 59 * 5, 600_000) * 1000
    assert f"{float(report.windows['1h'].burn_rate):.2f}" == "17.16"
    assert not cond(report, "page_fast").firing
    assert cond(report, "page_slow").firing
    # A closed window [now-5m, now] would have held the bad minute and fired page_fast.
    closed = steps.window(NOW - 5 * MIN - 1, NOW)
    assert burn_exceeds(closed.bad, closed.total, Fraction("0.999"), Fraction("14.4"))


@pytest.mark.parametrize(
    ("bad_per_100", "pages"),
    [(90, False), (91, True)],
    ids=["90 % errors: burn exactly 14.4 does not page", "91 %: burn 14.56 pages"],
)
def test_target_93_75_boundary(bad_per_100: int, pages: bool) -> None:
    # sre.md §3: T = 93.75 % (B = 1/16); the last hour at 90 % errors, none before.
    slo = make_slo("0.9375")
    report = evaluate_slo(
        slo, minutes(3 * 1440, lambda i: (100 - bad_per_100, 100) if i < 60 else (100, 100)), NOW
    )
    pf = cond(report, "page_fast")
    assert pf.threshold == Fraction("14.4")
    assert pf.long_burn_rate == pf.short_burn_rate == Fraction(bad_per_100, 100) * 16
    assert pf.firing is pages
    assert report.severities["page"] is pages  # page_slow: 6h burn is 2.4 (or 2.43) < 6


# ------------------------------------------------------------------------------------------------------------
# sre.md §5: the budget over the period


def test_one_bad_per_thousand_burns_exactly_one_quiet_and_exhausted() -> None:
    report = evaluate_slo(make_slo(), minutes(31 * 1440, lambda i: (9_990, 10_000)), NOW)
    assert {w.burn_rate for w in report.windows.values()} == {Fraction(1)}
    ts = cond(report, "ticket_slow")
    assert (ts.long_burn_rate, ts.threshold, ts.firing) == (1, 1, False)
    b = report.budget
    assert (b.consumed_fraction, b.remaining_fraction, b.exhausted) == (1, 0, True)
    assert (b.allowed_bad_events, b.remaining_bad_events) == (432_000, 0)
    assert b.budget_minutes == Fraction("43.2")  # sre.md §5: B x P / 60 s at 30 d
    assert b.sli == Fraction(999, 1000) and not b.no_data


def test_all_bad_period_leaves_minus_999() -> None:
    b = evaluate_slo(make_slo(), minutes(30 * 1440, lambda i: ALL_BAD), NOW).budget
    assert (b.consumed_fraction, b.remaining_fraction, b.exhausted, b.sli) == (1000, -999, True, 0)
    assert b.remaining_bad_events == Fraction(432_000) - 432_000_000


def test_budget_counts_the_open_left_end_of_a_rolling_period() -> None:
    # A sample exactly at now - 30d is outside (now - P, now].
    steps = StepCounts([(NOW - 30 * DAY, 0, 1000), (NOW, 999, 1000)])
    b = evaluate_slo(make_slo(), steps, NOW).budget
    assert (b.total, b.bad, b.remaining_fraction) == (1000, 1, 0)


def test_budget_policy_steps_trigger_at_consumed_fraction_inclusive() -> None:
    steps_policy = (
        BudgetStep(name="freeze", consumed_fraction=Fraction(1, 2), consequence="freeze rollouts"),
        BudgetStep(name="reliability", consumed_fraction=Fraction(1), consequence="only fixes"),
    )
    slo = make_slo(budget_policy=steps_policy)
    assert evaluate_slo(slo, minutes(30 * 1440, lambda i: BASE), NOW).steps_triggered == ("freeze",)
    assert evaluate_slo(slo, minutes(30 * 1440, lambda i: (9_990, 10_000)), NOW).steps_triggered == (
        "freeze",
        "reliability",
    )
    assert evaluate_slo(slo, minutes(30 * 1440, lambda i: (10_000, 10_000)), NOW).steps_triggered == ()
    assert evaluate_slo(slo, StepCounts([]), NOW).steps_triggered == ()


# ------------------------------------------------------------------------------------------------------------
# sre.md §6: calendar periods


@pytest.mark.parametrize(
    ("calendar", "now", "minutes_"),
    [
        (Calendar(count=1, unit="M", start="2025-01-01 00:00:00"), "2025-01-15T00:00:00Z", "44.64"),
        (Calendar(count=1, unit="M", start="2024-01-01 00:00:00"), "2024-02-15T00:00:00Z", "41.76"),
        (Calendar(count=1, unit="M", start="2025-01-01 00:00:00"), "2025-02-15T00:00:00Z", "40.32"),
        (
            Calendar(count=1, unit="M", start="2025-01-01 00:00:00", time_zone="America/New_York"),
            "2025-03-15T00:00:00Z",
            "44.58",
        ),
        (
            Calendar(count=1, unit="M", start="2025-01-01 00:00:00", time_zone="America/New_York"),
            "2025-11-15T00:00:00Z",
            "43.26",
        ),
        (Calendar(count=1, unit="w", start="2025-01-06 00:00:00"), "2025-01-15T00:00:00Z", "10.08"),
        (Calendar(count=1, unit="Q", start="2025-01-01 00:00:00"), "2025-05-15T00:00:00Z", "131.04"),
    ],
    ids=["Jan 2025", "Feb 2024 leap", "Feb 2025", "Mar 2025 NY", "Nov 2025 NY", "week", "Q2 2025"],
)
def test_calendar_budget_minutes_follow_the_real_length(calendar: Calendar, now: str, minutes_: str) -> None:
    # sre.md §6 table, "budget at 99.9 %" column; no data, yet the budget size is known.
    report = evaluate_slo(make_slo(period=Period(calendar=calendar)), StepCounts([]), parse_rfc3339(now))
    assert report.budget.budget_minutes == Fraction(minutes_)
    assert report.budget.no_data and report.budget.remaining_fraction is None
    assert "calendar" in report.windows and "30d" not in report.windows


def test_calendar_versus_rolling_after_a_jan_31_outage() -> None:
    # sre.md §6: a 60-min full outage on Jan 31 leaves February-to-date at 50 % remaining, while rolling 30 d
    # over the same data is overspent (-0.888). Baseline 10,000/min at 5 bad; outage = steps ending
    # 12:01..13:00 Jan 31.
    now = parse_rfc3339("2025-02-10T00:00:00Z")
    outage_end = parse_rfc3339("2025-01-31T13:00:00Z")
    steps = StepCounts(
        (now - i * MIN, *(ALL_BAD if 0 <= (outage_end - (now - i * MIN)) < H else BASE))
        for i in range(31 * 1440)
    )
    month = make_slo(period=Period(calendar=Calendar(count=1, unit="M", start="2025-01-01 00:00:00")))
    feb = evaluate_slo(month, steps, now).budget
    assert feb.remaining_fraction == Fraction(1, 2)
    assert (feb.period_start_ns, feb.period_end_ns) == (
        parse_rfc3339("2025-02-01T00:00:00Z"),
        parse_rfc3339("2025-03-01T00:00:00Z"),
    )
    rolling = evaluate_slo(make_slo(), steps, now).budget
    # 600,000 outage bad + 43,140 baseline minutes x 5 bad, over 432,000,000 events.
    assert rolling.remaining_fraction == 1 - Fraction(600_000 + 43_140 * 5, 432_000_000) * 1000
    assert f"{float(rolling.remaining_fraction):.3f}" == "-0.888"


def test_calendar_sample_at_period_start_belongs_to_the_previous_period() -> None:
    feb1 = parse_rfc3339("2025-02-01T00:00:00Z")
    month = make_slo(period=Period(calendar=Calendar(count=1, unit="M", start="2025-01-01 00:00:00")))
    steps = StepCounts([(feb1, 0, 100), (feb1 + MIN, 100, 100)])
    assert evaluate_slo(month, steps, feb1).budget.no_data  # now at the start: elapsed 0, nothing counted
    b = evaluate_slo(month, steps, feb1 + MIN).budget
    assert (b.total, b.bad, b.remaining_fraction) == (100, 0, 1)
    assert evaluate_slo(month, steps, feb1 + MIN).windows["calendar"].total == 100


# ------------------------------------------------------------------------------------------------------------
# sre.md §7: Timeslices and RatioTimeslices


def node_availability(budgeting: str) -> tuple[SLO, StepCounts]:
    # 1-min slices of 6 heartbeat probes, one sample per probe every 10 s (the last at the slice end):
    # six 6/6, then 5/6, 4/5 (= 0.8, good), 3/6 (bad), 0/0 (empty).
    slices = [(6, 6)] * 6 + [(5, 6), (4, 5), (3, 6), (0, 0)]
    start = NOW - len(slices) * MIN
    steps = []
    for k, (good, total) in enumerate(slices):
        for p in range(total):
            steps.append((start + k * MIN + (p + 1) * 10 * NS, 1 if p < good else 0, 1))
        if total == 0:
            steps.append((start + (k + 1) * MIN, 0, 0))
    slo = make_slo("0.85", budgeting=budgeting, time_slice_target=Fraction("0.8"), time_slice_ns=MIN)
    return slo, StepCounts(steps)


@pytest.mark.parametrize(
    ("budgeting", "sli", "remaining", "shown"),
    [
        ("Timeslices", Fraction(8, 9), Fraction(7, 27), ("0.8889", "0.259")),
        ("RatioTimeslices", Fraction(122, 135), Fraction(29, 81), ("0.9037", "0.358")),
        ("Occurrences", Fraction(48, 53), Fraction(59, 159), ("0.9057", "0.371")),
    ],
)
def test_sre_md_7_node_availability(
    budgeting: str, sli: Fraction, remaining: Fraction, shown: tuple[str, str]
) -> None:
    slo, steps = node_availability(budgeting)
    assert [c.total for c in steps.slices(NOW - 30 * DAY, NOW, MIN)] == [6] * 7 + [
        5,
        6,
    ]  # the empty slice is gone
    report = evaluate_slo(slo, steps, NOW)
    b = report.budget
    assert (b.sli, b.remaining_fraction) == (sli, remaining)
    assert (f"{float(b.sli):.4f}", f"{float(b.remaining_fraction):.3f}") == shown
    # The windows stay event-weighted whatever the budgeting method: 5 bad of 53 probes.
    assert report.windows["30d"].error_ratio == Fraction(5, 53)
    assert (b.good, b.total, b.bad) == (48, 53, 5)


@pytest.mark.parametrize(
    ("budgeting", "sli", "remaining"),
    [
        ("Timeslices", Fraction(95, 100), Fraction(0)),
        ("RatioTimeslices", Fraction(975, 1000), Fraction(1, 2)),
        ("Occurrences", Fraction(25_950, 50_950), 1 - Fraction(25_000, 50_950) * 20),
    ],
)
def test_sre_md_7_low_traffic_contrast(budgeting: str, sli: Fraction, remaining: Fraction) -> None:
    # T 0.95, slice target 0.9: 95 slices of 10 good events, then 5 slices of 10,000 at 50 % errors.
    steps = minutes(100, lambda i: (5_000, 10_000) if i < 5 else (10, 10))
    slo = make_slo("0.95", budgeting=budgeting, time_slice_target=Fraction("0.9"), time_slice_ns=MIN)
    b = evaluate_slo(slo, steps, NOW).budget
    assert (b.sli, b.remaining_fraction, b.exhausted) == (sli, remaining, remaining <= 0)
    if budgeting == "Occurrences":
        assert (f"{float(b.sli):.3f}", f"{float(b.remaining_fraction):.2f}") == ("0.509", "-8.81")


def test_slice_ratio_equal_to_the_slice_target_is_good() -> None:
    slo = make_slo("0.5", budgeting="Timeslices", time_slice_target=Fraction("0.8"), time_slice_ns=MIN)
    b = evaluate_slo(slo, StepCounts([(NOW - MIN, 4, 5), (NOW, 3, 4)]), NOW).budget  # 0.8 good, 0.75 bad
    assert b.sli == Fraction(1, 2)


def test_timeslice_methods_need_their_settings() -> None:
    with pytest.raises(BudgetError, match="time_slice_ns"):
        evaluate_slo(make_slo(budgeting="RatioTimeslices"), StepCounts([]), NOW)
    with pytest.raises(BudgetError, match="timeSliceTarget"):
        evaluate_slo(make_slo(budgeting="Timeslices", time_slice_ns=MIN), StepCounts([]), NOW)
    with pytest.raises(BudgetError, match="float"):
        evaluate_slo(dataclasses.replace(make_slo(), target=0.999), StepCounts([]), NOW)
    with pytest.raises(BudgetError, match=r"outside \[0, 1\]"):
        evaluate_slo(make_slo("99.9"), StepCounts([]), NOW)


# ------------------------------------------------------------------------------------------------------------
# sre.md §10 no data, §12 low-traffic guard, target 1.0


def test_no_events_in_the_period_is_unknown_not_full() -> None:
    report = evaluate_slo(make_slo(), StepCounts([(NOW - 40 * DAY, 0, 10)]), NOW)
    b = report.budget
    assert b.no_data and (b.sli, b.consumed_fraction, b.remaining_fraction, b.exhausted) == (None,) * 4
    assert (b.allowed_bad_events, b.remaining_bad_events) == (None, None)
    assert all(w.burn_rate is None and w.error_ratio is None for w in report.windows.values())
    assert not firing(report) and report.severities == {"page": False, "ticket": False}
    doc = report_json(report)
    assert doc["budget"]["remaining_fraction"] is None and doc["budget"]["exhausted"] is None


def test_min_events_reports_low_traffic_instead_of_firing() -> None:
    # sre.md §12: 1 event/min; the last 10 minutes all bad. The 5m window holds 5 events.
    steps = minutes(3 * 1440 + 10, lambda i: (0, 1) if i < 10 else (1, 1))
    plain = evaluate_slo(make_slo(), steps, NOW)
    assert cond(plain, "page_fast").firing and not cond(plain, "page_fast").low_traffic
    guarded = evaluate_slo(make_slo(min_events=100), steps, NOW)
    pf = cond(guarded, "page_fast")
    assert (pf.firing, pf.low_traffic, pf.short_burn_rate) == (False, True, 1000)
    ts = cond(guarded, "ticket_slow")  # 6h holds 360 events, 3d 4320: enough traffic
    assert (ts.firing, ts.low_traffic) == (True, False)
    assert guarded.severities == {"page": False, "ticket": True}


def test_target_one_burns_infinitely_on_any_error() -> None:
    # sre.md §10: target 1.0 evaluated anyway: burn inf when bad > 0, else 0.
    slo = make_slo("1")
    bad = evaluate_slo(slo, minutes(10, lambda i: (9, 10) if i == 0 else (10, 10)), NOW)
    assert bad.windows["5m"].burn_rate == INF and bad.budget.consumed_fraction == INF
    assert bad.budget.remaining_fraction == -INF and bad.budget.exhausted
    assert bad.severities == {"page": True, "ticket": True}
    doc = report_json(bad)
    assert doc["windows"]["5m"]["burn_rate"] == "inf" and doc["budget"]["remaining_fraction"] == "-inf"
    json.dumps(doc, allow_nan=False)
    clean = evaluate_slo(slo, minutes(10, lambda i: (10, 10)), NOW)
    assert clean.windows["5m"].burn_rate == 0 and clean.budget.remaining_fraction == 1
    assert not firing(clean) and clean.budget.exhausted is False


def test_pair_windows_outside_the_standard_set_are_reported() -> None:
    pyrra = AlertPolicy(
        name="pyrra_28d",
        pairs=(
            Pair(name="slow", severity="ticket", long_ns=4 * DAY, short_ns=6 * H, burn_threshold=Fraction(1)),
        ),
    )
    report = evaluate_slo(
        make_slo(policy=pyrra, period=Period(rolling_ns=28 * DAY)),
        minutes(5 * 1440, lambda i: at_rate(15)),
        NOW,
    )
    assert list(report.windows) == [*StandardWindows, "4d", "28d"]  # the period's key, as its rule: rate28d
    assert report.windows["4d"].burn_rate == Fraction(3, 2) and firing(report) == {"slow"}


def test_four_day_regression_at_burn_1_5_pyrra_versus_workbook() -> None:
    # sre.md §3: a 4-day regression at burn 1.5 fires only Pyrra's 4d/6h warning under pyrra_28d, and
    # ticket_slow under sre_workbook_30d. Pyrra factors (sre.md §3 table): 14, 7, 2, 1.
    pyrra = AlertPolicy(
        name="pyrra_28d",
        pairs=tuple(
            Pair(name=f"{long_}/{short}", severity=sev, long_ns=ln, short_ns=sn, burn_threshold=Fraction(f))
            for long_, short, ln, sn, f, sev in [
                ("1h", "5m", H, 5 * MIN, 14, "page"),
                ("6h", "30m", 6 * H, 30 * MIN, 7, "page"),
                ("1d", "2h", DAY, 2 * H, 2, "ticket"),
                ("4d", "6h", 4 * DAY, 6 * H, 1, "ticket"),
            ]
        ),
    )
    steps = minutes(30 * 1440, lambda i: at_rate(15) if i < 4 * 1440 else (10_000, 10_000))
    assert firing(evaluate_slo(make_slo(policy=pyrra, period=Period(rolling_ns=28 * DAY)), steps, NOW)) == {
        "4d/6h"
    }
    assert firing(evaluate_slo(make_slo(), steps, NOW)) == {"ticket_slow"}


def test_report_json_has_exactly_the_issue_shape() -> None:
    slo = make_slo(
        budget_policy=(BudgetStep(name="freeze", consumed_fraction=Fraction(1, 2), consequence="x"),)
    )
    report = evaluate_slo(
        slo, minutes(30 * 1440, lambda i: BASE), NOW, segment={"hardware_type": "trapped_ion"}
    )
    doc = report_json(report)
    assert set(doc) == {
        "slo",
        "segment",
        "at",
        "error_budget",
        "windows",
        "budget",
        "alerts",
        "steps_triggered",
    }
    assert doc["slo"] == "jobs" and doc["segment"] == {"hardware_type": "trapped_ion"}
    assert doc["at"] == "2025-03-10T12:00:00Z" and doc["error_budget"] == 0.001
    assert list(doc["windows"]) == [*StandardWindows, "30d"]
    assert doc["windows"]["1h"] == {
        "good": 599_700,
        "total": 600_000,
        "bad": 300,
        "error_ratio": 0.0005,
        "burn_rate": 0.5,
    }
    assert doc["budget"] == {
        "good": 431_784_000,
        "total": 432_000_000,
        "bad": 216_000,
        "no_data": False,
        "sli": 0.9995,
        "consumed_fraction": 0.5,
        "remaining_fraction": 0.5,
        "allowed_bad_events": 432_000.0,
        "remaining_bad_events": 216_000.0,
        "exhausted": False,
        "budget_minutes": 43.2,
        "period_start": "2025-02-08T12:00:00Z",
        "period_end": "2025-03-10T12:00:00Z",
    }
    assert doc["alerts"]["severities"] == {"page": False, "ticket": False}
    assert doc["alerts"]["conditions"][0] == {
        "severity": "page",
        "long_window": "1h",
        "short_window": "5m",
        "threshold": 14.4,
        "long_burn_rate": 0.5,
        "short_burn_rate": 0.5,
        "firing": False,
        "low_traffic": False,
        "name": "page_fast",
    }
    assert [c["threshold"] for c in doc["alerts"]["conditions"]] == [14.4, 6.0, 3.0, 1.0]  # sre.md §2, 30 d
    assert doc["steps_triggered"] == ["freeze"]


# ------------------------------------------------------------------------------------------------------------
# StepCounts and CSV input


def test_step_counts_reject_bad_steps() -> None:
    for steps, needle in [
        ([(0, -1, 1)], "0 <= good <= total"),
        ([(0, 3, 2)], "0 <= good <= total"),
        ([(0, 0, -1)], "0 <= good <= total"),
        ([(0, 1, 1), (0, 1, 1)], "two steps end"),
        ([(0.5, 1, 1)], "not an integer"),
        ([(0, True, 1)], "not an integer"),
    ]:
        with pytest.raises(SampleError, match=needle):
            StepCounts(steps)  # type: ignore[arg-type]
    with pytest.raises(SampleError, match="slice_ns"):
        StepCounts([]).slices(0, 10, 0)


def test_step_counts_slices_align_to_the_epoch_and_clip_to_the_range() -> None:
    s = StepCounts([(1, 1, 1), (60, 0, 1), (61, 1, 1), (119, 1, 2), (120, 0, 0), (200, 3, 3)])
    assert s.slices(0, 200, 60) == [Counts(1, 2), Counts(2, 3), Counts(3, 3)]
    assert s.slices(1, 200, 60) == [Counts(0, 1), Counts(2, 3), Counts(3, 3)]  # (1, 60] holds only ts 60
    assert s.slices(0, 119, 60) == [Counts(1, 2), Counts(2, 3)]
    assert s.window(200, 100) == Counts.ZERO and s.slices(200, 100, 60) == []
    assert len(s) == 6 and s.steps[0] == (1, 1, 1)


CSV = "ts,good,total\n2025-01-01T00:01:00Z,9,10\n\n2025-01-01T01:02:00+01:00,10,10\r\n"


def test_read_samples_csv_from_text_and_file(tmp_path: Path) -> None:
    t0 = parse_rfc3339("2025-01-01T00:00:00Z")
    from_text = read_samples_csv(CSV)
    assert from_text.steps == ((t0 + MIN, 9, 10), (t0 + 2 * MIN, 10, 10))
    path = tmp_path / "samples.csv"
    path.write_text(CSV)
    assert read_samples_csv(path) == from_text == read_samples_csv(str(path))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ts,total,good\n", "line 1: .*exactly ts,good,total"),
        ("ts,good,total\n2025-01-01T00:01:00Z,9\n", "line 2: 2 columns"),
        (
            "ts,good,total\n2025-01-01T00:01:00Z,9,10\n2025-01-01 00:02,9,10\n",
            "line 3, column ts: .*RFC 3339",
        ),
        (
            "ts,good,total\n2025-01-01T00:01:00Z,nine,10\n",
            "line 2, column good: 'nine' .*non-negative integer",
        ),
        ("ts,good,total\n2025-01-01T00:01:00Z,9,-1\n", "line 2, column total"),
        ("ts,good,total\n2025-01-01T00:01:00Z,11,10\n", "line 2, column good: good=11 exceeds total=10"),
        (
            "ts,good,total\n2025-01-01T00:01:00Z,1,1\n2025-01-01T01:01:00+01:00,1,1\n",
            "line 3, column ts: .*line 2",
        ),
    ],
    ids=["header", "columns", "timestamp", "not a number", "negative", "good above total", "duplicate"],
)
def test_read_samples_csv_errors_name_line_column_and_fix(text: str, needle: str) -> None:
    with pytest.raises(SampleError, match=needle):
        read_samples_csv(text)


# ------------------------------------------------------------------------------------------------------------
# Hypothesis properties (style.md C17)

TARGETS = st.sampled_from([Fraction(s) for s in ("0.999", "0.99", "0.9375", "0.95", "0.5", "0", "1")])
STEPS = st.lists(
    st.tuples(st.integers(0, 5 * 1440), st.integers(0, 40), st.integers(0, 40)).map(
        lambda r: (NOW - r[0] * MIN, min(r[1], r[2]), max(r[1], r[2]))
    ),
    max_size=60,
    unique_by=lambda r: r[0],
)
BUDGETING = st.sampled_from(["Occurrences", "Timeslices", "RatioTimeslices"])
INSTANT = st.integers(NOW - 6 * DAY, NOW + DAY)


def timeslice_slo(target: Fraction, budgeting: str, **kw: object) -> SLO:
    return dataclasses.replace(
        make_slo(budgeting=budgeting, time_slice_target=Fraction("0.9"), time_slice_ns=10 * MIN, **kw),
        target=target,
    )


@given(STEPS, INSTANT, INSTANT, INSTANT)
def test_window_counts_are_additive_and_match_brute_force(steps: list, a: int, b: int, c: int) -> None:
    a, b, c = sorted((a, b, c))
    s = StepCounts(steps)
    assert s.window(a, c) == s.window(a, b) + s.window(b, c)
    assert s.window(a, c) == sum((Counts(g, t) for ts, g, t in steps if a < ts <= c), Counts.ZERO)
    assert sum(s.slices(a, c, 7 * MIN), Counts.ZERO) == s.window(a, c)
    assert all(x.total > 0 for x in s.slices(a, c, 7 * MIN))


@settings(max_examples=60, deadline=None)
@given(STEPS, TARGETS, BUDGETING, st.data())
def test_burns_non_negative_firing_implies_above_threshold_and_order_free(
    steps: list, target: Fraction, budgeting: str, data: st.DataObject
) -> None:
    slo = timeslice_slo(target, budgeting, min_events=data.draw(st.integers(0, 3)))
    report = evaluate_slo(slo, StepCounts(steps), NOW)
    assert all(w.burn_rate is None or w.burn_rate >= 0 for w in report.windows.values())
    for c in report.conditions:
        if c.firing:
            assert c.long_burn_rate is not None and c.long_burn_rate > c.threshold
            assert c.short_burn_rate is not None and c.short_burn_rate > c.threshold
        # firing agrees with the exact Fraction comparison of the reported burns
        assert c.firing == (
            not c.low_traffic
            and c.long_burn_rate is not None
            and c.short_burn_rate is not None
            and c.long_burn_rate > c.threshold
            and c.short_burn_rate > c.threshold
        )
    shuffled = data.draw(st.permutations(steps))
    assert evaluate_slo(slo, StepCounts(shuffled), NOW) == report
    doc = report_json(report)
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc


@settings(max_examples=60, deadline=None)
@given(STEPS, TARGETS, BUDGETING, st.data())
def test_remaining_budget_never_rises_when_bad_events_are_added(
    steps: list, target: Fraction, budgeting: str, data: st.DataObject
) -> None:
    slo = timeslice_slo(target, budgeting)
    before = evaluate_slo(slo, StepCounts(steps), NOW).budget
    extra = data.draw(st.integers(1, 50))
    new_ts = NOW - data.draw(st.integers(0, 30 * 1440 - 1)) * MIN
    if steps and (data.draw(st.booleans()) or any(r[0] == new_ts for r in steps)):
        i = data.draw(st.integers(0, len(steps) - 1))
        ts, good, total = steps[i]
        flip = data.draw(st.integers(0, good))  # turn some good events bad, then add more bad ones
        worse = [*steps[:i], (ts, good - flip, total + extra), *steps[i + 1 :]]
    else:
        worse = [*steps, (new_ts, 0, extra)]  # a new step of bad events only
    after = evaluate_slo(slo, StepCounts(worse), NOW).budget
    assert after.remaining_fraction is not None
    if before.remaining_fraction is not None:
        assert after.remaining_fraction <= before.remaining_fraction


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    TARGETS,
    st.fractions(min_value=-10, max_value=2000, max_denominator=10**6),
)
def test_burn_exceeds_agrees_with_fraction_comparison(
    a: int, b: int, target: Fraction, thr: Fraction
) -> None:
    bad, total = min(a, b), max(a, b)
    if total == 0:
        expected = False
    elif target == 1:
        expected = (INF if bad else Fraction(0)) > thr
    else:
        expected = Fraction(bad, total) / (1 - target) > thr
    assert burn_exceeds(bad, total, target, thr) is expected


def test_sli_source_since_clips_reads_and_partial_segments_are_no_segment(sqlite_engine: Any) -> None:
    from sqlalchemy import insert

    from qfleet.slo.schema import SloCount
    from qfleet.slo.sli import STEP, SliSource, _partial, counts_key

    slo = SLO(name="jobs", service="s", target=Fraction(9, 10), period=Period(rolling_ns=DAY), budgeting="Occurrences",
              indicator=SpanRatioIndicator(span="qfleet.job"), policy=AlertPolicy(name="p", pairs=()))
    with sqlite_engine.begin() as conn:
        conn.execute(insert(SloCount), [{"slo": counts_key(slo), "segment": "", "bucket_start_unix_nano": m * STEP,
                                         "good": 1, "total": 2} for m in range(10)])
    at = 10 * STEP
    whole = SliSource(sqlite_engine).minute_counts(slo, 0, at)[""]
    clipped = SliSource(sqlite_engine, since_ns=4 * STEP + 1).minute_counts(slo, 0, at)[""]
    assert len(whole) == 10 and [t for t, _ in clipped] == [m * STEP for m in range(5, 11)]
    [(_, total)] = SliSource(sqlite_engine, since_ns=7 * STEP).interval_counts(slo, at, [0])[""]
    assert (total.good, total.total) == (3, 6)
    assert _partial("hardware_type=") and not _partial("hardware_type=ion")
