"""The fleet model: nodes, links, tenants and policies, loaded from versioned YAML and validated at load.

A fleet file names a built-in hardware profile per node and a link preset per link; any field may be
overridden. Loading reports every problem at once, each naming the file, the field path, the rule and a
fix, so one edit-and-retry cycle fixes a whole file.

The values live in :mod:`~qfleet.simulator.profiles` (built-in hardware), :mod:`~qfleet.simulator.hardware`
(nodes, links), :mod:`~qfleet.simulator.policies` (tenants, scheduler, calibration) and
:mod:`~qfleet.simulator.topology` (the fleet); this module loads files and re-exports them.

Example:
    >>> fleet = load_fleet(builtin_fleet_path("line"))
    >>> [n.id for n in fleet.processors()]
    ['qpu-a', 'qpu-b', 'qpu-c', 'qpu-d']
    >>> [link.id for link in fleet.path("qpu-a", "qpu-c")]
    ['qpu-a~qpu-b', 'qpu-b~qpu-c']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qfleet.problems import Problem, Problems, read_yaml
from qfleet.simulator.hardware import LINK_KEYS, NODE_KEYS, Link, Node
from qfleet.simulator.policies import (
    CALIBRATION_KEYS,
    CLASSICAL_KEYS,
    SCHEDULER_KEYS,
    TENANT_KEYS,
    Calibration,
    ClassicalNetwork,
    Scheduler,
    Tenant,
    default_tenants,
)
from qfleet.simulator.profiles import (
    BUILTIN_FLEETS,
    HARDWARE_TYPES,
    JOB_KINDS,
    LINK_PRESETS,
    PROFILES,
    ROLES,
    SCHEMES,
    LinkPreset,
    NodeProfile,
)
from qfleet.simulator.rules import MISSING, FleetError, prefixed, suggest, unknown_keys
from qfleet.simulator.topology import Fleet, cross_problems

__all__ = [
    "BUILTIN_FLEETS",
    "HARDWARE_TYPES",
    "JOB_KINDS",
    "LINK_PRESETS",
    "PROFILES",
    "ROLES",
    "SCHEMES",
    "Calibration",
    "ClassicalNetwork",
    "Fleet",
    "FleetError",
    "Link",
    "LinkPreset",
    "Node",
    "NodeProfile",
    "Scheduler",
    "Tenant",
    "builtin_fleet_path",
    "default_tenants",
    "fleet_from_dict",
    "load_fleet",
]

_FLEET_DIR = Path(__file__).resolve().parent / "fleets"
_TOP_KEYS = ("version", "kind", "name", "defaults", "nodes", "links", "classical", "tenants", "scheduler",
             "calibration")
_TENANT_LOADER_DEFAULTS = {"weight": 1.0, "priority": 0}
_POLICIES: tuple[tuple[str, type[Any], tuple[str, ...]], ...] = (
    ("classical", ClassicalNetwork, CLASSICAL_KEYS), ("scheduler", Scheduler, SCHEDULER_KEYS),
    ("calibration", Calibration, CALIBRATION_KEYS))


def fleet_from_dict(doc: Mapping[str, Any], *, source: str = "<fleet>") -> Fleet:
    """Build and validate a :class:`Fleet` from a parsed fleet document.

    Args:
        doc: the document (``version: 1``, ``kind: Fleet``, ``name``, ``nodes``, ``links`` and optional
            ``defaults``, ``classical``, ``tenants``, ``scheduler``, ``calibration``).
        source: the name used as the prefix of every problem (usually the file name).

    Returns:
        The validated fleet.

    Raises:
        FleetError: every problem found, one per line, each naming the field path, the bad value and a fix.

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
        qfleet.simulator.rules.FleetError: x.yaml: 2 problems (fix all of them):
          scheduler.cutoff: unknown key 'cutoff' (fix: did you mean 'cutoff_fidelity'? allowed keys: \
max_attempt_time_s, queue_timeout_s, cutoff_fidelity, max_regenerations)
          nodes: a fleet needs at least one node with role: processor (fix: set role: processor on a node)
    """
    if not isinstance(doc, Mapping):
        raise FleetError([Problem("", f"must be a mapping with version, kind, name, nodes, links; got {doc!r}",
                                  "start the file with version: 1 and kind: Fleet", "not_a_mapping")], source=source)
    found = Problems(source=source)
    name = _header(doc, found)
    node_defaults, link_defaults, tenant_defaults = _defaults(doc, found)
    nodes = [_load_node(i, raw, node_defaults, found) for i, raw in enumerate(
        _entries(doc, "nodes", found, hint="a list of nodes, e.g. - {id: qpu-a, profile: nv}"))]
    node_dicts = [m for m, _ in nodes]
    by_id = {m["id"]: m for m in node_dicts if isinstance(m.get("id"), str)}
    links = [_load_link(i, raw, link_defaults, by_id, found) for i, raw in enumerate(
        _entries(doc, "links", found, hint="a list of links, e.g. - {a: x, b: y, length_km: 2}"))]
    tenant_dicts, tenants = _load_tenants(doc, tenant_defaults, node_dicts, found)
    policies = _load_policies(doc, found)
    for d in node_dicts:
        d.setdefault("role", "processor")
    found.items.extend(cross_problems(node_dicts, [_link_dict(m, lk) for m, lk in links], tenant_dicts))
    found.raise_if_any(FleetError)
    return Fleet(name=name, nodes=tuple(n for _, n in nodes if n is not None),
                 links=tuple(lk for _, lk in links if lk is not None), tenants=tuple(t for t in tenants if t),
                 **policies)


def _header(doc: Mapping[str, Any], found: Problems) -> Any:
    """Check ``version``, ``kind``, ``name`` and the top-level keys; the name."""
    unknown_keys(found, doc, _TOP_KEYS, "")
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        found.add("version", f"must be 1, got {doc.get('version')!r}", "add version: 1", "wrong_version")
    if doc.get("kind") != "Fleet":
        found.add("kind", f"must be 'Fleet', got {doc.get('kind')!r}", "add kind: Fleet", "wrong_kind")
    name = doc.get("name", MISSING)
    if not isinstance(name, str) or not name.strip():
        found.add("name", f"must be a non-empty string, got {name!r}", "e.g. name: mesh-6", "wrong_type")
    return name


def _defaults(doc: Mapping[str, Any], found: Problems) -> tuple[Mapping[str, Any], ...]:
    """The ``defaults.node``, ``defaults.link`` and ``defaults.tenant`` mappings (empty when absent or bad)."""
    defaults = _mapping(doc.get("defaults"), "defaults", found, "e.g. defaults: {node: {t2_s: 0.5}}") or {}
    unknown_keys(found, defaults, ("node", "link", "tenant"), "defaults")
    out = []
    for key, allowed in (("node", NODE_KEYS), ("link", LINK_KEYS), ("tenant", TENANT_KEYS)):
        entry = _mapping(defaults.get(key), f"defaults.{key}", found, f"{key} fields") or {}
        unknown_keys(found, entry, allowed, f"defaults.{key}")
        out.append(entry)
    return tuple(out)


def _entries(doc: Mapping[str, Any], key: str, found: Problems, *, hint: str, required: bool = True) -> list[Any]:
    raw = doc.get(key)
    if raw is None:
        if required:
            found.add(key, "is required", hint, "required")
        return []
    if not isinstance(raw, list):
        found.add(key, f"must be a list, got {type(raw).__name__}", hint, "wrong_type")
        return []
    return raw


def _mapping(value: Any, path: str, found: Problems, hint: str) -> Mapping[str, Any] | None:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        found.add(path, f"must be a mapping, got {value!r}", hint, "wrong_type")
        return None
    return value


def _construct(cls: type[Any], kwargs: dict[str, Any], path: str, found: Problems) -> Any:
    """``cls(**kwargs)``, or None with its problems recorded under ``path``."""
    try:
        return cls(**kwargs)
    except FleetError as err:
        found.items.extend(prefixed(path, err.problems))
        return None


def _merge(keys: Sequence[str], required: Sequence[str], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """``required`` keys as MISSING, overlaid by each layer's keys that are in ``keys``, in order."""
    merged: dict[str, Any] = dict.fromkeys(required, MISSING)
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if k in keys})
    return merged


