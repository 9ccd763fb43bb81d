"""A fleet's hardware values: :class:`Node` (a processor or a repeater) and :class:`Link` (a heralded fibre link).

Both validate every field at construction with the rules of :mod:`qfleet.simulator.rules`, whether built directly
or from a fleet file, and report every problem at once as a :class:`~qfleet.simulator.rules.FleetError`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from qfleet.problems import Problem
from qfleet.simulator.profiles import HARDWARE_TYPES, LINK_PRESETS, PROFILES, ROLES, SCHEMES
from qfleet.simulator.rules import (
    MAX_SECONDS,
    Rule,
    count,
    identifier,
    in_range,
    non_negative,
    one_of,
    positive,
    validate,
)

__all__ = ["LINK_KEYS", "MAX_LENGTH_KM", "MAX_MEMORIES", "NODE_KEYS", "Link", "Node"]

#: Longest link: 100,000 km of fibre (2.5 times round the Earth; at 0.2 dB/km no pair is ever heralded).
MAX_LENGTH_KM = 100_000.0
#: Most memories multiplexed on one link, as for the repeater chain (``qfleet sim chain --memories``).
MAX_MEMORIES = 10_000

_NODE_RULES = (
    identifier("id", "qpu-a"),
    one_of("profile", tuple(PROFILES)),
    one_of("hardware_type", HARDWARE_TYPES),
    count("data_qubits", 0, "8"),
    count("comm_qubits", 1, "2"),
    positive("t1_s", "seconds, .inf for no relaxation", ".inf", allow_inf=True),
    positive("t2_s", "seconds", "0.5", allow_inf=True),
    # Fully depolarising is 3/4 (1q) and 15/16 (2q); larger values are not a probability of error.
    in_range("gate_error_1q", 0.0, 0.75, "depolarising probability", "0.0001"),
    in_range("gate_error_2q", 0.0, 0.9375, "depolarising probability", "0.001"),
    positive("gate_time_1q_s", "seconds", "26.6e-6", maximum=MAX_SECONDS),
    positive("gate_time_2q_s", "seconds", "107e-6", maximum=MAX_SECONDS),
    in_range("readout_error_0", 0.0, 0.5, "P(read 1 | prepared 0)", "0.001"),
    in_range("readout_error_1", 0.0, 0.5, "P(read 0 | prepared 1)", "0.001"),
    positive("readout_time_s", "seconds", "1.5e-3", maximum=MAX_SECONDS),
    positive("heartbeat_s", "seconds", "1.0", maximum=MAX_SECONDS),
    one_of("role", ROLES),
)
#: The keys a fleet file's node entry may have.
NODE_KEYS: tuple[str, ...] = tuple(r.name for r in _NODE_RULES)


def _node_cross(node: Node) -> list[Problem]:
    items = []
    if node.t2_s > 2 * node.t1_s:
        items.append(Problem("t2_s", f"must satisfy t2_s <= 2 * t1_s (physics.md §1.3), got t2_s={node.t2_s!r} "
                                     f"with t1_s={node.t1_s!r}",
                             f"lower t2_s to at most {2 * node.t1_s!r} or raise t1_s", "out_of_range"))
    if node.role == "processor" and node.data_qubits < 1:
        items.append(Problem("data_qubits", f"a processor needs at least 1 data qubit, got {node.data_qubits!r}",
                             "e.g. data_qubits: 8, or role: repeater", "out_of_range"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One quantum node: a processor that runs jobs, or a repeater that only swaps link pairs.

    Times are seconds, error rates are probabilities. ``profile`` names the :data:`~qfleet.simulator.profiles.PROFILES`
    entry the node started from; ``hardware_type`` is one of :data:`~qfleet.simulator.profiles.HARDWARE_TYPES`.
    Gate and readout times set how long each shot of a job holds the node: its two-qubit gate, the single-qubit
    gates on the shot's critical path (:func:`qfleet.simulator.timeline.single_qubit_gates`) and its readout.

    Raises:
        FleetError: a field is out of range, or ``t2_s > 2 * t1_s``.
    """

    id: str
    profile: str
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
    role: str = "processor"

    def __post_init__(self) -> None:
        validate(self, _NODE_RULES, f"Node(id={self.id!r})", _node_cross, needs=("t1_s", "t2_s", "role", "data_qubits"))

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_LINK_RULES = (
    Rule("id", "str", lambda v: True, "", "e.g. id: qpu-a~qpu-b"),
    identifier("a", "qpu-a"),
    identifier("b", "qpu-b"),
    positive("length_km", "kilometres of fibre end to end", "2", maximum=MAX_LENGTH_KM),
    non_negative("attenuation_db_per_km", "dB/km", "0.25"),
    one_of("scheme", SCHEMES),
    in_range("emission_efficiency", 0.0, 1.0, "probability", "0.5", open_lo=True),
    in_range("collection_efficiency", 0.0, 1.0, "probability", "0.111", open_lo=True),
    in_range("detector_efficiency", 0.0, 1.0, "probability", "0.8", open_lo=True),
    in_range("conversion_efficiency", 0.0, 1.0, "frequency-conversion efficiency per photon, 1 for native photons",
             "0.265", open_lo=True),
    in_range("dark_count_probability", 0.0, 0.5, "per detector and attempt window", "1.5e-7"),
    in_range("visibility", 0.0, 1.0, "HOM visibility", "0.94"),
    in_range("bright_state_population", 0.0, 0.5, "single-click alpha", "0.1", open_lo=True),
    positive("prep_time_s", "seconds per attempt", "36e-6", maximum=MAX_SECONDS),
    count("memories", 1, "4", maximum=MAX_MEMORIES),
    Rule("repeaters", "strs", lambda v: True, "", "a list of repeater node ids, e.g. repeaters: [rep-1]"),
    non_negative("classical_processing_s", "seconds per message", "50e-6", maximum=MAX_SECONDS),
    non_negative("classical_jitter_s", "seconds (std-dev)", "10e-6", maximum=MAX_SECONDS),
    Rule("preset", "str", lambda v: v in LINK_PRESETS or v == "custom",
         f"must be one of {', '.join(LINK_PRESETS)}, custom", "e.g. preset: ion-photonic"),
)
#: The keys a fleet file's link entry may have.
LINK_KEYS: tuple[str, ...] = tuple(r.name for r in _LINK_RULES)


