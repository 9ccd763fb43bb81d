"""Repeater chain side by side: qfleet's vectorised chain against SeQUeNCe 0.8.5, same workload, same machine.

Workload (physics.md 6, preset "swap"), one independent run per chain length N in 2, 4, 8: a linear chain of N
``QuantumRouter`` s, 10 km per hop with a BSM node at the midpoint (two 5 km arms), 0.2 dB/km, classical channels
between every pair of routers with delay = distance / 2e8 m/s, 10 memories per router of which the request
reserves 5, coherence time 1 s, raw fidelity 0.99, target 0.6; r0 requests pairs with r(N-1) for 0.5 s from 10 ms.

The peer runs in its own venv (``.venv-peer``, ``pip install sequence==0.8.5``) as a subprocess of this script,
``<peer-python> bench/bench_chain_peer.py --peer-worker --nodes N --seed S``, and prints one JSON line. It uses the
documented API only: ``RouterNetTopo`` from a JSON file written to a temp dir, the stock ``RequestApp`` subclassed
only to record delivered fidelities, ``Timeline.init()`` / ``run()``. Its wall time covers topology build, init and
run, not interpreter start-up or imports; qfleet's covers the whole :func:`qfleet.simulator.chain.run_chain` (median of
``--repeats`` after one warm-up).

qfleet runs ``qfleet sim chain --preset sequence-0.8.5-swap`` (:mod:`qfleet.simulator.chain_presets`): every value
there is the workload's or a default read in the peer's source (cited ``file:line``); nothing is fitted to the
peer's output. The peer's protocol is modelled explicitly by the pooled policy: Barrett-Kok's REQUEST and two
NEGOTIATE rounds at 5 us/km, the detectors' dead time shared by a hop's concurrent sessions, tree-ordered swaps
after a REQUEST/RESPONSE round trip to both ends, interior memories freed at the swap. Before the runs the bench
asks the installed peer for the defaults the preset cites (``--peer-defaults``) and stops if any differs.

Fidelities differ by design: the peer multiplies F1 * F2 * 0.95 per swap (0.99**(N-1) * 0.95**(N-2)), a rule with no
physical basis that falls far below the Werner swap algebra w = w1 * w2 (physics.md 1.4); qfleet samples every pair
in Stim with its own storage dephasing (T2 = 1 s, emission to swap or to its last correction, classical transit
included), next to the closed-form prediction (Werner with storage) and the peer's rule.

Pass criteria (issue 17): delivered pairs within +-10 % of the peer at every N, and at least 1000x the peer's
delivered pairs per wall-second.

    .venv/bin/python bench/bench_chain_peer.py [--nodes 2 4 8] [--seed 0] [--repeats 5] [--peer-python PATH]
    .venv/bin/python bench/bench_chain_peer.py --quick      # qfleet only, no peer

Prints the comparison table, the budget check (qfleet's default 8-router chain, 0.5 s simulated, runs in well under
a second: median of ``--repeats`` after a warm-up, as a long-lived CLI would run it), the machine (cores, load
average) and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"

HOP_M = 10_000
ATTENUATION_DB_PER_M = 2e-4
LIGHT_M_PER_S = 2e8
MEMORIES_PER_ROUTER = 10
MEMORIES_RESERVED = 5
COHERENCE_S = 1.0
RAW_FIDELITY = 0.99
TARGET_FIDELITY = 0.6
START_S = 0.01
DURATION_S = 0.5
BUDGET_NODES = 8
BUDGET_S = 1.0
PRESET = "sequence-0.8.5-swap"
RATE_TOLERANCE = 0.10
SPEED_TARGET = 1000.0


# --- peer side (runs under the peer's interpreter; imports nothing from qfleet) ----------------------------------

def peer_topology(nodes: int, seed: int) -> dict[str, Any]:
    """The RouterNetTopo JSON for the workload: routers, meet-in-the-middle links, all-pairs classical channels."""
    routers = [f"r{i}" for i in range(nodes)]
    cchannels = []
    for i, a in enumerate(routers):
        for j, b in enumerate(routers):
            if i != j:
                distance = abs(i - j) * HOP_M
                cchannels.append({"source": a, "destination": b, "distance": distance,
                                  "delay": round(distance / LIGHT_M_PER_S * 1e12)})
    return {
        "nodes": [{"name": r, "type": "QuantumRouter", "seed": seed * 1000 + i, "memo_size": MEMORIES_PER_ROUTER,
                   "template": "router"} for i, r in enumerate(routers)],
        "qconnections": [{"node1": routers[i], "node2": routers[i + 1], "attenuation": ATTENUATION_DB_PER_M,
                          "distance": HOP_M, "type": "meet_in_the_middle", "seed": seed * 1000 + 500 + i}
                         for i in range(nodes - 1)],
        "cchannels": cchannels,
        "stop_time": round((START_S + DURATION_S) * 1e12),
        "templates": {"router": {"MemoryArray": {"fidelity": RAW_FIDELITY, "coherence_time": COHERENCE_S}}},
    }


def peer_worker(nodes: int, seed: int) -> dict[str, Any]:
    """Run SeQUeNCe on the workload; return delivered pairs, their mean fidelity, wall time and event count."""
    from sequence.app.request_app import RequestApp
    from sequence.topology.router_net_topo import RouterNetTopo

    delivered: list[float] = []

    class RecordingApp(RequestApp):
        """The stock RequestApp; records the fidelity of each pair it counts."""

        def get_memory(self, info: Any) -> None:
            before, fidelity = self.memory_counter, info.fidelity
            super().get_memory(info)
            if self.memory_counter > before:
                delivered.append(fidelity)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chain.json")
        with open(path, "w") as fh:
            json.dump(peer_topology(nodes, seed), fh)
        tick = time.perf_counter()
        topo = RouterNetTopo(path)
    tl = topo.get_timeline()
    routers = {r.name: r for r in topo.get_nodes_by_type(RouterNetTopo.QUANTUM_ROUTER)}
    app = RecordingApp(routers["r0"])
    for name, router in routers.items():
        if name != "r0":
            RequestApp(router)
    tl.init()
    app.start(f"r{nodes - 1}", round(START_S * 1e12), round((START_S + DURATION_S) * 1e12), MEMORIES_RESERVED,
              TARGET_FIDELITY)
    tl.run()
    wall = time.perf_counter() - tick
    return {"nodes": nodes, "simulated_s": DURATION_S, "wall_s": wall, "pairs_delivered": len(delivered),
            "mean_fidelity": sum(delivered) / len(delivered) if delivered else None, "events": tl.run_counter}


def peer_defaults() -> dict[str, float]:
    """The installed peer's defaults that the preset cites, read from its constructors' signatures."""
    import inspect

    from sequence.components.detector import Detector
    from sequence.components.memory import MemoryArray
    from sequence.components.optical_channel import QuantumChannel
    from sequence.entanglement_management.swapping import EntanglementSwappingA

    def default(cls: Any, name: str) -> float:
        return float(inspect.signature(cls.__init__).parameters[name].default)

    return {"detector_efficiency": default(Detector, "efficiency"),
            "detector_dead_time_s": default(Detector, "count_rate"),
            "prep_time_s": default(QuantumChannel, "frequency"),
            "emission_efficiency": default(MemoryArray, "efficiency"),
            "swap_success": default(EntanglementSwappingA, "success_prob"),
            "cutoff_s": default(MemoryArray, "cutoff_ratio") * COHERENCE_S}


def check_peer_defaults(peer_python: Path) -> dict[str, Any]:
    """Compare the preset's cited raw values with the installed peer's; stop on any difference."""
    from qfleet.simulator.chain_presets import CITATIONS

    done = subprocess.run([str(peer_python), str(Path(__file__).resolve()), "--peer-defaults"], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"reading the peer's defaults failed: {done.stderr[-2000:]}")
    actual = json.loads(done.stdout.strip().splitlines()[-1])
    cited = {k: v for k, (_, v) in CITATIONS[PRESET].items()}
    wrong = {k: (cited[k], actual.get(k)) for k in cited if actual.get(k) != cited[k]}
    if wrong:
        raise SystemExit(f"the preset cites values the installed peer does not have (cited, actual): {wrong}")
    return {"checked": sorted(cited), "ok": True}


def run_peer(peer_python: Path, nodes: int, seed: int) -> dict[str, Any]:
    """The peer worker in its own interpreter; its last stdout line is the JSON result."""
    cmd = [str(peer_python), str(Path(__file__).resolve()), "--peer-worker", "--nodes", str(nodes),
           "--seed", str(seed)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"peer worker failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- qfleet side -------------------------------------------------------------------------------------------------

def qfleet_config(nodes: int) -> Any:
    """The ChainConfig of ``qfleet sim chain --preset sequence-0.8.5-swap --nodes N``."""
    from qfleet.simulator.chain import ChainConfig
    from qfleet.simulator.chain_presets import preset

    return ChainConfig(nodes=nodes, **preset(PRESET))


def run_qfleet(nodes: int, seed: int, repeats: int) -> dict[str, Any]:
    """run_chain on the mapped config; wall time is the median of ``repeats`` timed runs after a warm-up."""
    from qfleet.simulator.chain import run_chain

    config = qfleet_config(nodes)
    result = run_chain(config, seed=seed)
    walls = []
    for _ in range(repeats):
        tick = time.perf_counter()
        again = run_chain(config, seed=seed)
        walls.append(time.perf_counter() - tick)
        if again != result:
            raise SystemExit(f"run_chain is not deterministic for nodes={nodes}, seed={seed}")
    return result.to_json_dict(wall_s=statistics.median(walls))


def budget_check(repeats: int) -> dict[str, Any]:
    """qfleet's default chain of BUDGET_NODES routers: median wall time of ``repeats`` runs after a warm-up."""
    from qfleet.simulator.chain import ChainConfig, run_chain

    config = ChainConfig(nodes=BUDGET_NODES)
    run_chain(config, seed=0)  # warm caches (circuit template, numpy) as a long-lived CLI would
    walls = []
    for _ in range(repeats):
        tick = time.perf_counter()
        result = run_chain(config, seed=0)
        walls.append(time.perf_counter() - tick)
    wall = statistics.median(walls)
    return {"nodes": BUDGET_NODES, "simulated_s": config.duration_s, "pairs_delivered": result.pairs_delivered,
            "median_wall_s": wall, "budget_s": BUDGET_S, "ok": wall < BUDGET_S, "cores": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


# --- report ------------------------------------------------------------------------------------------------------

def _rate(row: dict[str, Any] | None) -> float | None:
    if not row or not row["wall_s"]:
        return None
    return row["pairs_delivered"] / row["wall_s"]


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def report(rows: list[dict[str, Any]], out: Any = sys.stdout) -> None:
    """Print the comparison table and the notes."""
    print(f"{'N':>2} | {'peer pairs':>10} {'qfleet pairs':>12} {'ratio':>6} | {'peer pairs/wall-s':>17} "
          f"{'qfleet pairs/wall-s':>19} {'speed-up':>9} | {'peer F':>7} {'qfleet F (Stim)':>16} "
          f"{'peer rule F':>11} {'Werner+storage':>14}", file=out)
    for row in rows:
        peer, q = row["peer"], row["qfleet"]
        qf = f"{q['mean_fidelity']:.4f}+-{q['fidelity_stderr']:.4f}" if q["mean_fidelity"] is not None else "-"
        print(f"{row['nodes']:>2} | {_fmt(peer and peer['pairs_delivered'], ',d'):>10} "
              f"{q['pairs_delivered']:>12,d} {_fmt(row['pair_ratio'], '.3f'):>6} | {_fmt(_rate(peer), ',.0f'):>17} "
              f"{_fmt(_rate(q), ',.0f'):>19} {_fmt(row['speedup'], ',.0f'):>8}x | "
              f"{_fmt(peer and peer['mean_fidelity'], '.4f'):>7} {qf:>16} {row['peer_rule_fidelity']:>11.4f} "
              f"{_fmt(q['predicted_fidelity'], '.4f'):>14}", file=out)
    print(file=out)
    print("ratio = qfleet / peer delivered pairs (target 0.90-1.10); speed-up = qfleet / peer pairs per wall-second "
          f"(target >= {SPEED_TARGET:,.0f}x). Peer rule F = 0.99^(N-1) * 0.95^(N-2); Werner+storage = the closed "
          "form qfleet's Stim samples estimate (Werner links, w = w1*w2 per swap, T2 = 1 s dephasing over each "
          "qubit's storage and classical transit).", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --peer-worker, one peer run) and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 4, 8], help="chain lengths N (routers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed qfleet runs per N (median reported)")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON,
                        help="interpreter of the venv with sequence==0.8.5")
    parser.add_argument("--quick", action="store_true", help="qfleet only, no peer (smoke test)")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peer-defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 2 for n in args.nodes) or args.repeats < 1:
        parser.error("--nodes must all be >= 2 and --repeats >= 1")

    if args.peer_defaults:
        print(json.dumps(peer_defaults()))
        return 0
    if args.peer_worker:
        if len(args.nodes) != 1:
            parser.error("--peer-worker runs exactly one chain length")
        print(json.dumps(peer_worker(args.nodes[0], args.seed)))
        return 0

    if not args.quick and not args.peer_python.exists():
        parser.error(f"--peer-python {args.peer_python} does not exist; create it with "
                     "`python3 -m venv .venv-peer && .venv-peer/bin/pip install sequence==0.8.5` or pass --quick")
    from qfleet.simulator.chain_presets import peer_rule_fidelity

    defaults = None if args.quick else check_peer_defaults(args.peer_python)
    rows = []
    for n in args.nodes:
        peer = None if args.quick else run_peer(args.peer_python, n, args.seed)
        q = run_qfleet(n, args.seed, args.repeats)
        peer_rate, q_rate = _rate(peer), _rate(q)
        rows.append({"nodes": n, "peer": peer, "qfleet": q,
                     "pair_ratio": q["pairs_delivered"] / peer["pairs_delivered"] if peer else None,
                     "speedup": q_rate / peer_rate if peer_rate and q_rate else None,
                     "peer_rule_fidelity": peer_rule_fidelity(RAW_FIDELITY, n)})
    report(rows)
    budget = budget_check(args.repeats)
    print(f"\nbudget: the default {budget['nodes']}-router chain ({budget['simulated_s']:g} s simulated, "
          f"{budget['pairs_delivered']:,} pairs) ran in {budget['median_wall_s'] * 1e3:.1f} ms (median of "
          f"{args.repeats}; budget < {BUDGET_S * 1e3:.0f} ms): {'ok' if budget['ok'] else 'OUT OF BUDGET'}")
    print(f"machine: {budget['cores']} cores, load average {' '.join(map(str, budget['loadavg']))}")
    verdict = None
    if not args.quick:
        pairs_ok = all(abs(r["pair_ratio"] - 1) <= RATE_TOLERANCE for r in rows)
        speed_ok = all(r["speedup"] is not None and r["speedup"] >= SPEED_TARGET for r in rows)
        verdict = {"pairs_within_10pct": pairs_ok, "speedup_at_least_1000x": speed_ok}
        print(f"pairs within +-{RATE_TOLERANCE:.0%} at every N: {'PASS' if pairs_ok else 'FAIL'}; "
              f">= {SPEED_TARGET:,.0f}x pairs per wall-second at every N: {'PASS' if speed_ok else 'FAIL'}")
    print(json.dumps({"bench": "chain_peer", "preset": PRESET, "seed": args.seed, "quick": args.quick,
                      "peer_defaults": defaults, "verdict": verdict, "rows": rows, "budget": budget}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
