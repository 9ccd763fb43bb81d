"""Alertmanager time intervals: parsing the YAML form and asking whether an instant falls inside (sre.md §17.3).

An interval matches when every field it gives matches (any element of a list suffices); ``times`` are
``[start, end)`` minutes of the day, weekday / day-of-month / month / year ranges are inclusive, negative days of
the month count from its end (``-1`` is the last day), and all of it is evaluated in ``location`` (UTC if
omitted). The rules follow Alertmanager's ``timeinterval/timeinterval.go``, including its load-time checks
(``saturday:sunday`` is rejected there because Go numbers Sunday 0: write ``[saturday, sunday]``).

>>> from qfleet.units import NS
>>> [winter] = parse_time_intervals([{"weekdays": ["tuesday"], "times": [{"start_time": "02:00",
...                                   "end_time": "04:00"}], "location": "Europe/Amsterdam"}], "x")[0]
>>> active_at([winter], 1_736_823_600 * NS)   # Tue 2025-01-14 03:00 UTC = 04:00 CET: the window is over
False
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from qfleet.alerts.model import TimeInterval, TimeRange
from qfleet.problems import Problem, Problems
from qfleet.units import NS

if TYPE_CHECKING:
    from qfleet.alerts.model import AlertingConfig, ResolvedRoute

__all__ = ["IntervalError", "active_at", "contains", "muted", "parse_time_intervals"]

_WEEKDAYS_GO = {name: i for i, name in enumerate(
    ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"])}
_MONTHS = {name: i + 1 for i, name in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"])}
_TIME = re.compile(r"^(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))$")
_T = TypeVar("_T")
_KEYS = ("times", "weekdays", "days_of_month", "months", "years", "location")


class IntervalError(ValueError):
    """A route names a time interval the configuration does not define."""


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def contains(interval: TimeInterval, t_ns: int) -> bool:
    """Whether instant ``t_ns`` (Unix ns) lies inside ``interval`` (every given field must match).

    >>> contains(TimeInterval(weekdays=((0, 4),)), 1_736_812_800 * NS)   # Tue 2025-01-14 00:00 UTC
    True
    """
    t = datetime.fromtimestamp(t_ns // NS, tz=UTC)
    if interval.location != "UTC":
        t = t.astimezone(_zone(interval.location))
    if interval.times:
        minute = t.hour * 60 + t.minute
        if not any(r.start_minute <= minute < r.end_minute for r in interval.times):
            return False
    if interval.days_of_month:
        n_days = calendar.monthrange(t.year, t.month)[1]
        hit = False
        for lo, hi in interval.days_of_month:
            begin = n_days + lo + 1 if lo < 0 else lo
            end = n_days + hi + 1 if hi < 0 else hi
            if begin > n_days:  # e.g. 31 in a 30-day month: this range does not exist this month
                continue
            begin, end = max(-n_days, min(begin, n_days)), max(-n_days, min(end, n_days))
            if begin <= t.day <= end:
                hit = True
                break
        if not hit:
            return False
    if interval.months and not any(lo <= t.month <= hi for lo, hi in interval.months):
        return False
    if interval.weekdays and not any(lo <= t.weekday() <= hi for lo, hi in interval.weekdays):
        return False
    return not interval.years or any(lo <= t.year <= hi for lo, hi in interval.years)


def active_at(intervals: Sequence[TimeInterval], t_ns: int) -> bool:
    """Whether any of ``intervals`` (one named ``time_intervals`` entry) contains ``t_ns``.

    >>> active_at([], 0)
    False
    """
    return any(contains(i, t_ns) for i in intervals)


def muted(config: AlertingConfig, route: ResolvedRoute, t_ns: int) -> bool:
    """Whether ``route`` is muted at ``t_ns``: one of its ``mute_time_intervals`` is active, or it names
    ``active_time_intervals`` and none of them is active.

    Raises:
        IntervalError: the route names an interval missing from ``config.time_intervals``.
    """

    def named(name: str) -> Sequence[TimeInterval]:
        try:
            return config.time_intervals[name]
        except KeyError:
            raise IntervalError(f"route {route.key!r} names time interval {name!r}, which the config does not "
                                f"define; add it under time_intervals (defined: "
                                f"{sorted(config.time_intervals)})") from None

    if any(active_at(named(n), t_ns) for n in route.mute_time_intervals):
        return True
    return bool(route.active_time_intervals) and not any(
        active_at(named(n), t_ns) for n in route.active_time_intervals)


# -- parsing -----------------------------------------------------------------------------------------------


def _split(text: str) -> tuple[str, str]:
    lo, sep, hi = text.partition(":")
    return (lo.strip(), hi.strip()) if sep else (lo.strip(), lo.strip())


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _items(value: Any, path: str, found: Problems) -> list[str]:
    if not isinstance(value, list):
        found.add(path, f"expected a list, got {value!r}", "write a YAML list, e.g. ['monday:friday']", "bad_type")
        return []
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, str | int):
            found.add(f"{path}[{i}]", f"expected a string, got {v!r}", "write e.g. 'monday:friday'", "bad_type")
        else:
            out.append(str(v).strip().lower())
    return out


def _weekdays(value: Any, path: str, found: Problems) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, found)):
        lo_s, hi_s = _split(text)
        lo, hi = _WEEKDAYS_GO.get(lo_s), _WEEKDAYS_GO.get(hi_s)
        if lo is None or hi is None:
            found.add(f"{path}[{i}]", f"{text!r} is not a weekday or range of weekdays",
                      "use names such as 'monday' or 'monday:friday'", "bad_interval")
            continue
        if lo > hi:  # Go numbers Sunday 0, so Alertmanager rejects saturday:sunday
            found.add(f"{path}[{i}]", f"{text!r}: start day cannot be before end day (Sunday is the first day, "
                      "as in Alertmanager)", "list them instead, e.g. [saturday, sunday]", "bad_interval")
            continue
        # Convert Sunday=0 numbering to the model's Monday=0.
        if lo == 0:
            out.append((6, 6))
            if hi >= 1:
                out.append((0, hi - 1))
        else:
            out.append((lo - 1, hi - 1))
    return tuple(out)


def _days(value: Any, path: str, found: Problems) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, found)):
        lo_s, hi_s = _split(text)
        lo, hi = _int(lo_s), _int(hi_s)
        if lo is None or hi is None or not (0 < abs(lo) <= 31 and 0 < abs(hi) <= 31):
            found.add(f"{path}[{i}]", f"{text!r} is not a day of the month or range",
                      "use 1..31 or -31..-1 (-1 is the last day), e.g. '1:7' or '-3:-1'", "bad_interval")
        elif lo < 0 < hi:
            found.add(f"{path}[{i}]", f"{text!r}: end day must be negative if start day is negative",
                      "write e.g. '-7:-1'", "bad_interval")
        # As Alertmanager: compare assuming the shortest (28-day) month, so the range is never empty.
        elif (28 + lo if lo < 0 else lo) > (28 + hi if hi < 0 else hi):
            found.add(f"{path}[{i}]", f"{text!r}: end day {hi} is before start day {lo}",
                      "write the earlier day first", "bad_interval")
        else:
            out.append((lo, hi))
    return tuple(out)


def _months(value: Any, path: str, found: Problems) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, found)):
        lo_s, hi_s = _split(text)
        lo = _MONTHS.get(lo_s, _int(lo_s))
        hi = _MONTHS.get(hi_s, _int(hi_s))
        if lo is None or hi is None or not (1 <= lo <= 12 and 1 <= hi <= 12):
            found.add(f"{path}[{i}]", f"{text!r} is not a month or range of months",
                      "use names or 1..12, e.g. 'january:march' or '1:3'", "bad_interval")
        elif lo > hi:
            found.add(f"{path}[{i}]", f"{text!r}: end month {hi} is before start month {lo}",
                      "write the earlier month first", "bad_interval")
        else:
            out.append((lo, hi))
    return tuple(out)


def _years(value: Any, path: str, found: Problems) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, found)):
        lo_s, hi_s = _split(text)
        lo, hi = _int(lo_s), _int(hi_s)
        if lo is None or hi is None or lo <= 0 or hi <= 0:
            found.add(f"{path}[{i}]", f"{text!r} is not a year or range of years", "write e.g. '2026' or '2026:2027'",
                      "bad_interval")
        elif lo > hi:
            found.add(f"{path}[{i}]", f"{text!r}: end year {hi} is before start year {lo}",
                      "write the earlier year first", "bad_interval")
        else:
            out.append((lo, hi))
    return tuple(out)


def _minute(value: Any, path: str, found: Problems) -> int | None:
    m = _TIME.match(value) if isinstance(value, str) else None
    if m is None:
        found.add(path, f"{value!r} is not a time of day", "use HH:MM from 00:00 to 24:00, e.g. '09:30'",
                  "bad_interval")
        return None
    hh, mm = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(hh) * 60 + int(mm)


def _time_range(item: Any, p: str, found: Problems) -> TimeRange | None:
    if not isinstance(item, dict):
        found.add(p, f"expected a mapping, got {item!r}", "write {start_time: 'HH:MM', end_time: 'HH:MM'}",
                  "bad_type")
        return None
    for key in sorted(set(item) - {"start_time", "end_time"}):
        found.add(f"{p}.{key}", "unknown key", "a time range has start_time and end_time", "unknown_key")
    if "start_time" not in item or "end_time" not in item:
        found.add(p, "both start_time and end_time are required", "write {start_time: '09:00', end_time: '17:00'}",
                  "required")
        return None
    start = _minute(item["start_time"], f"{p}.start_time", found)
    end = _minute(item["end_time"], f"{p}.end_time", found)
    if start is None or end is None:
        return None
    if start >= end:
        found.add(p, f"start time {item['start_time']!r} must be before end time {item['end_time']!r}",
                  "a range is [start, end) within one day; split one across midnight in two", "bad_interval")
        return None
    return TimeRange(start, end)


def _times(value: Any, path: str, found: Problems) -> tuple[TimeRange, ...]:
    if not isinstance(value, list):
        found.add(path, f"expected a list of {{start_time, end_time}}, got {value!r}",
                  "write e.g. [{start_time: '09:00', end_time: '17:00'}]", "bad_type")
        return ()
    ranges = (_time_range(item, f"{path}[{i}]", found) for i, item in enumerate(value))
    return tuple(r for r in ranges if r is not None)


def _location(item: dict[str, Any], p: str, found: Problems) -> str:
    location = item.get("location")
    if location is None or location == "UTC":
        return "UTC"
    if not isinstance(location, str):
        found.add(f"{p}.location", f"expected an IANA zone name, got {location!r}", "write e.g. 'Europe/Amsterdam'",
                  "bad_type")
        return "UTC"
    if location == "Local":
        found.warn(f"{p}.location", "'Local' (the server's zone) is not supported, qfleet evaluates it as UTC",
                   "name an IANA zone such as 'Europe/Amsterdam'", "unsupported")
        return "UTC"
    try:
        _zone(location)
    except (ZoneInfoNotFoundError, ValueError):
        found.add(f"{p}.location", f"{location!r} is not a known IANA time zone", "use e.g. 'Europe/Amsterdam' or 'UTC'",
                  "bad_zone")
        return "UTC"
    return location


def _interval(item: Any, p: str, found: Problems) -> TimeInterval | None:
    if not isinstance(item, dict):
        found.add(p, f"expected a mapping, got {item!r}", f"give some of the keys {', '.join(_KEYS)}", "bad_type")
        return None
    for key in sorted(set(item) - set(_KEYS)):
        found.add(f"{p}.{key}", "unknown key", f"an interval has {', '.join(_KEYS)}", "unknown_key")
    return TimeInterval(location=_location(item, p, found), times=_field(item, "times", p, found, _times),
                        weekdays=_field(item, "weekdays", p, found, _weekdays),
                        days_of_month=_field(item, "days_of_month", p, found, _days),
                        months=_field(item, "months", p, found, _months),
                        years=_field(item, "years", p, found, _years))


def _field(item: dict[str, Any], key: str, p: str, found: Problems,
           parse: Callable[[Any, str, Problems], tuple[_T, ...]]) -> tuple[_T, ...]:
    return parse(item[key], f"{p}.{key}", found) if item.get(key) is not None else ()


def parse_time_intervals(value: Any, path: str) -> tuple[tuple[TimeInterval, ...], list[Problem], list[Problem]]:
    """Parse one entry's ``time_intervals`` list.

    Returns:
        ``(intervals, problems, warnings)``; each problem and warning has its key path under ``path``.

    Examples:
        >>> print(parse_time_intervals([{"months": ["march:january"]}], "time_intervals[0].time_intervals")[1][0])
        time_intervals[0].time_intervals[0].months[0]: 'march:january': end month 1 is before start month 3 (fix: write the earlier month first)
    """
    found = Problems()
    if not isinstance(value, list):
        found.add(path, f"expected a list of intervals, got {value!r}", "write e.g. [{weekdays: [saturday, sunday]}]",
                  "bad_type")
        return (), found.items, found.warnings
    intervals = (_interval(item, f"{path}[{i}]", found) for i, item in enumerate(value))
    return tuple(i for i in intervals if i is not None), found.items, found.warnings
