"""The direct rules' store queries: each kind of :mod:`qfleet.alerts.rules` as a fixed, tested query over
``metric_series``/``metric_samples`` (read through the collector's schema), and their evaluation into alerts.

Counters are read as Prometheus' ``increase()`` over ``(at - window, at]``, reset-aware, from the raw samples
(so a rule never waits for the rollup job); a cumulative series born inside the window counts from zero, as
OpenTelemetry's cumulative start time says. Gauges read their latest sample within ``lookback``. The kinds and
their parameters are listed in :mod:`qfleet.alerts.rules`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, func, select

from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.rules import AlertRule
from qfleet.collector.schema import MetricSample, MetricSeries

if TYPE_CHECKING:
    from qfleet.alerts.sources import AlertState

__all__ = ["KIND_QUERIES", "evaluate_rules", "sync_rules"]


# -- reading the store ------------------------------------------------------------------------------------------


def _label(v: Any) -> str:
    """A stored label value as Prometheus text (JSON ``false`` is ``false``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True, slots=True)
class _Series:
    id: int
    labels: dict[str, str]
    node: str
    link: str
    hardware: str


def _series(conn: Connection, metric: str) -> list[_Series]:
    t = MetricSeries.__table__
    rows = conn.execute(select(t.c.id, t.c.labels, t.c.node_id, t.c.link_id, t.c.hardware_type)
                        .where(t.c.metric_name == metric).order_by(t.c.id)).all()
    out = []
    for r in rows:
        labels = {k: _label(v) for k, v in (r.labels or {}).items()}
        out.append(_Series(r.id, labels, r.node_id or labels.get("qfleet.node.id", ""),
                           r.link_id or labels.get("qfleet.link.id", ""),
                           r.hardware_type or labels.get("qfleet.hardware.type", "")))
    return out


