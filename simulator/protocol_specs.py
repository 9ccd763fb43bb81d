"""The protocols ``qfleet sim experiment`` knows: their parameters with defaults, allowed ranges and help.

Parameter values may arrive as strings (from the command line); :func:`resolve_params` parses and range-checks
them, and every mistake raises :class:`ExperimentError` with the allowed values and an example fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from qfleet.simulator import physics
from qfleet.simulator.circuits import PURIFICATION_METHODS

__all__ = ["PROTOCOLS", "ExperimentError", "Param", "ProtocolSpec", "Value", "resolve_params"]

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
            if not isinstance(raw, str):
                raise self._fail(raw, "is not allowed")
            return self.check(raw.strip())
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



# --- parameters ---------------------------------------------------------------------------------------------

_FID = "fidelity of each link pair to |Phi+>, Werner noise"


def _fidelity(default: float, what: str = _FID) -> Param:
    return Param(name="fidelity", default=default, lo=0.25, hi=1.0, help=what)


def _t1() -> Param:
    return Param(name="t1_s", default=math.inf, lo=0.0, lo_open=True, help="memory T1 in seconds; inf = none")


def _t2(default: float) -> Param:
    return Param(
        name="t2_s", default=default, lo=0.0, lo_open=True, help="memory T2 in seconds, <= 2 T1; inf = none"
    )


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
        "a Werner pair stored in two memories: Stim samples the twirled T1/T2 channel, the exact amplitude-damping "
        "value is reported beside it (physics.md 1.3, docs/physics.md)",
        (
            _fidelity(0.95, "fidelity of the pair when stored"),
            Param(name="wait_s", default=2e-3, lo=0.0, hi=1e6, help="storage time of both halves, seconds"),
            _t1(),
            _t2(10e-3),
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
        "a CNOT teleported over one link pair with noisy local gates, readout and storage; process fidelity from its "
        "Choi state (physics.md 1.6)",
        (
            _fidelity(0.97, "fidelity of the link pair (Oxford ion link ~0.97)"),
            Param(
                name="gate_error", default=0.0, lo=0.0, hi=15 / 16, help="DEPOLARIZE2 p of each local CNOT"
            ),
            _readout(0.0),
            Param(
                name="pair_wait_s",
                default=0.0,
                lo=0.0,
                hi=1e6,
                help="mean time the two data qubits idle while the link pair is made (exponential), seconds",
            ),
            Param(
                name="round_trip_s",
                default=0.0,
                lo=0.0,
                hi=1e6,
                help="the classical round trip the control waits (B's comm qubit waits half), seconds",
            ),
            _t1(),
            _t2(math.inf),
        ),
    ),
    ProtocolSpec(
        "link",
        "entanglement generation: heralded over a midpoint station, or deterministic microwave transfer; attempts, "
        "time to a pair, exact and twirled fidelity (physics.md 1.1, docs/physics.md)",
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
                name="conversion_efficiency",
                default=1.0,
                lo=0.0,
                hi=1.0,
                help="frequency-conversion efficiency per photon (1 = native photons)",
            ),
            Param(
                name="dark_count_probability",
                default=1.4e-5,
                lo=0.0,
                hi=0.5,
                help="dark-count probability per detector and attempt window",
            ),
            Param(
                name="visibility",
                default=0.89,
                lo=0.0,
                hi=1.0,
                help="two-photon (HOM) interference visibility; microwave: the transfer's coherence factor",
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


def resolve_params(protocol: str, params: Mapping[str, object]) -> dict[str, Value]:
    """Every parameter of ``protocol``: ``params`` parsed and range-checked, defaults for the rest.

    Raises:
        ExperimentError: an unknown protocol or parameter, or a bad value.
    """
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
