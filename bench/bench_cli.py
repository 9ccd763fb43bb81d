"""Start-up cost of qfleet's commands, side by side with the tools they stand beside.

Each command runs ``--runs`` times as a fresh process on the same input; the median wall time is reported, with
the ratio to the peer where there is one:

* ``qfleet alerts routes test`` vs ``amtool config routes test`` on the sample ``alerts/alerting.yaml`` (minus
  its ``qfleet:`` key, which amtool does not know) for the same labels; target: within 10x amtool;
* ``qfleet slo validate default`` vs ``promtool check rules`` on the rules ``qfleet slo rules default`` writes
  (both read and check the same SLOs);
* ``qfleet --help`` and ``qfleet sim experiment bell`` on their own (no peer), and ``python -c pass`` as the
  floor every Python command pays.

Commands run as a user's Python runs them, with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` is removed from
their environment: without it every qfleet module is compiled from source on every start). Also counts the
modules each qfleet command imports (``python -X importtime``) and whether SQLAlchemy or the
OpenTelemetry SDK are among them (they should not be for these commands).

    .venv/bin/python bench/bench_cli.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
QFLEET = [sys.executable, "-m", "qfleet.cli"]
LABELS = ["severity=page", "team=hardware", "alertname=QfleetNodeHeartbeatMissing"]
TARGET_ROUTES_RATIO = 10.0
HEAVY = ("sqlalchemy", "opentelemetry.sdk", "psycopg", "streamlit", "pandas")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(cmd: list[str], runs: int) -> float:
    """Median wall seconds of ``runs`` fresh runs (after one warm-up run that fills the OS page cache and the
    bytecode cache)."""
    subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT, env=ENV)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT, env=ENV)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _imports(args: list[str]) -> tuple[int, list[str]]:
    """How many modules ``qfleet ARGS`` imports, and which of :data:`HEAVY` are among them."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "qfleet.cli", *args], capture_output=True,
                         text=True, cwd=ROOT, env=ENV)
    names = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")]
    names = [n for n in names if n and n != "package"]
    heavy = sorted({h for h in HEAVY for n in names if n.strip() == h or n.strip().startswith(h + ".")})
    return len(names), heavy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per command (median reported)")
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    args = ap.parse_args(argv)
    amtool, promtool = shutil.which("amtool"), shutil.which("promtool")
    if amtool is None or promtool is None:
        print("bench_cli: needs amtool and promtool (apt-get install prometheus-alertmanager prometheus)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-cli-") as tmp:
        am = Path(tmp) / "alertmanager.yml"
        doc = yaml.safe_load((ROOT / "alerts" / "alerting.yaml").read_text())
        doc.pop("qfleet", None)
        am.write_text(yaml.safe_dump(doc))
        rules = Path(tmp) / "rules.yml"
        subprocess.run([*QFLEET, "slo", "rules", "default", "-o", str(rules)], check=True, capture_output=True,
                       cwd=ROOT)
        # Both tools must give the same answer before their speed is compared.
        ours = subprocess.run([*QFLEET, "alerts", "routes", "test", "--config", str(ROOT / "alerts" / "alerting.yaml"),
                               *LABELS], capture_output=True, text=True, cwd=ROOT).stdout.split()
        peer = subprocess.run([amtool, "config", "routes", "test", "--config.file", str(am), *LABELS],
                              capture_output=True, text=True, cwd=ROOT).stdout.split()
        if ours != peer:
            print(f"bench_cli: qfleet routes test says {ours}, amtool says {peer}", file=sys.stderr)
            return 1
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], None, None),
            ("qfleet --help", [*QFLEET, "--help"], None, ["--help"]),
            ("routes test", [*QFLEET, "alerts", "routes", "test", "--config", str(ROOT / "alerts" / "alerting.yaml"),
                             *LABELS],
             [amtool, "config", "routes", "test", "--config.file", str(am), *LABELS],
             ["alerts", "routes", "test", "--config", str(ROOT / "alerts" / "alerting.yaml"), *LABELS]),
            ("slo validate", [*QFLEET, "slo", "validate", "default"], [promtool, "check", "rules", str(rules)],
             ["slo", "validate", "default"]),
            ("sim experiment", [*QFLEET, "sim", "experiment", "bell", "--shots", "1000"], None,
             ["sim", "experiment", "bell", "--shots", "1000"]),
        ]
        rows = []
        for name, cmd, peer_cmd, imp_args in cases:
            ours_s = _wall(cmd, args.runs)
            peer_s = _wall(peer_cmd, args.runs) if peer_cmd else None
            n, heavy = _imports(imp_args) if imp_args else (0, [])
            rows.append({"command": name, "qfleet_s": round(ours_s, 4), "peer": Path(peer_cmd[0]).name if peer_cmd
                         else None, "peer_s": None if peer_s is None else round(peer_s, 4),
                         "ratio": None if peer_s is None else round(ours_s / peer_s, 1), "modules": n,
                         "heavy_imports": heavy})
    load = [round(x, 2) for x in os.getloadavg()]
    routes = next(r for r in rows if r["command"] == "routes test")
    met = routes["ratio"] is not None and routes["ratio"] <= TARGET_ROUTES_RATIO
    out = {"bench": "cli", "runs": args.runs, "cores": os.cpu_count(), "loadavg": load, "rows": rows,
           "routes_test_target_ratio": TARGET_ROUTES_RATIO, "routes_test_target_met": met}
    if not args.json:
        print(f"machine: {os.cpu_count()} cores, load average {load[0]} {load[1]} {load[2]}; median of {args.runs} runs")
        print(f"{'command':<16}{'qfleet':>10}{'peer':>22}{'ratio':>8}{'modules':>9}  heavy imports")
        for r in rows:
            peer = f"{r['peer']} {r['peer_s'] * 1000:.0f} ms" if r["peer_s"] is not None else "-"
            ratio = f"{r['ratio']:.1f}x" if r["ratio"] is not None else "-"
            print(f"{r['command']:<16}{r['qfleet_s'] * 1000:>7.0f} ms{peer:>22}{ratio:>8}{r['modules'] or '-':>9}  "
                  f"{', '.join(r['heavy_imports']) or '-'}")
        print(f"routes test within {TARGET_ROUTES_RATIO:g}x amtool: {'yes' if met else 'NO'}")
    print(json.dumps(out))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
