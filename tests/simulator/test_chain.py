"""Repeater-chain workload: pair rates against the geometric-attempt algebra, fidelities against the closed forms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qfleet.simulator import physics
from qfleet.simulator.chain import ChainConfig, ChainError, ChainResult, run_chain

# A short, lossless, fast link: many pairs in little simulated time, so statistical bounds are tight and quick.
FAST = {"hop_km": 0.0, "prep_time_s": 1e-6, "duration_s": 0.01, "memories": 20}


def _within(measured: float, predicted: float, n: int) -> bool:
    stderr = math.sqrt(predicted * (1 - predicted) / n)
    return abs(measured - predicted) <= 4 * stderr + 1e-3


def test_two_node_pair_rate_is_binomial_in_attempts() -> None:
    # With one hop, a freed memory retries at once, so every lane makes floor(W / cycle) back-to-back Bernoulli(p)
    # attempts: the count is Binomial(memories * floor(W / cycle), p) exactly, with mean memories * W / (cycle/p).
    config = ChainConfig(nodes=2, memories=20, duration_s=0.2)
    result = run_chain(config, seed=3)
    p, cycle = config.success_probability(), config.cycle_s()
    attempts = config.memories * math.floor(round(config.duration_s / cycle, 9))
    sd = math.sqrt(attempts * p * (1 - p))
    assert abs(result.pairs_delivered - attempts * p) <= 4 * sd + 1
    analytic = config.memories * config.duration_s / physics.mean_time_to_pair_s(p=p, cycle_s=cycle, memories=1)
    assert abs(result.pairs_delivered - analytic) <= 4 * sd + config.memories
    assert result.success_probability == pytest.approx(0.5 * (0.9 * 10 ** (-0.1)) ** 2)


def _max_geometric_moments(p: float, hops: int) -> tuple[float, float]:
    """Mean and variance of the max of ``hops`` iid Geometric(p) attempt counts (P(K > k) = (1-p)**k)."""
    k = np.arange(20_000)
    tail = 1 - (1 - (1 - p) ** k) ** hops  # P(max > k)
    mean = tail.sum()
    second = ((2 * k + 1) * tail).sum()
    return float(mean), float(second - mean**2)


def test_memories_are_held_until_delivery_so_a_round_waits_for_the_slowest_hop() -> None:
    # Zero-length hops and no processing: a lane's round lasts cycle * max(K_1, K_2), a renewal process, so the
    # count over W has mean W/mu and variance W sigma^2 / mu^3, up to an O(1) renewal bias per lane.
    config = ChainConfig(nodes=3, **FAST)
    result = run_chain(config, seed=5)
    mean_k, var_k = _max_geometric_moments(config.success_probability(), 2)
    mu, var = config.cycle_s() * mean_k, config.cycle_s() ** 2 * var_k
    expected = config.memories * config.duration_s / mu
    sd = math.sqrt(config.memories * config.duration_s * var / mu**3)
    assert abs(result.pairs_delivered - expected) <= 4 * sd + 2 * config.memories
    # The same hops with independent memories would deliver at the one-hop rate: strictly more.
    two = run_chain(ChainConfig(nodes=2, **FAST), seed=5)
    assert two.pairs_delivered > 1.2 * result.pairs_delivered


@pytest.mark.parametrize(
    ("nodes", "raw_fidelity", "gate_error", "readout_error"),
    [(2, 0.95, 0.0, 0.0), (3, 0.95, 0.0, 0.0), (5, 0.97, 0.0, 0.0), (4, 0.97, 0.02, 0.0), (4, 0.97, 0.0, 0.02)],
    ids=["one link", "one swap", "three swaps", "three swaps with gate error", "three swaps with readout error"],
)
def test_without_storage_the_stim_fidelity_is_the_werner_chain(
    nodes: int, raw_fidelity: float, gate_error: float, readout_error: float
) -> None:
    config = ChainConfig(nodes=nodes, raw_fidelity=raw_fidelity, coherence_time_s=math.inf,
                         gate_error=gate_error, readout_error=readout_error, **FAST)
    result = run_chain(config, seed=11)
    werner = physics.chain_fidelity([raw_fidelity] * (nodes - 1), gate_error=gate_error,
                                    readout_error=readout_error)
    assert result.pairs_delivered > 10_000
    assert result.werner_fidelity == pytest.approx(werner, abs=1e-12)
    # Readout flips are not Werner-twirled in the sampled model; the twirled formula is off by O(eps**2) only.
    assert result.predicted_fidelity == pytest.approx(werner, abs=1e-12 if readout_error == 0 else 2e-4)
    assert _within(result.mean_fidelity, werner, result.pairs_delivered)


def test_two_node_storage_dephases_both_halves_for_the_light_time() -> None:
    # One 10 km hop: each half is entangled from its emission, 50 us before the herald that delivers the pair.
    config = ChainConfig(nodes=2, coherence_time_s=1e-3, memories=40, duration_s=0.2, raw_fidelity=0.97)
    result = run_chain(config, seed=2)
    expected = physics.dephased_pair_fidelity(0.97, 50e-6, 1e-3)
    assert result.mean_end_wait_s == pytest.approx(50e-6)
    assert result.predicted_fidelity == pytest.approx(expected, abs=1e-12)
    assert _within(result.mean_fidelity, expected, result.pairs_delivered)


def test_three_node_storage_matches_the_geometric_wait_closed_form() -> None:
    # Hop i heralds after K_i attempts; the repeater swaps at the later herald. Each hop's two qubits idle for
    # c |K_0 - K_1| (the earlier hop only) plus the light time L/c each; the end qubits also wait for the outcome's
    # one-hop transit. Pure dephasing gives l_X = l_Y = exp(-sum(t)/T2), l_Z = 1, so
    # F = (1 + w^2 (1 + 2 C E[x^|K_0 - K_1|]))/4 with x = exp(-2c/T2), C = exp(-(4 L/c + 2 transit)/T2), and for
    # iid Geometric(p): E[x^|D|] = p/(2-p) (1 + 2 q x / (1 - q x)), q = 1 - p.
    t2 = 2e-3
    config = ChainConfig(nodes=3, coherence_time_s=t2, memories=40, duration_s=0.3, raw_fidelity=0.98)
    result = run_chain(config, seed=9)
    p, c = config.success_probability(), config.cycle_s()
    light = transit = 10 * physics.FIBRE_S_PER_KM
    q, x = 1 - p, math.exp(-2 * c / t2)
    e_x = p / (2 - p) * (1 + 2 * q * x / (1 - q * x))
    w = physics.werner(0.98)
    expected = (1 + w**2 * (1 + 2 * math.exp(-(4 * light + 2 * transit) / t2) * e_x)) / 4
    assert result.pairs_delivered > 10_000
    assert expected < result.werner_fidelity - 0.05
    assert _within(result.mean_fidelity, expected, result.pairs_delivered)
    assert _within(result.predicted_fidelity, expected, result.pairs_delivered)


@pytest.mark.parametrize(("t1_s", "t2_s"), [(math.inf, 5e-3), (4e-3, 5e-3)], ids=["dephasing", "T1 and T2"])
def test_finite_memory_lifetime_lowers_the_fidelity_as_predicted(t1_s: float, t2_s: float) -> None:
    config = ChainConfig(nodes=4, t1_s=t1_s, coherence_time_s=t2_s, memories=40, duration_s=0.3)
    result = run_chain(config, seed=7)
    assert result.pairs_delivered > 5_000
    assert _within(result.mean_fidelity, result.predicted_fidelity, result.pairs_delivered)
    stderr = math.sqrt(result.predicted_fidelity * (1 - result.predicted_fidelity) / result.pairs_delivered)
    assert result.werner_fidelity - result.predicted_fidelity > 10 * stderr
    assert result.mean_end_wait_s > 3 * 10 * physics.FIBRE_S_PER_KM  # at least the outcome's 30 km of transit


def test_longer_storage_costs_more_fidelity() -> None:
    short, long = (run_chain(ChainConfig(nodes=4, coherence_time_s=t2, memories=20, duration_s=0.2), seed=1)
                   for t2 in (1.0, 5e-3))
    assert short.pairs_delivered == long.pairs_delivered  # timing draws do not depend on the noise parameters
    assert long.predicted_fidelity < short.predicted_fidelity - 0.05
    assert long.mean_fidelity < short.mean_fidelity - 0.05


def test_same_seed_same_result_other_seed_differs() -> None:
    config = ChainConfig(nodes=4, duration_s=0.1)
    assert run_chain(config, seed=4) == run_chain(config, seed=4)
    a, b = run_chain(config, seed=4), run_chain(config, seed=5)
    assert (a.pairs_delivered, a.mean_fidelity) != (b.pairs_delivered, b.mean_fidelity)


def test_eight_nodes_deliver_pairs_in_the_default_window() -> None:
    # Its wall time is bench/bench_chain_peer.py's business (budget: well under a second).
    result = run_chain(ChainConfig(nodes=8), seed=0)
    assert result.pairs_delivered > 1_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodes", 1), ("nodes", True), ("nodes", 2.0), ("memories", 0), ("hop_km", -1.0),
        ("attenuation_db_per_km", math.nan), ("raw_fidelity", 0.2), ("duration_s", 0.0),
        ("coherence_time_s", 0.0), ("t1_s", -1.0), ("scheme", "triple-click"), ("emission_efficiency", 0.0),
        ("collection_efficiency", 1.5), ("detector_efficiency", "0.9"), ("bright_state_population", 0.0),
        ("prep_time_s", math.inf), ("gate_error", 1.0), ("readout_error", 0.6), ("processing_time_s", -1e-6),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ChainError, match=f"^{field}="):
        ChainConfig(**{"nodes": 3, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"coherence_time_s": 1.0, "t1_s": 0.1}, "coherence_time_s"),
        ({"hop_km": 0.0, "prep_time_s": 0.0}, "prep_time_s"),
        ({"hop_km": 90_000.0}, "hop_km"),
        ({"hop_km": 500.0}, "hop_km"),
        ({"duration_s": 1e5, "memories": 1000}, "duration_s"),
    ],
    ids=["T2 above 2 T1", "zero attempt cycle", "heralding underflows", "heralding too rare", "too many pairs"],
)
def test_inconsistent_config_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ChainError, match=f"^{field}="):
        ChainConfig(nodes=3, **kwargs)


def test_bad_seed_is_rejected() -> None:
    with pytest.raises(ChainError, match="^seed="):
        run_chain(ChainConfig(nodes=2), seed=-1)


def test_json_dict_leads_with_the_agreed_keys() -> None:
    result = run_chain(ChainConfig(nodes=3, duration_s=0.05), seed=0)
    d = result.to_json_dict(wall_s=0.002)
    assert list(d)[:5] == ["nodes", "simulated_s", "wall_s", "pairs_delivered", "mean_fidelity"]
    assert d["pairs_per_wall_s"] == pytest.approx(result.pairs_delivered / 0.002)
    json.dumps(d, allow_nan=False)
    with pytest.raises(ChainError, match="^wall_s="):
        result.to_json_dict(wall_s=-1.0)


def test_a_window_shorter_than_one_attempt_delivers_nothing() -> None:
    result = run_chain(ChainConfig(nodes=3, duration_s=1e-6), seed=0)
    assert result.pairs_delivered == 0 and math.isnan(result.mean_fidelity)
    d = result.to_json_dict(wall_s=0.0)
    assert d["mean_fidelity"] is None and d["pairs_per_wall_s"] is None
    json.dumps(d, allow_nan=False)


def test_result_rejects_a_fidelity_outside_the_unit_interval() -> None:
    with pytest.raises(ChainError, match="^mean_fidelity="):
        ChainResult(2, 0.5, 10, 1.5, 0.0, 0.9, 0.9, 0.2, 1e-4, 5e-5)
