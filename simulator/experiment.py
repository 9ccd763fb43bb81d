"""Single-protocol experiments: sample a protocol with Stim and compare it with its closed form.

This is the engine behind ``qfleet sim experiment PROTOCOL --param NAME=VALUE ...``. Each protocol in
:data:`PROTOCOLS` builds its template from :mod:`qfleet.simulator.circuits`, draws every shot's Pauli noise in numpy,
measures the fidelity from the stabilizer checks (physics.md 3.1) and reports the :mod:`qfleet.simulator.physics`
prediction beside it. Parameter values may arrive as strings; they are parsed and range-checked here, and every
mistake raises :class:`ExperimentError` with the allowed values and an example fix.

>>> r = run_experiment("ghz", {"nodes": "3", "fidelity": "0.99"}, shots=2000, seed=1)
>>> r.params, r.predicted_fidelity > 0.98
({'nodes': 3, 'fidelity': 0.99}, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from qfleet.simulator import physics
from qfleet.simulator.circuits import (
    PURIFICATION_METHODS,
    InstanceResult,
    SlottedCircuit,
    bell_pair,
    bell_readout,
    depolarize2_masks,
    ghz,
    pauli_masks,
    purification,
    sample_detector_flips,
    swap_chain,
    teleported_cnot,
    werner_masks,
)

__all__ = [
    "PROTOCOLS",
    "ExperimentError",
    "ExperimentResult",
    "Param",
    "ProtocolSpec",
    "run_experiment",
]

# Shots are simulated in chunks so that memory stays bounded (masks are ~qubits x chunk bools per slot).
_CHUNK = 65_536
_MAX_SHOTS = 100_000_000
_MIN_HERALD = 1e-12  # keeps the int64 attempt counts of a chunk far from overflow
_CORE_KEYS = (
    "protocol",
    "params",
    "shots",
    "fidelity",
    "fidelity_stderr",
    "predicted_fidelity",
    "success_probability",
)

Value = float | int | str


class ExperimentError(ValueError):
    """An unknown protocol or parameter, a malformed or out-of-range value, or bad shots / seed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One protocol parameter: its default, and its allowed range or choices.

    The kind follows the default: ``int`` and ``float`` parameters are range-checked (``lo_open`` excludes
    ``lo``), ``str`` parameters must be one of ``choices``.
    """

    name: str
    default: Value
    help: str
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.default, str) != bool(self.choices):
            raise ExperimentError(
                f"parameter {self.name!r}: a str default needs choices, and only it may have them"
            )
        if isinstance(self.default, str):
            if self.default not in self.choices:
                raise ExperimentError(
                    f"parameter {self.name!r}: default {self.default!r} not in {self.choices}"
                )
        else:
            self.check(self.default)

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``"a number in [0.25, 1]"``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = "an integer" if isinstance(self.default, int) else "a number"
        return f"{kind} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"

    def _fail(self, raw: object, problem: str) -> ExperimentError:
        return ExperimentError(
            f"parameter {self.name}={raw!r} {problem}; it must be {self.allowed()} ({self.help}). "
            f"For example: --param {self.name}={self.default}"
        )

    def check(self, value: Value, raw: object = None) -> Value:
        """``value`` if it is allowed, else :class:`ExperimentError` quoting ``raw`` (default: ``value``)."""
        shown = value if raw is None else raw
        if self.choices:
            if value not in self.choices:
                raise self._fail(shown, "is not allowed")
            return value
        assert isinstance(value, (int, float))
        if value < self.lo or value > self.hi or (self.lo_open and value == self.lo):
            raise self._fail(shown, "is out of range")
        return value

    def parse(self, raw: object) -> Value:
        """Convert a CLI string (or a number) to this parameter's kind and check it."""
        if self.choices:
            return self.check(raw.strip() if isinstance(raw, str) else raw)  # type: ignore[arg-type]
        if isinstance(raw, bool):
            raise self._fail(raw, "is a boolean, not a number")
        if isinstance(raw, str):
            try:
                number: float = float(raw.strip())
            except ValueError:
                raise self._fail(raw, "is not a number") from None
        elif isinstance(raw, (int, float, np.integer, np.floating)):
            number = float(raw)
        else:
            raise self._fail(raw, f"has type {type(raw).__name__}, not a number")
        if math.isnan(number):
            raise self._fail(raw, "is not a number")
        if isinstance(self.default, int):
            if not math.isfinite(number) or number != math.floor(number):
                raise self._fail(raw, "is not an integer")
            return self.check(int(number), raw)
        return self.check(number, raw)


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """A protocol's one-line summary and its parameters (in CLI display order)."""

    name: str
    summary: str
    params: tuple[Param, ...]
    by_name: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", MappingProxyType({p.name: p for p in self.params}))

    def defaults(self) -> dict[str, Value]:
        """Every parameter at its default."""
        return {p.name: p.default for p in self.params}


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
            f"{self.protocol}: {params}",
            f"  fidelity             {self.fidelity:.5f} +/- {self.fidelity_stderr:.5f}   "
            f"predicted {self.predicted_fidelity:.5f} ({sigma:.1f} sigma, {self.shots:,} shots)",
        ]
        if self.success_probability is not None:
            lines.append(f"  success_probability  {self.success_probability:.6g}")
        lines += [f"  {k:<20} {v:.6g}" for k, v in self.extra.items()]
        return "\n".join(lines)


