"""The SLO engine's domain values: specs, indicators, alert policies, counts and reports.

Every ratio that a threshold decides on is a :class:`fractions.Fraction` (targets are parsed from their decimal
text, never from a float); times are integer nanoseconds. These are plain frozen values: loading them from YAML
lives in :mod:`qfleet.slo.spec`, the maths in :mod:`qfleet.slo.budget`, the store in :mod:`qfleet.slo.sli`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Literal

from qfleet.units import NS, DurationError, format_duration

__all__ = [
    "AlertPolicy",
    "BudgetStep",
    "BudgetReport",
    "Calendar",
    "ConditionReport",
    "Counts",
    "GaugeThresholdIndicator",
    "HistogramIndicator",
    "Indicator",
    "MetricRatioIndicator",
    "Pair",
    "Period",
    "SLO",
    "SLOReport",
    "SpanRatioIndicator",
    "SpanThresholdIndicator",
    "StandardWindows",
    "WindowReport",
    "window_label",
]

_MINUTE = 60 * NS
_LABEL_UNITS = (("d", 86400 * NS), ("h", 3600 * NS), ("m", _MINUTE))

#: The windows every report shows, besides the period itself (sre.md 4).
StandardWindows: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@functools.lru_cache(maxsize=1024)  # every report names the same few windows, every evaluation
def window_label(ns: int) -> str:
    """The name reports and rules give a window: one unit, the largest of d, h, m that divides it.

    So a 30-day period is ``30d`` (as in Sloth's and Pyrra's ``rate30d`` rules), not ``4w2d``, and 90 minutes
    ``90m``. :func:`qfleet.units.parse_duration` reads every label back. A window that is not a whole number
    of minutes gets :func:`qfleet.units.format_duration`'s spelling, or ``<n>ns`` if not whole milliseconds.

    >>> window_label(30 * 86400 * NS), window_label(28 * 86400 * NS), window_label(90 * 60 * NS)
    ('30d', '28d', '90m')
    >>> window_label(90 * NS), window_label(7)
    ('1m30s', '7ns')
    """
    if ns > 0 and ns % _MINUTE == 0:
        unit, size = next((u, size) for u, size in _LABEL_UNITS if ns % size == 0)
        return f"{ns // size}{unit}"
    try:
        return format_duration(ns)
    except DurationError:
        return f"{ns}ns"


@dataclass(frozen=True, slots=True)
class Counts:
    """Good and total events; a monoid (``sum()`` of counts works).

    >>> Counts(9, 10) + Counts(1, 2)
    Counts(good=10, total=12)
    >>> sum([Counts(1, 1), Counts(0, 1)], Counts.ZERO).bad
    1
    """

    good: int
    total: int

    ZERO: ClassVar[Counts]

    def __post_init__(self) -> None:
        if not (0 <= self.good <= self.total):
            raise ValueError(f"Counts(good={self.good}, total={self.total}): need 0 <= good <= total")

    @property
    def bad(self) -> int:
        """``total - good``."""
        return self.total - self.good

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.good + other.good, self.total + other.total)

    __radd__ = __add__


Counts.ZERO = Counts(0, 0)


# ---------------------------------------------------------------------------------------------------------------
# Indicators: what counts as an event, and as a good one


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanRatioIndicator:
    """Spans named ``span``; good unless their status is ERROR (or unless ``bad_attribute`` equals a value).

    ``where`` restricts both good and total to spans whose attributes equal the given values.
    """

    span: str
    where: tuple[tuple[str, Any], ...] = ()
    kind: Literal["span_ratio"] = "span_ratio"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanThresholdIndicator:
    """Per span named ``span``: good iff ``attribute op threshold``.

    ``threshold`` is a number, or the name of another attribute of the same span times ``margin`` (a per-event
    threshold, e.g. feedforward latency against that run's own coherence window).
    """

    span: str
    attribute: str
    op: Literal["lte", "lt", "gte", "gt"]
    threshold: Fraction | None = None
    threshold_attribute: str | None = None
    margin: Fraction = Fraction(1)
    where: tuple[tuple[str, Any], ...] = ()
    kind: Literal["span_threshold"] = "span_threshold"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricRatioIndicator:
    """A cumulative counter (Prometheus name, e.g. ``qfleet_jobs_total``): good / total by label matchers.

    ``total_match`` selects the series summed as total; ``good_match`` (on top of ``total_match``) the good ones.
    """

    metric: str
    good_match: tuple[tuple[str, Any], ...]
    total_match: tuple[tuple[str, Any], ...] = ()
    kind: Literal["metric_ratio"] = "metric_ratio"


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramIndicator:
    """A value from a histogram (base name, e.g. ``qfleet_orchestrator_latency_seconds``), total = ``le="+Inf"``.

    ``op="lte"``: good = the bucket ``le == threshold``; ``op="gt"``: good = total minus that bucket (e.g. fidelity
    above 0.9). ``buckets`` declares the boundaries; a threshold that is not one of them is rejected, never
    interpolated.
    """

    metric: str
    threshold: Fraction
    op: Literal["lte", "gt"] = "lte"
    buckets: tuple[Fraction, ...] = ()
    match: tuple[tuple[str, Any], ...] = ()
    kind: Literal["histogram"] = "histogram"


@dataclass(frozen=True, slots=True, kw_only=True)
class GaugeThresholdIndicator:
    """Each sample of a gauge (e.g. ``qfleet_node_up``, one per node and step) is an event: good iff
    ``value op threshold``."""

    metric: str
    op: Literal["lte", "lt", "gte", "gt"]
    threshold: Fraction
    match: tuple[tuple[str, Any], ...] = ()
    kind: Literal["gauge_threshold"] = "gauge_threshold"


Indicator = (SpanRatioIndicator | SpanThresholdIndicator | MetricRatioIndicator | HistogramIndicator
             | GaugeThresholdIndicator)


# ---------------------------------------------------------------------------------------------------------------
# Periods, policies


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """A calendar period: ``count`` × ``unit`` (``d``, ``w``, ``M``, ``Q``, ``Y``) stepping in local wall-clock
    time from ``start`` (``YYYY-MM-DD HH:MM:SS``, no zone) in the IANA ``time_zone``."""

    count: int
    unit: Literal["d", "w", "M", "Q", "Y"]
    start: str
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Period:
    """The compliance period: rolling (``rolling_ns``) or calendar."""

    rolling_ns: int | None = None
    calendar: Calendar | None = None

    def __post_init__(self) -> None:
        if (self.rolling_ns is None) == (self.calendar is None):
            raise ValueError("Period: give exactly one of rolling_ns or calendar")

    @property
    def nominal_ns(self) -> int:
        """Length used to derive burn thresholds: the rolling length, or the calendar's nominal length
        (M = 30 d, Q = 90 d, Y = 365 d)."""
        if self.rolling_ns is not None:
            return self.rolling_ns
        assert self.calendar is not None
        days = {"d": 1, "w": 7, "M": 30, "Q": 90, "Y": 365}[self.calendar.unit] * self.calendar.count
        return days * 86400 * NS


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    """One multiwindow condition: fires iff burn(long) > threshold and burn(short) > threshold (strict).

    The threshold is ``budget_fraction × period / long`` ("this fraction of the budget spent within the long
    window"), so a policy rescales itself to any period; ``burn_threshold`` overrides it.
    """

    name: str
    severity: Literal["page", "ticket"]
    long_ns: int
    short_ns: int
    budget_fraction: Fraction | None = None
    burn_threshold: Fraction | None = None

    def threshold(self, period_ns: int) -> Fraction:
        """The burn-rate threshold for a period of ``period_ns``.

        >>> Pair(name="page_fast", severity="page", long_ns=3600 * NS, short_ns=300 * NS,
        ...      budget_fraction=Fraction(2, 100)).threshold(30 * 86400 * NS)
        Fraction(72, 5)
        """
        if self.burn_threshold is not None:
            return self.burn_threshold
        assert self.budget_fraction is not None
        return self.budget_fraction * Fraction(period_ns, self.long_ns)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    """A named, versioned set of pairs (``sre_workbook_30d`` is the default)."""

    name: str
    pairs: tuple[Pair, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStep:
    """An error-budget policy step: once ``consumed_fraction`` of the budget is spent, ``consequence`` applies."""

    name: str
    consumed_fraction: Fraction
    consequence: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SLO:
    """One service-level objective.

    Args:
        name: RFC 1123 id (``metadata.name``).
        service: the service it belongs to.
        target: the objective as an exact ratio in (0, 1).
        period: rolling or calendar.
        budgeting: ``Occurrences``, ``Timeslices`` or ``RatioTimeslices``.
        indicator: what is counted.
        policy: the alert pairs.
        time_slice_target / time_slice_ns: for the timeslice methods.
        group_by: promoted dimensions to segment by (``hardware_type``, ``node_id``, ``link_id``).
        min_events: a pair fires only if both its windows hold at least this many events (low-traffic guard).
        budget_policy: error-budget policy steps, shown on the dashboards.
        runbook: URL or path of the runbook the alerts link to.
        description, display_name, labels: free text and labels (added to generated rules).
    """

    name: str
    service: str
    target: Fraction
    period: Period
    budgeting: Literal["Occurrences", "Timeslices", "RatioTimeslices"]
    indicator: Indicator
    policy: AlertPolicy
    time_slice_target: Fraction | None = None
    time_slice_ns: int | None = None
    group_by: tuple[str, ...] = ()
    min_events: int = 0
    budget_policy: tuple[BudgetStep, ...] = ()
    runbook: str | None = None
    description: str = ""
    display_name: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def error_budget(self) -> Fraction:
        """``1 - target``."""
        return 1 - self.target


# ---------------------------------------------------------------------------------------------------------------
# Reports (what evaluation returns; JSON shape in slo.budget.report_json)


@dataclass(frozen=True, slots=True)
class WindowReport:
    """Counts over ``(now - W, now]``; ratios are None when the window holds no events."""

    good: int
    total: int
    bad: int
    error_ratio: Fraction | None
    burn_rate: Fraction | float | None  # float only for qfleet.slo.budget.INF (target 1 with bad events)


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetReport:
    """The error budget over the period ``(period_start, now]``; unknown (None) without events."""

    good: int
    total: int
    bad: int
    no_data: bool
    sli: Fraction | None
    consumed_fraction: Fraction | float | None  # float only for +/-INF, as burn_rate
    remaining_fraction: Fraction | float | None
    allowed_bad_events: Fraction | None
    remaining_bad_events: Fraction | None
    exhausted: bool | None
    budget_minutes: Fraction
    period_start_ns: int
    period_end_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionReport:
    """One pair at ``now``: ``firing`` is False when either burn is None or (``low_traffic``) below min_events."""

    name: str
    severity: str
    long_window: str
    short_window: str
    threshold: Fraction
    long_burn_rate: Fraction | float | None
    short_burn_rate: Fraction | float | None
    firing: bool
    low_traffic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SLOReport:
    """Everything about one SLO (and one segment of it) at one instant."""

    slo: str
    segment: tuple[tuple[str, str], ...]
    at_ns: int
    error_budget: Fraction
    windows: dict[str, WindowReport]
    budget: BudgetReport
    severities: dict[str, bool]
    conditions: tuple[ConditionReport, ...]
    steps_triggered: tuple[str, ...] = ()
