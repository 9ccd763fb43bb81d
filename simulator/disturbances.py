"""What happens to the fleet besides its jobs: the faults F1-F8 setting in (step, ramp or intermittent bursts) and
clearing, calibration windows (scheduled, and after an outage), calibration drift (bounded random walks) and the
unauthorized commands of an F8 fault. docs/faults.md describes each fault's physics."""

from __future__ import annotations

import math
from collections.abc import Callable

from qfleet.simulator.control import ControlPlane
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Fleet
from qfleet.simulator.job_telemetry import RunTelemetry
from qfleet.simulator.runstate import CALIBRATION, FAULT, NodeState, RunConfig, Segment
from qfleet.units import NS

__all__ = ["Disturbances"]

_DRIFT_NS = 300 * NS  # drift is slow (hours): the walks step every 5 simulated minutes, not every step


class Disturbances(ControlPlane):
    """Applies faults (with their onset profiles) and calibrations at their times, and the drift and stray commands
    of each step."""

    def __init__(self, fleet: Fleet, faults: FaultSchedule | None, config: RunConfig) -> None:
        super().__init__(fleet, faults, config)
        self._telemetry = RunTelemetry(self.run_id, fleet, self._t0)
        self._apply: dict[FaultKind, Callable[[Fault, float, int], None]] = {
            FaultKind.F1: self._f1_link_loss, FaultKind.F2: self._f2_decoherence, FaultKind.F3: self._f3_latency,
            FaultKind.F4: self._f4_readout, FaultKind.F5: self._f5_outage, FaultKind.F6: self._f6_crosstalk,
            FaultKind.F7: self._f7_deadlock, FaultKind.F8: self._f8_commands}
        self._levels: dict[str, float] = {}  # fault id -> level now applied
        self._ramps = [f for f in self.faults.faults if f.profile == "ramp"]
        self._node_segments: dict[str, list[Segment]] = {}
        for seg in self._all_segments:
            self._node_segments.setdefault(seg.left, []).append(seg)
            self._node_segments.setdefault(seg.right, []).append(seg)

    def _schedule_faults_and_calibrations(self) -> None:
        """Push every fault's start, end and intermittent burst edges, and every node's staggered calibration
        windows, onto the heap."""
        for f in self.faults.faults:
            start = self._t0 + f.start_ns
            if start < self._end:
                self._push(start, FAULT, (f, True))
                if f.profile == "intermittent":
                    for lo, hi in f.bursts():
                        for edge, on in ((lo, True), (hi, False)):
                            if f.start_ns < edge < f.end_ns() and self._t0 + edge < self._end:
                                self._push(self._t0 + edge, FAULT, (f, on))
                self._push(min(start + f.duration_ns, self._end), FAULT, (f, False))
        cal = self.fleet.calibration
        interval, dur = round(cal.interval_s * NS), round(cal.duration_s * NS)
        nodes = self.fleet.nodes
        for i, n in enumerate(nodes):
            # Staggered so that the fleet is never recalibrated all at once.
            t = self._t0 + (i * interval) // max(1, len(nodes)) + interval // 2
            while t < self._end:
                self._push(t, CALIBRATION, (n.id, True, dur, "calibration"))
                t += interval

    # -- faults -----------------------------------------------------------------------------------------------

    def _fault(self, f: Fault, on: bool, t: int) -> None:
        """Bring fault ``f`` to its level at ``t`` (a start, an end or an intermittent edge; ``on`` says which
        way an edge goes, the level itself comes from the fault's profile)."""
        rel = t - self._t0
        self._set_level(f, f.level(rel), t)
        if f.kind is FaultKind.F5 and not on and rel >= f.end_ns() and t < self._end:
            # Back from an outage, a node is recalibrated before it takes jobs (docs/faults.md, F5).
            dur = round(self.fleet.calibration.duration_s * NS)
            self._calibration((f.target, True, dur, "recovery"), t)

    def _set_level(self, f: Fault, level: float, t: int) -> None:
        if level != self._levels.get(f.id, 0.0):
            self._levels[f.id] = level
            self._apply[f.kind](f, level, t)

    def _ramp(self, t: int) -> None:
        """Move every ramping fault to its level at ``t`` (once per step: ramps last minutes to hours)."""
        rel = t - self._t0
        for f in self._ramps:
            if f.start_ns < rel < f.end_ns():
                self._set_level(f, f.level(rel), t)

    def _f1_link_loss(self, f: Fault, level: float, t: int) -> None:
        for s in self._segments[f.target]:
            s.f1 = f.scaled(level)
        self._refresh_links()

    def _f2_decoherence(self, f: Fault, level: float, t: int) -> None:
        """What fails first on the node's platform (docs/faults.md, F2); ``m`` is the factor now in effect."""
        st = self._nodes[f.target]
        m = f.scaled(level)
        kind = st.node.hardware_type
        if kind == "nv-centre":
            # Optical line broadened m-fold (spectral diffusion, charge-state instability): resonant excitation
            # of this arm falls as 1/m and its photons' overlap with a lifetime-limited partner to 2/(m+1).
            for s in self._node_segments.get(f.target, ()):
                single = s.link.scheme == "single-click"
                # Double-click needs both arms (p ~ eta_a eta_b); single-click either (p ~ eta_a + eta_b).
                s.f2_eff = (1.0 + 1.0 / m) / 2 if single else 1.0 / m
                s.set_visibility_factor(2.0 / (m + 1.0))
        elif kind == "trapped-ion":
            # Motional heating: the two-qubit gate runs on the motional bus (error ~ heating rate); carrier
            # single-qubit gates see the motion only at second order in the Lamb-Dicke parameter.
            st.g2_mul, st.g1_mul = m, math.sqrt(m)
        elif kind == "superconducting":
            st.t1_div = m  # TLS defect or cosmic-ray quasiparticle burst: T1 collapses; T2 <= 2 T1 follows
        else:
            st.t1_div = st.t2_div = m
        st.refresh()
        self._refresh_links()

    def _f3_latency(self, f: Fault, level: float, t: int) -> None:
        extra = f.scaled(level)
        if f.target == "orchestrator":
            self._orch_extra_s = extra
        else:
            for s in self._segments[f.target]:
                s.f3_s = extra

    def _f4_readout(self, f: Fault, level: float, t: int) -> None:
        st = self._nodes[f.target]
        st.ro_add = f.scaled(level)
        st.refresh()

    def _f5_outage(self, f: Fault, level: float, t: int) -> None:
        st = self._nodes[f.target]
        on = level > 0
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

    def _f6_crosstalk(self, f: Fault, level: float, t: int) -> None:
        # Spectator errors stay on the device: its own qubits share control lines and modes, while a fibre
        # carries single photons between nodes and no control crosstalk.
        self._nodes[f.target].crosstalk = f.scaled(level)

    def _f7_deadlock(self, f: Fault, level: float, t: int) -> None:
        on = level > 0
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
            self._mark(st)

    def _f8_commands(self, f: Fault, level: float, t: int) -> None:
        st = self._nodes[f.target]
        st.stray_rate = f.scaled(level)
        st.principal = (f.principal or "unknown") if level > 0 else ""

    # -- calibration, drift, stray commands ---------------------------------------------------------------------

    def _calibration(self, payload: tuple[str, bool, int, str], t: int) -> None:
        """A node's maintenance window starts (announced) or ends (the node is recalibrated to its baseline).

        ``payload`` is (node, starting, duration ns, reason: ``calibration`` or ``recovery`` after an outage).
        Windows may overlap (a recovery, then the scheduled calibration): the node leaves maintenance when the
        last one ends."""
        node, starting, dur, reason = payload
        st = self._nodes[node]
        self._avail_epoch += 1
        if starting:
            st.maintenance = True
            end = min(t + dur, self._end)
            st.maint_until = max(st.maint_until, end)
            self._push(end, CALIBRATION, (node, False, dur, reason))
            self._telemetry.annotate("maintenance", t, end, node=node,
                                     attrs={"qfleet.maintenance.reason": reason})
            return
        if t < st.maint_until:
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
        """Move ramping faults to their level at ``t1``; step the calibration-drift walks when 5 simulated minutes
        have passed (or the run ends)."""
        if self._ramps:
            self._ramp(t1)
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
