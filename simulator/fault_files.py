"""Fault files: the YAML form of a :class:`~qfleet.simulator.faults.FaultSchedule`, validated in one pass.

A file has ``version: 1``, ``kind: FaultSchedule`` and ``faults``, each with a kind (``type``), a target, a start,
a duration, a magnitude and an onset profile (see :class:`~qfleet.simulator.faults.Fault`). Starts and durations
are Prometheus durations (``20m``, ``1h45m``; :func:`qfleet.units.parse_duration`) or exact ``*_ns`` integers.
Loading reports every problem at once and, given a fleet, checks that each target exists and has the right type
for its kind. docs/faults.md gives each kind's physics, units and sources.

Example:
    >>> from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
    >>> fleet = load_fleet(builtin_fleet_path("mesh"))
    >>> schedule = load_faults(builtin_faults_path("example"), fleet)
    >>> sorted(f.kind.value for f in schedule.faults)
    ['F1', 'F2', 'F3', 'F4', 'F5', 'F6', 'F7', 'F8']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from qfleet.problems import Problem, Problems, read_yaml
from qfleet.simulator.faults import (
    DEFAULT_MAGNITUDE,
    DEFAULT_PROFILE,
    LINK_KINDS,
    MAGNITUDE_RULES,
    NODE_KINDS,
    ORCHESTRATOR,
    Fault,
    FaultError,
    FaultKind,
    FaultSchedule,
    is_int,
    overlap_problems,
)
from qfleet.simulator.fleet import Fleet
from qfleet.simulator.rules import suggest, unknown_keys
from qfleet.units import DurationError, parse_duration

__all__ = ["BUILTIN_FAULTS", "builtin_faults_path", "faults_from_dict", "load_faults"]

BUILTIN_FAULTS: tuple[str, ...] = ("example", "fleet100-day")
"""Names accepted by :func:`builtin_faults_path`."""

_FAULT_DIR = Path(__file__).resolve().parent / "faults"
_DURATION_HINT = "a Prometheus duration, e.g. 90s, 30m, 1h45m, 1d, 250ms"

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
        if not is_int(value):
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
    wants_link = kind in LINK_KINDS or (kind == "F3" and fault.target != ORCHESTRATOR)
    if wants_link:
        return _link_target(fault, path, fleet)
    if kind in NODE_KINDS:
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
    what = "a link id" if kind in LINK_KINDS else f"{ORCHESTRATOR!r} or a link id"
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
    if "magnitude" not in entry and kind is not None and kind.value not in DEFAULT_MAGNITUDE:
        _, rule, example = MAGNITUDE_RULES[kind.value]
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
                     profile=entry.get("profile", DEFAULT_PROFILE.get(kind.value, "step")), ramp_ns=ramp,
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
    found.items.extend(overlap_problems(tuple(built), paths))
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
