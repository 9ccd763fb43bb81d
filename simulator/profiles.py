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
SCHEMES: tuple[str, ...] = ("double-click", "single-click", "microwave")
"""Entanglement-generation schemes: heralded double-click and single-click through a midpoint station (physics.md
§1.1), and deterministic microwave state transfer over a cryogenic link (docs/physics.md)."""
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
    "conversion_efficiency", "dark_count_probability", "visibility", "bright_state_population", "prep_time_s",
    "memories", "classical_processing_s", "classical_jitter_s")


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
    conversion_efficiency: float
    dark_count_probability: float
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
    # The local two-qubit gates of a network node (Main et al. 2025 use mixed-species Sr+-Ca+ gates next to the
    # photonic interface). Unverified; fitted so that `qfleet sim experiment teleport-cnot --profile ion-photonic`
    # reproduces Main et al.'s 86 % teleported CZ with the link (F ~ 0.97, ~10 pairs/s) and memory (T2 = 1 s)
    # of this profile. Isolated-gate benchmarks are better (99.9 % class, physics.md §2).
    gate_error_2q=0.012,
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
  (Avis et al., arXiv 2207.10579 App. A.6). 2q error 1.2e-2 (network-node gates, fitted to Main et al.'s 86 %
  teleported CZ), readout 1e-3: unverified.
- ``nv`` (NV centre): SquidASM ``config_color_centers.yaml`` (Avis et al. App. A.5): electron T1 1 h,
  T2 0.5 s, EC gate depolarising 0.06 in 500 us, readout error 0.07 / 0.005 (asymmetric) in 3.7 us.
- ``sc-microwave`` (transmons on a cryogenic microwave link): T1 = T2 = 100 us, 2q 5e-3, readout 1e-2.
  **Unverified** figures (physics.md §2.1).
