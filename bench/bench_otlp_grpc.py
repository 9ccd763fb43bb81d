"""Benchmark: OTLP/gRPC and OTLP/HTTP side by side, end to end into SQLite, against the raw store ceiling.

One script, the same rows three ways, interleaved per run (so drift hits every path alike), a fresh
SQLite file each:

* raw ceiling: the spans of the requests below, decoded once by qfleet's own decoder, inserted by
  stdlib ``sqlite3`` ``executemany`` in one transaction into the migrated ``spans`` table
  (``bench_bulk.sqlite_raw``: WAL, ``synchronous=NORMAL``, same indexes);
* OTLP/HTTP: ``bench_otlp_http.run_once``: ``qfleet collector serve`` in its own process, pre-encoded
  protobuf ``ExportTraceServiceRequest`` bodies POSTed by client threads (keep-alive), 503 honoured;
* OTLP/gRPC: the same collector command with ``--grpc-port``, the same bodies sent as raw bytes on
  ``TraceService/Export`` by client threads (one channel each), ``UNAVAILABLE`` honoured with its
  ``RetryInfo`` delay.

Both OTLP rates run from the first send until the last request is acknowledged (= committed), and
each run checks the row count in the database and that the collector dropped nothing.

    .venv/bin/python bench/bench_otlp_grpc.py                        # 200k spans, 4 clients, 1 run
    .venv/bin/python bench/bench_otlp_grpc.py --spans 100000 --runs 3

Prints the load average and cores, a table, and a final JSON line. Target: each OTLP path at least
``--target`` (0.5) times the raw ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bulk import fresh_sqlite, raw_tuples, sqlite_raw  # noqa: E402  (sibling scripts, not a package)
from bench_otlp_http import TOKEN, build_requests, drive_collector, run_once  # noqa: E402

from qfleet.collector.decode import decode_body  # noqa: E402
from qfleet.collector.otlp import MEDIA_PROTOBUF  # noqa: E402

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def raw_ceiling(bodies: list[bytes]) -> tuple[float, int]:
    """Seconds for the raw ``executemany`` of the requests' spans (decoded beforehand, untimed), and the rows."""
    batches = [decode_body("spans", b, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=len(b)) for b in bodies]
    resource, rows = raw_tuples(batches, encode_json=True)
    with fresh_sqlite() as url:
        return sqlite_raw(url, resource, rows), len(rows)


def _retry_delay(err: grpc.RpcError) -> float:
    trailers = dict(err.trailing_metadata() or ())
    st = status_pb2.Status.FromString(trailers.get("grpc-status-details-bin", b""))
    for detail in st.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return 1.0


def grpc_client(target: str, bodies: list[bytes], stats: dict[str, int], lock: threading.Lock) -> None:
    retries = 0
    with grpc.insecure_channel(target) as channel:
        export = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        for body in bodies:
            while True:
                try:
                    export(body, metadata=metadata, timeout=120)
                    break
                except grpc.RpcError as err:
                    if err.code() is not grpc.StatusCode.UNAVAILABLE:
                        raise SystemExit(f"unexpected gRPC status {err.code()}: {err.details()}") from None
                    retries += 1
                    time.sleep(_retry_delay(err))
    with lock:
        stats["retries"] += retries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grpc_run(bodies: list[bytes], n_spans: int, clients: int, workdir: Path) -> dict[str, Any]:
    """One OTLP/gRPC run against a fresh collector process; the result verified in its database."""
    port = _free_port()
    d = drive_collector(workdir, "grpc", ["--grpc-port", str(port)], "spans",
                        [bodies[i::clients] for i in range(clients)], grpc_client,
                        target=lambda _http: f"127.0.0.1:{port}")
    m = d["metrics"]
    return {"spans": n_spans, "seconds": round(d["seconds"], 3), "spans_per_s": round(n_spans / d["seconds"]),
            "stored": d["stored"], "dropped": m.get("qfleet_collector_dropped_total{signal=spans}", -1.0),
            "client_retries": d["client_retries"],
            "transactions": int(m.get("qfleet_collector_write_seconds_count", 0)), "exit_code": d["exit_code"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--per-request", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4, help="client threads per OTLP path")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.5, help="least OTLP rate / raw ceiling (exit 1 below)")
    args = ap.parse_args()

    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores", file=sys.stderr)
    bodies = build_requests(args.spans, args.per_request)
    rates: dict[str, list[float]] = {"raw": [], "http": [], "grpc": []}
    ok = True
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-") as tmp:
        for run in range(args.runs):
            seconds, n = raw_ceiling(bodies)
            rates["raw"].append(n / seconds)
            h = run_once(bodies, args.spans, args.clients, Path(tmp), [])
            g = grpc_run(bodies, args.spans, args.clients, Path(tmp))
            rates["http"].append(h["spans_per_s"])
            rates["grpc"].append(g["spans_per_s"])
            for name, r in (("http", h), ("grpc", g)):
                verified = r["stored"] == args.spans and r["dropped"] == 0 and r["exit_code"] == 0
                ok &= verified
                print(f"run {run + 1} {name}: {r['spans_per_s']:,} spans/s, stored {r['stored']}, dropped "
                      f"{r['dropped']}, retries {r['client_retries']}, {r['transactions']} transactions"
                      f"{'' if verified else '  NOT VERIFIED'}", file=sys.stderr)
            ok &= n == args.spans
    med = {k: round(statistics.median(v)) for k, v in rates.items()}
    ratio = {k: round(med[k] / med["raw"], 3) for k in ("http", "grpc")}
    print(f"{args.spans} spans in {len(bodies)} requests of {args.per_request}, {args.clients} clients, "
          f"median of {args.runs}")
    print(f"{'path':<36} {'spans/s':>9} {'vs raw':>7}")
    print(f"{'raw sqlite3 executemany (ceiling)':<36} {med['raw']:>9,} {1:>7.2f}")
    print(f"{'OTLP/HTTP end to end':<36} {med['http']:>9,} {ratio['http']:>7.2f}")
    print(f"{'OTLP/gRPC end to end':<36} {med['grpc']:>9,} {ratio['grpc']:>7.2f}")
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(map(str, load))}")
    print(json.dumps({"bench": "otlp_grpc_http_sqlite", "spans": args.spans, "per_request": args.per_request,
                      "clients": args.clients, "runs": args.runs, "median_spans_per_s": med, "ratio_to_raw": ratio,
                      "all_runs": rates, "target_ratio": args.target, "verified": ok, "load_average": load,
                      "cores": os.cpu_count()}))
    if not ok:
        print("FAILED: a stored count or the dropped counter is wrong", file=sys.stderr)
        return 2
    return 0 if min(ratio.values()) >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
