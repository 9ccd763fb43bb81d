"""`qfleet serve` as a process: a simulated outage pages a real local webhook receiver with a signed body, SIGTERM
stops it cleanly, and a restart resumes from the database without paging again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qfleet.alerts.payloads import SIGNATURE_HEADER, verify
from qfleet.collector import Store, open_engine, upgrade
from qfleet.simulator.engine import NS, RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink

MIN = 60 * NS


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return len(self.posts) >= n


def _serve(db: str, config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qfleet.cli", "serve", "--db", db, "--config", str(config),
                             "--port", "0", "--eval-interval", "1", "--dispatch-interval", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_serve_pages_once_survives_sigterm_and_restart(tmp_path: Path) -> None:
    rx = Receiver()
    config = tmp_path / "conf"
    config.mkdir()
    (config / "alerting.yaml").write_text(f"""route:
  receiver: pages
  group_by: [alertname, slo]
  group_wait: 1s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: pages
    webhook_configs: [{{url: "{rx.url}"}}]
""")
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = open_engine(db)
    upgrade(engine)
    now = time.time_ns() // MIN * MIN
    fleet = load_fleet(builtin_fleet_path("line"))
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=30 * MIN)
    sim = Simulation(fleet, FaultSchedule((outage,)), RunConfig(duration_ns=40 * MIN, start_ns=now - 40 * MIN))
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
    for step in sim.steps():
        sink.write(step)
    sink.close()
    engine.dispose()
    env = {**os.environ, "QFLEET_TOKEN_FILE": str(tmp_path / "token"), "PYTHONUNBUFFERED": "1"}

    proc = _serve(db, config, env)
    try:
        assert rx.wait(1, 90), f"no page within 90 s: {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(3)  # let the cycle finish whatever else it sends
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
    secret = (config / "webhook.secret").read_bytes().strip()
    keys_before = set()
    for headers, body in rx.posts:
        assert verify(secret, headers[SIGNATURE_HEADER], body, now_s=time.time())
        keys_before.add(headers["Idempotency-Key"])
        doc: dict[str, Any] = json.loads(body)
        assert doc["version"] == "4" and doc["status"] == "firing"
    paged = [json.loads(b) for _, b in rx.posts]
    assert any(a["labels"].get("node") == "qpu-d" or "node-availability" in json.dumps(a["labels"])
               for p in paged for a in p["alerts"])
    sent = len(rx.posts)

    proc = _serve(db, config, env)
    try:
        time.sleep(12)  # several evaluation and dispatch cycles
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Nothing the receiver already acknowledged is sent again; anything re-sent would carry a known key.
    again = rx.posts[sent:]
    assert all(h["Idempotency-Key"] in keys_before for h, _ in again), [h["Idempotency-Key"] for h, _ in again]
    rx.server.shutdown()
