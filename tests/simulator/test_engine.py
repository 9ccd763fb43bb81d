"""The fleet engine end to end: every fault moves the signals the physics says and nothing else, the scheduler
keeps its promises, the physics of whole jobs matches a closed form, and runs are deterministic by seed."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Calibration, Tenant, builtin_fleet_path, load_fleet
from qfleet.simulator.telemetry import SPAN_NAMES
from qfleet.units import NS

MIN = 60 * NS
T_ON, T_OFF = 10 * MIN, 30 * MIN  # every fault below is active over [10 min, 30 min) of a 40 min run


class Run:
    """A finished simulation kept in memory: spans as dicts, metric points by (name, labels) and step end."""

    def __init__(self, fleet: Any, faults: list[Fault] | None = None, *, minutes: int = 40, seed: int = 3,
                 **config: Any) -> None:
        self.sim = Simulation(fleet, FaultSchedule(tuple(faults or ())),
                              RunConfig(duration_ns=minutes * MIN, seed=seed, **config))
        self.t0 = self.sim.config.start_ns
        self.spans: list[dict[str, Any]] = []
        self.points: dict[tuple[str, tuple[tuple[str, Any], ...]], dict[int, Any]] = {}
        for step in self.sim.steps():
            cols = step.spans
            for i in range(len(cols)):
                self.spans.append({
                    "trace": cols.trace_id[i], "span": cols.span_id[i], "parent": cols.parent_span_id[i],
                    "name": cols.name[i], "start": cols.start_time_unix_nano[i], "end": cols.end_time_unix_nano[i],
                    "status": cols.status_code[i], "attrs": cols.attributes[i], "node": cols.node_id[i],
                    "link": cols.link_id[i], "job": cols.job_id[i], "run": cols.run_id[i],
                    "hardware": cols.hardware_type[i]})
            for rm in step.metrics.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        for dp in m.data.data_points:
                            key = (m.name, tuple(sorted(dp.attributes.items())))
                            self.points.setdefault(key, {})[dp.time_unix_nano - self.t0] = dp

    def series(self, name: str, **want: Any) -> dict[tuple[tuple[str, Any], ...], dict[int, Any]]:
        return {k: v for (n, k), v in self.points.items() if n == name and set(want.items()) <= set(k)}

    def value_at(self, name: str, t: int, **want: Any) -> float:
        """The last reported value of one series at or before offset ``t``."""
        [pts] = self.series(name, **want).values()
        return _value(pts[max(x for x in pts if x <= t)])

    def delta(self, name: str, lo: int, hi: int, **want: Any) -> float:
        """Increase of a cumulative counter (summed over matching series) between offsets lo and hi."""
        total = 0.0
        for pts in self.series(name, **want).values():
            before = [x for x in pts if x <= lo]
            upto = [x for x in pts if x <= hi]
            if upto:
                total += _value(pts[max(upto)]) - (_value(pts[max(before)]) if before else 0.0)
        return total

    def jobs(self, lo: int = 0, hi: int | None = None, node: str | None = None) -> list[dict[str, Any]]:
        """Job root spans that arrived in [lo, hi) (offsets), optionally touching ``node``."""
        hi = math.inf if hi is None else hi
        out = []
        for s in self.spans:
            if s["name"] == SPAN_NAMES["job"] and lo <= s["start"] - self.t0 < hi:
                if node is None or node in s["attrs"].get("qfleet.nodes", "").split(","):
                    out.append(s)
        return out


def _value(dp: Any) -> float:
    return float(dp.value) if hasattr(dp, "value") else float(dp.count)


def _hist(run: Run, name: str, lo: int, hi: int) -> tuple[float, float]:
    """(count, sum) of a cumulative histogram's observations between offsets lo and hi, over all series."""
    count = total = 0.0
    for pts in run.series(name).values():
        before = [x for x in pts if x <= lo]
        upto = [x for x in pts if x <= hi]
        if upto:
            a = pts[max(upto)]
            b = pts[max(before)] if before else None
            count += a.count - (b.count if b else 0)
            total += a.sum - (b.sum if b else 0.0)
    return count, total


