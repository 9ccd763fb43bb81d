"""Game days: inject faults on a simulated fleet, run the SLO engine and the alerting loop on simulated time, and
score whether alerts pointing at the faulty part of the fleet reached the right receivers in time.

A scenario file (``version: 1``, ``kind: GameDay``) names the fleet, the duration, the seed, the traffic load, the
faults (F1-F8, as in a fault schedule) and the expectations: per fault, within what detection time an alert
locating it must start (optionally which alerts, whether it must name the node or link, and which receiver it must
reach); the grace after each fault during which alerts on its target are still its doing (``expect.grace``,
default 15m); how many false positives are allowed (0 by default); and the share of its period budget each SLO may
burn. :func:`run_gameday` simulates into a store, evaluates every ``step`` of simulated time (SLOs and direct
rules, then dispatch), delivers to real local HTTP receivers on 127.0.0.1, and hands what happened to the pure
scorer :func:`qfleet.runbooks.scoring.score` (its docstring states the rules).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from sqlalchemy import Engine

from qfleet.alerts.ahead import Ahead
from qfleet.alerts.config import config_from_dict
from qfleet.alerts.model import Alert
from qfleet.alerts.payloads import DEFAULT_EXTERNAL_URL
from qfleet.alerts.rule_queries import evaluate_rules
from qfleet.alerts.rules import AlertRule, load_rules
from qfleet.alerts.service import AlertService, evaluate_slos
from qfleet.collector import Store, open_engine, sqlite_file, upgrade
from qfleet.problems import Problem, Problems, ProblemsError, check_header, read_yaml
from qfleet.runbooks.scoring import (
    DEFAULT_GRACE_NS,
    BudgetBurn,
    Delivery,
    Expectation,
    FaultScore,
    FaultWindow,
    IncidentRecord,
    Scorecard,
    period_share,
    score,
)
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import faults_from_dict
from qfleet.simulator.faults import Fault, FaultSchedule
from qfleet.simulator.fleet import Fleet, builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import ProcessStoreSink, StoreSink
from qfleet.slo.model import SLO
from qfleet.slo.spec import builtin_specs_path, load_slos
from qfleet.units import NS, DurationError, parse_duration, parse_rfc3339

# The scorer's values are re-exported: scenarios and scorecards are used together.
__all__ = ["Expectation", "FaultScore", "GameDay", "GameDayError", "Scorecard", "builtin_gameday_path",
           "fault_window", "gameday_from_dict", "load_gameday", "run_gameday", "simulate_gameday"]

_KEYS = ("version", "kind", "name", "description", "fleet", "duration", "seed", "load", "step", "faults", "slos",
         "rules", "alerting", "expect")
_EXPECT_KEYS = ("faults", "false_positives", "budget", "grace")
_EXPECTATION_KEYS = ("fault", "alerts", "within", "receiver", "localized")
#: After the last step, dispatch once more this much later so the last groups flush.
_SETTLE_NS = 15 * 60 * NS


class GameDayError(ProblemsError):
    """A scenario file breaks rules; ``problems`` names each field, the bad value and the fix."""


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
    grace_ns: int = DEFAULT_GRACE_NS
    budget: dict[str, Fraction] = field(default_factory=dict)  # slo -> largest share of its period budget
    source: str = "<gameday>"
    rules: str = "default"  # the alert rules file under test, or the built-ins


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
    check_header(doc, found, kind="GameDay", what="game day", keys=_KEYS, error=GameDayError)
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
    grace = _duration(expect, "grace", "15m", found, "expect.", zero_ok=True)
    alerting = _alerting(doc.get("alerting"), found)
    rules = str(doc.get("rules", "default"))
    if rules != "default":
        try:
            load_rules(Path(rules))
        except ValueError as e:  # AlertRulesError: its problems become the scenario's
            _absorb(e, "rules", found)
    found.raise_if_any(GameDayError)
    return GameDay(name=str(doc.get("name", Path(source).stem)), fleet=str(doc.get("fleet", "mesh")),
                   duration_ns=duration, seed=int(numbers["seed"]), load=float(numbers["load"]), step_ns=step,
                   faults=faults, slos=str(doc.get("slos", "default")), alerting=alerting,
                   expectations=expectations, false_positives=int(numbers["false_positives"]), budget=budget, grace_ns=grace,
                   source=source, rules=rules)


# -- the checks of gameday_from_dict ------------------------------------------------------------------------------


def _duration(doc: Mapping[str, Any], key: str, default: str | None, found: Problems, path: str = "", *,
              zero_ok: bool = False) -> int:
    """A duration above 0 (or 0 when ``zero_ok``) at ``doc[key]`` (``default`` when missing; required when that
    is None)."""
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
    if ns < 0 or (ns == 0 and not zero_ok):
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
        found.unknown_keys(e, where, _EXPECTATION_KEYS)
        alerts = e.get("alerts", [])
        if not isinstance(alerts, list) or ("alerts" in e and not alerts):
            found.add(f"{where}.alerts", f"{alerts!r} names no alert", "list the alert names (or slo:<name>) that "
                      "may detect it, or leave alerts out to accept any alert that locates the fault", "no_alerts")
        localized = e.get("localized", True)
        if not isinstance(localized, bool):
            found.add(f"{where}.localized", f"{localized!r} is not true or false",
                      "write localized: true (the alert must name the node or link) or false", "not_a_bool")
        within = _duration(e, "within", "10m", found, f"{where}.")
        out.append(Expectation(fault=str(e["fault"]), alerts=tuple(map(str, alerts)) if isinstance(alerts, list)
                               else (), within_ns=within, receiver=e.get("receiver"),
                               localized=localized is not False))
    return tuple(out)


def _budget(raw: Any, found: Problems) -> dict[str, Fraction]:
    """SLO -> the largest share of its period budget the game day may consume, exact from its decimal text."""
    if not isinstance(raw, Mapping):
        found.add("expect.budget", f"{raw!r} is not a mapping", "write expect.budget: {<slo>: 0.05}",
                  "not_a_mapping")
        return {}
    return {str(k): Fraction(str(_number(raw, k, 1.0, found, "expect.budget."))) for k in raw}


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


@dataclass(frozen=True, slots=True)
class _Run:
    """What a game day's replay produced."""

    start_ns: int
    end_ns: int
    alerts: list[Alert]                 # one per firing, ends_at set once it resolved
    deliveries: list[Delivery]          # every webhook notification the receivers got
    incidents: list[IncidentRecord]     # incidents opened during the run
    budgets: list[BudgetBurn]           # per SLO segment at the end