"""

_ION_LINK = LinkPreset(
    name="ion-photonic",
    # A lab link with the native 422 nm Sr+ photons (Main et al., Nature 2025: two modules ~2 m apart). Blue light
    # loses tens of dB/km in fibre (physics.md §1.1, value unverified), so this preset is for metres only; longer
    # ion links use `ion-telecom` (frequency-converted photons).
    attenuation_db_per_km=30.0,
    scheme="double-click",
    emission_efficiency=1.0,  # folded into collection_efficiency, as SquidASM's p_loss_init does
    collection_efficiency=0.111,  # SquidASM p_loss_init 0.889: 11.1 % emitted and collected
    detector_efficiency=0.8,  # unverified
    conversion_efficiency=1.0,  # native photons, no conversion
    dark_count_probability=1.4e-5,  # per detector and window, SquidASM config_trapped_ions.yaml
    visibility=0.94,  # F = (1 + V)/2 ~ 0.97, the Oxford link fidelity (Main et al. 2025, figure read second-hand)
    bright_state_population=0.5,  # unused by double-click
    # The attempt period, cooling and optical pumping interleaved: chosen so that a 2 m link makes ~10 pairs/s,
    # the order of magnitude of the Oxford link (physics.md §2/§2.1, inferred there; exact rate unverified).
    prep_time_s=380e-6,
    memories=1,
    classical_processing_s=50e-6,  # physics.md §4.1 prototype
    classical_jitter_s=10e-6,
    source="SquidASM config_trapped_ions.yaml (Avis et al., arXiv 2207.10579 App. A.6); Main et al., Nature 2025 "
           "(arXiv 2407.00835); native-fibre loss, detector efficiency and attempt period unverified",
)
_ION_TELECOM_LINK = LinkPreset(
    name="ion-telecom",
    # The same ions with their photons converted to the telecom band: 0.25 dB/km (SquidASM's converted-photon
    # loss) at the price of the conversion efficiency.
    attenuation_db_per_km=0.25,
    scheme="double-click",
    emission_efficiency=1.0,
    collection_efficiency=0.111,
    detector_efficiency=0.8,  # unverified
    # 26.5 % external conversion efficiency, 854 nm -> 1310 nm, polarisation preserving, from a 40Ca+ ion (Bock
    # et al., Nat. Commun. 9, 1998 (2018), arXiv 1710.04866: read in the abstract). Sr+'s 422 nm photons need a
    # two-stage converter; using the Ca+ figure for them is an assumption.
    conversion_efficiency=0.265,
    dark_count_probability=1.4e-5,  # SquidASM config_trapped_ions.yaml
    visibility=0.94,
    bright_state_population=0.5,
    prep_time_s=36e-6,  # SquidASM ion init time 36 us (the 2 m lab preset's longer period is Oxford's duty cycle)
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="SquidASM config_trapped_ions.yaml; conversion: Bock et al., Nat. Commun. 9, 1998 (2018); "
           "detector efficiency unverified",
)
_NV_LINK = LinkPreset(
    name="nv",
    # Native 637 nm photons (Humphreys et al. 2018: two nodes 2 m apart): several dB/km in fibre (physics.md §1.1;
    # 8 dB/km unverified), so metres to a kilometre; longer NV links use `nv-telecom`.
    attenuation_db_per_km=8.0,
    scheme="single-click",
    emission_efficiency=0.03,  # zero-phonon-line fraction, unverified
    collection_efficiency=0.02,  # unverified; with the two neighbours gives SquidASM's 5.1e-4
    detector_efficiency=0.85,  # per emission (p_loss_init 0.99949), unverified split
    conversion_efficiency=1.0,  # native photons
    dark_count_probability=1.5e-7,  # per detector and window, SquidASM config_color_centers.yaml
    visibility=0.9,  # SquidASM config_color_centers.yaml
    bright_state_population=0.1,  # F ~ (1 - alpha)(1 + sqrt(V))/2 = 0.87 (Humphreys 2018 regime)
    prep_time_s=2.608e-6,  # fitted: a 2 m link makes 39 pairs/s, Humphreys et al. 2018's 39 Hz (read)
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="SquidASM config_color_centers.yaml (Avis et al. App. A.5); Humphreys et al., Nature 558, 268 "
           "(2018); efficiency split, native-fibre loss and attempt time unverified (attempt time fitted)",
)
_NV_TELECOM_LINK = LinkPreset(
    name="nv-telecom",
    attenuation_db_per_km=0.25,  # converted photons (SquidASM)
    scheme="single-click",
    emission_efficiency=0.03,
    collection_efficiency=0.02,
    detector_efficiency=0.85,
    # 17 % overall efficiency of one-step difference-frequency conversion 637 nm -> 1588 nm of NV photons (Dreau
    # et al., Phys. Rev. Applied 9, 064031 (2018), arXiv 1801.03304: read in the abstract).
    conversion_efficiency=0.17,
    dark_count_probability=1.5e-7,
    visibility=0.9,
    bright_state_population=0.1,
    prep_time_s=2.608e-6,
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="SquidASM config_color_centers.yaml; conversion: Dreau et al., Phys. Rev. Applied 9, 064031 (2018); "
           "efficiency split unverified",
)
_ION_NV_LINK = LinkPreset(
    name="ion-nv",
    # An ion and an NV centre entangled over telecom fibre: both photons converted to one telecom wavelength
    # (ion 26.5 %, Bock et al. 2018; NV 17 %, Dreau et al. 2018). The model has symmetric arms; double-click's
    # herald rate depends on eta_A * eta_B only, so each efficiency is the geometric mean of the two platforms'
    # (exact for the rate). Double-click because single-click would need an optical phase stabilised across the
    # whole link and equal bright-state emission from two different emitters.
    attenuation_db_per_km=0.25,
    scheme="double-click",
    emission_efficiency=0.1732,  # sqrt(1.0 * 0.03): ion (folded into collection) and NV zero-phonon fraction
    collection_efficiency=0.04712,  # sqrt(0.111 * 0.02)
    detector_efficiency=0.8246,  # sqrt(0.8 * 0.85)
    conversion_efficiency=0.2122,  # sqrt(0.265 * 0.17)
    dark_count_probability=1.5e-7,  # telecom detectors at the midpoint: SquidASM's NV-config figure (assumption)
    # Assumption (unverified): two-photon interference of converted photons from different emitters, spectrally
    # filtered to a common band, reaches V ~ 0.8 (F ~ 0.9); no ion-NV interference has been reported.
    visibility=0.8,
    bright_state_population=0.5,
    prep_time_s=36e-6,  # the ion attempt (SquidASM init 36 us), as for ion-telecom
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="conversion: Bock et al., Nat. Commun. 9, 1998 (2018); Dreau et al., Phys. Rev. Applied 9, 064031 "
           "(2018); efficiencies from the ion-photonic and nv presets; visibility an unverified assumption",
)
_SC_LINK = LinkPreset(
    name="sc-microwave",
    # Deterministic state transfer over a cryogenic microwave line (Kurpiers et al., Nature 558, 264 (2018): two
    # transmons on separate chips ~1 m of coaxial cable apart; read in the abstract: absorption probability
    # 98.1 %, transfer process fidelity 80.02 +/- 0.07 %, remote entanglement 78.9 % at 50 kHz).
    attenuation_db_per_km=5.0,  # cryogenic line loss, unverified (0.15 dB over 30 m)
    scheme="microwave",
    # The transfer efficiency eta = emission * absorption * line; all the transfer infidelity is attributed to
    # photon loss (an assumption): (1 + sqrt(eta))^2 / 4 = 0.8002 at 1 m gives eta = 0.6226.
    emission_efficiency=0.6354,  # fitted: emission, circulator and line losses together
    collection_efficiency=0.981,  # the receiving node's absorption probability (Kurpiers 2018, read)
    detector_efficiency=1.0,  # no detector: the photon is absorbed
    conversion_efficiency=1.0,
    dark_count_probability=0.0,
    visibility=1.0,  # the transfer's residual coherence factor: none beyond loss (assumption)
    bright_state_population=0.5,  # unused
    prep_time_s=20e-6,  # 50 kHz (Kurpiers 2018, read)
    memories=1,
    classical_processing_s=1e-6,  # FPGA feed-forward
    classical_jitter_s=0.2e-6,
    source="Kurpiers et al., Nature 558, 264 (2018) (absorption, process fidelity and rate read); the split "
           "of the loss and the line attenuation unverified",
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
    conversion_efficiency=1.0,  # the transducer's efficiency is emission_efficiency
    dark_count_probability=1.5e-7,  # telecom detectors (SquidASM NV-config figure; assumption)
    visibility=0.1,  # F ~ 0.55
    bright_state_population=0.5,
    prep_time_s=10e-6,
    memories=1,
    classical_processing_s=50e-6,
    classical_jitter_s=10e-6,
    source="IBM transducer analysis, arXiv 2503.10842 (F just above 0.5); efficiencies unverified",
)

LINK_PRESETS: Mapping[str, LinkPreset] = MappingProxyType(
    {p.name: p for p in (_ION_LINK, _ION_TELECOM_LINK, _NV_LINK, _NV_TELECOM_LINK, _ION_NV_LINK, _SC_LINK,
                         _SC_TRANSDUCER_LINK)})
"""Built-in link presets by name; a link without ``preset`` uses the one named like endpoint ``a``'s profile.