def _fault(kind: FaultKind, target: str, magnitude: float = 1.0, **kw: Any) -> Fault:
    return Fault(id=f"test-{kind.value}", kind=kind, target=target, start_ns=T_ON, duration_ns=T_OFF - T_ON,
                 magnitude=magnitude, **kw)


@pytest.fixture(scope="module")
def line() -> Any:
    return load_fleet(builtin_fleet_path("line"))


@pytest.fixture(scope="module")
def baseline(line: Any) -> Run:
    return Run(line)


def _bad(jobs: list[dict[str, Any]]) -> float:
    return sum(j["attrs"]["qfleet.outcome"] != "success" for j in jobs) / max(1, len(jobs))


def _mean_fidelity(jobs: list[dict[str, Any]]) -> float:
    f = [j["attrs"]["qfleet.fidelity"] for j in jobs if "qfleet.fidelity" in j["attrs"]]
    return sum(f) / len(f)


def _same_device_gauges(a: Run, b: Run, nodes: list[str]) -> None:
    for name in ("qfleet.node.t1", "qfleet.node.t2", "qfleet.node.readout_error", "qfleet.node.gate_error",
                 "qfleet.truth.node.t1", "qfleet.truth.node.t2", "qfleet.truth.node.readout_error",
                 "qfleet.truth.node.gate_error"):
        for n in nodes:
            assert a.series(name, **{"qfleet.node.id": n}) == b.series(name, **{"qfleet.node.id": n}), (name, n)


# ---------------------------------------------------------------------------------------------------------------
# Ground truth


def test_faults_are_recorded_as_ground_truth_spans(line: Any) -> None:
    faults = [_fault(FaultKind.F1, "qpu-b~qpu-c", 0.0), _fault(FaultKind.F4, "qpu-c", 0.1)]
    run = Run(line, faults, minutes=15)
    truth = {s["attrs"]["qfleet.truth.fault.id"]: s for s in run.spans if s["name"] == SPAN_NAMES["fault"]}
    assert set(truth) == {"test-F1", "test-F4"}
    f1, f4 = truth["test-F1"], truth["test-F4"]
    assert (f1["start"] - run.t0, f1["attrs"]["qfleet.truth.fault.kind"], f1["link"], f1["node"]) == (
        T_ON, "F1", "qpu-b~qpu-c", None)
    # Clipped to the run: the fault would last until 30 min, the run ends at 15.
    assert f4["end"] - run.t0 == 15 * MIN and f4["node"] == "qpu-c" and f4["attrs"]["qfleet.truth.magnitude"] == 0.1
    [rec] = [s for s in run.spans if s["name"] == SPAN_NAMES["run"]]
    assert rec["attrs"]["qfleet.faults"] == 2 and rec["run"] == run.sim.run_id


# ---------------------------------------------------------------------------------------------------------------
# F1-F8: the right signals move, the others do not


