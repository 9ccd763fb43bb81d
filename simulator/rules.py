"""Field rules for the fleet's values: one table per dataclass, shared by direct construction and file loading.

A :class:`Rule` coerces one field to its canonical type and checks its range; :func:`validate` runs a table of
them over a dataclass, then its cross-field checks, and raises every :class:`~qfleet.problems.Problem` at once as
a :class:`FleetError`. :func:`unknown_keys` and :func:`suggest` are shared with the fault-file loader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from qfleet.problems import Problem, Problems, ProblemsError, did_you_mean

__all__ = [
    "MAX_SECONDS",
    "MISSING",
    "FleetError",
    "Rule",
    "count",
    "identifier",
    "in_range",
    "non_negative",
    "one_of",
    "positive",
    "prefixed",
    "suggest",
    "unknown_keys",
    "validate",
]

#: The longest time any fleet value in seconds may be (a gate, a timeout, a calibration interval): one year.
#: Simulated times are integer ns; a larger value overflows them or stalls the run on events it never reaches.
MAX_SECONDS = 365 * 86_400.0

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*")


class FleetError(ProblemsError):
    """A fleet file or fleet value breaks one or more rules; ``problems`` holds each (field path, message, fix).

    Examples:
        >>> from qfleet.simulator.fleet import Scheduler
        >>> Scheduler(max_regenerations=-1)
        Traceback (most recent call last):
        ...
        qfleet.simulator.rules.FleetError: Scheduler: max_regenerations: must be an integer >= 0, got -1 \
(fix: a count, e.g. max_regenerations: 3)
    """


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
"""A required field the document did not give (reported as ``is required``)."""


def _as_str(raw: Any, allow_inf: bool) -> tuple[Any, str | None]:
    if not isinstance(raw, str) or not raw.strip():
        return raw, "must be a non-empty string"
    return raw, None


def _as_int(raw: Any, allow_inf: bool) -> tuple[Any, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, int):
        return raw, "must be an integer"
    return raw, None


def _as_float(raw: Any, allow_inf: bool) -> tuple[Any, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return raw, "must be a number"
    value = float(raw)
    if math.isnan(value):
        return raw, "must be a number, not NaN"
    if math.isinf(value) and not allow_inf:
        return raw, "must be finite"
    return value, None


def _as_list(item: Callable[[Any, bool], tuple[Any, str | None]]) -> Callable[[Any, bool], tuple[Any, str | None]]:
    def coerce(raw: Any, allow_inf: bool) -> tuple[Any, str | None]:
        if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
            return raw, "must be a list"
        for x in raw:
            _, problem = item(x, False)
            if problem is not None:
                return raw, f"every item {problem.removeprefix('must be ')}"
        return tuple(raw), None
    return coerce


def _as_mix(raw: Any, allow_inf: bool) -> tuple[Any, str | None]:
    if not isinstance(raw, Mapping):
        return raw, "must be a mapping of job kind to probability"
    out: dict[str, float] = {}
    for key in sorted(raw, key=str):
        value = raw[key]
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            return raw, "must map job-kind strings to numbers"
        out[key] = float(value)
    return MappingProxyType(out), None


_COERCE: Mapping[str, Callable[[Any, bool], tuple[Any, str | None]]] = {
    "str": _as_str, "int": _as_int, "float": _as_float, "strs": _as_list(_as_str), "ints": _as_list(_as_int),
    "mix": _as_mix,
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One field: its kind (``str int float strs ints mix``), range test, rule text and fix hint."""

    name: str
    kind: str
    ok: Callable[[Any], bool]
    rule: str
    hint: str
    allow_inf: bool = False

    def coerce(self, raw: Any) -> tuple[Any, Problem | None]:
        """``(value, None)`` with the canonical Python type, or ``(raw, the problem)``."""
        if raw is MISSING:
            return raw, Problem(self.name, "is required", self.hint, "required")
        value, type_problem = _COERCE[self.kind](raw, self.allow_inf)
        if type_problem is not None:
            return raw, Problem(self.name, f"{type_problem}, got {raw!r}", self.hint, "wrong_type")
        if not self.ok(value):
            return raw, Problem(self.name, f"{self.rule}, got {raw!r}", self.hint, "out_of_range")
        return value, None


def positive(name: str, unit: str, example: str, *, allow_inf: bool = False, maximum: float | None = None) -> Rule:
    """A number > 0 (``allow_inf``: ``.inf`` too; ``maximum``: at most that, so that the run stays feasible)."""
    if maximum is not None:
        return Rule(name, "float", lambda v: 0 < v <= maximum, f"must be > 0 and at most {maximum:g}",
                    f"{unit}, e.g. {name}: {example}", allow_inf)
    return Rule(name, "float", lambda v: v > 0, "must be > 0", f"{unit}, e.g. {name}: {example}", allow_inf)


