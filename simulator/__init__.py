"""The Stim-powered fleet simulator: a fleet of quantum nodes with faults, emitting what an operator would see.

* :mod:`qfleet.simulator.fleet` / :mod:`qfleet.simulator.faults`: validated fleet and fault-schedule files.
* :mod:`qfleet.simulator.physics`: the closed forms (the tests' oracle); :mod:`qfleet.simulator.circuits`: Stim templates
  with per-instance noise; :mod:`qfleet.simulator.experiment`: one protocol against its prediction.
* :mod:`qfleet.simulator.engine`: the fleet run (control plane in simulated time over batched Stim physics);
  :mod:`qfleet.simulator.telemetry`: span and metric names; :mod:`qfleet.simulator.sinks`: the store or an OTLP endpoint.
* :mod:`qfleet.simulator.chain`: the repeater-chain workload of the peer comparison.
"""

from qfleet.simulator.chain import ChainConfig, ChainResult, run_chain
from qfleet.simulator.engine import OUTCOMES, RunConfig, SimStep, Simulation
from qfleet.simulator.experiment import ExperimentResult, run_experiment
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule, load_faults
from qfleet.simulator.fleet import Fleet, Link, Node, Tenant, load_fleet
from qfleet.simulator.sinks import OtlpSink, ProcessStoreSink, StoreSink
from qfleet.simulator.telemetry import METRICS, SPAN_NAMES

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