Per-attempt success and pair rate from :func:`qfleet.simulator.physics.link_pair` (docs/physics.md):

- ``ion-photonic``: native photons, lab links (metres). Double-click, eta = 0.111 * 0.8 per arm, p ~ 3.9e-3,
  attempt period 380 us -> ~10 pairs/s at 2 m, F ~ 0.969 (V = 0.94, dark counts 1.4e-5). SquidASM
  ``config_trapped_ions.yaml``; Main et al. 2025.
- ``ion-telecom``: the same ions, photons converted (26.5 %, Bock et al. 2018) into 0.25 dB/km fibre, 36 us
  attempts: p ~ 2e-4 at 5 km (~3.4 pairs/s per memory), 1.6e-5 at 50 km; F 0.966 -> 0.956 as dark counts catch up
  with the signal.
- ``nv``: native photons, single-click, alpha = 0.1, eta = 5.1e-4 per arm (SquidASM ``config_color_centers.yaml``),
  p ~ 1e-4, 2.6 us attempts -> 39 pairs/s at 2 m (Humphreys et al. 2018), F ~ 0.875.
- ``nv-telecom``: NV photons converted (17 %, Dreau et al. 2018): p ~ 1.6e-5 at 3 km, F ~ 0.86.
- ``ion-nv``: double-click between an ion and an NV centre, both converted: p ~ 3e-7 per 20 km segment, F ~ 0.90
  (visibility assumed).
- ``sc-microwave``: deterministic microwave transfer (Kurpiers et al. 2018): p = 1 every 20 us, F = 0.800 at 1 m.
- ``sc-transducer``: microwave-to-optical bridge, p ~ 8e-6, F ~ 0.55 (arXiv 2503.10842; unverified).
"""
