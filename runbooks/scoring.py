"""The game-day scorer: a pure function from what happened (faults, alerts, notifications, incidents, budgets) to a
:class:`Scorecard`, with no simulation, store or clock, so every rule can be tested on hand-built values.

Rules (the README of ``runbooks/`` repeats them for users):

- **Place of a fault.** A fault's target is a node, a link ``a~b``, ``orchestrator`` (fleet-wide), or the node list
  of an F7 cycle. Its nodes are the node, the cycle, or the two ends of the link.
- **Locating.** An alert that names a node (label ``node``) or a link (label ``link``) locates a fault when that
  node is one of the fault's nodes, or that link is the fault's link or touches one of its nodes: it is *exact*.
  An alert with neither but a ``hardware_type`` (or, during the rename, ``qfleet_hardware_type``) locates it when
  that is the hardware type of one of the fault's nodes: the *segment*. An alert with none of the three is
  *fleet-wide* and locates fleet-wide faults only. An alert naming the wrong node never falls back to its segment.
- **Detected** by an expectation: some alert locates the fault and starts in ``[start, start + within]``; when
  the expectation lists alert names, the alert is one of them. **Localized**: the first such alert is exact
  (or fleet-wide, for a fleet-wide fault, where that is the exact place).
- **False positive**: an alert (any severity) whose firing overlaps no ``[start, end + grace]`` of a fault it
  locates, whatever its name. Attributed to a fault: the alerts that do overlap it, and the notifications and
  incidents that carry one of those alerts.
- **Budget** consumed is a share of the budget of the SLO's full period ``P`` (see :func:`period_share`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from qfleet.alerts.model import Alert
from qfleet.units import NS

__all__ = ["DAY_NS", "DEFAULT_GRACE_NS", "DEFAULT_WITHIN_NS", "FLEET_WIDE", "BudgetBurn", "Delivery",
           "Expectation", "FaultScore", "FaultWindow", "IncidentRecord", "Scorecard", "alert_name", "locate",
           "period_share", "score"]

FLEET_WIDE = "orchestrator"
"""The target of a fleet-wide fault (F3 on the central orchestrator)."""
DEFAULT_GRACE_NS = 15 * 60 * NS
"""After a fault ends, alerts on its target are still its doing for this long (resolution and ``for`` delays)."""
DEFAULT_WITHIN_NS = 10 * 60 * NS
"""Detection window of an expectation that gives none (and of faults without an expectation, for recall)."""
DAY_NS = 86400 * NS
_HARDWARE_LABELS = ("hardware_type", "qfleet_hardware_type")  # the second until the rename is done everywhere

Where = Literal["exact", "segment", "fleet"]
AlertKey = tuple[str, int]  # (fingerprint, starts_at): one firing of one alert


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What must happen for one fault: an alert locating it starts within ``within_ns`` of its start (one of
    ``alerts`` when any are listed), naming its node or link when ``localized``, reaching ``receiver`` if given."""

    fault: str
    alerts: tuple[str, ...] = ()
    within_ns: int = DEFAULT_WITHIN_NS
    receiver: str | None = None
    localized: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultWindow:
    """One injected fault in absolute simulated time: active on ``[start_ns, end_ns)``; ``nodes`` is an F7 cycle."""

    id: str
    kind: str
    target: str
    start_ns: int
    end_ns: int
    nodes: tuple[str, ...] = ()

    @property
    def fleet_wide(self) -> bool:
        return self.target == FLEET_WIDE

    @property
    def link(self) -> frozenset[str] | None:
        """The ends of the target link, or None when the target is not a link."""
        return frozenset(self.target.split("~")) if "~" in self.target else None

    @property
    def places(self) -> frozenset[str]:
        """The nodes the fault is on: the node, the cycle, or the link's ends (none when fleet-wide)."""
        if self.fleet_wide:
            return frozenset()
        return self.link or frozenset(self.nodes or (self.target,))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook notification as a receiver got it: the alerts it carries (firing and resolved)."""

    receiver: str
    alerts: tuple[AlertKey, ...]


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One incident opened during the run, and the alerts that fired into it."""

    id: str
    opened_ns: int
    severity: str
    alerts: tuple[AlertKey, ...]


