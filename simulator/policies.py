"""A fleet's policies: the classical network, tenants and their job streams, the scheduler, calibration drift.

Each validates every field at construction (:mod:`qfleet.simulator.rules`) and reports every problem at once as a
:class:`~qfleet.simulator.rules.FleetError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from qfleet.problems import Problem
from qfleet.simulator.profiles import HARDWARE_TYPES, JOB_KINDS
from qfleet.simulator.rules import (
    MAX_SECONDS,
    Rule,
    count,
    identifier,
    in_range,
    non_negative,
    positive,
    validate,
)

__all__ = [
    "CALIBRATION_KEYS",
    "CLASSICAL_KEYS",
    "MAX_JOBS_PER_S",
    "MAX_SHOTS",
    "Calibration",
    "ClassicalNetwork",
    "SCHEDULER_KEYS",
    "Scheduler",
    "TENANT_KEYS",
    "Tenant",
    "default_tenants",
]

#: Most job arrivals per simulated second, for one tenant and for a whole run (all tenants times ``--load``):
#: ~750 times the built-in fleet100's rate. Each step holds its arrivals in memory, so this bounds a step's size.
MAX_JOBS_PER_S = 10_000.0
#: Most shots per job (a tenant's ``shots`` or ``--shots``): the Stim batch of a job is sized by it.
MAX_SHOTS = 100_000

_MIX_TOLERANCE = 1e-9

_CLASSICAL_RULES = (
    positive("fibre_s_per_km", "seconds per km", "5e-6", maximum=MAX_SECONDS),
    non_negative("orchestrator_processing_s", "seconds per scheduling decision", "50e-6", maximum=MAX_SECONDS),
    positive("orchestrator_capacity_per_s", "decisions per second", "2000"),
)
#: The keys of a fleet file's ``classical`` mapping.
CLASSICAL_KEYS: tuple[str, ...] = tuple(r.name for r in _CLASSICAL_RULES)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassicalNetwork:
    """The classical control plane: fibre delay and the central orchestrator's service model.

    ``fibre_s_per_km`` is the one-way delay (light in fibre, physics.md §1.1). The orchestrator spends
    ``orchestrator_processing_s`` per scheduling decision and serves at most ``orchestrator_capacity_per_s``
    decisions per second before requests queue (the F3 overload model).
    """

    fibre_s_per_km: float = 5e-6
    orchestrator_processing_s: float = 50e-6
    orchestrator_capacity_per_s: float = 2000.0

    def __post_init__(self) -> None:
        validate(self, _CLASSICAL_RULES, "ClassicalNetwork")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TENANT_RULES = (
    identifier("id", "research"),
    positive("weight", "fair-share weight", "1.0"),
    Rule("priority", "int", lambda v: True, "", "higher is served first, e.g. priority: 0"),
    non_negative("rate_per_s", "Poisson job arrivals per second", "2.0", maximum=MAX_JOBS_PER_S),
    in_range("fidelity_target", 0.0, 1.0, "minimum acceptable measured fidelity", "0.8"),
    Rule("mix", "mix", lambda v: len(v) > 0, "must name at least one job kind",
         "job kind -> probability, e.g. mix: {teleport: 0.5, pair_delivery: 0.5}"),
    Rule("ghz_nodes", "ints", lambda v: len(v) > 0 and all(k >= 2 for k in v),
         "must be a non-empty list of GHZ sizes, each >= 2", "e.g. ghz_nodes: [3, 4]"),
    count("shots", 1, "32", maximum=MAX_SHOTS),
    Rule("hardware_types", "strs", lambda v: all(t in HARDWARE_TYPES for t in v) and len(set(v)) == len(v),
         f"must list distinct types from {', '.join(HARDWARE_TYPES)}",
         "empty means any, e.g. hardware_types: [trapped-ion]"),
)
#: The keys a fleet file's tenant entry may have.
TENANT_KEYS: tuple[str, ...] = tuple(r.name for r in _TENANT_RULES)


def _tenant_cross(tenant: Tenant) -> list[Problem]:
    items = []
    unknown = [k for k in tenant.mix if k not in JOB_KINDS]
    if unknown:
        items.append(Problem("mix", f"unknown job kind(s) {', '.join(map(repr, unknown))}",
                             f"rename or remove them; allowed: {', '.join(JOB_KINDS)}", "unknown_job_kind"))
    negative = [k for k, v in tenant.mix.items() if v < 0]
    if negative:
        items.append(Problem("mix", f"probabilities must be >= 0, got {dict(tenant.mix)!r}",
                             f"fix {', '.join(negative)}", "out_of_range"))
    total = math.fsum(tenant.mix.values())
    if abs(total - 1.0) > _MIX_TOLERANCE:
        items.append(Problem("mix", f"probabilities must sum to 1 (within {_MIX_TOLERANCE:g}), got sum {total!r} "
                                    f"from {dict(tenant.mix)!r}", "rescale them", "out_of_range"))
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """A user of the fleet: a Poisson job stream with a job mix, a priority and a fidelity target.

    ``mix`` maps job kinds (:data:`JOB_KINDS`) to probabilities summing to 1. ``ghz_nodes`` are GHZ sizes
    drawn uniformly; ``hardware_types`` restricts the tenant to those node types (empty = any).

    Raises:
        FleetError: a field is out of range, ``mix`` names an unknown kind or does not sum to 1.
    """

    id: str
    weight: float
    priority: int
    rate_per_s: float
    fidelity_target: float
    # Compared but not hashed (a mapping is unhashable), so fleets stay usable as cache keys.
    mix: Mapping[str, float] = field(hash=False)
    ghz_nodes: tuple[int, ...] = (3,)
    shots: int = 32
    hardware_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate(self, _TENANT_RULES, f"Tenant(id={self.id!r})", _tenant_cross, needs=("mix",))

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (tuples as lists, ``mix`` as a key-sorted dict)."""
        return {"id": self.id, "weight": self.weight, "priority": self.priority, "rate_per_s": self.rate_per_s,
                "fidelity_target": self.fidelity_target, "mix": dict(sorted(self.mix.items())),
                "ghz_nodes": list(self.ghz_nodes), "shots": self.shots,
                "hardware_types": list(self.hardware_types)}


