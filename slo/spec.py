"""SLO spec files: OpenSLO v1 documents plus one namespaced qfleet key, validated all at once.

A spec file holds one or more YAML documents (``---``), each an OpenSLO v1 object
(``apiVersion: openslo/v1``). ``kind: SLO`` documents become :class:`slo.model.SLO` values; ``kind: SLI``
documents may be referenced from an SLO by ``indicatorRef``; the other OpenSLO kinds (``AlertPolicy``,
``AlertCondition``, ``AlertNotificationTarget``, ``Service``, ``DataSource``) are ignored with a warning::

    apiVersion: openslo/v1
    kind: SLO
    metadata: {name: job-success, displayName: Job success, labels: {team: fleet}}   # name: RFC 1123, <= 63
    spec:
      description: Jobs that finish with outcome success          # <= 1050 characters
      service: job-execution
      indicator:                                                  # or indicatorRef: <name of a kind: SLI>
        metadata: {name: job-success-ratio}
        spec:
          ratioMetric:
            counter: true
            good: {metricSource: {type: qfleet, spec: {metric: qfleet_jobs_total,
                                                         match: {qfleet.outcome: success}}}}
            total: {metricSource: {type: qfleet, spec: {metric: qfleet_jobs_total}}}
      timeWindow: [{duration: 30d, isRolling: true}]
      budgetingMethod: Occurrences                                # or Timeslices, RatioTimeslices
      objectives: [{displayName: 95 % of jobs succeed, target: 0.95}]
      qfleet.dev/v1:                                              # every qfleet-only setting, nothing else
        alertPolicy: sre_workbook_30d
        groupBy: [hardware_type]
        minEvents: 0
        runbook: runbooks/F4-readout-miscalibration.md
        budgetPolicy: [{name: freeze, consumed: 0.5, consequence: freeze rollouts to this hardware class}]

Fields (sre.md §13):

- ``timeWindow``: a list of exactly one item: ``{duration: Nm|Nh|Nd|Nw, isRolling: true}`` or
  ``{duration: Nd|Nw|NM|NQ|NY, isRolling: false, calendar: {startTime: "YYYY-MM-DD HH:MM:SS", timeZone: <IANA>}}``;
  ``M``, ``Q`` and ``Y`` are calendar units only (OpenSLO#267).
- ``objectives``: exactly one, with ``target`` in (0, 1) or ``targetPercent`` in (0, 100) (0 has no objective, 1 no
  budget); ``op`` + ``value`` for ``thresholdMetric`` indicators; ``timeSliceTarget`` in (0, 1] and
  ``timeSliceWindow`` for ``Timeslices``, ``timeSliceWindow`` for ``RatioTimeslices``. Numbers are read from their
  YAML text as decimals, so ``0.999`` is ``Fraction(999, 1000)`` exactly (a quoted ``"0.999"`` works too).
- ``spec.alertPolicies`` (OpenSLO alerting) is ignored with a warning: qfleet alerts on its own window pairs.
- ``metadata.labels`` become the SLO's labels (added to generated rules, so names follow Prometheus label syntax;
  a list value is joined with commas); ``annotations`` are checked and not kept.

Indicators read qfleet's store through ``metricSource: {type: qfleet, spec: {...}}``:

- ``ratioMetric`` ``good``/``total`` (or ``bad``/``total``) over spans ``{spans: <name>, where: {attr: value}}``
  -> :class:`~slo.model.SpanRatioIndicator` (good = status not ERROR). ``good``/``bad`` repeat ``total``'s
  ``spans`` and ``where`` and may only add ``status: ok`` / ``status: error``.
- ``ratioMetric`` ``good``/``total`` over a counter ``{metric: <name>, match: {label: value}}``
  -> :class:`~slo.model.MetricRatioIndicator`; ``good``'s ``match`` contains ``total``'s, the rest is the good
  selector. (``bad`` is not supported for counters: a label matcher cannot say "every other value".)
- ``thresholdMetric`` ``{spans, attribute, thresholdAttribute?, margin?, where?}``
  -> :class:`~slo.model.SpanThresholdIndicator`: good iff ``attribute op value``, or with ``thresholdAttribute``
  (omit ``value`` then) iff ``attribute op thresholdAttribute × margin`` per span (margin defaults to 1).
- ``thresholdMetric`` ``{histogram: <base name>, buckets: [..], match?}`` -> :class:`~slo.model.HistogramIndicator`
  (``op`` ``lte`` or ``gt``; ``value`` must be one of ``buckets``, never interpolated: sre.md §8).
- ``thresholdMetric`` ``{gauge: <name>, match?}`` -> :class:`~slo.model.GaugeThresholdIndicator` (each sample is an
  event).

``spec."qfleet.dev/v1"`` keys: ``alertPolicy`` (``sre_workbook_30d`` (default), ``pyrra_28d``, a path ending
``.yaml``/``.yml`` or containing ``/`` (relative to the spec file), or inline ``{name, pairs: [{name, severity:
page|ticket, long, short, budgetPercent | burnRate}]}``), ``groupBy`` (``hardware_type``, ``node_id``,
``link_id``), ``minEvents`` (>= 0, the low-traffic guard of sre.md §12), ``runbook``, ``budgetPolicy``
(``[{name, consumed, consequence}]``, ``consumed`` a fraction of the budget, e.g. 0.5).

Alert policies are versioned data (``slo/policies/*.yaml``: ``version: 1``, ``kind: AlertWindows``, ``name``,
``description?``, ``pairs``); a pair's threshold is ``budgetPercent/100 × period / long`` unless it gives
``burnRate``. Every problem names the field (``slos/job-success: spec.objectives[0].target``), the rule and the fix;
all of a file's problems are reported together.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from qfleet.slo.model import (
    NS,
    SLO,
    AlertPolicy,
    BudgetStep,
    Calendar,
    GaugeThresholdIndicator,
    HistogramIndicator,
    Indicator,
    MetricRatioIndicator,
    Pair,
    Period,
    SpanRatioIndicator,
    SpanThresholdIndicator,
    format_window,
    parse_window_ns,
)

__all__ = [
    "BUILTIN_POLICIES",
    "DEFAULT_POLICY",
    "EXTENSION_KEY",
    "GROUP_BY_DIMENSIONS",
    "Problem",
    "SpecError",
    "Validation",
    "builtin_specs_path",
    "load_policy",
    "load_slos",
    "slos_from_documents",
    "unfireable",
    "validate_file",
    "validate_text",
]

logger = logging.getLogger(__name__)

#: The one spec key that holds every qfleet-only setting.
EXTENSION_KEY = "qfleet.dev/v1"
#: Alert policies shipped in ``slo/policies/`` (sre.md §3).
BUILTIN_POLICIES: tuple[str, ...] = ("sre_workbook_30d", "pyrra_28d")
DEFAULT_POLICY = "sre_workbook_30d"
#: Promoted store dimensions an SLO may be segmented by.
GROUP_BY_DIMENSIONS: tuple[str, ...] = ("hardware_type", "node_id", "link_id")

_HERE = Path(__file__).resolve().parent
_API_VERSION = "openslo/v1"
_IGNORED_KINDS = ("AlertPolicy", "AlertCondition", "AlertNotificationTarget", "Service", "DataSource")
_BUDGETING = ("Occurrences", "Timeslices", "RatioTimeslices")
_OPS = ("lte", "lt", "gte", "gt")
_RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PAIR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PROM_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_PROM_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^(\d+)([mhdwMQY])$")
_DECIMAL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_FIX = ("use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 "
             "characters (RFC 1123), e.g. job-success")


# ---------------------------------------------------------------------------------------------------------------
# Public values


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, in :attr:`Validation.warnings`, worth knowing) in a spec.

    Args:
        path: the object and field, e.g. ``slos/job-success: spec.objectives[0].target``.
        message: what is wrong, naming the bad value and the rule.
        fix: how to fix it.
        code: a stable machine-readable id (``target_out_of_range``, ``unknown_key``...), or ``""``.

    >>> str(Problem("slos/x: spec.budgetingMethod", "missing", "add budgetingMethod: Occurrences"))
    'slos/x: spec.budgetingMethod: missing (fix: add budgetingMethod: Occurrences)'
    """

    path: str
    message: str
    fix: str
    code: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (fix: {self.fix})"

    def to_json(self) -> dict[str, str]:
        """``{"path", "message", "fix", "code"}``."""
        return {"path": self.path, "message": self.message, "fix": self.fix, "code": self.code}


