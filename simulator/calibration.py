"""Simulated calibration experiments: what a control system measures about a device, from finite shots.

Each experiment samples binomial counts from the device's TRUE parameters with a seeded numpy ``Generator`` and
fits them the way a lab would, returning an :class:`Estimate` (value and standard error). The fleet's node gauges
report these estimates, refreshed only at calibrations (docs/signals.md); the true values stay in the simulator's
``qfleet.truth.*`` series.

* T1: relaxation (prepare |1>, wait tau, measure): P(1) = exp(-tau/T1).
* T2: Hahn echo: P(return) = (1 + exp(-tau/T2)) / 2, the dephasing channel of physics.md 1.3.
* Readout: prepare |0> (|1>) ``READOUT_SHOTS`` times; the error is the fraction read wrong.
* Gate error: randomized benchmarking, survival B + (1 - B) p^m after m gates (B = 1/d); the depolarising
  probability per gate, the profile's ``gate_error``, is (1 - p)(d^2 - 1)/d^2.

The decay experiments share one estimator, :func:`fit_decay`: the maximum-likelihood rate of a one-parameter
exponential, found on a log grid refined three times, with the standard error from the Fisher information. State
preparation and measurement errors are taken as already removed (a lab fits A exp(-t/T) + B, whose amplitude and
offset absorb them); the delays sweep a fixed geometric range around the expected value and are rescaled and re-run
when the decay falls outside it, as an operator would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DECAY_POINTS", "DECAY_SHOTS", "RB_SHOTS", "READOUT_SHOTS", "Estimate", "fit_decay", "measure_gate_error",
           "measure_readout", "measure_t1", "measure_t2"]

#: Delays per relaxation or echo sweep, as fractions of the expected time constant (geometric, 0.01 to 4).
DECAY_POINTS: tuple[float, ...] = tuple(float(x) for x in np.geomspace(0.01, 4.0, 12))
#: Shots per delay of a T1 or T2 sweep (12 x 256 = 3,072 shots per experiment, a few per cent error).
DECAY_SHOTS = 256
#: Shots per prepared state of the readout (assignment) calibration.
READOUT_SHOTS = 4096
#: Shots per sequence length of randomized benchmarking (e.g. 20 random sequences x 50 shots).
RB_SHOTS = 1000
#: Sequence lengths of randomized benchmarking, as fractions of the expected decay length 1/(-ln p).
RB_POINTS: tuple[float, ...] = tuple(float(x) for x in np.geomspace(0.01, 3.0, 8))

_RETRIES = 3   # sweep rescalings when the decay falls outside the swept range
_RESCALE = 8.0
_GRID = 129


@dataclass(frozen=True, slots=True)
class Estimate:
    """A measured value and its standard error (``inf`` value: no decay seen within the sweep)."""

    value: float
    stderr: float


def _loglik(gammas: np.ndarray, x: np.ndarray, k: np.ndarray, n: int, floor: float) -> np.ndarray:
    p = floor + (1.0 - floor) * np.exp(-np.outer(gammas, x))
    p = np.clip(p, 1e-300, 1.0 - 1e-16)
    ll: np.ndarray = (k * np.log(p) + (n - k) * np.log1p(-p)).sum(axis=1)
    return ll


def fit_decay(x: np.ndarray, k: np.ndarray, n: int, floor: float = 0.0) -> tuple[float, float, int]:
    """Maximum-likelihood rate of ``P(x) = floor + (1 - floor) exp(-rate x)`` from ``k`` successes of ``n`` at ``x``.

    The likelihood is maximised on a log grid of rates from 1e-3/max(x) to 1e3/min(x), refined three times around
    its peak; the standard error is 1/sqrt(Fisher information) at the estimate.

    Returns:
        (rate, its standard error, edge): ``edge`` is -1 when the likelihood peaks at the slow end of the grid
        (no decay resolved: sweep longer), +1 at the fast end (all decayed: sweep shorter), else 0.

    Examples:
        >>> x = np.array([0.5, 1.0, 2.0]); rate, se, edge = fit_decay(x, np.round(1000 * np.exp(-x)), 1000)
        >>> round(rate, 2), edge
        (1.0, 0)
    """
    g = np.exp(np.linspace(math.log(1e-3 / float(x.max())), math.log(1e3 / float(x.min())), _GRID))
    ll = _loglik(g, x, k, n, floor)
    best = int(np.argmax(ll))
    # A plateau reaching an end of the grid (all survived, or all decayed to underflow) is unresolved too.
    edge = -1 if ll[0] >= ll[best] else (1 if ll[-1] >= ll[best] else 0)
    for _ in range(0 if edge else 3):
        g = np.exp(np.linspace(math.log(g[best - 1]), math.log(g[best + 1]), _GRID))
        best = min(max(int(np.argmax(_loglik(g, x, k, n, floor))), 1), _GRID - 2)
    rate = 0.0 if edge < 0 else float(g[best])
    e = np.exp(-rate * x)
    p = np.clip(floor + (1.0 - floor) * e, 1e-300, 1.0 - 1e-16)
    dp = (1.0 - floor) * x * e  # |dP/d rate|
    info = float(n * (dp * dp / (p * (1.0 - p))).sum())
    return rate, (1.0 / math.sqrt(info) if info > 0 else math.inf), edge


def _sweep(rng: np.random.Generator, true_rate: float, scale: float, points: tuple[float, ...], shots: int,
           floor: float, *, integer: bool = False) -> tuple[float, float]:
    """A decay sweep at ``scale * points``, rescaled and re-run while the decay falls outside it; (rate, stderr).

    After the last retry the grid's edge stands: rate 0 (nothing decayed) or the fastest rate on the grid."""
    rate = se = math.inf
    for _ in range(_RETRIES + 1):
        x = np.asarray(points) * scale
        if integer:
            x = np.unique(np.maximum(1.0, np.round(x)))
        p = floor + (1.0 - floor) * np.exp(-true_rate * x)
        k = rng.binomial(shots, np.clip(p, 0.0, 1.0))
        rate, se, edge = fit_decay(x, k, shots, floor)
        if edge == 0:
            break
        scale = scale * _RESCALE if edge < 0 else scale / _RESCALE
    return rate, se


