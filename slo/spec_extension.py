"""The ``qfleet.dev/v1`` key of an SLO spec and the alert policies it names (see :mod:`qfleet.slo.spec`).

Alert policies are versioned data: ``slo/policies/<name>.yaml`` (``version: 1``, ``kind: AlertWindows``,
``name``, ``description?``, ``pairs``), another file by path, or an inline ``{name, pairs}``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

from qfleet.problems import Problem, Problems
from qfleet.slo.model import AlertPolicy, BudgetStep, Pair
from qfleet.slo.spec_fields import (
    FieldPath,
    SpecError,
    decimal_text,
    load_yaml,
    read_mapping,
    read_number,
    read_string,
    read_window,
    show,
)
from qfleet.units import NS, format_duration

__all__ = [
    "BUILTIN_POLICIES",
    "DEFAULT_POLICY",
    "GROUP_BY_DIMENSIONS",
    "Extension",
    "load_policy",
    "parse_extension",
]

#: Alert policies shipped in ``slo/policies/`` (sre.md §3).
BUILTIN_POLICIES: tuple[str, ...] = ("sre_workbook_30d", "sre_workbook_30d_low_target", "pyrra_28d")
DEFAULT_POLICY = "sre_workbook_30d"
#: Promoted store dimensions an SLO may be segmented by.
GROUP_BY_DIMENSIONS: tuple[str, ...] = ("hardware_type", "node_id", "link_id")

_POLICIES = Path(__file__).resolve().parent / "policies"
_PAIR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PAIR_KEYS = ("name", "severity", "long", "short", "budgetPercent", "burnRate")
_EXT_KEYS = ("alertPolicy", "groupBy", "minEvents", "runbook", "budgetPolicy")
_STEP_KEYS = ("name", "consumed", "consequence")


# ---------------------------------------------------------------------------------------------------------------
# Alert policies


def load_policy(name_or_path: str | Path) -> AlertPolicy:
    """A built-in alert policy by name, or an ``AlertWindows`` file by path.

    Args:
        name_or_path: ``sre_workbook_30d``, ``pyrra_28d`` or the path of a policy file.

    Returns:
        The policy; thresholds follow from each pair and the SLO's period.

    Raises:
        SpecError: unknown name, unreadable or invalid file (every problem listed).

    >>> policy = load_policy("sre_workbook_30d")
    >>> [(p.name, p.threshold(30 * 86400 * NS)) for p in policy.pairs][:2]
    [('page_fast', Fraction(72, 5)), ('page_slow', Fraction(6, 1))]
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_POLICIES:
        return _builtin_policy(name_or_path)
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path):
        raise SpecError([_unknown_policy(FieldPath(name_or_path), name_or_path)], source=name_or_path)
    found = Problems(source=str(path))
    policy = _policy_file(found, path, FieldPath(str(path)))
    if policy is None:
        found.raise_if_any(SpecError)
    assert policy is not None  # _policy_file records a problem whenever it returns None
    return policy


@functools.cache
def _builtin_policy(name: str) -> AlertPolicy:
    found = Problems(source=f"builtin policy {name}")
    policy = _policy_file(found, _POLICIES / f"{name}.yaml", FieldPath(f"policies/{name}"))
    if policy is None:
        found.raise_if_any(SpecError)
    assert policy is not None
    return policy


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))


def _unknown_policy(path: FieldPath, name: Any) -> Problem:
    return Problem(str(path), f"alert policy {show(name)} is not a built-in policy",
                   f"use {' or '.join(BUILTIN_POLICIES)} (default {DEFAULT_POLICY}), a path to an AlertWindows file "
                   "(ending .yaml), or an inline {name, pairs}", "unknown_policy")


