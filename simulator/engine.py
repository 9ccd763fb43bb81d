"""The fleet engine: a discrete-event control plane over batched Stim physics, in simulated time.

Only the control plane is event driven (job arrivals and completions, faults, calibrations, in a heap keyed by
integer-ns simulated time). Everything per attempt or per shot is vectorised (physics.md 4):

* link timing: each job shot's pair on each fibre segment takes a geometric number of attempt cycles, drawn in
  one numpy call per job; early pairs wait in memory for the slowest one and are discarded and regenerated
  when they would drop below the cut-off fidelity; the classical feedforward that follows is storage time too;
* quantum state: every shot of every job is one Stim ``FlipSimulator`` instance, with Pauli noise drawn from its
  own timing (pair error, T1/T2 storage, gate and readout error, crosstalk, stray commands). Jobs are grouped by
  circuit shape and run together once per step; a job's fidelity is the fraction of its shots whose
  stabilizer checks pass (physics.md 3.1).

A step (one simulated minute by default, the store's rollup bucket) ends with the physics of the jobs finished
in it, their spans, and one snapshot of every metric, handed out as a :class:`SimStep`. Nothing here reads a
clock or global randomness: the same fleet, faults, config and seed give the same steps.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qfleet.collector import SpanColumns
from qfleet.simulator import circuits, physics
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Fleet, Link, Node
from qfleet.simulator.telemetry import SPAN_NAMES, MetricsAccumulator, SpanBuffer, labels, run_hash

__all__ = ["DEFAULT_START_NS", "OUTCOMES", "RunConfig", "SimStep", "Simulation", "StepTimings"]

NS = 1_000_000_000
#: 2026-01-01T00:00:00Z: the default simulated start, so that runs are reproducible by default.
DEFAULT_START_NS = 1_767_225_600 * NS
#: Every job outcome: ``success`` or why not.
OUTCOMES = ("success", "low_fidelity", "entanglement_timeout", "coherence_window_exceeded", "node_down",
            "queue_timeout", "unschedulable")
JOB_KINDS = ("teleport", "teleported_cnot", "ghz", "pair_delivery", "canary")
_SCAN = 64  # queued jobs a dispatch pass looks at per tenant (backfilling past a blocked head)
_DRIFT_NS = 300 * NS


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """What to simulate besides the fleet and its faults.

    Args:
        duration_ns: simulated time to cover (> 0).
        start_ns: simulated wall time of the start (Unix ns).
        seed: seeds every random draw of the run.
        step_ns: simulated time per :class:`SimStep` (telemetry flush and metric snapshot).
        load: multiplies every tenant's arrival rate.
        shots: overrides every tenant's shots per job.
    """

    duration_ns: int
    start_ns: int = DEFAULT_START_NS
    seed: int = 7
    step_ns: int = 60 * NS
    load: float = 1.0
    shots: int | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("duration_ns", "start_ns", "step_ns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                problems.append(f"{name}={v!r} must be a positive integer number of nanoseconds")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed={self.seed!r} must be an integer >= 0")
        if not (isinstance(self.load, (int, float)) and math.isfinite(self.load) and self.load >= 0):
            problems.append(f"load={self.load!r} must be a finite number >= 0 (1 = the tenants' own rates)")
        if self.shots is not None and (isinstance(self.shots, bool) or not isinstance(self.shots, int)
                                       or self.shots < 1):
            problems.append(f"shots={self.shots!r} must be an integer >= 1 or None (the tenants' own)")
        if problems:
            raise ValueError("RunConfig: " + "; ".join(problems))


@dataclass(slots=True)
class StepTimings:
    """Seconds of CPU spent per engine phase so far (the fleet-day benchmark's split)."""

    control_s: float = 0.0
    physics_s: float = 0.0
    telemetry_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SimStep:
    """The telemetry of one simulated step ``[start_ns, end_ns)``.

    Attributes:
        spans: spans that ended in the step (jobs, requests, swaps, ground truth...).
        metrics: a snapshot of every metric at ``end_ns`` (``MetricsData``).
        jobs_finished: jobs whose outcome was decided in the step.
        jobs_total: jobs finished since the run started.
    """

    start_ns: int
    end_ns: int
    spans: SpanColumns
    metrics: Any
    jobs_finished: int
    jobs_total: int


# ---------------------------------------------------------------------------------------------------------------
# Mutable run state (plain slotted classes: the hot loop touches them millions of times)


class _NodeState:
    __slots__ = ("node", "up", "maintenance", "free", "held", "t2_walk", "ro_walk", "t2_div", "ro_add",
                 "crosstalk", "stray_rate", "principal", "deadlocked", "t1", "t2", "ro0", "ro1", "ro",
                 "g1", "g2", "down_s", "canary_bits", "canary_n", "inflight", "calibrated_at")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.up = True
        self.maintenance = False
        self.free = node.comm_qubits
        self.held = 0  # comm qubits frozen by a scheduler deadlock (F7)
        self.t2_walk = 1.0
        self.ro_walk = 0.0
        self.t2_div = 1.0
        self.ro_add = 0.0
        self.crosstalk = 0.0
        self.stray_rate = 0.0
        self.principal = ""
        self.deadlocked = False
        self.down_s = 0.0  # outage seconds within the current step
        self.canary_bits = 0  # passed canary shots this step
        self.canary_n = 0
        self.inflight: set[_Job] = set()
        self.calibrated_at = 0
        self.refresh()

    def refresh(self) -> None:
        n = self.node
        self.t1 = n.t1_s / self.t2_div
        self.t2 = min(n.t2_s * self.t2_walk / self.t2_div, 2 * self.t1)
        self.ro0 = min(0.5, n.readout_error_0 + self.ro_walk + self.ro_add)
        self.ro1 = min(0.5, n.readout_error_1 + self.ro_walk + self.ro_add)
        # Checks read both eigenstates equally often, so the symmetric flip is the mean of the two.
        self.ro = (self.ro0 + self.ro1) / 2
        self.g1 = n.gate_error_1q
        self.g2 = n.gate_error_2q

    @property
    def available(self) -> bool:
        return self.up and not self.maintenance


class _Segment:
    """One heralded fibre segment: a whole link, or the part of one between two repeaters."""

    __slots__ = ("link", "index", "left", "right", "km", "p0", "cycle_ns", "pair_pauli", "q", "p", "cutoff_ns",
                 "eff_walk", "f1", "f3_s", "fid0")

    def __init__(self, link: Link, index: int, left: str, right: str) -> None:
        self.link = link
        self.index = index
        self.left = left
        self.right = right
        self.km = link.segment_km
        self.p0 = float(physics.heralding_probability(
            scheme=link.scheme, length_km=self.km, attenuation_db_per_km=link.attenuation_db_per_km,
            emission_efficiency=link.emission_efficiency, collection_efficiency=link.collection_efficiency,
            detector_efficiency=link.detector_efficiency, bright_state_population=link.bright_state_population))
        self.cycle_ns = max(1, round(physics.attempt_cycle_s(prep_time_s=link.prep_time_s, length_km=self.km) * NS))
        px, py, pz = physics.heralded_pauli_probabilities(
            scheme=link.scheme, visibility=link.visibility, bright_state_population=link.bright_state_population)
        self.pair_pauli = (float(px), float(py), float(pz))
        self.fid0 = 1.0 - sum(self.pair_pauli)
        self.eff_walk = 1.0
        self.f1 = 1.0
        self.f3_s = 0.0
        self.q = self.p = 0.0
        self.cutoff_ns = 0


class _Job:
    __slots__ = ("idx", "tenant", "kind", "k", "arrival", "nodes", "segs", "dispatch", "start", "end", "outcome",
                 "shots", "orch_ns", "ff_ns", "window_ns", "usage", "attempts", "gen_ns", "regens", "ready",
                 "noise", "fidelity", "passed", "failover", "seg_ok", "cancelled", "hold", "stray", "xtalk",
                 "wait_ns", "need", "links", "epoch", "hold_nodes")

    def __init__(self, idx: int, tenant: int, kind: str, k: int, arrival: int, shots: int) -> None:
        self.idx = idx
        self.tenant = tenant
        self.kind = kind
        self.k = k
        self.arrival = arrival
        self.shots = shots
        self.nodes: tuple[str, ...] = ()
        self.segs: tuple[_Segment, ...] = ()
        self.dispatch = self.start = self.end = 0
        self.outcome = ""
        self.orch_ns = self.ff_ns = self.window_ns = self.wait_ns = 0
        self.usage = 0.0
        self.attempts: list[int] = []
        self.gen_ns: list[float] = []
        self.regens = 0
        self.ready = 0
        self.noise: Any = None
        self.fidelity = math.nan
        self.passed = 0
        self.failover = False
        self.seg_ok: list[bool] = []
        self.cancelled = False
        self.hold: dict[str, int] = {}
        self.stray = 0.0
        self.xtalk = 0.0
        self.need: dict[str, int] = {}
        self.links: frozenset[str] = frozenset()
        self.epoch = -1
        self.hold_nodes: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Noise:
    """Per-job inputs to the Stim instances of its shots (arrays are per slot, rows = slot qubits)."""

    circuit: circuits.SlottedCircuit
    pair: list[Any]             # n0 x (px, py, pz) heralded-pair error (0 for qubits without one)
    wait0: np.ndarray           # (n0, shots) storage seconds after generation
    t0: list[Any]               # n0 x (T1, T2) of each slot-0 qubit's node
    gate1: list[Any]            # n1 x (px, py, pz) gate-error marginals before measurement
    depol1: list[float] | None  # n1 // 2 two-qubit depolarising of consecutive slot-1 pairs, or None
    flip1: list[Any]            # n1 x (X, Z) readout flip probabilities as errors before measurement
    wait2: list[float]          # n2 storage seconds during feedforward
    t2: list[Any]               # n2 x (T1, T2)
    hit0: list[bool]            # n0: slot-0 qubits exposed to crosstalk
    stray0: int                 # slot-0 qubit hit by stray commands, or -1
    extra: dict[str, float] = field(default_factory=dict)


def _marginal(p2: float) -> tuple[float, float, float]:
    # One qubit's marginal of DEPOLARIZE2(p): 4 of the 15 Paulis put X on it, 4 Y, 4 Z.
    m = 4 * p2 / 15
    return (m, m, m)


def _readout_pauli(r: float) -> tuple[float, float, float]:
    # Checks measure in both bases: an independent X flip and Z flip, each with probability r.
    return (r * (1 - r), r * r, r * (1 - r))


# ---------------------------------------------------------------------------------------------------------------


class Simulation:
    """One seeded run of a fleet with its faults; iterate :meth:`steps` to drive it.

    Args:
        fleet: the validated fleet.
        faults: the fault schedule (offsets from the run start); ``None`` for none.
        config: duration, start, seed, step, load.

    Examples:
        >>> from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
        >>> sim = Simulation(load_fleet(builtin_fleet_path("line")), None, RunConfig(duration_ns=60 * NS))
        >>> steps = list(sim.steps())
        >>> len(steps), steps[-1].jobs_total == sim.jobs_total > 0
        (1, True)
    """

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig) -> None:
        self.fleet = fleet
        self.faults = faults or FaultSchedule(())
        self.config = config
        self.run_id = run_hash(repr((fleet.to_dict(), self.faults.to_dict(), config.duration_ns, config.start_ns,
                                     config.seed, config.load, config.shots)))
        self.timings = StepTimings()
        self.jobs_total = 0
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        # Independent streams, so that a fault changes the draws of what it touches and nothing else: the
        # calibration drift of every node, for one, is the same with and without a fault elsewhere.
        seeds = np.random.SeedSequence(config.seed).generate_state(6, dtype=np.uint64)
        self._rng = np.random.default_rng(int(seeds[0]))        # job timing
        self._py = random.Random(int(seeds[1]))                  # control-plane choices
        self._stim_seed = int(seeds[2]) % (2**62)
        self._drift_rng = np.random.default_rng(int(seeds[3]))  # calibration drift
        self._arrival_rng = np.random.default_rng(int(seeds[4]))  # job arrivals and their kinds
        self._mask_rng = np.random.default_rng(int(seeds[5]))    # per-instance Pauli noise
        self._audit_rng = random.Random(int(seeds[5]) ^ 0x5EED)  # unauthorized-command arrivals
        self._t0 = config.start_ns
        self._end = config.start_ns + config.duration_ns
        self._nodes = {n.id: _NodeState(n) for n in fleet.nodes}
        self._segments: dict[str, tuple[_Segment, ...]] = {}
        for link in fleet.links:
            chain = (link.a, *link.repeaters, link.b)
            self._segments[link.id] = tuple(_Segment(link, i, chain[i], chain[i + 1]) for i in range(len(chain) - 1))
        self._all_segments = [s for ss in self._segments.values() for s in ss]
        self._memories = np.array([float(s.link.memories) for s in self._all_segments])
        self._link_busy: dict[str, bool] = {lk.id: False for lk in fleet.links}
        self._tenants = fleet.tenants
        self._queues: list[deque[_Job]] = [deque() for _ in fleet.tenants]
        self._served = [0.0] * len(fleet.tenants)
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._orch_free = self._t0
        self._orch_extra_s = 0.0
        self._drift_at = self._t0
        self._avail_epoch = 0  # bumped whenever a node's availability changes
        self._avoid_cache: tuple[int, set[str]] = (-1, set())
        self._labels: dict[tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]] = {}
        self._route_cache: dict[int, tuple[int, Any]] = {}
        self._link_epoch = 0
        self._finished: list[_Job] = []
        self._job_idx = 0
        self._spans = SpanBuffer()
        self._metrics = MetricsAccumulator({"service.name": "qfleet-simulator", "qfleet.run.id": self.run_id,
                                            "qfleet.fleet": fleet.name}, self._t0)
        self._paths: dict[tuple[str, str], tuple[_Segment, ...]] = {}
        self._refresh_links()
        self._build_candidates()
        self._schedule_faults_and_calibrations()

    # -- set-up ---------------------------------------------------------------------------------------------------

    def _build_candidates(self) -> None:
        fleet = self.fleet
        procs = sorted(n.id for n in fleet.processors())
        pset = set(procs)
        direct = [lk for lk in fleet.links if not lk.repeaters and lk.a in pset and lk.b in pset]
        # pair_delivery: any two processors within three links (repeaters and other processors swap on the way).
        near: list[tuple[str, str]] = []
        for a in procs:
            depth = {a: 0}
            frontier = [a]
            for d in (1, 2, 3):
                nxt = []
                for x in frontier:
                    for y in fleet.neighbours(x):
                        if y not in depth:
                            depth[y] = d
                            nxt.append(y)
                frontier = nxt
            near.extend((a, b) for b in sorted(depth) if b > a and b in pset)
        self._cand: list[dict[str, Any]] = []
        for t in self._tenants:
            types = set(t.hardware_types)
            ok = {p for p in procs if not types or fleet.node(p).hardware_type in types}
            links = [lk for lk in direct if lk.a in ok and lk.b in ok]
            adj: dict[str, list[str]] = {}
            for lk in links:
                adj.setdefault(lk.a, []).append(lk.b)
                adj.setdefault(lk.b, []).append(lk.a)
            self._cand.append({"procs": sorted(ok), "links": links, "adj": {k: sorted(v) for k, v in adj.items()},
                               "far": [(a, b) for a, b in near if a in ok and b in ok and self._feasible(
                                   self._route(a, b))]})

    def _feasible(self, segs: tuple[_Segment, ...]) -> bool:
        """Whether a multi-segment route can meet its coherence window with calibrated parameters.

        The quantum-aware scheduler only offers routes whose slowest segment delivers a pair well inside the
        fastest-decaying pair's cut-off. An early pair waits roughly an exponential time with the slow segment's
        mean, so at a third of the cut-off one shot in e^12 exhausts its regenerations; at the cut-off itself
        about half of all 32-shot jobs would.
        """
        if len(segs) < 2:
            return True
        slowest = max(s.cycle_ns / s.q if s.q > 0 else math.inf for s in segs)
        return 3 * slowest <= min(s.cutoff_ns for s in segs)

    def _chains(self, tenant: int, k: int) -> list[tuple[str, ...]]:
        """Every simple path of ``k`` processors over direct links (GHZ by chained fusion), computed once."""
        cand = self._cand[tenant]
        key = ("chains", k)
        if key not in cand:
            adj = cand["adj"]
            out: list[tuple[str, ...]] = []

            def walk(path: list[str]) -> None:
                if len(out) >= 200_000:
                    return
                if len(path) == k:
                    if path[0] < path[-1]:  # each chain once, not once per direction
                        out.append(tuple(path))
                    return
                for nxt in adj.get(path[-1], ()):
                    if nxt not in path:
                        path.append(nxt)
                        walk(path)
                        path.pop()

            for start in sorted(adj):
                walk([start])
            cand[key] = [ch for ch in out if self._feasible(tuple(
                seg for x, y in zip(ch, ch[1:], strict=False) for seg in self._route(x, y)))]
        return cand[key]

    def _choose(self, items: list[Any], bad: Any) -> Any:
        """A uniform choice among ``items`` for which ``bad(item)`` is false, or None.

        Rejection sampling first: usually only a few nodes are unavailable, and filtering a long list for
        every job would dominate the control plane.
        """
        if not items:
            return None
        py = self._py
        for _ in range(12):
            it = py.choice(items)
            if not bad(it):
                return it
        good = [it for it in items if not bad(it)]
        return py.choice(good) if good else None

    def _push(self, t: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def _schedule_faults_and_calibrations(self) -> None:
        for f in self.faults.faults:
            start = self._t0 + f.start_ns
            if start < self._end:
                self._push(start, 1, (f, True))
                self._push(min(start + f.duration_ns, self._end), 1, (f, False))
        cal = self.fleet.calibration
        interval, dur = round(cal.interval_s * NS), round(cal.duration_s * NS)
        procs = [n for n in self.fleet.nodes]
        for i, n in enumerate(procs):
            # Staggered so that the fleet is never recalibrated all at once.
            t = self._t0 + (i * interval) // max(1, len(procs)) + interval // 2
            while t < self._end:
                self._push(t, 2, (n.id, True, dur))
                t += interval

    def _refresh_links(self) -> None:
        self._link_epoch += 1
        segs_all = self._all_segments
        p = np.minimum(1.0, np.array([s.p0 * s.eff_walk * s.f1 for s in segs_all]))
        q = physics.multiplexed_success(p, self._memories).tolist()
        for s, ps, qs in zip(segs_all, p.tolist(), q, strict=True):
            s.p = ps
            s.q = qs
        for segs in self._segments.values():
            for s in segs:
                a, b = self._nodes[s.left], self._nodes[s.right]
                # Both halves dephase: the pair sees 1/T2a + 1/T2b, i.e. e^{-2t/T2pair}.
                t2pair = 2.0 / (1.0 / a.t2 + 1.0 / b.t2)
                cut = physics.coherence_cutoff_s(max(0.25, s.fid0), self.fleet.scheduler.cutoff_fidelity, t2pair)
                s.cutoff_ns = int(min(cut, 1e6) * NS)

    # -- the run --------------------------------------------------------------------------------------------------

    def steps(self) -> Iterator[SimStep]:
        """Run to the end, one :class:`SimStep` per ``config.step_ns`` of simulated time."""
        step = self.config.step_ns
        t = self._t0
        self._ground_truth_spans()
        while t < self._end:
            t1 = min(t + step, self._end)
            c0 = time.perf_counter()
            self._advance(t, t1)
            self._tick(t, t1)
            c1 = time.perf_counter()
            self.timings.control_s += c1 - c0
            n = self._physics()
            c2 = time.perf_counter()
            self.timings.physics_s += c2 - c1
            for job in self._finished:
                self._job_telemetry(job)
            self._finished = []
            self._node_metrics(t1)
            metrics = self._metrics.snapshot(t1)
            spans = self._spans.take()
            self.timings.telemetry_s += time.perf_counter() - c2
            yield SimStep(t, t1, spans, metrics, n, self.jobs_total)
            t = t1

    def _advance(self, t0: int, t1: int) -> None:
        arrivals = self._arrivals(t0, t1)
        heap = self._heap
        i, n = 0, len(arrivals)
        while True:
            ta = arrivals[i].arrival if i < n else t1
            te = heap[0][0] if heap else t1
            if ta >= t1 and te >= t1:
                break
            if te <= ta:
                t, _, kind, payload = heapq.heappop(heap)
                if kind == 0:
                    if self._done(payload, t):
                        self._dispatch(t, payload)
                else:
                    if kind == 1:
                        self._fault(payload[0], payload[1], t)
                    else:
                        self._calibration(payload, t)
                    self._dispatch(t)
            else:
                job = arrivals[i]
                i += 1
                # Nothing was freed since the queued jobs last failed to start: only the newcomer can.
                if not self._try_start(job, job.arrival):
                    self._queues[job.tenant].append(job)

    def _arrivals(self, t0: int, t1: int) -> list[_Job]:
        out: list[_Job] = []
        span_s = (t1 - t0) / NS
        rng = self._arrival_rng
        py = random.Random(int(rng.integers(2**62)))
        for ti, ten in enumerate(self._tenants):
            rate = ten.rate_per_s * self.config.load
            if rate <= 0:
                continue
            n = int(rng.poisson(rate * span_s))
            if not n:
                continue
            times = np.sort(rng.integers(t0, t1, size=n)).tolist()
            kinds = list(ten.mix)
            weights = [ten.mix[k] for k in kinds]
            chosen = py.choices(kinds, weights, k=n)
            shots = self.config.shots or ten.shots
            for t, kind in zip(times, chosen, strict=True):
                k = py.choice(ten.ghz_nodes) if kind == "ghz" else 2
                out.append(_Job(self._job_idx, ti, kind, k, t, shots))
                self._job_idx += 1
        out.sort(key=lambda j: (j.arrival, j.idx))
        return out

    # -- node choice and resources --------------------------------------------------------------------------------

    def _route(self, a: str, b: str) -> tuple[_Segment, ...]:
        key = (a, b)
        segs = self._paths.get(key)
        if segs is None:
            out: list[_Segment] = []
            here = a
            for link in self.fleet.path(a, b):
                ls = self._segments[link.id]
                if link.a == here:
                    out.extend(ls)
                    here = link.b
                else:
                    out.extend(reversed(ls))
                    here = link.a
            segs = self._paths[key] = tuple(out)
        return segs

    def _pick(self, job: _Job, avoid: set[str]) -> bool:
        """Choose nodes and segments for ``job`` among available nodes; False when impossible."""
        cand = self._cand[job.tenant]
        py = self._py
        kind = job.kind
        if kind == "canary":
            node = self._choose(cand["procs"], avoid.__contains__)
            if node is None:
                return False
            job.nodes, job.segs = (node,), ()
            return True
        if kind in ("teleport", "teleported_cnot"):
            lk = self._choose(cand["links"], lambda lk: lk.a in avoid or lk.b in avoid)
            if lk is None:
                return False
            a, b = (lk.a, lk.b) if py.random() < 0.5 else (lk.b, lk.a)
            job.nodes, job.segs = (a, b), self._route(a, b)
            return True
        if kind == "ghz":
            chains = self._chains(job.tenant, job.k)
            chain = self._choose(chains, lambda ch: not avoid.isdisjoint(ch))
            if chain is None:
                return False
            segs: list[_Segment] = []
            for x, y in zip(chain, chain[1:], strict=False):
                segs.extend(self._route(x, y))
            job.nodes, job.segs = chain, tuple(segs)
            return True
        pair = self._choose(cand["far"], lambda ab: ab[0] in avoid or ab[1] in avoid or any(
            s.left in avoid or s.right in avoid for s in self._route(*ab)))
        if pair is None:
            return False
        job.nodes, job.segs = pair, self._route(*pair)
        return True

    def _avoid(self) -> set[str]:
        """Nodes that are down or in maintenance now (cached until availability changes)."""
        if self._avoid_cache[0] != self._avail_epoch:
            self._avoid_cache = (self._avail_epoch, {n for n, st in self._nodes.items() if not st.available})
        return self._avoid_cache[1]

    def _placed(self, job: _Job) -> None:
        need: dict[str, int] = {}
        for s in job.segs:
            need[s.left] = need.get(s.left, 0) + 1
            need[s.right] = need.get(s.right, 0) + 1
        if not job.segs:
            need[job.nodes[0]] = 0
        job.need = need
        job.links = frozenset(s.link.id for s in job.segs)
        job.epoch = self._avail_epoch

    def _try_start(self, job: _Job, now: int) -> bool:
        if job.epoch != self._avail_epoch and job.nodes and any(
                not self._nodes[n].available for n in job.need):
            job.nodes = ()
        if not job.nodes:
            # First placement, or fail-over away from a node that went down or into maintenance.
            avoid = self._avoid()
            had = bool(job.nodes)
            if not self._pick(job, avoid):
                down = {n for n, st in self._nodes.items() if not st.up}
                if down != avoid and self._pick(job, down):
                    self._placed(job)
                    job.epoch = -1  # placed on a node in maintenance: look again once it ends
                    return False
                self._fail(job, now, "node_down" if down else "unschedulable")
                return True
            job.failover = job.failover or had
            self._placed(job)
        job.epoch = self._avail_epoch
        need = job.need
        nodes = self._nodes
        for n, c in need.items():
            if nodes[n].free < c:
                return False
        busy = self._link_busy
        links = job.links
        for lid in links:
            if busy[lid]:
                return False
        for n, c in need.items():
            nodes[n].free -= c
            nodes[n].inflight.add(job)
        for lid in links:
            busy[lid] = True
        job.hold = need
        self._start(job, now)
        return True

    def _release(self, job: _Job) -> None:
        job.hold_nodes = frozenset(job.hold)
        for n, c in job.hold.items():
            st = self._nodes[n]
            st.inflight.discard(job)
            if st.deadlocked:
                st.held += c  # a deadlocked scheduler never hands these back until the cycle is broken
            else:
                st.free += c
        for lid in job.links:
            self._link_busy[lid] = False
        job.hold = {}

    def _dispatch(self, now: int, freed: _Job | None = None) -> None:
        """Start what can start, highest priority first and fairly by weight within a priority.

        After a job ends (``freed``), only queued jobs that want one of its nodes or links are tried.
        """
        queues = self._queues
        if freed is not None and not any(queues):
            return
        fnodes, flinks = (freed.hold_nodes, freed.links) if freed is not None else (None, None)
        timeout = round(self.fleet.scheduler.queue_timeout_s * NS)
        order = sorted(range(len(queues)), key=lambda i: (-self._tenants[i].priority,
                                                          self._served[i] / self._tenants[i].weight))
        for i in order:
            q = queues[i]
            while q and now - q[0].arrival > timeout:
                late = q.popleft()
                self._fail(late, late.arrival + timeout, "queue_timeout")
            scanned = 0
            idx = 0
            while idx < len(q) and scanned < _SCAN:
                job = q[idx]
                scanned += 1
                if fnodes is not None and job.nodes and job.epoch == self._avail_epoch and (
                        fnodes.isdisjoint(job.need) and flinks.isdisjoint(job.links)):
                    idx += 1
                    continue
                if self._try_start(job, now):
                    del q[idx]
                else:
                    idx += 1

    # -- one job's physics timeline -----------------------------------------------------------------------------

    def _start(self, job: _Job, now: int) -> None:
        fleet, nodes = self.fleet, self._nodes
        cl = fleet.classical
        service = round(NS / cl.orchestrator_capacity_per_s)
        self._orch_free = max(self._orch_free, now) + service
        orch = self._orch_free - now + round((cl.orchestrator_processing_s + self._orch_extra_s) * NS)
        job.dispatch = now
        job.orch_ns = orch
        job.wait_ns = now - job.arrival
        start = now + orch
        job.start = start
        self._served[job.tenant] += 1.0
        segs = job.segs
        shots = job.shots
        sched = fleet.scheduler
        budget = round(sched.max_attempt_time_s * NS)
        if not segs:
            st = nodes[job.nodes[0]]
            shot_ns = round((st.node.gate_time_2q_s + 2 * st.node.readout_time_s) * NS)
            job.ready = start
            job.noise = self._canary_noise(job, st)
            self._finish_at(job, start + shots * shot_ns)
            return
        nseg = len(segs)
        q, inv_logq, cyc, cut, mem = self._route_arrays(segs)
        if not q.all():
            # A dead segment (F1 drop): every attempt fails until the retry budget runs out.
            job.attempts = [int(budget / c * m) for c, m in zip(cyc.tolist(), mem.tolist(), strict=True)]
            job.gen_ns = [float(budget)] * nseg
            job.seg_ok = [bool(x) for x in q.tolist()]
            self._finish_at(job, start + budget, "entanglement_timeout")
            return
        rng = self._rng
        # Geometric cycles from uniforms: floor(ln(1-u) / ln(1-q)) + 1, for every shot and segment at once.
        gen = (np.floor(np.log1p(-rng.random((shots, nseg))) * inv_logq) + 1.0) * cyc
        spent = gen
        regens = 0
        if nseg > 1:
            # Early pairs wait for the slowest; one that would fall below the cut-off is regenerated.
            ready = gen
            for _ in range(sched.max_regenerations):
                stale = (ready.max(axis=1, keepdims=True) - ready) > cut
                if not stale.any():
                    break
                regens += int(stale.sum())
                more = (np.floor(np.log1p(-rng.random(stale.shape)) * inv_logq) + 1.0) * cyc
                ready = np.where(stale, ready + cut + more, ready)
                spent = spent + np.where(stale, more, 0.0)
            last = ready.max(axis=1)
            waits = last[:, None] - ready  # (shots, nseg)
        else:
            last = gen[:, 0]
            waits = None
        job.regens = regens
        tot = spent.sum(axis=0)
        job.attempts = [int(x) for x in (tot / cyc * mem).tolist()]
        job.gen_ns = (tot / shots).tolist()
        if gen.max() > budget:
            over = (gen > budget).any(axis=0).tolist()
            job.seg_ok = [not o for o in over]
            self._finish_at(job, start + budget, "entanglement_timeout")
            return
        job.seg_ok = [True] * nseg
        job.ready = start + int(last[0])
        if waits is not None and (waits > cut).any():
            # Still stale after max_regenerations: the pairs cannot be had inside the coherence window.
            self._finish_at(job, start + int(min(float(last.max()), budget)), "coherence_window_exceeded")
            return
        ff_s, slot2_wait = self._feedforward(job)
        job.ff_ns = round(ff_s * NS)
        window = float(cut.min())
        use = ((float(waits.max()) if waits is not None else 0.0) + job.ff_ns) / window if window > 0 else math.inf
        job.window_ns = int(window)
        job.usage = use
        ops_ns = self._ops_ns(job)
        end = start + int(last.sum()) + shots * (ops_ns + job.ff_ns)
        if use > 1.0:
            # The pairs would be below the cut-off when used: the scheduler gives the job up.
            self._finish_at(job, start + int(last[0]) + job.ff_ns, "coherence_window_exceeded")
            return
        job.noise = self._link_noise(job, None if waits is None else waits / NS, slot2_wait)
        self._finish_at(job, end)

    def _route_arrays(self, segs: tuple[_Segment, ...]) -> tuple[np.ndarray, ...]:
        """(q, 1/ln(1-q), cycle ns, cut-off ns, memories) of a route, cached until link parameters change."""
        hit = self._route_cache.get(id(segs))
        if hit is not None and hit[0] == self._link_epoch and hit[1][5] is segs:
            return hit[1][:5]
        q = np.array([s.q for s in segs])
        with np.errstate(divide="ignore"):
            inv = np.where(q > 0, 1.0 / np.log1p(-np.minimum(q, 1 - 1e-15)), 0.0)
        arrays = (q, inv, np.array([float(s.cycle_ns) for s in segs]), np.array([float(s.cutoff_ns) for s in segs]),
                  np.array([float(s.link.memories) for s in segs]), segs)
        self._route_cache[id(segs)] = (self._link_epoch, arrays)
        return arrays[:5]

    def _latency_s(self, a: str, b: str, segs: tuple[_Segment, ...]) -> float:
        km = sum(s.km for s in segs)
        link = segs[0].link if segs else None
        proc = link.classical_processing_s if link else 0.0
        jitter = abs(self._py.gauss(0.0, link.classical_jitter_s)) if link and link.classical_jitter_s else 0.0
        extra = max((s.f3_s for s in segs), default=0.0)
        # Feedforward bits are relayed by the orchestrator, so its overload (F3) delays every message.
        return km * self.fleet.classical.fibre_s_per_km + proc + jitter + extra + self._orch_extra_s

    def _feedforward(self, job: _Job) -> tuple[float, list[float]]:
        segs, kind = job.segs, job.kind
        if kind == "teleport":
            lat = self._latency_s(job.nodes[0], job.nodes[1], segs)
            return lat, [lat]
        if kind == "teleported_cnot":
            lat = self._latency_s(job.nodes[0], job.nodes[1], segs)
            return 2 * lat, [2 * lat, lat]  # the control waits the round trip, the target one way
        if kind == "ghz":
            lat = sum(self._latency_s(a, b, (s,)) for a, b, s in zip(job.nodes, job.nodes[1:], segs, strict=False))
            return lat, [lat] * job.k
        # pair_delivery: the far end waits for the slowest swap outcome to arrive.
        worst = 0.0
        for i in range(1, len(segs)):
            worst = max(worst, self._latency_s(segs[i].left, job.nodes[1], segs[i:]))
        if len(segs) == 1:
            worst = self._latency_s(job.nodes[0], job.nodes[1], segs)  # the herald reaches both ends
        return worst, [worst, worst]

    def _ops_ns(self, job: _Job) -> int:
        n = self._nodes[job.nodes[0]].node
        return round((n.gate_time_2q_s + n.readout_time_s) * NS)

    # -- noise for the Stim instances ---------------------------------------------------------------------------

    def _tt(self, node: str) -> tuple[float, float]:
        st = self._nodes[node]
        return (st.t1, st.t2)

    def _exposure(self, job: _Job, qubit_nodes: list[str]) -> tuple[list[bool], int]:
        nodes = self._nodes
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

    def _canary_noise(self, job: _Job, st: _NodeState) -> _Noise:
        c = circuits.bell_pair()
        r = _readout_pauli(st.ro)
        pair = [(0.0, 0.0, 0.0), r]
        hit, stray_q = self._exposure(job, [st.node.id, st.node.id])
        noise = _Noise(c, pair, np.zeros((2, job.shots)), [self._tt(st.node.id)] * 2, [], None, [], [], [],
                       hit, stray_q)
        # The local entangling gate: DEPOLARIZE2(g2) on the pair, plus readout on the other half too.
        noise.extra = {"depol0": st.g2, "ro_first": st.ro}
        return noise

    def _link_noise(self, job: _Job, waits_s: np.ndarray | None, slot2_wait: list[float]) -> _Noise:
        kind, segs, nodes = job.kind, job.segs, self._nodes
        # Both halves of pair i wait for the slowest pair of the shot (none with a single segment).
        pair_waits = (np.zeros((2 * len(segs), job.shots)) if waits_s is None
                      else np.repeat(waits_s.T, 2, axis=0))
        tt = self._tt
        zero = (0.0, 0.0, 0.0)
        if kind == "pair_delivery":
            h = len(segs)
            c = circuits.swap_chain(h)
            q0 = [n for s in segs for n in (s.left, s.right)]
            pair = [zero if i % 2 == 0 else segs[i // 2].pair_pauli for i in range(2 * h)]
            wait0 = pair_waits
            bsm = q0[1:-1]
            gate1 = [zero] * len(bsm)
            depol = [nodes[bsm[2 * i]].g2 for i in range(h - 1)] if h > 1 else None
            flip1 = [(nodes[n].ro, 0.0) for n in bsm]
            q2 = [q0[0], q0[-1]]
        elif kind == "ghz":
            k = job.k
            c = circuits.ghz(k)
            q0 = [job.nodes[0]] + [n for s in segs for n in (s.left, s.right)]
            pair = [zero] + [zero if i % 2 == 0 else segs[i // 2].pair_pauli for i in range(2 * (k - 1))]
            wait0 = np.vstack([np.zeros((1, job.shots)), pair_waits])
            comm = [segs[i].left for i in range(k - 1)]
            gate1 = [_marginal(nodes[n].g2) for n in comm]
            depol = None
            flip1 = [(nodes[n].ro, 0.0) for n in comm]
            q2 = list(job.nodes)
        elif kind == "teleport":
            c = circuits.teleport_state()
            a, b = job.nodes
            q0 = [a, b]
            pair = [zero, segs[0].pair_pauli]
            wait0 = pair_waits
            gate1 = [zero, zero]
            depol = [nodes[a].g2]
            flip1 = [(nodes[a].ro, 0.0), (nodes[a].ro, 0.0)]
            q2 = [b]
        else:  # teleported_cnot
            c = circuits.teleported_cnot()
            a, b = job.nodes
            q0 = [a, b]
            pair = [zero, segs[0].pair_pauli]
            wait0 = pair_waits
            gate1 = [_marginal(nodes[a].g2), _marginal(nodes[b].g2)]
            depol = None
            flip1 = [(nodes[a].ro, 0.0), (0.0, nodes[b].ro)]  # M on A's comm qubit, MX on B's
            q2 = [a, b]
        hit, stray_q = self._exposure(job, q0)
        # Plain lists: the whole group becomes one array per field in _run_group.
        return _Noise(c, pair, wait0, [tt(n) for n in q0], gate1, depol, flip1, slot2_wait[:len(q2)],
                      [tt(n) for n in q2], hit, stray_q)

    def _physics(self) -> int:
        """Run the Stim instances of every job finished this step; set their fidelity and final outcome."""
        groups: dict[str, list[_Job]] = {}
        for job in self._finished:
            if job.noise is not None and not job.outcome:
                groups.setdefault(job.noise.circuit.name, []).append(job)
        for jobs in groups.values():
            for lo in range(0, len(jobs), 4096):
                self._run_group(jobs[lo:lo + 4096])
        for job in self._finished:
            if not job.outcome:
                target = self._tenants[job.tenant].fidelity_target
                job.outcome = "success" if job.fidelity >= target else "low_fidelity"
            self.outcomes[job.outcome] += 1
        self.jobs_total += len(self._finished)
        return len(self._finished)

    def _run_group(self, jobs: list[_Job]) -> None:
        rng = self._mask_rng
        c = jobs[0].noise.circuit
        shots = np.array([j.shots for j in jobs])
        rep = lambda a: np.repeat(a, shots, axis=-1)  # noqa: E731 - per-job columns -> per-instance columns
        n_inst = int(shots.sum())

        def stacked(attr: str, *tail: int) -> np.ndarray:
            # (jobs, rows, *tail) from the jobs' lists, then jobs last: (rows, *tail, jobs).
            a = np.array([getattr(j.noise, attr) for j in jobs], dtype=float)
            return np.moveaxis(a.reshape(len(jobs), -1, *tail), 0, -1)

        masks = []
        # Slot 0: heralded-pair error, storage while waiting (own per shot), crosstalk and stray commands.
        pair = rep(stacked("pair", 3))                    # (n0, 3, I)
        x, z = circuits.pauli_masks(pair[:, 0], pair[:, 1], pair[:, 2], rng)
        wait0 = np.concatenate([j.noise.wait0 for j in jobs], axis=1)  # (n0, I)
        t0 = rep(stacked("t0", 2))                         # (n0, 2, I)
        if wait0.any():
            px, py, pz = physics.twirled_memory_paulis(wait0, t0[:, 0], t0[:, 1])
            sx, sz = circuits.pauli_masks(px, py, pz, rng)
            x ^= sx
            z ^= sz
        if c.name == "bell_pair":
            d = np.array([j.noise.extra["depol0"] for j in jobs])
            dx, dz = circuits.depolarize2_masks(rep(d)[None, :], rng)
            x ^= dx
            z ^= dz
            r = rep(np.array([j.noise.extra["ro_first"] for j in jobs]))
            rx, rz = circuits.pauli_masks(r * (1 - r), r * r, r * (1 - r), rng)
            x[0] ^= rx
            z[0] ^= rz
        xt = np.array([j.xtalk for j in jobs])
        if xt.any():
            hit = rep(stacked("hit0")) > 0                # (n0, I) bool
            event = rng.random(n_inst) < rep(xt)
            third = np.full(hit.shape, 1 / 3)
            cx, cz = circuits.pauli_masks(third, third, third, rng)
            x ^= cx & hit & event
            z ^= cz & hit & event
        sp = np.array([j.stray for j in jobs])
        if sp.any():
            q = rep(np.array([j.noise.stray0 for j in jobs]))
            hitq = rng.random(n_inst) < rep(sp)
            cols = np.nonzero(hitq & (q >= 0))[0]
            x[q[cols], cols] ^= True
        masks.append((x, z))
        if len(c.slots) > 1:
            g = rep(stacked("gate1", 3))                   # (n1, 3, I)
            x1, z1 = circuits.pauli_masks(g[:, 0], g[:, 1], g[:, 2], rng)
            if jobs[0].noise.depol1 is not None:
                d = rep(stacked("depol1"))                 # (n1/2, I)
                dx, dz = circuits.depolarize2_masks(d, rng)
                x1 ^= dx
                z1 ^= dz
            f = rep(stacked("flip1", 2))                   # (n1, 2, I)
            u = rng.random(f.shape)
            x1 ^= u[:, 0] < f[:, 0]
            z1 ^= u[:, 1] < f[:, 1]
            masks.append((x1, z1))
            w2 = rep(stacked("wait2"))                     # (n2, I)
            t2 = rep(stacked("t2", 2))
            px, py, pz = physics.twirled_memory_paulis(w2, t2[:, 0], t2[:, 1])
            masks.append(circuits.pauli_masks(px, py, pz, rng))
        self._stim_seed = (self._stim_seed * 6364136223846793005 + 1442695040888963407) % (2**62)
        res = circuits.run_instances(c, masks, seed=self._stim_seed)
        passed = np.add.reduceat(res.passed.astype(np.int64), np.concatenate([[0], np.cumsum(shots)[:-1]]))
        for j, p in zip(jobs, passed.tolist(), strict=True):
            j.passed = p
            j.fidelity = p / j.shots
            if j.kind == "canary":
                st = self._nodes[j.nodes[0]]
                st.canary_bits += p
                st.canary_n += j.shots

    # -- job ends -------------------------------------------------------------------------------------------------

    def _finish_at(self, job: _Job, t: int, outcome: str = "") -> None:
        job.outcome = outcome
        job.end = max(t, job.start)
        self._push(job.end, 0, job)

    def _done(self, job: _Job, t: int) -> bool:
        if job.cancelled:
            return False
        self._release(job)
        self._finished.append(job)
        return True

    def _fail(self, job: _Job, t: int, outcome: str) -> None:
        job.outcome = outcome
        job.end = t
        if not job.dispatch:
            job.dispatch = job.start = t
            job.wait_ns = t - job.arrival
        self._finished.append(job)

    # -- faults and calibrations ------------------------------------------------------------------------------

    def _fault(self, f: Fault, on: bool, t: int) -> None:
        kind = f.kind
        nodes = self._nodes
        if kind is FaultKind.F1:
            for s in self._segments[f.target]:
                s.f1 = f.magnitude if on else 1.0
            self._refresh_links()
        elif kind is FaultKind.F2:
            st = nodes[f.target]
            st.t2_div = f.magnitude if on else 1.0
            st.refresh()
            self._refresh_links()
        elif kind is FaultKind.F3:
            if f.target == "orchestrator":
                self._orch_extra_s = f.magnitude if on else 0.0
            else:
                for s in self._segments[f.target]:
                    s.f3_s = f.magnitude if on else 0.0
        elif kind is FaultKind.F4:
            st = nodes[f.target]
            st.ro_add = f.magnitude if on else 0.0
            st.refresh()
        elif kind is FaultKind.F5:
            st = nodes[f.target]
            st.up = not on
            self._avail_epoch += 1
            if on:
                for job in list(st.inflight):
                    # In flight on a node that vanished: the job is lost; its resources come back now.
                    job.cancelled = True
                    self._release(job)
                    job.outcome = "node_down"
                    job.end = t
                    job.noise = None
                    self._finished.append(job)
        elif kind is FaultKind.F6:
            for n in (f.target, *self.fleet.neighbours(f.target)):
                nodes[n].crosstalk = f.magnitude if on else 0.0
        elif kind is FaultKind.F7:
            for n in f.cycle() if f.nodes else (f.target, *self.fleet.neighbours(f.target)):
                st = nodes[n]
                if on:
                    # The cycle: each member's free comm qubits are held by a job waiting on the next member.
                    st.deadlocked = True
                    st.held += st.free
                    st.free = 0
                else:
                    st.deadlocked = False
                    st.free += st.held
                    st.held = 0
        elif kind is FaultKind.F8:
            st = nodes[f.target]
            st.stray_rate = f.magnitude if on else 0.0
            st.principal = (f.principal or "unknown") if on else ""

    def _calibration(self, payload: tuple[str, bool, int], t: int) -> None:
        node, starting, dur = payload
        st = self._nodes[node]
        self._avail_epoch += 1
        if starting:
            st.maintenance = True
            self._push(min(t + dur, self._end), 2, (node, False, dur))
            self._annotate("maintenance", t, min(t + dur, self._end), node=node,
                           attrs={"qfleet.maintenance.reason": "calibration"})
            return
        st.maintenance = False
        st.t2_walk, st.ro_walk = 1.0, 0.0
        for segs in self._segments.values():
            for s in segs:
                if node in (s.left, s.right):
                    s.eff_walk = 1.0
        st.refresh()
        self._refresh_links()
        st.calibrated_at = t
        self._metrics.add("qfleet.calibrations", labels(node=node))
        self._audit(node, "calibration-service", True, t)
        sid = self._span_id(t, node)
        self._spans.add(self._trace(("cal", node, t)), sid, None, SPAN_NAMES["calibration"], t - dur, t,
                        {"qfleet.calibration.duration_s": dur / NS}, node=node, run=self.run_id,
                        hardware=st.node.hardware_type)

    def _audit(self, node: str, principal: str, authorized: bool, t: int) -> None:
        self._metrics.add("qfleet.audit.events", labels(node=node) + (("qfleet.principal", principal),
                                                                     ("qfleet.authorized", authorized)))
        self._spans.add(self._trace(("cmd", node, principal, t)), self._span_id(t, principal), None,
                        SPAN_NAMES["command"], t, t + 1000,
                        {"qfleet.principal": principal, "qfleet.authorized": authorized,
                         "qfleet.command": "calibrate" if authorized else "x_gate"},
                        node=node, run=self.run_id, hardware=self._nodes[node].node.hardware_type,
                        error="" if authorized else f"unauthorized control command from {principal!r}")

    # -- per-step bookkeeping -------------------------------------------------------------------------------------

    def _tick(self, t0: int, t1: int) -> None:
        cal = self.fleet.calibration
        rng = self._drift_rng
        # Drift is slow (hours): step the walks every 5 simulated minutes, not every step.
        dt_h = 0.0
        if t1 - self._drift_at >= _DRIFT_NS or t1 >= self._end:
            dt_h = (t1 - self._drift_at) / NS / 3600
            self._drift_at = t1
        states = list(self._nodes.values())
        if dt_h > 0:
            # Calibration drift: bounded random walks, never better than calibrated (physics.md 2.1).
            lo = 1 - cal.max_degradation
            steps = rng.normal(0.0, 1.0, size=(len(states), 2)) * math.sqrt(dt_h)
            for st, (a, b) in zip(states, steps.tolist(), strict=True):
                st.t2_walk = min(1.0, max(lo, st.t2_walk + cal.t2_drift_per_sqrt_h * a))
                st.ro_walk = min(0.1, max(0.0, st.ro_walk + cal.readout_drift_per_sqrt_h * b))
                st.refresh()
            segs = self._all_segments
            for s, a in zip(segs, rng.normal(0.0, 1.0, size=len(segs)).tolist(), strict=True):
                s.eff_walk = min(1.0, max(lo, s.eff_walk + cal.efficiency_drift_per_sqrt_h * a * math.sqrt(dt_h)))
            self._refresh_links()
        # Unauthorized commands (F8) arrive as a Poisson stream on the targeted node.
        audit = self._audit_rng
        for st in states:
            if st.stray_rate > 0:
                # Poisson arrivals by exponential gaps.
                t = t0 + int(audit.expovariate(st.stray_rate) * NS)
                while t < t1:
                    self._audit(st.node.id, st.principal, False, t)
                    t += int(audit.expovariate(st.stray_rate) * NS)
        self._dispatch(t1)

    def _node_metrics(self, t1: int) -> None:
        m = self._metrics
        step_s = self.config.step_ns / NS
        for nid, st in self._nodes.items():
            n = st.node
            lab = labels(node=nid, hardware=n.hardware_type)
            if st.up:
                m.add("qfleet.node.heartbeats", lab, step_s / n.heartbeat_s)
            m.set("qfleet.node.up", lab, 1.0 if st.up else 0.0)
            if not st.up:
                continue  # a node that sends no heartbeat reports no device telemetry either
            m.set("qfleet.node.t1", lab, st.t1 if math.isfinite(st.t1) else 1e9)
            m.set("qfleet.node.t2", lab, st.t2)
            m.set("qfleet.node.gate_error", lab + (("qfleet.qubits", 1),), st.g1)
            m.set("qfleet.node.gate_error", lab + (("qfleet.qubits", 2),), st.g2)
            m.set("qfleet.node.readout_error", lab + (("qfleet.state", 0),), st.ro0)
            m.set("qfleet.node.readout_error", lab + (("qfleet.state", 1),), st.ro1)
            if st.canary_n:
                f = st.canary_bits / st.canary_n
                m.set("qfleet.measurement.variance", lab, f * (1 - f))
                st.canary_bits = st.canary_n = 0
        for lid, segs in self._segments.items():
            m.set("qfleet.link.heralding_probability", labels(link=lid), min(s.p for s in segs))
        now = t1
        for ten, q in zip(self._tenants, self._queues, strict=True):
            lab = labels(tenant=ten.id)
            m.set("qfleet.scheduler.queue.depth", lab, float(len(q)))
            m.set("qfleet.scheduler.queue.age", lab, (now - q[0].arrival) / NS if q else 0.0)

    # -- spans ------------------------------------------------------------------------------------------------

    def _trace(self, key: Any) -> str:
        return self.run_id + run_hash(repr(key))

    @staticmethod
    def _span_id(t: int, salt: Any) -> str:
        return run_hash(repr((t, salt)))

    def _annotate(self, what: str, start: int, end: int, *, node: str | None = None, link: str | None = None,
                  attrs: dict[str, Any]) -> None:
        self._spans.add(self._trace((what, node, link, start)), self._span_id(start, what), None, SPAN_NAMES[what],
                        start, max(end, start + 1), attrs, node=node, link=link, run=self.run_id,
                        hardware=self._nodes[node].node.hardware_type if node else None)

    def _ground_truth_spans(self) -> None:
        self._annotate("run", self._t0, self._end, attrs={
            "qfleet.fleet": self.fleet.name, "qfleet.seed": self.config.seed, "qfleet.faults": len(self.faults.faults),
            "qfleet.load": self.config.load})
        for f in self.faults.faults:
            start = self._t0 + f.start_ns
            if start >= self._end:
                continue
            is_link = f.kind in (FaultKind.F1,) or (f.kind is FaultKind.F3 and f.target != "orchestrator")
            attrs: dict[str, Any] = {"qfleet.fault.id": f.id, "qfleet.fault.kind": f.kind.value,
                                     "qfleet.fault.title": f.kind.title, "qfleet.fault.target": f.target,
                                     "qfleet.fault.magnitude": f.magnitude}
            if f.principal:
                attrs["qfleet.principal"] = f.principal
            node = None if is_link or f.target == "orchestrator" else f.target
            self._annotate("fault", start, min(start + f.duration_ns, self._end), node=node,
                           link=f.target if is_link else None, attrs=attrs)

    def _lab(self, **kv: Any) -> tuple[tuple[str, Any], ...]:
        key = tuple(kv.items())
        hit = self._labels.get(key)
        if hit is None:
            hit = self._labels[key] = labels(**kv)
        return hit

    def _job_telemetry(self, job: _Job) -> None:
        ten = self._tenants[job.tenant]
        trace = f"{self.run_id}{job.idx:016x}"
        jid = f"{self.run_id[:8]}-{job.idx}"
        run = self.run_id
        nodes = self._nodes
        first = job.nodes[0] if job.nodes else None
        hw = nodes[first].node.hardware_type if first else None
        outcome = job.outcome
        ok = outcome == "success"
        attrs: dict[str, Any] = {"qfleet.tenant": ten.id, "qfleet.job.kind": job.kind, "qfleet.outcome": outcome,
                                 "qfleet.shots": job.shots, "qfleet.fidelity.target": ten.fidelity_target,
                                 "qfleet.queue.wait_s": job.wait_ns / NS}
        if job.kind == "ghz":
            attrs["qfleet.ghz.nodes"] = job.k
        if job.nodes:
            # Every node the job touched, in route order (repeaters and swapping processors included).
            route = (job.segs[0].left, *(s.right for s in job.segs)) if job.segs else job.nodes
            attrs["qfleet.nodes"] = ",".join(route)
        if not math.isnan(job.fidelity):
            attrs["qfleet.fidelity"] = job.fidelity
        if job.failover:
            attrs["qfleet.failover"] = True
        sp = self._spans
        end = max(job.end, job.arrival + 1)
        sp.add(trace, "0000000000000001", None, SPAN_NAMES["job"], job.arrival, end, attrs, node=first, job=jid,
               run=run, hardware=hw, error="" if ok else outcome, kind=2)
        m = self._metrics
        m.add("qfleet.jobs", self._lab(tenant=ten.id, kind=job.kind, outcome=outcome, hardware=hw or ""))
        if job.orch_ns:
            m.observe("qfleet.orchestrator.latency", (), job.orch_ns / NS)
        seq = 1
        for i, s in enumerate(job.segs if job.gen_ns else ()):
            seq += 1
            okseg = job.seg_ok[i] if job.seg_ok else False
            lid = s.link.id
            gen = job.gen_ns[i] if job.gen_ns else 0.0
            shots_done = job.shots
            a = job.attempts[i] if job.attempts else 0
            sp.add(trace, f"{seq:016x}", "0000000000000001", SPAN_NAMES["entanglement"], job.start,
                   job.start + max(1, int(gen * shots_done)),
                   {"qfleet.attempts": a, "qfleet.pairs": shots_done if okseg else 0, "qfleet.latency_s": gen / NS},
                   node=s.left, link=lid, job=jid, run=run, hardware=nodes[s.left].node.hardware_type,
                   error="" if okseg else "entanglement_timeout")
            m.add("qfleet.entanglement.attempts", self._lab(link=lid), a)
            # One request per job and segment (all its shots' pairs); the pairs are counted separately.
            m.add("qfleet.entanglement.requests", self._lab(link=lid, hardware=nodes[s.left].node.hardware_type,
                                                            outcome="success" if okseg else "timeout"))
            if okseg:
                m.add("qfleet.entanglement.pairs", self._lab(link=lid), shots_done)
            if okseg:
                m.observe("qfleet.entanglement.latency", self._lab(hardware=nodes[s.left].node.hardware_type),
                          gen / NS)
        if job.segs and not job.window_ns:
            return  # the job never reached its swaps and feedforward
        if job.kind == "pair_delivery" and len(job.segs) > 1:
            for s in job.segs[:-1]:
                seq += 1
                rn = nodes[s.right].node
                sp.add(trace, f"{seq:016x}", "0000000000000001", SPAN_NAMES["swap"], job.ready,
                       job.ready + max(1, round((rn.gate_time_2q_s + rn.readout_time_s) * NS)),
                       {}, node=s.right, link=s.link.id, job=jid, run=run,
                       hardware=rn.hardware_type)
        if job.segs:
            seq += 1
            ff_end = job.ready + max(1, job.ff_ns)
            sp.add(trace, f"{seq:016x}", "0000000000000001", SPAN_NAMES["feedforward"], job.ready, ff_end,
                   {"qfleet.feedforward.latency_s": job.ff_ns / NS, "qfleet.coherence_window_s": job.window_ns / NS,
                    "qfleet.coherence_window.usage": job.usage}, node=job.nodes[0], link=job.segs[0].link.id,
                   job=jid, run=run, hardware=hw,
                   error="" if outcome != "coherence_window_exceeded" else "coherence_window_exceeded")
            m.observe("qfleet.feedforward.latency", self._lab(hardware=hw), job.ff_ns / NS)
            m.observe("qfleet.coherence_window.usage", self._lab(hardware=hw), min(job.usage, 1e6))
        if math.isnan(job.fidelity):
            return
        seq += 1
        last = job.nodes[-1]
        sp.add(trace, f"{seq:016x}", "0000000000000001", SPAN_NAMES["measurement"], max(job.start, end - 1000), end,
               {"qfleet.passed": job.passed, "qfleet.fidelity": job.fidelity},
               node=last, job=jid, run=run, hardware=nodes[last].node.hardware_type)
        m.observe("qfleet.job.fidelity", self._lab(hardware=hw, kind=job.kind), job.fidelity)
