"""Fault onset profiles and per-platform physics: ramps follow the linear formula, intermittent bursts keep their
duty, F2 acts on what fails first on each platform, F6 stays on its device, F5 ends in a recalibration.

Oracles are closed forms written here (linear ramps, duty fractions, Barrett-Kok and single-click heralding with
one degraded arm, (1+V)/2 fidelities, T2 <= 2 T1), never the engine's own numbers.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from qfleet.simulator import physics
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import faults_from_dict
from qfleet.simulator.faults import Fault, FaultError, FaultKind, FaultSchedule, magnitude_unit
from qfleet.simulator.fleet import Fleet, Link, builtin_fleet_path, load_fleet
from qfleet.simulator.telemetry import SPAN_NAMES
from qfleet.units import NS
from tests.simulator import dm

MIN = 60 * NS


@pytest.fixture(scope="module")
def line() -> Fleet:
    return load_fleet(builtin_fleet_path("line"))


@pytest.fixture(scope="module")
def mesh() -> Fleet:
    return load_fleet(builtin_fleet_path("mesh"))


def _sim(fleet: Fleet, *faults: Fault, minutes: int = 20, load: float = 0.2) -> Simulation:
    return Simulation(fleet, FaultSchedule(faults), RunConfig(duration_ns=minutes * MIN, seed=5, load=load))


def _f(kind: FaultKind, target: str, magnitude: float = 1.0, **kw: Any) -> Fault:
    kw.setdefault("start_ns", 4 * MIN)
    kw.setdefault("duration_ns", 10 * MIN)
    return Fault(id=f"t-{kind.value}", kind=kind, target=target, magnitude=magnitude, **kw)


# ---------------------------------------------------------------------------------------------------- ramps


@pytest.mark.parametrize(("ramp_ns", "magnitude"), [(0, 0.1), (4 * MIN, 0.1)])
def test_ramp_effective_magnitude_is_linear_then_full(ramp_ns: int, magnitude: float) -> None:
    f = _f(FaultKind.F4, "n", magnitude, profile="ramp", ramp_ns=ramp_ns)
    ramp = ramp_ns or f.duration_ns  # 0 means over the whole duration
    assert f.ramp_ns == ramp
    for dt in {0, 1, ramp // 3, ramp // 2, ramp - 1, min(ramp, f.duration_ns - 1), f.duration_ns - 1}:
        expected = magnitude * min(1.0, dt / ramp)
        assert f.effective(f.start_ns + dt) == pytest.approx(expected, abs=1e-15), dt
    assert f.effective(f.start_ns - 1) == 0.0 and f.effective(f.end_ns()) == 0.0


def test_factor_ramps_start_from_no_effect() -> None:
    # F1 (factor on heralding) and F2 (factor >= 1) have no effect at 1, not at 0.
    cut = _f(FaultKind.F1, "a~b", 0.2, profile="ramp")
    warm = _f(FaultKind.F2, "n", 9.0, profile="ramp")
    half = cut.start_ns + cut.duration_ns // 2
    assert cut.effective(cut.start_ns) == 1.0 and cut.effective(half) == pytest.approx(1 - 0.8 / 2)
    assert warm.effective(half) == pytest.approx(1 + 8 / 2)


def test_f4_from_a_fault_file_drifts_slowly_by_default(mesh: Fleet) -> None:
    doc = {"version": 1, "kind": "FaultSchedule", "faults": [
        {"id": "drift", "type": "F4", "target": "nv-c", "start": "10m", "duration": "1h", "magnitude": 0.08},
        {"id": "cut", "type": "F1", "target": "nv-c~nv-d", "start": "10m", "duration": "1h", "magnitude": 0.0},
        {"id": "step", "type": "F4", "target": "ion-a", "start": "10m", "duration": "1h", "magnitude": 0.08,
         "profile": "step"}]}
    drift, cut, step = faults_from_dict(doc, fleet=mesh).faults
    assert (drift.profile, drift.ramp_ns) == ("ramp", 3600 * NS)
    assert drift.effective(drift.start_ns + 15 * MIN) == pytest.approx(0.08 * 15 / 60)
    assert cut.profile == "step" and cut.effective(cut.start_ns) == 0.0
    assert step.effective(step.start_ns) == 0.08
    assert faults_from_dict(faults_from_dict(doc).to_dict()) == faults_from_dict(doc)


def test_engine_follows_a_ramp_step_by_step(line: Fleet) -> None:
    f1 = _f(FaultKind.F1, "qpu-b~qpu-c", 0.1, profile="ramp", ramp_ns=6 * MIN)
    f4 = _f(FaultKind.F4, "qpu-c", 0.2, profile="ramp")
    sim = _sim(line, f1, f4, minutes=16)
    seg, st = sim._segments["qpu-b~qpu-c"][0], sim._nodes["qpu-c"]
    seen = 0
    for step in sim.steps():
        t = step.end_ns - sim.config.start_ns
        if t == f1.end_ns():
            continue  # the end event at the step's last instant is applied as the next step starts
        frac1 = min(1.0, (t - f1.start_ns) / (6 * MIN)) if f1.start_ns <= t < f1.end_ns() else 0.0
        frac4 = (t - f4.start_ns) / f4.duration_ns if f4.start_ns <= t < f4.end_ns() else 0.0
        assert seg.f1 == pytest.approx(1.0 - 0.9 * frac1), t
        assert st.ro0 - st.ro_walk - st.node.readout_error_0 == pytest.approx(0.2 * frac4, abs=1e-12), t
        seen += 0.0 < frac4 < 1.0
    assert seen >= 8


# ---------------------------------------------------------------------------------------------------- intermittent


@pytest.mark.parametrize(("period", "duty"), [(5 * MIN, 0.3), (MIN, 0.5), (7 * MIN, 0.1)])
def test_intermittent_bursts_keep_the_duty_once_per_period(period: int, duty: float) -> None:
    f = _f(FaultKind.F6, "n", 0.05, profile="intermittent", period_ns=period, duty=duty,
           duration_ns=12 * period)
    bursts = f.bursts()
    assert len(bursts) == 12
    for k, (lo, hi) in enumerate(bursts):
        assert f.start_ns + k * period <= lo < hi <= f.start_ns + (k + 1) * period
        assert hi - lo == round(duty * period)
    # Sampled on a fine grid, the fault is on for the duty fraction of its window.
    grid = range(f.start_ns, f.end_ns(), period // 100)
    on = sum(f.level(t) for t in grid) / len(grid)
    assert on == pytest.approx(duty, abs=0.011)
    assert {f.effective(t) for t in grid} == {0.0, 0.05}


def test_intermittent_pattern_is_seeded() -> None:
    kw: dict[str, Any] = {"profile": "intermittent", "period_ns": MIN, "duty": 0.2}
    a = _f(FaultKind.F4, "n", 0.1, seed=1, **kw)
    assert a.bursts() == _f(FaultKind.F4, "n", 0.1, seed=1, **kw).bursts()
    assert a.bursts() != _f(FaultKind.F4, "n", 0.1, seed=2, **kw).bursts()
    default = _f(FaultKind.F4, "n", 0.1, **kw)
    assert default.seed is not None and default.bursts() == _f(FaultKind.F4, "n", 0.1, **kw).bursts()


def test_engine_switches_intermittent_bursts_at_their_edges(line: Fleet) -> None:
    f = _f(FaultKind.F4, "qpu-a", 0.15, profile="intermittent", period_ns=2 * MIN, duty=0.4)
    sim = _sim(line, f, minutes=16)
    st = sim._nodes["qpu-a"]
    levels = []
    for step in sim.steps():
        # Events strictly before the step's end have been applied: the level at its last nanosecond.
        t_last = step.end_ns - sim.config.start_ns - 1
        assert st.ro0 - st.ro_walk - st.node.readout_error_0 == pytest.approx(0.15 * f.level(t_last), abs=1e-12)
        levels.append(f.level(t_last))
    assert 0.0 in levels[5:13] and 1.0 in levels[5:13]


# ---------------------------------------------------------------------------------------------------- F2 per platform


def _fire(sim: Simulation, f: Fault, on: bool) -> None:
    sim._fault(f, on, sim.config.start_ns + (f.start_ns if on else f.end_ns()))


def _one_arm_heralding(link: Link, km: float, m: float) -> float:
    """Heralding probability with one arm's efficiency divided by m, from the symmetric closed form: double-click
    p = eta_a eta_b / 2 (geometric mean of the symmetric values), single-click p = alpha (eta_a + eta_b).

    Exact without dark counts; the engine scales the whole herald probability, dark-count floor included, so with
    dark counts the two agree to the dark-count share of the heralds (docs/physics.md section 5)."""
    def sym(emission: float) -> float:
        return float(physics.heralding_probability(
            scheme=link.scheme, length_km=km, attenuation_db_per_km=link.attenuation_db_per_km,
            emission_efficiency=emission, collection_efficiency=link.collection_efficiency,
            detector_efficiency=link.detector_efficiency, bright_state_population=link.bright_state_population,
            visibility=link.visibility, conversion_efficiency=link.conversion_efficiency,
            dark_count_probability=link.dark_count_probability))
    full, weak = sym(link.emission_efficiency), sym(link.emission_efficiency / m)
    return math.sqrt(full * weak) if link.scheme == "double-click" else (full + weak) / 2


def test_f2_on_an_nv_centre_degrades_its_links_not_its_memory(mesh: Fleet) -> None:
    m = 4.0
    sim = _sim(mesh)
    f = _f(FaultKind.F2, "nv-c", m)
    before = {s: (s.p, s.pair_pauli) for s in sim._all_segments}
    st = sim._nodes["nv-c"]
    t1, t2 = st.t1, st.t2
    _fire(sim, f, True)
    touching = [s for s in sim._all_segments if "nv-c" in (s.left, s.right)]
    assert {s.link.id for s in touching} == {"ion-b~nv-c", "nv-c~nv-d"}
    for s in touching:
        link = s.link
        assert s.p == pytest.approx(min(1.0, _one_arm_heralding(link, s.km, m) * s.eff_walk), rel=2e-2)
        v = link.visibility * 2 / (m + 1)  # pure-dephasing HOM visibility with a lifetime-limited partner
        eta = (link.emission_efficiency * link.collection_efficiency * link.detector_efficiency
               * link.conversion_efficiency * 10 ** (-link.attenuation_db_per_km * s.km / 2 / 10))
        d = link.dark_count_probability
        # The exact heralded state (density matrix of the photonic protocol, tests/simulator/dm.py).
        fid = dm.double_click(eta, v, d)[1] if link.scheme == "double-click" else \
            dm.single_click(link.bright_state_population, eta, v, d)[1]
        assert 1 - sum(s.pair_pauli) == pytest.approx(fid, rel=1e-9)
        assert s.p < before[s][0] and sum(s.pair_pauli) > sum(before[s][1])
    for s in set(sim._all_segments) - set(touching):
        assert (s.p, s.pair_pauli) == before[s]
    assert (st.t1, st.t2) == (t1, t2)
    _fire(sim, f, False)
    assert {s: (s.p, s.pair_pauli) for s in sim._all_segments} == before


def test_f2_on_an_ion_trap_raises_gate_errors(mesh: Fleet) -> None:
    m = 20.0
    sim = _sim(mesh)
    st = sim._nodes["ion-b"]
    node = st.node
    t1, t2 = st.t1, st.t2
    f = _f(FaultKind.F2, "ion-b", m)
    _fire(sim, f, True)
    assert st.g2 == pytest.approx(min(15 / 16, node.gate_error_2q * m))
    assert st.g1 == pytest.approx(node.gate_error_1q * math.sqrt(m))
    assert st.g2 / node.gate_error_2q > st.g1 / node.gate_error_1q  # the two-qubit gate suffers more
    assert (st.t1, st.t2) == (t1, t2)
    _fire(sim, f, False)
    assert (st.g1, st.g2) == (node.gate_error_1q, node.gate_error_2q)


def test_f2_on_a_superconducting_chip_collapses_t1_and_t2_follows(mesh: Fleet) -> None:
    m = 10.0
    sim = _sim(mesh)
    st = sim._nodes["sc-e"]
    node = st.node
    f = _f(FaultKind.F2, "sc-e", m)
    _fire(sim, f, True)
    assert st.t1 == pytest.approx(node.t1_s / m)
    assert st.t2 == pytest.approx(min(node.t2_s * st.t2_walk, 2 * node.t1_s / m))
    assert st.t2 < node.t2_s / 2  # T2 <= 2 T1 forces it down
    assert (st.g1, st.g2) == (node.gate_error_1q, node.gate_error_2q)
    _fire(sim, f, False)
    assert st.t1 == node.t1_s


def test_f2_unit_names_the_platform() -> None:
    assert "T1" in magnitude_unit("F2", "superconducting")
    assert "heating" in magnitude_unit("decoherence", "trapped-ion")
    assert "linewidth" in magnitude_unit(FaultKind.F2, "nv-centre")


# ---------------------------------------------------------------------------------------------------- F6, F5


def test_f6_crosstalk_stays_on_the_device(line: Fleet) -> None:
    sim = _sim(line)
    f = _f(FaultKind.F6, "qpu-b", 0.05)
    _fire(sim, f, True)
    assert {n: st.crosstalk for n, st in sim._nodes.items()} == {"qpu-a": 0.0, "qpu-b": 0.05, "qpu-c": 0.0,
                                                                 "qpu-d": 0.0}
    _fire(sim, f, False)
    assert all(st.crosstalk == 0.0 for st in sim._nodes.values())


def test_f5_outage_is_followed_by_a_recalibration_window(line: Fleet) -> None:
    # A 2-minute calibration every 12 h: none of the scheduled ones falls inside this 20-minute run.
    fleet = replace(line, calibration=replace(line.calibration, interval_s=43_200.0, duration_s=120.0))
    f = _f(FaultKind.F5, "qpu-d")
    sim = _sim(fleet, f, load=1.0)
    t0 = sim.config.start_ns
    windows, started, state = [], [], []
    for step in sim.steps():
        cols = step.spans
        for i in range(len(cols)):
            if cols.name[i] == SPAN_NAMES["maintenance"]:
                windows.append((cols.start_time_unix_nano[i] - t0, cols.end_time_unix_nano[i] - t0,
                                cols.node_id[i], cols.attributes[i].get("qfleet.maintenance.reason")))
            elif cols.name[i] == SPAN_NAMES["entanglement"] and cols.link_id[i] == "qpu-c~qpu-d":
                started.append(cols.start_time_unix_nano[i] - t0)
        st = sim._nodes["qpu-d"]
        state.append((step.end_ns - t0, st.up, st.available))
    end = f.end_ns()
    assert windows == [(end, end + 120 * NS, "qpu-d", "recovery")]
    assert not [t for t in started if f.start_ns < t < end + 120 * NS]
    assert [t > end + 120 * NS for t in started].count(True) > 0  # back in service after the window
    for t, up, available in state:
        assert up == (not f.active(t - 1))
        assert available == (not f.start_ns < t <= end + 120 * NS), t


# ---------------------------------------------------------------------------------------------------- validation


PROFILE_CASES = [
    ("unknown profile", {"profile": "ramped"}, "faults[0].profile: must be one of step, ramp, intermittent, got "
                                               "'ramped' (fix: did you mean 'ramp'?"),
    ("binary fault cannot ramp", {"type": "F5", "magnitude": None, "profile": "ramp"},
     "faults[0].profile: F5 (node outage) is on or off, so it cannot ramp (fix: use profile: step or profile: "
     "intermittent)"),
    ("ramp longer than the fault", {"profile": "ramp", "ramp": "10m"},
     "faults[0].ramp: must be an integer number of ns in (0, duration_ns=300000000000], got 600000000000"),
    ("period on a step", {"period": "1m"},
     "faults[0].period: only profile: intermittent takes period, got 60000000000 (fix: remove it or set profile: "
     "intermittent)"),
    ("F4's default is a ramp", {"type": "F4", "duty": 0.2},
     "faults[0].duty: only profile: intermittent takes duty, got 0.2"),
    ("duty out of range", {"profile": "intermittent", "duty": 1.5},
     "faults[0].duty: must be a fraction of each period in (0, 1), got 1.5 (fix: e.g. duty: 0.3)"),
    ("ramp and ramp_ns", {"profile": "ramp", "ramp": "1m", "ramp_ns": 5},
     "faults[0].ramp_ns: give ramp or ramp_ns, not both"),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES])
def test_profile_validation_names_the_field_and_the_fix(fields: dict[str, Any], expected: str) -> None:
    entry: dict[str, Any] = {"id": "f", "type": "F1", "target": "ion-a~ion-b", "start": "1m", "duration": "5m",
                             "magnitude": 0.1, **fields}
    doc = {"version": 1, "kind": "FaultSchedule", "faults": [{k: v for k, v in entry.items() if v is not None}]}
    with pytest.raises(FaultError) as info:
        faults_from_dict(doc, source="f.yaml")
    assert expected in str(info.value)
    assert len(info.value.problems) == 1


def test_profiles_round_trip_through_to_dict() -> None:
    faults = (_f(FaultKind.F1, "a~b", 0.3, profile="ramp", ramp_ns=MIN),
              _f(FaultKind.F5, "n", profile="intermittent", period_ns=2 * MIN, duty=0.25, seed=3),
              replace(_f(FaultKind.F6, "m", 0.02), id="x"))
    schedule = FaultSchedule(faults)
    back = faults_from_dict(schedule.to_dict())
    assert back == schedule
    assert [f.to_dict()["profile"] for f in back.faults] == ["ramp", "intermittent", "step"]
