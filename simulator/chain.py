"""Repeater-chain workload: end-to-end pairs over a linear chain of routers, timed in numpy, verified in Stim.

The chain has ``nodes`` routers and ``nodes - 1`` hops; each hop is heralded at a midpoint station (physics.md 1.1).
Each router reserves ``memories`` memories per side. Two memory policies share the link physics and the fidelity
sampling:

**pooled** (default). Any free memory on one side of a hop and any on the other form a generation session: attempts
until a herald, all of a session's attempts drawn as one duration (geometric in the attempts, per attempt class),
so nothing loops per attempt. A heralded pair is ready at both routers. Interior router r swaps pairs on its two
designated neighbours (SeQUeNCe's binary nesting: routers 1, 3, 5, ... join adjacent hops, then every other one,
see ``chain_pooled._tree_partners``), pairing the oldest ready pair of each side as soon as both exist; with
``swap_negotiation`` it first waits a REQUEST/RESPONSE round trip to the farther end. Its two memories are freed at
the swap and start generating again; the outcome reaches each end at 5 us/km, and the end-to-end pair is delivered
when it reaches router 0 (the far end frees its memory when the outcome reaches it). A swap fails with probability
``1 - swap_success`` (both ends' memories are freed on the news); pairs stored past ``cutoff_s`` are discarded.
``link_protocol="negotiated"`` times attempts as SeQUeNCe's Barrett-Kok does: a REQUEST, then two rounds of
NEGOTIATE / ACK / photon / result, a miss in round 1 ending the attempt early; a free requester polls every round
trip until the other side has a free memory. With ``detector_dead_time_s`` concurrent sessions of a hop block each
other's clicks (lock-step model). One small discrete-event loop over heralds, swaps and classical arrivals, a few
events per pair and hop.

**lanes**. Memory k of every hop forms lane k. A lane runs rounds:

1. At the round start every hop of the lane makes geometric attempts (success ``p`` per attempt, one attempt every
   ``prep_time_s + hop_km * 5 us/km``): hop h's pair is heralded at R_h = start + K_h * cycle, K_h ~ Geometric(p).
   The memory qubits have been entangled since the successful emission, L/c before the herald.
2. Each interior router swaps as soon as both of its pairs are heralded, then sends its two outcome bits to both
   ends (5 us/km). Swaps commute, so no ordering between routers is needed (Pauli-frame corrections).
3. The end-to-end pair is delivered when the last outcome reaches the farther end; the lane's memories are then
   freed and the next round starts. Freeing on delivery is what lets the memory count limit throughput.

Each round's duration depends only on that round's draws, so lane timelines are one ``cumsum`` over rounds.

Times are integer nanoseconds. Every qubit's storage time (emission to swap for repeater qubits, emission to the
arrival of its last correction for end qubits, classical transit included, physics.md 1.3) sets its own
Pauli-twirled T1/T2 noise. Each delivered pair is one instance of :func:`simulator.circuits.swap_chain` (swaps
commute, so one circuit serves any nesting) in a FlipSimulator batch with its own masks: Werner (1-F)/3 per link,
storage at the repeaters (slot 0), gate depolarising and readout flips at the Bell measurements (slot 1), end-qubit
storage (slot 2). Its fidelity is sampled, not computed; ``predicted_fidelity`` is the closed form for the same
per-pair noise and ``werner_fidelity`` the Werner swap algebra with no storage at all (physics.md 1.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qfleet.simulator import circuits, noise_masks, physics
from qfleet.simulator.chain_pooled import _link_model, _pooled_timings, _Timings
from qfleet.units import NS

__all__ = ["ChainConfig", "ChainError", "ChainResult", "run_chain"]

_MAX_NODES = 1000
_MAX_MEMORIES = 10_000
# Above this many expected deliveries the per-pair arrays (and the Stim batch) stop fitting comfortably in memory.
_MAX_EXPECTED_PAIRS = 20_000_000
_MAX_DRAWS_PER_CHUNK = 1 << 22
_MAX_MEAN_PAIR_S = 1e6

MEMORY_POLICIES: tuple[str, ...] = ("pooled", "lanes")
LINK_PROTOCOLS: tuple[str, ...] = ("cycle", "negotiated")
# Fields the lanes policy does not model, with the defaults it accepts.
_POOLED_ONLY: dict[str, object] = {"link_protocol": "cycle", "swap_negotiation": False, "swap_success": 1.0,
                                   "cutoff_s": math.inf, "detector_dead_time_s": 0.0}


class ChainError(ValueError):
    """A repeater-chain configuration or result value is invalid."""


def _int(name: str, value: object, lo: int, hi: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ChainError(f"{name}={value!r} must be an integer in [{lo}, {hi}] ({what})")


def _real(name: str, value: object, lo: float, hi: float, what: str, *, lo_open: bool = False,
          allow_inf: bool = False) -> None:
    v = float(value) if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool) else math.nan
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < lo or v > hi or (lo_open and v <= lo):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ChainError(f"{name}={value!r} must be a number in {interval}: {what}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainConfig:
    """One repeater-chain run: the chain, its hardware and the simulated window.

    Defaults follow SeQUeNCe 0.8.5's hardware defaults where it has one (memory efficiency 1, detector efficiency
    0.9, ideal gates and readout) and physics.md 4.1 for the rest (10 us preparation per attempt).

    Attributes:
        nodes: Routers in the chain (>= 2); there are ``nodes - 1`` hops.
        hop_km: Fibre length of each hop; the heralding station sits at the midpoint.
        attenuation_db_per_km: Fibre loss (0.2 dB/km for telecom fibre at 1550 nm).
        raw_fidelity: Werner fidelity of a freshly heralded link pair.
        memories: Memories per router and side reserved for the chain: the number of lanes.
        duration_s: Simulated window; pairs delivered within it are counted.
        coherence_time_s: Memory T2 in seconds (pure dephasing when ``t1_s`` is inf); ``math.inf`` for none.
        t1_s: Memory T1 in seconds (amplitude damping, Pauli-twirled); needs ``coherence_time_s <= 2 * t1_s``.
        scheme: Heralding scheme, ``"double-click"`` (Barrett-Kok) or ``"single-click"``.
        emission_efficiency: Probability that the memory emits a photon when excited.
        collection_efficiency: Probability that the emitted photon enters the fibre.
        detector_efficiency: Probability that the station's detector clicks on an arriving photon.
        bright_state_population: Single-click alpha; ignored by double-click.
        prep_time_s: Local time per attempt (state preparation, emission) on top of the light travel L/c.
        gate_error: DEPOLARIZE2 probability of each swap's two-qubit gate (0 like the peer).
        readout_error: Flip probability of each Bell-measurement bit (0 like the peer).
        processing_time_s: Time from both pairs heralded to the swap outcome leaving the router.
        memory_policy: ``"pooled"`` (any free memory pair of a hop generates; a router swaps its oldest ready pairs
            and frees its memories at the swap) or ``"lanes"`` (memory k of every hop, held until delivery).
        link_protocol: ``"cycle"`` (back-to-back attempts of ``cycle_s``) or ``"negotiated"`` (Barrett-Kok's two
            rounds with the resource manager's REQUEST and a NEGOTIATE/ACK per round, classical messages at
            5 us/km, as SeQUeNCe runs it); pooled only.
        swap_negotiation: Before swapping, pair with both far ends by a REQUEST/RESPONSE round trip (SeQUeNCe's
            resource manager); pooled only.
        swap_success: Probability that a swap succeeds; a failed swap frees the far ends' memories when its
            result arrives. Pooled only.
        cutoff_s: A stored pair whose oldest qubit has been stored (since its emission) longer than this is
            discarded and its memories freed; ``math.inf`` for none. Pooled only.
        detector_dead_time_s: After a click a midpoint detector misses photons for this long; sessions of a hop
            running concurrently then block each other's clicks (lock-step model, see ``chain_pooled._dead_time_loss``).
            Pooled only.
    """

    nodes: int
    hop_km: float = 10.0
    attenuation_db_per_km: float = 0.2
    raw_fidelity: float = 0.99
    memories: int = 5
    duration_s: float = 0.5
    coherence_time_s: float = 1.0
    t1_s: float = math.inf
    scheme: str = "double-click"
    emission_efficiency: float = 1.0
    collection_efficiency: float = 1.0
    detector_efficiency: float = 0.9
    bright_state_population: float = 0.1
    prep_time_s: float = 10e-6
    gate_error: float = 0.0
    readout_error: float = 0.0
    processing_time_s: float = 0.0
    memory_policy: str = "pooled"
    link_protocol: str = "cycle"
    swap_negotiation: bool = False
    swap_success: float = 1.0
    cutoff_s: float = math.inf
    detector_dead_time_s: float = 0.0

    def __post_init__(self) -> None:
        _int("nodes", self.nodes, 2, _MAX_NODES, "routers in the chain, e.g. 4")
        _int("memories", self.memories, 1, _MAX_MEMORIES, "memories per router and side, e.g. 5")
        _real("hop_km", self.hop_km, 0.0, 1e5, "fibre km per hop, e.g. 10.0")
        _real("attenuation_db_per_km", self.attenuation_db_per_km, 0.0, 100.0, "fibre loss, e.g. 0.2")
        _real("raw_fidelity", self.raw_fidelity, 0.25, 1.0, "a Werner fidelity, e.g. 0.99")
        _real("duration_s", self.duration_s, 0.0, 1e6, "the simulated window, e.g. 0.5", lo_open=True)
        _real("coherence_time_s", self.coherence_time_s, 0.0, math.inf, "memory T2, e.g. 1.0 (math.inf for "
              "none)", lo_open=True, allow_inf=True)
        _real("t1_s", self.t1_s, 0.0, math.inf, "memory T1, e.g. math.inf (none)", lo_open=True, allow_inf=True)
        if self.coherence_time_s > 2 * self.t1_s:
            raise ChainError(
                f"coherence_time_s={self.coherence_time_s!r} exceeds 2 * t1_s = {2 * self.t1_s!r}: physically "
                "T2 <= 2 T1; lower coherence_time_s or raise t1_s"
            )
        if self.scheme not in physics.SCHEMES:
            raise ChainError(f"scheme={self.scheme!r} is unknown; use one of {', '.join(physics.SCHEMES)}")
        for name in ("emission_efficiency", "collection_efficiency", "detector_efficiency"):
            _real(name, getattr(self, name), 0.0, 1.0, "an efficiency, e.g. 0.9", lo_open=True)
        _real("bright_state_population", self.bright_state_population, 0.0, 1.0, "single-click alpha, e.g. 0.1",
              lo_open=True)
        _real("prep_time_s", self.prep_time_s, 0.0, 1e3, "seconds per attempt besides light travel, e.g. 10e-6")
        _real("gate_error", self.gate_error, 0.0, 15 / 16, "a DEPOLARIZE2 probability, e.g. 0.01")
        _real("readout_error", self.readout_error, 0.0, 0.5, "a bit-flip probability, e.g. 0.01")
        _real("processing_time_s", self.processing_time_s, 0.0, 1e3, "seconds per swap, e.g. 0.0")
        if self.memory_policy not in MEMORY_POLICIES:
            raise ChainError(f"memory_policy={self.memory_policy!r} is unknown; use one of "
                             f"{', '.join(MEMORY_POLICIES)}")
        if self.link_protocol not in LINK_PROTOCOLS:
            raise ChainError(f"link_protocol={self.link_protocol!r} is unknown; use one of "
                             f"{', '.join(LINK_PROTOCOLS)}")
        if not isinstance(self.swap_negotiation, bool):
            raise ChainError(f"swap_negotiation={self.swap_negotiation!r} must be True or False")
        _real("swap_success", self.swap_success, 0.0, 1.0, "a probability, e.g. 1.0", lo_open=True)
        _real("cutoff_s", self.cutoff_s, 0.0, math.inf, "seconds a pair may be stored, e.g. 0.01 (math.inf for "
              "none)", lo_open=True, allow_inf=True)
        _real("detector_dead_time_s", self.detector_dead_time_s, 0.0, 1.0, "seconds, e.g. 40e-9")
        if self.memory_policy == "lanes":
            for name, default in _POOLED_ONLY.items():
                if getattr(self, name) != default:
                    raise ChainError(f"{name}={getattr(self, name)!r} needs memory_policy='pooled' (lanes hold "
                                     f"their memories until delivery); drop it or use the pooled policy")
        if self.link_protocol == "negotiated" and self.scheme != "double-click":
            raise ChainError(f"link_protocol='negotiated' with scheme={self.scheme!r}: the negotiated protocol "
                             "is Barrett-Kok's two rounds; use scheme='double-click' or link_protocol='cycle'")
        if _cycle_ns(self) < 1:
            raise ChainError(
                f"prep_time_s={self.prep_time_s!r} with hop_km={self.hop_km!r} gives an attempt cycle under 1 ns; "
                "raise prep_time_s (e.g. 10e-6) or hop_km"
            )
        p = self.success_probability()
        # Integer-ns attempt counts times cycles must stay far inside int64 (9.2e18 ns ~ 292 years).
        if p <= 0.0 or self.cycle_s() / p > _MAX_MEAN_PAIR_S:
            raise ChainError(
                f"hop_km={self.hop_km!r} with attenuation_db_per_km={self.attenuation_db_per_km!r} gives a "
                f"heralding probability of {p:.3g} per attempt, over {_MAX_MEAN_PAIR_S:g} s per pair on average; "
                "shorten the hops or lower the loss"
            )
        expected = self.memories * self.duration_s * p / (_cycle_ns(self) / NS)
        if expected > _MAX_EXPECTED_PAIRS:
            raise ChainError(
                f"duration_s={self.duration_s!r} with memories={self.memories!r} would deliver ~{expected:.3g} "
                f"pairs, above the {_MAX_EXPECTED_PAIRS:,} this in-memory model handles; shorten duration_s"
            )

    @property
    def links(self) -> int:
        """Number of hops, ``nodes - 1``."""
        return self.nodes - 1

    def success_probability(self) -> float:
        """Heralding probability of one attempt on one hop (:func:`simulator.physics.heralding_probability`)."""
        return float(physics.heralding_probability(
            scheme=self.scheme,
            length_km=self.hop_km,
            attenuation_db_per_km=self.attenuation_db_per_km,
            emission_efficiency=self.emission_efficiency,
            collection_efficiency=self.collection_efficiency,
            detector_efficiency=self.detector_efficiency,
            bright_state_population=self.bright_state_population,
        ))

    def cycle_s(self) -> float:
        """Duration of one attempt, ``prep_time_s + hop_km * 5 us/km`` (:func:`simulator.physics.attempt_cycle_s`).

        >>> round(ChainConfig(nodes=2).cycle_s(), 9)
        6e-05
        """
        return float(physics.attempt_cycle_s(prep_time_s=self.prep_time_s, length_km=self.hop_km))


def _cycle_ns(config: ChainConfig) -> int:
    return round(config.cycle_s() * NS)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


@dataclass(frozen=True, slots=True)
class ChainResult:
    """What one :func:`run_chain` delivered.

    Fidelities are ``nan`` when no pair was delivered.

    Attributes:
        nodes: Routers in the chain.
        simulated_s: The simulated window.
        pairs_delivered: End-to-end pairs delivered within the window.
        mean_fidelity: Stim-sampled mean fidelity of the delivered pairs (one instance per pair).
        fidelity_stderr: Binomial standard error of ``mean_fidelity``.
        predicted_fidelity: Closed-form mean fidelity for the same pairs: Werner links, swap algebra, gate and
            readout errors and each qubit's own storage decoherence.
        werner_fidelity: Werner swap algebra alone, with no storage (physics.md 1.4).
        success_probability: Heralding probability per attempt per hop.
        attempt_cycle_s: Duration of one attempt.
        mean_end_wait_s: Mean storage time of the end qubits, emission to delivery.
    """

    nodes: int
    simulated_s: float
    pairs_delivered: int
    mean_fidelity: float
    fidelity_stderr: float
    predicted_fidelity: float
    werner_fidelity: float
    success_probability: float
    attempt_cycle_s: float
    mean_end_wait_s: float

    def __post_init__(self) -> None:
        _int("nodes", self.nodes, 2, _MAX_NODES, "routers in the chain")
        _int("pairs_delivered", self.pairs_delivered, 0, 2**62, "a count")
        _real("simulated_s", self.simulated_s, 0.0, 1e6, "the simulated window", lo_open=True)
        for name in ("mean_fidelity", "fidelity_stderr", "predicted_fidelity", "werner_fidelity"):
            v = getattr(self, name)
            if not (isinstance(v, float) and (math.isnan(v) or 0.0 <= v <= 1.0)):
                raise ChainError(f"{name}={v!r} must be a float in [0, 1] (nan when no pair was delivered)")
        if self.pairs_delivered and math.isnan(self.mean_fidelity):
            raise ChainError(f"mean_fidelity=nan with pairs_delivered={self.pairs_delivered}: delivered pairs "
                             "always have a sampled fidelity")

    @property
    def pairs_per_s(self) -> float:
        """Delivered pairs per simulated second."""
        return self.pairs_delivered / self.simulated_s

    def to_json_dict(self, *, wall_s: float) -> dict[str, Any]:
        """A JSON-ready dict: nodes, simulated_s, wall_s, pairs_delivered, mean_fidelity, then the extras.

        Args:
            wall_s: Wall-clock seconds the run took, measured by the caller (the core never reads a clock).

        Raises:
            ChainError: ``wall_s`` negative or not finite.
        """
        _real("wall_s", wall_s, 0.0, math.inf, "wall-clock seconds measured by the caller, e.g. 0.004")
        return {
            "nodes": self.nodes,
            "simulated_s": self.simulated_s,
            "wall_s": wall_s,
            "pairs_delivered": self.pairs_delivered,
            "mean_fidelity": _nan_to_none(self.mean_fidelity),
            "fidelity_stderr": _nan_to_none(self.fidelity_stderr),
            "predicted_fidelity": _nan_to_none(self.predicted_fidelity),
            "werner_fidelity": self.werner_fidelity,
            "pairs_per_simulated_s": self.pairs_per_s,
            "pairs_per_wall_s": self.pairs_delivered / wall_s if wall_s > 0 else None,
            "success_probability": self.success_probability,
            "attempt_cycle_s": self.attempt_cycle_s,
            "mean_end_wait_s": _nan_to_none(self.mean_end_wait_s),
        }


def _round_offsets(k: np.ndarray, cycle_ns: int, proc_ns: int, far_ns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Herald, swap-start and delivery times relative to the round start, from attempt counts k (..., links)."""
    herald = k * cycle_ns
    if herald.shape[-1] == 1:
        return herald, herald[..., :0], herald[..., 0]
    swap = np.maximum(herald[..., :-1], herald[..., 1:])
    delivery = (swap + (proc_ns + far_ns)).max(axis=-1)
    return herald, swap, delivery


