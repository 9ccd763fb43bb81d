"""The control plane: job arrivals, placement on available nodes, comm-qubit and link reservations, and dispatch
by priority and weighted fair share, with backfilling past a blocked head of queue."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

import numpy as np

from qfleet.simulator.faults import FaultSchedule
from qfleet.simulator.fleet import Fleet, Link, Tenant
from qfleet.simulator.runstate import Job, NodeState, RunConfig, Segment
from qfleet.simulator.timeline import JobTimeline
from qfleet.units import NS

__all__ = ["Candidates", "ControlPlane"]

_SCAN = 64  # queued jobs a dispatch pass looks at per tenant (backfilling past a blocked head)
_MAX_CHAINS = 200_000
_T = TypeVar("_T")


@dataclass(slots=True)
class Candidates:
    """Where one tenant's jobs may run: its processors, direct links between them, far pairs, GHZ chains."""

    procs: list[str]
    links: list[Link]
    adj: dict[str, list[str]]
    far: list[tuple[str, str]]
    chains: dict[int, list[tuple[str, ...]]] = field(default_factory=dict)


def _near_pairs(fleet: Fleet, procs: Sequence[str]) -> list[tuple[str, str]]:
    """Every two processors within three links (repeaters and other processors swap on the way), in order."""
    pset = set(procs)
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
    return near


def _simple_paths(adj: dict[str, list[str]], k: int) -> list[tuple[str, ...]]:
    """Every simple path of ``k`` nodes over ``adj``, each once (not once per direction), at most _MAX_CHAINS."""
    out: list[tuple[str, ...]] = []

    def walk(path: list[str]) -> None:
        if len(out) >= _MAX_CHAINS:
            return
        if len(path) == k:
            if path[0] < path[-1]:
                out.append(tuple(path))
            return
        for nxt in adj.get(path[-1], ()):
            if nxt not in path:
                path.append(nxt)
                walk(path)
                path.pop()

    for start in sorted(adj):
        walk([start])
    return out


def _choose(py: random.Random, items: list[_T], bad: Callable[[_T], bool]) -> _T | None:
    """A uniform choice among ``items`` for which ``bad(item)`` is false, or None.

    Rejection sampling first: usually only a few nodes are unavailable, and filtering a long list for every job
    would dominate the control plane.
    """
    if not items:
        return None
    for _ in range(12):
        it = py.choice(items)
        if not bad(it):
            return it
    good = [it for it in items if not bad(it)]
    return py.choice(good) if good else None


