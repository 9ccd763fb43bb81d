"""Prometheus recording and alerting rules from SLO specs (what Sloth and Pyrra generate, event-weighted).

One rule group ``qfleet-slo-<name>`` per SLO holds, in evaluation order:

- gauge indicators only: ``qfleet_slo:gauge_samples:count`` and ``qfleet_slo:gauge_good_samples:count``,
  the series sampled at this evaluation and those whose value is good (each series at each evaluation is an
  event);
- ``qfleet_slo:error_ratio:rate<W>`` for the standard windows (5m 30m 1h 2h 6h 1d 3d), every window of the
  SLO's alert pairs (e.g. Pyrra's 4d) and the period (30d): ``Σbad / Σtotal`` over ``W`` (sre.md §4:
  event-weighted, never a mean of ratios), ``by`` the segment labels. A window without events records no
  sample (null, not NaN; sre.md §10);
- ``qfleet_slo:objective:ratio``, ``qfleet_slo:error_budget:ratio`` (``1 - target``, exact: sre.md §11),
  ``qfleet_slo:period_burn_rate:ratio`` and ``qfleet_slo:period_error_budget_remaining:ratio``
  (unclamped, §5);
- one ``QfleetSLOBurnRate`` alert per pair: both windows' error ratios strictly above ``threshold × budget``
  (§3) and, with ``min_events``, both windows holding that many events (§12).

Every number a comparison depends on is written from its :class:`~fractions.Fraction` as an exact decimal
(``0.0144``), or as ``(p / q)`` when it has no finite decimal. Prometheus then parses the binary64 nearest to
the exact value, and a ratio exactly at the threshold (``bad / total``, also rounded once) equals it and does
not fire. A product such as ``(5.6 * 0.01)`` is rounded twice and can land below the exact threshold.

Span-based indicators have no PromQL form: they raise :class:`RuleExportError`, or are left out with
``strict=False`` (:func:`skipped` lists them). Calendar periods use their nominal length as a rolling window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import yaml

from qfleet.collector.exposition import label_name, le_text
from qfleet.slo.model import (
    SLO,
    GaugeThresholdIndicator,
    HistogramIndicator,
    MetricRatioIndicator,
    Pair,
    SpanRatioIndicator,
    SpanThresholdIndicator,
    StandardWindows,
    window_label,
)
from qfleet.units import NS, parse_duration

__all__ = [
    "ALERT_NAME",
    "RuleExportError",
    "le_value",
    "prometheus_label",
    "prometheus_rules",
    "promql_number",
    "recorded_windows",
    "rules_yaml",
    "skipped",
]

#: The name of every burn-rate alert; the labels ``severity`` (page | ticket) and ``pair`` tell them apart.
ALERT_NAME = "QfleetSLOBurnRate"

_GAUGE_SAMPLES = "qfleet_slo:gauge_samples:count"
_GAUGE_GOOD = "qfleet_slo:gauge_good_samples:count"
#: Store column -> OTel attribute (mirrors ``collector.schema.PROMOTED_ATTRIBUTES``, a test keeps them equal):
#: ``group_by: [hardware_type]`` segments by the Prometheus label ``qfleet_hardware_type``.
_PROMOTED = {
    "node_id": "qfleet.node.id",
    "link_id": "qfleet.link.id",
    "job_id": "qfleet.job.id",
    "run_id": "qfleet.run.id",
    "hardware_type": "qfleet.hardware.type",
}
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_OPS = {"lte": "<=", "lt": "<", "gte": ">=", "gt": ">"}
_HOUR, _MINUTE = 3600 * NS, 60 * NS


class RuleExportError(ValueError):
    """An SLO that cannot be written as Prometheus rules; ``rule`` names the check, ``slo`` the SLO.

    (Not to be confused with :mod:`qfleet.alerts`' errors for rule files it loads.)

    >>> str(RuleExportError("jobs", "span_indicator", "it counts spans", "use a metric indicator"))
    "SLO 'jobs': it counts spans (rule span_indicator); fix: use a metric indicator"
    """

    def __init__(self, slo: str, rule: str, problem: str, fix: str) -> None:
        super().__init__(f"SLO {slo!r}: {problem} (rule {rule}); fix: {fix}")
        self.slo = slo
        self.rule = rule


# ------------------------------------------------------------------------------------------------------------
# Text of numbers, durations and labels


def promql_number(value: Fraction | int) -> str:
    """``value`` as an exact PromQL number: a decimal if it has a finite one, else ``(p / q)``.

    Args:
        value: an exact rational.

    Returns:
        Text that Prometheus parses to the binary64 nearest to ``value``.

    Examples:
        >>> promql_number(1 - Fraction("0.999")), promql_number(Fraction(72, 5) * Fraction("0.001"))
        ('0.001', '0.0144')
        >>> promql_number(Fraction(14, 15) * Fraction("0.001"))
        '(7 / 7500)'
        >>> promql_number(3), promql_number(Fraction(-1, 4))
        ('3', '-0.25')
    """
    f = Fraction(value)
    den, twos, fives = f.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"({f.numerator} / {f.denominator})"
    k = max(twos, fives)
    digits = abs(f.numerator) * 10**k // f.denominator
    sign = "-" if f < 0 else ""
    if k == 0:
        return f"{sign}{digits}"
    whole, frac = divmod(digits, 10**k)
    return f"{sign}{whole}.{frac:0{k}d}".rstrip("0")


def le_value(threshold: Fraction) -> str:
    """The ``le`` label OTLP ingestion gives the bucket bound ``threshold`` (``FormatFloat(b, 'f', -1, 64)``).

    A bound is a binary64 in OTLP, so this is the shortest decimal that reads back as that float, without an
    exponent. It names a label; it decides no comparison.

    >>> [le_value(Fraction(b)) for b in ("0.01", "1", "0.00001", "250")]
    ['0.01', '1', '0.00001', '250']
    """
    return le_text(float(threshold))


def _window(ns: int) -> str:
    """A window's :func:`~qfleet.slo.model.window_label` (``28d``, not ``4w``), which must be whole minutes."""
    if ns <= 0 or ns % _MINUTE:
        raise ValueError(f"window of {ns} ns is not a whole number of minutes; use whole minutes (e.g. 90m)")
    return window_label(ns)


def prometheus_label(name: str) -> str:
    """The Prometheus label of an attribute or store column, as the collector's ``/metrics`` serves it.

    A promoted store column maps to its OTel attribute first (``hardware_type`` is ``qfleet.hardware.type``); the
    rest is :func:`qfleet.collector.exposition.label_name` (Prometheus' OTLP translation): dots and other marks
    become ``_``, a leading digit gets ``key_``.

    >>> prometheus_label("qfleet.outcome"), prometheus_label("hardware_type"), prometheus_label("2fa")
    ('qfleet_outcome', 'qfleet_hardware_type', 'key_2fa')
    """
    return label_name(_PROMOTED.get(name, name))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Fraction):
        return le_value(value)
    return str(value)


