"""The fleet model: nodes, links, tenants and policies, loaded from versioned YAML and validated at load.

A fleet file names a built-in hardware profile per node and a link preset per link; any field may be
overridden. Loading reports every problem at once, each naming the file, the field path, the rule and a
fix, so one edit-and-retry cycle fixes a whole file.

Example:
    >>> fleet = load_fleet(builtin_fleet_path("line"))
    >>> [n.id for n in fleet.processors()]
    ['qpu-a', 'qpu-b', 'qpu-c', 'qpu-d']
    >>> [link.id for link in fleet.path("qpu-a", "qpu-c")]
    ['qpu-a~qpu-b', 'qpu-b~qpu-c']
"""

from __future__ import annotations

import difflib
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "BUILTIN_FLEETS",
    "Calibration",
    "ClassicalNetwork",
    "Fleet",
    "FleetError",
    "ProblemsError",
    "HARDWARE_TYPES",
    "JOB_KINDS",
    "LINK_PRESETS",
    "Link",
    "LinkPreset",
    "Node",
    "NodeProfile",
    "PROFILES",
    "ROLES",
    "SCHEMES",
    "Scheduler",
    "Tenant",
    "builtin_fleet_path",
    "default_tenants",
    "fleet_from_dict",
    "load_fleet",
]

HARDWARE_TYPES: tuple[str, ...] = ("trapped-ion", "nv-centre", "superconducting")
"""Hardware families a node can belong to (``Node.hardware_type``)."""
ROLES: tuple[str, ...] = ("processor", "repeater")
"""Node roles: processors run jobs; repeaters only hold and swap link pairs."""
SCHEMES: tuple[str, ...] = ("double-click", "single-click")
"""Heralded entanglement-generation schemes (physics.md §1.1)."""
JOB_KINDS: tuple[str, ...] = ("teleport", "teleported_cnot", "ghz", "pair_delivery", "canary")
"""Job kinds a tenant's ``mix`` may name."""
BUILTIN_FLEETS: tuple[str, ...] = ("line", "star", "mesh", "fleet100")
"""Names accepted by :func:`builtin_fleet_path`."""

_FLEET_DIR = Path(__file__).resolve().parent / "fleets"
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*")
_MIX_TOLERANCE = 1e-9


class ProblemsError(ValueError):
    """A file or value breaks one or more rules; every problem is reported at once.

    The message has one line per problem, each ``"<source>: <field path>: <rule>, got <value> (<fix>)"``.

    Attributes:
        items: ``(field path, text)`` pairs, one per problem, without the source prefix.
        source: the file name or value label the paths are relative to.
    """

    def __init__(self, items: Iterable[tuple[str, str]], *, source: str) -> None:
        self.items: tuple[tuple[str, str], ...] = tuple(items)
        self.source = source
        lines = [f"{source}: {path}: {text}" if path else f"{source}: {text}" for path, text in self.items]
        if len(lines) == 1:
            message = lines[0]
        else:
            message = f"{len(lines)} problems (fix all of them):\n" + "\n".join(lines)
        super().__init__(message)


class FleetError(ProblemsError):
    """A fleet file or fleet value breaks a rule (see :class:`ProblemsError` for the message and attributes)."""


# --------------------------------------------------------------------------------------------------------------
# Field rules: one table per dataclass, shared by direct construction and file loading.


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    kind: str  # "str" | "int" | "float" | "strs" | "ints" | "mix"
    ok: Callable[[Any], bool]
    rule: str
    hint: str
    allow_inf: bool = False

    def coerce(self, raw: Any) -> tuple[Any, str | None]:
        """Return ``(value, None)`` with the canonical Python type, or ``(raw, problem text)``."""
        if raw is _MISSING:
            return raw, f"is required ({self.hint})"
        value, type_problem = _coerce_type(self.kind, raw, self.allow_inf)
        if type_problem is not None:
            return raw, f"{type_problem}, got {raw!r} ({self.hint})"
        if not self.ok(value):
            return raw, f"{self.rule}, got {raw!r} ({self.hint})"
        return value, None


def _coerce_type(kind: str, raw: Any, allow_inf: bool) -> tuple[Any, str | None]:
    if kind == "str":
        if not isinstance(raw, str) or not raw.strip():
            return raw, "must be a non-empty string"
        return raw, None
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            return raw, "must be an integer"
        return raw, None
    if kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            return raw, "must be a number"
        value = float(raw)
        if math.isnan(value):
            return raw, "must be a number, not NaN"
        if math.isinf(value) and not allow_inf:
            return raw, "must be finite"
        return value, None
    if kind in ("strs", "ints"):
        if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
            return raw, "must be a list"
        want = "str" if kind == "strs" else "int"
        for item in raw:
            _, problem = _coerce_type(want, item, False)
            if problem is not None:
                return raw, f"every item {problem.removeprefix('must be ')}"
        return tuple(raw), None
    if kind == "mix":
        if not isinstance(raw, Mapping):
            return raw, "must be a mapping of job kind to probability"
        out: dict[str, float] = {}
        for key in sorted(raw, key=str):
            value = raw[key]
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                return raw, "must map job-kind strings to numbers"
            out[key] = float(value)
        return MappingProxyType(out), None
    raise AssertionError(kind)  # pragma: no cover - table typo


def _positive(name: str, unit: str, example: str, *, allow_inf: bool = False) -> _Rule:
    return _Rule(name, "float", lambda v: v > 0, "must be > 0", f"{unit}; e.g. {name}: {example}", allow_inf)


def _non_negative(name: str, unit: str, example: str) -> _Rule:
    return _Rule(name, "float", lambda v: v >= 0, "must be >= 0", f"{unit}; e.g. {name}: {example}")


