"""Closed-form physics of heralded links, memories, swaps, purification, teleported gates and GHZ states.

Every formula here is the oracle that the Stim circuits in :mod:`qfleet.simulator.circuits` are tested against, and the
timing model of the fleet engine. Sources are those of ``shared/reference/physics.md`` (section numbers below);
"derived" marks results derived there rather than read in a paper.

Units are SI floats: seconds, kilometres, probabilities in [0, 1]. F is the fidelity to |Phi+>, w = (4F - 1)/3 the
Werner parameter, and Bell-diagonal coefficients are ordered (A, B, C, D) = (Phi+, Psi-, Psi+, Phi-) as in Deutsch
et al. Functions documented as *elementwise* accept numpy arrays (broadcast together) as well as floats; they return
a float when every argument is a scalar and an ``ndarray`` otherwise.

Values a hair outside a domain through rounding (within 1e-12) are accepted and clipped into it, so chained
computations such as ``werner(fidelity_from_werner(w))`` never fail on the last bit.

Why one module: it is the single source of the simulator's closed forms (docs/physics.md lists what each one is
exact, twirled or approximated for); the fleet engine, the experiments and the test oracles' comparisons all
import it, and its functions share one set of domain checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FIBRE_S_PER_KM",
    "SCHEMES",
    "PhysicsError",
    "arm_efficiency",
    "attempt_cycle_s",
    "average_gate_fidelity",
    "bbpssw",
    "chain_fidelity",
    "coherence_cutoff_s",
    "dejmps",
    "dephased_pair_fidelity",
    "depolarised_pair_fidelity",
    "fibre_transmissivity",
    "fidelity_from_werner",
    "ghz_fidelity",
    "heralded_fidelity",
    "heralded_pauli_probabilities",
    "heralding_probability",
    "link_pair",
    "mean_time_to_pair_s",
    "memory_pair_fidelity",
    "memory_pair_fidelity_exact",
    "multiplexed_success",
    "pair_dephasing_time_s",
    "readout_bell_estimate",
    "swap_fidelity",
    "teleported_cnot_fidelity",
    "twirled_memory_paulis",
    "werner",
]

FIBRE_S_PER_KM: float = 5e-6
"""Light in fibre travels ~2e5 km/s, i.e. 5 us per km (physics.md 1.1; SeQUeNCe ``SPEED_OF_LIGHT = 2e-4`` m/ps)."""

SCHEMES: tuple[str, ...] = ("double-click", "single-click", "microwave")
"""Entanglement-generation schemes understood by :func:`link_pair`: two heralded optical schemes through a midpoint
station, and deterministic microwave state transfer over a cryogenic link."""

_TOL = 1e-12

Real = Any  # a float or an ndarray of floats; numpy's own typing of broadcasting is not worth the noise here


class PhysicsError(ValueError):
    """An argument of a physics function is outside its physical domain."""


def _arr(name: str, value: Real, lo: float, hi: float, rule: str, *, lo_open: bool = False) -> np.ndarray:
    """``value`` as a float array, checked against [lo, hi] (or (lo, hi]) and clipped for rounding."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise PhysicsError(f"{name}={value!r} is not a number; pass a float or an array of floats") from err
    bad = np.isnan(a) | (a < lo - _TOL) | (a > hi + _TOL)
    if lo_open:
        bad |= a <= lo
    if bad.any():
        first = float(a[bad].flat[0]) if a.ndim else float(a)
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise PhysicsError(f"{name}={first!r} is outside {interval}: {rule}")
    out: np.ndarray = np.minimum(a, hi) if lo_open else np.clip(a, lo, hi)
    return out


def _out(x: np.ndarray) -> Real:
    """A float for 0-d results, the array itself otherwise."""
    return float(x) if np.ndim(x) == 0 else x


def _fidelity(name: str, value: Real) -> np.ndarray:
    return _arr(name, value, 0.25, 1.0, "a Werner fidelity lies in [1/4, 1]; e.g. 0.95")


def _prob(name: str, value: Real) -> np.ndarray:
    return _arr(name, value, 0.0, 1.0, "a probability or efficiency lies in [0, 1]; e.g. 0.9")


def _nonneg(name: str, value: Real, hint: str) -> np.ndarray:
    return _arr(name, value, 0.0, math.inf, f"it must be finite and >= 0; e.g. {hint}")


def _readout(value: Real) -> np.ndarray:
    return _arr(
        "readout_error", value, 0.0, 0.5, "a symmetric readout flip above 1/2 is a relabelling; e.g. 0.01"
    )


def _gate(value: Real) -> np.ndarray:
    return _arr("gate_error", value, 0.0, 15 / 16, "DEPOLARIZE2's p lies in [0, 15/16]; e.g. 0.01")


def _scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise PhysicsError(
            f"scheme={scheme!r} is unknown; use one of {', '.join(SCHEMES)} (e.g. 'double-click')"
        )
    return scheme


