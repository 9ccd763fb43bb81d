"""The Stim-powered fleet simulator: a fleet of quantum nodes with faults, emitting what an operator would see.

* :mod:`qfleet.simulator.fleet` / :mod:`qfleet.simulator.faults` (:mod:`~qfleet.simulator.fault_files`): validated
  fleet and fault-schedule files (values in ``profiles``, ``hardware``, ``policies``, ``topology``; field rules in ``rules``).
* :mod:`qfleet.simulator.physics`: the closed forms (the tests' oracle); :mod:`qfleet.simulator.circuits`: Stim
  templates run with per-instance noise (:mod:`~qfleet.simulator.noise_masks`); :mod:`qfleet.simulator.experiment`: one protocol against its prediction.
* :mod:`qfleet.simulator.engine`: the fleet run (control plane in simulated time over batched Stim physics, in
  layers: ``runstate``, ``timeline``, ``control``, ``disturbances``; with ``shots`` and ``job_telemetry``);
  :mod:`qfleet.simulator.telemetry`: span and metric names; :mod:`qfleet.simulator.sinks`: the store or an OTLP
  endpoint.
* :mod:`qfleet.simulator.chain`: the repeater-chain workload of the peer comparison.

The names below load on first use (lazy_loader), so importing one submodule does not pull in the rest (the sinks
bring SQLAlchemy and the OpenTelemetry exporters).
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "chain": ["ChainConfig", "ChainResult", "run_chain"],
    "engine": ["OUTCOMES", "RunConfig", "SimStep", "Simulation"],
    "experiment": ["ExperimentResult", "run_experiment"],
    "fault_files": ["load_faults"],
    "faults": ["Fault", "FaultKind", "FaultSchedule"],
    "fleet": ["Fleet", "Link", "Node", "Tenant", "load_fleet"],
    "sinks": ["OtlpSink", "ProcessStoreSink", "StoreSink"],
    "telemetry": ["METRICS", "SPAN_NAMES"],
})

if TYPE_CHECKING:  # the same names, for type checkers (which do not run __getattr__)
    from qfleet.simulator.chain import ChainConfig as ChainConfig
    from qfleet.simulator.chain import ChainResult as ChainResult
    from qfleet.simulator.chain import run_chain as run_chain
    from qfleet.simulator.engine import OUTCOMES as OUTCOMES
    from qfleet.simulator.engine import RunConfig as RunConfig
    from qfleet.simulator.engine import SimStep as SimStep
    from qfleet.simulator.engine import Simulation as Simulation
    from qfleet.simulator.experiment import ExperimentResult as ExperimentResult
    from qfleet.simulator.experiment import run_experiment as run_experiment
    from qfleet.simulator.fault_files import load_faults as load_faults
    from qfleet.simulator.faults import Fault as Fault
    from qfleet.simulator.faults import FaultKind as FaultKind
    from qfleet.simulator.faults import FaultSchedule as FaultSchedule
    from qfleet.simulator.fleet import Fleet as Fleet
    from qfleet.simulator.fleet import Link as Link
    from qfleet.simulator.fleet import Node as Node
    from qfleet.simulator.fleet import Tenant as Tenant
    from qfleet.simulator.fleet import load_fleet as load_fleet
    from qfleet.simulator.sinks import OtlpSink as OtlpSink
    from qfleet.simulator.sinks import ProcessStoreSink as ProcessStoreSink
    from qfleet.simulator.sinks import StoreSink as StoreSink
    from qfleet.simulator.telemetry import METRICS as METRICS
    from qfleet.simulator.telemetry import SPAN_NAMES as SPAN_NAMES
