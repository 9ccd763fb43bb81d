"""Fault schedules: the eight failure modes F1-F8, timed in integer nanoseconds from the run start.

A fault file lists faults with a kind, a target, a start, a duration and a magnitude whose meaning depends
on the kind (see :class:`Fault`). Loading reports every problem at once and, given a fleet, checks that each
target exists and has the right type for its kind.

Example:
    >>> from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
    >>> fleet = load_fleet(builtin_fleet_path("mesh"))
    >>> schedule = load_faults(builtin_faults_path("example"), fleet)
    >>> sorted(f.kind.value for f in schedule.faults)
    ['F1', 'F2', 'F3', 'F4', 'F5', 'F6', 'F7', 'F8']
    >>> parse_duration_ns("1h30m")
    5400000000000
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

from qfleet.simulator.fleet import Fleet, ProblemsError, read_yaml_file

__all__ = [
    "BUILTIN_FAULTS",
    "Fault",
    "FaultError",
    "FaultKind",
    "FaultSchedule",
    "ORCHESTRATOR",
    "builtin_faults_path",
    "faults_from_dict",
    "format_duration_ns",
    "load_faults",
    "parse_duration_ns",
]

ORCHESTRATOR = "orchestrator"
"""The F3 target meaning the central orchestrator rather than one link's classical channel."""
BUILTIN_FAULTS: tuple[str, ...] = ("example", "fleet100-day")
"""Names accepted by :func:`builtin_faults_path`."""

_FAULT_DIR = Path(__file__).resolve().parent / "faults"
_NS_PER_S = 1_000_000_000


