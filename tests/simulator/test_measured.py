"""Measured telemetry: the calibration estimators are unbiased with honest standard errors, the node gauges are
the last calibration's estimates (stale in between), and ground truth stays under ``qfleet.truth.*``.

Oracles come from outside the code under test: the true parameters the experiments sample from, the normal
distribution's 68.27 % one-sigma coverage, the binomial mean and variance, and counts read back from the spans.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from qfleet.simulator import calibration as C
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Calibration, builtin_fleet_path, load_fleet
from qfleet.simulator.telemetry import METRICS, SPAN_NAMES, TRUTH_PREFIXES, is_truth_metric
from qfleet.units import NS

MIN = 60 * NS
ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827: P(|Z| < 1) for a standard normal


def _seeds(n: int) -> list[np.random.Generator]:
    return [np.random.default_rng([2024, i]) for i in range(n)]


def _check_estimator(values: np.ndarray, errors: np.ndarray, truth: float) -> None:
    """Mean within its stated standard error of the truth; ~68 % of the +-1 sigma intervals cover it; the stated
    standard error matches the spread of the estimates."""
    assert abs(values.mean() - truth) < errors.mean() / 3
    coverage = float(np.mean(np.abs(values - truth) < errors))
    n = len(values)
    assert abs(coverage - ONE_SIGMA) < 4 * math.sqrt(ONE_SIGMA * (1 - ONE_SIGMA) / n), coverage
    assert values.std() == pytest.approx(errors.mean(), rel=0.15)


@pytest.mark.parametrize(("true_s", "expected_s"), [(0.5, 0.5), (0.02, 0.5), (40e-6, 100e-6)],
                         ids=["at baseline", "T2 collapsed 25x", "superconducting"])
def test_t2_echo_estimate_is_unbiased_with_calibrated_coverage(true_s: float, expected_s: float) -> None:
    est = [C.measure_t2(g, true_s, expected_s) for g in _seeds(600)]
    _check_estimator(np.array([e.value for e in est]), np.array([e.stderr for e in est]), true_s)


def test_t1_relaxation_estimate_is_unbiased_with_calibrated_coverage() -> None:
    est = [C.measure_t1(g, 10e-6, 100e-6) for g in _seeds(600)]  # a TLS collapse to a tenth
    _check_estimator(np.array([e.value for e in est]), np.array([e.stderr for e in est]), 10e-6)
    assert C.measure_t1(np.random.default_rng(1), math.inf, math.inf).value == math.inf


@pytest.mark.parametrize(("true_e", "expected_e", "qubits"), [(1e-3, 1e-3, 2), (0.06, 0.06, 2), (5e-4, 1e-4, 1)])
def test_randomized_benchmarking_recovers_the_depolarising_error(true_e: float, expected_e: float,
                                                                  qubits: int) -> None:
    est = [C.measure_gate_error(g, true_e, expected_e, qubits) for g in _seeds(400)]
    _check_estimator(np.array([e.value for e in est]), np.array([e.stderr for e in est]), true_e)


def test_fit_decay_recovers_a_noise_free_rate_and_flags_unresolved_sweeps() -> None:
    x = np.geomspace(0.1, 4.0, 10)
    n = 10**9
    rate, se, edge = C.fit_decay(x, np.round(n * (0.5 + 0.5 * np.exp(-2.5 * x))), n, floor=0.5)
    assert (rate, edge) == (pytest.approx(2.5, rel=1e-5), 0) and se < 1e-3
    assert C.fit_decay(x, np.full(10, 1000), 1000)[2] == -1  # nothing decayed: sweep longer
    assert C.fit_decay(x, np.zeros(10), 1000)[2] == 1  # all decayed at the first delay: sweep shorter


def test_readout_estimate_has_the_binomial_mean_and_variance() -> None:
    p, shots = 0.07, C.READOUT_SHOTS
    est = np.array([C.measure_readout(g, p).value for g in _seeds(2000)])
    var = p * (1 - p) / shots
    assert abs(est.mean() - p) < 4 * math.sqrt(var / len(est))
    assert est.var() == pytest.approx(var, rel=0.1)
    assert C.measure_readout(np.random.default_rng(0), 0.0).stderr > 0  # no error seen: still an honest interval


def test_truth_names_are_recognised_in_both_spellings() -> None:
    assert is_truth_metric("qfleet.truth.node.t2") and is_truth_metric("qfleet_truth_link_heralding_probability_ratio")
    assert not is_truth_metric("qfleet.node.t2") and not is_truth_metric("qfleet_node_t2_seconds")
    truth = {n for n in METRICS if is_truth_metric(n)}
    assert truth == {"qfleet.truth.node.t1", "qfleet.truth.node.t2", "qfleet.truth.node.readout_error",
                     "qfleet.truth.node.gate_error", "qfleet.truth.link.heralding_probability"}
    assert all(METRICS[n].description.startswith("GROUND TRUTH") for n in truth)
    assert "qfleet.link.heralding_probability" not in METRICS  # no measured name carries a true value
    from qfleet.slo.truth import TRUTH_PREFIXES as SLO_PREFIXES
    assert set(SLO_PREFIXES) == set(TRUTH_PREFIXES)


# ---------------------------------------------------------------------------------------------------------------
# In a run


class _Run:
    """Metric points by name -> labels -> {offset: value}, and spans as dicts."""

    def __init__(self, fleet: Any, faults: tuple[Fault, ...] = (), minutes: int = 45, seed: int = 11) -> None:
        sim = Simulation(fleet, FaultSchedule(faults), RunConfig(duration_ns=minutes * MIN, seed=seed, load=0.5))
        t0 = sim.config.start_ns
        self.points: dict[str, dict[tuple[tuple[str, Any], ...], dict[int, float]]] = {}
        self.spans: list[dict[str, Any]] = []
        for step in sim.steps():
            c = step.spans
            self.spans += [{"name": c.name[i], "attrs": c.attributes[i], "node": c.node_id[i],
                            "end": c.end_time_unix_nano[i] - t0} for i in range(len(c))]
            for rm in step.metrics.resource_metrics:
                for m in rm.scope_metrics[0].metrics:
                    for dp in m.data.data_points:
                        v = float(dp.value) if hasattr(dp, "value") else float(dp.count)
                        key = tuple(sorted(dp.attributes.items()))
                        self.points.setdefault(m.name, {}).setdefault(key, {})[dp.time_unix_nano - t0] = v

    def series(self, name: str, **want: Any) -> dict[int, float]:
        [pts] = [v for k, v in self.points[name].items() if set(want.items()) <= set(k)]
        return pts

    def total(self, name: str, **want: Any) -> float:
        return sum(max(v.items())[1] for k, v in self.points[name].items() if set(want.items()) <= set(k))


@pytest.fixture(scope="module")
def recalibrated() -> _Run:
    """line-4 calibrated every 20 min (qpu-c's first calibration ends at 21 min), qpu-c's readout off by +0.1
    from 5 min on."""
    line = load_fleet(builtin_fleet_path("line"))
    fleet = replace(line, calibration=Calibration(interval_s=1200.0, duration_s=60.0, readout_drift_per_sqrt_h=0.01))
    f4 = Fault(id="ro", kind=FaultKind.F4, target="qpu-c", start_ns=5 * MIN, duration_ns=60 * MIN, magnitude=0.1)
    return _Run(fleet, (f4,))


def test_gauges_hold_the_last_estimate_while_the_truth_moves(recalibrated: _Run) -> None:
    lab = {"qfleet.node.id": "qpu-c", "qfleet.state": 0}
    measured, truth = recalibrated.series("qfleet.node.readout_error", **lab), recalibrated.series(
        "qfleet.truth.node.readout_error", **lab)
    # The calibration ends at 21 min, an event of the step [21, 22) min: the gauges show it from 22 min.
    before = {v for t, v in measured.items() if t < 22 * MIN}
    after = {v for t, v in measured.items() if 22 * MIN <= t < 42 * MIN}
    assert len(before) == len(after) == 1  # stale between calibrations...
    assert len({v for t, v in truth.items() if 22 * MIN <= t < 42 * MIN}) > 1  # ...while the drift walk moves
    [b], [a] = before, after
    # Run start: the calibrated baseline (profile 1e-3); at 21 min the fault's +0.1, measured with binomial noise.
    sigma = math.sqrt(0.101 * 0.899 / C.READOUT_SHOTS)
    assert b < 0.01 and abs(a - truth[22 * MIN]) < 4 * sigma
    age = recalibrated.series("qfleet.node.calibration.age", **{"qfleet.node.id": "qpu-c"})
    assert age[20 * MIN] == 20 * 60 and age[22 * MIN] == 60
    # The calibration span ends when the estimate changes.
    assert any(s["name"] == SPAN_NAMES["calibration"] and s["node"] == "qpu-c" and s["end"] == 21 * MIN
               for s in recalibrated.spans)


def test_truth_stays_in_its_namespace(recalibrated: _Run) -> None:
    measured = [n for n in recalibrated.points if not is_truth_metric(n)]
    assert {"qfleet.node.t2", "qfleet.node.t2.stderr", "qfleet.node.gate_error", "qfleet.node.readout_error",
            "qfleet.node.calibration.age", "qfleet.entanglement.heralds", "qfleet.canary.checks"} <= set(measured)
    for name in ("qfleet.node.t2", "qfleet.node.gate_error", "qfleet.node.readout_error"):
        true_values = {v for pts in recalibrated.points[name.replace("qfleet.", "qfleet.truth.", 1)].values()
                       for v in pts.values()}
        assert not true_values & {v for pts in recalibrated.points[name].values() for v in pts.values()}, name
    [fault] = [s for s in recalibrated.spans if s["name"] == SPAN_NAMES["fault"]]
    assert all(k.startswith("qfleet.truth.") for k in fault["attrs"])
    assert fault["attrs"]["qfleet.truth.profile"] == "step" and fault["attrs"]["qfleet.truth.magnitude"] == 0.1
    assert fault["attrs"]["qfleet.truth.unit"]


def test_heralds_and_canary_checks_count_what_happened(recalibrated: _Run) -> None:
    for link in ("qpu-a~qpu-b", "qpu-c~qpu-d"):
        lk = {"qfleet.link.id": link}
        rate = recalibrated.total("qfleet.entanglement.heralds", **lk) / recalibrated.total(
            "qfleet.entanglement.attempts", **lk)
        true_p = recalibrated.series("qfleet.truth.link.heralding_probability", **lk)
        assert min(true_p.values()) * 0.9 < rate < max(true_p.values()) * 1.1, link
    canaries = [s for s in recalibrated.spans if s["name"] == SPAN_NAMES["job"]
                and s["attrs"]["qfleet.job.kind"] == "canary" and "qfleet.fidelity" in s["attrs"]]
    for node in ("qpu-a", "qpu-c"):
        mine = [s["attrs"] for s in canaries if s["node"] == node]
        passed = sum(round(a["qfleet.fidelity"] * a["qfleet.shots"]) for a in mine)
        shots = sum(a["qfleet.shots"] for a in mine)
        lab = {"qfleet.node.id": node}
        assert recalibrated.total("qfleet.canary.checks", **lab, **{"qfleet.outcome": "pass"}) == passed > 0
        assert recalibrated.total("qfleet.canary.checks", **lab, **{"qfleet.outcome": "fail"}) == shots - passed