def _timings(config: ChainConfig, p: float, rng: np.random.Generator) -> _Timings:
    """Every lane's rounds over the window; the rows whose delivery falls inside it, as columns per pair."""
    links, lanes = config.links, config.memories
    cycle_ns = _cycle_ns(config)
    proc_ns = round(config.processing_time_s * NS)
    hop_ns = config.hop_km * physics.FIBRE_S_PER_KM * NS
    router = np.arange(1, links)
    # Outcome bits of router j reach the farther end after max(j, links - j) hops of fibre.
    far_ns = np.round(np.maximum(router, links - router) * hop_ns).astype(np.int64)
    window_ns = round(config.duration_s * NS)
    # A round lasts at least one hop's mean time to pair, so this many rounds usually covers the window at once.
    cap = max(16, _MAX_DRAWS_PER_CHUNK // (lanes * links))
    rows = min(math.ceil(1.25 * window_ns * p / cycle_ns) + 8, cap)
    offset = np.zeros(lanes, dtype=np.int64)
    kept_k, kept_start = [], []
    while True:
        k = rng.geometric(p, size=(rows, lanes, links)).astype(np.int64)
        _, _, rel_delivery = _round_offsets(k, cycle_ns, proc_ns, far_ns)
        end = offset + np.cumsum(rel_delivery, axis=0)
        inside = end <= window_ns
        kept_k.append(k[inside])
        kept_start.append((end - rel_delivery)[inside])
        offset = end[-1]
        if (offset > window_ns).all():
            break
        rows = min(rows * 2, cap)
    k_all = np.concatenate(kept_k, axis=0)
    start = np.concatenate(kept_start, axis=0)
    herald, swap, delivery = _round_offsets(k_all, cycle_ns, proc_ns, far_ns)
    delivered = delivery + start
    return _Timings(
        herald=(herald + start[:, None]).T,
        swap=(swap + start[:, None]).T,
        delivery=delivered,
        ends=np.stack([delivered, delivered]),
    )


def _lambdas(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Pauli eigenvalues (l_X, l_Y, l_Z) of independent channels, multiplied over axis 0: shape (3, B)."""
    return np.stack([
        np.prod(1 - 2 * (py + pz), axis=0),
        np.prod(1 - 2 * (px + pz), axis=0),
        np.prod(1 - 2 * (px + py), axis=0),
    ])


def _noise(config: ChainConfig, t: _Timings, rng: np.random.Generator
           ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Per-pair masks for swap_chain's three slots, the closed-form fidelity per pair, and the end waits (s)."""
    links = config.links
    b = t.delivery.shape[0]
    light_ns = round(config.hop_km * physics.FIBRE_S_PER_KM * NS)
    emitted = t.herald - light_ns  # (links, B): the memory qubit is entangled from its emission on
    # Repeater qubits (2s+1, 2s+2) idle from emission until swap s; end qubits 0 and 2*links-1 until delivery.
    repeater_wait = np.zeros((2 * links, b), dtype=np.int64)
    repeater_wait[1:-1:2] = t.swap - emitted[:-1]
    repeater_wait[2:-1:2] = t.swap - emitted[1:]
    end_wait = np.stack([t.ends[0] - emitted[0], t.ends[1] - emitted[-1]])
    t1, t2 = config.t1_s, config.coherence_time_s
    rx, ry, rz = (np.asarray(v) for v in physics.twirled_memory_paulis(repeater_wait / NS, t1, t2))
    ex, ey, ez = (np.asarray(v) for v in physics.twirled_memory_paulis(end_wait / NS, t1, t2))

    wx, wz = noise_masks.werner_masks(config.raw_fidelity, rng, shape=(links, b))
    sx, sz = noise_masks.pauli_masks(rx, ry, rz, rng)
    slot0 = (wx ^ sx, wz ^ sz)
    slot1 = (np.zeros((2 * (links - 1), b), dtype=bool), np.zeros((2 * (links - 1), b), dtype=bool))
    if links > 1 and config.gate_error > 0:
        gx, gz = noise_masks.depolarize2_masks(config.gate_error, rng, shape=(links - 1, b))
        slot1 = (slot1[0] ^ gx, slot1[1] ^ gz)
    if links > 1 and config.readout_error > 0:
        fx, _ = noise_masks.pauli_masks(config.readout_error, 0.0, 0.0, rng, shape=(2 * (links - 1), b))
        slot1 = (slot1[0] ^ fx, slot1[1])
    slot2 = noise_masks.pauli_masks(ex, ey, ez, rng)

    # Closed form: each independent Pauli source multiplies the end pair's X, Y, Z correlators by its eigenvalues,
    # and F = (1 + l_X + l_Y + l_Z)/4. A wrong X-basis BSM bit is a Z error on the end pair, a wrong Z-basis bit an
    # X error, so each swap's readout contributes (1-2e, (1-2e)**2, 1-2e).
    lam = _lambdas(rx, ry, rz) * _lambdas(ex, ey, ez)
    w = physics.werner(config.raw_fidelity)
    swaps = links - 1
    g = (1 - 16 * config.gate_error / 15) ** swaps
    r = 1 - 2 * config.readout_error
    lam *= (w**links * g * np.array([r**swaps, r ** (2 * swaps), r**swaps]))[:, None]
    predicted = (1 + lam.sum(axis=0)) / 4
    return [slot0, slot1, slot2], predicted, end_wait.mean(axis=0) / NS


def run_chain(config: ChainConfig, *, seed: int = 0) -> ChainResult:
    """Simulate the chain over ``config.duration_s`` and sample every delivered pair's fidelity in Stim.

    Args:
        config: The chain, its hardware and the window.
        seed: Seeds link timing, noise draws and Stim (independent streams); same seed, same result.

    Returns:
        The delivered pairs, their sampled and predicted fidelities.

    Raises:
        ChainError: ``seed`` is not a non-negative integer.

    >>> r = run_chain(ChainConfig(nodes=3, duration_s=0.05), seed=1)
    >>> r.pairs_delivered > 0, abs(r.mean_fidelity - r.predicted_fidelity) < 0.05
    (True, True)
    """
    _int("seed", seed, 0, 2**63 - 1, "a non-negative integer, e.g. 0")
    timing_seq, noise_seq, stim_seq = np.random.SeedSequence(int(seed)).spawn(3)
    p = config.success_probability()
    timing_rng = np.random.default_rng(timing_seq)
    if config.memory_policy == "lanes":
        timings = _timings(config, p, timing_rng)
    else:
        timings = _pooled_timings(config, p, timing_rng)
    cycle_s = config.cycle_s()
    if config.link_protocol == "negotiated":
        m = _link_model(config, p)
        cycle_s = (m.round1_ns + (1 - m.fail1) * m.round2_ns) / NS  # mean attempt of a lone session
    werner = physics.chain_fidelity([config.raw_fidelity] * config.links, gate_error=config.gate_error,
                                    readout_error=config.readout_error)
    n = int(timings.delivery.shape[0])
    if n == 0:
        mean_f = stderr = predicted = end_wait = math.nan
    else:
        masks, per_pair, waits = _noise(config, timings, np.random.default_rng(noise_seq))
        outcome = circuits.run_instances(circuits.swap_chain(config.links), masks,
                                         seed=int(stim_seq.generate_state(1, dtype=np.uint64)[0] >> 1))
        mean_f, stderr = outcome.fidelity(), outcome.stderr()
        predicted, end_wait = float(per_pair.mean()), float(waits.mean())
    return ChainResult(
        nodes=config.nodes,
        simulated_s=float(config.duration_s),
        pairs_delivered=n,
        mean_fidelity=float(mean_f),
        fidelity_stderr=float(stderr),
        predicted_fidelity=float(np.clip(predicted, 0.0, 1.0)) if n else math.nan,
        werner_fidelity=float(werner),
        success_probability=p,
        attempt_cycle_s=cycle_s,
        mean_end_wait_s=end_wait,
    )
