"""The pieces every part of an SLO spec is read with: YAML that keeps each number's text, field paths, and small
checked readers (mappings, strings, exact numbers, matchers, windows).

A reader records what is wrong in a :class:`qfleet.problems.Problems` and returns ``None`` instead of raising,
so that :func:`qfleet.slo.spec.validate_file` reports all of a file's problems at once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import yaml

from qfleet.problems import Problem, Problems, ProblemsError, did_you_mean
from qfleet.units import NS, DurationError, parse_duration

__all__ = [
    "FieldPath",
    "SpecError",
    "decimal_text",
    "exact_number",
    "load_yaml",
    "read_mapping",
    "read_matchers",
    "read_number",
    "read_string",
    "read_window",
    "show",
]

_DECIMAL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MINUTE = 60 * NS


class SpecError(ProblemsError):
    """A spec or policy file is invalid; ``problems`` holds every problem found, ``str()`` lists them.

    >>> err = SpecError([Problem("slos/x: spec", "missing service", "add service: fleet")], source="a.yaml")
    >>> print(err)
    a.yaml: slos/x: spec: missing service (fix: add service: fleet)
    """


# ---------------------------------------------------------------------------------------------------------------
# YAML that keeps each float's text


class _Float(float):
    """A YAML float that remembers the text it was written as (so 0.999 parses to exactly 999/1000)."""

    text: str

    def __new__(cls, value: float, text: str) -> _Float:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps float text and rejects duplicate mapping keys."""


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    return _Float(loader.construct_yaml_float(node), str(node.value))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:  # before merge keys (<<) are flattened: a key may override a merged one
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key_node.value!r} (the later value would silently replace the earlier one)",
                key_node.start_mark)
        seen.add(key_node.value)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(text: str, source: str) -> tuple[list[Any], list[Problem]]:
    """The non-empty YAML documents of ``text``, or the syntax problem (with its line) that stops reading.

    >>> load_yaml("a: 0.1\\n---\\nb: 2\\n", "x.yaml")[0]
    [{'a': 0.1}, {'b': 2}]
    >>> load_yaml("a: [1\\n", "x.yaml")[1][0].path
    'x.yaml: line 2, column 1'
    """
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None], []
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
        what = getattr(err, "problem", None) or str(err)
        return [], [Problem(where, f"not valid YAML: {what}", "fix the YAML syntax at that position", "yaml_syntax")]


# ---------------------------------------------------------------------------------------------------------------
# Paths and value text


@dataclass(frozen=True, slots=True)
class FieldPath:
    """Where a problem is: the object (``slos/job-success``) and the field in it (``spec.objectives[0]``).

    >>> str(FieldPath("slos/x").k("spec").k("qfleet.dev/v1").k("groupBy").i(0))
    'slos/x: spec."qfleet.dev/v1".groupBy[0]'
    """

    obj: str
    field: str = ""

    def k(self, key: Any) -> FieldPath:
        """The path of ``key`` in this mapping (quoted when it is not a plain name)."""
        text = str(key)
        part = text if _PLAIN_KEY.match(text) else json.dumps(text)
        return FieldPath(self.obj, f"{self.field}.{part}" if self.field else part)

    def i(self, index: int) -> FieldPath:
        """The path of item ``index`` of this list."""
        return FieldPath(self.obj, f"{self.field}[{index}]")

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}" if self.field else self.obj


