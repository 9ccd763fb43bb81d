"""Single-protocol experiments: sample a protocol with Stim and compare it with its closed form.

This is the engine behind ``qfleet sim experiment PROTOCOL --param NAME=VALUE ...``. Each protocol in
:data:`PROTOCOLS` (parameters: :mod:`~qfleet.simulator.protocol_specs`; samplers: :mod:`~qfleet.simulator.protocols`)
builds its template from :mod:`qfleet.simulator.circuits`, draws every shot's Pauli noise in numpy, measures the
fidelity from the stabilizer checks (physics.md 3.1) and reports the :mod:`qfleet.simulator.physics` prediction
beside it. Parameter values may arrive as strings; they are parsed and range-checked, and every mistake raises
:class:`ExperimentError` with the allowed values and an example fix.

>>> r = run_experiment("ghz", {"nodes": "3", "fidelity": "0.99"}, shots=2000, seed=1)
>>> r.params, r.predicted_fidelity > 0.98
({'nodes': 3, 'fidelity': 0.99}, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from qfleet.simulator import physics
from qfleet.simulator.profiles import LINK_PRESETS, PROFILES
from qfleet.simulator.protocol_specs import (
    PROTOCOLS,
    ExperimentError,
    Param,
    ProtocolSpec,
    Value,
    resolve_params,
)
from qfleet.simulator.protocols import RUNNERS

__all__ = [
    "PROTOCOLS",
    "ExperimentError",
    "ExperimentResult",
    "Param",
    "ProtocolSpec",
    "REFERENCE_LENGTH_KM",
    "profile_params",
    "run_experiment",
]

REFERENCE_LENGTH_KM = 0.002
"""The link length at which a profile's link fidelity and pair rate feed the other protocols: 2 m, the lab links of
the experiments the profiles reproduce (Humphreys et al. 2018; Main et al. 2025)."""

_MAX_SHOTS = 100_000_000
_CORE_KEYS = (
    "protocol",
    "params",
    "shots",
    "fidelity",
    "fidelity_stderr",
    "predicted_fidelity",
    "success_probability",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentResult:
    """The outcome of :func:`run_experiment`.

    Attributes:
        protocol: The protocol name.
        params: The resolved parameters, defaults included.
        shots: Protocol instances simulated.
        fidelity: Measured fidelity of the delivered state (of the kept shots for ``purify``).
        fidelity_stderr: Its binomial standard error.
        predicted_fidelity: The closed form from :mod:`qfleet.simulator.physics`.
        success_probability: Measured success probability (post-selection, or per heralding attempt), if any.
        extra: Further measured and predicted figures, e.g. ``mean_time_s`` and ``predicted_mean_time_s``.
    """

    protocol: str
    params: dict[str, Value]
    shots: int
    fidelity: float
    fidelity_stderr: float
    predicted_fidelity: float
    success_probability: float | None
    extra: dict[str, float]
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ExperimentError(f"protocol={self.protocol!r} is unknown; use one of {', '.join(PROTOCOLS)}")
        if self.shots < 1:
            raise ExperimentError(f"shots={self.shots!r} must be >= 1")
        clash = set(self.extra) & set(_CORE_KEYS)
        if clash:
            raise ExperimentError(
                f"extra keys {sorted(clash)} clash with the result's own fields; rename them"
            )

    def to_json_dict(self) -> dict[str, object]:
        """A JSON-ready dict: the core fields in a fixed order, then the ``extra`` keys (nan becomes None)."""
        out: dict[str, object] = {
            "protocol": self.protocol,
            "params": dict(self.params),
            "shots": self.shots,
            "fidelity": _json_float(self.fidelity),
            "fidelity_stderr": _json_float(self.fidelity_stderr),
            "predicted_fidelity": _json_float(self.predicted_fidelity),
            "success_probability": _json_float(self.success_probability),
        }
        out.update({k: _json_float(v) for k, v in self.extra.items()})
        if self.profile is not None:
            out["profile"] = self.profile
        return out

    def format_text(self) -> str:
        """A short human-readable summary."""
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        sigma = (
            abs(self.fidelity - self.predicted_fidelity) / self.fidelity_stderr
            if self.fidelity_stderr
            else 0.0
        )
        lines = [
            f"{self.protocol}: {params}" + (f" (profile {self.profile})" if self.profile else ""),
            f"  fidelity             {self.fidelity:.5f} +/- {self.fidelity_stderr:.5f}   "
            f"predicted {self.predicted_fidelity:.5f} ({sigma:.1f} sigma, {self.shots:,} shots)",
        ]
        if self.success_probability is not None:
            lines.append(f"  success_probability  {self.success_probability:.6g}")
        lines += [f"  {k:<20} {v:.6g}" for k, v in self.extra.items()]
        return "\n".join(lines)


def _json_float(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def profile_params(protocol: str, profile: str) -> dict[str, Value]:
    """The parameters of ``protocol`` that a built-in hardware profile and its link preset supply.

    ``profile`` names a node profile (:data:`~qfleet.simulator.profiles.PROFILES`), a link preset
    (:data:`~qfleet.simulator.profiles.LINK_PRESETS`) or both (``ion-photonic``, ``nv``, ``sc-microwave``). A
    preset supplies the ``link`` protocol's physics, and for the other protocols the pair fidelity at
    :data:`REFERENCE_LENGTH_KM` (``fidelity``) and the mean time to make it (``pair_wait_s``). A node profile
    supplies ``t1_s``, ``t2_s``, ``gate_error`` (its two-qubit gate), ``readout_error`` (the mean of its two
    readout errors) and ``round_trip_s``: two local gates, two readouts and two classical messages (the
    teleported CNOT's feed-forward).

    Raises:
        ExperimentError: an unknown profile, or one that supplies none of the protocol's parameters.

    >>> profile_params("memory", "nv")["t2_s"]
    0.5
    """
    node, preset = PROFILES.get(profile), LINK_PRESETS.get(profile)
    if node is None and preset is None:
        names = sorted(set(PROFILES) | set(LINK_PRESETS))
        raise ExperimentError(f"profile {profile!r} is unknown; use one of {', '.join(names)} (e.g. --profile nv)")
    spec = PROTOCOLS.get(protocol)
    if spec is None:
        raise ExperimentError(f"protocol {protocol!r} is unknown; use one of {', '.join(PROTOCOLS)}")
    derived: dict[str, Value] = {}
    if preset is not None:
        link = {k: v for k, v in preset.link_fields().items() if k != "preset"}
        derived.update(link)
        physics_args = {k: link[k] for k in (
            "scheme", "attenuation_db_per_km", "emission_efficiency", "collection_efficiency", "detector_efficiency",
            "conversion_efficiency", "dark_count_probability", "visibility", "bright_state_population")}
        p, _, f = physics.link_pair(length_km=REFERENCE_LENGTH_KM, **physics_args)
        cycle = physics.attempt_cycle_s(prep_time_s=preset.prep_time_s, length_km=REFERENCE_LENGTH_KM)
        derived["fidelity"] = max(0.25, f)
        derived["pair_wait_s"] = physics.mean_time_to_pair_s(p=p, cycle_s=cycle, memories=1)
    if node is not None:
        message = (preset.classical_processing_s if preset is not None else 0.0) \
            + REFERENCE_LENGTH_KM * physics.FIBRE_S_PER_KM
        derived.update(
            t1_s=node.t1_s,
            t2_s=node.t2_s,
            gate_error=node.gate_error_2q,
            readout_error=(node.readout_error_0 + node.readout_error_1) / 2,
            round_trip_s=2 * (node.gate_time_2q_s + node.readout_time_s + message),
        )
    out = {k: v for k, v in derived.items() if k in spec.by_name}
    if not out:
        raise ExperimentError(f"profile {profile!r} supplies none of {protocol}'s parameters; run it without --profile")
    return out


def run_experiment(
    protocol: str,
    params: Mapping[str, str | float | int],
    *,
    shots: int = 10_000,
    seed: int = 0,
    profile: str | None = None,
) -> ExperimentResult:
    """Simulate ``shots`` instances of ``protocol`` and compare the measured fidelity with the closed form.

    Args:
        protocol: A key of :data:`PROTOCOLS`.
        params: Parameter overrides; values may be strings (``"0.95"``) as they come from the CLI.
        shots: Protocol instances to simulate (>= 1). For ``bell`` each shot reads all three correlators.
        seed: Seeds all randomness; equal arguments give equal results on one Stim/numpy build.
        profile: A built-in hardware profile or link preset whose values replace the defaults
            (:func:`profile_params`); ``params`` still override them.

    Returns:
        The measured and predicted figures with the resolved parameters.

    Raises:
        ExperimentError: an unknown protocol, profile or parameter, a bad value, or bad shots / seed.
    """
    merged: dict[str, object] = dict(profile_params(protocol, profile)) if profile is not None else {}
    merged.update(params)
    resolved = resolve_params(protocol, merged)
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or not 1 <= shots <= _MAX_SHOTS:
        raise ExperimentError(
            f"shots={shots!r} must be an integer in [1, {_MAX_SHOTS:,}], e.g. --shots 10000"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ExperimentError(f"seed={seed!r} must be an integer in [0, 2**63), e.g. --seed 0")
    seq = np.random.SeedSequence(int(seed))
    mask_seed, stim_seed = seq.spawn(2)
    rng = np.random.default_rng(mask_seed)
    out = RUNNERS[protocol](resolved, int(shots), rng, int(stim_seed.generate_state(1, dtype=np.uint32)[0]))
    return ExperimentResult(
        protocol=protocol,
        params=resolved,
        shots=int(shots),
        fidelity=float(out.fidelity),
        fidelity_stderr=float(out.stderr),
        predicted_fidelity=float(out.predicted),
        success_probability=None if out.success is None else float(out.success),
        extra={k: float(v) for k, v in out.extra.items()},
        profile=profile,
    )
