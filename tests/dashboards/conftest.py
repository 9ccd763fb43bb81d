"""The dashboards' seeded store: one SQLite file per test session, filled by the real simulator, SLO engine and
alerting loop, shared by the data, page and browser tests.

``seed_database(path)`` builds it and returns the facts tests assert on; the session fixture ``seeded_db_url``
builds it once in a temporary directory (``seeded_facts`` holds the same facts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from qfleet.alerts.config import config_from_dict
from qfleet.alerts.rules import load_rules
from qfleet.alerts.service import AlertService
from qfleet.collector import Store
from qfleet.collector.migrate import upgrade
from qfleet.collector.store import open_engine
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.slo.spec import builtin_specs_path, load_slos
from qfleet.units import NS

__all__ = ["SEED", "seed_database"]

#: The simulator seed of the shared database.
SEED = 7
MIN = 60 * NS

# Receivers without integrations: notifications open incidents, nothing is delivered over the network. SLOs are
# evaluated every 10 minutes only, so their alerts must outlive that gap: resolve_timeout 15m (the default 5m
# would resolve them between evaluations).
_ALERTING = {
    "global": {"resolve_timeout": "15m"},
    "route": {"receiver": "tickets", "group_by": ["alertname", "slo", "node", "link"], "group_wait": "30s",
              "group_interval": "5m", "repeat_interval": "4h",
              "routes": [{"matchers": ['severity=~"page|security"'], "receiver": "pages"}]},
    "receivers": [{"name": "pages"}, {"name": "tickets"}],
}

# A fixed subset of alerts/rules/fleet.yaml (kinds and parameters that are stable), so that the seeded incidents do
# not change when the default rule pack is tuned.
_RULES = """\
version: 1
kind: AlertRules
rules:
  - name: QfleetNodeHeartbeatMissing
    kind: heartbeat_missing
    params: {window: 3m}
    for: 1m
    labels: {severity: page, team: hardware}
    annotations: {summary: "Node {{ $labels.node }} is not sending heartbeats",
                  runbook_url: runbooks/F5-node-outage.md}
  - name: QfleetEntanglementCollapse
    kind: entanglement_collapse
    params: {window: 5m, ratio: 0.5, min_requests: 10}
    for: 2m
    labels: {severity: page, team: hardware}
    annotations: {summary: "Entanglement success on link {{ $labels.link }} collapsed to {{ $value }}",
                  runbook_url: runbooks/F1-entanglement-loss.md}
  - name: QfleetSchedulerQueueStuck
    kind: queue_age
    params: {threshold: 20, lookback: 5m}
    for: 3m
    labels: {severity: page, team: platform}
    annotations: {summary: "Queue of tenant {{ $labels.tenant }} is stuck ({{ $value }} s old)",
                  runbook_url: runbooks/F7-scheduler-deadlock.md}
  - name: QfleetUnauthorizedCommands
    kind: unauthorized_commands
    params: {window: 5m}
    labels: {severity: security, team: security}
    annotations: {summary: "Unauthorized control commands on {{ $labels.node }} from {{ $labels.principal }}",
                  runbook_url: runbooks/F8-unauthorized-commands.md}
