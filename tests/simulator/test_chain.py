"""Repeater-chain workload: pair rates against the geometric-attempt algebra, fidelities against the closed forms."""

from __future__ import annotations

import dataclasses
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
    config = ChainConfig(nodes=3, memory_policy="lanes", **FAST)
    result = run_chain(config, seed=5)
    mean_k, var_k = _max_geometric_moments(config.success_probability(), 2)
    mu, var = config.cycle_s() * mean_k, config.cycle_s() ** 2 * var_k
    expected = config.memories * config.duration_s / mu
    sd = math.sqrt(config.memories * config.duration_s * var / mu**3)
    assert abs(result.pairs_delivered - expected) <= 4 * sd + 2 * config.memories
    # The same hops with independent memories would deliver at the one-hop rate: strictly more.
    two = run_chain(ChainConfig(nodes=2, memory_policy="lanes", **FAST), seed=5)
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
    config = ChainConfig(nodes=3, coherence_time_s=t2, memories=40, duration_s=0.3, raw_fidelity=0.98,
                         memory_policy="lanes")
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


# --- pooled memories (issue 17) ------------------------------------------------------------------------------------


def _renewal_count_moments(steps: list[tuple[int, float, bool]], horizon: int) -> tuple[float, float]:
    """Mean and variance of the successes by ``horizon`` of a lattice renewal process started at 0.

    ``steps`` are the attempt classes (duration in lattice units, probability, ends in a success); after each
    attempt the next starts at once, and the process renews at every success. Exact, by dynamic programming:
    u[t] = P(an attempt starts at t), v[t] = P(a success at t), m[x] = E[successes by x], and
    E[N(N-1)] = 2 sum_s v[s] m[horizon - s].
    """
    u = np.zeros(horizon + 1)
    v = np.zeros(horizon + 1)
    u[0] = 1.0
    for t in range(horizon + 1):
        if u[t] == 0.0:
            continue
        for dur, prob, success in steps:
            if t + dur <= horizon:
                u[t + dur] += u[t] * prob
                if success:
                    v[t + dur] += u[t] * prob
    m = np.cumsum(v)
    mean = float(m[-1])
    second = mean + 2 * float(sum(v[s] * m[horizon - s] for s in range(horizon + 1)))
    return mean, second - mean**2


def test_pooled_two_nodes_negotiated_delivery_matches_the_renewal_oracle() -> None:
    # SeQUeNCe's Barrett-Kok timing on one 10 km hop (D = 50 us per router-router message, 25 us to the midpoint
    # and back): an attempt is REQUEST, NEGOTIATE, ACK lead, photon, result = 4D = 200 us, and one that passes
    # round 1 adds NEGOTIATE, ACK lead, photon, result = 3D = 150 us. With a = sqrt(2p) per photon and no dead
    # time: round 1 passes with a/2 (one excitation, clicked) + a(1-a)/2 (two excitations, exactly one click); a
    # pair needs a single-excitation round 1 and a round-2 click, p = a**2/2. Each of the M memory pairs renews at
    # every delivery (both ends free at once), independently: the count's mean and variance are M times one
    # renewal process's, computed exactly on the 50 us lattice.
    config = ChainConfig(nodes=2, link_protocol="negotiated", prep_time_s=0.0, memories=20, duration_s=0.05)
    p = config.success_probability()
    a = math.sqrt(2 * p)
    pass1 = a / 2 + a * (1 - a) / 2
    steps = [(4, 1 - pass1, False), (7, pass1 - p, False), (7, p, True)]
    mean, var = _renewal_count_moments(steps, horizon=1000)
    result = run_chain(config, seed=4)
    expected, sd = config.memories * mean, math.sqrt(config.memories * var)
    assert expected > 500
    assert abs(result.pairs_delivered - expected) <= 4 * sd
    assert result.attempt_cycle_s == pytest.approx(200e-6 + pass1 * 150e-6)


@pytest.mark.parametrize("nodes", [4, 8])
def test_pooled_memories_deliver_more_than_lanes(nodes: int) -> None:
    # The same hops and memories: pooling pairs any ready pair with any other instead of waiting for lane k's
    # slowest hop, so it delivers strictly more (the lanes count is pinned by its own renewal test above).
    lanes = run_chain(ChainConfig(nodes=nodes, memory_policy="lanes", memories=5, hop_km=0.0, prep_time_s=1e-6,
                                  duration_s=0.004), seed=2)
    pooled = run_chain(ChainConfig(nodes=nodes, memories=5, hop_km=0.0, prep_time_s=1e-6, duration_s=0.004),
                       seed=2)
    assert pooled.pairs_delivered > 1.2 * lanes.pairs_delivered


def test_interior_memories_are_freed_at_the_swap() -> None:
    # One memory per side and zero-length hops: pooling changes nothing, only when memories are freed. Holding
    # them to delivery (lanes) makes every round last cycle * max of 7 iid Geometric(p) attempt counts, a renewal
    # process with a known mean and variance. Freeing routers 2 and 6 at their swaps lets hops 1 and 5 restart
    # before router 4's final swap, so the pooled chain beats that renewal count by far more than its noise.
    config = ChainConfig(nodes=8, memories=1, hop_km=0.0, prep_time_s=1e-6, duration_s=0.03)
    mean_k, var_k = _max_geometric_moments(config.success_probability(), 7)
    mu, var = config.cycle_s() * mean_k, config.cycle_s() ** 2 * var_k
    lanes_mean, lanes_sd = config.duration_s / mu, math.sqrt(config.duration_s * var / mu**3)
    lanes = run_chain(dataclasses.replace(config, memory_policy="lanes"), seed=8)
    assert abs(lanes.pairs_delivered - lanes_mean) <= 4 * lanes_sd + 2
    pooled = run_chain(config, seed=8)
    assert pooled.pairs_delivered > lanes_mean + 6 * lanes_sd + 2


