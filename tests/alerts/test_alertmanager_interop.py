"""Alertmanager both ways, judged by the real Debian ``prometheus-alertmanager`` binary (sre.md §17-19).

* qfleet -> Alertmanager: qfleet's service sends its alerts to ``POST /api/v2/alerts`` as Prometheus does; the
  oracle is Alertmanager's own ``GET /api/v2/alerts`` and the webhooks it sends to a server in the test.
* Alertmanager -> qfleet: Alertmanager's ``webhook_configs`` point at qfleet's receiver (bearer token from a
  ``credentials_file``); its firing notification opens a qfleet incident and its resolved one resolves it.
* PagerDuty: for one alert and one ``pagerduty_configs`` entry, qfleet's event carries the ``severity``, ``class``,
  ``component`` and ``group`` Alertmanager's own event carries.

Time in qfleet is injected: a FakeClock set from Alertmanager's own clock (its HTTP ``Date`` header), so the
instants qfleet sends are current for Alertmanager; the test never reads a clock. Every wait on Alertmanager is a
bounded number of polls. Alertmanager's group_wait and group_interval are a fraction of a second.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from qfleet.alerts.am_intake import INTAKE_PATH, intake_route
from qfleet.alerts.config import ConfigError, config_from_dict
from qfleet.alerts.incidents import Incidents
from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.postmortem import build_postmortem, render
from qfleet.alerts.service import AlertService
from qfleet.alerts.sources import AlertState
from qfleet.collector.consumer import MemoryConsumer
from qfleet.collector.transport import HttpTransport, TransportConfig
from qfleet.units import NS, format_rfc3339, parse_rfc3339
from tests.conftest import FakeClock, require_tool

MS = NS // 1000
TOKEN = "intake-token-0123456789"
FAST = {"group_wait": "100ms", "group_interval": "200ms", "repeat_interval": "1h"}
DEADLINE_S = 20.0
POLL_S = 0.05


def wait_until(what: str, probe: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``probe`` until it returns something truthy (returned); fail with ``what`` after about ``deadline_s``
    of polls (a bounded number of polls, not a clock: a loaded machine only makes the wait longer)."""
    for _ in range(int(deadline_s / POLL_S)):
        got = probe()
        if got:
            return got
        time.sleep(POLL_S)
    pytest.fail(f"gave up after {deadline_s:g}s of polling for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_now(url: str) -> int:
    """Now by the clock of the HTTP server at ``url`` (its ``Date`` header, whole seconds), in Unix ns."""
    date = httpx.get(url, timeout=5).headers["Date"]
    return int(parsedate_to_datetime(date).timestamp()) * NS


class Sink:
    """A real HTTP server that records every JSON POST by path."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer._lock:
                    outer.got.append((self.path, json.loads(body)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for p, b in self.got if p == path]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.server.shutdown()
    s.server.server_close()


class Alertmanager:
    """The real ``prometheus-alertmanager`` on 127.0.0.1, own storage, clustering off."""

    def __init__(self, binary: str, workdir: Path, config: dict[str, Any], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "alertmanager.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.log = (workdir / "alertmanager.log").open("w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("Alertmanager to be ready", self._ready)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"Alertmanager exited: {Path(self.log.name).read_text()[-2000:]}"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts Alertmanager holds as active (resolved ones are left out)."""
        r = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        r.raise_for_status()
        return list(r.json())

    def now(self) -> int:
        """Now by Alertmanager's clock (whole seconds): what it compares startsAt and endsAt with."""
        return server_now(f"{self.url}/-/ready")

    def post(self, alerts: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    def failed_webhooks(self) -> float:
        """``alertmanager_notifications_failed_total`` of the webhook integration, from its /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("alertmanager_notifications_failed_total{") and 'integration="webhook"' in line)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    """Start Alertmanagers (each in its own directory); all are stopped after the test."""
    binary = require_tool("prometheus-alertmanager")
    started: list[Alertmanager] = []

    def start(config: dict[str, Any], port: int | None = None) -> Alertmanager:
        am = Alertmanager(binary, tmp_path / f"am{len(started)}", config, port)
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()


def hook_config(url: str) -> dict[str, Any]:
    return {"route": {"receiver": "hook", "group_by": ["alertname"], **FAST},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": url, "send_resolved": True}]}]}


def qfleet_service(engine: Engine, clock: FakeClock, doc: dict[str, Any]) -> AlertService:
    config, _ = config_from_dict(doc, source="test")
    return AlertService(engine, config, slos=(), rules=(), secret=b"s3cret", clock=clock,
                        external_url="https://qfleet.example")


ALERT = Alert(labels=labels_key({"alertname": "QpuDown", "severity": "page", "node": "qpu-a", "site": "delft"}),
              annotations=labels_key({"summary": "qpu-a stopped answering heartbeats"}), starts_at=0)


# -- qfleet -> Alertmanager ------------------------------------------------------------------------------------------


def test_qfleet_sends_its_alerts_to_alertmanager_which_notifies_them_and_their_resolution(
        sqlite_engine: Engine, sink: Sink, alertmanagers: Callable[..., Alertmanager]) -> None:
    am = alertmanagers(hook_config(f"{sink.base}/am"))
    port = am.port
    clock = FakeClock(am.now())
    t0 = clock()
    svc = qfleet_service(sqlite_engine, clock, {
        "route": {"receiver": "local"}, "receivers": [{"name": "local"}],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}})
    svc.state.sync([ALERT], t0, source="rules")
    stats = svc.evaluate(t0)
    assert (stats.pushed, stats.push_failures) == (1, 0)

    [held] = wait_until("Alertmanager to hold qfleet's alert", am.alerts)
    assert held["labels"] == dict(ALERT.labels) and held["annotations"] == dict(ALERT.annotations)
    assert parse_rfc3339(held["startsAt"]) == t0
    # Prometheus' rule: endsAt = now + 4 × max(evaluation interval 30s, resend delay 1m).
    assert parse_rfc3339(held["endsAt"]) == t0 + 4 * 60 * NS
    assert held["generatorURL"] == "https://qfleet.example/oncall?node=qpu-a"

    firing = wait_until("Alertmanager's firing webhook", lambda: sink.bodies("/am"))[0]
    assert firing["status"] == "firing" and firing["alerts"][0]["labels"] == dict(ALERT.labels)

    # An evaluation within the resend delay sends nothing again.
    clock.advance(1 * MS)
    assert svc.evaluate(clock()).pushed == 0

    # qfleet resolves it (at an instant Alertmanager's clock has passed: a resolution in Alertmanager's future
    # loses to the earlier, later-ending copy): Alertmanager drops it and says so.
    t1 = max(am.now(), clock())
    clock.now_ns = t1
    svc.state.sync([], t1, source="rules")
    assert svc.evaluate(t1).pushed == 1
    wait_until("Alertmanager to drop the resolved alert", lambda: am.alerts() == [])
    resolved = wait_until("Alertmanager's resolved webhook",
                          lambda: [b for b in sink.bodies("/am") if b["status"] == "resolved"])[0]
    [gone] = resolved["alerts"]
    assert gone["status"] == "resolved" and parse_rfc3339(gone["endsAt"]) == t1
    assert parse_rfc3339(gone["startsAt"]) == t0


def test_an_unreachable_alertmanager_is_a_counted_failure_and_the_next_cycle_delivers(
        sqlite_engine: Engine, sink: Sink, alertmanagers: Callable[..., Alertmanager]) -> None:
    first = alertmanagers(hook_config(f"{sink.base}/am"))
    port = first.port
    clock = FakeClock(first.now())
    t0 = clock()
    first.stop()                                     # Alertmanager is down
    svc = qfleet_service(sqlite_engine, clock, {
        "route": {"receiver": "local", "group_wait": "0s"},
        "receivers": [{"name": "local", "webhook_configs": [{"url": f"{sink.base}/local"}]}],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{port}"]}], "timeout": "2s"}],
                     "route_locally": False}})
    svc.state.sync([ALERT], t0, source="rules")
    stats = svc.evaluate(t0)
    assert (stats.pushed, stats.push_failures) == (0, 1)
    assert svc.pusher is not None and svc.pusher.failures_total == 1

    am = alertmanagers(hook_config(f"{sink.base}/am"), port=port)
    clock.advance(30 * NS)                           # the next cycle: the unsent alert is due at once
    stats = svc.evaluate(clock())
    assert (stats.pushed, stats.push_failures) == (1, 0)
    [held] = wait_until("Alertmanager to hold the alert", am.alerts)
    assert held["labels"] == dict(ALERT.labels) and parse_rfc3339(held["startsAt"]) == t0
    # route_locally: false -- instead of qfleet's routing, not beside it: nothing is notified locally.
    assert svc.dispatch(clock() + 60 * NS).notifications == 0
    assert wait_until("Alertmanager's webhook", lambda: sink.bodies("/am")) and sink.bodies("/local") == []


# -- Alertmanager -> qfleet ------------------------------------------------------------------------------------------


def test_alertmanager_webhooks_open_and_resolve_a_qfleet_incident_and_a_wrong_token_stores_nothing(
        sqlite_engine: Engine, tmp_path: Path, alertmanagers: Callable[..., Alertmanager]) -> None:
    good, bad = tmp_path / "good.token", tmp_path / "bad.token"
    good.write_text(TOKEN + "\n")
    bad.write_text("not-the-token\n")
    for f in (good, bad):
        os.chmod(f, 0o600)
    clock = FakeClock()
    transport = HttpTransport(MemoryConsumer(), TransportConfig(port=0, token=TOKEN),
                              extra_routes=[intake_route(sqlite_engine, clock=clock)])
    transport.start()
    try:
        host, qport = transport.address
        url = f"http://{host}:{qport}{INTAKE_PATH}"

        def hook(token: Path) -> dict[str, Any]:
            return {"url": url, "send_resolved": True,
                    "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token)}}}

        am = alertmanagers({
            "route": {"receiver": "team-pages", "group_by": ["alertname", "node"], **FAST,
                      "routes": [{"matchers": ['team="impostor"'], "receiver": "impostor"}]},
            "receivers": [{"name": "team-pages", "webhook_configs": [hook(good)]},
                          {"name": "impostor", "webhook_configs": [hook(bad)]}]})
        incidents = Incidents(sqlite_engine, clock=clock)
        starts = clock.now_ns = am.now()
        alert = {"labels": dict(ALERT.labels), "annotations": dict(ALERT.annotations),
                 "startsAt": format_rfc3339(starts), "generatorURL": "http://prometheus.example/graph"}
        am.post([alert])

        [inc] = wait_until("an incident from Alertmanager's webhook", incidents.list)
        assert inc["state"] == "open" and inc["receiver"] == "alertmanager:team-pages"
        assert inc["severity"] == "page" and inc["title"] == "qpu-a stopped answering heartbeats"
        [fired] = [e for e in incidents.timeline(inc["id"]) if e["kind"] == "fired"]
        assert fired["detail"]["labels"] == dict(ALERT.labels) and fired["detail"]["starts_at"] == starts
        [active] = AlertState(sqlite_engine).active()
        assert active.labels == ALERT.labels and active.starts_at == starts

        # An Alertmanager with the wrong token is refused (401, counted by Alertmanager as a failed
        # notification) and nothing of its alert is stored.
        am.post([{"labels": {"alertname": "Impostor", "team": "impostor"}, "startsAt": format_rfc3339(am.now())}])
        wait_until("Alertmanager to count the refused webhook", lambda: am.failed_webhooks() >= 1)
        assert [a.label("alertname") for a in AlertState(sqlite_engine).active()] == ["QpuDown"]
        assert len(incidents.list()) == 1

        # Alertmanager's resolved notification resolves the incident.
        ends = max(am.now(), starts)
        clock.now_ns = ends + 5 * NS
        am.post([{**alert, "endsAt": format_rfc3339(ends)}])
        wait_until("the incident to resolve", lambda: incidents.get(inc["id"])["state"] == "resolved")
        assert AlertState(sqlite_engine).active() == []
        [gone] = AlertState(sqlite_engine).resolved_since(starts)
        assert gone.ends_at == ends
        # ... and its postmortem builds like any other.
        pm = json.loads(render(build_postmortem(sqlite_engine, inc["id"]), "json"))
        assert pm["incident"]["title"] == "qpu-a stopped answering heartbeats"
        assert pm["incident"]["receiver"] == "alertmanager:team-pages" and pm["incident"]["state"] == "resolved"
    finally:
        transport.stop(timeout_s=5)


def test_a_malformed_webhook_is_refused_with_the_reason(sqlite_engine: Engine) -> None:
    route = intake_route(sqlite_engine, clock=FakeClock())
    ok = {"version": "4", "receiver": "r", "groupKey": "{}:{}", "status": "firing", "groupLabels": {},
          "alerts": [{"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2025-01-01T00:00:00Z"}]}
    for broken, needle in [({**ok, "version": "3"}, "version"),
                           ({**ok, "alerts": [{**ok["alerts"][0], "labels": {"alertname": 7}}]}, "labels.alertname"),
                           ({**ok, "alerts": [{**ok["alerts"][0], "status": "resolved"}]}, "endsAt")]:
        status, body = route.handler(json.dumps(broken).encode(), {"content-type": "application/json"})
        assert status == 400 and needle in json.loads(body)["error"], body
    status, _ = route.handler(b"not json", {"content-type": "application/json"})
    assert status == 400
    assert Incidents(sqlite_engine, clock=FakeClock()).list() == []


# -- PagerDuty fields ------------------------------------------------------------------------------------------------


def test_pagerduty_severity_class_component_and_group_match_alertmanagers_event(
        sqlite_engine: Engine, sink: Sink, alertmanagers: Callable[..., Alertmanager]) -> None:
    doc = {
        "route": {"receiver": "pd", "group_by": ["alertname", "node"], **FAST},
        "receivers": [{"name": "pd", "pagerduty_configs": [{
            "routing_key": "0123456789abcdef0123456789abcdef", "url": f"{sink.base}/pd",
            "severity": "warning", "class": "{{ .CommonLabels.alertname }}",
            "component": '{{ .GroupLabels.node }}/{{ index .CommonLabels "site" }}',
            "group": "site-{{ .CommonLabels.site }}{{ .CommonLabels.missing }}"}]}]}
    am = alertmanagers(doc)
    am.post([{"labels": dict(ALERT.labels), "annotations": dict(ALERT.annotations),
              "startsAt": format_rfc3339(am.now())}])
    [theirs] = wait_until("Alertmanager's PagerDuty event", lambda: sink.bodies("/pd"))

    clock = FakeClock(am.now())
    AlertState(sqlite_engine).sync([ALERT], clock(), source="rules")
    svc = qfleet_service(sqlite_engine, clock, doc)  # starts from the stored alert
    clock.advance(1 * NS)                            # past group_wait
    assert svc.dispatch(clock()).delivered == 1
    ours = [b for b in sink.bodies("/pd") if b is not theirs]
    assert len(ours) == 1, ours

    keys = ("severity", "class", "component", "group")
    assert {k: theirs["payload"].get(k) for k in keys} == {
        "severity": "warning", "class": "QpuDown", "component": "qpu-a/delft", "group": "site-delft"}
    assert {k: ours[0]["payload"].get(k) for k in keys} == {k: theirs["payload"].get(k) for k in keys}
    assert ours[0]["event_action"] == theirs["event_action"] == "trigger"


def test_alerts_go_in_batches_of_64_and_again_only_after_the_resend_delay(sqlite_engine: Engine, sink: Sink) -> None:
    # The sink stands in for an Alertmanager: it records each POST /api/v2/alerts body.
    clock = FakeClock()
    t0 = clock()
    many = [Alert(labels=labels_key({"alertname": "Heartbeat", "node": f"qpu-{i:02d}"}), starts_at=0)
            for i in range(65)]
    AlertState(sqlite_engine).sync(many, t0, source="rules")
    host = sink.base.removeprefix("http://")
    svc = qfleet_service(sqlite_engine, clock, {
        "route": {"receiver": "local"}, "receivers": [{"name": "local"}],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [host]}], "path_prefix": "/am"}],
                     "resend_delay": "1m"}})
    assert svc.evaluate(t0).pushed == 65
    assert [len(b) for b in sink.bodies("/am/api/v2/alerts")] == [64, 1]    # notifier.go maxBatchSize
    clock.advance(60 * NS)                            # not yet *more* than the resend delay
    assert svc.evaluate(clock()).pushed == 0
    clock.advance(1)
    assert svc.evaluate(clock()).pushed == 65


@pytest.mark.parametrize(("alerting", "needle"), [
    ({"alertmanagers": []}, "alerting.alertmanagers: no Alertmanager to send to"),
    ({"alertmanagers": [{"static_configs": [{"targets": ["am:9093"]}], "scheme": "ftp"}]},
     "alerting.alertmanagers[0].scheme: expected http or https, got 'ftp'"),
    ({"alertmanagers": [{"static_configs": [{"targets": ["am:9093"]}],
                         "authorization": {"credentials": "s3cret"}}]},
     "authorization.credentials: inline secrets are not accepted"),
    ({"alertmanagers": [{"static_configs": [{"targets": ["am:9093"]}]}], "resend_delay": "0s"},
     "alerting.resend_delay: cannot be zero"),
])
def test_a_bad_alerting_section_is_refused_at_load_naming_the_value_and_the_fix(alerting: dict[str, Any],
                                                                                  needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict({"route": {"receiver": "a"}, "receivers": [{"name": "a"}], "alerting": alerting})
    assert needle in str(e.value) and "(fix: " in str(e.value) and "s3cret" not in str(e.value)


def test_qfleet_serve_takes_alertmanagers_webhooks_on_its_otlp_port(
        tmp_path: Path, alertmanagers: Callable[..., Alertmanager]) -> None:
    """The same intake, mounted by ``qfleet serve`` itself (a subprocess): an alert a real Alertmanager routes to
    ``http://<serve>/api/v1/alertmanager`` with the service's token becomes an incident in the service's store."""
    token = tmp_path / "serve.token"
    token.write_text(TOKEN + "\n")
    os.chmod(token, 0o600)
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {**os.environ, "QFLEET_TOKEN_FILE": str(token), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qfleet.cli", "serve", "--db", db, "--port", "0"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        address = re.search(r"OTLP on (http://\S+?)[ ,]", line)
        assert address and INTAKE_PATH in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        am = alertmanagers({
            "route": {"receiver": "team-pages", "group_by": ["alertname"], **FAST},
            "receivers": [{"name": "team-pages", "webhook_configs": [{
                "url": address.group(1) + INTAKE_PATH, "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token)}}}]}]})
        am.post([{"labels": dict(ALERT.labels), "annotations": dict(ALERT.annotations),
                  "startsAt": format_rfc3339(am.now())}])
        from qfleet.collector import open_engine

        engine = open_engine(db)
        try:
            [inc] = wait_until("an incident in qfleet serve's store", Incidents(engine, clock=lambda: 0).list)
            assert inc["receiver"] == "alertmanager:team-pages" and inc["state"] == "open"
        finally:
            engine.dispose()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