@dataclass(frozen=True, slots=True)
class BudgetBurn:
    """One SLO (segment) over the game day: ``burn`` is the error ratio over the budget fraction in the observed
    span; ``consumed`` the share of the full period's budget that span's bad events used (:func:`period_share`)."""

    slo: str
    burn: Fraction | None
    observed_ns: int
    period_ns: int
    consumed: Fraction | None


@dataclass(frozen=True, slots=True)
class FaultScore:
    """How one injected fault was caught, and what it cost in alerts, notifications and incidents.

    Times to detect and localize count from the fault's start; time to resolve from its end to the last of its
    attributed alerts resolving (None when it has none or one still fires at the end of the run).
    """

    fault: str
    kind: str
    target: str
    expected: bool
    detected: bool
    localized: bool
    time_to_detect_s: float | None
    time_to_localize_s: float | None
    time_to_resolve_s: float | None
    alerts: tuple[str, ...]
    receivers: tuple[str, ...]
    notifications: int
    incidents: int
    passed: bool
    why: str = ""
    #: Per alert name that located the fault within its detection window: (name, seconds from the fault's start
    #: to its first locating firing, whether one of its firings there named the exact place), sorted by name.
    detections: tuple[tuple[str, float, bool], ...] = ()


def _ratio(num: int, den: Fraction | int) -> float | None:
    return None if den == 0 else float(Fraction(num) / den)


@dataclass(frozen=True, slots=True)
class Scorecard:
    """The result of a game day; ``passed`` is what the exit status reports."""

    name: str
    run_id: str
    duration_ns: int
    grace_ns: int
    faults: tuple[FaultScore, ...]
    alerts: int
    false_positives: tuple[str, ...]
    false_pages: int
    false_tickets: int
    allowed_false_positives: int
    notifications: int
    incidents: int
    budgets: tuple[BudgetBurn, ...] = ()
    budget_failures: tuple[str, ...] = ()
    #: (alert name, severity) of each false positive, in the order of ``false_positives``.
    false_alerts: tuple[tuple[str, str], ...] = ()

    @property
    def true_alerts(self) -> int:
        return self.alerts - len(self.false_positives)

    @property
    def precision(self) -> float | None:
        """True alerts over all alerts (None without alerts)."""
        return _ratio(self.true_alerts, self.alerts)

    @property
    def recall(self) -> float | None:
        """Detected faults over faults (None without faults)."""
        return _ratio(sum(f.detected for f in self.faults), len(self.faults))

    @property
    def days(self) -> Fraction:
        return Fraction(self.duration_ns, DAY_NS)

    @property
    def passed(self) -> bool:
        return (all(f.passed for f in self.faults) and len(self.false_positives) <= self.allowed_false_positives
                and not self.budget_failures)

    def to_json(self) -> dict[str, Any]:
        """The scorecard as plain data (``qfleet gameday run --json``)."""
        nf = len(self.faults)
        return {
            "name": self.name, "run_id": self.run_id, "passed": self.passed,
            "duration_s": self.duration_ns / NS, "grace_s": self.grace_ns / NS,
            "faults": [{k: _plain(v) for k, v in _fields(f).items()} for f in self.faults],
            "alerts": self.alerts, "true_alerts": self.true_alerts,
            "precision": self.precision, "recall": self.recall,
            "false_positives": list(self.false_positives), "false_alerts": _plain(self.false_alerts),
            "allowed_false_positives": self.allowed_false_positives,
            "false_pages": self.false_pages, "false_tickets": self.false_tickets,
            "false_pages_per_day": _ratio(self.false_pages, self.days),
            "false_tickets_per_day": _ratio(self.false_tickets, self.days),
            "notifications": self.notifications, "notifications_per_fault": _ratio(self.notifications, nf),
            "incidents": self.incidents, "incidents_per_fault": _ratio(self.incidents, nf),
            "budget_consumed": {b.slo: _float(b.consumed) for b in self.budgets},
            "budget": [{"slo": b.slo, "consumed_of_period": _float(b.consumed), "burn_rate": _float(b.burn),
                        "observed_s": b.observed_ns / NS, "period_s": b.period_ns / NS} for b in self.budgets],
            "budget_failures": list(self.budget_failures),
        }

    def format_text(self) -> str:
        """A human-readable scorecard."""
        j = self.to_json()
        lines = [f"game day {self.name}: {'PASSED' if self.passed else 'FAILED'} ({self.notifications} "
                 f"notifications, {self.incidents} incidents, {len(self.faults)} faults, "
                 f"{_hours(self.duration_ns)} simulated)"]
        for f in self.faults:
            lines.append(f"  {'ok ' if f.passed else 'NO '} {f.fault} ({f.kind} on {f.target}): detected "
                         f"{_yes(f.detected)}, localized {_yes(f.localized)}, time to detect "
                         f"{_secs(f.time_to_detect_s)}, to localize {_secs(f.time_to_localize_s)}, resolved after "
                         f"{_secs(f.time_to_resolve_s)}; alerts {', '.join(f.alerts) or '-'}; receivers "
                         f"{', '.join(f.receivers) or '-'}; {f.notifications} notifications, {f.incidents} incidents"
                         + ("" if f.expected else " (no expectation)") + (f"  [{f.why}]" if f.why else ""))
        lines.append(f"  precision {_pct(self.precision)} ({self.true_alerts} of {self.alerts} alerts on a faulty "
                     f"target), recall {_pct(self.recall)}")
        lines.append(f"  false positives: {len(self.false_positives)} (allowed {self.allowed_false_positives}; "
                     f"grace {_secs(self.grace_ns / NS)} after each fault)"
                     + (f": {', '.join(self.false_positives)}" if self.false_positives else ""))
        lines.append(f"  false pages {self.false_pages} ({_num(j['false_pages_per_day'])}/day), false tickets "
                     f"{self.false_tickets} ({_num(j['false_tickets_per_day'])}/day)")
        lines.append(f"  notifications per fault {_num(j['notifications_per_fault'])}, incidents per fault "
                     f"{_num(j['incidents_per_fault'])}")
        for b in sorted(self.budgets, key=lambda b: b.slo):
            lines.append(f"  budget burned {b.slo}: {_pct(_float(b.consumed), 3)} of its {_hours(b.period_ns)} "
                         f"budget in {_hours(b.observed_ns)} (burn rate {_num(_float(b.burn))})")
        lines.extend(f"  budget FAILED: {b}" for b in self.budget_failures)
        return "\n".join(lines)


