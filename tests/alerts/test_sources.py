"""Alert sources over a real store filled by the real simulator: each direct rule fires for the fault it is
for (and only on its target), nothing fires on a calm fleet, ``for`` delays and continuity are honoured by
AlertState, and SLO burn conditions become QfleetSLOBurnRate alerts."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.rules import (
    AlertRule,
    evaluate_rules,
    load_rules,
    sync_rules,
)
from qfleet.alerts.sources import SLO_ALERT_NAME, AlertState, AlertStateError, slo_alerts
from qfleet.collector import Store, open_engine, upgrade
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.slo.evaluate import evaluate_store
from qfleet.slo.model import SLO, AlertPolicy, GaugeThresholdIndicator, MetricRatioIndicator, Pair, Period
from qfleet.slo.sli import SliSource
from qfleet.units import NS

MIN, H, DAY = 60 * NS, 3600 * NS, 86400 * NS

# Staggered so that no fault masks another (a deadlock of qpu-c also holds qpu-b's and qpu-d's qubits).
FAULTS = [
    Fault(id="cut", kind=FaultKind.F1, target="qpu-a~qpu-b", start_ns=20 * MIN, duration_ns=15 * MIN, magnitude=0.0),
    Fault(id="rogue", kind=FaultKind.F8, target="qpu-b", start_ns=20 * MIN, duration_ns=10 * MIN, magnitude=0.5,
          principal="mallory"),
    Fault(id="drift", kind=FaultKind.F4, target="qpu-a", start_ns=20 * MIN, duration_ns=20 * MIN, magnitude=0.1),
    Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=45 * MIN, duration_ns=15 * MIN),
    Fault(id="dl", kind=FaultKind.F7, target="qpu-c", start_ns=70 * MIN, duration_ns=15 * MIN),
]


def simulate(engine: Engine, faults: list[Fault], minutes: int, seed: int = 4) -> Simulation:
    fleet = load_fleet(builtin_fleet_path("line"))
    sim = Simulation(fleet, FaultSchedule(tuple(faults)), RunConfig(duration_ns=minutes * MIN, seed=seed))
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
    for step in sim.steps():
        sink.write(step)
    sink.close()
    return sim


def _run(tmp: Path, faults: list[Fault], minutes: int) -> Iterator[tuple[Engine, Simulation]]:
    engine = open_engine(f"sqlite:///{tmp / 'fleet.db'}")
    upgrade(engine)
    sim = simulate(engine, faults, minutes)
    yield engine, sim
    engine.dispose()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Simulation]]:
    yield from _run(tmp_path_factory.mktemp("faulty"), FAULTS, 90)


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Simulation]]:
    yield from _run(tmp_path_factory.mktemp("calm"), [], 60)


def _where(a: Alert) -> str:
    return a.label("node") or a.label("link") or a.label("tenant") or a.label("indicator")


# -- the direct rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "minute", "target", "fault"), [
    ("QfleetEntanglementCollapse", 25, "qpu-a~qpu-b", "F1 link drop"),
    ("QfleetUnauthorizedCommands", 25, "qpu-b", "F8 unauthorized commands"),
    # The calibration estimates are stale until the next calibration (hours away): the canaries on qpu-a show it.
    ("QfleetNodeCanaryFailing", 25, "qpu-a", "F4 readout drift"),
    ("QfleetNodeHeartbeatMissing", 50, "qpu-d", "F5 outage"),
])
def test_each_rule_fires_for_its_fault_on_its_target_only(faulty: tuple[Engine, Simulation], rule: str,
                                                          minute: int, target: str, fault: str) -> None:
    engine, sim = faulty
    rules = load_rules()
    fired = [a for a in evaluate_rules(rules, engine, sim.config.start_ns + minute * MIN)
             if a.label("alertname") == rule]
    assert [_where(a) for a in fired] == [target], fault
    # Nothing of this rule before any fault started.
    assert not [a for a in evaluate_rules(rules, engine, sim.config.start_ns + 15 * MIN)
                if a.label("alertname") == rule]


def test_rule_labels_and_annotations_name_the_place_team_and_runbook(faulty: tuple[Engine, Simulation]) -> None:
    engine, sim = faulty
    by_name = {a.label("alertname"): a for a in evaluate_rules(load_rules(), engine, sim.config.start_ns + 25 * MIN)}
    sec = by_name["QfleetUnauthorizedCommands"]
    assert dict(sec.labels) == {"alertname": "QfleetUnauthorizedCommands", "severity": "security",
                                "team": "security", "node": "qpu-b", "principal": "mallory",
                                "hardware_type": "trapped-ion"}
    ann = dict(sec.annotations)
    assert ann["runbook_url"] == "runbooks/F8-unauthorized-commands.md"
    assert "mallory" in ann["summary"] and "qpu-b" in ann["description"] and "{{" not in ann["description"]
    link = by_name["QfleetEntanglementCollapse"]
    assert link.label("severity") == "page" and link.label("team") == "hardware"
    assert dict(link.annotations)["runbook_url"] == "runbooks/F1-entanglement-loss.md"
    assert by_name["QfleetNodeCanaryFailing"].label("severity") == "ticket"
    assert sec.starts_at == sim.config.start_ns + 25 * MIN


def test_rules_resolve_once_the_fault_is_over(faulty: tuple[Engine, Simulation]) -> None:
    engine, sim = faulty
    # F5 on qpu-d ends at 60 min; F7 at 85 min; everything else earlier.
    assert evaluate_rules(load_rules(), engine, sim.config.start_ns + 65 * MIN) == []
    assert evaluate_rules(load_rules(), engine, sim.config.start_ns + 89 * MIN) == []


def test_no_rule_fires_on_a_calm_fleet(calm: tuple[Engine, Simulation]) -> None:
    engine, sim = calm
    rules = load_rules()
    false_positives = [(m, a.label("alertname"), _where(a)) for m in range(1, 61)
                       for a in evaluate_rules(rules, engine, sim.config.start_ns + m * MIN)]
    assert false_positives == []


def test_for_delays_firing_keeps_starts_at_and_resolves_with_ends_at(faulty: tuple[Engine, Simulation]) -> None:
    engine, sim = faulty
    rules = [r for r in load_rules() if r.name == "QfleetNodeHeartbeatMissing"]
    assert rules[0].for_ns == MIN
    state = AlertState(engine)
    t0 = sim.config.start_ns
    events: list[tuple[int, str, int, int | None]] = []
    for m in range(40, 66):
        for a in sync_rules(rules, engine, state, t0 + m * MIN, source="heartbeat-rules"):
            events.append((m, _where(a), (a.starts_at - t0) // MIN,
                           None if a.ends_at is None else (a.ends_at - t0) // MIN))
        if m == 46:  # node_up reads 0 from the 46th minute on: active, but pending for its 1m `for`
            assert state.active() == [] and [_where(a) for a in state.pending()] == ["qpu-d"]
        if m == 50:  # continuing: the original starts_at, still one alert
            [a] = state.active()
            assert a.starts_at == t0 + 47 * MIN and a.ends_at is None
    assert events == [(47, "qpu-d", 47, None), (61, "qpu-d", 47, 61)]
    assert state.active() == [] and state.pending() == []


def test_a_condition_shorter_than_for_never_fires(faulty: tuple[Engine, Simulation]) -> None:
    engine, sim = faulty
    [rule] = [r for r in load_rules() if r.name == "QfleetUnauthorizedCommands"]
    slow = AlertRule(name=rule.name, kind=rule.kind, params=rule.params, for_ns=60 * MIN, labels=rule.labels,
                     annotations=rule.annotations)
    state = AlertState(engine)
    changed = [a for m in range(15, 50) for a in sync_rules([slow], engine, state, sim.config.start_ns + m * MIN,
                                                                source="slow-rules")]
    assert changed == [] and state.active() == [] and state.pending() == []


# -- AlertState ------------------------------------------------------------------------------------------------


def _a(**labels: str) -> Alert:
    return Alert(labels=labels_key({"alertname": "X", **labels}), annotations=(("summary", "s"),), starts_at=0)


def test_alert_state_continuity_resolution_refire_and_restart(engine: Engine) -> None:
    state = AlertState(engine)
    a, b = _a(node="qpu-a"), _a(node="qpu-b")
    assert [x.starts_at for x in state.sync([a, b], 100, source="rules")] == [100, 100]
    assert state.sync([a, b], 200, source="rules") == []  # unchanged: nothing to report
    [gone] = state.sync([a], 300, source="rules")
    assert gone.fingerprint == b.fingerprint and gone.starts_at == 100 and gone.ends_at == 300
    assert not gone.firing_at(300) and gone.firing_at(299)
    assert [x.fingerprint for x in state.resolved_since(300)] == [b.fingerprint]
    # Another source's alerts are not touched by this source's sync.
    state.sync([_a(node="qpu-z")], 300, source="slo")
    assert state.sync([a], 400, source="rules") == []
    # A restart (a new AlertState on the same store) keeps the original starts_at.
    again = AlertState(engine)
    assert sorted((x.label("node"), x.starts_at) for x in again.active()) == [("qpu-a", 100), ("qpu-z", 300)]
    # A resolved alert that fires again is a new alert: a fresh starts_at.
    [back] = again.sync([a, b], 500, source="rules")
    assert back.fingerprint == b.fingerprint and back.starts_at == 500 and back.ends_at is None
    assert again.resolved_since(300) == []  # b fires again: no longer resolved
    # Annotation changes are stored and reported, starts_at kept.
    [upd] = again.sync([a, Alert(labels=b.labels, annotations=(("summary", "new"),), starts_at=0)], 600,
                       source="rules")
    assert dict(upd.annotations) == {"summary": "new"} and upd.starts_at == 500


def test_alert_state_rejects_bad_arguments(sqlite_engine: Engine) -> None:
    state = AlertState(sqlite_engine)
    with pytest.raises(AlertStateError, match="source is empty"):
        state.sync([], 0, source="")
    with pytest.raises(AlertStateError, match="must be integer ns >= 0"):
        state.sync([_a()], 0, source="x", for_ns={"X": -1})
    with pytest.raises(AlertStateError, match="timeout_ns=0 must be integer ns > 0"):
        state.expire(0, 0)


def test_alerts_a_source_stops_reporting_resolve_after_the_timeout(engine: Engine) -> None:
    """Alertmanager's resolve_timeout: an alert its source no longer refreshes ends that long after its last
    report. An alert that keeps being reported never times out; a pending one is dropped without firing."""
    timeout = 5 * MIN
    state = AlertState(engine)
    a, b = _a(node="qpu-a"), _a(node="qpu-b")
    state.sync([a, _a(alertname="P", node="qpu-p")], 0, source="slo", for_ns={"P": 10 * MIN})  # P is pending
    state.sync([b], 0, source="rules")
    assert len(state.pending()) == 1
    for t in range(MIN, 5 * MIN, MIN):   # the rules keep reporting b; the SLO source has stopped
        state.sync([b], t, source="rules")
        assert state.expire(t, timeout) == []
    [gone] = state.expire(5 * MIN, timeout)
    assert gone.fingerprint == a.fingerprint and (gone.starts_at, gone.ends_at) == (0, 5 * MIN)
    assert [x.fingerprint for x in state.active()] == [b.fingerprint]
    assert state.pending() == []                       # the pending one was refreshed last at 0: dropped
    assert [x.fingerprint for x in state.resolved_since(0)] == [a.fingerprint]
    assert state.expire(6 * MIN, timeout) == []        # resolved once
    # Expired late (the service was down): the alert still ends timeout after its last report.
    [late] = state.expire(20 * MIN, timeout)
    assert late.fingerprint == b.fingerprint and late.ends_at == 4 * MIN + timeout
    # Reported again, it fires anew.
    [back] = state.sync([a], 21 * MIN, source="slo")
    assert back.starts_at == 21 * MIN and back.ends_at is None


# -- SLO burn-rate alerts --------------------------------------------------------------------------------------

POLICY = AlertPolicy(name="sre_workbook_30d", pairs=(
    Pair(name="page_fast", severity="page", long_ns=H, short_ns=5 * MIN, budget_fraction=Fraction(2, 100)),
    Pair(name="page_slow", severity="page", long_ns=6 * H, short_ns=30 * MIN, budget_fraction=Fraction(5, 100)),
    Pair(name="ticket_fast", severity="ticket", long_ns=DAY, short_ns=2 * H, budget_fraction=Fraction(10, 100))))
SLOS = [
    SLO(name="node-up", service="fleet", target=Fraction("0.995"), period=Period(rolling_ns=30 * DAY),
        budgeting="Occurrences", policy=POLICY, group_by=("node_id",), runbook="runbooks/F5-node-outage.md",
        labels=(("team", "hardware"),),
        indicator=GaugeThresholdIndicator(metric="qfleet_node_up", op="gte", threshold=Fraction(1))),
    SLO(name="entanglement-success", service="network", target=Fraction("0.99"), period=Period(rolling_ns=30 * DAY),
        budgeting="Occurrences", policy=POLICY, group_by=("link_id",),
        indicator=MetricRatioIndicator(metric="qfleet_entanglement_requests_total",
                                       good_match=(("qfleet.outcome", "success"),))),
]


def test_slo_burn_conditions_become_alerts_per_slo_segment_and_severity(faulty: tuple[Engine, Simulation]) -> None:
    engine, sim = faulty
    source = SliSource(engine)
    at = sim.config.start_ns + 55 * MIN   # 10 minutes into the qpu-d outage
    alerts = slo_alerts(evaluate_store(SLOS, source, at), SLOS, at)
    keys = sorted((a.label("slo"), a.label("severity"), a.label("node") or a.label("link"))
                  for a in alerts)
    assert ("node-up", "page", "qpu-d") in keys
    assert not [k for k in keys if k[0] == "node-up" and k[2] != "qpu-d"]  # the healthy nodes do not alert
    page = next(a for a in alerts if a.label("slo") == "node-up" and a.label("severity") == "page")
    assert dict(page.labels) == {"alertname": SLO_ALERT_NAME, "slo": "node-up", "severity": "page",
                                 "service": "fleet", "team": "hardware", "node": "qpu-d"}
    ann = dict(page.annotations)
    assert ann["runbook_url"] == "runbooks/F5-node-outage.md" and page.starts_at == at
    assert "page_fast: burn" in ann["description"] and "> threshold 14.4" in ann["description"]
    # Nothing burns before the first fault.
    before = sim.config.start_ns + 15 * MIN
    assert slo_alerts(evaluate_store(SLOS, source, before), SLOS, before) == []
    with pytest.raises(AlertStateError, match="no such SLO"):
        slo_alerts(evaluate_store(SLOS, source, at), SLOS[1:], at)


def test_coherence_window_rule_fires_for_an_f3_latency_spike(sqlite_engine: Engine) -> None:
    spike = Fault(id="slow", kind=FaultKind.F3, target="orchestrator", start_ns=10 * MIN, duration_ns=10 * MIN,
                  magnitude=0.2)
    sim = simulate(sqlite_engine, [spike], 25)
    rules = [r for r in load_rules() if r.kind == "coherence_window"]

    def indicators(minute: int) -> list[str]:
        return [a.label("indicator") for a in evaluate_rules(rules, sqlite_engine, sim.config.start_ns + minute * MIN)]

    assert indicators(9) == []
    assert indicators(15) == ["coherence_window_usage", "orchestrator_latency"]
    [a] = [a for a in evaluate_rules(rules, sqlite_engine, sim.config.start_ns + 15 * MIN)
           if a.label("indicator") == "orchestrator_latency"]
    assert dict(a.labels)["team"] == "platform"
    assert dict(a.annotations)["runbook_url"] == "runbooks/F3-classical-latency.md"
