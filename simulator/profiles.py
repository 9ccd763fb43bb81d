"""Built-in hardware: node profiles and link presets with their sources, and the names the fleet model accepts.

Every figure carries its provenance (``source``); those marked unverified are placeholders to check before quoting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "BUILTIN_FLEETS",
    "HARDWARE_TYPES",
    "JOB_KINDS",
    "LINK_PHYSICS",
    "LINK_PRESETS",
    "LinkPreset",
    "NODE_PHYSICS",
    "NodeProfile",
    "PROFILES",
    "ROLES",
    "SCHEMES",
]

HARDWARE_TYPES: tuple[str, ...] = ("trapped-ion", "nv-centre", "superconducting")
"""Hardware families a node can belong to (``Node.hardware_type``)."""
ROLES: tuple[str, ...] = ("processor", "repeater")
"""Node roles: processors run jobs; repeaters only hold and swap link pairs."""
SCHEMES: tuple[str, ...] = ("double-click", "single-click")
"""Heralded entanglement-generation schemes (physics.md §1.1)."""
JOB_KINDS: tuple[str, ...] = ("teleport", "teleported_cnot", "ghz", "pair_delivery", "canary")
"""Job kinds a tenant's ``mix`` may name."""
BUILTIN_FLEETS: tuple[str, ...] = ("line", "star", "mesh", "fleet100", "fleet1000")
"""Names accepted by :func:`qfleet.simulator.fleet.builtin_fleet_path`."""

#: The :class:`Node` fields a profile supplies.
NODE_PHYSICS: tuple[str, ...] = (
    "data_qubits", "comm_qubits", "t1_s", "t2_s", "gate_error_1q", "gate_error_2q", "gate_time_1q_s",
    "gate_time_2q_s", "readout_error_0", "readout_error_1", "readout_time_s", "heartbeat_s")
