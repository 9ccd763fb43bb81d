"""`qfleet sim experiment` protocols: Stim-measured figures against their closed forms, and input errors.

Statistical checks are seeded and use |measured - predicted| <= 4 stderr + slack with the result's own binomial
standard error (slack 1e-3 for fidelities, relative 1e-9 for times and probabilities with zero variance).
"""

from __future__ import annotations

import json
import math

import pytest

from qfleet.simulator import physics as P
from qfleet.simulator.experiment import PROTOCOLS, ExperimentError, ExperimentResult, run_experiment

SHOTS = 10_000


def assert_fidelity_agrees(r: ExperimentResult) -> None:
    assert abs(r.fidelity - r.predicted_fidelity) <= 4 * r.fidelity_stderr + 1e-3, r.format_text()


def assert_agrees(measured: float, predicted: float, stderr: float) -> None:
    assert abs(measured - predicted) <= 4 * stderr + 1e-9 * abs(predicted), (measured, predicted, stderr)


def test_the_issue_protocols_and_parameters_exist() -> None:
    expected = {
        "bell": {"fidelity", "readout_error"},
        "memory": {"fidelity", "wait_s", "t1_s", "t2_s"},
        "swap-chain": {"links", "fidelity", "gate_error", "readout_error"},
        "purify": {"method", "fidelity"},
        "ghz": {"nodes", "fidelity"},
        "teleport-cnot": {
            "fidelity", "gate_error", "readout_error", "pair_wait_s", "round_trip_s", "t1_s", "t2_s"},
        "link": {
            "length_km",
            "scheme",
            "attenuation_db_per_km",
            "emission_efficiency",
            "collection_efficiency",
            "detector_efficiency",
            "conversion_efficiency",
            "dark_count_probability",
            "visibility",
            "bright_state_population",
            "prep_time_s",
            "memories",
        },
    }
    assert {name: set(spec.by_name) for name, spec in PROTOCOLS.items()} == expected


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_protocol_runs_at_its_defaults_and_agrees(protocol: str) -> None:
    r = run_experiment(protocol, {}, shots=SHOTS, seed=1)
    assert r.params == PROTOCOLS[protocol].defaults()
    assert r.shots == SHOTS
    assert_fidelity_agrees(r)


@pytest.mark.parametrize("f", [0.99, 0.95, 0.8])
@pytest.mark.parametrize("r", [0.0, 0.02, 0.1])
def test_bell_readout_estimate(f: float, r: float) -> None:
    res = run_experiment("bell", {"fidelity": f, "readout_error": r}, shots=SHOTS, seed=2)
    assert res.predicted_fidelity == pytest.approx(P.readout_bell_estimate(f, r))
    assert_fidelity_agrees(res)
    assert res.extra["correlator_yy"] < 0 < res.extra["correlator_xx"]  # |Phi+>: <YY> = -1


@pytest.mark.parametrize(
    ("f", "wait", "t1", "t2"),
    [
        (0.95, 2e-3, math.inf, 10e-3),
        (1.0, 0.05, math.inf, 0.1),
        (0.9, 0.2, 0.5, 0.4),
        (0.97, 1.0, 1.0, 2.0),
        (0.8, 0.0, 1.0, 1.0),
    ],
)
def test_memory(f: float, wait: float, t1: float, t2: float) -> None:
    res = run_experiment(
        "memory", {"fidelity": f, "wait_s": wait, "t1_s": t1, "t2_s": t2}, shots=SHOTS, seed=3
    )
    assert_fidelity_agrees(res)
    if math.isinf(t1):
        assert res.predicted_fidelity == pytest.approx(P.dephased_pair_fidelity(f, wait, t2))


@pytest.mark.parametrize("links", [1, 2, 4])
@pytest.mark.parametrize("f", [0.95, 0.85])
@pytest.mark.parametrize(("pg", "eps"), [(0.0, 0.0), (0.01, 0.02)])
def test_swap_chain(links: int, f: float, pg: float, eps: float) -> None:
    params = {"links": links, "fidelity": f, "gate_error": pg, "readout_error": eps}
    res = run_experiment("swap-chain", params, shots=SHOTS, seed=4)
    assert res.predicted_fidelity == pytest.approx(
        P.chain_fidelity([f] * links, gate_error=pg, readout_error=eps)
    )
    assert_fidelity_agrees(res)


