"""The quantum state of jobs: each shot of each job is one Stim ``FlipSimulator`` instance with its own Pauli noise.

:func:`canary_noise` and :func:`link_noise` turn a job's timing and its nodes' parameters into per-slot noise
inputs (:class:`~qfleet.simulator.runstate.Noise`); :class:`ShotRunner` draws every instance's masks in numpy for
a group of same-shaped jobs and runs them together, so a job's fidelity is the fraction of its shots whose
stabilizer checks pass (physics.md 3.1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from qfleet.simulator import circuits, physics
from qfleet.simulator.runstate import Job, NodeState, Noise
from qfleet.units import NS

__all__ = ["ShotRunner", "canary_noise", "link_noise"]

_ZERO = (0.0, 0.0, 0.0)


def _marginal(p2: float) -> tuple[float, float, float]:
    # One qubit's marginal of DEPOLARIZE2(p): 4 of the 15 Paulis put X on it, 4 Y, 4 Z.
    m = 4 * p2 / 15
    return (m, m, m)


def _readout_pauli(r: float) -> tuple[float, float, float]:
    # Checks measure in both bases: an independent X flip and Z flip, each with probability r.
    return (r * (1 - r), r * r, r * (1 - r))


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
    """A canary's local Bell pair: gate error, readout on both halves, crosstalk and stray commands."""
    c = circuits.bell_pair()
    r = _readout_pauli(st.ro)
    pair = [_ZERO, r]
    hit, stray_q = _exposure(job, [st.node.id, st.node.id], nodes)
    noise = Noise(c, pair, np.zeros((2, job.shots)), [_tt(nodes, st.node.id)] * 2, [], None, [], [], [], hit, stray_q)
    # The local entangling gate: DEPOLARIZE2(g2) on the pair, plus readout on the other half too.
    noise.extra = {"depol0": st.g2, "ro_first": st.ro}
    return noise


# Per kind: (circuit, slot-0 qubit nodes, heralded-pair errors, slot-1 gate marginals, slot-1 depolarising of
# consecutive pairs or None, slot-1 readout flips, slot-2 qubit nodes).
_Slots = tuple[circuits.SlottedCircuit, list[str], list[Any], list[Any], list[float] | None, list[Any], list[str]]


