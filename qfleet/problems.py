"""One validation vocabulary for every file qfleet loads: fleets, fault schedules, SLO specs, alerting
configs, alert rules, game days and campaigns.

A loader collects every :class:`Problem` it finds (the field path, what is wrong with the value, how to fix
it) in a :class:`Problems` and raises them all at once as a :class:`ProblemsError` subclass of its package,
so a user fixes a file in one round trip and a command line prints one line per problem and exits 2.
This module imports nothing else of qfleet.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

__all__ = [
    "OneLineParser",
    "Problem",
    "Problems",
    "ProblemsError",
    "check_header",
    "did_you_mean",
    "read_yaml",
]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line naming the value, exit 2 (argparse's default prints
    the whole usage first); every ``qfleet`` command line uses it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, as a warning, worth knowing) in a loaded document.

    Args:
        path: the field, e.g. ``nodes[2].t2_s`` or ``slos/job-success: spec.objectives[0].target``; ``""`` for
            the document as a whole.
        message: what is wrong, naming the bad value and the rule it breaks.
        fix: how to fix it (may be empty when the message already says).
        code: a stable machine-readable id such as ``unknown_key``, or ``""``.

    Examples:
        >>> str(Problem("route.group_wait", "duration '5m5m' is not valid", "write 10m"))
        "route.group_wait: duration '5m5m' is not valid (fix: write 10m)"
    """

    path: str
    message: str
    fix: str = ""
    code: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text

    def to_json(self) -> dict[str, str]:
        """``{"path", "message", "fix", "code"}``."""
        return {"path": self.path, "message": self.message, "fix": self.fix, "code": self.code}


class ProblemsError(ValueError):
    """A document breaks one or more rules; ``problems`` holds every one, ``str()`` lists them one per line.

    Each package raises its own subclass (``FleetError``, ``SpecError``, ``ConfigError``...), so callers can
    tell what failed to load, and every command prints them the same way.

    Examples:
        >>> print(ProblemsError([Problem("version", "must be 1, got 2", "write version: 1")], source="a.yaml"))
        a.yaml: version: must be 1, got 2 (fix: write version: 1)
        >>> print(ProblemsError([Problem("a", "bad"), Problem("b", "worse")], source="x.yaml"))
        x.yaml: 2 problems (fix all of them):
          a: bad
          b: worse
    """

    def __init__(self, problems: Iterable[Problem], *, source: str = "",
                 warnings: Iterable[Problem] = ()) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.warnings: tuple[Problem, ...] = tuple(warnings)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = f"{head}{self.problems[0]}"
        else:
            message = f"{head}{len(self.problems)} problems (fix all of them):\n" + "\n".join(
                f"  {p}" for p in self.problems)
        super().__init__(message)

    def to_json(self) -> dict[str, Any]:
        """``{"source", "problems": [...], "warnings": [...]}`` for ``--json`` outputs."""
        return {"source": self.source, "problems": [p.to_json() for p in self.problems],
                "warnings": [w.to_json() for w in self.warnings]}


E = TypeVar("E", bound=ProblemsError)


@dataclass(slots=True)
class Problems:
    """The problems (and warnings) a loader has found so far.

    Examples:
        >>> found = Problems(source="fleet.yaml")
        >>> found.unknown_keys({"nme": "x"}, "", ("name", "nodes"))
        >>> found.raise_if_any(ProblemsError)
        Traceback (most recent call last):
        ...
        qfleet.problems.ProblemsError: fleet.yaml: nme: unknown key (fix: did you mean 'name'? allowed keys: name, nodes)
    """

    source: str = ""
    items: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def add(self, path: object, message: str, fix: str = "", code: str = "") -> None:
        """Record a problem at ``path`` (anything whose ``str()`` is the field path)."""
        self.items.append(Problem(str(path), message, fix, code))

    def warn(self, path: object, message: str, fix: str = "", code: str = "") -> None:
        """Record a warning: worth telling the user, not a reason to refuse the document."""
        self.warnings.append(Problem(str(path), message, fix, code))

    def unknown_keys(self, node: Mapping[Any, Any], path: str, allowed: Collection[str]) -> None:
        """A problem for each key of ``node`` not in ``allowed``, suggesting the closest allowed key."""
        for key in node:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.add(where, "unknown key",
                         f"{did_you_mean(str(key), allowed)}allowed keys: {', '.join(allowed)}", "unknown_key")

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self, error: type[E]) -> None:
        """Raise ``error`` with every problem found (and the warnings), if there is any."""
        if self.items:
            raise error(self.items, source=self.source, warnings=self.warnings)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices``, or ``""`` when none is close.

    Examples:
        >>> did_you_mean("recevier", ["receiver", "routes"]), did_you_mean("zzz", ["receiver"])
        ("did you mean 'receiver'? ", '')
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_header(doc: Any, found: Problems, *, kind: str, what: str, keys: Collection[str],
                 error: type[E]) -> None:
    """The common start of a ``version: 1, kind: <kind>`` document: a mapping (else ``error`` at once), no keys
    beyond ``keys``, and the right version and kind (``what`` names the document in messages)."""
    if not isinstance(doc, Mapping):
        found.add("", f"a {what} is a mapping, not {type(doc).__name__}",
                  f"start the file with version: 1 and kind: {kind}", "not_a_mapping")
        found.raise_if_any(error)
    found.unknown_keys(doc, "", keys)
    if doc.get("version") != 1 or doc.get("kind") != kind:
        found.add("version", f"version {doc.get('version')!r} and kind {doc.get('kind')!r} are not a {what}",
                  f"write version: 1 and kind: {kind}", "bad_header")


def read_yaml(path: Path, *, what: str, error: type[E]) -> Any:
    """The parsed YAML document at ``path`` (safe loading only), or ``error`` naming the file and the fix.

    Args:
        path: the file.
        what: what the file should hold, for the message (``"fleet"``, ``"alerting config"``...).
        error: the :class:`ProblemsError` subclass to raise.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error([Problem("", f"cannot read the {what} file ({err.strerror})", f"check the path {str(path)!r}",
                             "unreadable")], source=str(path)) from err
    try:
        # libyaml's safe loader when PyYAML was built with it: the same safe subset, ~10x faster to parse (it is
        # most of `qfleet alerts routes test`'s own time).
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise error([Problem("", f"not valid YAML: {err}".replace("\n", " "), "fix the YAML syntax at that line",
                             "bad_yaml")], source=str(path)) from err
