"""Closed-form physics: hand-checked values, identities, properties and domain errors.

Oracle values come from shared/reference/physics.md (section in each comment) or are worked by hand there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qfleet.simulator import physics as P

fid = st.floats(min_value=0.25, max_value=1.0)
prob = st.floats(min_value=0.0, max_value=1.0)
readout = st.floats(min_value=0.0, max_value=0.5)
gate = st.floats(min_value=0.0, max_value=15 / 16)
times = st.floats(min_value=0.0, max_value=100.0)
positive = st.floats(min_value=1e-6, max_value=1e3)


# --- hand-checked values -------------------------------------------------------------------------------------


def test_coherence_cutoff_matches_the_worked_example() -> None:
    # physics.md 1.3: F0 = 0.97, F_th = 0.90, T2 = 0.5 s gives q* = 0.0729 and t_max ~ 39 ms.
    assert P.coherence_cutoff_s(0.97, 0.90, 0.5) == pytest.approx(0.0394, abs=5e-4)


@pytest.mark.parametrize(
    ("f", "p", "f_out"),
    [(0.70, 0.6800, 0.7353), (0.85, 0.8200, 0.8841), (0.95, 0.9356, 0.9650)],
    ids=["F=0.70", "F=0.85", "F=0.95"],
)
def test_bbpssw_matches_the_reference_table(f: float, p: float, f_out: float) -> None:
    # physics.md 1.5, "Formula" row of the BBPSSW checks.
    got_p, got_f = P.bbpssw(f)
    assert got_p == pytest.approx(p, abs=5e-5)
    assert got_f == pytest.approx(f_out, abs=5e-5)


@pytest.mark.parametrize(
    ("q", "p", "f_out"), [(0.1, 0.820, 0.9878), (0.2, 0.680, 0.9412)], ids=["q=0.1", "q=0.2"]
)
def test_dejmps_on_dephased_pairs_matches_the_reference(q: float, p: float, f_out: float) -> None:
    # physics.md 1.5: A = 1 - q, D = q.
    got_p, (a, b, c, d) = P.dejmps(1 - q, 0.0, 0.0, q)
    assert got_p == pytest.approx(p, abs=5e-4)
    assert a == pytest.approx(f_out, abs=5e-5)
    assert a + b + c + d == pytest.approx(1.0)


def test_dejmps_by_hand() -> None:
    # N = (0.7+0.1)^2 + (0.1+0.1)^2 = 0.68; A' = 0.5/0.68, B' = 0.02/0.68, C' = 0.02/0.68, D' = 0.14/0.68.
    p, out = P.dejmps(0.7, 0.1, 0.1, 0.1)
    assert p == pytest.approx(0.68)
    assert out == pytest.approx((0.5 / 0.68, 0.02 / 0.68, 0.02 / 0.68, 0.14 / 0.68))


def test_dejmps_on_werner_inputs_equals_bbpssw() -> None:
    for f in (0.6, 0.8, 0.95):
        e = (1 - f) / 3
        p, (a, *_) = P.dejmps(f, e, e, e)
        assert (p, a) == pytest.approx(P.bbpssw(f))


@pytest.mark.parametrize(
    ("k", "f", "expected"),
    [(3, 0.99, 0.9801), (3, 0.95, 0.9028), (10, 0.99, 0.9139), (10, 0.95, 0.6372)],
    ids=["k=3,F=0.99", "k=3,F=0.95", "k=10,F=0.99", "k=10,F=0.95"],
)
def test_ghz_matches_the_reference_table(k: int, f: float, expected: float) -> None:
    # physics.md 1.7 "formula" column.
    assert P.ghz_fidelity(k, f) == pytest.approx(expected, abs=6e-5)


@pytest.mark.parametrize(
    ("f1", "f2", "pg", "eps", "expected"),
    [
        (0.95, 0.95, 0.0, 0.0, 0.9033),
        (0.90, 0.80, 0.0, 0.0, 0.7267),
        (0.95, 0.95, 0.01, 0.0, 0.8964),
        (0.95, 0.95, 0.01, 0.01, 0.8792),
    ],
    ids=["ideal-0.95", "ideal-0.9x0.8", "gate-1%", "gate-and-readout-1%"],
)
def test_swap_matches_the_reference_table(
    f1: float, f2: float, pg: float, eps: float, expected: float
) -> None:
    # physics.md 1.4 checks (formula column).
    assert P.swap_fidelity(f1, f2, gate_error=pg, readout_error=eps) == pytest.approx(expected, abs=6e-5)


def test_swap_readout_term_is_exact_not_the_first_order_form() -> None:
    # By hand: F = 0.95 gives w = 0.9333...; eps = 0.2 gives a = 0.6 and F = (1 + w^2 (2a + a^2))/4 = 0.58973,
    # which Stim confirms (test_circuits); physics.md's (1 - 4 eps/3)^2 form would give 0.60135.
    w = (4 * 0.95 - 1) / 3
    assert P.swap_fidelity(0.95, 0.95, readout_error=0.2) == pytest.approx((1 + w * w * (1.2 + 0.36)) / 4)
    assert P.swap_fidelity(0.95, 0.95, readout_error=0.2) == pytest.approx(0.589733, abs=1e-6)


def test_readout_bell_estimate_matches_the_reference() -> None:
    # physics.md 1.8: F = 0.95, r = 0.02 -> 0.8951; r = 0 -> 0.95.
    assert P.readout_bell_estimate(0.95, 0.02) == pytest.approx(0.8951, abs=5e-5)
    assert P.readout_bell_estimate(0.95, 0.0) == pytest.approx(0.95)


@pytest.mark.parametrize(("ratio", "expected"), [(0.1, 0.9094), (0.5, 0.6839), (1.0, 0.5677)])
def test_dephasing_of_a_perfect_pair_matches_the_reference(ratio: float, expected: float) -> None:
    # physics.md 1.3: perfect pair at t/T2 = 0.1, 0.5, 1 -> (1 + e^(-2t/T2))/2.
    assert P.dephased_pair_fidelity(1.0, ratio * 0.3, 0.3) == pytest.approx(expected, abs=5e-5)


def test_dephasing_of_a_werner_pair_matches_the_reference() -> None:
    # physics.md 1.3: F0 = 0.95, t = 2 ms, T2 = 10 ms -> 0.7961.
    assert P.dephased_pair_fidelity(0.95, 2e-3, 10e-3) == pytest.approx(0.7961, abs=5e-5)


def test_depolarised_pair_fidelity_by_hand() -> None:
    # 1/4 + (0.85 - 1/4) e^(-2 * 5 * 0.1) = 0.25 + 0.6 e^-1.
    assert P.depolarised_pair_fidelity(0.85, 0.1, 5.0) == pytest.approx(0.25 + 0.6 * math.exp(-1))


def test_twirled_memory_paulis_by_hand() -> None:
    # t = T1 = 1, T2 = 0.5: px = py = (1 - e^-1)/4, pz = (1 - e^-2)/2 - (1 - e^-1)/4.
    px, py, pz = P.twirled_memory_paulis(1.0, 1.0, 0.5)
    assert px == py == pytest.approx((1 - math.exp(-1)) / 4)
    assert pz == pytest.approx((1 - math.exp(-2)) / 2 - (1 - math.exp(-1)) / 4)


def test_twirled_memory_at_t2_equal_2t1_has_the_squared_form() -> None:
    # With T2 = 2 T1 and u = e^(-t/2T1): pz = (1-u)/2 - (1-u^2)/4 = (1-u)^2/4 >= 0 (no clamp needed).
    _, _, pz = P.twirled_memory_paulis(0.3, 1.0, 2.0)
    u = math.exp(-0.15)
    assert pz == pytest.approx((1 - u) ** 2 / 4)


def test_link_budget_by_hand() -> None:
    # 21.7 km at 0.2 dB/km is about one attenuation length L_att = 10/(0.2 ln 10) (physics.md 1.1).
    assert P.fibre_transmissivity(10 / (0.2 * math.log(10)), 0.2) == pytest.approx(math.exp(-1))
    # Double-click, 20 km, 0.2 dB/km: eta = 0.5 * 0.4 * 10^(-0.2) * 0.9 per arm; p = eta^2/2.
    eta = 0.5 * 0.4 * 10 ** (-0.2) * 0.9
    kw = dict(
        length_km=20.0,
        attenuation_db_per_km=0.2,
        emission_efficiency=0.5,
        collection_efficiency=0.4,
        detector_efficiency=0.9,
        bright_state_population=0.05,
    )
    assert P.heralding_probability(scheme="double-click", **kw) == pytest.approx(eta**2 / 2)
    # Single-click: one click from either bright emitter, 2 alpha eta, less the bright-bright branch's bunching
    # (it needs only one of two photons): p = 2 alpha eta (1 - alpha eta (3 - V)/4), V = 1 by default.
    assert P.heralding_probability(scheme="single-click", **kw) == pytest.approx(2 * 0.05 * eta * (1 - 0.05 * eta / 2))
    # Certain emission and detection: both bright (alpha^2) always clicks one detector, one bright (2 alpha(1-alpha))
    # always; p = 1 - (1 - alpha)^2, not 2 alpha eta capped at 1.
    strong = dict(
        kw, length_km=0.0, emission_efficiency=1.0, collection_efficiency=1.0, detector_efficiency=1.0
    )
    assert P.heralding_probability(scheme="single-click", **dict(strong, bright_state_population=0.5)) == \
        pytest.approx(0.75)


def test_timing_by_hand() -> None:
    assert P.attempt_cycle_s(prep_time_s=10e-6, length_km=20.0) == pytest.approx(110e-6)  # 10 us + 20 * 5 us
    assert P.multiplexed_success(0.1, 3) == pytest.approx(1 - 0.9**3)
    assert P.multiplexed_success(1e-18, 10) == pytest.approx(1e-17, rel=1e-9)  # no cancellation at tiny p
    assert P.mean_time_to_pair_s(p=0.1, cycle_s=2e-3, memories=3) == pytest.approx(2e-3 / (1 - 0.9**3))
    assert P.mean_time_to_pair_s(p=0.0, cycle_s=1e-3, memories=1) == math.inf


def test_heralded_fidelity_by_hand() -> None:
    assert P.heralded_fidelity(
        scheme="double-click", visibility=0.9, bright_state_population=0.3
    ) == pytest.approx(0.95)
    # Single-photon interference keeps coherence sqrt(V) (physics.md 1.1): (1 - alpha)(1 + sqrt(V))/2.
    assert P.heralded_fidelity(
        scheme="single-click", visibility=0.9, bright_state_population=0.1
    ) == pytest.approx(0.9 * (1 + math.sqrt(0.9)) / 2)


@pytest.mark.parametrize("scheme", P.SCHEMES)
def test_heralded_paulis_give_the_heralded_fidelity(scheme: str) -> None:
    px, py, pz = P.heralded_pauli_probabilities(scheme=scheme, visibility=0.8, bright_state_population=0.2)
    assert min(px, py, pz) >= 0
    assert 1 - px - py - pz == pytest.approx(
        P.heralded_fidelity(scheme=scheme, visibility=0.8, bright_state_population=0.2)
    )


def test_teleported_cnot_and_average_gate_fidelity() -> None:
    # physics.md 1.6: process fidelity F, average gate fidelity (4F + 1)/5.
    assert P.teleported_cnot_fidelity(0.9) == 0.9
    assert P.average_gate_fidelity(P.teleported_cnot_fidelity(0.9)) == pytest.approx((4 * 0.9 + 1) / 5)
    assert P.average_gate_fidelity(0.5, dim=2) == pytest.approx(2 / 3)


# --- identities --------------------------------------------------------------------------------------------


def test_ghz_of_two_nodes_is_the_pair() -> None:
    for f in (0.3, 0.7, 0.95, 1.0):
        assert P.ghz_fidelity(2, f) == pytest.approx(f)


def test_a_chain_of_one_link_is_that_link() -> None:
    for f in (0.25, 0.8, 1.0):
        assert P.chain_fidelity([f], gate_error=0.1, readout_error=0.1) == pytest.approx(f, abs=1e-15)


def test_chain_of_two_equals_one_swap() -> None:
    assert P.chain_fidelity([0.9, 0.8], gate_error=0.02, readout_error=0.03) == pytest.approx(
        P.swap_fidelity(0.9, 0.8, gate_error=0.02, readout_error=0.03)
    )


def test_memory_fidelity_with_t1_off_is_pure_dephasing() -> None:
    assert P.memory_pair_fidelity(0.95, 2e-3, math.inf, 10e-3) == pytest.approx(
        P.dephased_pair_fidelity(0.95, 2e-3, 10e-3)
    )


def test_werner_round_trip() -> None:
    assert P.werner(0.25) == 0.0
    assert P.werner(1.0) == 1.0
    assert P.fidelity_from_werner(P.werner(0.8)) == pytest.approx(0.8)


def test_array_arguments_act_elementwise() -> None:
    f = np.array([0.3, 0.6, 0.9, 1.0])
    np.testing.assert_allclose(
        P.swap_fidelity(f, f[::-1], readout_error=0.1),
        [P.swap_fidelity(a, b, readout_error=0.1) for a, b in zip(f, f[::-1], strict=True)],
    )
    np.testing.assert_allclose(P.ghz_fidelity(4, f), [P.ghz_fidelity(4, x) for x in f])
    np.testing.assert_allclose(
        P.memory_pair_fidelity(f, 0.1, 2.0, 1.0), [P.memory_pair_fidelity(x, 0.1, 2.0, 1.0) for x in f]
    )
    px, _, pz = P.twirled_memory_paulis(np.array([0.0, 1.0]), np.array([1.0, math.inf]), 0.5)
    np.testing.assert_allclose(px, [0.0, 0.0])
    np.testing.assert_allclose(pz, [0.0, (1 - math.exp(-2)) / 2])
    p = P.heralding_probability(
        scheme="double-click",
        length_km=np.array([0.0, 10.0, 50.0]),
        attenuation_db_per_km=0.2,
        emission_efficiency=1.0,
        collection_efficiency=1.0,
        detector_efficiency=1.0,
        bright_state_population=0.1,
    )
    np.testing.assert_allclose(p, 0.5 * 10 ** (-0.2 * np.array([0.0, 10.0, 50.0]) / 10))
    assert isinstance(P.werner(0.9), float)
    assert isinstance(P.werner(np.array([0.9])), np.ndarray)


# --- properties (Hypothesis) -------------------------------------------------------------------------------


@given(fid, fid, gate, readout)
def test_swap_stays_a_fidelity_and_never_beats_its_worse_input(
    f1: float, f2: float, pg: float, eps: float
) -> None:
    f = P.swap_fidelity(f1, f2, gate_error=pg, readout_error=eps)
    assert 0.25 - 1e-12 <= f <= min(f1, f2) + 1e-12


@given(st.lists(fid, min_size=1, max_size=8), gate, readout)
def test_chain_is_a_fidelity_independent_of_order_and_shrinks_with_each_link(
    fs: list[float], pg: float, eps: float
) -> None:
    f = P.chain_fidelity(fs, gate_error=pg, readout_error=eps)
    assert 0.25 <= f <= min(fs) + 1e-12
    assert P.chain_fidelity(fs[::-1], gate_error=pg, readout_error=eps) == pytest.approx(f, abs=1e-12)
    assert P.chain_fidelity([*fs, 0.9], gate_error=pg, readout_error=eps) <= f + 1e-12


@given(fid)
def test_bbpssw_is_a_probability_and_purifies_exactly_above_one_half(f: float) -> None:
    p, f_out = P.bbpssw(f)
    assert 0 < p <= 1
    assert 0.25 - 1e-12 <= f_out <= 1 + 1e-12
    if 0.5 + 1e-9 < f < 1 - 1e-9:
        assert f_out > f
    elif 0.25 + 1e-9 < f < 0.5 - 1e-9:
        assert f_out < f


@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 0.1)
)
def test_dejmps_maps_bell_diagonal_states_to_bell_diagonal_states(raw: list[float]) -> None:
    total = sum(raw)
    p, out = P.dejmps(*(x / total for x in raw))
    assert 0 < p <= 1 + 1e-12
    assert sum(out) == pytest.approx(1.0)
    assert all(-1e-12 <= x <= 1 + 1e-12 for x in out)


@given(st.integers(min_value=2, max_value=50), fid)
def test_ghz_is_a_fidelity_that_falls_with_more_nodes(k: int, f: float) -> None:
    g = P.ghz_fidelity(k, f)
    assert 0 <= g <= f + 1e-12
    assert P.ghz_fidelity(k + 1, f) <= g + 1e-12


@given(fid, times, positive, st.floats(min_value=0.0, max_value=2.0))
def test_memory_fidelity_is_a_fidelity_below_its_start(f0: float, t: float, t1: float, ratio: float) -> None:
    t2 = max(ratio * t1, 1e-9)
    f = P.memory_pair_fidelity(f0, t, t1, t2)
    assert 0.25 - 1e-12 <= f <= f0 + 1e-12
    px, py, pz = P.twirled_memory_paulis(t, t1, t2)
    assert min(px, py, pz) >= 0 and px + py + pz <= 1


@given(fid, times, positive)
def test_memory_fidelity_reduces_to_dephasing_when_t1_is_off(f0: float, t: float, t2: float) -> None:
    assert P.memory_pair_fidelity(f0, t, math.inf, t2) == pytest.approx(
        P.dephased_pair_fidelity(f0, t, t2), abs=1e-12
    )


@given(fid, times, positive)
def test_dephased_and_depolarised_pairs_stay_fidelities(f0: float, t: float, x: float) -> None:
    assert 0.25 - 1e-12 <= P.dephased_pair_fidelity(f0, t, x) <= f0 + 1e-12
    assert 0.25 - 1e-12 <= P.depolarised_pair_fidelity(f0, t, x) <= f0 + 1e-12


@given(st.floats(min_value=0.5, max_value=1.0), st.floats(min_value=0.3, max_value=1.0), positive)
def test_the_cutoff_is_where_dephasing_reaches_the_threshold(f0: float, th: float, t2: float) -> None:
    t = P.coherence_cutoff_s(f0, th, t2)
    if th > f0:
        assert t == 0.0
    elif math.isinf(t):
        assert P.dephased_pair_fidelity(f0, 1e3 * t2, t2) >= th - 1e-9  # never falls below
    else:
        assert P.dephased_pair_fidelity(f0, t, t2) == pytest.approx(th, abs=1e-9)


@given(fid, readout)
def test_readout_only_lowers_the_estimate(f: float, r: float) -> None:
    assert 0.25 - 1e-12 <= P.readout_bell_estimate(f, r) <= f + 1e-12


@given(prob, st.integers(min_value=1, max_value=1000))
def test_multiplexing_helps_and_stays_a_probability(p: float, m: int) -> None:
    s = P.multiplexed_success(p, m)
    assert p - 1e-12 <= s <= 1
    assert P.multiplexed_success(p, m + 1) >= s - 1e-15


# --- domain errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: P.werner(1.2), "fidelity=1.2"),
        (lambda: P.werner(0.1), "[0.25, 1]"),
        (lambda: P.werner(float("nan")), "fidelity=nan"),
        (lambda: P.werner("high"), "is not a number"),
        (lambda: P.swap_fidelity(0.9, np.array([0.9, 1.5])), "f2=1.5"),
        (lambda: P.swap_fidelity(0.9, 0.9, readout_error=0.7), "readout_error=0.7"),
        (lambda: P.swap_fidelity(0.9, 0.9, gate_error=-0.1), "gate_error=-0.1"),
        (lambda: P.twirled_memory_paulis(1.0, 1.0, 3.0), "T2 <= 2 T1"),
        (lambda: P.twirled_memory_paulis(-1.0, 1.0, 1.0), "t_s=-1.0"),
        (lambda: P.twirled_memory_paulis(1.0, 0.0, 0.0), "t1_s=0.0"),
        (lambda: P.multiplexed_success(0.1, 0), "memories=0"),
        (lambda: P.multiplexed_success(0.1, 2.5), "memories=2.5"),
        (lambda: P.multiplexed_success(1.1, 2), "p=1.1"),
        (lambda: P.dejmps(0.5, 0.5, 0.5, 0.0), "must be 1"),
        (lambda: P.ghz_fidelity(1, 0.9), "k=1"),
        (lambda: P.chain_fidelity([]), "empty"),
        (lambda: P.chain_fidelity([0.9, 0.1]), "fidelities[1]=0.1"),
        (lambda: P.average_gate_fidelity(0.9, dim=1), "dim=1"),
        (lambda: P.coherence_cutoff_s(0.9, 0.8, -1.0), "t2_s=-1.0"),
        (
            lambda: P.heralding_probability(
                scheme="triple-click",
                length_km=1.0,
                attenuation_db_per_km=0.2,
                emission_efficiency=1.0,
                collection_efficiency=1.0,
                detector_efficiency=1.0,
                bright_state_population=0.1,
            ),
            "double-click, single-click",
        ),
        (
            lambda: P.heralding_probability(
                scheme="double-click",
                length_km=1.0,
                attenuation_db_per_km=0.2,
                emission_efficiency=1.5,
                collection_efficiency=1.0,
                detector_efficiency=1.0,
                bright_state_population=0.1,
            ),
            "emission_efficiency=1.5",
        ),
    ],
)
def test_bad_arguments_raise_physics_error_naming_them(call, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(P.PhysicsError) as info:
        call()
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rounding_just_outside_a_domain_is_tolerated() -> None:
    assert P.werner(1 + 1e-15) == 1.0
    assert P.fidelity_from_werner(-1e-16) == 0.25