def non_negative(name: str, unit: str, example: str, *, maximum: float | None = None) -> Rule:
    """A finite number >= 0 (and <= ``maximum`` when given)."""
    if maximum is not None:
        return Rule(name, "float", lambda v: 0 <= v <= maximum, f"must be >= 0 and at most {maximum:g}",
                    f"{unit}, e.g. {name}: {example}")
    return Rule(name, "float", lambda v: v >= 0, "must be >= 0", f"{unit}, e.g. {name}: {example}")


def in_range(name: str, lo: float, hi: float, unit: str, example: str, *, open_lo: bool = False) -> Rule:
    """A number in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``)."""
    if open_lo:
        return Rule(name, "float", lambda v: lo < v <= hi, f"must be in ({lo:g}, {hi:g}]",
                    f"{unit}, e.g. {name}: {example}")
    return Rule(name, "float", lambda v: lo <= v <= hi, f"must be in [{lo:g}, {hi:g}]",
                f"{unit}, e.g. {name}: {example}")


def one_of(name: str, choices: Sequence[str]) -> Rule:
    """One of ``choices``."""
    return Rule(name, "str", lambda v: v in choices, f"must be one of {', '.join(choices)}",
                f"e.g. {name}: {choices[0]}")


def identifier(name: str, example: str) -> Rule:
    """An id: a letter or digit, then letters, digits, ``_ - . :``."""
    return Rule(name, "str", lambda v: _ID_RE.fullmatch(v) is not None,
                "must start with a letter or digit and use only letters, digits, '_', '-', '.', ':'",
                f"e.g. {name}: {example}")


def count(name: str, minimum: int, example: str, *, maximum: int | None = None) -> Rule:
    """An integer >= ``minimum`` (and <= ``maximum`` when given: arrays and loops are sized by it)."""
    if maximum is not None:
        return Rule(name, "int", lambda v: minimum <= v <= maximum,
                    f"must be an integer in [{minimum}, {maximum:_}]",
                    f"a count, e.g. {name}: {example}")
    return Rule(name, "int", lambda v: v >= minimum, f"must be an integer >= {minimum}",
                f"a count, e.g. {name}: {example}")


def validate(obj: Any, rules: Sequence[Rule], label: str, cross: Callable[[Any], list[Problem]] | None = None,
             needs: Sequence[str] = ()) -> None:
    """Coerce and check every field of the frozen dataclass ``obj``; run ``cross`` when the fields it ``needs``
    (default: all) are valid.

    Raises:
        FleetError: every problem, with ``label`` (e.g. ``Node(id='a')``) as its source.
    """
    items: list[Problem] = []
    for rule in rules:
        value, problem = rule.coerce(getattr(obj, rule.name))
        if problem is not None:
            items.append(problem)
        else:
            object.__setattr__(obj, rule.name, value)
    bad = {p.path for p in items}
    if cross is not None and (not bad if not needs else not bad.intersection(needs)):
        items.extend(cross(obj))
    if items:
        raise FleetError(items, source=label)


def prefixed(path: str, problems: Iterable[Problem]) -> list[Problem]:
    """``problems`` with ``path`` put in front of each field path (a value's problems inside a document)."""
    return [Problem(f"{path}.{p.path}" if path and p.path else path or p.path, p.message, p.fix, p.code)
            for p in problems]


def suggest(word: str, allowed: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest allowed word, truncated names (``cutoff``) included, or ``""``."""
    allowed = list(allowed)
    hint = did_you_mean(str(word), allowed)
    if hint:
        return hint
    # A truncated name ("cutoff" for "cutoff_fidelity") scores below difflib's cut-off; catch it too.
    close = [a for a in allowed if len(str(word)) >= 3 and str(word).lower() in a.lower()][:1]
    return f"did you mean {close[0]!r}? " if close else ""


def unknown_keys(found: Problems, entry: Mapping[Any, Any], allowed: Sequence[str], path: str) -> None:
    """A problem for each key of ``entry`` not in ``allowed``, naming the key and suggesting the closest."""
    for key in entry:
        if key not in allowed:
            found.add(f"{path}.{key}" if path else str(key), f"unknown key {key!r}",
                      f"{suggest(str(key), allowed)}allowed keys: {', '.join(allowed)}", "unknown_key")
