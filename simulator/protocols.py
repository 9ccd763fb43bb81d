"""Single-protocol samplers: each protocol's Stim template, every shot's Pauli noise drawn in numpy, the measured
figures and the :mod:`qfleet.simulator.physics` closed form beside them (:data:`RUNNERS`, by protocol name)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from qfleet.simulator import physics
from qfleet.simulator.circuits import (
    InstanceResult,
    SlottedCircuit,
    bell_pair,
    bell_readout,
    ghz,
    purification,
    sample_detector_flips,
    swap_chain,
    teleported_cnot,
)
from qfleet.simulator.noise_masks import depolarize2_masks, pauli_masks, werner_masks
from qfleet.simulator.protocol_specs import ExperimentError, Value

__all__ = ["RUNNERS", "Outcome"]

# Shots are simulated in chunks so that memory stays bounded (masks are ~qubits x chunk bools per slot).
_CHUNK = 65_536
_MIN_HERALD = 1e-12  # keeps the int64 attempt counts of a chunk far from overflow

# --- sampling helpers -----------------------------------------------------------------------------------------

MaskMaker = Callable[[int], list[tuple[np.ndarray, np.ndarray]]]


def _chunks(shots: int) -> list[int]:
    return [min(_CHUNK, shots - start) for start in range(0, shots, _CHUNK)]


def _detector_counts(circuit: SlottedCircuit, make_masks: MaskMaker, shots: int, seed: int) -> np.ndarray:
    """Per-detector fire counts plus [kept, passed] counts over ``shots`` instances, chunk by chunk."""
    totals = np.zeros(circuit.num_detectors + 2, dtype=np.int64)
    for i, n in enumerate(_chunks(shots)):
        flips = sample_detector_flips(circuit, make_masks(n), seed=seed + i)
        result = InstanceResult.from_detector_flips(flips, circuit.num_herald_detectors)
        totals[:-2] += flips.sum(axis=1)
        totals[-2] += result.kept.sum()
        totals[-1] += result.passed.sum()
    return totals


def _zeros(n_qubits: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n_qubits, n), dtype=bool), np.zeros((n_qubits, n), dtype=bool)


def _binomial(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    return p, math.sqrt(p * (1 - p) / n)


@dataclass(frozen=True, slots=True)
class Outcome:
    fidelity: float
    stderr: float
    predicted: float
    success: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def _checked_fidelity(
    circuit: SlottedCircuit, make_masks: MaskMaker, shots: int, seed: int
) -> tuple[int, int]:
    totals = _detector_counts(circuit, make_masks, shots, seed)
    return int(totals[-2]), int(totals[-1])


# --- protocols ------------------------------------------------------------------------------------------------


def _bell(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    f, r = float(p["fidelity"]), float(p["readout_error"])

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        flip = rng.random((6, n)) < r
        rx, rz = _zeros(6, n)
        rz[0:2] = flip[0:2]  # MX reads X: a Z error flips it
        rx[2:6] = flip[2:6]  # MY and M: an X error flips both
        return [werner_masks(np.full((3, n), f), rng), (rx, rz)]

    fires = _detector_counts(bell_readout(), masks, shots, seed)[:3]
    q = fires / shots  # P(detector j fires) = (1 - <S_j>)/2 for S = XX, -YY, ZZ
    corr = 1 - 2 * q
    return Outcome(
        fidelity=float(1 - q.sum() / 2),  # (1 + <XX> - <YY> + <ZZ>)/4
        stderr=float(math.sqrt((q * (1 - q)).sum() / shots) / 2),
        predicted=physics.readout_bell_estimate(f, r),
        extra={
            "correlator_xx": float(corr[0]),
            "correlator_yy": float(-corr[1]),
            "correlator_zz": float(corr[2]),
            "predicted_correlator": float((4 * f - 1) / 3 * (1 - 2 * r) ** 2),
        },
    )


def _memory(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    f, t, t1, t2 = (float(p[k]) for k in ("fidelity", "wait_s", "t1_s", "t2_s"))
    try:
        px, py, pz = physics.twirled_memory_paulis(t, t1, t2)
    except physics.PhysicsError as bad:
        raise ExperimentError(f"memory: {bad} (e.g. --param t1_s={max(t2, 1.0)} --param t2_s={t2})") from bad

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        wx, wz = werner_masks(np.full((1, n), f), rng)
        mx, mz = pauli_masks(px, py, pz, rng, shape=(2, n))
        return [(wx ^ mx, wz ^ mz)]

    kept, passed = _checked_fidelity(bell_pair(), masks, shots, seed)
    fid, err = _binomial(passed, kept)
    twirled = physics.memory_pair_fidelity(f, t, t1, t2)
    exact = physics.memory_pair_fidelity_exact(f, t, t1, t2)
    # Stim samples the Pauli twirl: the prediction it must agree with is the twirled value; the exact value
    # (amplitude damping keeps its non-unital part) is reported beside it, with the gap.
    return Outcome(
        fid,
        err,
        twirled,
        extra={
            "twirled_fidelity": twirled,
            "exact_fidelity": exact,
            "twirl_error": exact - twirled,
            "qubit_px": px,
            "qubit_py": py,
            "qubit_pz": pz,
        },
    )


def _swap_chain(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    links, f, pg, r = int(p["links"]), float(p["fidelity"]), float(p["gate_error"]), float(p["readout_error"])
    circuit = swap_chain(links)
    nb = len(circuit.slots[1])

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        gx, gz = depolarize2_masks(np.full((links - 1, n), pg), rng) if links > 1 else _zeros(0, n)
        readout = rng.random((nb, n)) < r  # both BSM bits are Z-basis reads after the H: X errors flip them
        return [werner_masks(np.full((links, n), f), rng), (gx ^ readout, gz), _zeros(2, n)]

    kept, passed = _checked_fidelity(circuit, masks, shots, seed)
    fid, err = _binomial(passed, kept)
    return Outcome(fid, err, physics.chain_fidelity([f] * links, gate_error=pg, readout_error=r))


def _purify(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    method, f = str(p["method"]), float(p["fidelity"])
    kept, passed = _checked_fidelity(
        purification(method), lambda n: [werner_masks(np.full((2, n), f), rng)], shots, seed
    )
    fid, err = _binomial(passed, kept)
    success, success_err = _binomial(kept, shots)
    if method == "bbpssw":
        p_pred, f_pred = physics.bbpssw(f)
    else:
        e = (1 - f) / 3
        p_pred, (f_pred, _, _, _) = physics.dejmps(f, e, e, e)
    return Outcome(
        fid,
        err,
        f_pred,
        success,
        {"success_probability_stderr": success_err, "predicted_success_probability": p_pred},
    )


def _ghz(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    nodes, f = int(p["nodes"]), float(p["fidelity"])
    circuit = ghz(nodes)

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        wx, wz = werner_masks(np.full((nodes - 1, n), f), rng)
        none = np.zeros((1, n), dtype=bool)  # qubit 0 is the first member, not part of a link
        return [(np.vstack([none, wx]), np.vstack([none, wz])), _zeros(nodes - 1, n), _zeros(nodes, n)]

    kept, passed = _checked_fidelity(circuit, masks, shots, seed)
    fid, err = _binomial(passed, kept)
    return Outcome(fid, err, physics.ghz_fidelity(nodes, f))


@functools.cache
def _teleported_cnot_with_references() -> SlottedCircuit:
    """:func:`teleported_cnot` with the Choi references 4 and 5 exposed in the last slot.

    A Pauli on a data qubit before the gate equals the same Pauli (transposed, i.e. up to sign) on its untouched
    Choi reference, so idling of the data qubits while the link pair is made goes on 4 and 5 there.
    """
    base = teleported_cnot()
    return SlottedCircuit(
        name=f"{base.name}+references",
        segments=base.segments,
        slots=(base.slots[0], base.slots[1], (0, 3, 4, 5)),
        num_qubits=base.num_qubits,
        num_herald_detectors=base.num_herald_detectors,
        num_check_detectors=base.num_check_detectors,
    )


def _teleport_cnot(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    f, pg, r = float(p["fidelity"]), float(p["gate_error"]), float(p["readout_error"])
    wait, rt, t1, t2 = (float(p[k]) for k in ("pair_wait_s", "round_trip_s", "t1_s", "t2_s"))
    try:
        predicted = physics.teleported_cnot_fidelity(
            f, gate_error=pg, readout_error=r, pair_wait_s=wait, round_trip_s=rt, t1_s=t1, t2_s=t2
        )
    except physics.PhysicsError as bad:
        raise ExperimentError(f"teleport-cnot: {bad} (e.g. --param t1_s={max(t2, 1.0)} --param t2_s={t2})") from bad
    b_idle = physics.twirled_memory_paulis(rt / 2, t1, t2)
    c_idle = physics.twirled_memory_paulis(rt, t1, t2)

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        # Slot 0, the pair (a, b) = (1, 2): the link error and B's idle on b.
        px0, pz0 = werner_masks(np.full((1, n), f), rng)
        bx, bz = pauli_masks(*b_idle, rng, shape=(n,))
        px0[1] ^= bx
        pz0[1] ^= bz
        # DEPOLARIZE2 of CX c a on rows (c, a) and of CX b t on rows (b, t).
        gx, gz = depolarize2_masks(np.full((2, n), pg), rng)
        # Slot 1, (a, b) before M a and MX b: gate errors on a and b, then readout flips (X on a, Z on b).
        x1 = np.vstack([gx[1] ^ (rng.random(n) < r), gx[2]])
        z1 = np.vstack([gz[1], gz[2] ^ (rng.random(n) < r)])
        # Slot 2, (c, t, ref_c, ref_t): gate errors on c and t, the control's round-trip idle, and the data
        # qubits' idle during pair generation (one exponential time for both) moved to their references.
        cx, cz = pauli_masks(*c_idle, rng, shape=(n,))
        t_wait = rng.exponential(wait, size=n) if wait > 0 else np.zeros(n)
        ix, iz = pauli_masks(*physics.twirled_memory_paulis(t_wait, t1, t2), rng, shape=(2, n))
        x2 = np.vstack([gx[0] ^ cx, gx[3], ix])
        z2 = np.vstack([gz[0] ^ cz, gz[3], iz])
        return [(px0, pz0), (x1, z1), (x2, z2)]

    kept, passed = _checked_fidelity(_teleported_cnot_with_references(), masks, shots, seed)
    fid, err = _binomial(passed, kept)
    return Outcome(
        fid,
        err,
        predicted,
        extra={
            "average_gate_fidelity": physics.average_gate_fidelity(fid),
            "predicted_average_gate_fidelity": physics.average_gate_fidelity(predicted),
        },
    )


def _link(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> Outcome:
    scheme, m = str(p["scheme"]), int(p["memories"])
    herald, (px, py, pz), exact = physics.link_pair(
        scheme=scheme,
        **{
            k: float(p[k])
            for k in (
                "length_km",
                "attenuation_db_per_km",
                "emission_efficiency",
                "collection_efficiency",
                "detector_efficiency",
                "visibility",
                "bright_state_population",
                "conversion_efficiency",
                "dark_count_probability",
            )
        },
    )
    if herald < _MIN_HERALD:
        raise ExperimentError(
            f"link: the heralding probability is {herald!r}, below {_MIN_HERALD:g}: pairs are (practically) never "
            "made; shorten the link or raise the efficiencies (bright_state_population for single-click), "
            "e.g. --param length_km=10"
        )
    cycle = physics.attempt_cycle_s(prep_time_s=float(p["prep_time_s"]), length_km=float(p["length_km"]))
    # Attempts are i.i.d. Bernoulli(p) in (cycle, memory) order. The first success is Geometric(p) attempts in;
    # its cycle completes, and the memories after it in that cycle herald with p each. Attempts = m * cycles.
    heralds = attempts = cycles = 0
    cycles_sq = 0.0
    for n in _chunks(shots):
        first = rng.geometric(herald, size=n)
        c = -(-first // m)
        heralds += n + int(rng.binomial(m * c - first, herald).sum())
        attempts += int(m * c.sum())
        cycles += int(c.sum())
        cycles_sq += float((c.astype(float) ** 2).sum())
    mean_cycles = cycles / shots
    var_cycles = max(cycles_sq / shots - mean_cycles**2, 0.0)

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        x, z = _zeros(2, n)
        x[1], z[1] = pauli_masks(px, py, pz, rng, shape=(n,))
        return [(x, z)]

    kept, passed = _checked_fidelity(bell_pair(), masks, shots, seed)
    fid, err = _binomial(passed, kept)
    success = heralds / attempts
    mean_time = mean_cycles * cycle
    mean_time_err = math.sqrt(var_cycles / shots) * cycle
    predicted_time = physics.mean_time_to_pair_s(p=herald, cycle_s=cycle, memories=m)
    twirled = 1 - px - py - pz
    return Outcome(
        fid,
        err,
        exact,
        success,
        {
            "exact_fidelity": exact,
            "twirled_fidelity": twirled,
            "pair_px": px,
            "pair_py": py,
            "pair_pz": pz,
            "success_probability_stderr": math.sqrt(success * (1 - success) / attempts),
            "predicted_success_probability": herald,
            "attempt_cycle_s": cycle,
            "mean_time_s": mean_time,
            "mean_time_stderr_s": mean_time_err,
            "predicted_mean_time_s": predicted_time,
            "pair_rate_per_s": 1 / mean_time,
            "pair_rate_stderr_per_s": mean_time_err / mean_time**2,
            "predicted_pair_rate_per_s": 1 / predicted_time,
        },
    )


RUNNERS: Mapping[str, Callable[[dict[str, Value], int, np.random.Generator, int], Outcome]] = (
    MappingProxyType(
        {
            "bell": _bell,
            "memory": _memory,
            "swap-chain": _swap_chain,
            "purify": _purify,
            "ghz": _ghz,
            "teleport-cnot": _teleport_cnot,
            "link": _link,
        }
    )
)
