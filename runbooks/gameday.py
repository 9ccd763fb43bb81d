"""Game days: inject faults on a simulated fleet, run the SLO engine and the alerting loop on simulated time, and
score whether the right alerts reached the right receivers in time.

A scenario file (``version: 1``, ``kind: GameDay``) names the fleet, the duration, the seed, the traffic load, the
faults (F1-F8, as in a fault schedule) and the expectations: per fault, which alerts must fire, within what
detection time, and which receiver they must reach; how many false positives are allowed (0 by default); and the
budget each SLO may burn. :func:`run_gameday` simulates into a store, evaluates every ``step`` of simulated time
(SLOs and direct rules, then dispatch), delivers to real local HTTP receivers on 127.0.0.1, and returns a
:class:`Scorecard`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from sqlalchemy import Engine

from qfleet.alerts.config import config_from_dict
from qfleet.alerts.model import Alert
from qfleet.alerts.rules import load_rules
from qfleet.alerts.service import AlertService
from qfleet.collector import Store, open_engine, upgrade
from qfleet.problems import Problem, Problems, ProblemsError, read_yaml
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultSchedule, faults_from_dict
from qfleet.simulator.fleet import Fleet, builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.slo.spec import builtin_specs_path, load_slos
from qfleet.units import NS, DurationError, parse_duration

__all__ = ["Expectation", "FaultScore", "GameDay", "GameDayError", "Scorecard", "builtin_gameday_path",
           "load_gameday", "run_gameday"]

_KEYS = ("version", "kind", "name", "description", "fleet", "duration", "seed", "load", "step", "faults", "slos",
         "alerting", "expect")
_EXPECT_KEYS = ("faults", "false_positives", "budget")
#: After a fault ends, alerts starting this long later are still its doing (resolution and `for` delays).
_SETTLE_NS = 15 * 60 * NS


class GameDayError(ProblemsError):
    """A scenario file breaks rules; ``problems`` names each field, the bad value and the fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What must happen for one fault: one of ``alerts`` fires within ``within_ns`` of its start, reaching
    ``receiver`` when given."""

    fault: str
    alerts: tuple[str, ...]
    within_ns: int
    receiver: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GameDay:
    """A loaded scenario."""

    name: str
    fleet: str
    duration_ns: int
    seed: int
    load: float
    step_ns: int
    faults: dict[str, Any]
    slos: str
    alerting: dict[str, Any]
    expectations: tuple[Expectation, ...]
    false_positives: int = 0
    budget: dict[str, float] = field(default_factory=dict)   # slo -> max consumed fraction at the end
    source: str = "<gameday>"


@dataclass(frozen=True, slots=True)
class FaultScore:
    """How one injected fault was caught."""

    fault: str
    kind: str
    target: str
    detected: bool
    time_to_detect_s: float | None
    alerts: tuple[str, ...]
    receivers: tuple[str, ...]
    time_to_resolve_s: float | None
    passed: bool
    why: str = ""


@dataclass(frozen=True, slots=True)
class Scorecard:
    """The result of a game day; ``passed`` is what the exit status reports."""

    name: str
    run_id: str
    faults: tuple[FaultScore, ...]
    false_positives: tuple[str, ...]
    allowed_false_positives: int
    budget_consumed: dict[str, float | None]
    budget_failures: tuple[str, ...]
    notifications: int

    @property
    def passed(self) -> bool:
        return (all(f.passed for f in self.faults) and len(self.false_positives) <= self.allowed_false_positives
                and not self.budget_failures)

    def to_json(self) -> dict[str, Any]:
        """The scorecard as plain data (``qfleet gameday run --json``)."""
        return {"name": self.name, "run_id": self.run_id, "passed": self.passed, "notifications": self.notifications,
                "faults": [dataclasses.asdict(f) for f in self.faults],
                "false_positives": list(self.false_positives), "allowed_false_positives": self.allowed_false_positives,
                "budget_consumed": self.budget_consumed, "budget_failures": list(self.budget_failures)}

    def format_text(self) -> str:
        """A human-readable scorecard."""
        lines = [f"game day {self.name}: {'PASSED' if self.passed else 'FAILED'} ({self.notifications} notifications)"]
        for f in self.faults:
            ttd = f"{f.time_to_detect_s:.0f} s" if f.time_to_detect_s is not None else "-"
            ttr = f"{f.time_to_resolve_s:.0f} s" if f.time_to_resolve_s is not None else "-"
            lines.append(f"  {'ok ' if f.passed else 'NO '} {f.fault} ({f.kind} on {f.target}): detected "
                         f"{'yes' if f.detected else 'no'}, time to detect {ttd}, resolved after {ttr}; alerts "
                         f"{', '.join(f.alerts) or '-'}; receivers {', '.join(f.receivers) or '-'}"
                         + (f"  [{f.why}]" if f.why else ""))
        lines.append(f"  false positives: {len(self.false_positives)} (allowed {self.allowed_false_positives})"
                     + (f": {', '.join(self.false_positives)}" if self.false_positives else ""))
        for slo, c in sorted(self.budget_consumed.items()):
            lines.append(f"  budget burned {slo}: {'-' if c is None else f'{c:.1%}'}")
        lines.extend(f"  budget FAILED: {b}" for b in self.budget_failures)
        return "\n".join(lines)


def builtin_gameday_path(name: str) -> Path:
    """``runbooks/gamedays/<name>.yaml``."""
    return Path(__file__).resolve().parent / "gamedays" / f"{name}.yaml"


def load_gameday(path: str | Path) -> GameDay:
    """Load and validate a scenario file; every problem is reported at once.

    Raises:
        GameDayError: the file is unreadable, not YAML, or breaks rules.
    """
    path = Path(path)
    return gameday_from_dict(read_yaml(path, what="game day", error=GameDayError), source=str(path))


def gameday_from_dict(doc: Mapping[str, Any], *, source: str = "<gameday>") -> GameDay:
    """The scenario from its plain form (see the module docstring), its faults checked against its fleet.

    Raises:
        GameDayError: every problem of ``doc`` at once (field path, the bad value, the fix).
    """
    found = Problems(source=source)
    if not isinstance(doc, Mapping):
        found.add("", f"a game day is a mapping, not {type(doc).__name__}",
                  "start the file with version: 1 and kind: GameDay", "not_a_mapping")
        found.raise_if_any(GameDayError)
    found.unknown_keys(doc, "", _KEYS)
    if doc.get("version") != 1 or doc.get("kind") != "GameDay":
        found.add("version", f"version {doc.get('version')!r} and kind {doc.get('kind')!r} are not a game day",
                  "write version: 1 and kind: GameDay", "bad_header")
    duration = _duration(doc, "duration", None, found)
    step = _duration(doc, "step", "60s", found)
    faults = {"version": 1, "kind": "FaultSchedule", "faults": doc.get("faults") or []}
    fault_ids = _check_faults(doc.get("fleet", "mesh"), faults, source, found)
    expect = _mapping(doc, "expect", found)
    found.unknown_keys(expect, "expect", _EXPECT_KEYS)
    expectations = _expectations(expect.get("faults") or [], fault_ids, found)
    numbers = {"seed": _number(doc, "seed", 7, found, whole=True), "load": _number(doc, "load", 1.0, found),
               "false_positives": _number(expect, "false_positives", 0, found, "expect.", whole=True)}
    budget = _budget(expect.get("budget") or {}, found)
    alerting = _alerting(doc.get("alerting"), found)
    found.raise_if_any(GameDayError)
    return GameDay(name=str(doc.get("name", Path(source).stem)), fleet=str(doc.get("fleet", "mesh")),
                   duration_ns=duration, seed=int(numbers["seed"]), load=float(numbers["load"]), step_ns=step,
                   faults=faults, slos=str(doc.get("slos", "default")), alerting=alerting,
                   expectations=expectations, false_positives=int(numbers["false_positives"]), budget=budget,
                   source=source)


# -- the checks of gameday_from_dict ------------------------------------------------------------------------------


def _duration(doc: Mapping[str, Any], key: str, default: str | None, found: Problems, path: str = "") -> int:
    """A duration above 0 at ``doc[key]`` (``default`` when missing; required when that is None)."""
    raw = doc.get(key, default)
    if raw is None:
        found.add(f"{path}{key}", "missing", f"give a duration, e.g. {key}: 90m", "required")
        return 0
    try:
        ns = parse_duration(raw)
    except DurationError as e:
        message, _, fix = str(e).rpartition(": ")  # qfleet.units words it "<what is wrong>: <the fix>"
        found.add(f"{path}{key}", message or str(e), fix if message else "e.g. 90s, 10m, 1h30m", "bad_duration")
        return 0
    if ns <= 0:
        found.add(f"{path}{key}", f"{raw!r} is not above 0", f"give a positive duration, e.g. {key}: 10m",
                  "bad_duration")
    return ns


def _number(doc: Mapping[str, Any], key: str, default: float, found: Problems, path: str = "", *,
            whole: bool = False) -> float:
    """A number >= 0 at ``doc[key]`` (a whole one when ``whole``), or ``default`` when missing."""
    raw = doc.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0 or (whole and not isinstance(raw, int)):
        found.add(f"{path}{key}", f"{raw!r} is not {'a whole number' if whole else 'a number'} >= 0",
                  f"e.g. {key}: {default}", "bad_number")
        return default
    return raw


def _mapping(doc: Mapping[str, Any], key: str, found: Problems) -> Mapping[str, Any]:
    raw = doc.get(key) or {}
    if not isinstance(raw, Mapping):
        found.add(key, f"{raw!r} is not a mapping", f"write {key}: {{faults: [...], false_positives: 0}}",
                  "not_a_mapping")
        return {}
    return raw


def _check_faults(fleet_name: Any, faults: dict[str, Any], source: str, found: Problems) -> set[str]:
    """Validate the faults against the scenario's fleet (targets must exist); the ids of the faults."""
    fleet = None
    try:
        fleet = _fleet(str(fleet_name))
    except ValueError as e:  # FleetError: its problems become the scenario's
        _absorb(e, "fleet", found)
    try:
        schedule = faults_from_dict(faults, fleet=fleet, source=source)
    except ValueError as e:  # FaultError
        _absorb(e, "faults", found)
        return {str(f["id"]) for f in faults["faults"] if isinstance(f, Mapping) and "id" in f}
    return {f.id for f in schedule.faults}