class SpecError(ValueError):
    """A spec or policy file is invalid; ``problems`` holds every problem found, ``str()`` lists them one per line.

    >>> err = SpecError([Problem("slos/x: spec", "missing service", "add service: fleet")], source="a.yaml")
    >>> print(err)
    a.yaml: 1 problem
      slos/x: spec: missing service (fix: add service: fleet)
    """

    def __init__(self, problems: Iterable[Problem], *, source: str = "") -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source or 'spec'}: {n} problem{'' if n == 1 else 's'}"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


@dataclass(frozen=True, slots=True)
class Validation:
    """What validating a file found: the valid SLOs, the problems, and warnings (the SLOs stay valid).

    ``slos`` holds only the SLOs without problems; :func:`load_slos` refuses the file if there is any problem.
    """

    slos: tuple[SLO, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    source: str = ""

    @property
    def ok(self) -> bool:
        """True iff there are no problems (warnings allowed)."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary; each SLO lists its ``unfireable_conditions`` (sre.md §9).

        >>> Validation((), (), ()).to_json()
        {'source': '', 'ok': True, 'slos': [], 'problems': [], 'warnings': []}
        """
        return {
            "source": self.source,
            "ok": self.ok,
            "slos": [{"name": s.name, "service": s.service, "policy": s.policy.name,
                      "unfireable_conditions": [p.name for p in unfireable(s)]} for s in self.slos],
            "problems": [p.to_json() for p in self.problems],
            "warnings": [p.to_json() for p in self.warnings],
        }


def builtin_specs_path() -> Path:
    """The default SLO pack, ``slo/specs/fleet.yaml``.

    >>> builtin_specs_path().name
    'fleet.yaml'
    """
    return _HERE / "specs" / "fleet.yaml"


def unfireable(slo: SLO) -> list[Pair]:
    """The pairs of ``slo``'s policy that can never fire: threshold ``>= 1/B``, the largest possible burn (sre.md §9).

    A warning, not an error: the SLO stays valid. At T = 93 % the max burn is 14.29, below ``page_fast``'s 14.4.

    Args:
        slo: the SLO; thresholds use its period's nominal length.

    Returns:
        The unfireable pairs, in policy order (empty when every pair can fire).

    >>> from qfleet.slo.model import MetricRatioIndicator
    >>> ind = MetricRatioIndicator(metric="m_total", good_match=(("ok", "1"),))
    >>> s = SLO(name="x", service="s", target=Fraction(93, 100), period=Period(30 * 86400 * NS),
    ...         budgeting="Occurrences", indicator=ind, policy=load_policy("sre_workbook_30d"))
    >>> [p.name for p in unfireable(s)]
    ['page_fast']
    """
    max_burn = 1 / slo.error_budget
    return [p for p in slo.policy.pairs if p.threshold(slo.period.nominal_ns) >= max_burn]


# ---------------------------------------------------------------------------------------------------------------
# YAML that keeps each float's text


class _Float(float):
    """A YAML float that remembers the text it was written as (so 0.999 parses to exactly 999/1000)."""

    text: str

    def __new__(cls, value: float, text: str) -> _Float:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps float text and rejects duplicate mapping keys."""


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    return _Float(loader.construct_yaml_float(node), str(node.value))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:  # before merge keys (<<) are flattened: a key may override a merged one
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key_node.value!r} (the later value would silently replace the earlier one)",
                key_node.start_mark)
        seen.add(key_node.value)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _load_yaml(text: str, source: str) -> tuple[list[Any], list[Problem]]:
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None], []
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
        what = getattr(err, "problem", None) or str(err)
        return [], [Problem(where, f"not valid YAML: {what}", "fix the YAML syntax at that position", "yaml_syntax")]


# ---------------------------------------------------------------------------------------------------------------
# Paths, problems, small parsers


@dataclass(frozen=True, slots=True)
class _Path:
    obj: str
    field: str = ""

    def k(self, key: Any) -> _Path:
        text = str(key)
        part = text if _PLAIN_KEY.match(text) else json.dumps(text)
        return _Path(self.obj, f"{self.field}.{part}" if self.field else part)

    def i(self, index: int) -> _Path:
        return _Path(self.obj, f"{self.field}[{index}]")

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}" if self.field else self.obj


@dataclass(slots=True)
class _Ctx:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def bad(self, path: _Path | str, message: str, fix: str, code: str = "") -> None:
        self.problems.append(Problem(str(path), message, fix, code))

    def warn(self, path: _Path | str, message: str, fix: str, code: str = "") -> None:
        self.warnings.append(Problem(str(path), message, fix, code))


def _show(value: Any) -> str:
    if isinstance(value, _Float):
        return value.text
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dec(x: Fraction) -> str:
    """Exact decimal spelling of ``x`` when it has one, else ``p/q``."""
    d, k = x.denominator, 0
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
    if d != 1:
        return f"{x.numerator}/{x.denominator} (~{float(x):.6g})"
    while (x * 10**k).denominator != 1:
        k += 1
    digits = str(abs(x.numerator * 10**k // x.denominator)).rjust(k + 1, "0")
    sign = "-" if x < 0 else ""
    return sign + (f"{digits[:-k]}.{digits[-k:]}" if k else digits)


def _exact(value: Any) -> Fraction | None:
    """The exact rational a YAML number (or decimal string) denotes; None if not a finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, _Float):
        text = value.text.replace("_", "").strip()
        if _DECIMAL.match(text):
            return Fraction(text)
    if isinstance(value, float):
        # A float from some other loader: its repr is the shortest decimal that round-trips, i.e. what was typed.
        return Fraction(repr(float(value))) if math.isfinite(value) else None
    if isinstance(value, str) and _DECIMAL.match(value.strip()):
        return Fraction(value.strip())
    return None


def _number(ctx: _Ctx, value: Any, path: _Path, example: str) -> Fraction | None:
    x = _exact(value)
    if x is None:
        ctx.bad(path, f"{_show(value)} is not a finite decimal number", f"write a number, e.g. {example}",
                "not_a_number")
    return x


def _mapping(ctx: _Ctx, value: Any, path: _Path, allowed: Sequence[str],
             required: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``value`` as a mapping, with every unknown key and missing required key (key -> fix) reported."""
    if not isinstance(value, dict):
        ctx.bad(path, f"expected a mapping, got {_show(value)}", f"write a mapping with keys from: {', '.join(allowed)}",
                "not_a_mapping")
        return None
    for key in value:
        if key not in allowed:
            ctx.bad(path.k(key), f"unknown key {key!r}", f"use only the allowed keys here: {', '.join(allowed)}",
                    "unknown_key")
    for key, fix in (required or {}).items():
        if key not in value:
            ctx.bad(path.k(key), f"required key {key!r} is missing", fix, "missing_key")
    return value


def _string(ctx: _Ctx, value: Any, path: _Path, example: str, *, max_len: int | None = None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        ctx.bad(path, f"{_show(value)} is not a non-empty string", f"write a string, e.g. {example}", "not_a_string")
        return None
    if max_len is not None and len(value) > max_len:
        ctx.bad(path, f"{len(value)} characters is longer than the {max_len} allowed", f"shorten it to {max_len}",
                "too_long")
        return None
    return value


def _matchers(ctx: _Ctx, value: Any, path: _Path, *, strings: bool) -> tuple[tuple[str, Any], ...] | None:
    """``{key: value}`` as sorted pairs; label values (``strings``) must be strings, attribute values scalars."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        ctx.bad(path, f"expected a mapping of name: value, got {_show(value)}",
                'write e.g. {qfleet.outcome: success}', "not_a_mapping")
        return None
    out: list[tuple[str, Any]] = []
    ok = True
    for key, v in value.items():
        if not isinstance(key, str) or not key:
            ctx.bad(path.k(key), f"{_show(key)} is not a non-empty name", "use a label or attribute name", "bad_key")
            ok = False
        elif strings and not isinstance(v, str):
            ctx.bad(path.k(key), f"label value {_show(v)} is not a string (Prometheus labels are strings)",
                    f'quote it: {key}: "{v}"', "not_a_string")
            ok = False
        elif not isinstance(v, str | int | float | bool):
            ctx.bad(path.k(key), f"attribute value {_show(v)} is not a scalar", "compare with a string, number or bool",
                    "not_a_scalar")
            ok = False
        else:
            out.append((key, float(v) if isinstance(v, _Float) else v))
    return tuple(sorted(out)) if ok else None


def _window(ctx: _Ctx, value: Any, path: _Path, example: str) -> int | None:
    if isinstance(value, str):
        try:
            return parse_window_ns(value)
        except ValueError:
            pass
    ctx.bad(path, f"window {_show(value)} is not a positive whole number of m, h, d or w", f"write e.g. {example}",
            "bad_window")
    return None