def run_gameday(gd: GameDay, *, db_url: str, progress: Callable[[str, float], None] | None = None,
                external_url: str = DEFAULT_EXTERNAL_URL, helper: Callable[[], Executor] | None = None,
                simulated: bool = False, writer_process: bool = True) -> Scorecard:
    """Simulate ``gd`` into ``db_url`` (a fresh database is best) and score it.

    ``simulated``: the database already holds exactly this simulation and nothing else (a copy of a store this
    function simulated for the same fleet, faults, duration, seed and load), so only the alerting is replayed:
    how the alert-quality lab tries several rule settings on one simulated run. ``writer_process``: store the
    simulation from a second process (where the database allows it), overlapping the engine; the lab runs one
    game day per core and turns it off.

    ``progress(phase, fraction)`` is told how far the simulation and the alerting replay are; ``external_url``
    is where the dashboards will answer (the base of the notifications' incident links). ``helper``, called
    as the replay starts, gives a process pool that evaluates the SLOs and alert rules beside it (the replay
    leaves the second core idle otherwise); the scorecard is the same with or without it.
    """
    report = progress or (lambda _phase, _frac: None)
    fleet = _fleet(gd.fleet)
    faults: FaultSchedule = faults_from_dict(gd.faults, fleet=fleet, source=gd.source)
    engine = open_engine(db_url)
    try:
        upgrade(engine)
        sim = (Simulation(fleet, faults, _config(gd)) if simulated
               else _simulate(engine, gd, fleet, faults, report, writer_process))
        run = _replay(engine, gd, sim.config.start_ns, report, external_url, helper)
    finally:
        engine.dispose()
    return score(name=gd.name, run_id=sim.run_id, start_ns=run.start_ns, end_ns=run.end_ns,
                 faults=[fault_window(f, run.start_ns, fleet) for f in faults.faults],
                 hardware={n.id: n.hardware_type for n in fleet.nodes}, alerts=run.alerts,
                 expectations=gd.expectations, deliveries=run.deliveries, incidents=run.incidents,
                 grace_ns=gd.grace_ns, allowed_false_positives=gd.false_positives, budgets=run.budgets,
                 budget_limits=gd.budget)


