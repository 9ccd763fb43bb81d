"""Fault schedules: built-in files load against their fleets, every rule names the field and the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from qfleet.problems import Problem, ProblemsError
from qfleet.simulator.fault_files import BUILTIN_FAULTS, builtin_faults_path, faults_from_dict, load_faults
from qfleet.simulator.faults import Fault, FaultError, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Fleet, builtin_fleet_path, load_fleet
from qfleet.units import NS

DAY_NS = 86_400 * NS
FLEET_OF = {"example": "mesh", "fleet100-day": "fleet100"}


@pytest.fixture(scope="module")
def mesh() -> Fleet:
    return load_fleet(builtin_fleet_path("mesh"))


def _doc(*faults: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "kind": "FaultSchedule", "faults": list(faults)}


def _fault(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "f", "type": "F1", "target": "ion-a~ion-b", "start": "1m", "duration": "5m",
                            "magnitude": 0.1}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def _problems(doc: dict[str, Any], fleet: Fleet | None = None) -> str:
    with pytest.raises(FaultError) as info:
        faults_from_dict(doc, fleet=fleet, source="f.yaml")
    return str(info.value)


# ---------------------------------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", BUILTIN_FAULTS)
def test_builtin_fault_file_loads_against_its_fleet_and_covers_every_kind(name: str) -> None:
    fleet = load_fleet(builtin_fleet_path(FLEET_OF[name]))
    schedule = load_faults(builtin_faults_path(name), fleet)
    assert sorted(f.kind for f in schedule.faults) == list(FaultKind)
    assert faults_from_dict(schedule.to_dict(), fleet=fleet) == schedule
    assert faults_from_dict(yaml.safe_load(yaml.safe_dump(schedule.to_dict())), fleet=fleet) == schedule


def test_fleet100_day_spreads_over_24_hours() -> None:
    schedule = load_faults(builtin_faults_path("fleet100-day"))
    starts = sorted(f.start_ns for f in schedule.faults)
    assert schedule.end_ns() <= DAY_NS
    assert starts[-1] - starts[0] >= 18 * 3600 * NS
    # Quiet time between incidents, so each detection and recovery is separable.
    ordered = sorted(schedule.faults, key=lambda f: f.start_ns)
    assert all(b.start_ns >= a.end_ns() + 30 * 60 * NS for a, b in zip(ordered, ordered[1:], strict=False))


def test_builtin_faults_path_rejects_unknown_names() -> None:
    with pytest.raises(FaultError, match="choose one of example, fleet100-day"):
        builtin_faults_path("day")


# ---------------------------------------------------------------------------------------------------- kinds


def test_kinds_have_values_and_titles() -> None:
    assert [k.value for k in FaultKind] == [f"F{i}" for i in range(1, 9)]
    assert FaultKind.F1.title == "entanglement loss"
    assert FaultKind.F8.title == "unauthorized control commands"
    assert FaultKind.F3 == "F3" and isinstance(FaultKind.F3, str)


@pytest.mark.parametrize(("text", "kind"), [
    ("F1", FaultKind.F1), ("f7", FaultKind.F7), ("link_degradation", FaultKind.F1), ("link-drop", FaultKind.F1),
    ("thermal event", FaultKind.F2), ("orchestrator_overload", FaultKind.F3), ("detector_drift", FaultKind.F4),
    ("Node-Outage", FaultKind.F5), ("crosstalk", FaultKind.F6), ("deadlock", FaultKind.F7),
    ("unauthorised_command", FaultKind.F8),
])
def test_kind_aliases(text: str, kind: FaultKind) -> None:
    assert FaultKind.parse(text) is kind


def test_unknown_kind_suggests_an_alias() -> None:
    with pytest.raises(FaultError, match=r"unknown fault type 'crosstalks' \(fix: did you mean 'crosstalk'"):
        FaultKind.parse("crosstalks")


# ---------------------------------------------------------------------------------------------------- values


def test_active_window_is_half_open() -> None:
    fault = Fault(id="x", kind=FaultKind.F2, target="n", start_ns=100, duration_ns=50, magnitude=2)
    assert fault.end_ns() == 150
    assert [fault.active(t) for t in (99, 100, 149, 150)] == [False, True, True, False]
    assert fault.magnitude == 2.0 and isinstance(fault.magnitude, float)


def test_schedule_queries() -> None:
    a = Fault(id="a", kind=FaultKind.F5, target="n1", start_ns=0, duration_ns=10)
    b = Fault(id="b", kind=FaultKind.F5, target="n2", start_ns=5, duration_ns=10)
    c = Fault(id="c", kind=FaultKind.F7, target="n1", start_ns=20, duration_ns=1, nodes=("n1", "n3"))
    schedule = FaultSchedule((a, b, c))
    assert schedule.active(7) == (a, b)
    assert schedule.active(12) == (b,)
    assert schedule.of_kind(FaultKind.F7) == (c,)
    assert schedule.for_target("n3") == (c,)
    assert schedule.end_ns() == 21
    assert c.cycle() == ("n1", "n3") and a.cycle() == ("n1",)


def test_f8_principal_defaults_to_unknown() -> None:
    fault = Fault(id="x", kind=FaultKind.F8, target="n", start_ns=0, duration_ns=1, magnitude=0.5)
    assert fault.principal == "unknown"
    assert Fault(**{**_as_kwargs(fault), "principal": "eve"}).principal == "eve"


def _as_kwargs(fault: Fault) -> dict[str, Any]:
    return {"id": fault.id, "kind": fault.kind, "target": fault.target, "start_ns": fault.start_ns,
            "duration_ns": fault.duration_ns, "magnitude": fault.magnitude, "principal": fault.principal}


def test_schedule_rejects_duplicate_ids() -> None:
    a = Fault(id="a", kind=FaultKind.F5, target="n1", start_ns=0, duration_ns=10)
    with pytest.raises(FaultError, match=r"faults\[1\].id: duplicate fault id 'a'"):
        FaultSchedule((a, a))


# ---------------------------------------------------------------------------------------------------- validation

BAD_MAGNITUDES = [
    ("F1", 1.5, "F1 (entanglement loss) takes a factor on the link's heralding success in [0, 1]"),
    ("F1", -0.1, "in [0, 1] (0 = link down), got -0.1 (fix: magnitude: 0.0)"),
    ("F2", 0.5, "F2 (decoherence) takes a factor >= 1 on the node's platform: NV optical-linewidth broadening, ion "
                "motional heating-rate rise, superconducting T1 divisor (docs/faults.md), got 0.5 (fix: magnitude: 10)"),
    ("F3", 0, "F3 (classical latency spike) takes extra one-way classical latency in seconds, > 0, got 0"),
    ("F4", 0.7, "F4 (readout miscalibration) takes an absolute readout-error increase in (0, 0.5], got 0.7"),
    ("F5", 2, "F5 (node outage) takes ignored, so it must be 1 or omitted, got 2 (fix: omit magnitude)"),
    ("F6", 0, "F6 (crosstalk) takes a correlated-error probability per operation in (0, 1], got 0"),
    ("F7", 0.5, "F7 (scheduler deadlock) takes ignored, so it must be 1 or omitted"),
    ("F8", -1, "F8 (unauthorized control commands) takes unauthorized commands per second, > 0, got -1"),
    ("F2", "hot", "faults[0].magnitude: must be a finite number, got 'hot'"),
    ("F2", float("inf"), "faults[0].magnitude: must be a finite number, got inf"),
]


@pytest.mark.parametrize(("kind", "magnitude", "expected"), BAD_MAGNITUDES,
                         ids=[f"{k}={m!r}" for k, m, _ in BAD_MAGNITUDES])
def test_magnitude_range_per_kind(kind: str, magnitude: Any, expected: str) -> None:
    message = _problems(_doc(_fault(type=kind, target="ion-a", magnitude=magnitude)))
    assert expected in message
    assert "faults[0].magnitude" in message


CASES = [
    ("wrong version", {"version": 2, "kind": "FaultSchedule", "faults": []},
     "f.yaml: version: must be 1, got 2 (fix: add version: 1)"),
    ("wrong kind", {"version": 1, "kind": "Faults", "faults": []}, "kind: must be 'FaultSchedule', got 'Faults'"),
    ("faults not a list", {"version": 1, "kind": "FaultSchedule", "faults": {"id": "x"}},
     "faults: must be a list, got dict"),
    ("unknown key", _doc(_fault(magnitud=0.1)), "faults[0].magnitud: unknown key 'magnitud' (fix: did you mean "
                                                "'magnitude'? allowed keys: id, type, target, start"),
    ("missing type", _doc(_fault(type=None)), "faults[0].type: is required (fix: F1..F8 or an alias"),
    ("unknown type", _doc(_fault(type="F9")), "faults[0].type: unknown fault type 'F9' (fix: use F1..F8 or one of"),
    ("missing id", _doc(_fault(id=None)), "faults[0].id: is required (fix: e.g. id: link-drop)"),
    ("missing target", _doc(_fault(target=None)), "faults[0].target: is required"),
    ("missing start", _doc(_fault(start=None)), "faults[0].start: is required (fix: a Prometheus duration, e.g. 90s"),
    ("negative start", _doc(_fault(start="-5m")), "faults[0].start: duration '-5m' is not valid: write whole numbers"),
    ("a bare number is not a duration", _doc(_fault(start=5)), "faults[0].start: duration 5 is not text"),
    ("nor a number as text", _doc(_fault(start="45")), "faults[0].start: duration '45' is not valid"),
    ("a fraction names its whole spelling", _doc(_fault(duration="1.5h")),
     "faults[0].duration: duration '1.5h' is not valid: write 1h30m"),
    ("units repeat", _doc(_fault(duration="5m5m")), "faults[0].duration: duration '5m5m' is not valid"),
    ("units out of order", _doc(_fault(duration="30m1h")), "faults[0].duration: duration '30m1h' is not valid"),
    ("negative start_ns", _doc(_fault(start=None, start_ns=-1)), "faults[0].start_ns: must be an integer >= 0"),
    ("start and start_ns", _doc(_fault(start_ns=5)), "faults[0].start_ns: give start or start_ns, not both (fix: remove start_ns)"),
    ("zero duration", _doc(_fault(duration="0s")), "faults[0].duration: must be an integer > 0, got 0"),
    ("bad duration text", _doc(_fault(duration="5 minutes")), "faults[0].duration: duration '5 minutes' is not valid"),
    ("missing magnitude", _doc(_fault(magnitude=None)),
     "faults[0].magnitude: is required for F1 (entanglement loss): a factor on the link's heralding success"),
    ("principal on a non-F8 fault", _doc(_fault(principal="eve")),
     "faults[0].principal: only F8 (unauthorized control commands) takes a principal, got 'eve' (fix: remove it)"),
    ("duplicate ids", _doc(_fault(), _fault(start="1h")), "faults[1].id: duplicate fault id 'f' (also faults[0]"),
    ("overlap on one target", _doc(_fault(id="a"), _fault(id="b", start="3m")),
     "faults[1].start: F1 fault 'b' overlaps 'a' (faults[0]) on target 'ion-a~ion-b' (fix: merge them or start it "
     "at or after 6m)"),
    ("F7 cycle of one", _doc(_fault(type="F7", target=["ion-a"], magnitude=None)),
     "faults[0].target: an F7 cycle needs >= 2 distinct nodes with the anchor first"),
    ("list target on a non-F7 fault", _doc(_fault(type="F5", target=["ion-a", "ion-b"], magnitude=None)),
     "faults[0].target: only F7 (scheduler deadlock) takes a node list"),
    ("fault entry not a mapping", _doc("F1"), "faults[0]: must be a mapping, got 'F1'"),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_names_the_field_and_the_fix(doc: dict[str, Any], expected: str) -> None:
    assert expected in _problems(copy.deepcopy(doc))


TARGET_CASES = [
    ("F1 on a node", _fault(target="ion-a"),
     "faults[0].target: F1 (entanglement loss) targets a link id; 'ion-a' is a node (its links: ion-a~ion-b, "
     "ion-a~nv-d, sc-e~ion-a) (fix: name one of its links)"),
    ("F1 on a reversed link id", _fault(target="ion-b~ion-a"),
     "targets a link id; 'ion-b~ion-a' is not one, but 'ion-a~ion-b' is (fix: link ids are a~b as written"),
    ("F1 on an unknown link", _fault(target="ion-a~nv-c"),
     "targets a link id; 'ion-a~nv-c' is not one in fleet 'mesh-6' (fix: did you mean"),
    ("F2 on a link", _fault(type="F2", target="ion-a~ion-b", magnitude=5), "F2 (decoherence) targets a node id"),
    ("F3 on a node", _fault(type="F3", target="ion-a", magnitude=0.1),
     "F3 (classical latency spike) targets 'orchestrator' or a link id; 'ion-a' is a node (its links:"),
    ("F3 on an unknown link", _fault(type="F3", target="orchestra", magnitude=0.1),
     "'orchestra' is not one in fleet 'mesh-6' (fix: did you mean 'orchestrator'?"),
    ("F5 on an unknown node", _fault(type="F5", target="ion-aa", magnitude=None),
     "F5 (node outage) targets a node id; 'ion-aa' is not one in fleet 'mesh-6' (fix: did you mean 'ion-a'?"),
    ("F7 with an unknown member", _fault(type="F7", target=["ion-a", "nv-x"], magnitude=None),
     "F7 (scheduler deadlock) targets a node id; 'nv-x' is not one"),
    ("F8 on the orchestrator", _fault(type="F8", target="orchestrator", magnitude=1),
     "F8 (unauthorized control commands) targets a node id"),
]


@pytest.mark.parametrize(("fault", "expected"), [c[1:] for c in TARGET_CASES], ids=[c[0] for c in TARGET_CASES])
def test_targets_are_checked_against_the_fleet(mesh: Fleet, fault: dict[str, Any], expected: str) -> None:
    doc = _doc(fault)
    assert expected in _problems(doc, mesh)
    faults_from_dict(doc)  # without a fleet the same fault is accepted


@pytest.mark.parametrize("target", ["orchestrator", "ion-a~ion-b"])
def test_f3_accepts_the_orchestrator_or_a_link(mesh: Fleet, target: str) -> None:
    schedule = faults_from_dict(_doc(_fault(type="latency_spike", target=target, magnitude=0.2)), fleet=mesh)
    assert schedule.faults[0].target == target


def test_every_problem_is_reported_at_once(mesh: Fleet) -> None:
    doc = _doc(_fault(id="a", magnitude=3), _fault(id="b", type="F2", target="qpu-9", magnitude=2),
               _fault(id="c", type="F4", target="nv-c", magnitude=0.1, duration="0s"))
    message = _problems(doc, mesh)
    lines = message.splitlines()
    assert lines[0] == "f.yaml: 3 problems (fix all of them):"
    assert [line.split(": ")[0].strip() for line in lines[1:]] == ["faults[0].magnitude", "faults[1].target",
                                                                   "faults[2].duration"]


def test_back_to_back_faults_on_one_target_are_allowed() -> None:
    schedule = faults_from_dict(_doc(_fault(id="a"), _fault(id="b", start="6m")))
    assert [f.id for f in schedule.faults] == ["a", "b"]


def test_exact_ns_fields_and_f7_list_round_trip(mesh: Fleet) -> None:
    doc = _doc(_fault(start=None, duration=None, start_ns=7, duration_ns=3),
               _fault(id="g", type="F7", target=["nv-c", "nv-d"], magnitude=None))
    schedule = faults_from_dict(doc, fleet=mesh)
    assert (schedule.faults[0].start_ns, schedule.faults[0].end_ns()) == (7, 10)
    assert schedule.faults[1].target == "nv-c" and schedule.faults[1].nodes == ("nv-c", "nv-d")
    assert schedule.to_dict()["faults"][1]["target"] == ["nv-c", "nv-d"]
    assert faults_from_dict(schedule.to_dict(), fleet=mesh) == schedule


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("faults: [\n")
    with pytest.raises(FaultError, match=r"bad.yaml: not valid YAML"):
        load_faults(path)
    with pytest.raises(FaultError, match="cannot read the fault file"):
        load_faults(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("start", "duration", "start_ns", "duration_ns"), [
    ("20m", "1h45m", 20 * 60 * NS, 105 * 60 * NS), ("90s", "250ms", 90 * NS, 250_000_000),
    (0, "1d", 0, 86_400 * NS), ("0", "1w", 0, 7 * 86_400 * NS),
])
def test_start_and_duration_are_prometheus_durations(start: Any, duration: str, start_ns: int,
                                                     duration_ns: int) -> None:
    [fault] = faults_from_dict(_doc(_fault(start=start, duration=duration))).faults
    assert (fault.start_ns, fault.duration_ns) == (start_ns, duration_ns)


def test_fault_errors_are_problems_with_paths_and_fixes() -> None:
    with pytest.raises(FaultError) as info:
        faults_from_dict(_doc(_fault(magnitude=3)), source="f.yaml")
    assert isinstance(info.value, ProblemsError) and info.value.source == "f.yaml"
    [problem] = info.value.problems
    assert isinstance(problem, Problem) and problem.path == "faults[0].magnitude"
    assert "got 3" in problem.message and problem.fix == "magnitude: 0.0" and problem.code == "out_of_range"


def test_overlap_fix_names_an_exact_start_when_it_has_no_duration_spelling() -> None:
    doc = _doc(_fault(id="a", start=None, duration=None, start_ns=0, duration_ns=1_000_001),
               _fault(id="b", start=None, start_ns=5))
    assert "start it at or after start_ns: 1000001" in _problems(doc)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "runbooks" / "gamedays").glob(
    "*.yaml")), ids=lambda p: p.name)
def test_game_day_fault_lists_load(path: Path) -> None:
    # The game days keep their faults in the fault-file grammar; their fleets are built-in names.
    doc = yaml.safe_load(path.read_text())
    fleet = load_fleet(builtin_fleet_path(doc["fleet"]))
    schedule = faults_from_dict({"version": 1, "kind": "FaultSchedule", "faults": doc["faults"] or []}, fleet=fleet)
    # Calm days (no faults) measure false alarms; every other game day injects something.
    assert bool(schedule.faults) != path.name.startswith("calm-")
