"""One job's timeline once it has its nodes: orchestrator decision, pair generation on every segment (vectorised
over shots), regeneration of pairs that would fall below the cut-off, feedforward, and the end time and outcome.

Each shot's pair on each fibre segment takes a geometric number of attempt cycles, from uniforms drawn a block at a
time (:meth:`JobTimeline._log_uniforms_list`); early pairs wait in memory for the slowest one and are discarded and
regenerated when they would drop below the cut-off fidelity; the classical feedforward that follows is storage time
too (physics.md 4).
"""

from __future__ import annotations

import math

import numpy as np

from qfleet.simulator.faults import FaultSchedule
from qfleet.simulator.fleet import Fleet
from qfleet.simulator.runstate import Job, RunConfig, RunState, Segment
from qfleet.simulator.shots import canary_noise, link_noise
from qfleet.units import NS

__all__ = ["JobTimeline", "single_qubit_gates"]

_BLOCK = 1 << 14  # uniforms of the timing stream drawn at a time


class _Route:
    """A route's per-segment arrays and what every job over it reads, valid for one link epoch."""

    __slots__ = ("epoch", "segs", "q", "inv_logq", "cyc", "cut", "mem", "alive", "window", "km", "cyc0", "mem0",
                 "inv0")

    def __init__(self, epoch: int, segs: tuple[Segment, ...]) -> None:
        self.epoch = epoch
        self.segs = segs  # kept so that a reused id() never hits
        q = self.q = np.array([s.q for s in segs])
        with np.errstate(divide="ignore"):
            self.inv_logq = np.where(q > 0, 1.0 / np.log1p(-np.minimum(q, 1 - 1e-15)), 0.0)
        self.cyc = np.array([float(s.cycle_ns) for s in segs])
        self.cut = np.array([float(s.cutoff_ns) for s in segs])
        self.mem = np.array([float(s.link.memories) for s in segs])
        self.alive = bool(q.all())
        self.window = float(self.cut.min())
        self.km = sum(s.km for s in segs)
        self.cyc0, self.mem0 = float(segs[0].cycle_ns), float(segs[0].link.memories)
        self.inv0 = float(self.inv_logq[0])