def _absorb(e: ValueError, path: str, found: Problems) -> None:
    problems = getattr(e, "problems", None)
    if problems and all(isinstance(p, Problem) for p in problems):
        found.items.extend(problems)
    else:
        found.add(path, str(e))


def _expectations(raw: Any, fault_ids: set[str], found: Problems) -> tuple[Expectation, ...]:
    if not isinstance(raw, list):
        found.add("expect.faults", f"{raw!r} is not a list", "write expect.faults: [{fault: <id>, alerts: [...]}]",
                  "not_a_list")
        return ()
    out = []
    for i, e in enumerate(raw):
        where = f"expect.faults[{i}]"
        if not isinstance(e, Mapping) or e.get("fault") not in fault_ids:
            found.add(f"{where}.fault", f"{e.get('fault') if isinstance(e, Mapping) else e!r} is not a fault "
                      "of the scenario", f"name one of the fault ids {sorted(fault_ids)}", "unknown_fault")
            continue
        found.unknown_keys(e, where, ("fault", "alerts", "within", "receiver"))
        alerts = e.get("alerts") or []
        if not isinstance(alerts, list) or not alerts:
            found.add(f"{where}.alerts", f"{alerts!r} names no alert", "list the alert names (or slo:<name>) that "
                      "must fire", "no_alerts")
        within = _duration(e, "within", "10m", found, f"{where}.")
        out.append(Expectation(fault=str(e["fault"]), alerts=tuple(map(str, alerts)) if isinstance(alerts, list)
                               else (), within_ns=within, receiver=e.get("receiver")))
    return tuple(out)