def simulate_gameday(gd: GameDay, *, db_url: str) -> str:
    """Only the simulation of ``gd``, into ``db_url`` (one process); its run id. Copies of the store can then be
    replayed with ``run_gameday(..., simulated=True)`` under different rules."""
    fleet = _fleet(gd.fleet)
    faults: FaultSchedule = faults_from_dict(gd.faults, fleet=fleet, source=gd.source)
    engine = open_engine(db_url)
    try:
        upgrade(engine)
        return _simulate(engine, gd, fleet, faults, lambda _phase, _frac: None, writer_process=False).run_id
    finally:
        engine.dispose()


def fault_window(f: Fault, run_start_ns: int, fleet: Fleet | None = None) -> FaultWindow:
    """``f`` in absolute time, for the scorer. An F7 without an explicit cycle deadlocks its target and the
    target's neighbours (as the simulator applies it), so those are its nodes."""
    nodes = tuple(f.nodes)
    if f.kind.value == "F7" and not nodes and fleet is not None:
        nodes = (f.target, *fleet.neighbours(f.target))
    return FaultWindow(id=f.id, kind=f.kind.value, target=f.target, nodes=nodes,
                       start_ns=run_start_ns + f.start_ns, end_ns=run_start_ns + f.end_ns())


# -- the steps of run_gameday -------------------------------------------------------------------------------------


def _simulate(engine: Engine, gd: GameDay, fleet: Fleet, faults: FaultSchedule,
              report: Callable[[str, float], None], writer_process: bool = True) -> Simulation:
    sim = Simulation(fleet, faults, _config(gd))
    resource = {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id, "qfleet.fleet": fleet.name}
    run_range = (sim.config.start_ns, sim.config.start_ns + gd.duration_ns)
    # The run's whole range is registered before the first step: an overlap with a stored run fails before any
    # row is written, and no step pays a run extension.
    sink: StoreSink | ProcessStoreSink
    if writer_process and _shareable(engine):
        # Storage on the second core, overlapping the engine (a game day's store writes take as long as its
        # simulation); the writer process opens its own connection to the same database.
        sink = ProcessStoreSink.for_run(engine, resource, run_range)
    else:
        sink = StoreSink(Store(engine), resource, run_range=run_range)
    try:
        for step in sim.steps():
            sink.write(step)
            report("simulating the fleet", (step.end_ns - sim.config.start_ns) / gd.duration_ns)
        sink.close()
    except BaseException:
        if isinstance(sink, ProcessStoreSink):
            sink.abandon()
        raise
    return sim


def _config(gd: GameDay) -> RunConfig:
    return RunConfig(duration_ns=gd.duration_ns, seed=gd.seed, load=gd.load)


def _shareable(engine: Engine) -> bool:
    """Whether another process can open ``engine``'s database (a server, or a SQLite file named by path)."""
    return engine.url.get_backend_name() != "sqlite" or sqlite_file(engine.url) is not None