def _policy_file(found: Problems, file: Path, path: FieldPath) -> AlertPolicy | None:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        found.add(path, f"cannot read policy file {str(file)!r}: {err.strerror or err}",
                  f"use one of {', '.join(BUILTIN_POLICIES)} or a path (relative to the spec file) to an existing file",
                  "policy_not_found")
        return None
    docs, problems = load_yaml(text, str(file))
    found.items.extend(problems)
    if problems:
        return None
    if len(docs) != 1:
        found.add(FieldPath(str(file)), f"a policy file holds exactly one document, found {len(docs)}",
                  "keep one AlertWindows document per file", "bad_policy_file")
        return None
    return _parse_policy(found, docs[0], FieldPath(str(file)), inline=False)


def _parse_policy(found: Problems, value: Any, path: FieldPath, *, inline: bool) -> AlertPolicy | None:
    keys = ("name", "description", "pairs") if inline else ("version", "kind", "name", "description", "pairs")
    required = {"name": "add name: my_policy", "pairs": "add pairs: [{name, severity, long, short, budgetPercent}]"}
    if not inline:
        required = {"version": "add version: 1", "kind": "add kind: AlertWindows", **required}
    start = len(found)
    doc = read_mapping(found, value, path, keys, required)
    if doc is None:
        return None
    if not inline:
        _check_policy_header(found, doc, path)
    name = read_string(found, doc["name"], path.k("name"), "sre_workbook_30d") if "name" in doc else None
    if "description" in doc:
        read_string(found, doc["description"], path.k("description"), "Workbook windows")
    pairs = _parse_pairs(found, doc["pairs"], path.k("pairs")) if "pairs" in doc else None
    if len(found) != start or name is None or pairs is None:
        return None
    return AlertPolicy(name=name, pairs=pairs)


def _check_policy_header(found: Problems, doc: dict[str, Any], path: FieldPath) -> None:
    if "version" in doc and (doc["version"] != 1 or isinstance(doc["version"], bool)):
        found.add(path.k("version"), f"policy version {show(doc['version'])} is not supported", "write version: 1",
                  "bad_version")
    if "kind" in doc and doc["kind"] != "AlertWindows":
        found.add(path.k("kind"), f"kind {show(doc['kind'])} is not an alert-window policy",
                  "write kind: AlertWindows", "wrong_kind")


def _parse_pairs(found: Problems, value: Any, path: FieldPath) -> tuple[Pair, ...] | None:
    if not isinstance(value, list) or not value:
        found.add(path, f"pairs must be a non-empty list, got {show(value)}",
                  "list the pairs, e.g. - {name: page_fast, severity: page, long: 1h, short: 5m, budgetPercent: 2}",
                  "bad_pairs")
        return None
    start = len(found)
    names: set[str] = set()
    pairs = [_parse_pair(found, raw, path.i(i), i, names) for i, raw in enumerate(value)]
    if len(found) != start:
        return None
    return tuple(p for p in pairs if p is not None)


def _parse_pair(found: Problems, raw: Any, p: FieldPath, index: int, names: set[str]) -> Pair | None:
    """One pair of a policy; ``names`` holds the names of the pairs before it (this one's is added)."""
    item = read_mapping(found, raw, p, _PAIR_KEYS, {
        "name": "add name: page_fast (lowercase letters, digits, _)",
        "severity": "add severity: page or severity: ticket",
        "long": "add long: 1h (the long window)",
        "short": "add short: 5m (about long/12)",
    })
    if item is None:
        return None
    start = len(found)
    name = _pair_name(found, item, p, names)
    severity = item.get("severity")
    if "severity" in item and severity not in ("page", "ticket"):
        found.add(p.k("severity"), f"severity {show(severity)} is not page or ticket",
                  "use page (wake a human now) or ticket (next working day); Pyrra's critical is page, "
                  "warning is ticket", "bad_severity")
    windows = _pair_windows(found, item, p, name or str(index))
    budget, burn = _pair_threshold(found, item, p)
    if len(found) != start or windows is None or name is None:
        return None
    return Pair(name=name, severity=cast(Literal["page", "ticket"], severity), long_ns=windows[0],
                short_ns=windows[1], budget_fraction=budget, burn_threshold=burn)


