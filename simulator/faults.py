"""Fault schedules: the eight failure modes F1-F8, timed in integer nanoseconds from the run start.

A fault file lists faults with a kind, a target, a start, a duration, a magnitude whose meaning depends
on the kind (see :class:`Fault`) and an onset ``profile``: ``step`` (full magnitude for the whole window),
``ramp`` (grows linearly from no effect to the full magnitude over ``ramp``, default the whole duration) or
``intermittent`` (seeded on/off bursts, one burst of ``duty * period`` per ``period``). Starts, durations, ramps
and periods are Prometheus durations (``20m``, ``1h45m``; see :func:`qfleet.units.parse_duration`) or exact
``*_ns`` integers. Loading reports every problem at once and, given a fleet, checks that each target exists and
has the right type for its kind. docs/faults.md gives each kind's physics, units and sources.

Example:
    >>> from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
    >>> fleet = load_fleet(builtin_fleet_path("mesh"))
    >>> schedule = load_faults(builtin_faults_path("example"), fleet)
    >>> sorted(f.kind.value for f in schedule.faults)
    ['F1', 'F2', 'F3', 'F4', 'F5', 'F6', 'F7', 'F8']
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from qfleet.problems import Problem, Problems, ProblemsError, read_yaml
from qfleet.simulator.fleet import Fleet
from qfleet.simulator.rules import suggest, unknown_keys
from qfleet.units import DurationError, format_duration, parse_duration

__all__ = [
    "BUILTIN_FAULTS",
    "ORCHESTRATOR",
    "Fault",
    "FaultError",
    "FaultKind",
    "FaultSchedule",
    "PROFILES",
    "builtin_faults_path",
    "faults_from_dict",
    "load_faults",
    "magnitude_unit",
]

ORCHESTRATOR = "orchestrator"
"""The F3 target meaning the central orchestrator rather than one link's classical channel."""
BUILTIN_FAULTS: tuple[str, ...] = ("example", "fleet100-day")
"""Names accepted by :func:`builtin_faults_path`."""

PROFILES: tuple[str, ...] = ("step", "ramp", "intermittent")
"""Onset profiles: full effect at once, a linear ramp from none to full, or seeded on/off bursts."""

_FAULT_DIR = Path(__file__).resolve().parent / "faults"
_DURATION_HINT = "a Prometheus duration, e.g. 90s, 30m, 1h45m, 1d, 250ms"


class FaultError(ProblemsError):
    """A fault file or fault value breaks one or more rules; ``problems`` holds each (field path, message, fix)."""


_TITLES = {
    "F1": "entanglement loss",
    "F2": "decoherence",
    "F3": "classical latency spike",
    "F4": "readout miscalibration",
    "F5": "node outage",
    "F6": "crosstalk",
    "F7": "scheduler deadlock",
    "F8": "unauthorized control commands",
}


class FaultKind(StrEnum):
    """The eight failure modes (a ``str`` enum: ``FaultKind.F1 == "F1"``). ``.title`` is the human name.

    Examples:
        >>> FaultKind("F5").title
        'node outage'
        >>> FaultKind.parse("link-drop") is FaultKind.F1
        True
    """

    F1 = "F1"
    F2 = "F2"
    F3 = "F3"
    F4 = "F4"
    F5 = "F5"
    F6 = "F6"
    F7 = "F7"
    F8 = "F8"

    @property
    def title(self) -> str:  # type: ignore[override]  # deliberately shadows str.title with the human name
        """Human name, e.g. ``"entanglement loss"``."""
        return _TITLES[self.value]

    @classmethod
    def parse(cls, text: object) -> FaultKind:
        """The kind named by ``"F1"``..``"F8"`` (any case) or an alias such as ``"link_degradation"``.

        Raises:
            FaultError: ``text`` names no kind (the message lists the accepted names).
        """
        key = re.sub(r"[\s\-]+", "_", text.strip().lower()) if isinstance(text, str) else None
        if key is not None and key.upper() in cls.__members__:
            return cls[key.upper()]
        if key is not None and key in _ALIASES:
            return cls(_ALIASES[key])
        raise FaultError([Problem("type", f"unknown fault type {text!r}", f"{suggest(str(key), list(_ALIASES))}use "
                                  f"F1..F8 or one of {', '.join(sorted(_ALIASES))}", "unknown_kind")],
                         source="FaultKind")