class ControlPlane(JobTimeline):
    """Places, reserves, starts and releases jobs; queues what cannot start and times it out."""

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig) -> None:
        super().__init__(fleet, faults, config)
        self._avoid_cache: tuple[int, set[str]] = (-1, set())
        self._cand: list[Candidates] = []
        # A bit per node and per link: whether a queued job wants what an ended job freed is one integer AND.
        self._node_bit = {n.id: 1 << i for i, n in enumerate(fleet.nodes)}
        self._link_bit = {lk.id: 1 << (len(fleet.nodes) + i) for i, lk in enumerate(fleet.links)}
        # The bits of nodes with no free comm qubit and of busy links: a placed job whose ``want`` meets it
        # cannot start, which most start attempts in a busy fleet find out.
        self._full = 0
        for st in self._nodes.values():
            self._mark(st)

    def _mark(self, st: NodeState) -> None:
        """Keep ``st``'s bit of ``_full`` in step with its free comm qubits (call after changing them)."""
        if st.free > 0:
            self._full &= ~self._node_bit[st.node.id]
        else:
            self._full |= self._node_bit[st.node.id]

    def _build_candidates(self) -> None:
        """Each tenant's :class:`Candidates` (call once the links are refreshed: far pairs must be feasible)."""
        procs = sorted(n.id for n in self.fleet.processors())
        pset = set(procs)
        direct = [lk for lk in self.fleet.links if not lk.repeaters and lk.a in pset and lk.b in pset]
        near = _near_pairs(self.fleet, procs)
        self._cand = [self._tenant_candidates(t, procs, direct, near) for t in self._tenants]

    def _tenant_candidates(self, tenant: Tenant, procs: list[str], direct: list[Link],
                           near: list[tuple[str, str]]) -> Candidates:
        types = set(tenant.hardware_types)
        ok = {p for p in procs if not types or self.fleet.node(p).hardware_type in types}
        links = [lk for lk in direct if lk.a in ok and lk.b in ok]
        adj: dict[str, list[str]] = {}
        for lk in links:
            adj.setdefault(lk.a, []).append(lk.b)
            adj.setdefault(lk.b, []).append(lk.a)
        far = [(a, b) for a, b in near if a in ok and b in ok and self._feasible(self._route(a, b))]
        return Candidates(sorted(ok), links, {k: sorted(v) for k, v in adj.items()}, far)

    def _feasible(self, segs: tuple[Segment, ...]) -> bool:
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
        """Every feasible simple path of ``k`` processors over direct links (GHZ by chained fusion), computed once."""
        cand = self._cand[tenant]
        chains = cand.chains.get(k)
        if chains is None:
            chains = cand.chains[k] = [ch for ch in _simple_paths(cand.adj, k) if self._feasible(tuple(
                seg for x, y in zip(ch, ch[1:], strict=False) for seg in self._route(x, y)))]
        return chains

    def _arrivals(self, t0: int, t1: int) -> list[Job]:
        """The jobs arriving in ``[t0, t1)``: Poisson counts per tenant, uniform times, kinds by the tenant's mix."""
        out: list[Job] = []
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
            chosen = py.choices(kinds, [ten.mix[k] for k in kinds], k=n)
            shots = self.config.shots or ten.shots
            for t, kind in zip(times, chosen, strict=True):
                k = py.choice(ten.ghz_nodes) if kind == "ghz" else 2
                out.append(Job(self._job_idx, ti, kind, k, t, shots))
                self._job_idx += 1
        out.sort(key=lambda j: (j.arrival, j.idx))
        return out

    # -- placement and resources ------------------------------------------------------------------------------

    def _pick(self, job: Job, avoid: set[str]) -> bool:
        """Choose nodes and segments for ``job`` among available nodes; False when impossible."""
        cand = self._cand[job.tenant]
        py = self._py
        kind = job.kind
        if kind == "canary":
            node = _choose(py, cand.procs, avoid.__contains__)
            if node is None:
                return False
            job.nodes, job.segs = (node,), ()
            return True
        if kind in ("teleport", "teleported_cnot"):
            lk = _choose(py, cand.links, lambda lk: lk.a in avoid or lk.b in avoid)
            if lk is None:
                return False
            a, b = (lk.a, lk.b) if py.random() < 0.5 else (lk.b, lk.a)
            job.nodes, job.segs = (a, b), self._route(a, b)
            return True
        if kind == "ghz":
            chain = _choose(py, self._chains(job.tenant, job.k), lambda ch: not avoid.isdisjoint(ch))
            if chain is None:
                return False
            job.nodes = chain
            job.segs = tuple(seg for x, y in zip(chain, chain[1:], strict=False) for seg in self._route(x, y))
            return True
        pair = _choose(py, cand.far, lambda ab: ab[0] in avoid or ab[1] in avoid or any(
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

    def _placed(self, job: Job) -> None:
        need: dict[str, int] = {}
        for s in job.segs:
            need[s.left] = need.get(s.left, 0) + 1
            need[s.right] = need.get(s.right, 0) + 1
        if not job.segs:
            need[job.nodes[0]] = 0
        job.need = need
        job.links = frozenset(s.link.id for s in job.segs)
        job.epoch = self._avail_epoch
        mask = 0
        for n in need:
            mask |= self._node_bit[n]
        for lid in job.links:
            mask |= self._link_bit[lid]
        job.mask = mask
        job.want = mask if job.segs else 0  # a canary takes no comm qubit

    def _place(self, job: Job, now: int) -> bool | None:
        """Place (or fail over) ``job`` if it has no usable placement: None when placed, else whether it is done
        (True: failed now; False: placed on a node in maintenance, to start later)."""
        had = bool(job.nodes)
        if job.epoch != self._avail_epoch and job.nodes and any(not self._nodes[n].available for n in job.need):
            job.nodes = ()
        if job.nodes:
            return None
        # First placement, or fail-over away from a node that went down or into maintenance.
        avoid = self._avoid()
        if self._pick(job, avoid):
            job.failover = job.failover or had
            self._placed(job)
            return None
        down = {n for n, st in self._nodes.items() if not st.up}
        if down != avoid and self._pick(job, down):
            self._placed(job)
            job.epoch = -1  # placed on a node in maintenance: look again once it ends
            return False
        self._fail(job, now, "node_down" if down else "unschedulable")
        return True

    def _try_start(self, job: Job, now: int) -> bool:
        """Start ``job`` now if its nodes are placed and free; True when it left the queue (started or failed)."""
        if not job.nodes or job.epoch != self._avail_epoch:  # placed with availability unchanged since: as is
            done = self._place(job, now)
            if done is not None:
                return done
            job.epoch = self._avail_epoch
        nodes = self._nodes
        # Plain loops, not any() over generators: this runs for every start attempt.
        for n, c in job.need.items():
            if nodes[n].free < c:
                return False
        busy = self._link_busy
        for lid in job.links:
            if busy[lid]:
                return False
        for n, c in job.need.items():
            st = nodes[n]
            st.free -= c
            st.inflight.add(job)
            self._mark(st)
        for lid in job.links:
            self._link_busy[lid] = True
            self._full |= self._link_bit[lid]
        job.hold = job.need
        self._start(job, now)
        return True

    def _release(self, job: Job) -> None:
        """Hand back ``job``'s comm qubits (held instead while its node is deadlocked) and links."""
        for n, c in job.hold.items():
            st = self._nodes[n]
            st.inflight.discard(job)
            if st.deadlocked:
                st.held += c  # a deadlocked scheduler never hands these back until the cycle is broken
            else:
                st.free += c
                self._mark(st)
        for lid in job.links:
            self._link_busy[lid] = False
            self._full &= ~self._link_bit[lid]
        job.hold = {}

    def _dispatch(self, now: int, freed: Job | None = None) -> None:
        """Start what can start, highest priority first and fairly by weight within a priority.

        After a job ends (``freed``), only queued jobs that want one of its nodes or links are tried.
        """
        queues = self._queues
        # Only tenants with queued jobs have anything to time out or start (most job ends find every queue empty).
        waiting = [i for i, q in enumerate(queues) if q]
        if not waiting:
            return
        timeout = round(self.fleet.scheduler.queue_timeout_s * NS)
        tenants, served = self._tenants, self._served
        order = sorted(waiting, key=lambda i: (-tenants[i].priority, served[i] / tenants[i].weight))
        for i in order:
            q = queues[i]
            while q and now - q[0].arrival > timeout:
                late = q.popleft()
                self._fail(late, late.arrival + timeout, "queue_timeout")
            self._start_queued(i, now, freed)

    def _start_queued(self, tenant: int, now: int, freed: Job | None) -> None:
        """Try the first :data:`_SCAN` queued jobs of ``tenant`` (after ``freed``: only those that wanted it)."""
        q = self._queues[tenant]
        head = list(islice(q, _SCAN))
        # Starting a job changes no node's availability, so the epoch holds for the whole pass.
        epoch = self._avail_epoch
        fmask = -1 if freed is None else freed.mask  # -1 (nothing just freed): wanting what was freed is no filter
        for job in head:
            if job.nodes and job.epoch == epoch and (not job.mask & fmask or job.want & self._full):
                continue  # placed, and wants none of what was freed or something still taken: it cannot start
            if self._try_start(job, now):
                q.remove(job)  # near the head; a Job compares by identity
