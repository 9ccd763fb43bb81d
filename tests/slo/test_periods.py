"""Rolling and calendar periods (sre.md §6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qfleet.slo.model import Calendar, Period
from qfleet.slo.periods import PeriodError, period_bounds, period_key
from qfleet.units import NS, format_rfc3339, parse_rfc3339

H = 3600 * NS
DAY = 24 * H


def cal(unit: str, start: str, zone: str = "UTC", count: int = 1) -> Period:
    calendar = Calendar(count=count, unit=unit, start=start, time_zone=zone)  # type: ignore[arg-type]
    return Period(calendar=calendar)


def t(text: str) -> int:
    return parse_rfc3339(text)


# sre.md §6 table "period | zone | UTC bounds | length", row by row. The "now" of each row is a day inside it.
SRE_MD_6 = [
    pytest.param(
        cal("M", "2025-01-01 00:00:00"),
        "2025-01-15T00:00:00Z",
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00Z",
        31 * DAY,
        id="Jan 2025 UTC is 31 d",
    ),
    pytest.param(
        cal("M", "2024-01-01 00:00:00"),
        "2024-02-15T00:00:00Z",
        "2024-02-01T00:00:00Z",
        "2024-03-01T00:00:00Z",
        29 * DAY,
        id="Feb 2024 (leap) is 29 d",
    ),
    pytest.param(
        cal("M", "2025-01-01 00:00:00"),
        "2025-02-15T00:00:00Z",
        "2025-02-01T00:00:00Z",
        "2025-03-01T00:00:00Z",
        28 * DAY,
        id="Feb 2025 is 28 d",
    ),
    pytest.param(
        cal("M", "2025-01-01 00:00:00", "America/New_York"),
        "2025-03-15T00:00:00Z",
        "2025-03-01T05:00:00Z",
        "2025-04-01T04:00:00Z",
        743 * H,
        id="Mar 2025 New York (DST starts) 743 h",
    ),
    pytest.param(
        cal("M", "2025-01-01 00:00:00", "America/New_York"),
        "2025-11-15T00:00:00Z",
        "2025-11-01T04:00:00Z",
        "2025-12-01T05:00:00Z",
        721 * H,
        id="Nov 2025 New York (DST ends) 721 h",
    ),
    pytest.param(
        cal("w", "2025-01-06 00:00:00"),
        "2025-01-15T00:00:00Z",
        "2025-01-13T00:00:00Z",
        "2025-01-20T00:00:00Z",
        7 * DAY,
        id="week from Mon 2025-01-06, now 01-15",
    ),
    pytest.param(
        cal("Q", "2025-01-01 00:00:00"),
        "2025-05-15T00:00:00Z",
        "2025-04-01T00:00:00Z",
        "2025-07-01T00:00:00Z",
        91 * DAY,
        id="Q2 2025 (1Q from 01-01) is 91 d",
    ),
]


@pytest.mark.parametrize(("period", "now", "start", "end", "length"), SRE_MD_6)
def test_calendar_table_rows_of_sre_md_6(period: Period, now: str, start: str, end: str, length: int) -> None:
    lo, hi = period_bounds(period, t(now))
    assert (format_rfc3339(lo), format_rfc3339(hi)) == (start, end)
    assert hi - lo == length


def test_utc_instant_before_local_midnight_is_in_the_local_previous_month() -> None:
    # sre.md §6: 2025-03-01T03:00Z is Feb 28, 22:00 EST, so the New York period is February.
    ny = cal("M", "2025-01-01 00:00:00", "America/New_York")
    assert period_bounds(ny, t("2025-03-01T03:00:00Z")) == (
        t("2025-02-01T05:00:00Z"),
        t("2025-03-01T05:00:00Z"),
    )
    # ... while in UTC that same instant is already in March.
    assert period_bounds(cal("M", "2025-01-01 00:00:00"), t("2025-03-01T03:00:00Z"))[0] == t(
        "2025-03-01T00:00:00Z"
    )


def test_now_exactly_at_a_period_start_opens_the_new_period() -> None:
    # sre.md §6: "now exactly at a period start is in the new period (elapsed 0)".
    feb = t("2025-02-01T00:00:00Z")
    month = cal("M", "2025-01-01 00:00:00")
    assert period_bounds(month, feb) == (feb, t("2025-03-01T00:00:00Z"))
    assert period_bounds(month, feb - 1) == (t("2025-01-01T00:00:00Z"), feb)


def test_anchor_day_past_a_short_month_clamps_then_returns() -> None:
    # sre.md §6: an anchor day past the end of a short month clamps to that month's last day.
    p = cal("M", "2025-01-31 00:00:00")
    assert period_bounds(p, t("2025-02-15T00:00:00Z")) == (
        t("2025-01-31T00:00:00Z"),
        t("2025-02-28T00:00:00Z"),
    )
    assert period_bounds(p, t("2025-03-10T00:00:00Z")) == (
        t("2025-02-28T00:00:00Z"),
        t("2025-03-31T00:00:00Z"),
    )
    assert period_bounds(p, t("2025-04-30T12:00:00Z")) == (
        t("2025-04-30T00:00:00Z"),
        t("2025-05-31T00:00:00Z"),
    )
    assert period_bounds(p, t("2024-02-29T12:00:00Z")) == (
        t("2024-02-29T00:00:00Z"),
        t("2024-03-31T00:00:00Z"),
    )


def test_anchor_time_of_day_and_periods_before_the_anchor() -> None:
    # OpenSLO example startTime "2020-01-21 12:30:00" America/New_York (EST, UTC-5 in January).
    p = cal("M", "2020-01-21 12:30:00", "America/New_York")
    assert period_bounds(p, t("2020-02-01T00:00:00Z")) == (
        t("2020-01-21T17:30:00Z"),
        t("2020-02-21T17:30:00Z"),
    )
    assert period_bounds(p, t("2019-12-25T00:00:00Z")) == (
        t("2019-12-21T17:30:00Z"),
        t("2020-01-21T17:30:00Z"),
    )
    assert period_bounds(p, t("2019-12-20T00:00:00Z")) == (
        t("2019-11-21T17:30:00Z"),
        t("2019-12-21T17:30:00Z"),
    )
    assert period_bounds(p, t("2019-12-21T17:30:00Z"))[0] == t("2019-12-21T17:30:00Z")


def test_days_step_in_local_wall_clock_across_dst() -> None:
    # 1d in New York: midnight to midnight, 23 h on 2025-03-09 (spring forward) and 25 h on 2025-11-02.
    day = cal("d", "2025-01-01 00:00:00", "America/New_York")
    assert period_bounds(day, t("2025-03-09T12:00:00Z")) == (
        t("2025-03-09T05:00:00Z"),
        t("2025-03-10T04:00:00Z"),
    )
    lo, hi = period_bounds(day, t("2025-11-02T12:00:00Z"))
    assert (lo, hi - lo) == (t("2025-11-02T04:00:00Z"), 25 * H)
    # 2w counts: 2025-01-06 + 2 w = 01-20, + 4 w = 02-03.
    fortnight = cal("w", "2025-01-06 00:00:00", count=2)
    assert period_bounds(fortnight, t("2025-02-01T00:00:00Z")) == (
        t("2025-01-20T00:00:00Z"),
        t("2025-02-03T00:00:00Z"),
    )
    year = cal("Y", "2024-07-01 00:00:00", "Europe/Amsterdam")
    assert period_bounds(year, t("2025-01-01T00:00:00Z")) == (
        t("2024-06-30T22:00:00Z"),
        t("2025-06-30T22:00:00Z"),
    )


def test_anchor_in_a_dst_gap_resolves_forward() -> None:
    # 02:30 on 2025-03-09 does not exist in New York; PEP 495 fold=0 reads it with the pre-gap offset (EST).
    p = cal("d", "2025-03-09 02:30:00", "America/New_York")
    assert period_bounds(p, t("2025-03-09T08:00:00Z"))[0] == t("2025-03-09T07:30:00Z")
    assert period_bounds(p, t("2025-03-11T08:00:00Z"))[0] == t("2025-03-11T06:30:00Z")  # 02:30 EDT


def test_rolling_period_is_left_open_right_closed() -> None:
    p = Period(rolling_ns=30 * DAY)
    assert period_bounds(p, 100 * DAY) == (70 * DAY, 100 * DAY)
    assert period_key(p) == "30d"
    assert period_key(Period(rolling_ns=28 * DAY)) == "28d"  # one unit, as the rule name rate28d
    assert period_key(Period(rolling_ns=90 * 60 * NS)) == "90m"
    assert period_key(cal("M", "2025-01-01 00:00:00")) == "calendar"


@pytest.mark.parametrize(
    ("period", "needle"),
    [
        (cal("M", "2025-01-01"), "YYYY-MM-DD HH:MM:SS"),
        (cal("M", "2025-02-30 00:00:00"), "not a real date"),
        (cal("M", "2025-01-01 00:00:00", "Mars/Olympus"), "IANA"),
        (cal("M", "2025-01-01 00:00:00", count=0), "positive whole number"),
        (cal("x", "2025-01-01 00:00:00"), "d, w, M, Q, Y"),
    ],
    ids=["start without time", "impossible date", "unknown zone", "zero count", "unknown unit"],
)
def test_bad_calendars_are_rejected_with_a_fix(period: Period, needle: str) -> None:
    with pytest.raises(PeriodError, match=needle):
        period_bounds(period, t("2025-01-15T00:00:00Z"))


CALENDARS = [
    cal("M", "2025-01-31 00:00:00", "America/New_York"),
    cal("w", "2025-01-06 09:00:00", "Europe/Amsterdam"),
    cal("Q", "2024-02-29 00:00:00", "Australia/Lord_Howe"),
    cal("d", "2025-03-09 02:30:00", "America/New_York", count=3),
    cal("Y", "2020-01-01 00:00:00"),
]


@given(st.sampled_from(CALENDARS), st.integers(t("2015-01-01T00:00:00Z"), t("2035-01-01T00:00:00Z")))
def test_calendar_periods_contain_now_and_tile_time(period: Period, at: int) -> None:
    lo, hi = period_bounds(period, at)
    assert lo <= at < hi
    assert period_bounds(period, hi) == (hi, period_bounds(period, hi)[1])  # the next period starts at hi
    assert period_bounds(period, lo - 1)[1] == lo  # the previous one ends at lo
    assert hi - lo >= 20 * H  # a 1d period with a DST gap is at least 23 h; nothing shorter here


def test_boundaries_are_local_midnights() -> None:
    ny = cal("M", "2025-01-01 00:00:00", "America/New_York")
    from zoneinfo import ZoneInfo

    for month in range(1, 13):
        lo, _ = period_bounds(ny, t(f"2025-{month:02d}-15T00:00:00Z"))
        local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=lo // 1000)).astimezone(
            ZoneInfo("America/New_York")
        )
        assert (local.month, local.day, local.hour, local.minute) == (month, 1, 0, 0)