def show(value: Any) -> str:
    """A value as a message quotes it: a YAML number as written, anything else as a short ``repr``."""
    if isinstance(value, _Float):
        return value.text
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decimal_text(x: Fraction) -> str:
    """Exact decimal spelling of ``x`` when it has one, else ``p/q``.

    >>> decimal_text(Fraction(72, 5)), decimal_text(Fraction(-1, 8)), decimal_text(Fraction(1, 3))
    ('14.4', '-0.125', '1/3 (~0.333333)')
    """
    d, k = x.denominator, 0
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
    if d != 1:
        return f"{x.numerator}/{x.denominator} (~{float(x):.6g})"
    while (x * 10**k).denominator != 1:
        k += 1
    digits = str(abs(x.numerator * 10**k // x.denominator)).rjust(k + 1, "0")
    sign = "-" if x < 0 else ""
    return sign + (f"{digits[:-k]}.{digits[-k:]}" if k else digits)


def exact_number(value: Any) -> Fraction | None:
    """The exact rational a YAML number (or decimal string) denotes; None if not a finite number.

    >>> exact_number(load_yaml("0.999", "-")[0][0]), exact_number("99.9"), exact_number(True)
    (Fraction(999, 1000), Fraction(999, 10), None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, _Float):
        text = value.text.replace("_", "").strip()
        if _DECIMAL.match(text):
            return Fraction(text)
    if isinstance(value, float):
        # A float from some other loader: its repr is the shortest decimal that round-trips, i.e. what was typed.
        return Fraction(repr(float(value))) if math.isfinite(value) else None
    if isinstance(value, str) and _DECIMAL.match(value.strip()):
        return Fraction(value.strip())
    return None


# ---------------------------------------------------------------------------------------------------------------
# Checked readers: each records its problems and returns None when the value is unusable


def read_number(found: Problems, value: Any, path: FieldPath, example: str) -> Fraction | None:
    """``value`` as an exact number, or a ``not_a_number`` problem."""
    x = exact_number(value)
    if x is None:
        found.add(path, f"{show(value)} is not a finite decimal number", f"write a number, e.g. {example}",
                  "not_a_number")
    return x


def read_mapping(found: Problems, value: Any, path: FieldPath, allowed: Sequence[str],
                 required: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``value`` as a mapping, with every unknown key and missing required key (key -> fix) reported."""
    if not isinstance(value, dict):
        found.add(path, f"expected a mapping, got {show(value)}",
                  f"write a mapping with keys from: {', '.join(allowed)}", "not_a_mapping")
        return None
    for key in value:
        if key not in allowed:
            found.add(path.k(key), f"unknown key {key!r}",
                      f"{did_you_mean(str(key), allowed)}use only the allowed keys here: {', '.join(allowed)}",
                      "unknown_key")
    for key, fix in (required or {}).items():
        if key not in value:
            found.add(path.k(key), f"required key {key!r} is missing", fix, "missing_key")
    return value


def read_string(found: Problems, value: Any, path: FieldPath, example: str, *,
                max_len: int | None = None) -> str | None:
    """``value`` as a non-empty string of at most ``max_len`` characters."""
    if not isinstance(value, str) or not value.strip():
        found.add(path, f"{show(value)} is not a non-empty string", f"write a string, e.g. {example}",
                  "not_a_string")
        return None
    if max_len is not None and len(value) > max_len:
        found.add(path, f"{len(value)} characters is longer than the {max_len} allowed", f"shorten it to {max_len}",
                  "too_long")
        return None
    return value


def read_matchers(found: Problems, value: Any, path: FieldPath, *,
                  strings: bool) -> tuple[tuple[str, Any], ...] | None:
    """``{key: value}`` as sorted pairs; label values (``strings``) must be strings, attribute values scalars."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        found.add(path, f"expected a mapping of name: value, got {show(value)}",
                  "write e.g. {qfleet.outcome: success}", "not_a_mapping")
        return None
    start = len(found)
    out = [(key, float(v) if isinstance(v, _Float) else v) for key, v in value.items()
           if _matcher_ok(found, key, v, path, strings)]
    return tuple(sorted(out)) if len(found) == start else None


def _matcher_ok(found: Problems, key: Any, value: Any, path: FieldPath, strings: bool) -> bool:
    if not isinstance(key, str) or not key:
        found.add(path.k(key), f"{show(key)} is not a non-empty name", "use a label or attribute name", "bad_key")
    elif strings and not isinstance(value, str):
        found.add(path.k(key), f"label value {show(value)} is not a string (Prometheus labels are strings)",
                  f'quote it: {key}: "{value}"', "not_a_string")
    elif not isinstance(value, str | int | float | bool):
        found.add(path.k(key), f"attribute value {show(value)} is not a scalar",
                  "compare with a string, number or bool", "not_a_scalar")
    else:
        return True
    return False


def read_window(found: Problems, value: Any, path: FieldPath, example: str, *, code: str = "bad_window",
                fix: str = "") -> int | None:
    """``value`` as a window in ns: a Prometheus duration, longer than 0, in whole minutes (counts are per minute).

    Args:
        example: a good value for this field, for the fix.
        code, fix: the problem's code and fix (default: ``bad_window`` and "write e.g. <example>").

    >>> found = Problems()
    >>> read_window(found, "1h30m", FieldPath("p", "long"), "1h") // NS, read_window(found, "0", FieldPath("p"), "1h")
    (5400, None)
    >>> print(found.items[0])
    p: window '0' is not longer than 0: a window must be > 0 (fix: write e.g. 1h)
    """
    fix = fix or f"write e.g. {example}"
    try:
        ns = parse_duration(value)
    except DurationError as err:
        found.add(path, f"window: {err}", fix, code)
        return None
    if ns <= 0:
        found.add(path, f"window {show(value)} is not longer than 0: a window must be > 0", fix, code)
    elif ns % _MINUTE:
        found.add(path, f"window {show(value)} is not a whole number of minutes (SLO counts are kept per minute)",
                  fix, code)
    else:
        return ns
    return None
