"""The alert-quality lab's statistics: a pure function from run records to the campaign report.

A *run record* is what one game day of a campaign leaves (:func:`qfleet.runbooks.lab.record_of` makes it from a
scorecard): plain JSON, so that records from worker processes, Dask workers and an earlier, killed run of the same
campaign are all the same values. :func:`aggregate` sorts them by key first, so the report does not depend on the
order in which runs finished.

The intervals:

- **Detection probability**: Wilson score interval at 95 % (Wilson 1927; Agresti & Coull 1998 recommend it over
  the normal approximation for small n and p near 0 or 1).
- **False pages and tickets per simulated day**: the exact (Garwood 1936) Poisson interval of the count, divided
  by the simulated days of the calm runs.
- **Percentiles** of time to detect: linear interpolation between order statistics (Hyndman & Fan type 7, the
  default of numpy and R), over the runs that detected the fault.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

__all__ = ["REPORT_VERSION", "Z95", "aggregate", "findings", "percentile", "poisson_interval", "severity", "wilson"]

REPORT_VERSION = 1
Z95 = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95 % interval."""
_DAY_S = 86400.0


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials (None when ``n`` is 0).

    >>> lo, hi = wilson(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
    """
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At k = 0 or k = n one bound is exactly 0 or 1; rounding must not leave it a hair off.
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def _poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), summed in log space (k is a count of pages: small)."""
    if lam == 0:
        return 1.0
    log_term = -lam
    total = math.exp(log_term)
    for i in range(1, k + 1):
        log_term += math.log(lam) - math.log(i)
        total += math.exp(log_term)
    return min(1.0, total)


def _solve(f: Any, lo: float, hi: float) -> float:
    """The root of a decreasing ``f`` on ``[lo, hi]`` by bisection (to float precision)."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def poisson_interval(k: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact two-sided ``1 - alpha`` interval for the mean of a Poisson count ``k`` (Garwood).

    >>> [round(x, 3) for x in poisson_interval(0)], [round(x, 3) for x in poisson_interval(1)]
    ([0.0, 3.689], [0.025, 5.572])
    """
    if k < 0:
        raise ValueError(f"k={k} must be a count >= 0")
    hi_bracket = 10.0 + 3.0 * k + 10.0 * math.sqrt(k + 1)
    upper = _solve(lambda lam: _poisson_cdf(k, lam) - alpha / 2, 0.0, hi_bracket)
    # P(X >= k) rises with the mean: alpha/2 minus it falls, as _solve wants.
    lower = 0.0 if k == 0 else _solve(lambda lam: alpha / 2 - (1.0 - _poisson_cdf(k - 1, lam)), 0.0, upper)
    return lower, upper


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between order statistics; None when empty.

    >>> percentile([60.0, 120.0, 180.0, 600.0], 50), percentile([60.0, 120.0, 180.0, 600.0], 90)
    (150.0, 474.0)
    """
    if not values:
        return None
    xs = sorted(values)
    # Exact rational interpolation, rounded once: the result does not depend on the order of float operations.
    h = Fraction(len(xs) - 1) * Fraction(q) / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    a, b = Fraction(xs[lo]), Fraction(xs[hi])
    return float(a + (h - lo) * (b - a))


def _rate(k: int, days: float) -> dict[str, Any]:
    """A count over simulated days: the count, the rate per day and its 95 % interval (None without days)."""
    if days <= 0:
        return {"count": k, "per_day": None, "per_day_ci": None}
    lo, hi = poisson_interval(k)
    return {"count": k, "per_day": k / days, "per_day_ci": [lo / days, hi / days]}


def _cell_key(cell: Mapping[str, Any]) -> tuple[str, float, str]:
    return (str(cell["kind"]), float(cell["magnitude"]), str(cell["profile"]))


def _detection(hits: int, n: int, ttds: list[float], localized: int) -> dict[str, Any]:
    ci = wilson(hits, n)
    return {"runs": n, "detected": hits, "p_detect": hits / n if n else None, "p_detect_ci": list(ci) if ci else None,
            "ttd_p50_s": percentile(ttds, 50), "ttd_p90_s": percentile(ttds, 90), "ttd_s": sorted(ttds),
            "localized": localized, "localized_rate": localized / n if n else None}


Cells = dict[tuple[str, float, str], list[Mapping[str, Any]]]


def _cell_rows(cells: Cells) -> list[dict[str, Any]]:
    """Any alert: per fault kind x magnitude x profile."""
    rows = []
    for (kind, mag, prof), rs in sorted(cells.items()):
        f = [r["fault"] for r in rs]
        ttds = [float(x["ttd_s"]) for x in f if x["detected"] and x["ttd_s"] is not None]
        rows.append({"kind": kind, "magnitude": mag, "profile": prof, "unit": rs[0]["cell"].get("unit", ""),
                     **_detection(sum(x["detected"] for x in f), len(f), ttds, sum(x["localized"] for x in f)),
                     "notifications_per_fault": sum(int(x["notifications"]) for x in f) / len(f)})
    return rows


def _rule_row(name: str, cells: Cells, calm_runs: list[Mapping[str, Any]], calm_days: float) -> dict[str, Any]:
    """One alert name: its detections per cell, its false pages and tickets on the calm runs."""
    per_cell = []
    for (kind, mag, prof), rs in sorted(cells.items()):
        hits = [d for r in rs for d in r["fault"]["detections"] if d[0] == name]
        if hits:
            per_cell.append({"kind": kind, "magnitude": mag, "profile": prof,
                             **_detection(len(hits), len(rs), [float(d[1]) for d in hits],
                                          sum(bool(d[2]) for d in hits))})
    false = [a for r in calm_runs for a in r["false_alerts"] if a[0] == name]
    return {"name": name, "cells": per_cell,
            "calm_false_pages": _rate(sum(a[1] == "page" for a in false), calm_days),
            "calm_false_tickets": _rate(sum(a[1] == "ticket" for a in false), calm_days),
            "calm_false_alerts": _rate(len(false), calm_days)}


def _overall(runs: list[Mapping[str, Any]], fault_runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    alerts = sum(int(r["alerts"]) for r in runs)
    true_alerts = sum(int(r["true_alerts"]) for r in runs)
    detected = sum(bool(r["fault"]["detected"]) for r in fault_runs)
    ci = wilson(detected, len(fault_runs))
    return {"faults": len(fault_runs), "detected": detected,
            "recall": detected / len(fault_runs) if fault_runs else None, "recall_ci": list(ci) if ci else None,
            "alerts": alerts, "true_alerts": true_alerts, "precision": true_alerts / alerts if alerts else None,
            "localized": sum(bool(r["fault"]["localized"]) for r in fault_runs)}


def aggregate(records: Iterable[Mapping[str, Any]], *, campaign: Mapping[str, Any]) -> dict[str, Any]:
    """The campaign report (``docs/alert-quality.md`` documents its keys) from run records, in any order.

    ``campaign`` is the campaign's identity (name, hash, runs planned) copied into the report.
    """
    runs = sorted(records, key=lambda r: str(r["key"]))
    fault_runs = [r for r in runs if r.get("cell")]
    calm_runs = [r for r in runs if not r.get("cell")]
    cells: Cells = defaultdict(list)
    for r in fault_runs:
        cells[_cell_key(r["cell"])].append(r)
    names = sorted({d[0] for r in fault_runs for d in r["fault"]["detections"]}
                   | {a[0] for r in runs for a in r["false_alerts"]})
    calm_days = sum(float(r["duration_s"]) for r in calm_runs) / _DAY_S
    cell_rows = _cell_rows(cells)
    rule_rows = [_rule_row(name, cells, calm_runs, calm_days) for name in names]
    return {
        "version": REPORT_VERSION, "kind": "CampaignReport", "campaign": dict(campaign),
        "runs": len(runs), "fault_runs": len(fault_runs), "calm_runs": len(calm_runs),
        "simulated_days": sum(float(r["duration_s"]) for r in runs) / _DAY_S, "calm_days": calm_days,
        "overall": _overall(runs, fault_runs),
        "calm": {"false_pages": _rate(sum(int(r["false_pages"]) for r in calm_runs), calm_days),
                 "false_tickets": _rate(sum(int(r["false_tickets"]) for r in calm_runs), calm_days),
                 "false_alerts": _rate(sum(len(r["false_alerts"]) for r in calm_runs), calm_days)},
        "cells": cell_rows,
        "rules": rule_rows,
        "findings": findings(cell_rows, rule_rows, calm_days),
    }


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def _mag(m: float) -> str:
    return f"{m:g}"


def severity(kind: str, magnitude: float) -> float:
    """How strong a ``kind`` fault of ``magnitude`` is, larger = stronger: F1's magnitude is the share of heralding
    left (0 = cut), every other kind's grows with its effect."""
    return 1.0 - magnitude if kind == "F1" else magnitude


def findings(cells: Sequence[Mapping[str, Any]], rules: Sequence[Mapping[str, Any]], calm_days: float) -> list[str]:
    """Plain-language findings: the strongest setting of each fault kind that is still missed, from which
    strength on it is always caught and how fast, and which rules page on a calm fleet."""
    out: list[str] = []
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for c in cells:
        groups[(str(c["kind"]), str(c["profile"]))].append(c)
    for (kind, profile), cs in sorted(groups.items()):
        strength = {id(c): severity(kind, float(c["magnitude"])) for c in cs}
        one = len(cs) == 1  # an on/off fault (F5, F7), or a single magnitude: no "and above"
        missed = [c for c in cs if c["p_detect"] is not None and c["p_detect"] < 0.5]
        caught = [c for c in cs if c["p_detect"] is not None and c["p_detect"] >= 0.5]
        if missed:
            worst = max(missed, key=lambda c: strength[id(c)])
            at = "" if one else f" at magnitude {_mag(worst['magnitude'])}"
            out.append(f"{kind} ({profile}){at} is missed {_pct(1 - worst['p_detect'])} of the time "
                       f"({worst['runs'] - worst['detected']} of {worst['runs']} runs)"
                       + ("; milder settings are missed too" if len(missed) > 1 else ""))
        always = [c for c in caught if c["p_detect"] == 1]
        if always and len(always) == len(caught):
            weakest = min(always, key=lambda c: strength[id(c)])
            ttds = [t for c in always for t in c["ttd_s"]]
            side = "and below" if kind == "F1" else "and above"
            at = "" if one else f" at magnitude {_mag(weakest['magnitude'])} {side}"
            out.append(f"{kind} ({profile}){at} is caught in every run, median time to detect "
                       f"{percentile(ttds, 50) or 0:.0f} s")
    for r in rules:
        pages = r["calm_false_pages"]
        if pages["count"] and pages["per_day"] is not None:
            lo, hi = pages["per_day_ci"]
            out.append(f"{r['name']} pages {pages['per_day']:.2g} times a day on a calm fleet (95 % interval "
                       f"{lo:.2g}-{hi:.2g}, {pages['count']} pages in {calm_days:.3g} simulated days)")
    if calm_days > 0 and not any(r["calm_false_pages"]["count"] for r in rules):
        out.append(f"No rule paged on a calm fleet in {calm_days:.3g} simulated days")
    return out