#: The :class:`Link` fields a preset supplies.
LINK_PHYSICS: tuple[str, ...] = (
    "attenuation_db_per_km", "scheme", "emission_efficiency", "collection_efficiency", "detector_efficiency",
    "visibility", "bright_state_population", "prep_time_s", "memories", "classical_processing_s",
    "classical_jitter_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeProfile:
    """A built-in starting point for a node's hardware parameters (see :data:`PROFILES`).

    Fields have the meaning and units of the same-named :class:`Node` fields; ``source`` cites them.
    """

    name: str
    hardware_type: str
    data_qubits: int
    comm_qubits: int
    t1_s: float
    t2_s: float
    gate_error_1q: float
    gate_error_2q: float
    gate_time_1q_s: float
    gate_time_2q_s: float
    readout_error_0: float
    readout_error_1: float
    readout_time_s: float
    heartbeat_s: float
    source: str

    def node_fields(self) -> dict[str, Any]:
        """The :class:`Node` fields this profile supplies (``profile`` and ``hardware_type`` included)."""
        out: dict[str, Any] = {"profile": self.name, "hardware_type": self.hardware_type}
        out.update({name: getattr(self, name) for name in NODE_PHYSICS})
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkPreset:
    """A built-in starting point for a link's physics (see :data:`LINK_PRESETS`).

    Fields have the meaning and units of the same-named :class:`Link` fields; ``source`` cites them.
    """

    name: str
    attenuation_db_per_km: float
    scheme: str
    emission_efficiency: float
    collection_efficiency: float
    detector_efficiency: float
    visibility: float
    bright_state_population: float
    prep_time_s: float
    memories: int
    classical_processing_s: float
    classical_jitter_s: float
    source: str

    def link_fields(self) -> dict[str, Any]:
        """The :class:`Link` fields this preset supplies (``preset`` included)."""
        out: dict[str, Any] = {"preset": self.name}
        out.update({name: getattr(self, name) for name in LINK_PHYSICS})
        return out


_ION = NodeProfile(
    name="ion-photonic",
    hardware_type="trapped-ion",
    data_qubits=8,
    comm_qubits=2,
    # T2 = 1 s: the long-lived memory-qubit choice of physics.md §2.1 (Main et al., Nature 2025 store an
    # entangled state in a Ca+ memory for ~10 s, arXiv 2506.14334). SquidASM's pessimistic baseline,
    # T2 = 85 ms (config_trapped_ions.yaml), is one override away: `t2_s: 0.085`. T1 is off in that config.
    t1_s=math.inf,
    t2_s=1.0,
    gate_error_1q=1e-4,  # unverified: 99.99 % single-qubit class
    gate_error_2q=1e-3,  # unverified: 99.9 % class (physics.md §2)
    gate_time_1q_s=26.6e-6,  # SquidASM config_trapped_ions.yaml (Avis et al. App. A.6)
    gate_time_2q_s=107e-6,  # same config
    readout_error_0=1e-3,  # unverified (physics.md §2.1)
    readout_error_1=1e-3,
    readout_time_s=1.5e-3,  # SquidASM config_trapped_ions.yaml measure time
    heartbeat_s=1.0,
    source="Main et al., Nature 2025 (arXiv 2407.00835; memory arXiv 2506.14334); SquidASM "
           "config_trapped_ions.yaml (Avis et al., arXiv 2207.10579 App. A.6); gate/readout errors unverified",
)
_NV = NodeProfile(
    name="nv",
    hardware_type="nv-centre",
    data_qubits=2,  # 13C memory qubits
    comm_qubits=1,  # the electron spin is the only optical interface
    t1_s=3600.0,  # SquidASM config_color_centers.yaml electron T1 1 h (Avis et al. App. A.5)
    t2_s=0.5,  # electron T2 0.5 s; the carbon memory has T2 1 s but pairs are generated on the electron
    gate_error_1q=0.01,  # unverified
    gate_error_2q=0.06,  # EC-gate depolarising probability, same config
    gate_time_1q_s=5e-6,  # unverified
    gate_time_2q_s=500e-6,  # EC gate 500 us, same config
    readout_error_0=0.07,  # prob_error_0, same config: NV readout is strongly asymmetric
    readout_error_1=0.005,  # prob_error_1
    readout_time_s=3.7e-6,  # measure 3.7 us, same config
    heartbeat_s=1.0,
    source="SquidASM config_color_centers.yaml (Avis et al., arXiv 2207.10579 App. A.5); "
           "Humphreys et al., Nature 558, 268 (2018); 1q gate figures unverified",
)
_SC = NodeProfile(
    name="sc-microwave",
    hardware_type="superconducting",
    data_qubits=20,
    comm_qubits=2,
    # Every figure in this profile is UNVERIFIED (physics.md §2: transmon T1/T2 50-300 us, 2q 0.2-1 %,
    # readout 0.5-2 %); check before quoting.
    t1_s=100e-6,
    t2_s=100e-6,
    gate_error_1q=5e-4,
    gate_error_2q=5e-3,
    gate_time_1q_s=25e-9,
    gate_time_2q_s=200e-9,
    readout_error_0=0.01,
    readout_error_1=0.01,
    readout_time_s=1e-6,
    heartbeat_s=1.0,
    source="physics.md §2/§2.1 transmon figures, all unverified",
)

PROFILES: Mapping[str, NodeProfile] = MappingProxyType({p.name: p for p in (_ION, _NV, _SC)})
"""Built-in node profiles by name.

- ``ion-photonic`` (trapped ion with a photonic interface): T1 off, **T2 = 1 s** (memory qubit; Main et
  al., Nature 2025 store entanglement ~10 s in a Ca+ memory, arXiv 2506.14334; SquidASM's pessimistic
  85 ms baseline is an override). Gate and measure times from SquidASM ``config_trapped_ions.yaml``
  (Avis et al., arXiv 2207.10579 App. A.6). 2q error 1e-3, readout 1e-3: unverified.
- ``nv`` (NV centre): SquidASM ``config_color_centers.yaml`` (Avis et al. App. A.5): electron T1 1 h,
  T2 0.5 s, EC gate depolarising 0.06 in 500 us, readout error 0.07 / 0.005 (asymmetric) in 3.7 us.
- ``sc-microwave`` (transmons on a cryogenic microwave link): T1 = T2 = 100 us, 2q 5e-3, readout 1e-2.
  **Unverified** figures (physics.md §2.1).
"""

_ION_LINK = LinkPreset(
    name="ion-photonic",
    # 0.25 dB/km: SquidASM's converted-photon loss; the native 422/854 nm photons lose several dB/km, so
    # links longer than a lab assume frequency conversion (physics.md §1.1).
    attenuation_db_per_km=0.25,
    scheme="double-click",
    emission_efficiency=1.0,  # folded into collection_efficiency, as SquidASM's p_loss_init does
    collection_efficiency=0.111,  # SquidASM p_loss_init 0.889: 11.1 % emitted and collected
    detector_efficiency=0.8,  # unverified
    visibility=0.94,  # F ~ (1 + V)/2 = 0.97, the Oxford link fidelity (Main et al. 2025)
    bright_state_population=0.5,  # unused by double-click
    prep_time_s=36e-6,  # SquidASM ion init time 36 us
    memories=1,
    classical_processing_s=50e-6,  # physics.md §4.1 prototype
    classical_jitter_s=10e-6,
    source="SquidASM config_trapped_ions.yaml (Avis et al. App. A.6); Main et al., Nature 2025; "
           "detector efficiency unverified",
)
_NV_LINK = LinkPreset(
    name="nv",
    attenuation_db_per_km=0.25,  # converted photons (SquidASM); native 637 nm is several dB/km
    scheme="single-click",
    emission_efficiency=0.03,  # zero-phonon-line fraction, unverified
    collection_efficiency=0.02,  # unverified; with the two neighbours gives SquidASM's 5.1e-4
    detector_efficiency=0.85,  # per emission (p_loss_init 0.99949), unverified split
    visibility=0.9,  # SquidASM config_color_centers.yaml
    bright_state_population=0.1,  # F ~ 1 - alpha = 0.9 (Humphreys 2018 regime)
    prep_time_s=2.5e-6,  # chosen so a 2 m link gives ~40 Hz, matching Humphreys 2018's 39 Hz
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="SquidASM config_color_centers.yaml (Avis et al. App. A.5); Humphreys et al., Nature 558, 268 "
           "(2018); efficiency split and attempt time unverified",
)
_SC_LINK = LinkPreset(
    name="sc-microwave",
    # Microwave state transfer over a 5-30 m cryogenic link, approximated as a heralded double-click
    # with near-unit efficiencies. All figures unverified.
    attenuation_db_per_km=5.0,
    scheme="double-click",
    emission_efficiency=0.95,
    collection_efficiency=0.9,
    detector_efficiency=0.9,
    visibility=0.64,  # F ~ 0.82, the ~0.8 Bell fidelity quoted for ETH cryo-links (unverified)
    bright_state_population=0.5,
    prep_time_s=250e-6,  # ~1 kHz pair rate (physics.md §2.1)
    memories=1,
    classical_processing_s=1e-6,  # FPGA feed-forward
    classical_jitter_s=0.2e-6,
    source="physics.md §2/§2.1 microwave cryo-link figures, all unverified",
)
_SC_TRANSDUCER_LINK = LinkPreset(
    name="sc-transducer",
    # Microwave-to-optical transduction: today's added noise sits just above the F > 0.5 threshold
    # (IBM modelling, arXiv 2503.10842), so these links exist but rarely deliver useful pairs.
    attenuation_db_per_km=0.25,
    scheme="double-click",
    emission_efficiency=0.01,  # transduction efficiency, unverified
    collection_efficiency=0.5,
    detector_efficiency=0.8,
    visibility=0.1,  # F ~ 0.55
    bright_state_population=0.5,
    prep_time_s=10e-6,
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="IBM transducer analysis, arXiv 2503.10842 (F just above 0.5); efficiencies unverified",
)

LINK_PRESETS: Mapping[str, LinkPreset] = MappingProxyType(
    {p.name: p for p in (_ION_LINK, _NV_LINK, _SC_LINK, _SC_TRANSDUCER_LINK)})
"""Built-in link presets by name; a link without ``preset`` uses the one named like endpoint ``a``'s profile.

Heralding success per attempt (physics.md §1.1) and pair rate p/t_cycle at 2 m:

- ``ion-photonic``: double-click, p = ½(0.111·0.8)² ≈ 3.9e-3, t_prep 36 us → ≈ 110 pairs/s; 10 km of
  converted fibre at 0.25 dB/km → ≈ 26 pairs/s. Sources: SquidASM ``config_trapped_ions.yaml``; V = 0.94
  gives F ≈ 0.97 (Main et al. 2025).
- ``nv``: single-click, α = 0.1 (F ≈ 0.9), η = 5.1e-4 per arm (SquidASM ``config_color_centers.yaml``),
  p = 2αη ≈ 1e-4, t_prep 2.5 us → ≈ 40 pairs/s, Humphreys et al. 2018's 39 Hz.
- ``sc-microwave``: near-deterministic cryo-link, p ≈ 0.3, t_prep 250 us → ≈ 1.2 kHz, F ≈ 0.82 (unverified).
- ``sc-transducer``: microwave-to-optical bridge, p ≈ 8e-6, F ≈ 0.55 (arXiv 2503.10842; unverified).
"""
