"""SLO spec fields around the indicator: ``metadata``, ``timeWindow`` (rolling or calendar) and ``objectives``
(see :mod:`qfleet.slo.spec` for the file format).

Rolling windows are Prometheus durations (:func:`qfleet.units.parse_duration`). Calendar windows step in
``d`` and ``w`` (durations too) or in OpenSLO's calendar units ``M``, ``Q`` and ``Y``, which are not durations:
a month is not 30 days (OpenSLO#267).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, cast

from qfleet.problems import Problems
from qfleet.slo.model import Calendar, Period
from qfleet.slo.spec_fields import (
    FieldPath,
    decimal_text,
    read_mapping,
    read_number,
    read_string,
    read_window,
    show,
)
from qfleet.units import NS, DurationError, TimestampError, parse_civil_time, parse_duration

__all__ = ["NAME_FIX", "Objective", "labels", "parse_metadata", "parse_objective", "parse_period"]

NAME_FIX = ("use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 "
            "characters (RFC 1123), e.g. job-success")
_RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PROM_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OBJECTIVE_KEYS = ("displayName", "op", "value", "target", "targetPercent", "timeSliceTarget", "timeSliceWindow",
                   "indicator", "indicatorRef", "compositeWeight")
_DURATION_FIX = ("write a positive duration in whole minutes (m, h, d, w: rolling) or d, w, M, Q, Y (calendar), "
                 "e.g. 30d")
_CALENDAR_UNITS = ("M", "Q", "Y")
_DAY, _WEEK = 86_400 * NS, 7 * 86_400 * NS
_CalendarUnit = Literal["d", "w", "M", "Q", "Y"]


# ---------------------------------------------------------------------------------------------------------------
# metadata


def parse_metadata(found: Problems, value: Any, path: FieldPath) -> dict[str, Any] | None:
    """An object's ``metadata``: an RFC 1123 ``name``, ``displayName``, Prometheus ``labels``, ``annotations``."""
    md = read_mapping(found, value, path, ("name", "displayName", "labels", "annotations"),
                      {"name": f"add name: <RFC 1123 name>; {NAME_FIX}"})
    if md is None:
        return None
    name = md.get("name")
    if "name" in md and (not isinstance(name, str) or len(name) > 63 or not _RFC1123.match(name)):
        found.add(path.k("name"), f"name {show(name)} is not an RFC 1123 name", NAME_FIX, "bad_name")
    if "displayName" in md:
        read_string(found, md["displayName"], path.k("displayName"), "Job success")
    if "labels" in md:
        _check_labels(found, md["labels"], path.k("labels"))
    if "annotations" in md:
        _check_annotations(found, md["annotations"], path.k("annotations"))
    return md


def _check_labels(found: Problems, labels: Any, path: FieldPath) -> None:
    if not isinstance(labels, dict):
        found.add(path, f"expected a mapping, got {show(labels)}", "write labels: {team: fleet}", "not_a_mapping")
        return
    for k, v in labels.items():
        if not isinstance(k, str) or not _PROM_LABEL.match(k):
            found.add(path.k(k), f"label name {show(k)} is not a Prometheus label name",
                      "use [a-zA-Z_][a-zA-Z0-9_]* (labels are added to generated rules), e.g. team", "bad_label")
        elif not (isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))):
            found.add(path.k(k), f"label value {show(v)} is not a string or a list of strings",
                      f'quote it: {k}: "{v}"', "bad_label")


def _check_annotations(found: Problems, annotations: Any, path: FieldPath) -> None:
    if not isinstance(annotations, dict):
        found.add(path, f"expected a mapping, got {show(annotations)}", "write annotations: {key: value}",
                  "not_a_mapping")
        return
    for k, v in annotations.items():
        if not isinstance(v, str):
            found.add(path.k(k), f"annotation value {show(v)} is not a string", "quote the value", "not_a_string")
        if isinstance(k, str) and k.startswith("openslo.com/"):
            found.warn(path.k(k), "the openslo.com/ annotation prefix is reserved by OpenSLO",
                       "use another prefix, e.g. qfleet.dev/", "reserved_annotation")


