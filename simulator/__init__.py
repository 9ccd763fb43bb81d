"""The Stim-powered fleet simulator: a fleet of quantum nodes with faults, emitting what an operator would see.

* :mod:`simulator.fleet` / :mod:`simulator.faults`: validated fleet and fault-schedule files.
* :mod:`simulator.physics`: the closed forms (the tests' oracle); :mod:`simulator.circuits`: Stim templates
  with per-instance noise; :mod:`simulator.experiment`: one protocol against its prediction.
* :mod:`simulator.engine`: the fleet run (control plane in simulated time over batched Stim physics);
  :mod:`simulator.telemetry`: span and metric names; :mod:`simulator.sinks`: the store or an OTLP endpoint.
* :mod:`simulator.chain`: the repeater-chain workload of the peer comparison.
"""

from simulator.chain import ChainConfig, ChainResult, run_chain
from simulator.engine import OUTCOMES, RunConfig, SimStep, Simulation
from simulator.experiment import ExperimentResult, run_experiment
from simulator.faults import Fault, FaultKind, FaultSchedule, load_faults
from simulator.fleet import Fleet, Link, Node, Tenant, load_fleet
from simulator.sinks import OtlpSink, ProcessStoreSink, StoreSink
from simulator.telemetry import METRICS, SPAN_NAMES

__all__ = [
    "METRICS",
    "OUTCOMES",
    "SPAN_NAMES",
    "ChainConfig",
    "ChainResult",
    "ExperimentResult",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "Fleet",
    "Link",
    "Node",
    "OtlpSink",
    "ProcessStoreSink",
    "RunConfig",
    "SimStep",
    "Simulation",
    "StoreSink",
    "Tenant",
    "load_faults",
    "load_fleet",
    "run_chain",
    "run_experiment",
]
