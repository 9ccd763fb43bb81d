"""Direct alert rules as data (``alerts/rules/fleet.yaml``): the rule file format, its kinds and their parameters.

Each rule names a *kind* (a fixed, tested query over ``metric_series``/``metric_samples``, run by
:mod:`qfleet.alerts.rule_queries`) with parameters, a pending duration (``for``), labels and annotation
templates (``{{ $labels.X }}``, ``{{ $value }}``)::

    version: 1
    kind: AlertRules
    rules:
      - name: QfleetNodeHeartbeatMissing      # the alertname
        kind: heartbeat_missing
        params: {window: 3m}                  # durations in Prometheus' grammar (90s, 1h30m); unset: defaults
        for: 1m
        labels: {severity: page}
        annotations: {summary: "Node {{ $labels.node }} is not sending heartbeats"}

Counters are read as Prometheus' ``increase()`` over ``(at - window, at]``, reset-aware, from the raw samples
(so a rule never waits for the rollup job); a cumulative series born inside the window counts from zero, as
OpenTelemetry's cumulative start time says. Gauges read their latest sample within ``lookback``.

Kinds (one per failure mode they catch). They read only measured signals (:data:`KIND_METRICS`); a rule whose
kind, labels or annotations name simulator ground truth (``qfleet_truth_*``, ``qfleet.truth.*``) is refused.

======================== ======================================================================== ========
kind                     fires                                                                     mode
======================== ======================================================================== ========
heartbeat_missing        a node's ``qfleet_node_heartbeats_total`` did not increase over ``window``  F5
                         (and the series is older than the window), or ``qfleet_node_up`` is 0
coherence_window         the share of jobs with ``qfleet_coherence_window_usage`` above             F2/F3
                         ``threshold`` (a bucket bound, default 1) is above ``ratio``; optionally the
                         share of orchestrator decisions slower than ``latency_le`` above
                         ``latency_ratio``
unauthorized_commands    any increase of ``qfleet_audit_events_total{qfleet.authorized=false}``     F8
queue_age                a tenant's queue is *stuck*: ``qfleet_scheduler_queue_age_seconds`` above  F7 (fleet)
                         ``threshold`` and ``qfleet_scheduler_queue_depth`` > 0 at every sample of
                         ``window``, and no job of the tenant succeeded over it
entanglement_collapse    a link's ``qfleet_entanglement_requests_total`` success ratio below        F1
                         ``ratio`` with at least ``min_requests`` requests
heralding_drop           a link's measured heralding rate (``qfleet_entanglement_heralds_total`` /  F1, F2 NV
                         ``..._attempts_total``) over ``window`` below ``ratio`` x its rate over the
                         ``baseline`` before, ``sigmas`` binomial standard errors below it, with at
                         least ``min_attempts`` attempts
readout_drift            a node's latest calibrated ``qfleet_node_readout_error_ratio`` (any state)  F4
                         risen ``threshold`` above the median of its earlier estimates over
                         ``baseline``, and by ``sigmas`` binomial standard errors of ``shots`` shots
t2_drop                  a node's latest calibrated ``qfleet_node_t2_seconds`` below ``ratio`` x    F2
                         the median of its earlier estimates, by ``sigmas`` stated standard errors
                         (``qfleet_node_t2_stderr_seconds``)
canary_failures          a node's canary fail ratio (``qfleet_canary_checks_total{qfleet.outcome}``) F2/F4/F6
                         over ``window`` above its ratio over ``baseline`` by ``rise`` and
                         ``sigmas``, with at least ``min_checks`` checks in both
link_silence             a link whose ends heartbeat and are not in maintenance carried no          F7
                         entanglement request over ``window`` although its ``baseline`` expects
                         at least ``min_expected`` active steps (its ends' qubits are held)
======================== ======================================================================== ========

Calibration estimates change only when a calibration completes (they are repeated, stale, in between), so the
calibration kinds read a node's *distinct* estimates: the latest one against the earlier ones.

Loading a rule file imports no database code: :func:`evaluate_rules` and :func:`sync_rules` live in
:mod:`qfleet.alerts.rule_queries` and load from here on first use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfleet.alerts.fields import LABEL_NAME_RULE, duration_at, is_label_name
from qfleet.alerts.model import Labels, labels_key
from qfleet.problems import Problem, Problems, ProblemsError, did_you_mean, read_yaml
from qfleet.slo.truth import TRUTH_PREFIXES, truth_fix, truth_reference
from qfleet.units import NS

if TYPE_CHECKING:  # loaded on first use by __getattr__ below (they import SQLAlchemy and the collector's schema)
    from qfleet.alerts.rule_queries import evaluate_rules as evaluate_rules
    from qfleet.alerts.rule_queries import sync_rules as sync_rules

__all__ = [
    "DEFAULT_RULES_PATH",
    "KINDS",
    "KIND_METRICS",
    "AlertRule",
    "AlertRulesError",
    "evaluate_rules",
    "load_rules",
    "rules_from_dict",
    "sync_rules",
]

#: The default direct rules shipped with qfleet.
DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rules" / "fleet.yaml"

# kind -> param -> (type, default); type "duration" (ns), "number" (float), "int"; default None = optional.
KINDS: Mapping[str, Mapping[str, tuple[str, Any]]] = {
    "heartbeat_missing": {"window": ("duration", 3 * 60 * NS), "lookback": ("duration", 5 * 60 * NS)},
    "coherence_window": {"window": ("duration", 5 * 60 * NS), "ratio": ("number", 0.05),
                         "threshold": ("number", 1.0), "min_events": ("int", 20),
                         "latency_le": ("number", None), "latency_ratio": ("number", None)},
    "unauthorized_commands": {"window": ("duration", 5 * 60 * NS)},
    "queue_age": {"threshold": ("number", 20.0), "window": ("duration", 15 * 60 * NS),
                  "lookback": ("duration", 5 * 60 * NS)},
    "entanglement_collapse": {"window": ("duration", 5 * 60 * NS), "ratio": ("number", 0.5),
                              "min_requests": ("int", 10)},
    "heralding_drop": {"window": ("duration", 10 * 60 * NS), "baseline": ("duration", 2 * 3600 * NS),
                       "ratio": ("number", 0.7), "sigmas": ("number", 4.0), "min_attempts": ("int", 200)},
    "readout_drift": {"threshold": ("number", 0.02), "sigmas": ("number", 4.0), "shots": ("int", 1000),
                      "lookback": ("duration", 10 * 60 * NS), "baseline": ("duration", 24 * 3600 * NS)},
    "t2_drop": {"ratio": ("number", 0.7), "sigmas": ("number", 4.0), "lookback": ("duration", 10 * 60 * NS),
                "baseline": ("duration", 24 * 3600 * NS)},
    "canary_failures": {"window": ("duration", 10 * 60 * NS), "baseline": ("duration", 2 * 3600 * NS),
                        "rise": ("number", 0.05), "sigmas": ("number", 4.0), "min_checks": ("int", 100)},
    "link_silence": {"window": ("duration", 5 * 60 * NS), "baseline": ("duration", 2 * 3600 * NS),
                     "min_expected": ("number", 4.0)},
}
#: kind -> the measured series its query reads (Prometheus names; spans by name): never ground truth.
KIND_METRICS: Mapping[str, tuple[str, ...]] = {
    "heartbeat_missing": ("qfleet_node_heartbeats_total", "qfleet_node_up"),
    "coherence_window": ("qfleet_coherence_window_usage_bucket", "qfleet_orchestrator_latency_seconds_bucket"),
    "unauthorized_commands": ("qfleet_audit_events_total",),
    "queue_age": ("qfleet_scheduler_queue_age_seconds", "qfleet_scheduler_queue_depth", "qfleet_jobs_total"),
    "entanglement_collapse": ("qfleet_entanglement_requests_total",),
    "heralding_drop": ("qfleet_entanglement_heralds_total", "qfleet_entanglement_attempts_total",
                       "qfleet_node_up"),
    "readout_drift": ("qfleet_node_readout_error_ratio",),
    "t2_drop": ("qfleet_node_t2_seconds", "qfleet_node_t2_stderr_seconds"),
    "canary_failures": ("qfleet_canary_checks_total",),
    "link_silence": ("qfleet_entanglement_requests_total", "qfleet_node_heartbeats_total", "qfleet.maintenance"),
}
_HEADER = ("version", "kind", "rules")
_FIELDS = ("name", "kind", "params", "for", "labels", "annotations")


class AlertRulesError(ProblemsError):
    """A rule file breaks a rule: ``problems`` name each field path, the bad value and the fix.

    Examples:
        >>> rules_from_dict({"version": 1, "kind": "AlertRules", "rules": [{"name": "X", "kind": "t2_dorp"}]},
        ...                 source="r.yaml")
        Traceback (most recent call last):
        ...
        qfleet.alerts.rules.AlertRulesError: r.yaml: rules[0].kind: unknown kind 't2_dorp' (fix: did you mean 't2_drop'? use one of canary_failures, coherence_window, entanglement_collapse, heartbeat_missing, heralding_drop, link_silence, queue_age, readout_drift, t2_drop, unauthorized_commands)
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    """One direct rule: ``name`` is the ``alertname``; ``params`` hold every parameter of ``kind`` (defaults
    filled in; durations in ns); ``annotations`` are templates over ``{{ $labels.X }}`` and ``{{ $value }}``.

    Raises:
        AlertRulesError: an unknown kind or a negative ``for_ns``.
    """

    name: str
    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    for_ns: int = 0
    labels: Labels = ()
    annotations: Labels = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AlertRulesError([Problem("kind", f"rule {self.name!r} has unknown kind {self.kind!r}",
                                           f"use one of {', '.join(sorted(KINDS))}", "unknown_kind")])
        if truth := [m for m in KIND_METRICS.get(self.kind, ()) if truth_reference(m)]:
            raise AlertRulesError([Problem("kind", f"rule {self.name!r} of kind {self.kind!r} reads ground truth "
                                           f"{truth}", truth_fix(truth[0]), "truth_reference")])
        if self.for_ns < 0:
            raise AlertRulesError([Problem("for_ns", f"rule {self.name!r} has negative for_ns={self.for_ns}",
                                           "use 0 or a positive duration", "bad_duration")])

    def param(self, name: str) -> Any:
        """The value of parameter ``name`` (its default when the rule did not set it)."""
        p = dict(self.params)
        if name in p:
            return p[name]
        return KINDS[self.kind][name][1]