def _load_node(i: int, raw: Any, defaults: Mapping[str, Any], found: Problems) -> tuple[dict[str, Any], Node | None]:
    path = f"nodes[{i}]"
    entry = _mapping(raw, path, found, "e.g. - {id: qpu-a, profile: ion-photonic}")
    if entry is None:
        return {}, None
    unknown_keys(found, entry, NODE_KEYS, path)
    profile_name = entry.get("profile", defaults.get("profile", MISSING))
    profile = PROFILES.get(profile_name) if isinstance(profile_name, str) else None
    if profile is None:
        # Without a profile every physics field would also be reported missing; one line is clearer.
        found.add(f"{path}.profile", f"must be one of {', '.join(PROFILES)}, got {profile_name!r}",
                  "e.g. profile: ion-photonic; any field may then be overridden", "unknown_profile")
        return {k: v for k, v in entry.items() if k in NODE_KEYS}, None
    merged = _merge(NODE_KEYS, [k for k in NODE_KEYS if k != "role"], profile.node_fields(), defaults, entry)
    merged["profile"] = profile_name
    return merged, _construct(Node, merged, path, found)


def _link_preset(entry: Mapping[str, Any], defaults: Mapping[str, Any],
                 nodes: Mapping[str, Mapping[str, Any]]) -> Any:
    """The preset a link names, or its defaults name, or the one named like endpoint ``a``'s profile."""
    name = entry.get("preset", defaults.get("preset"))
    if name is None:
        a = entry.get("a")
        a_profile = nodes.get(a, {}).get("profile") if isinstance(a, str) else None
        name = a_profile if a_profile in LINK_PRESETS else MISSING
    return name


