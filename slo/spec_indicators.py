"""SLO spec indicators: ``ratioMetric`` and ``thresholdMetric`` over qfleet's store, and their binding to the
objective's ``op`` and ``value`` (see :mod:`qfleet.slo.spec` for the file format).

An indicator is read in two steps, because an OpenSLO threshold lives in the objective, not in the SLI: the
SLI becomes a :class:`Draft` (a finished ratio indicator, or a threshold source), and :func:`bind` combines a
draft with the objective into a :data:`~qfleet.slo.model.Indicator`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, NamedTuple, cast

from qfleet.problems import Problems
from qfleet.slo.model import (
    GaugeThresholdIndicator,
    HistogramIndicator,
    Indicator,
    MetricRatioIndicator,
    SpanRatioIndicator,
    SpanThresholdIndicator,
)
from qfleet.slo.spec_fields import (
    FieldPath,
    decimal_text,
    read_mapping,
    read_number,
    read_string,
    show,
)
from qfleet.slo.spec_fields import read_matchers as _read_matchers
from qfleet.slo.truth import truth_fix, truth_reference

__all__ = ["Draft", "bind", "parse_sli_spec"]

_OPS = ("lte", "lt", "gte", "gt")
_PROM_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_SOURCE_KEYS = ("metricSource",)
_METRIC_SOURCE_KEYS = ("type", "spec", "metricSourceRef")
_Op = Literal["lte", "lt", "gte", "gt"]


@dataclass(frozen=True, slots=True)
class Draft:
    """An SLI before the objective supplies op and value: a ready ratio indicator or a threshold source."""

    kind: Literal["ratio", "spans", "histogram", "gauge"]
    indicator: Indicator | None = None
    fields: tuple[tuple[str, Any], ...] = ()


class _Leaf(NamedTuple):
    """One side (good, bad or total) of a ratio: which source it reads, its spec and where that is."""

    kind: str
    spec: dict[str, Any]
    path: FieldPath


def parse_sli_spec(found: Problems, value: Any, path: FieldPath) -> Draft | None:
    """An SLI ``spec`` (``ratioMetric`` or ``thresholdMetric``) as a :class:`Draft`."""
    spec = read_mapping(found, value, path, ("description", "thresholdMetric", "ratioMetric"))
    if spec is None:
        return None
    if "description" in spec:
        read_string(found, spec["description"], path.k("description"), "Jobs that succeed", max_len=1050)
    if ("thresholdMetric" in spec) == ("ratioMetric" in spec):
        found.add(path, "give exactly one of ratioMetric and thresholdMetric",
                  "ratioMetric: {good, total} counts good events; thresholdMetric: {metricSource} compares a value "
                  "with objectives[0].op/value", "bad_indicator")
        return None
    if "ratioMetric" in spec:
        rm = spec["ratioMetric"]
        if not isinstance(rm, dict):
            found.add(path.k("ratioMetric"), f"expected a mapping, got {show(rm)}",
                      "write ratioMetric: {good, total}", "not_a_mapping")
            return None
        return _parse_ratio(found, rm, path.k("ratioMetric"))
    return _parse_threshold(found, spec["thresholdMetric"], path.k("thresholdMetric"))


# ---------------------------------------------------------------------------------------------------------------
# Metric sources


def _source_spec(found: Problems, value: Any, path: FieldPath) -> tuple[dict[str, Any], FieldPath] | None:
    leaf = read_mapping(found, value, path, _SOURCE_KEYS,
                        {"metricSource": "add metricSource: {type: qfleet, spec: {...}}"})
    if leaf is None or "metricSource" not in leaf:
        return None
    mp = path.k("metricSource")
    ms = read_mapping(found, leaf["metricSource"], mp, _METRIC_SOURCE_KEYS,
                      {"type": "add type: qfleet", "spec": "add spec: {metric: ...} (or spans, histogram, gauge)"})
    if ms is None:
        return None
    if "metricSourceRef" in ms:
        found.add(mp.k("metricSourceRef"), "metricSourceRef (an OpenSLO DataSource) is not supported",
                  "drop metricSourceRef and write type: qfleet: qfleet reads its own store", "unsupported")
    if "type" in ms and ms["type"] != "qfleet":
        found.add(mp.k("type"), f"metric source type {show(ms['type'])} is not supported",
                  "write type: qfleet (sources read qfleet's store)", "bad_source_type")
    if "spec" not in ms or not isinstance(ms["spec"], dict):
        if "spec" in ms:
            found.add(mp.k("spec"), f"expected a mapping, got {show(ms['spec'])}", "write spec: {metric: ...}",
                      "not_a_mapping")
        return None
    return ms["spec"], mp.k("spec")


def _one_of(found: Problems, spec: dict[str, Any], path: FieldPath, choices: Sequence[str],
            example: str) -> str | None:
    given = [c for c in choices if c in spec]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        found.add(path, f"give exactly one of {', '.join(choices)} (found {what})", f"e.g. {example}", "bad_source")
        return None
    return given[0]


def _measured(found: Problems, name: str | None, path: FieldPath) -> str | None:
    """``name`` unless it is ground truth (``qfleet_truth_*``, ``qfleet.truth.*``, ``qfleet.fault``): an SLO reads
    only what the fleet measures."""
    if name is not None and truth_reference(name):
        found.add(path, f"{name!r} is simulator ground truth, not a measured signal", truth_fix(name), "truth_reference")
        return None
    return name


def _name(found: Problems, value: Any, path: FieldPath, example: str) -> str | None:
    """A span or attribute name that is not ground truth."""
    return _measured(found, read_string(found, value, path, example), path)


def read_matchers(found: Problems, value: Any, path: FieldPath, *,
                  strings: bool) -> tuple[tuple[str, Any], ...] | None:
    """:func:`~qfleet.slo.spec_fields.read_matchers`, refusing matchers on ground-truth labels."""
    got = _read_matchers(found, value, path, strings=strings)
    if got is None:
        return None
    bad = [k for k, _v in got if truth_reference(k)]
    for k in bad:
        _measured(found, k, path.k(k))
    return None if bad else got


def _metric_name(found: Problems, value: Any, path: FieldPath, example: str) -> str | None:
    name = _measured(found, read_string(found, value, path, example), path)
    if name is not None and not _PROM_NAME.match(name):
        found.add(path, f"metric name {name!r} is not a Prometheus metric name",
                  f"use the stored Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*), e.g. {example}", "bad_metric_name")
        return None
    return name


# ---------------------------------------------------------------------------------------------------------------
# ratioMetric


def _ratio_leaf(found: Problems, value: Any, path: FieldPath, role: str) -> _Leaf | None:
    got = _source_spec(found, value, path)
    if got is None:
        return None
    spec, sp = got
    kind = _one_of(found, spec, sp, ("spans", "metric"), "{metric: qfleet_jobs_total, match: {...}} or {spans: job}")
    if kind is None:
        return None
    if kind == "spans":
        read_mapping(found, spec, sp, ("spans", "where") if role == "total" else ("spans", "where", "status"))
    else:
        read_mapping(found, spec, sp, ("metric", "match"))
    return _Leaf(kind, spec, sp)


def _ratio_envelope(found: Problems, rm: dict[str, Any], path: FieldPath) -> str | None:
    """Check the ratioMetric's own keys; the role of the part besides total (``good`` or ``bad``)."""
    read_mapping(found, rm, path, ("counter", "good", "bad", "total", "rawType", "raw"),
                 {"total": "add total: {metricSource: {type: qfleet, spec: {...}}}"})
    for key in ("rawType", "raw"):
        if key in rm:
            found.add(path.k(key), f"{key} (a precomputed ratio) is not supported",
                      "count events instead: give good (or bad) and total", "unsupported")
    if "counter" in rm and not isinstance(rm["counter"], bool):
        found.add(path.k("counter"), f"counter {show(rm['counter'])} is not a bool", "write counter: true",
                  "not_a_bool")
    if ("good" in rm) == ("bad" in rm):
        found.add(path, "give exactly one of good and bad (besides total)",
                  "add good: {metricSource: ...} (or bad: for spans)", "bad_ratio")
        return None
    return "good" if "good" in rm else "bad"


