"""The quantum state of jobs: each shot of each job is one Stim ``FlipSimulator`` instance with its own Pauli noise.

:func:`canary_noise` and :func:`link_noise` turn a job's timing and its nodes' parameters into per-slot noise
inputs (:class:`~qfleet.simulator.runstate.Noise`); :class:`ShotRunner` draws every instance's masks in numpy for
a group of same-shaped jobs and runs them together, so a job's fidelity is the fraction of its shots whose
stabilizer checks pass (physics.md 3.1).

Noise model, per shot:

* two-qubit gates: every local entangling gate (the canary's CNOT, the fusion ``CX g_i a_i`` of a GHZ job, both
  CNOTs of a teleported CNOT, the Bell-state measurement of a swap or a teleport) carries the full
  ``DEPOLARIZE2(gate_error_2q)`` of its node on both of its qubits, as physics.md 1.4 defines it; the half that
  lands on a data or member qubit is applied at the later slot where that qubit is exposed, which is exact because
  only Pauli feed-forward touches it in between;
* readout: P(wrong | 0) = ``ro0`` and P(wrong | 1) = ``ro1`` of the measuring node. A measurement whose outcome
  only drives a Pauli feed-forward (swap, teleport, GHZ fusion, teleported CNOT) has an ideal outcome that is
  uniformly random and independent of every Pauli error (its observable is not in the stabilizer group of the
  state, and a Pauli error only flips its sign), and the corrected state does not depend on that outcome; the read
  bit is therefore wrong with probability (ro0 + ro1)/2, independently of everything else, exactly. The canary's
  checks *are* readouts of correlated bits, so there the flip is conditioned on each qubit's actual bit
  (:func:`~qfleet.simulator.noise_masks.parity_readout_failures`);
* crosstalk (F6): a spectator error on the faulty node's own qubits. With probability ``crosstalk`` per shot an
  event hits every qubit of that node that the job uses (comm qubits, data qubits, GHZ members; never a Choi
  reference, never a qubit of another node), each with an independent uniformly random X, Y or Z;
* storage (T1/T2 twirled, physics.md 1.3) while waiting for the slowest pair and during feed-forward; ``math.inf``
  switches T1 or T2 off; stray commands (F8) are an X on one qubit of the targeted node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from typing import Any

import numpy as np

from qfleet.simulator import circuits, noise_masks, physics
from qfleet.simulator.runstate import Job, NodeState, Noise
from qfleet.units import NS

__all__ = ["ShotRunner", "canary_noise", "link_noise"]

_ZERO = (0.0, 0.0, 0.0)
_NO_WAITS: dict[tuple[int, int], np.ndarray] = {}  # (rows, shots) -> read-only zeros (_no_waits)


def _no_waits(rows: int, shots: int) -> np.ndarray:
    """Zero storage seconds, (rows, shots): one read-only array per shape, shared by every job (only read, when a
    group's waits are concatenated)."""
    z = _NO_WAITS.get((rows, shots))
    if z is None:
        z = _NO_WAITS[(rows, shots)] = np.zeros((rows, shots))
        z.flags.writeable = False
    return z


def _feedforward_flip(st: NodeState) -> float:
    # A feed-forward outcome is uniformly random and independent of the Pauli errors (module docstring), so the
    # asymmetric readout flips it with the mean of P(wrong | 0) and P(wrong | 1), exactly.
    return (st.ro0 + st.ro1) / 2


def _tt(nodes: Mapping[str, NodeState], node: str) -> tuple[float, float]:
    st = nodes[node]
    return (st.t1, st.t2)


def _exposure(job: Job, qubit_nodes: list[str], nodes: Mapping[str, NodeState]) -> tuple[list[bool], int]:
    """Which slot-0 qubits see crosstalk and which one stray commands hit; sets the job's exposure figures."""
    hit = [False] * len(qubit_nodes)
    xt = 0.0
    stray_q, rate = -1, 0.0
    for i, n in enumerate(qubit_nodes):
        st = nodes[n]
        if st.crosstalk > 0:
            hit[i] = True
            xt = max(xt, st.crosstalk)
        if st.stray_rate > 0 and stray_q < 0:
            stray_q, rate = i, st.stray_rate
    job.xtalk = xt
    # A stray command lands on this job's shot if it arrives while the shot runs.
    job.stray = 1.0 - math.exp(-rate * max(1e-6, (job.gen_ns[0] if job.gen_ns else 0) / NS)) if rate else 0.0
    return hit, stray_q


def canary_noise(job: Job, st: NodeState, nodes: Mapping[str, NodeState]) -> Noise:
    """A canary's local Bell pair: gate error, crosstalk and stray commands; its checks are read with the node's
    asymmetric readout (``ro0``, ``ro1``) after the Stim run, conditioned on each qubit's bit."""
    c = circuits.bell_pair()
    hit, stray_q = _exposure(job, [st.node.id, st.node.id], nodes)
    noise = Noise(c, [_ZERO, _ZERO], _no_waits(2, job.shots), [_tt(nodes, st.node.id)] * 2, [], None, [], [], [],
                  hit, stray_q)
    # The local entangling gate: DEPOLARIZE2(g2) on the pair.
    noise.extra = {"depol0": st.g2, "ro0": st.ro0, "ro1": st.ro1}
    return noise


# Per kind: (circuit, slot-0 qubit nodes, heralded-pair errors, slot-1 single-qubit gate errors, the
# DEPOLARIZE2 probability of each two-qubit gate (placed by _gate_rows) or None, slot-1 readout flips, slot-2 qubit
# nodes).
_Slots = tuple[circuits.SlottedCircuit, list[str], list[Any], list[Any], list[float] | None, list[Any], list[str]]


def _pair_delivery_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    segs = job.segs
    h = len(segs)
    q0 = [n for s in segs for n in (s.left, s.right)]
    pair = [_ZERO if i % 2 == 0 else segs[i // 2].pair_pauli for i in range(2 * h)]
    bsm = q0[1:-1]
    depol = [nodes[bsm[2 * i]].g2 for i in range(h - 1)] if h > 1 else None
    return (circuits.swap_chain(h), q0, pair, [_ZERO] * len(bsm), depol,
            [(_feedforward_flip(nodes[n]), 0.0) for n in bsm], [q0[0], q0[-1]])


def _ghz_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    segs, k = job.segs, job.k
    q0 = [job.nodes[0]] + [n for s in segs for n in (s.left, s.right)]
    pair = [_ZERO] + [_ZERO if i % 2 == 0 else segs[i // 2].pair_pauli for i in range(2 * (k - 1))]
    comm = [segs[i].left for i in range(k - 1)]
    # Fusion i is CX g_i a_i on node i: the whole DEPOLARIZE2 on (member g_i, comm a_i).
    return (circuits.ghz(k), q0, pair, [_ZERO] * (k - 1), [nodes[n].g2 for n in comm],
            [(_feedforward_flip(nodes[n]), 0.0) for n in comm], list(job.nodes))


def _teleport_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    a, b = job.nodes
    ro = _feedforward_flip(nodes[a])
    return (circuits.teleport_state(), [a, b], [_ZERO, job.segs[0].pair_pauli], [_ZERO, _ZERO], [nodes[a].g2],
            [(ro, 0.0), (ro, 0.0)], [b])


def _teleported_cnot_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    a, b = job.nodes
    # CX c a at A and CX b t at B, each with the whole DEPOLARIZE2 of its node; M on A's comm qubit, MX on B's.
    return (circuits.teleported_cnot(), [a, b], [_ZERO, job.segs[0].pair_pauli], [_ZERO, _ZERO],
            [nodes[a].g2, nodes[b].g2], [(_feedforward_flip(nodes[a]), 0.0), (0.0, _feedforward_flip(nodes[b]))],
            [a, b])


_SLOTS = {"pair_delivery": _pair_delivery_slots, "ghz": _ghz_slots, "teleport": _teleport_slots,
          "teleported_cnot": _teleported_cnot_slots}

# (slot, row) of a mask row: where a qubit is exposed.
_Row = tuple[int, int]


def _gate_rows(c: circuits.SlottedCircuit, gates: int) -> list[tuple[_Row, _Row]]:
    """Where the two qubits of each two-qubit gate of ``c`` take its DEPOLARIZE2 (see :mod:`.circuits` slots)."""
    if c.name == "teleported_cnot":
        # CX c a: c = slot-2 row 0 (only the CZ feed-forward touches it later), a = slot-1 row 0;
        # CX b t: b = slot-1 row 1, t = slot-2 row 1 (only the X feed-forward touches it later).
        return [((2, 0), (1, 0)), ((1, 1), (2, 1))]
    if c.name.startswith("ghz("):
        # Fusion i: member g_i = slot-2 row i (only X feed-forward touches it later), comm a_i = slot-1 row i.
        return [((2, i), (1, i)) for i in range(gates)]
    # Swap chains and teleports: the gate's two qubits are consecutive slot-1 rows.
    return [((1, 2 * i), (1, 2 * i + 1)) for i in range(gates)]


# Qubits a job uses that are not among the slot-0 rows, as (slot, row, slot-0 row on the same node): crosstalk
# reaches them too. teleport_state: the sender's data qubit 1 (slot-1 row 0) sits with comm qubit 2 (slot-0 row 0);
# teleported_cnot: control 0 (slot-2 row 0) with comm 1, target 3 (slot-2 row 1) with comm 2.
_SPECTATORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "teleport_state": ((1, 0, 0),),
    "teleported_cnot": ((2, 0, 0), (2, 1, 1)),
}


def link_noise(job: Job, waits_s: np.ndarray | None, slot2_wait: list[float],
               nodes: Mapping[str, NodeState]) -> Noise:
    """The noise of a job over links: pair errors, storage while waiting for the slowest pair, gate and readout
    errors at the measurements, storage during feedforward, crosstalk and stray commands."""
    c, q0, pair, gate1, depol, flip1, q2 = _SLOTS[job.kind](job, nodes)
    # Both halves of pair i wait for the slowest pair of the shot (none with a single segment).
    if waits_s is None:
        wait0 = _no_waits(2 * len(job.segs) + (1 if job.kind == "ghz" else 0), job.shots)
    else:
        pair_waits = np.repeat(waits_s.T, 2, axis=0)
        wait0 = np.vstack([_no_waits(1, job.shots), pair_waits]) if job.kind == "ghz" else pair_waits
    hit, stray_q = _exposure(job, q0, nodes)
    # Plain lists: the whole group becomes one array per field in ShotRunner.run_group.
    return Noise(c, pair, wait0, [_tt(nodes, n) for n in q0], gate1, depol, flip1, slot2_wait[:len(q2)],
                 [_tt(nodes, n) for n in q2], hit, stray_q)


class ShotRunner:
    """Runs groups of same-circuit jobs as one batch of Stim instances, each with its own Pauli masks.

    Args:
        mask_rng: draws every instance's noise.
        stim_seed: the first Stim seed; each batch advances it (a 64-bit LCG), so batches are reproducible.
    """

    def __init__(self, mask_rng: np.random.Generator, stim_seed: int) -> None:
        self._rng = mask_rng
        self._stim_seed = stim_seed

    def run_group(self, jobs: list[Job], nodes: Mapping[str, NodeState]) -> None:
        """Sample every shot of ``jobs`` (one circuit) and set each job's passed shots and fidelity."""
        noises = [j.noise for j in jobs if j.noise is not None]
        assert len(noises) == len(jobs), "every job of a group has its noise"
        c = noises[0].circuit
        shots = np.array([j.shots for j in jobs])
        group = _Group(self._rng, jobs, noises, shots)
        masks = [group.slot0(c.name)]
        if len(c.slots) > 1:
            masks += [group.slot1(), group.slot2()]
            group.gates(c, masks)
            group.spectators(c.name, masks)
        self._stim_seed = (self._stim_seed * 6364136223846793005 + 1442695040888963407) % (2**62)
        if c.name == "bell_pair":
            ok = group.canary_checks(circuits.sample_detector_flips(c, masks, seed=self._stim_seed))
        else:
            ok = circuits.run_instances(c, masks, seed=self._stim_seed).passed
        passed = np.add.reduceat(ok.astype(np.int64), np.concatenate([[0], np.cumsum(shots)[:-1]]))
        for j, p in zip(jobs, passed.tolist(), strict=True):
            j.passed = p
            j.fidelity = p / j.shots
            if j.kind == "canary":
                st = nodes[j.nodes[0]]
                st.canary_bits += p
                st.canary_n += j.shots


class _Group:
    """The masks of one batch, slot by slot, drawn from the jobs' noise inputs (one column per instance)."""

    def __init__(self, rng: np.random.Generator, jobs: list[Job], noises: list[Noise], shots: np.ndarray) -> None:
        self.rng = rng
        self.jobs = jobs
        self.noises = noises
        self.shots = shots
        self.n_inst = int(shots.sum())
        self.xt_event: np.ndarray | None = None  # (I,) the shots a crosstalk event hits, drawn at slot 0

    def rep(self, a: np.ndarray) -> np.ndarray:
        """Per-job columns -> per-instance columns."""
        return np.repeat(a, self.shots, axis=-1)

    def stacked(self, attr: str, *tail: int) -> np.ndarray:
        """(jobs, rows, *tail) from the jobs' lists, then jobs last: (rows, *tail, jobs)."""
        # Flattened in Python, then one fromiter: numpy's discovery of a nested list's shape cost more (the jobs of
        # a group share one circuit, so every job's list has the same shape).
        flat = chain.from_iterable(getattr(n, attr) for n in self.noises)
        a = np.fromiter(chain.from_iterable(flat) if tail else flat, dtype=float)
        return np.moveaxis(a.reshape(len(self.noises), -1, *tail), 0, -1)

    def slot0(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Heralded-pair error, storage while waiting (own per shot), local gate for canaries, crosstalk, strays."""
        rng, rep = self.rng, self.rep
        pair = rep(self.stacked("pair", 3))                    # (n0, 3, I)
        x, z = noise_masks.pauli_masks(pair[:, 0], pair[:, 1], pair[:, 2], rng)
        wait0 = np.concatenate([n.wait0 for n in self.noises], axis=1)  # (n0, I)
        t0 = rep(self.stacked("t0", 2))                         # (n0, 2, I)
        if wait0.any():
            px, py, pz = physics.twirled_memory_paulis(wait0, t0[:, 0], t0[:, 1])
            sx, sz = noise_masks.pauli_masks(px, py, pz, rng)
            x ^= sx
            z ^= sz
        if name == "bell_pair":
            self._canary_gate(x, z)
        self._crosstalk(x, z)
        self._stray(x)
        return x, z

    def _canary_gate(self, x: np.ndarray, z: np.ndarray) -> None:
        d = np.array([n.extra["depol0"] for n in self.noises])
        dx, dz = noise_masks.depolarize2_masks(self.rep(d)[None, :], self.rng)
        x ^= dx
        z ^= dz

    def canary_checks(self, flips: np.ndarray) -> np.ndarray:
        """(I,) canary shots whose XX and ZZ checks both read correctly, from the checks' Pauli-error flips,
        with each qubit's readout wrong with P(wrong | its actual bit) of its node."""
        e0 = self.rep(np.array([n.extra["ro0"] for n in self.noises]))
        e1 = self.rep(np.array([n.extra["ro1"] for n in self.noises]))
        fails = noise_masks.parity_readout_failures(flips, e0, e1, self.rng)
        return np.asarray(~fails.any(axis=0))

    def _spectator_paulis(self, x: np.ndarray, z: np.ndarray, hit: np.ndarray) -> None:
        """An independent uniformly random X, Y or Z on every ``hit`` (rows, I) qubit."""
        third = np.full(hit.shape, 1 / 3)
        cx, cz = noise_masks.pauli_masks(third, third, third, self.rng)
        x ^= cx & hit
        z ^= cz & hit

    def _crosstalk(self, x: np.ndarray, z: np.ndarray) -> None:
        xt = np.array([j.xtalk for j in self.jobs])
        if xt.any():
            self.xt_event = self.rng.random(self.n_inst) < self.rep(xt)
            hit = (self.rep(self.stacked("hit0")) > 0) & self.xt_event      # (n0, I) bool
            self._spectator_paulis(x, z, hit)

    def spectators(self, name: str, masks: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """The same crosstalk event on the job's qubits of an affected node that slot 0 does not expose."""
        rows = _SPECTATORS.get(name, ())
        if self.xt_event is None or not rows:
            return
        hit0 = self.rep(self.stacked("hit0")) > 0
        for slot, row, same_node in rows:
            x, z = masks[slot]
            self._spectator_paulis(x[row:row + 1], z[row:row + 1], (hit0[same_node] & self.xt_event)[None, :])

    def _stray(self, x: np.ndarray) -> None:
        sp = np.array([j.stray for j in self.jobs])
        if sp.any():
            q = self.rep(np.array([n.stray0 for n in self.noises]))
            hitq = self.rng.random(self.n_inst) < self.rep(sp)
            cols = np.nonzero(hitq & (q >= 0))[0]
            x[q[cols], cols] ^= True

    def slot1(self) -> tuple[np.ndarray, np.ndarray]:
        """Single-qubit gate error and readout flips before the measurements (two-qubit gates: :meth:`gates`)."""
        rng, rep = self.rng, self.rep
        g = rep(self.stacked("gate1", 3))                   # (n1, 3, I)
        x1, z1 = noise_masks.pauli_masks(g[:, 0], g[:, 1], g[:, 2], rng)
        f = rep(self.stacked("flip1", 2))                   # (n1, 2, I)
        u = rng.random(f.shape)
        x1 ^= u[:, 0] < f[:, 0]
        z1 ^= u[:, 1] < f[:, 1]
        return x1, z1

    def slot2(self) -> tuple[np.ndarray, np.ndarray]:
        """Storage during the feedforward."""
        w2 = self.rep(self.stacked("wait2"))                     # (n2, I)
        t2 = self.rep(self.stacked("t2", 2))
        px, py, pz = physics.twirled_memory_paulis(w2, t2[:, 0], t2[:, 1])
        return noise_masks.pauli_masks(px, py, pz, self.rng)

    def gates(self, c: circuits.SlottedCircuit, masks: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """The whole DEPOLARIZE2 of every two-qubit gate, each half on the mask row where its qubit is exposed."""
        if self.noises[0].depol1 is None:
            return
        d = self.rep(self.stacked("depol1"))                # (gates, I)
        dx, dz = noise_masks.depolarize2_masks(d, self.rng)    # (2 gates, I): gate j on rows 2j, 2j+1
        for j, ends in enumerate(_gate_rows(c, d.shape[0])):
            for half, (slot, row) in enumerate(ends):
                masks[slot][0][row] ^= dx[2 * j + half]
                masks[slot][1][row] ^= dz[2 * j + half]
