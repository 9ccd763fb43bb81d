"""SLO evaluation over the store at an instant: materialise the per-minute counts, evaluate every SLO segment,
and keep the results as the evaluation history the dashboards plot and the alerts package reads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Engine, insert, text

from qfleet.slo.budget import StepCounts, evaluate_slo, report_json
from qfleet.slo.model import SLO, SLOReport, StandardWindows
from qfleet.slo.periods import period_bounds
from qfleet.slo.schema import SloEvaluation
from qfleet.slo.sli import SliSource, segment_key, segment_labels
from qfleet.units import parse_duration

__all__ = ["evaluate_store", "lookback_ns", "record", "refresh_counts", "window_starts"]


def window_starts(slo: SLO, at_ns: int) -> list[int]:
    """Start of every window an evaluation at ``at_ns`` reads: the standard ones, the policy's, the period."""
    wins = {parse_duration(w) for w in StandardWindows}
    for p in slo.policy.pairs:
        wins.update((p.long_ns, p.short_ns))
    start, _end = period_bounds(slo.period, at_ns)
    return sorted({at_ns - w for w in wins} | {start})


def lookback_ns(slo: SLO, at_ns: int) -> int:
    """How far back from ``at_ns`` the counts must reach."""
    return at_ns - min(window_starts(slo, at_ns))


def evaluate_store(slos: Sequence[SLO], source: SliSource, at_ns: int, *, refresh: bool = True) -> list[SLOReport]:
    """Evaluate every SLO (one report per segment seen; one no-data report for an SLO without any) at ``at_ns``.

    Args:
        slos: the specs.
        source: the store's counts.
        at_ns: the instant (Unix ns); windows are ``(at - W, at]``.
        refresh: materialise the per-minute counts up to ``at_ns`` first (incremental).
    """
    starts = [window_starts(slo, at_ns) for slo in slos]
    if refresh:
        refresh_counts(slos, source, at_ns)
    occurrences = iter(source.interval_counts_many(
        [(slo, s) for slo, s in zip(slos, starts, strict=True) if slo.budgeting == "Occurrences"], at_ns))
    reports: list[SLOReport] = []
    for slo, s in zip(slos, starts, strict=True):
        if slo.budgeting == "Occurrences":
            per = next(occurrences)
        else:
            per = source.minute_counts(slo, min(s), at_ns)
        for seg, samples in sorted((per or {"": []}).items()):
            counts = StepCounts((t, c.good, c.total) for t, c in samples)
            reports.append(evaluate_slo(slo, counts, at_ns, segment=segment_labels(seg)))
    return reports


def refresh_counts(slos: Sequence[SLO], source: SliSource, at_ns: int, *, first_ns: int | None = None) -> None:
    """Materialise the per-minute counts that evaluations of ``slos`` read at every instant from ``first_ns``
    (default ``at_ns``) to ``at_ns`` (what ``evaluate_store(..., refresh=True)`` does for one instant)."""
    # One refresh per reach (usually one for all the SLOs): they share its reads and its transaction.
    reach: dict[int, list[SLO]] = defaultdict(list)
    for slo in slos:
        reach[min(window_starts(slo, at_ns if first_ns is None else first_ns))].append(slo)
    for since, group in reach.items():
        source.refresh(group, at_ns, since_ns=since)


def _float(x: object) -> float | None:
    """A report number as a column value; None for no data and for the ``"inf"`` texts of report_json."""
    return float(x) if isinstance(x, int | float) else None


# Built once: record runs every evaluation.
_DELETE = text("DELETE FROM slo_evaluations WHERE slo = :slo AND segment = :segment AND at_unix_nano = :at")
_INSERT = insert(SloEvaluation)


def record(engine: Engine, reports: Sequence[SLOReport]) -> int:
    """Store ``reports`` in ``slo_evaluations`` (replacing an earlier evaluation of the same instant)."""
    rows = []
    for r in reports:
        doc = report_json(r)  # JSON-ready already: the column type encodes it
        burns = {w: doc["windows"].get(w, {}).get("burn_rate") for w in ("1h", "6h")}
        rows.append({"slo": r.slo, "segment": segment_key(r.segment), "at_unix_nano": r.at_ns,
                     "sli": _float(doc["budget"]["sli"]), "remaining_fraction": _float(doc["budget"]["remaining_fraction"]),
                     "burn_1h": _float(burns["1h"]), "burn_6h": _float(burns["6h"]),
                     "page": bool(r.severities.get("page")), "ticket": bool(r.severities.get("ticket")),
                     "report": doc})
    if rows:
        with engine.begin() as conn:
            conn.execute(_DELETE, [{"slo": r["slo"], "segment": r["segment"], "at": r["at_unix_nano"]} for r in rows])
            conn.execute(_INSERT, rows)
    return len(rows)