def _parse_ratio(found: Problems, rm: dict[str, Any], path: FieldPath) -> Draft | None:
    start = len(found)
    role = _ratio_envelope(found, rm, path)
    if role is None:
        return None
    part = _ratio_leaf(found, rm[role], path.k(role), role)
    total = _ratio_leaf(found, rm["total"], path.k("total"), "total") if "total" in rm else None
    if part is None or total is None or len(found) != start:
        return None
    if part.kind != total.kind:
        found.add(part.path, f"{role} reads {part.kind} but total reads {total.kind}",
                  f"make {role} and total read the same source", "ratio_mismatch")
        return None
    if part.kind == "spans":
        return _span_ratio(found, role, part, total)
    if role == "bad":
        found.add(path.k("bad"), "bad/total is not supported for counters (a label matcher cannot select every "
                  "other value)", "write good: with the good label value, e.g. match: {qfleet.outcome: success}",
                  "unsupported")
        return None
    return _metric_ratio(found, part, total)


def _span_ratio(found: Problems, role: str, part: _Leaf, total: _Leaf) -> Draft | None:
    start = len(found)
    pspec, pp, tspec, tp = part.spec, part.path, total.spec, total.path
    span = _name(found, tspec["spans"], tp.k("spans"), "job")
    twhere = read_matchers(found, tspec.get("where"), tp.k("where"), strings=False)
    pwhere = read_matchers(found, pspec.get("where"), pp.k("where"), strings=False)
    want = "ok" if role == "good" else "error"
    if pspec["spans"] != tspec["spans"]:
        found.add(pp.k("spans"), f"{role} counts spans {show(pspec['spans'])} but total counts "
                  f"{show(tspec['spans'])}", f"use spans: {show(tspec['spans'])} in {role} too", "ratio_mismatch")
    if twhere is not None and pwhere is not None and pwhere != twhere:
        found.add(pp.k("where"), f"{role}'s where differs from total's",
                  f"repeat total's where in {role}; {role} may only add status: {want} (good = status not ERROR)",
                  "ratio_mismatch")
    if "status" in pspec and pspec["status"] != want:
        found.add(pp.k("status"), f"status {show(pspec['status'])} is not supported for {role}",
                  f"write status: {want} or leave it out ({role} = status {'not ' if role == 'good' else ''}ERROR)",
                  "bad_status")
    if len(found) != start or span is None or twhere is None:
        return None
    return Draft("ratio", SpanRatioIndicator(span=span, where=twhere))