# ---------------------------------------------------------------------------------------------------------------
# Alert policies


_PAIR_KEYS = ("name", "severity", "long", "short", "budgetPercent", "burnRate")


def _parse_pairs(ctx: _Ctx, value: Any, path: _Path) -> tuple[Pair, ...] | None:
    if not isinstance(value, list) or not value:
        ctx.bad(path, f"pairs must be a non-empty list, got {_show(value)}",
                "list the pairs, e.g. - {name: page_fast, severity: page, long: 1h, short: 5m, budgetPercent: 2}",
                "bad_pairs")
        return None
    start = len(ctx.problems)
    pairs: list[Pair] = []
    names: set[str] = set()
    for i, raw in enumerate(value):
        p = path.i(i)
        item = _mapping(ctx, raw, p, _PAIR_KEYS, {
            "name": "add name: page_fast (lowercase letters, digits, _)",
            "severity": "add severity: page or severity: ticket",
            "long": "add long: 1h (the long window)",
            "short": "add short: 5m (about long/12)",
        })
        if item is None:
            continue
        name = item.get("name")
        if "name" in item:
            if not isinstance(name, str) or not _PAIR_NAME.match(name):
                ctx.bad(p.k("name"), f"pair name {_show(name)} is not valid",
                        "use lowercase letters, digits and _, starting with a letter, e.g. page_fast", "bad_pair_name")
                name = None
            elif name in names:
                ctx.bad(p.k("name"), f"pair name {name!r} is used twice", "give every pair a distinct name",
                        "duplicate_pair")
            else:
                names.add(name)
        severity = item.get("severity")
        if "severity" in item and severity not in ("page", "ticket"):
            ctx.bad(p.k("severity"), f"severity {_show(severity)} is not page or ticket",
                    "use page (wake a human now) or ticket (next working day); Pyrra's critical is page, "
                    "warning is ticket", "bad_severity")
        long_ns = _window(ctx, item["long"], p.k("long"), "1h") if "long" in item else None
        short_ns = _window(ctx, item["short"], p.k("short"), "5m") if "short" in item else None
        if long_ns is not None and short_ns is not None and short_ns >= long_ns:
            ctx.bad(p.k("short"), f"short window {item['short']} is not shorter than long window {item['long']}",
                    f"make short shorter than long, about long/12 (e.g. {format_window(max(long_ns // 12, 60 * NS))})",
                    f"short_not_shorter_than_long:{name or i}")
        budget = burn = None
        if ("budgetPercent" in item) == ("burnRate" in item):
            ctx.bad(p, "give exactly one of budgetPercent and burnRate",
                    "budgetPercent: 2 (fires when 2 % of the budget is spent within the long window) or burnRate: 14 "
                    "(a fixed burn factor)", "bad_pair_threshold")
        elif "budgetPercent" in item:
            pct = _number(ctx, item["budgetPercent"], p.k("budgetPercent"), "2")
            if pct is not None and not 0 < pct <= 100:
                ctx.bad(p.k("budgetPercent"), f"budgetPercent {_dec(pct)} is outside (0, 100]",
                        "give the percent of the error budget spent within the long window, e.g. 2", "bad_budget")
            elif pct is not None:
                budget = pct / 100
        else:
            burn = _number(ctx, item["burnRate"], p.k("burnRate"), "14")
            if burn is not None and burn <= 0:
                ctx.bad(p.k("burnRate"), f"burnRate {_dec(burn)} is not positive", "use a factor > 0, e.g. 14",
                        "bad_burn_rate")
                burn = None
        if len(ctx.problems) == start:
            assert long_ns is not None and short_ns is not None and isinstance(name, str)
            pairs.append(Pair(name=name, severity=severity, long_ns=long_ns, short_ns=short_ns,
                              budget_fraction=budget, burn_threshold=burn))
    return tuple(pairs) if len(ctx.problems) == start else None


def _parse_policy(ctx: _Ctx, value: Any, path: _Path, *, inline: bool) -> AlertPolicy | None:
    keys = ("name", "description", "pairs") if inline else ("version", "kind", "name", "description", "pairs")
    required = {"name": "add name: my_policy", "pairs": "add pairs: [{name, severity, long, short, budgetPercent}]"}
    if not inline:
        required = {"version": "add version: 1", "kind": "add kind: AlertWindows", **required}
    start = len(ctx.problems)
    doc = _mapping(ctx, value, path, keys, required)
    if doc is None:
        return None
    if not inline and "version" in doc and (doc["version"] != 1 or isinstance(doc["version"], bool)):
        ctx.bad(path.k("version"), f"policy version {_show(doc['version'])} is not supported", "write version: 1",
                "bad_version")
    if not inline and "kind" in doc and doc["kind"] != "AlertWindows":
        ctx.bad(path.k("kind"), f"kind {_show(doc['kind'])} is not an alert-window policy", "write kind: AlertWindows",
                "wrong_kind")
    name = _string(ctx, doc["name"], path.k("name"), "sre_workbook_30d") if "name" in doc else None
    if "description" in doc:
        _string(ctx, doc["description"], path.k("description"), "Workbook windows")
    pairs = _parse_pairs(ctx, doc["pairs"], path.k("pairs")) if "pairs" in doc else None
    if len(ctx.problems) != start or name is None or pairs is None:
        return None
    return AlertPolicy(name=name, pairs=pairs)


def _policy_file(ctx: _Ctx, file: Path, path: _Path) -> AlertPolicy | None:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        ctx.bad(path, f"cannot read policy file {str(file)!r}: {err.strerror or err}",
                f"use one of {', '.join(BUILTIN_POLICIES)} or a path (relative to the spec file) to an existing file",
                "policy_not_found")
        return None
    docs, problems = _load_yaml(text, str(file))
    ctx.problems.extend(problems)
    if problems:
        return None
    if len(docs) != 1:
        ctx.bad(_Path(str(file)), f"a policy file holds exactly one document, found {len(docs)}",
                "keep one AlertWindows document per file", "bad_policy_file")
        return None
    return _parse_policy(ctx, docs[0], _Path(str(file)), inline=False)


@functools.cache
def _builtin_policy(name: str) -> AlertPolicy:
    ctx = _Ctx()
    policy = _policy_file(ctx, _HERE / "policies" / f"{name}.yaml", _Path(f"policies/{name}"))
    if policy is None:
        raise SpecError(ctx.problems, source=f"builtin policy {name}")
    return policy


