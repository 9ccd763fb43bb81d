"""Benchmark: OTLP/HTTP on loopback, end to end into SQLite, through `qfleet collector serve`.

Starts the collector as a subprocess on a temporary SQLite file, POSTs pre-encoded
protobuf ExportTraceServiceRequests (default 400 x 500 spans, 7 attributes each) over
keep-alive http.client connections from client threads, honours 503 + Retry-After, and
measures spans/s from the first send until the last span is acknowledged (= committed).
Then checks the database count and the collector's own counters (dropped must be 0).

    .venv/bin/python bench/bench_otlp_http.py                 # 200k spans, 4 client threads
    .venv/bin/python bench/bench_otlp_http.py --spans 50000 --clients 2 --runs 3

Prints the load average and cores with the result. To compare with another checkout, run the
same script with that checkout first on ``PYTHONPATH`` (the collector subprocess inherits it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "bench-token"
T0 = 1_795_000_000_000_000_000


def _kv(key: str, v: Any) -> KeyValue:
    if isinstance(v, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=v))
    if isinstance(v, int):
        return KeyValue(key=key, value=AnyValue(int_value=v))
    if isinstance(v, float):
        return KeyValue(key=key, value=AnyValue(double_value=v))
    return KeyValue(key=key, value=AnyValue(string_value=v))


def build_requests(n_spans: int, per_request: int, seed: int = 7) -> list[bytes]:
    """Pre-encoded requests of realistic spans: job -> circuit children, 7 attributes each."""
    rng = random.Random(seed)
    bodies = []
    made = 0
    while made < n_spans:
        n = min(per_request, n_spans - made)
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        node = rng.randrange(16)
        rs.resource.attributes.extend([_kv("service.name", "qpu-runtime"),
                                       _kv("host.name", f"node-{node:02d}.fleet")])
        ss = rs.scope_spans.add()
        ss.scope.name = "qfleet.runtime"
        trace_id, root = rng.randbytes(16), b""
        for i in range(n):
            if i % 10 == 0:
                trace_id, root = rng.randbytes(16), b""
            start = T0 + (made + i) * 1_000_000
            sid = rng.randbytes(8)
            sp = ss.spans.add(trace_id=trace_id, span_id=sid, parent_span_id=root,
                              name="job.run" if not root else "circuit.execute", kind=1 if root else 2,
                              start_time_unix_nano=start,
                              end_time_unix_nano=start + rng.randrange(10_000, 5_000_000))
            sp.attributes.extend([
                _kv("qfleet.node.id", f"node-{node:02d}"),
                _kv("qfleet.link.id", f"link-{node:02d}-{(node + 1) % 16:02d}"),
                _kv("qfleet.job.id", f"job-{(made + i) // 10:07d}"),
                _kv("qfleet.hardware.type", "superconducting"),
                _kv("circuit.depth", rng.randrange(5, 200)),
                _kv("circuit.shots", 1000),
                _kv("link.fidelity", round(rng.uniform(0.9, 0.99), 4)),
            ])
            if not root:
                root = sid
        bodies.append(req.SerializeToString())
        made += n
    return bodies


def start_collector(db: Path, token_file: Path, log: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes],
                                                                                       tuple[str, int]]:
    exe = shutil.which("qfleet") or str(Path(sys.executable).parent / "qfleet")
    with log.open("ab") as err:
        proc = subprocess.Popen([exe, "collector", "serve", "--db", f"sqlite:///{db}", "--port", "0",
                                 "--token-file", str(token_file), *extra],
                                stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    out = proc.stdout
    # The reader ends at EOF, when the collector exits; it closes the pipe then.
    def read() -> None:
        with out:
            for x in iter(out.readline, b""):
                lines.put(x)

    threading.Thread(target=read, daemon=True).start()
    line = lines.get(timeout=60).decode()
    m = re.search(r"listening on http://([\d.]+):(\d+)", line)
    if not m:
        raise SystemExit(f"collector did not start: {line!r}; see {log}")
    return proc, (m.group(1), int(m.group(2)))


def client(address: tuple[str, int], bodies: list[bytes], stats: dict[str, int], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection(*address, timeout=120)
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"}
    retries = 0
    for body in bodies:
        while True:
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                break
            if resp.status in (429, 503):
                retries += 1
                time.sleep(float(resp.getheader("Retry-After") or 1))
                continue
            raise SystemExit(f"unexpected HTTP {resp.status}")
    conn.close()
    with lock:
        stats["retries"] += retries


def scrape(address: tuple[str, int]) -> dict[str, float]:
    c = http.client.HTTPConnection(*address, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))
            out[key] = s.value
    return out


def drive_collector(workdir: Path, name: str, extra: list[str], table: str, shares: list[list[bytes]],
                    send: Callable[[Any, list[bytes], dict[str, int], threading.Lock], None],
                    target: Callable[[tuple[str, int]], Any] = lambda address: address) -> dict[str, Any]:
    """One timed run against a fresh ``qfleet collector serve`` (own process, fresh SQLite file): a client thread
    per share calls ``send(target(http_address), share, stats, lock)``; the collector is stopped and the rows in
    ``table`` counted. Returns the seconds from the first send to the last answer, the scraped metrics, the rows
    stored, the client retries and the collector's exit code. Shared by the OTLP/HTTP, OTLP/gRPC and remote-write
    benchmarks, so the three time and verify the same way."""
    db = workdir / f"{name}-{time.monotonic_ns()}.db"
    token_file = workdir / "token"
    if not token_file.exists():
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
    proc, address = start_collector(db, token_file, workdir / f"{name}.collector.log", extra)
    try:
        stats = {"retries": 0}
        lock = threading.Lock()
        dest = target(address)
        threads = [threading.Thread(target=send, args=(dest, s, stats, lock)) for s in shares]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        m = scrape(address)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
    con = sqlite3.connect(db)
    stored = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    con.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return {"seconds": elapsed, "metrics": m, "stored": stored, "client_retries": stats["retries"],
            "exit_code": rc}


def run_once(bodies: list[bytes], n_spans: int, clients: int, workdir: Path, extra: list[str]) -> dict[str, Any]:
    d = drive_collector(workdir, "bench", extra, "spans", [bodies[i::clients] for i in range(clients)], client)
    m, elapsed = d["metrics"], d["seconds"]
    tx = m.get("qfleet_collector_write_seconds_count", 0.0)
    return {
        "spans": n_spans, "requests": len(bodies), "clients": clients, "seconds": round(elapsed, 3),
        "spans_per_s": round(n_spans / elapsed), "stored": d["stored"],
        "dropped": m.get("qfleet_collector_dropped_total{signal=spans}", -1.0),
        "stored_total": m.get("qfleet_collector_stored_total{signal=spans}", -1.0),
        "refused_503": sum(v for k, v in m.items() if k.startswith("qfleet_collector_refused_total")),
        "client_retries": d["client_retries"], "transactions": int(tx),
        "mean_tx_ms": round(1000 * m.get("qfleet_collector_write_seconds_sum", 0.0) / tx, 1) if tx else None,
        "exit_code": d["exit_code"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--per-request", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4, help="client threads, one keep-alive connection each")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--target", type=float, default=15_000, help="spans/s to reach (exit 1 below it)")
    ap.add_argument("--queue-items", type=int, default=None, help="passed to qfleet collector serve")
    args = ap.parse_args()
    extra = [] if args.queue_items is None else ["--queue-items", str(args.queue_items)]

    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores", file=sys.stderr)
    t = time.perf_counter()
    bodies = build_requests(args.spans, args.per_request)
    size = sum(map(len, bodies))
    print(f"built {len(bodies)} requests, {size / 1e6:.1f} MB ({size / args.spans:.0f} B/span) "
          f"in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-") as tmp:
        for _ in range(args.runs):
            results.append(run_once(bodies, args.spans, args.clients, Path(tmp), extra))
    ok = True
    cols = ("spans", "clients", "seconds", "spans_per_s", "stored", "dropped", "refused_503",
            "client_retries", "transactions", "mean_tx_ms", "exit_code")
    print(" | ".join(f"{c:>12}" for c in cols))
    for r in results:
        print(" | ".join(f"{r[c]!s:>12}" for c in cols))
        ok &= r["stored"] == args.spans and r["dropped"] == 0 and r["stored_total"] >= args.spans
    best = max(r["spans_per_s"] for r in results)
    median = sorted(r["spans_per_s"] for r in results)[len(results) // 2]
    print(json.dumps({"bench": "otlp_http_sqlite", "spans": args.spans, "per_request": args.per_request,
                      "clients": args.clients, "runs": len(results), "median_spans_per_s": median,
                      "best_spans_per_s": best, "target": args.target, "verified": ok,
                      "load_average": os.getloadavg(), "cores": os.cpu_count()}))
    if not ok:
        print("FAILED: stored count or dropped counter wrong", file=sys.stderr)
        return 2
    return 0 if median >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
