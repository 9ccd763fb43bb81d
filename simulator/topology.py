"""The :class:`Fleet`: validated nodes, links and policies, the rules between entries, and routes through it.

The cross-reference rules (unique ids, links to declared nodes, repeaters that are ``role: repeater`` nodes,
tenants with enough eligible processors) run on plain mappings, so that the file loader reports them for entries
whose own fields are invalid too, and on a directly built :class:`Fleet`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qfleet.problems import Problem, Problems
from qfleet.simulator.hardware import Link, Node
from qfleet.simulator.policies import Calibration, ClassicalNetwork, Scheduler, Tenant
from qfleet.simulator.rules import FleetError, suggest

__all__ = ["Fleet", "cross_problems"]


def _first_few(ids: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(ids[:n])
    return shown if len(ids) <= n else f"{shown}, ... ({len(ids)} in all)"


def cross_problems(nodes: Sequence[Mapping[str, Any]], links: Sequence[Mapping[str, Any]],
                   tenants: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """Problems between entries (plain mappings, possibly with invalid values: every step is defensive)."""
    found = Problems()
    node_by_id = _node_index(nodes, found)
    known = sorted(node_by_id)
    seen_links: set[str] = set()
    for i, link in enumerate(links):
        _link_references(f"links[{i}]", link, node_by_id, known, found)
        _unique_link_id(f"links[{i}]", link, seen_links, found)
        _repeater_references(f"links[{i}]", link, node_by_id, found)
    processors = [n for n in node_by_id.values() if n.get("role") == "processor"]
    if not processors:
        found.add("nodes", "a fleet needs at least one node with role: processor", "set role: processor on a node",
                  "no_processor")
    seen_tenants: set[str] = set()
    for i, tenant in enumerate(tenants):
        _tenant_references(f"tenants[{i}]", tenant, processors, seen_tenants, found)
    return found.items


def _node_index(nodes: Sequence[Mapping[str, Any]], found: Problems) -> dict[str, Mapping[str, Any]]:
    node_by_id: dict[str, Mapping[str, Any]] = {}
    for i, node in enumerate(nodes):
        nid = node.get("id")
        if not isinstance(nid, str):
            continue
        if nid in node_by_id:
            found.add(f"nodes[{i}].id", f"duplicate node id {nid!r}", "give each node a unique id", "duplicate_id")
        else:
            node_by_id[nid] = node
    return node_by_id


def _link_references(path: str, link: Mapping[str, Any], node_by_id: Mapping[str, Any], known: list[str],
                     found: Problems) -> None:
    for end in ("a", "b"):
        nid = link.get(end)
        if isinstance(nid, str) and nid not in node_by_id:
            found.add(f"{path}.{end}", f"unknown node {nid!r}", f"{suggest(nid, known)}known nodes: "
                                                               f"{_first_few(known)}", "unknown_node")


def _unique_link_id(path: str, link: Mapping[str, Any], seen: set[str], found: Problems) -> None:
    lid = link.get("id")
    if isinstance(lid, str) and lid:
        if lid in seen:
            found.add(f"{path}.id", f"duplicate link id {lid!r}",
                      "set a unique id: for parallel fibres, e.g. id: qpu-a~qpu-b#2", "duplicate_id")
        seen.add(lid)


def _repeater_references(path: str, link: Mapping[str, Any], node_by_id: Mapping[str, Mapping[str, Any]],
                         found: Problems) -> None:
    reps = link.get("repeaters")
    for j, rep in enumerate(reps if isinstance(reps, (list, tuple)) else ()):
        if not isinstance(rep, str):
            continue
        node = node_by_id.get(rep)
        where = f"{path}.repeaters[{j}]"
        if node is None:
            found.add(where, f"unknown node {rep!r}", "declare it under nodes with role: repeater", "unknown_node")
        elif node.get("role") != "repeater":
            found.add(where, f"node {rep!r} has role {node.get('role')!r}; a link's repeaters must be role: "
                             "repeater nodes", f"set role: repeater on {rep!r} or remove it here", "not_a_repeater")
        elif isinstance(node.get("comm_qubits"), int) and node["comm_qubits"] < 2:
            found.add(where, f"repeater {rep!r} has comm_qubits={node['comm_qubits']!r}; it must hold one pair per "
                             "side", "set comm_qubits: 2 or more", "too_few_comm_qubits")


def _tenant_references(path: str, tenant: Mapping[str, Any], processors: list[Mapping[str, Any]],
                       seen: set[str], found: Problems) -> None:
    tid = tenant.get("id")
    if isinstance(tid, str):
        if tid in seen:
            found.add(f"{path}.id", f"duplicate tenant id {tid!r}", "give each tenant a unique id", "duplicate_id")
        seen.add(tid)
    types = tenant.get("hardware_types") or ()
    if not isinstance(types, (list, tuple)):
        return
    eligible = [n for n in processors if not types or n.get("hardware_type") in types]
    rate = tenant.get("rate_per_s")
    if isinstance(rate, (int, float)) and rate > 0 and len(eligible) < 2:
        found.add(f"{path}.hardware_types", f"only {len(eligible)} processor(s) of types {list(types) or 'any'}; "
                                            "jobs need at least 2", "add processors or widen hardware_types",
                  "too_few_processors")
    largest = _largest_ghz(tenant)
    if largest is not None and largest > len(eligible) >= 2:
        found.add(f"{path}.ghz_nodes", f"GHZ size {largest} exceeds the {len(eligible)} eligible processors",
                  f"use sizes <= {len(eligible)}", "ghz_too_large")


def _largest_ghz(tenant: Mapping[str, Any]) -> int | None:
    """The largest GHZ size a tenant that runs GHZ jobs asks for (None: no GHZ jobs, or sizes not valid)."""
    mix, sizes = tenant.get("mix"), tenant.get("ghz_nodes")
    if not (isinstance(mix, Mapping) and isinstance(mix.get("ghz"), (int, float)) and mix["ghz"] > 0):
        return None
    if not (isinstance(sizes, (list, tuple)) and sizes and all(isinstance(k, int) for k in sizes)):
        return None
    return int(max(sizes))


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
        found = Problems(source=f"Fleet(name={self.name!r})")
        self._check_types(found)
        if not found.items:
            found.items.extend(cross_problems([n.to_dict() for n in self.nodes], [lk.to_dict() for lk in self.links],
                                              [t.to_dict() for t in self.tenants]))
        found.raise_if_any(FleetError)
        object.__setattr__(self, "_node_by_id", {n.id: n for n in self.nodes})
        object.__setattr__(self, "_link_by_id", {lk.id: lk for lk in self.links})
        adjacent: dict[str, list[tuple[str, Link]]] = {n.id: [] for n in self.nodes}
        for link in self.links:
            adjacent[link.a].append((link.b, link))
            adjacent[link.b].append((link.a, link))
        object.__setattr__(self, "_adjacent", {k: tuple(sorted(v, key=lambda e: (e[0], e[1].id)))
                                               for k, v in adjacent.items()})

    def _check_types(self, found: Problems) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            found.add("name", f"must be a non-empty string, got {self.name!r}", "e.g. name: mesh-6", "wrong_type")
        members: tuple[tuple[str, type[Any]], ...] = (("nodes", Node), ("links", Link), ("tenants", Tenant))
        for attr, cls in members:
            value = tuple(getattr(self, attr))
            object.__setattr__(self, attr, value)
            for i, item in enumerate(value):
                if not isinstance(item, cls):
                    found.add(f"{attr}[{i}]", f"must be a {cls.__name__}, got {type(item).__name__}",
                              f"build it with {cls.__name__}(...)", "wrong_type")
        policies: tuple[tuple[str, type[Any]], ...] = (
            ("classical", ClassicalNetwork), ("scheduler", Scheduler), ("calibration", Calibration))
        for attr, cls in policies:
            if not isinstance(getattr(self, attr), cls):
                found.add(attr, f"must be a {cls.__name__}, got {type(getattr(self, attr)).__name__}",
                          f"build it with {cls.__name__}(...)", "wrong_type")

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
        raise FleetError([Problem("links", f"no route from {a!r} to {b!r}: they are in disconnected parts of the "
                                           "fleet", "add a link between the parts", "no_route")],
                         source=f"Fleet(name={self.name!r})")

    def to_dict(self) -> dict[str, Any]:
        """The canonical plain form: every field explicit, accepted by :func:`~qfleet.simulator.fleet.fleet_from_dict`.

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