_ALIASES = {
    "entanglement_loss": "F1", "link_degradation": "F1", "link_drop": "F1", "link_down": "F1",
    "decoherence": "F2", "thermal_event": "F2", "decoherence_spike": "F2",
    "latency_spike": "F3", "classical_latency": "F3", "orchestrator_overload": "F3",
    "readout_miscalibration": "F4", "detector_drift": "F4", "readout_drift": "F4",
    "node_outage": "F5", "outage": "F5", "heartbeat_loss": "F5",
    "crosstalk": "F6", "correlated_errors": "F6",
    "scheduler_deadlock": "F7", "deadlock": "F7",
    "unauthorized_command": "F8", "unauthorised_command": "F8", "unauthorized_commands": "F8",
    "unauthorised_commands": "F8", "rogue_command": "F8",
}

# kind -> (test, rule text, example); magnitudes whose kind ignores them must be 1.
_MAGNITUDE_RULES: dict[str, tuple[Callable[[float], bool], str, str]] = {
    "F1": (lambda m: 0.0 <= m <= 1.0, "a factor on the link's heralding success in [0, 1] (0 = link down)",
           "magnitude: 0.0"),
    "F2": (lambda m: m >= 1.0, "a factor >= 1 on the node's platform: NV optical-linewidth broadening, ion "
                               "motional heating-rate rise, superconducting T1 divisor (docs/faults.md)",
           "magnitude: 10"),
    "F3": (lambda m: m > 0.0, "extra one-way classical latency in seconds, > 0", "magnitude: 0.2"),
    "F4": (lambda m: 0.0 < m <= 0.5, "an absolute readout-error increase in (0, 0.5]", "magnitude: 0.05"),
    "F5": (lambda m: m == 1.0, "ignored, so it must be 1 or omitted", "omit magnitude"),
    "F6": (lambda m: 0.0 < m <= 1.0, "a correlated-error probability per operation in (0, 1]",
           "magnitude: 0.02"),
    "F7": (lambda m: m == 1.0, "ignored, so it must be 1 or omitted", "omit magnitude"),
    "F8": (lambda m: m > 0.0, "unauthorized commands per second, > 0", "magnitude: 0.5"),
}
_DEFAULT_MAGNITUDE = {"F5": 1.0, "F7": 1.0}
# The magnitude a kind has no effect at (a ramp starts there; an intermittent fault's off phase sits there).
_NEUTRAL = {"F1": 1.0, "F2": 1.0, "F3": 0.0, "F4": 0.0, "F5": 0.0, "F6": 0.0, "F7": 0.0, "F8": 0.0}
# Onset profile of a fault-file entry that names none: readout drifts slowly (physics.md 2.1), the rest switch.
_DEFAULT_PROFILE = {"F4": "ramp"}
# Binary faults (a node is down or not, a cycle exists or not) cannot ramp.
_BINARY = ("F5", "F7")
_DEFAULT_PERIOD_NS = 600_000_000_000  # 10 min
_UNITS = {
    "F1": "factor on the link's heralding success (1 = calibrated, 0 = cut)",
    "F2": "factor >= 1 (platform-specific, see docs/faults.md)",
    "F3": "seconds of extra one-way classical latency",
    "F4": "probability added to both readout errors",
    "F5": "none",
    "F6": "probability of a correlated error per operation",
    "F7": "none",
    "F8": "commands per second",
}
_F2_UNITS = {
    "nv-centre": "optical linewidth broadening factor (link heralding x 1/m per NV arm, HOM visibility x 2/(m+1))",
    "trapped-ion": "motional heating-rate factor (2q gate error x m, 1q x sqrt(m))",
    "superconducting": "T1 divisor, chip-wide (T2 <= 2 T1)",
}


def magnitude_unit(kind: FaultKind | str, hardware_type: str | None = None) -> str:
    """What a ``kind`` fault's magnitude measures (F2: on ``hardware_type``'s platform when given).

    Examples:
        >>> magnitude_unit("F3")
        'seconds of extra one-way classical latency'
        >>> magnitude_unit("F2", "superconducting")
        'T1 divisor, chip-wide (T2 <= 2 T1)'
    """
    key = FaultKind.parse(kind).value
    if key == "F2" and hardware_type is not None:
        return _F2_UNITS.get(hardware_type, "factor dividing T1 and T2")
    return _UNITS[key]