def _json_float(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


# --- parameters ---------------------------------------------------------------------------------------------

_FID = "fidelity of each link pair to |Phi+>, Werner noise"


def _fidelity(default: float, what: str = _FID) -> Param:
    return Param(name="fidelity", default=default, lo=0.25, hi=1.0, help=what)


def _readout(default: float) -> Param:
    return Param(
        name="readout_error", default=default, lo=0.0, hi=0.5, help="symmetric readout flip probability"
    )


_SPECS = (
    ProtocolSpec(
        "bell",
        "Bell fidelity estimated from noisy physical XX, YY, ZZ readout (physics.md 1.8)",
        (_fidelity(0.95, "fidelity of the Werner pair to |Phi+>"), _readout(0.02)),
    ),
    ProtocolSpec(
        "memory",
        "a Werner pair stored in two memories under the twirled T1/T2 channel (physics.md 1.3)",
        (
            _fidelity(0.95, "fidelity of the pair when stored"),
            Param(name="wait_s", default=2e-3, lo=0.0, hi=1e6, help="storage time of both halves, seconds"),
            Param(
                name="t1_s", default=math.inf, lo=0.0, lo_open=True, help="memory T1 in seconds; inf = none"
            ),
            Param(
                name="t2_s",
                default=10e-3,
                lo=0.0,
                lo_open=True,
                help="memory T2 in seconds, <= 2 T1; inf = none",
            ),
        ),
    ),
    ProtocolSpec(
        "swap-chain",
        "a repeater chain of Werner links joined by entanglement swaps (physics.md 1.4)",
        (
            Param(name="links", default=3, lo=1, hi=100, help="heralded links in the chain"),
            _fidelity(0.95),
            Param(
                name="gate_error", default=0.0, lo=0.0, hi=15 / 16, help="DEPOLARIZE2 p of each BSM's CNOT"
            ),
            _readout(0.0),
        ),
    ),
    ProtocolSpec(
        "purify",
        "one purification round on two Werner pairs (physics.md 1.5)",
        (
            Param(
                name="method", default="dejmps", choices=PURIFICATION_METHODS, help="purification protocol"
            ),
            _fidelity(0.85),
        ),
    ),
    ProtocolSpec(
        "ghz",
        "a GHZ state fused from nodes-1 Werner links (physics.md 1.7)",
        (Param(name="nodes", default=3, lo=2, hi=100, help="GHZ members"), _fidelity(0.95)),
    ),
    ProtocolSpec(
        "teleport-cnot",
        "a CNOT teleported over one Werner link, process fidelity from its Choi state (physics.md 1.6)",
        (_fidelity(0.97, "fidelity of the link pair (Oxford ion link ~0.97)"),),
    ),
    ProtocolSpec(
        "link",
        "heralded generation over a midpoint station: attempts, time to a pair, heralded fidelity (physics.md 1.1)",
        # Defaults: the trapped-ion double-click link of SquidASM's config_trapped_ions.yaml (physics.md 2).
        (
            Param(name="length_km", default=10.0, lo=0.0, hi=1000.0, help="node-to-node fibre length, km"),
            Param(name="scheme", default="double-click", choices=physics.SCHEMES, help="heralding scheme"),
            Param(name="attenuation_db_per_km", default=0.25, lo=0.0, hi=10.0, help="fibre loss, dB/km"),
            Param(
                name="emission_efficiency", default=1.0, lo=0.0, hi=1.0, help="photon emission probability"
            ),
            Param(
                name="collection_efficiency",
                default=0.111,
                lo=0.0,
                hi=1.0,
                help="photon collection probability",
            ),
            Param(name="detector_efficiency", default=1.0, lo=0.0, hi=1.0, help="detector efficiency"),
            Param(
                name="visibility",
                default=0.89,
                lo=0.0,
                hi=1.0,
                help="two-photon (HOM) interference visibility",
            ),
            Param(
                name="bright_state_population",
                default=0.1,
                lo=0.0,
                hi=1.0,
                help="single-click bright-state population alpha (unused by double-click)",
            ),
            Param(
                name="prep_time_s",
                default=36e-6,
                lo=0.0,
                hi=1.0,
                help="per-attempt preparation time, seconds",
            ),
            Param(
                name="memories", default=1, lo=1, hi=1_000_000, help="memories multiplexed per attempt cycle"
            ),
        ),
    ),
)

PROTOCOLS: Mapping[str, ProtocolSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Protocol name -> its :class:`ProtocolSpec` (summary, parameters with defaults and allowed ranges)."""


def _resolve(protocol: str, params: Mapping[str, object]) -> dict[str, Value]:
    spec = PROTOCOLS.get(protocol)
    if spec is None:
        raise ExperimentError(
            f"protocol {protocol!r} is unknown; use one of {', '.join(PROTOCOLS)} (e.g. `qfleet sim experiment ghz`)"
        )
    unknown = [k for k in params if k not in spec.by_name]
    if unknown:
        names = ", ".join(spec.by_name)
        raise ExperimentError(
            f"{protocol}: unknown parameter {unknown[0]!r}; its parameters are {names} "
            f"(e.g. --param {spec.params[0].name}={spec.params[0].default})"
        )
    return {p.name: (p.parse(params[p.name]) if p.name in params else p.default) for p in spec.params}


# --- sampling helpers -----------------------------------------------------------------------------------------

MaskMaker = Callable[[int], list[tuple[np.ndarray, np.ndarray]]]


def _chunks(shots: int) -> list[int]:
    return [min(_CHUNK, shots - start) for start in range(0, shots, _CHUNK)]


def _detector_counts(circuit: SlottedCircuit, make_masks: MaskMaker, shots: int, seed: int) -> np.ndarray:
    """Per-detector fire counts plus [kept, passed] counts over ``shots`` instances, chunk by chunk."""
    totals = np.zeros(circuit.num_detectors + 2, dtype=np.int64)
    for i, n in enumerate(_chunks(shots)):
        flips = sample_detector_flips(circuit, make_masks(n), seed=seed + i)
        result = InstanceResult.from_detector_flips(flips, circuit.num_herald_detectors)
        totals[:-2] += flips.sum(axis=1)
        totals[-2] += result.kept.sum()
        totals[-1] += result.passed.sum()
    return totals


def _zeros(n_qubits: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n_qubits, n), dtype=bool), np.zeros((n_qubits, n), dtype=bool)


def _binomial(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    return p, math.sqrt(p * (1 - p) / n)


@dataclass(frozen=True, slots=True)
class _Outcome:
    fidelity: float
    stderr: float
    predicted: float
    success: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def _checked_fidelity(
    circuit: SlottedCircuit, make_masks: MaskMaker, shots: int, seed: int
) -> tuple[int, int]:
    totals = _detector_counts(circuit, make_masks, shots, seed)
    return int(totals[-2]), int(totals[-1])


# --- protocols ------------------------------------------------------------------------------------------------


def _bell(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    f, r = float(p["fidelity"]), float(p["readout_error"])

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        flip = rng.random((6, n)) < r
        rx, rz = _zeros(6, n)
        rz[0:2] = flip[0:2]  # MX reads X: a Z error flips it
        rx[2:6] = flip[2:6]  # MY and M: an X error flips both
        return [werner_masks(np.full((3, n), f), rng), (rx, rz)]

    fires = _detector_counts(bell_readout(), masks, shots, seed)[:3]
    q = fires / shots  # P(detector j fires) = (1 - <S_j>)/2 for S = XX, -YY, ZZ
    corr = 1 - 2 * q
    return _Outcome(
        fidelity=float(1 - q.sum() / 2),  # (1 + <XX> - <YY> + <ZZ>)/4
        stderr=float(math.sqrt((q * (1 - q)).sum() / shots) / 2),
        predicted=physics.readout_bell_estimate(f, r),
        extra={
            "correlator_xx": float(corr[0]),
            "correlator_yy": float(-corr[1]),
            "correlator_zz": float(corr[2]),
            "predicted_correlator": float((4 * f - 1) / 3 * (1 - 2 * r) ** 2),
        },
    )


def _memory(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    f, t, t1, t2 = (float(p[k]) for k in ("fidelity", "wait_s", "t1_s", "t2_s"))
    try:
        px, py, pz = physics.twirled_memory_paulis(t, t1, t2)
    except physics.PhysicsError as err:
        raise ExperimentError(f"memory: {err} (e.g. --param t1_s={max(t2, 1.0)} --param t2_s={t2})") from err

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        wx, wz = werner_masks(np.full((1, n), f), rng)
        mx, mz = pauli_masks(px, py, pz, rng, shape=(2, n))
        return [(wx ^ mx, wz ^ mz)]

    kept, passed = _checked_fidelity(bell_pair(), masks, shots, seed)
    fid, err = _binomial(passed, kept)
    return _Outcome(
        fid,
        err,
        physics.memory_pair_fidelity(f, t, t1, t2),
        extra={"qubit_px": px, "qubit_py": py, "qubit_pz": pz},
    )


def _swap_chain(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    links, f, pg, r = int(p["links"]), float(p["fidelity"]), float(p["gate_error"]), float(p["readout_error"])
    circuit = swap_chain(links)
    nb = len(circuit.slots[1])

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        gx, gz = depolarize2_masks(np.full((links - 1, n), pg), rng) if links > 1 else _zeros(0, n)
        readout = rng.random((nb, n)) < r  # both BSM bits are Z-basis reads after the H: X errors flip them
        return [werner_masks(np.full((links, n), f), rng), (gx ^ readout, gz), _zeros(2, n)]

    kept, passed = _checked_fidelity(circuit, masks, shots, seed)
    fid, err = _binomial(passed, kept)
    return _Outcome(fid, err, physics.chain_fidelity([f] * links, gate_error=pg, readout_error=r))


def _purify(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    method, f = str(p["method"]), float(p["fidelity"])
    kept, passed = _checked_fidelity(
        purification(method), lambda n: [werner_masks(np.full((2, n), f), rng)], shots, seed
    )
    fid, err = _binomial(passed, kept)
    success, success_err = _binomial(kept, shots)
    if method == "bbpssw":
        p_pred, f_pred = physics.bbpssw(f)
    else:
        e = (1 - f) / 3
        p_pred, (f_pred, _, _, _) = physics.dejmps(f, e, e, e)
    return _Outcome(
        fid,
        err,
        f_pred,
        success,
        {"success_probability_stderr": success_err, "predicted_success_probability": p_pred},
    )


def _ghz(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    nodes, f = int(p["nodes"]), float(p["fidelity"])
    circuit = ghz(nodes)

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        wx, wz = werner_masks(np.full((nodes - 1, n), f), rng)
        none = np.zeros((1, n), dtype=bool)  # qubit 0 is the first member, not part of a link
        return [(np.vstack([none, wx]), np.vstack([none, wz])), _zeros(nodes - 1, n), _zeros(nodes, n)]

    kept, passed = _checked_fidelity(circuit, masks, shots, seed)
    fid, err = _binomial(passed, kept)
    return _Outcome(fid, err, physics.ghz_fidelity(nodes, f))


def _teleport_cnot(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    f = float(p["fidelity"])

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [werner_masks(np.full((1, n), f), rng), _zeros(2, n), _zeros(2, n)]

    kept, passed = _checked_fidelity(teleported_cnot(), masks, shots, seed)
    fid, err = _binomial(passed, kept)
    predicted = physics.teleported_cnot_fidelity(f)
    return _Outcome(
        fid,
        err,
        predicted,
        extra={
            "average_gate_fidelity": physics.average_gate_fidelity(fid),
            "predicted_average_gate_fidelity": physics.average_gate_fidelity(predicted),
        },
    )


def _link(p: dict[str, Value], shots: int, rng: np.random.Generator, seed: int) -> _Outcome:
    scheme, m = str(p["scheme"]), int(p["memories"])
    herald = physics.heralding_probability(
        scheme=scheme,
        **{
            k: float(p[k])
            for k in (
                "length_km",
                "attenuation_db_per_km",
                "emission_efficiency",
                "collection_efficiency",
                "detector_efficiency",
                "bright_state_population",
            )
        },
    )
    if herald < _MIN_HERALD:
        raise ExperimentError(
            f"link: the heralding probability is {herald!r}, below {_MIN_HERALD:g}: pairs are (practically) never "
            "made; shorten the link or raise the efficiencies (bright_state_population for single-click), "
            "e.g. --param length_km=10"
        )
    cycle = physics.attempt_cycle_s(prep_time_s=float(p["prep_time_s"]), length_km=float(p["length_km"]))
    # Attempts are i.i.d. Bernoulli(p) in (cycle, memory) order. The first success is Geometric(p) attempts in;
    # its cycle completes, and the memories after it in that cycle herald with p each. Attempts = m * cycles.
    heralds = attempts = cycles = cycles_sq = 0
    for n in _chunks(shots):
        first = rng.geometric(herald, size=n)
        c = -(-first // m)
        heralds += n + int(rng.binomial(m * c - first, herald).sum())
        attempts += int(m * c.sum())
        cycles += int(c.sum())
        cycles_sq += float((c.astype(float) ** 2).sum())
    mean_cycles = cycles / shots
    var_cycles = max(cycles_sq / shots - mean_cycles**2, 0.0)
    px, py, pz = physics.heralded_pauli_probabilities(
        scheme=scheme,
        visibility=float(p["visibility"]),
        bright_state_population=float(p["bright_state_population"]),
    )

    def masks(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        x, z = _zeros(2, n)
        x[1], z[1] = pauli_masks(px, py, pz, rng, shape=(n,))
        return [(x, z)]

    kept, passed = _checked_fidelity(bell_pair(), masks, shots, seed)
    fid, err = _binomial(passed, kept)
    success = heralds / attempts
    return _Outcome(
        fid,
        err,
        physics.heralded_fidelity(
            scheme=scheme,
            visibility=float(p["visibility"]),
            bright_state_population=float(p["bright_state_population"]),
        ),
        success,
        {
            "success_probability_stderr": math.sqrt(success * (1 - success) / attempts),
            "predicted_success_probability": herald,
            "attempt_cycle_s": cycle,
            "mean_time_s": mean_cycles * cycle,
            "mean_time_stderr_s": math.sqrt(var_cycles / shots) * cycle,
            "predicted_mean_time_s": physics.mean_time_to_pair_s(p=herald, cycle_s=cycle, memories=m),
        },
    )


_RUNNERS: Mapping[str, Callable[[dict[str, Value], int, np.random.Generator, int], _Outcome]] = (
    MappingProxyType(
        {
            "bell": _bell,
            "memory": _memory,
            "swap-chain": _swap_chain,
            "purify": _purify,
            "ghz": _ghz,
            "teleport-cnot": _teleport_cnot,
            "link": _link,
        }
    )
)


def run_experiment(
    protocol: str, params: Mapping[str, str | float | int], *, shots: int = 10_000, seed: int = 0
) -> ExperimentResult:
    """Simulate ``shots`` instances of ``protocol`` and compare the measured fidelity with the closed form.

    Args:
        protocol: A key of :data:`PROTOCOLS`.
        params: Parameter overrides; values may be strings (``"0.95"``) as they come from the CLI.
        shots: Protocol instances to simulate (>= 1). For ``bell`` each shot reads all three correlators.
        seed: Seeds all randomness; equal arguments give equal results on one Stim/numpy build.

    Returns:
        The measured and predicted figures with the resolved parameters.

    Raises:
        ExperimentError: an unknown protocol or parameter, a bad value, or bad shots / seed.
    """
    resolved = _resolve(protocol, params)
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or not 1 <= shots <= _MAX_SHOTS:
        raise ExperimentError(
            f"shots={shots!r} must be an integer in [1, {_MAX_SHOTS:,}], e.g. --shots 10000"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ExperimentError(f"seed={seed!r} must be an integer in [0, 2**63), e.g. --seed 0")
    seq = np.random.SeedSequence(int(seed))
    mask_seed, stim_seed = seq.spawn(2)
    rng = np.random.default_rng(mask_seed)
    out = _RUNNERS[protocol](resolved, int(shots), rng, int(stim_seed.generate_state(1, dtype=np.uint32)[0]))
    return ExperimentResult(
        protocol=protocol,
        params=resolved,
        shots=int(shots),
        fidelity=float(out.fidelity),
        fidelity_stderr=float(out.stderr),
        predicted_fidelity=float(out.predicted),
        success_probability=None if out.success is None else float(out.success),
        extra={k: float(v) for k, v in out.extra.items()},
    )
