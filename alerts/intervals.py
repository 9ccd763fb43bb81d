"""Alertmanager time intervals: parsing the YAML form and asking whether an instant falls inside (sre.md §17.3).

An interval matches when every field it gives matches (any element of a list suffices); ``times`` are
``[start, end)`` minutes of the day, weekday / day-of-month / month / year ranges are inclusive, negative days of
the month count from its end (``-1`` is the last day), and all of it is evaluated in ``location`` (UTC if
omitted). The rules follow Alertmanager's ``timeinterval/timeinterval.go``, including its load-time checks
(``saturday:sunday`` is rejected there because Go numbers Sunday 0: write ``[saturday, sunday]``).

>>> from qfleet.alerts.model import NS
>>> [winter] = parse_time_intervals([{"weekdays": ["tuesday"], "times": [{"start_time": "02:00",
...                                   "end_time": "04:00"}], "location": "Europe/Amsterdam"}], "x")[0]
>>> active_at([winter], 1_736_823_600 * NS)   # Tue 2025-01-14 03:00 UTC = 04:00 CET: the window is over
False
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from qfleet.alerts.model import NS, TimeInterval, TimeRange

if TYPE_CHECKING:
    from qfleet.alerts.model import AlertingConfig, ResolvedRoute

__all__ = ["IntervalError", "active_at", "contains", "muted", "parse_time_intervals"]

_WEEKDAYS_GO = {name: i for i, name in enumerate(
    ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"])}
_MONTHS = {name: i + 1 for i, name in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"])}
_TIME = re.compile(r"^(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))$")
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


def _items(value: Any, path: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list):
        problems.append(f"{path}: expected a list, got {value!r}")
        return []
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, str | int):
            problems.append(f"{path}[{i}]: expected a string such as 'monday:friday', got {v!r}")
        else:
            out.append(str(v).strip().lower())
    return out


def _weekdays(value: Any, path: str, problems: list[str]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, problems)):
        lo_s, hi_s = _split(text)
        lo, hi = _WEEKDAYS_GO.get(lo_s), _WEEKDAYS_GO.get(hi_s)
        if lo is None or hi is None:
            problems.append(f"{path}[{i}]: {text!r} is not a weekday or range of weekdays; "
                            "use names such as 'monday' or 'monday:friday'")
            continue
        if lo > hi:  # Go numbers Sunday 0, so Alertmanager rejects saturday:sunday
            problems.append(f"{path}[{i}]: {text!r}: start day cannot be before end day (Sunday is the first "
                            "day, as in Alertmanager); list them instead, e.g. [saturday, sunday]")
            continue
        # Convert Sunday=0 numbering to the model's Monday=0.
        if lo == 0:
            out.append((6, 6))
            if hi >= 1:
                out.append((0, hi - 1))
        else:
            out.append((lo - 1, hi - 1))
    return tuple(out)


def _days(value: Any, path: str, problems: list[str]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, problems)):
        lo_s, hi_s = _split(text)
        lo, hi = _int(lo_s), _int(hi_s)
        bad = [x for x in (lo, hi) if x is None or x == 0 or not -31 <= x <= 31]
        if bad:
            problems.append(f"{path}[{i}]: {text!r} is not a day of the month or range; use 1..31 or -31..-1 "
                            "(-1 is the last day), e.g. '1:7' or '-3:-1'")
            continue
        assert lo is not None and hi is not None
        if lo < 0 < hi:
            problems.append(f"{path}[{i}]: {text!r}: end day must be negative if start day is negative")
            continue
        # As Alertmanager: compare assuming the shortest (28-day) month, so the range is never empty.
        if (28 + lo if lo < 0 else lo) > (28 + hi if hi < 0 else hi):
            problems.append(f"{path}[{i}]: {text!r}: end day {hi} is before start day {lo}")
            continue
        out.append((lo, hi))
    return tuple(out)


def _months(value: Any, path: str, problems: list[str]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, problems)):
        lo_s, hi_s = _split(text)
        lo = _MONTHS.get(lo_s, _int(lo_s))
        hi = _MONTHS.get(hi_s, _int(hi_s))
        if lo is None or hi is None or not (1 <= lo <= 12 and 1 <= hi <= 12):
            problems.append(f"{path}[{i}]: {text!r} is not a month or range of months; use names or 1..12, "
                            "e.g. 'january:march' or '1:3'")
            continue
        if lo > hi:
            problems.append(f"{path}[{i}]: {text!r}: end month {hi} is before start month {lo}")
            continue
        out.append((lo, hi))
    return tuple(out)


def _years(value: Any, path: str, problems: list[str]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, text in enumerate(_items(value, path, problems)):
        lo_s, hi_s = _split(text)
        lo, hi = _int(lo_s), _int(hi_s)
        if lo is None or hi is None or lo <= 0 or hi <= 0:
            problems.append(f"{path}[{i}]: {text!r} is not a year or range of years, e.g. '2026' or '2026:2027'")
            continue
        if lo > hi:
            problems.append(f"{path}[{i}]: {text!r}: end year {hi} is before start year {lo}")
            continue
        out.append((lo, hi))
    return tuple(out)


def _minute(value: Any, path: str, problems: list[str]) -> int | None:
    m = _TIME.match(value) if isinstance(value, str) else None
    if m is None:
        problems.append(f"{path}: {value!r} is not a time of day; use HH:MM from 00:00 to 24:00, e.g. '09:30'")
        return None
    hh, mm = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(hh) * 60 + int(mm)


def _times(value: Any, path: str, problems: list[str]) -> tuple[TimeRange, ...]:
    if not isinstance(value, list):
        problems.append(f"{path}: expected a list of {{start_time, end_time}}, got {value!r}")
        return ()
    out: list[TimeRange] = []
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{p}: expected {{start_time: 'HH:MM', end_time: 'HH:MM'}}, got {item!r}")
            continue
        for key in sorted(set(item) - {"start_time", "end_time"}):
            problems.append(f"{p}.{key}: unknown key; a time range has start_time and end_time")
        if "start_time" not in item or "end_time" not in item:
            problems.append(f"{p}: both start_time and end_time are required")
            continue
        start = _minute(item["start_time"], f"{p}.start_time", problems)
        end = _minute(item["end_time"], f"{p}.end_time", problems)
        if start is None or end is None:
            continue
        if start >= end:
            problems.append(f"{p}: start time {item['start_time']!r} must be before end time "
                            f"{item['end_time']!r} (a range is [start, end) within one day)")
            continue
        out.append(TimeRange(start, end))
    return tuple(out)


def parse_time_intervals(value: Any, path: str) -> tuple[tuple[TimeInterval, ...], list[str], list[str]]:
    """Parse one entry's ``time_intervals`` list.

    Returns ``(intervals, problems, warnings)``; each problem and warning starts with its key path under ``path``.

    >>> parse_time_intervals([{"months": ["march:january"]}], "time_intervals[0].time_intervals")[1]
    ["time_intervals[0].time_intervals[0].months[0]: 'march:january': end month 1 is before start month 3"]
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(value, list):
        return (), [f"{path}: expected a list of intervals, got {value!r}"], warnings
    out: list[TimeInterval] = []
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{p}: expected a mapping with keys {', '.join(_KEYS)}, got {item!r}")
            continue
        for key in sorted(set(item) - set(_KEYS)):
            problems.append(f"{p}.{key}: unknown key; an interval has {', '.join(_KEYS)}")
        location = item.get("location", "UTC")
        if location is None:
            location = "UTC"
        if not isinstance(location, str):
            problems.append(f"{p}.location: expected an IANA zone name such as 'Europe/Amsterdam', "
                            f"got {location!r}")
            location = "UTC"
        elif location == "Local":
            warnings.append(f"{p}.location: 'Local' (the server's zone) is not supported, qfleet evaluates it as "
                            "UTC; name an IANA zone such as 'Europe/Amsterdam'")
            location = "UTC"
        elif location != "UTC":
            try:
                _zone(location)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(f"{p}.location: {location!r} is not a known IANA time zone; "
                                "use e.g. 'Europe/Amsterdam' or 'UTC'")
                location = "UTC"

        fields = {key: parse(item[key], f"{p}.{key}", problems) if item.get(key) is not None else ()
                  for key, parse in (("times", _times), ("weekdays", _weekdays), ("days_of_month", _days),
                                     ("months", _months), ("years", _years))}
        out.append(TimeInterval(location=location, **fields))
    return tuple(out), problems, warnings
