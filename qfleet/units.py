"""Time units and the two text formats for time that every qfleet file and command line uses.

* Durations use Prometheus' grammar: whole numbers with the units ``y w d h m s ms``, largest first, each at
  most once (``90s``, ``1h30m``, ``1d``, ``250ms``), or ``0``. ``1y`` is 365 days and ``1w`` 7 days, as in
  Prometheus. ``5m5m`` and ``30m1h`` are errors, as are fractions (``1.5h``: write ``1h30m``). The longest is
  ``100y`` (:data:`MAX_DURATION_NS`), shorter than Prometheus' 292y so that "now + duration" (a silence's end, a
  retention horizon) stays a signed 64-bit count of ns, i.e. before 2262, until the year 2162.
* Timestamps are RFC 3339 with a zone (``2026-01-01T00:00:00Z``, ``2026-01-01T01:00:00.5+01:00``).
* Civil (wall-clock) times without a zone, ``2026-01-01 00:00:00``, are OpenSLO's calendar ``startTime``: the
  zone comes from beside them (``timeZone``).

Both are read into and written from integer nanoseconds, exactly. This module imports nothing else of qfleet,
so every package (the simulator's files, the collector's retention, SLO windows, Alertmanager intervals, alert
rules, game days, silences) shares one grammar per format.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

__all__ = [
    "MAX_DURATION_NS",
    "NS",
    "DurationError",
    "TimestampError",
    "format_duration",
    "format_rfc3339",
    "parse_civil_time",
    "parse_duration",
    "parse_rfc3339",
]

#: Nanoseconds per second: stored times are integer ns since the Unix epoch.
NS = 1_000_000_000

_MS = NS // 1000
_UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 86_400 * NS), ("w", 7 * 86_400 * NS), ("d", 86_400 * NS), ("h", 3_600 * NS),
    ("m", 60 * NS), ("s", NS), ("ms", _MS),
)
# Prometheus' model.ParseDuration pattern. Full-match semantics make "5ms" the ms unit, not 5m + "s".
_DURATION = re.compile("".join(rf"(?:(\d+){u})?" for u, _ in _UNITS))
_FRACTION = re.compile(r"(\d*\.\d+|\d+\.\d*)(y|w|d|h|ms|m|s)")
#: The longest duration :func:`parse_duration` accepts: 100 years of 365 days.
MAX_DURATION_NS = 100 * _UNITS[0][1]
_DURATION_FIX = "write whole numbers with units y, w, d, h, m, s, ms, largest first, each once (e.g. 90s, 1h30m, 1d)"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))")
_RFC3339_FIX = "write RFC 3339 with a zone, e.g. 2026-01-01T00:00:00Z or 2026-01-01T01:00:00.5+01:00"
_CIVIL = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})")


class DurationError(ValueError):
    """Text that is not a duration; the message names it and says how to write it."""


class TimestampError(ValueError):
    """Text that is not an RFC 3339 timestamp; the message names it and says how to write it."""


def parse_duration(text: object) -> int:
    """A Prometheus duration as integer nanoseconds.

    Args:
        text: the duration text; the integer ``0`` (YAML's spelling of ``0``) is accepted too.

    Raises:
        DurationError: not a duration in Prometheus' grammar, or longer than 100y (:data:`MAX_DURATION_NS`).

    Examples:
        >>> parse_duration("1h30m") == parse_duration("90m") == 5400 * NS
        True
        >>> parse_duration("250ms"), parse_duration("0")
        (250000000, 0)
        >>> parse_duration("5m5m")
        Traceback (most recent call last):
        ...
        qfleet.units.DurationError: duration '5m5m' is not valid: write whole numbers with units y, w, d, h, m, s, ms, largest first, each once (e.g. 90s, 1h30m, 1d)
        >>> parse_duration("1.5h")
        Traceback (most recent call last):
        ...
        qfleet.units.DurationError: duration '1.5h' is not valid: write 1h30m (whole numbers with units y, w, d, h, m, s, ms, largest first, each once)
        >>> parse_duration("99999999999999999999w")
        Traceback (most recent call last):
        ...
        qfleet.units.DurationError: duration '99999999999999999999w' is too long: the longest is 100y
    """
    if text == 0 and type(text) is int:
        return 0
    if not isinstance(text, str):
        raise DurationError(f"duration {text!r} is not text: {_DURATION_FIX}")
    if text == "0":
        return 0
    m = _DURATION.fullmatch(text)
    if not text or m is None:
        hint = _whole_spelling(text)
        if hint is not None:
            raise DurationError(f"duration {text!r} is not valid: write {hint} (whole numbers with units "
                                "y, w, d, h, m, s, ms, largest first, each once)")
        raise DurationError(f"duration {text!r} is not valid: {_DURATION_FIX}")
    if len(text) > 64:  # no duration up to 100y needs this many characters; spares int() of huge digit strings
        raise DurationError(f"duration {text[:40]!r}... is too long: the longest is 100y")
    ns = sum(int(g) * size for g, (_, size) in zip(m.groups(), _UNITS, strict=True) if g is not None)
    if ns > MAX_DURATION_NS:
        raise DurationError(f"duration {text!r} is too long: the longest is 100y")
    return ns


def _whole_spelling(text: str) -> str | None:
    """``1h30m`` for ``1.5h``: a single decimal component spelled in whole units, when it has one."""
    m = _FRACTION.fullmatch(text.strip())
    if m is None:
        return None
    try:
        ns = Decimal(m.group(1)) * dict(_UNITS)[m.group(2)]
    except InvalidOperation:
        return None
    if ns != ns.to_integral_value() or ns <= 0 or ns % _MS:
        return None
    return format_duration(int(ns))


def format_duration(ns: int) -> str:
    """The shortest Prometheus spelling of ``ns`` (the inverse of :func:`parse_duration`).

    Raises:
        DurationError: ``ns`` is negative or not a whole number of milliseconds (Prometheus' finest unit).

    Examples:
        >>> format_duration(5400 * NS), format_duration(14 * 86400 * NS), format_duration(1500 * NS // 1000)
        ('1h30m', '2w', '1s500ms')
        >>> format_duration(0)
        '0s'
    """
    if isinstance(ns, bool) or not isinstance(ns, int) or ns < 0 or ns % _MS:
        raise DurationError(f"{ns!r} ns has no duration spelling: it must be a whole number of milliseconds >= 0")
    if ns == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, ns = divmod(ns, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_rfc3339(text: object) -> int:
    """An RFC 3339 timestamp (``Z`` or a numeric offset, up to 9 fractional digits) as integer Unix ns, exactly.

    Raises:
        TimestampError: not RFC 3339, or not a real date and time.

    Examples:
        >>> parse_rfc3339("2025-01-01T01:00:00+01:00") == 1_735_689_600 * NS
        True
        >>> parse_rfc3339("1970-01-01T00:00:01.5Z"), parse_rfc3339("1970-01-01T00:00:00.000000001Z")
        (1500000000, 1)
        >>> parse_rfc3339("2025-02-30T00:00:00Z")
        Traceback (most recent call last):
        ...
        qfleet.units.TimestampError: timestamp '2025-02-30T00:00:00Z' is not a real date and time (day is out of range for month): write RFC 3339 with a zone, e.g. 2026-01-01T00:00:00Z or 2026-01-01T01:00:00.5+01:00
    """
    m = _RFC3339.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise TimestampError(f"timestamp {text!r} is not RFC 3339: {_RFC3339_FIX}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zulu, sign, off_h, off_m = m.groups()[6:]
    if not zulu and (int(off_h) > 23 or int(off_m) > 59):
        raise TimestampError(f"timestamp {text!r} has an impossible UTC offset: {_RFC3339_FIX}")
    try:
        utc = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as err:
        raise TimestampError(f"timestamp {text!r} is not a real date and time ({err}): {_RFC3339_FIX}") from err
    if not zulu:
        utc -= (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m))
    delta = utc - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + (int(frac.ljust(9, "0")) if frac else 0)


def format_rfc3339(at_ns: int) -> str:
    """Integer Unix ns as RFC 3339 in UTC, trailing fractional zeros dropped (Go's RFC3339Nano).

    Examples:
        >>> format_rfc3339(1_735_689_600 * NS), format_rfc3339(1_500_000_000)
        ('2025-01-01T00:00:00Z', '1970-01-01T00:00:01.5Z')
    """
    seconds, frac = divmod(int(at_ns), NS)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def parse_civil_time(text: object) -> datetime:
    """A civil time ``YYYY-MM-DD HH:MM:SS`` (no zone; ``T`` may replace the space) as a naive ``datetime``.

    Raises:
        TimestampError: not that form, or not a real date and time.

    Examples:
        >>> parse_civil_time("2026-03-29 02:30:00")
        datetime.datetime(2026, 3, 29, 2, 30)
        >>> parse_civil_time("2026-01-01T00:00:00Z")
        Traceback (most recent call last):
        ...
        qfleet.units.TimestampError: civil time '2026-01-01T00:00:00Z' is not YYYY-MM-DD HH:MM:SS: write e.g. '2026-01-01 00:00:00' with no zone (the zone is given beside it)
    """
    fix = "write e.g. '2026-01-01 00:00:00' with no zone (the zone is given beside it)"
    m = _CIVIL.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise TimestampError(f"civil time {text!r} is not YYYY-MM-DD HH:MM:SS: {fix}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise TimestampError(f"civil time {text!r} is not a real date and time ({err}): {fix}") from err