def _samples(conn: Connection, ids: Sequence[int], lo: int, hi: int) -> dict[int, list[tuple[int, float]]]:
    """Samples in ``(lo, hi]`` per series, oldest first."""
    s = MetricSample.__table__
    out: dict[int, list[tuple[int, float]]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = conn.execute(select(s.c.series_id, s.c.time_unix_nano, s.c.value)
                        .where(s.c.series_id.in_(list(ids)), s.c.time_unix_nano > lo, s.c.time_unix_nano <= hi)
                        .order_by(s.c.series_id, s.c.time_unix_nano)).all()
    for sid, t, v in rows:
        out[sid].append((t, v))
    return out


def _baseline(conn: Connection, ids: Sequence[int], at: int) -> dict[int, float]:
    """The last sample at or before ``at`` per series (series without one are absent)."""
    s = MetricSample.__table__
    if not ids:
        return {}
    last = (select(s.c.series_id, func.max(s.c.time_unix_nano).label("t"))
            .where(s.c.series_id.in_(list(ids)), s.c.time_unix_nano <= at).group_by(s.c.series_id).subquery())
    rows = conn.execute(select(s.c.series_id, s.c.value).join(
        last, and_(s.c.series_id == last.c.series_id, s.c.time_unix_nano == last.c.t))).all()
    return {sid: v for sid, v in rows}


def _increases(conn: Connection, series: Sequence[_Series], at: int, window: int) -> dict[int, float]:
    """Reset-aware ``increase()`` over ``(at - window, at]`` per series id."""
    ids = [x.id for x in series]
    base = _baseline(conn, ids, at - window)
    out: dict[int, float] = {}
    for sid, pts in _samples(conn, ids, at - window, at).items():
        prev = base.get(sid, 0.0)
        inc = 0.0
        for _t, v in pts:
            inc += v - prev if v >= prev else v  # a drop is a counter reset: count from zero
            prev = v
        out[sid] = inc
    return out


def _latest(conn: Connection, series: Sequence[_Series], at: int, lookback: int) -> dict[int, float]:
    """The latest sample in ``(at - lookback, at]`` per series id (stale series are absent)."""
    return {sid: pts[-1][1] for sid, pts in _samples(conn, [x.id for x in series], at - lookback, at).items()
            if pts}


def _node_hardware(conn: Connection) -> dict[str, str]:
    """Node -> hardware type, from the ``qfleet_node_up`` series (for series that lack the label)."""
    return {x.node: x.hardware for x in _series(conn, "qfleet_node_up") if x.node and x.hardware}


# -- the kinds --------------------------------------------------------------------------------------------------

_Hit = tuple[dict[str, str], float]  # per-alert labels, $value


def _heartbeat_missing(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    window, lookback = rule.param("window"), rule.param("lookback")
    hits: dict[str, tuple[dict[str, str], float]] = {}
    hb = [x for x in _series(conn, "qfleet_node_heartbeats_total") if x.node]
    inc = _increases(conn, hb, at, window)
    old = _baseline(conn, [x.id for x in hb], at - window)
    by_node: dict[str, list[_Series]] = {}
    for x in hb:
        by_node.setdefault(x.node, []).append(x)
    for node, xs in by_node.items():
        if any(x.id in old for x in xs) and sum(inc.get(x.id, 0.0) for x in xs) == 0:
            hits[node] = ({"node": node, "qfleet_hardware_type": xs[0].hardware}, 0.0)
    up = [x for x in _series(conn, "qfleet_node_up") if x.node]
    for x, v in ((x, _latest(conn, [x], at, lookback).get(x.id)) for x in up):
        if v is not None and v == 0 and x.node not in hits:
            hits[x.node] = ({"node": x.node, "qfleet_hardware_type": x.hardware}, 0.0)
    return [hits[n] for n in sorted(hits)]


def _bucket_share_above(conn: Connection, metric: str, le: float, at: int, window: int,
                        key: str) -> dict[str, tuple[float, float]]:
    """Per value of ``key`` (a _Series attribute): (events above ``le``, all events) over the window."""
    series = _series(conn, metric)
    inc = _increases(conn, series, at, window)
    out: dict[str, list[float]] = {}
    for x in series:
        b = x.labels.get("le", "")
        cell = out.setdefault(getattr(x, key), [0.0, 0.0])
        if b == "+Inf":
            cell[1] += inc.get(x.id, 0.0)
        else:
            try:
                bound = float(b)
            except ValueError:
                continue
            if bound == le:
                cell[0] += inc.get(x.id, 0.0)
    return {k: (total - good, total) for k, (good, total) in out.items()}


def _coherence_window(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    window, ratio, min_events = rule.param("window"), rule.param("ratio"), rule.param("min_events")
    hits: list[_Hit] = []
    usage = _bucket_share_above(conn, "qfleet_coherence_window_usage_bucket", rule.param("threshold"), at,
                                window, "hardware")
    for hw, (bad, total) in sorted(usage.items()):
        if total >= max(min_events, 1) and bad / total > ratio:
            hits.append(({"qfleet_hardware_type": hw, "indicator": "coherence_window_usage"}, bad / total))
    le = rule.param("latency_le")
    if le is not None:
        lat = _bucket_share_above(conn, "qfleet_orchestrator_latency_seconds_bucket", le, at, window, "hardware")
        bad = sum(b for b, _ in lat.values())
        total = sum(n for _, n in lat.values())
        if total >= max(min_events, 1) and bad / total > rule.param("latency_ratio"):
            hits.append(({"indicator": "orchestrator_latency"}, bad / total))
    return hits


def _unauthorized_commands(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    series = [x for x in _series(conn, "qfleet_audit_events_total")
              if x.labels.get("qfleet.authorized", "").lower() == "false"]
    inc = _increases(conn, series, at, rule.param("window"))
    hw = _node_hardware(conn) if any(not x.hardware for x in series) else {}
    per: dict[tuple[str, str, str], float] = {}
    for x in series:
        if inc.get(x.id, 0.0) > 0:
            k = (x.node, x.labels.get("qfleet.principal", ""), x.hardware or hw.get(x.node, ""))
            per[k] = per.get(k, 0.0) + inc[x.id]
    return [({"node": n, "principal": p, "qfleet_hardware_type": hw}, v) for (n, p, hw), v in sorted(per.items())]


def _queue_age(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    series = _series(conn, "qfleet_scheduler_queue_age_seconds")
    latest = _latest(conn, series, at, rule.param("lookback"))
    hits = []
    for x in series:
        v = latest.get(x.id)
        if v is not None and v > rule.param("threshold"):
            hits.append(({"tenant": x.labels.get("qfleet.tenant", "")}, v))
    return sorted(hits, key=lambda h: h[0]["tenant"])


def _entanglement_collapse(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    series = [x for x in _series(conn, "qfleet_entanglement_requests_total") if x.link]
    inc = _increases(conn, series, at, rule.param("window"))
    per: dict[str, list[Any]] = {}
    for x in series:
        cell = per.setdefault(x.link, [0.0, 0.0, x.hardware])
        cell[1] += inc.get(x.id, 0.0)
        if x.labels.get("qfleet.outcome") == "success":
            cell[0] += inc.get(x.id, 0.0)
    hits = []
    for link, (good, total, hw) in sorted(per.items()):
        if total >= max(rule.param("min_requests"), 1) and good / total < rule.param("ratio"):
            hits.append(({"link": link, "qfleet_hardware_type": hw}, good / total))
    return hits


def _against_baseline(conn: Connection, metric: str, rule: AlertRule, at: int,
                      change: Any) -> dict[str, tuple[float, str]]:
    """Per node, the largest ``change(latest, samples over the baseline window)`` of any of its series.

    Platforms differ by orders of magnitude (NV readout error is 7 %, an ion's 0.1 %), so drift is judged
    against the node's own recent history, not one absolute threshold.
    """
    series = [x for x in _series(conn, metric) if x.node]
    latest = _latest(conn, series, at, rule.param("lookback"))
    history = _samples(conn, [x.id for x in series], at - rule.param("baseline"), at)
    worst: dict[str, tuple[float, str]] = {}
    for x in series:
        v, pts = latest.get(x.id), history.get(x.id)
        if v is None or not pts:
            continue
        d = change(v, [p for _t, p in pts])
        if d > worst.get(x.node, (-math.inf, ""))[0]:
            worst[x.node] = (d, x.hardware)
    return worst


def _readout_drift(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    # Rise of the readout error above the lowest value of the baseline window (the last calibration).
    worst = _against_baseline(conn, "qfleet_node_readout_error_ratio", rule, at, lambda v, h: v - min(h))
    return [({"node": n, "qfleet_hardware_type": hw}, round(d, 4)) for n, (d, hw) in sorted(worst.items())
            if d > rule.param("threshold")]


def _t2_drop(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
    # T2 now as a fraction of its best in the baseline window: a thermal event is a step down.
    worst = _against_baseline(conn, "qfleet_node_t2_seconds", rule, at, lambda v, h: -(v / max(h)))
    return [({"node": n, "qfleet_hardware_type": hw}, round(-d, 3)) for n, (d, hw) in sorted(worst.items())
            if -d < rule.param("ratio")]


#: kind -> its query: ``(connection, rule, at_ns) -> [(per-alert labels, $value)]``.
KIND_QUERIES: Mapping[str, Callable[[Connection, AlertRule, int], list[_Hit]]] = {
    "heartbeat_missing": _heartbeat_missing,
    "coherence_window": _coherence_window,
    "unauthorized_commands": _unauthorized_commands,
    "queue_age": _queue_age,
    "entanglement_collapse": _entanglement_collapse,
    "readout_drift": _readout_drift,
    "t2_drop": _t2_drop,
}
_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.([a-zA-Z_][a-zA-Z0-9_]*)|value)\s*\}\}")


def _render(text: str, labels: Mapping[str, str], value: float) -> str:
    def sub(m: re.Match[str]) -> str:
        return f"{value:.4g}" if m.group(1) == "value" else labels.get(m.group(2), "")

    return _TEMPLATE.sub(sub, text)


def evaluate_rules(rules: Sequence[AlertRule], engine: Engine, at_ns: int) -> list[Alert]:
    """The alerts whose rule condition holds at ``at_ns`` (``starts_at = at_ns``; no ``for`` applied here).

    Labels are ``alertname`` (the rule name), the rule's labels, then the per-alert labels (``node``,
    ``link``, ``tenant``, ``qfleet_hardware_type`` where known; empty ones are dropped). Annotations are the
    rule's templates rendered with ``{{ $labels.X }}`` and ``{{ $value }}``.
    """
    out: list[Alert] = []
    with engine.connect() as conn:
        for rule in rules:
            for extra, value in KIND_QUERIES[rule.kind](conn, rule, at_ns):
                labels = {**dict(rule.labels), **extra, "alertname": rule.name}
                ann = {k: _render(v, labels, value) for k, v in rule.annotations}
                out.append(Alert(labels=labels_key(labels), annotations=labels_key(ann), starts_at=at_ns))
    return out


def sync_rules(rules: Sequence[AlertRule], engine: Engine, state: AlertState, at_ns: int, *,
               source: str = "rules") -> list[Alert]:
    """Evaluate ``rules`` at ``at_ns`` and sync them into ``state`` with each rule's ``for``; the changed
    alerts (fired, resolved, annotations updated)."""
    return state.sync(evaluate_rules(rules, engine, at_ns), at_ns, source=source,
                      for_ns={r.name: r.for_ns for r in rules})
