"""The truth guard: rules, SLOs and dashboards read only what a control system measures, never the simulator's
ground truth.

The simulator keeps its ground truth under the ``qfleet.truth.`` namespace (Prometheus ``qfleet_truth_*``) and in
the ``qfleet.fault`` spans; a rule or SLO that read them would detect faults no real fleet could see. The
simulator package owns the namespace but may not be imported from here (imports point one way: slo and alerts
never import simulator), so the prefixes are spelled here too; tests check both spellings agree.
"""

from __future__ import annotations

__all__ = ["TRUTH_PREFIXES", "TRUTH_SPANS", "truth_fix", "truth_reference"]

#: Name prefixes of ground-truth series and attributes, in OpenTelemetry and Prometheus spelling.
TRUTH_PREFIXES: tuple[str, ...] = ("qfleet.truth.", "qfleet_truth_")
#: Spans that carry only ground truth (the injected faults with their ``qfleet.truth.*`` attributes).
TRUTH_SPANS: tuple[str, ...] = ("qfleet.fault",)


def truth_reference(name: object) -> bool:
    """Whether ``name`` (a metric, span, attribute or label name) is ground truth.

    >>> truth_reference("qfleet_truth_node_t2_seconds"), truth_reference("qfleet.truth.profile")
    (True, True)
    >>> truth_reference("qfleet_node_t2_seconds"), truth_reference("qfleet.fault"), truth_reference(3)
    (False, True, False)
    """
    if not isinstance(name, str):
        return False
    low = name.lower()
    return low.startswith(TRUTH_PREFIXES) or low in TRUTH_SPANS


def truth_fix(name: str) -> str:
    """The fix text for a reference to ground truth ``name``: the measured signal to read instead."""
    measured = name.replace("qfleet_truth_", "qfleet_", 1).replace("qfleet.truth.", "qfleet.", 1)
    if measured != name:
        return f"read the measured series {measured!r} instead; ground truth is for scoring game days only"
    return "read a measured signal (metrics and spans outside qfleet.truth.*); ground truth is for scoring only"