def test_f1_link_drop_times_out_that_link_only(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F1, "qpu-b~qpu-c", 0.0)])
    lk = {"qfleet.link.id": "qpu-b~qpu-c"}
    assert run.value_at("qfleet.truth.link.heralding_probability", 20 * MIN, **lk) == 0.0
    assert run.value_at("qfleet.truth.link.heralding_probability", 39 * MIN, **lk) > 0
    # Measured: attempts go on (the retry budget), no herald comes back.
    assert run.delta("qfleet.entanglement.attempts", T_ON + MIN, T_OFF, **lk) > 0
    assert run.delta("qfleet.entanglement.heralds", T_ON + MIN, T_OFF, **lk) == 0
    assert baseline.delta("qfleet.entanglement.heralds", T_ON + MIN, T_OFF, **lk) > 0
    timeouts = run.delta("qfleet.entanglement.requests", T_ON, T_OFF, **lk, **{"qfleet.outcome": "timeout"})
    assert timeouts > 20 and baseline.delta("qfleet.entanglement.requests", T_ON, T_OFF, **lk,
                                            **{"qfleet.outcome": "timeout"}) == 0
    for other in ("qpu-a~qpu-b", "qpu-c~qpu-d"):
        assert run.series("qfleet.truth.link.heralding_probability", **{"qfleet.link.id": other}) == (
            baseline.series("qfleet.truth.link.heralding_probability", **{"qfleet.link.id": other}))
    failed = {s["trace"] for s in run.spans if s["name"] == SPAN_NAMES["entanglement"] and s["status"] == 2
              and s["link"] == "qpu-b~qpu-c" and T_ON <= s["start"] - run.t0 < T_OFF}
    assert failed and not {s["trace"] for s in run.spans if s["name"] == SPAN_NAMES["entanglement"]
                           and s["status"] == 2 and s["link"] != "qpu-b~qpu-c"}
    _same_device_gauges(run, baseline, ["qpu-a", "qpu-b", "qpu-c", "qpu-d"])


def test_f2_thermal_event_divides_t2_and_hurts_jobs_on_that_node(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F2, "qpu-b", 20.0)])
    node = {"qfleet.node.id": "qpu-b"}
    # On an ion trap F2 is motional heating: the true two-qubit gate error rises 20-fold (docs/faults.md, F2).
    g2 = {**node, "qfleet.qubits": 2}
    assert run.value_at("qfleet.truth.node.gate_error", 20 * MIN, **g2) == pytest.approx(
        baseline.value_at("qfleet.truth.node.gate_error", 20 * MIN, **g2) * 20)
    assert run.value_at("qfleet.truth.node.gate_error", 35 * MIN, **g2) == baseline.value_at(
        "qfleet.truth.node.gate_error", 35 * MIN, **g2)
    # Measured: the run-start calibration's estimate until the next calibration (6 h away), stale.
    assert run.value_at("qfleet.node.gate_error", 20 * MIN, **g2) == baseline.value_at(
        "qfleet.node.gate_error", 20 * MIN, **g2)
    _same_device_gauges(run, baseline, ["qpu-a", "qpu-c", "qpu-d"])
    hit, calm = run.jobs(T_ON, T_OFF, node="qpu-b"), baseline.jobs(T_ON, T_OFF, node="qpu-b")
    # Each two-qubit gate on qpu-b now fails 8/15 * (0.02 - 0.001) ~ 0.010 more often (depolarising, physics.md).
    assert _bad(hit) > _bad(calm) + 0.05 or _mean_fidelity(hit) < _mean_fidelity(calm) - 0.005
    # Jobs that never touch qpu-b see no difference beyond noise.
    far, far0 = run.jobs(T_ON, T_OFF, node="qpu-d"), baseline.jobs(T_ON, T_OFF, node="qpu-d")
    far = [j for j in far if "qpu-b" not in j["attrs"]["qfleet.nodes"]]
    far0 = [j for j in far0 if "qpu-b" not in j["attrs"]["qfleet.nodes"]]
    assert abs(_bad(far) - _bad(far0)) < 0.1


def test_f3_orchestrator_overload_raises_latencies_and_coherence_usage(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F3, "orchestrator", 0.05)])
    for name in ("qfleet.feedforward.latency", "qfleet.orchestrator.latency"):
        n, total = _hist(run, name, T_ON + MIN, T_OFF)
        n0, total0 = _hist(baseline, name, T_ON + MIN, T_OFF)
        assert total / n > 0.04 > 10 * total0 / n0, name
    n, use = _hist(run, "qfleet.coherence_window.usage", T_ON + MIN, T_OFF)
    n0, use0 = _hist(baseline, "qfleet.coherence_window.usage", T_ON + MIN, T_OFF)
    assert use / n > 3 * use0 / n0
    _same_device_gauges(run, baseline, ["qpu-a", "qpu-b", "qpu-c", "qpu-d"])
    after, after0 = _hist(run, "qfleet.feedforward.latency", T_OFF + MIN, 40 * MIN), _hist(
        baseline, "qfleet.feedforward.latency", T_OFF + MIN, 40 * MIN)
    assert after[1] / after[0] == pytest.approx(after0[1] / after0[0], rel=0.5)  # back to normal