def werner(fidelity: Real) -> Real:
    """Werner parameter w = (4F - 1)/3 of a Werner state with fidelity F (physics.md notation); elementwise.

    Raises:
        PhysicsError: F outside [1/4, 1].

    >>> werner(0.25), werner(1.0)
    (0.0, 1.0)
    """
    f = _fidelity("fidelity", fidelity)
    return _out((4 * f - 1) / 3)


def fidelity_from_werner(w: Real) -> Real:
    """Fidelity F = (1 + 3w)/4 of the Werner state with parameter w in [0, 1]; elementwise.

    >>> fidelity_from_werner(0.9)
    0.925
    """
    a = _arr("w", w, 0.0, 1.0, "this module uses Werner parameters w in [0, 1] (F >= 1/4); e.g. 0.9")
    return _out((1 + 3 * a) / 4)


def fibre_transmissivity(length_km: Real, attenuation_db_per_km: Real) -> Real:
    """Fibre transmissivity 10**(-alpha L / 10) (physics.md 1.1; alpha ~ 0.2 dB/km at 1550 nm); elementwise.

    >>> round(fibre_transmissivity(50.0, 0.2), 6)
    0.1
    """
    length = _nonneg("length_km", length_km, "10.0")
    alpha = _nonneg("attenuation_db_per_km", attenuation_db_per_km, "0.2")
    return _out(10.0 ** (-alpha * length / 10))


def _efficiency(name: str, value: Real) -> np.ndarray:
    return _arr(name, value, 0.0, 1.0, "an efficiency lies in [0, 1]; e.g. 0.9")


def _dark(value: Real) -> np.ndarray:
    return _arr(
        "dark_count_probability", value, 0.0, 0.5,
        "a detector's dark-count probability per attempt window lies in [0, 1/2]; e.g. 1.5e-7",
    )


def arm_efficiency(
    *,
    scheme: str,
    length_km: Real,
    attenuation_db_per_km: Real,
    emission_efficiency: Real,
    collection_efficiency: Real,
    detector_efficiency: Real,
    conversion_efficiency: Real = 1.0,
) -> Real:
    """Probability that an emitted photon is converted, transmitted and detected; elementwise.

    Midpoint schemes send each photon over half the fibre: eta = emission * collection * conversion * detector *
    T(L/2). ``"microwave"`` sends it the whole way and absorbs it at the far node: eta = emission * collection *
    conversion * detector * T(L), the transfer efficiency (``collection_efficiency`` is then the absorption
    probability, ``detector_efficiency`` usually 1).

    >>> round(arm_efficiency(scheme="double-click", length_km=50.0, attenuation_db_per_km=0.2,
    ...     emission_efficiency=1.0, collection_efficiency=1.0, detector_efficiency=1.0,
    ...     conversion_efficiency=0.5), 6)
    0.158114
    """
    _scheme(scheme)
    length = _nonneg("length_km", length_km, "10.0")
    alpha_db = _nonneg("attenuation_db_per_km", attenuation_db_per_km, "0.2")
    fibre = length if scheme == "microwave" else length / 2
    return _out(
        _efficiency("emission_efficiency", emission_efficiency)
        * _efficiency("collection_efficiency", collection_efficiency)
        * _efficiency("conversion_efficiency", conversion_efficiency)
        * _efficiency("detector_efficiency", detector_efficiency)
        * 10.0 ** (-alpha_db * fibre / 10)
    )