def _time_constant(rng: np.random.Generator, true_s: float, expected_s: float, floor: float) -> Estimate:
    if not math.isfinite(true_s):
        return Estimate(math.inf, math.inf)  # no decay process modelled: nothing decays within any sweep
    scale = expected_s if math.isfinite(expected_s) and expected_s > 0 else true_s
    rate, se = _sweep(rng, 1.0 / true_s if true_s > 0 else math.inf, scale, DECAY_POINTS, DECAY_SHOTS, floor)
    if rate <= 0:
        return Estimate(math.inf, math.inf)
    # Delta method: T = 1/rate, so se(T) = se(rate) / rate^2.
    return Estimate(1.0 / rate, se / (rate * rate))


def measure_t1(rng: np.random.Generator, true_s: float, expected_s: float) -> Estimate:
    """T1 from a relaxation sweep around ``expected_s`` (the node's calibrated baseline) on the true ``true_s``.

    An infinite ``true_s`` (no T1 process modelled) gives ``Estimate(inf, inf)``: no sweep resolves a decay.
    """
    return _time_constant(rng, true_s, expected_s, 0.0)


def measure_t2(rng: np.random.Generator, true_s: float, expected_s: float) -> Estimate:
    """T2 from a Hahn-echo sweep around ``expected_s`` on the true ``true_s`` (infinite: ``Estimate(inf, inf)``)."""
    return _time_constant(rng, true_s, expected_s, 0.5)


def measure_readout(rng: np.random.Generator, true_error: float, shots: int = READOUT_SHOTS) -> Estimate:
    """P(wrong | prepared state) from ``shots`` preparations: the fraction read wrong, binomial standard error.

    The standard error uses (k + 1/2)/(n + 1) so that a calibration with no wrong reads still reports one.
    """
    k = int(rng.binomial(shots, min(max(true_error, 0.0), 1.0)))
    p = (k + 0.5) / (shots + 1)
    return Estimate(k / shots, math.sqrt(p * (1 - p) / shots))


def measure_gate_error(rng: np.random.Generator, true_error: float, expected_error: float, qubits: int) -> Estimate:
    """Depolarising error per gate on ``qubits`` (1 or 2) from randomized benchmarking on the true error.

    Each sequence element is one noisy gate of the kind benchmarked, a depolarising channel of probability
    ``true_error`` (depolarising parameter p = 1 - e d^2/(d^2 - 1)); the survival decays from 1 towards 1/d.
    """
    d2 = 4.0 ** qubits
    frac = d2 / (d2 - 1.0)

    def rate_of(err: float) -> float:
        return -math.log(max(1e-12, 1.0 - err * frac))
    expected = max(expected_error, 1e-6)
    rate, se = _sweep(rng, rate_of(true_error), 1.0 / rate_of(expected), RB_POINTS, RB_SHOTS,
                      1.0 / math.sqrt(d2), integer=True)
    p = math.exp(-rate)
    # e = (1 - p)/frac; de/drate = p/frac.
    return Estimate((1.0 - p) / frac, se * p / frac)
