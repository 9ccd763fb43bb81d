"""Benchmark: where one collector's CPU goes, in process: OTLP decoding against the store write.

Decodes the same pre-encoded requests as ``bench_otlp_http.py`` (500 spans of 7 attributes each) with
``decode_body``, then writes the batches two at a time (as the receiver coalesces them) into a fresh SQLite file,
and prints spans per CPU second of each step, with the load average. Run it with another checkout's interpreter
(its own virtual environment) to compare two versions on the same machine.

    .venv/bin/python bench/bench_decode_write.py --spans 40000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=40_000)
    args = ap.parse_args()
    from qfleet.collector.decode import decode_body
    from qfleet.collector.migrate import upgrade
    from qfleet.collector.store import Store, open_engine

    spec = importlib.util.spec_from_file_location("bench_otlp_http", Path(__file__).with_name("bench_otlp_http.py"))
    assert spec is not None and spec.loader is not None
    requests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(requests)
    bodies = requests.build_requests(args.spans, 500)
    t = time.process_time()
    batches = [decode_body("spans", b, "application/x-protobuf", gzipped=False, max_bytes=1 << 26) for b in bodies]
    decode_s = time.process_time() - t
    with tempfile.TemporaryDirectory() as d:
        engine = open_engine(f"sqlite:///{d}/bench.db")
        upgrade(engine)
        store = Store(engine)
        t = time.process_time()
        for i in range(0, len(batches), 2):
            store.write_many(batches[i:i + 2])
        write_s = time.process_time() - t
        engine.dispose()
    print(json.dumps({"bench": "decode_write", "spans": args.spans,
                      "decode_spans_per_cpu_s": round(args.spans / decode_s),
                      "write_spans_per_cpu_s": round(args.spans / write_s),
                      "load_average": os.getloadavg(), "cores": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