def _template_safe(text: str) -> str:
    """User text inside Prometheus' Go templates, where ``{{`` would open an action."""
    return text.replace("{{", '{{ "{{" }}')


# ------------------------------------------------------------------------------------------------------------
# PromQL for one indicator


class _Query:
    """The events of one SLO in PromQL: ``total(w)``, ``error_ratio(w)``, and the gauges' sampling rules."""

    def __init__(self, slo: SLO, group_by: tuple[str, ...]) -> None:
        self.slo = slo
        self.by = f" by ({', '.join(group_by)})" if group_by else ""
        self.on = f"on ({', '.join(group_by)})"
        # qfleet's engine leaves out events whose segment label is empty or missing (no segment to charge them
        # to); `sum by` would make them a segment of their own, so the selectors leave them out too.
        self.segmented = [f'{label}!=""' for label in group_by]
        self.sel = f"{{slo={_quote(slo.name)}}}"
        ind = slo.indicator
        if isinstance(ind, (SpanRatioIndicator, SpanThresholdIndicator)):
            raise RuleExportError(
                slo.name, "span_indicator_not_in_promql",
                f"its indicator ({ind.kind}, span {ind.span!r}) counts spans, which Prometheus does not "
                "store",
                "evaluate it over qfleet's store (qfleet slo eval), or count the same events with a counter "
                "and use a metric_ratio indicator")
        self.ind = ind
        if not _METRIC_NAME.match(ind.metric):
            suggestion = re.sub(r"[^a-zA-Z0-9_:]", "_", ind.metric)
            raise RuleExportError(slo.name, "invalid_metric_name",
                             f"metric {ind.metric!r} is not a Prometheus metric name",
                             f"write the name as Prometheus stores it, e.g. {suggestion!r} plus the unit and "
                             "_total suffixes the OTLP translator adds")
        if isinstance(ind, HistogramIndicator) and ind.buckets and ind.threshold not in ind.buckets:
            raise RuleExportError(slo.name, "threshold_not_on_bucket_boundary",
                             f"histogram threshold {le_value(ind.threshold)} is not one of the buckets "
                             f"{[le_value(b) for b in ind.buckets]}",
                             "use a bucket boundary as the threshold (buckets are never interpolated), or "
                             "add that boundary to the histogram")

    @staticmethod
    def _matchers(*groups: tuple[tuple[str, Any], ...]) -> list[str]:
        out = []
        for group in groups:
            for key, value in group:
                label = prometheus_label(key)
                if isinstance(value, (list, tuple, set, frozenset)):
                    alternatives = sorted(re.escape(_scalar_text(v)) for v in value)
                    out.append(f"{label}=~{_quote('|'.join(alternatives))}")
                else:
                    out.append(f"{label}={_quote(_scalar_text(value))}")
        return out

    def _selector(self, metric: str, matchers: list[str]) -> str:
        every = [*matchers, *self.segmented]
        return f"{metric}{{{', '.join(every)}}}" if every else metric

    def _sum(self, inner: str) -> str:
        return f"sum{self.by} ({inner})"

    def sample_rules(self) -> list[tuple[str, str]]:
        """Gauges only: ``(record, expr)`` counting at each evaluation the series sampled and the good ones.

        The windows then sum these recorded counts (``sum_over_time``): one raw sample per evaluation, where a
        ``[30d:1m]`` subquery would re-evaluate 43,200 steps (and exceeds promtool's sample limit).
        """
        ind = self.ind
        if not isinstance(ind, GaugeThresholdIndicator):
            return []
        sel = self._selector(ind.metric, self._matchers(ind.match))
        count = f"count{self.by}"
        return [(_GAUGE_SAMPLES, f"{count} ({sel})"),
                (_GAUGE_GOOD, f"{count} ({sel} {_OPS[ind.op]} {promql_number(ind.threshold)})")]

    def _bucket(self, ind: HistogramIndicator, le: str) -> str:
        return self._selector(f"{ind.metric}_bucket", [*self._matchers(ind.match), f"le={_quote(le)}"])

    def total(self, w: str) -> str:
        """PromQL for the number of events in the window ``w``."""
        ind = self.ind
        if isinstance(ind, MetricRatioIndicator):
            return self._sum(f"increase({self._selector(ind.metric, self._matchers(ind.total_match))}[{w}])")
        if isinstance(ind, HistogramIndicator):
            return self._sum(f"increase({self._bucket(ind, '+Inf')}[{w}])")
        return self._sum(f"sum_over_time({_GAUGE_SAMPLES}{self.sel}[{w}])")

    def error_ratio(self, w: str) -> str:
        """PromQL for ``bad / total`` over ``w``; no sample when the window holds no event."""
        ind, total = self.ind, self.total(w)
        if isinstance(ind, MetricRatioIndicator):
            sel = self._selector(ind.metric, self._matchers(ind.total_match, ind.good_match))
            good = self._sum(f"increase({sel}[{w}])")
        elif isinstance(ind, HistogramIndicator):
            within = self._sum(f"increase({self._bucket(ind, le_value(ind.threshold))}[{w}])")
            if ind.op == "gt":  # good above the bound: the bucket itself counts the bad events
                return f"({within} or 0 * {total}) / ({total} > 0)"
            good = within
        else:
            good = self._sum(f"sum_over_time({_GAUGE_GOOD}{self.sel}[{w}])")
        # `or 0 * total`: with no good event there is no good series at all, and `total - nothing` is empty.
        return f"({total} - ({good} or 0 * {total})) / ({total} > 0)"


