"""The alerting loop in process with an injected clock: a simulated outage pages a real receiver, an unacknowledged
page escalates, an acknowledged one does not, calibration windows mute their node automatically, and the alerts
of a source that stops reporting resolve after ``global.resolve_timeout``."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from qfleet.alerts.config import config_from_dict
from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.rules import load_rules
from qfleet.alerts.service import AlertService
from qfleet.collector import Store
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import Calibration, builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.slo.spec import builtin_specs_path, load_slos
from qfleet.units import NS

MIN = 60 * NS


class Sink:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.bodies]


@pytest.fixture
def sink() -> Any:
    s = Sink()
    yield s
    s.server.shutdown()


def _fill(engine: Engine, faults: list[Fault], minutes: int, **fleet_changes: Any) -> Simulation:
    fleet = load_fleet(builtin_fleet_path("line"))
    if fleet_changes:
        fleet = replace(fleet, **fleet_changes)
    sim = Simulation(fleet, FaultSchedule(tuple(faults)), RunConfig(duration_ns=minutes * MIN, seed=2))
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
    for step in sim.steps():
        sink.write(step)
    sink.close()
    return sim


#: The sample routing's shape: a page goes to `pages` and, by `continue`, to the `tickets` queue as well.
_CONTINUE = {"receiver": "tickets", "group_by": ["alertname", "node"], "group_wait": "30s", "group_interval": "5m",
             "repeat_interval": "4h",
             "routes": [{"matchers": ['severity="page"'], "receiver": "pages", "group_wait": "10s", "continue": True},
                        {"matchers": ['severity=~"page|ticket"'], "receiver": "tickets"}]}


def _service(engine: Engine, sink: Sink, clock: list[int], *, escalate: bool = True,
             service: type[AlertService] = AlertService, route: dict[str, Any] | None = None,
             **kw: Any) -> AlertService:
    doc: dict[str, Any] = {
        "global": {"resolve_timeout": "3m"},
        "route": route or {"receiver": "pages", "group_by": ["alertname", "node"], "group_wait": "30s",
                           "group_interval": "5m", "repeat_interval": "4h"},
        "receivers": [{"name": "pages", "webhook_configs": [{"url": f"{sink.base}/pages"}]},
                      {"name": "tickets", "webhook_configs": [{"url": f"{sink.base}/tickets"}]},
                      {"name": "lead", "webhook_configs": [{"url": f"{sink.base}/lead"}]}],
    }
    if escalate:
        doc["qfleet"] = {"escalation_receiver": "lead", "escalate_after": "10m"}
    config, _ = config_from_dict(doc, source="test")
    return service(engine, config, **{"slos": (), "rules": load_rules(), **kw}, secret=b"s3cret",
                   clock=lambda: clock[0])


def _run(svc: AlertService, clock: list[int], t0: int, t1: int, step: int = 30 * NS) -> None:
    t = t0
    while t <= t1:
        clock[0] = t
        svc.evaluate(t)
        svc.dispatch(t)
        t += step


def test_outage_pages_then_escalates_unless_acknowledged(sqlite_engine: Engine, sink: Sink) -> None:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    sim = _fill(sqlite_engine, [outage], 60)
    t0 = sim.config.start_ns
    clock = [t0]
    svc = _service(sqlite_engine, sink, clock)
    _run(svc, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    pages = [b for p, b in sink.bodies if p == "/pages"]
    assert pages and any(a["labels"].get("node") == "qpu-d" for b in pages for a in b["alerts"])
    assert "/lead" not in sink.paths()  # not yet: the page is younger than escalate_after
    _run(svc, clock, t0 + 25 * MIN + 30 * NS, t0 + 40 * MIN)
    lead = [b for p, b in sink.bodies if p == "/lead"]
    assert lead and lead[0]["alerts"][0]["labels"]["node"] == "qpu-d"
    [incident] = [i for i in svc.incidents.list() if "qpu-d" in json.dumps(i)]
    kinds = [e["kind"] for e in svc.incidents.timeline(incident["id"])]
    # In time order: the ground-truth fault (20 min) comes before the alert fired from it.
    assert kinds.index("fault") < kinds.index("fired") < kinds.index("notified") < kinds.index("escalated")


def test_every_delivery_links_its_incident(sqlite_engine: Engine, sink: Sink) -> None:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    sim = _fill(sqlite_engine, [outage], 60)
    t0 = sim.config.start_ns
    clock = [t0]
    svc = _service(sqlite_engine, sink, clock, external_url="https://qfleet.example/ops")
    _run(svc, clock, t0 + 15 * MIN, t0 + 40 * MIN)
    [incident] = [i for i in svc.incidents.list() if "qpu-d" in json.dumps(i)]
    got = [(p, b["qfleet"]) for p, b in sink.bodies if any(a["labels"].get("node") == "qpu-d" for a in b["alerts"])]
    # The page and its escalation, as received over HTTP: both name the incident and its on-call view.
    assert {p for p, _ in got} >= {"/pages", "/lead"}
    assert all(q == {"incident": incident["id"],
                     "incidentURL": f"https://qfleet.example/ops/oncall?incident={incident['id']}"} for _, q in got)


def test_an_acknowledged_page_does_not_escalate(sqlite_engine: Engine, sink: Sink) -> None:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    sim = _fill(sqlite_engine, [outage], 60)
    t0 = sim.config.start_ns
    clock = [t0]
    svc = _service(sqlite_engine, sink, clock)
    _run(svc, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    for inc in svc.incidents.list(state="open"):
        svc.incidents.acknowledge(inc["id"], "oncall", clock[0])
    _run(svc, clock, t0 + 25 * MIN + 30 * NS, t0 + 45 * MIN)
    assert "/pages" in sink.paths() and "/lead" not in sink.paths()


@pytest.mark.parametrize("acknowledged", [False, True], ids=["unacknowledged: one escalation",
                                                              "acknowledged: no escalation anywhere"])
def test_a_page_to_pages_and_tickets_is_one_incident_escalated_once(sqlite_engine: Engine, sink: Sink,
                                                                    acknowledged: bool) -> None:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    sim = _fill(sqlite_engine, [outage], 60)
    t0 = sim.config.start_ns
    clock = [t0]
    svc = _service(sqlite_engine, sink, clock, route=_CONTINUE)
    _run(svc, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    assert {"/pages", "/tickets"} <= set(sink.paths())          # both receivers were told
    [incident] = [i for i in svc.incidents.list() if "qpu-d" in json.dumps(i)]
    assert {r for r, _ in svc.incidents.groups(incident["id"])} == {"pages", "tickets"}
    if acknowledged:
        svc.incidents.acknowledge(incident["id"], "oncall", clock[0])
    _run(svc, clock, t0 + 25 * MIN + 30 * NS, t0 + 45 * MIN)
    assert [i["id"] for i in svc.incidents.list() if "qpu-d" in json.dumps(i)] == [incident["id"]]
    lead = [b for p, b in sink.bodies if p == "/lead"]
    assert len(lead) == (0 if acknowledged else 1), len(lead)
    if lead:
        assert lead[0]["alerts"][0]["labels"]["severity"] == "page"


def test_calibration_windows_mute_their_node(tmp_path: Path, sink: Sink) -> None:
    from qfleet.collector import open_engine, upgrade

    # qpu-a calibrates over [30 min, 50 min) (4 nodes, staggered from half an interval); it goes down inside it.
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-a", start_ns=32 * MIN, duration_ns=16 * MIN)
    pages: dict[str, list[str]] = {}
    for label, cal in (("calibrating", Calibration(interval_s=3600.0, duration_s=1200.0)),
                       ("control", Calibration(interval_s=1e7, duration_s=60.0))):
        engine = open_engine(f"sqlite:///{tmp_path / label}.db")
        upgrade(engine)
        sim = _fill(engine, [outage], 60, calibration=cal)
        t0 = sim.config.start_ns
        clock = [t0]
        svc = _service(engine, sink, clock, escalate=False)
        before = len(sink.bodies)
        _run(svc, clock, t0 + 28 * MIN, t0 + 49 * MIN)
        pages[label] = [a["labels"].get("node", "") for _, b in sink.bodies[before:] for a in b["alerts"]]
        engine.dispose()
    assert "qpu-a" in pages["control"]
    assert "qpu-a" not in pages["calibrating"]


def _heartbeat(svc: AlertService) -> list[Alert]:
    return [a for a in svc.state.active() if a.label("alertname") == "QfleetNodeHeartbeatMissing"]


def test_alerts_of_a_source_that_stops_reporting_resolve_after_resolve_timeout(sqlite_engine: Engine,
                                                                               sink: Sink) -> None:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    sim = _fill(sqlite_engine, [outage], 60)
    t0 = sim.config.start_ns
    clock = [t0]
    svc = _service(sqlite_engine, sink, clock, escalate=False)
    _run(svc, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    [page] = _heartbeat(svc)
    last = t0 + 25 * MIN                # the rules' last report: the outage goes on, but they are removed
    svc.rules = ()
    _run(svc, clock, last + 30 * NS, last + 3 * MIN - 30 * NS)
    assert _heartbeat(svc) == [page]    # still within resolve_timeout (3m)
    _run(svc, clock, last + 3 * MIN, last + 9 * MIN)
    assert _heartbeat(svc) == []
    [ended] = [a for a in svc.state.resolved_since(t0) if a.fingerprint == page.fingerprint]
    assert ended.ends_at == last + 3 * MIN
    resolved = [b for p, b in sink.bodies if p == "/pages" and b["status"] == "resolved"]
    assert resolved and resolved[-1]["alerts"][0]["labels"]["node"] == "qpu-d"


class _SloStoreDown(AlertService):
    """A service whose SLO source fails at every evaluation (its store is unreachable, say)."""

    def _slo_source(self, at: int) -> list[Alert]:
        raise RuntimeError("the SLI tables are unreachable")


def test_a_failing_source_does_not_stop_the_others_and_its_alerts_time_out(sqlite_engine: Engine,
                                                                          sink: Sink) -> None:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    sim = _fill(sqlite_engine, [outage], 60)
    t0 = sim.config.start_ns
    clock = [t0 + 14 * MIN]
    svc = _service(sqlite_engine, sink, clock, escalate=False, service=_SloStoreDown,
                   slos=load_slos(builtin_specs_path())[:1])
    burn = Alert(labels=labels_key({"alertname": "QfleetSLOBurnRate", "slo": "x", "severity": "page"}), starts_at=0)
    svc.state.sync([burn], clock[0], source="slo")   # firing when the SLO source last worked
    stats = svc.evaluate(t0 + 15 * MIN)
    assert stats.failed_sources == ("slo",)
    _run(svc, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    assert _heartbeat(svc)                            # the rules kept running
    [ended] = [a for a in svc.state.resolved_since(t0) if a.fingerprint == burn.fingerprint]
    assert ended.ends_at == t0 + 17 * MIN             # 3m after its last report
