"""Inhibition rules: a firing source mutes matching targets (sre.md §17.3, ``inhibit/inhibit.go``).

A target is inhibited by a rule when it matches the rule's ``target_matchers`` and some source alert, firing at
the time asked, matches ``source_matchers`` and has the same value for every ``equal`` label (a missing label is
the empty string, so missing on both sides is equal). Resolved sources never inhibit. A target that matches
*both* sides cannot be inhibited by a source that also matches both sides, itself included (alertmanager#666,
PR #1764): otherwise two such alerts would mute each other.

>>> from qfleet.alerts.model import Alert, Matcher, labels_key
>>> rule = InhibitRule(source_matchers=(Matcher("alertname", "=", "NodeDown"),),
...                    target_matchers=(Matcher("severity", "=", "ticket"),), equal=("node",))
>>> down = Alert(labels=labels_key({"alertname": "NodeDown", "node": "q1"}), starts_at=0)
>>> slow = Alert(labels=labels_key({"alertname": "Slow", "node": "q1", "severity": "ticket"}), starts_at=0)
>>> inhibited([rule], slow, [down, slow], 10), inhibited([rule], slow, [slow], 10)
(True, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from qfleet.alerts.model import Alert, InhibitRule, Matcher

__all__ = ["Inhibitor", "inhibited", "inhibiting_rule"]


def _all(matchers: Iterable[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def inhibiting_rule(rules: Iterable[InhibitRule], target: Alert, firing: Sequence[Alert],
                    t_ns: int) -> tuple[InhibitRule, Alert] | None:
    """The first ``(rule, source)`` that inhibits ``target`` at ``t_ns``, or None (see the module doc)."""
    tl = dict(target.labels)
    sources = [(a, dict(a.labels)) for a in firing if a.firing_at(t_ns)]
    for rule in rules:
        if not _all(rule.target_matchers, tl):
            continue
        two_sided = _all(rule.source_matchers, tl)
        for src, sl in sources:
            if not _all(rule.source_matchers, sl):
                continue
            if any(sl.get(n, "") != tl.get(n, "") for n in rule.equal):
                continue
            if two_sided and _all(rule.target_matchers, sl):
                continue
            return rule, src
    return None


def inhibited(rules: Iterable[InhibitRule], target: Alert, firing: Sequence[Alert], t_ns: int) -> bool:
    """Whether any rule mutes ``target`` at ``t_ns`` given the alerts ``firing`` (those resolved by then are ignored)."""
    return inhibiting_rule(rules, target, firing, t_ns) is not None


class Inhibitor:
    """:func:`inhibited` for many targets against one snapshot of sources: indexed by the ``equal`` values.

    Building costs one pass over ``firing`` per rule; each :meth:`mutes` is then a dictionary lookup per rule.
    """

    __slots__ = ("_index",)

    def __init__(self, rules: Iterable[InhibitRule], firing: Iterable[Alert], t_ns: int) -> None:
        rules = tuple(rules)
        # Per rule: equal values -> [sources, sources not matching the target side].
        self._index: list[tuple[InhibitRule, dict[tuple[str, ...], list[int]]]] = [(r, {}) for r in rules]
        for a in firing:
            if not a.firing_at(t_ns):
                continue
            labels = dict(a.labels)
            for rule, buckets in self._index:
                if _all(rule.source_matchers, labels):
                    counts = buckets.setdefault(tuple(labels.get(n, "") for n in rule.equal), [0, 0])
                    counts[0] += 1
                    counts[1] += not _all(rule.target_matchers, labels)

    def mutes(self, target: Alert) -> bool:
        """Whether ``target`` is inhibited (same answer as :func:`inhibited` over the snapshot)."""
        labels = dict(target.labels)
        for rule, buckets in self._index:
            if not buckets or not _all(rule.target_matchers, labels):
                continue
            counts = buckets.get(tuple(labels.get(n, "") for n in rule.equal))
            if counts is None:
                continue
            if counts[1] if _all(rule.source_matchers, labels) else counts[0]:
                return True
        return False