def load_policy(name_or_path: str | Path) -> AlertPolicy:
    """A built-in alert policy by name, or an ``AlertWindows`` file by path.

    Args:
        name_or_path: ``sre_workbook_30d``, ``pyrra_28d`` or the path of a policy file.

    Returns:
        The policy; thresholds follow from each pair and the SLO's period.

    Raises:
        SpecError: unknown name, unreadable or invalid file (every problem listed).

    >>> policy = load_policy("sre_workbook_30d")
    >>> [(p.name, p.threshold(30 * 86400 * NS)) for p in policy.pairs][:2]
    [('page_fast', Fraction(72, 5)), ('page_slow', Fraction(6, 1))]
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_POLICIES:
        return _builtin_policy(name_or_path)
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path):
        raise SpecError([_unknown_policy(_Path(name_or_path), name_or_path)], source=name_or_path)
    ctx = _Ctx()
    policy = _policy_file(ctx, path, _Path(str(path)))
    if policy is None:
        raise SpecError(ctx.problems, source=str(path))
    return policy


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))


def _unknown_policy(path: _Path, name: Any) -> Problem:
    return Problem(str(path), f"alert policy {_show(name)} is not a built-in policy",
                   f"use {' or '.join(BUILTIN_POLICIES)} (default {DEFAULT_POLICY}), a path to an AlertWindows file "
                   "(ending .yaml), or an inline {name, pairs}", "unknown_policy")


# ---------------------------------------------------------------------------------------------------------------
# Indicators


@dataclass(frozen=True, slots=True)
class _Draft:
    """An SLI before the objective supplies op and value: a ready ratio indicator or a threshold source."""

    kind: str  # "ratio" | "spans" | "histogram" | "gauge"
    path: _Path  # of the metricSource spec
    indicator: Indicator | None = None
    fields: tuple[tuple[str, Any], ...] = ()


_SOURCE_KEYS = ("metricSource",)
_METRIC_SOURCE_KEYS = ("type", "spec", "metricSourceRef")


def _source_spec(ctx: _Ctx, value: Any, path: _Path) -> tuple[dict[str, Any], _Path] | None:
    leaf = _mapping(ctx, value, path, _SOURCE_KEYS, {"metricSource": "add metricSource: {type: qfleet, spec: {...}}"})
    if leaf is None or "metricSource" not in leaf:
        return None
    mp = path.k("metricSource")
    ms = _mapping(ctx, leaf["metricSource"], mp, _METRIC_SOURCE_KEYS,
                  {"type": "add type: qfleet", "spec": "add spec: {metric: ...} (or spans, histogram, gauge)"})
    if ms is None:
        return None
    if "metricSourceRef" in ms:
        ctx.bad(mp.k("metricSourceRef"), "metricSourceRef (an OpenSLO DataSource) is not supported",
                "drop metricSourceRef and write type: qfleet: qfleet reads its own store", "unsupported")
    if "type" in ms and ms["type"] != "qfleet":
        ctx.bad(mp.k("type"), f"metric source type {_show(ms['type'])} is not supported",
                "write type: qfleet (sources read qfleet's store)", "bad_source_type")
    if "spec" not in ms or not isinstance(ms["spec"], dict):
        if "spec" in ms:
            ctx.bad(mp.k("spec"), f"expected a mapping, got {_show(ms['spec'])}", "write spec: {metric: ...}",
                    "not_a_mapping")
        return None
    return ms["spec"], mp.k("spec")


def _one_of(ctx: _Ctx, spec: dict[str, Any], path: _Path, choices: Sequence[str], example: str) -> str | None:
    given = [c for c in choices if c in spec]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        ctx.bad(path, f"give exactly one of {', '.join(choices)} (found {what})", f"e.g. {example}",
                "bad_source")
        return None
    return given[0]


def _metric_name(ctx: _Ctx, value: Any, path: _Path, example: str) -> str | None:
    name = _string(ctx, value, path, example)
    if name is not None and not _PROM_NAME.match(name):
        ctx.bad(path, f"metric name {name!r} is not a Prometheus metric name",
                f"use the stored Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*), e.g. {example}", "bad_metric_name")
        return None
    return name


def _ratio_leaf(ctx: _Ctx, value: Any, path: _Path, role: str) -> tuple[str, dict[str, Any], _Path] | None:
    got = _source_spec(ctx, value, path)
    if got is None:
        return None
    spec, sp = got
    kind = _one_of(ctx, spec, sp, ("spans", "metric"), "{metric: qfleet_jobs_total, match: {...}} or {spans: job}")
    if kind is None:
        return None
    if kind == "spans":
        _mapping(ctx, spec, sp, ("spans", "where") if role == "total" else ("spans", "where", "status"))
    else:
        _mapping(ctx, spec, sp, ("metric", "match"))
    return kind, spec, sp


def _parse_ratio(ctx: _Ctx, rm: dict[str, Any], path: _Path) -> _Draft | None:
    start = len(ctx.problems)
    _mapping(ctx, rm, path, ("counter", "good", "bad", "total", "rawType", "raw"),
             {"total": "add total: {metricSource: {type: qfleet, spec: {...}}}"})
    for key in ("rawType", "raw"):
        if key in rm:
            ctx.bad(path.k(key), f"{key} (a precomputed ratio) is not supported",
                    "count events instead: give good (or bad) and total", "unsupported")
    if "counter" in rm and not isinstance(rm["counter"], bool):
        ctx.bad(path.k("counter"), f"counter {_show(rm['counter'])} is not a bool", "write counter: true",
                "not_a_bool")
    if ("good" in rm) == ("bad" in rm):
        ctx.bad(path, "give exactly one of good and bad (besides total)",
                "add good: {metricSource: ...} (or bad: for spans)", "bad_ratio")
        return None
    role = "good" if "good" in rm else "bad"
    part = _ratio_leaf(ctx, rm[role], path.k(role), role)
    total = _ratio_leaf(ctx, rm["total"], path.k("total"), "total") if "total" in rm else None
    if part is None or total is None or len(ctx.problems) != start:
        return None
    (pkind, pspec, pp), (tkind, tspec, tp) = part, total
    if pkind != tkind:
        ctx.bad(pp, f"{role} reads {pkind} but total reads {tkind}", f"make {role} and total read the same source",
                "ratio_mismatch")
        return None
    if pkind == "spans":
        span = _string(ctx, tspec["spans"], tp.k("spans"), "job")
        twhere = _matchers(ctx, tspec.get("where"), tp.k("where"), strings=False)
        pwhere = _matchers(ctx, pspec.get("where"), pp.k("where"), strings=False)
        if pspec["spans"] != tspec["spans"]:
            ctx.bad(pp.k("spans"), f"{role} counts spans {_show(pspec['spans'])} but total counts "
                    f"{_show(tspec['spans'])}", f"use spans: {_show(tspec['spans'])} in {role} too", "ratio_mismatch")
        if twhere is not None and pwhere is not None and pwhere != twhere:
            ctx.bad(pp.k("where"), f"{role}'s where differs from total's",
                    f"repeat total's where in {role}; {role} may only add status: {'ok' if role == 'good' else 'error'}"
                    " (good = status not ERROR)", "ratio_mismatch")
        want = "ok" if role == "good" else "error"
        if "status" in pspec and pspec["status"] != want:
            ctx.bad(pp.k("status"), f"status {_show(pspec['status'])} is not supported for {role}",
                    f"write status: {want} or leave it out ({role} = status {'not ' if role == 'good' else ''}ERROR)",
                    "bad_status")
        if len(ctx.problems) != start or span is None or twhere is None:
            return None
        return _Draft("ratio", tp, SpanRatioIndicator(span=span, where=twhere))
    if role == "bad":
        ctx.bad(path.k("bad"), "bad/total is not supported for counters (a label matcher cannot select every other "
                "value)", "write good: with the good label value, e.g. match: {qfleet.outcome: success}",
                "unsupported")
        return None
    metric = _metric_name(ctx, tspec["metric"], tp.k("metric"), "qfleet_jobs_total")
    tmatch = _matchers(ctx, tspec.get("match"), tp.k("match"), strings=True)
    pmatch = _matchers(ctx, pspec.get("match"), pp.k("match"), strings=True)
    if pspec["metric"] != tspec["metric"]:
        ctx.bad(pp.k("metric"), f"good counts {_show(pspec['metric'])} but total counts {_show(tspec['metric'])}",
                f"use metric: {_show(tspec['metric'])} in good too (one counter, split by labels)", "ratio_mismatch")
    if tmatch is None or pmatch is None or metric is None or len(ctx.problems) != start:
        return None
    missing = [kv for kv in tmatch if kv not in pmatch]
    if missing:
        ctx.bad(pp.k("match"), f"good's match lacks total's {', '.join(f'{k}={v!r}' for k, v in missing)}",
                "repeat total's match in good and add the good label values", "ratio_mismatch")
        return None
    good_match = tuple(kv for kv in pmatch if kv not in tmatch)
    if not good_match:
        ctx.bad(pp.k("match"), "good selects the same series as total, so every event would be good",
                "add the good label value, e.g. qfleet.outcome: success", "ratio_mismatch")
        return None
    return _Draft("ratio", tp, MetricRatioIndicator(metric=metric, good_match=good_match, total_match=tmatch))


def _parse_threshold(ctx: _Ctx, tm: Any, path: _Path) -> _Draft | None:
    start = len(ctx.problems)
    got = _source_spec(ctx, tm, path)
    if got is None:
        return None
    spec, sp = got
    kind = _one_of(ctx, spec, sp, ("spans", "histogram", "gauge"),
                   "{histogram: qfleet_orchestrator_latency_seconds, buckets: [...]} or {gauge: qfleet_node_up}")
    if kind is None:
        return None
    if kind == "spans":
        _mapping(ctx, spec, sp, ("spans", "attribute", "thresholdAttribute", "margin", "where"),
                 {"attribute": "add attribute: <the span attribute compared with the threshold>"})
        span = _string(ctx, spec["spans"], sp.k("spans"), "feedforward")
        attribute = _string(ctx, spec["attribute"], sp.k("attribute"), "latency_us") if "attribute" in spec else None
        tattr = None
        if "thresholdAttribute" in spec:
            tattr = _string(ctx, spec["thresholdAttribute"], sp.k("thresholdAttribute"), "coherence_window_us")
        margin: Fraction | None = Fraction(1)
        if "margin" in spec:
            margin = _number(ctx, spec["margin"], sp.k("margin"), "0.5")
            if margin is not None and margin <= 0:
                ctx.bad(sp.k("margin"), f"margin {_dec(margin)} is not positive", "use a factor > 0, e.g. 0.5",
                        "bad_margin")
            if "thresholdAttribute" not in spec:
                ctx.bad(sp.k("margin"), "margin scales thresholdAttribute, which is not given",
                        "add thresholdAttribute, or drop margin and put the threshold in objectives[0].value",
                        "bad_margin")
        where = _matchers(ctx, spec.get("where"), sp.k("where"), strings=False)
        if len(ctx.problems) != start:
            return None
        return _Draft("spans", sp, fields=(("span", span), ("attribute", attribute), ("threshold_attribute", tattr),
                                           ("margin", margin), ("where", where)))
    if kind == "histogram":
        _mapping(ctx, spec, sp, ("histogram", "buckets", "match"),
                 {"buckets": "add buckets: [...] (the histogram's boundaries, e.g. 0.001, 0.01, 0.1)"})
        metric = _metric_name(ctx, spec["histogram"], sp.k("histogram"), "qfleet_orchestrator_latency_seconds")
        if metric is not None and metric.endswith(("_bucket", "_count", "_sum")):
            ctx.bad(sp.k("histogram"), f"{metric!r} is a series of the histogram, not its base name",
                    f"write histogram: {metric.rsplit('_', 1)[0]}", "bad_metric_name")
        buckets: list[Fraction] = []
        raw = spec.get("buckets")
        if "buckets" in spec and (not isinstance(raw, list) or not raw):
            ctx.bad(sp.k("buckets"), f"buckets must be a non-empty list of numbers, got {_show(raw)}",
                    "list the boundaries, e.g. [0.001, 0.01, 0.1]", "bad_buckets")
        elif isinstance(raw, list):
            for i, b in enumerate(raw):
                x = _number(ctx, b, sp.k("buckets").i(i), "0.01")
                if x is not None and buckets and x <= buckets[-1]:
                    ctx.bad(sp.k("buckets").i(i), f"bucket {_dec(x)} does not follow {_dec(buckets[-1])}",
                            "list the boundaries strictly increasing, without +Inf", "bad_buckets")
                if x is not None:
                    buckets.append(x)
        match = _matchers(ctx, spec.get("match"), sp.k("match"), strings=True)
        if len(ctx.problems) != start:
            return None
        return _Draft("histogram", sp, fields=(("metric", metric), ("buckets", tuple(buckets)), ("match", match)))
    _mapping(ctx, spec, sp, ("gauge", "match"))
    metric = _metric_name(ctx, spec["gauge"], sp.k("gauge"), "qfleet_node_up")
    match = _matchers(ctx, spec.get("match"), sp.k("match"), strings=True)
    if len(ctx.problems) != start:
        return None
    return _Draft("gauge", sp, fields=(("metric", metric), ("match", match)))


def _parse_sli_spec(ctx: _Ctx, value: Any, path: _Path) -> _Draft | None:
    spec = _mapping(ctx, value, path, ("description", "thresholdMetric", "ratioMetric"))
    if spec is None:
        return None
    if "description" in spec:
        _string(ctx, spec["description"], path.k("description"), "Jobs that succeed", max_len=1050)
    if ("thresholdMetric" in spec) == ("ratioMetric" in spec):
        ctx.bad(path, "give exactly one of ratioMetric and thresholdMetric",
                "ratioMetric: {good, total} counts good events; thresholdMetric: {metricSource} compares a value "
                "with objectives[0].op/value", "bad_indicator")
        return None
    if "ratioMetric" in spec:
        rm = spec["ratioMetric"]
        if not isinstance(rm, dict):
            ctx.bad(path.k("ratioMetric"), f"expected a mapping, got {_show(rm)}", "write ratioMetric: {good, total}",
                    "not_a_mapping")
            return None
        return _parse_ratio(ctx, rm, path.k("ratioMetric"))
    return _parse_threshold(ctx, spec["thresholdMetric"], path.k("thresholdMetric"))


def _bind(ctx: _Ctx, draft: _Draft, objective: dict[str, Any], op_path: _Path, value_path: _Path) -> Indicator | None:
    """Combine a draft SLI with the objective's ``op`` and ``value``."""
    has_op, has_value = "op" in objective, "value" in objective
    if draft.kind == "ratio":
        for key, has, p in (("op", has_op, op_path), ("value", has_value, value_path)):
            if has:
                ctx.bad(p, f"{key} applies to thresholdMetric indicators, and this one is a ratioMetric",
                        f"remove {key}; the ratio of good to total events is compared with the target", "unexpected")
        return None if has_op or has_value else draft.indicator
    f = dict(draft.fields)
    ops = ("lte", "gt") if draft.kind == "histogram" else _OPS
    op = objective.get("op")
    if not has_op:
        ctx.bad(op_path, "a thresholdMetric objective needs op", f"add op: one of {', '.join(ops)}", "missing_key")
    elif op not in ops:
        fix = ("use lte (good = at or below a bucket boundary) or gt (good = above it)" if draft.kind == "histogram"
               else f"use one of {', '.join(ops)}")
        ctx.bad(op_path, f"op {_show(op)} is not supported here", fix, "bad_op")
        op = None
    value: Fraction | None = None
    per_event = draft.kind == "spans" and f["threshold_attribute"] is not None
    if per_event:
        if has_value:
            ctx.bad(value_path, f"value is not used: the threshold is {f['threshold_attribute']} × margin per span",
                    "remove value (set margin in the metric source instead)", "unexpected")
    elif not has_value:
        ctx.bad(value_path, "a thresholdMetric objective needs value", "add value: <the threshold>, e.g. 0.01",
                "missing_key")
    else:
        value = _number(ctx, objective["value"], value_path, "0.01")
    if draft.kind == "histogram" and value is not None and value not in f["buckets"]:
        ctx.bad(value_path, f"threshold {_dec(value)} is not a bucket boundary of {f['metric']} (sre.md §8: never "
                "interpolated)", f"use one of the bucket boundaries {', '.join(_dec(b) for b in f['buckets'])}",
                "threshold_not_on_bucket_boundary")
        value = None
    if op is None or (value is None and not per_event):
        return None
    if draft.kind == "spans":
        return SpanThresholdIndicator(span=f["span"], attribute=f["attribute"], op=op, threshold=value,
                                      threshold_attribute=f["threshold_attribute"], margin=f["margin"],
                                      where=f["where"])
    assert value is not None
    if draft.kind == "histogram":
        return HistogramIndicator(metric=f["metric"], threshold=value, op=op, buckets=f["buckets"], match=f["match"])
    return GaugeThresholdIndicator(metric=f["metric"], op=op, threshold=value, match=f["match"])