# ------------------------------------------------------------------------------------------------------------
# Rule groups


def recorded_windows(slo: SLO) -> tuple[str, ...]:
    """The windows whose error ratio is recorded: standard ones, the pairs' and the period, shortest first.

    Example: the standard windows of sre.md §4, plus Pyrra's 4d and a 28d period.

    >>> from qfleet.slo.model import AlertPolicy, MetricRatioIndicator, Pair, Period
    >>> slow = Pair(name="slow", severity="ticket", long_ns=4 * 86400 * NS, short_ns=6 * 3600 * NS,
    ...             burn_threshold=Fraction(1))
    >>> recorded_windows(SLO(name="jobs", service="s", target=Fraction("0.99"), budgeting="Occurrences",
    ...     period=Period(28 * 86400 * NS), policy=AlertPolicy(name="pyrra_28d", pairs=(slow,)),
    ...     indicator=MetricRatioIndicator(metric="m_total", good_match=(("o", "ok"),))))
    ('5m', '30m', '1h', '2h', '6h', '1d', '3d', '4d', '28d')
    """
    ns = {parse_duration(w) for w in StandardWindows}
    for p in slo.policy.pairs:
        ns.update((p.long_ns, p.short_ns))
    ns.add(slo.period.nominal_ns)
    return tuple(_window(n) for n in sorted(ns))