def test_f4_readout_drift_raises_readout_error_and_canary_variance(line: Any) -> None:
    canary = replace(line, tenants=(Tenant(id="canary", weight=1.0, priority=1, rate_per_s=2.0,
                                           fidelity_target=0.5, mix={"canary": 1.0}, shots=64),))
    base = Run(canary)
    run = Run(canary, [_fault(FaultKind.F4, "qpu-c", 0.1)])
    node = {"qfleet.node.id": "qpu-c"}
    for state in (0, 1):
        lab = {**node, "qfleet.state": state}
        assert run.value_at("qfleet.truth.node.readout_error", 20 * MIN, **lab) == pytest.approx(
            base.value_at("qfleet.truth.node.readout_error", 20 * MIN, **lab) + 0.1)
    _same_device_gauges(run, base, ["qpu-a", "qpu-b", "qpu-d"])
    assert _mean_fidelity(run.jobs(T_ON, T_OFF, node="qpu-c")) < _mean_fidelity(
        base.jobs(T_ON, T_OFF, node="qpu-c")) - 0.1
    var = [run.value_at("qfleet.measurement.variance", t, **node) for t in range(12 * MIN, T_OFF, MIN)]
    var0 = [base.value_at("qfleet.measurement.variance", t, **node) for t in range(12 * MIN, T_OFF, MIN)]
    assert sum(var) / len(var) > 2 * sum(var0) / len(var0)


def test_f5_outage_stops_heartbeats_and_jobs_fail_over(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F5, "qpu-d")])
    node = {"qfleet.node.id": "qpu-d"}
    assert run.value_at("qfleet.node.up", 20 * MIN, **node) == 0.0
    assert run.value_at("qfleet.node.up", 35 * MIN, **node) == 1.0
    assert run.delta("qfleet.node.heartbeats", T_ON + MIN, T_OFF - MIN, **node) == 0
    assert baseline.delta("qfleet.node.heartbeats", T_ON + MIN, T_OFF - MIN, **node) > 0
    for other in ("qpu-a", "qpu-b", "qpu-c"):
        assert run.series("qfleet.node.heartbeats", **{"qfleet.node.id": other}) == baseline.series(
            "qfleet.node.heartbeats", **{"qfleet.node.id": other})
    # Nothing is started on the dead node; what was running there failed.
    started = [s for s in run.spans if s["name"] == SPAN_NAMES["entanglement"] and s["node"] in ("qpu-d",)
               and T_ON < s["start"] - run.t0 < T_OFF]
    assert started == []
    # Jobs fail over to the other nodes; a 4-node GHZ needs the whole line, so it fails instead.
    lost = [j for j in run.jobs() if j["attrs"]["qfleet.outcome"] == "node_down"]
    assert all("qpu-d" in j["attrs"].get("qfleet.nodes", "qpu-d") for j in lost)
    ghz4 = [j for j in run.jobs(T_ON + MIN, T_OFF) if j["attrs"].get("qfleet.ghz.nodes") == 4]
    ghz4_0 = [j for j in baseline.jobs(T_ON + MIN, T_OFF) if j["attrs"].get("qfleet.ghz.nodes") == 4]
    assert ghz4 and all(j["attrs"]["qfleet.outcome"] == "node_down" for j in ghz4)
    assert _bad(ghz4_0) < 0.5
    others = [j for j in run.jobs(T_ON + MIN, T_OFF) if j["attrs"].get("qfleet.ghz.nodes") != 4]
    assert _bad(others) < 0.2


