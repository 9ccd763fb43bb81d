"""The game-day scorer as a pure function: hand-built faults, alerts and fleet, no simulation.

Every expected number below is worked out by hand in the comment beside it (the oracle), not by the scorer.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from qfleet.alerts.model import Alert, labels_key
from qfleet.runbooks.scoring import (
    DAY_NS,
    BudgetBurn,
    Delivery,
    Expectation,
    FaultWindow,
    IncidentRecord,
    Scorecard,
    locate,
    period_share,
    score,
)
from qfleet.units import NS

MIN = 60 * NS
T0 = 1_000 * DAY_NS  # any absolute start; the scorer must only use differences
#: A line fleet: qpu-a, qpu-b trapped ions; qpu-c, qpu-d NV centres.
HW = {"qpu-a": "trapped-ion", "qpu-b": "trapped-ion", "qpu-c": "nv-centre", "qpu-d": "nv-centre"}


def fault(fid: str, target: str, start_min: int, minutes: int, *, kind: str = "F2",
          nodes: tuple[str, ...] = ()) -> FaultWindow:
    return FaultWindow(id=fid, kind=kind, target=target, nodes=nodes, start_ns=T0 + start_min * MIN,
                       end_ns=T0 + (start_min + minutes) * MIN)


def alert(name: str, start_min: float, end_min: float | None = None, *, severity: str = "page",
          **labels: str) -> Alert:
    lab = {"alertname": name, "severity": severity, **labels}
    return Alert(labels=labels_key(lab), starts_at=T0 + int(start_min * MIN),
                 ends_at=None if end_min is None else T0 + int(end_min * MIN))


def run(faults: list[FaultWindow], alerts: list[Alert], expectations: list[Expectation] | None = None,
        hours: int = 3, **kw: object) -> Scorecard:
    exp = [Expectation(fault=f.id) for f in faults] if expectations is None else expectations
    return score(name="t", run_id="r", start_ns=T0, end_ns=T0 + hours * 60 * MIN, faults=faults, hardware=HW,
                 alerts=alerts, expectations=exp, **kw)  # type: ignore[arg-type]


def test_an_unrelated_alert_during_a_fault_is_a_false_positive() -> None:
    f = fault("t2", "qpu-b", 20, 20)
    card = run([f], [alert("QfleetT2Drop", 25, 35, node="qpu-b"),
                     alert("QfleetReadoutDrift", 25, 35, severity="ticket", node="qpu-d")])
    assert card.faults[0].detected and card.faults[0].localized and card.passed is False
    assert card.false_positives == ("QfleetReadoutDrift[qpu-d]@1500s",)  # 25 min after the start
    assert (card.false_pages, card.false_tickets) == (0, 1)


def test_the_right_alert_name_on_the_wrong_node_detects_nothing() -> None:
    f = fault("t2", "qpu-b", 20, 20)
    card = run([f], [alert("QfleetT2Drop", 22, 30, node="qpu-a", hardware_type="trapped-ion")],
               [Expectation(fault="t2", alerts=("QfleetT2Drop",))])
    score_ = card.faults[0]
    # Same hardware type as the faulty node, but naming another node: no fallback to the segment.
    assert not score_.detected and not score_.passed and "QfleetT2Drop" in score_.why
    assert len(card.false_positives) == 1 and card.recall == 0.0 and card.precision == 0.0


def test_an_alert_on_a_link_touching_the_faulty_node_localizes_it() -> None:
    card = run([fault("out", "qpu-c", 10, 10, kind="F5")],
               [alert("QfleetEntanglementCollapse", 13, 30, link="qpu-b~qpu-c")])
    f = card.faults[0]
    assert f.detected and f.localized and f.passed and f.time_to_detect_s == 180
    # It ended 30 - 20 = 10 min after the fault (20 min): inside the 15 min grace, so not a false positive.
    assert f.time_to_resolve_s == 600 and card.false_positives == () and card.passed


def test_a_hardware_type_alert_detects_but_does_not_localize() -> None:
    f = fault("t2", "qpu-b", 20, 20)
    seg = alert("QfleetSLOBurnRate", 24, 40, severity="ticket", slo="end-to-end-fidelity", hardware_type="trapped-ion")
    card = run([f], [seg])
    assert card.faults[0].detected and not card.faults[0].localized and not card.passed
    assert "none naming qpu-b" in card.faults[0].why and card.faults[0].alerts == ("slo:end-to-end-fidelity",)
    assert run([f], [seg], [Expectation(fault="t2", localized=False)]).passed
    # The legacy spelling of the label (until the rename lands everywhere) is the same segment.
    legacy = alert("QfleetSLOBurnRate", 24, 40, slo="x", qfleet_hardware_type="trapped-ion")
    assert run([f], [legacy], [Expectation(fault="t2", localized=False)]).passed
    # The other segment is not the fault's.
    other = alert("QfleetSLOBurnRate", 24, 40, slo="x", hardware_type="nv-centre")
    assert not run([f], [other], [Expectation(fault="t2", localized=False)]).faults[0].detected


def test_a_fleet_wide_alert_detects_an_orchestrator_fault_but_not_a_node_fault() -> None:
    fleet_alert = alert("QfleetSLOBurnRate", 22, 30, slo="orchestrator-latency")
    orch = run([fault("f3", "orchestrator", 20, 10, kind="F3")], [fleet_alert])
    assert orch.faults[0].detected and orch.faults[0].localized and orch.passed
    node = run([fault("t2", "qpu-b", 20, 10)], [fleet_alert])
    assert not node.faults[0].detected and node.false_positives == ("slo:orchestrator-latency@1320s",)
    # ... and a node alert does not locate an orchestrator fault.
    assert not run([fault("f3", "orchestrator", 20, 10, kind="F3")],
                   [alert("QfleetT2Drop", 22, 30, node="qpu-b")]).faults[0].detected


def test_locating_links_cycles_and_segments() -> None:
    link = fault("cut", "qpu-b~qpu-c", 0, 10, kind="F1")
    assert locate({"link": "qpu-b~qpu-c"}, link, HW) == "exact"
    assert locate({"link": "qpu-c~qpu-b"}, link, HW) == "exact"        # the same link, ends swapped
    assert locate({"node": "qpu-c"}, link, HW) == "exact"               # a node at one end
    assert locate({"link": "qpu-a~qpu-b"}, link, HW) == "exact"         # touches an end
    assert locate({"node": "qpu-d"}, link, HW) is None
    assert locate({"hardware_type": "nv-centre"}, link, HW) == "segment"  # qpu-c's type
    cycle = fault("dl", "qpu-a", 0, 10, kind="F7", nodes=("qpu-a", "qpu-c"))
    assert locate({"node": "qpu-c"}, cycle, HW) == "exact" and locate({"node": "qpu-b"}, cycle, HW) is None
    assert locate({}, cycle, HW) is None


def test_detection_needs_the_window_and_a_listed_name() -> None:
    f = fault("t2", "qpu-b", 20, 30)
    late = alert("QfleetT2Drop", 31, 40, node="qpu-b")  # 11 min after the start: outside a 10 min window
    card = run([f], [late])
    assert not card.faults[0].detected and card.false_positives == ()  # still its doing: attributed, not false
    assert card.faults[0].alerts == ("QfleetT2Drop",)
    early = alert("QfleetT2Drop", 19, 40, node="qpu-b")  # started before the fault
    assert not run([f], [early]).faults[0].detected
    named = run([f], [alert("QfleetOther", 21, 40, node="qpu-b")], [Expectation(fault="t2", alerts=("QfleetT2Drop",))])
    assert not named.faults[0].detected and named.false_positives == ()


def test_grace_bounds_what_a_fault_explains() -> None:
    f = fault("t2", "qpu-b", 20, 20)  # ends at minute 40
    inside = alert("QfleetT2Drop", 55, 60, node="qpu-b")   # starts exactly at end + 15 min
    outside = alert("QfleetT2Drop", 56, 60, node="qpu-b")
    assert run([f], [inside]).false_positives == ()
    assert len(run([f], [outside]).false_positives) == 1
    assert len(run([f], [inside], grace_ns=5 * MIN).false_positives) == 1
    ended_at_start = alert("QfleetT2Drop", 10, 20, node="qpu-b")  # resolved as the fault began: no overlap
    assert len(run([f], [ended_at_start]).false_positives) == 1


def test_precision_recall_and_per_day_arithmetic() -> None:
    faults = [fault("a", "qpu-a", 10, 10), fault("b", "qpu-c", 60, 10), fault("c", "qpu-d", 120, 10)]
    alerts = [
        alert("QfleetT2Drop", 12, 25, node="qpu-a"),                      # true (a)
        alert("QfleetReadoutDrift", 62, 70, severity="ticket", node="qpu-c"),  # true (b)
        alert("QfleetT2Drop", 63, 70, node="qpu-a"),                      # false page
        alert("QfleetX", 100, 101, severity="ticket", node="qpu-b"),      # false ticket
        alert("QfleetY", 150, 160, severity="ticket"),                    # false ticket (fleet-wide)
    ]
    card = run(faults, alerts, hours=6, allowed_false_positives=3)
    # precision 2 true / 5 alerts; recall 2 detected / 3 faults; a 6 h run is 1/4 day.
    assert card.precision == pytest.approx(2 / 5) and card.recall == pytest.approx(2 / 3)
    assert (card.false_pages, card.false_tickets) == (1, 2)
    j = card.to_json()
    assert j["false_pages_per_day"] == 4.0 and j["false_tickets_per_day"] == 8.0
    assert not card.passed  # fault c was not detected
    assert [f["detected"] for f in j["faults"]] == [True, True, False]


def test_notifications_incidents_and_receivers_are_attributed_through_alerts() -> None:
    f1, f2 = fault("a", "qpu-a", 10, 10), fault("b", "qpu-c", 60, 10)
    a1 = alert("QfleetT2Drop", 12, 25, node="qpu-a")
    a2 = alert("QfleetT2Drop", 62, 70, node="qpu-c")
    fp = alert("QfleetZ", 150, 155, node="qpu-d")
    k = [(a.fingerprint, a.starts_at) for a in (a1, a2, fp)]
    deliveries = [Delivery("pages", (k[0],)), Delivery("pages", (k[0],)), Delivery("tickets", (k[1],)),
                  Delivery("pages", (k[2],))]
    incidents = [IncidentRecord("i1", a1.starts_at, "page", (k[0],)), IncidentRecord("i2", fp.starts_at, "page",
                                                                                     (k[2],))]
    card = run([f1, f2], [a1, a2, fp], deliveries=deliveries, incidents=incidents, allowed_false_positives=1)
    a, b = card.faults
    assert (a.notifications, a.incidents, a.receivers) == (2, 1, ("pages",))
    assert (b.notifications, b.incidents, b.receivers) == (1, 0, ("tickets",))
    j = card.to_json()
    # 4 notifications and 2 incidents in all, over 2 faults.
    assert (j["notifications"], j["notifications_per_fault"], j["incidents"], j["incidents_per_fault"]) == (4, 2.0, 2, 1.0)
    assert card.passed
    wrong = run([f1], [a1], [Expectation(fault="a", receiver="tickets")], deliveries=deliveries[:1])
    assert "did not reach tickets" in wrong.faults[0].why


def test_budget_share_of_the_period_by_hand() -> None:
    # 99.9 %, 30 d; a 3 h game day with 10,000 events, 50 bad. bad / ((1 - T) × total × P / span)
    # = 50 / (0.001 × 10,000 × 240) = 1/48; the observed burn is (50/10,000) / 0.001 = 5.
    burn = Fraction(50, 10_000) / (1 - Fraction("0.999"))
    assert burn == 5
    assert period_share(burn, 3 * 60 * MIN, 30 * DAY_NS) == Fraction(1, 48)
    # Every event bad for a whole 30-day period: burn 1000, the budget 1000 times over.
    assert period_share(Fraction(1000), 30 * DAY_NS, 30 * DAY_NS) == 1000
    # A run longer than the period is judged on one period.
    assert period_share(Fraction(2), 60 * DAY_NS, 30 * DAY_NS) == 2
    # The limit is compared exactly: 1/48 against 0.0208 (just below it) fails, against 1/48 itself passes.
    b = BudgetBurn("job-success[trapped-ion]", burn, 3 * 60 * MIN, 30 * DAY_NS, Fraction(1, 48))
    assert run([], [], budgets=[b], budget_limits={"job-success": Fraction("0.0208")}).budget_failures
    assert run([], [], budgets=[b], budget_limits={"job-success": Fraction(1, 48)}).passed
    text = run([], [], budgets=[b]).format_text()
    assert "budget burned job-success[trapped-ion]: 2.083% of its 30 d budget in 3 h (burn rate 5)" in text


def test_a_calm_day_reports_empty_ratios_and_all_fields() -> None:
    card = run([], [alert("QfleetSchedulerQueueStuck", 274, 282, node="qpu-b")], hours=6)
    assert card.recall is None and card.precision == 0.0 and card.false_pages == 1 and not card.passed
    j = card.to_json()
    assert j["notifications_per_fault"] is None and j["false_pages_per_day"] == 4.0 and j["grace_s"] == 900
    text = card.format_text()
    assert "FAILED" in text and "false positives: 1" in text and "QfleetSchedulerQueueStuck[qpu-b]@16440s" in text
    assert "grace 900 s" in text and "recall -" in text
    assert run([], [], hours=6).passed