# ---------------------------------------------------------------------------------------------------------------
# SLO documents


_SLO_SPEC_KEYS = ("description", "service", "indicator", "indicatorRef", "timeWindow", "budgetingMethod",
                  "objectives", "alertPolicies", EXTENSION_KEY)
_OBJECTIVE_KEYS = ("displayName", "op", "value", "target", "targetPercent", "timeSliceTarget", "timeSliceWindow",
                   "indicator", "indicatorRef", "compositeWeight")
_EXT_KEYS = ("alertPolicy", "groupBy", "minEvents", "runbook", "budgetPolicy")


def _metadata(ctx: _Ctx, value: Any, path: _Path) -> dict[str, Any] | None:
    md = _mapping(ctx, value, path, ("name", "displayName", "labels", "annotations"),
                  {"name": f"add name: <RFC 1123 name>; {_NAME_FIX}"})
    if md is None:
        return None
    name = md.get("name")
    if "name" in md and (not isinstance(name, str) or len(name) > 63 or not _RFC1123.match(name)):
        ctx.bad(path.k("name"), f"name {_show(name)} is not an RFC 1123 name", _NAME_FIX, "bad_name")
    if "displayName" in md:
        _string(ctx, md["displayName"], path.k("displayName"), "Job success")
    labels = md.get("labels")
    if "labels" in md and not isinstance(labels, dict):
        ctx.bad(path.k("labels"), f"expected a mapping, got {_show(labels)}", "write labels: {team: fleet}",
                "not_a_mapping")
    elif isinstance(labels, dict):
        for k, v in labels.items():
            if not isinstance(k, str) or not _PROM_LABEL.match(k):
                ctx.bad(path.k("labels").k(k), f"label name {_show(k)} is not a Prometheus label name",
                        "use [a-zA-Z_][a-zA-Z0-9_]* (labels are added to generated rules), e.g. team", "bad_label")
            elif not (isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))):
                ctx.bad(path.k("labels").k(k), f"label value {_show(v)} is not a string or a list of strings",
                        f'quote it: {k}: "{v}"', "bad_label")
    annotations = md.get("annotations")
    if "annotations" in md and not isinstance(annotations, dict):
        ctx.bad(path.k("annotations"), f"expected a mapping, got {_show(annotations)}",
                "write annotations: {key: value}", "not_a_mapping")
    elif isinstance(annotations, dict):
        for k, v in annotations.items():
            if not isinstance(v, str):
                ctx.bad(path.k("annotations").k(k), f"annotation value {_show(v)} is not a string",
                        "quote the value", "not_a_string")
            if isinstance(k, str) and k.startswith("openslo.com/"):
                ctx.warn(path.k("annotations").k(k), "the openslo.com/ annotation prefix is reserved by OpenSLO",
                         "use another prefix, e.g. qfleet.dev/", "reserved_annotation")
    return md


