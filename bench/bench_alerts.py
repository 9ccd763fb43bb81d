"""10,000 active alerts across 500 groups: dispatched within one evaluation cycle (30 s).

Builds an alerting config with one webhook receiver on a real local HTTP server (127.0.0.1), stores 10,000 firing
alerts spread over 500 groups as alert state (the ``alerts`` table), feeds them to the timeline, then runs one
dispatch cycle: the flushes due after group_wait,
the Alertmanager v4 bodies, the outbox (a fresh SQLite file, one transaction) and signed delivery of all 500
notifications. Reports the phases and the total against the 30-second evaluation interval, and checks that the
receiver got exactly 500 bodies holding 10,000 alerts.

    .venv/bin/python bench/bench_alerts.py [--alerts 10000] [--groups 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from qfleet.alerts.config import config_from_dict
from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.outbox import Outbox, OutboxItem
from qfleet.alerts.payloads import idempotency_key, webhook_body
from qfleet.alerts.sources import AlertState
from qfleet.alerts.timeline import Dispatcher
from qfleet.alerts.webhook import Deliverer
from qfleet.collector import open_engine, upgrade
from qfleet.units import NS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=500)
    args = ap.parse_args(argv)
    got: list[dict] = []
    lock = threading.Lock()

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                got.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    config, _warnings = config_from_dict({
        "route": {"receiver": "hook", "group_by": ["group"], "group_wait": "30s", "group_interval": "5m"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": url}]}]}, source="bench")
    t0 = 1_800_000_000 * NS
    with tempfile.TemporaryDirectory(prefix="qfleet-alerts-bench-") as d:
        engine = open_engine(f"sqlite:///{Path(d) / 'qfleet.alerts.db'}")
        upgrade(engine)
        clock = [t0]
        outbox = Outbox(engine, clock=lambda: clock[0])
        deliverer = Deliverer(outbox, secret=b"bench-secret", clock=lambda: clock[0])
        dispatcher = Dispatcher(config)
        alerts = [Alert(labels=labels_key({"alertname": "QfleetSLOBurnRate", "group": f"g{i % args.groups}",
                                           "node": f"qpu-{i}", "severity": "page"}), starts_at=t0)
                  for i in range(args.alerts)]
        s0 = time.perf_counter()
        changed = AlertState(engine).sync(alerts, t0, source="bench")  # the `alerts` table
        a0 = time.perf_counter()
        for alert in changed:
            dispatcher.update(alert, t0)
        a1 = time.perf_counter()
        clock[0] = t0 + 31 * NS
        notes = dispatcher.advance(clock[0])
        a2 = time.perf_counter()
        items = [OutboxItem(id=idempotency_key(n, "hook", 0), receiver="hook", integration="webhook", url=url,
                            group_key=n.group_key, payload=webhook_body(n, receiver_name="hook",
                                                                        external_url="http://127.0.0.1"))
                 for n in notes]
        outbox.enqueue(items)
        a3 = time.perf_counter()
        stats = deliverer.run_once(limit=len(items) + 1)
        a4 = time.perf_counter()
        engine.dispose()
    server.shutdown()
    alerts_received = sum(len(b["alerts"]) for b in got)
    assert len(notes) == args.groups and len(got) == args.groups and alerts_received == args.alerts, (
        len(notes), len(got), alerts_received, stats)
    total = a4 - s0
    out = {"bench": "alerts", "alerts": args.alerts, "groups": args.groups, "state_sync_s": round(a0 - s0, 3),
           "ingest_s": round(a1 - a0, 3),
           "flush_s": round(a2 - a1, 3), "payloads_and_outbox_s": round(a3 - a2, 3), "delivery_s": round(a4 - a3, 3),
           "dispatch_cycle_s": round(total, 3), "cycle_budget_s": 30.0, "notifications": len(got)}
    print(f"{args.alerts:,} alerts in {args.groups} groups -> {len(got)} signed webhook notifications, "
          f"{alerts_received:,} alerts received")
    print(f"  one cycle {total:.3f} s against a 30 s evaluation interval: alert state in SQL {a0 - s0:.3f}, timeline "
          f"{a1 - a0:.3f}, flush {a2 - a1:.3f}, payloads and outbox {a3 - a2:.3f}, signed delivery {a4 - a3:.3f}")
    out["cores"], out["loadavg"] = os.cpu_count(), [round(x, 2) for x in os.getloadavg()]
    print(f"machine: {out['cores']} cores, load average {' '.join(map(str, out['loadavg']))}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