def _pair_name(found: Problems, item: dict[str, Any], p: FieldPath, names: set[str]) -> str | None:
    if "name" not in item:
        return None
    name = item["name"]
    if not isinstance(name, str) or not _PAIR_NAME.match(name):
        found.add(p.k("name"), f"pair name {show(name)} is not valid",
                  "use lowercase letters, digits and _, starting with a letter, e.g. page_fast", "bad_pair_name")
        return None
    if name in names:
        found.add(p.k("name"), f"pair name {name!r} is used twice", "give every pair a distinct name",
                  "duplicate_pair")
    names.add(name)
    return name


def _pair_windows(found: Problems, item: dict[str, Any], p: FieldPath, name: str) -> tuple[int, int] | None:
    long_ns = read_window(found, item["long"], p.k("long"), "1h") if "long" in item else None
    short_ns = read_window(found, item["short"], p.k("short"), "5m") if "short" in item else None
    if long_ns is None or short_ns is None:
        return None
    if short_ns >= long_ns:
        found.add(p.k("short"), f"short window {item['short']} is not shorter than long window {item['long']}",
                  f"make short shorter than long, about long/12 (e.g. {format_duration(max(long_ns // 12, 60 * NS))})",
                  f"short_not_shorter_than_long:{name}")
        return None
    return long_ns, short_ns


def _pair_threshold(found: Problems, item: dict[str, Any], p: FieldPath) -> tuple[Fraction | None, Fraction | None]:
    """``(budget_fraction, burn_threshold)``: exactly one is given."""
    if ("budgetPercent" in item) == ("burnRate" in item):
        found.add(p, "give exactly one of budgetPercent and burnRate",
                  "budgetPercent: 2 (fires when 2 % of the budget is spent within the long window) or burnRate: 14 "
                  "(a fixed burn factor)", "bad_pair_threshold")
        return None, None
    if "budgetPercent" in item:
        pct = read_number(found, item["budgetPercent"], p.k("budgetPercent"), "2")
        if pct is not None and not 0 < pct <= 100:
            found.add(p.k("budgetPercent"), f"budgetPercent {decimal_text(pct)} is outside (0, 100]",
                      "give the percent of the error budget spent within the long window, e.g. 2", "bad_budget")
            return None, None
        return (None if pct is None else pct / 100), None
    burn = read_number(found, item["burnRate"], p.k("burnRate"), "14")
    if burn is not None and burn <= 0:
        found.add(p.k("burnRate"), f"burnRate {decimal_text(burn)} is not positive", "use a factor > 0, e.g. 14",
                  "bad_burn_rate")
        return None, None
    return None, burn


# ---------------------------------------------------------------------------------------------------------------
# spec."qfleet.dev/v1"


@dataclass(frozen=True, slots=True)
class Extension:
    """What an SLO's ``qfleet.dev/v1`` key sets."""

    policy: AlertPolicy
    group_by: tuple[str, ...] = ()
    min_events: int = 0
    runbook: str | None = None
    budget_policy: tuple[BudgetStep, ...] = ()


def parse_extension(found: Problems, value: Any, path: FieldPath, base_dir: Path | None) -> Extension | None:
    """The ``qfleet.dev/v1`` mapping; relative policy paths resolve in ``base_dir``."""
    start = len(found)
    ext = read_mapping(found, value, path, _EXT_KEYS)
    if ext is None:
        return None
    policy = _alert_policy(found, ext.get("alertPolicy", DEFAULT_POLICY), path.k("alertPolicy"), base_dir)
    group_by = _group_by(found, ext["groupBy"], path.k("groupBy")) if "groupBy" in ext else ()
    min_events = ext.get("minEvents", 0)
    if isinstance(min_events, bool) or not isinstance(min_events, int) or min_events < 0:
        found.add(path.k("minEvents"), f"minEvents {show(min_events)} is not a whole number >= 0",
                  "use 0 (no low-traffic guard, the Workbook default) or the events both windows must hold, e.g. 100",
                  "bad_min_events")
    runbook = read_string(found, ext["runbook"], path.k("runbook"), "runbooks/F1-entanglement-loss.md") \
        if "runbook" in ext else None
    steps = _budget_policy(found, ext["budgetPolicy"], path.k("budgetPolicy")) if "budgetPolicy" in ext else ()
    if len(found) != start or policy is None:
        return None
    return Extension(policy=policy, group_by=group_by, min_events=min_events, runbook=runbook, budget_policy=steps)