def labels(md: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The SLO's labels from valid metadata: sorted, a list value joined with commas.

    >>> labels({"labels": {"tier": ["gold", "silver"], "team": "fleet"}})
    (('team', 'fleet'), ('tier', 'gold,silver'))
    """
    raw = md.get("labels") or {}
    return tuple(sorted((k, v if isinstance(v, str) else ",".join(v)) for k, v in raw.items()))


# ---------------------------------------------------------------------------------------------------------------
# timeWindow


def parse_period(found: Problems, value: Any, path: FieldPath) -> Period | None:
    """``timeWindow``: a list of exactly one rolling or calendar window."""
    if not isinstance(value, list) or len(value) != 1:
        found.add(path, f"timeWindow must be a list of exactly one window, got {show(value)}",
                  "write timeWindow: [{duration: 30d, isRolling: true}]", "bad_time_window")
        return None
    p = path.i(0)
    tw = read_mapping(found, value[0], p, ("duration", "isRolling", "calendar"),
                      {"duration": "add duration: 30d", "isRolling": "add isRolling: true (or false with a calendar)"})
    if tw is None or "duration" not in tw or "isRolling" not in tw:
        return None
    rolling = tw["isRolling"]
    if not isinstance(rolling, bool):
        found.add(p.k("isRolling"), f"isRolling {show(rolling)} is not a bool", "write isRolling: true or false",
                  "not_a_bool")
        return None
    return _rolling(found, tw, p) if rolling else _calendar(found, tw, p)


def _calendar_count(text: Any) -> tuple[int, _CalendarUnit] | None:
    """``(3, "M")`` for ``3M``: a positive count of OpenSLO's calendar-only units M, Q, Y; else None."""
    if not isinstance(text, str) or len(text) < 2 or text[-1] not in _CALENDAR_UNITS:
        return None
    digits = text[:-1]
    if not (digits.isascii() and digits.isdigit()) or int(digits) == 0:
        return None
    return int(digits), cast(_CalendarUnit, text[-1])


def _rolling(found: Problems, tw: dict[str, Any], p: FieldPath) -> Period | None:
    duration, dp = tw["duration"], p.k("duration")
    calendar_unit = _calendar_count(duration)
    ns = None if calendar_unit else read_window(found, duration, dp, "30d", code="bad_duration", fix=_DURATION_FIX)
    if calendar_unit is None and ns is None:
        return None
    if "calendar" in tw:
        found.add(p.k("calendar"), "a rolling window has no calendar", "remove calendar, or set isRolling: false",
                  "bad_time_window")
    if calendar_unit is not None:
        found.add(dp, f"duration {duration!r} uses a calendar unit ({duration[-1]}) with isRolling: true "
                  "(a month is not 30 days: OpenSLO#267)",
                  "write a rolling duration in m, h, d or w (e.g. 30d), or set isRolling: false with a calendar",
                  "calendar_unit_on_rolling_window")
        return None
    return None if "calendar" in tw or ns is None else Period(rolling_ns=ns)


def _calendar(found: Problems, tw: dict[str, Any], p: FieldPath) -> Period | None:
    step = _calendar_step(found, tw["duration"], p.k("duration"))
    if "calendar" not in tw:
        found.add(p.k("calendar"), "isRolling: false needs a calendar",
                  'add calendar: {startTime: "2025-01-01 00:00:00", timeZone: UTC}, or set isRolling: true',
                  "missing_key")
        return None
    cp = p.k("calendar")
    cal = read_mapping(found, tw["calendar"], cp, ("startTime", "timeZone"),
                       {"startTime": 'add startTime: "2025-01-01 00:00:00" (local wall-clock time, no zone)',
                        "timeZone": "add timeZone: UTC (an IANA zone such as America/New_York)"})
    if cal is None:
        return None
    start_ok = "startTime" in cal and _start_time_ok(found, cal["startTime"], cp.k("startTime"))
    zone_ok = "timeZone" in cal and _time_zone_ok(found, cal["timeZone"], cp.k("timeZone"))
    if step is None or not start_ok or not zone_ok:
        return None
    count, unit = step
    return Period(calendar=Calendar(count=count, unit=unit, start=cal["startTime"], time_zone=cal["timeZone"]))


def _calendar_step(found: Problems, duration: Any, path: FieldPath) -> tuple[int, _CalendarUnit] | None:
    """A calendar window's step: ``NM``/``NQ``/``NY``, or a duration in whole days ending in ``d`` or ``w``."""
    calendar_unit = _calendar_count(duration)
    if calendar_unit is not None:
        return calendar_unit
    try:
        ns = parse_duration(duration)
    except DurationError as err:
        found.add(path, f"timeWindow {err}", _DURATION_FIX, "bad_duration")
        return None
    if ns <= 0:
        found.add(path, f"duration {show(duration)} is not longer than 0: a period must be > 0", _DURATION_FIX,
                  "bad_duration")
        return None
    if not isinstance(duration, str) or duration[-1] not in "dw" or "y" in duration:
        found.add(path, f"calendar periods step in d, w, M, Q or Y, not {duration!r}",
                  "use e.g. 1d, 1w, 1M, 1Q or 1Y, or a rolling window", "bad_duration")
        return None
    return (ns // _WEEK, "w") if duration.endswith("w") else (ns // _DAY, "d")


def _start_time_ok(found: Problems, start: Any, path: FieldPath) -> bool:
    try:
        parse_civil_time(start)
    except TimestampError as err:
        found.add(path, f"startTime: {err}",
                  'quote it and write e.g. "2025-01-01 00:00:00" (no zone; timeZone gives it one)', "bad_start_time")
        return False
    return True


def _time_zone_ok(found: Problems, tz: Any, path: FieldPath) -> bool:
    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError(tz)
        zoneinfo.ZoneInfo(tz)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        found.add(path, f"time zone {show(tz)} is not an IANA time zone",
                  "use an IANA name such as UTC, Europe/Amsterdam or America/New_York", "bad_time_zone")
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# objectives


@dataclass(frozen=True, slots=True)
class Objective:
    """The one objective of an SLO: its raw mapping (for the indicator's ``op``/``value``) and what it sets."""

    raw: dict[str, Any]
    target: Fraction
    slice_target: Fraction | None
    slice_ns: int | None


def parse_objective(found: Problems, objs: Any, path: FieldPath, budgeting: str | None,
                    period: Period | None) -> Objective | None:
    """``objectives``: exactly one, with a target and the slice fields its ``budgeting`` method needs."""
    if not isinstance(objs, list) or len(objs) != 1:
        found.add(path, f"qfleet supports exactly one objective per SLO, got {show(objs)}",
                  "keep one objective (- target: 0.99) and split the others into their own SLOs", "bad_objectives")
        return None
    start = len(found)
    p = path.i(0)
    obj = read_mapping(found, objs[0], p, _OBJECTIVE_KEYS)
    if obj is None:
        return None
    for key in ("indicator", "indicatorRef", "compositeWeight"):
        if key in obj:
            found.add(p.k(key), f"{key} (composite SLOs) is not supported",
                      "put the indicator in spec.indicator or spec.indicatorRef and keep one objective", "unsupported")
    if "displayName" in obj:
        read_string(found, obj["displayName"], p.k("displayName"), "99 % of jobs succeed")
    target = _target(found, obj, p)
    slice_target = _slice_target(found, obj["timeSliceTarget"], p) if "timeSliceTarget" in obj else None
    slice_ns = _slice_window(found, obj["timeSliceWindow"], p, period) if "timeSliceWindow" in obj else None
    _check_budgeting_fields(found, obj, p, budgeting)
    if len(found) != start or target is None:
        return None
    return Objective(obj, target, slice_target, slice_ns)


def _target(found: Problems, obj: dict[str, Any], p: FieldPath) -> Fraction | None:
    if "target" in obj and "targetPercent" in obj:
        found.add(p.k("targetPercent"), "both target and targetPercent are given",
                  "keep one: target (a ratio, e.g. 0.999) or targetPercent (e.g. 99.9)", "target_and_percent")
        return None
    if "target" in obj:
        return _ratio_target(found, obj["target"], p.k("target"))
    if "targetPercent" in obj:
        return _percent_target(found, obj["targetPercent"], p.k("targetPercent"))
    found.add(p.k("target"), "the objective has no target", "add target: 0.99 (a ratio) or targetPercent: 99",
              "missing_key")
    return None


def _ratio_target(found: Problems, value: Any, path: FieldPath) -> Fraction | None:
    t = read_number(found, value, path, "0.999")
    if t is None or 0 < t < 1:
        return t
    why = "leaves no error budget" if t == 1 else ("has no objective" if t == 0 else "is not a ratio")
    found.add(path, f"target {decimal_text(t)} is outside (0, 1): it {why} (OpenSLO range [0.0, 1.0))",
              "use a ratio strictly between 0 and 1, e.g. 0.999 (or targetPercent: 99.9)", "target_out_of_range")
    return None


def _percent_target(found: Problems, value: Any, path: FieldPath) -> Fraction | None:
    t = read_number(found, value, path, "99.9")
    if t is None or 0 < t < 100:
        return None if t is None else t / 100
    why = "leaves no error budget" if t == 100 else ("has no objective" if t == 0 else "is not a percent")
    found.add(path, f"targetPercent {decimal_text(t)} is outside (0, 100): it {why}",
              "use a percent strictly between 0 and 100, e.g. 99.9", "target_out_of_range")
    return None


def _slice_target(found: Problems, value: Any, p: FieldPath) -> Fraction | None:
    st = read_number(found, value, p.k("timeSliceTarget"), "0.99")
    if st is not None and not 0 < st <= 1:
        found.add(p.k("timeSliceTarget"), f"timeSliceTarget {decimal_text(st)} is outside (0, 1]",
                  "give the ratio a slice needs to count as good, e.g. 0.99", "bad_time_slice_target")
        return None
    return st


def _slice_window(found: Problems, value: Any, p: FieldPath, period: Period | None) -> int | None:
    slice_ns = read_window(found, value, p.k("timeSliceWindow"), "1m")
    if slice_ns is not None and period is not None and slice_ns >= period.nominal_ns:
        found.add(p.k("timeSliceWindow"), f"timeSliceWindow {value} is not shorter than the period",
                  "use a slice much shorter than the period, e.g. 1m or 5m", "bad_time_slice_window")
    return slice_ns


def _check_budgeting_fields(found: Problems, obj: dict[str, Any], p: FieldPath, budgeting: str | None) -> None:
    """The slice fields each budgeting method needs (Timeslices: both; RatioTimeslices: the window) or forbids."""
    if budgeting == "Timeslices":
        for key, example in (("timeSliceTarget", "0.99"), ("timeSliceWindow", "1m")):
            if key not in obj:
                found.add(p.k(key), f"budgetingMethod Timeslices needs {key}", f"add {key}: {example}", "missing_key")
    elif budgeting == "RatioTimeslices":
        if "timeSliceWindow" not in obj:
            found.add(p.k("timeSliceWindow"), "budgetingMethod RatioTimeslices needs timeSliceWindow",
                      "add timeSliceWindow: 1m", "missing_key")
        if "timeSliceTarget" in obj:
            found.add(p.k("timeSliceTarget"), "timeSliceTarget applies only to budgetingMethod Timeslices",
                      "remove it (RatioTimeslices averages the slice ratios) or use Timeslices", "unexpected")
    elif budgeting == "Occurrences":
        for key in ("timeSliceTarget", "timeSliceWindow"):
            if key in obj:
                found.add(p.k(key), f"{key} applies only to the timeslice budgeting methods",
                          "remove it, or set budgetingMethod: Timeslices", "unexpected")
