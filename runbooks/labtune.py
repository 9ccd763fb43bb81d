"""Threshold tuning: sweep one alert rule's parameter or ``for`` duration over a campaign and find the setting that
meets a budget (recall at or above a floor of fault strength, false pages per week on a calm fleet).

Each run of the campaign is simulated once (``<work dir>/sims``) and its alerting replayed on a copy of that store
for every setting, so a sweep of five settings costs one simulation and five replays per run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from qfleet.alerts.rules import DEFAULT_RULES_PATH, rules_from_dict
from qfleet.problems import Problems
from qfleet.runbooks.campaign import Campaign, CampaignError, RunSpec, expand
from qfleet.runbooks.lab import Progress, claim_work_dir, execute, write_json
from qfleet.runbooks.labstats import aggregate, percentile, severity, wilson
from qfleet.units import DurationError, parse_duration

__all__ = ["Budget", "Setting", "recommend", "sweep"]

_WEEK_DAYS = 7.0


@dataclass(frozen=True, slots=True)
class Budget:
    """What a setting must meet: recall of the rule at least ``min_recall`` over the fault runs at or above the
    ``floors`` (kind -> the weakest magnitude that must be caught; kinds not named are not counted), and at most
    ``max_pages_per_week`` false pages of the rule per simulated week of calm runs."""

    min_recall: float = 0.95
    max_pages_per_week: float = 1.0
    floors: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Setting:
    """One point of the sweep."""

    value: str
    runs: int
    detected: int
    recall: float | None
    recall_ci: tuple[float, float] | None
    pages: int
    pages_per_week: float | None
    ttd_p50_s: float | None
    meets: bool


def _rules_doc(campaign: Campaign) -> dict[str, Any]:
    path = DEFAULT_RULES_PATH if campaign.rules == "default" else Path(campaign.rules)
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _variant(doc: Mapping[str, Any], rule: str, param: str | None, value: str) -> dict[str, Any]:
    """The rules document with ``rule``'s ``param`` (or its ``for`` when ``param`` is None) set to ``value``.

    Raises:
        CampaignError: no such rule or parameter, or a value the rule refuses (its loader's message).
    """
    found = Problems(source="qfleet lab tune")
    out = copy.deepcopy(dict(doc))
    hits = [r for r in out.get("rules", []) if isinstance(r, dict) and r.get("name") == rule]
    if not hits:
        names = sorted(str(r.get("name")) for r in out.get("rules", []) if isinstance(r, dict))
        found.add("--rule", f"{rule!r} is not a rule of the campaign's rules file", f"one of {names}", "unknown_rule")
        found.raise_if_any(CampaignError)
    r = hits[0]
    if param is None:
        try:
            parse_duration(value)
        except DurationError as e:
            found.add("--values", f"{value!r}: {e}", "durations such as 1m,2m,5m", "bad_duration")
        r["for"] = value
    else:
        params = r.setdefault("params", {})
        try:
            params[param] = float(value)
        except ValueError:
            params[param] = value  # a duration (window: 5m): the rule's loader below checks it
    found.raise_if_any(CampaignError)
    try:
        rules_from_dict(out, source=f"{rule} with {param or 'for'}={value}")
    except ValueError as e:
        raise CampaignError(list(getattr(e, "problems", [])), source=f"{rule} {param or 'for'}={value}") from e
    return out


def _simulate_one(spec: Mapping[str, Any], path: str) -> str:
    from qfleet.runbooks.gameday import gameday_from_dict, simulate_gameday

    doc = {k: v for k, v in spec["gameday"].items() if k != "rules"}
    Path(path).unlink(missing_ok=True)
    tmp = path + ".part"
    Path(tmp).unlink(missing_ok=True)
    simulate_gameday(gameday_from_dict(doc, source=f"campaign run {spec['key']}"), db_url=f"sqlite:///{tmp}")
    Path(tmp).rename(path)  # only a finished simulation carries the final name
    return path


def _simulations(specs: Sequence[RunSpec], sims: Path, workers: int) -> dict[str, str]:
    sims.mkdir(parents=True, exist_ok=True)
    paths = {s.key: str(sims / f"{s.key}.db") for s in specs}
    todo = [s for s in specs if not Path(paths[s.key]).exists()]
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            _simulate_one(s.to_dict(), paths[s.key])
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for fut in [pool.submit(_simulate_one, s.to_dict(), paths[s.key]) for s in todo]:
                fut.result()
    return paths


def _score(report: Mapping[str, Any], rule: str, value: str, budget: Budget) -> Setting:
    floors = dict(budget.floors)
    row = next((r for r in report["rules"] if r["name"] == rule), None)
    cells = [c for c in report["cells"]
             if c["kind"] in floors and severity(c["kind"], c["magnitude"]) >= severity(c["kind"], floors[c["kind"]])]
    if not floors:
        kinds = {c["kind"] for c in (row or {}).get("cells", [])}
        cells = [c for c in report["cells"] if c["kind"] in kinds]
    wanted = {(c["kind"], c["magnitude"], c["profile"]) for c in cells}
    runs = sum(int(c["runs"]) for c in cells)
    mine = [c for c in (row or {}).get("cells", []) if (c["kind"], c["magnitude"], c["profile"]) in wanted]
    detected = sum(int(c["detected"]) for c in mine)
    ttds = sorted(t for c in mine for t in c["ttd_s"])
    pages = (row or {}).get("calm_false_pages", {"count": 0})
    days = float(report["calm_days"])
    per_week = pages["count"] / days * _WEEK_DAYS if days > 0 else None
    recall = detected / runs if runs else None
    meets = (recall is not None and recall >= budget.min_recall and per_week is not None
             and per_week <= budget.max_pages_per_week)
    return Setting(value, runs, detected, recall, wilson(detected, runs), int(pages["count"]), per_week,
                   percentile(ttds, 50), meets)


def sweep(campaign: Campaign, work_dir: Path, *, rule: str, param: str | None, values: Sequence[str],
          budget: Budget, workers: int = 1, progress: Progress | None = None) -> list[Setting]:
    """Run the campaign once per value (replaying shared simulations); each setting's figures for ``rule``.

    Raises:
        CampaignError: an unknown rule or parameter, or a value the rule refuses (before anything runs).
    """
    base = _rules_doc(campaign)
    variants = {v: _variant(base, rule, param, v) for v in values}
    specs = expand(campaign)
    claim_work_dir(work_dir, specs, campaign.name)
    sims = _simulations(specs, work_dir / "sims", workers)
    out = []
    for i, (value, doc) in enumerate(variants.items()):
        rules_file = work_dir / "tune" / f"{i:02d}.rules.yaml"
        rules_file.parent.mkdir(parents=True, exist_ok=True)
        rules_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        variant = replace(campaign, rules=str(rules_file))
        vspecs = expand(variant)
        vdir = work_dir / "tune" / f"{i:02d}"
        digest = claim_work_dir(vdir, vspecs, f"{campaign.name} {rule} {param or 'for'}={value}")
        records = execute(vspecs, vdir, workers=workers, progress=progress, simulated=sims)
        report = aggregate(records.values(), campaign={"name": variant.name, "hash": digest, "value": value})
        write_json(vdir / "report.json", report)
        out.append(_score(report, rule, value, budget))
    return out


def recommend(settings: Sequence[Setting]) -> Setting | None:
    """The setting that meets the budget with the highest recall (then the fewest pages, then the first listed);
    None when none does."""
    ok = [s for s in settings if s.meets]
    if not ok:
        return None
    return max(ok, key=lambda s: (s.recall or 0.0, -(s.pages_per_week or 0.0), -settings.index(s)))