def _replay(engine: Engine, gd: GameDay, t0: int, report: Callable[[str, float], None], external_url: str,
            helper: Callable[[], Executor] | None = None) -> _Run:
    """Evaluate and dispatch every ``step`` of simulated time, delivering to local receivers; every firing is
    kept with the step at which it stopped (refined to its recorded end when the store has it). With a
    ``helper``, the SLOs and rules are evaluated by it and this process together (:class:`Ahead`)."""
    t_end = t0 + gd.duration_ns
    instants = range(t0 + gd.step_ns, t_end + 1, gd.step_ns)
    slos = load_slos(builtin_specs_path() if gd.slos == "default" else Path(gd.slos))
    rules = load_rules() if gd.rules == "default" else load_rules(Path(gd.rules))
    ahead = Ahead(helper(), engine, slos, rules, instants) if helper is not None and _shareable(engine) else None
    try:
        with _Sinks() as sinks:
            clock = [t0]
            service = _service(engine, gd, sinks.base, lambda: clock[0], external_url, slos, rules, ahead)
            firing: dict[tuple[str, int], Alert] = {}
            done: list[Alert] = []
            for t in instants:
                clock[0] = t
                service.evaluate(t)
                service.dispatch(t)
                now = {(a.fingerprint, a.starts_at): a for a in service.state.active()}
                done.extend(dataclasses.replace(a, ends_at=t) for k, a in firing.items() if k not in now)
                firing = {k: firing.get(k, a) for k, a in now.items()}
                report("evaluating SLOs and alerts", (t - t0) / gd.duration_ns)
            clock[0] = t_end + _SETTLE_NS
            service.dispatch(clock[0])  # let the last groups flush
            recorded = {(a.fingerprint, a.starts_at): a.ends_at for a in service.state.resolved_since(t0)}
            alerts = [dataclasses.replace(a, ends_at=min(a.ends_at or t_end,
                                                         recorded.get((a.fingerprint, a.starts_at)) or t_end))
                      for a in done] + list(firing.values())
            deliveries = [_delivery(receiver, body) for receiver, body in sinks.got]
    finally:
        if ahead is not None:
            ahead.cancel()
    incidents = [_incident(service, row) for row in service.incidents.list()
                 if t0 <= row["opened_unix_nano"] <= t_end + _SETTLE_NS]
    return _Run(t0, t_end, sorted(alerts, key=lambda a: (a.starts_at, a.fingerprint)), deliveries, incidents,
                _budgets(engine, service, t0, t_end))


def _delivery(receiver: str, body: Mapping[str, Any]) -> Delivery:
    """A webhook body as the scorer sees it: the receiver and the firings it mentions."""
    return Delivery(receiver, tuple((str(a.get("fingerprint", "")), parse_rfc3339(a["startsAt"]))
                                    for a in body.get("alerts", []) if a.get("startsAt")))


def _incident(service: AlertService, row: Mapping[str, Any]) -> IncidentRecord:
    """An incident and the firings recorded into it (its ``fired`` timeline events)."""
    fired = [e["detail"] for e in service.incidents.timeline(row["id"]) if e["kind"] == "fired"]
    return IncidentRecord(str(row["id"]), int(row["opened_unix_nano"]), str(row["severity"] or ""),
                          tuple((str(d.get("fingerprint", "")), int(d.get("starts_at") or 0)) for d in fired))


def _service(engine: Engine, gd: GameDay, base_url: str, clock: Callable[[], int], external_url: str,
             slos: Sequence[SLO], rules: Sequence[AlertRule], ahead: Ahead | None) -> AlertService:
    doc = json.loads(json.dumps(gd.alerting))
    for r in doc.get("receivers", []):
        for w in r.get("webhook_configs", []):
            w["url"] = f"{base_url}/{r['name']}"
    config, _warnings = config_from_dict(doc, source=gd.source)
    return AlertService(engine, config, slos=slos, rules=rules, secret=b"gameday", clock=clock,
                        external_url=external_url, slo_evaluator=ahead.slo_reports if ahead else evaluate_slos,
                        rule_evaluator=ahead.rule_alerts if ahead else evaluate_rules)


def _budgets(engine: Engine, service: AlertService, t0: int, at_ns: int) -> list[BudgetBurn]:
    """Per SLO segment (``slo[k=v]``, or ``slo`` unsegmented) at ``at_ns``: the burn rate over what the run
    observed of the period, and the share of the whole period's budget it used (:func:`period_share`)."""
    from qfleet.slo.evaluate import evaluate_store
    from qfleet.slo.sli import SliSource

    out = []
    for r in evaluate_store(service.slos, SliSource(engine), at_ns):
        b = r.budget
        burn = b.consumed_fraction if isinstance(b.consumed_fraction, Fraction) else None
        period = b.period_end_ns - b.period_start_ns
        observed = at_ns - max(t0, b.period_start_ns)
        seg = ",".join(v for _k, v in r.segment)
        out.append(BudgetBurn(f"{r.slo}[{seg}]" if r.segment else r.slo, burn, observed, period,
                              None if burn is None else period_share(burn, observed, period)))
    return out
