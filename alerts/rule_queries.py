"""The direct rules' store queries: each kind of :mod:`qfleet.alerts.rules` as a fixed, tested query over
``metric_series``/``metric_samples`` (read through the collector's schema), and their evaluation into alerts.

Counters are read as Prometheus' ``increase()`` over ``(at - window, at]``, reset-aware, from the raw samples
(so a rule never waits for the rollup job); a cumulative series born inside the window counts from zero, as
OpenTelemetry's cumulative start time says. Gauges read their latest sample within ``lookback``. The kinds and
their parameters are listed in :mod:`qfleet.alerts.rules`.

The rules of one evaluation read the same series over the same or nested windows, so an evaluation reads each
sample window and baseline once and cuts later reads from it (:class:`Reads`); series metadata is kept across
evaluations until the series table grows.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.rule_reads import Reads, Series, known_series
from qfleet.alerts.rules import KIND_METRICS, AlertRule

if TYPE_CHECKING:
    from qfleet.alerts.sources import AlertState

__all__ = ["KIND_QUERIES", "RuleEvaluator", "evaluate_rules", "sync_rules"]


# -- the kinds --------------------------------------------------------------------------------------------------

_Hit = tuple[dict[str, str], float]  # per-alert labels, $value


def _heartbeat_missing(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    window, lookback = rule.param("window"), rule.param("lookback")
    hits: dict[str, tuple[dict[str, str], float]] = {}
    hb = [x for x in db.series("qfleet_node_heartbeats_total") if x.node]
    inc = db.increases(hb, at, window)
    old = db.baseline([x.id for x in hb], at - window)
    by_node: dict[str, list[Series]] = {}
    for x in hb:
        by_node.setdefault(x.node, []).append(x)
    for node, xs in by_node.items():
        if any(x.id in old for x in xs) and sum(inc.get(x.id, 0.0) for x in xs) == 0:
            hits[node] = ({"node": node, "hardware_type": xs[0].hardware}, 0.0)
    up = [x for x in db.series("qfleet_node_up") if x.node]
    latest = db.latest(up, at, lookback)
    for x in up:
        v = latest.get(x.id)
        if v is not None and v == 0 and x.node not in hits:
            hits[x.node] = ({"node": x.node, "hardware_type": x.hardware}, 0.0)
    return [hits[n] for n in sorted(hits)]


def _bucket_share_above(db: Reads, metric: str, le: float, at: int, window: int,
                        key: str) -> dict[str, tuple[float, float]]:
    """Per value of ``key`` (a Series attribute): (events above ``le``, all events) over the window."""
    series = db.series(metric)
    inc = db.increases(series, at, window)
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


def _coherence_window(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    window, ratio, min_events = rule.param("window"), rule.param("ratio"), rule.param("min_events")
    hits: list[_Hit] = []
    usage = _bucket_share_above(db, "qfleet_coherence_window_usage_bucket", rule.param("threshold"), at,
                                window, "hardware")
    for hw, (bad, total) in sorted(usage.items()):
        if total >= max(min_events, 1) and bad / total > ratio:
            hits.append(({"hardware_type": hw, "indicator": "coherence_window_usage"}, bad / total))
    le = rule.param("latency_le")
    if le is not None:
        lat = _bucket_share_above(db, "qfleet_orchestrator_latency_seconds_bucket", le, at, window, "hardware")
        bad = sum(b for b, _ in lat.values())
        total = sum(n for _, n in lat.values())
        if total >= max(min_events, 1) and bad / total > rule.param("latency_ratio"):
            hits.append(({"indicator": "orchestrator_latency"}, bad / total))
    return hits


def _unauthorized_commands(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    series = [x for x in db.series("qfleet_audit_events_total")
              if x.labels.get("qfleet.authorized", "").lower() == "false"]
    inc = db.increases(series, at, rule.param("window"))
    hw = db.node_hardware() if any(not x.hardware for x in series) else {}
    per: dict[tuple[str, str, str], float] = {}
    for x in series:
        if inc.get(x.id, 0.0) > 0:
            k = (x.node, x.labels.get("qfleet.principal", ""), x.hardware or hw.get(x.node, ""))
            per[k] = per.get(k, 0.0) + inc[x.id]
    return [({"node": n, "principal": p, "hardware_type": hw}, v) for (n, p, hw), v in sorted(per.items())]


def _queue_age(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    # Stuck, not just old: a queue that is long at a load peak or while a node calibrates still starts jobs, so
    # the oldest job must stay old, the queue never empty, and no job of the tenant succeed for the whole window.
    window, thr = rule.param("window"), rule.param("threshold")
    age_series = db.series("qfleet_scheduler_queue_age_seconds")
    depth_series = db.series("qfleet_scheduler_queue_depth")
    age, depth = _by_tenant(age_series), _by_tenant(depth_series)
    done = [x for x in db.series("qfleet_jobs_total") if x.labels.get("qfleet.outcome") == "success"]
    started = db.increases(done, at, window)
    succeeded: dict[str, float] = {}
    for x in done:
        t = x.labels.get("qfleet.tenant", "")
        succeeded[t] = succeeded.get(t, 0.0) + started.get(x.id, 0.0)
    # Every tenant's samples in one read each (the lookback is cut from the window when inside it).
    age_pts = db.samples([x.id for x in age_series], at - window, at)
    depth_pts = db.samples([x.id for x in depth_series], at - window, at)
    age_latest = db.latest(age_series, at, rule.param("lookback"))
    hits = []
    for tenant, xs in sorted(age.items()):
        ages = [v for x in xs for _t, v in age_pts[x.id]]
        depths = [v for x in depth.get(tenant, []) for _t, v in depth_pts[x.id]]
        latest = {x.id: age_latest[x.id] for x in xs if x.id in age_latest}
        if not latest or not ages or min(ages) <= thr or not depths or min(depths) <= 0:
            continue
        if succeeded.get(tenant, 0.0) > 0:
            continue
        hits.append(({"tenant": tenant}, max(latest.values())))
    return hits


def _by_tenant(series: Sequence[Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    for x in series:
        out.setdefault(x.labels.get("qfleet.tenant", ""), []).append(x)
    return out


def _entanglement_collapse(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    series = [x for x in db.series("qfleet_entanglement_requests_total") if x.link]
    inc = db.increases(series, at, rule.param("window"))
    per: dict[str, list[Any]] = {}
    for x in series:
        cell = per.setdefault(x.link, [0.0, 0.0, x.hardware])
        cell[1] += inc.get(x.id, 0.0)
        if x.labels.get("qfleet.outcome") == "success":
            cell[0] += inc.get(x.id, 0.0)
    hits = []
    for link, (good, total, hw) in sorted(per.items()):
        if total >= max(rule.param("min_requests"), 1) and good / total < rule.param("ratio"):
            hits.append(({"link": link, "hardware_type": hw}, good / total))
    return hits


def _estimates(pts: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """The distinct calibration estimates of a stale gauge: the first sample of every run of equal values.

    >>> _estimates([(1, 5.0), (2, 5.0), (3, 4.0), (4, 4.0), (5, 5.0)])
    [(1, 5.0), (3, 4.0), (5, 5.0)]
    """
    out: list[tuple[int, float]] = []
    for t, v in pts:
        if not out or out[-1][1] != v:
            out.append((t, v))
    return out


def _value_at(pts: Sequence[tuple[int, float]], t: int) -> float | None:
    """The last value at or before ``t`` (None when there is none)."""
    last = None
    for ts, v in pts:
        if ts > t:
            break
        last = v
    return last


def _calibrations(db: Reads, metric: str, rule: AlertRule,
                  at: int) -> list[tuple[Series, float, list[float], int]]:
    """Per series of ``metric`` with a current estimate and at least one earlier one: (series, latest estimate,
    the earlier estimates over the baseline window, when the latest was made)."""
    series = [x for x in db.series(metric) if x.node]
    history = db.samples([x.id for x in series], at - rule.param("baseline"), at)  # first: the lookback is cut
    latest = db.latest(series, at, rule.param("lookback"))
    out = []
    for x in series:
        est = _estimates(history.get(x.id, []))
        if x.id not in latest or len(est) < 2:
            continue
        out.append((x, est[-1][1], [v for _t, v in est[:-1]], est[-1][0]))
    return out


def _node_labels(node: str, hw: str) -> dict[str, str]:
    return {"node": node, "hardware_type": hw}


def _worst(found: dict[str, tuple[float, str]], node: str, score: float, hw: str) -> None:
    if score > found.get(node, (-math.inf, ""))[0]:
        found[node] = (score, hw)


def _readout_drift(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    # Platforms differ by orders of magnitude (NV readout error ~7 %, an ion's 0.1 %): judge the latest estimate
    # against the node's own earlier ones, and only a rise both large and beyond the estimates' shot noise.
    n = max(rule.param("shots"), 1)
    worst: dict[str, tuple[float, str]] = {}
    for x, now, before, _t in _calibrations(db, "qfleet_node_readout_error_ratio", rule, at):
        ref = statistics.median(before)
        rise = now - ref
        se = math.sqrt(max(now * (1 - now), 0.0) / n + max(ref * (1 - ref), 0.0) / n)
        if rise > rule.param("threshold") and rise > rule.param("sigmas") * se:
            _worst(worst, x.node, rise, x.hardware)
    return [(_node_labels(node, hw), round(d, 4)) for node, (d, hw) in sorted(worst.items())]


def _t2_drop(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    # The latest T2 estimate as a fraction of the median earlier one, when the drop exceeds the fits' stated
    # standard errors (a noisy fit of a healthy node is not a decoherence event).
    errs = {x.node: x for x in db.series("qfleet_node_t2_stderr_seconds") if x.node}
    err_pts = db.samples([x.id for x in errs.values()], at - rule.param("baseline"), at)
    worst: dict[str, tuple[float, str]] = {}
    for x, now, before, t_now in _calibrations(db, "qfleet_node_t2_seconds", rule, at):
        ref = statistics.median(before)
        if ref <= 0 or now >= rule.param("ratio") * ref:
            continue
        e = errs.get(x.node)
        pts = err_pts.get(e.id, []) if e is not None else []
        se_now = _value_at(pts, t_now) or 0.0
        se_ref = statistics.median([v for _t, v in _estimates(pts)[:-1]] or [se_now])
        if ref - now > rule.param("sigmas") * math.hypot(se_now, se_ref):
            _worst(worst, x.node, -(now / ref), x.hardware)
    return [(_node_labels(node, hw), round(-d, 3)) for node, (d, hw) in sorted(worst.items())]


def _per_key_increase(db: Reads, series: Sequence[Series], at: int, window: int,
                      key: Callable[[Series], tuple[str, str] | None]) -> dict[tuple[str, str], float]:
    """Summed counter increases over ``(at - window, at]`` per ``key(series)`` (series keyed None are skipped)."""
    inc = db.increases(series, at, window)
    out: dict[tuple[str, str], float] = {}
    for x in series:
        k = key(x)
        if k is not None:
            out[k] = out.get(k, 0.0) + inc.get(x.id, 0.0)
    return out


def _link_hardware(db: Reads, link: str) -> str:
    """The hardware type of a link ``a~b`` when both ends share it, else ''."""
    hw = db.node_hardware()
    ends = {hw.get(n, "") for n in link.split("~")}
    return ends.pop() if len(ends) == 1 else ""


def _heralding_drop(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    # The measured heralding rate of the window against the link's own rate over the baseline before it: a
    # degrading link (polarisation drift, misalignment, an NV's optical interface) as well as a cut.
    window, base = rule.param("window"), rule.param("baseline")
    link = lambda x: (x.link, "") if x.link else None  # noqa: E731
    heralds = [x for x in db.series("qfleet_entanglement_heralds_total") if x.link]
    attempts = [x for x in db.series("qfleet_entanglement_attempts_total") if x.link]
    db.prefetch(heralds, at - window - base, at)
    db.prefetch(attempts, at - window - base, at)
    h_now = _per_key_increase(db, heralds, at, window, link)
    a_now = _per_key_increase(db, attempts, at, window, link)
    h_all = _per_key_increase(db, heralds, at - window, base, link)
    a_all = _per_key_increase(db, attempts, at - window, base, link)
    hits = []
    for k, n in sorted(a_now.items()):
        n0 = a_all.get(k, 0.0)
        if n < rule.param("min_attempts") or n0 < rule.param("min_attempts"):
            continue
        p0, p = h_all.get(k, 0.0) / n0, h_now.get(k, 0.0) / n
        if p0 <= 0 or p >= rule.param("ratio") * p0:
            continue
        se = math.sqrt(p0 * (1 - p0) / n + p0 * (1 - p0) / n0)
        if p0 - p > rule.param("sigmas") * se:
            labels = {"link": k[0]}
            if hw := _link_hardware(db, k[0]):
                labels["hardware_type"] = hw
            hits.append((labels, round(p / p0, 3)))
    return hits


def _canary_failures(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    # A node's canary stabilizer checks failing more than they did before the window: spectator errors (F6), a
    # decohering memory (F2) or a drifting readout (F4) on that node, whatever its platform's usual fail ratio.
    window, base = rule.param("window"), rule.param("baseline")
    series = [x for x in db.series("qfleet_canary_checks_total") if x.node]
    hw = {x.node: x.hardware for x in series if x.hardware}
    fail = lambda x: (x.node, "") if x.labels.get("qfleet.outcome") == "fail" else None  # noqa: E731
    node = lambda x: (x.node, "")  # noqa: E731
    db.prefetch(series, at - window - base, at)
    f_now, n_now = (_per_key_increase(db, series, at, window, fail),
                    _per_key_increase(db, series, at, window, node))
    f_all, n_all = (_per_key_increase(db, series, at - window, base, fail),
                    _per_key_increase(db, series, at - window, base, node))
    hits = []
    for k, n in sorted(n_now.items()):
        n0 = n_all.get(k, 0.0)
        if n < rule.param("min_checks") or n0 < rule.param("min_checks"):
            continue
        q0, q = f_all.get(k, 0.0) / n0, f_now.get(k, 0.0) / n
        var = max(q0 * (1 - q0), 1.0 / n0)  # a node that never failed still has sampling noise
        if q - q0 > rule.param("rise") and q - q0 > rule.param("sigmas") * math.sqrt(var / n + var / n0):
            hits.append((_node_labels(k[0], hw.get(k[0], "") or db.node_hardware().get(k[0], "")), round(q, 4)))
    return hits


def _link_silence(db: Reads, rule: AlertRule, at: int) -> list[_Hit]:
    # Every entanglement request holds a communication qubit at both ends (canaries hold none): a link whose
    # ends are up and outside maintenance that carried no request for the whole window, though its baseline
    # expects some, has its ends' qubits held (a scheduler deadlock, F7). Links too quiet to tell are not judged.
    hw = db.node_hardware()
    hits: list[_Hit] = []
    for link in _silent(db, rule, at, "qfleet_entanglement_requests_total", lambda x: x.link,
                        lambda place: tuple(place.split("~"))):
        kinds = {hw.get(end, "") for end in link.split("~")}
        one = kinds.pop() if len(kinds) == 1 else ""
        hits.append(({"link": link, **({"hardware_type": one} if one else {})}, 0.0))
    return hits


def _silent(db: Reads, rule: AlertRule, at: int, metric: str, place_of: Callable[[Series], str],
            nodes_of: Callable[[str], tuple[str, ...]]) -> list[str]:
    """The places (nodes or links) whose ``metric`` did not rise over ``window`` though they rose in at least
    ``min_expected`` steps per window over ``baseline``, with every node of the place that sends heartbeats
    still sending them and none in an announced maintenance window."""
    window, base = rule.param("window"), rule.param("baseline")
    series = [x for x in db.series(metric) if place_of(x)]
    key = lambda x: (place_of(x), "")  # noqa: E731
    db.prefetch(series, at - window - base, at)
    n_now = _per_key_increase(db, series, at, window, key)
    n_all = _per_key_increase(db, series, at - window, base, key)
    beat_series = [x for x in db.series("qfleet_node_heartbeats_total") if x.node]
    beats = _per_key_increase(db, beat_series, at, window, lambda x: (x.node, ""))
    known = {x.node for x in beat_series}
    # Events per step vary: count active steps (samples where the counter rose) rather than events.
    busy = _active_steps(db, series, at - window - base, at - window, place_of)
    quiet = db.maintenance(at - window - base, at)
    out = []
    for k, n0 in sorted(n_all.items()):
        ends = nodes_of(k[0])
        if n0 <= 0 or n_now.get(k, 0.0) > 0 or any(
                e in quiet or (e in known and beats.get((e, ""), 0.0) <= 0) for e in ends):
            continue
        steps, span = busy.get(k[0], (0, 0))
        if span > 0 and steps * window / span >= rule.param("min_expected"):
            out.append(k[0])
    return out


def _active_steps(db: Reads, series: Sequence[Series], lo: int, hi: int,
                  place_of: Callable[[Series], str]) -> dict[str, tuple[int, int]]:
    """Per place, the samples in ``(lo, hi]`` at which its counter rose (active steps) and the time its samples
    span there (a run younger than the baseline has a shorter one)."""
    by_node: dict[str, set[int]] = {}
    spans: dict[str, tuple[int, int]] = {}
    pts = db.samples([x.id for x in series], lo, hi)
    for x in series:
        p = pts.get(x.id, [])
        if not p:
            continue
        place, first, last = place_of(x), p[0][0], p[-1][0]  # points are oldest first
        a, b = spans.get(place, (first, last))
        spans[place] = (min(a, first), max(b, last))
        if rose := {t for (_t, prev), (t, v) in zip(p, p[1:], strict=False) if v > prev}:
            by_node.setdefault(place, set()).update(rose)
    return {n: (len(ts), spans[n][1] - spans[n][0]) for n, ts in by_node.items()}


_Query = Callable[[Reads, AlertRule, int], list[_Hit]]
_KINDS: Mapping[str, _Query] = {
    "heartbeat_missing": _heartbeat_missing,
    "coherence_window": _coherence_window,
    "unauthorized_commands": _unauthorized_commands,
    "queue_age": _queue_age,
    "entanglement_collapse": _entanglement_collapse,
    "heralding_drop": _heralding_drop,
    "readout_drift": _readout_drift,
    "t2_drop": _t2_drop,
    "canary_failures": _canary_failures,
    "link_silence": _link_silence,
}


def _on_connection(query: _Query) -> Callable[[Connection, AlertRule, int], list[_Hit]]:
    """``query`` on the caller's connection with reads of its own (no shared series: the caller's transaction may
    hold series it has not committed)."""

    def run(conn: Connection, rule: AlertRule, at: int) -> list[_Hit]:
        return query(Reads(conn), rule, at)

    return run


#: kind -> its query: ``(connection, rule, at_ns) -> [(per-alert labels, $value)]``.
KIND_QUERIES: Mapping[str, Callable[[Connection, AlertRule, int], list[_Hit]]] = {
    kind: _on_connection(query) for kind, query in _KINDS.items()}
_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.([a-zA-Z_][a-zA-Z0-9_]*)|value)\s*\}\}")


def _render(text: str, labels: Mapping[str, str], value: float) -> str:
    def sub(m: re.Match[str]) -> str:
        return f"{value:.4g}" if m.group(1) == "value" else labels.get(m.group(2), "")

    return _TEMPLATE.sub(sub, text)


def evaluate_rules(rules: Sequence[AlertRule], engine: Engine, at_ns: int) -> list[Alert]:
    """The alerts whose rule condition holds at ``at_ns`` (``starts_at = at_ns``; no ``for`` applied here).

    Labels are ``alertname`` (the rule name), the rule's labels, then the per-alert labels (``node``,
    ``link``, ``tenant``, ``hardware_type`` where known; empty ones are dropped). Annotations are the
    rule's templates rendered with ``{{ $labels.X }}`` and ``{{ $value }}``.
    """
    out: list[Alert] = []
    with engine.connect() as conn:
        db = Reads(conn, known_series(engine, conn))
        # Every series the rules read (node_up for hardware types) in one query; span names match none.
        db.load({m for r in rules for m in (*KIND_METRICS.get(r.kind, ()), "qfleet_node_up")})
        for rule in rules:
            for extra, value in _KINDS[rule.kind](db, rule, at_ns):
                labels = {**dict(rule.labels), **extra, "alertname": rule.name}
                ann = {k: _render(v, labels, value) for k, v in rule.annotations}
                out.append(Alert(labels=labels_key(labels), annotations=labels_key(ann), starts_at=at_ns))
    return out


#: ``(rules, engine, at_ns) -> alerts``: how a rule source evaluates (:func:`evaluate_rules`, or a replay's
#: lookup of alerts evaluated ahead).
RuleEvaluator = Callable[[Sequence[AlertRule], Engine, int], list[Alert]]


def sync_rules(rules: Sequence[AlertRule], engine: Engine, state: AlertState, at_ns: int, *,
               source: str = "rules", evaluator: RuleEvaluator = evaluate_rules) -> list[Alert]:
    """Evaluate ``rules`` at ``at_ns`` (with ``evaluator``) and sync them into ``state`` with each rule's
    ``for``; the changed alerts (fired, resolved, annotations updated)."""
    return state.sync(evaluator(rules, engine, at_ns), at_ns, source=source,
                      for_ns={r.name: r.for_ns for r in rules})