class JobTimeline(RunState):
    """Times a started job: when its pairs are ready, how long its feedforward takes, when and how it ends."""

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig) -> None:
        super().__init__(fleet, faults, config)
        self._route_cache: dict[int, _Route] = {}  # by id(route)
        self._budget_ns = round(self.fleet.scheduler.max_attempt_time_s * NS)
        self._ops_cache: dict[tuple[str, int], int] = {}  # (first node, single-qubit gates) -> ns (_ops_ns)
        # ln(1 - u) of the timing stream's current block of uniforms, as an array and as floats; the next unused one.
        self._logu = np.empty(0)
        self._logu_list: list[float] = []
        self._logu_at = 0

    def _start(self, job: Job, now: int) -> None:
        """Start ``job`` at ``now``: pass the orchestrator, generate its pairs and schedule its end."""
        start = self._orchestrate(job, now)
        if not job.segs:
            self._start_canary(job, start)
            return
        budget = self._budget_ns
        route = self._route_info(job.segs)
        if not route.alive:
            # A dead segment (F1 drop): every attempt fails until the retry budget runs out.
            job.attempts = [int(budget / c * m) for c, m in zip(route.cyc.tolist(), route.mem.tolist(), strict=True)]
            job.gen_ns = [float(budget)] * len(job.segs)
            job.seg_ok = [bool(x) for x in route.q]
            self._finish_at(job, start + budget, "entanglement_timeout")
            return
        if len(job.segs) == 1:
            # Most jobs: one segment, in Python floats (no small arrays; the same numbers, see _generate_one).
            ready, total = self._generate_one(job, route)
            if max(ready) > budget:
                job.seg_ok = [False]
                self._finish_at(job, start + budget, "entanglement_timeout")
                return
            job.seg_ok = [True]
            job.ready = start + int(ready[0])
            self._deliver(job, start, int(total), None, route)
            return
        gen, last, waits = self._generate(job, route)
        if gen.max() > budget:
            over = np.asarray((gen > budget).any(axis=0))
            job.seg_ok = [not o for o in over]
            self._finish_at(job, start + budget, "entanglement_timeout")
            return
        job.seg_ok = [True] * len(job.segs)
        job.ready = start + int(last[0])
        if (waits > route.cut).any():
            # Still stale after max_regenerations: the pairs cannot be had inside the coherence window.
            self._finish_at(job, start + int(min(float(last.max()), budget)), "coherence_window_exceeded")
            return
        self._deliver(job, start, int(last.sum()), waits, route)

    def _orchestrate(self, job: Job, now: int) -> int:
        """The orchestrator's decision for ``job`` (queued behind earlier ones at its capacity); the job's start."""
        cl = self.fleet.classical
        service = round(NS / cl.orchestrator_capacity_per_s)
        self._orch_free = max(self._orch_free, now) + service
        orch = self._orch_free - now + round((cl.orchestrator_processing_s + self._orch_extra_s) * NS)
        job.dispatch = now
        job.orch_ns = orch
        job.wait_ns = now - job.arrival
        job.start = now + orch
        self._served[job.tenant] += 1.0
        return job.start

    def _start_canary(self, job: Job, start: int) -> None:
        st = self._nodes[job.nodes[0]]
        # Each shot: the Hadamard and CNOT that make the local Bell pair, then the readout of both halves.
        n = st.node
        shot_ns = round((n.gate_time_1q_s + n.gate_time_2q_s + 2 * n.readout_time_s) * NS)
        job.ready = start
        job.noise = canary_noise(job, st, self._nodes)
        self._finish_at(job, start + job.shots * shot_ns)

    def _log_uniforms(self, n: int) -> np.ndarray:
        """ln(1 - u) of the timing stream's next ``n`` uniforms (as :meth:`_log_uniforms_list`, as an array)."""
        at = self._logu_at
        if at + n <= len(self._logu_list):
            self._logu_at = at + n
            return self._logu[at:at + n]
        return np.array(self._log_uniforms_list(n))

    def _log_uniforms_list(self, n: int) -> list[float]:
        """ln(1 - u) of the timing stream's next ``n`` uniforms, drawn a block at a time.

        The same numbers as drawing ``n`` at a time: the stream serves nothing else, so its uniforms come in the
        same order either way, and numpy's log1p gives an element the same value in whatever array it sits (it
        differs from math.log1p in the last place for about one value in fourteen, so the block goes through
        numpy)."""
        at, buf = self._logu_at, self._logu_list
        if at + n <= len(buf):
            self._logu_at = at + n
            return buf[at:at + n]
        head = buf[at:]
        need = n - len(head)
        self._logu = np.log1p(-self._rng.random(max(_BLOCK, need)))
        self._logu_list = buf = self._logu.tolist()
        self._logu_at = need
        return head + buf[:need]

    def _generate_one(self, job: Job, route: _Route) -> tuple[list[float], float]:
        """Each shot's ready time on a one-segment route (its first pair: nothing waits for a slower one), and
        their sum; sets the job's attempts, mean generation time and regens. :meth:`_generate`'s arithmetic in
        floats."""
        inv, cyc, shots = route.inv0, route.cyc0, job.shots
        # Geometric cycles: floor(ln(1-u) / ln(1-q)) + 1. Every time is a whole number of ns, so the sum is exact.
        ready = [(math.floor(lu * inv) + 1) * cyc for lu in self._log_uniforms_list(shots)]
        total = sum(ready)
        job.regens = 0
        job.attempts = [int(total / cyc * route.mem0)]
        job.gen_ns = [total / shots]
        return ready, total

    def _generate(self, job: Job, route: _Route) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every shot's pair on every segment of a route of two or more: (first-generation times, each shot's
        ready time, per-segment waits for the slowest pair). Sets the job's attempts, mean generation time and
        regens."""
        shots, nseg = job.shots, len(job.segs)
        inv_logq, cyc, cut = route.inv_logq, route.cyc, route.cut
        # Geometric cycles from uniforms: floor(ln(1-u) / ln(1-q)) + 1, for every shot and segment at once.
        gen = (np.floor(self._log_uniforms(shots * nseg).reshape(shots, nseg) * inv_logq) + 1.0) * cyc
        spent = gen
        regens = 0
        # Early pairs wait for the slowest; one that would fall below the cut-off is regenerated.
        ready = gen
        for _ in range(self.fleet.scheduler.max_regenerations):
            stale = (ready.max(axis=1, keepdims=True) - ready) > cut
            if not stale.any():
                break
            regens += int(stale.sum())
            more = (np.floor(self._log_uniforms(stale.size).reshape(stale.shape) * inv_logq) + 1.0) * cyc
            ready = np.where(stale, ready + cut + more, ready)
            spent = spent + np.where(stale, more, 0.0)
        last = ready.max(axis=1)
        waits = last[:, None] - ready  # (shots, nseg)
        job.regens = regens
        tot = spent.sum(axis=0)
        job.attempts = [int(x) for x in (tot / cyc * route.mem).tolist()]
        job.gen_ns = (tot / shots).tolist()
        return gen, last, waits

    def _deliver(self, job: Job, start: int, ready_sum: int, waits: np.ndarray | None, route: _Route) -> None:
        """Feedforward and use of the pairs (``ready_sum``: the shots' ready times, summed): the job's noise and
        end, or its loss to the coherence window."""
        ff_s, slot2_wait = self._feedforward(job, route)
        job.ff_ns = round(ff_s * NS)
        window = route.window
        use = ((float(waits.max()) if waits is not None else 0.0) + job.ff_ns) / window if window > 0 else math.inf
        job.window_ns = int(window)
        job.usage = use
        end = start + ready_sum + job.shots * (self._ops_ns(job) + job.ff_ns)
        if use > 1.0:
            # The pairs would be below the cut-off when used: the scheduler gives the job up.
            self._finish_at(job, job.ready + job.ff_ns, "coherence_window_exceeded")
            return
        job.noise = link_noise(job, None if waits is None else waits / NS, slot2_wait, self._nodes)
        self._finish_at(job, end)

    def _route_info(self, segs: tuple[Segment, ...]) -> _Route:
        """The :class:`_Route` of ``segs``, cached until link parameters change."""
        hit = self._route_cache.get(id(segs))
        if hit is not None and hit.epoch == self._link_epoch and hit.segs is segs:
            return hit
        route = self._route_cache[id(segs)] = _Route(self._link_epoch, segs)
        return route

    def _latency_s(self, segs: tuple[Segment, ...], km: float | None = None) -> float:
        """One classical message over ``segs`` (``km``: their length, when known): fibre, processing, jitter,
        F3 delays."""
        if km is None:
            km = sum(s.km for s in segs)
        link = segs[0].link if segs else None
        proc = link.classical_processing_s if link else 0.0
        jitter = abs(self._py.gauss(0.0, link.classical_jitter_s)) if link and link.classical_jitter_s else 0.0
        extra = max((s.f3_s for s in segs), default=0.0)
        # Feedforward bits are relayed by the orchestrator, so its overload (F3) delays every message.
        return km * self.fleet.classical.fibre_s_per_km + proc + jitter + extra + self._orch_extra_s

    def _feedforward(self, job: Job, route: _Route) -> tuple[float, list[float]]:
        """(feedforward seconds, storage seconds of each slot-2 qubit while it waits for the classical bits)."""
        segs, kind = job.segs, job.kind
        if kind == "teleport":
            lat = self._latency_s(segs, route.km)
            return lat, [lat]
        if kind == "teleported_cnot":
            lat = self._latency_s(segs, route.km)
            return 2 * lat, [2 * lat, lat]  # the control waits the round trip, the target one way
        if kind == "ghz":
            lat = sum(self._latency_s((s,)) for s in segs[:len(job.nodes) - 1])
            return lat, [lat] * job.k
        # pair_delivery: the far end waits for the slowest swap outcome to arrive.
        worst = 0.0
        for i in range(1, len(segs)):
            worst = max(worst, self._latency_s(segs[i:]))
        if len(segs) == 1:
            worst = self._latency_s(segs, route.km)  # the herald reaches both ends
        return worst, [worst, worst]

    def _ops_ns(self, job: Job) -> int:
        """Local operations per shot at the first node: its two-qubit gate, the single-qubit gates on the shot's
        critical path (:func:`single_qubit_gates`) and its readout."""
        key = (job.nodes[0], single_qubit_gates(job))
        ops = self._ops_cache.get(key)
        if ops is None:
            n = self._nodes[key[0]].node
            ops = self._ops_cache[key] = round((n.gate_time_2q_s + key[1] * n.gate_time_1q_s + n.readout_time_s) * NS)
        return ops


def single_qubit_gates(job: Job) -> int:
    """Single-qubit gates on one shot's critical path after its pairs are ready.

    A Bell-state measurement is CNOT, Hadamard, readout: one for the sender of a teleport and one per swap of a
    pair delivery over repeaters (the swaps run in parallel, at different nodes). A teleported CNOT reads one
    side in the X basis, a basis change first. GHZ fusion reads in the Z basis and its corrections are Pauli-frame
    updates, so none; neither has a pair delivered over one segment, which needs no swap.
    """
    if job.kind in ("teleport", "teleported_cnot"):
        return 1
    if job.kind == "pair_delivery":
        return 1 if len(job.segs) > 1 else 0
    return 0
