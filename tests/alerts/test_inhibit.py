"""Inhibition rules (sre.md §17.3, Alertmanager's ``inhibit/inhibit.go``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qfleet.alerts.inhibit import Inhibitor, inhibited, inhibiting_rule
from qfleet.alerts.model import Alert, InhibitRule, Matcher, labels_key

NODE_DOWN = InhibitRule(source_matchers=(Matcher("alertname", "=", "NodeDown"),),
                        target_matchers=(Matcher("severity", "=", "ticket"),), equal=("node",), name="node")


def alert(start: int = 0, end: int | None = None, **labels: str) -> Alert:
    return Alert(labels=labels_key(labels), starts_at=start, ends_at=end)


def test_firing_source_with_equal_labels_inhibits() -> None:
    src = alert(alertname="NodeDown", node="q1")
    tgt = alert(alertname="Slow", node="q1", severity="ticket")
    assert inhibited([NODE_DOWN], tgt, [src, tgt], 10)
    assert inhibiting_rule([NODE_DOWN], tgt, [src, tgt], 10) == (NODE_DOWN, src)


def test_different_equal_label_does_not_inhibit() -> None:
    src = alert(alertname="NodeDown", node="q2")
    tgt = alert(alertname="Slow", node="q1", severity="ticket")
    assert not inhibited([NODE_DOWN], tgt, [src], 10)


# sre.md §17.3: "equal values for every equal label (missing counts as empty, so missing on both sides is equal)".
def test_equal_label_missing_on_both_sides_is_equal() -> None:
    src = alert(alertname="NodeDown")
    tgt = alert(alertname="Slow", severity="ticket")
    assert inhibited([NODE_DOWN], tgt, [src], 10)


def test_equal_label_missing_on_one_side_is_not_equal() -> None:
    assert not inhibited([NODE_DOWN], alert(alertname="Slow", severity="ticket"),
                         [alert(alertname="NodeDown", node="q1")], 10)
    assert not inhibited([NODE_DOWN], alert(alertname="Slow", severity="ticket", node="q1"),
                         [alert(alertname="NodeDown")], 10)


# sre.md §17.3: "Resolved sources never inhibit".
def test_resolved_source_never_inhibits() -> None:
    tgt = alert(alertname="Slow", node="q1", severity="ticket")
    src = alert(end=10, alertname="NodeDown", node="q1")
    assert not inhibited([NODE_DOWN], tgt, [src], 10)     # ends_at <= t is resolved
    assert inhibited([NODE_DOWN], tgt, [src], 9)          # still firing before its end


def test_source_that_has_not_started_does_not_inhibit() -> None:
    tgt = alert(alertname="Slow", node="q1", severity="ticket")
    assert not inhibited([NODE_DOWN], tgt, [alert(start=50, alertname="NodeDown", node="q1")], 10)


def test_target_must_match_target_matchers() -> None:
    src = alert(alertname="NodeDown", node="q1")
    assert not inhibited([NODE_DOWN], alert(alertname="Slow", node="q1", severity="page"), [src], 10)


def test_source_must_match_source_matchers() -> None:
    tgt = alert(alertname="Slow", node="q1", severity="ticket")
    assert not inhibited([NODE_DOWN], tgt, [alert(alertname="Other", node="q1")], 10)


def test_any_rule_suffices_and_no_rules_never_inhibit() -> None:
    other = InhibitRule(source_matchers=(Matcher("alertname", "=", "SiteDown"),),
                        target_matchers=(Matcher("severity", "=~", "ticket|page"),), equal=("site",))
    tgt = alert(alertname="Slow", node="q1", site="delft", severity="page")
    src = alert(alertname="SiteDown", site="delft")
    assert inhibited([NODE_DOWN, other], tgt, [src], 10)
    assert not inhibited([], tgt, [src], 10)


# sre.md §17.3: "An alert matching both sides cannot be inhibited by another two-sided alert, itself included
# (#666, PR #1764)".
TWO_SIDED = InhibitRule(source_matchers=(Matcher("severity", "=", "critical"),),
                        target_matchers=(Matcher("team", "=", "hw"),), equal=("site",))


def test_two_sided_alert_does_not_inhibit_itself() -> None:
    both = alert(alertname="A", severity="critical", team="hw", site="delft")
    assert not inhibited([TWO_SIDED], both, [both], 10)


def test_two_sided_alerts_do_not_inhibit_each_other() -> None:
    a = alert(alertname="A", severity="critical", team="hw", site="delft")
    b = alert(alertname="B", severity="critical", team="hw", site="delft")
    assert not inhibited([TWO_SIDED], a, [a, b], 10)
    assert not inhibited([TWO_SIDED], b, [a, b], 10)


def test_two_sided_alert_is_inhibited_by_a_source_only_alert() -> None:
    both = alert(alertname="A", severity="critical", team="hw", site="delft")
    src = alert(alertname="S", severity="critical", team="sw", site="delft")
    assert inhibited([TWO_SIDED], both, [both, src], 10)


def test_target_only_alert_is_inhibited_by_a_two_sided_source() -> None:
    both = alert(alertname="A", severity="critical", team="hw", site="delft")
    tgt = alert(alertname="T", severity="warning", team="hw", site="delft")
    assert inhibited([TWO_SIDED], tgt, [both], 10)


def test_no_equal_labels_means_any_firing_source() -> None:
    rule = InhibitRule(source_matchers=(Matcher("alertname", "=", "Maintenance"),),
                       target_matchers=(Matcher("severity", "!=", "page"),))
    assert inhibited([rule], alert(alertname="X", node="q9"), [alert(alertname="Maintenance")], 10)


LABEL_SETS = st.lists(st.fixed_dictionaries({}, optional={
    "alertname": st.sampled_from(["NodeDown", "Slow", "A"]), "severity": st.sampled_from(["critical", "ticket"]),
    "team": st.sampled_from(["hw", "sw"]), "node": st.sampled_from(["q1", "q2"]),
    "site": st.sampled_from(["delft", ""])}), max_size=8)


@settings(max_examples=300, deadline=None)
@given(LABEL_SETS, st.lists(st.integers(min_value=0, max_value=20), min_size=8, max_size=8),
       st.integers(min_value=0, max_value=20))
def test_indexed_inhibitor_agrees_with_inhibited(label_sets: list[dict], ends: list[int], t: int) -> None:
    rules = [NODE_DOWN, TWO_SIDED]
    alerts = [alert(0, end if end % 3 else None, **ls) for ls, end in zip(label_sets, ends, strict=False)]
    inh = Inhibitor(rules, alerts, t)
    for a in alerts:
        assert inh.mutes(a) == inhibited(rules, a, alerts, t)