def _heralded_terms(
    scheme: str, eta: np.ndarray, v: np.ndarray, alpha: np.ndarray, dark: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p_herald, px, py, pz) of the exact heralded state and its Pauli twirl (derivation in docs/physics.md).

    Threshold detectors with dark-count probability d per window; eta per arm (loss commutes with the balanced
    beamsplitter); photons of the two emitters overlap with <a|b> = sqrt(V), V the HOM visibility. For one
    detector's event ("this one clicks, the other does not"), with q_n the probability of that event given n
    emitted photons:

        q0 = d(1-d),  q1 = (1-d)(eta/2 + (1-eta) d),  q2 = (1-d)(eta^2 c2 + eta(1-eta) k1 + (1-eta)^2 d)

    where two photons reach one given detector together with probability c2 = (1+V)/4 (HOM bunching) and one of
    two survivors reaches it with k1 = 1. A detected single photon leaves the two-excitation-free block coherent
    (factor sqrt(V) per detected photon); a dark-count herald after a lost photon leaves it incoherent (F = 1/2);
    the all-dark and all-bright branches are orthogonal to the target (twirled: X or Y with half each).
    """
    if scheme == "microwave":
        # Amplitude damping with transfer efficiency eta, then coherence factor V: Pauli eigenvalues
        # (l_X, l_Y, l_Z) = (V sqrt(eta), V sqrt(eta), eta); the non-unital part is dropped by the twirl.
        root = np.sqrt(eta)
        px = (1 - eta) / 4 + 0.0 * alpha * dark
        pz = (1 - 2 * v * root + eta) / 4 + 0.0 * alpha * dark
        return np.ones_like(px), px, np.array(px, copy=True), pz
    # eta = d = 0 makes no events; the state is then the eta -> 0 limit (filled in at the end).
    limit = (eta <= 0) & (dark <= 0)
    eta = np.where(limit, 0.5, eta)
    q0 = dark * (1 - dark)
    q1 = (1 - dark) * (eta / 2 + (1 - eta) * dark)
    q2 = (1 - dark) * (eta**2 * (1 + v) / 4 + eta * (1 - eta) + (1 - eta) ** 2 * dark)
    signal = (1 - dark) * eta / 2  # one photon, detected at this detector, the other detector silent
    if scheme == "double-click":
        # Barrett-Kok: emitters in (|u>+|d>)/sqrt(2), two rounds with a pi pulse between; each (round-1
        # detector, round-2 detector) pattern has the same statistics. One excitation in both rounds: weight
        # q1^2 / 2, coherent (factor V) when both photons were detected; the all-bright / all-dark branches give
        # q0 q2 / 2 (they swap between rounds).
        p_event = q0 * q2 / 2 + q1**2 / 2
        coherent = signal**2 / 2
        incoherent = q1**2 / 2 - coherent
        wrong = q0 * q2 / 2
        factor = v
        events = 4
        lim_x, lim_z = 0.0 * alpha, (1 - v) / 2
    else:
        # Single-click: emitters in sqrt(1-alpha)|u> + sqrt(alpha)|d>, |d> bright; a two-photon event bunches.
        p_event = (1 - alpha) ** 2 * q0 + 2 * alpha * (1 - alpha) * q1 + alpha**2 * q2
        coherent = 2 * alpha * (1 - alpha) * signal
        incoherent = 2 * alpha * (1 - alpha) * (q1 - signal)
        wrong = (1 - alpha) ** 2 * q0 + alpha**2 * q2
        factor = np.sqrt(v)
        events = 2
        lim_x, lim_z = alpha / 2, (1 - alpha) * (1 - factor) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(p_event > 0, p_event, 1.0)
        pz = np.where(p_event > 0, (coherent * (1 - factor) / 2 + incoherent / 2) / safe, 0.5)
        px = np.where(p_event > 0, wrong / 2 / safe, 0.0)
    px, pz = np.where(limit, lim_x, px), np.where(limit, lim_z, pz)
    return np.where(limit, 0.0, np.minimum(events * p_event, 1.0)), px, np.array(px, copy=True), pz


def link_pair(
    *,
    scheme: str,
    length_km: float,
    attenuation_db_per_km: float,
    emission_efficiency: float,
    collection_efficiency: float,
    detector_efficiency: float,
    visibility: float,
    bright_state_population: float,
    conversion_efficiency: float = 1.0,
    dark_count_probability: float = 0.0,
) -> tuple[float, tuple[float, float, float], float]:
    """The one link model: (p_herald, (px, py, pz), exact fidelity) of one generation attempt.

    Used by the fleet engine (:class:`~qfleet.simulator.runstate.Segment`) and by ``qfleet sim experiment link``.
    ``p_herald`` is the success probability per attempt (1 for ``"microwave"`` deterministic transfer);
    ``(px, py, pz)`` is the Pauli twirl of the delivered state (an error on one half of |Phi+>), what Stim
    samples; ``fidelity`` is that of the exact state, which the twirl preserves (twirling keeps every Bell-basis
    diagonal element), so 1 - px - py - pz == fidelity.

    Double-click (Barrett & Kok, PRA 71, 060310, 2005): F = (1+V)/2 without dark counts. Single-click (Cabrillo et
    al. 1999; Humphreys et al., Nature 558, 268, 2018): F -> (1-alpha)(1+sqrt(V))/2 as eta -> 0 (single-photon
    interference keeps coherence sqrt(V)); the two-photon branch weighs alpha (1 - eta (3-V)/4). Dark counts
    (probability d per detector and window) herald mixed or wrong states, so F falls with distance as the signal
    falls. Microwave (Kurpiers et al., Nature 558, 264, 2018): the transferred half of a local Bell pair goes
    through amplitude damping with transfer efficiency eta and a coherence factor V:
    F = (1 + 2 V sqrt(eta) + eta)/4, deterministic.

    Raises:
        PhysicsError: an unknown scheme or a value outside its domain.

    >>> p, (px, py, pz), f = link_pair(scheme="single-click", length_km=0.0, attenuation_db_per_km=0.2,
    ...     emission_efficiency=1.0, collection_efficiency=1e-6, detector_efficiency=1.0, visibility=0.81,
    ...     bright_state_population=0.1)
    >>> round(f, 6), round(1 - px - py - pz, 6)
    (0.855, 0.855)
    """
    eta = np.asarray(arm_efficiency(
        scheme=scheme, length_km=length_km, attenuation_db_per_km=attenuation_db_per_km,
        emission_efficiency=emission_efficiency, collection_efficiency=collection_efficiency,
        detector_efficiency=detector_efficiency, conversion_efficiency=conversion_efficiency))
    p, px, py, pz = _heralded_terms(
        scheme, eta, _prob("visibility", visibility), _prob("bright_state_population", bright_state_population),
        _dark(dark_count_probability))
    fx, fy, fz = float(px), float(py), float(pz)
    return float(p), (fx, fy, fz), float(1 - fx - fy - fz)


def heralding_probability(
    *,
    scheme: str,
    length_km: Real,
    attenuation_db_per_km: Real,
    emission_efficiency: Real,
    collection_efficiency: Real,
    detector_efficiency: Real,
    bright_state_population: Real,
    visibility: Real = 1.0,
    conversion_efficiency: Real = 1.0,
    dark_count_probability: Real = 0.0,
) -> Real:
    """Success probability of one generation attempt (the ``p_herald`` of :func:`link_pair`); elementwise.

    Each arm has efficiency eta (:func:`arm_efficiency`). Double-click needs both photons: p = eta**2 / 2 without
    dark counts. Single-click needs one: p = 2 alpha eta (1 - alpha eta (3 - V)/4) without dark counts (the
    bright-bright branch bunches onto one detector). Dark counts add false heralds. Microwave transfer is
    deterministic: p = 1.

    Raises:
        PhysicsError: an unknown scheme, or an efficiency / alpha outside [0, 1].

    >>> heralding_probability(scheme="double-click", length_km=0.0, attenuation_db_per_km=0.2,
    ...     emission_efficiency=1.0, collection_efficiency=0.5, detector_efficiency=1.0,
    ...     bright_state_population=0.1)
    0.125
    """
    eta = np.asarray(arm_efficiency(
        scheme=scheme, length_km=length_km, attenuation_db_per_km=attenuation_db_per_km,
        emission_efficiency=emission_efficiency, collection_efficiency=collection_efficiency,
        detector_efficiency=detector_efficiency, conversion_efficiency=conversion_efficiency))
    v = _prob("visibility", visibility)
    alpha = _prob("bright_state_population", bright_state_population)
    p, _, _, _ = _heralded_terms(scheme, eta, v, alpha, _dark(dark_count_probability))
    return _out(p)


def attempt_cycle_s(*, prep_time_s: Real, length_km: Real) -> Real:
    """Duration of one midpoint-heralded attempt: preparation plus L / c (photon to L/2, herald back; 1.1).

    >>> attempt_cycle_s(prep_time_s=10e-6, length_km=2.0)
    2e-05
    """
    prep = _nonneg("prep_time_s", prep_time_s, "10e-6")
    length = _nonneg("length_km", length_km, "10.0")
    return _out(prep + length * FIBRE_S_PER_KM)


def _memories(memories: Real) -> np.ndarray:
    m = np.asarray(memories)
    if m.dtype == bool or not np.issubdtype(m.dtype, np.number) or np.any(m != np.floor(m)) or np.any(m < 1):
        raise PhysicsError(
            f"memories={memories!r} must be an integer >= 1 (the number of multiplexed memories)"
        )
    return m.astype(float)


def multiplexed_success(p: Real, memories: Real) -> Real:
    """Probability that at least one of ``memories`` parallel attempts succeeds in a cycle: 1 - (1-p)**m.

    Computed as -expm1(m log1p(-p)) so that tiny p keeps its precision; elementwise.

    >>> multiplexed_success(0.5, 2)
    0.75
    """
    prob = _prob("p", p)
    m = _memories(memories)
    with np.errstate(divide="ignore"):
        return _out(-np.expm1(m * np.log1p(-prob)))


def mean_time_to_pair_s(*, p: Real, cycle_s: Real, memories: Real) -> Real:
    """Mean time to the first heralded pair: cycle / (1 - (1-p)**m) (geometric attempts, 1.1); elementwise.

    Returns ``inf`` where p = 0.

    >>> round(mean_time_to_pair_s(p=0.25, cycle_s=1e-3, memories=1), 12)
    0.004
    """
    cycle = _nonneg("cycle_s", cycle_s, "2e-5")
    success = np.asarray(multiplexed_success(p, memories))
    with np.errstate(divide="ignore"):
        return _out(np.where(success > 0, cycle / np.where(success > 0, success, 1.0), math.inf))


def heralded_pauli_probabilities(
    *,
    scheme: str,
    visibility: Real,
    bright_state_population: Real,
    arm_efficiency: Real = 0.0,
    dark_count_probability: Real = 0.0,
) -> tuple[Real, Real, Real]:
    """Pauli error (px, py, pz) on one half of a freshly made pair: the twirl of :func:`link_pair`'s state.

    ``arm_efficiency`` is eta of :func:`arm_efficiency`; its default 0 is the low-efficiency limit of the
    midpoint schemes (and no transfer at all for ``"microwave"``: pass the transfer efficiency there).
    Double-click: Z with (1-V)/2. Single-click: X and Y with alpha/2 each and Z with (1-alpha)(1-sqrt(V))/2 in
    that limit. Elementwise.

    >>> heralded_pauli_probabilities(scheme="double-click", visibility=0.9, bright_state_population=0.1)
    (0.0, 0.0, 0.04999999999999999)
    """
    _scheme(scheme)
    _, px, py, pz = _heralded_terms(
        scheme, _efficiency("arm_efficiency", arm_efficiency), _prob("visibility", visibility),
        _prob("bright_state_population", bright_state_population), _dark(dark_count_probability))
    return _out(px), _out(py), _out(pz)


def heralded_fidelity(
    *,
    scheme: str,
    visibility: Real,
    bright_state_population: Real,
    arm_efficiency: Real = 0.0,
    dark_count_probability: Real = 0.0,
) -> Real:
    """Exact fidelity of a freshly made pair (see :func:`link_pair`); elementwise.

    In the low-efficiency limit without dark counts (the defaults): (1+V)/2 for double-click and
    (1-alpha)(1+sqrt(V))/2 for single-click, whose single-photon interference keeps coherence sqrt(V)
    (physics.md 1.1). The single-click value can fall below 1/4: that state is not Werner.

    >>> round(heralded_fidelity(scheme="single-click", visibility=1.0, bright_state_population=0.1), 12)
    0.9
    >>> round(heralded_fidelity(scheme="single-click", visibility=0.95, bright_state_population=0.07), 4)
    0.9182
    """
    px, py, pz = heralded_pauli_probabilities(
        scheme=scheme, visibility=visibility, bright_state_population=bright_state_population,
        arm_efficiency=arm_efficiency, dark_count_probability=dark_count_probability)
    return _out(1 - np.asarray(px) - np.asarray(py) - np.asarray(pz))


def _times(t_s: Real, t1_s: Real, t2_s: Real) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = _nonneg("t_s", t_s, "0.002")
    t1 = _arr("t1_s", t1_s, 0.0, math.inf, "T1 is > 0 seconds (math.inf for none); e.g. 1.0", lo_open=True)
    t2 = _arr("t2_s", t2_s, 0.0, math.inf, "T2 is > 0 seconds (math.inf for none); e.g. 0.5", lo_open=True)
    bad = t2 > 2 * t1 * (1 + _TOL)
    if bad.any():
        raise PhysicsError(
            f"t2_s={float(t2[bad].flat[0]) if t2.ndim else float(t2)!r} exceeds 2*t1_s: physically T2 <= 2 T1 "
            "(the twirled Z probability would be negative); lower t2_s or raise t1_s"
        )
    return t, t1, t2


def twirled_memory_paulis(t_s: Real, t1_s: Real, t2_s: Real) -> tuple[Real, Real, Real]:
    """Per-qubit Pauli-twirled T1/T2 idling channel (px, py, pz) for a wait of t seconds; elementwise.

    px = py = (1 - exp(-t/T1))/4 and pz = (1 - exp(-t/T2))/2 - (1 - exp(-t/T1))/4, clamped at 0 (Ghosh, Fowler &
    Geller, PRA 86, 062318, 2012; physics.md 1.3). ``math.inf`` switches T1 or T2 off.

    Raises:
        PhysicsError: t < 0, T1 or T2 <= 0, or T2 > 2 T1.

    >>> twirled_memory_paulis(1.0, math.inf, math.inf)
    (0.0, 0.0, 0.0)
    """
    t, t1, t2 = _times(t_s, t1_s, t2_s)
    a1 = -np.expm1(-t / t1)
    a2 = -np.expm1(-t / t2)
    px = a1 / 4
    pz = np.maximum(a2 / 2 - a1 / 4, 0.0)
    return _out(px), _out(np.array(px, copy=True)), _out(pz)


def memory_pair_fidelity(f0: Real, t_s: Real, t1_s: Real, t2_s: Real) -> Real:
    """Fidelity of a Werner(F0) pair after both halves idle t under :func:`twirled_memory_paulis`; elementwise.

    Derived from the Pauli probabilities: a Pauli channel scales the X, Y, Z correlators of a pair by its Pauli
    eigenvalues l_P = 1 - 2 (sum of the probabilities of the Paulis anticommuting with P), the Werner error scales
    them by w, and F = (1 + w (l_X**2 + l_Y**2 + l_Z**2))/4. With T1 = inf this is
    :func:`dephased_pair_fidelity`.

    >>> round(memory_pair_fidelity(1.0, 0.1, math.inf, 1.0), 4)
    0.9094
    """
    w = (4 * _fidelity("f0", f0) - 1) / 3
    px, py, pz = (np.asarray(v) for v in twirled_memory_paulis(t_s, t1_s, t2_s))
    lx, ly, lz = 1 - 2 * (py + pz), 1 - 2 * (px + pz), 1 - 2 * (px + py)
    return _out(np.clip((1 + w * (lx**2 + ly**2 + lz**2)) / 4, 0.25, 1.0))


def memory_pair_fidelity_exact(f0: Real, t_s: Real, t1_s: Real, t2_s: Real) -> Real:
    """Exact fidelity of a Werner(F0) pair after both halves idle t under amplitude damping and dephasing.

    Each half goes through amplitude damping with gamma = 1 - exp(-t/T1) and then pure dephasing for the rest of
    T2 (coherences decay as exp(-t/T2) in all). The Pauli eigenvalues equal the twirl's (l_X = l_Y = exp(-t/T2),
    l_Z = exp(-t/T1)), but the non-unital part of amplitude damping, which the twirl drops, pumps both halves
    towards |00> and adds gamma**2 to <ZZ>: F = :func:`memory_pair_fidelity` + gamma**2 / 4 exactly (derived in
    docs/physics.md). Elementwise.

    >>> round(memory_pair_fidelity_exact(0.93, 0.03, 0.08, 0.05), 4), round(memory_pair_fidelity(0.93, 0.03, 0.08, 0.05), 4)
    (0.5181, 0.4936)
    """
    w = (4 * _fidelity("f0", f0) - 1) / 3
    t, t1, t2 = _times(t_s, t1_s, t2_s)
    gamma = -np.expm1(-t / t1)
    lx, lz = np.exp(-t / t2), np.exp(-t / t1)
    return _out((1 + w * (2 * lx**2 + lz**2) + gamma**2) / 4)


def dephased_pair_fidelity(f0: Real, t_s: Real, t2_s: Real) -> Real:
    """Werner(F0) pair after pure dephasing of both halves for t: (1-q) F0 + q (1-F0)/3, q = (1 - e^(-2t/T2))/2.

    physics.md 1.3; elementwise.

    >>> round(dephased_pair_fidelity(0.95, 2e-3, 10e-3), 4)
    0.7961
    """
    f = _fidelity("f0", f0)
    t, _, t2 = _times(t_s, math.inf, t2_s)
    q = -np.expm1(-2 * t / t2) / 2
    return _out((1 - q) * f + q * (1 - f) / 3)


def depolarised_pair_fidelity(f0: Real, t_s: Real, rate_per_s: Real) -> Real:
    """Werner(F0) pair with both halves depolarising at ``rate_per_s``: 1/4 + (F0 - 1/4) e^(-2 rate t).

    The form of NetSquid's ``DepolarNoiseModel`` (physics.md 1.3, unverified there); elementwise.

    >>> depolarised_pair_fidelity(0.9, 1.0, 0.0)
    0.9
    """
    f = _fidelity("f0", f0)
    t = _nonneg("t_s", t_s, "0.002")
    rate = _nonneg("rate_per_s", rate_per_s, "1.0")
    return _out(0.25 + (f - 0.25) * np.exp(-2 * rate * t))


def coherence_cutoff_s(f0: float, f_threshold: float, t2_s: float) -> float:
    """Longest storage time before a dephasing Werner(F0) pair falls below ``f_threshold`` (physics.md 1.3).

    q* = (F0 - F_th)/(F0 - (1-F0)/3) and t_max = -(T2/2) ln(1 - 2 q*). Returns ``math.inf`` when F_th is at or
    below the dephased asymptote (q* >= 1/2, no cut-off needed) and 0.0 when F0 is already below F_th.

    >>> round(coherence_cutoff_s(0.97, 0.90, 0.5), 4)
    0.0394
    """
    f = float(_fidelity("f0", f0))
    th = float(_prob("f_threshold", f_threshold))
    t2 = float(
        _arr("t2_s", t2_s, 0.0, math.inf, "T2 is > 0 seconds (math.inf for none); e.g. 0.5", lo_open=True)
    )
    if th > f:
        return 0.0
    w = (4 * f - 1) / 3  # = F0 - (1-F0)/3, the contrast that dephasing can destroy
    # T2 = inf (no dephasing) never needs a cut-off; without the test, inf * log1p(-0) at F_th = F0 is NaN.
    if math.isinf(t2) or w <= 0 or 2 * (f - th) >= w:
        return math.inf
    return -(t2 / 2) * math.log1p(-2 * (f - th) / w)


def pair_dephasing_time_s(t2_a: float, t2_b: float) -> float:
    """The T2 of a pair whose halves dephase with T2a and T2b: e^(-t/T2a - t/T2b) = e^(-2t/T2pair).

    T2pair = 2 / (1/T2a + 1/T2b), the harmonic mean, so that :func:`dephased_pair_fidelity` and
    :func:`coherence_cutoff_s` apply unchanged. ``math.inf`` on both halves (no dephasing) gives ``math.inf``.

    Raises:
        PhysicsError: a T2 that is not > 0 (NaN included).

    >>> pair_dephasing_time_s(0.5, 0.5), pair_dephasing_time_s(math.inf, 1.0), pair_dephasing_time_s(math.inf, math.inf)
    (0.5, 2.0, inf)
    """
    rule = "T2 is > 0 seconds (math.inf for none); e.g. 0.5"
    a = float(_arr("t2_a", t2_a, 0.0, math.inf, rule, lo_open=True))
    b = float(_arr("t2_b", t2_b, 0.0, math.inf, rule, lo_open=True))
    rate = 1.0 / a + 1.0 / b
    return 2.0 / rate if rate > 0 else math.inf


def _swap_factors(gate_error: Real, readout_error: Real) -> tuple[np.ndarray, np.ndarray]:
    """Pauli eigenvalue factors (l_X = l_Z, l_Y) that one noisy Bell-state measurement multiplies in."""
    g = 1 - 16 * _gate(gate_error) / 15
    a = 1 - 2 * _readout(readout_error)
    # A flipped X-basis bit is a Z error on the output (scales l_X, l_Y by a), a flipped Z-basis bit an X error
    # (scales l_Y, l_Z by a); the 15 DEPOLARIZE2 Paulis land 4-to-1 on the 4 output Paulis, i.e. depolarising.
    return g * a, g * a * a


def swap_fidelity(f1: Real, f2: Real, *, gate_error: Real = 0.0, readout_error: Real = 0.0) -> Real:
    """Fidelity after swapping two Werner pairs with a noisy Bell-state measurement; elementwise.

    Ideal: w = w1 w2 (Briegel, Duer, Cirac & Zoller, PRL 81, 5932, 1998). A DEPOLARIZE2(pg) on the BSM gate
    scales every Pauli eigenvalue by g = 1 - 16 pg/15, and a readout flip eps on each BSM bit is an X and a Z
    error with eps each, so F = (1 + w1 w2 g [2 (1 - 2 eps) + (1 - 2 eps)**2])/4 exactly. physics.md 1.4 writes
    the readout part as (1 - 4 eps/3)**2, which agrees to first order in eps but overestimates F at second
    order (0.601 against the exact, Stim-confirmed 0.590 at F = 0.95, eps = 0.2).

    >>> round(swap_fidelity(0.95, 0.95), 4), round(swap_fidelity(0.95, 0.95, gate_error=0.01, readout_error=0.01), 4)
    (0.9033, 0.8792)
    """
    w1 = (4 * _fidelity("f1", f1) - 1) / 3
    w2 = (4 * _fidelity("f2", f2) - 1) / 3
    lxz, ly = _swap_factors(gate_error, readout_error)
    return _out((1 + w1 * w2 * (2 * lxz + ly)) / 4)


def chain_fidelity(
    fidelities: Sequence[float], *, gate_error: float = 0.0, readout_error: float = 0.0
) -> float:
    """End-to-end fidelity of a repeater chain of Werner links joined by noisy swaps (see :func:`swap_fidelity`).

    Exact for any number of links: swapping multiplies Pauli eigenvalues, so l_X = l_Z = prod(w) (g a)**(n-1)
    and l_Y = prod(w) (g a**2)**(n-1) with a = 1 - 2 eps, and F = (1 + l_X + l_Y + l_Z)/4. With readout error
    the intermediate pairs are not Werner, so folding :func:`swap_fidelity` would be slightly off; the swap
    order does not matter.

    Raises:
        PhysicsError: an empty chain or a fidelity outside [1/4, 1].

    >>> chain_fidelity([0.9]), round(chain_fidelity([0.95, 0.95]), 4)
    (0.9, 0.9033)
    """
    if len(fidelities) == 0:
        raise PhysicsError(
            "fidelities=[] is empty: a chain needs at least one link fidelity, e.g. [0.95, 0.95]"
        )
    w = 1.0
    for i, f in enumerate(fidelities):
        w *= (4 * float(_fidelity(f"fidelities[{i}]", f)) - 1) / 3
    lxz, ly = (float(v) ** (len(fidelities) - 1) for v in _swap_factors(gate_error, readout_error))
    return float(np.clip((1 + w * (2 * lxz + ly)) / 4, 0.25, 1.0))


def bbpssw(f: Real) -> tuple[Real, Real]:
    """One BBPSSW round on two Werner(F) pairs: (p_success, F') (Bennett et al., PRL 76, 722, 1996; 1.5).

    e = (1-F)/3, p = F**2 + 2 F e + 5 e**2 and F' = (F**2 + e**2)/p (Duer-Briegel eq. 18); elementwise.

    >>> [round(x, 4) for x in bbpssw(0.85)]
    [0.82, 0.8841]
    """
    fa = _fidelity("f", f)
    e = (1 - fa) / 3
    p = fa**2 + 2 * fa * e + 5 * e**2
    return _out(p), _out((fa**2 + e**2) / p)


def dejmps(a: float, b: float, c: float, d: float) -> tuple[float, tuple[float, float, float, float]]:
    """One DEJMPS round on two copies of a Bell-diagonal state (A, B, C, D) = (Phi+, Psi-, Psi+, Phi-).

    N = (A+B)**2 + (C+D)**2; A' = (A**2+B**2)/N, B' = 2CD/N, C' = (C**2+D**2)/N, D' = 2AB/N; p_success = N
    (Deutsch et al., PRL 77, 2818, 1996; physics.md 1.5). The protocol's local rotations are part of the map.

    Raises:
        PhysicsError: a coefficient outside [0, 1] or coefficients not summing to 1.

    >>> p, (a, b, c, d) = dejmps(0.9, 0.0, 0.0, 0.1)
    >>> round(p, 4), round(a, 4)
    (0.82, 0.9878)
    """
    coeffs = [float(_prob(name, v)) for name, v in zip("abcd", (a, b, c, d), strict=True)]
    total = sum(coeffs)
    if abs(total - 1) > 1e-9:
        raise PhysicsError(
            f"a+b+c+d={total!r} must be 1: Bell-diagonal coefficients are probabilities; normalise them"
        )
    a, b, c, d = (x / total for x in coeffs)
    n = (a + b) ** 2 + (c + d) ** 2
    return n, ((a * a + b * b) / n, 2 * c * d / n, (c * c + d * d) / n, 2 * a * b / n)


def _idle_ok(t: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """P(no Pauli) of the twirled idle channel: 1 - px - py - pz = (1 + e^(-t/T1) + 2 e^(-t/T2))/4."""
    out: np.ndarray = (1 + np.exp(-t / t1) + 2 * np.exp(-t / t2)) / 4
    return out


def teleported_cnot_fidelity(
    f: Real,
    *,
    gate_error: Real = 0.0,
    readout_error: Real = 0.0,
    pair_wait_s: Real = 0.0,
    round_trip_s: Real = 0.0,
    t1_s: Real = math.inf,
    t2_s: Real = math.inf,
) -> Real:
    """Process (Choi) fidelity of a CNOT teleported over one link pair of fidelity F (physics.md 1.6).

    With perfect local operations it is F exactly (Eisert, Jacobs, Papadopoulos & Plenio, PRA 62, 052317, 2000):
    every Pauli on the link pair is a wrong correction. Local noise multiplies in, each failure independent (exact
    to first order; two errors that cancel are second order): each local CNOT with DEPOLARIZE2(p) is harmless
    only as I or as Z on the measured comm qubit (1 - 14p/15 each); each of the two feed-forward bits reads
    right with 1 - r; the control idles ``round_trip_s`` and B's comm qubit half of it under the twirled T1/T2
    channel; and both data qubits idle together while the link pair is made, an exponential time of mean
    ``pair_wait_s``: E[S(t)^2] with S = (1 + e^(-t/T1) + 2 e^(-t/T2))/4 and E[e^(-kt)] = 1/(1 + k mean).
    Elementwise.

    >>> teleported_cnot_fidelity(0.97)
    0.97
    >>> round(teleported_cnot_fidelity(0.97, gate_error=0.01, readout_error=0.01), 4)
    0.933
    """
    fa = _fidelity("f", f)
    g = 1 - 14 * _gate(gate_error) / 15
    r = _readout(readout_error)
    wait = _nonneg("pair_wait_s", pair_wait_s, "0.1")
    rt, t1, t2 = _times(round_trip_s, t1_s, t2_s)
    _times(wait, t1_s, t2_s)
    k1, k2 = 1 / t1, 1 / t2

    def mean(k: np.ndarray) -> np.ndarray:
        """E[e^(-k t)] for t ~ Exp(mean pair_wait_s)."""
        out: np.ndarray = 1 / (1 + k * wait)
        return out

    pre = (1 + mean(2 * k1) + 4 * mean(2 * k2) + 2 * mean(k1) + 4 * mean(k2) + 4 * mean(k1 + k2)) / 16
    out = fa * g**2 * (1 - r) ** 2 * _idle_ok(rt, t1, t2) * _idle_ok(rt / 2, t1, t2) * pre
    return _out(out)


def average_gate_fidelity(process_fidelity: Real, dim: int = 4) -> Real:
    """Average gate fidelity (d Fp + 1)/(d + 1) from a process fidelity Fp in dimension d (4 for two qubits).

    >>> round(average_gate_fidelity(0.9), 4)
    0.92
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise PhysicsError(f"dim={dim!r} must be an integer >= 2 (4 for a two-qubit gate)")
    fp = _prob("process_fidelity", process_fidelity)
    return _out((dim * fp + 1) / (dim + 1))


def ghz_fidelity(k: int, f: Real) -> Real:
    """Fidelity of a k-node GHZ state fused from k-1 Werner(F) pairs: [(1-2e)**(k-1) + (1-4e)**(k-1)]/2.

    e = (1-F)/3 (derived, physics.md 1.7: X-type pair errors always hurt, Z-type errors cancel in pairs); k = 2
    gives F. Elementwise in ``f``.

    >>> ghz_fidelity(2, 0.9)
    0.9
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise PhysicsError(f"k={k!r} must be an integer >= 2 (a GHZ state spans at least two nodes)")
    e = (1 - _fidelity("f", f)) / 3
    return _out(((1 - 2 * e) ** (k - 1) + (1 - 4 * e) ** (k - 1)) / 2)


def readout_bell_estimate(f: Real, readout_error: Real) -> Real:
    """Bell fidelity estimated from XX, YY, ZZ correlators read with symmetric flips r: (1 + 3w(1-2r)**2)/4.

    Each two-qubit correlator shrinks by (1-2r)**2 (physics.md 1.8); elementwise.

    >>> round(readout_bell_estimate(0.95, 0.02), 4)
    0.8951
    """
    w = (4 * _fidelity("f", f) - 1) / 3
    r = _readout(readout_error)
    return _out((1 + 3 * w * (1 - 2 * r) ** 2) / 4)