def _budget(raw: Any, found: Problems) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        found.add("expect.budget", f"{raw!r} is not a mapping", "write expect.budget: {<slo>: 0.5}", "not_a_mapping")
        return {}
    return {str(k): float(_number(raw, k, 1.0, found, "expect.budget.")) for k in raw}


def _alerting(raw: Any, found: Problems) -> dict[str, Any]:
    """The alerting config: inline, a file name, or the sample ``alerts/alerting.yaml``."""
    if not raw:
        return _default_alerting()
    if isinstance(raw, str):
        try:
            doc = yaml.safe_load(Path(raw).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            found.add("alerting", f"cannot read {raw!r} ({e})".replace("\n", " "),
                      "give the path of an alerting.yaml, or the config inline", "unreadable")
            return {}
        raw = doc
    if not isinstance(raw, Mapping):
        found.add("alerting", f"{raw!r} is not an alerting config", "give an Alertmanager-style mapping with route "
                  "and receivers", "not_a_mapping")
        return {}
    return dict(raw)


def _default_alerting() -> dict[str, Any]:
    """The sample ``alerts/alerting.yaml``: pages, tickets and security alerts to three receivers (the runner
    points their URLs at its local sinks)."""
    doc: dict[str, Any] = yaml.safe_load((files("qfleet.alerts") / "alerting.yaml").read_text(encoding="utf-8"))
    return doc


def _fleet(name: str) -> Fleet:
    return load_fleet(Path(name) if Path(name).suffix in (".yaml", ".yml") else builtin_fleet_path(name))


class _Sinks:
    """One local HTTP server; every receiver of the scenario posts to its own path on it (a context manager)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append((self.path.strip("/"), json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _Sinks:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()


def _alert_id(a: Alert) -> str:
    lab = dict(a.labels)
    return f"slo:{lab['slo']}" if lab.get("alertname") == "QfleetSLOBurnRate" and "slo" in lab else lab.get(
        "alertname", "?")


@dataclass(frozen=True, slots=True)
class _Run:
    """What a game day's replay produced."""

    start_ns: int
    end_ns: int
    alerts: list[Alert]                          # every alert that fired, once per firing
    ended: dict[str, Alert]                      # fingerprint -> the alert as resolved
    received: list[tuple[str, dict[str, Any]]]   # (receiver, webhook body)
    budgets: dict[str, float | None]             # "slo[segment]" -> budget consumed at the end


def run_gameday(gd: GameDay, *, db_url: str, progress: Callable[[str, float], None] | None = None) -> Scorecard:
    """Simulate ``gd`` into ``db_url`` (a fresh database is best) and score it.

    ``progress(phase, fraction)`` is told how far the simulation and the alerting replay are.
    """
    report = progress or (lambda _phase, _frac: None)
    fleet = _fleet(gd.fleet)
    faults: FaultSchedule = faults_from_dict(gd.faults, fleet=fleet, source=gd.source)
    engine = open_engine(db_url)
    try:
        upgrade(engine)
        sim = _simulate(engine, gd, fleet, faults, report)
        run = _replay(engine, gd, sim.config.start_ns, report)
    finally:
        engine.dispose()
    by_id = {f.id: f for f in faults.faults}
    scores = tuple(_score(exp, by_id[exp.fault], run) for exp in gd.expectations)
    budget_fail = tuple(f"{key} consumed {val:.3f} > {limit}" for slo, limit in gd.budget.items()
                        for key, val in run.budgets.items() if (key == slo or key.startswith(slo + "["))
                        and val is not None and val > limit)
    return Scorecard(gd.name, sim.run_id, scores, _false_positives(gd, faults.faults, run), gd.false_positives,
                     run.budgets, budget_fail, len(run.received))


# -- the steps of run_gameday -------------------------------------------------------------------------------------


def _simulate(engine: Engine, gd: GameDay, fleet: Fleet, faults: FaultSchedule,
              report: Callable[[str, float], None]) -> Simulation:
    sim = Simulation(fleet, faults, RunConfig(duration_ns=gd.duration_ns, seed=gd.seed, load=gd.load))
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id,
                                     "qfleet.fleet": fleet.name})
    for step in sim.steps():
        sink.write(step)
        report("simulating the fleet", (step.end_ns - sim.config.start_ns) / gd.duration_ns)
    sink.close()
    return sim


