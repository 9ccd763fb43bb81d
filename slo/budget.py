"""Exact SLO maths: windows, burn rates, multiwindow conditions, error budgets, timeslices (sre.md §1–§12).

Every quantity a threshold decides on is a :class:`~fractions.Fraction` or an integer cross-multiplication;
floats appear only in :func:`report_json`, the presentation edge. Windows are ``(now - W, now]`` and a sample
``(ts, good, total)`` counts the events of the step that ends at ``ts`` (sre.md §4).

``INF`` is the sentinel for an infinite ratio: ``math.inf``, which Python compares exactly with any Fraction
(``INF > Fraction(72, 5)`` is True). It appears only for target 1.0 (no error budget) with bad events, as the
burn rate and the consumed fraction (remaining is then ``-INF``); :func:`report_json` writes it as
``"inf"``/``"-inf"``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from qfleet.slo.model import (
    SLO,
    BudgetReport,
    ConditionReport,
    Counts,
    SLOReport,
    StandardWindows,
    WindowReport,
    window_label,
)
from qfleet.slo.periods import period_bounds, period_key
from qfleet.units import NS, TimestampError, format_rfc3339, parse_duration, parse_rfc3339

__all__ = [
    "INF",
    "BudgetError",
    "CountsSource",
    "SampleError",
    "StepCounts",
    "burn_exceeds",
    "burn_rate",
    "evaluate_slo",
    "read_samples_csv",
    "report_json",
]

#: The standard windows' lengths, parsed once (every evaluation of every SLO needs them).
_STANDARD_NS: tuple[tuple[str, int], ...] = tuple((w, parse_duration(w)) for w in StandardWindows)

#: An infinite burn rate / consumed fraction (target 1.0 with bad events); see the module docstring.
INF: float = math.inf

_CSV_HEADER = ["ts", "good", "total"]
_COUNT = re.compile(r"^\d+$")


class SampleError(ValueError):
    """Step samples that break a rule (negative, good > total, duplicate timestamp, bad CSV)."""


class BudgetError(ValueError):
    """An SLO that cannot be evaluated as given (target out of range, missing timeslice settings)."""


class CountsSource(Protocol):
    """Where :func:`evaluate_slo` reads counts from; :class:`StepCounts` is the in-memory implementation."""

    def window(self, lo_exclusive_ns: int, hi_inclusive_ns: int) -> Counts:
        """Events of the samples with ``lo < ts <= hi``."""
        ...

    def slices(self, lo_exclusive_ns: int, hi_inclusive_ns: int, slice_ns: int) -> list[Counts]:
        """Per-slice events in ``(lo, hi]``, slices ``(k·slice, (k+1)·slice]``; empty slices omitted."""
        ...


class StepCounts:
    """Per-step samples ``(ts_end_ns, good, total)``, held sorted with prefix sums.

    The input may come in any order (it is sorted); each timestamp may appear once. A window is two bisections
    and two subtractions, O(log n).

    >>> s = StepCounts([(120 * NS, 8, 10), (60 * NS, 10, 10), (180 * NS, 0, 0)])
    >>> s.window(60 * NS, 180 * NS)      # (60 s, 180 s]: the sample at 60 s is outside
    Counts(good=8, total=10)
    >>> s.slices(0, 180 * NS, 120 * NS)  # slices (0, 120 s], (120 s, 240 s]; the second has no events
    [Counts(good=18, total=20)]

    Raises:
        SampleError: a negative count, good > total, a non-integer value or a repeated timestamp.
    """

    __slots__ = ("_good", "_total", "_ts")

    def __init__(self, steps: Iterable[tuple[int, int, int]]) -> None:
        rows = []
        for step in steps:
            ts, good, total = step
            for name, value in (("ts", ts), ("good", good), ("total", total)):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise SampleError(
                        f"step {step!r}: {name}={value!r} is not an integer; "
                        "give ts in integer ns and good/total as whole event counts"
                    )
            if good < 0 or total < 0 or good > total:
                raise SampleError(
                    f"step {step!r}: need 0 <= good <= total; "
                    "good events are a subset of all events, fix the counts"
                )
            rows.append((ts, good, total))
        rows.sort(key=lambda r: r[0])
        self._ts: list[int] = [r[0] for r in rows]
        self._good: list[int] = [0]
        self._total: list[int] = [0]
        for i, (ts, good, total) in enumerate(rows):
            if i and ts == self._ts[i - 1]:
                raise SampleError(
                    f"two steps end at ts={ts}: {rows[i - 1]!r} and {rows[i]!r}; "
                    "give one sample per step (sum good and total of the two)"
                )
            self._good.append(self._good[-1] + good)
            self._total.append(self._total[-1] + total)

    def window(self, lo_exclusive_ns: int, hi_inclusive_ns: int) -> Counts:
        """Events of the samples with ``lo < ts <= hi`` (zero when ``hi <= lo``)."""
        if hi_inclusive_ns <= lo_exclusive_ns:
            return Counts.ZERO
        i = bisect_right(self._ts, lo_exclusive_ns)
        j = bisect_right(self._ts, hi_inclusive_ns)
        return Counts(self._good[j] - self._good[i], self._total[j] - self._total[i])

    def slices(self, lo_exclusive_ns: int, hi_inclusive_ns: int, slice_ns: int) -> list[Counts]:
        """Events per slice ``(k·slice_ns, (k+1)·slice_ns]`` (aligned to the Unix epoch) of the samples in
        ``(lo, hi]``, in time order; slices without events are omitted. A slice cut by ``lo`` or ``hi`` holds
        only its samples inside ``(lo, hi]``.

        Raises:
            SampleError: ``slice_ns`` is not a positive integer.
        """
        if isinstance(slice_ns, bool) or not isinstance(slice_ns, int) or slice_ns <= 0:
            raise SampleError(f"slice_ns={slice_ns!r} is not a positive integer; give the slice length in ns")
        out: list[Counts] = []
        if hi_inclusive_ns <= lo_exclusive_ns:
            return out
        i = bisect_right(self._ts, lo_exclusive_ns)
        end = bisect_right(self._ts, hi_inclusive_ns)
        while i < end:
            k = (self._ts[i] - 1) // slice_ns
            j = bisect_right(self._ts, min((k + 1) * slice_ns, hi_inclusive_ns), i, end)
            total = self._total[j] - self._total[i]
            if total:
                out.append(Counts(self._good[j] - self._good[i], total))
            i = j
        return out

    @property
    def steps(self) -> tuple[tuple[int, int, int], ...]:
        """The samples, sorted by timestamp."""
        return tuple(self)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        for i, ts in enumerate(self._ts):
            yield ts, self._good[i + 1] - self._good[i], self._total[i + 1] - self._total[i]

    def __len__(self) -> int:
        return len(self._ts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepCounts):
            return NotImplemented
        return self._ts == other._ts and self._good == other._good and self._total == other._total

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StepCounts(<{len(self)} steps, {self.window(-(2**63), 2**63)}>)"


def read_samples_csv(source: str | os.PathLike[str]) -> StepCounts:
    """Samples from CSV text or a CSV file with the header exactly ``ts,good,total`` and ``ts`` in RFC 3339.

    ``source`` is a path (a :class:`os.PathLike`, or a string that is not CSV text) or the CSV text itself
    (a string holding a newline or starting with ``ts,``). Blank lines are skipped.

    >>> read_samples_csv("ts,good,total\\n2025-01-01T00:01:00Z,9,10\\n").window(0, 2**62)
    Counts(good=9, total=10)

    Raises:
        SampleError: naming the line number, the column and the fix.
        OSError: the file cannot be read.
    """
    if isinstance(source, os.PathLike) or (
        "\n" not in source and not source.lstrip("\ufeff").startswith("ts,")
    ):
        where = str(source)
        text = Path(source).read_text(encoding="utf-8")
    else:
        where, text = "<text>", source
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None or [c.strip() for c in header] != _CSV_HEADER:
        raise SampleError(
            f"{where} line 1: header is {header!r}; the first line must be exactly ts,good,total"
        )
    rows: list[tuple[int, int, int]] = []
    seen: dict[int, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 3:
            raise SampleError(
                f"{where} line {line}: {len(row)} columns {row!r}; write exactly three, ts,good,total"
            )
        try:
            ts = parse_rfc3339(row[0])
        except TimestampError as err:
            raise SampleError(f"{where} line {line}, column ts: {err}") from err
        counts = []
        for name, cell in (("good", row[1]), ("total", row[2])):
            if not _COUNT.match(cell.strip()):
                raise SampleError(
                    f"{where} line {line}, column {name}: {cell!r} is not a whole number of events; "
                    "write a non-negative integer, e.g. 42"
                )
            counts.append(int(cell))
        good, total = counts
        if good > total:
            raise SampleError(
                f"{where} line {line}, column good: good={good} exceeds total={total}; "
                "good events are a subset of all events, fix the row"
            )
        if ts in seen:
            raise SampleError(
                f"{where} line {line}, column ts: {row[0].strip()!r} repeats line {seen[ts]}; "
                "give one row per step (sum good and total of the two rows)"
            )
        seen[ts] = line
        rows.append((ts, good, total))
    return StepCounts(rows)


def burn_exceeds(bad: int, total: int, target: Fraction, threshold: Fraction) -> bool:
    """``burn = (bad / total) / (1 - target) > threshold``, by integer cross-multiplication (sre.md §11).

    False when ``total`` is 0 (no data). With target 1 (no budget) the burn is infinite when ``bad > 0``,
    else 0.

    >>> burn_exceeds(90, 100, Fraction("0.9375"), Fraction("14.4")), burn_exceeds(91, 100, Fraction("0.9375"),
    ...     Fraction("14.4"))
    (False, True)
    """
    if isinstance(target, float) or isinstance(threshold, float):
        raise BudgetError(
            f"burn_exceeds(target={target!r}, threshold={threshold!r}): floats are inexact; "
            "pass Fractions parsed from decimal text, e.g. Fraction('0.999')"
        )
    if total <= 0:
        return False
    target, threshold = Fraction(target), Fraction(threshold)
    budget = 1 - target
    if budget < 0:
        raise BudgetError(f"target {target} is above 1; a target is a ratio in (0, 1), e.g. 0.999")
    if budget == 0:
        return bad > 0 or threshold < 0
    # bad / total / (n / d) > p / q  <=>  bad * d * q > p * n * total   (all denominators positive)
    return bad * budget.denominator * threshold.denominator > threshold.numerator * budget.numerator * total


def burn_rate(counts: Counts, error_budget: Fraction) -> Fraction | float | None:
    """``(bad / total) / error_budget``; None without events; ``INF`` when the budget is 0 and bad > 0.

    >>> burn_rate(Counts(9_995, 10_000), Fraction(1, 1000)), burn_rate(Counts(0, 0), Fraction(1, 1000))
    (Fraction(1, 2), None)
    """
    if counts.total == 0:
        return None
    return _over_budget(Fraction(counts.bad, counts.total), error_budget)


def evaluate_slo(
    slo: SLO,
    source: CountsSource,
    at_ns: int,
    *,
    segment: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> SLOReport:
    """Windows, burn rates, alert conditions and the error budget of ``slo`` at ``at_ns``.

    - ``windows``: :data:`~slo.model.StandardWindows`, then any other window a pair of ``slo.policy`` uses
      (e.g. Pyrra's ``4d``), then the period (keyed by its spelling, e.g. ``30d``, or ``calendar`` for a
      calendar period, counting period-to-date). Each is ``(at - W, at]``, **event-weighted** (Σbad / Σtotal)
      whatever the budgeting method: for Timeslices and RatioTimeslices too, the windows' burn rates count
      events, not slices (sre.md §4).
    - ``conditions``: one per pair, threshold ``pair.threshold(slo.period.nominal_ns)``; firing iff both burns
      are known and strictly above it and both windows hold ``>= slo.min_events`` events. ``low_traffic`` is
      True when ``min_events > 0`` and either window holds fewer (the pair then does not fire). ``severities``
      ORs the pairs of each severity (``page`` and ``ticket`` always present).
    - ``budget`` over ``(period_start, at]``: Occurrences counts events; Timeslices counts slices of
      ``time_slice_ns`` (good iff the slice ratio ``>= time_slice_target``); RatioTimeslices averages slice
      ratios; empty slices are excluded (sre.md §7). ``consumed = (1 - sli) / B``,
      ``remaining = 1 - consumed`` (not clamped), ``exhausted = consumed >= 1``; these, ``sli`` and the
      bad-event figures are None when the period holds no events. ``good``/``total``/``bad``,
      ``allowed_bad_events = B·total`` and ``remaining_bad_events = B·total - bad`` are always in **events**
      (for the timeslice methods, the event view beside the slice-based fractions).
      ``budget_minutes = B ×`` the real period length in minutes.
    - ``steps_triggered``: the ``budget_policy`` steps with ``consumed >= consumed_fraction``.

    >>> from qfleet.slo.model import AlertPolicy, Pair, Period, SpanRatioIndicator
    >>> page_fast = Pair(name="page_fast", severity="page", long_ns=3600 * NS, short_ns=300 * NS,
    ...                  budget_fraction=Fraction(2, 100))
    >>> slo = SLO(name="jobs", service="q", target=Fraction("0.999"),
    ...           period=Period(rolling_ns=30 * 86400 * NS), budgeting="Occurrences",
    ...           indicator=SpanRatioIndicator(span="job"), policy=AlertPolicy(name="p", pairs=(page_fast,)))
    >>> steady = StepCounts((m * 60 * NS, 9_995, 10_000) for m in range(1, 43_201))  # 30 d at burn 0.5
    >>> r = evaluate_slo(slo, steady, 43_200 * 60 * NS)
    >>> r.windows["1h"].burn_rate, r.budget.remaining_fraction, r.severities
    (Fraction(1, 2), Fraction(1, 2), {'page': False, 'ticket': False})

    Raises:
        BudgetError: target outside [0, 1] or a float; timeslice settings missing for the budgeting method.
        PeriodError: a calendar period that cannot be interpreted.
    """
    budget = _error_budget(slo)
    at_ns = int(at_ns)
    start_ns, end_ns = period_bounds(slo.period, at_ns)

    lengths: dict[str, int] = dict(_STANDARD_NS)
    for pair in slo.policy.pairs:
        for ns in (pair.long_ns, pair.short_ns):
            lengths.setdefault(window_label(ns), ns)
    windows = {key: _window(source.window(at_ns - ns, at_ns), budget) for key, ns in lengths.items()}
    period_counts = source.window(start_ns, at_ns)
    windows[period_key(slo.period)] = _window(period_counts, budget)

    conditions = []
    severities = {"page": False, "ticket": False}
    for pair in slo.policy.pairs:
        threshold = pair.threshold(slo.period.nominal_ns)
        lw, sw = windows[window_label(pair.long_ns)], windows[window_label(pair.short_ns)]
        low = slo.min_events > 0 and min(lw.total, sw.total) < slo.min_events
        firing = (
            not low
            and burn_exceeds(lw.bad, lw.total, slo.target, threshold)
            and burn_exceeds(sw.bad, sw.total, slo.target, threshold)
        )
        severities[pair.severity] = severities.get(pair.severity, False) or firing
        conditions.append(
            ConditionReport(
                name=pair.name,
                severity=pair.severity,
                long_window=window_label(pair.long_ns),
                short_window=window_label(pair.short_ns),
                threshold=threshold,
                long_burn_rate=lw.burn_rate,
                short_burn_rate=sw.burn_rate,
                firing=firing,
                low_traffic=low,
            )
        )

    report_budget = _budget(slo, source, budget, period_counts, start_ns, end_ns, at_ns)
    consumed = report_budget.consumed_fraction
    steps = tuple(
        step.name for step in slo.budget_policy if consumed is not None and consumed >= step.consumed_fraction
    )
    items = segment.items() if isinstance(segment, Mapping) else segment
    return SLOReport(
        slo=slo.name,
        segment=tuple((str(k), str(v)) for k, v in items),
        at_ns=at_ns,
        error_budget=budget,
        windows=windows,
        budget=report_budget,
        severities=severities,
        conditions=tuple(conditions),
        steps_triggered=steps,
    )


def report_json(report: SLOReport) -> dict[str, Any]:
    """The report as JSON-ready data: Fractions as floats (only here), None as null, infinities as
    ``"inf"``/``"-inf"``, instants as RFC 3339. ``json.dumps(report_json(r), allow_nan=False)`` always works.

    Shape: ``{slo, segment, at, error_budget, windows: {w: {good, total, bad, error_ratio, burn_rate}},
    budget: {good, total, bad, no_data, sli, consumed_fraction, remaining_fraction, allowed_bad_events,
    remaining_bad_events, exhausted, budget_minutes, period_start, period_end}, alerts: {severities,
    conditions: [{severity, long_window, short_window, threshold, long_burn_rate, short_burn_rate, firing,
    low_traffic, name}]}, steps_triggered}``.
    """
    b = report.budget
    return {
        "slo": report.slo,
        "segment": dict(report.segment),
        "at": format_rfc3339(report.at_ns),
        "error_budget": _num(report.error_budget),
        "windows": {
            key: {
                "good": w.good,
                "total": w.total,
                "bad": w.bad,
                "error_ratio": _num(w.error_ratio),
                "burn_rate": _num(w.burn_rate),
            }
            for key, w in report.windows.items()
        },
        "budget": {
            "good": b.good,
            "total": b.total,
            "bad": b.bad,
            "no_data": b.no_data,
            "sli": _num(b.sli),
            "consumed_fraction": _num(b.consumed_fraction),
            "remaining_fraction": _num(b.remaining_fraction),
            "allowed_bad_events": _num(b.allowed_bad_events),
            "remaining_bad_events": _num(b.remaining_bad_events),
            "exhausted": b.exhausted,
            "budget_minutes": _num(b.budget_minutes),
            "period_start": format_rfc3339(b.period_start_ns),
            "period_end": format_rfc3339(b.period_end_ns),
        },
        "alerts": {
            "severities": dict(report.severities),
            "conditions": [
                {
                    "severity": c.severity,
                    "long_window": c.long_window,
                    "short_window": c.short_window,
                    "threshold": _num(c.threshold),
                    "long_burn_rate": _num(c.long_burn_rate),
                    "short_burn_rate": _num(c.short_burn_rate),
                    "firing": c.firing,
                    "low_traffic": c.low_traffic,
                    "name": c.name,
                }
                for c in report.conditions
            ],
        },
        "steps_triggered": list(report.steps_triggered),
    }


# ------------------------------------------------------------------------------------------------------------


def _error_budget(slo: SLO) -> Fraction:
    for name, value in (("target", slo.target), ("time_slice_target", slo.time_slice_target)):
        if isinstance(value, float):
            raise BudgetError(
                f"slo {slo.name!r}: {name}={value!r} is a float; parse it exactly from its decimal "
                f"text, e.g. Fraction({str(value)!r})"
            )
    if not 0 <= slo.target <= 1:
        raise BudgetError(
            f"slo {slo.name!r}: target {slo.target} is outside [0, 1]; "
            "a target is a ratio, e.g. 0.999 (not 99.9)"
        )
    if slo.budgeting not in ("Occurrences", "Timeslices", "RatioTimeslices"):
        raise BudgetError(
            f"slo {slo.name!r}: budgeting {slo.budgeting!r} is unknown; "
            "use Occurrences, Timeslices or RatioTimeslices"
        )
    if slo.budgeting != "Occurrences" and (not isinstance(slo.time_slice_ns, int) or slo.time_slice_ns <= 0):
        raise BudgetError(
            f"slo {slo.name!r}: {slo.budgeting} needs time_slice_ns > 0 (got "
            f"{slo.time_slice_ns!r}); set timeSliceWindow, e.g. 1m"
        )
    if slo.budgeting == "Timeslices" and slo.time_slice_target is None:
        raise BudgetError(
            f"slo {slo.name!r}: Timeslices needs time_slice_target; set timeSliceTarget, e.g. 0.8"
        )
    return Fraction(1 - slo.target)


def _over_budget(ratio: Fraction, budget: Fraction) -> Fraction | float:
    if budget == 0:
        return INF if ratio > 0 else Fraction(0)
    return ratio / budget


def _window(counts: Counts, budget: Fraction) -> WindowReport:
    if counts.total == 0:
        return WindowReport(counts.good, 0, 0, None, None)
    ratio = Fraction(counts.bad, counts.total)
    return WindowReport(counts.good, counts.total, counts.bad, ratio, _over_budget(ratio, budget))


def _budget(
    slo: SLO, source: CountsSource, budget: Fraction, counts: Counts, start_ns: int, end_ns: int, at_ns: int
) -> BudgetReport:
    sli: Fraction | None = None
    if counts.total > 0:
        if slo.budgeting == "Occurrences":
            sli = Fraction(counts.good, counts.total)
        else:
            assert slo.time_slice_ns is not None
            slices = [c for c in source.slices(start_ns, at_ns, slo.time_slice_ns) if c.total > 0]
            if slices and slo.budgeting == "Timeslices":
                assert slo.time_slice_target is not None  # checked by _error_budget
                tst = slo.time_slice_target
                good = sum(1 for c in slices if c.good * tst.denominator >= tst.numerator * c.total)
                sli = Fraction(good, len(slices))
            elif slices:
                sli = sum((Fraction(c.good, c.total) for c in slices), Fraction(0)) / len(slices)
    minutes = budget * Fraction(end_ns - start_ns, 60 * NS)
    if sli is None:
        return BudgetReport(
            good=counts.good,
            total=counts.total,
            bad=counts.bad,
            no_data=True,
            sli=None,
            consumed_fraction=None,
            remaining_fraction=None,
            allowed_bad_events=None,
            remaining_bad_events=None,
            exhausted=None,
            budget_minutes=minutes,
            period_start_ns=start_ns,
            period_end_ns=end_ns,
        )
    consumed = _over_budget(1 - sli, budget)
    allowed = budget * counts.total
    return BudgetReport(
        good=counts.good,
        total=counts.total,
        bad=counts.bad,
        no_data=False,
        sli=sli,
        consumed_fraction=consumed,
        remaining_fraction=1 - consumed,
        allowed_bad_events=allowed,
        remaining_bad_events=allowed - counts.bad,
        exhausted=consumed >= 1,
        budget_minutes=minutes,
        period_start_ns=start_ns,
        period_end_ns=end_ns,
    )


def _num(x: Fraction | float | int | None) -> float | int | str | None:
    if x is None:
        return None
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, int):
        return x
    return float(x)
