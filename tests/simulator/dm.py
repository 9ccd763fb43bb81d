"""A small exact density-matrix simulator for test oracles, written independently of the code under test.

Qubit 0 is the most significant bit. Besides gates, depolarising noise, measurement with asymmetric readout and
feed-forward, it has amplitude damping and dephasing (Kraus operators) and the photonic heralding of the two
optical link schemes, built from first principles: emitters, photons with a partially distinguishable internal
state, loss, a balanced beamsplitter, threshold detectors with dark counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Z = np.diag([1.0, -1.0]).astype(complex)
Y = 1j * X @ Z
H = np.array([[1, 1], [1, -1]], dtype=complex) / math.sqrt(2)
PAULIS = (I2, X, Y, Z)
CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)


def apply(rho: np.ndarray, u: np.ndarray, qs: list[int], n: int) -> np.ndarray:
    """U rho U^dagger with U acting on qubits ``qs``."""
    k = len(qs)
    t = rho.reshape((2,) * 2 * n)
    uu = u.reshape((2,) * 2 * k)
    t = np.moveaxis(np.tensordot(uu, t, axes=(list(range(k, 2 * k)), qs)), list(range(k)), qs)
    t = np.tensordot(t, uu.conj(), axes=([n + q for q in qs], list(range(k, 2 * k))))
    t = np.moveaxis(t, list(range(2 * n - k, 2 * n)), [n + q for q in qs])
    return t.reshape(2**n, 2**n)


def depolarize2(rho: np.ndarray, p: float, qs: list[int], n: int) -> np.ndarray:
    """Each of the 15 non-identity two-qubit Paulis with p/15 (Stim's DEPOLARIZE2)."""
    out = (1 - p) * rho
    for i, a in enumerate(PAULIS):
        for j, b in enumerate(PAULIS):
            if i or j:
                out = out + p / 15 * apply(rho, np.kron(a, b), qs, n)
    return out


def measure(rho: np.ndarray, q: int, n: int, e0: float, e1: float, correction: Any) -> np.ndarray:
    """Z-measure qubit q, read the bit wrong with P(wrong | bit) = e0, e1, apply ``correction(rho)`` when read 1."""
    out = np.zeros_like(rho)
    for bit, wrong in ((0, e0), (1, e1)):
        proj = np.diag([1.0 - bit, float(bit)]).astype(complex)
        part = apply(rho, proj, [q], n)
        read_one = part * (wrong if bit == 0 else 1 - wrong)
        out = out + (part - read_one) + correction(read_one)
    return out


def ket(n: int, pairs: list[tuple[int, int]], plus: list[int] = ()) -> np.ndarray:  # type: ignore[assignment]
    """|0..0> with |Phi+> on each pair and |+> on each ``plus`` qubit, as a density matrix."""
    psi = np.zeros(2**n, dtype=complex)
    psi[0] = 1
    rho = np.outer(psi, psi.conj())
    for q in plus:
        rho = apply(rho, H, [q], n)
    for a, b in pairs:
        rho = apply(apply(rho, H, [a], n), CNOT, [a, b], n)
    return rho


def fidelity(rho: np.ndarray, target: np.ndarray, keep: list[int], n: int) -> float:
    """<target| Tr_(others) rho |target> with ``target`` a ket on ``keep`` (in that order)."""
    others = [q for q in range(n) if q not in keep]
    t = rho.reshape((2,) * 2 * n)
    t = np.einsum(t, list(range(n)) + [n + q if q in keep else q for q in range(n)], list(keep) + [n + q for q in keep])
    red = t.reshape(2 ** len(keep), 2 ** len(keep))
    assert others is not None
    return float(np.real(target.conj() @ red @ target))




def kraus(rho: np.ndarray, ops: list[np.ndarray], q: int, n: int) -> np.ndarray:
    """sum_k K rho K^dagger with single-qubit Kraus operators ``ops`` on qubit q."""
    return sum((apply(rho, k, [q], n) for k in ops), np.zeros_like(rho))


def amplitude_damping(gamma: float) -> list[np.ndarray]:
    """Kraus operators of amplitude damping |1> -> |0> with probability gamma."""
    return [np.array([[1, 0], [0, math.sqrt(1 - gamma)]], dtype=complex),
            np.array([[0, math.sqrt(gamma)], [0, 0]], dtype=complex)]


def dephasing(lam: float) -> list[np.ndarray]:
    """Kraus operators of pure dephasing that multiplies the coherences by ``lam``."""
    p = (1 - lam) / 2
    return [math.sqrt(1 - p) * np.eye(2, dtype=complex), math.sqrt(p) * Z]


def idle(rho: np.ndarray, t: float, t1: float, t2: float, q: int, n: int) -> np.ndarray:
    """Qubit q idles t: amplitude damping with gamma = 1 - e^(-t/T1), then dephasing for the rest of T2."""
    gamma = 1 - math.exp(-t / t1)
    rest = math.exp(-t / t2) / math.sqrt(1 - gamma)  # coherences: sqrt(1 - gamma) * rest = e^(-t/T2)
    return kraus(kraus(rho, amplitude_damping(gamma), q, n), dephasing(rest), q, n)


def werner(f: float) -> np.ndarray:
    """The two-qubit Werner state of fidelity f to |Phi+>."""
    w = (4 * f - 1) / 3
    return w * ket(2, [(0, 1)]) + (1 - w) * np.eye(4) / 4


# --- photonic heralding -----------------------------------------------------------------------------------------
# One photon lives in 8 states: position (D+, D-, lost from arm A, lost from arm B) x internal state (2). Two photons
# are symmetrised products; emitters in different arms keep them orthogonal, so the symmetrised state is normalised.

_DP, _DM, _LA, _LB = range(4)


def _photon(arm: int, eta: float, visibility: float) -> np.ndarray:
    """The photon of emitter ``arm`` (0 = A, 1 = B) after loss eta and the balanced beamsplitter."""
    internal = np.array([1.0, 0.0]) if arm == 0 else np.array([math.sqrt(visibility), math.sqrt(1 - visibility)])
    pos = np.zeros(4)
    pos[_DP] = math.sqrt(eta / 2)
    pos[_DM] = math.sqrt(eta / 2) * (1 if arm == 0 else -1)
    pos[_LA if arm == 0 else _LB] = math.sqrt(1 - eta)
    return np.kron(pos, internal)


def _event_weight(positions: list[int], detector: int, dark: float) -> float:
    """P(exactly ``detector`` clicks | photons at ``positions``): a detector with photons clicks, else darkly."""
    other = _DM if detector == _DP else _DP
    n_here = sum(p == detector for p in positions)
    n_other = sum(p == other for p in positions)
    click = 1.0 if n_here else dark
    silent = 0.0 if n_other else 1 - dark
    return click * silent


def emit_and_herald(rho: np.ndarray, eta: float, visibility: float, dark: float, detector: int) -> np.ndarray:
    """Both emitters (qubits 0, 1) emit from |1>, the photons are detected; the unnormalised spin state given that
    exactly ``detector`` (0 = D+, 1 = D-) clicks. Emission is diagonal in the spin basis: branch s = (s0, s1)
    carries the photons of its bright emitters."""
    phot = [_photon(0, eta, visibility), _photon(1, eta, visibility)]
    det = _DP if detector == 0 else _DM
    out = np.zeros((4, 4), dtype=complex)
    # Photon amplitudes per spin branch, per sector (0, 1 or 2 photons), over ordered single-photon tuples.
    branches: dict[int, tuple[int, np.ndarray]] = {}
    for s in range(4):
        bright = [a for a in (0, 1) if (s >> (1 - a)) & 1]
        if not bright:
            branches[s] = (0, np.ones(1))
        elif len(bright) == 1:
            branches[s] = (1, phot[bright[0]])
        else:
            a, b = np.kron(phot[0], phot[1]), np.kron(phot[1], phot[0])
            branches[s] = (2, (a + b) / math.sqrt(2))
    weights = {0: np.array([_event_weight([], det, dark)]),
               1: np.array([_event_weight([i // 2], det, dark) for i in range(8)]),
               2: np.array([_event_weight([i // 2, j // 2], det, dark) for i in range(8) for j in range(8)])}
    for s in range(4):
        for t in range(4):
            (ns, vs), (nt, vt) = branches[s], branches[t]
            if ns == nt:
                out[s, t] = rho[s, t] * np.sum(weights[ns] * vs * vt.conj())
    return out


_BELL = {
    "phi+": np.array([1, 0, 0, 1]) / math.sqrt(2), "phi-": np.array([1, 0, 0, -1]) / math.sqrt(2),
    "psi+": np.array([0, 1, 1, 0]) / math.sqrt(2), "psi-": np.array([0, 1, -1, 0]) / math.sqrt(2),
}


def _best_bell(rho: np.ndarray) -> np.ndarray:
    return max(_BELL.values(), key=lambda b: float(np.real(b.conj() @ rho @ b)))


def single_click(alpha: float, eta: float, visibility: float, dark: float) -> tuple[float, float]:
    """(p_herald, fidelity) of single-click generation: emitters sqrt(1-alpha)|0> + sqrt(alpha)|1>, one click.

    The target of each detector is the Bell state the protocol heralds there ideally (V = 1, no dark counts)."""
    psi = np.array([math.sqrt(1 - alpha), math.sqrt(alpha)])
    rho0 = np.outer(np.kron(psi, psi), np.kron(psi, psi))
    p = f = 0.0
    for k in (0, 1):
        rho = emit_and_herald(rho0, eta, visibility, dark, k)
        target = _best_bell(emit_and_herald(rho0, eta, 1.0, 0.0, k))
        p += float(np.real(np.trace(rho)))
        f += float(np.real(target.conj() @ rho @ target))
    return p, f / p


def double_click(eta: float, visibility: float, dark: float) -> tuple[float, float]:
    """(p_herald, fidelity) of Barrett-Kok: emitters in |+>, a click in each of two rounds with X on both between."""
    plus = np.full(4, 0.5)
    rho0 = np.outer(plus, plus)
    xx = np.kron(X, X)
    p = f = 0.0
    for k1 in (0, 1):
        for k2 in (0, 1):
            def run(v: float, d: float, k1: int = k1, k2: int = k2) -> np.ndarray:
                r1 = emit_and_herald(rho0, eta, v, d, k1)
                return emit_and_herald(xx @ r1 @ xx, eta, v, d, k2)

            rho = run(visibility, dark)
            target = _best_bell(run(1.0, 0.0))
            p += float(np.real(np.trace(rho)))
            f += float(np.real(target.conj() @ rho @ target))
    return p, f / p


__all__ = [name for name in dir() if not name.startswith("__") and name not in ("annotations", "math", "np", "Any")]
