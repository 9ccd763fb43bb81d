"""The fleet engine: a discrete-event control plane over batched Stim physics, in simulated time.

Only the control plane is event driven (job arrivals and completions, faults, calibrations, in a heap keyed by
integer-ns simulated time). Everything per attempt or per shot is vectorised (physics.md 4):

* link timing: each job shot's pair on each fibre segment takes a geometric number of attempt cycles, drawn in
  one numpy call per job; early pairs wait in memory for the slowest one and are discarded and regenerated
  when they would drop below the cut-off fidelity; the classical feedforward that follows is storage time too;
* quantum state: every shot of every job is one Stim ``FlipSimulator`` instance, with Pauli noise drawn from its
  own timing (pair error, T1/T2 storage, gate and readout error, crosstalk, stray commands). Jobs are grouped by
  circuit shape and run together once per step; a job's fidelity is the fraction of its shots whose
  stabilizer checks pass (physics.md 3.1).

A step (one simulated minute by default, the store's rollup bucket) ends with the physics of the jobs finished
in it, their spans, and one snapshot of every metric, handed out as a :class:`SimStep`. Nothing here reads a
clock or global randomness (the CPU split in ``timings`` uses an injected timer and never reaches the telemetry):
the same fleet, faults, config and seed give the same steps.

:class:`Simulation` is built in layers, each a module with one responsibility that calls only the layers below:
:mod:`~qfleet.simulator.runstate` (configuration, state, primitives) < :mod:`~qfleet.simulator.timeline` (one
job's timing) < :mod:`~qfleet.simulator.control` (arrivals, placement, resources, dispatch) <
:mod:`~qfleet.simulator.disturbances` (faults, calibration, drift) < this module (the step loop). Its
collaborators are :class:`~qfleet.simulator.shots.ShotRunner` (the Stim batches) and
:class:`~qfleet.simulator.job_telemetry.RunTelemetry` (spans and metrics).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData

from qfleet.collector import SpanColumns
from qfleet.simulator.disturbances import Disturbances
from qfleet.simulator.faults import FaultSchedule
from qfleet.simulator.fleet import Fleet
from qfleet.simulator.gcpolicy import fewer_collections
from qfleet.simulator.runstate import DEFAULT_START_NS, FAULT, JOB_END, OUTCOMES, Job, RunConfig
from qfleet.simulator.shots import ShotRunner
from qfleet.simulator.telemetry import MetricPoints
from qfleet.units import NS

__all__ = ["DEFAULT_START_NS", "OUTCOMES", "RunConfig", "SimStep", "Simulation", "StepTimings"]

_BATCH = 4096  # jobs per Stim batch


@dataclass(slots=True)
class StepTimings:
    """Seconds of CPU spent per engine phase so far (the fleet-day benchmark's split)."""

    control_s: float = 0.0
    physics_s: float = 0.0
    telemetry_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SimStep:
    """The telemetry of one simulated step ``[start_ns, end_ns)``.

    Attributes:
        spans: spans that ended in the step (jobs, requests, swaps, ground truth...).
        points: a snapshot of every metric due at ``end_ns``, as plain values (:attr:`metrics` builds the
            OpenTelemetry form; a writer process builds it from these instead of the engine).
        jobs_finished: jobs whose outcome was decided in the step.
        jobs_total: jobs finished since the run started.
    """

    start_ns: int
    end_ns: int
    spans: SpanColumns
    points: MetricPoints
    jobs_finished: int
    jobs_total: int

    @property
    def metrics(self) -> MetricsData:
        """The snapshot as OpenTelemetry ``MetricsData`` (built on each access)."""
        return self.points.to_metrics_data()


class Simulation(Disturbances):
    """One seeded run of a fleet with its faults; iterate :meth:`steps` to drive it.

    Args:
        fleet: the validated fleet.
        faults: the fault schedule (offsets from the run start); ``None`` for none.
        config: duration, start, seed, step, load.
        timer: a monotonic seconds counter for :attr:`timings` (the CPU split of a run; never in its telemetry).

    Examples:
        >>> from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
        >>> sim = Simulation(load_fleet(builtin_fleet_path("line")), None, RunConfig(duration_ns=60 * NS))
        >>> steps = list(sim.steps())
        >>> len(steps), steps[-1].jobs_total == sim.jobs_total > 0
        (1, True)
    """

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig, *,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(fleet, faults, config)
        self.timings = StepTimings()
        self.jobs_total = 0
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._timer = timer
        self._shots = ShotRunner(self._mask_rng, self._stim_seed)
        self._refresh_links()
        self._build_candidates()
        self._schedule_faults_and_calibrations()

    def steps(self) -> Iterator[SimStep]:
        """Run to the end, one :class:`SimStep` per ``config.step_ns`` of simulated time (with fewer cyclic garbage
        collections until the run ends or the iterator is closed: :mod:`~qfleet.simulator.gcpolicy`)."""
        with fewer_collections():
            yield from self._steps()

    def _steps(self) -> Iterator[SimStep]:
        step = self.config.step_ns
        t = self._t0
        timer = self._timer
        self._telemetry.ground_truth(self.fleet, self.faults, self.config)
        while t < self._end:
            t1 = min(t + step, self._end)
            c0 = timer()
            self._advance(t, t1)
            self._tick(t, t1)
            c1 = timer()
            self.timings.control_s += c1 - c0
            n = self._physics()
            c2 = timer()
            self.timings.physics_s += c2 - c1
            for job in self._finished:
                self._telemetry.job(job, self._tenants[job.tenant])
            self._finished = []
            self._telemetry.node_metrics(self._nodes, self._segments, self._tenants, self._queues,
                                         step / NS, t1)
            spans, points = self._telemetry.take(t1)
            self.timings.telemetry_s += timer() - c2
            yield SimStep(t, t1, spans, points, n, self.jobs_total)
            t = t1

    def _advance(self, t0: int, t1: int) -> None:
        """Process arrivals and heap events of ``[t0, t1)`` in time order (events first on ties)."""
        arrivals = self._arrivals(t0, t1)
        heap = self._heap
        i, n = 0, len(arrivals)
        while True:
            ta = arrivals[i].arrival if i < n else t1
            te = heap[0][0] if heap else t1
            if ta >= t1 and te >= t1:
                break
            if te <= ta:
                self._event(*heapq.heappop(heap))
            else:
                job = arrivals[i]
                i += 1
                # Nothing was freed since the queued jobs last failed to start: only the newcomer can.
                if not self._try_start(job, job.arrival):
                    self._queues[job.tenant].append(job)

    def _event(self, t: int, seq: int, kind: int, payload: Any) -> None:
        """One heap event: a job's end (payload: the job), a fault switching (fault, on) or a calibration window
        starting or ending (node, starting, duration ns)."""
        if kind == JOB_END:
            if self._done(payload):
                self._dispatch(t, payload)
            return
        if kind == FAULT:
            self._fault(payload[0], payload[1], t)
        else:
            self._calibration(payload, t)
        self._dispatch(t)

    def _tick(self, t0: int, t1: int) -> None:
        """End of step: calibration drift, unauthorized commands, then dispatch what can start."""
        states = list(self._nodes.values())
        self._drift(t1, states)
        self._stray_commands(t0, t1, states)
        self._dispatch(t1)

    def _done(self, job: Job) -> bool:
        """A job's scheduled end: release it (False when it was already lost to an outage)."""
        if job.cancelled:
            return False
        self._release(job)
        self._finished.append(job)
        return True

    def _physics(self) -> int:
        """Run the Stim instances of every job finished this step; set their fidelity and final outcome."""
        groups: dict[str, list[Job]] = {}
        for job in self._finished:
            if job.noise is not None and not job.outcome:
                groups.setdefault(job.noise.circuit.name, []).append(job)
        for jobs in groups.values():
            for lo in range(0, len(jobs), _BATCH):
                self._shots.run_group(jobs[lo:lo + _BATCH], self._nodes)
        for job in self._finished:
            if not job.outcome:
                target = self._tenants[job.tenant].fidelity_target
                job.outcome = "success" if job.fidelity >= target else "low_fidelity"
            self.outcomes[job.outcome] += 1
        self.jobs_total += len(self._finished)
        return len(self._finished)