def _replay(engine: Engine, gd: GameDay, t0: int, report: Callable[[str, float], None]) -> _Run:
    """Evaluate and dispatch every ``step`` of simulated time, delivering to local receivers."""
    t_end = t0 + gd.duration_ns
    with _Sinks() as sinks:
        clock = [t0]
        service = _service(engine, gd, sinks.base, lambda: clock[0])
        seen: dict[str, Alert] = {}
        for t in range(t0 + gd.step_ns, t_end + 1, gd.step_ns):
            clock[0] = t
            service.evaluate(t)
            service.dispatch(t)
            for a in service.state.active():
                seen.setdefault(a.fingerprint + str(a.starts_at), a)
            report("evaluating SLOs and alerts", (t - t0) / gd.duration_ns)
        clock[0] = t_end + _SETTLE_NS
        service.dispatch(clock[0])  # let the last groups flush
        ended = {a.fingerprint: a for a in service.state.resolved_since(t0)}
        received = list(sinks.got)
    return _Run(t0, t_end, list(seen.values()), ended, received, _budgets(engine, service, t_end))


def _service(engine: Engine, gd: GameDay, base_url: str, clock: Callable[[], int]) -> AlertService:
    doc = json.loads(json.dumps(gd.alerting))
    for r in doc.get("receivers", []):
        for w in r.get("webhook_configs", []):
            w["url"] = f"{base_url}/{r['name']}"
    config, _warnings = config_from_dict(doc, source=gd.source)
    slos = load_slos(builtin_specs_path() if gd.slos == "default" else Path(gd.slos))
    return AlertService(engine, config, slos=slos, rules=load_rules(), secret=b"gameday", clock=clock)