def _metric_ratio(found: Problems, part: _Leaf, total: _Leaf) -> Draft | None:
    start = len(found)
    pspec, pp, tspec, tp = part.spec, part.path, total.spec, total.path
    metric = _metric_name(found, tspec["metric"], tp.k("metric"), "qfleet_jobs_total")
    tmatch = read_matchers(found, tspec.get("match"), tp.k("match"), strings=True)
    pmatch = read_matchers(found, pspec.get("match"), pp.k("match"), strings=True)
    if pspec["metric"] != tspec["metric"]:
        found.add(pp.k("metric"), f"good counts {show(pspec['metric'])} but total counts {show(tspec['metric'])}",
                  f"use metric: {show(tspec['metric'])} in good too (one counter, split by labels)", "ratio_mismatch")
    if tmatch is None or pmatch is None or metric is None or len(found) != start:
        return None
    missing = [kv for kv in tmatch if kv not in pmatch]
    if missing:
        found.add(pp.k("match"), f"good's match lacks total's {', '.join(f'{k}={v!r}' for k, v in missing)}",
                  "repeat total's match in good and add the good label values", "ratio_mismatch")
        return None
    good_match = tuple(kv for kv in pmatch if kv not in tmatch)
    if not good_match:
        found.add(pp.k("match"), "good selects the same series as total, so every event would be good",
                  "add the good label value, e.g. qfleet.outcome: success", "ratio_mismatch")
        return None
    return Draft("ratio", MetricRatioIndicator(metric=metric, good_match=good_match, total_match=tmatch))


# ---------------------------------------------------------------------------------------------------------------
# thresholdMetric