def test_f6_crosstalk_lowers_fidelity_near_the_node_only(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F6, "qpu-a", 0.3)])
    _same_device_gauges(run, baseline, ["qpu-a", "qpu-b", "qpu-c", "qpu-d"])
    near, near0 = run.jobs(T_ON, T_OFF, node="qpu-a"), baseline.jobs(T_ON, T_OFF, node="qpu-a")
    assert _mean_fidelity(near) < _mean_fidelity(near0) - 0.05
    # qpu-d is two links away from qpu-a: not a neighbour, no crosstalk.
    far = [j for j in run.jobs(T_ON, T_OFF, node="qpu-d") if not {"qpu-a", "qpu-b"} & set(
        j["attrs"]["qfleet.nodes"].split(","))]
    far0 = [j for j in baseline.jobs(T_ON, T_OFF, node="qpu-d") if not {"qpu-a", "qpu-b"} & set(
        j["attrs"]["qfleet.nodes"].split(","))]
    assert abs(_mean_fidelity(far) - _mean_fidelity(far0)) < 0.03


def test_f7_deadlock_leaves_jobs_pending_until_they_time_out(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F7, "qpu-b")])
    ages = [run.value_at("qfleet.scheduler.queue.age", t, **{"qfleet.tenant": "research"})
            for t in range(T_ON + 2 * MIN, T_OFF, MIN)]
    ages0 = [baseline.value_at("qfleet.scheduler.queue.age", t, **{"qfleet.tenant": "research"})
             for t in range(T_ON + 2 * MIN, T_OFF, MIN)]
    assert max(ages) > 10 and max(ages) > 5 * max(ages0)
    out = Counter(j["attrs"]["qfleet.outcome"] for j in run.jobs(T_ON, T_OFF))
    out0 = Counter(j["attrs"]["qfleet.outcome"] for j in baseline.jobs(T_ON, T_OFF))
    assert out["queue_timeout"] > 20 and out0["queue_timeout"] < 5
    for n in ("qpu-a", "qpu-b", "qpu-c", "qpu-d"):  # the nodes are up: only the scheduler is stuck
        assert all(_value(dp) == 1.0 for dp in run.series("qfleet.node.up", **{"qfleet.node.id": n}).popitem()[1]
                   .values())
    _same_device_gauges(run, baseline, ["qpu-a", "qpu-b", "qpu-c", "qpu-d"])
    late = Counter(j["attrs"]["qfleet.outcome"] for j in run.jobs(T_OFF + 2 * MIN, 40 * MIN))
    assert late["queue_timeout"] <= 2  # recovered once the cycle was broken


def test_f8_unauthorized_commands_are_audited_and_hit_jobs(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F8, "qpu-a", 0.5, principal="intruder-7")])
    bad = {"qfleet.node.id": "qpu-a", "qfleet.principal": "intruder-7", "qfleet.authorized": False}
    n = run.delta("qfleet.audit.events", 0, 40 * MIN, **bad)
    expected = 0.5 * (T_OFF - T_ON) / NS  # Poisson(300)
    assert abs(n - expected) < 5 * math.sqrt(expected)
    assert baseline.series("qfleet.audit.events", **{"qfleet.authorized": False}) == {}
    spans = [s for s in run.spans if s["name"] == SPAN_NAMES["command"] and s["status"] == 2]
    assert len(spans) == n and all(T_ON <= s["start"] - run.t0 < T_OFF and s["node"] == "qpu-a" for s in spans)
    _same_device_gauges(run, baseline, ["qpu-a", "qpu-b", "qpu-c", "qpu-d"])


# ---------------------------------------------------------------------------------------------------------------
# Scheduler, calibration, physics