def _in_range(name: str, lo: float, hi: float, unit: str, example: str, *, open_lo: bool = False) -> _Rule:
    if open_lo:
        return _Rule(name, "float", lambda v: lo < v <= hi, f"must be in ({lo:g}, {hi:g}]",
                     f"{unit}; e.g. {name}: {example}")
    return _Rule(name, "float", lambda v: lo <= v <= hi, f"must be in [{lo:g}, {hi:g}]",
                 f"{unit}; e.g. {name}: {example}")


def _one_of(name: str, choices: Sequence[str]) -> _Rule:
    return _Rule(name, "str", lambda v: v in choices, f"must be one of {', '.join(choices)}",
                 f"e.g. {name}: {choices[0]}")


def _identifier(name: str, example: str) -> _Rule:
    return _Rule(name, "str", lambda v: _ID_RE.fullmatch(v) is not None,
                 "must start with a letter or digit and use only letters, digits, '_', '-', '.', ':'",
                 f"e.g. {name}: {example}")


def _count(name: str, minimum: int, example: str) -> _Rule:
    return _Rule(name, "int", lambda v: v >= minimum, f"must be an integer >= {minimum}",
                 f"a count; e.g. {name}: {example}")


def _validate(obj: Any, rules: Sequence[_Rule], label: str,
              cross: Callable[[Any], list[tuple[str, str]]] | None = None,
              needs: Sequence[str] = ()) -> None:
    """Coerce and check every field; run ``cross`` when the fields it ``needs`` (default: all) are valid."""
    items: list[tuple[str, str]] = []
    for rule in rules:
        value, problem = rule.coerce(getattr(obj, rule.name))
        if problem is not None:
            items.append((rule.name, problem))
        else:
            object.__setattr__(obj, rule.name, value)
    bad = {name for name, _ in items}
    if cross is not None and (not bad if not needs else not bad.intersection(needs)):
        items.extend(cross(obj))
    if items:
        raise FleetError(items, source=label)


