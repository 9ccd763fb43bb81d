"""The pooled memory policy of :mod:`qfleet.simulator.chain`: link sessions, nested swaps, classical timing.

Any free memory on one side of a hop and any on the other form a generation session; all of a session's attempts
are drawn as one duration per attempt class, so nothing loops per attempt. A small discrete-event loop then runs
over heralds, swaps and classical arrivals (a few events per pair and hop) and returns the delivered pairs' times
as :class:`_Timings`, which :func:`qfleet.simulator.chain.run_chain` turns into Stim noise. Kept apart from the
chain's public values and its Stim sampling so that each module stays readable.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qfleet.simulator import physics
from qfleet.units import NS

if TYPE_CHECKING:
    from qfleet.simulator.chain import ChainConfig


@dataclass(frozen=True, slots=True)
class _Timings:
    """Per delivered pair (columns), integer ns: herald times R (links, B), swap starts (links-1, B), delivery."""

    herald: np.ndarray
    swap: np.ndarray
    delivery: np.ndarray
    ends: np.ndarray  # (2, B): when each end router holds the final pair (its last correction has arrived)


def _tree_partners(nodes: int) -> tuple[list[int], list[int]]:
    """Each interior router's swap partners (left, right): SeQUeNCe's nesting (resource_manager.py:222-230).

    A router halves the path (keeping even positions and the last) until its own position is odd; its neighbours
    on that path are the routers whose pairs it joins. Routers 1, 3, 5, ... join adjacent hops first.

    >>> _tree_partners(8)
    ([-1, 0, 0, 2, 0, 4, 4, -1], [-1, 2, 4, 4, 7, 6, 7, -1])
    """
    left, right = [-1] * nodes, [-1] * nodes
    for r in range(1, nodes - 1):
        path = list(range(nodes))
        while path.index(r) % 2 == 0:
            path = [n for i, n in enumerate(path) if i % 2 == 0 or i == len(path) - 1]
        i = path.index(r)
        left[r], right[r] = path[i - 1], path[i + 1]
    return left, right


@dataclass(frozen=True, slots=True)
class _LinkModel:
    """One hop's attempts as (duration, outcome) classes, integer ns: a session is attempts until a success."""

    round1_ns: int  # an attempt that fails in its first round
    round2_ns: int  # extra time of an attempt that reaches the second round
    fail1: float  # probability an attempt ends after round 1 without a pair
    fail2: float  # ... ends after round 2 without a pair
    success: float


def _link_model(config: ChainConfig, p: float, active: int = 1, at_ns: float = 0.0) -> _LinkModel:
    """The attempt classes of ``config.link_protocol`` for one of ``active`` sessions on a hop, starting at ``at_ns``.

    ``cycle``: every attempt lasts ``cycle_s`` and heralds with ``success_probability``. ``negotiated``: Barrett-Kok
    as SeQUeNCe runs it (barret_kok.py, generation_base.py): the requesting router's REQUEST (one hop of fibre, D),
    then per round the primary's NEGOTIATE (D), the ACK's lead time (D), the photon to the midpoint (L/2c) and the
    result back (the midpoint's channel delay, D/2), plus ``prep_time_s``; a round-1 miss ends the attempt.
    A detector dead time makes clicks of concurrent sessions block each other (:func:`_dead_time_loss`). ``p`` is
    ``config.success_probability()``.
    """
    if config.link_protocol == "cycle":
        lost = _dead_time_loss(config, active, math.sqrt(2 * p), 1.0, 0.0) if config.detector_dead_time_s else 0.0
        pe = p * (1 - lost) ** 2 if config.scheme == "double-click" else p * (1 - lost)
        return _LinkModel(round(config.cycle_s() * NS), 0, 1.0 - pe, 0.0, pe)
    d, prep = config.hop_km * physics.FIBRE_S_PER_KM * NS, config.prep_time_s * NS
    r1 = max(round(3 * d + d / 2 + d / 2 + prep), 1)
    r2 = round(2 * d + d / 2 + d / 2 + prep)
    a = math.sqrt(2 * p)  # one photon's click probability, p = a**2 / 2
    lost = 0.0
    for _ in range(100 if config.detector_dead_time_s and active > 1 else 1):
        ae = a * (1 - lost)
        # Round 1 from |+>|+>: one excitation (1/2) clicks with ae; two (1/4) pass on exactly one click, and with a
        # dead time two photons on the same detector (1/2) click once. Only one excitation can succeed.
        merged = ae * ae / 2 if config.detector_dead_time_s > 0 else 0.0
        pass1 = ae / 2 + (2 * ae * (1 - ae) + merged) / 4
        if not config.detector_dead_time_s:
            break
        mean_attempt = r1 + pass1 * r2
        rounds_per_slot = min((1 + pass1) * d / mean_attempt, 1.0) if d > 0 else 1.0
        # Rounds per attempt X = 1 + Bernoulli(pass1) over a duration r1 + r2 * Bernoulli: the renewal-reward
        # variance rate of a session's round count (rounds**2 per ns).
        rho = (1 + pass1) / mean_attempt
        drift_var = (1 - rho * r2) ** 2 * pass1 * (1 - pass1) / mean_attempt
        new = _dead_time_loss(config, active, ae, rounds_per_slot, 2 * drift_var * at_ns)
        if abs(new - lost) < 1e-9:
            lost = new
            break
        lost = new
    ae = a * (1 - lost)
    pe = ae * ae / 2
    return _LinkModel(r1, r2, 1.0 - pass1, pass1 - pe, pe)