def _one_link_fleet(line: Any, tenants: tuple[Tenant, ...], **changes: Any) -> Any:
    nodes = tuple(n for n in line.nodes if n.id in ("qpu-a", "qpu-b"))
    links = tuple(lk for lk in line.links if lk.id == "qpu-a~qpu-b")
    return replace(line, nodes=nodes, links=links, tenants=tenants, **changes)


def test_weighted_fair_share_and_priority_under_saturation(line: Any) -> None:
    mix = {"teleport": 1.0}
    tenants = (Tenant(id="heavy", weight=3.0, priority=0, rate_per_s=20.0, fidelity_target=0.5, mix=mix),
               Tenant(id="light", weight=1.0, priority=0, rate_per_s=20.0, fidelity_target=0.5, mix=mix),
               Tenant(id="vip", weight=1.0, priority=5, rate_per_s=0.5, fidelity_target=0.5, mix=mix))
    run = Run(_one_link_fleet(line, tenants), minutes=10)
    served = Counter(j["attrs"]["qfleet.tenant"] for j in run.jobs(2 * MIN, 10 * MIN)
                     if j["attrs"]["qfleet.outcome"] != "queue_timeout")
    assert 2.4 < served["heavy"] / served["light"] < 3.6
    waits = {t: [j["attrs"]["qfleet.queue.wait_s"] for j in run.jobs(2 * MIN, 10 * MIN)
                 if j["attrs"]["qfleet.tenant"] == t and j["attrs"]["qfleet.outcome"] != "queue_timeout"]
             for t in ("vip", "light")}
    assert sum(waits["vip"]) / len(waits["vip"]) < 0.2 * sum(waits["light"]) / len(waits["light"])
    timed_out = [j for j in run.jobs() if j["attrs"]["qfleet.outcome"] == "queue_timeout"]
    assert timed_out and all(j["end"] - j["start"] == 30 * NS for j in timed_out)


def test_calibration_windows_are_announced_and_run_no_jobs(line: Any) -> None:
    fleet = replace(line, calibration=Calibration(interval_s=600.0, duration_s=120.0))
    run = Run(fleet, minutes=30)
    windows = [s for s in run.spans if s["name"] == SPAN_NAMES["maintenance"]]
    assert len(windows) >= 8 and {w["node"] for w in windows} == {"qpu-a", "qpu-b", "qpu-c", "qpu-d"}
    touched = {j["trace"]: set(j["attrs"]["qfleet.nodes"].split(",")) for j in run.jobs()}
    for w in windows:
        assert w["end"] - w["start"] == 120 * NS
        inside = [s for s in run.spans if s["name"] == SPAN_NAMES["entanglement"]
                  and w["node"] in touched[s["trace"]] and w["start"] < s["start"] < w["end"]]
        assert inside == [], w
    cals = run.delta("qfleet.calibrations", 0, 30 * MIN)
    assert cals == len([w for w in windows if w["end"] - run.t0 <= 30 * MIN])


def _canary_oracle(p2: float, r: float) -> float:
    """P(both Bell checks pass) with DEPOLARIZE2(p2) and independent X and Z readout flips (r) on each qubit."""
    total = 0.0
    paulis = list(itertools.product((0, 1), repeat=4))  # x0 z0 x1 z1
    for gate in paulis:
        pg = (1 - p2) if gate == (0, 0, 0, 0) else p2 / 15
        for flips in paulis:
            pf = math.prod(r if b else 1 - r for b in flips)
            x0, z0, x1, z1 = (a ^ b for a, b in zip(gate, flips, strict=True))
            if x0 == x1 and z0 == z1:  # commutes with X0X1 and Z0Z1
                total += pg * pf
    return total