def _display(f: Fraction) -> str:
    """A number for people: exact when it has a finite decimal, else 4 significant digits."""
    text = promql_number(f)
    return f"{float(f):.4g}" if text.startswith("(") else text


def _time_text(ns: Fraction) -> str:
    """How long ``ns`` is, for people: a window label when it is whole minutes (``50h``), else about so many hours.

    Not :func:`qfleet.units.format_duration`: ``2d2h`` reads worse than ``50h`` here, and the time a budget lasts
    is rarely whole milliseconds.
    """
    if ns.denominator == 1 and ns >= _MINUTE and ns % _MINUTE == 0:
        return window_label(int(ns))
    return f"{float(ns / _HOUR):.3g}h"


def _group(slo: SLO, interval: str | None) -> dict[str, Any]:
    if not 0 < slo.target < 1:
        raise RuleExportError(slo.name, "target_out_of_range",
                         f"target {promql_number(slo.target)} is not in (0, 1)",
                         "write the objective as a ratio below 1, e.g. 0.999")
    base: dict[str, str] = {prometheus_label(k): v for k, v in slo.labels}
    base.update(service=slo.service, slo=slo.name)
    group_by = tuple(prometheus_label(g) for g in slo.group_by)
    if clash := sorted(set(group_by) & set(base)):
        raise RuleExportError(slo.name, "group_by_label_collision",
                         f"group_by labels {clash} are also rule labels (slo, service, the SLO's labels)",
                         "rename the SLO label, or segment by another label")
    if reserved := [g for g in group_by if g.startswith("__")]:
        raise RuleExportError(slo.name, "reserved_label", f"group_by labels {reserved} start with __ (reserved)",
                         "segment by a label without the __ prefix")
    q = _Query(slo, group_by)
    period = _window(slo.period.nominal_ns)
    budget = promql_number(slo.error_budget)

    rules: list[dict[str, Any]] = [{"record": r, "expr": e, "labels": dict(base)}
                                   for r, e in q.sample_rules()]
    rules += [{"record": f"qfleet_slo:error_ratio:rate{w}", "expr": q.error_ratio(w), "labels": dict(base)}
              for w in recorded_windows(slo)]
    rules += [
        {"record": "qfleet_slo:objective:ratio", "expr": f"vector({promql_number(slo.target)})",
         "labels": dict(base)},
        {"record": "qfleet_slo:error_budget:ratio", "expr": f"vector({budget})", "labels": dict(base)},
        {"record": "qfleet_slo:period_burn_rate:ratio",
         "expr": f"qfleet_slo:error_ratio:rate{period}{q.sel} / {budget}", "labels": dict(base)},
        {"record": "qfleet_slo:period_error_budget_remaining:ratio",
         "expr": f"1 - qfleet_slo:period_burn_rate:ratio{q.sel}", "labels": dict(base)},
    ]
    rules += [_alert(slo, pair, q, group_by, period) for pair in slo.policy.pairs]
    group: dict[str, Any] = {"name": f"qfleet-slo-{slo.name}"}
    if interval is not None:
        group["interval"] = interval
    group["rules"] = rules
    return group