def _suggest(key: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    # Truncated names ("cutoff" for "cutoff_fidelity") score below difflib's cut-off; catch them too.
    close = close or [a for a in allowed if len(str(key)) >= 3 and str(key).lower() in a.lower()][:1]
    return f"did you mean {close[0]!r}? " if close else ""


def _unknown_keys(entry: Mapping[str, Any], allowed: Sequence[str], path: str) -> list[tuple[str, str]]:
    items = []
    for key in entry:
        if key not in allowed:
            items.append((f"{path}.{key}" if path else str(key),
                          f"unknown key {key!r}; {_suggest(key, allowed)}allowed keys: {', '.join(allowed)}"))
    return items


# --------------------------------------------------------------------------------------------------------------
# Hardware profiles and link presets.

_NODE_PHYSICS = ("data_qubits", "comm_qubits", "t1_s", "t2_s", "gate_error_1q", "gate_error_2q",
                 "gate_time_1q_s", "gate_time_2q_s", "readout_error_0", "readout_error_1", "readout_time_s",
                 "heartbeat_s")
_LINK_PHYSICS = ("attenuation_db_per_km", "scheme", "emission_efficiency", "collection_efficiency",
                 "detector_efficiency", "visibility", "bright_state_population", "prep_time_s", "memories",
                 "classical_processing_s", "classical_jitter_s")


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
        out.update({name: getattr(self, name) for name in _NODE_PHYSICS})
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
        out.update({name: getattr(self, name) for name in _LINK_PHYSICS})
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

# --------------------------------------------------------------------------------------------------------------
# Domain values.

_NODE_RULES = (
    _identifier("id", "qpu-a"),
    _one_of("profile", tuple(PROFILES)),
    _one_of("hardware_type", HARDWARE_TYPES),
    _count("data_qubits", 0, "8"),
    _count("comm_qubits", 1, "2"),
    _positive("t1_s", "seconds, .inf for no relaxation", ".inf", allow_inf=True),
    _positive("t2_s", "seconds", "0.5", allow_inf=True),
    # Fully depolarising is 3/4 (1q) and 15/16 (2q); larger values are not a probability of error.
    _in_range("gate_error_1q", 0.0, 0.75, "depolarising probability", "0.0001"),
    _in_range("gate_error_2q", 0.0, 0.9375, "depolarising probability", "0.001"),
    _positive("gate_time_1q_s", "seconds", "26.6e-6"),
    _positive("gate_time_2q_s", "seconds", "107e-6"),
    _in_range("readout_error_0", 0.0, 0.5, "P(read 1 | prepared 0)", "0.001"),
    _in_range("readout_error_1", 0.0, 0.5, "P(read 0 | prepared 1)", "0.001"),
    _positive("readout_time_s", "seconds", "1.5e-3"),
    _positive("heartbeat_s", "seconds", "1.0"),
    _one_of("role", ROLES),
)


def _node_cross(node: Node) -> list[tuple[str, str]]:
    items = []
    if node.t2_s > 2 * node.t1_s:
        items.append(("t2_s", f"must satisfy t2_s <= 2 * t1_s (physics.md §1.3), got t2_s={node.t2_s!r} with "
                              f"t1_s={node.t1_s!r} (lower t2_s to at most {2 * node.t1_s!r} or raise t1_s)"))
    if node.role == "processor" and node.data_qubits < 1:
        items.append(("data_qubits", f"a processor needs at least 1 data qubit, got {node.data_qubits!r} "
                                     "(e.g. data_qubits: 8, or role: repeater)"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One quantum node: a processor that runs jobs, or a repeater that only swaps link pairs.

    Times are seconds, error rates are probabilities. ``profile`` names the :data:`PROFILES` entry the
    node started from; ``hardware_type`` is one of :data:`HARDWARE_TYPES`.

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
        _validate(self, _NODE_RULES, f"Node(id={self.id!r})", _node_cross,
                  needs=("t1_s", "t2_s", "role", "data_qubits"))

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_LINK_RULES = (
    _Rule("id", "str", lambda v: True, "", "e.g. id: qpu-a~qpu-b"),
    _identifier("a", "qpu-a"),
    _identifier("b", "qpu-b"),
    _positive("length_km", "kilometres of fibre end to end", "2"),
    _non_negative("attenuation_db_per_km", "dB/km", "0.25"),
    _one_of("scheme", SCHEMES),
    _in_range("emission_efficiency", 0.0, 1.0, "probability", "0.5", open_lo=True),
    _in_range("collection_efficiency", 0.0, 1.0, "probability", "0.111", open_lo=True),
    _in_range("detector_efficiency", 0.0, 1.0, "probability", "0.8", open_lo=True),
    _in_range("visibility", 0.0, 1.0, "HOM visibility", "0.94"),
    _in_range("bright_state_population", 0.0, 0.5, "single-click alpha", "0.1", open_lo=True),
    _positive("prep_time_s", "seconds per attempt", "36e-6"),
    _count("memories", 1, "4"),
    _Rule("repeaters", "strs", lambda v: True, "", "a list of repeater node ids; e.g. repeaters: [rep-1]"),
    _non_negative("classical_processing_s", "seconds per message", "50e-6"),
    _non_negative("classical_jitter_s", "seconds (std-dev)", "10e-6"),
    _Rule("preset", "str", lambda v: v in LINK_PRESETS or v == "custom",
          f"must be one of {', '.join(LINK_PRESETS)}, custom", "e.g. preset: ion-photonic"),
)


def _link_cross(link: Link) -> list[tuple[str, str]]:
    items = []
    if link.a == link.b:
        items.append(("b", f"a link needs two different endpoints, got a=b={link.a!r} (name another node)"))
    for i, rep in enumerate(link.repeaters):
        if rep in (link.a, link.b):
            items.append((f"repeaters[{i}]", f"a repeater cannot be an endpoint, got {rep!r} (remove it)"))
        elif rep in link.repeaters[:i]:
            items.append((f"repeaters[{i}]", f"repeater listed twice, got {rep!r} (list each once)"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A heralded entanglement link between nodes ``a`` and ``b``, possibly through repeater nodes.

    ``length_km`` is the whole fibre; with ``repeaters`` it is split evenly into ``len(repeaters) + 1``
    segments. Efficiencies are probabilities in (0, 1]; ``bright_state_population`` is single-click's
    alpha (ignored by double-click). Times are seconds. ``preset`` names the :data:`LINK_PRESETS` entry it
    started from (``"custom"`` when built directly). ``id`` defaults to ``f"{a}~{b}"``.

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
        _validate(self, _LINK_RULES, f"Link(id={self.id!r})", _link_cross, needs=("a", "b", "repeaters"))

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


_CLASSICAL_RULES = (
    _positive("fibre_s_per_km", "seconds per km", "5e-6"),
    _non_negative("orchestrator_processing_s", "seconds per scheduling decision", "50e-6"),
    _positive("orchestrator_capacity_per_s", "decisions per second", "2000"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassicalNetwork:
    """The classical control plane: fibre delay and the central orchestrator's service model.

    ``fibre_s_per_km`` is the one-way delay (light in fibre, physics.md §1.1). The orchestrator spends
    ``orchestrator_processing_s`` per scheduling decision and serves at most ``orchestrator_capacity_per_s``
    decisions per second before requests queue (the F3 overload model).
    """

    fibre_s_per_km: float = 5e-6
    orchestrator_processing_s: float = 50e-6
    orchestrator_capacity_per_s: float = 2000.0

    def __post_init__(self) -> None:
        _validate(self, _CLASSICAL_RULES, "ClassicalNetwork")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TENANT_RULES = (
    _identifier("id", "research"),
    _positive("weight", "fair-share weight", "1.0"),
    _Rule("priority", "int", lambda v: True, "", "higher is served first; e.g. priority: 0"),
    _non_negative("rate_per_s", "Poisson job arrivals per second", "2.0"),
    _in_range("fidelity_target", 0.0, 1.0, "minimum acceptable measured fidelity", "0.8"),
    _Rule("mix", "mix", lambda v: len(v) > 0, "must name at least one job kind",
          "job kind -> probability; e.g. mix: {teleport: 0.5, pair_delivery: 0.5}"),
    _Rule("ghz_nodes", "ints", lambda v: len(v) > 0 and all(k >= 2 for k in v),
          "must be a non-empty list of GHZ sizes, each >= 2", "e.g. ghz_nodes: [3, 4]"),
    _count("shots", 1, "32"),
    _Rule("hardware_types", "strs", lambda v: all(t in HARDWARE_TYPES for t in v) and len(set(v)) == len(v),
          f"must list distinct types from {', '.join(HARDWARE_TYPES)}",
          "empty means any; e.g. hardware_types: [trapped-ion]"),
)


def _tenant_cross(tenant: Tenant) -> list[tuple[str, str]]:
    items = []
    unknown = [k for k in tenant.mix if k not in JOB_KINDS]
    if unknown:
        items.append(("mix", f"unknown job kind(s) {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(JOB_KINDS)} (rename or remove them)"))
    negative = [k for k, v in tenant.mix.items() if v < 0]
    if negative:
        items.append(("mix", f"probabilities must be >= 0, got {dict(tenant.mix)!r} (fix {', '.join(negative)})"))
    total = math.fsum(tenant.mix.values())
    if abs(total - 1.0) > _MIX_TOLERANCE:
        items.append(("mix", f"probabilities must sum to 1 (within {_MIX_TOLERANCE:g}), got sum {total!r} "
                             f"from {dict(tenant.mix)!r} (rescale them)"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """A user of the fleet: a Poisson job stream with a job mix, a priority and a fidelity target.

    ``mix`` maps job kinds (:data:`JOB_KINDS`) to probabilities summing to 1. ``ghz_nodes`` are GHZ sizes
    drawn uniformly; ``hardware_types`` restricts the tenant to those node types (empty = any).

    Raises:
        FleetError: a field is out of range, ``mix`` names an unknown kind or does not sum to 1.
    """

    id: str
    weight: float
    priority: int
    rate_per_s: float
    fidelity_target: float
    # Compared but not hashed (a mapping is unhashable), so fleets stay usable as cache keys.
    mix: Mapping[str, float] = field(hash=False)
    ghz_nodes: tuple[int, ...] = (3,)
    shots: int = 32
    hardware_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self, _TENANT_RULES, f"Tenant(id={self.id!r})", _tenant_cross, needs=("mix",))

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (tuples as lists, ``mix`` as a key-sorted dict)."""
        return {"id": self.id, "weight": self.weight, "priority": self.priority, "rate_per_s": self.rate_per_s,
                "fidelity_target": self.fidelity_target, "mix": dict(sorted(self.mix.items())),
                "ghz_nodes": list(self.ghz_nodes), "shots": self.shots,
                "hardware_types": list(self.hardware_types)}


_SCHEDULER_RULES = (
    _positive("max_attempt_time_s", "seconds of entanglement retries per link request", "1.0"),
    _positive("queue_timeout_s", "seconds a job may wait", "30"),
    _Rule("cutoff_fidelity", "float", lambda v: 0.25 <= v < 1.0, "must be in [0.25, 1)",
          "pair fidelity below which it is discarded; e.g. cutoff_fidelity: 0.8"),
    _count("max_regenerations", 0, "3"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scheduler:
    """Scheduling policy: retry budgets, queue timeout and the coherence-window cut-off (physics.md §1.3)."""

    max_attempt_time_s: float = 1.0
    queue_timeout_s: float = 30.0
    cutoff_fidelity: float = 0.8
    max_regenerations: int = 3

    def __post_init__(self) -> None:
        _validate(self, _SCHEDULER_RULES, "Scheduler")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_CALIBRATION_RULES = (
    _positive("interval_s", "seconds between a node's calibrations", "21600"),
    _non_negative("duration_s", "seconds of maintenance window", "600"),
    _non_negative("t2_drift_per_sqrt_h", "fractional step per sqrt(hour)", "0.05"),
    _non_negative("readout_drift_per_sqrt_h", "absolute step per sqrt(hour)", "0.002"),
    _non_negative("efficiency_drift_per_sqrt_h", "fractional step per sqrt(hour)", "0.03"),
    _Rule("max_degradation", "float", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)",
          "largest fractional degradation of the walk; e.g. max_degradation: 0.5"),
)


def _calibration_cross(cal: Calibration) -> list[tuple[str, str]]:
    if cal.duration_s >= cal.interval_s:
        return [("duration_s", f"must be < interval_s ({cal.interval_s!r}), got {cal.duration_s!r} "
                               "(a node would be in maintenance forever; shorten the window)")]
    return []


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Calibration drift and maintenance: bounded random walks of T2, readout error and link efficiency.

    Each node recalibrates every ``interval_s`` (staggered by node) and runs no jobs for ``duration_s``;
    calibration restores the baseline. Drift steps are per sqrt(hour); the walk never degrades a parameter
    by more than ``max_degradation`` (a fraction).
    """

    interval_s: float = 21600.0
    duration_s: float = 600.0
    t2_drift_per_sqrt_h: float = 0.05
    readout_drift_per_sqrt_h: float = 0.002
    efficiency_drift_per_sqrt_h: float = 0.03
    max_degradation: float = 0.5

    def __post_init__(self) -> None:
        _validate(self, _CALIBRATION_RULES, "Calibration", _calibration_cross)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------------------------
# The fleet and its cross-references.


def _first_few(ids: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(ids[:n])
    return shown if len(ids) <= n else f"{shown}, ... ({len(ids)} in all)"


def _cross_problems(nodes: Sequence[Mapping[str, Any]], links: Sequence[Mapping[str, Any]],
                    tenants: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Problems between entries. Entries are plain mappings, possibly with invalid values (be defensive)."""
    items: list[tuple[str, str]] = []
    node_by_id: dict[str, Mapping[str, Any]] = {}
    for i, node in enumerate(nodes):
        nid = node.get("id")
        if not isinstance(nid, str):
            continue
        if nid in node_by_id:
            items.append((f"nodes[{i}].id", f"duplicate node id {nid!r} (give each node a unique id)"))
        else:
            node_by_id[nid] = node
    known = sorted(node_by_id)
    seen_links: set[str] = set()
    for i, link in enumerate(links):
        for end in ("a", "b"):
            nid = link.get(end)
            if isinstance(nid, str) and nid not in node_by_id:
                items.append((f"links[{i}].{end}", f"unknown node {nid!r}; {_suggest(nid, known)}"
                                                   f"known nodes: {_first_few(known)}"))
        lid = link.get("id")
        if isinstance(lid, str) and lid:
            if lid in seen_links:
                items.append((f"links[{i}].id", f"duplicate link id {lid!r} (set a unique id: for parallel "
                                                "fibres, e.g. id: qpu-a~qpu-b#2)"))
            seen_links.add(lid)
        reps = link.get("repeaters")
        for j, rep in enumerate(reps if isinstance(reps, (list, tuple)) else ()):
            if not isinstance(rep, str):
                continue
            node = node_by_id.get(rep)
            if node is None:
                items.append((f"links[{i}].repeaters[{j}]", f"unknown node {rep!r}; declare it under nodes "
                                                            "with role: repeater"))
            elif node.get("role") != "repeater":
                items.append((f"links[{i}].repeaters[{j}]", f"node {rep!r} has role {node.get('role')!r}; a "
                                                            "link's repeaters must be role: repeater nodes"))
            elif isinstance(node.get("comm_qubits"), int) and node["comm_qubits"] < 2:
                items.append((f"links[{i}].repeaters[{j}]", f"repeater {rep!r} has comm_qubits="
                                                            f"{node['comm_qubits']!r}; it must hold one pair per "
                                                            "side (set comm_qubits: 2 or more)"))
    processors = [n for n in node_by_id.values() if n.get("role") == "processor"]
    if not processors:
        items.append(("nodes", "a fleet needs at least one node with role: processor"))
    seen_tenants: set[str] = set()
    for i, tenant in enumerate(tenants):
        tid = tenant.get("id")
        if isinstance(tid, str):
            if tid in seen_tenants:
                items.append((f"tenants[{i}].id", f"duplicate tenant id {tid!r} (give each tenant a unique id)"))
            seen_tenants.add(tid)
        types = tenant.get("hardware_types") or ()
        if not isinstance(types, (list, tuple)):
            continue
        eligible = [n for n in processors if not types or n.get("hardware_type") in types]
        rate = tenant.get("rate_per_s")
        if isinstance(rate, (int, float)) and rate > 0 and len(eligible) < 2:
            items.append((f"tenants[{i}].hardware_types",
                          f"only {len(eligible)} processor(s) of types {list(types) or 'any'}; jobs need at "
                          "least 2 (add processors or widen hardware_types)"))
        mix = tenant.get("mix")
        sizes = tenant.get("ghz_nodes")
        if isinstance(mix, Mapping) and isinstance(mix.get("ghz"), (int, float)) and mix["ghz"] > 0 \
                and isinstance(sizes, (list, tuple)) and all(isinstance(k, int) for k in sizes) and sizes:
            if max(sizes) > len(eligible) >= 2:
                items.append((f"tenants[{i}].ghz_nodes",
                              f"GHZ size {max(sizes)} exceeds the {len(eligible)} eligible processors "
                              f"(use sizes <= {len(eligible)})"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    """A validated fleet: nodes, links, classical network, tenants and policies.

    Raises:
        FleetError: duplicate ids, links to unknown nodes, repeaters that are not ``role: repeater``
            nodes, tenants with too few eligible processors, or no processor at all.
    """

    name: str
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    classical: ClassicalNetwork = field(default_factory=ClassicalNetwork)
    tenants: tuple[Tenant, ...] = ()
    scheduler: Scheduler = field(default_factory=Scheduler)
    calibration: Calibration = field(default_factory=Calibration)
    _node_by_id: dict[str, Node] = field(init=False, repr=False, compare=False)
    _link_by_id: dict[str, Link] = field(init=False, repr=False, compare=False)
    _adjacent: dict[str, tuple[tuple[str, Link], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items: list[tuple[str, str]] = []
        if not isinstance(self.name, str) or not self.name.strip():
            items.append(("name", f"must be a non-empty string, got {self.name!r} (e.g. name: mesh-6)"))
        for attr, cls in (("nodes", Node), ("links", Link), ("tenants", Tenant)):
            value = tuple(getattr(self, attr))
            object.__setattr__(self, attr, value)
            for i, item in enumerate(value):
                if not isinstance(item, cls):
                    items.append((f"{attr}[{i}]", f"must be a {cls.__name__}, got {type(item).__name__}"))
        for attr, cls in (("classical", ClassicalNetwork), ("scheduler", Scheduler),
                          ("calibration", Calibration)):
            if not isinstance(getattr(self, attr), cls):
                items.append((attr, f"must be a {cls.__name__}, got {type(getattr(self, attr)).__name__}"))
        if not items:
            items.extend(_cross_problems([n.to_dict() for n in self.nodes], [lk.to_dict() for lk in self.links],
                                         [t.to_dict() for t in self.tenants]))
        if items:
            raise FleetError(items, source=f"Fleet(name={self.name!r})")
        object.__setattr__(self, "_node_by_id", {n.id: n for n in self.nodes})
        object.__setattr__(self, "_link_by_id", {lk.id: lk for lk in self.links})
        adjacent: dict[str, list[tuple[str, Link]]] = {n.id: [] for n in self.nodes}
        for link in self.links:
            adjacent[link.a].append((link.b, link))
            adjacent[link.b].append((link.a, link))
        object.__setattr__(self, "_adjacent", {k: tuple(sorted(v, key=lambda e: (e[0], e[1].id)))
                                               for k, v in adjacent.items()})

    def node(self, node_id: str) -> Node:
        """The node with id ``node_id``.

        Raises:
            KeyError: no such node (the message lists known ids).
        """
        try:
            return self._node_by_id[node_id]
        except KeyError:
            raise KeyError(f"unknown node {node_id!r} in fleet {self.name!r}; known nodes: "
                           f"{_first_few(sorted(self._node_by_id))}") from None

    def link(self, link_id: str) -> Link:
        """The link with id ``link_id``.

        Raises:
            KeyError: no such link (the message lists known ids).
        """
        try:
            return self._link_by_id[link_id]
        except KeyError:
            raise KeyError(f"unknown link {link_id!r} in fleet {self.name!r}; known links: "
                           f"{_first_few(sorted(self._link_by_id))}") from None

    def processors(self) -> tuple[Node, ...]:
        """Nodes with ``role == "processor"``, in file order."""
        return tuple(n for n in self.nodes if n.role == "processor")

    def repeaters(self) -> tuple[Node, ...]:
        """Nodes with ``role == "repeater"``, in file order."""
        return tuple(n for n in self.nodes if n.role == "repeater")

    def links_of(self, node_id: str) -> tuple[Link, ...]:
        """Links with ``node_id`` as an endpoint, in file order (not links it only repeats for)."""
        self.node(node_id)
        return tuple(lk for lk in self.links if node_id in (lk.a, lk.b))

    def links_via(self, node_id: str) -> tuple[Link, ...]:
        """Links that pass through repeater ``node_id``, in file order."""
        self.node(node_id)
        return tuple(lk for lk in self.links if node_id in lk.repeaters)

    def neighbours(self, node_id: str) -> tuple[str, ...]:
        """Ids of nodes one link away from ``node_id``, sorted."""
        self.node(node_id)
        return tuple(sorted({other for other, _ in self._adjacent[node_id]}))

    def path(self, a: str, b: str) -> tuple[Link, ...]:
        """A fewest-hop route of links from ``a`` to ``b`` (empty when ``a == b``).

        Breadth-first search visiting neighbours in (node id, link id) order, so ties break
        deterministically towards smaller ids.

        Raises:
            KeyError: ``a`` or ``b`` is not a node.
            FleetError: ``b`` is unreachable from ``a``.
        """
        self.node(a)
        self.node(b)
        if a == b:
            return ()
        parent: dict[str, tuple[str, Link]] = {}
        seen = {a}
        queue = deque([a])
        while queue:
            here = queue.popleft()
            for other, link in self._adjacent[here]:
                if other in seen:
                    continue
                seen.add(other)
                parent[other] = (here, link)
                if other == b:
                    route: list[Link] = []
                    node = b
                    while node != a:
                        node, hop = parent[node]
                        route.append(hop)
                    return tuple(reversed(route))
                queue.append(other)
        raise FleetError([("links", f"no route from {a!r} to {b!r}: they are in disconnected parts of the "
                                    "fleet (add a link between the parts)")], source=f"Fleet(name={self.name!r})")

    def to_dict(self) -> dict[str, Any]:
        """The canonical plain form: every field explicit, accepted by :func:`fleet_from_dict`.

        ``math.inf`` stays a float (YAML ``.inf``; ``json.dumps`` writes ``Infinity``).
        """
        return {
            "version": 1,
            "kind": "Fleet",
            "name": self.name,
            "nodes": [n.to_dict() for n in self.nodes],
            "links": [lk.to_dict() for lk in self.links],
            "classical": self.classical.to_dict(),
            "tenants": [t.to_dict() for t in self.tenants],
            "scheduler": self.scheduler.to_dict(),
            "calibration": self.calibration.to_dict(),
        }


def default_tenants(processors: int) -> tuple[Tenant, ...]:
    """The tenant set used when a fleet file has no ``tenants`` key.

    A general-purpose tenant at 1 job/s over any hardware (no GHZ jobs when fewer than 3 processors) and a
    canary prober at 0.2 jobs/s with top priority; none when fewer than 2 processors (jobs need two).

    Args:
        processors: number of processors in the fleet.

    Examples:
        >>> [t.id for t in default_tenants(4)]
        ['general', 'canary']
    """
    if processors < 2:
        return ()
    ghz = 0.1 if processors >= 3 else 0.0
    mix = {"teleport": 0.3, "teleported_cnot": 0.2, "ghz": ghz, "pair_delivery": 0.45 - ghz, "canary": 0.05}
    return (
        Tenant(id="general", weight=1.0, priority=0, rate_per_s=1.0, fidelity_target=0.5,
               mix={k: v for k, v in mix.items() if v > 0}, ghz_nodes=(3,)),
        Tenant(id="canary", weight=0.1, priority=10, rate_per_s=0.2, fidelity_target=0.5, mix={"canary": 1.0},
               shots=64),
    )


# --------------------------------------------------------------------------------------------------------------
# Loading.

_TOP_KEYS = ("version", "kind", "name", "defaults", "nodes", "links", "classical", "tenants", "scheduler",
             "calibration")
_NODE_KEYS = tuple(r.name for r in _NODE_RULES)
_LINK_KEYS = tuple(r.name for r in _LINK_RULES)
_TENANT_KEYS = tuple(r.name for r in _TENANT_RULES)
_TENANT_LOADER_DEFAULTS = {"weight": 1.0, "priority": 0}


def _entries(doc: Mapping[str, Any], key: str, items: list[tuple[str, str]], *, required: bool,
             hint: str) -> list[Any]:
    raw = doc.get(key)
    if raw is None:
        if required:
            items.append((key, f"is required ({hint})"))
        return []
    if not isinstance(raw, list):
        items.append((key, f"must be a list, got {type(raw).__name__} ({hint})"))
        return []
    return raw


def _mapping(value: Any, path: str, items: list[tuple[str, str]], hint: str) -> Mapping[str, Any] | None:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        items.append((path, f"must be a mapping, got {value!r} ({hint})"))
        return None
    return value


def _construct(cls: type, kwargs: dict[str, Any], path: str, items: list[tuple[str, str]]) -> Any:
    try:
        return cls(**kwargs)
    except FleetError as err:
        items.extend((f"{path}.{p}" if path else p, text) for p, text in err.items)
        return None


def _load_node(i: int, raw: Any, defaults: Mapping[str, Any], items: list[tuple[str, str]]
               ) -> tuple[dict[str, Any], Node | None]:
    path = f"nodes[{i}]"
    entry = _mapping(raw, path, items, "e.g. - {id: qpu-a, profile: ion-photonic}")
    if entry is None:
        return {}, None
    items.extend(_unknown_keys(entry, _NODE_KEYS, path))
    profile_name = entry.get("profile", defaults.get("profile", _MISSING))
    profile = PROFILES.get(profile_name) if isinstance(profile_name, str) else None
    if profile is None:
        # Without a profile every physics field would also be reported missing; one line is clearer.
        items.append((f"{path}.profile", f"must be one of {', '.join(PROFILES)}, got {profile_name!r} "
                                         "(e.g. profile: ion-photonic; any field may then be overridden)"))
        return {k: v for k, v in entry.items() if k in _NODE_KEYS}, None
    merged: dict[str, Any] = {name: _MISSING for name in _NODE_KEYS if name != "role"}
    merged.update(profile.node_fields())
    merged.update({k: v for k, v in defaults.items() if k in _NODE_KEYS})
    merged.update({k: v for k, v in entry.items() if k in _NODE_KEYS})
    merged["profile"] = profile_name
    return merged, _construct(Node, merged, path, items)


def _load_link(i: int, raw: Any, defaults: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]],
               items: list[tuple[str, str]]) -> tuple[dict[str, Any], Link | None]:
    path = f"links[{i}]"
    entry = _mapping(raw, path, items, "e.g. - {a: qpu-a, b: qpu-b, length_km: 2}")
    if entry is None:
        return {}, None
    items.extend(_unknown_keys(entry, _LINK_KEYS, path))
    preset_name = entry.get("preset", defaults.get("preset"))
    if preset_name is None:
        a_profile = nodes.get(entry.get("a"), {}).get("profile") if isinstance(entry.get("a"), str) else None
        preset_name = a_profile if a_profile in LINK_PRESETS else _MISSING
    preset = LINK_PRESETS.get(preset_name) if isinstance(preset_name, str) else None
    if preset is None:
        got = "none (endpoint a has no profile with a same-named preset)" if preset_name is _MISSING \
            else repr(preset_name)
        items.append((f"{path}.preset", f"must be one of {', '.join(LINK_PRESETS)}, got {got} "
                                        "(e.g. preset: ion-photonic)"))
        return {k: v for k, v in entry.items() if k in _LINK_KEYS}, None
    merged: dict[str, Any] = {name: _MISSING for name in _LINK_KEYS if name not in ("id", "repeaters")}
    merged.update(preset.link_fields())
    merged.update({k: v for k, v in defaults.items() if k in _LINK_KEYS})
    merged.update({k: v for k, v in entry.items() if k in _LINK_KEYS})
    merged["preset"] = preset_name
    return merged, _construct(Link, merged, path, items)


def fleet_from_dict(doc: Mapping[str, Any], *, source: str = "<fleet>") -> Fleet:
    """Build and validate a :class:`Fleet` from a parsed fleet document.

    Args:
        doc: the document (``version: 1``, ``kind: Fleet``, ``name``, ``nodes``, ``links`` and optional
            ``defaults``, ``classical``, ``tenants``, ``scheduler``, ``calibration``).
        source: the name used as the prefix of every problem (usually the file name).

    Returns:
        The validated fleet.

    Raises:
        FleetError: every problem found, one per line, each naming ``source``, the field path and a fix.

    Examples:
        >>> fleet = fleet_from_dict({"version": 1, "kind": "Fleet", "name": "pair",
        ...     "nodes": [{"id": "a", "profile": "nv"}, {"id": "b", "profile": "nv"}],
        ...     "links": [{"a": "a", "b": "b", "length_km": 0.002}]})
        >>> fleet.link("a~b").scheme, [t.id for t in fleet.tenants]
        ('single-click', ['general', 'canary'])
        >>> fleet_from_dict({"version": 1, "kind": "Fleet", "name": "x", "nodes": [], "links": [],
        ...                  "scheduler": {"cutoff": 0.9}}, source="x.yaml")
        Traceback (most recent call last):
        ...
        qfleet.simulator.fleet.FleetError: 2 problems (fix all of them):
        x.yaml: scheduler.cutoff: unknown key 'cutoff'; did you mean 'cutoff_fidelity'? allowed keys: \
max_attempt_time_s, queue_timeout_s, cutoff_fidelity, max_regenerations
        x.yaml: nodes: a fleet needs at least one node with role: processor
    """
    items: list[tuple[str, str]] = []
    if not isinstance(doc, Mapping):
        raise FleetError([("", f"must be a mapping with version, kind, name, nodes, links; got {doc!r}")],
                         source=source)
    items.extend(_unknown_keys(doc, _TOP_KEYS, ""))
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        items.append(("version", f"must be 1, got {doc.get('version')!r} (add version: 1)"))
    if doc.get("kind") != "Fleet":
        items.append(("kind", f"must be 'Fleet', got {doc.get('kind')!r} (add kind: Fleet)"))
    name = doc.get("name", _MISSING)
    if not isinstance(name, str) or not name.strip():
        items.append(("name", f"must be a non-empty string, got {name!r} (e.g. name: mesh-6)"))

    defaults = _mapping(doc.get("defaults"), "defaults", items, "e.g. defaults: {node: {t2_s: 0.5}}") or {}
    items.extend(_unknown_keys(defaults, ("node", "link", "tenant"), "defaults"))
    node_defaults = _mapping(defaults.get("node"), "defaults.node", items, "node fields") or {}
    link_defaults = _mapping(defaults.get("link"), "defaults.link", items, "link fields") or {}
    tenant_defaults = _mapping(defaults.get("tenant"), "defaults.tenant", items, "tenant fields") or {}
    items.extend(_unknown_keys(node_defaults, _NODE_KEYS, "defaults.node"))
    items.extend(_unknown_keys(link_defaults, _LINK_KEYS, "defaults.link"))
    items.extend(_unknown_keys(tenant_defaults, _TENANT_KEYS, "defaults.tenant"))

    raw_nodes = _entries(doc, "nodes", items, required=True, hint="a list of nodes; e.g. - {id: qpu-a, profile: nv}")
    node_pairs = [_load_node(i, raw, node_defaults, items) for i, raw in enumerate(raw_nodes)]
    node_dicts = [m for m, _ in node_pairs]
    by_id = {m["id"]: m for m in node_dicts if isinstance(m.get("id"), str)}

    raw_links = _entries(doc, "links", items, required=True, hint="a list of links; e.g. - {a: x, b: y, length_km: 2}")
    link_pairs = [_load_link(i, raw, link_defaults, by_id, items) for i, raw in enumerate(raw_links)]
    link_dicts = []
    for merged, link in link_pairs:
        d = dict(merged)
        if link is not None:
            d["id"] = link.id
        elif "id" not in d and isinstance(d.get("a"), str) and isinstance(d.get("b"), str):
            d["id"] = f"{d['a']}~{d['b']}"
        link_dicts.append(d)

    tenant_dicts: list[dict[str, Any]] = []
    tenants: list[Tenant | None] = []
    if "tenants" in doc:
        for i, raw in enumerate(_entries(doc, "tenants", items, required=False, hint="a list of tenants")):
            path = f"tenants[{i}]"
            entry = _mapping(raw, path, items, "e.g. - {id: research, rate_per_s: 2, ...}")
            if entry is None:
                continue
            items.extend(_unknown_keys(entry, _TENANT_KEYS, path))
            merged = {name: _MISSING for name in ("id", "rate_per_s", "fidelity_target", "mix")}
            merged.update(_TENANT_LOADER_DEFAULTS)
            merged.update({k: v for k, v in tenant_defaults.items() if k in _TENANT_KEYS})
            merged.update({k: v for k, v in entry.items() if k in _TENANT_KEYS})
            tenant_dicts.append(merged)
            tenants.append(_construct(Tenant, merged, path, items))
    else:
        processors = sum(1 for m in node_dicts if m.get("role", "processor") == "processor")
        tenants = list(default_tenants(processors))
        tenant_dicts = [t.to_dict() for t in tenants if t is not None]

    policies: dict[str, Any] = {}
    for key, cls, rules in (("classical", ClassicalNetwork, _CLASSICAL_RULES), ("scheduler", Scheduler,
                            _SCHEDULER_RULES), ("calibration", Calibration, _CALIBRATION_RULES)):
        entry = _mapping(doc.get(key), key, items, f"{cls.__name__} fields")
        if entry is None:
            continue
        allowed = tuple(r.name for r in rules)
        items.extend(_unknown_keys(entry, allowed, key))
        policies[key] = _construct(cls, {k: v for k, v in entry.items() if k in allowed}, key, items)

    for d in node_dicts:
        d.setdefault("role", "processor")
    items.extend(_cross_problems(node_dicts, link_dicts, tenant_dicts))
    if items:
        raise FleetError(items, source=source)
    return Fleet(name=name, nodes=tuple(n for _, n in node_pairs if n is not None),
                 links=tuple(lk for _, lk in link_pairs if lk is not None),
                 classical=policies["classical"], tenants=tuple(t for t in tenants if t is not None),
                 scheduler=policies["scheduler"], calibration=policies["calibration"])


def load_fleet(path: str | Path) -> Fleet:
    """Load and validate a fleet YAML file (``yaml.safe_load``).

    Raises:
        FleetError: the file is unreadable, not YAML, or breaks any rule (all problems at once).
    """
    p = Path(path)
    return fleet_from_dict(read_yaml_file(p, "fleet", FleetError), source=p.name)


def read_yaml_file(path: Path, kind: str, error: type[ProblemsError]) -> Any:
    """The parsed YAML document at ``path``; an unreadable file or bad YAML raises ``error`` naming the ``kind`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error([("", f"cannot read the {kind} file ({err.strerror}); check the path {str(path)!r}")],
                    source=path.name) from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error([("", f"not valid YAML: {err}".replace("\n", " "))], source=path.name) from err


def builtin_fleet_path(name: str) -> Path:
    """Path of a built-in topology file, ``simulator/fleets/<name>.yaml``.

    Args:
        name: one of :data:`BUILTIN_FLEETS` (``line``, ``star``, ``mesh``, ``fleet100``).

    Raises:
        FleetError: ``name`` is not a built-in fleet.

    Examples:
        >>> builtin_fleet_path("mesh").name
        'mesh.yaml'
    """
    if name not in BUILTIN_FLEETS:
        raise FleetError([("", f"unknown built-in fleet {name!r}; {_suggest(name, BUILTIN_FLEETS)}"
                               f"choose one of {', '.join(BUILTIN_FLEETS)}")], source="builtin_fleet_path")
    return _FLEET_DIR / f"{name}.yaml"
