"""Named :class:`qfleet.simulator.chain.ChainConfig` settings, each value derived from a source's configuration.

``sequence-0.8.5-swap`` is the physics.md 6 workload ("swap" preset) as SeQUeNCe 0.8.5 runs it: every value below
is the workload's (physics.md 6) or a default read in SeQUeNCe 0.8.5's source, cited as ``file:line`` under
``site-packages/sequence``. None is fitted to the peer's output. :data:`CITATIONS` keeps the peer's raw values
next to the derived fields so that a reader (or ``bench/bench_chain_peer.py``) can check them against an installed
copy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHAIN_PRESETS", "CITATIONS", "PEER_SWAP_DEGRADATION", "peer_rule_fidelity", "preset"]

_SPEED_OF_LIGHT_M_PER_PS = 2e-4  # sequence/constants.py:16 -> 5 us/km, qfleet's physics.FIBRE_S_PER_KM
_CHANNEL_FREQUENCY_HZ = 8e7  # sequence/components/optical_channel.py:90 (QuantumChannel frequency)
_DETECTOR_COUNT_RATE_HZ = 25e6  # sequence/components/detector.py:54 (Detector count_rate)

PEER_SWAP_DEGRADATION = 0.95
"""SeQUeNCe's fidelity factor per swap, F = F1 * F2 * 0.95 (sequence/entanglement_management/swapping.py:97)."""

CHAIN_PRESETS: dict[str, dict[str, Any]] = {
    "sequence-0.8.5-swap": {
        # Workload (physics.md 6): 10 km hops with the BSM node at the midpoint, 0.2 dB/km (2e-4 dB/m).
        "hop_km": 10.0,
        "attenuation_db_per_km": 0.2,
        # Workload: the MemoryArray template's fidelity 0.99 and coherence_time 1 s; 5 memories reserved per
        # side (the request's memory_size 5; interior routers reserve twice that, sequence/network_management/
        # rsvp.py:204).
        "raw_fidelity": 0.99,
        "memories": 5,
        "coherence_time_s": 1.0,
        # Workload: r0 requests pairs for 0.5 s.
        "duration_s": 0.5,
        # Memory expiry at cutoff_ratio (default 1, sequence/components/memory.py:49) * coherence_time after the
        # last excitation (memory.py:419).
        "cutoff_s": 1.0,
        # Barrett-Kok double-click (sequence/entanglement_management/generation/barret_kok.py, the default
        # EntanglementGenerationA type, generation_base.py:54).
        "scheme": "double-click",
        # MemoryArray efficiency 1 (sequence/components/memory.py:48): every excitation emits.
        "emission_efficiency": 1.0,
        "collection_efficiency": 1.0,
        # SingleAtomBSM's two default detectors (sequence/components/bsm.py:447) with Detector efficiency 0.9
        # (sequence/components/detector.py:54), no dark counts (detector.py:54).
        "detector_efficiency": 0.9,
        # One emission bin of the quantum channel, 1 / 8e7 Hz = 12.5 ns (optical_channel.py:90): each round's
        # emission is rounded up to the next bin after a 10 ps gap (barret_kok.py:193, optical_channel.py:207),
        # so a round costs one bin and concurrent sessions of a hop emit one bin apart.
        "prep_time_s": 1 / _CHANNEL_FREQUENCY_HZ,
        # Detector dead time 1 / count_rate = 1 / 25e6 Hz = 40 ns (detector.py:54, detector.py:126-130).
        "detector_dead_time_s": 1 / _DETECTOR_COUNT_RATE_HZ,
        # Resource-manager REQUEST (resource_manager.py:382), NEGOTIATE (generation_base.py:152), the ACK's lead
        # time (barret_kok.py:141-142), photon and result (barret_kok.py:163-164); the midpoint's classical delay is
        # half the routers' (sequence/topology/router_net_topo.py:126).
        "link_protocol": "negotiated",
        # Each swap first pairs with both far ends by REQUEST/RESPONSE (action_condition_set.py:348,
        # resource_manager.py:435), frees its memories at the swap (swapping.py:195) and sends the result to both
        # ends; the nesting is resource_manager.py:223's tree, which qfleet's pooled policy always uses.
        "swap_negotiation": True,
        # EntanglementSwappingA success_prob default 1 (swapping.py:97).
        "swap_success": 1.0,
        # Ideal gates and measurements: QuantumRouter gate_fid = meas_fid = 1 (sequence/topology/node.py:309).
        "gate_error": 0.0,
        "readout_error": 0.0,
        "processing_time_s": 0.0,
        "memory_policy": "pooled",
    },
}
"""Preset name -> ChainConfig fields (``nodes`` is always the caller's)."""

CITATIONS: dict[str, dict[str, tuple[str, float]]] = {
    "sequence-0.8.5-swap": {
        "detector_efficiency": ("sequence/components/detector.py:54 Detector.efficiency", 0.9),
        "detector_dead_time_s": ("sequence/components/detector.py:54 Detector.count_rate (1 / value)",
                                 _DETECTOR_COUNT_RATE_HZ),
        "prep_time_s": ("sequence/components/optical_channel.py:90 QuantumChannel.frequency (1 / value)",
                        _CHANNEL_FREQUENCY_HZ),
        "emission_efficiency": ("sequence/components/memory.py:48 MemoryArray.efficiency", 1.0),
        "swap_success": ("sequence/entanglement_management/swapping.py:97 EntanglementSwappingA.success_prob",
                         1.0),
        "cutoff_s": ("sequence/components/memory.py:49 MemoryArray.cutoff_ratio (times coherence_time 1 s)", 1.0),
    },
}
"""For each preset, field -> (where the peer sets it, the peer's raw value), checked by the benchmark against an
installed peer and by the tests against :data:`CHAIN_PRESETS`."""


def preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s ChainConfig fields.

    Raises:
        ValueError: ``name`` is not a known preset (the message lists them).

    >>> preset("sequence-0.8.5-swap")["detector_dead_time_s"]
    4e-08
    """
    if name not in CHAIN_PRESETS:
        raise ValueError(f"--preset {name!r} is unknown; use one of {', '.join(sorted(CHAIN_PRESETS))}")
    return dict(CHAIN_PRESETS[name])


def peer_rule_fidelity(raw_fidelity: float, nodes: int) -> float:
    """SeQUeNCe's phenomenological end-to-end fidelity, ``raw**(N-1) * 0.95**(N-2)`` (not physical; physics.md 1.4).

    >>> round(peer_rule_fidelity(0.99, 4), 4)
    0.8757
    """
    return float(raw_fidelity ** (nodes - 1) * PEER_SWAP_DEGRADATION ** max(nodes - 2, 0))