def _alert(slo: SLO, pair: Pair, q: _Query, group_by: tuple[str, ...], period: str) -> dict[str, Any]:
    thr = pair.threshold(slo.period.nominal_ns)
    ratio_thr = promql_number(thr * slo.error_budget)
    long, short = _window(pair.long_ns), _window(pair.short_ns)
    terms = [f"qfleet_slo:error_ratio:rate{w}{q.sel} > {ratio_thr}" for w in (long, short)]
    if slo.min_events > 0:
        terms += [f"{q.on} ({q.total(w)} >= {slo.min_events})" for w in (long, short)]
    name = _template_safe(slo.display_name or slo.name)
    segment = ", ".join(f"{g}={{{{ $labels.{g} }}}}" for g in group_by)
    summary = f"{name}: error budget burning over {_display(thr)}x too fast ({pair.name}, {long}/{short})"
    if segment:
        summary += f" for {segment}"
    description = (
        f"SLO {name} (service {_template_safe(slo.service)}, target {_display(slo.target * 100)}%): the "
        f"error ratio is above {_display(thr * slo.error_budget * 100)}% (burn rate {_display(thr)} x "
        f"budget {_display(slo.error_budget)}) over both {long} and {short}; at that rate the {period} "
        f"error budget is gone in {_time_text(Fraction(slo.period.nominal_ns) / thr)}. "
        f"Error ratio over {long}: {{{{ $value | humanizePercentage }}}}.")
    if thr * slo.error_budget >= 1:
        description = (f"This pair can never fire: its threshold is above 100 % errors (burn {_display(thr)} "
                       f"needs target above {_display(1 - 1 / thr)}; sre.md §9). ") + description
    if slo.description:
        description += " " + _template_safe(slo.description)
    annotations = {"summary": summary, "description": description}
    if slo.runbook:
        annotations["runbook_url"] = _template_safe(slo.runbook)
    labels = {"severity": pair.severity, "slo": slo.name, "pair": pair.name, "long": long, "short": short}
    return {"alert": ALERT_NAME, "expr": " and ".join(terms), "labels": labels, "annotations": annotations}


def _groups(slos: Sequence[SLO], strict: bool,
            interval: str | None) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    seen: set[str] = set()
    groups, left_out = [], []
    for slo in slos:
        if slo.name in seen:
            raise RuleExportError(slo.name, "duplicate_slo_name",
                             "two SLOs share this name, so their rule groups and slo labels would collide",
                             "give every SLO a unique metadata.name")
        seen.add(slo.name)
        try:
            groups.append(_group(slo, interval))
        except RuleExportError as e:
            if strict:
                raise
            left_out.append((slo.name, str(e)))
    return groups, left_out


