"""Alert-quality campaigns: a grid of fault injections and calm runs, as a file, expanded into game days.

A campaign file (``version: 1``, ``kind: Campaign``; ``runbooks/campaigns/`` holds the built-ins)::

    version: 1
    kind: Campaign
    name: readout-drift
    fleet: line              # a built-in fleet or a fleet file
    seed: 1                  # every run's seed is derived from it and the run's cell
    duration: 60m            # each fault run; the fault starts at fault.start and lasts fault.duration
    fault: {start: 20m, duration: 20m}
    within: 10m              # an alert must locate the fault this soon after its start to detect it
    grace: 15m               # alerts on the fault's place this long after its end are still its doing
    seeds: 5                 # runs per cell (kind x magnitude x profile)
    calm: {runs: 20, duration: 6h}
    rules: default           # the alert rules file under test (default: the built-ins)
    slos: default            # the SLO specs under test
    alerting: default        # the routing config (default: alerts/alerting.yaml)
    faults:
      - kind: F4
        targets: [qpu-b, qpu-c]          # run r of a cell injects on targets[r % len(targets)]
        magnitudes: [0.01, 0.03, 0.1, 0.2]  # in the kind's own unit (qfleet sim faults --help, docs/faults.md)
        profiles: [step, ramp]           # onset profiles (default: the kind's own)

:func:`expand` turns it into :class:`RunSpec` values, each a complete game-day document plus its cell; the seeds
come from a hash of the campaign seed and the run's key, so adding a cell never changes another cell's runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qfleet.problems import Problems, ProblemsError, check_header, read_yaml
from qfleet.simulator.faults import DEFAULT_MAGNITUDE, DEFAULT_PROFILE, PROFILES, FaultKind, magnitude_unit
from qfleet.units import DurationError, format_duration, parse_duration

__all__ = ["Campaign", "CampaignError", "FaultGrid", "RunSpec", "builtin_campaign_path", "campaign_from_dict",
           "campaign_hash", "expand", "load_campaign"]

_KEYS = ("version", "kind", "name", "description", "fleet", "seed", "duration", "step", "load", "fault", "within",
         "grace", "seeds", "calm", "rules", "slos", "alerting", "faults")
_GRID_KEYS = ("kind", "targets", "magnitudes", "profiles", "principal")
_MAX_RUNS = 100_000  # a typo in a grid must not plan a year of runs


class CampaignError(ProblemsError):
    """A campaign file breaks rules; ``problems`` names each field, the bad value and the fix."""


@dataclass(frozen=True, slots=True)
class FaultGrid:
    """One fault kind's part of the grid."""

    kind: str
    targets: tuple[str, ...]
    magnitudes: tuple[float, ...]
    profiles: tuple[str, ...]
    principal: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    """A loaded campaign (module docstring: the file)."""

    name: str
    fleet: str
    seed: int
    duration_ns: int
    step_ns: int
    load: float
    fault_start_ns: int
    fault_duration_ns: int
    within_ns: int
    grace_ns: int
    seeds: int
    calm_runs: int
    calm_duration_ns: int
    rules: str
    slos: str
    alerting: str
    faults: tuple[FaultGrid, ...]
    source: str = "<campaign>"


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One game day of a campaign: ``key`` names it (and its record), ``cell`` is None for a calm run.

    ``gameday`` is a complete GameDay document; ``rules_text`` the alert rules file's text when the campaign
    names one (a worker writes it beside its store, so a Dask worker on another machine needs no shared files).
    """

    key: str
    cell: dict[str, Any] | None
    seed: int
    gameday: dict[str, Any]
    rules_text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "cell": self.cell, "seed": self.seed, "gameday": self.gameday,
                "rules_text": self.rules_text}


def builtin_campaign_path(name: str) -> Path:
    """``runbooks/campaigns/<name>.yaml``."""
    return Path(__file__).resolve().parent / "campaigns" / f"{name}.yaml"


def load_campaign(path: str | Path) -> Campaign:
    """Load and validate a campaign file (every problem at once, each with its fix).

    Raises:
        CampaignError: unreadable, not YAML, or a rule broken.
    """
    path = Path(path)
    return campaign_from_dict(read_yaml(path, what="campaign", error=CampaignError), source=str(path))


def campaign_from_dict(doc: Any, *, source: str = "<campaign>") -> Campaign:
    """The campaign from its plain form; the grid's targets, magnitudes and profiles are checked against the
    fleet and each fault kind's rules by building every fault once.

    Raises:
        CampaignError: every problem of ``doc`` at once.
    """
    found = Problems(source=source)
    check_header(doc, found, kind="Campaign", what="campaign", keys=_KEYS, error=CampaignError)
    fault = doc.get("fault") or {}
    calm = doc.get("calm") or {}
    for key, value in (("fault", fault), ("calm", calm)):
        if not isinstance(value, Mapping):
            found.add(key, f"{value!r} is not a mapping", f"write {key}: {{...}} (see the file format)",
                      "not_a_mapping")
    fault = fault if isinstance(fault, Mapping) else {}
    calm = calm if isinstance(calm, Mapping) else {}
    found.unknown_keys(fault, "fault", ("start", "duration"))
    found.unknown_keys(calm, "calm", ("runs", "duration"))
    durations = {key: _duration(where.get(key, default), path, found)
                 for key, where, default, path in (("duration", doc, "60m", "duration"), ("step", doc, "60s", "step"),
                                                   ("within", doc, "10m", "within"), ("grace", doc, "15m", "grace"))}
    f_start = _duration(fault.get("start", "20m"), "fault.start", found)
    f_dur = _duration(fault.get("duration", "20m"), "fault.duration", found)
    calm_dur = _duration(calm.get("duration", "6h"), "calm.duration", found)
    if f_start and f_dur and durations["duration"] and f_start + f_dur > durations["duration"]:
        found.add("fault", f"the fault ({format_duration(f_start)} + {format_duration(f_dur)}) ends after the run "
                  f"({format_duration(durations['duration'])})", "shorten fault.duration or lengthen duration",
                  "fault_outside_run")
    seed = _whole(doc, "seed", 1, found, minimum=0)
    seeds = _whole(doc, "seeds", 5, found, minimum=1)
    calm_runs = _whole(calm, "runs", 0, found, minimum=0, path="calm.runs")
    load = doc.get("load", 1.0)
    if isinstance(load, bool) or not isinstance(load, int | float) or load <= 0:
        found.add("load", f"{load!r} is not a number > 0", "e.g. load: 1 (the tenants' own rates)", "bad_number")
    files = {}
    for key in ("rules", "slos", "alerting"):
        value = doc.get(key, "default")
        if not isinstance(value, str) or (value != "default" and not Path(value).exists()):
            found.add(key, f"{value!r} is not a file", f"write {key}: default, or the path of an existing file",
                      "not_a_file")
        files[key] = str(value)
    grids = _grids(doc.get("faults"), found)
    fleet = str(doc.get("fleet", "line"))
    campaign = Campaign(
        name=str(doc.get("name", Path(source).stem)), fleet=fleet, seed=seed, duration_ns=durations["duration"],
        step_ns=durations["step"], load=float(load) if isinstance(load, int | float) else 1.0,
        fault_start_ns=f_start, fault_duration_ns=f_dur, within_ns=durations["within"],
        grace_ns=durations["grace"], seeds=seeds, calm_runs=calm_runs, calm_duration_ns=calm_dur,
        rules=files["rules"], slos=files["slos"], alerting=files["alerting"], faults=grids, source=source)
    planned = seeds * sum(len(g.magnitudes) * len(g.profiles) for g in grids if g.targets) + calm_runs
    if planned > _MAX_RUNS:
        found.add("seeds", f"the campaign plans {planned:,} runs, more than {_MAX_RUNS:,}",
                  "use fewer magnitudes, profiles or seeds", "too_many_runs")
    if planned == 0:
        found.add("faults", "the campaign plans no run", "list faults, or give calm.runs above 0", "no_runs")
    found.raise_if_any(CampaignError)
    _check_against_fleet(campaign, found)
    found.raise_if_any(CampaignError)
    return campaign


def _duration(raw: Any, path: str, found: Problems) -> int:
    try:
        ns = parse_duration(raw)
    except DurationError as e:
        found.add(path, str(e), "a duration, e.g. 20m, 1h30m", "bad_duration")
        return 0
    if ns <= 0:
        found.add(path, f"{raw!r} is not above 0", "a positive duration, e.g. 20m", "bad_duration")
    return ns


def _whole(doc: Mapping[str, Any], key: str, default: int, found: Problems, *, minimum: int,
           path: str | None = None) -> int:
    raw = doc.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        found.add(path or key, f"{raw!r} is not a whole number >= {minimum}", f"e.g. {key}: {default}", "bad_number")
        return default
    return raw


def _grids(raw: Any, found: Problems) -> tuple[FaultGrid, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        found.add("faults", f"{raw!r} is not a list", "write faults: [{kind: F4, targets: [...], magnitudes: [...]}]",
                  "not_a_list")
        return ()
    out = []
    for i, g in enumerate(raw):
        at = f"faults[{i}]"
        if not isinstance(g, Mapping):
            found.add(at, f"{g!r} is not a mapping", "write {kind: F4, targets: [...], magnitudes: [...]}",
                      "not_a_mapping")
            continue
        found.unknown_keys(g, at, _GRID_KEYS)
        try:
            kind = FaultKind.parse(str(g.get("kind"))).value
        except ValueError:
            found.add(f"{at}.kind", f"{g.get('kind')!r} is not a fault kind", "one of F1 ... F8", "unknown_kind")
            continue
        targets = g.get("targets")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            found.add(f"{at}.targets", f"{targets!r} is not a list of node or link ids",
                      "e.g. targets: [qpu-b] (links as a~b)", "no_targets")
            targets = []
        default_mag = [DEFAULT_MAGNITUDE[kind]] if kind in DEFAULT_MAGNITUDE else None
        mags = g.get("magnitudes", default_mag)
        if (not isinstance(mags, list) or not mags
                or not all(isinstance(m, int | float) and not isinstance(m, bool) for m in mags)):
            found.add(f"{at}.magnitudes", f"{mags!r} is not a list of numbers",
                      f"list magnitudes in {magnitude_unit(kind)}", "no_magnitudes")
            mags = []
        elif len(set(mags)) != len(mags):
            found.add(f"{at}.magnitudes", f"{mags!r} repeats a magnitude", "list each magnitude once", "duplicate")
        profiles = g.get("profiles", [DEFAULT_PROFILE.get(kind, "step")])
        if not isinstance(profiles, list) or not profiles or any(p not in PROFILES for p in profiles):
            found.add(f"{at}.profiles", f"{profiles!r} is not a list of onset profiles",
                      f"choose from {', '.join(PROFILES)}", "bad_profile")
            profiles = []
        principal = g.get("principal")
        out.append(FaultGrid(kind, tuple(targets), tuple(float(m) for m in mags), tuple(profiles),
                             None if principal is None else str(principal)))
    kinds = [g.kind for g in out]
    for k in sorted({k for k in kinds if kinds.count(k) > 1}):
        found.add("faults", f"{k} appears more than once", f"merge the {k} entries into one", "duplicate")
    return tuple(out)


def _check_against_fleet(c: Campaign, found: Problems) -> None:
    """Build every (target, magnitude, profile) fault once, through the game-day loader: the fleet exists, each
    target has the right type for its kind, each magnitude and profile is allowed for it."""
    from qfleet.runbooks.gameday import GameDayError, gameday_from_dict

    for i, g in enumerate(c.faults):
        entries = [_fault_entry(c, g, t, m, p) for t in g.targets for m in g.magnitudes for p in g.profiles]
        for j, entry in enumerate(entries):
            doc = _gameday_doc(c, f"check-{i}-{j}", 0, [entry])
            try:
                gameday_from_dict(doc, source=c.source)
            except GameDayError as e:
                for p in e.problems:
                    found.add(f"faults[{i}] ({entry['target']}, magnitude {entry['magnitude']:g}, "
                              f"{entry['profile']}): {p.path}", p.message, p.fix, p.code)
                return  # one bad combination names the problem; the rest would repeat it


def _fault_entry(c: Campaign, g: FaultGrid, target: str, magnitude: float, profile: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "injected", "type": g.kind, "target": target, "start_ns": c.fault_start_ns,
                             "duration_ns": c.fault_duration_ns, "magnitude": magnitude, "profile": profile}
    if g.principal is not None:
        entry["principal"] = g.principal
    return entry


def _gameday_doc(c: Campaign, name: str, seed: int, faults: list[dict[str, Any]]) -> dict[str, Any]:
    calm = not faults
    doc: dict[str, Any] = {
        "version": 1, "kind": "GameDay", "name": name, "fleet": c.fleet, "seed": seed, "load": c.load,
        "duration": format_duration(c.calm_duration_ns if calm else c.duration_ns),
        "step": format_duration(c.step_ns), "faults": faults, "slos": c.slos,
        "expect": {"faults": [{"fault": f["id"], "within": format_duration(c.within_ns), "localized": True}
                              for f in faults],
                   "grace": format_duration(c.grace_ns), "false_positives": 0}}
    if c.alerting != "default":
        doc["alerting"] = c.alerting
    if c.rules != "default":
        doc["rules"] = c.rules
    return doc


def _seed(c: Campaign, key: str) -> int:
    """A run's seed: a hash of the campaign seed and the run's key (stable across versions and platforms)."""
    digest = hashlib.sha256(f"qfleet-campaign:{c.seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


def expand(c: Campaign) -> list[RunSpec]:
    """Every run of the campaign, fault runs first (by kind, magnitude, profile, seed), then the calm runs."""
    rules_text = None if c.rules == "default" else Path(c.rules).read_text(encoding="utf-8")
    out = []
    width = len(str(max(c.seeds, c.calm_runs, 1) - 1))
    for g in c.faults:
        for m in g.magnitudes:
            for p in g.profiles:
                for r in range(c.seeds):
                    key = f"{g.kind}-{m:g}-{p}-s{r:0{width}d}"
                    seed = _seed(c, key)
                    target = g.targets[r % len(g.targets)]
                    doc = _gameday_doc(c, key, seed, [_fault_entry(c, g, target, m, p)])
                    cell = {"kind": g.kind, "magnitude": m, "profile": p, "unit": magnitude_unit(g.kind)}
                    out.append(RunSpec(key, cell, seed, doc, rules_text))
    for r in range(c.calm_runs):
        key = f"calm-s{r:0{width}d}"
        seed = _seed(c, key)
        out.append(RunSpec(key, None, seed, _gameday_doc(c, key, seed, []), rules_text))
    return out


def campaign_hash(specs: list[RunSpec]) -> str:
    """A digest of everything the runs depend on (their game days and the rules' text): a work directory holding
    records of another hash belongs to another campaign."""
    blob = json.dumps([s.to_dict() for s in specs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
