"""Faults: the eight failure modes F1-F8 on one fleet, timed in integer nanoseconds from the run start.

A :class:`Fault` has a kind, a target, a start, a duration, a magnitude whose meaning depends on the kind and an
onset ``profile``: ``step`` (full magnitude for the whole window), ``ramp`` (grows linearly from no effect to the
full magnitude over ``ramp_ns``, default the whole duration) or ``intermittent`` (seeded on/off bursts, one burst
of ``duty * period_ns`` per ``period_ns``). A :class:`FaultSchedule` holds a run's faults; :mod:`.fault_files`
reads them from YAML. docs/faults.md gives each kind's physics, units and sources.

Example:
    >>> f = Fault(id="hot", kind=FaultKind.parse("thermal_event"), target="qpu-a", start_ns=0, duration_ns=60,
    ...           magnitude=5)
    >>> f.kind.value, f.effective(30), f.effective(60)
    ('F2', 5.0, 1.0)
"""
from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qfleet.problems import Problem, Problems, ProblemsError
from qfleet.simulator.rules import suggest
from qfleet.units import DurationError, format_duration

__all__ = [
    "ORCHESTRATOR",
    "Fault",
    "FaultError",
    "FaultKind",
    "FaultSchedule",
    "PROFILES",
    "magnitude_unit",
]

ORCHESTRATOR = "orchestrator"
"""The F3 target meaning the central orchestrator rather than one link's classical channel."""
PROFILES: tuple[str, ...] = ("step", "ramp", "intermittent")
"""Onset profiles: full effect at once, a linear ramp from none to full, or seeded on/off bursts."""


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
MAGNITUDE_RULES: dict[str, tuple[Callable[[float], bool], str, str]] = {
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
DEFAULT_MAGNITUDE = {"F5": 1.0, "F7": 1.0}
# The magnitude a kind has no effect at (a ramp starts there; an intermittent fault's off phase sits there).
_NEUTRAL = {"F1": 1.0, "F2": 1.0, "F3": 0.0, "F4": 0.0, "F5": 0.0, "F6": 0.0, "F7": 0.0, "F8": 0.0}
# Onset profile of a fault-file entry that names none: readout drifts slowly (physics.md 2.1), the rest switch.
DEFAULT_PROFILE = {"F4": "ramp"}
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
LINK_KINDS = ("F1",)
NODE_KINDS = ("F2", "F4", "F5", "F6", "F7", "F8")


def is_int(value: Any) -> bool:
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
        duration = self.duration_ns if is_int(self.duration_ns) and self.duration_ns > 0 else None
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
            elif not is_int(self.seed) or self.seed < 0:
                found.add("seed", f"must be an integer >= 0, got {self.seed!r}", "e.g. seed: 7", "wrong_type")

    def _check_ns(self, name: str, duration: int | None, found: Problems, example: str) -> None:
        """``ramp_ns``/``period_ns``: 0 means the whole duration, else an integer in (0, duration]."""
        value = getattr(self, name)
        if value == 0 and not isinstance(value, bool):
            if duration is not None:  # else the duration's own problem is reported
                object.__setattr__(self, name, duration)
        elif not is_int(value) or value <= 0 or (duration is not None and value > duration):
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
        if not is_int(self.start_ns) or self.start_ns < 0:
            found.add("start_ns", f"must be an integer >= 0, got {self.start_ns!r}", "ns from the run start",
                      "out_of_range")
        if not is_int(self.duration_ns) or self.duration_ns <= 0:
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
        test, rule, example = MAGNITUDE_RULES[kind.value]
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
        """Plain form accepted by :func:`~qfleet.simulator.fault_files.faults_from_dict` (exact integer ns, ``type`` as ``"F1"``...)."""
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
            found.items.extend(overlap_problems(self.faults))
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
        """Plain versioned form accepted by :func:`~qfleet.simulator.fault_files.faults_from_dict`."""
        return {"version": 1, "kind": "FaultSchedule", "faults": [f.to_dict() for f in self.faults]}


def overlap_problems(faults: tuple[Fault, ...], paths: list[str] | None = None) -> list[Problem]:
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