def _cutoff_chain_rate(p: float, c: int) -> float:
    """Deliveries per cycle of a 3-router chain, one memory per side, zero-length hops, cut-off after c cycles.

    Markov chain over cycles: E (no pair stored) or W(a) (one hop's pair stored for a cycles, a < c). From E both
    hops attempt: both herald (p**2) -> delivered, E; one (2p(1-p)) -> W(0). From W(a) the other hop attempts: a
    herald delivers (a pair stored exactly c cycles is still usable) -> E; no herald moves to W(a + 1), or, at
    a + 1 = c, discards the stored pair and restarts its hop in step with the other -> E.
    """
    n = c + 1  # state 0 = E, state 1 + a = W(a)
    t = np.zeros((n, n))
    t[0, 0] = p * p + (1 - p) ** 2
    t[0, 1] = 2 * p * (1 - p)
    for a in range(c):
        t[1 + a, 0] += p
        t[1 + a, 2 + a if a + 1 < c else 0] += 1 - p
    w, vecs = np.linalg.eig(t.T)
    pi = np.real(vecs[:, np.argmin(abs(w - 1))])
    pi /= pi.sum()
    return float(pi[0] * p * p + sum(pi[1 + a] * p for a in range(c)))


def test_cutoff_discards_stored_pairs_as_the_markov_chain_predicts() -> None:
    p_cfg = {"nodes": 3, "memories": 1, "hop_km": 0.0, "prep_time_s": 1e-6, "duration_s": 0.05,
             "coherence_time_s": 20e-6}
    free = run_chain(ChainConfig(**p_cfg), seed=3)
    cut = ChainConfig(**p_cfg, cutoff_s=1e-6)
    result = run_chain(cut, seed=3)
    rate = _cutoff_chain_rate(cut.success_probability(), 1)
    cycles = round(cut.duration_s / cut.cycle_s())
    expected = rate * cycles
    assert abs(result.pairs_delivered - expected) <= 4 * math.sqrt(2 * expected)
    assert result.pairs_delivered < 0.9 * free.pairs_delivered  # pairs fall ...
    assert result.predicted_fidelity > free.predicted_fidelity + 0.01  # ... and their fidelity rises
    assert _within(result.mean_fidelity, result.predicted_fidelity, result.pairs_delivered)


def test_swap_failures_thin_the_deliveries_as_predicted() -> None:
    # Three routers, one memory per side, zero-length hops: every round lasts cycle * max(K_1, K_2) whether the
    # swap succeeds or not (a failure frees the memories on the spot), and delivers with probability s.
    config = ChainConfig(nodes=3, memories=1, hop_km=0.0, prep_time_s=1e-6, duration_s=0.05, swap_success=0.5)
    mean_k, var_k = _max_geometric_moments(config.success_probability(), 2)
    mu, var = config.cycle_s() * mean_k, config.cycle_s() ** 2 * var_k
    rounds, rounds_var = config.duration_s / mu, config.duration_s * var / mu**3
    s = config.swap_success
    expected = s * rounds
    sd = math.sqrt(s * s * rounds_var + s * (1 - s) * rounds)
    result = run_chain(config, seed=6)
    assert abs(result.pairs_delivered - expected) <= 4 * sd + 2


def test_sequence_preset_values_are_the_cited_peer_defaults() -> None:
    from qfleet.simulator.chain_presets import CHAIN_PRESETS, CITATIONS

    fields, cited = CHAIN_PRESETS["sequence-0.8.5-swap"], CITATIONS["sequence-0.8.5-swap"]
    assert cited["detector_dead_time_s"][1] == 25e6 and fields["detector_dead_time_s"] == pytest.approx(40e-9)
    assert cited["prep_time_s"][1] == 8e7 and fields["prep_time_s"] == pytest.approx(12.5e-9)
    for name in ("detector_efficiency", "emission_efficiency", "swap_success", "cutoff_s"):
        assert fields[name] == cited[name][1], name
    assert all(":" in where and where.startswith("sequence/") for where, _ in cited.values())
    config = ChainConfig(nodes=4, **fields)
    assert config.link_protocol == "negotiated" and config.swap_negotiation and config.memory_policy == "pooled"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"memory_policy": "shared"}, "memory_policy"),
        ({"link_protocol": "telepathy"}, "link_protocol"),
        ({"swap_success": 0.0}, "swap_success"),
        ({"cutoff_s": 0.0}, "cutoff_s"),
        ({"memory_policy": "lanes", "cutoff_s": 1.0}, "cutoff_s"),
        ({"link_protocol": "negotiated", "scheme": "single-click"}, "link_protocol"),
        ({"swap_negotiation": 1}, "swap_negotiation"),
    ],
    ids=["unknown policy", "unknown link protocol", "swaps never succeed", "zero cut-off", "cut-off with lanes",
         "negotiated single-click", "negotiation not a bool"],
)
def test_bad_pooled_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ChainError, match=f"^{field}="):
        ChainConfig(nodes=3, **kwargs)  # type: ignore[arg-type]
