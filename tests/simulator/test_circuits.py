"""Stim templates against the closed forms of simulator.physics, with per-instance noise.

Every statistical assertion is seeded and uses |measured - predicted| <= 4 stderr + 1e-3 with the binomial
standard error of the prediction; no raw Stim samples are pinned.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qfleet.simulator import circuits as C
from qfleet.simulator import noise_masks as M
from qfleet.simulator import physics as P

N = 20_000


def close(measured: float, predicted: float, n: int) -> bool:
    stderr = math.sqrt(max(predicted * (1 - predicted), 0.0) / n)
    return abs(measured - predicted) <= 4 * stderr + 1e-3


def zeros(rows: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((rows, n), dtype=bool), np.zeros((rows, n), dtype=bool)


def quiet(circuit: C.SlottedCircuit, n: int = N) -> list[tuple[np.ndarray, np.ndarray]]:
    return [zeros(len(slot), n) for slot in circuit.slots]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


ALL_TEMPLATES = [
    C.bell_pair(),
    C.bell_readout(),
    *(C.swap_chain(k) for k in (1, 2, 3, 6)),
    *(C.ghz(k) for k in (2, 3, 5, 10)),
    C.teleported_cnot(),
    C.teleport_state(),
    C.purification("bbpssw"),
    C.purification("dejmps"),
    C.purification("dejmps", rotations=False),
]


# --- structure and noiseless behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize("circuit", ALL_TEMPLATES, ids=lambda c: c.name)
def test_noiseless_templates_pass_every_check(circuit: C.SlottedCircuit) -> None:
    flips = C.sample_detector_flips(circuit, quiet(circuit, 512), seed=1)
    assert flips.shape == (circuit.num_detectors, 512)
    assert not flips.any()
    # Independently of the runner: Stim's own sampler with stabilizer randomization on the whole template.
    assert not circuit.circuit().compile_detector_sampler(seed=2).sample(512).any()


@pytest.mark.parametrize(
    ("circuit", "slot_sizes", "checks"),
    [
        (C.bell_pair(), (2,), 2),
        (C.swap_chain(1), (2, 0, 2), 2),
        (C.swap_chain(4), (8, 6, 2), 2),
        (C.ghz(4), (7, 3, 4), 4),
        (C.teleported_cnot(), (2, 2, 2), 4),
        (C.teleport_state(), (2, 2, 1), 2),
        (C.purification("dejmps"), (4,), 2),
    ],
    ids=lambda v: v.name if isinstance(v, C.SlottedCircuit) else None,
)
def test_template_shapes(circuit: C.SlottedCircuit, slot_sizes: tuple[int, ...], checks: int) -> None:
    assert tuple(len(s) for s in circuit.slots) == slot_sizes
    assert circuit.num_check_detectors == checks
    assert len(circuit.segments) == len(circuit.slots) + 1
    assert circuit.circuit().num_detectors == circuit.num_detectors


def test_builders_are_cached() -> None:
    assert C.ghz(5) is C.ghz(5)
    assert C.purification("dejmps") is not C.purification("dejmps", rotations=False)


@pytest.mark.parametrize("nodes", [2, 3, 6])
def test_ghz_checks_catch_every_single_qubit_pauli_on_a_member(nodes: int) -> None:
    circuit = C.ghz(nodes)
    n = 3 * nodes  # instance 3q + p has Pauli p (X, Y, Z) on member q at slot 2
    x, z = zeros(nodes, n)
    for q in range(nodes):
        x[q, 3 * q], x[q, 3 * q + 1] = True, True
        z[q, 3 * q + 1], z[q, 3 * q + 2] = True, True
    masks = quiet(circuit, n)
    masks[2] = (x, z)
    assert not C.run_instances(circuit, masks, seed=0).passed.any()


def test_y_is_both_masks_and_trips_both_bell_checks() -> None:
    x, z = zeros(2, 3)
    x[0, 0] = True  # X: anticommutes with ZZ only
    z[0, 1] = True  # Z: anticommutes with XX only
    x[0, 2] = z[0, 2] = True  # Y: both
    flips = C.sample_detector_flips(C.bell_pair(), [(x, z)], seed=0)
    assert flips.tolist() == [[False, True, True], [True, False, True]]


def test_correlated_pair_errors_are_invisible_on_a_bell_pair() -> None:
    # XX, YY, ZZ stabilise |Phi+>: the checks must pass (F counts stabilising errors as no error).
    x, z = zeros(2, 3)
    x[:, 0] = True
    x[:, 1] = z[:, 1] = True
    z[:, 2] = True
    assert C.run_instances(C.bell_pair(), [(x, z)], seed=0).passed.all()


# --- per-instance noise ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [4096, 1000, 20_000])
def test_noise_is_really_per_instance(batch_size: int) -> None:
    # Even instances noiseless, odd ones Werner(0.8): the two halves must show F = 1 and F = 0.8, across batches.
    f = np.where(np.arange(N) % 2 == 0, 1.0, 0.8)[None, :]
    result = C.run_instances(C.bell_pair(), [M.werner_masks(f, rng(1))], seed=3, batch_size=batch_size)
    assert result.passed[0::2].all()
    assert close(result.passed[1::2].mean(), 0.8, N // 2)


def test_per_instance_fidelities_average_to_the_mean_prediction() -> None:
    # physics.md 3.2: per-run F ~ U(0.9, 0.995) through ghz(3); mean success = E[F_GHZ].
    g = rng(2)
    f = g.uniform(0.9, 0.995, size=(2, N))
    wx, wz = M.werner_masks(f, g)
    none = np.zeros((1, N), dtype=bool)
    masks = [(np.vstack([none, wx]), np.vstack([none, wz])), zeros(2), zeros(3)]
    passed = C.run_instances(C.ghz(3), masks, seed=4).passed
    # Two pairs with different F: 1/2 [(1-2e1)(1-2e2) + (1-4e1)(1-4e2)].
    e = (1 - f) / 3
    predicted = float(np.mean(((1 - 2 * e[0]) * (1 - 2 * e[1]) + (1 - 4 * e[0]) * (1 - 4 * e[1])) / 2))
    assert close(passed.mean(), predicted, N)


def test_same_seed_and_masks_give_the_same_result() -> None:
    masks = [M.werner_masks(np.full((1, 5000), 0.9), rng(5))]
    a = C.run_instances(C.bell_pair(), masks, seed=7)
    b = C.run_instances(C.bell_pair(), masks, seed=7)
    assert np.array_equal(a.passed, b.passed)


# --- protocols against their closed forms ---------------------------------------------------------------------


@pytest.mark.parametrize("f", [1.0, 0.99, 0.95, 0.9, 0.8, 0.6, 0.25])
def test_werner_pair(f: float) -> None:
    # physics.md 1.2: one-sided DEPOLARIZE1(1 - F) is exactly Werner.
    result = C.run_instances(C.bell_pair(), [M.werner_masks(np.full((1, N), f), rng(10))], seed=1)
    assert close(result.fidelity(), f, N)


@pytest.mark.parametrize(
    ("t", "t1", "t2"),
    [(2e-3, math.inf, 10e-3), (0.05, 0.5, 0.1), (0.3, 1.0, 2.0), (1.0, 1.0, 0.2), (0.0, 1.0, 1.0)],
)
@pytest.mark.parametrize("f0", [1.0, 0.95, 0.8])
def test_memory_storage(f0: float, t: float, t1: float, t2: float) -> None:
    g = rng(11)
    wx, wz = M.werner_masks(np.full((1, N), f0), g)
    mx, mz = M.pauli_masks(*P.twirled_memory_paulis(t, t1, t2), g, shape=(2, N))
    result = C.run_instances(C.bell_pair(), [(wx ^ mx, wz ^ mz)], seed=1)
    assert close(result.fidelity(), P.memory_pair_fidelity(f0, t, t1, t2), N)


def _swap_masks(
    links: int, f: float, pg: float, eps: float, n: int, g: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    gx, gz = M.depolarize2_masks(np.full((links - 1, n), pg), g)
    readout = g.random((2 * (links - 1), n)) < eps
    return [M.werner_masks(np.full((links, n), f), g), (gx ^ readout, gz), zeros(2, n)]


@pytest.mark.parametrize("links", [2, 3, 5])
@pytest.mark.parametrize("f", [0.95, 0.85])
@pytest.mark.parametrize(("pg", "eps"), [(0.0, 0.0), (0.01, 0.01), (0.05, 0.0), (0.0, 0.05)])
def test_swap_chain(links: int, f: float, pg: float, eps: float) -> None:
    result = C.run_instances(C.swap_chain(links), _swap_masks(links, f, pg, eps, N, rng(12)), seed=1)
    assert close(result.fidelity(), P.chain_fidelity([f] * links, gate_error=pg, readout_error=eps), N)


def test_swap_readout_follows_the_exact_form_not_the_first_order_one() -> None:
    n = 200_000  # 4 sigma ~ 0.004 here, the two forms differ by 0.012
    result = C.run_instances(C.swap_chain(2), _swap_masks(2, 0.95, 0.0, 0.2, n, rng(13)), seed=1)
    w = (4 * 0.95 - 1) / 3
    first_order = (1 + 3 * w * w * (1 - 4 * 0.2 / 3) ** 2) / 4
    assert close(result.fidelity(), P.swap_fidelity(0.95, 0.95, readout_error=0.2), n)
    assert not close(result.fidelity(), first_order, n)


@pytest.mark.parametrize("pz", [0.02, 0.1])
def test_swap_chain_end_storage_slot_dephases_the_delivered_pair(pz: float) -> None:
    g = rng(14)
    masks = _swap_masks(3, 0.95, 0.0, 0.0, N, g)
    masks[2] = M.pauli_masks(0.0, 0.0, pz, g, shape=(2, N))
    q = 2 * pz * (1 - pz)  # net single-Z probability of two independent Z errors
    fc = P.chain_fidelity([0.95] * 3)
    result = C.run_instances(C.swap_chain(3), masks, seed=1)
    assert close(result.fidelity(), (1 - q) * fc + q * (1 - fc) / 3, N)


@pytest.mark.parametrize("nodes", [2, 3, 4, 6, 10])
@pytest.mark.parametrize("f", [0.99, 0.95, 0.9])
def test_ghz(nodes: int, f: float) -> None:
    g = rng(15)
    wx, wz = M.werner_masks(np.full((nodes - 1, N), f), g)
    none = np.zeros((1, N), dtype=bool)
    masks = [(np.vstack([none, wx]), np.vstack([none, wz])), zeros(nodes - 1), zeros(nodes)]
    assert close(C.run_instances(C.ghz(nodes), masks, seed=1).fidelity(), P.ghz_fidelity(nodes, f), N)


@pytest.mark.parametrize("f", [0.97, 0.9, 0.8, 0.6])
def test_teleported_cnot_process_fidelity_is_the_link_fidelity(f: float) -> None:
    masks = [M.werner_masks(np.full((1, N), f), rng(16)), zeros(2), zeros(2)]
    result = C.run_instances(C.teleported_cnot(), masks, seed=1)
    assert close(result.fidelity(), P.teleported_cnot_fidelity(f), N)


@pytest.mark.parametrize("q", [0.05, 0.2])
def test_teleported_cnot_control_waiting_dephases_like_a_link_z_error(q: float) -> None:
    # A link Z error lands as Z on the control (wrong CZ correction), so control dephasing q gives
    # F = (1 - q) F + q (1 - F)/3: the two Z errors cancel.
    g = rng(17)
    x, z = zeros(2)
    z[0] = g.random(N) < q
    masks = [M.werner_masks(np.full((1, N), 0.9), g), zeros(2), (x, z)]
    result = C.run_instances(C.teleported_cnot(), masks, seed=1)
    assert close(result.fidelity(), (1 - q) * 0.9 + q * 0.1 / 3, N)


@pytest.mark.parametrize("f", [0.97, 0.8])
@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_teleported_state(f: float, eps: float) -> None:
    # Readout flips on the two sent bits are an X and a Z error on the output: like one swap's BSM.
    g = rng(18)
    readout = g.random((2, N)) < eps
    masks = [M.werner_masks(np.full((1, N), f), g), (readout, np.zeros((2, N), dtype=bool)), zeros(1)]
    result = C.run_instances(C.teleport_state(), masks, seed=1)
    assert close(result.fidelity(), P.swap_fidelity(f, 1.0, readout_error=eps), N)


@pytest.mark.parametrize("method", ["bbpssw", "dejmps"])
@pytest.mark.parametrize("f", [0.6, 0.7, 0.85, 0.95])
def test_purification_of_werner_pairs(method: str, f: float) -> None:
    result = C.run_instances(C.purification(method), [M.werner_masks(np.full((2, N), f), rng(19))], seed=1)
    p, f_out = P.bbpssw(f)
    assert close(result.kept.mean(), p, N)
    assert close(result.fidelity(), f_out, int(result.kept.sum()))


def _dephased_inputs(q: float, g: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    x, z = zeros(4)
    z[[1, 3]] = g.random((2, N)) < q  # (A, B, C, D) = (1 - q, 0, 0, q) on each pair
    return [(x, z)]


@pytest.mark.parametrize("q", [0.1, 0.2, 0.3])
def test_dejmps_purifies_dephasing(q: float) -> None:
    result = C.run_instances(C.purification("dejmps"), _dephased_inputs(q, rng(20)), seed=1)
    p, (a, _, _, _) = P.dejmps(1 - q, 0.0, 0.0, q)
    assert close(result.kept.mean(), p, N)
    assert close(result.fidelity(), a, int(result.kept.sum()))
    assert result.fidelity() > 1 - q + 0.05


@pytest.mark.parametrize("q", [0.1, 0.2, 0.3])
def test_dejmps_without_rotations_does_not_purify_dephasing(q: float) -> None:
    # The physics.md 1.5 trap: no herald ever fires and F' = (1-q)^2 + q^2 < 1 - q, worse than the input.
    result = C.run_instances(C.purification("dejmps", rotations=False), _dephased_inputs(q, rng(20)), seed=1)
    assert result.kept.all()
    assert close(result.fidelity(), (1 - q) ** 2 + q**2, N)
    assert result.fidelity() < 1 - q


# --- mask helpers ---------------------------------------------------------------------------------------------


def test_pauli_masks_frequencies() -> None:
    n = 400_000
    x, z = M.pauli_masks(0.1, 0.2, 0.3, rng(21), shape=(1, n))
    got = {
        "X": (x & ~z).mean(),
        "Y": (x & z).mean(),
        "Z": (~x & z).mean(),
    }
    for name, p in (("X", 0.1), ("Y", 0.2), ("Z", 0.3)):
        assert close(got[name], p, n), name


def test_pauli_masks_broadcast_per_instance_probabilities() -> None:
    p = np.array([[0.0, 1.0, 0.0]])
    x, z = M.pauli_masks(p, 0.0, p[:, ::-1] * 0, rng(22), shape=(4, 3))
    assert x.shape == (4, 3)
    assert x[:, 1].all() and not x[:, [0, 2]].any() and not z.any()


def test_depolarize2_masks_cover_the_15_paulis_uniformly() -> None:
    n = 300_000
    x, z = M.depolarize2_masks(np.full((1, n), 0.6), rng(23))
    code = x[0] * 8 + z[0] * 4 + x[1] * 2 + z[1]
    counts = np.bincount(code, minlength=16)
    assert close(counts[0] / n, 0.4, n)
    for c in range(1, 16):
        assert close(counts[c] / n, 0.04, n), c


def test_werner_masks_put_the_error_on_the_second_qubit_of_each_pair() -> None:
    x, z = M.werner_masks(np.full((3, 1000), 0.25), rng(24))
    assert x.shape == (6, 1000)
    assert not (x[0::2].any() or z[0::2].any())
    assert (x[1::2] | z[1::2]).mean() > 0.7  # 3/4 expected at F = 1/4


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: C.swap_chain(0), "links=0"),
        (lambda: C.ghz(1), "nodes=1"),
        (lambda: C.ghz(2.5), "nodes=2.5"),
        (lambda: C.purification("bbq"), "method='bbq'"),
        (lambda: M.pauli_masks(0.5, 0.4, 0.3, rng(), shape=(1, 2)), "exceeds 1"),
        (lambda: M.pauli_masks(-0.1, 0.0, 0.0, rng(), shape=(1, 2)), "px=-0.1"),
        (lambda: M.werner_masks(0.1, rng(), shape=(1, 2)), "below 1/4"),
        (lambda: M.depolarize2_masks(0.99, rng(), shape=(1, 2)), "15/16"),
        (lambda: C.run_instances(C.bell_pair(), [], seed=0), "1 slots but 0 mask pairs"),
        (lambda: C.run_instances(C.bell_pair(), [zeros(3, 4)], seed=0), "shape (3, 4)"),
        (
            lambda: C.run_instances(C.bell_pair(), [(np.zeros((2, 4)), np.zeros((2, 4), bool))], seed=0),
            "dtype float64",
        ),
        (
            lambda: C.run_instances(C.swap_chain(2), [zeros(4, 5), zeros(2, 5), zeros(2, 6)], seed=0),
            "the same B",
        ),
        (lambda: C.run_instances(C.bell_pair(), [zeros(2, 4)], seed=-1), "seed=-1"),
        (lambda: C.run_instances(C.bell_pair(), [zeros(2, 4)], seed=0, batch_size=0), "batch_size=0"),
        (
            lambda: C.SlottedCircuit(
                name="bad",
                segments=("R 0",),
                slots=((0,),),
                num_qubits=1,
                num_herald_detectors=0,
                num_check_detectors=1,
            ),
            "one more segment than slots",
        ),
        (
            lambda: C.SlottedCircuit(
                name="bad",
                segments=("R 0", "M 0\nDETECTOR rec[-1]"),
                slots=((3,),),
                num_qubits=1,
                num_herald_detectors=0,
                num_check_detectors=1,
            ),
            "distinct qubits",
        ),
        (
            lambda: C.SlottedCircuit(
                name="bad",
                segments=("R 0", "M 0\nDETECTOR rec[-1]"),
                slots=((0,),),
                num_qubits=1,
                num_herald_detectors=1,
                num_check_detectors=1,
            ),
            "declare 1 detectors",
        ),
        (
            lambda: C.SlottedCircuit(
                name="bad",
                segments=("R 0", "FOO 0"),
                slots=((0,),),
                num_qubits=1,
                num_herald_detectors=0,
                num_check_detectors=1,
            ),
            "not valid Stim",
        ),
    ],
)
def test_bad_inputs_raise_circuit_error(call, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(C.CircuitError) as info:
        call()
    assert needle in str(info.value)


def test_instance_result_with_nothing_kept_has_nan_fidelity() -> None:
    r = C.InstanceResult(kept=np.zeros(3, bool), passed=np.zeros(3, bool))
    assert math.isnan(r.fidelity()) and math.isnan(r.stderr())
    with pytest.raises(C.CircuitError, match="passed must imply kept"):
        C.InstanceResult(kept=np.zeros(2, bool), passed=np.ones(2, bool))
