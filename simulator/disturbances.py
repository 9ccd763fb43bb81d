"""What happens to the fleet besides its jobs: the faults F1-F8 switching on and off, calibration windows,
calibration drift (bounded random walks) and the unauthorized commands of an F8 fault."""

from __future__ import annotations

import math
from collections.abc import Callable

from qfleet.simulator.control import ControlPlane
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Fleet
from qfleet.simulator.job_telemetry import RunTelemetry
from qfleet.simulator.runstate import CALIBRATION, FAULT, NodeState, RunConfig
from qfleet.units import NS

__all__ = ["Disturbances"]

_DRIFT_NS = 300 * NS  # drift is slow (hours): the walks step every 5 simulated minutes, not every step


class Disturbances(ControlPlane):
    """Applies faults and calibrations at their times, and the drift and stray commands of each step."""

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig) -> None:
        super().__init__(fleet, faults, config)
        self._telemetry = RunTelemetry(self.run_id, fleet, self._t0)
        self._apply: dict[FaultKind, Callable[[Fault, bool, int], None]] = {
            FaultKind.F1: self._f1_link_loss, FaultKind.F2: self._f2_decoherence, FaultKind.F3: self._f3_latency,
            FaultKind.F4: self._f4_readout, FaultKind.F5: self._f5_outage, FaultKind.F6: self._f6_crosstalk,
            FaultKind.F7: self._f7_deadlock, FaultKind.F8: self._f8_commands}

    def _schedule_faults_and_calibrations(self) -> None:
        """Push every fault's start and end and every node's staggered calibration windows onto the heap."""
        for f in self.faults.faults:
            start = self._t0 + f.start_ns
            if start < self._end:
                self._push(start, FAULT, (f, True))
                self._push(min(start + f.duration_ns, self._end), FAULT, (f, False))
        cal = self.fleet.calibration
        interval, dur = round(cal.interval_s * NS), round(cal.duration_s * NS)
        nodes = self.fleet.nodes
        for i, n in enumerate(nodes):
            # Staggered so that the fleet is never recalibrated all at once.
            t = self._t0 + (i * interval) // max(1, len(nodes)) + interval // 2
            while t < self._end:
                self._push(t, CALIBRATION, (n.id, True, dur))
                t += interval

    # -- faults -----------------------------------------------------------------------------------------------

    def _fault(self, f: Fault, on: bool, t: int) -> None:
        """Switch fault ``f`` on or off at ``t``."""
        self._apply[f.kind](f, on, t)

    def _f1_link_loss(self, f: Fault, on: bool, t: int) -> None:
        for s in self._segments[f.target]:
            s.f1 = f.magnitude if on else 1.0
        self._refresh_links()

    def _f2_decoherence(self, f: Fault, on: bool, t: int) -> None:
        st = self._nodes[f.target]
        st.t2_div = f.magnitude if on else 1.0
        st.refresh()
        self._refresh_links()

    def _f3_latency(self, f: Fault, on: bool, t: int) -> None:
        if f.target == "orchestrator":
            self._orch_extra_s = f.magnitude if on else 0.0
        else:
            for s in self._segments[f.target]:
                s.f3_s = f.magnitude if on else 0.0

    def _f4_readout(self, f: Fault, on: bool, t: int) -> None:
        st = self._nodes[f.target]
        st.ro_add = f.magnitude if on else 0.0
        st.refresh()

    def _f5_outage(self, f: Fault, on: bool, t: int) -> None:
        st = self._nodes[f.target]
        st.up = not on
        self._avail_epoch += 1
        if on:
            # In job order, not set order (which follows memory addresses), so that runs repeat exactly.
            for job in sorted(st.inflight, key=lambda j: j.idx):
                # In flight on a node that vanished: the job is lost; its resources come back now.
                job.cancelled = True
                self._release(job)
                job.outcome = "node_down"
                job.end = t
                job.noise = None
                self._finished.append(job)

    def _f6_crosstalk(self, f: Fault, on: bool, t: int) -> None:
        for n in (f.target, *self.fleet.neighbours(f.target)):
            self._nodes[n].crosstalk = f.magnitude if on else 0.0

    def _f7_deadlock(self, f: Fault, on: bool, t: int) -> None:
        for n in f.cycle() if f.nodes else (f.target, *self.fleet.neighbours(f.target)):
            st = self._nodes[n]
            if on:
                # The cycle: each member's free comm qubits are held by a job waiting on the next member.
                st.deadlocked = True
                st.held += st.free
                st.free = 0
            else:
                st.deadlocked = False
                st.free += st.held
                st.held = 0

    def _f8_commands(self, f: Fault, on: bool, t: int) -> None:
        st = self._nodes[f.target]
        st.stray_rate = f.magnitude if on else 0.0
        st.principal = (f.principal or "unknown") if on else ""

    # -- calibration, drift, stray commands ---------------------------------------------------------------------

    def _calibration(self, payload: tuple[str, bool, int], t: int) -> None:
        """A node's maintenance window starts (announced) or ends (the node is recalibrated to its baseline)."""
        node, starting, dur = payload
        st = self._nodes[node]
        self._avail_epoch += 1
        if starting:
            st.maintenance = True
            self._push(min(t + dur, self._end), CALIBRATION, (node, False, dur))
            self._telemetry.annotate("maintenance", t, min(t + dur, self._end), node=node,
                                     attrs={"qfleet.maintenance.reason": "calibration"})
            return
        st.maintenance = False
        st.t2_walk, st.ro_walk = 1.0, 0.0
        for segs in self._segments.values():
            for s in segs:
                if node in (s.left, s.right):
                    s.eff_walk = 1.0
        st.refresh()
        self._refresh_links()
        self._telemetry.calibrated(node, t, dur)

    def _drift(self, t1: int, states: list[NodeState]) -> None:
        """Step the calibration-drift walks when 5 simulated minutes have passed (or the run ends)."""
        if not (t1 - self._drift_at >= _DRIFT_NS or t1 >= self._end):
            return
        dt_h = (t1 - self._drift_at) / NS / 3600
        self._drift_at = t1
        if dt_h <= 0:
            return
        cal = self.fleet.calibration
        rng = self._drift_rng
        # Bounded random walks, never better than calibrated (physics.md 2.1).
        lo = 1 - cal.max_degradation
        steps = rng.normal(0.0, 1.0, size=(len(states), 2)) * math.sqrt(dt_h)
        for st, (a, b) in zip(states, steps.tolist(), strict=True):
            st.t2_walk = min(1.0, max(lo, st.t2_walk + cal.t2_drift_per_sqrt_h * a))
            st.ro_walk = min(0.1, max(0.0, st.ro_walk + cal.readout_drift_per_sqrt_h * b))
            st.refresh()
        segs = self._all_segments
        for s, a in zip(segs, rng.normal(0.0, 1.0, size=len(segs)).tolist(), strict=True):
            s.eff_walk = min(1.0, max(lo, s.eff_walk + cal.efficiency_drift_per_sqrt_h * a * math.sqrt(dt_h)))
        self._refresh_links()

    def _stray_commands(self, t0: int, t1: int, states: list[NodeState]) -> None:
        """Unauthorized commands (F8) in ``[t0, t1)``: a Poisson stream on each targeted node."""
        audit = self._audit_rng
        for st in states:
            if st.stray_rate > 0:
                # Poisson arrivals by exponential gaps.
                t = t0 + int(audit.expovariate(st.stray_rate) * NS)
                while t < t1:
                    self._telemetry.audit(st.node.id, st.principal, False, t)
                    t += int(audit.expovariate(st.stray_rate) * NS)