def _load_link(i: int, raw: Any, defaults: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]],
               found: Problems) -> tuple[dict[str, Any], Link | None]:
    path = f"links[{i}]"
    entry = _mapping(raw, path, found, "e.g. - {a: qpu-a, b: qpu-b, length_km: 2}")
    if entry is None:
        return {}, None
    unknown_keys(found, entry, LINK_KEYS, path)
    preset_name = _link_preset(entry, defaults, nodes)
    preset = LINK_PRESETS.get(preset_name) if isinstance(preset_name, str) else None
    if preset is None:
        got = "none (endpoint a has no profile with a same-named preset)" if preset_name is MISSING \
            else repr(preset_name)
        found.add(f"{path}.preset", f"must be one of {', '.join(LINK_PRESETS)}, got {got}",
                  "e.g. preset: ion-photonic", "unknown_preset")
        return {k: v for k, v in entry.items() if k in LINK_KEYS}, None
    merged = _merge(LINK_KEYS, [k for k in LINK_KEYS if k not in ("id", "repeaters")], preset.link_fields(),
                    defaults, entry)
    merged["preset"] = preset_name
    return merged, _construct(Link, merged, path, found)


def _link_dict(merged: Mapping[str, Any], link: Link | None) -> dict[str, Any]:
    """A link entry with its id filled in, as the cross-reference rules see it."""
    d = dict(merged)
    if link is not None:
        d["id"] = link.id
    elif "id" not in d and isinstance(d.get("a"), str) and isinstance(d.get("b"), str):
        d["id"] = f"{d['a']}~{d['b']}"
    return d


def _load_tenants(doc: Mapping[str, Any], defaults: Mapping[str, Any], node_dicts: Sequence[Mapping[str, Any]],
                  found: Problems) -> tuple[list[dict[str, Any]], list[Tenant | None]]:
    """The tenant entries (as merged mappings) and tenants; :func:`default_tenants` when the key is absent."""
    if "tenants" not in doc:
        processors = sum(1 for m in node_dicts if m.get("role", "processor") == "processor")
        tenants = default_tenants(processors)
        return [t.to_dict() for t in tenants], list(tenants)
    dicts: list[dict[str, Any]] = []
    built: list[Tenant | None] = []
    for i, raw in enumerate(_entries(doc, "tenants", found, hint="a list of tenants", required=False)):
        path = f"tenants[{i}]"
        entry = _mapping(raw, path, found, "e.g. - {id: research, rate_per_s: 2, ...}")
        if entry is None:
            continue
        unknown_keys(found, entry, TENANT_KEYS, path)
        merged = _merge(TENANT_KEYS, ("id", "rate_per_s", "fidelity_target", "mix"), _TENANT_LOADER_DEFAULTS,
                        defaults, entry)
        dicts.append(merged)
        built.append(_construct(Tenant, merged, path, found))
    return dicts, built


def _load_policies(doc: Mapping[str, Any], found: Problems) -> dict[str, Any]:
    """``classical``, ``scheduler`` and ``calibration`` (their defaults when absent)."""
    policies: dict[str, Any] = {}
    for key, cls, allowed in _POLICIES:
        entry = _mapping(doc.get(key), key, found, f"{cls.__name__} fields")
        if entry is None:
            continue
        unknown_keys(found, entry, allowed, key)
        policies[key] = _construct(cls, {k: v for k, v in entry.items() if k in allowed}, key, found)
    return policies


def load_fleet(path: str | Path) -> Fleet:
    """Load and validate a fleet YAML file (``yaml.safe_load``).

    Raises:
        FleetError: the file is unreadable, not YAML, or breaks any rule (all problems at once).
    """
    p = Path(path)
    return fleet_from_dict(read_yaml(p, what="fleet", error=FleetError), source=str(p))


def builtin_fleet_path(name: str) -> Path:
    """Path of a built-in topology file, ``simulator/fleets/<name>.yaml``.

    Args:
        name: one of :data:`BUILTIN_FLEETS` (``line``, ``star``, ``mesh``, ``fleet100``, ``fleet1000``).

    Raises:
        FleetError: ``name`` is not a built-in fleet.

    Examples:
        >>> builtin_fleet_path("mesh").name
        'mesh.yaml'
    """
    if name not in BUILTIN_FLEETS:
        raise FleetError([Problem("", f"unknown built-in fleet {name!r}",
                                  f"{suggest(name, BUILTIN_FLEETS)}choose one of {', '.join(BUILTIN_FLEETS)}",
                                  "unknown_fleet")], source="builtin_fleet_path")
    return _FLEET_DIR / f"{name}.yaml"