def _dead_time_loss(config: ChainConfig, active: int, click: float, emit: float, drift_var: float) -> float:
    """Probability that a photon reaches a detector still dead from another session's click on the same hop.

    Lock-step model: the hop's sessions emit on a common grid (the classical messages' slot), each of the
    ``active - 1`` others in a given slot with probability ``emit``. Sessions start in consecutive emission bins
    ``prep_time_s`` apart, and every round moves a session one bin later, so two sessions in one slot are apart by
    their start bins plus the difference of their round counts (variance ``drift_var`` bins**2, grown since the
    start); equal bins are bumped one apart. A click (probability ``click`` per photon, on either of two detectors)
    kills its detector for ``detector_dead_time_s``: the next ``ceil(dead / prep) - 1`` bins.
    """
    others = active - 1
    if others <= 0:
        return 0.0
    spacing = config.prep_time_s
    reach = active if spacing <= 0 else max(0, math.ceil(round(config.detector_dead_time_s / spacing, 9)) - 1)
    # Offset of the other session minus ours: start bins distinct uniform over `active` (variance m(m+1)/6), plus
    # the round-count drift, as a discretised normal.
    var = active * (active + 1) / 6 + drift_var
    span = int(6 * math.sqrt(var)) + reach + 2
    w = [math.exp(-k * k / (2 * var)) for k in range(span + 1)]
    near = (sum(w[1:reach + 1]) + w[0] / 2) / (w[0] + 2 * sum(w[1:]))
    return 1.0 - (1.0 - emit * near * click / 2) ** others


class _Pool:
    """Pre-drawn session durations and swap outcomes, refilled in chunks (one rng call per chunk, not per use)."""

    def __init__(self, model: _LinkModel, swap_success: float, rng: np.random.Generator, chunk: int) -> None:
        self.model, self.swap_success, self.rng, self.chunk = model, swap_success, rng, max(chunk, 32)
        self.dur: list[int] = []
        self.ok: list[bool] = []

    def durations(self) -> list[int]:
        m = self.model
        k = self.rng.geometric(m.success, size=self.chunk).astype(np.int64)
        if m.round2_ns:
            fails1 = self.rng.binomial(k - 1, m.fail1 / (m.fail1 + m.fail2) if m.fail1 + m.fail2 > 0 else 1.0)
            dur = k * m.round1_ns + (k - fails1) * m.round2_ns
        else:
            dur = k * m.round1_ns
        self.dur = dur[::-1].tolist()
        self.chunk *= 2  # a pool that runs dry is a busy one
        return self.dur

    def outcomes(self) -> list[bool]:
        self.ok = (self.rng.random(self.chunk) < self.swap_success)[::-1].tolist()
        return self.ok