def test_canary_fidelity_matches_the_closed_form(line: Any) -> None:
    node = line.node("qpu-a")
    tenants = (Tenant(id="canary", weight=1.0, priority=0, rate_per_s=5.0, fidelity_target=0.5,
                      mix={"canary": 1.0}, shots=64),)
    fleet = _one_link_fleet(line, tenants, calibration=Calibration(
        interval_s=1e6, duration_s=1.0, readout_drift_per_sqrt_h=0.0))
    run = Run(fleet, minutes=10)
    measured = [s["attrs"]["qfleet.passed"] for s in run.spans if s["name"] == SPAN_NAMES["measurement"]]
    shots = 64 * len(measured)
    f = sum(measured) / shots
    r = (node.readout_error_0 + node.readout_error_1) / 2
    predicted = _canary_oracle(node.gate_error_2q, r)
    assert shots >= 100_000
    assert abs(f - predicted) < 4 * math.sqrt(predicted * (1 - predicted) / shots) + 1e-4, (f, predicted)


def _with_1q_gate_time(fleet: Any, seconds: float) -> Any:
    return replace(fleet, nodes=tuple(replace(n, gate_time_1q_s=seconds) for n in fleet.nodes))


@pytest.mark.parametrize("gate_time_1q_s", [26.6e-6, 1e-3])
def test_single_qubit_gate_time_lengthens_canary_shots_as_the_formula_says(line: Any, gate_time_1q_s: float) -> None:
    # A canary shot makes a local Bell pair (Hadamard, CNOT) and reads both halves; a job that did not queue lasts
    # one orchestrator decision (service at its capacity plus processing) and its shots, back to back.
    tenants = (Tenant(id="canary", weight=1.0, priority=0, rate_per_s=2.0, fidelity_target=0.5,
                      mix={"canary": 1.0}, shots=64),)
    fleet = _with_1q_gate_time(_one_link_fleet(line, tenants), gate_time_1q_s)
    run = Run(fleet, minutes=5)
    node, cl = fleet.node("qpu-a"), fleet.classical
    orch = round(NS / cl.orchestrator_capacity_per_s) + round(cl.orchestrator_processing_s * NS)
    shot = round((gate_time_1q_s + node.gate_time_2q_s + 2 * node.readout_time_s) * NS)
    durations = Counter(j["end"] - j["start"] for j in run.jobs() if j["attrs"]["qfleet.queue.wait_s"] == 0)
    assert sum(durations.values()) > 100
    assert durations.most_common(1)[0][0] == orch + 64 * shot  # the rest waited for a busy orchestrator
    assert min(durations) == orch + 64 * shot


def test_single_qubit_gate_time_lengthens_teleports_by_one_gate_per_shot(line: Any) -> None:
    # The sender's Bell-state measurement is CNOT, Hadamard, readout: each shot holds the nodes one more gate time.
    # Jobs start in arrival order in both runs, so each draws the same pairs and latencies; compare those that did
    # not queue (the job index is the trace id's second half).
    tenants = (Tenant(id="t", weight=1.0, priority=0, rate_per_s=0.5, fidelity_target=0.5, mix={"teleport": 1.0},
                      shots=32),)
    slow, fast = (Run(_with_1q_gate_time(_one_link_fleet(line, tenants), g1), minutes=5) for g1 in (1e-3, 1e-6))
    node = line.node("qpu-a")

    def ops(g1: float) -> int:
        return round((node.gate_time_2q_s + g1 + node.readout_time_s) * NS)

    a, b = ({j["trace"][16:]: j["end"] - j["start"] for j in r.jobs() if j["attrs"]["qfleet.queue.wait_s"] == 0}
            for r in (slow, fast))
    both = a.keys() & b.keys()
    assert len(both) > 100
    assert {a[i] - b[i] for i in both} == {32 * (ops(1e-3) - ops(1e-6))}


