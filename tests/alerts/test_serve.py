"""`qfleet serve` as a process: a simulated outage pages a real local webhook receiver with a signed body, SIGTERM
stops it cleanly, and a restart resumes from the database without paging again.

No clock is read here: the store holds simulated time and ``--start-at`` runs the service's clock from its end;
signatures are checked against the time they carry, which must lie in the simulated run's last hour; the test
waits on events (a request arrived, the process exited), each with a generous bound.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qfleet.alerts.payloads import SIGNATURE_HEADER, verify
from qfleet.collector import Store, open_engine, upgrade
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.faults import Fault, FaultKind, FaultSchedule
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.units import NS, format_rfc3339, parse_rfc3339

MIN = 60 * NS


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.arrived:
                    outer.posts.append((dict(self.headers), body))
                    outer.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, bound_s: float) -> bool:
        """Whether ``n`` requests arrive (an event wait; ``bound_s`` only keeps a broken run from hanging)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.posts) >= n, bound_s)


def _signed_at(header: str) -> int:
    """The Unix seconds a ``t=<s>,v2=<hex>`` signature header carries."""
    return int(dict(part.split("=", 1) for part in header.split(","))["t"])


def _serve(db: str, config: Path, env: dict[str, str], start_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qfleet.cli", "serve", "--db", db, "--config", str(config),
                             "--port", "0", "--eval-interval", "1", "--dispatch-interval", "1",
                             "--start-at", format_rfc3339(start_at)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.mark.slow
def test_serve_pages_once_survives_sigterm_and_restart(tmp_path: Path, rx: Receiver) -> None:
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
    fleet = load_fleet(builtin_fleet_path("line"))
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=30 * MIN)
    sim = Simulation(fleet, FaultSchedule((outage,)), RunConfig(duration_ns=40 * MIN))
    end = sim.config.start_ns + 40 * MIN   # the service starts where the recording ends, the outage still on
    sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
    for step in sim.steps():
        sink.write(step)
    sink.close()
    engine.dispose()
    env = {**os.environ, "QFLEET_TOKEN_FILE": str(tmp_path / "token"), "PYTHONUNBUFFERED": "1"}

    proc = _serve(db, config, env, end)
    try:
        assert rx.wait(1, 300), f"no page: {proc.stderr.read() if proc.poll() is not None else 'still running'}"
        time.sleep(3)  # let the cycle finish whatever else it sends (more, or nothing: both are checked below)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        stopped = re.search(r"stopped at (\S+)", out)
        assert stopped, out
    finally:
        if proc.poll() is None:
            proc.kill()
    restart = parse_rfc3339(stopped.group(1))   # the service's clock when it stopped: time goes on from there
    assert restart >= end
    secret = (config / "webhook.secret").read_bytes().strip()
    keys_before = set()
    for headers, body in rx.posts:
        signed_at = _signed_at(headers[SIGNATURE_HEADER])   # the service's clock: simulated time
        assert end // NS <= signed_at <= restart // NS
        key = headers["Idempotency-Key"]
        assert verify(secret, headers[SIGNATURE_HEADER], body, key=key, now_s=signed_at)
        assert not verify(secret, headers[SIGNATURE_HEADER], body + b" ", key=key, now_s=signed_at)
        keys_before.add(headers["Idempotency-Key"])
        doc: dict[str, Any] = json.loads(body)
        assert doc["version"] == "4" and doc["status"] == "firing"
    paged = [json.loads(b) for _, b in rx.posts]
    assert any(a["labels"].get("node") == "qpu-d" or "node-availability" in json.dumps(a["labels"])
               for p in paged for a in p["alerts"])
    sent = len(rx.posts)

    proc = _serve(db, config, env, restart)
    try:
        time.sleep(12)  # several evaluation and dispatch cycles (a slow machine runs fewer: still checked)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Nothing the receiver already acknowledged is sent again; anything re-sent would carry a known key.
    again = rx.posts[sent:]
    assert all(h["Idempotency-Key"] in keys_before for h, _ in again), [h["Idempotency-Key"] for h, _ in again]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_bad_external_url_is_one_line_and_writes_nothing(how: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from qfleet.serve import main

    db = tmp_path / "q.db"
    monkeypatch.chdir(tmp_path)
    args = ["--db", f"sqlite:///{db}", "--port", "0"]
    if how == "flag":
        with pytest.raises(SystemExit) as e:
            main([*args, "--external-url", "dashboards.example"])
        assert e.value.code == 2
    else:
        monkeypatch.setenv("QFLEET_EXTERNAL_URL", "dashboards.example")
        assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'dashboards.example'" in err[0] and "https://" in err[0], err
    assert not db.exists()
