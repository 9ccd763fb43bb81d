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

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from qfleet.alerts.config import config_from_dict
from qfleet.alerts.model import Alert
from qfleet.alerts.rules import load_rules
from qfleet.alerts.service import AlertService
from qfleet.collector import Store, open_engine, upgrade
from qfleet.simulator.engine import NS, RunConfig, Simulation
from qfleet.simulator.faults import FaultSchedule, faults_from_dict, parse_duration_ns
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.slo.spec import builtin_specs_path, load_slos

__all__ = ["Expectation", "FaultScore", "GameDay", "GameDayError", "Scorecard", "builtin_gameday_path",
           "load_gameday", "run_gameday"]

_KEYS = {"version", "kind", "name", "description", "fleet", "duration", "seed", "load", "step", "faults", "slos",
         "alerting", "expect"}
_EXPECT_KEYS = {"faults", "false_positives", "budget"}


class GameDayError(ValueError):
    """A scenario file breaks a rule (the message names the field and the fix)."""


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
                "faults": [f.__dict__ if hasattr(f, "__dict__") else {k: getattr(f, k) for k in f.__slots__}
                           for f in self.faults],
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
        GameDayError: the file breaks a rule.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise GameDayError(f"{path}: cannot read the scenario ({e})") from e
    return gameday_from_dict(doc, source=str(path))


