"""What one fleet run holds: its configuration, the mutable state of nodes, fibre segments and jobs, and the
primitives every layer of the engine uses (the event heap, routes, link refresh, job ends).

The state classes are plain slotted classes, not dataclasses: the hot loop touches them millions of times.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qfleet.simulator import circuits, physics
from qfleet.simulator.faults import FaultSchedule
from qfleet.simulator.fleet import Fleet, Link, Node
from qfleet.simulator.policies import MAX_JOBS_PER_S, MAX_SHOTS
from qfleet.simulator.telemetry import run_hash
from qfleet.units import NS

__all__ = ["DEFAULT_START_NS", "MAX_RUN_NS", "OUTCOMES", "Job", "NodeState", "Noise", "RunConfig", "RunState",
           "Segment", "check_workload"]

#: 2026-01-01T00:00:00Z: the default simulated start, so that runs are reproducible by default.
DEFAULT_START_NS = 1_767_225_600 * NS
#: Every job outcome: ``success`` or why not.
OUTCOMES = ("success", "low_fidelity", "entanglement_timeout", "coherence_window_exceeded", "node_down",
            "queue_timeout", "unschedulable")

#: The longest simulated run: 90 days, three 30-day SLO windows. Calibrations and faults are scheduled for the
#: whole run up front, so an unbounded duration would never start.
MAX_RUN_NS = 90 * 86_400 * NS

# Kinds of heap event (ties at one time are broken by push order).
JOB_END, FAULT, CALIBRATION = 0, 1, 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """What to simulate besides the fleet and its faults.

    Args:
        duration_ns: simulated time to cover (> 0).
        start_ns: simulated wall time of the start (Unix ns).
        seed: seeds every random draw of the run.
        step_ns: simulated time per ``SimStep`` (telemetry flush and metric snapshot).
        load: multiplies every tenant's arrival rate (the fleet's total, times ``load``, is at most
            :data:`~qfleet.simulator.policies.MAX_JOBS_PER_S`).
        shots: overrides every tenant's shots per job (at most :data:`~qfleet.simulator.policies.MAX_SHOTS`).

    Raises:
        ValueError: a value out of range, naming it; ``duration_ns`` is at most :data:`MAX_RUN_NS` (90 days).
    """

    duration_ns: int
    start_ns: int = DEFAULT_START_NS
    seed: int = 7
    step_ns: int = 60 * NS
    load: float = 1.0
    shots: int | None = None

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} must be a positive integer number of nanoseconds"
                    for name in ("duration_ns", "start_ns", "step_ns") if not _positive_int(getattr(self, name))]
        if _positive_int(self.duration_ns) and self.duration_ns > MAX_RUN_NS:
            problems.append(f"duration_ns={self.duration_ns!r} is longer than the longest run, 90d "
                            "(three 30-day SLO windows); simulate at most 90d")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed={self.seed!r} must be an integer >= 0")
        if not (isinstance(self.load, (int, float)) and math.isfinite(self.load) and 0 <= self.load <= MAX_JOBS_PER_S):
            problems.append(f"load={self.load!r} must be a number in [0, {MAX_JOBS_PER_S:g}] "
                            "(1 = the tenants' own rates)")
        if self.shots is not None and not (_positive_int(self.shots) and self.shots <= MAX_SHOTS):
            problems.append(f"shots={self.shots!r} must be an integer in [1, {MAX_SHOTS:_}] or None (the tenants' own)")
        if problems:
            raise ValueError("RunConfig: " + "; ".join(problems))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by value through the constructor: compiled by mypyc (setup.py), a frozen class refuses the
        # field-by-field restore that pickle's default does. Every dataclass field, so that none is left behind.
        return (_run_config, ({f: getattr(self, f) for f in self.__dataclass_fields__},))


def _run_config(fields: dict[str, Any]) -> RunConfig:
    return RunConfig(**fields)  # keyword-only fields


def check_workload(fleet: Fleet, config: RunConfig) -> None:
    """Refuse a run whose job arrivals (every tenant's rate times ``config.load``) exceed
    :data:`~qfleet.simulator.policies.MAX_JOBS_PER_S`: its steps would not fit in memory.

    Raises:
        ValueError: naming the load, the fleet's rate and the largest load that fits.
    """
    base = sum(t.rate_per_s for t in fleet.tenants)
    if base * config.load > MAX_JOBS_PER_S:
        raise ValueError(f"fleet {fleet.name} asks {base:g} jobs/s; times load {config.load:g} that is "
                         f"{base * config.load:.3g} jobs/s, above the simulator's maximum of {MAX_JOBS_PER_S:g}; "
                         f"use a load of at most {MAX_JOBS_PER_S / base:.6g}")


def _positive_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


class NodeState:
    """One node now: availability, free comm qubits, drift walks, active fault effects, derived T1/T2/errors."""

    __slots__ = ("node", "up", "maintenance", "maint_until", "free", "held", "t2_walk", "ro_walk", "t1_div",
                 "t2_div", "g1_mul", "g2_mul", "ro_add", "crosstalk", "stray_rate", "principal", "deadlocked", "t1",
                 "t2", "ro0", "ro1", "ro", "g1", "g2", "canary_bits", "canary_n", "inflight")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.up = True
        self.maintenance = False
        self.maint_until = 0  # end of the latest maintenance window (windows may overlap after an outage)
        self.free = node.comm_qubits
        self.held = 0  # comm qubits frozen by a scheduler deadlock (F7)
        self.t2_walk = 1.0
        self.ro_walk = 0.0
        # Fault effects (F2 per platform, F4): T1 and T2 divisors, gate-error multipliers, readout increase.
        self.t1_div = 1.0
        self.t2_div = 1.0
        self.g1_mul = 1.0
        self.g2_mul = 1.0
        self.ro_add = 0.0
        self.crosstalk = 0.0
        self.stray_rate = 0.0
        self.principal = ""
        self.deadlocked = False
        self.canary_bits = 0  # passed canary shots this step
        self.canary_n = 0
        self.inflight: set[Job] = set()
        self.refresh()

    def refresh(self) -> None:
        """Recompute the derived parameters from the profile, the drift walks and the fault effects."""
        n = self.node
        self.t1 = n.t1_s / self.t1_div
        # Pure dephasing cannot make T2 exceed 2 T1: a T1 collapse drags T2 down with it.
        self.t2 = min(n.t2_s * self.t2_walk / self.t2_div, 2 * self.t1)
        self.ro0 = min(0.5, n.readout_error_0 + self.ro_walk + self.ro_add)
        self.ro1 = min(0.5, n.readout_error_1 + self.ro_walk + self.ro_add)
        # Checks read both eigenstates equally often, so the symmetric flip is the mean of the two.
        self.ro = (self.ro0 + self.ro1) / 2
        # Capped at the fully depolarising values (3/4 for one qubit, 15/16 for two).
        self.g1 = min(0.75, n.gate_error_1q * self.g1_mul)
        self.g2 = min(0.9375, n.gate_error_2q * self.g2_mul)

    @property
    def available(self) -> bool:
        """Up and not in a maintenance window."""
        return self.up and not self.maintenance


class Segment:
    """One heralded fibre segment: a whole link, or the part of one between two repeaters."""

    __slots__ = ("link", "index", "left", "right", "km", "p0", "cycle_ns", "pair_pauli", "q", "p", "cutoff_ns",
                 "eff_walk", "f1", "f2_eff", "vis_factor", "f3_s", "fid0")

    def __init__(self, link: Link, index: int, left: str, right: str) -> None:
        self.link = link
        self.index = index
        self.left = left
        self.right = right
        self.km = link.segment_km
        self.p0, self.pair_pauli, self.fid0 = physics.link_pair(length_km=self.km, **_pair_physics(link))
        self.cycle_ns = max(1, round(physics.attempt_cycle_s(prep_time_s=link.prep_time_s, length_km=self.km) * NS))
        self.eff_walk = 1.0
        self.f1 = 1.0
        self.f2_eff = 1.0  # heralding factor from an NV end's optical-interface fault (F2)
        self.vis_factor = 1.0
        self.f3_s = 0.0
        self.q = self.p = 0.0
        self.cutoff_ns = 0

    def set_visibility_factor(self, factor: float) -> None:
        """Scale the link's two-photon visibility by ``factor`` (1 = calibrated) and recompute the pair's error.

        ``fid0`` stays the calibrated fidelity: the scheduler's cut-offs know only what calibration measured.
        """
        self.vis_factor = factor
        link = self.link
        physics_now = _pair_physics(link)
        physics_now["visibility"] = link.visibility * factor
        _, self.pair_pauli, _ = physics.link_pair(length_km=self.km, **physics_now)


def _pair_physics(link: Link) -> dict[str, Any]:
    """The :func:`~qfleet.simulator.physics.link_pair` arguments a link supplies (all but the segment length)."""
    return {name: getattr(link, name) for name in (
        "scheme", "attenuation_db_per_km", "emission_efficiency", "collection_efficiency", "detector_efficiency",
        "conversion_efficiency", "dark_count_probability", "visibility", "bright_state_population")}


@dataclass(slots=True)
class Noise:
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


class Job:
    """One job from arrival to outcome: placement, resources held, timing, noise and measured fidelity."""

    __slots__ = ("idx", "tenant", "kind", "k", "arrival", "nodes", "segs", "dispatch", "start", "end", "outcome",
                 "shots", "orch_ns", "ff_ns", "window_ns", "usage", "attempts", "gen_ns", "regens", "ready",
                 "noise", "fidelity", "passed", "failover", "seg_ok", "cancelled", "hold", "stray", "xtalk",
                 "wait_ns", "need", "links", "epoch", "mask", "want")

    def __init__(self, idx: int, tenant: int, kind: str, k: int, arrival: int, shots: int) -> None:
        self.idx = idx
        self.tenant = tenant
        self.kind = kind
        self.k = k
        self.arrival = arrival
        self.shots = shots
        self.nodes: tuple[str, ...] = ()
        self.segs: tuple[Segment, ...] = ()
        self.dispatch = self.start = self.end = 0
        self.outcome = ""
        self.orch_ns = self.ff_ns = self.window_ns = self.wait_ns = 0
        self.usage = 0.0
        self.attempts: list[int] = []
        self.gen_ns: list[float] = []
        self.regens = 0
        self.ready = 0
        self.noise: Noise | None = None
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
        self.mask = 0  # one bit per node in ``need`` and per link in ``links`` (ControlPlane._placed)
        self.want = 0  # the bits of ``mask`` the job needs a free comm qubit or an idle link at


class RunState:
    """The shared state of one seeded run and the primitives every layer uses.

    Args:
        fleet: the validated fleet.
        faults: the fault schedule (offsets from the run start); ``None`` for none.
        config: duration, start, seed, step, load.
    """

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig) -> None:
        check_workload(fleet, config)
        self.fleet = fleet
        self.faults = faults or FaultSchedule(())
        self.config = config
        self.run_id = run_hash(repr((fleet.to_dict(), self.faults.to_dict(), config.duration_ns, config.start_ns,
                                     config.seed, config.load, config.shots)))
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
        self._nodes = {n.id: NodeState(n) for n in fleet.nodes}
        self._segments: dict[str, tuple[Segment, ...]] = {}
        for link in fleet.links:
            chain = (link.a, *link.repeaters, link.b)
            self._segments[link.id] = tuple(Segment(link, i, chain[i], chain[i + 1]) for i in range(len(chain) - 1))
        self._all_segments = [s for ss in self._segments.values() for s in ss]
        self._memories = np.array([float(s.link.memories) for s in self._all_segments])
        self._link_busy: dict[str, bool] = {lk.id: False for lk in fleet.links}
        self._tenants = fleet.tenants
        self._queues: list[deque[Job]] = [deque() for _ in fleet.tenants]
        self._served = [0.0] * len(fleet.tenants)
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._orch_free = self._t0
        self._orch_extra_s = 0.0
        self._drift_at = self._t0
        self._avail_epoch = 0  # bumped whenever a node's availability changes
        self._link_epoch = 0  # bumped whenever link parameters change
        self._finished: list[Job] = []
        self._job_idx = 0
        self._paths: dict[tuple[str, str], tuple[Segment, ...]] = {}

    def _push(self, t: int, kind: int, payload: Any) -> None:
        """Schedule an event (:data:`JOB_END`, :data:`FAULT` or :data:`CALIBRATION`) at simulated time ``t``."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def _route(self, a: str, b: str) -> tuple[Segment, ...]:
        """The fibre segments from ``a`` to ``b`` along the fleet's fewest-hop path, oriented, cached."""
        key = (a, b)
        segs = self._paths.get(key)
        if segs is None:
            out: list[Segment] = []
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

    def _refresh_links(self) -> None:
        """Recompute every segment's heralding success and coherence cut-off from the current parameters."""
        self._link_epoch += 1
        segs_all = self._all_segments
        p = np.minimum(1.0, np.array([s.p0 * s.eff_walk * s.f1 * s.f2_eff for s in segs_all]))
        q = physics.multiplexed_success(p, self._memories).tolist()
        for s, ps, qs in zip(segs_all, p.tolist(), q, strict=True):
            s.p = ps
            s.q = qs
        for segs in self._segments.values():
            for s in segs:
                a, b = self._nodes[s.left], self._nodes[s.right]
                # Both halves dephase: the pair sees 1/T2a + 1/T2b, i.e. e^{-2t/T2pair}.
                t2pair = physics.pair_dephasing_time_s(a.t2, b.t2)
                cut = physics.coherence_cutoff_s(max(0.25, s.fid0), self.fleet.scheduler.cutoff_fidelity, t2pair)
                s.cutoff_ns = int(min(cut, 1e6) * NS)

    def _finish_at(self, job: Job, t: int, outcome: str = "") -> None:
        """End ``job`` at ``t`` (not before its start); an empty outcome is decided by its physics."""
        job.outcome = outcome
        job.end = max(t, job.start)
        self._push(job.end, JOB_END, job)

    def _fail(self, job: Job, t: int, outcome: str) -> None:
        """``job`` ends at ``t`` without running (queue timeout, no placement, lost node)."""
        job.outcome = outcome
        job.end = t
        if not job.dispatch:
            job.dispatch = job.start = t
            job.wait_ns = t - job.arrival
        self._finished.append(job)