_LINK_KINDS = ("F1",)
_NODE_KINDS = ("F2", "F4", "F5", "F6", "F7", "F8")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _spell(ns: int) -> str:
    """``ns`` as a duration when it has one (whole milliseconds), else as ``start_ns: <ns>``."""
    try:
        return format_duration(ns)
    except DurationError:
        return f"start_ns: {ns}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One injected fault, active on ``[start_ns, start_ns + duration_ns)`` from the run start.

    ``target`` is a link id (F1; F3 may also target ``"orchestrator"``) or a node id (F2, F4-F8). For F7
    ``target`` is the anchor of the resource cycle and ``nodes`` may list the whole cycle (anchor first).

    ``magnitude`` per kind:

    - F1: factor on the link's heralding success probability in [0, 1] (0 = link down)
    - F2: factor dividing the node's T1 and T2, >= 1
    - F3: extra one-way classical latency in seconds (> 0), added per message (orchestrator: per decision)
    - F4: absolute readout-error increase added to both readout_error_0 and _1, in (0, 0.5]
    - F5, F7: ignored (must be 1)
    - F6: correlated-error probability per operation in (0, 1]
    - F8: unauthorized commands per second (> 0); ``principal`` names the caller (default ``"unknown"``)

    F2's factor acts on what fails first on each platform (docs/faults.md): an NV centre's optical interface
    (heralding and visibility of its links), an ion trap's motional mode (gate errors), a superconducting chip's
    T1 (all qubits); on other platforms it divides T1 and T2.

    ``profile`` is how the fault sets in (:data:`PROFILES`): ``step``; ``ramp``, the effect growing linearly
    from none to ``magnitude`` over ``ramp_ns`` (0 = the whole duration); ``intermittent``, one burst of
    ``duty * period_ns`` at a seeded offset in each ``period_ns`` (defaults: 10 min or the duration if
    shorter, duty 0.5, seed from the id). F5 and F7 are on or off, so they do not ramp. :meth:`level` and
    :meth:`effective` give the ground truth at any time.

    Raises:
        FaultError: any field breaks its rule (all problems at once).

    Examples:
        >>> f = Fault(id="outage", kind=FaultKind.F5, target="qpu-a", start_ns=10, duration_ns=5)
        >>> f.end_ns(), f.active(14), f.active(15)
        (15, True, False)
        >>> r = Fault(id="drift", kind=FaultKind.F4, target="qpu-a", start_ns=0, duration_ns=100, magnitude=0.1,
        ...           profile="ramp")
        >>> r.ramp_ns, r.effective(50), r.effective(100)
        (100, 0.05, 0.0)
    """

    id: str
    kind: FaultKind
    target: str
    start_ns: int
    duration_ns: int
    magnitude: float = 1.0
    principal: str | None = None
    nodes: tuple[str, ...] = ()
    profile: str = "step"
    ramp_ns: int = 0
    period_ns: int = 0
    duty: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        found = Problems(source=f"Fault(id={self.id!r})")
        kind = self._check_kind(found)
        self._check_identity(found)
        self._check_times(found)
        self._check_magnitude(kind, found)
        self._check_nodes(kind, found)
        self._check_principal(kind, found)
        self._check_profile(kind, found)
        found.raise_if_any(FaultError)

    def _check_profile(self, kind: FaultKind | None, found: Problems) -> None:
        """The onset profile and its parameters; fills in the defaults (ramp over the duration, 10 min, 0.5)."""
        prof = self.profile
        if prof not in PROFILES:
            found.add("profile", f"must be one of {', '.join(PROFILES)}, got {prof!r}",
                      f"{suggest(str(prof), list(PROFILES))}e.g. profile: ramp", "bad_profile")
            return
        if kind is not None and kind.value in _BINARY and prof == "ramp":
            found.add("profile", f"{kind.value} ({kind.title}) is on or off, so it cannot ramp",
                      "use profile: step or profile: intermittent", "binary_ramp")
        duration = self.duration_ns if _is_int(self.duration_ns) and self.duration_ns > 0 else None
        for name, wants in (("ramp_ns", "ramp"), ("period_ns", "intermittent"), ("duty", "intermittent"),
                            ("seed", "intermittent")):
            value = getattr(self, name)
            if value not in (0, None) and prof != wants:
                found.add(name, f"only profile: {wants} takes {name.removesuffix('_ns')}, got {value!r}",
                          f"remove it or set profile: {wants}", "wrong_profile")
        if prof == "ramp":
            self._check_ns("ramp_ns", duration, found, "ramp: 20m")
        elif prof == "intermittent":
            if self.period_ns == 0 and duration is not None:
                object.__setattr__(self, "period_ns", min(duration, _DEFAULT_PERIOD_NS))
            else:
                self._check_ns("period_ns", duration, found, "period: 5m")
            duty = self.duty
            if isinstance(duty, bool) or not isinstance(duty, (int, float)) or not 0.0 <= duty < 1.0:
                found.add("duty", f"must be a fraction of each period in (0, 1), got {duty!r}", "e.g. duty: 0.3",
                          "out_of_range")
            else:
                object.__setattr__(self, "duty", float(duty) or 0.5)
            if self.seed is None:
                object.__setattr__(self, "seed", zlib.crc32(str(self.id).encode()))
            elif not _is_int(self.seed) or self.seed < 0:
                found.add("seed", f"must be an integer >= 0, got {self.seed!r}", "e.g. seed: 7", "wrong_type")

    def _check_ns(self, name: str, duration: int | None, found: Problems, example: str) -> None:
        """``ramp_ns``/``period_ns``: 0 means the whole duration, else an integer in (0, duration]."""
        value = getattr(self, name)
        if value == 0 and not isinstance(value, bool):
            if duration is not None:  # else the duration's own problem is reported
                object.__setattr__(self, name, duration)
        elif not _is_int(value) or value <= 0 or (duration is not None and value > duration):
            found.add(name, f"must be an integer number of ns in (0, duration_ns={duration}], got {value!r}",
                      f"e.g. {example}, at most the fault's duration", "out_of_range")

    def _check_kind(self, found: Problems) -> FaultKind | None:
        """The kind, parsed from an alias when given as text (None when it names no kind)."""
        if isinstance(self.kind, FaultKind):
            return self.kind
        try:
            kind = FaultKind.parse(self.kind)
        except FaultError as err:
            found.items.extend(err.problems)
            return None
        object.__setattr__(self, "kind", kind)
        return kind

    def _check_identity(self, found: Problems) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            found.add("id", f"must be a non-empty string, got {self.id!r}", "e.g. id: link-drop", "wrong_type")
        if not isinstance(self.target, str) or not self.target.strip():
            found.add("target", f"must be a non-empty string, got {self.target!r}", "a node or link id", "wrong_type")

    def _check_times(self, found: Problems) -> None:
        if not _is_int(self.start_ns) or self.start_ns < 0:
            found.add("start_ns", f"must be an integer >= 0, got {self.start_ns!r}", "ns from the run start",
                      "out_of_range")
        if not _is_int(self.duration_ns) or self.duration_ns <= 0:
            found.add("duration_ns", f"must be an integer > 0, got {self.duration_ns!r}", "e.g. duration: 30m",
                      "out_of_range")

    def _check_magnitude(self, kind: FaultKind | None, found: Problems) -> None:
        mag = self.magnitude
        if isinstance(mag, bool) or not isinstance(mag, (int, float)) or not math.isfinite(mag):
            found.add("magnitude", f"must be a finite number, got {mag!r}", "e.g. magnitude: 0.5", "wrong_type")
            return
        if kind is None:
            return
        object.__setattr__(self, "magnitude", float(mag))
        test, rule, example = _MAGNITUDE_RULES[kind.value]
        if not test(float(mag)):
            found.add("magnitude", f"{kind.value} ({kind.title}) takes {rule}, got {mag!r}", example, "out_of_range")

    def _check_nodes(self, kind: FaultKind | None, found: Problems) -> None:
        nodes = self.nodes
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, (list, tuple)) \
                or not all(isinstance(n, str) and n.strip() for n in nodes):
            found.add("nodes", f"must be a list of node ids, got {nodes!r}", "e.g. nodes: [qpu-a, qpu-b]",
                      "wrong_type")
            return
        object.__setattr__(self, "nodes", tuple(nodes))
        if nodes and kind is not FaultKind.F7:
            found.add("nodes", f"only F7 (scheduler deadlock) takes a node list, got {list(nodes)!r}",
                      "use one fault per target", "not_f7")
        elif nodes and (len(nodes) < 2 or len(set(nodes)) != len(nodes) or nodes[0] != self.target):
            found.add("target", f"an F7 cycle needs >= 2 distinct nodes with the anchor first, got {list(nodes)!r}",
                      "e.g. target: [qpu-a, qpu-b, qpu-c]", "bad_cycle")

    def _check_principal(self, kind: FaultKind | None, found: Problems) -> None:
        if kind is FaultKind.F8:
            if self.principal is None:
                object.__setattr__(self, "principal", "unknown")
            elif not isinstance(self.principal, str) or not self.principal.strip():
                found.add("principal", f"must be a non-empty string, got {self.principal!r}",
                          "e.g. principal: intruder-7", "wrong_type")
        elif self.principal is not None and kind is not None:
            found.add("principal", f"only F8 (unauthorized control commands) takes a principal, got "
                                   f"{self.principal!r}", "remove it", "not_f8")

    def end_ns(self) -> int:
        """First nanosecond after the fault: ``start_ns + duration_ns``."""
        return self.start_ns + self.duration_ns

    def active(self, t_ns: int) -> bool:
        """Whether the fault is active at ``t_ns`` (``start_ns <= t_ns < end_ns()``)."""
        return self.start_ns <= t_ns < self.start_ns + self.duration_ns

    def level(self, t_ns: int) -> float:
        """How much of the fault is present at ``t_ns`` (ns from the run start): 0 outside its window, else 1
        (step), ``(t - start) / ramp_ns`` capped at 1 (ramp), or 1 inside a burst and 0 between (intermittent)."""
        if not self.active(t_ns):
            return 0.0
        if self.profile == "ramp":
            return min(1.0, (t_ns - self.start_ns) / self.ramp_ns)
        if self.profile == "intermittent":
            lo, hi = self._burst((t_ns - self.start_ns) // self.period_ns)
            return 1.0 if lo <= t_ns < hi else 0.0
        return 1.0

    def effective(self, t_ns: int) -> float:
        """The magnitude in effect at ``t_ns``: between the kind's no-effect value (F1/F2: 1; others: 0) and
        ``magnitude``, in proportion to :meth:`level`."""
        return self.scaled(self.level(t_ns))

    def scaled(self, level: float) -> float:
        """The magnitude at ``level`` in [0, 1]: the kind's no-effect value at 0, ``magnitude`` at 1, linear."""
        neutral = _NEUTRAL[self.kind.value]
        return neutral + (self.magnitude - neutral) * level

    def bursts(self) -> tuple[tuple[int, int], ...]:
        """The ``[on, off)`` windows (ns from the run start): the whole window, or each intermittent burst."""
        if self.profile != "intermittent":
            return ((self.start_ns, self.end_ns()),)
        n = -(-self.duration_ns // self.period_ns)
        return tuple(b for b in (self._burst(k) for k in range(n)) if b[0] < b[1])

    def _burst(self, k: int) -> tuple[int, int]:
        """Period ``k``'s burst: ``duty * period_ns`` long at a seeded uniform offset, clipped to the window."""
        period = self.period_ns
        on = round(self.duty * period)
        # A string seed is hashed (sha512) by random.Random: the same pattern on every platform and run.
        offset = int(random.Random(f"{self.seed}/{k}").random() * (period - on))
        lo = self.start_ns + k * period + offset
        return lo, min(lo + on, self.end_ns())

    def cycle(self) -> tuple[str, ...]:
        """F7's resource cycle as listed (``nodes``), or ``(target,)`` when only the anchor is given."""
        return self.nodes or (self.target,)

    def to_dict(self) -> dict[str, Any]:
        """Plain form accepted by :func:`faults_from_dict` (exact integer ns, ``type`` as ``"F1"``...)."""
        out: dict[str, Any] = {"id": self.id, "type": self.kind.value,
                               "target": list(self.nodes) if self.nodes else self.target,
                               "start_ns": self.start_ns, "duration_ns": self.duration_ns,
                               "magnitude": self.magnitude}
        if self.principal is not None:
            out["principal"] = self.principal
        out["profile"] = self.profile
        if self.profile == "ramp":
            out["ramp_ns"] = self.ramp_ns
        elif self.profile == "intermittent":
            out.update(period_ns=self.period_ns, duty=self.duty, seed=self.seed)
        return out


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """An ordered set of faults with unique ids; overlapping faults of one kind on one target are refused.

    Raises:
        FaultError: duplicate ids or overlapping same-kind faults on the same target.

    Examples:
        >>> s = FaultSchedule((Fault(id="a", kind=FaultKind.F5, target="n1", start_ns=0, duration_ns=10),))
        >>> [f.id for f in s.active(3)], s.active(10)
        (['a'], ())
    """

    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))
        found = Problems(source="FaultSchedule")
        seen: dict[str, int] = {}
        for i, fault in enumerate(self.faults):
            if not isinstance(fault, Fault):
                found.add(f"faults[{i}]", f"must be a Fault, got {type(fault).__name__}", "build it with Fault(...)",
                          "wrong_type")
            elif fault.id in seen:
                found.add(f"faults[{i}].id", f"duplicate fault id {fault.id!r} (also faults[{seen[fault.id]}])",
                          "give each fault a unique id", "duplicate_id")
            else:
                seen[fault.id] = i
        if not found.items:
            found.items.extend(_overlaps(self.faults))
        found.raise_if_any(FaultError)

    def active(self, t_ns: int) -> tuple[Fault, ...]:
        """Faults active at ``t_ns``, in schedule order."""
        return tuple(f for f in self.faults if f.active(t_ns))

    def of_kind(self, kind: FaultKind) -> tuple[Fault, ...]:
        """Faults of ``kind``, in schedule order."""
        return tuple(f for f in self.faults if f.kind is kind)

    def for_target(self, target: str) -> tuple[Fault, ...]:
        """Faults whose target (or F7 cycle) includes ``target``, in schedule order."""
        return tuple(f for f in self.faults if target == f.target or target in f.nodes)

    def end_ns(self) -> int:
        """When the last fault ends (0 for an empty schedule)."""
        return max((f.end_ns() for f in self.faults), default=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain versioned form accepted by :func:`faults_from_dict`."""
        return {"version": 1, "kind": "FaultSchedule", "faults": [f.to_dict() for f in self.faults]}


def _overlaps(faults: tuple[Fault, ...], paths: list[str] | None = None) -> list[Problem]:
    # Two same-kind faults on one target would compose ambiguously (multiply? max?); refusing is clearer.
    items = []
    by_key: dict[tuple[FaultKind, str], list[tuple[int, Fault]]] = {}
    for i, fault in enumerate(faults):
        by_key.setdefault((fault.kind, fault.target), []).append((i, fault))
    for group in by_key.values():
        group.sort(key=lambda e: (e[1].start_ns, e[0]))
        for (i, prev), (j, nxt) in zip(group, group[1:], strict=False):
            if nxt.start_ns < prev.end_ns():
                where = paths[j] if paths else f"faults[{j}]"
                other = paths[i] if paths else f"faults[{i}]"
                items.append(Problem(f"{where}.start", f"{nxt.kind.value} fault {nxt.id!r} overlaps {prev.id!r} "
                                                       f"({other}) on target {nxt.target!r}",
                                     f"merge them or start it at or after {_spell(prev.end_ns())}", "overlap"))
    return items


# --------------------------------------------------------------------------------------------------------------
# Loading.

_TOP_KEYS = ("version", "kind", "faults")
_FAULT_KEYS = ("id", "type", "target", "start", "start_ns", "duration", "duration_ns", "magnitude", "principal",
               "profile", "ramp", "ramp_ns", "period", "period_ns", "duty", "seed")


def _time_field(entry: Mapping[str, Any], key: str, path: str, found: Problems,
                required: bool = True) -> int | None:
    """``start``/``duration`` as a duration, or ``start_ns``/``duration_ns`` as exact ns (one of the two).

    An optional field (``ramp``, ``period``) that is absent is 0 (the fault's default)."""
    ns_key = f"{key}_ns"
    if key in entry and ns_key in entry:
        found.add(f"{path}.{ns_key}", f"give {key} or {ns_key}, not both", f"remove {ns_key}", "conflict")
        return None
    if ns_key in entry:
        value = entry[ns_key]
        if not _is_int(value):
            found.add(f"{path}.{ns_key}", f"must be an integer number of ns, got {value!r}",
                      f"or write {key}: 30m", "wrong_type")
            return None
        return int(value)
    if key not in entry:
        if not required:
            return 0
        found.add(f"{path}.{key}", "is required", _DURATION_HINT, "required")
        return None
    try:
        return parse_duration(entry[key])
    except DurationError as err:
        found.add(f"{path}.{key}", str(err), "", "bad_duration")
        return None


def _check_target(fault: Fault, path: str, fleet: Fleet) -> list[Problem]:
    """Problems with ``fault``'s target in ``fleet``: it must exist and be a link or node as its kind needs."""
    kind = fault.kind.value
    wants_link = kind in _LINK_KINDS or (kind == "F3" and fault.target != ORCHESTRATOR)
    if wants_link:
        return _link_target(fault, path, fleet)
    if kind in _NODE_KINDS:
        node_ids = {n.id for n in fleet.nodes}
        return [_unknown_target(fault, path, fleet, "a node id", n, node_ids) for n in fault.cycle()
                if n not in node_ids]
    return []


def _unknown_target(fault: Fault, path: str, fleet: Fleet, what: str, value: str, known: set[str]) -> Problem:
    shown = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
    return Problem(f"{path}.target", f"{fault.kind.value} ({fault.kind.title}) targets {what}; {value!r} is not one "
                                     f"in fleet {fleet.name!r}", f"{suggest(value, sorted(known))}known: {shown}",
                   "unknown_target")


def _link_target(fault: Fault, path: str, fleet: Fleet) -> list[Problem]:
    link_ids = {lk.id for lk in fleet.links}
    if fault.target in link_ids:
        return []
    kind = fault.kind.value
    what = "a link id" if kind in _LINK_KINDS else f"{ORCHESTRATOR!r} or a link id"
    head = f"{kind} ({fault.kind.title}) targets {what}"
    if fault.target in {n.id for n in fleet.nodes}:
        # A node where a link is wanted is a common slip; offer that node's links.
        links = ", ".join(lk.id for lk in fleet.links_of(fault.target)) or "none"
        return [Problem(f"{path}.target", f"{head}; {fault.target!r} is a node (its links: {links})",
                        "name one of its links", "node_for_link")]
    a, sep, b = fault.target.partition("~")
    if sep and f"{b}~{a}" in link_ids:
        return [Problem(f"{path}.target", f"{head}; {fault.target!r} is not one, but {b + '~' + a!r} is",
                        "link ids are a~b as written in the fleet file", "reversed_link")]
    return [_unknown_target(fault, path, fleet, what, fault.target,
                            link_ids | ({ORCHESTRATOR} if kind == "F3" else set()))]


def _fault_kind(entry: Mapping[str, Any], path: str, found: Problems) -> FaultKind | None:
    if "type" not in entry:
        found.add(f"{path}.type", "is required", "F1..F8 or an alias, e.g. type: link_degradation", "required")
        return None
    try:
        return FaultKind.parse(entry["type"])
    except FaultError as err:
        found.items.extend(Problem(f"{path}.type", p.message, p.fix, p.code) for p in err.problems)
        return None


def _required_fields(entry: Mapping[str, Any], kind: FaultKind | None, path: str, found: Problems) -> None:
    for key, example in (("id", "id: link-drop"), ("target", "target: qpu-a~qpu-b")):
        if key not in entry:
            found.add(f"{path}.{key}", "is required", f"e.g. {example}", "required")
    if "magnitude" not in entry and kind is not None and kind.value not in _DEFAULT_MAGNITUDE:
        _, rule, example = _MAGNITUDE_RULES[kind.value]
        found.add(f"{path}.magnitude", f"is required for {kind.value} ({kind.title}): {rule}", example, "required")


def _build_fault(entry: Mapping[str, Any], path: str, found: Problems) -> Fault | None:
    """One fault entry as a :class:`Fault`, or None with its problems (under the keys the user wrote) in ``found``."""
    before = len(found)
    kind = _fault_kind(entry, path, found)
    _required_fields(entry, kind, path, found)
    start = _time_field(entry, "start", path, found)
    duration = _time_field(entry, "duration", path, found)
    ramp = _time_field(entry, "ramp", path, found, required=False)
    period = _time_field(entry, "period", path, found, required=False)
    if len(found) > before or kind is None or start is None or duration is None or ramp is None or period is None:
        return None
    target = entry["target"]
    nodes: Any = ()
    if isinstance(target, list):
        nodes, target = target, (target[0] if target else "")
    try:
        return Fault(id=entry["id"], kind=kind, target=target, start_ns=start, duration_ns=duration,
                     magnitude=entry.get("magnitude", 1.0), principal=entry.get("principal"), nodes=nodes,
                     profile=entry.get("profile", _DEFAULT_PROFILE.get(kind.value, "step")), ramp_ns=ramp,
                     period_ns=period, duty=entry.get("duty", 0.0), seed=entry.get("seed"))
    except FaultError as err:
        # Name the key the user wrote, not the dataclass field.
        keys = {"nodes": "target", **{f"{k}_ns": k if k in entry else f"{k}_ns"
                                      for k in ("start", "duration", "ramp", "period")}}
        found.items.extend(Problem(f"{path}.{keys.get(p.path, p.path)}", p.message, p.fix, p.code)
                           for p in err.problems)
        return None


def _fault_entries(doc: Mapping[str, Any], found: Problems) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """``(path, entry)`` for each fault entry that is a mapping (the others become problems)."""
    raw = doc.get("faults", [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        found.add("faults", f"must be a list, got {type(raw).__name__}", "e.g. faults: [{id: drop, type: F1, ...}]",
                  "wrong_type")
        return []
    entries = []
    for i, entry in enumerate(raw):
        if isinstance(entry, Mapping):
            entries.append((f"faults[{i}]", entry))
        else:
            found.add(f"faults[{i}]", f"must be a mapping, got {entry!r}", "e.g. - {id: drop, type: F1, ...}",
                      "wrong_type")
    return entries


def faults_from_dict(doc: Mapping[str, Any], *, fleet: Fleet | None = None,
                     source: str = "<faults>") -> FaultSchedule:
    """Build and validate a :class:`FaultSchedule` from a parsed fault document.

    Each fault has ``id``, ``type`` (``F1``..``F8`` or an alias such as ``link_degradation``),
    ``target`` (F7: a node id or a list, anchor first), ``start`` and ``duration`` (Prometheus durations such as
    ``20m`` or ``1h45m``, see :func:`qfleet.units.parse_duration`; or exact ``start_ns`` / ``duration_ns``),
    ``magnitude`` (required except for F5 and F7) and, for F8, ``principal``. Optional: ``profile``
    (``step``, ``ramp``, ``intermittent``; F4 defaults to ``ramp``, a slow drift, the others to ``step``), with
    ``ramp`` (duration, default the whole fault) or ``period`` (duration, default 10m), ``duty`` (fraction on,
    default 0.5) and ``seed`` (the burst pattern's, default from the id); or the exact ``ramp_ns``/``period_ns``.

    Args:
        doc: the document (``version: 1``, ``kind: FaultSchedule``, ``faults``).
        fleet: when given, each target must exist in it with the type its kind needs.
        source: the name used as the prefix of every problem (usually the file name).

    Raises:
        FaultError: every problem found, one per line.

    Examples:
        >>> s = faults_from_dict({"version": 1, "kind": "FaultSchedule", "faults": [
        ...     {"id": "hot", "type": "thermal_event", "target": "qpu-a", "start": "2h", "duration": "30m",
        ...      "magnitude": 5}]})
        >>> s.faults[0].kind, s.faults[0].start_ns
        (<FaultKind.F2: 'F2'>, 7200000000000)
    """
    if not isinstance(doc, Mapping):
        raise FaultError([Problem("", f"must be a mapping with version, kind, faults; got {doc!r}",
                                  "start the file with version: 1 and kind: FaultSchedule", "not_a_mapping")],
                         source=source)
    found = Problems(source=source)
    unknown_keys(found, doc, _TOP_KEYS, "")
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        found.add("version", f"must be 1, got {doc.get('version')!r}", "add version: 1", "wrong_version")
    if doc.get("kind") != "FaultSchedule":
        found.add("kind", f"must be 'FaultSchedule', got {doc.get('kind')!r}", "add kind: FaultSchedule",
                  "wrong_kind")
    built: list[Fault] = []
    paths: list[str] = []
    seen: dict[str, str] = {}
    for path, entry in _fault_entries(doc, found):
        unknown_keys(found, entry, _FAULT_KEYS, path)
        fault = _build_fault(entry, path, found)
        if fault is None:
            continue
        if fault.id in seen:
            found.add(f"{path}.id", f"duplicate fault id {fault.id!r} (also {seen[fault.id]})",
                      "give each fault a unique id", "duplicate_id")
            continue
        seen[fault.id] = path
        if fleet is not None:
            found.items.extend(_check_target(fault, path, fleet))
        built.append(fault)
        paths.append(path)
    found.items.extend(_overlaps(tuple(built), paths))
    found.raise_if_any(FaultError)
    return FaultSchedule(tuple(built))


def load_faults(path: str | Path, fleet: Fleet | None = None) -> FaultSchedule:
    """Load and validate a fault YAML file (``yaml.safe_load``), checking targets against ``fleet`` if given.

    Raises:
        FaultError: the file is unreadable, not YAML, or breaks any rule (all problems at once).
    """
    p = Path(path)
    return faults_from_dict(read_yaml(p, what="fault", error=FaultError), fleet=fleet, source=str(p))


def builtin_faults_path(name: str) -> Path:
    """Path of a built-in fault file, ``simulator/faults/<name>.yaml``.

    Args:
        name: one of :data:`BUILTIN_FAULTS` (``example`` targets mesh.yaml, ``fleet100-day`` fleet100.yaml).

    Raises:
        FaultError: ``name`` is not a built-in fault file.
    """
    if name not in BUILTIN_FAULTS:
        raise FaultError([Problem("", f"unknown built-in fault file {name!r}",
                                  f"{suggest(name, BUILTIN_FAULTS)}choose one of {', '.join(BUILTIN_FAULTS)}",
                                  "unknown_faults")], source="builtin_faults_path")
    return _FAULT_DIR / f"{name}.yaml"