class FaultError(ProblemsError):
    """A fault file or fault value breaks a rule (see :class:`qfleet.simulator.fleet.ProblemsError` for the message)."""


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
    def title(self) -> str:  # type: ignore[override]  # deliberately shadows str.title
        """Human name, e.g. ``"entanglement loss"``."""
        return _TITLES[self.value]

    @classmethod
    def parse(cls, text: str) -> FaultKind:
        """The kind named by ``"F1"``..``"F8"`` (any case) or an alias such as ``"link_degradation"``.

        Raises:
            FaultError: ``text`` names no kind (the message lists the accepted names).
        """
        key = re.sub(r"[\s\-]+", "_", text.strip().lower()) if isinstance(text, str) else None
        if key is not None and key.upper() in cls.__members__:
            return cls[key.upper()]
        if key in _ALIASES:
            return cls(_ALIASES[key])
        hint = _suggest(str(key), list(_ALIASES))
        raise FaultError([("type", f"unknown fault type {text!r}; {hint}use F1..F8 or one of "
                                   f"{', '.join(sorted(_ALIASES))}")], source="FaultKind")


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
_MAGNITUDE_RULES: dict[str, tuple[Any, str, str]] = {
    "F1": (lambda m: 0.0 <= m <= 1.0, "a factor on the link's heralding success in [0, 1] (0 = link down)",
           "magnitude: 0.0"),
    "F2": (lambda m: m >= 1.0, "a factor >= 1 dividing the node's T1 and T2", "magnitude: 10"),
    "F3": (lambda m: m > 0.0, "extra one-way classical latency in seconds, > 0", "magnitude: 0.2"),
    "F4": (lambda m: 0.0 < m <= 0.5, "an absolute readout-error increase in (0, 0.5]", "magnitude: 0.05"),
    "F5": (lambda m: m == 1.0, "ignored, so it must be 1 or omitted", "omit magnitude"),
    "F6": (lambda m: 0.0 < m <= 1.0, "a correlated-error probability per operation in (0, 1]",
           "magnitude: 0.02"),
    "F7": (lambda m: m == 1.0, "ignored, so it must be 1 or omitted", "omit magnitude"),
    "F8": (lambda m: m > 0.0, "unauthorized commands per second, > 0", "magnitude: 0.5"),
}
_DEFAULT_MAGNITUDE = {"F5": 1.0, "F7": 1.0}
_LINK_KINDS = ("F1",)
_NODE_KINDS = ("F2", "F4", "F5", "F6", "F7", "F8")


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    close = close or [a for a in allowed if len(key) >= 3 and key.lower() in a.lower()][:1]
    return f"did you mean {close[0]!r}? " if close else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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

    Raises:
        FaultError: any field breaks its rule (all problems at once).

    Examples:
        >>> f = Fault(id="outage", kind=FaultKind.F5, target="qpu-a", start_ns=10, duration_ns=5)
        >>> f.end_ns(), f.active(14), f.active(15)
        (15, True, False)
    """

    id: str
    kind: FaultKind
    target: str
    start_ns: int
    duration_ns: int
    magnitude: float = 1.0
    principal: str | None = None
    nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        items: list[tuple[str, str]] = []
        if not isinstance(self.id, str) or not self.id.strip():
            items.append(("id", f"must be a non-empty string, got {self.id!r} (e.g. id: link-drop)"))
        kind = self.kind
        if not isinstance(kind, FaultKind):
            try:
                kind = FaultKind.parse(kind)
                object.__setattr__(self, "kind", kind)
            except FaultError as err:
                items.extend(err.items)
        if not isinstance(self.target, str) or not self.target.strip():
            items.append(("target", f"must be a non-empty string, got {self.target!r} (a node or link id)"))
        if not _is_int(self.start_ns) or self.start_ns < 0:
            items.append(("start_ns", f"must be an integer >= 0, got {self.start_ns!r} (ns from the run start)"))
        if not _is_int(self.duration_ns) or self.duration_ns <= 0:
            items.append(("duration_ns", f"must be an integer > 0, got {self.duration_ns!r} (e.g. duration: 30m)"))
        mag = self.magnitude
        if isinstance(mag, bool) or not isinstance(mag, (int, float)) or not math.isfinite(mag):
            items.append(("magnitude", f"must be a finite number, got {mag!r}"))
        elif isinstance(kind, FaultKind):
            object.__setattr__(self, "magnitude", float(mag))
            test, rule, example = _MAGNITUDE_RULES[kind.value]
            if not test(float(mag)):
                items.append(("magnitude", f"{kind.value} ({kind.title}) takes {rule}, got {mag!r} ({example})"))
        nodes = self.nodes
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, (list, tuple)) \
                or not all(isinstance(n, str) and n.strip() for n in nodes):
            items.append(("nodes", f"must be a list of node ids, got {nodes!r}"))
        else:
            object.__setattr__(self, "nodes", tuple(nodes))
            if nodes and kind is not FaultKind.F7:
                items.append(("nodes", f"only F7 (scheduler deadlock) takes a node list, got {list(nodes)!r} "
                                       "(use one fault per target)"))
            elif nodes and (len(nodes) < 2 or len(set(nodes)) != len(nodes) or nodes[0] != self.target):
                items.append(("target", f"an F7 cycle needs >= 2 distinct nodes with the anchor first, got "
                                        f"{list(nodes)!r} (e.g. target: [qpu-a, qpu-b, qpu-c])"))
        if kind is FaultKind.F8:
            if self.principal is None:
                object.__setattr__(self, "principal", "unknown")
            elif not isinstance(self.principal, str) or not self.principal.strip():
                items.append(("principal", f"must be a non-empty string, got {self.principal!r} "
                                           "(e.g. principal: intruder-7)"))
        elif self.principal is not None and isinstance(kind, FaultKind):
            items.append(("principal", f"only F8 (unauthorized control commands) takes a principal, got "
                                       f"{self.principal!r} (remove it)"))
        if items:
            raise FaultError(items, source=f"Fault(id={self.id!r})")

    def end_ns(self) -> int:
        """First nanosecond after the fault: ``start_ns + duration_ns``."""
        return self.start_ns + self.duration_ns

    def active(self, t_ns: int) -> bool:
        """Whether the fault is active at ``t_ns`` (``start_ns <= t_ns < end_ns()``)."""
        return self.start_ns <= t_ns < self.start_ns + self.duration_ns

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
        items: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, fault in enumerate(self.faults):
            if not isinstance(fault, Fault):
                items.append((f"faults[{i}]", f"must be a Fault, got {type(fault).__name__}"))
                continue
            if fault.id in seen:
                items.append((f"faults[{i}].id", f"duplicate fault id {fault.id!r} (also faults[{seen[fault.id]}]; "
                                                 "give each fault a unique id)"))
            else:
                seen[fault.id] = i
        if not items:
            items.extend(_overlaps(self.faults))
        if items:
            raise FaultError(items, source="FaultSchedule")

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


def _overlaps(faults: tuple[Fault, ...], paths: list[str] | None = None) -> list[tuple[str, str]]:
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
                items.append((f"{where}.start", f"{nxt.kind.value} fault {nxt.id!r} overlaps {prev.id!r} ({other}) "
                                                f"on target {nxt.target!r}; merge them or start it at or after "
                                                f"{format_duration_ns(prev.end_ns())}"))
    return items


# --------------------------------------------------------------------------------------------------------------
# Durations.

_UNIT_NS = {"d": 86_400 * _NS_PER_S, "h": 3_600 * _NS_PER_S, "m": 60 * _NS_PER_S, "s": _NS_PER_S,
            "ms": 1_000_000, "us": 1_000, "µs": 1_000, "ns": 1}
_UNIT_ORDER = ("d", "h", "m", "s", "ms", "us", "ns")
_COMPONENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)")
_DURATION_HINT = "e.g. 90s, 30m, 2h, 1d, 250ms, 1h30m; a bare number is seconds"


def parse_duration_ns(text: str | int | float) -> int:
    """Parse a duration into exact integer nanoseconds.

    Strings are one or more ``<number><unit>`` parts with units ``d h m s ms us µs ns`` in decreasing
    order, each used once (``"1h30m"``, ``"1.5s"``, ``"250ms"``); a bare number (string or numeric) is
    seconds. The result must be a whole number of nanoseconds and not negative.

    Raises:
        FaultError: the text is malformed, negative, not finite, or not a whole number of nanoseconds.

    Examples:
        >>> parse_duration_ns("90s"), parse_duration_ns("250ms"), parse_duration_ns(1.5)
        (90000000000, 250000000, 1500000000)
        >>> parse_duration_ns("1d2h")
        93600000000000
    """
    def fail(rule: str) -> FaultError:
        return FaultError([("", f"{rule}, got {text!r} ({_DURATION_HINT})")], source="duration")

    if isinstance(text, bool):
        raise fail("must be a duration string or a number of seconds")
    if isinstance(text, int):
        if text < 0:
            raise fail("must be >= 0")
        return text * _NS_PER_S
    if isinstance(text, float):
        if not math.isfinite(text):
            raise fail("must be finite")
        exact = Fraction(Decimal(repr(text))) * _NS_PER_S
    elif isinstance(text, str):
        stripped = text.strip()
        try:
            number = Decimal(stripped)
        except InvalidOperation:
            exact = _parse_components(stripped, fail)
        else:
            if not number.is_finite():
                raise fail("must be finite")
            exact = Fraction(number) * _NS_PER_S
    else:
        raise fail("must be a duration string or a number of seconds")
    if exact < 0:
        raise fail("must be >= 0")
    if exact.denominator != 1:
        raise fail("must be a whole number of nanoseconds")
    return int(exact)


def _parse_components(text: str, fail: Any) -> Fraction:
    pos, total, last_rank = 0, Fraction(0), -1
    if not text:
        raise fail("must not be empty")
    while pos < len(text):
        match = _COMPONENT.match(text, pos)
        if match is None:
            raise fail("is not a duration")
        unit = "us" if match.group(2) == "µs" else match.group(2)
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise fail("must list units once each, largest first")
        last_rank = rank
        total += Fraction(Decimal(match.group(1))) * _UNIT_NS[unit]
        pos = match.end()
    return total


def format_duration_ns(ns: int) -> str:
    """The shortest :func:`parse_duration_ns` string for ``ns`` (``"0s"`` for zero).

    Examples:
        >>> format_duration_ns(5_400_000_000_000), format_duration_ns(1_500_000)
        ('1h30m', '1ms500us')
    """
    if not _is_int(ns) or ns < 0:
        raise FaultError([("", f"must be an integer >= 0, got {ns!r}")], source="format_duration_ns")
    if ns == 0:
        return "0s"
    parts = []
    for unit in _UNIT_ORDER:
        count, ns = divmod(ns, _UNIT_NS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------
# Loading.

_TOP_KEYS = ("version", "kind", "faults")
_FAULT_KEYS = ("id", "type", "target", "start", "start_ns", "duration", "duration_ns", "magnitude", "principal")


def _unknown(entry: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> list[tuple[str, str]]:
    items = []
    for key in entry:
        if key not in allowed:
            hint = _suggest(str(key), allowed)
            items.append((f"{path}.{key}" if path else str(key),
                          f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}"))
    return items


def _time_field(entry: Mapping[str, Any], key: str, path: str, items: list[tuple[str, str]]) -> Any:
    text_key, ns_key = key, f"{key}_ns"
    if text_key in entry and ns_key in entry:
        items.append((f"{path}.{ns_key}", f"give {text_key} or {ns_key}, not both"))
        return None
    if ns_key in entry:
        value = entry[ns_key]
        if not _is_int(value):
            items.append((f"{path}.{ns_key}", f"must be an integer number of ns, got {value!r} "
                                              f"(or use {text_key}: 30m)"))
            return None
        return value
    if text_key not in entry:
        items.append((f"{path}.{text_key}", f"is required ({_DURATION_HINT})"))
        return None
    try:
        return parse_duration_ns(entry[text_key])
    except FaultError as err:
        items.extend((f"{path}.{text_key}", text) for _, text in err.items)
        return None


def _check_target(fault: Fault, path: str, fleet: Fleet) -> list[tuple[str, str]]:
    node_ids = {n.id for n in fleet.nodes}
    link_ids = {lk.id for lk in fleet.links}
    kind = fault.kind.value

    def unknown(what: str, value: str, known: set[str]) -> tuple[str, str]:
        hint = _suggest(value, sorted(known))
        shown = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
        return (f"{path}.target", f"{kind} ({fault.kind.title}) targets {what}; {value!r} is not one in fleet "
                                  f"{fleet.name!r}; {hint}known: {shown}")

    wants_link = kind in _LINK_KINDS or (kind == "F3" and fault.target != ORCHESTRATOR)
    if wants_link and fault.target not in link_ids:
        what = "a link id" if kind in _LINK_KINDS else f"{ORCHESTRATOR!r} or a link id"
        if fault.target in node_ids:
            # A node where a link is wanted is a common slip; offer that node's links.
            links = ", ".join(lk.id for lk in fleet.links_of(fault.target)) or "none"
            return [(f"{path}.target", f"{kind} ({fault.kind.title}) targets {what}; {fault.target!r} is a node "
                                       f"(its links: {links})")]
        a, sep, b = fault.target.partition("~")
        if sep and f"{b}~{a}" in link_ids:
            return [(f"{path}.target", f"{kind} ({fault.kind.title}) targets {what}; {fault.target!r} is not one, "
                                       f"but {b + '~' + a!r} is (link ids are a~b as written in the fleet file)")]
        return [unknown(what, fault.target, link_ids | ({ORCHESTRATOR} if kind == "F3" else set()))]
    if kind in _NODE_KINDS:
        return [unknown("a node id", n, node_ids) for n in fault.cycle() if n not in node_ids]
    return []


def faults_from_dict(doc: Mapping[str, Any], *, fleet: Fleet | None = None,
                     source: str = "<faults>") -> FaultSchedule:
    """Build and validate a :class:`FaultSchedule` from a parsed fault document.

    Each fault has ``id``, ``type`` (``F1``..``F8`` or an alias such as ``link_degradation``),
    ``target`` (F7: a node id or a list, anchor first), ``start`` and ``duration`` (duration strings,
    see :func:`parse_duration_ns`; or exact ``start_ns`` / ``duration_ns``), ``magnitude`` (required except
    for F5 and F7) and, for F8, ``principal``.

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
    items: list[tuple[str, str]] = []
    if not isinstance(doc, Mapping):
        raise FaultError([("", f"must be a mapping with version, kind, faults; got {doc!r}")], source=source)
    items.extend(_unknown(doc, _TOP_KEYS, ""))
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        items.append(("version", f"must be 1, got {doc.get('version')!r} (add version: 1)"))
    if doc.get("kind") != "FaultSchedule":
        items.append(("kind", f"must be 'FaultSchedule', got {doc.get('kind')!r} (add kind: FaultSchedule)"))
    raw_faults = doc.get("faults", [])
    if raw_faults is None:
        raw_faults = []
    if not isinstance(raw_faults, list):
        items.append(("faults", f"must be a list, got {type(raw_faults).__name__} "
                                "(e.g. faults: [{id: drop, type: F1, ...}])"))
        raw_faults = []
    built: list[Fault] = []
    paths: list[str] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(raw_faults):
        path = f"faults[{i}]"
        if not isinstance(entry, Mapping):
            items.append((path, f"must be a mapping, got {entry!r} (e.g. - {{id: drop, type: F1, ...}})"))
            continue
        items.extend(_unknown(entry, _FAULT_KEYS, path))
        before = len(items)
        kind: FaultKind | None = None
        if "type" not in entry:
            items.append((f"{path}.type", "is required (F1..F8 or an alias, e.g. type: link_degradation)"))
        else:
            try:
                kind = FaultKind.parse(entry["type"])
            except FaultError as err:
                items.extend((f"{path}.type", text) for _, text in err.items)
        for key in ("id", "target"):
            if key not in entry:
                items.append((f"{path}.{key}", f"is required (e.g. {key}: "
                                               f"{'link-drop' if key == 'id' else 'qpu-a~qpu-b'})"))
        start = _time_field(entry, "start", path, items)
        duration = _time_field(entry, "duration", path, items)
        if "magnitude" not in entry and kind is not None and kind.value not in _DEFAULT_MAGNITUDE:
            _, rule, example = _MAGNITUDE_RULES[kind.value]
            items.append((f"{path}.magnitude", f"is required for {kind.value} ({kind.title}): {rule} ({example})"))
        if len(items) > before:
            continue
        target = entry["target"]
        nodes: Any = ()
        if isinstance(target, list):
            nodes, target = target, (target[0] if target else "")
        try:
            fault = Fault(id=entry["id"], kind=kind, target=target, start_ns=start, duration_ns=duration,
                          magnitude=entry.get("magnitude", 1.0), principal=entry.get("principal"), nodes=nodes)
        except FaultError as err:
            # Name the key the user wrote, not the dataclass field.
            field_names = {"nodes": "target",
                           "start_ns": "start" if "start" in entry else "start_ns",
                           "duration_ns": "duration" if "duration" in entry else "duration_ns"}
            items.extend((f"{path}.{field_names.get(p, p)}", text) for p, text in err.items)
            continue
        if fault.id in seen:
            items.append((f"{path}.id", f"duplicate fault id {fault.id!r} (also {seen[fault.id]}; give each fault a "
                                        "unique id)"))
            continue
        seen[fault.id] = path
        if fleet is not None:
            items.extend(_check_target(fault, path, fleet))
        built.append(fault)
        paths.append(path)
    items.extend(_overlaps(tuple(built), paths))
    if items:
        raise FaultError(items, source=source)
    return FaultSchedule(tuple(built))


def load_faults(path: str | Path, fleet: Fleet | None = None) -> FaultSchedule:
    """Load and validate a fault YAML file (``yaml.safe_load``), checking targets against ``fleet`` if given.

    Raises:
        FaultError: the file is unreadable, not YAML, or breaks any rule (all problems at once).
    """
    p = Path(path)
    return faults_from_dict(read_yaml_file(p, "fault", FaultError), fleet=fleet, source=p.name)


def builtin_faults_path(name: str) -> Path:
    """Path of a built-in fault file, ``simulator/faults/<name>.yaml``.

    Args:
        name: one of :data:`BUILTIN_FAULTS` (``example`` targets mesh.yaml, ``fleet100-day`` fleet100.yaml).

    Raises:
        FaultError: ``name`` is not a built-in fault file.
    """
    if name not in BUILTIN_FAULTS:
        raise FaultError([("", f"unknown built-in fault file {name!r}; choose one of {', '.join(BUILTIN_FAULTS)}")],
                         source="builtin_faults_path")
    return _FAULT_DIR / f"{name}.yaml"