def _budgets(engine: Engine, service: AlertService, at_ns: int) -> dict[str, float | None]:
    """Budget consumed per SLO segment (``slo[k=v]``, or ``slo`` unsegmented) at ``at_ns``."""
    from qfleet.slo.evaluate import evaluate_store
    from qfleet.slo.sli import SliSource

    out: dict[str, float | None] = {}
    for r in evaluate_store(service.slos, SliSource(engine), at_ns):
        c = r.budget.consumed_fraction
        seg = ",".join(v for _k, v in r.segment)
        out[f"{r.slo}[{seg}]" if r.segment else r.slo] = None if c is None else float(c)
    return out


def _score(exp: Expectation, f: Fault, run: _Run) -> FaultScore:
    """How ``exp`` fared: detected in time, by which alerts, reaching which receivers, resolved when."""
    start, end = run.start_ns + f.start_ns, run.start_ns + f.end_ns()
    hits = sorted((a for a in run.alerts if _alert_id(a) in exp.alerts and start <= a.starts_at <= start + exp.within_ns),
                  key=lambda a: a.starts_at)
    names = {a.fingerprint for a in hits}
    rcv = sorted({path for path, body in run.received for a in body.get("alerts", []) if a.get("fingerprint") in names})
    fin = [e.ends_at for a in hits if (e := run.ended.get(a.fingerprint)) is not None and e.ends_at]
    why = "" if hits else f"none of {list(exp.alerts)} fired within {exp.within_ns / NS:.0f} s"
    if hits and exp.receiver and exp.receiver not in rcv:
        why = f"the alert did not reach {exp.receiver} (reached {rcv or 'nothing'})"
    return FaultScore(fault=f.id, kind=f.kind.value, target=f.target, detected=bool(hits),
                      time_to_detect_s=(hits[0].starts_at - start) / NS if hits else None,
                      alerts=tuple(sorted({_alert_id(a) for a in hits})), receivers=tuple(rcv),
                      time_to_resolve_s=(max(fin) - end) / NS if fin else None, passed=not why, why=why)


def _false_positives(gd: GameDay, faults: tuple[Fault, ...], run: _Run) -> tuple[str, ...]:
    """Alerts no fault explains: none started within an expectation's ``within`` of its fault's window, or
    within :data:`_SETTLE_NS` after any fault's end."""
    by_id = {f.id: f for f in faults}
    windows = [(by_id[e.fault], e.within_ns) for e in gd.expectations] + [(f, _SETTLE_NS) for f in faults]
    attributed = {a.fingerprint for f, slack in windows for a in run.alerts
                  if run.start_ns + f.start_ns <= a.starts_at <= run.start_ns + f.end_ns() + slack}
    return tuple(sorted({f"{_alert_id(a)}@{(a.starts_at - run.start_ns) / NS:.0f}s" for a in run.alerts
                         if a.fingerprint not in attributed}))
