"""Instructions a span for OTLP decoding (``decode_body``), counted by valgrind's callgrind.

Wall and CPU time on this machine class swing with whatever else runs; the instruction count of the same
interpreter, inputs and code does not, so a change to the decoding path is compared by it. The script counts a
run that only imports and loads the requests, and a run that also decodes them, and prints the difference per
span, for the compiled decoder (the default path) and for the pure-Python path it falls back to. Run it with
another checkout's interpreter to compare two versions.

    .venv/bin/python bench/decode_instructions.py --spans 20000
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _child(path: str, decode: bool, pure: bool) -> None:
    from qfleet.collector import span_rows
    from qfleet.collector.decode import decode_body

    if pure:
        span_rows._WIRE = None  # what an install without the compiled decoder runs

    bodies = pickle.loads(Path(path).read_bytes())
    if decode:
        for b in bodies:
            decode_body("spans", b, "application/x-protobuf", gzipped=False, max_bytes=1 << 26)


def _count(path: str, decode: bool, pure: bool, workdir: Path) -> int:
    out = workdir / f"callgrind.{int(decode)}{int(pure)}.out"
    r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                        "--child", path, *(["--decode"] if decode else []), *(["--pure"] if pure else [])],
                       capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode or not m:
        raise SystemExit(f"callgrind failed: {r.stderr[-500:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=20_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.decode, args.pure)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian package valgrind)")
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_otlp_http import build_requests

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bodies.pkl"
        path.write_bytes(pickle.dumps(build_requests(args.spans, 500)))
        base = _count(str(path), False, False, Path(d))
        per_span = {name: (_count(str(path), True, pure, Path(d)) - base) / args.spans
                    for name, pure in (("compiled", False), ("pure_python", True))}
    for name, n in per_span.items():
        print(f"decoding, {name.replace('_', '-')} path: {n:,.0f} instructions a span ({args.spans:,} spans)")
    # Instruction counts do not depend on the load; printed anyway, as every benchmark here does.
    machine = {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(f"machine: {machine['cores']} cores, load average {' '.join(map(str, machine['loadavg']))}")
    print(json.dumps({"bench": "decode_instructions", "spans": args.spans,
                      "instructions_per_span": {k: round(v) for k, v in per_span.items()}, **machine}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
