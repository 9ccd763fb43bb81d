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

- ``timeWindow``: a list of exactly one item: ``{duration: <duration>, isRolling: true}``, a Prometheus duration in
  whole minutes (``30d``, ``4w``, ``12h``; :func:`qfleet.units.parse_duration`), or ``{duration: Nd|Nw|NM|NQ|NY,
  isRolling: false, calendar: {startTime: "YYYY-MM-DD HH:MM:SS", timeZone: <IANA>}}``; ``M``, ``Q`` and ``Y`` are
  calendar units only (a month is not 30 days: OpenSLO#267).
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
all of a file's problems are reported together, as :class:`qfleet.problems.Problem` values.

This module holds the entry points; the parts of a spec are read by :mod:`~qfleet.slo.spec_fields` (YAML, paths,
checked readers), :mod:`~qfleet.slo.spec_indicators`, :mod:`~qfleet.slo.spec_objectives` (metadata, time windows,
objectives) and :mod:`~qfleet.slo.spec_extension` (``qfleet.dev/v1`` and alert policies).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from qfleet.problems import Problem, Problems
from qfleet.slo.model import SLO, Indicator, Pair
from qfleet.slo.spec_extension import (
    BUILTIN_POLICIES,
    DEFAULT_POLICY,
    GROUP_BY_DIMENSIONS,
    load_policy,
    parse_extension,
)
from qfleet.slo.spec_fields import (
    FieldPath,
    SpecError,
    decimal_text,
    load_yaml,
    read_mapping,
    read_string,
    show,
)
from qfleet.slo.spec_indicators import Draft, bind, parse_sli_spec
from qfleet.slo.spec_objectives import NAME_FIX, labels, parse_metadata, parse_objective, parse_period

__all__ = [
    "BUILTIN_POLICIES",
    "DEFAULT_POLICY",
    "EXTENSION_KEY",
    "GROUP_BY_DIMENSIONS",
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

_HERE = Path(__file__).resolve().parent
_API_VERSION = "openslo/v1"
_IGNORED_KINDS = ("AlertPolicy", "AlertCondition", "AlertNotificationTarget", "Service", "DataSource")
_BUDGETING = ("Occurrences", "Timeslices", "RatioTimeslices")
_Budgeting = Literal["Occurrences", "Timeslices", "RatioTimeslices"]
_SLO_SPEC_KEYS = ("description", "service", "indicator", "indicatorRef", "timeWindow", "budgetingMethod",
                  "objectives", "alertPolicies", EXTENSION_KEY)
_SLO_SPEC_REQUIRED = {
    "service": "add service: <the service this SLO belongs to>",
    "timeWindow": "add timeWindow: [{duration: 30d, isRolling: true}]",
    "budgetingMethod": "add budgetingMethod: Occurrences (or Timeslices, RatioTimeslices)",
    "objectives": "add objectives: [{target: 0.99}]",
}


# ---------------------------------------------------------------------------------------------------------------
# Public values


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

    >>> from fractions import Fraction
    >>> from qfleet.slo.model import MetricRatioIndicator, Period
    >>> from qfleet.units import NS
    >>> ind = MetricRatioIndicator(metric="m_total", good_match=(("ok", "1"),))
    >>> s = SLO(name="x", service="s", target=Fraction(93, 100), period=Period(30 * 86400 * NS),
    ...         budgeting="Occurrences", indicator=ind, policy=load_policy("sre_workbook_30d"))
    >>> [p.name for p in unfireable(s)]
    ['page_fast']
    """
    max_burn = 1 / slo.error_budget
    return [p for p in slo.policy.pairs if p.threshold(slo.period.nominal_ns) >= max_burn]


# ---------------------------------------------------------------------------------------------------------------
# Entry points


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
    found = Problems(source=source)
    docs = list(docs)
    if not docs:
        found.add(source, "no documents", f"add at least one apiVersion: {_API_VERSION}, kind: SLO document", "empty")
    slis, slo_docs = _read_documents(found, docs)
    slos: list[SLO] = []
    for doc in slo_docs:
        slo = _parse_slo(found, doc.body, doc.obj, slis, base_dir)  # parsed even after envelope problems too
        if slo is not None and doc.envelope_ok:
            slos.append(slo)
            _warn_unfireable(found, slo, doc.obj)
    return Validation(tuple(slos), tuple(dict.fromkeys(found.items)), tuple(dict.fromkeys(found.warnings)), source)


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
    docs, problems = load_yaml(text, source)
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
        raise SpecError(v.problems, source=str(path), warnings=v.warnings)
    for w in v.warnings:
        logger.warning("%s: %s (fix: %s)", w.path, w.message, w.fix, extra={"spec": str(path), "code": w.code})
    return v.slos


# ---------------------------------------------------------------------------------------------------------------
# Documents: the envelope, SLIs, SLOs


class _SloDoc(NamedTuple):
    body: dict[str, Any]
    obj: str  # the object's path, e.g. slos/job-success
    envelope_ok: bool


class _Envelope(NamedTuple):
    kind: str
    name: Any
    obj: str
    start: int  # problems recorded before this document


def _read_documents(found: Problems, docs: list[Any]) -> tuple[dict[str, Draft | None], list[_SloDoc]]:
    """Check every document's envelope and read the SLIs; the SLO documents are parsed after (SLIs may follow)."""
    slis: dict[str, Draft | None] = {}
    slo_docs: list[_SloDoc] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        env = _envelope(found, doc, i, seen)
        if env is None:
            continue
        if env.kind == "SLO":
            slo_docs.append(_SloDoc(doc, env.obj, len(found) == env.start))
            continue
        draft = _sli_document(found, doc, FieldPath(env.obj))
        if isinstance(env.name, str) and env.name not in slis:
            slis[env.name] = draft if len(found) == env.start else None
    return slis, slo_docs


def _object_path(doc: dict[str, Any], index: int) -> tuple[Any, Any, str | None, str]:
    """``(kind, name, plural, object path)``: ``slos/<name>`` or ``slis/<name>``, else ``documents[<index>]``."""
    kind = doc.get("kind")
    md = doc.get("metadata")
    name = md.get("name") if isinstance(md, dict) else None
    plural = {"SLO": "slos", "SLI": "slis"}.get(kind) if isinstance(kind, str) else None
    named = plural is not None and isinstance(name, str) and bool(name)
    return kind, name, plural, f"{plural}/{name}" if named else f"documents[{index}]"


def _envelope(found: Problems, doc: Any, index: int, seen: set[str]) -> _Envelope | None:
    """Check ``apiVersion``, ``kind`` and the envelope keys; None for a document that is not read further."""
    if not isinstance(doc, dict):
        found.add(f"documents[{index}]", f"a document must be a mapping, got {show(doc)}",
                  f"start each document with apiVersion: {_API_VERSION} and kind: SLO", "not_a_mapping")
        return None
    kind, name, plural, obj = _object_path(doc, index)
    here, start = FieldPath(obj), len(found)
    if doc.get("apiVersion") != _API_VERSION:
        found.add(here.k("apiVersion"), f"apiVersion {show(doc.get('apiVersion'))} is not supported",
                  f"write apiVersion: {_API_VERSION}", "wrong_api_version")
    if kind in _IGNORED_KINDS:
        found.warn(here.k("kind"), f"kind {kind} is ignored: qfleet reads SLO and SLI documents",
                   f'remove it, or express alerting in spec."{EXTENSION_KEY}".alertPolicy', "ignored")
        return None
    if plural is None:
        found.add(here.k("kind"), f"kind {show(kind)} is not supported",
                  f"use kind: SLO (or SLI for an indicatorRef; {', '.join(_IGNORED_KINDS)} are ignored)", "wrong_kind")
        return None
    read_mapping(found, doc, here, ("apiVersion", "kind", "metadata", "spec"),
                 {"metadata": f"add metadata: {{name: <RFC 1123 name>}}; {NAME_FIX}"})
    if obj in seen:
        found.add(here.k("metadata").k("name"), f"{kind} name {name!r} is used twice",
                  f"give every {kind} a distinct metadata.name", "duplicate_name")
    seen.add(obj)
    return _Envelope(kind, name, obj, start)


def _sli_document(found: Problems, doc: dict[str, Any], here: FieldPath) -> Draft | None:
    if "metadata" in doc:
        parse_metadata(found, doc["metadata"], here.k("metadata"))
    if "spec" not in doc:
        found.add(here.k("spec"), "the SLI has no spec", "add spec: {ratioMetric: ...} or {thresholdMetric: ...}",
                  "missing_key")
        return None
    return parse_sli_spec(found, doc["spec"], here.k("spec"))


def _warn_unfireable(found: Problems, slo: SLO, obj: str) -> None:
    for pair in unfireable(slo):
        thr = pair.threshold(slo.period.nominal_ns)
        found.warn(FieldPath(obj, f'spec."{EXTENSION_KEY}".alertPolicy'),
                   f"pair {pair.name} of {slo.policy.name} can never fire: its threshold {decimal_text(thr)} is at "
                   f"least the largest possible burn 1/B = {decimal_text(1 / slo.error_budget)} (sre.md §9)",
                   f"raise the target above 1 - 1/{decimal_text(thr)} = {decimal_text(1 - 1 / thr)}, or use a policy "
                   "without this pair", f"unfireable_condition:{pair.name}")


def _parse_slo(found: Problems, doc: dict[str, Any], obj: str, slis: Mapping[str, Draft | None],
               base_dir: Path | None) -> SLO | None:
    start = len(found)
    root = FieldPath(obj)
    md = parse_metadata(found, doc["metadata"], root.k("metadata")) if "metadata" in doc else None
    sp = root.k("spec")
    if "spec" not in doc:
        found.add(sp, "the SLO has no spec",
                  "add spec: {service, indicator, timeWindow, budgetingMethod, objectives}", "missing_key")
        return None
    spec = read_mapping(found, doc["spec"], sp, _SLO_SPEC_KEYS, _SLO_SPEC_REQUIRED)
    if spec is None:
        return None
    return _slo_from_spec(found, start, spec, sp, md, slis, base_dir)


def _slo_from_spec(found: Problems, start: int, spec: dict[str, Any], sp: FieldPath, md: dict[str, Any] | None,
                   slis: Mapping[str, Draft | None], base_dir: Path | None) -> SLO | None:
    """The SLO of a spec mapping, read whole to report every problem; None if anything was wrong in the document
    (a problem recorded since ``start``) or is missing."""
    service = _service(found, spec, sp)
    budgeting = _budgeting(found, spec, sp)
    period = parse_period(found, spec["timeWindow"], sp.k("timeWindow")) if "timeWindow" in spec else None
    objective = (parse_objective(found, spec["objectives"], sp.k("objectives"), budgeting, period)
                 if "objectives" in spec else None)
    draft = _indicator_draft(found, spec, sp, slis)
    raw_ext = spec.get(EXTENSION_KEY)
    ext = parse_extension(found, {} if raw_ext is None else raw_ext, sp.k(EXTENSION_KEY), base_dir)
    if draft is None or objective is None:
        return None
    op = sp.k("objectives").i(0)
    indicator: Indicator | None = bind(found, draft, objective.raw, op.k("op"), op.k("value"))
    if len(found) != start or md is None or service is None or budgeting is None or period is None \
            or indicator is None or ext is None:
        return None
    return SLO(name=md["name"], service=service, target=objective.target, period=period, budgeting=budgeting,
               indicator=indicator, policy=ext.policy, time_slice_target=objective.slice_target,
               time_slice_ns=objective.slice_ns, group_by=ext.group_by, min_events=ext.min_events,
               budget_policy=ext.budget_policy, runbook=ext.runbook, description=spec.get("description", ""),
               display_name=md.get("displayName", ""), labels=labels(md))


def _service(found: Problems, spec: dict[str, Any], sp: FieldPath) -> str | None:
    """``service`` (and the free-text ``description``; OpenSLO ``alertPolicies`` are ignored with a warning)."""
    if "description" in spec:
        read_string(found, spec["description"], sp.k("description"), "Jobs that succeed", max_len=1050)
    if "alertPolicies" in spec:
        found.warn(sp.k("alertPolicies"), "OpenSLO alertPolicies are ignored: qfleet alerts on window pairs",
                   f'set spec."{EXTENSION_KEY}".alertPolicy instead', "ignored")
    return read_string(found, spec["service"], sp.k("service"), "job-execution") if "service" in spec else None


def _budgeting(found: Problems, spec: dict[str, Any], sp: FieldPath) -> _Budgeting | None:
    budgeting = spec.get("budgetingMethod")
    if "budgetingMethod" in spec and budgeting not in _BUDGETING:
        found.add(sp.k("budgetingMethod"), f"budgetingMethod {show(budgeting)} is not an OpenSLO method",
                  f"use one of {', '.join(_BUDGETING)}", "bad_budgeting_method")
        return None
    return cast(_Budgeting | None, budgeting)


def _indicator_draft(found: Problems, spec: dict[str, Any], sp: FieldPath,
                     slis: Mapping[str, Draft | None]) -> Draft | None:
    """``indicator`` (inline) or ``indicatorRef`` (a ``kind: SLI`` document), exactly one."""
    if ("indicator" in spec) == ("indicatorRef" in spec):
        found.add(sp.k("indicator"), "give exactly one of indicator and indicatorRef",
                  "inline indicator: {metadata: {name}, spec: {ratioMetric | thresholdMetric}}, or indicatorRef: "
                  "<name of a kind: SLI document in this file>", "bad_indicator")
        return None
    if "indicator" in spec:
        ip = sp.k("indicator")
        ind = read_mapping(found, spec["indicator"], ip, ("metadata", "spec"),
                           {"metadata": "add metadata: {name: <RFC 1123 name>}",
                            "spec": "add spec: {ratioMetric: ...} or {thresholdMetric: ...}"})
        if ind is not None and "metadata" in ind:
            parse_metadata(found, ind["metadata"], ip.k("metadata"))
        return parse_sli_spec(found, ind["spec"], ip.k("spec")) if ind is not None and "spec" in ind else None
    return _indicator_ref(found, spec["indicatorRef"], sp.k("indicatorRef"), slis)


def _indicator_ref(found: Problems, ref: Any, path: FieldPath, slis: Mapping[str, Draft | None]) -> Draft | None:
    if not isinstance(ref, str) or ref not in slis:
        known = ", ".join(sorted(slis)) or "none in this file"
        found.add(path, f"indicatorRef {show(ref)} names no kind: SLI document (found: {known})",
                  "add a kind: SLI document with that metadata.name, or inline the indicator", "unknown_indicator")
        return None
    draft = slis[ref]
    if draft is None:
        found.add(path, f"SLI {ref!r} has problems (listed under slis/{ref})", f"fix slis/{ref}", "invalid_indicator")
    return draft
