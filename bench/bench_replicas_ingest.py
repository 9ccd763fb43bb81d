"""Benchmark: OTLP/HTTP ingest rate with several receiver processes on one PostgreSQL database.

Creates a fresh PostgreSQL database per run, migrates it, starts ``--replicas`` receiver
processes on it (this script in ``--serve`` mode: :class:`Receiver` on port 0), and sends the
same pre-encoded requests (default 100 x 500 spans, 7 attributes each, as in
``bench_otlp_http.py``) from ``--clients`` keep-alive client threads spread round-robin over the
receivers, honouring 503 + Retry-After. Measures spans/s from the first send to the last
acknowledgement (= commit), checks the count in the database, and prints the ratio of each
replica count against the first (the baseline, 1 by default) with load average and cores.

    .venv/bin/python bench/bench_replicas_ingest.py                    # 1 vs 3 replicas
    .venv/bin/python bench/bench_replicas_ingest.py --replicas 1 2 3 --runs 2

Needs PostgreSQL: ``$QFLEET_TEST_PG_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
names a database from which new ones can be created.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_otlp_http import TOKEN, build_requests, client  # noqa: E402  (a sibling script, not a package)

ADMIN_URL = os.environ.get("QFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def serve(url: str) -> int:
    """Child mode: a receiver on ``url`` until stdin closes."""
    from qfleet.collector.receiver import Receiver, ReceiverConfig
    from qfleet.collector.store import Store, open_engine

    engine = open_engine(url)
    rx = Receiver(Store(engine), ReceiverConfig(port=0, token=TOKEN))
    rx.start()
    host, port = rx.address
    print(f"{host} {port}", flush=True)
    sys.stdin.read()
    rx.stop()
    engine.dispose()
    return 0


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL.replace("+psycopg", ""), autocommit=True) as c:
        c.execute(sql)


def run_once(bodies: list[bytes], n_spans: int, replicas: int, clients: int) -> dict[str, Any]:
    from qfleet.collector.migrate import upgrade
    from qfleet.collector.store import open_engine

    name = f"qfleet_bench_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    children: list[subprocess.Popen[str]] = []
    try:
        engine = open_engine(url)
        upgrade(engine)
        for _ in range(replicas):
            children.append(subprocess.Popen([sys.executable, __file__, "--serve", url], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True))
        addresses = []
        for ch in children:
            assert ch.stdout is not None
            host, port = ch.stdout.readline().split()
            addresses.append((host, int(port)))
        shares = [bodies[i::clients] for i in range(clients)]
        stats = {"retries": 0}
        lock = threading.Lock()
        threads = [threading.Thread(target=client, args=(addresses[i % replicas], s, stats, lock))
                   for i, s in enumerate(shares)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t0
        with engine.connect() as c:
            stored = c.exec_driver_sql("SELECT COUNT(*) FROM spans").scalar_one()
        engine.dispose()
    finally:
        for ch in children:
            assert ch.stdin is not None
            ch.stdin.close()
        for ch in children:
            ch.wait(120)
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {"replicas": replicas, "clients": clients, "seconds": round(elapsed, 2),
            "spans_per_s": round(n_spans / elapsed), "stored": stored, "retries": stats["retries"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=50_000)
    ap.add_argument("--per-request", type=int, default=500)
    ap.add_argument("--clients", type=int, default=6, help="client threads, one keep-alive connection each")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 3], help="receiver counts; the first is "
                    "the baseline of the ratio")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve)
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores", file=sys.stderr)
    bodies = build_requests(args.spans, args.per_request)
    results: dict[int, list[dict[str, Any]]] = {r: [] for r in args.replicas}
    for _ in range(args.runs):  # interleaved, so that a change in machine load hits every count alike
        for r in args.replicas:
            res = run_once(bodies, args.spans, r, args.clients)
            print(json.dumps(res), file=sys.stderr)
            if res["stored"] != args.spans:
                print(f"FAILED: {res['stored']} spans stored, {args.spans} sent", file=sys.stderr)
                return 2
            results[r].append(res)
    median = {r: sorted(x["spans_per_s"] for x in v)[len(v) // 2] for r, v in results.items()}
    base = median[args.replicas[0]]
    print(json.dumps({"bench": "replicas_ingest_postgresql", "spans": args.spans, "clients": args.clients,
                      "runs": args.runs, "median_spans_per_s": median,
                      "ratio_to_baseline": {r: round(v / base, 2) for r, v in median.items()},
                      "load_average": os.getloadavg(), "cores": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
