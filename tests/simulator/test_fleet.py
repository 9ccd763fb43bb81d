"""Fleet model: built-in topologies load, validation reports every problem with a fix, routing is deterministic."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from qfleet.problems import Problem, ProblemsError
from qfleet.simulator.fleet import (
    BUILTIN_FLEETS,
    HARDWARE_TYPES,
    LINK_PRESETS,
    PROFILES,
    Calibration,
    Fleet,
    FleetError,
    Link,
    Node,
    Scheduler,
    Tenant,
    builtin_fleet_path,
    default_tenants,
    fleet_from_dict,
    load_fleet,
)

SECONDS_PER_DAY = 86_400


def _pair_rate(link: Link, fibre_s_per_km: float) -> tuple[float, float]:
    """(success per attempt, pairs/s) per segment, from physics.md §1.1, written independently of the code."""
    seg = link.length_km / (len(link.repeaters) + 1)
    arm = (link.emission_efficiency * link.collection_efficiency * link.detector_efficiency
           * link.conversion_efficiency * 10 ** (-link.attenuation_db_per_km * (seg / 2) / 10))
    if link.scheme == "double-click":
        p = 0.5 * arm * arm  # Barrett-Kok: both photons must arrive
    elif link.scheme == "microwave":
        p = 1.0  # deterministic transfer
    else:
        p = 2 * link.bright_state_population * arm  # single-click
    return p, link.memories * p / (link.prep_time_s + seg * fibre_s_per_km)


def _fresh_fidelity(link: Link) -> float:
    """The dominant terms (no dark counts): (1+V)/2; (1-alpha)(1+sqrt(V))/2; microwave (1 + 2V sqrt(eta) + eta)/4."""
    if link.scheme == "double-click":
        return (1 + link.visibility) / 2
    if link.scheme == "microwave":
        eta = (link.emission_efficiency * link.collection_efficiency * link.detector_efficiency
               * 10 ** (-link.attenuation_db_per_km * link.length_km / 10))
        return (1 + 2 * link.visibility * math.sqrt(eta) + eta) / 4
    return (1 - link.bright_state_population) * (1 + math.sqrt(link.visibility)) / 2


# Pairs/s per segment by preset: lab and campus links with native photons make pairs every second or faster;
# converted photons pay the conversion efficiency twice (0.265^2, 0.17 per arm), so metropolitan links make one
# every few seconds; ion-NV links one every few minutes; microwave transfer runs at its 50 kHz attempt rate.
_RATES = {"ion-photonic": (1.0, 5000.0), "nv": (1.0, 5000.0), "ion-telecom": (0.1, 100.0),
          "nv-telecom": (0.1, 50.0), "ion-nv": (1e-4, 0.1), "sc-microwave": (1e4, 1e5)}


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "kind": "Fleet",
        "name": "t",
        "nodes": [{"id": "a", "profile": "ion-photonic"}, {"id": "b", "profile": "ion-photonic"},
                  {"id": "c", "profile": "nv"}],
        "links": [{"a": "a", "b": "b", "length_km": 0.002}, {"a": "b", "b": "c", "length_km": 1.0}],
    }
    doc.update(overrides)
    return doc


def _problems(doc: dict[str, Any]) -> str:
    with pytest.raises(FleetError) as info:
        fleet_from_dict(doc, source="t.yaml")
    return str(info.value)


# ---------------------------------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", BUILTIN_FLEETS)
def test_builtin_fleet_loads_and_round_trips(name: str) -> None:
    fleet = load_fleet(builtin_fleet_path(name))
    assert fleet_from_dict(fleet.to_dict()) == fleet
    # Through YAML text too, as a saved canonical file would be.
    assert fleet_from_dict(yaml.safe_load(yaml.safe_dump(fleet.to_dict()))) == fleet


@pytest.mark.parametrize("name", BUILTIN_FLEETS)
def test_builtin_fleet_is_connected(name: str) -> None:
    fleet = load_fleet(builtin_fleet_path(name))
    first, *rest = fleet.processors()
    for node in rest:
        route = fleet.path(first.id, node.id)
        assert route and node.id in (route[-1].a, route[-1].b)


@pytest.mark.parametrize("name", BUILTIN_FLEETS)
def test_builtin_links_have_realistic_rates_and_fresh_fidelity_above_the_cutoff(name: str) -> None:
    fleet = load_fleet(builtin_fleet_path(name))
    for link in fleet.links:
        _, rate = _pair_rate(link, fleet.classical.fibre_s_per_km)
        if link.preset == "sc-transducer":
            # Transducer bridges exist but are poor (arXiv 2503.10842): below 1 pair/s and below cut-off.
            assert rate < 1.0 and _fresh_fidelity(link) < fleet.scheduler.cutoff_fidelity, link.id
            continue
        lo, hi = _RATES[link.preset]
        assert lo <= rate <= hi, (link.id, rate)
        assert _fresh_fidelity(link) > fleet.scheduler.cutoff_fidelity, link.id


def test_fleet100_shape_and_daily_job_volume() -> None:
    fleet = load_fleet(builtin_fleet_path("fleet100"))
    assert len(fleet.processors()) == 100
    assert len(fleet.repeaters()) >= 3
    assert {n.hardware_type for n in fleet.processors()} == set(HARDWARE_TYPES)
    assert sum(t.rate_per_s for t in fleet.tenants) * SECONDS_PER_DAY >= 1_000_000
    assert any(len(link.repeaters) >= 2 for link in fleet.links)


def test_fleet1000_is_ten_fleet100_regions_in_a_ring() -> None:
    small, big = load_fleet(builtin_fleet_path("fleet100")), load_fleet(builtin_fleet_path("fleet1000"))
    assert len(big.processors()) == 10 * len(small.processors()) == 1000
    assert len(big.repeaters()) == 10 * len(small.repeaters()) + 10
    assert len(big.links) == 10 * len(small.links) + 10
    assert [t.rate_per_s for t in big.tenants] == pytest.approx([10 * t.rate_per_s for t in small.tenants])
    # Region r3's copy of a fleet-100 link has the same length and memories as the original.
    orig = {(lk.a, lk.b): lk for lk in small.links}
    for lk in big.links:
        if lk.a.startswith("r3-") and lk.b.startswith("r3-"):
            o = orig[(lk.a.removeprefix("r3-"), lk.b.removeprefix("r3-"))]
            assert (lk.length_km, lk.memories) == (o.length_km, o.memories)


def test_mesh_has_six_processors_mixed_hardware_and_a_repeater_link() -> None:
    fleet = load_fleet(builtin_fleet_path("mesh"))
    assert len(fleet.processors()) == 6
    assert len({n.hardware_type for n in fleet.processors()}) == 3
    (via,) = [link for link in fleet.links if link.repeaters]
    assert fleet.links_via(via.repeaters[0]) == (via,)
    assert via.segment_km == pytest.approx(via.length_km / 2)


def test_builtin_fleet_path_rejects_unknown_names() -> None:
    with pytest.raises(FleetError, match=r"'mesh6'.*did you mean 'mesh'.*line, star, mesh, fleet100, fleet1000"):
        builtin_fleet_path("mesh6")


# ---------------------------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_builds_a_valid_node_and_has_a_same_named_preset(name: str) -> None:
    profile = PROFILES[name]
    node = Node(id="n", **profile.node_fields())
    assert node.t2_s <= 2 * node.t1_s
    assert node.hardware_type in HARDWARE_TYPES
    assert name in LINK_PRESETS
    assert profile.source


def test_ion_photonic_preset_rates_match_the_platform() -> None:
    short = Link(a="x", b="y", length_km=0.002, **LINK_PRESETS["ion-photonic"].link_fields())
    telecom = Link(a="x", b="y", length_km=10.0, **LINK_PRESETS["ion-telecom"].link_fields())
    p_short, r_short = _pair_rate(short, 5e-6)
    p_long, r_long = _pair_rate(telecom, 5e-6)
    assert 1e-3 <= p_short <= 1e-2
    assert 10 <= r_short <= 250  # Oxford ~10/s to O'Reilly 2024's 250/s (physics.md §2)
    # 10 km of converted photons: 0.265^2 (Bock et al. 2018) times 10^-0.25 of the double-click success (native
    # fibre loss over 2 m is negligible), and the cycle gets 50 us longer.
    assert p_long / p_short == pytest.approx(0.265**2 * 10 ** -0.25 / (10 ** (-30 * 0.001 / 10)) ** 2, rel=1e-3)
    assert r_long < r_short / 3
    assert _fresh_fidelity(short) == pytest.approx(0.97)


def test_nv_preset_matches_humphreys_2018() -> None:
    link = Link(a="x", b="y", length_km=0.002, **LINK_PRESETS["nv"].link_fields())
    p, rate = _pair_rate(link, 5e-6)
    assert 5e-5 <= p <= 5e-4
    assert 20 <= rate <= 80  # 39 Hz over 2 m
    assert _fresh_fidelity(link) == pytest.approx(0.9 * (1 + math.sqrt(0.9)) / 2)


def test_sc_microwave_preset_is_deterministic_at_50_khz_near_kurpiers_2018() -> None:
    # Kurpiers et al., Nature 558, 264 (2018): transfer process fidelity 80.02 % over ~1 m, 50 kHz.
    link = Link(a="x", b="y", length_km=0.001, **LINK_PRESETS["sc-microwave"].link_fields())
    p, rate = _pair_rate(link, 5e-6)
    assert p == 1.0 and rate == pytest.approx(50e3, rel=1e-3)
    assert _fresh_fidelity(link) == pytest.approx(0.8002, abs=7e-4)


def test_ion_profile_uses_the_long_lived_memory_t2() -> None:
    assert PROFILES["ion-photonic"].t2_s == 1.0
    assert math.isinf(PROFILES["ion-photonic"].t1_s)
    nv = PROFILES["nv"]
    assert (nv.readout_error_0, nv.readout_error_1, nv.t2_s) == (0.07, 0.005, 0.5)


# ---------------------------------------------------------------------------------------------------- validation


def test_spec_example_message_for_a_negative_t2() -> None:
    doc = _doc()
    doc["nodes"][2]["t2_s"] = -1.0
    with pytest.raises(FleetError) as info:
        fleet_from_dict(doc, source="line.yaml")
    assert str(info.value) == "line.yaml: nodes[2].t2_s: must be > 0, got -1.0 (fix: seconds, e.g. t2_s: 0.5)"
    assert info.value.problems == (Problem("nodes[2].t2_s", "must be > 0, got -1.0", "seconds, e.g. t2_s: 0.5",
                                           "out_of_range"),)
    assert isinstance(info.value, ProblemsError) and info.value.source == "line.yaml"


def _set(path: str, value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        here: Any = doc
        for key in parents:
            here = here[int(key)] if isinstance(here, list) else here.setdefault(key, {})
        if isinstance(here, list):
            here[int(last)] = value
        else:
            here[last] = value
    return mutate


def _append(path: str, value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        doc.setdefault(path, []).append(value)
    return mutate


CASES = [
    ("wrong version", _set("version", 2), "t.yaml: version: must be 1, got 2 (fix: add version: 1)"),
    ("wrong kind", _set("kind", "Fleets"), "kind: must be 'Fleet', got 'Fleets' (fix: add kind: Fleet)"),
    ("unknown top-level key", _set("tennants", []), "tennants: unknown key 'tennants' (fix: did you mean 'tenants'?"),
    ("typo in a node key", _set("nodes/0/t2", 1.0), "nodes[0].t2: unknown key 't2' (fix: did you mean 't2_s'?"),
    ("typo lists the allowed keys", _set("nodes/0/t2", 1.0), "allowed keys: id, profile, hardware_type"),
    ("wrong type", _set("nodes/0/t2_s", "fast"), "nodes[0].t2_s: must be a number, got 'fast' (fix: seconds, e.g. t2_s:"),
    ("bool is not an int", _set("nodes/0/comm_qubits", True), "nodes[0].comm_qubits: must be an integer, got True"),
    ("NaN", _set("nodes/0/t1_s", float("nan")), "nodes[0].t1_s: must be a number, not NaN"),
    ("inf only where allowed", _set("nodes/0/gate_time_2q_s", math.inf), "nodes[0].gate_time_2q_s: must be finite"),
    ("T2 above 2 T1", _set("nodes/2/t1_s", 0.1),
     "nodes[2].t2_s: must satisfy t2_s <= 2 * t1_s (physics.md §1.3), got t2_s=0.5 with t1_s=0.1 (fix: lower t2_s "
     "to at most 0.2 or raise t1_s)"),
    ("readout above one half", _set("nodes/1/readout_error_1", 0.6),
     "nodes[1].readout_error_1: must be in [0, 0.5], got 0.6 (fix: P(read 0 | prepared 1), e.g. readout_error_1: "
     "0.001)"),
    ("2q error above full depolarising", _set("nodes/1/gate_error_2q", 0.95), "must be in [0, 0.9375]"),
    ("unknown profile", _set("nodes/1/profile", "ion"),
     "nodes[1].profile: must be one of ion-photonic, nv, sc-microwave, got 'ion'"),
    ("unknown role", _set("nodes/1/role", "router"), "nodes[1].role: must be one of processor, repeater"),
    ("bad node id", _set("nodes/1/id", "b~x"), "nodes[1].id: must start with a letter or digit"),
    ("duplicate node id", _set("nodes/2/id", "a"), "nodes[2].id: duplicate node id 'a' (fix: give each node a unique id)"),
    ("link to an unknown node", _set("links/1/b", "cc"), "links[1].b: unknown node 'cc' (fix: did you mean 'c'? known nodes"),
    ("link to itself", _set("links/1/b", "b"), "links[1].b: a link needs two different endpoints"),
    ("negative length", _set("links/0/length_km", -2), "links[0].length_km: must be > 0 and at most 100000, got -2"),
    ("efficiency zero", _set("links/0/detector_efficiency", 0), "links[0].detector_efficiency: must be in (0, 1]"),
    ("unknown scheme", _set("links/0/scheme", "triple-click"), "links[0].scheme: must be one of double-click"),
    ("unknown preset", _set("links/0/preset", "ions"), "links[0].preset: must be one of ion-photonic, ion-telecom, nv, nv-telecom, ion-nv"),
    ("no memories", _set("links/0/memories", 0), "links[0].memories: must be an integer in [1, 10_000], got 0"),
    ("duplicate link id", _append("links", {"a": "a", "b": "b", "length_km": 1}),
     "links[2].id: duplicate link id 'a~b'"),
    ("repeater not declared", _set("links/1/repeaters", ["r9"]), "links[1].repeaters[0]: unknown node 'r9'"),
    ("repeater is a processor", _set("links/1/repeaters", ["a"]),
     "links[1].repeaters[0]: node 'a' has role 'processor'; a link's repeaters must be role: repeater nodes"),
    ("missing nodes", _set("nodes", None), "nodes: is required"),
    ("scheduler typo", _set("scheduler/cutoff", 0.9), "scheduler.cutoff: unknown key 'cutoff' (fix: did you mean "
                                                      "'cutoff_fidelity'?"),
    ("cutoff out of range", _set("scheduler/cutoff_fidelity", 1.0), "scheduler.cutoff_fidelity: must be in [0.25, 1)"),
    ("maintenance longer than the interval", _set("calibration/duration_s", 30000),
     "calibration.duration_s: must be < interval_s (21600.0), got 30000.0"),
    ("classical capacity zero", _set("classical/orchestrator_capacity_per_s", 0),
     "classical.orchestrator_capacity_per_s: must be > 0"),
    ("defaults typo", _set("defaults/nodes", {}), "defaults.nodes: unknown key 'nodes' (fix: did you mean 'node'?"),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_names_the_field_and_the_fix(mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(_doc())
    mutate(doc)
    assert expected in _problems(doc)


def _tenant(**fields: Any) -> dict[str, Any]:
    base = {"id": "t1", "rate_per_s": 1.0, "fidelity_target": 0.8, "mix": {"teleport": 1.0}}
    base.update(fields)
    return base


TENANT_CASES = [
    ("mix does not sum to 1", _tenant(mix={"teleport": 0.5, "ghz": 0.4}),
     "tenants[0].mix: probabilities must sum to 1 (within 1e-09), got sum 0.9"),
    ("unknown job kind", _tenant(mix={"teleport": 0.5, "qkd": 0.5}),
     "tenants[0].mix: unknown job kind(s) 'qkd' (fix: rename or remove them; allowed: teleport, teleported_cnot, ghz, "
     "pair_delivery, canary)"),
    ("ghz size below 2", _tenant(ghz_nodes=[1, 3]), "tenants[0].ghz_nodes: must be a non-empty list of GHZ sizes, each >= 2"),
    ("ghz larger than the fleet", _tenant(mix={"ghz": 1.0}, ghz_nodes=[5]),
     "tenants[0].ghz_nodes: GHZ size 5 exceeds the 3 eligible processors (fix: use sizes <= 3)"),
    ("no eligible processors", _tenant(hardware_types=["superconducting"]),
     "tenants[0].hardware_types: only 0 processor(s) of types ['superconducting']"),
    ("unknown hardware type", _tenant(hardware_types=["ion"]), "tenants[0].hardware_types: must list distinct types"),
    ("missing rate", {"id": "t1", "fidelity_target": 0.8, "mix": {"teleport": 1.0}},
     "tenants[0].rate_per_s: is required (fix: Poisson job arrivals per second, e.g. rate_per_s: 2.0)"),
    ("tenant typo", _tenant(rate=2), "tenants[0].rate: unknown key 'rate' (fix: did you mean 'rate_per_s'?"),
]


@pytest.mark.parametrize(("tenant", "expected"), [c[1:] for c in TENANT_CASES], ids=[c[0] for c in TENANT_CASES])
def test_tenant_validation_names_the_field_and_the_fix(tenant: dict[str, Any], expected: str) -> None:
    assert expected in _problems(_doc(tenants=[tenant]))


def test_duplicate_tenant_ids() -> None:
    assert "tenants[1].id: duplicate tenant id 't1'" in _problems(_doc(tenants=[_tenant(), _tenant()]))


def test_every_problem_is_reported_at_once() -> None:
    doc = _doc(version=3)
    doc["nodes"][0]["t2_s"] = -1
    doc["links"][1]["b"] = "zz"
    doc["tenants"] = [_tenant(mix={"teleport": 0.2})]
    message = _problems(doc)
    assert message.startswith("t.yaml: 4 problems (fix all of them):\n")
    lines = message.splitlines()[1:]
    assert len(lines) == 4 and all(line.startswith("  ") for line in lines)
    assert [line.split(": ")[0].strip() for line in lines] == ["version", "nodes[0].t2_s", "tenants[0].mix",
                                                               "links[1].b"]


def test_repeater_needs_two_comm_qubits() -> None:
    doc = _doc()
    doc["nodes"].append({"id": "r", "profile": "nv", "role": "repeater", "data_qubits": 0})
    doc["links"][1]["repeaters"] = ["r"]
    assert "links[1].repeaters[0]: repeater 'r' has comm_qubits=1" in _problems(doc)


def test_processor_needs_a_data_qubit() -> None:
    doc = _doc()
    doc["nodes"][0]["data_qubits"] = 0
    assert "nodes[0].data_qubits: a processor needs at least 1 data qubit" in _problems(doc)


def test_not_a_mapping() -> None:
    with pytest.raises(FleetError, match="must be a mapping"):
        fleet_from_dict(["nodes"], source="t.yaml")  # type: ignore[arg-type]


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nnodes: [\n")
    with pytest.raises(FleetError, match=r"broken.yaml: not valid YAML"):
        load_fleet(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="cannot read the fleet file"):
        load_fleet(tmp_path / "nope.yaml")


def test_direct_construction_validates_and_coerces() -> None:
    fields = dict(PROFILES["nv"].node_fields(), t1_s=1, t2_s=1)
    node = Node(id="n", **fields)
    assert isinstance(node.t1_s, float) and node.t1_s == 1.0
    with pytest.raises(FleetError, match=r"^Node\(id='n'\): t2_s: must satisfy t2_s <= 2 \* t1_s"):
        Node(id="n", **dict(fields, t2_s=3))
    with pytest.raises(FleetError, match="ghz_nodes"):
        Tenant(id="t", weight=1, priority=0, rate_per_s=1, fidelity_target=0.5, mix={"ghz": 1}, ghz_nodes=())
    with pytest.raises(FleetError, match="max_regenerations: must be an integer >= 0"):
        Scheduler(max_regenerations=-1)
    with pytest.raises(FleetError, match="max_degradation: must be in"):
        Calibration(max_degradation=1.0)
    assert Tenant(id="t", weight=1, priority=0, rate_per_s=1, fidelity_target=0.5, mix={"ghz": 1},
                  ghz_nodes=[3, 4]).ghz_nodes == (3, 4)


def test_fleet_constructor_checks_cross_references() -> None:
    fleet = fleet_from_dict(_doc())
    with pytest.raises(FleetError, match=r"links\[0\].a: unknown node 'a'"):
        Fleet(name="x", nodes=fleet.nodes[1:], links=fleet.links)


# ---------------------------------------------------------------------------------------------------- loading


def test_defaults_apply_before_entries_and_presets_follow_endpoint_a() -> None:
    doc = _doc(defaults={"node": {"t2_s": 0.25}, "link": {"memories": 2}})
    doc["nodes"][1]["t2_s"] = 0.75
    doc["links"].append({"a": "c", "b": "a", "length_km": 0.5, "memories": 3})
    fleet = fleet_from_dict(doc)
    assert [n.t2_s for n in fleet.nodes] == [0.25, 0.75, 0.25]
    assert fleet.link("a~b").preset == "ion-photonic" and fleet.link("a~b").memories == 2
    assert fleet.link("c~a").scheme == "single-click" and fleet.link("c~a").memories == 3


def test_default_profile_from_defaults_node() -> None:
    fleet = load_fleet(builtin_fleet_path("star"))
    assert {n.profile for n in fleet.nodes} == {"nv"}
    assert fleet.node("hub").comm_qubits == 2


def test_default_tenants_when_absent() -> None:
    fleet = fleet_from_dict(_doc())
    assert fleet.tenants == default_tenants(3)
    assert [t.id for t in fleet.tenants] == ["general", "canary"]
    assert "ghz" not in default_tenants(2)[0].mix
    assert default_tenants(1) == ()
    assert fleet_from_dict(_doc(tenants=[])).tenants == ()


# ---------------------------------------------------------------------------------------------------- queries


def test_path_on_the_line() -> None:
    fleet = load_fleet(builtin_fleet_path("line"))
    assert [lk.id for lk in fleet.path("qpu-a", "qpu-d")] == ["qpu-a~qpu-b", "qpu-b~qpu-c", "qpu-c~qpu-d"]
    assert [lk.id for lk in fleet.path("qpu-d", "qpu-b")] == ["qpu-c~qpu-d", "qpu-b~qpu-c"]
    assert fleet.path("qpu-b", "qpu-b") == ()


def test_path_on_the_star_goes_through_the_hub() -> None:
    fleet = load_fleet(builtin_fleet_path("star"))
    assert [lk.id for lk in fleet.path("leaf-1", "leaf-5")] == ["hub~leaf-1", "hub~leaf-5"]
    assert fleet.neighbours("hub") == ("leaf-1", "leaf-2", "leaf-3", "leaf-4", "leaf-5")
    assert fleet.neighbours("leaf-3") == ("hub",)


def test_path_on_the_mesh_uses_the_repeater_link_as_one_hop() -> None:
    fleet = load_fleet(builtin_fleet_path("mesh"))
    assert [lk.id for lk in fleet.path("ion-b", "nv-c")] == ["ion-b~nv-c"]
    assert [lk.id for lk in fleet.path("sc-f", "nv-c")] == ["sc-f~ion-b", "ion-b~nv-c"]
    assert "rep-1" not in fleet.neighbours("ion-b")
    assert fleet.links_of("rep-1") == ()
    assert "rep-1" not in [n.id for n in fleet.processors()]


def test_path_on_fleet100_crosses_the_ring() -> None:
    fleet = load_fleet(builtin_fleet_path("fleet100"))
    route = fleet.path("ion0-q1", "ion2-q5")
    assert [lk.id for lk in route] == ["ion0-hub~ion0-q1", "ion0-hub~ion2-hub", "ion2-hub~ion2-q5"]
    assert route[1].repeaters == ("rep-a",)


def test_path_tie_break_is_by_id() -> None:
    nodes = [{"id": i, "profile": "ion-photonic"} for i in ("a", "c", "b", "d")]
    links = [{"a": "a", "b": "c", "length_km": 1}, {"a": "c", "b": "d", "length_km": 1},
             {"a": "a", "b": "b", "length_km": 1}, {"a": "b", "b": "d", "length_km": 1}]
    fleet = fleet_from_dict(_doc(nodes=nodes, links=links))
    assert [lk.id for lk in fleet.path("a", "d")] == ["a~b", "b~d"]


def test_unreachable_and_unknown_nodes() -> None:
    nodes = [{"id": i, "profile": "ion-photonic"} for i in ("a", "b", "c", "d")]
    fleet = fleet_from_dict(_doc(nodes=nodes, links=[{"a": "a", "b": "b", "length_km": 1},
                                                     {"a": "c", "b": "d", "length_km": 1}]))
    with pytest.raises(FleetError, match="no route from 'a' to 'd'.*add a link"):
        fleet.path("a", "d")
    with pytest.raises(KeyError, match="unknown node 'zz' in fleet 't'; known nodes: a, b, c, d"):
        fleet.path("a", "zz")
    with pytest.raises(KeyError, match="unknown link 'a~c'"):
        fleet.link("a~c")


def test_node_error_lists_only_the_first_few_ids() -> None:
    fleet = load_fleet(builtin_fleet_path("fleet100"))
    with pytest.raises(KeyError, match=r"\.\.\. \(105 in all\)"):
        fleet.node("nope")


def test_links_of_and_neighbours() -> None:
    fleet = load_fleet(builtin_fleet_path("mesh"))
    assert [lk.id for lk in fleet.links_of("ion-a")] == ["ion-a~ion-b", "ion-a~nv-d", "sc-e~ion-a"]
    assert fleet.neighbours("ion-a") == ("ion-b", "nv-d", "sc-e")


def test_to_dict_is_canonical_plain_data() -> None:
    data = load_fleet(builtin_fleet_path("mesh")).to_dict()
    assert (data["version"], data["kind"]) == (1, "Fleet")
    assert data["links"][2]["repeaters"] == ["rep-1"]
    assert isinstance(data["tenants"][0]["mix"], dict)
    assert yaml.safe_load(yaml.safe_dump(data)) == data


def test_fleets_are_hashable_values() -> None:
    a, b = (load_fleet(builtin_fleet_path("mesh")) for _ in range(2))
    assert a == b and hash(a) == hash(b)
    assert len({a, b, load_fleet(builtin_fleet_path("line"))}) == 2