def _alert_policy(found: Problems, raw: Any, path: FieldPath, base_dir: Path | None) -> AlertPolicy | None:
    if isinstance(raw, dict):
        return _parse_policy(found, raw, path, inline=True)
    if isinstance(raw, str) and raw in BUILTIN_POLICIES:
        return _builtin_policy(raw)
    if isinstance(raw, str) and _looks_like_path(raw):
        file = Path(raw)
        if not file.is_absolute() and base_dir is not None:
            file = base_dir / file
        return _policy_file(found, file, path)
    found.items.append(_unknown_policy(path, raw))
    return None


def _group_by(found: Problems, gb: Any, path: FieldPath) -> tuple[str, ...]:
    if not isinstance(gb, list):
        found.add(path, f"groupBy must be a list, got {show(gb)}", "write groupBy: [hardware_type]", "bad_group_by")
        return ()
    group_by: list[str] = []
    for i, dim in enumerate(gb):
        if dim not in GROUP_BY_DIMENSIONS:
            found.add(path.i(i), f"{show(dim)} is not a dimension the store promotes",
                      f"use one of {', '.join(GROUP_BY_DIMENSIONS)}", "unknown_group_by")
        elif dim in group_by:
            found.add(path.i(i), f"{dim!r} is listed twice", "list each dimension once", "duplicate_group_by")
        else:
            group_by.append(dim)
    return tuple(group_by)


def _budget_policy(found: Problems, bp: Any, path: FieldPath) -> tuple[BudgetStep, ...]:
    if not isinstance(bp, list):
        found.add(path, f"budgetPolicy must be a list, got {show(bp)}",
                  "write budgetPolicy: [{name: freeze, consumed: 0.5, consequence: ...}]", "bad_budget_policy")
        return ()
    names: set[str] = set()
    steps = [_budget_step(found, raw, path.i(i), names) for i, raw in enumerate(bp)]
    return tuple(s for s in steps if s is not None)


def _budget_step(found: Problems, raw: Any, sp: FieldPath, names: set[str]) -> BudgetStep | None:
    step = read_mapping(found, raw, sp, _STEP_KEYS,
                        {"name": "add name: freeze-rollouts", "consumed": "add consumed: 0.5 (half the budget)",
                         "consequence": "add consequence: <what happens, e.g. freeze rollouts>"})
    if step is None or any(k not in step for k in _STEP_KEYS):
        return None
    name = read_string(found, step["name"], sp.k("name"), "freeze-rollouts")
    if name is not None and name in names:
        found.add(sp.k("name"), f"step name {name!r} is used twice", "give every step a distinct name",
                  "duplicate_step")
    names.add(name or "")
    consumed = read_number(found, step["consumed"], sp.k("consumed"), "0.5")
    if consumed is not None and consumed <= 0:
        found.add(sp.k("consumed"), f"consumed {decimal_text(consumed)} is not positive",
                  "give the fraction of the budget spent, e.g. 0.5 or 1", "bad_budget_policy")
    consequence = read_string(found, step["consequence"], sp.k("consequence"), "freeze rollouts")
    if name is None or consumed is None or consumed <= 0 or consequence is None:
        return None
    return BudgetStep(name=name, consumed_fraction=consumed, consequence=consequence)