def _parse_threshold(found: Problems, tm: Any, path: FieldPath) -> Draft | None:
    start = len(found)
    got = _source_spec(found, tm, path)
    if got is None:
        return None
    spec, sp = got
    kind = _one_of(found, spec, sp, ("spans", "histogram", "gauge"),
                   "{histogram: qfleet_orchestrator_latency_seconds, buckets: [...]} or {gauge: qfleet_node_up}")
    if kind is None:
        return None
    fields = _THRESHOLD_SOURCES[kind](found, spec, sp)
    if len(found) != start:
        return None
    return Draft(cast(Literal["spans", "histogram", "gauge"], kind), fields=fields)


def _span_source(found: Problems, spec: dict[str, Any], sp: FieldPath) -> tuple[tuple[str, Any], ...]:
    read_mapping(found, spec, sp, ("spans", "attribute", "thresholdAttribute", "margin", "where"),
                 {"attribute": "add attribute: <the span attribute compared with the threshold>"})
    span = _name(found, spec["spans"], sp.k("spans"), "feedforward")
    attribute = _name(found, spec["attribute"], sp.k("attribute"), "latency_us") if "attribute" in spec \
        else None
    tattr = None
    if "thresholdAttribute" in spec:
        tattr = _name(found, spec["thresholdAttribute"], sp.k("thresholdAttribute"), "coherence_window_us")
    margin = _margin(found, spec, sp) if "margin" in spec else Fraction(1)
    where = read_matchers(found, spec.get("where"), sp.k("where"), strings=False)
    return (("span", span), ("attribute", attribute), ("threshold_attribute", tattr), ("margin", margin),
            ("where", where))


def _margin(found: Problems, spec: dict[str, Any], sp: FieldPath) -> Fraction | None:
    margin = read_number(found, spec["margin"], sp.k("margin"), "0.5")
    if margin is not None and margin <= 0:
        found.add(sp.k("margin"), f"margin {decimal_text(margin)} is not positive", "use a factor > 0, e.g. 0.5",
                  "bad_margin")
    if "thresholdAttribute" not in spec:
        found.add(sp.k("margin"), "margin scales thresholdAttribute, which is not given",
                  "add thresholdAttribute, or drop margin and put the threshold in objectives[0].value", "bad_margin")
    return margin


def _histogram_source(found: Problems, spec: dict[str, Any], sp: FieldPath) -> tuple[tuple[str, Any], ...]:
    read_mapping(found, spec, sp, ("histogram", "buckets", "match"),
                 {"buckets": "add buckets: [...] (the histogram's boundaries, e.g. 0.001, 0.01, 0.1)"})
    metric = _metric_name(found, spec["histogram"], sp.k("histogram"), "qfleet_orchestrator_latency_seconds")
    if metric is not None and metric.endswith(("_bucket", "_count", "_sum")):
        found.add(sp.k("histogram"), f"{metric!r} is a series of the histogram, not its base name",
                  f"write histogram: {metric.rsplit('_', 1)[0]}", "bad_metric_name")
    buckets = _buckets(found, spec.get("buckets"), sp.k("buckets")) if "buckets" in spec else ()
    match = read_matchers(found, spec.get("match"), sp.k("match"), strings=True)
    return (("metric", metric), ("buckets", buckets), ("match", match))


def _buckets(found: Problems, raw: Any, path: FieldPath) -> tuple[Fraction, ...]:
    if not isinstance(raw, list) or not raw:
        found.add(path, f"buckets must be a non-empty list of numbers, got {show(raw)}",
                  "list the boundaries, e.g. [0.001, 0.01, 0.1]", "bad_buckets")
        return ()
    buckets: list[Fraction] = []
    for i, b in enumerate(raw):
        x = read_number(found, b, path.i(i), "0.01")
        if x is not None and buckets and x <= buckets[-1]:
            found.add(path.i(i), f"bucket {decimal_text(x)} does not follow {decimal_text(buckets[-1])}",
                      "list the boundaries strictly increasing, without +Inf", "bad_buckets")
        if x is not None:
            buckets.append(x)
    return tuple(buckets)