# -- reading a rule file: one named step per part of a rule -----------------------------------------------------


def _header(doc: dict[Any, Any], found: Problems) -> list[Any]:
    """Check ``version``/``kind`` and return the raw ``rules`` list (empty when it is not one)."""
    found.unknown_keys(doc, "", _HEADER)
    if doc.get("version") != 1:
        found.add("version", f"must be 1, got {doc.get('version')!r}", "write version: 1", "bad_version")
    if doc.get("kind") != "AlertRules":
        found.add("kind", f"must be AlertRules, got {doc.get('kind')!r}", "write kind: AlertRules", "bad_kind")
    raw = doc.get("rules")
    if not isinstance(raw, list) or not raw:
        found.add("rules", f"must be a non-empty list of rules, got {raw!r}",
                  "list the rules under rules:, each with name and kind", "bad_type")
        return []
    return raw


def _name(value: Any, at: str, names: set[str], found: Problems) -> str:
    if not is_label_name(value):
        found.add(at, f"must be an alert name ({LABEL_NAME_RULE}), got {value!r}",
                  "write e.g. QfleetNodeHeartbeatMissing", "bad_name")
    elif value in names:
        found.add(at, f"duplicate rule name {value!r}", "give every rule its own name", "duplicate")
    else:
        names.add(value)
    return str(value)