"""


def seed_database(path: str | Path, *, hours: int = 3, seed: int = SEED) -> dict[str, Any]:
    """Fill a new SQLite store at ``path``: mesh fleet with the example faults for ``hours`` simulated hours,
    SLO history every 10 minutes and alerting cycles every minute (incidents). Returns facts about it:

    ``url``, ``run_id``, ``start_ns``/``end_ns`` (simulated run), ``first_span_ns``/``last_span_ns``, ``jobs``,
    ``jobs_ok`` (``qfleet.job`` spans with status != 2), ``jobs_failed``, ``entanglement_requests``,
    ``entanglement_failed``, ``nodes``, ``links``, ``hardware_types``, ``slo_evaluations``, ``slo_at_ns`` (the
    last evaluation instant), ``incident_ids`` (oldest first), ``incident_id`` (the first
    page naming a link: F1's entanglement collapse), ``failed_trace_id`` and
    ``failed_job_id`` (a failed job), ``ok_trace_id`` (a successful job).
    """
    path = Path(path)
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    try:
        upgrade(engine)
        fleet = load_fleet(builtin_fleet_path("mesh"))
        sim = Simulation(fleet, load_faults(builtin_faults_path("example"), fleet),
                         RunConfig(duration_ns=hours * 60 * MIN, seed=seed))
        sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
        for step in sim.steps():
            sink.write(step)
        sink.close()
        start = sim.config.start_ns
        end = start + hours * 60 * MIN

        slos = load_slos(builtin_specs_path())
        config, _ = config_from_dict(_ALERTING, source="tests/dashboards")
        clock = [start]
        rules_path = path.with_suffix(".rules.yaml")
        rules_path.write_text(_RULES)
        svc = AlertService(engine, config, slos=(), rules=load_rules(rules_path), secret=b"dashboards",
                           clock=lambda: clock[0])
        for minute in range(1, hours * 60 + 1):
            at = start + minute * MIN
            clock[0] = at
            if minute % 10 == 0:
                # SLO history every 10 minutes; the service turns the same reports into SLO alerts.
                svc.slos = tuple(slos)
            svc.evaluate(at)
            svc.slos = ()
            svc.dispatch(at)
        facts = _facts(engine)
    finally:
        engine.dispose()
    facts.update(url=url, run_id=sim.run_id, start_ns=start, end_ns=end, seed=seed)
    return facts


def _facts(engine: Any) -> dict[str, Any]:
    with engine.connect() as c:
        def one(sql: str) -> Any:
            return c.execute(text(sql)).scalar()

        def col(sql: str) -> list[Any]:
            return [r[0] for r in c.execute(text(sql)).all()]

        incident_ids = col("SELECT id FROM incidents ORDER BY opened_unix_nano, id")
        pages = col("SELECT id FROM incidents WHERE severity = 'page' AND labels LIKE '%\"link\"%' "
                    "ORDER BY opened_unix_nano, id")
        return {
            "first_span_ns": one("SELECT min(start_time_unix_nano) FROM spans"),
            "last_span_ns": one("SELECT max(start_time_unix_nano) FROM spans"),
            "jobs": one("SELECT count(*) FROM spans WHERE name = 'qfleet.job'"),
            "jobs_ok": one("SELECT count(*) FROM spans WHERE name = 'qfleet.job' AND status_code != 2"),
            "jobs_failed": one("SELECT count(*) FROM spans WHERE name = 'qfleet.job' AND status_code = 2"),
            "entanglement_requests": one("SELECT count(*) FROM spans WHERE name = 'qfleet.entanglement.request'"),
            "entanglement_failed": one(
                "SELECT count(*) FROM spans WHERE name = 'qfleet.entanglement.request' AND status_code = 2"),
            "nodes": col("SELECT DISTINCT node_id FROM spans WHERE node_id IS NOT NULL ORDER BY 1"),
            "links": col("SELECT DISTINCT link_id FROM spans WHERE link_id IS NOT NULL ORDER BY 1"),
            "hardware_types": col("SELECT DISTINCT hardware_type FROM spans WHERE hardware_type IS NOT NULL "
                                  "ORDER BY 1"),
            "slo_evaluations": one("SELECT count(*) FROM slo_evaluations"),
            "slo_at_ns": one("SELECT max(at_unix_nano) FROM slo_evaluations"),
            "incident_ids": incident_ids,
            "incident_id": pages[0] if pages else (incident_ids[0] if incident_ids else None),
            "failed_trace_id": one("SELECT trace_id FROM spans WHERE name = 'qfleet.job' AND status_code = 2 "
                                   "AND job_id IN (SELECT job_id FROM spans WHERE name = "
                                   "'qfleet.entanglement.request' AND status_code = 2) "
                                   "ORDER BY start_time_unix_nano LIMIT 1"),
            "failed_job_id": one("SELECT job_id FROM spans WHERE name = 'qfleet.job' AND status_code = 2 "
                                 "AND job_id IN (SELECT job_id FROM spans WHERE name = "
                                 "'qfleet.entanglement.request' AND status_code = 2) "
                                 "ORDER BY start_time_unix_nano LIMIT 1"),
            "ok_trace_id": one("SELECT trace_id FROM spans WHERE name = 'qfleet.job' AND status_code != 2 "
                               "ORDER BY start_time_unix_nano LIMIT 1"),
        }


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Facts of the session's seeded store (see :func:`seed_database`); build it once."""
    return seed_database(tmp_path_factory.mktemp("dashboards") / "seeded.db")


@pytest.fixture(scope="session")
def seeded_db_url(seeded_db: dict[str, Any]) -> str:
    """SQLAlchemy URL of the session's seeded SQLite store (treat it as read-only; copy it to write)."""
    return str(seeded_db["url"])


@pytest.fixture(scope="session")
def seeded_facts(seeded_db: dict[str, Any]) -> dict[str, Any]:
    """The facts :func:`seed_database` returned for the session's store."""
    return seeded_db
