"""Per-instance Pauli noise as X/Z masks for :func:`~qfleet.simulator.circuits.run_instances`.

Each sampler draws one error per qubit and instance from probabilities that may differ per instance (arrays
broadcast to (qubits, B)), so a batch of instances can carry a fleet's per-node, per-moment noise. Masks are
(rows, B) bool arrays, rows in the order of a noise slot's qubits. :func:`parity_readout_failures` adds the
asymmetric readout errors of a two-qubit parity check on top of the detector flips.
"""

from __future__ import annotations

import numpy as np

from qfleet.simulator.circuits import CircuitError

__all__ = ["depolarize2_masks", "parity_readout_failures", "pauli_masks", "werner_masks"]


def _probabilities(name: str, value: object) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    bad = np.isnan(a) | (a < 0) | (a > 1)
    if bad.any():
        raise CircuitError(
            f"{name}={float(a[bad].flat[0]) if a.ndim else float(a)!r} is not a probability in [0, 1]"
        )
    return a


def pauli_masks(
    px: object, py: object, pz: object, rng: np.random.Generator, *, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw independent single-qubit Pauli errors: X with px, Y with py, Z with pz, else identity.

    Args:
        px, py, pz: Probabilities, broadcastable to the output shape (typically (n, B): qubit, instance).
        rng: The source of randomness (one uniform draw per qubit and instance).
        shape: Output shape when it is larger than the broadcast of the probabilities (e.g. scalars).

    Returns:
        Boolean ``(x_mask, z_mask)``; a Y error sets both.

    Raises:
        CircuitError: a probability outside [0, 1] or px + py + pz > 1.

    >>> x, z = pauli_masks(1.0, 0.0, 0.0, np.random.default_rng(0), shape=(2, 3))
    >>> x.all(), z.any()
    (np.True_, np.False_)
    """
    ax, ay, az = (_probabilities(n, v) for n, v in (("px", px), ("py", py), ("pz", pz)))
    total = ax + ay + az
    if (total > 1 + 1e-12).any():
        raise CircuitError(
            f"px + py + pz = {float(total.max())!r} exceeds 1; they are exclusive error probabilities"
        )
    out = np.broadcast_shapes(ax.shape, ay.shape, az.shape, shape or ())
    u = rng.random(out)
    x = u < ax + ay
    z = (u >= ax) & (u < total)
    return x, z


def werner_masks(
    fidelity: object, rng: np.random.Generator, *, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Masks that make Werner(F) pairs from perfect ones: X, Y, Z with (1-F)/3 each on one half (physics.md 1.2).

    ``fidelity`` broadcasts to (n_pairs, B); the result has shape (2 n_pairs, B) with the error on the second
    qubit of each pair (odd rows) and even rows clear, matching the (a_i, b_i) order of the templates.
    """
    f = _probabilities("fidelity", fidelity)
    if (f < 0.25 - 1e-12).any():
        raise CircuitError(
            f"fidelity={float(f.min())!r} is below 1/4: no Werner state has it; use F in [1/4, 1]"
        )
    _rows(np.broadcast_shapes(f.shape, shape or ()))
    e = (1 - f) / 3
    x, z = pauli_masks(e, e, e, rng, shape=shape)
    return _interleave_second(x), _interleave_second(z)


def _rows(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) < 1:
        raise CircuitError(
            f"mask shape {shape} has no pair axis; pass shape=(n_pairs, B) or array probabilities"
        )
    return shape


def _interleave_second(m: np.ndarray) -> np.ndarray:
    out = np.zeros((2 * m.shape[0],) + m.shape[1:], dtype=bool)
    out[1::2] = m
    return out


def depolarize2_masks(
    p: object, rng: np.random.Generator, *, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two-qubit depolarising errors: each of the 15 non-identity two-qubit Paulis with p/15 (``DEPOLARIZE2(p)``).

    ``p`` broadcasts to (n_pairs, B); the result has shape (2 n_pairs, B), pair j on rows (2j, 2j+1).
    """
    a = _probabilities("p", p)
    if (a > 15 / 16).any():
        raise CircuitError(
            f"p={float(a.max())!r} exceeds 15/16, the fully depolarising DEPOLARIZE2 probability"
        )
    out = _rows(np.broadcast_shapes(a.shape, shape or ()))
    u = rng.random(out)
    hit = u < a
    # Given a hit, u / p is uniform on [0, 1): map it to one of the 15 non-identity Paulis 1..15 (4 bits: x0 z0 x1 z1).
    code = np.where(hit, 1 + np.minimum((u / np.where(a > 0, a, 1.0) * 15).astype(np.int64), 14), 0)
    x = np.empty((2 * out[0],) + out[1:], dtype=bool)
    z = np.empty_like(x)
    x[0::2], z[0::2], x[1::2], z[1::2] = (code & 8) > 0, (code & 4) > 0, (code & 2) > 0, (code & 1) > 0
    return x, z


def parity_readout_failures(
    parity_flips: np.ndarray, error_0: object, error_1: object, rng: np.random.Generator
) -> np.ndarray:
    """Two-qubit parity checks read by two single-qubit readouts with asymmetric errors: which ones read wrong.

    Each row of ``parity_flips`` (checks, B) says whether Pauli errors flipped a check P_a P_b whose ideal value
    is +1 (``sample_detector_flips`` gives exactly this). Each qubit is read in the check's basis (after the basis
    change, a Z readout) and its bit comes out wrong with probability ``error_0`` if the bit is 0 and ``error_1`` if
    it is 1 (broadcast to (B,) or (checks, B)). A FlipSimulator tracks flips, not values, so the bits are rebuilt:
    qubit a's bit is uniformly random and independent of the Pauli frame (P_a alone is not in the stabilizer group
    of |Phi+>, and a Pauli error only changes the sign of an expectation), and qubit b's bit is a's XOR the
    parity flip. The check then reads wrong when the parity flip XOR both readout flips is set.

    Returns:
        (checks, B) bool: the check reads -1 although the state was the ideal one, or the other way round.

    >>> flips = np.array([[False, True]])
    >>> parity_readout_failures(flips, 0.0, 0.0, np.random.default_rng(0)).tolist()
    [[False, True]]
    """
    d = np.asarray(parity_flips, dtype=bool)
    e0 = _probabilities("error_0", error_0)
    e1 = _probabilities("error_1", error_1)
    bit_a = rng.random(d.shape) < 0.5
    bit_b = bit_a ^ d
    u = rng.random((2, *d.shape))
    wrong_a = u[0] < np.where(bit_a, e1, e0)
    wrong_b = u[1] < np.where(bit_b, e1, e0)
    out: np.ndarray = d ^ wrong_a ^ wrong_b
    return out
