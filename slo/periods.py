"""Compliance periods: rolling ``(now - P, now]`` and calendar periods stepping in local wall-clock time.

A calendar period (OpenSLO ``timeWindow`` with ``isRolling: false``) steps ``count`` × ``unit`` from the
anchor ``calendar.start`` (``YYYY-MM-DD HH:MM:SS``, no zone) in the IANA ``calendar.time_zone``, so a New York
month is 743 h in March 2025 and 721 h in November 2025 (sre.md §6). Month steps are taken from the anchor,
not chained: an anchor on the 31st clamps to the last day of a shorter month and returns to the 31st
afterwards. A local time that DST skips resolves forward by the gap, an ambiguous one to its first occurrence
(PEP 495, ``fold=0``).

All instants are integer ns since the Unix epoch (UTC); this module never reads the clock.
"""

from __future__ import annotations

import calendar as _calendar
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from qfleet.slo.model import Period, window_label
from qfleet.units import NS, TimestampError, parse_civil_time

__all__ = [
    "PeriodError",
    "period_bounds",
    "period_key",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTHS = {"M": 1, "Q": 3, "Y": 12}
_DAYS = {"d": 1, "w": 7}


class PeriodError(ValueError):
    """A calendar period that cannot be interpreted; the message names the value and the fix."""


def period_key(period: Period) -> str:
    """The report key of the period's window: its :func:`~qfleet.slo.model.window_label` for a rolling period,
    ``calendar`` otherwise.

    >>> from qfleet.slo.model import Calendar
    >>> period_key(Period(rolling_ns=30 * 86400 * NS)), period_key(Period(calendar=Calendar(count=1, unit="M",
    ...     start="2025-01-01 00:00:00")))
    ('30d', 'calendar')
    """
    if period.rolling_ns is None:
        return "calendar"
    return window_label(period.rolling_ns)


def period_bounds(period: Period, at_ns: int) -> tuple[int, int]:
    """The period that contains ``at_ns``, as ``(start_ns, end_ns)`` in UTC ns.

    A rolling period is ``(at - P, at]``, so it returns ``(at - P, at)``. A calendar period is the one whose
    local-time bounds satisfy ``start <= at < end``: ``at`` exactly at a period start opens the new period
    (elapsed 0), while a sample stamped exactly at ``start`` belongs to the previous one, because budgets
    count ``(start, at]`` (sre.md §6). Periods extend backwards before the anchor too.

    >>> from qfleet.slo.model import Calendar
    >>> from qfleet.units import format_rfc3339, parse_rfc3339
    >>> jan = Period(calendar=Calendar(count=1, unit="M", start="2025-01-01 00:00:00"))
    >>> [format_rfc3339(t) for t in period_bounds(jan, parse_rfc3339("2025-01-15T12:00:00Z"))]
    ['2025-01-01T00:00:00Z', '2025-02-01T00:00:00Z']
    >>> ny = Period(calendar=Calendar(count=1, unit="M", start="2025-01-01 00:00:00",
    ...                               time_zone="America/New_York"))
    >>> [format_rfc3339(t) for t in period_bounds(ny, parse_rfc3339("2025-03-01T03:00:00Z"))]
    ['2025-02-01T05:00:00Z', '2025-03-01T05:00:00Z']

    Raises:
        PeriodError: a bad calendar (count, unit, start text or time zone).
    """
    if period.rolling_ns is not None:
        if period.rolling_ns <= 0:
            raise PeriodError(f"rolling period of {period.rolling_ns} ns is not positive; use e.g. 30d")
        return at_ns - period.rolling_ns, at_ns
    assert period.calendar is not None
    cal = period.calendar
    anchor, zone = _anchor(cal.start, cal.time_zone)
    if not isinstance(cal.count, int) or cal.count <= 0:
        raise PeriodError(
            f"calendar count {cal.count!r} is not a positive whole number; use e.g. 1 (as in 1M)"
        )
    if cal.unit not in _MONTHS and cal.unit not in _DAYS:
        raise PeriodError(f"calendar unit {cal.unit!r} is not one of d, w, M, Q, Y; use e.g. M for months")

    def boundary(k: int) -> int:
        return _to_ns(_step(anchor, cal.unit, cal.count * k), zone)

    local_at = (_EPOCH + timedelta(seconds=at_ns // NS)).astimezone(zone).replace(tzinfo=None)
    if cal.unit in _MONTHS:
        months = (local_at.year - anchor.year) * 12 + local_at.month - anchor.month
        k = months // (cal.count * _MONTHS[cal.unit])
    else:
        k = (local_at - anchor).days // (cal.count * _DAYS[cal.unit])
    # The local-time estimate is off by at most one step (offsets, clamping); settle it exactly in UTC ns.
    while boundary(k) > at_ns:
        k -= 1
    while boundary(k + 1) <= at_ns:
        k += 1
    return boundary(k), boundary(k + 1)


@lru_cache(maxsize=256)
def _anchor(start: str, time_zone: str) -> tuple[datetime, ZoneInfo]:
    try:
        anchor = parse_civil_time(start)
    except TimestampError as err:
        raise PeriodError(f"calendar start: {err}") from err
    try:
        zone = ZoneInfo(str(time_zone))
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise PeriodError(
            f"calendar time zone {time_zone!r} is not an IANA zone; "
            "use a name such as UTC or America/New_York"
        ) from err
    return anchor, zone


def _step(anchor: datetime, unit: str, n: int) -> datetime:
    """``anchor`` plus ``n`` units in naive local wall-clock time, clamping the day for month units."""
    if unit in _DAYS:
        return anchor + timedelta(days=n * _DAYS[unit])
    index = anchor.year * 12 + (anchor.month - 1) + n * _MONTHS[unit]
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise PeriodError(f"calendar period reaches year {year}, outside 1..9999; check the anchor and now")
    day = min(anchor.day, _calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _to_ns(local: datetime, zone: ZoneInfo) -> int:
    aware = local.replace(tzinfo=zone, fold=0)
    return (aware - _EPOCH) // timedelta(microseconds=1) * 1000