def _gauge_source(found: Problems, spec: dict[str, Any], sp: FieldPath) -> tuple[tuple[str, Any], ...]:
    read_mapping(found, spec, sp, ("gauge", "match"))
    metric = _metric_name(found, spec["gauge"], sp.k("gauge"), "qfleet_node_up")
    match = read_matchers(found, spec.get("match"), sp.k("match"), strings=True)
    return (("metric", metric), ("match", match))


_THRESHOLD_SOURCES: dict[str, Callable[[Problems, dict[str, Any], FieldPath], tuple[tuple[str, Any], ...]]] = {
    "spans": _span_source, "histogram": _histogram_source, "gauge": _gauge_source}


# ---------------------------------------------------------------------------------------------------------------
# Binding a draft to the objective


def bind(found: Problems, draft: Draft, objective: dict[str, Any], op_path: FieldPath,
         value_path: FieldPath) -> Indicator | None:
    """Combine a draft SLI with the objective's ``op`` and ``value`` (which only thresholds take)."""
    if draft.kind == "ratio":
        return _bind_ratio(found, draft, objective, op_path, value_path)
    f = dict(draft.fields)
    op = _bind_op(found, draft, objective, op_path)
    per_event = draft.kind == "spans" and f["threshold_attribute"] is not None
    value = _bind_value(found, draft, objective, value_path, per_event)
    if op is None or (value is None and not per_event):
        return None
    if draft.kind == "spans":
        return SpanThresholdIndicator(span=f["span"], attribute=f["attribute"], op=op, threshold=value,
                                      threshold_attribute=f["threshold_attribute"], margin=f["margin"],
                                      where=f["where"])
    assert value is not None
    if draft.kind == "histogram":
        return HistogramIndicator(metric=f["metric"], threshold=value, op=cast(Literal["lte", "gt"], op),
                                  buckets=f["buckets"], match=f["match"])
    return GaugeThresholdIndicator(metric=f["metric"], op=op, threshold=value, match=f["match"])


def _bind_ratio(found: Problems, draft: Draft, objective: dict[str, Any], op_path: FieldPath,
                value_path: FieldPath) -> Indicator | None:
    extra = [(key, p) for key, p in (("op", op_path), ("value", value_path)) if key in objective]
    for key, p in extra:
        found.add(p, f"{key} applies to thresholdMetric indicators, and this one is a ratioMetric",
                  f"remove {key}; the ratio of good to total events is compared with the target", "unexpected")
    return None if extra else draft.indicator


def _bind_op(found: Problems, draft: Draft, objective: dict[str, Any], op_path: FieldPath) -> _Op | None:
    ops = ("lte", "gt") if draft.kind == "histogram" else _OPS
    op = objective.get("op")
    if "op" not in objective:
        found.add(op_path, "a thresholdMetric objective needs op", f"add op: one of {', '.join(ops)}", "missing_key")
        return None
    if op not in ops:
        fix = ("use lte (good = at or below a bucket boundary) or gt (good = above it)" if draft.kind == "histogram"
               else f"use one of {', '.join(ops)}")
        found.add(op_path, f"op {show(op)} is not supported here", fix, "bad_op")
        return None
    return cast(_Op, op)


def _bind_value(found: Problems, draft: Draft, objective: dict[str, Any], value_path: FieldPath,
                per_event: bool) -> Fraction | None:
    f = dict(draft.fields)
    if per_event:
        if "value" in objective:
            found.add(value_path, f"value is not used: the threshold is {f['threshold_attribute']} × margin per span",
                      "remove value (set margin in the metric source instead)", "unexpected")
        return None
    if "value" not in objective:
        found.add(value_path, "a thresholdMetric objective needs value", "add value: <the threshold>, e.g. 0.01",
                  "missing_key")
        return None
    value = read_number(found, objective["value"], value_path, "0.01")
    if draft.kind == "histogram" and value is not None and value not in f["buckets"]:
        found.add(value_path, f"threshold {decimal_text(value)} is not a bucket boundary of {f['metric']} (sre.md "
                  "§8: never interpolated)",
                  f"use one of the bucket boundaries {', '.join(decimal_text(b) for b in f['buckets'])}",
                  "threshold_not_on_bucket_boundary")
        return None
    return value
