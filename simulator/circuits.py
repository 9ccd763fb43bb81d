"""Stim templates cut at noise slots, and a FlipSimulator runner that gives every instance its own Pauli noise.

A :class:`SlottedCircuit` is a noiseless Clifford circuit (physics.md 3) split into segments. Between segment k and
k+1 sits noise slot k, which exposes some qubits. :func:`run_instances` runs B instances at once in
``stim.FlipSimulator`` batches: it executes segment 0, applies each instance's own X/Z masks at slot 0, executes
segment 1, and so on. Each template ends with noiseless ``MPP`` checks of a complete set of stabilizer generators of
its target state, so for Pauli noise "every check passes" happens exactly with probability F (physics.md 3.1): the
fidelity is sampled, never copied from a formula. Purification templates start with herald detectors (the parity of
the sacrificed pair) used for post-selection.

Templates are built as text and parsed once (``Circuit.append`` is ~50x slower, physics.md 4); builders are cached.

Measured throughput of :func:`run_instances` alone (masks prepared beforehand, B = 100,000, default batch_size
4096, one core of the 2-core development machine, stim 1.16, numpy 2.4; best of 3): ghz(3) 10.9 M instances/s
(9.2 ms), ghz(10) 3.0 M/s (34 ms), swap_chain(4) 7.2 M/s (14 ms). Batches of 1024 cost ~15 % more, larger ones
gain < 5 %. Drawing every slot's masks with :func:`~qfleet.simulator.noise_masks.pauli_masks` adds 7 ms (ghz(3)), 14 ms (ghz(10)) and 3.5 ms
(swap_chain(4)) per 100k instances, so ~30 M instances per simulated day cost a few seconds of quantum work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import stim

__all__ = [
    "PURIFICATION_METHODS",
    "CircuitError",
    "InstanceResult",
    "SlottedCircuit",
    "bell_pair",
    "bell_readout",
    "ghz",
    "purification",
    "run_instances",
    "sample_detector_flips",
    "swap_chain",
    "teleport_state",
    "teleported_cnot",
]

PURIFICATION_METHODS: tuple[str, ...] = ("bbpssw", "dejmps")
"""Methods understood by :func:`purification`."""
_MAX_NODES = 1000


class CircuitError(ValueError):
    """A template was requested with bad arguments, or noise masks do not fit a template."""


@dataclass(frozen=True, slots=True)
class SlottedCircuit:
    """A noiseless Clifford template cut at noise slots; each instance gets its own Pauli noise there.

    Attributes:
        name: Short identifier, e.g. ``"ghz(3)"``.
        segments: Stim program text; ``len(segments) == len(slots) + 1``.
        slots: The qubits exposed at each slot, in mask-row order.
        num_qubits: Qubits used by the template.
        num_herald_detectors: Leading detectors used for post-selection (purification); else 0.
        num_check_detectors: Trailing detectors: the complete stabilizer-generator checks (MPP).
        programs: The parsed ``stim.Circuit`` of each segment (derived, not compared or hashed).
    """

    name: str
    segments: tuple[str, ...]
    slots: tuple[tuple[int, ...], ...]
    num_qubits: int
    num_herald_detectors: int
    num_check_detectors: int
    programs: tuple[stim.Circuit, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.segments) != len(self.slots) + 1:
            raise CircuitError(
                f"{self.name}: {len(self.segments)} segments for {len(self.slots)} slots; "
                "a template needs exactly one more segment than slots"
            )
        for k, slot in enumerate(self.slots):
            if len(set(slot)) != len(slot) or any(not 0 <= q < self.num_qubits for q in slot):
                raise CircuitError(
                    f"{self.name}: slot {k} = {slot} must list distinct qubits in [0, {self.num_qubits})"
                )
        try:
            programs = tuple(stim.Circuit(text) for text in self.segments)
        except ValueError as err:
            raise CircuitError(f"{self.name}: a segment is not valid Stim program text: {err}") from err
        detectors = sum(p.num_detectors for p in programs)
        if self.num_herald_detectors < 0 or self.num_check_detectors < 1:
            raise CircuitError(f"{self.name}: needs >= 0 herald detectors and >= 1 check detector")
        if detectors != self.num_herald_detectors + self.num_check_detectors:
            raise CircuitError(
                f"{self.name}: the segments declare {detectors} detectors but num_herald_detectors + "
                f"num_check_detectors = {self.num_herald_detectors + self.num_check_detectors}; make them agree"
            )
        if max((p.num_qubits for p in programs), default=0) > self.num_qubits:
            raise CircuitError(
                f"{self.name}: the segments touch more than num_qubits={self.num_qubits} qubits"
            )
        object.__setattr__(self, "programs", programs)

    @property
    def num_detectors(self) -> int:
        """Herald plus check detectors."""
        return self.num_herald_detectors + self.num_check_detectors

    def circuit(self) -> stim.Circuit:
        """The whole noiseless template as one ``stim.Circuit`` (for inspection; slots leave no trace)."""
        return stim.Circuit("\n".join(self.segments))


def _text(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def _targets(qubits: Sequence[int]) -> str:
    return " ".join(str(q) for q in qubits)


def _checks(products: Sequence[str]) -> str:
    """Noiseless MPP of each product plus one detector per product, in order."""
    n = len(products)
    return _text(f"MPP {' '.join(products)}", *(f"DETECTOR rec[-{n - i}]" for i in range(n)))


def _pairs(pairs: Sequence[tuple[int, int]]) -> str:
    """Perfect |Phi+> on each (a, b): H a, CX a b."""
    return _text(f"H {_targets([a for a, _ in pairs])}", f"CX {_targets([q for p in pairs for q in p])}")


def _count(name: str, value: int, lo: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= _MAX_NODES:
        raise CircuitError(f"{name}={value!r} must be an integer in [{lo}, {_MAX_NODES}] ({what})")
    return int(value)


@functools.cache
def bell_pair() -> SlottedCircuit:
    """A Bell pair |Phi+> on qubits (0, 1); slot 0 exposes both after generation. Checks XX and ZZ.

    >>> bell_pair().slots, bell_pair().num_check_detectors
    (((0, 1),), 2)
    """
    return SlottedCircuit(
        name="bell_pair",
        segments=(_text("R 0 1", _pairs([(0, 1)])), _checks(["X0*X1", "Z0*Z1"])),
        slots=((0, 1),),
        num_qubits=2,
        num_herald_detectors=0,
        num_check_detectors=2,
    )


@functools.cache
def bell_readout() -> SlottedCircuit:
    """Three Bell pairs read out physically in the XX, YY and ZZ bases (physics.md 1.8 correlators).

    Pair j = (2j, 2j+1) is measured with ``MX``, ``MY`` or ``M`` (j = 0, 1, 2) and detector j is the parity of its
    two bits relative to |Phi+> (XX = +1, YY = -1, ZZ = +1), so P(detector j fires) = (1 - <S_j>)/2 for
    S = (XX, -YY, ZZ). Slot 0: all six qubits after generation; slot 1: all six just before measurement, where a
    readout flip is a Z error for ``MX`` and an X error for ``MY`` and ``M``. These detectors are correlators, not
    a complete stabilizer check of one state: read them with :func:`sample_detector_flips`.
    """
    measure = _text(
        "MX 0 1", "MY 2 3", "M 4 5", *(f"DETECTOR rec[-{6 - 2 * j}] rec[-{5 - 2 * j}]" for j in range(3))
    )
    return SlottedCircuit(
        name="bell_readout",
        segments=(_text("R 0 1 2 3 4 5", _pairs([(0, 1), (2, 3), (4, 5)])), "", measure),
        slots=(tuple(range(6)), tuple(range(6))),
        num_qubits=6,
        num_herald_detectors=0,
        num_check_detectors=3,
    )


@functools.lru_cache(maxsize=256)
def swap_chain(links: int) -> SlottedCircuit:
    """``links`` heralded pairs joined by entanglement swaps at the ``links - 1`` repeaters (physics.md 3, Swap).

    Pair i is (2i, 2i+1); repeater i holds (2i+1, 2i+2) and performs ``CX``, ``H`` on the first and ``M`` on both.
    The end pair (0, 2*links-1) gets the XOR of all swap outcomes as its Pauli correction.

    Slots: 0 = all 2*links qubits after generation (pair error, storage while waiting); 1 = the BSM qubits just
    before their measurements, in order (1, 2, 3, 4, ...) (gate error, readout flips as X errors); 2 = the two end
    qubits just before the final correction lands (storage during classical transit). Checks X*X and Z*Z on the
    end qubits.

    >>> swap_chain(2).slots
    ((0, 1, 2, 3), (1, 2), (0, 3))
    """
    links = _count("links", links, 1, "the number of heralded pairs in the chain")
    n = 2 * links
    end = n - 1
    bsm = [q for i in range(links - 1) for q in (2 * i + 1, 2 * i + 2)]
    gen = _text(f"R {_targets(range(n))}", _pairs([(2 * i, 2 * i + 1) for i in range(links)]))
    swaps = _text(*(f"CX {2 * i + 1} {2 * i + 2}\nH {2 * i + 1}" for i in range(links - 1)))
    measure = f"M {_targets(bsm)}" if bsm else ""
    # Outcome order in the record is bsm order: the first bit of each swap (X-basis, after H) corrects Z, the
    # second (Z-basis) corrects X. All corrections commute, so they land on the far end together.
    m = len(bsm)
    fix_x = " ".join(f"rec[-{m - (2 * i + 1)}] {end}" for i in range(links - 1))
    fix_z = " ".join(f"rec[-{m - 2 * i}] {end}" for i in range(links - 1))
    correct = _text(f"CX {fix_x}" if fix_x else "", f"CZ {fix_z}" if fix_z else "")
    return SlottedCircuit(
        name=f"swap_chain({links})",
        segments=(gen, swaps, measure, _text(correct, _checks([f"X0*X{end}", f"Z0*Z{end}"]))),
        slots=(tuple(range(n)), tuple(bsm), (0, end)),
        num_qubits=n,
        num_herald_detectors=0,
        num_check_detectors=2,
    )


@functools.lru_cache(maxsize=256)
def ghz(nodes: int) -> SlottedCircuit:
    """A ``nodes``-node GHZ state by chained fusion of ``nodes - 1`` pairs (physics.md 3, general k-node recipe).

    Member g_0 = 0; link i is (a_i, b_i) = (1+2i, 2+2i) and b_i becomes node i+1's member. Fusion i is
    ``CX g_i a_i`` then ``M a_i``; the measurements are deferred to after all fusions, so b_j's X correction is the
    XOR of outcomes 0..j (one Pauli-frame update; sequential feed-forward is the same Pauli, only timing differs).

    Slots: 0 = every qubit after pair generation; 1 = the comm qubits a_i before their measurement; 2 = the GHZ
    members (0, 2, 4, ...) just before the checks. Checks: X on all members and the nodes-1 Z_i Z_{i+1}.

    >>> ghz(3).slots
    ((0, 1, 2, 3, 4), (1, 3), (0, 2, 4))
    """
    nodes = _count("nodes", nodes, 2, "the number of GHZ members")
    links = nodes - 1
    n = 2 * links + 1
    comm = [1 + 2 * i for i in range(links)]
    members = [0] + [2 + 2 * i for i in range(links)]
    gen = _text(f"R {_targets(range(n))}", "H 0", _pairs([(1 + 2 * i, 2 + 2 * i) for i in range(links)]))
    fuse = _text(*(f"CX {members[i]} {comm[i]}" for i in range(links)))
    fix = " ".join(f"rec[-{links - i}] {2 + 2 * j}" for j in range(links) for i in range(j + 1))
    measure = _text(f"M {_targets(comm)}", f"CX {fix}")
    products = ["*".join(f"X{q}" for q in members)] + [
        f"Z{members[i]}*Z{members[i + 1]}" for i in range(links)
    ]
    return SlottedCircuit(
        name=f"ghz({nodes})",
        segments=(gen, fuse, measure, _checks(products)),
        slots=(tuple(range(n)), tuple(comm), tuple(members)),
        num_qubits=n,
        num_herald_detectors=0,
        num_check_detectors=nodes,
    )


@functools.cache
def teleported_cnot() -> SlottedCircuit:
    """A CNOT from control 0 to target 3 teleported over the link pair (1, 2), on Choi references 4 and 5.

    physics.md 3 row "Teleported CNOT" (Eisert et al. 2000): ``CX 0 1``, ``M 1``, ``CX rec 2``, ``CX 2 3``, ``MX 2``,
    ``CZ rec 0``, with B's X correction moved past ``CX 2 3`` (it becomes X on 2 and 3; X on 2 is invisible to
    ``MX 2``) so both measurements follow one slot. The four checks are the Choi state's generators, so the
    pass rate is the process fidelity.

    Slots: 0 = the link pair (1, 2) after generation; 1 = qubits (1, 2) before their measurements (a readout flip
    is X on 1, Z on 2); 2 = the control 0 while it waits the round trip, and the target 3.
    """
    return SlottedCircuit(
        name="teleported_cnot",
        segments=(
            _text("R 0 1 2 3 4 5", "H 0 3", "CX 0 4 3 5", _pairs([(1, 2)])),
            _text("CX 0 1", "CX 2 3"),
            _text("M 1", "MX 2", "CX rec[-2] 3", "CZ rec[-1] 0"),
            _checks(["X0*X3*X4", "Z0*Z4", "X3*X5", "Z0*Z3*Z5"]),
        ),
        slots=((1, 2), (1, 2), (0, 3)),
        num_qubits=6,
        num_herald_detectors=0,
        num_check_detectors=4,
    )


@functools.cache
def teleport_state() -> SlottedCircuit:
    """Teleport qubit 1 (half of the Choi pair (0, 1)) over the link pair (2, 3) to qubit 3; checks X0X3, Z0Z3.

    Slots: 0 = the link pair (2, 3) after generation; 1 = the sender's qubits (1, 2) just before measurement
    (readout flips are X errors there); 2 = the receiver's qubit 3 while it waits for the two classical bits.
    """
    return SlottedCircuit(
        name="teleport_state",
        segments=(
            _text("R 0 1 2 3", _pairs([(0, 1), (2, 3)])),
            _text("CX 1 2", "H 1"),
            "M 1 2",
            _text("CX rec[-1] 3", "CZ rec[-2] 3", _checks(["X0*X3", "Z0*Z3"])),
        ),
        slots=((2, 3), (1, 2), (3,)),
        num_qubits=4,
        num_herald_detectors=0,
        num_check_detectors=2,
    )


@functools.cache
def purification(method: str, rotations: bool = True) -> SlottedCircuit:
    """One round of entanglement purification: kept pair (0, 1), sacrificed pair (2, 3); A holds 0, 2.

    ``"dejmps"`` (Deutsch et al. 1996) applies ``SQRT_X 0 2`` and ``SQRT_X_DAG 1 3`` before the bilateral CNOT;
    ``rotations=False`` omits them, which is the physics.md 1.5 trap: the circuit then no longer purifies
    dephasing. ``"bbpssw"`` (Bennett et al. 1996) is the bilateral CNOT alone: its twirl to Werner form is
    assumed done, i.e. the inputs are Werner; ``rotations`` only applies to DEJMPS.

    One herald detector (the sacrificed pair's Z parity; keep when silent) then checks XX and ZZ on the kept
    pair. Slot 0: all four qubits after generation.

    >>> purification("dejmps").num_herald_detectors
    1
    """
    if method not in PURIFICATION_METHODS:
        raise CircuitError(f"method={method!r} is unknown; use one of {', '.join(PURIFICATION_METHODS)}")
    rotate = method == "dejmps" and rotations
    body = _text(
        "SQRT_X 0 2\nSQRT_X_DAG 1 3" if rotate else "",
        "CX 0 2 1 3",
        "M 2 3",
        "DETECTOR rec[-2] rec[-1]",
        _checks(["X0*X1", "Z0*Z1"]),
    )
    return SlottedCircuit(
        name=f"purification({method}{'' if rotate or method == 'bbpssw' else ', no rotations'})",
        segments=(_text("R 0 1 2 3", _pairs([(0, 1), (2, 3)])), body),
        slots=((0, 1, 2, 3),),
        num_qubits=4,
        num_herald_detectors=1,
        num_check_detectors=2,
    )


@dataclass(frozen=True, slots=True)
class InstanceResult:
    """Per-instance outcomes of :func:`run_instances`.

    Attributes:
        kept: (B,) bool, every herald detector silent (all True when there are none).
        passed: (B,) bool, kept and every check detector silent (the instance holds the target state).
    """

    kept: np.ndarray
    passed: np.ndarray

    def __post_init__(self) -> None:
        if self.kept.shape != self.passed.shape or self.kept.ndim != 1:
            raise CircuitError(
                f"kept {self.kept.shape} and passed {self.passed.shape} must be equal 1-d shapes"
            )
        if (self.passed & ~self.kept).any():
            raise CircuitError("an instance passed without being kept; passed must imply kept")

    @classmethod
    def from_detector_flips(cls, flips: np.ndarray, num_herald_detectors: int) -> InstanceResult:
        """Outcomes from a (num_detectors, B) flip array whose first ``num_herald_detectors`` rows are heralds."""
        kept = np.asarray(~flips[:num_herald_detectors].any(axis=0))
        return cls(kept=kept, passed=np.asarray(kept & ~flips[num_herald_detectors:].any(axis=0)))

    def fidelity(self) -> float:
        """passed.sum() / kept.sum(): the fidelity of the kept instances (nan if nothing was kept)."""
        kept = int(self.kept.sum())
        return int(self.passed.sum()) / kept if kept else math.nan

    def stderr(self) -> float:
        """Binomial standard error sqrt(F (1 - F) / kept) of :meth:`fidelity` (nan if nothing was kept)."""
        kept = int(self.kept.sum())
        if not kept:
            return math.nan
        f = self.fidelity()
        return math.sqrt(f * (1 - f) / kept)


def _check_masks(circuit: SlottedCircuit, masks: Sequence[tuple[np.ndarray, np.ndarray]]) -> int:
    if len(masks) != len(circuit.slots):
        raise CircuitError(
            f"{circuit.name} has {len(circuit.slots)} slots but {len(masks)} mask pairs were given; "
            "pass one (x_mask, z_mask) per slot"
        )
    width = None
    for k, (slot, pair) in enumerate(zip(circuit.slots, masks, strict=True)):
        for label, m in zip("xz", pair, strict=True):
            if m.dtype != np.bool_ or m.ndim != 2 or m.shape[0] != len(slot):
                raise CircuitError(
                    f"{circuit.name} slot {k}: {label}_mask has dtype {m.dtype} and shape {m.shape}; it must be "
                    f"bool with shape ({len(slot)}, B), one row per slot qubit {slot}"
                )
            if width is None:
                width = m.shape[1]
            elif m.shape[1] != width:
                raise CircuitError(
                    f"{circuit.name} slot {k}: {label}_mask covers {m.shape[1]} instances, the others {width}; "
                    "every mask needs the same B"
                )
    if width is None:
        raise CircuitError(f"{circuit.name} has no slots, so the number of instances is unknown")
    return int(width)


def _scatter(slot: tuple[int, ...], m: np.ndarray) -> np.ndarray:
    """Rows for simulator qubits 0..max(slot): the mask rows placed at their qubits (a view when contiguous)."""
    if slot == tuple(range(len(slot))):
        return m
    full = np.zeros((max(slot) + 1, m.shape[1]), dtype=bool)
    full[list(slot)] = m
    return full


def sample_detector_flips(
    circuit: SlottedCircuit,
    masks: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    batch_size: int = 4096,
) -> np.ndarray:
    """Detector flips of B instances with their own noise: a (num_detectors, B) bool array.

    See :func:`run_instances` for the arguments. Deterministic for a given seed and masks.
    """
    width = _check_masks(circuit, masks)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CircuitError(f"batch_size={batch_size!r} must be an integer >= 1, e.g. 4096")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CircuitError(f"seed={seed!r} must be an integer >= 0")
    out = np.empty((circuit.num_detectors, width), dtype=bool)
    # The templates are noiseless and their detectors deterministic, so the simulator's own randomness only
    # matters for raw measurement bits; stabilizer randomization is off because nothing here reads them.
    seeds = np.random.SeedSequence(int(seed)).generate_state(
        math.ceil(width / batch_size) or 1, dtype=np.uint64
    )
    rows = [(circuit.slots[k], masks[k]) for k in range(len(circuit.slots))]
    for i, start in enumerate(range(0, width, batch_size)):
        stop = min(start + batch_size, width)
        sim = stim.FlipSimulator(
            batch_size=stop - start,
            num_qubits=circuit.num_qubits,
            disable_stabilizer_randomization=True,
            seed=int(seeds[i]),
        )
        for k, program in enumerate(circuit.programs):
            sim.do(program)
            if k < len(rows):
                slot, (mx, mz) = rows[k]
                if slot:
                    sim.broadcast_pauli_errors(
                        pauli="X", mask=_scatter(slot, np.ascontiguousarray(mx[:, start:stop]))
                    )
                    sim.broadcast_pauli_errors(
                        pauli="Z", mask=_scatter(slot, np.ascontiguousarray(mz[:, start:stop]))
                    )
        out[:, start:stop] = sim.get_detector_flips()
    return out


def run_instances(
    circuit: SlottedCircuit,
    masks: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    batch_size: int = 4096,
) -> InstanceResult:
    """Run B instances of ``circuit``, instance b with Pauli errors ``masks[k][.][:, b]`` at slot k.

    Args:
        circuit: The template.
        masks: ``masks[k] = (x_mask, z_mask)`` for slot k, each bool of shape ``(len(circuit.slots[k]), B)``.
        seed: Seeds the simulator (only its raw-measurement randomness; detector outcomes follow the masks).
        batch_size: Instances per ``stim.FlipSimulator`` batch.

    Returns:
        Which instances were kept (herald detectors silent) and which passed every check.

    Raises:
        CircuitError: masks of the wrong number, shape or dtype.

    >>> x, z = np.zeros((2, 4), bool), np.zeros((2, 4), bool)
    >>> z[1, :2] = True
    >>> run_instances(bell_pair(), [(x, z)], seed=0).passed.tolist()
    [False, False, True, True]
    """
    flips = sample_detector_flips(circuit, masks, seed=seed, batch_size=batch_size)
    return InstanceResult.from_detector_flips(flips, circuit.num_herald_detectors)