def _pair_delivery_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    segs = job.segs
    h = len(segs)
    q0 = [n for s in segs for n in (s.left, s.right)]
    pair = [_ZERO if i % 2 == 0 else segs[i // 2].pair_pauli for i in range(2 * h)]
    bsm = q0[1:-1]
    depol = [nodes[bsm[2 * i]].g2 for i in range(h - 1)] if h > 1 else None
    return (circuits.swap_chain(h), q0, pair, [_ZERO] * len(bsm), depol, [(nodes[n].ro, 0.0) for n in bsm],
            [q0[0], q0[-1]])


def _ghz_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    segs, k = job.segs, job.k
    q0 = [job.nodes[0]] + [n for s in segs for n in (s.left, s.right)]
    pair = [_ZERO] + [_ZERO if i % 2 == 0 else segs[i // 2].pair_pauli for i in range(2 * (k - 1))]
    comm = [segs[i].left for i in range(k - 1)]
    return (circuits.ghz(k), q0, pair, [_marginal(nodes[n].g2) for n in comm], None,
            [(nodes[n].ro, 0.0) for n in comm], list(job.nodes))


def _teleport_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    a, b = job.nodes
    return (circuits.teleport_state(), [a, b], [_ZERO, job.segs[0].pair_pauli], [_ZERO, _ZERO], [nodes[a].g2],
            [(nodes[a].ro, 0.0), (nodes[a].ro, 0.0)], [b])


def _teleported_cnot_slots(job: Job, nodes: Mapping[str, NodeState]) -> _Slots:
    a, b = job.nodes
    # M on A's comm qubit, MX on B's.
    return (circuits.teleported_cnot(), [a, b], [_ZERO, job.segs[0].pair_pauli],
            [_marginal(nodes[a].g2), _marginal(nodes[b].g2)], None, [(nodes[a].ro, 0.0), (0.0, nodes[b].ro)],
            [a, b])


_SLOTS = {"pair_delivery": _pair_delivery_slots, "ghz": _ghz_slots, "teleport": _teleport_slots,
          "teleported_cnot": _teleported_cnot_slots}


def link_noise(job: Job, waits_s: np.ndarray | None, slot2_wait: list[float],
               nodes: Mapping[str, NodeState]) -> Noise:
    """The noise of a job over links: pair errors, storage while waiting for the slowest pair, gate and readout
    errors at the measurements, storage during feedforward, crosstalk and stray commands."""
    c, q0, pair, gate1, depol, flip1, q2 = _SLOTS[job.kind](job, nodes)
    # Both halves of pair i wait for the slowest pair of the shot (none with a single segment).
    pair_waits = (np.zeros((2 * len(job.segs), job.shots)) if waits_s is None else np.repeat(waits_s.T, 2, axis=0))
    wait0 = np.vstack([np.zeros((1, job.shots)), pair_waits]) if job.kind == "ghz" else pair_waits
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
            masks.append(group.slot1(noises[0].depol1 is not None))
            masks.append(group.slot2())
        self._stim_seed = (self._stim_seed * 6364136223846793005 + 1442695040888963407) % (2**62)
        res = circuits.run_instances(c, masks, seed=self._stim_seed)
        passed = np.add.reduceat(res.passed.astype(np.int64), np.concatenate([[0], np.cumsum(shots)[:-1]]))
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

    def rep(self, a: np.ndarray) -> np.ndarray:
        """Per-job columns -> per-instance columns."""
        return np.repeat(a, self.shots, axis=-1)

    def stacked(self, attr: str, *tail: int) -> np.ndarray:
        """(jobs, rows, *tail) from the jobs' lists, then jobs last: (rows, *tail, jobs)."""
        a = np.array([getattr(n, attr) for n in self.noises], dtype=float)
        return np.moveaxis(a.reshape(len(self.noises), -1, *tail), 0, -1)

    def slot0(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Heralded-pair error, storage while waiting (own per shot), local gate for canaries, crosstalk, strays."""
        rng, rep = self.rng, self.rep
        pair = rep(self.stacked("pair", 3))                    # (n0, 3, I)
        x, z = circuits.pauli_masks(pair[:, 0], pair[:, 1], pair[:, 2], rng)
        wait0 = np.concatenate([n.wait0 for n in self.noises], axis=1)  # (n0, I)
        t0 = rep(self.stacked("t0", 2))                         # (n0, 2, I)
        if wait0.any():
            px, py, pz = physics.twirled_memory_paulis(wait0, t0[:, 0], t0[:, 1])
            sx, sz = circuits.pauli_masks(px, py, pz, rng)
            x ^= sx
            z ^= sz
        if name == "bell_pair":
            self._canary_gate(x, z)
        self._crosstalk(x, z)
        self._stray(x)
        return x, z

    def _canary_gate(self, x: np.ndarray, z: np.ndarray) -> None:
        rng, rep = self.rng, self.rep
        d = np.array([n.extra["depol0"] for n in self.noises])
        dx, dz = circuits.depolarize2_masks(rep(d)[None, :], rng)
        x ^= dx
        z ^= dz
        r = rep(np.array([n.extra["ro_first"] for n in self.noises]))
        rx, rz = circuits.pauli_masks(r * (1 - r), r * r, r * (1 - r), rng)
        x[0] ^= rx
        z[0] ^= rz

    def _crosstalk(self, x: np.ndarray, z: np.ndarray) -> None:
        xt = np.array([j.xtalk for j in self.jobs])
        if xt.any():
            hit = self.rep(self.stacked("hit0")) > 0                # (n0, I) bool
            event = self.rng.random(self.n_inst) < self.rep(xt)
            third = np.full(hit.shape, 1 / 3)
            cx, cz = circuits.pauli_masks(third, third, third, self.rng)
            x ^= cx & hit & event
            z ^= cz & hit & event

    def _stray(self, x: np.ndarray) -> None:
        sp = np.array([j.stray for j in self.jobs])
        if sp.any():
            q = self.rep(np.array([n.stray0 for n in self.noises]))
            hitq = self.rng.random(self.n_inst) < self.rep(sp)
            cols = np.nonzero(hitq & (q >= 0))[0]
            x[q[cols], cols] ^= True

    def slot1(self, depolarize: bool) -> tuple[np.ndarray, np.ndarray]:
        """Gate error and readout flips before the measurements."""
        rng, rep = self.rng, self.rep
        g = rep(self.stacked("gate1", 3))                   # (n1, 3, I)
        x1, z1 = circuits.pauli_masks(g[:, 0], g[:, 1], g[:, 2], rng)
        if depolarize:
            d = rep(self.stacked("depol1"))                 # (n1/2, I)
            dx, dz = circuits.depolarize2_masks(d, rng)
            x1 ^= dx
            z1 ^= dz
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
        return circuits.pauli_masks(px, py, pz, self.rng)
