"""What a run emits: each finished job as one trace (job, entanglement requests, swaps, feedforward, measurement)
with its metrics, node and queue gauges per step, calibrations, audited commands and ground-truth spans.

The node gauges are what a control system measures: the estimates of the node's last calibration experiments
(:mod:`~qfleet.simulator.calibration`), stale until the next one; link heralding is measured by herald and attempt
counters. The true device values go to ``qfleet.truth.*`` series and the ``qfleet.fault`` spans' ``qfleet.truth.*``
attributes, kept apart for scoring (docs/signals.md).

Trace ids are the run id plus a per-job or per-event hash, so the same run always writes the same ids. Calibration
draws are seeded by (run seed, node, time of the calibration), so a fault elsewhere changes no node's estimates.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from qfleet.collector import SpanColumns
from qfleet.simulator import calibration
from qfleet.simulator.calibration import Estimate
from qfleet.simulator.faults import FaultKind, FaultSchedule, magnitude_unit
from qfleet.simulator.fleet import Fleet, Tenant
from qfleet.simulator.runstate import Job, NodeState, RunConfig, Segment
from qfleet.simulator.telemetry import (
    SPAN_NAMES,
    MetricPoints,
    MetricsAccumulator,
    SpanBuffer,
    labels,
    run_hash,
)
from qfleet.units import NS

__all__ = ["NodeCalibration", "RunTelemetry", "calibrate_node"]

_ROOT = "0000000000000001"
_JOB, _REQUEST, _SWAP = SPAN_NAMES["job"], SPAN_NAMES["entanglement"], SPAN_NAMES["swap"]
_FEEDFORWARD, _MEASUREMENT = SPAN_NAMES["feedforward"], SPAN_NAMES["measurement"]
# Label keys of the per-step and per-job metrics (see RunTelemetry._new_labels).
_LINK_KEYS = ("link",)
_TENANT_KEYS = ("tenant",)
_JOBS_KEYS = ("tenant", "kind", "outcome", "hardware")
_HW_KEYS = ("hardware",)
_FIDELITY_KEYS = ("hardware", "kind")
Labels = tuple[tuple[str, Any], ...]
#: Stands for an infinite time constant in a gauge (no T1 process modelled, or no decay resolved).
_NO_DECAY_S = 1e9


@dataclass(frozen=True, slots=True)
class NodeCalibration:
    """The estimates of one calibration of a node, completed at ``t_ns``."""

    t_ns: int
    t1: Estimate
    t2: Estimate
    readout0: Estimate
    readout1: Estimate
    gate1: Estimate
    gate2: Estimate


def calibrate_node(rng: np.random.Generator, st: NodeState, t_ns: int) -> NodeCalibration:
    """Run every calibration experiment on ``st``'s TRUE parameters; the sweeps centre on the profile's values."""
    n = st.node
    return NodeCalibration(
        t_ns=t_ns,
        t1=calibration.measure_t1(rng, st.t1, n.t1_s),
        t2=calibration.measure_t2(rng, st.t2, n.t2_s),
        readout0=calibration.measure_readout(rng, st.ro0),
        readout1=calibration.measure_readout(rng, st.ro1),
        gate1=calibration.measure_gate_error(rng, st.g1, n.gate_error_1q, 1),
        gate2=calibration.measure_gate_error(rng, st.g2, n.gate_error_2q, 2))


class _SegmentInfo(NamedTuple):
    """What a request on one segment emits besides its job's values (a tuple, unpacked on the hot path)."""

    link_id: str
    hardware: str  # of the segment's left end
    link: Labels
    succeeded: Labels
    timed_out: Labels
    by_hardware: Labels


@dataclass(frozen=True, slots=True)
class _NodeLabels:
    """The label tuples of a node's series: the node's own, and by qubits, prepared state and canary outcome."""

    node: Labels
    qubits1: Labels
    qubits2: Labels
    state0: Labels
    state1: Labels
    passed: Labels
    failed: Labels

    @classmethod
    def of(cls, node: str, hardware: str) -> _NodeLabels:
        lab = labels(node=node, hardware=hardware)
        return cls(lab, lab + (("qfleet.qubits", 1),), lab + (("qfleet.qubits", 2),), lab + (("qfleet.state", 0),),
                   lab + (("qfleet.state", 1),), lab + (("qfleet.outcome", "pass"),),
                   lab + (("qfleet.outcome", "fail"),))


def _finite(v: float) -> float:
    return v if math.isfinite(v) else _NO_DECAY_S