def _kind(value: Any, at: str, found: Problems) -> str | None:
    if isinstance(value, str) and value in KINDS:
        return value
    found.add(at, f"unknown kind {value!r}", f"{did_you_mean(str(value), KINDS)}use one of {', '.join(sorted(KINDS))}",
              "unknown_kind")
    return None


def _number(typ: str, value: Any, at: str, found: Problems) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        found.add(at, f"must be a number >= 0, got {value!r}", "write e.g. 0.5", "bad_number")
        return None
    if typ == "int":
        if int(value) != value:
            found.add(at, f"must be a whole number, got {value!r}", "write e.g. 10", "bad_number")
            return None
        return int(value)
    return float(value)


def _params(value: Any, kind: str | None, at: str, found: Problems) -> dict[str, Any]:
    """The parameters the rule sets (checked against its kind; defaults are filled in later)."""
    if not value:  # absent, null or empty
        return {}
    if not isinstance(value, dict):
        found.add(at, f"must be a mapping, got {value!r}", "write params: {name: value}", "bad_type")
        return {}
    if kind is None:
        return {}  # the kind is already reported; its parameters cannot be checked
    spec = KINDS[kind]
    params: dict[str, Any] = {}
    for k, v in value.items():
        where = f"{at}.{k}"
        if k not in spec:
            found.add(where, f"unknown parameter of {kind}", f"{did_you_mean(str(k), spec)}use {', '.join(spec)}",
                      "unknown_key")
            continue
        typ = spec[k][0]
        parsed = duration_at(found, where, v) if typ == "duration" else _number(typ, v, where, found)
        if parsed is not None:
            params[k] = parsed
    if kind == "coherence_window" and ("latency_le" in params) != ("latency_ratio" in params):
        found.add(at, "latency_le and latency_ratio go together", "give both or neither", "conflict")
    return params


