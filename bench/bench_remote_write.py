"""Benchmark: Prometheus remote write 1.0 into SQLite through `qfleet collector serve`, against the raw ceiling.

Builds remote write bodies as Prometheus 2.42 sends them (snappy protobuf, ``--per-request`` samples of
distinct series per request, one sample per series per scrape round; series shaped like a scraped exporter:
counters, gauges and histogram buckets with ``job``, ``instance`` and three more labels), then:

* end to end: the collector runs in its own process (``qfleet collector serve`` on a fresh SQLite file);
  ``--clients`` threads (Prometheus' shards) POST the bodies over keep-alive connections, honour 503 +
  ``Retry-After``, and the time runs from the first send until the last sample is acknowledged (204 =
  committed). Then the database count and the collector's own counters are checked.
* decode only: :func:`decode_write_request` + :func:`from_write_request` of the same bodies, in this process.
* raw ceiling: the same series and sample rows (converted outside the timing) into the same migrated
  tables with stdlib ``sqlite3`` ``executemany`` in one transaction, WAL, ``synchronous=NORMAL``, on a fresh
  database from ``bench_bulk.fresh_sqlite`` (the ceiling's setup shared with the span benchmark).

Median of ``--runs``. Prints the load average and cores, a table, and one JSON line.

    .venv/bin/python bench/bench_remote_write.py --samples 200000 --series 2000 --clients 4 --runs 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_bulk import fresh_sqlite
from bench_otlp_http import drive_collector

from qfleet.collector.limits import Limits
from qfleet.collector.prompb import Series, decode_write_request, encode_write_request
from qfleet.collector.remote_write import TypeCache, from_write_request
from qfleet.collector.rows import SERIES_COLUMNS, TelemetryBatch

TOKEN = "bench-token"
T0_MS = 1_795_000_000_000
STEP_MS = 15_000  # Prometheus' default scrape interval
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "qfleet-bench",
           "Authorization": f"Bearer {TOKEN}"}
BUCKETS = ("0.001", "0.01", "0.1", "1.0", "+Inf")


def series_labels(n: int) -> list[dict[str, str]]:
    """``n`` series as one exporter family mix: a third counters, a third gauges, a third histogram buckets."""
    out = []
    for i in range(n):
        node = f"qpu-{i % 64:02d}"
        base = {"job": "qpu-exporter", "instance": f"10.0.0.{i // 100}:9100",  # 100 series per target
                "qfleet_node_id": node, "qfleet_hardware_type": ("superconducting", "trapped-ion")[i % 2],
                "site": ("lab-a", "lab-b", "lab-c")[i % 3]}
        kind = i % 3
        if kind == 0:
            out.append({"__name__": "qpu_jobs_total", "qfleet_outcome": f"o{i // 3}", **base})
        elif kind == 1:
            out.append({"__name__": "qpu_fridge_temperature_kelvin", "sensor": f"s{i // 3}", **base})
        else:
            out.append({"__name__": "qpu_job_duration_seconds_bucket", "le": BUCKETS[i // 3 % len(BUCKETS)],
                        "q": f"{i // 15}", **base})
    return out


def build_bodies(samples: int, n_series: int, per_request: int) -> list[bytes]:
    """Scrape rounds of every series, cut into requests of ``per_request`` samples (one per series)."""
    labels = series_labels(n_series)
    rounds = samples // n_series
    bodies = []
    for r in range(rounds):
        t = T0_MS + r * STEP_MS
        for lo in range(0, n_series, per_request):
            bodies.append(encode_write_request(
                [Series(lab, [(t, float(r * 10 + i % 7) + 0.25)]) for i, lab in enumerate(labels[lo:lo + per_request],
                                                                                          lo)]))
    return bodies


def client(address: tuple[str, int], bodies: list[bytes], stats: dict[str, int], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection(*address, timeout=120)
    retries = 0
    for body in bodies:
        while True:
            conn.request("POST", "/api/v1/write", body=body, headers=HEADERS)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status == 204:
                break
            if resp.status in (429, 503):
                retries += 1
                time.sleep(float(resp.getheader("Retry-After") or 1))
                continue
            raise SystemExit(f"unexpected HTTP {resp.status}: {text[:200]!r}")
    conn.close()
    with lock:
        stats["retries"] += retries


def end_to_end(bodies: list[bytes], samples: int, clients: int, workdir: Path) -> dict[str, Any]:
    d = drive_collector(workdir, "rw", [], "metric_samples", [bodies[i::clients] for i in range(clients)], client)
    m, elapsed = d["metrics"], d["seconds"]
    return {"seconds": elapsed, "samples_per_s": samples / elapsed, "stored": d["stored"],
            "stored_total": m.get("qfleet_collector_stored_total{signal=metric_points}", -1.0),
            "dropped": m.get("qfleet_collector_dropped_total{signal=metric_points}", -1.0),
            "rejected": sum(v for k, v in m.items() if k.startswith("qfleet_collector_rejected_total")),
            "client_retries": d["client_retries"],
            "transactions": int(m.get("qfleet_collector_write_seconds_count", 0.0)), "exit_code": d["exit_code"]}


def decode_only(bodies: list[bytes]) -> tuple[float, list[TelemetryBatch]]:
    """Seconds to decode and convert every body, and the batches (the raw ceiling's rows)."""
    types, limits = TypeCache(), Limits()
    t = time.perf_counter()
    batches = [from_write_request(decode_write_request(b, 1 << 26), limits, types).batch for b in bodies]
    return time.perf_counter() - t, batches


def raw_ceiling(batches: list[TelemetryBatch]) -> float:
    """The same series and sample rows with stdlib ``executemany``, one transaction; seconds for the samples."""
    merged = TelemetryBatch()
    for b in batches:
        merged.extend(b)
    ids = {fp: i + 1 for i, fp in enumerate(merged.series)}
    series = [(ids[fp], *(json.dumps(v) if isinstance(v, dict) else v for v in row.values))
              for fp, row in merged.series.items()]
    rows = [(ids[fp], t, v) for fp, t, v in merged.samples]
    with fresh_sqlite() as url:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for res in merged.resources.values():
            conn.execute("INSERT INTO resources (fingerprint, service_name, attributes, first_seen_unix_nano) "
                         "VALUES (?, ?, ?, 0)", (res.fingerprint, res.service_name, json.dumps(res.attributes)))
        conn.executemany(f"INSERT INTO metric_series (id, {', '.join(SERIES_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * (len(SERIES_COLUMNS) + 1))})", series)
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO metric_samples (series_id, time_unix_nano, value) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
        dt = time.perf_counter() - t
        n = conn.execute("SELECT COUNT(*) FROM metric_samples").fetchone()[0]
        conn.close()
    assert n == len(rows), (n, len(rows))
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--per-request", type=int, default=500, help="Prometheus 2.42's max_samples_per_send")
    ap.add_argument("--clients", type=int, default=4, help="client threads (Prometheus shards)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    samples = args.samples // args.series * args.series
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores", file=sys.stderr)
    bodies = build_bodies(samples, args.series, args.per_request)
    size = sum(map(len, bodies))
    print(f"{len(bodies)} requests of {args.per_request} samples, {size / 1e6:.1f} MB snappy "
          f"({size / samples:.1f} B/sample)", file=sys.stderr)
    e2e, dec, raw = [], [], []
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-rw-") as tmp:
        for _ in range(args.runs):
            e2e.append(end_to_end(bodies, samples, args.clients, Path(tmp)))
            seconds, batches = decode_only(bodies)
            dec.append(samples / seconds)
            raw.append(samples / raw_ceiling(batches))
            del batches
    ok = all(r["stored"] == samples and r["dropped"] == 0 and r["stored_total"] >= samples and not r["rejected"]
             and r["exit_code"] == 0 for r in e2e)
    cols = ("seconds", "samples_per_s", "stored", "dropped", "rejected", "client_retries", "transactions",
            "exit_code")
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in e2e:
        print(" | ".join(f"{round(r[c], 3) if isinstance(r[c], float) else r[c]!s:>14}" for c in cols))
    med = statistics.median(r["samples_per_s"] for r in e2e)
    med_raw, med_dec = statistics.median(raw), statistics.median(dec)
    print(f"end to end {med:,.0f} samples/s; decode+convert only {med_dec:,.0f}/s; raw sqlite3 ceiling "
          f"{med_raw:,.0f}/s; ratio {med / med_raw:.3f}", file=sys.stderr)
    print(f"load average {os.getloadavg()}", file=sys.stderr)
    print(json.dumps({"bench": "remote_write_sqlite", "samples": samples, "series": args.series,
                      "per_request": args.per_request, "clients": args.clients, "runs": args.runs,
                      "median_samples_per_s": round(med), "decode_convert_samples_per_s": round(med_dec),
                      "raw_ceiling_samples_per_s": round(med_raw), "ratio_to_raw": round(med / med_raw, 3),
                      "verified": ok, "load_average": os.getloadavg(), "cores": os.cpu_count()}))
    if not ok:
        print("FAILED: stored count, dropped or rejected counter wrong", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