def gameday_from_dict(doc: Mapping[str, Any], *, source: str = "<gameday>") -> GameDay:
    """The scenario from its plain form (see the module docstring)."""
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise GameDayError(f"{source}: a game day is a mapping with version: 1 and kind: GameDay")
    for k in doc:
        if k not in _KEYS:
            problems.append(f"{k}: unknown key (allowed: {', '.join(sorted(_KEYS))})")
    if doc.get("version") != 1 or doc.get("kind") != "GameDay":
        problems.append("version/kind: need version: 1 and kind: GameDay")
    dur = step = 0
    for key, default in (("duration", None), ("step", "60s")):
        raw = doc.get(key, default)
        try:
            val = parse_duration_ns(raw) if raw is not None else 0
        except ValueError as e:
            problems.append(f"{key}: {e}")
            val = 0
        if key == "duration":
            dur = val
            if not val:
                problems.append("duration: required, e.g. duration: 90m")
        else:
            step = val
    faults = doc.get("faults") or []
    fault_ids = {f.get("id") for f in faults if isinstance(f, Mapping)}
    expect = doc.get("expect") or {}
    if not isinstance(expect, Mapping):
        problems.append("expect: a mapping with faults, false_positives and budget")
        expect = {}
    for k in expect:
        if k not in _EXPECT_KEYS:
            problems.append(f"expect.{k}: unknown key (allowed: {', '.join(sorted(_EXPECT_KEYS))})")
    exps = []
    for i, e in enumerate(expect.get("faults") or []):
        where = f"expect.faults[{i}]"
        if not isinstance(e, Mapping) or e.get("fault") not in fault_ids:
            problems.append(f"{where}.fault: must name one of the scenario's fault ids {sorted(fault_ids)}")
            continue
        alerts = e.get("alerts") or []
        if not alerts:
            problems.append(f"{where}.alerts: list the alert names (or slo:<name>) that must fire")
        try:
            within = parse_duration_ns(e.get("within", "10m"))
        except ValueError as err:
            problems.append(f"{where}.within: {err}")
            within = 0
        exps.append(Expectation(fault=e["fault"], alerts=tuple(alerts), within_ns=within, receiver=e.get("receiver")))
    if problems:
        raise GameDayError(f"{source}: " + "; ".join(problems))
    alerting = doc.get("alerting") or _default_alerting()
    if isinstance(alerting, str):
        try:
            alerting = yaml.safe_load(Path(alerting).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise GameDayError(f"{source}: alerting: cannot read {alerting!r} ({e})") from e
    return GameDay(name=str(doc.get("name", Path(source).stem)), fleet=str(doc.get("fleet", "mesh")), duration_ns=dur,
                   seed=int(doc.get("seed", 7)), load=float(doc.get("load", 1.0)), step_ns=step,
                   faults={"version": 1, "kind": "FaultSchedule", "faults": list(faults)},
                   slos=str(doc.get("slos", "default")), alerting=alerting, expectations=tuple(exps),
                   false_positives=int(expect.get("false_positives", 0)),
                   budget={str(k): float(v) for k, v in (expect.get("budget") or {}).items()}, source=source)


def _default_alerting() -> dict[str, Any]:
    """The sample ``alerts/alerting.yaml``: pages, tickets and security alerts to three receivers (the runner
    points their URLs at its local sinks)."""
    from importlib.resources import files

    return yaml.safe_load((files("qfleet.alerts") / "alerting.yaml").read_text())  # type: ignore[no-any-return]


class _Sinks:
    """One local HTTP server; every receiver of the scenario posts to its own path on it."""

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

    def close(self) -> None:
        self.server.shutdown()


def _alert_id(a: Alert) -> str:
    lab = dict(a.labels)
    return f"slo:{lab['slo']}" if lab.get("alertname") == "QfleetSLOBurnRate" and "slo" in lab else lab.get(
        "alertname", "?")


def run_gameday(gd: GameDay, *, db_url: str, progress: Callable[[str, float], None] | None = None) -> Scorecard:
    """Simulate ``gd`` into ``db_url`` (a fresh database is best) and score it.

    ``progress(phase, fraction)`` is told how far the simulation and the alerting replay are.
    """
    report = progress or (lambda _phase, _frac: None)
    fleet_path = Path(gd.fleet) if Path(gd.fleet).suffix in (".yaml", ".yml") else builtin_fleet_path(gd.fleet)
    fleet = load_fleet(fleet_path)
    faults: FaultSchedule = faults_from_dict(gd.faults, fleet=fleet, source=gd.source)
    engine = open_engine(db_url)
    upgrade(engine)
    sim = Simulation(fleet, faults, RunConfig(duration_ns=gd.duration_ns, seed=gd.seed, load=gd.load))
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id,
                                     "qfleet.fleet": fleet.name})
    for step in sim.steps():
        sink.write(step)
        report("simulating the fleet", (step.end_ns - sim.config.start_ns) / gd.duration_ns)
    sink.close()
    sinks = _Sinks()
    try:
        doc = json.loads(json.dumps(gd.alerting))
        for r in doc.get("receivers", []):
            for w in r.get("webhook_configs", []):
                w["url"] = f"{sinks.base}/{r['name']}"
        config, _warnings = config_from_dict(doc, source=gd.source)
        slos = load_slos(builtin_specs_path() if gd.slos == "default" else Path(gd.slos))
        t0, t_end = sim.config.start_ns, sim.config.start_ns + gd.duration_ns
        clock = [t0]
        service = AlertService(engine, config, slos=slos, rules=load_rules(), secret=b"gameday",
                               clock=lambda: clock[0])
        seen: dict[str, Alert] = {}
        t = t0 + gd.step_ns
        while t <= t_end:
            clock[0] = t
            service.evaluate(t)
            service.dispatch(t)
            for a in service.state.active():
                seen.setdefault(a.fingerprint + str(a.starts_at), a)
            report("evaluating SLOs and alerts", (t - t0) / gd.duration_ns)
            t += gd.step_ns
        clock[0] = t_end + 15 * 60 * NS
        service.dispatch(clock[0])  # let the last groups flush
        ended = {a.fingerprint: a for a in service.state.resolved_since(t0)}
        received = list(sinks.got)
        reports = {}
        from qfleet.slo.evaluate import evaluate_store
        from qfleet.slo.sli import SliSource

        for r in evaluate_store(slos, SliSource(engine), t_end):
            c = r.budget.consumed_fraction
            seg = ",".join(v for _k, v in r.segment)
            reports[f"{r.slo}[{seg}]" if r.segment else r.slo] = None if c is None else float(c)
    finally:
        sinks.close()
        engine.dispose()
    alerts = list(seen.values())
    scores, attributed = [], set()
    by_id = {f.id: f for f in faults.faults}
    for exp in gd.expectations:
        f = by_id[exp.fault]
        start, end = t0 + f.start_ns, t0 + f.end_ns()
        hits = sorted((a for a in alerts if _alert_id(a) in exp.alerts and start <= a.starts_at <= start + exp.within_ns),
                      key=lambda a: a.starts_at)
        attributed.update(a.fingerprint for a in alerts if start <= a.starts_at <= end + exp.within_ns)
        names = {a.fingerprint for a in hits}
        rcv = sorted({path for path, body in received for a in body.get("alerts", [])
                      if a.get("fingerprint") in names})
        detected = bool(hits)
        ttd = (hits[0].starts_at - start) / NS if hits else None
        fin = [ended[a.fingerprint].ends_at for a in hits if a.fingerprint in ended and ended[a.fingerprint].ends_at]
        ttr = (max(fin) - end) / NS if fin else None
        why = "" if detected else f"none of {list(exp.alerts)} fired within {exp.within_ns / NS:.0f} s"
        if detected and exp.receiver and exp.receiver not in rcv:
            why = f"the alert did not reach {exp.receiver} (reached {rcv or 'nothing'})"
        scores.append(FaultScore(fault=f.id, kind=f.kind.value, target=f.target, detected=detected,
                                 time_to_detect_s=ttd, alerts=tuple(sorted({_alert_id(a) for a in hits})),
                                 receivers=tuple(rcv), time_to_resolve_s=ttr, passed=not why, why=why))
    # Every fault's window (plus slack) may explain alerts; anything else is a false positive.
    for f in faults.faults:
        start, end = t0 + f.start_ns, t0 + f.end_ns()
        attributed.update(a.fingerprint for a in alerts if start <= a.starts_at <= end + 15 * 60 * NS)
    fps = tuple(sorted({f"{_alert_id(a)}@{(a.starts_at - t0) / NS:.0f}s" for a in alerts
                        if a.fingerprint not in attributed}))
    budget_fail = tuple(f"{key} consumed {val:.3f} > {limit}" for slo, limit in gd.budget.items()
                        for key, val in reports.items() if (key == slo or key.startswith(slo + "["))
                        and val is not None and val > limit)
    return Scorecard(gd.name, sim.run_id, tuple(scores), fps, gd.false_positives, reports, budget_fail,
                     len(received))