class RunTelemetry:
    """The spans and metrics of one run, built from its jobs and events in simulated time.

    Args:
        run_id: the run's id (the first half of every trace id).
        fleet: the fleet (its name labels the resource; node ids give hardware types).
        start_ns: the run's start: the start time of every cumulative metric and of the fleet's initial
            calibration (a fleet starts calibrated).
        seed: seeds the calibration and herald draws; ``None`` takes the seed of the config passed to
            :meth:`ground_truth` (or, without one, the run id).
        nodes: the run's live node states, read at each :meth:`calibrated`; ``None`` takes the mapping passed to
            :meth:`node_metrics` (a calibration before the first step is then measured at that step's end).
    """

    def __init__(self, run_id: str, fleet: Fleet, start_ns: int, *, seed: int | None = None,
                 nodes: Mapping[str, NodeState] | None = None) -> None:
        self.run_id = run_id
        self.start_ns = start_ns
        self._fleet = fleet
        self._seed = seed
        self._states = nodes
        self._cal: dict[str, NodeCalibration] = {}
        self._pending: list[tuple[str, int]] = []
        self._herald_rng: np.random.Generator | None = None
        self.spans = SpanBuffer()
        self.metrics = MetricsAccumulator({"service.name": "qfleet-simulator", "qfleet.run.id": run_id,
                                           "qfleet.fleet": fleet.name}, start_ns)
        self._hardware = {n.id: n.hardware_type for n in fleet.nodes}
        # An entanglement swap at a node: a Bell-state measurement, CNOT, Hadamard and the readout of both qubits.
        self._swap_ns = {n.id: max(1, round((n.gate_time_2q_s + n.gate_time_1q_s + n.readout_time_s) * NS))
                         for n in fleet.nodes}
        # Label tuples by their values, one cache per set of keys (see _new_labels).
        self._node_labels: dict[str, _NodeLabels] = {}
        self._link_labels: dict[tuple[Any, ...], Labels] = {}
        self._tenant_labels: dict[tuple[Any, ...], Labels] = {}
        self._job_labels: dict[tuple[Any, ...], Labels] = {}
        self._hw_labels: dict[tuple[Any, ...], Labels] = {}
        self._fidelity_labels: dict[tuple[Any, ...], Labels] = {}
        self._segments: dict[Segment, _SegmentInfo] = {}
        self._routes: dict[tuple[Any, ...], str] = {}
        self._span_ids = [f"{i:016x}" for i in range(16)]  # a job's span ids by sequence number (see job)
        self._run8 = run_id[:8]
        # (link labels, attempts, success probability) of the segments finished since the last take().
        self._herald_draws: list[tuple[Labels, int, float]] = []

    # -- calibration experiments ---------------------------------------------------------------------------

    def _run_seed(self) -> int:
        if self._seed is None:
            self._seed = int(self.run_id[:16], 16) if self.run_id else 0
        return self._seed

    def _measure(self, st: NodeState, t: int) -> None:
        # One stream per (seed, node, calibration time): a node's estimates do not depend on other nodes or faults.
        rng = np.random.default_rng([self._run_seed(), zlib.crc32(st.node.id.encode()), max(0, t - self.start_ns)])
        self._cal[st.node.id] = calibrate_node(rng, st, t)

    def _initial_calibration(self) -> None:
        """The calibration every node completed just before the run (on its calibrated baseline)."""
        if self._cal:
            return
        for n in self._fleet.nodes:
            self._measure(NodeState(n), self.start_ns)

    def last_calibration(self, node: str) -> NodeCalibration | None:
        """The estimates of ``node``'s last completed calibration (None before the run starts)."""
        return self._cal.get(node)

    def take(self, t_ns: int) -> tuple[SpanColumns, MetricPoints]:
        """The spans since the last call and a snapshot of every metric due at ``t_ns``."""
        self._draw_heralds()
        points = self.metrics.points(t_ns)
        return self.spans.take(), points

    def trace(self, key: Any) -> str:
        """The trace id of an event keyed by ``key``."""
        return self.run_id + run_hash(repr(key))

    @staticmethod
    def span_id(t: int, salt: Any) -> str:
        """A span id from a time and a salt."""
        return run_hash(repr((t, salt)))

    # -- events -------------------------------------------------------------------------------------------------

    def annotate(self, what: str, start: int, end: int, *, node: str | None = None, link: str | None = None,
                 attrs: dict[str, Any]) -> None:
        """A ground-truth or announcement span (``run``, ``fault``, ``maintenance``)."""
        self.spans.add(self.trace((what, node, link, start)), self.span_id(start, what), None, SPAN_NAMES[what],
                       start, max(end, start + 1), attrs, node=node, link=link, run=self.run_id,
                       hardware=self._hardware[node] if node else None)

    def ground_truth(self, fleet: Fleet, faults: FaultSchedule, config: RunConfig) -> None:
        """The run's span and one span per fault that starts inside it (clipped to the run), its attributes under
        ``qfleet.truth.*``; then the fleet's initial calibration."""
        if self._seed is None:
            self._seed = config.seed
        self._initial_calibration()
        t0, end = config.start_ns, config.start_ns + config.duration_ns
        self.annotate("run", t0, end, attrs={
            "qfleet.fleet": fleet.name, "qfleet.seed": config.seed, "qfleet.faults": len(faults.faults),
            "qfleet.load": config.load})
        for f in faults.faults:
            start = t0 + f.start_ns
            if start >= end:
                continue
            is_link = f.kind in (FaultKind.F1,) or (f.kind is FaultKind.F3 and f.target != "orchestrator")
            node = None if is_link or f.target == "orchestrator" else f.target
            self.annotate("fault", start, min(start + f.duration_ns, end), node=node,
                          link=f.target if is_link else None, attrs=self._fault_attrs(f, node))

    def _fault_attrs(self, f: Any, node: str | None) -> dict[str, Any]:
        """A fault's ground truth as ``qfleet.truth.*`` attributes (the profile's parameters when it has them)."""
        attrs: dict[str, Any] = {"qfleet.truth.fault.id": f.id, "qfleet.truth.fault.kind": f.kind.value,
                                 "qfleet.truth.fault.title": f.kind.title, "qfleet.truth.fault.target": f.target,
                                 "qfleet.truth.profile": getattr(f, "profile", "step")}
        magnitude = getattr(f, "magnitude", None)
        if magnitude is not None:
            attrs["qfleet.truth.magnitude"] = magnitude
            attrs["qfleet.truth.unit"] = magnitude_unit(f.kind, self._hardware.get(node) if node else None)
        for key, name, scale in (("ramp_ns", "qfleet.truth.ramp_s", NS), ("period_ns", "qfleet.truth.period_s", NS),
                                 ("duty", "qfleet.truth.duty", 1)):
            value = getattr(f, key, 0)
            if value:
                attrs[name] = value / scale
        if getattr(f, "principal", None):
            attrs["qfleet.truth.principal"] = f.principal
        if getattr(f, "nodes", ()):
            attrs["qfleet.truth.fault.nodes"] = ",".join(f.nodes)
        return attrs

    def audit(self, node: str, principal: str, authorized: bool, t: int) -> None:
        """A control command on ``node``: an audit event and a command span (an error when unauthorized)."""
        self.metrics.add("qfleet.audit.events", labels(node=node) + (("qfleet.principal", principal),
                                                                    ("qfleet.authorized", authorized)))
        self.spans.add(self.trace(("cmd", node, principal, t)), self.span_id(t, principal), None,
                       SPAN_NAMES["command"], t, t + 1000,
                       {"qfleet.principal": principal, "qfleet.authorized": authorized,
                        "qfleet.command": "calibrate" if authorized else "x_gate"},
                       node=node, run=self.run_id, hardware=self._hardware[node],
                       error="" if authorized else f"unauthorized control command from {principal!r}")

    def calibrated(self, node: str, t: int, duration_ns: int) -> None:
        """A calibration of ``node`` that ended at ``t``: its experiments on the node's true parameters now, its
        count, its authorized command and its span."""
        st = self._states.get(node) if self._states is not None else None
        if st is not None:
            self._measure(st, t)
        else:
            self._pending.append((node, t))
        self.metrics.add("qfleet.calibrations", labels(node=node))
        self.audit(node, "calibration-service", True, t)
        self.spans.add(self.trace(("cal", node, t)), self.span_id(t, node), None, SPAN_NAMES["calibration"],
                       t - duration_ns, t, {"qfleet.calibration.duration_s": duration_ns / NS}, node=node,
                       run=self.run_id, hardware=self._hardware[node])

    # -- per step -----------------------------------------------------------------------------------------------

    def node_metrics(self, nodes: Mapping[str, NodeState], segments: Mapping[str, Sequence[Segment]],
                     tenants: Sequence[Tenant], queues: Sequence[deque[Job]], step_s: float, t1: int) -> None:
        """At step end ``t1``: heartbeats, the last calibration's estimates and its age, canary checks, the true
        device and link values (``qfleet.truth.*``), queue depth and age."""
        if self._states is None:
            self._states = nodes
        self._initial_calibration()
        for node, t in self._pending:
            self._measure(nodes[node], t)
        self._pending.clear()
        m = self.metrics
        node_labels = self._node_labels
        for nid, st in nodes.items():
            n = st.node
            labs = node_labels.get(nid)
            if labs is None:
                labs = node_labels[nid] = _NodeLabels.of(nid, n.hardware_type)
            lab = labs.node
            if st.up:
                m.add("qfleet.node.heartbeats", lab, step_s / n.heartbeat_s)
            m.set("qfleet.node.up", lab, 1.0 if st.up else 0.0)
            cal = self._cal[nid]
            # The control system knows when it last calibrated, whether or not the node answers.
            m.set("qfleet.node.calibration.age", lab, (t1 - cal.t_ns) / NS)
            if st.up:  # a node that sends no heartbeat reports no device telemetry either
                self._device_gauges(st, labs, cal)
            self._truth_gauges(st, labs)
        for lid, segs in segments.items():
            key = (lid,)
            lab = self._link_labels.get(key) or self._new_labels(self._link_labels, _LINK_KEYS, key)
            m.set("qfleet.truth.link.heralding_probability", lab, min(s.p for s in segs))
        for ten, q in zip(tenants, queues, strict=True):
            key = (ten.id,)
            lab = self._tenant_labels.get(key) or self._new_labels(self._tenant_labels, _TENANT_KEYS, key)
            m.set("qfleet.scheduler.queue.depth", lab, float(len(q)))
            m.set("qfleet.scheduler.queue.age", lab, (t1 - q[0].arrival) / NS if q else 0.0)

    def _device_gauges(self, st: NodeState, labs: _NodeLabels, cal: NodeCalibration) -> None:
        """The estimates of the last calibration (stale until the next), and this step's canary checks."""
        m = self.metrics
        lab = labs.node
        m.set("qfleet.node.t1", lab, _finite(cal.t1.value))
        if math.isfinite(cal.t1.stderr):
            m.set("qfleet.node.t1.stderr", lab, cal.t1.stderr)
        m.set("qfleet.node.t2", lab, _finite(cal.t2.value))
        if math.isfinite(cal.t2.stderr):
            m.set("qfleet.node.t2.stderr", lab, cal.t2.stderr)
        m.set("qfleet.node.gate_error", labs.qubits1, cal.gate1.value)
        m.set("qfleet.node.gate_error", labs.qubits2, cal.gate2.value)
        m.set("qfleet.node.readout_error", labs.state0, cal.readout0.value)
        m.set("qfleet.node.readout_error", labs.state1, cal.readout1.value)
        if st.canary_n:
            f = st.canary_bits / st.canary_n
            m.set("qfleet.measurement.variance", lab, f * (1 - f))
            m.add("qfleet.canary.checks", labs.passed, st.canary_bits)
            m.add("qfleet.canary.checks", labs.failed, st.canary_n - st.canary_bits)
            st.canary_bits = st.canary_n = 0

    def _truth_gauges(self, st: NodeState, labs: _NodeLabels) -> None:
        """The node's true parameters now: ground truth, for scoring and tests only."""
        m = self.metrics
        m.set("qfleet.truth.node.t1", labs.node, _finite(st.t1))
        m.set("qfleet.truth.node.t2", labs.node, st.t2)
        m.set("qfleet.truth.node.gate_error", labs.qubits1, st.g1)
        m.set("qfleet.truth.node.gate_error", labs.qubits2, st.g2)
        m.set("qfleet.truth.node.readout_error", labs.state0, st.ro0)
        m.set("qfleet.truth.node.readout_error", labs.state1, st.ro1)

    # -- jobs ---------------------------------------------------------------------------------------------------

    def job(self, job: Job, tenant: Tenant) -> None:
        """A finished job: its root span and metrics, then a child span per stage it reached.

        The hot path of a run's telemetry (one call per job): spans are appended as rows, and label tuples, span
        ids and per-segment values come from caches, with no keyword-argument dicts per call."""
        idx = job.idx
        trace = f"{self.run_id}{idx:016x}"
        jid = f"{self._run8}-{idx}"
        segs = job.segs
        hw = self._hardware[job.nodes[0]] if job.nodes else None
        end = max(job.end, job.arrival + 1)
        rows = self.spans.rows
        ids = self._span_ids
        if len(ids) < 2 * len(segs) + 3:  # a request and a swap per segment, feedforward and measurement
            ids.extend(f"{i:016x}" for i in range(len(ids), 2 * len(segs) + 3))
        self._root(rows, job, tenant, trace, jid, hw, end)
        seq = self._entanglement(rows, job, trace, jid, ids) if job.gen_ns else 1
        if segs and not job.window_ns:
            return  # the job never reached its swaps and feedforward
        if job.kind == "pair_delivery" and len(segs) > 1:
            seq = self._swaps(rows, job, trace, jid, ids, seq)
        if segs:
            seq += 1
            self._feedforward(rows, job, trace, jid, hw, ids[seq])
        if not math.isnan(job.fidelity):
            self._measurement(rows, job, trace, jid, hw, ids[seq + 1], end)

    @staticmethod
    def _new_labels(cache: dict[tuple[Any, ...], Labels], keys: tuple[str, ...], values: tuple[Any, ...]) -> Labels:
        """The label tuple of ``keys`` = ``values`` (as :func:`labels` builds it), stored in ``cache``: the miss
        path of ``cache.get(values) or ...``, so that a hit costs no call."""
        lab = cache[values] = labels(**dict(zip(keys, values, strict=True)))
        return lab

    def _new_segment(self, s: Segment) -> _SegmentInfo:
        """Segment ``s``'s entry of ``self._segments`` (the miss path, as :meth:`_new_labels`)."""
        lid, hw = s.link.id, self._hardware[s.left]
        key = (lid,)
        info = self._segments[s] = _SegmentInfo(
            lid, hw, self._link_labels.get(key) or self._new_labels(self._link_labels, _LINK_KEYS, key),
            labels(link=lid, hardware=hw, outcome="success"), labels(link=lid, hardware=hw, outcome="timeout"),
            labels(hardware=hw))
        return info

    def _root(self, rows: list[tuple[Any, ...]], job: Job, tenant: Tenant, trace: str, jid: str, hw: str | None,
              end: int) -> None:
        outcome = job.outcome
        attrs: dict[str, Any] = {"qfleet.tenant": tenant.id, "qfleet.job.kind": job.kind, "qfleet.outcome": outcome,
                                 "qfleet.shots": job.shots, "qfleet.fidelity.target": tenant.fidelity_target,
                                 "qfleet.queue.wait_s": job.wait_ns / NS}
        if job.kind == "ghz":
            attrs["qfleet.ghz.nodes"] = job.k
        if job.nodes:
            # Every node the job touched, in route order (repeaters and swapping processors included).
            key = job.segs or job.nodes
            route = self._routes.get(key)
            if route is None:
                route = self._routes[key] = ",".join(
                    (job.segs[0].left, *(s.right for s in job.segs)) if job.segs else job.nodes)
            attrs["qfleet.nodes"] = route
        if not math.isnan(job.fidelity):
            attrs["qfleet.fidelity"] = job.fidelity
        if job.failover:
            attrs["qfleet.failover"] = True
        ok = outcome == "success"
        rows.append((trace, _ROOT, None, _JOB, 2, job.arrival, end, 0 if ok else 2, "" if ok else outcome, attrs,
                     job.nodes[0] if job.nodes else None, None, jid, self.run_id, hw))
        key = (tenant.id, job.kind, outcome, hw or "")
        self.metrics.add("qfleet.jobs", self._job_labels.get(key) or self._new_labels(self._job_labels, _JOBS_KEYS, key))
        if job.orch_ns:
            self.metrics.observe("qfleet.orchestrator.latency", (), job.orch_ns / NS)

    def _entanglement(self, rows: list[tuple[Any, ...]], job: Job, trace: str, jid: str, ids: list[str]) -> int:
        """One span per segment's pair requests (all the job's shots), and the link metrics; the last sequence."""
        add, observe = self.metrics.add, self.metrics.observe
        herald = self._herald_draws.append
        cached, new = self._segments.get, self._new_segment
        run_id, shots, start = self.run_id, job.shots, job.start
        seq = 1
        oks = job.seg_ok or (False,) * len(job.segs)
        tries = job.attempts or (0,) * len(job.segs)
        for s, gen, ok, attempts in zip(job.segs, job.gen_ns, oks, tries, strict=False):
            seq += 1
            lid, hw, lab, ok_lab, timeout_lab, hw_lab = cached(s) or new(s)
            latency_s = gen / NS
            rows.append((trace, ids[seq], _ROOT, _REQUEST, 1, start, start + max(1, int(gen * shots)),
                         0 if ok else 2, "" if ok else "entanglement_timeout",
                         {"qfleet.attempts": attempts, "qfleet.pairs": shots if ok else 0,
                          "qfleet.latency_s": latency_s}, s.left, lid, jid, run_id, hw))
            add("qfleet.entanglement.attempts", lab, attempts)
            # Drawn at the step's end (_draw_heralds); none when nothing was tried or nothing can succeed.
            p = s.p
            herald((lab, attempts, min(1.0, p)) if attempts > 0 and p > 0.0 else (lab, 0, 0.0))
            # One request per job and segment (all its shots' pairs); the pairs are counted separately.
            if ok:
                add("qfleet.entanglement.requests", ok_lab)
                add("qfleet.entanglement.pairs", lab, shots)
                observe("qfleet.entanglement.latency", hw_lab, latency_s)
            else:
                add("qfleet.entanglement.requests", timeout_lab)
        return seq

    def _draw_heralds(self) -> None:
        """Heralded successes among each segment's attempts since the last call (each memory's attempt succeeds
        with probability p), added to the herald counters.

        Drawn, not derived from the job's pair count: the timeline counts attempts per segment (including a dead
        segment's whole retry budget) but not which segment's pairs were regenerated. One vectorised draw per step
        takes the same numbers, in the same order, as one draw per segment would (the stream is this one's own)."""
        draws, self._herald_draws = self._herald_draws, []
        if not draws:
            return
        if self._herald_rng is None:
            self._herald_rng = np.random.default_rng([self._run_seed(), 0x4E52])
        tried = [d for d in draws if d[1]]
        got = iter(self._herald_rng.binomial(np.array([d[1] for d in tried], dtype=np.int64),
                                             np.array([d[2] for d in tried])).tolist() if tried else ())
        add = self.metrics.add
        for lab, n, _p in draws:
            add("qfleet.entanglement.heralds", lab, next(got) if n else 0)

    def _swaps(self, rows: list[tuple[Any, ...]], job: Job, trace: str, jid: str, ids: list[str], seq: int) -> int:
        ready, run_id, hardware, swap_ns = job.ready, self.run_id, self._hardware, self._swap_ns
        for s in job.segs[:-1]:
            seq += 1
            rn = s.right
            rows.append((trace, ids[seq], _ROOT, _SWAP, 1, ready, ready + swap_ns[rn], 0, "", {}, rn, s.link.id, jid,
                         run_id, hardware[rn]))
        return seq

    def _feedforward(self, rows: list[tuple[Any, ...]], job: Job, trace: str, jid: str, hw: str | None,
                     span_id: str) -> None:
        late = job.outcome == "coherence_window_exceeded"
        ff_s = job.ff_ns / NS
        rows.append((trace, span_id, _ROOT, _FEEDFORWARD, 1, job.ready, job.ready + max(1, job.ff_ns),
                     2 if late else 0, "coherence_window_exceeded" if late else "",
                     {"qfleet.feedforward.latency_s": ff_s, "qfleet.coherence_window_s": job.window_ns / NS,
                      "qfleet.coherence_window.usage": job.usage}, job.nodes[0], job.segs[0].link.id, jid,
                     self.run_id, hw))
        key = (hw,)
        lab = self._hw_labels.get(key) or self._new_labels(self._hw_labels, _HW_KEYS, key)
        self.metrics.observe("qfleet.feedforward.latency", lab, ff_s)
        self.metrics.observe("qfleet.coherence_window.usage", lab, min(job.usage, 1e6))

    def _measurement(self, rows: list[tuple[Any, ...]], job: Job, trace: str, jid: str, hw: str | None,
                     span_id: str, end: int) -> None:
        last = job.nodes[-1]
        rows.append((trace, span_id, _ROOT, _MEASUREMENT, 1, max(job.start, end - 1000), end, 0, "",
                     {"qfleet.passed": job.passed, "qfleet.fidelity": job.fidelity}, last, None, jid, self.run_id,
                     self._hardware[last]))
        key = (hw, job.kind)
        lab = self._fidelity_labels.get(key) or self._new_labels(self._fidelity_labels, _FIDELITY_KEYS, key)
        self.metrics.observe("qfleet.job.fidelity", lab, job.fidelity)
