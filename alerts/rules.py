"""Direct alert rules over the telemetry store, as data (``alerts/rules/fleet.yaml``).

Each rule names a *kind* (a fixed, tested query over ``metric_series``/``metric_samples`` or ``spans``) with
parameters, a pending duration (``for``), labels and annotation templates. :func:`evaluate_rules` returns the
alerts whose condition holds at an instant; :func:`sync_rules` feeds them through
:class:`alerts.sources.AlertState`, which honours ``for`` and keeps ``starts_at`` across evaluations.

Counters are read as Prometheus' ``increase()`` over ``(at - window, at]``, reset-aware, from the raw samples
(so a rule never waits for the rollup job); a cumulative series born inside the window counts from zero, as
OpenTelemetry's cumulative start time says. Gauges read their latest sample within ``lookback``.

Kinds (one per failure mode they catch):

======================== ======================================================================== ====
kind                     fires                                                                     mode
======================== ======================================================================== ====
heartbeat_missing        a node's ``qfleet_node_heartbeats_total`` did not increase over ``window``  F5
                         (and the series is older than the window), or ``qfleet_node_up`` is 0
coherence_window         the share of jobs with ``qfleet_coherence_window_usage`` above             F2/F3
                         ``threshold`` (a bucket bound, default 1) is above ``ratio``; optionally the
                         share of orchestrator decisions slower than ``latency_le`` above
                         ``latency_ratio``
unauthorized_commands    any increase of ``qfleet_audit_events_total{qfleet.authorized=false}``     F8
queue_age                ``qfleet_scheduler_queue_age_seconds`` above ``threshold`` for a tenant    F7
entanglement_collapse    a link's ``qfleet_entanglement_requests_total`` success ratio below        F1
                         ``ratio`` with at least ``min_requests`` requests
readout_drift            ``qfleet_node_readout_error_ratio`` risen ``threshold`` above its baseline F4
t2_drop                  ``qfleet_node_t2_seconds`` below ``ratio`` x its baseline best             F2
======================== ======================================================================== ====
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, Engine, and_, func, select

from qfleet.alerts.model import NS, Alert, Labels, labels_key
from qfleet.alerts.sources import AlertState
from qfleet.collector.schema import MetricSample, MetricSeries

__all__ = [
    "DEFAULT_RULES_PATH",
    "KINDS",
    "AlertRule",
    "RulesError",
    "evaluate_rules",
    "load_rules",
    "parse_duration_ns",
    "rules_from_dict",
    "sync_rules",
]

#: The default direct rules shipped with qfleet.
DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rules" / "fleet.yaml"

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT = {"ms": NS // 1000, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS, "w": 7 * 86400 * NS}


class RulesError(ValueError):
    """A rule file breaks a rule: the message names the file, the field path, the bad value and the fix."""


def parse_duration_ns(text: object) -> int:
    """A Prometheus duration (``90s``, ``5m``, ``1h30m``; ``0`` or ``0s`` is zero) as integer ns.

    >>> parse_duration_ns("1h30m") == 5400 * NS, parse_duration_ns("0")
    (True, 0)

    Raises:
        ValueError: not a duration.
    """
    s = str(text).strip()
    if s == "0":
        return 0
    if not s or _DURATION.sub("", s) != "" or isinstance(text, bool):
        raise ValueError(f"duration {text!r} is not valid; write a Prometheus duration such as 30s, 5m or 1h30m")
    return sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(s))


# kind -> param -> (type, default); type "duration" (ns), "number" (float), "int"; default None = optional.
KINDS: Mapping[str, Mapping[str, tuple[str, Any]]] = {
    "heartbeat_missing": {"window": ("duration", 3 * 60 * NS), "lookback": ("duration", 5 * 60 * NS)},
    "coherence_window": {"window": ("duration", 5 * 60 * NS), "ratio": ("number", 0.05),
                         "threshold": ("number", 1.0), "min_events": ("int", 20),
                         "latency_le": ("number", None), "latency_ratio": ("number", None)},
    "unauthorized_commands": {"window": ("duration", 5 * 60 * NS)},
    "queue_age": {"threshold": ("number", 20.0), "lookback": ("duration", 5 * 60 * NS)},
    "entanglement_collapse": {"window": ("duration", 5 * 60 * NS), "ratio": ("number", 0.5),
                              "min_requests": ("int", 10)},
    "readout_drift": {"threshold": ("number", 0.05), "lookback": ("duration", 10 * 60 * NS),
                      "baseline": ("duration", 6 * 3600 * NS)},
    "t2_drop": {"ratio": ("number", 0.5), "lookback": ("duration", 10 * 60 * NS),
                "baseline": ("duration", 6 * 3600 * NS)},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    """One direct rule: ``name`` is the ``alertname``; ``params`` hold every parameter of ``kind`` (defaults
    filled in; durations in ns); ``annotations`` are templates over ``{{ $labels.X }}`` and ``{{ $value }}``."""

    name: str
    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    for_ns: int = 0
    labels: Labels = ()
    annotations: Labels = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RulesError(f"rule {self.name!r}: unknown kind {self.kind!r}; use one of {sorted(KINDS)}")
        if self.for_ns < 0:
            raise RulesError(f"rule {self.name!r}: for_ns={self.for_ns} is negative; use 0 or a duration")

    def param(self, name: str) -> Any:
        """The value of parameter ``name`` (its default when the rule did not set it)."""
        p = dict(self.params)
        if name in p:
            return p[name]
        return KINDS[self.kind][name][1]


def _suggest(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def rules_from_dict(doc: Any, *, source: str = "<rules>") -> tuple[AlertRule, ...]:
    """Rules from a parsed ``version: 1, kind: AlertRules`` document (see :func:`load_rules`).

    Raises:
        RulesError: every problem at once, one line each: ``<source>: <field path>: <problem> (<fix>)``.
    """
    problems: list[str] = []

    def bad(path: str, text: str) -> None:
        problems.append(f"{source}: {path}: {text}")

    if not isinstance(doc, dict):
        raise RulesError(f"{source}: the document is {type(doc).__name__}, not a mapping "
                         "(start with version: 1, kind: AlertRules, rules: [...])")
    for k in sorted(set(doc) - {"version", "kind", "rules"}):
        bad(k, f"unknown field; {_suggest(k, ['version', 'kind', 'rules'])}use version, kind and rules")
    if doc.get("version") != 1:
        bad("version", f"must be 1, got {doc.get('version')!r} (write version: 1)")
    if doc.get("kind") != "AlertRules":
        bad("kind", f"must be AlertRules, got {doc.get('kind')!r} (write kind: AlertRules)")
    raw = doc.get("rules")
    if not isinstance(raw, list) or not raw:
        bad("rules", f"must be a non-empty list of rules, got {raw!r}")
        raw = []
    out: list[AlertRule] = []
    names: set[str] = set()
    fields = ("name", "kind", "params", "for", "labels", "annotations")
    for i, r in enumerate(raw):
        at = f"rules[{i}]"
        if not isinstance(r, dict):
            bad(at, f"must be a mapping with {', '.join(fields)}, got {r!r}")
            continue
        n0 = len(problems)
        for k in sorted(set(r) - set(fields), key=str):
            bad(f"{at}.{k}", f"unknown field; {_suggest(str(k), fields)}use {', '.join(fields)}")
        name = r.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
            bad(f"{at}.name", f"must be an alert name ([a-zA-Z_][a-zA-Z0-9_]*), got {name!r} "
                              "(e.g. QfleetNodeHeartbeatMissing)")
        elif name in names:
            bad(f"{at}.name", f"duplicate rule name {name!r}; give every rule its own name")
        else:
            names.add(name)
        kind = r.get("kind")
        if kind not in KINDS:
            bad(f"{at}.kind", f"unknown kind {kind!r}; {_suggest(str(kind), KINDS)}use one of {sorted(KINDS)}")
            spec: Mapping[str, tuple[str, Any]] = {}
        else:
            spec = KINDS[kind]
        params_raw = r.get("params") or {}
        params: dict[str, Any] = {}
        if not isinstance(params_raw, dict):
            bad(f"{at}.params", f"must be a mapping, got {params_raw!r}")
            params_raw = {}
        for k, v in params_raw.items():
            if spec and k not in spec:
                bad(f"{at}.params.{k}", f"unknown parameter of {kind}; {_suggest(str(k), spec)}"
                                        f"use {', '.join(spec)}")
                continue
            if not spec:
                continue
            typ = spec[k][0]
            try:
                params[k] = _coerce(typ, v)
            except ValueError as e:
                bad(f"{at}.params.{k}", str(e))
        if kind == "coherence_window" and ("latency_le" in params) != ("latency_ratio" in params):
            bad(f"{at}.params", "latency_le and latency_ratio go together; give both or neither")
        for_ns = 0
        if "for" in r:
            try:
                for_ns = parse_duration_ns(r["for"])
            except ValueError as e:
                bad(f"{at}.for", str(e))
        label_maps: dict[str, dict[str, str]] = {}
        for part in ("labels", "annotations"):
            m = r.get(part) or {}
            if not isinstance(m, dict) or not all(isinstance(k, str) and re.fullmatch(
                    r"[a-zA-Z_][a-zA-Z0-9_]*", k) and isinstance(v, str) for k, v in m.items()):
                bad(f"{at}.{part}", f"must map label names to strings, got {m!r} (quote numbers: \"1\")")
                m = {}
            label_maps[part] = m
        if "alertname" in label_maps["labels"]:
            bad(f"{at}.labels.alertname", "is set from the rule name; remove it")
        if len(problems) == n0:
            full = {p: params.get(p, d) for p, (_t, d) in spec.items() if p in params or d is not None}
            out.append(AlertRule(name=name, kind=kind, params=tuple(sorted(full.items())), for_ns=for_ns,
                                 labels=labels_key(label_maps["labels"]),
                                 annotations=labels_key(label_maps["annotations"])))
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems (fix all of them):\n"
        raise RulesError(head if len(problems) == 1 else head + "\n".join(problems))
    return tuple(out)


def _coerce(typ: str, v: Any) -> Any:
    if typ == "duration":
        return parse_duration_ns(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0:
        raise ValueError(f"must be a number >= 0, got {v!r} (e.g. 0.5)")
    if typ == "int":
        if int(v) != v:
            raise ValueError(f"must be a whole number, got {v!r} (e.g. 10)")
        return int(v)
    return float(v)


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> tuple[AlertRule, ...]:
    """Rules from a YAML file ``version: 1, kind: AlertRules, rules: [{name, kind, params, for, labels,
    annotations}]``.

    >>> sorted(r.kind for r in load_rules())[:2]
    ['coherence_window', 'entanglement_collapse']

    Raises:
        RulesError: the file is missing or not YAML, or any rule is invalid (all problems at once).
    """
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise RulesError(f"{p}: cannot read the rule file ({e.strerror}); pass an existing path") from e
    except yaml.YAMLError as e:
        raise RulesError(f"{p}: not valid YAML ({e}); fix the syntax") from e
    return rules_from_dict(doc, source=str(p))


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


_EVAL = {
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
            for extra, value in _EVAL[rule.kind](conn, rule, at_ns):
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