_SCHEDULER_RULES = (
    positive("max_attempt_time_s", "seconds of entanglement retries per link request", "1.0", maximum=MAX_SECONDS),
    positive("queue_timeout_s", "seconds a job may wait", "30", maximum=MAX_SECONDS),
    Rule("cutoff_fidelity", "float", lambda v: 0.25 <= v < 1.0, "must be in [0.25, 1)",
         "pair fidelity below which it is discarded, e.g. cutoff_fidelity: 0.8"),
    count("max_regenerations", 0, "3"),
)
#: The keys of a fleet file's ``scheduler`` mapping.
SCHEDULER_KEYS: tuple[str, ...] = tuple(r.name for r in _SCHEDULER_RULES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scheduler:
    """Scheduling policy: retry budgets, queue timeout and the coherence-window cut-off (physics.md §1.3)."""

    max_attempt_time_s: float = 1.0
    queue_timeout_s: float = 30.0
    cutoff_fidelity: float = 0.8
    max_regenerations: int = 3

    def __post_init__(self) -> None:
        validate(self, _SCHEDULER_RULES, "Scheduler")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_CALIBRATION_RULES = (
    positive("interval_s", "seconds between a node's calibrations", "21600", maximum=MAX_SECONDS),
    non_negative("duration_s", "seconds of maintenance window", "600", maximum=MAX_SECONDS),
    non_negative("t2_drift_per_sqrt_h", "fractional step per sqrt(hour)", "0.05"),
    non_negative("readout_drift_per_sqrt_h", "absolute step per sqrt(hour)", "0.002"),
    non_negative("efficiency_drift_per_sqrt_h", "fractional step per sqrt(hour)", "0.03"),
    Rule("max_degradation", "float", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)",
         "largest fractional degradation of the walk, e.g. max_degradation: 0.5"),
)
#: The keys of a fleet file's ``calibration`` mapping.
CALIBRATION_KEYS: tuple[str, ...] = tuple(r.name for r in _CALIBRATION_RULES)


def _calibration_cross(cal: Calibration) -> list[Problem]:
    if cal.duration_s >= cal.interval_s:
        return [Problem("duration_s", f"must be < interval_s ({cal.interval_s!r}), got {cal.duration_s!r}: a node "
                                      "would be in maintenance forever", "shorten the window", "out_of_range")]
    return []


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Calibration drift and maintenance: bounded random walks of T2, readout error and link efficiency.

    Each node recalibrates every ``interval_s`` (staggered by node) and runs no jobs for ``duration_s``;
    calibration restores the baseline. Drift steps are per sqrt(hour); the walk never degrades a parameter
    by more than ``max_degradation`` (a fraction).
    """

    interval_s: float = 21600.0
    duration_s: float = 600.0
    t2_drift_per_sqrt_h: float = 0.05
    readout_drift_per_sqrt_h: float = 0.002
    efficiency_drift_per_sqrt_h: float = 0.03
    max_degradation: float = 0.5

    def __post_init__(self) -> None:
        validate(self, _CALIBRATION_RULES, "Calibration", _calibration_cross)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def default_tenants(processors: int) -> tuple[Tenant, ...]:
    """The tenant set used when a fleet file has no ``tenants`` key.

    A general-purpose tenant at 1 job/s over any hardware (no GHZ jobs when fewer than 3 processors) and a
    canary prober at 0.2 jobs/s with top priority; none when fewer than 2 processors (jobs need two).

    Args:
        processors: number of processors in the fleet.

    Examples:
        >>> [t.id for t in default_tenants(4)]
        ['general', 'canary']
    """
    if processors < 2:
        return ()
    ghz = 0.1 if processors >= 3 else 0.0
    mix = {"teleport": 0.3, "teleported_cnot": 0.2, "ghz": ghz, "pair_delivery": 0.45 - ghz, "canary": 0.05}
    return (
        Tenant(id="general", weight=1.0, priority=0, rate_per_s=1.0, fidelity_target=0.5,
               mix={k: v for k, v in mix.items() if v > 0}, ghz_nodes=(3,)),
        Tenant(id="canary", weight=0.1, priority=10, rate_per_s=0.2, fidelity_target=0.5, mix={"canary": 1.0},
               shots=64),
    )