def _label_map(value: Any, at: str, found: Problems) -> dict[str, str]:
    if not value:  # absent, null or empty
        return {}
    if not isinstance(value, dict) or not all(is_label_name(k) and isinstance(v, str) for k, v in value.items()):
        found.add(at, f"must map label names to strings, got {value!r}", 'quote numbers: "1"', "bad_labels")
        return {}
    return value


_TRUTH_WORD = re.compile("(?:" + "|".join(re.escape(p) for p in TRUTH_PREFIXES) + r")[A-Za-z0-9_.]*", re.IGNORECASE)


def _no_truth(mapping: Mapping[str, str], at: str, found: Problems) -> None:
    """A problem for each label or annotation that names ground truth (a rule reads only measured signals)."""
    for k, v in mapping.items():
        for text in (k, v):
            m = _TRUTH_WORD.search(text)
            if m or truth_reference(text):
                name = m.group(0) if m else text
                found.add(f"{at}.{k}", f"{name!r} is simulator ground truth, not a measured signal", truth_fix(name),
                          "truth_reference")
                break


def _rule(raw: Any, at: str, names: set[str], found: Problems) -> AlertRule | None:
    """One rule of the list, or None when it has problems (all recorded in ``found``)."""
    if not isinstance(raw, dict):
        found.add(at, f"must be a mapping, got {raw!r}", f"give {', '.join(_FIELDS)}", "bad_type")
        return None
    before = len(found)
    found.unknown_keys(raw, at, _FIELDS)
    name = _name(raw.get("name"), f"{at}.name", names, found)
    kind = _kind(raw.get("kind"), f"{at}.kind", found)
    params = _params(raw.get("params"), kind, f"{at}.params", found)
    for_ns = duration_at(found, f"{at}.for", raw["for"]) if "for" in raw else 0
    labels = _label_map(raw.get("labels"), f"{at}.labels", found)
    annotations = _label_map(raw.get("annotations"), f"{at}.annotations", found)
    if "alertname" in labels:
        found.add(f"{at}.labels.alertname", "is set from the rule name", "remove it", "conflict")
    _no_truth(labels, f"{at}.labels", found)
    _no_truth(annotations, f"{at}.annotations", found)
    if len(found) > before or kind is None or for_ns is None:
        return None
    full = {p: params.get(p, d) for p, (_t, d) in KINDS[kind].items() if p in params or d is not None}
    return AlertRule(name=name, kind=kind, params=tuple(sorted(full.items())), for_ns=for_ns,
                     labels=labels_key(labels), annotations=labels_key(annotations))


def rules_from_dict(doc: Any, *, source: str = "<rules>") -> tuple[AlertRule, ...]:
    """Rules from a parsed ``version: 1, kind: AlertRules`` document (see :func:`load_rules`).

    Raises:
        AlertRulesError: every problem at once, each with its field path (``rules[2].params.window``).

    Examples:
        >>> [r] = rules_from_dict({"version": 1, "kind": "AlertRules",
        ...                        "rules": [{"name": "Q", "kind": "queue_age", "for": "1m30s"}]})
        >>> r.for_ns == 90 * NS, r.param("threshold"), r.param("lookback") == 5 * 60 * NS
        (True, 20.0, True)
    """
    if not isinstance(doc, dict):
        raise AlertRulesError([Problem("", f"the document is {type(doc).__name__}, not a mapping",
                                       "start with version: 1, kind: AlertRules, rules: [...]", "bad_type")],
                              source=source)
    found = Problems(source=source)
    names: set[str] = set()
    rules = [_rule(raw, f"rules[{i}]", names, found) for i, raw in enumerate(_header(doc, found))]
    found.raise_if_any(AlertRulesError)
    return tuple(r for r in rules if r is not None)


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> tuple[AlertRule, ...]:
    """Rules from a YAML file ``version: 1, kind: AlertRules, rules: [{name, kind, params, for, labels,
    annotations}]``.

    Raises:
        AlertRulesError: the file is missing or not YAML, or any rule is invalid (all problems at once).

    Examples:
        >>> sorted(r.kind for r in load_rules())[:2]
        ['canary_failures', 'coherence_window']
    """
    p = Path(path)
    return rules_from_dict(read_yaml(p, what="alert rules", error=AlertRulesError), source=str(p))


def __getattr__(name: str) -> Any:
    # evaluate_rules / sync_rules read the store: import that module only when one of them is asked for.
    if name in ("evaluate_rules", "sync_rules"):
        from qfleet.alerts import rule_queries

        return getattr(rule_queries, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