def _pooled_timings(config: ChainConfig, p: float, rng: np.random.Generator) -> _Timings:
    """Pooled memories: every hop generates on any free memory pair, routers swap the oldest ready pairs.

    A discrete-event loop over link successes, swaps and classical arrivals (a few per pair and hop, never one
    per attempt: each session's attempts are one pre-drawn duration). Returns the delivered pairs' times.
    """
    nodes, links, mem = config.nodes, config.links, config.memories
    window = round(config.duration_s * NS)
    hop = config.hop_km * physics.FIBRE_S_PER_KM * NS
    light_ns = round(hop)
    negotiated = config.link_protocol == "negotiated"
    model = _link_model(config, p)
    proc = round(config.processing_time_s * NS)
    cutoff = round(config.cutoff_s * NS) if math.isfinite(config.cutoff_s) else None
    left, right = _tree_partners(nodes)
    # Classical delay from router a to b (integer ns), and the negotiation before router r's swaps.
    dl = [[round(abs(a - b) * hop) for b in range(nodes)] for a in range(nodes)]
    span = [proc + (2 * max(dl[r][left[r]], dl[r][right[r]]) if config.swap_negotiation and 0 < r < nodes - 1
                    else 0) for r in range(nodes)]

    # The router that swaps pair (x, y), or -1 for the end-to-end pair.
    def swapper(x: int, y: int) -> int:
        if 0 < y < nodes - 1 and left[y] == x:
            return y
        if 0 < x < nodes - 1 and right[x] == y:
            return x
        return -1

    mean_session = (model.round1_ns + (1 - model.fail1) * model.round2_ns) / model.success
    chunk = int(2 * links * mem * window / max(mean_session, 1)) + 16
    dead = config.detector_dead_time_s > 0
    pools: dict[tuple[int, int], _Pool] = {}
    durs_by: dict[tuple[int, int], list[int]] = {}
    bucket_ns = max(window // _DRIFT_BUCKETS, 1)
    active = [0] * links
    pool = _Pool(model, config.swap_success, rng, chunk)
    oks = pool.outcomes()

    heap: list[tuple[int, int, int, Any]] = []
    seq = 0
    idle_a: list[list[int]] = [[] for _ in range(links)]  # free requesting memories: when each became free
    idle_b: list[int] = [0] * links
    queues: list[tuple[list[Any], list[Any]]] = [([], []) for _ in range(nodes)]
    delivered: list[tuple[Any, int, int]] = []
    req = round(hop) if negotiated else 0

    def start_session(h: int, sent: int) -> None:
        nonlocal seq
        key = (active[h] + 1, min(sent // bucket_ns, _DRIFT_BUCKETS - 1)) if dead else (1, 0)
        active[h] += 1
        durs = durs_by.get(key)
        if not durs:
            if key not in pools:
                pools[key] = _Pool(_link_model(config, p, key[0], (key[1] + 0.5) * bucket_ns), config.swap_success,
                                   rng, 64 if dead else chunk)
            durs = durs_by[key] = pools[key].durations()
        done = sent + durs.pop()
        if done <= window:
            seq += 1
            heapq.heappush(heap, (done, seq, 0, h))

    def free_a(h: int, t: int) -> None:
        if idle_b[h]:
            idle_b[h] -= 1
            start_session(h, t)
        else:
            idle_a[h].append(t)

    def free_b(h: int, t: int) -> None:
        waiting = idle_a[h]
        if not waiting:
            idle_b[h] += 1
            return
        if not req:
            waiting.pop(0)
            start_session(h, t)
            return
        # A free requester re-sends REQUEST every round trip (2D) until one arrives at a free memory.
        best, best_i = -1, 0
        for i, ta in enumerate(waiting):
            k = max(0, -(-(t - ta - req) // (2 * req)))
            sent = ta + 2 * k * req
            if best < 0 or sent < best:
                best, best_i = sent, i
        waiting.pop(best_i)
        start_session(h, best)

    def arrive(r: int, side: int, pair: Any, t: int) -> None:
        nonlocal seq
        if pair[2] < t:  # expired in transit: discarded on arrival, its memories freed now
            expire(r, side, pair, t)
            return
        other = queues[r][1 - side]
        if not other:
            queues[r][side].append(pair)
            if cutoff is not None and pair[2] <= window:
                seq += 1
                # After anything else at that instant: a pair is still usable at exactly cutoff_s of storage.
                heapq.heappush(heap, (pair[2], seq + _LAST, 5, (r, side, pair)))
            return
        partner = other.pop(0)
        lp, rp = (partner, pair) if side == 1 else (pair, partner)
        seq += 1
        heapq.heappush(heap, (t + span[r], seq, 1, (r, lp, rp)))

    def expire(r: int, side: int, pair: Any, t: int) -> None:
        # Both memories of a discarded pair are freed: here at r, and at its far end.
        x, y = (left[r], r) if side == 0 else (r, right[r])
        free_a(x, t)
        free_b(y - 1, t)

    def swap(r: int, lp: Any, rp: Any, t: int) -> None:
        nonlocal seq, oks
        free_b(r - 1, t)  # the swapping router's two memories are free at once
        free_a(r, t)
        x, y = left[r], right[r]
        if not oks:
            oks = pool.outcomes()
        if not oks.pop():
            push_free(0, x, t + dl[r][x])
            push_free(1, y - 1, t + dl[r][y])
            return
        pair = (lp[0] + rp[0], lp[1] + rp[1] + [(r, t)], min(lp[2], rp[2]))
        s = swapper(x, y)
        if s < 0:
            t0, t1 = t + dl[r][0], t + dl[r][nodes - 1]
            if t0 <= window:
                delivered.append((pair, t0, t1))
            push_free(0, 0, t0)
            push_free(1, links - 1, t1)
        else:
            seq += 1
            heapq.heappush(heap, (t + dl[r][s], seq, 2, (s, 0 if s == y else 1, pair)))

    def push_free(kind: int, h: int, t: int) -> None:
        nonlocal seq
        if t <= window:
            seq += 1
            heapq.heappush(heap, (t, seq, 3 + kind, h))

    for h in range(links):
        idle_b[h] = 0
        for _ in range(mem):
            start_session(h, 0)
    while heap:
        t, _, kind, payload = heapq.heappop(heap)
        if kind == 0:  # link h heralded: the pair (h, h+1) is ready at both routers
            h = payload
            active[h] -= 1
            pair: _Pair = ([(h, t)], [], t - light_ns + cutoff if cutoff is not None else _NEVER)
            if links == 1:
                delivered.append((pair, t, t))
                free_a(0, t)
                free_b(0, t)
                continue
            s = swapper(h, h + 1)
            arrive(s, 0 if s == h + 1 else 1, pair, t)
        elif kind == 1:
            r, lp, rp = payload
            swap(r, lp, rp, t)
        elif kind == 2:
            s, side, pair = payload
            arrive(s, side, pair, t)
        elif kind == 3:
            free_a(payload, t)
        elif kind == 4:
            free_b(payload, t)
        else:  # a queued pair reached the cut-off: discard it if it is still waiting
            r, side, pair = payload
            waiting = queues[r][side]
            for i, queued in enumerate(waiting):
                if queued is pair:
                    del waiting[i]
                    expire(r, side, pair, t)
                    break
    return _pack(config, delivered)


_NEVER = 1 << 62
# A stored pair: its hops' (hop, herald ns), its swaps' (router, swap ns), and when it expires (ns).
_Pair = tuple[list[tuple[int, int]], list[tuple[int, int]], int]
_LAST = 1 << 50  # sequence offset that orders an event after every other one at the same instant
# Sessions starting in the same 1/_DRIFT_BUCKETS of the window share one dead-time loss (its middle's drift).
_DRIFT_BUCKETS = 8


def _pack(config: ChainConfig, delivered: list[tuple[Any, int, int]]) -> _Timings:
    links, n = config.links, len(delivered)
    herald = np.zeros((links, n), dtype=np.int64)
    swaps = np.zeros((links - 1, n), dtype=np.int64)
    ends = np.zeros((2, n), dtype=np.int64)
    for j, ((hs, ss, _), t0, t1) in enumerate(sorted(delivered, key=lambda d: d[1])):
        for h, t in hs:
            herald[h, j] = t
        for r, t in ss:
            swaps[r - 1, j] = t
        ends[0, j], ends[1, j] = t0, t1
    return _Timings(herald=herald, swap=swaps, delivery=ends[0], ends=ends)