def _link_cross(link: Link) -> list[Problem]:
    items = []
    if link.a == link.b:
        items.append(Problem("b", f"a link needs two different endpoints, got a=b={link.a!r}", "name another node",
                             "same_endpoints"))
    for i, rep in enumerate(link.repeaters):
        if rep in (link.a, link.b):
            items.append(Problem(f"repeaters[{i}]", f"a repeater cannot be an endpoint, got {rep!r}", "remove it",
                                 "repeater_is_endpoint"))
        elif rep in link.repeaters[:i]:
            items.append(Problem(f"repeaters[{i}]", f"repeater listed twice, got {rep!r}", "list each once",
                                 "duplicate_repeater"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A heralded entanglement link between nodes ``a`` and ``b``, possibly through repeater nodes.

    ``length_km`` is the whole fibre; with ``repeaters`` it is split evenly into ``len(repeaters) + 1``
    segments. Efficiencies are probabilities in (0, 1]; ``conversion_efficiency`` is the frequency-conversion
    efficiency of each photon (1 for native photons); ``dark_count_probability`` is each detector's probability of a
    dark count in one attempt window; ``bright_state_population`` is single-click's alpha (ignored by the other
    schemes). For ``scheme: microwave`` (deterministic transfer) ``collection_efficiency`` is the receiver's
    absorption probability and ``visibility`` the transfer's coherence factor. Times are seconds. ``preset`` names the
    :data:`~qfleet.simulator.profiles.LINK_PRESETS` entry it started from (``"custom"`` when built directly).
    ``id`` defaults to ``f"{a}~{b}"``.

    Raises:
        FleetError: a field is out of range, the endpoints coincide, or a repeater is listed twice.
    """

    id: str = ""
    a: str
    b: str
    length_km: float
    attenuation_db_per_km: float
    scheme: str
    emission_efficiency: float
    collection_efficiency: float
    detector_efficiency: float
    conversion_efficiency: float = 1.0
    dark_count_probability: float = 0.0
    visibility: float
    bright_state_population: float
    prep_time_s: float
    memories: int
    repeaters: tuple[str, ...] = ()
    classical_processing_s: float
    classical_jitter_s: float
    preset: str = "custom"

    def __post_init__(self) -> None:
        if self.id == "" and isinstance(self.a, str) and isinstance(self.b, str):
            object.__setattr__(self, "id", f"{self.a}~{self.b}")
        validate(self, _LINK_RULES, f"Link(id={self.id!r})", _link_cross, needs=("a", "b", "repeaters"))

    @property
    def segments(self) -> int:
        """Number of fibre segments: ``len(repeaters) + 1``."""
        return len(self.repeaters) + 1

    @property
    def segment_km(self) -> float:
        """Length of one segment in km (the fibre is split evenly between repeaters)."""
        return self.length_km / self.segments

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data, in declaration order (``repeaters`` as a list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["repeaters"] = list(self.repeaters)
        return out