def prometheus_rules(slos: Sequence[SLO], *, strict: bool = True,
                     interval: str | None = None) -> dict[str, Any]:
    """Prometheus rule groups for ``slos``, ready for :func:`yaml.safe_dump`.

    Args:
        slos: the SLOs; each becomes the group ``qfleet-slo-<name>``, in this order.
        strict: raise on an SLO without a PromQL form; with False, leave it out (see :func:`skipped`).
        interval: the groups' evaluation interval (default: Prometheus' global one). For a gauge indicator it
            is also the sampling step: each series at each evaluation is one event.

    Returns:
        ``{"groups": [...]}``.

    Raises:
        RuleExportError: with ``strict``, an SLO that cannot be expressed (a span indicator, a histogram threshold
            off its buckets, a metric name Prometheus cannot hold, a target outside (0, 1), a group_by label
            colliding with a rule label); always, two SLOs of one name.

    Examples:
        >>> from qfleet.slo.model import AlertPolicy, MetricRatioIndicator, Pair, Period
        >>> fast = Pair(name="page_fast", severity="page", long_ns=3600 * NS, short_ns=300 * NS,
        ...             budget_fraction=Fraction(2, 100))
        >>> slo = SLO(name="jobs", service="scheduler", target=Fraction("0.999"), budgeting="Occurrences",
        ...           period=Period(30 * 86400 * NS), policy=AlertPolicy(name="p", pairs=(fast,)),
        ...           indicator=MetricRatioIndicator(metric="qfleet_jobs_total",
        ...                                          good_match=(("qfleet.outcome", "success"),)))
        >>> rules = prometheus_rules([slo])["groups"][0]["rules"]
        >>> print(rules[2]["expr"])  # doctest: +NORMALIZE_WHITESPACE
        (sum (increase(qfleet_jobs_total[1h]))
         - (sum (increase(qfleet_jobs_total{qfleet_outcome="success"}[1h]))
            or 0 * sum (increase(qfleet_jobs_total[1h]))))
        / (sum (increase(qfleet_jobs_total[1h])) > 0)
        >>> print(rules[-1]["expr"].replace(" and ", "\\nand "))
        qfleet_slo:error_ratio:rate1h{slo="jobs"} > 0.0144
        and qfleet_slo:error_ratio:rate5m{slo="jobs"} > 0.0144
    """
    return {"groups": _groups(slos, strict, interval)[0]}


def skipped(slos: Sequence[SLO]) -> list[tuple[str, str]]:
    """``(slo name, reason)`` for each SLO that ``prometheus_rules(slos, strict=False)`` leaves out.

    >>> from qfleet.slo.model import AlertPolicy, Period, SpanRatioIndicator
    >>> span = SLO(name="swaps", service="links", target=Fraction("0.99"), period=Period(30 * 86400 * NS),
    ...            budgeting="Occurrences", indicator=SpanRatioIndicator(span="qfleet.entanglement.swap"),
    ...            policy=AlertPolicy(name="none", pairs=()))
    >>> [(name, reason.split(" (rule ")[1].split(")")[0]) for name, reason in skipped([span])]
    [('swaps', 'span_indicator_not_in_promql')]
    """
    return _groups(slos, False, None)[1]


def rules_yaml(slos: Sequence[SLO], *, strict: bool = True, interval: str | None = None) -> str:
    """:func:`prometheus_rules` as a rule file for Prometheus' ``rule_files:``, under a header comment.

    Raises:
        RuleExportError: as :func:`prometheus_rules`.
    """
    body = yaml.safe_dump(prometheus_rules(slos, strict=strict, interval=interval), sort_keys=False,
                          width=1_000_000, allow_unicode=True)
    return "# Generated by qfleet (slo.rules) from SLO specs; regenerate instead of editing.\n" + body