def _fields(f: FaultScore) -> dict[str, Any]:
    return {name: getattr(f, name) for name in FaultScore.__slots__}


def _plain(v: Any) -> Any:
    """Tuples (nested) as lists, for JSON."""
    return [_plain(x) for x in v] if isinstance(v, tuple) else v


def _float(x: Fraction | float | None) -> float | None:
    return None if x is None else float(x)


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _secs(s: float | None) -> str:
    return "-" if s is None else f"{s:.0f} s"


def _pct(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _hours(ns: int) -> str:
    h = Fraction(ns, 3600 * NS)
    return f"{float(h / 24):g} d" if h >= 48 else f"{float(h):g} h"


# -- the rules ---------------------------------------------------------------------------------------------------


def alert_name(a: Alert) -> str:
    """What expectations call an alert: its ``alertname``, or ``slo:<name>`` for an SLO burn-rate alert."""
    lab = dict(a.labels)
    if lab.get("alertname") == "QfleetSLOBurnRate" and lab.get("slo"):
        return f"slo:{lab['slo']}"
    return lab.get("alertname", "?")


def locate(labels: Mapping[str, str], fault: FaultWindow, hardware: Mapping[str, str]) -> Where | None:
    """Whether (and how exactly) an alert's ``labels`` point at ``fault``; ``hardware`` maps node -> type.

    >>> f = FaultWindow(id="x", kind="F2", target="qpu-b", start_ns=0, end_ns=1)
    >>> hw = {"qpu-b": "trapped-ion"}
    >>> locate({"node": "qpu-b"}, f, hw), locate({"link": "qpu-a~qpu-b"}, f, hw), locate({"node": "qpu-a"}, f, hw)
    ('exact', 'exact', None)
    >>> locate({"hardware_type": "trapped-ion"}, f, hw), locate({}, f, hw)
    ('segment', None)
    """
    node, link = labels.get("node", ""), labels.get("link", "")
    hw = next((labels[k] for k in _HARDWARE_LABELS if labels.get(k)), "")
    places = fault.places
    if node or link:
        ends = frozenset(link.split("~")) if link else frozenset()
        hit = node in places or (bool(ends) and (ends == fault.link or bool(ends & places)))
        return "exact" if hit else None
    if hw:
        # A fleet-wide fault reaches every segment: a segment's alert is its doing, though it does not localize it.
        return "segment" if fault.fleet_wide or hw in {hardware.get(n) for n in places} else None
    return "fleet" if fault.fleet_wide else None


def period_share(burn: Fraction, observed_ns: int, period_ns: int) -> Fraction:
    """The share of an SLO's full-period budget that a span of ``observed_ns`` used, given its burn rate over it.

    The period's budget is ``B·N_P`` bad events, with ``B = 1 − T`` and ``N_P`` the events of a whole period;
    a game day sees only ``observed_ns`` of it, so ``N_P`` is estimated at the observed rate,
    ``total × P / observed``. The share is then ``bad / (B × total × P / observed) = burn × observed / P``,
    with ``burn = (bad / total) / B``. The span is capped at the period (a longer run is judged on its last ``P``).

    >>> period_share(Fraction(5), 3 * 3600 * NS, 30 * DAY_NS)  # burn 5 for 3 h of a 30-day period
    Fraction(1, 48)
    """
    return burn * Fraction(min(observed_ns, period_ns), period_ns)


def _overlaps(a: Alert, lo: int, hi: int) -> bool:
    """The firing ``[starts_at, ends_at)`` meets ``[lo, hi]`` (no ``ends_at``: firing until the run ended)."""
    return a.starts_at <= hi and (a.ends_at is None or a.ends_at > lo)


def _key(a: Alert) -> AlertKey:
    return (a.fingerprint, a.starts_at)


def score(*, name: str, run_id: str, start_ns: int, end_ns: int, faults: Sequence[FaultWindow],
          hardware: Mapping[str, str], alerts: Sequence[Alert], expectations: Sequence[Expectation] = (),
          deliveries: Sequence[Delivery] = (), incidents: Sequence[IncidentRecord] = (),
          grace_ns: int = DEFAULT_GRACE_NS, allowed_false_positives: int = 0,
          budgets: Sequence[BudgetBurn] = (), budget_limits: Mapping[str, Fraction] | None = None) -> Scorecard:
    """Score a game day from what happened (module docstring: the rules).

    ``alerts`` holds one :class:`Alert` per firing (``ends_at`` set once resolved); ``deliveries`` and
    ``incidents`` refer to firings by ``(fingerprint, starts_at)``. ``budget_limits`` maps an SLO name to the
    largest period share its segments may consume.
    """
    expect = {e.fault: e for e in expectations}
    located = {f.id: [(a, w) for a in alerts if (w := locate(dict(a.labels), f, hardware))] for f in faults}
    owned = {f.id: [a for a, _w in located[f.id] if _overlaps(a, f.start_ns, f.end_ns + grace_ns)] for f in faults}
    true_keys = {_key(a) for own in owned.values() for a in own}
    false = sorted((a for a in alerts if _key(a) not in true_keys), key=lambda a: (a.starts_at, a.fingerprint))
    scores = tuple(_score_fault(f, expect.get(f.id), located[f.id], owned[f.id], deliveries, incidents)
                   for f in faults)
    limits = budget_limits or {}
    failures = tuple(f"{b.slo} consumed {float(b.consumed):.4f} of its period budget > {float(limit)}"
                     for slo, limit in limits.items() for b in budgets
                     if (b.slo == slo or b.slo.startswith(slo + "[")) and b.consumed is not None
                     and b.consumed > limit)
    return Scorecard(
        name=name, run_id=run_id, duration_ns=end_ns - start_ns, grace_ns=grace_ns, faults=scores,
        alerts=len(alerts),
        false_positives=tuple(f"{alert_name(a)}{_where(a)}@{(a.starts_at - start_ns) / NS:.0f}s" for a in false),
        false_alerts=tuple((alert_name(a), a.label("severity") or "") for a in false),
        false_pages=sum(a.label("severity") == "page" for a in false),
        false_tickets=sum(a.label("severity") == "ticket" for a in false),
        allowed_false_positives=allowed_false_positives, notifications=len(deliveries), incidents=len(incidents),
        budgets=tuple(budgets), budget_failures=failures)


def _where(a: Alert) -> str:
    lab = dict(a.labels)
    parts = [lab[k] for k in ("node", "link", *_HARDWARE_LABELS) if lab.get(k)]
    return f"[{','.join(parts)}]" if parts else ""


@dataclass(frozen=True, slots=True)
class _Detection:
    hits: list[tuple[Alert, Where]] = field(default_factory=list)
    why: str = ""


def _by_name(f: FaultWindow, within_ns: int, located: list[tuple[Alert, Where]]
             ) -> tuple[tuple[str, float, bool], ...]:
    """Every alert name locating ``f`` within ``within_ns`` of its start: (name, seconds to its first such
    firing, whether any of them named the exact place)."""
    exact = "fleet" if f.fleet_wide else "exact"
    first: dict[str, tuple[int, bool]] = {}
    for a, w in located:
        if f.start_ns <= a.starts_at <= f.start_ns + within_ns:
            name = alert_name(a)
            t, named = first.get(name, (a.starts_at, False))
            first[name] = (min(t, a.starts_at), named or w == exact)
    return tuple((name, (t - f.start_ns) / NS, named) for name, (t, named) in sorted(first.items()))


def _detect(f: FaultWindow, exp: Expectation, located: list[tuple[Alert, Where]]) -> _Detection:
    lo, hi = f.start_ns, f.start_ns + exp.within_ns
    hits = sorted(((a, w) for a, w in located if lo <= a.starts_at <= hi
                   and (not exp.alerts or alert_name(a) in exp.alerts)), key=lambda aw: aw[0].starts_at)
    names = f"none of {list(exp.alerts)}" if exp.alerts else "no alert"
    return _Detection(hits, "" if hits else f"{names} located {f.target} within {exp.within_ns / NS:.0f} s")


def _why(f: FaultWindow, exp: Expectation, det: _Detection, localized: bool,
         deliveries: Sequence[Delivery]) -> str:
    """Why ``exp`` failed ('' when it held): not detected, not localized, or not delivered to its receiver."""
    if det.why:
        return det.why
    if exp.localized and not localized:
        return f"detected by {', '.join(sorted({alert_name(a) for a, _w in det.hits}))}, none naming {f.target}"
    hit_keys = {_key(a) for a, _w in det.hits}
    reached = sorted({d.receiver for d in deliveries if hit_keys & set(d.alerts)})
    if exp.receiver and exp.receiver not in reached:
        return f"the detecting alert did not reach {exp.receiver} (reached {reached or 'nothing'})"
    return ""


def _resolved_s(f: FaultWindow, owned: list[Alert]) -> float | None:
    """Seconds from the fault's end to the last of its alerts resolving (None: none, or one still firing)."""
    ends = [a.ends_at for a in owned]
    if not ends or None in ends:
        return None
    return (max(e for e in ends if e is not None) - f.end_ns) / NS


def _score_fault(f: FaultWindow, exp: Expectation | None, located: list[tuple[Alert, Where]], owned: list[Alert],
                 deliveries: Sequence[Delivery], incidents: Sequence[IncidentRecord]) -> FaultScore:
    exp_or_default = exp or Expectation(fault=f.id)
    det = _detect(f, exp_or_default, located)
    exact = "fleet" if f.fleet_wide else "exact"
    named = [a for a, w in det.hits if w == exact]
    why = "" if exp is None else _why(f, exp, det, bool(named), deliveries)
    keys = {_key(a) for a in owned}
    mine = [d for d in deliveries if keys & set(d.alerts)]
    return FaultScore(
        fault=f.id, kind=f.kind, target=",".join(f.nodes) if f.nodes else f.target, expected=exp is not None,
        detected=bool(det.hits), localized=bool(named),
        time_to_detect_s=(det.hits[0][0].starts_at - f.start_ns) / NS if det.hits else None,
        time_to_localize_s=(named[0].starts_at - f.start_ns) / NS if named else None,
        time_to_resolve_s=_resolved_s(f, owned),
        alerts=tuple(sorted({alert_name(a) for a in owned})),
        receivers=tuple(sorted({d.receiver for d in mine})), notifications=len(mine),
        incidents=sum(bool(keys & set(i.alerts)) for i in incidents), passed=not why, why=why,
        detections=_by_name(f, exp_or_default.within_ns, located))