@pytest.mark.parametrize("method", ["bbpssw", "dejmps"])
@pytest.mark.parametrize("f", [0.6, 0.85, 0.95])
def test_purify(method: str, f: float) -> None:
    res = run_experiment("purify", {"method": method, "fidelity": f}, shots=SHOTS, seed=5)
    p, f_out = P.bbpssw(f)
    assert res.predicted_fidelity == pytest.approx(f_out)
    assert res.extra["predicted_success_probability"] == pytest.approx(p)
    assert_fidelity_agrees(res)
    assert res.success_probability is not None
    assert_agrees(res.success_probability, p, res.extra["success_probability_stderr"] + 1e-4)


@pytest.mark.parametrize("nodes", [2, 3, 5, 8])
@pytest.mark.parametrize("f", [0.99, 0.9])
def test_ghz(nodes: int, f: float) -> None:
    res = run_experiment("ghz", {"nodes": nodes, "fidelity": f}, shots=SHOTS, seed=6)
    assert res.predicted_fidelity == pytest.approx(P.ghz_fidelity(nodes, f))
    assert_fidelity_agrees(res)


@pytest.mark.parametrize("f", [0.97, 0.9, 0.7])
def test_teleport_cnot(f: float) -> None:
    res = run_experiment("teleport-cnot", {"fidelity": f}, shots=SHOTS, seed=7)
    assert_fidelity_agrees(res)
    assert res.extra["predicted_average_gate_fidelity"] == pytest.approx((4 * f + 1) / 5)
    assert res.extra["average_gate_fidelity"] == pytest.approx((4 * res.fidelity + 1) / 5)


@pytest.mark.parametrize("scheme", ["double-click", "single-click"])
@pytest.mark.parametrize("length", [0.0, 10.0, 50.0])
@pytest.mark.parametrize("memories", [1, 4])
def test_link(scheme: str, length: float, memories: int) -> None:
    params = {"scheme": scheme, "length_km": length, "memories": memories, "collection_efficiency": 0.3}
    res = run_experiment("link", params, shots=SHOTS, seed=8)
    kw = {k: res.params[k] for k in ("attenuation_db_per_km", "emission_efficiency", "detector_efficiency",
                                     "visibility", "bright_state_population", "conversion_efficiency",
                                     "dark_count_probability")}
    p, paulis, f = P.link_pair(scheme=scheme, length_km=length, collection_efficiency=0.3, **kw)
    cycle = P.attempt_cycle_s(prep_time_s=res.params["prep_time_s"], length_km=length)
    assert res.extra["predicted_success_probability"] == pytest.approx(p)
    assert res.extra["predicted_mean_time_s"] == pytest.approx(
        P.mean_time_to_pair_s(p=p, cycle_s=cycle, memories=memories)
    )
    assert res.success_probability is not None
    assert_agrees(res.success_probability, p, res.extra["success_probability_stderr"])
    assert_agrees(
        res.extra["mean_time_s"], res.extra["predicted_mean_time_s"], res.extra["mean_time_stderr_s"]
    )
    # The exact state's fidelity, which its Pauli twirl (what Stim samples) preserves; tests/simulator/
    # test_physics_truth.py checks it against a density matrix of the protocol.
    assert res.predicted_fidelity == pytest.approx(f)
    assert res.extra["twirled_fidelity"] == pytest.approx(1 - sum(paulis))
    assert_fidelity_agrees(res)


def test_link_with_certain_heralding_takes_exactly_one_cycle() -> None:
    # Deterministic microwave transfer succeeds at every attempt (a heralded scheme never does: single-click's
    # both-dark branch makes no click).
    params = {"scheme": "microwave", "length_km": 0, "prep_time_s": 1e-3}
    res = run_experiment("link", params, shots=1000, seed=9)
    assert res.success_probability == 1.0
    assert res.extra["mean_time_s"] == pytest.approx(1e-3)
    assert res.extra["mean_time_stderr_s"] == 0.0


def test_memory_stderr_is_binomial() -> None:
    res = run_experiment("memory", {}, shots=SHOTS, seed=10)
    assert res.fidelity_stderr == pytest.approx(math.sqrt(res.fidelity * (1 - res.fidelity) / SHOTS))


# --- parameters, determinism, output ---------------------------------------------------------------------------


