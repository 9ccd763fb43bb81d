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
    "mean_time_to_pair_s",
    "memory_pair_fidelity",
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

SCHEMES: tuple[str, ...] = ("double-click", "single-click")
"""Heralding schemes understood by :func:`heralding_probability` and :func:`heralded_fidelity`."""

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


def heralding_probability(
    *,
    scheme: str,
    length_km: Real,
    attenuation_db_per_km: Real,
    emission_efficiency: Real,
    collection_efficiency: Real,
    detector_efficiency: Real,
    bright_state_population: Real,
) -> Real:
    """Success probability of one heralded-generation attempt through a midpoint station; elementwise.

    Each arm has efficiency eta = emission * collection * T(L/2) * detector. Double-click (Barrett & Kok, PRA 71,
    060310, 2005) needs both photons: p = eta**2 / 2. Single-click (Cabrillo et al. 1999; Humphreys et al.,
    Nature 558, 268, 2018) needs one: p = 2 alpha eta, capped at 1 (physics.md 1.1). ``bright_state_population``
    (alpha) is ignored by the double-click scheme.

    Raises:
        PhysicsError: an unknown scheme, or an efficiency / alpha outside [0, 1].

    >>> heralding_probability(scheme="double-click", length_km=0.0, attenuation_db_per_km=0.2,
    ...     emission_efficiency=1.0, collection_efficiency=0.5, detector_efficiency=1.0,
    ...     bright_state_population=0.1)
    0.125
    """
    _scheme(scheme)
    length = _nonneg("length_km", length_km, "10.0")
    alpha_db = _nonneg("attenuation_db_per_km", attenuation_db_per_km, "0.2")
    eta = (
        _prob("emission_efficiency", emission_efficiency)
        * _prob("collection_efficiency", collection_efficiency)
        * _prob("detector_efficiency", detector_efficiency)
        * 10.0 ** (-alpha_db * (length / 2) / 10)
    )
    alpha = _prob("bright_state_population", bright_state_population)
    if scheme == "double-click":
        return _out(0.5 * eta**2 + 0.0 * alpha)  # the 0 * alpha keeps broadcasting identical across schemes
    return _out(np.minimum(2 * alpha * eta, 1.0))


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
    *, scheme: str, visibility: Real, bright_state_population: Real
) -> tuple[Real, Real, Real]:
    """Pauli error (px, py, pz) on one half of a freshly heralded pair, the model behind :func:`heralded_fidelity`.

    Imperfect two-photon interference (HOM visibility V) heralds the wrong-sign Bell state with probability
    (1 - V)/2: a Z error. Single-click generation also admits the bright-bright term with probability alpha, which
    is orthogonal to the target; its Pauli twirl is an X or a Y error with alpha/2 each (physics.md 1.1).
    Elementwise.

    >>> heralded_pauli_probabilities(scheme="double-click", visibility=0.9, bright_state_population=0.1)
    (0.0, 0.0, 0.04999999999999999)
    """
    _scheme(scheme)
    v = _prob("visibility", visibility)
    alpha = _prob("bright_state_population", bright_state_population)
    if scheme == "double-click":
        zero = 0.0 * v * alpha
        return _out(zero), _out(zero), _out((1 - v) / 2 + zero)
    return _out(alpha / 2 + 0.0 * v), _out(alpha / 2 + 0.0 * v), _out((1 - alpha) * (1 - v) / 2)


def heralded_fidelity(*, scheme: str, visibility: Real, bright_state_population: Real) -> Real:
    """Fidelity of a heralded pair: (1+V)/2 for double-click, (1-alpha)(1+V)/2 for single-click (1.1).

    The dominant terms only (dark counts and multi-photon events are neglected). The single-click value can fall
    below 1/4: that state is not Werner. Elementwise.

    >>> heralded_fidelity(scheme="single-click", visibility=1.0, bright_state_population=0.1)
    0.9
    """
    _scheme(scheme)
    v = _prob("visibility", visibility)
    alpha = _prob("bright_state_population", bright_state_population)
    if scheme == "double-click":
        return _out((1 + v) / 2 + 0.0 * alpha)
    return _out((1 - alpha) * (1 + v) / 2)


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


def teleported_cnot_fidelity(f: Real) -> Real:
    """Process (Choi) fidelity of a CNOT teleported over one Werner(F) pair with perfect local operations: F.

    Eisert, Jacobs, Papadopoulos & Plenio, PRA 62, 052317, 2000; physics.md 1.6. Elementwise.

    >>> teleported_cnot_fidelity(0.97)
    0.97
    """
    return _out(_fidelity("f", f))


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