def test_single_qubit_gate_time_lengthens_every_swap(line: Any) -> None:
    # A swap is a Bell-state measurement at the node between two segments: CNOT, Hadamard, readout.
    fleet = _with_1q_gate_time(line, 2e-3)
    run = Run(fleet, minutes=5)
    swaps = [s for s in run.spans if s["name"] == SPAN_NAMES["swap"]]
    assert swaps
    for s in swaps:
        n = fleet.node(s["node"])
        assert s["end"] - s["start"] == round((n.gate_time_2q_s + 2e-3 + n.readout_time_s) * NS)


def test_queued_jobs_that_fail_over_say_so(line: Any, baseline: Run) -> None:
    run = Run(line, [_fault(FaultKind.F5, "qpu-d")], load=3.0)
    moved = [j for j in run.jobs() if j["attrs"].get("qfleet.failover")]
    assert moved and all("qpu-d" not in j["attrs"]["qfleet.nodes"].split(",") for j in moved)
    assert all(T_ON <= j["end"] - run.t0 for j in moved)  # they moved when the node went down, not before
    assert not [j for j in baseline.jobs() if j["attrs"].get("qfleet.failover")]


def test_job_spans_form_one_trace_per_job_with_promoted_columns(baseline: Run) -> None:
    jobs = {s["trace"]: s for s in baseline.spans if s["name"] == SPAN_NAMES["job"]}
    children = [s for s in baseline.spans if s["trace"] in jobs and s["name"] != SPAN_NAMES["job"]]
    assert children and all(c["parent"] == jobs[c["trace"]]["span"] for c in children)
    names = Counter(c["name"] for c in children)
    assert {SPAN_NAMES["entanglement"], SPAN_NAMES["feedforward"], SPAN_NAMES["measurement"],
            SPAN_NAMES["swap"]} <= set(names)
    end = baseline.t0 + 40 * MIN + 120 * NS  # a job finishing in the last step ends at most a little later
    for s in baseline.spans:
        assert baseline.t0 <= s["start"] <= s["end"] <= end
        assert s["run"] == baseline.sim.run_id
    for c in children:
        assert c["job"] == jobs[c["trace"]]["job"] and c["hardware"] == "trapped-ion"
        if c["name"] == SPAN_NAMES["entanglement"]:
            assert c["link"] and c["node"] and c["attrs"]["qfleet.attempts"] >= c["attrs"]["qfleet.pairs"] > 0 or (
                c["status"] == 2)
    outcomes = Counter(j["attrs"]["qfleet.outcome"] for j in jobs.values())
    assert outcomes["success"] / sum(outcomes.values()) > 0.8
    for name in ("qfleet.jobs", "qfleet.entanglement.requests", "qfleet.entanglement.latency",
                 "qfleet.feedforward.latency", "qfleet.coherence_window.usage", "qfleet.job.fidelity",
                 "qfleet.orchestrator.latency", "qfleet.node.heartbeats", "qfleet.node.up",
                 "qfleet.measurement.variance", "qfleet.node.t1", "qfleet.node.t2", "qfleet.node.gate_error",
                 "qfleet.node.readout_error", "qfleet.scheduler.queue.age", "qfleet.entanglement.heralds",
                 "qfleet.canary.checks", "qfleet.node.calibration.age", "qfleet.node.t2.stderr",
                 "qfleet.truth.link.heralding_probability", "qfleet.truth.node.t2"):
        assert baseline.series(name), name


def test_same_seed_same_telemetry_other_seed_other(line: Any) -> None:
    faults = [_fault(FaultKind.F1, "qpu-b~qpu-c", 0.1), _fault(FaultKind.F8, "qpu-a", 0.2)]
    a, b, c = (Run(line, faults, minutes=12, seed=s) for s in (5, 5, 6))
    assert a.spans == b.spans and a.points == b.points
    assert a.spans != c.spans


def test_run_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="duration_ns=0"):
        RunConfig(duration_ns=0)
    with pytest.raises(ValueError, match="load=-1"):
        RunConfig(duration_ns=NS, load=-1)
    with pytest.raises(ValueError, match="shots=0"):
        RunConfig(duration_ns=NS, shots=0)
