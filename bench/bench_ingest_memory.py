"""Benchmark: peak RSS of the OTLP/HTTP receiver under concurrent maximum-size requests.

Starts a receiver (this script in ``--serve`` mode: :class:`Receiver` on a temporary SQLite
file) as a child process, then sends ``--concurrent`` (default 8) copies of one request of
about ``--mib`` MiB (default 20, the default ``max_body_bytes``) made of spans with many
attributes, from as many client threads at once. Clients honour 503 + ``Retry-After`` and
resend until each request is committed. The figure is the child's peak RSS (``VmHWM`` in
``/proc/<pid>/status``), before the load and after it, with the number of 503 answers and
the wall time; load average and cores are printed for context.

    .venv/bin/python bench/bench_ingest_memory.py                         # 8 x 20 MiB
    .venv/bin/python bench/bench_ingest_memory.py --max-inflight-bytes 48  # another budget (MiB)
    .venv/bin/python bench/bench_ingest_memory.py --mib 5 --concurrent 4   # a quick look

Run it against another checkout by putting that checkout first on ``PYTHONPATH``;
``--max-inflight-bytes`` is then left out unless given (older receivers have no byte budget).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-memory-token"
T0 = 1_795_000_000_000_000_000
MIB = 1024 * 1024


def build_body(mib: float, attrs_per_span: int) -> tuple[bytes, int, int]:
    """One ExportTraceServiceRequest just under ``mib`` MiB: (body, spans, attributes)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    limit = int(mib * MIB)
    template = Span(name="job.run", kind=2, start_time_unix_nano=T0, end_time_unix_nano=T0 + 1000)
    template.attributes.extend(KeyValue(key=f"k{j}", value=AnyValue(int_value=j)) for j in range(attrs_per_span))
    per_span = len(template.SerializeToString()) + 40  # ids and framing
    n = max(1, limit // per_span)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="bench-memory"))
    ss = rs.scope_spans.add()
    for i in range(n):
        sp = ss.spans.add()
        sp.CopyFrom(template)
        sp.trace_id = (i + 1).to_bytes(16, "big")
        sp.span_id = (i + 1).to_bytes(8, "big")
    body = req.SerializeToString()
    while len(body) > limit:  # the estimate was short: drop spans until it fits
        del ss.spans[-1]
        n -= 1
        body = req.SerializeToString()
    return body, n, n * attrs_per_span


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes (Linux /proc)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def serve(args: argparse.Namespace) -> int:
    """Child mode: a receiver on a fresh SQLite file until stdin closes."""
    from qfleet.collector.migrate import upgrade
    from qfleet.collector.receiver import Receiver, ReceiverConfig
    from qfleet.collector.store import Store, open_engine

    engine = open_engine(f"sqlite:///{args.serve}")
    upgrade(engine)
    extra: dict[str, Any] = {}
    if args.max_inflight_bytes is not None:
        extra["max_inflight_bytes"] = int(args.max_inflight_bytes * MIB)
    rx = Receiver(Store(engine), ReceiverConfig(port=0, token=TOKEN, max_body_bytes=int(args.mib * MIB) + MIB,
                                                ack_timeout_s=600, queue_items=10**7, **extra))
    rx.start()
    host, port = rx.address
    print(f"{host} {port}", flush=True)
    sys.stdin.read()  # the parent closes stdin when done
    rx.stop()
    return 0


def client(address: tuple[str, int], body: bytes, results: list[dict[str, Any]], lock: threading.Lock) -> None:
    refused = 0
    t0 = time.perf_counter()
    while True:
        c = http.client.HTTPConnection(*address, timeout=900)
        c.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf",
                                                             "Authorization": f"Bearer {TOKEN}"})
        resp = c.getresponse()
        resp.read()
        c.close()
        if resp.status == 200:
            break
        if resp.status != 503:
            raise SystemExit(f"unexpected HTTP {resp.status}")
        refused += 1
        time.sleep(float(resp.getheader("Retry-After") or 1))
    with lock:
        results.append({"refused_503": refused, "seconds": round(time.perf_counter() - t0, 1)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=float, default=20.0, help="request size in MiB (default 20)")
    ap.add_argument("--attrs-per-span", type=int, default=1000)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--max-inflight-bytes", type=float, default=None,
                    help="the receiver's byte budget in MiB (default: ReceiverConfig's default)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)

    cores = os.cpu_count()
    print(f"load average {os.getloadavg()}, {cores} cores", file=sys.stderr)
    t = time.perf_counter()
    body, n_spans, n_attrs = build_body(args.mib, args.attrs_per_span)
    print(f"request: {len(body) / MIB:.1f} MiB, {n_spans} spans, {n_attrs} attributes "
          f"(built in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-mem-") as tmp:
        cmd = [sys.executable, __file__, "--serve", str(Path(tmp) / "mem.db"), "--mib", str(args.mib)]
        if args.max_inflight_bytes is not None:
            cmd += ["--max-inflight-bytes", str(args.max_inflight_bytes)]
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdin is not None
        host, port = child.stdout.readline().split()
        address = (host, int(port))
        idle = proc_status(child.pid)
        results: list[dict[str, Any]] = []
        lock = threading.Lock()
        threads = [threading.Thread(target=client, args=(address, body, results, lock))
                   for _ in range(args.concurrent)]
        peak_rss = 0
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            peak_rss = max(peak_rss, proc_status(child.pid)["VmRSS"])
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        loaded = proc_status(child.pid)
        child.stdin.close()
        child.wait(600)
    print(json.dumps({
        "bench": "ingest_memory", "request_mib": round(len(body) / MIB, 1), "spans_per_request": n_spans,
        "attributes_per_request": n_attrs, "concurrent": args.concurrent,
        "max_inflight_bytes_mib": args.max_inflight_bytes, "committed": len(results),
        "refused_503": sum(r["refused_503"] for r in results), "seconds": round(elapsed, 1),
        "rss_idle_mb": round(idle["VmRSS"] / 1e6), "peak_rss_mb": round(loaded["VmHWM"] / 1e6),
        "sampled_peak_rss_mb": round(peak_rss / 1e6), "load_average": os.getloadavg(), "cores": cores,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