def test_string_parameters_from_the_cli_are_parsed() -> None:
    res = run_experiment("swap-chain", {"links": "4", "fidelity": " 0.9 ", "gate_error": "1e-2"}, shots=100)
    assert res.params == {"links": 4, "fidelity": 0.9, "gate_error": 0.01, "readout_error": 0.0}
    assert isinstance(res.params["links"], int)
    assert run_experiment("memory", {"t1_s": "inf"}, shots=10).params["t1_s"] == math.inf
    assert run_experiment("ghz", {"nodes": "5.0"}, shots=10).params["nodes"] == 5


def test_equal_seeds_give_equal_results() -> None:
    a = run_experiment("ghz", {"nodes": 4}, shots=5000, seed=11)
    b = run_experiment("ghz", {"nodes": 4}, shots=5000, seed=11)
    assert a == b


def test_shots_beyond_one_chunk_are_all_counted() -> None:
    res = run_experiment("purify", {"fidelity": 0.9}, shots=70_001, seed=12)
    assert res.shots == 70_001
    assert_fidelity_agrees(res)
    assert (
        abs(
            res.fidelity_stderr
            - math.sqrt(res.fidelity * (1 - res.fidelity) / (res.success_probability * 70_001))
        )
        < 1e-12
    )


def test_json_dict_has_the_documented_keys_in_order() -> None:
    res = run_experiment("purify", {"method": "bbpssw"}, shots=500, seed=13)
    d = res.to_json_dict()
    assert list(d)[:7] == [
        "protocol",
        "params",
        "shots",
        "fidelity",
        "fidelity_stderr",
        "predicted_fidelity",
        "success_probability",
    ]
    assert list(d)[7:] == list(res.extra)
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["params"] == {"method": "bbpssw", "fidelity": 0.85}


def test_json_dict_without_a_success_probability_has_null() -> None:
    assert run_experiment("ghz", {}, shots=100).to_json_dict()["success_probability"] is None


def test_text_summary_names_the_protocol_and_figures() -> None:
    res = run_experiment("link", {}, shots=200, seed=14)
    text = res.format_text()
    assert text.startswith("link: length_km=10.0 scheme=double-click")
    assert f"{res.fidelity:.5f}" in text and f"{res.predicted_fidelity:.5f}" in text
    assert "mean_time_s" in text and "predicted_mean_time_s" in text


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "params", "kw", "needles"),
    [
        ("teleport", {}, {}, ["'teleport' is unknown", "teleport-cnot", "e.g."]),
        ("ghz", {"node": 3}, {}, ["unknown parameter 'node'", "nodes, fidelity", "--param nodes=3"]),
        (
            "bell",
            {"fidelity": "high"},
            {},
            ["fidelity='high' is not a number", "[0.25, 1]", "--param fidelity=0.95"],
        ),
        ("bell", {"fidelity": 1.2}, {}, ["fidelity=1.2 is out of range", "a number in [0.25, 1]"]),
        ("bell", {"readout_error": "nan"}, {}, ["readout_error='nan' is not a number"]),
        ("ghz", {"nodes": "2.5"}, {}, ["nodes='2.5' is not an integer", "an integer in [2, 100]"]),
        ("ghz", {"nodes": 1}, {}, ["nodes=1 is out of range"]),
        ("ghz", {"nodes": True}, {}, ["boolean"]),
        ("purify", {"method": "bbq"}, {}, ["method='bbq' is not allowed", "one of bbpssw, dejmps"]),
        ("link", {"scheme": "two-click"}, {}, ["one of double-click, single-click, microwave"]),
        ("memory", {"t2_s": 0}, {}, ["t2_s=0 is out of range", "(0, inf]"]),
        ("memory", {"t1_s": 0.1, "t2_s": 0.5}, {}, ["T2 <= 2 T1", "--param t1_s="]),
        ("link", {"collection_efficiency": 0, "dark_count_probability": 0}, {},
         ["heralding probability is 0.0", "e.g. --param"]),
        ("link", {}, {"profile": "ion"}, ["profile 'ion' is unknown", "ion-photonic", "--profile nv"]),
        ("ghz", {}, {"shots": 0}, ["shots=0", "--shots 10000"]),
        ("ghz", {}, {"seed": -3}, ["seed=-3"]),
    ],
)
def test_bad_requests_raise_experiment_error_with_a_fix(
    protocol: str, params: dict[str, object], kw: dict[str, int], needles: list[str]
) -> None:
    with pytest.raises(ExperimentError) as info:
        run_experiment(protocol, params, **kw)  # type: ignore[arg-type]
    for needle in needles:
        assert needle in str(info.value)
    assert isinstance(info.value, ValueError)