def _labels(md: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = md.get("labels") or {}
    return tuple(sorted((k, v if isinstance(v, str) else ",".join(v)) for k, v in raw.items()))


def _period(ctx: _Ctx, value: Any, path: _Path) -> Period | None:
    example = "timeWindow: [{duration: 30d, isRolling: true}]"
    if not isinstance(value, list) or len(value) != 1:
        ctx.bad(path, f"timeWindow must be a list of exactly one window, got {_show(value)}", f"write {example}",
                "bad_time_window")
        return None
    p = path.i(0)
    tw = _mapping(ctx, value[0], p, ("duration", "isRolling", "calendar"),
                  {"duration": "add duration: 30d", "isRolling": "add isRolling: true (or false with a calendar)"})
    if tw is None or "duration" not in tw or "isRolling" not in tw:
        return None
    rolling = tw["isRolling"]
    if not isinstance(rolling, bool):
        ctx.bad(p.k("isRolling"), f"isRolling {_show(rolling)} is not a bool", "write isRolling: true or false",
                "not_a_bool")
        return None
    duration = tw["duration"]
    m = _DURATION.match(duration) if isinstance(duration, str) else None
    if m is None or int(m.group(1)) == 0:
        ctx.bad(p.k("duration"), f"duration {_show(duration)} is not valid",
                "write a positive whole number and a unit m, h, d, w (rolling) or d, w, M, Q, Y (calendar), e.g. 30d",
                "bad_duration")
        return None
    count, unit = int(m.group(1)), m.group(2)
    if rolling:
        if "calendar" in tw:
            ctx.bad(p.k("calendar"), "a rolling window has no calendar", "remove calendar, or set isRolling: false",
                    "bad_time_window")
        if unit in "MQY":
            ctx.bad(p.k("duration"), f"duration {duration!r} uses a calendar unit ({unit}) with isRolling: true "
                    "(a month is not 30 days: OpenSLO#267)",
                    "write a rolling duration in m, h, d or w (e.g. 30d), or set isRolling: false with a calendar",
                    "calendar_unit_on_rolling_window")
            return None
        return None if "calendar" in tw else Period(rolling_ns=parse_window_ns(duration))
    if "calendar" not in tw:
        ctx.bad(p.k("calendar"), "isRolling: false needs a calendar",
                'add calendar: {startTime: "2025-01-01 00:00:00", timeZone: UTC}, or set isRolling: true',
                "missing_key")
        return None
    cp = p.k("calendar")
    cal = _mapping(ctx, tw["calendar"], cp, ("startTime", "timeZone"),
                   {"startTime": 'add startTime: "2025-01-01 00:00:00" (local wall-clock time, no zone)',
                    "timeZone": "add timeZone: UTC (an IANA zone such as America/New_York)"})
    ok = cal is not None and "startTime" in cal and "timeZone" in cal
    if unit in "mh":
        ctx.bad(p.k("duration"), f"calendar periods step in d, w, M, Q or Y, not {unit}",
                "use e.g. 1d, 1w, 1M, 1Q or 1Y, or a rolling window", "bad_duration")
        ok = False
    if cal is not None and "startTime" in cal:
        start = cal["startTime"]
        try:
            if not isinstance(start, str):
                raise ValueError
            datetime.strptime(start, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            ctx.bad(cp.k("startTime"), f"startTime {_show(start)} is not YYYY-MM-DD HH:MM:SS",
                    'quote it and write e.g. "2025-01-01 00:00:00" (no zone; timeZone gives it one)', "bad_start_time")
            ok = False
    if cal is not None and "timeZone" in cal:
        tz = cal["timeZone"]
        try:
            if not isinstance(tz, str) or not tz:
                raise ValueError
            zoneinfo.ZoneInfo(tz)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            ctx.bad(cp.k("timeZone"), f"time zone {_show(tz)} is not an IANA time zone",
                    "use an IANA name such as UTC, Europe/Amsterdam or America/New_York", "bad_time_zone")
            ok = False
    if not ok or cal is None:
        return None
    return Period(calendar=Calendar(count=count, unit=unit, start=cal["startTime"], time_zone=cal["timeZone"]))


def _objective(ctx: _Ctx, spec: dict[str, Any], path: _Path, budgeting: str | None, period: Period | None
               ) -> tuple[dict[str, Any], Fraction, Fraction | None, int | None] | None:
    objs = spec["objectives"]
    if not isinstance(objs, list) or len(objs) != 1:
        ctx.bad(path, f"qfleet supports exactly one objective per SLO, got {_show(objs)}",
                "keep one objective (- target: 0.99) and split the others into their own SLOs", "bad_objectives")
        return None
    start = len(ctx.problems)
    p = path.i(0)
    obj = _mapping(ctx, objs[0], p, _OBJECTIVE_KEYS)
    if obj is None:
        return None
    for key in ("indicator", "indicatorRef", "compositeWeight"):
        if key in obj:
            ctx.bad(p.k(key), f"{key} (composite SLOs) is not supported",
                    "put the indicator in spec.indicator or spec.indicatorRef and keep one objective", "unsupported")
    if "displayName" in obj:
        _string(ctx, obj["displayName"], p.k("displayName"), "99 % of jobs succeed")
    target: Fraction | None = None
    if "target" in obj and "targetPercent" in obj:
        ctx.bad(p.k("targetPercent"), "both target and targetPercent are given",
                "keep one: target (a ratio, e.g. 0.999) or targetPercent (e.g. 99.9)", "target_and_percent")
    elif "target" in obj:
        t = _number(ctx, obj["target"], p.k("target"), "0.999")
        if t is not None and not 0 < t < 1:
            why = "leaves no error budget" if t == 1 else ("has no objective" if t == 0 else "is not a ratio")
            ctx.bad(p.k("target"), f"target {_dec(t)} is outside (0, 1): it {why} (OpenSLO range [0.0, 1.0))",
                    "use a ratio strictly between 0 and 1, e.g. 0.999 (or targetPercent: 99.9)", "target_out_of_range")
        elif t is not None:
            target = t
    elif "targetPercent" in obj:
        t = _number(ctx, obj["targetPercent"], p.k("targetPercent"), "99.9")
        if t is not None and not 0 < t < 100:
            why = "leaves no error budget" if t == 100 else ("has no objective" if t == 0 else "is not a percent")
            ctx.bad(p.k("targetPercent"), f"targetPercent {_dec(t)} is outside (0, 100): it {why}",
                    "use a percent strictly between 0 and 100, e.g. 99.9", "target_out_of_range")
        elif t is not None:
            target = t / 100
    else:
        ctx.bad(p.k("target"), "the objective has no target", "add target: 0.99 (a ratio) or targetPercent: 99",
                "missing_key")
    slice_target: Fraction | None = None
    slice_ns: int | None = None
    if "timeSliceTarget" in obj:
        st = _number(ctx, obj["timeSliceTarget"], p.k("timeSliceTarget"), "0.99")
        if st is not None and not 0 < st <= 1:
            ctx.bad(p.k("timeSliceTarget"), f"timeSliceTarget {_dec(st)} is outside (0, 1]",
                    "give the ratio a slice needs to count as good, e.g. 0.99", "bad_time_slice_target")
        else:
            slice_target = st
    if "timeSliceWindow" in obj:
        slice_ns = _window(ctx, obj["timeSliceWindow"], p.k("timeSliceWindow"), "1m")
        if slice_ns is not None and period is not None and slice_ns >= period.nominal_ns:
            ctx.bad(p.k("timeSliceWindow"), f"timeSliceWindow {obj['timeSliceWindow']} is not shorter than the period",
                    "use a slice much shorter than the period, e.g. 1m or 5m", "bad_time_slice_window")
    if budgeting == "Timeslices":
        for key, example in (("timeSliceTarget", "0.99"), ("timeSliceWindow", "1m")):
            if key not in obj:
                ctx.bad(p.k(key), f"budgetingMethod Timeslices needs {key}", f"add {key}: {example}", "missing_key")
    elif budgeting == "RatioTimeslices":
        if "timeSliceWindow" not in obj:
            ctx.bad(p.k("timeSliceWindow"), "budgetingMethod RatioTimeslices needs timeSliceWindow",
                    "add timeSliceWindow: 1m", "missing_key")
        if "timeSliceTarget" in obj:
            ctx.bad(p.k("timeSliceTarget"), "timeSliceTarget applies only to budgetingMethod Timeslices",
                    "remove it (RatioTimeslices averages the slice ratios) or use Timeslices", "unexpected")
    elif budgeting == "Occurrences":
        for key in ("timeSliceTarget", "timeSliceWindow"):
            if key in obj:
                ctx.bad(p.k(key), f"{key} applies only to the timeslice budgeting methods",
                        "remove it, or set budgetingMethod: Timeslices", "unexpected")
    if len(ctx.problems) != start or target is None:
        return None
    return obj, target, slice_target, slice_ns


def _extension(ctx: _Ctx, value: Any, path: _Path, base_dir: Path | None) -> dict[str, Any] | None:
    start = len(ctx.problems)
    ext = _mapping(ctx, value, path, _EXT_KEYS)
    if ext is None:
        return None
    out: dict[str, Any] = {}
    raw = ext.get("alertPolicy", DEFAULT_POLICY)
    pp = path.k("alertPolicy")
    policy: AlertPolicy | None = None
    if isinstance(raw, dict):
        policy = _parse_policy(ctx, raw, pp, inline=True)
    elif isinstance(raw, str) and raw in BUILTIN_POLICIES:
        policy = _builtin_policy(raw)
    elif isinstance(raw, str) and _looks_like_path(raw):
        file = Path(raw)
        if not file.is_absolute() and base_dir is not None:
            file = base_dir / file
        policy = _policy_file(ctx, file, pp)
    else:
        ctx.problems.append(_unknown_policy(pp, raw))
    out["policy"] = policy
    group_by: list[str] = []
    if "groupBy" in ext:
        gb = ext["groupBy"]
        if not isinstance(gb, list):
            ctx.bad(path.k("groupBy"), f"groupBy must be a list, got {_show(gb)}", "write groupBy: [hardware_type]",
                    "bad_group_by")
        else:
            for i, dim in enumerate(gb):
                if dim not in GROUP_BY_DIMENSIONS:
                    ctx.bad(path.k("groupBy").i(i), f"{_show(dim)} is not a dimension the store promotes",
                            f"use one of {', '.join(GROUP_BY_DIMENSIONS)}", "unknown_group_by")
                elif dim in group_by:
                    ctx.bad(path.k("groupBy").i(i), f"{dim!r} is listed twice", "list each dimension once",
                            "duplicate_group_by")
                else:
                    group_by.append(dim)
    out["group_by"] = tuple(group_by)
    min_events = ext.get("minEvents", 0)
    if isinstance(min_events, bool) or not isinstance(min_events, int) or min_events < 0:
        ctx.bad(path.k("minEvents"), f"minEvents {_show(min_events)} is not a whole number >= 0",
                "use 0 (no low-traffic guard, the Workbook default) or the events both windows must hold, e.g. 100",
                "bad_min_events")
    out["min_events"] = min_events
    out["runbook"] = _string(ctx, ext["runbook"], path.k("runbook"), "runbooks/F1-entanglement-loss.md") \
        if "runbook" in ext else None
    steps: list[BudgetStep] = []
    if "budgetPolicy" in ext:
        bp = ext["budgetPolicy"]
        if not isinstance(bp, list):
            ctx.bad(path.k("budgetPolicy"), f"budgetPolicy must be a list, got {_show(bp)}",
                    "write budgetPolicy: [{name: freeze, consumed: 0.5, consequence: ...}]", "bad_budget_policy")
            bp = []
        names: set[str] = set()
        for i, raw_step in enumerate(bp):
            sp = path.k("budgetPolicy").i(i)
            step = _mapping(ctx, raw_step, sp, ("name", "consumed", "consequence"),
                            {"name": "add name: freeze-rollouts", "consumed": "add consumed: 0.5 (half the budget)",
                             "consequence": "add consequence: <what happens, e.g. freeze rollouts>"})
            if step is None or any(k not in step for k in ("name", "consumed", "consequence")):
                continue
            name = _string(ctx, step["name"], sp.k("name"), "freeze-rollouts")
            if name is not None and name in names:
                ctx.bad(sp.k("name"), f"step name {name!r} is used twice", "give every step a distinct name",
                        "duplicate_step")
            names.add(name or "")
            consumed = _number(ctx, step["consumed"], sp.k("consumed"), "0.5")
            if consumed is not None and consumed <= 0:
                ctx.bad(sp.k("consumed"), f"consumed {_dec(consumed)} is not positive",
                        "give the fraction of the budget spent, e.g. 0.5 or 1", "bad_budget_policy")
            consequence = _string(ctx, step["consequence"], sp.k("consequence"), "freeze rollouts")
            if name is not None and consumed is not None and consumed > 0 and consequence is not None:
                steps.append(BudgetStep(name=name, consumed_fraction=consumed, consequence=consequence))
    out["budget_policy"] = tuple(steps)
    return out if len(ctx.problems) == start else None


def _parse_slo(ctx: _Ctx, doc: dict[str, Any], obj: str, slis: Mapping[str, _Draft | None],
               base_dir: Path | None) -> SLO | None:
    start = len(ctx.problems)
    root = _Path(obj)
    md = _metadata(ctx, doc.get("metadata"), root.k("metadata")) if "metadata" in doc else None
    sp = root.k("spec")
    if "spec" not in doc:
        ctx.bad(sp, "the SLO has no spec", "add spec: {service, indicator, timeWindow, budgetingMethod, objectives}",
                "missing_key")
        return None
    spec = _mapping(ctx, doc["spec"], sp, _SLO_SPEC_KEYS, {
        "service": "add service: <the service this SLO belongs to>",
        "timeWindow": "add timeWindow: [{duration: 30d, isRolling: true}]",
        "budgetingMethod": "add budgetingMethod: Occurrences (or Timeslices, RatioTimeslices)",
        "objectives": "add objectives: [{target: 0.99}]",
    })
    if spec is None:
        return None
    if "description" in spec:
        _string(ctx, spec["description"], sp.k("description"), "Jobs that succeed", max_len=1050)
    service = _string(ctx, spec["service"], sp.k("service"), "job-execution") if "service" in spec else None
    if "alertPolicies" in spec:
        ctx.warn(sp.k("alertPolicies"), "OpenSLO alertPolicies are ignored: qfleet alerts on window pairs",
                 f'set spec."{EXTENSION_KEY}".alertPolicy instead', "ignored")
    budgeting = spec.get("budgetingMethod")
    if "budgetingMethod" in spec and budgeting not in _BUDGETING:
        ctx.bad(sp.k("budgetingMethod"), f"budgetingMethod {_show(budgeting)} is not an OpenSLO method",
                f"use one of {', '.join(_BUDGETING)}", "bad_budgeting_method")
        budgeting = None
    period = _period(ctx, spec["timeWindow"], sp.k("timeWindow")) if "timeWindow" in spec else None
    objective = _objective(ctx, spec, sp.k("objectives"), budgeting, period) if "objectives" in spec else None
    draft: _Draft | None = None
    if ("indicator" in spec) == ("indicatorRef" in spec):
        ctx.bad(sp.k("indicator"), "give exactly one of indicator and indicatorRef",
                "inline indicator: {metadata: {name}, spec: {ratioMetric | thresholdMetric}}, or indicatorRef: "
                "<name of a kind: SLI document in this file>", "bad_indicator")
    elif "indicator" in spec:
        ip = sp.k("indicator")
        ind = _mapping(ctx, spec["indicator"], ip, ("metadata", "spec"),
                       {"metadata": "add metadata: {name: <RFC 1123 name>}",
                        "spec": "add spec: {ratioMetric: ...} or {thresholdMetric: ...}"})
        if ind is not None and "metadata" in ind:
            _metadata(ctx, ind["metadata"], ip.k("metadata"))
        if ind is not None and "spec" in ind:
            draft = _parse_sli_spec(ctx, ind["spec"], ip.k("spec"))
    else:
        ref = spec["indicatorRef"]
        if not isinstance(ref, str) or ref not in slis:
            known = ", ".join(sorted(slis)) or "none in this file"
            ctx.bad(sp.k("indicatorRef"), f"indicatorRef {_show(ref)} names no kind: SLI document (found: {known})",
                    "add a kind: SLI document with that metadata.name, or inline the indicator", "unknown_indicator")
        else:
            draft = slis[ref]
            if draft is None:
                ctx.bad(sp.k("indicatorRef"), f"SLI {ref!r} has problems (listed under slis/{ref})",
                        f"fix slis/{ref}", "invalid_indicator")
    raw_ext = spec.get(EXTENSION_KEY)
    ext = _extension(ctx, {} if raw_ext is None else raw_ext, sp.k(EXTENSION_KEY), base_dir)
    indicator: Indicator | None = None
    if draft is not None and objective is not None:
        op_path = sp.k("objectives").i(0).k("op")
        indicator = _bind(ctx, draft, objective[0], op_path, sp.k("objectives").i(0).k("value"))
    if len(ctx.problems) != start or md is None or indicator is None or objective is None or ext is None:
        return None
    assert service is not None and period is not None and budgeting is not None
    _, target, slice_target, slice_ns = objective
    return SLO(name=md["name"], service=service, target=target, period=period, budgeting=budgeting,
               indicator=indicator, policy=ext["policy"], time_slice_target=slice_target, time_slice_ns=slice_ns,
               group_by=ext["group_by"], min_events=ext["min_events"], budget_policy=ext["budget_policy"],
               runbook=ext["runbook"], description=spec.get("description", ""),
               display_name=md.get("displayName", ""), labels=_labels(md))


def slos_from_documents(docs: Iterable[Any], *, source: str | Path = "<documents>",
                        base_dir: Path | None = None) -> Validation:
    """Validate already-loaded OpenSLO documents (dicts) and build the SLOs.

    Floats loaded by another YAML loader are read through their shortest ``repr`` (what was typed, in practice);
    :func:`validate_file` keeps the exact text.

    Args:
        docs: the documents, in file order.
        source: where they came from, for messages.
        base_dir: where relative policy paths resolve (default: the directory of ``source``).

    Returns:
        A :class:`Validation`; never raises for content problems.

    >>> doc = {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "jobs"}, "spec": {
    ...     "service": "fleet", "budgetingMethod": "Occurrences", "objectives": [{"target": 0.999}],
    ...     "timeWindow": [{"duration": "28d", "isRolling": True}],
    ...     "indicator": {"metadata": {"name": "jobs"}, "spec": {"ratioMetric": {
    ...         "good": {"metricSource": {"type": "qfleet", "spec": {"metric": "qfleet_jobs_total",
    ...                                                               "match": {"qfleet.outcome": "success"}}}},
    ...         "total": {"metricSource": {"type": "qfleet", "spec": {"metric": "qfleet_jobs_total"}}}}}}}}
    >>> v = slos_from_documents([doc])
    >>> v.ok, v.slos[0].target, v.slos[0].policy.name
    (True, Fraction(999, 1000), 'sre_workbook_30d')
    """
    source = str(source)
    if base_dir is None and source and not source.startswith("<"):
        base_dir = Path(source).parent
    ctx = _Ctx()
    slis: dict[str, _Draft | None] = {}
    slo_docs: list[tuple[dict[str, Any], str, bool]] = []  # (doc, object path, envelope ok)
    seen: set[str] = set()
    docs = list(docs)
    if not docs:
        ctx.bad(source, "no documents", f"add at least one apiVersion: {_API_VERSION}, kind: SLO document", "empty")
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            ctx.bad(f"documents[{i}]", f"a document must be a mapping, got {_show(doc)}",
                    f"start each document with apiVersion: {_API_VERSION} and kind: SLO", "not_a_mapping")
            continue
        kind = doc.get("kind")
        md = doc.get("metadata")
        name = md.get("name") if isinstance(md, dict) else None
        plural = {"SLO": "slos", "SLI": "slis"}.get(kind) if isinstance(kind, str) else None
        obj = f"{plural}/{name}" if plural and isinstance(name, str) and name else f"documents[{i}]"
        here = _Path(obj)
        start = len(ctx.problems)
        if doc.get("apiVersion") != _API_VERSION:
            ctx.bad(here.k("apiVersion"), f"apiVersion {_show(doc.get('apiVersion'))} is not supported",
                    f"write apiVersion: {_API_VERSION}", "wrong_api_version")
        if kind in _IGNORED_KINDS:
            ctx.warn(here.k("kind"), f"kind {kind} is ignored: qfleet reads SLO and SLI documents",
                     f'remove it, or express alerting in spec."{EXTENSION_KEY}".alertPolicy', "ignored")
            continue
        if plural is None:
            ctx.bad(here.k("kind"), f"kind {_show(kind)} is not supported",
                    f"use kind: SLO (or SLI for an indicatorRef; {', '.join(_IGNORED_KINDS)} are ignored)",
                    "wrong_kind")
            continue
        _mapping(ctx, doc, here, ("apiVersion", "kind", "metadata", "spec"),
                 {"metadata": f"add metadata: {{name: <RFC 1123 name>}}; {_NAME_FIX}"})
        if obj in seen:
            ctx.bad(here.k("metadata").k("name"), f"{kind} name {name!r} is used twice",
                    f"give every {kind} a distinct metadata.name", "duplicate_name")
        seen.add(obj)
        if kind == "SLO":
            slo_docs.append((doc, obj, len(ctx.problems) == start))
            continue
        if "metadata" in doc:
            _metadata(ctx, doc["metadata"], here.k("metadata"))
        draft = None
        if "spec" not in doc:
            ctx.bad(here.k("spec"), "the SLI has no spec", "add spec: {ratioMetric: ...} or {thresholdMetric: ...}",
                    "missing_key")
        else:
            draft = _parse_sli_spec(ctx, doc["spec"], here.k("spec"))
        if isinstance(name, str) and name not in slis:
            slis[name] = draft if len(ctx.problems) == start else None
    slos: list[SLO] = []
    for doc, obj, envelope_ok in slo_docs:
        slo = _parse_slo(ctx, doc, obj, slis, base_dir)  # parsed even after envelope problems, to report them all
        if slo is None or not envelope_ok:
            continue
        slos.append(slo)
        for pair in unfireable(slo):
            thr = pair.threshold(slo.period.nominal_ns)
            ctx.warn(_Path(obj, f'spec."{EXTENSION_KEY}".alertPolicy'),
                     f"pair {pair.name} of {slo.policy.name} can never fire: its threshold {_dec(thr)} is at "
                     f"least the largest possible burn 1/B = {_dec(1 / slo.error_budget)} (sre.md §9)",
                     f"raise the target above 1 - 1/{_dec(thr)} = {_dec(1 - 1 / thr)}, or use a policy without "
                     "this pair", f"unfireable_condition:{pair.name}")
    return Validation(tuple(slos), tuple(dict.fromkeys(ctx.problems)), tuple(dict.fromkeys(ctx.warnings)), source)


def validate_file(path: str | Path) -> Validation:
    """Validate one spec file (every document in it).

    Raises:
        OSError: the file cannot be read. Content problems never raise: they are in ``problems``.

    >>> v = validate_file(builtin_specs_path())
    >>> v.ok, len(v.slos)
    (True, 8)
    """
    path = Path(path)
    return validate_text(path.read_text(encoding="utf-8"), source=str(path), base_dir=path.parent)


def validate_text(text: str, *, source: str = "<text>", base_dir: Path | None = None) -> Validation:
    """Validate spec YAML given as text (numbers keep their exact decimal text).

    Args:
        text: one or more YAML documents.
        source: where the text came from, for messages.
        base_dir: where relative policy paths resolve (default: the directory of ``source`` when it is a path,
            else the working directory).

    >>> validate_text("{apiVersion: openslo/v1, kind: Service, metadata: {name: fleet}}").warnings[0].code
    'ignored'
    """
    docs, problems = _load_yaml(text, source)
    if problems:
        return Validation((), tuple(problems), (), source)
    return slos_from_documents(docs, source=source, base_dir=base_dir)


def load_slos(path: str | Path) -> tuple[SLO, ...]:
    """The SLOs of a spec file; warnings (e.g. unfireable pairs) are logged.

    Raises:
        SpecError: with every problem of the file at once.
        OSError: the file cannot be read.

    >>> [s.name for s in load_slos(builtin_specs_path())][:2]
    ['entanglement-success', 'job-success']
    """
    v = validate_file(path)
    if not v.ok:
        raise SpecError(v.problems, source=str(path))
    for w in v.warnings:
        logger.warning("%s: %s (fix: %s)", w.path, w.message, w.fix, extra={"spec": str(path), "code": w.code})
    return v.slos
