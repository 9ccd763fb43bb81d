"""Time intervals (sre.md §17.3): parsing, evaluation in the interval's zone, and route muting."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qfleet.alerts.config import ConfigError, config_from_dict
from qfleet.alerts.intervals import IntervalError, active_at, contains, muted, parse_time_intervals
from qfleet.alerts.model import TimeInterval, TimeRange
from qfleet.alerts.routing import resolve
from qfleet.units import NS


def ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) * NS


def one(**fields: object) -> TimeInterval:
    intervals, problems, warnings = parse_time_intervals([fields], "t")
    assert problems == [] and warnings == []
    return intervals[0]


def problems_of(**fields: object) -> list[str]:
    got = parse_time_intervals([fields], "t")[1]
    assert all(p.path.startswith("t[0]") and p.fix and p.code for p in got), got
    return [str(p) for p in got]


TUE_2_TO_4_AMS = {"weekdays": ["tuesday"], "times": [{"start_time": "02:00", "end_time": "04:00"}],
                  "location": "Europe/Amsterdam"}


# sre.md §17.3: "Weekday and time are evaluated in `location`: Mon 23:30 UTC is Tue 00:30 in Amsterdam"
def test_weekday_is_evaluated_in_the_location() -> None:
    mon_2330z = ns("2025-01-13T23:30:00Z")
    assert contains(one(weekdays=["tuesday"], location="Europe/Amsterdam"), mon_2330z)
    assert not contains(one(weekdays=["tuesday"]), mon_2330z)          # in UTC it is still Monday
    assert contains(one(weekdays=["monday"]), mon_2330z)


# sre.md §17.3: "a Tue 02:00–04:00 window there contains 01:00Z in winter and 00:30Z in summer, but not 03:00Z"
@pytest.mark.parametrize(("instant", "inside"), [
    ("2025-01-14T01:00:00Z", True),     # winter, CET = UTC+1: 02:00 local
    ("2025-07-15T00:30:00Z", True),     # summer, CEST = UTC+2: 02:30 local
    ("2025-01-14T03:00:00Z", False),    # winter: 04:00 local, the window is [02:00, 04:00)
    ("2025-07-15T03:00:00Z", False),    # summer: 05:00 local
    ("2025-01-14T00:59:00Z", False),    # winter: 01:59 local
    ("2025-07-15T01:59:00Z", True),     # summer: 03:59 local
])
def test_amsterdam_window_across_dst(instant: str, inside: bool) -> None:
    assert contains(one(**TUE_2_TO_4_AMS), ns(instant)) is inside


def test_spring_forward_hour_never_happens() -> None:
    # 2025-03-30: Amsterdam clocks jump 02:00 -> 03:00, so a 02:00-03:00 window is empty that night.
    window = one(times=[{"start_time": "02:00", "end_time": "03:00"}], location="Europe/Amsterdam")
    day = ns("2025-03-29T22:00:00Z")
    assert not any(contains(window, day + m * 60 * NS) for m in range(0, 8 * 60))
    assert contains(window, ns("2025-03-31T00:30:00Z"))                 # the next night, CEST 02:30


# sre.md §17.3: "times: [{start_time, end_time}] as [start, end) in minutes"
def test_times_are_half_open() -> None:
    i = one(times=[{"start_time": "09:00", "end_time": "17:00"}])
    assert i.times == (TimeRange(540, 1020),)
    assert contains(i, ns("2025-01-14T09:00:00Z"))
    assert contains(i, ns("2025-01-14T16:59:59Z"))
    assert not contains(i, ns("2025-01-14T17:00:00Z"))
    assert contains(one(times=[{"start_time": "23:00", "end_time": "24:00"}]), ns("2025-01-14T23:59:00Z"))


# sre.md §17.3: "weekday/month/year ranges inclusive"
def test_weekday_month_year_ranges_are_inclusive() -> None:
    weekdays = one(weekdays=["monday:friday"])
    assert contains(weekdays, ns("2025-01-13T00:00:00Z"))              # Monday
    assert contains(weekdays, ns("2025-01-17T23:59:00Z"))              # Friday
    assert not contains(weekdays, ns("2025-01-18T12:00:00Z"))          # Saturday
    months = one(months=["march:may"])
    assert contains(months, ns("2025-03-01T00:00:00Z")) and contains(months, ns("2025-05-31T23:00:00Z"))
    assert not contains(months, ns("2025-06-01T00:00:00Z"))
    assert one(months=["3:5"]) == months and one(months=["March:MAY"]) == months
    years = one(years=["2025:2026"])
    assert contains(years, ns("2026-12-31T23:00:00Z")) and not contains(years, ns("2027-01-01T00:00:00Z"))


def test_sunday_ranges_convert_to_monday_zero() -> None:
    assert one(weekdays=["sunday:tuesday"]).weekdays == ((6, 6), (0, 1))
    assert contains(one(weekdays=["sunday:tuesday"]), ns("2025-01-19T10:00:00Z"))   # a Sunday


# sre.md §17.3: "negative days_of_month count from the month end (-1 = last day)"
@pytest.mark.parametrize(("instant", "inside"), [
    ("2025-02-28T12:00:00Z", True),
    ("2024-02-29T12:00:00Z", True),
    ("2024-02-28T12:00:00Z", False),
    ("2025-01-31T12:00:00Z", True),
    ("2025-01-30T12:00:00Z", False),
])
def test_negative_day_of_month_is_the_last_day(instant: str, inside: bool) -> None:
    assert contains(one(days_of_month=["-1"]), ns(instant)) is inside


def test_day_31_does_not_spill_into_short_months() -> None:
    i = one(days_of_month=["31"])
    assert not contains(i, ns("2025-04-30T12:00:00Z")) and not contains(i, ns("2025-05-01T12:00:00Z"))
    assert contains(one(days_of_month=["-3:-1", "1:2"]), ns("2025-04-28T00:00:00Z"))
    assert contains(one(days_of_month=["1:-1"]), ns("2025-04-15T00:00:00Z"))


# sre.md §17.3: "every given field must match, any list element suffices"
def test_every_field_must_match_any_element_suffices() -> None:
    i = one(weekdays=["saturday", "sunday"], times=[{"start_time": "00:00", "end_time": "06:00"},
                                                     {"start_time": "22:00", "end_time": "24:00"}])
    assert contains(i, ns("2025-01-18T23:00:00Z"))                     # Saturday, second time range
    assert contains(i, ns("2025-01-19T05:00:00Z"))                     # Sunday, first range
    assert not contains(i, ns("2025-01-18T12:00:00Z"))                 # weekend, no time range
    assert not contains(i, ns("2025-01-17T23:00:00Z"))                 # time matches, Friday
    assert active_at([one(weekdays=["monday"]), one(weekdays=["saturday"])], ns("2025-01-18T12:00:00Z"))
    assert contains(TimeInterval(), 0)                                  # no fields: always


# sre.md §17.3: "`location` is an IANA zone (UTC if omitted)"
def test_location_defaults_to_utc() -> None:
    assert one(times=[{"start_time": "00:00", "end_time": "01:00"}]).location == "UTC"
    assert contains(one(times=[{"start_time": "00:00", "end_time": "01:00"}]), ns("2025-07-15T00:30:00Z"))


@pytest.mark.parametrize(("fields", "needle"), [
    ({"weekdays": ["saturday:sunday"]}, "start day cannot be before end day"),   # as Alertmanager
    ({"weekdays": ["funday"]}, "'funday' is not a weekday"),
    ({"times": [{"start_time": "25:00", "end_time": "26:00"}]}, "'25:00' is not a time of day"),
    ({"times": [{"start_time": "10:00", "end_time": "10:00"}]}, "must be before end time"),
    ({"times": [{"start_time": "10:00"}]}, "both start_time and end_time are required"),
    ({"days_of_month": ["0"]}, "'0' is not a day of the month"),
    ({"days_of_month": ["-1:5"]}, "end day must be negative"),
    ({"days_of_month": ["10:5"]}, "end day 5 is before start day 10"),
    ({"months": ["13"]}, "'13' is not a month"),
    ({"years": ["2027:2025"]}, "end year 2025 is before start year 2027"),
    ({"location": "Mars/Olympus"}, "'Mars/Olympus' is not a known IANA time zone"),
    ({"weekday": ["monday"]}, "t[0].weekday: unknown key"),
])
def test_bad_intervals_are_problems(fields: dict[str, object], needle: str) -> None:
    problems = problems_of(**fields)
    assert any(needle in p for p in problems), problems


def test_local_location_is_a_warning() -> None:
    intervals, problems, warnings = parse_time_intervals([{"location": "Local"}], "t")
    assert problems == [] and intervals[0].location == "UTC"
    [warning] = warnings
    assert warning.path == "t[0].location" and "'Local'" in warning.message and "IANA" in warning.fix


CONFIG = {
    "route": {"receiver": "r", "routes": [
        {"matchers": ["kind=\"muted\""], "mute_time_intervals": ["maint"]},
        {"matchers": ["kind=\"active\""], "active_time_intervals": ["maint"]},
        {"matchers": ["kind=\"both\""], "mute_time_intervals": ["never"], "active_time_intervals": ["maint"]},
    ]},
    "receivers": [{"name": "r"}],
    "time_intervals": [
        {"name": "maint", "time_intervals": [TUE_2_TO_4_AMS]},
        {"name": "never", "time_intervals": [{"years": ["1999"]}]},
    ],
}


# sre.md §17.3: "Routes use them via `mute_time_intervals` / `active_time_intervals`" (§17.1: "muted / outside
# which muted")
@pytest.mark.parametrize(("kind", "in_window", "out_of_window"), [
    ("muted", True, False), ("active", False, True), ("both", False, True), ("none", False, False)])
def test_muted_by_mute_and_active_intervals(kind: str, in_window: bool, out_of_window: bool) -> None:
    cfg, _ = config_from_dict(CONFIG)
    [route] = resolve(cfg, {"kind": kind})
    assert muted(cfg, route, ns("2025-01-14T01:30:00Z")) is in_window
    assert muted(cfg, route, ns("2025-01-14T12:00:00Z")) is out_of_window


def test_mute_intervals_are_not_inherited() -> None:
    doc = {"route": {"receiver": "r", "routes": [{"matchers": ["a=\"1\""], "mute_time_intervals": ["m"],
                                                  "routes": [{"matchers": ["b=\"1\""]}]}]},
           "receivers": [{"name": "r"}], "time_intervals": [{"name": "m", "time_intervals": [{}]}]}
    cfg, _ = config_from_dict(doc)
    [parent] = resolve(cfg, {"a": "1"})
    [child] = resolve(cfg, {"a": "1", "b": "1"})
    assert muted(cfg, parent, 0) and not muted(cfg, child, 0)


def test_muted_names_an_undefined_interval() -> None:
    cfg, _ = config_from_dict(CONFIG)
    [route] = resolve(cfg, {"kind": "muted"})
    bare = type(cfg)(route=cfg.route, receivers=cfg.receivers)
    with pytest.raises(IntervalError, match="'maint'"):
        muted(bare, route, 0)


def test_undefined_interval_in_a_route_is_a_config_problem() -> None:
    doc = {"route": {"receiver": "r", "routes": [{"mute_time_intervals": ["nope"]}]}, "receivers": [{"name": "r"}]}
    with pytest.raises(ConfigError, match=r"route.routes\[0\].mute_time_intervals: time interval 'nope'"):
        config_from_dict(doc)


@given(st.integers(min_value=0, max_value=4_102_444_800), st.sampled_from(["UTC", "Europe/Amsterdam",
                                                                          "America/New_York", "Asia/Kolkata"]))
def test_complementary_intervals_partition_time(t_s: int, zone: str) -> None:
    days = [one(weekdays=["monday:friday"], location=zone), one(weekdays=["saturday", "sunday"], location=zone)]
    halves = [one(times=[{"start_time": "00:00", "end_time": "12:00"}], location=zone),
              one(times=[{"start_time": "12:00", "end_time": "24:00"}], location=zone)]
    t = t_s * NS
    assert [contains(d, t) for d in days].count(True) == 1
    assert [contains(h, t) for h in halves].count(True) == 1
    local = datetime.fromtimestamp(t_s, tz=UTC).astimezone(ZoneInfo(zone))
    assert contains(days[0], t) is (local.weekday() < 5)
