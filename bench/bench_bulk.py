"""Bulk span ingest: qfleet's columnar path against the raw driver ceiling, same rows, same table.

For each backend, the same N span rows (24 columns, ~186 B attribute JSON, hex ids) go
into a freshly migrated ``spans`` table (qfleet's schema, so the indexes match):

* raw ceiling: SQLite: stdlib ``sqlite3`` ``executemany`` in one transaction, WAL,
  ``synchronous=NORMAL``; PostgreSQL: psycopg binary ``COPY`` with ``set_types``. Rows are
  pre-built tuples with the attribute JSON already encoded (the ceiling does no Python work
  per row beyond the driver's).
* qfleet: ``SpanColumns(...).to_batch(...)`` then ``Store.write`` in batches (one
  transaction each), timed with and without the ``to_batch`` conversion.

With ``--prototype``, a third path times :func:`prototype_to_batch`, a proposed
column-at-a-time ``SpanColumns.to_batch`` defined here (qfleet itself does not use it).

Median of ``--runs`` runs, a fresh database per run. Prints a table and one JSON line.

    .venv/bin/python bench/bench_bulk.py --rows 200000 --runs 3 --backend both [--prototype] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import operator
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

from qfleet.collector.convert import SPAN_COLUMNS, SpanColumns, TelemetryBatch, resource_row
from qfleet.collector.migrate import upgrade
from qfleet.collector.rows import MAX_NS
from qfleet.collector.store import Store, open_engine

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_800_000_000_000_000_000
SERVICE = "simulator"
NODES = [f"qpu-{c}" for c in "abcdefgh"]
HARDWARE = ["superconducting", "trapped-ion", "neutral-atom", "photonic"]


def make_columns(n: int) -> dict[str, list[Any]]:
    """Realistic columns: ten spans per trace, one root each, ~186 B of attributes."""
    idx = range(n)
    return {
        "trace_id": [f"{(i // 10) * 0x9E3779B97F4A7C15 + 1:032x}"[-32:] for i in idx],
        "span_id": [f"{i * 0x9E3779B1 + 1:016x}"[-16:] for i in idx],
        "parent_span_id": [None if i % 10 == 0 else f"{(i // 10 * 10) * 0x9E3779B1 + 1:016x}"[-16:]
                           for i in idx],
        "name": ["job.run" if i % 10 == 0 else ("circuit.execute", "link.teleport", "decode")[i % 3]
                 for i in idx],
        "start_time_unix_nano": [T0 + i * 50_000 for i in idx],
        "end_time_unix_nano": [T0 + i * 50_000 + 20_000 + i % 997 for i in idx],
        "kind": [2 if i % 10 == 0 else 1 for i in idx],
        "status_code": [2 if i % 53 == 0 else 0 for i in idx],
        "status_message": ["readout timeout" if i % 53 == 0 else "" for i in idx],
        "attributes": [{"qfleet.shots": 1000, "qfleet.logical_errors": i % 7,
                        "qfleet.circuit": "surface_code:rotated_memory_z", "qfleet.distance": 5,
                        "qfleet.rounds": 5, "qfleet.decoder": "pymatching", "qfleet.p_phys": 0.001}
                       for i in idx],
        "node_id": [NODES[i % len(NODES)] for i in idx],
        "link_id": [f"{NODES[i % 8]}~{NODES[(i + 1) % 8]}" if i % 3 == 1 else None for i in idx],
        "job_id": [f"job-{i // 10:08d}" for i in idx],
        "run_id": [f"run-{i // 100:07d}" for i in idx],
        "hardware_type": [HARDWARE[i % 4] for i in idx],
    }


def to_batches(cols: dict[str, list[Any]], batch_size: int) -> list[TelemetryBatch]:
    """The qfleet conversion: SpanColumns per chunk, then to_batch."""
    n = len(cols["trace_id"])
    out = []
    for lo in range(0, n, batch_size):
        chunk = {k: v[lo:lo + batch_size] for k, v in cols.items()}
        out.append(SpanColumns(**chunk).to_batch(service_name=SERVICE))
    return out


def raw_tuples(batches: list[TelemetryBatch], *, encode_json: bool) -> tuple[tuple[Any, ...], list[tuple]]:
    """Pre-built rows in SPAN_COLUMNS order (attributes JSON-encoded) plus the resource row."""
    j = SPAN_COLUMNS.index("attributes")
    rows = []
    for b in batches:
        for r in b.spans:
            rows.append((*r[:j], json.dumps(r[j], separators=(",", ":")), *r[j + 1:]) if encode_json else r)
    res = next(iter(batches[0].resources.values()))
    return (res.fingerprint, res.service_name, json.dumps(res.attributes), T0), rows


# ---------------------------------------------------------------------------
# SQLite


@contextmanager
def fresh_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-") as d:
        url = f"sqlite:///{Path(d) / 'bench.db'}"
        e = open_engine(url)
        upgrade(e)
        e.dispose()
        yield url


def sqlite_raw(url: str, resource: tuple[Any, ...], rows: list[tuple]) -> float:
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("INSERT INTO resources VALUES (?, ?, ?, ?)", resource)
    sql = (f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(SPAN_COLUMNS))})")
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    dt = time.perf_counter() - t
    n = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    conn.close()
    assert n == len(rows), (n, len(rows))
    return dt


# ---------------------------------------------------------------------------
# PostgreSQL


@contextmanager
def fresh_pg() -> Iterator[str]:
    import psycopg

    name = f"qfleet_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        e = open_engine(url)
        upgrade(e)
        e.dispose()
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_raw(url: str, resource: tuple[Any, ...], rows: list[tuple]) -> float:
    import psycopg
    from psycopg.types.json import set_json_dumps

    from qfleet.collector.schema import Span
    from qfleet.collector.store import _pg_type

    types = [_pg_type(Span.__table__, c) for c in SPAN_COLUMNS]
    with psycopg.connect(url) as conn:
        # The attribute JSON is pre-encoded, as on SQLite: pass it through unchanged.
        set_json_dumps(lambda s: s, context=conn)
        conn.execute("INSERT INTO resources VALUES (%s, %s, %s::jsonb, %s)", resource)
        conn.commit()
        t = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(f"COPY spans ({', '.join(SPAN_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(types)
                for r in rows:
                    cp.write_row(r)
        conn.commit()
        dt = time.perf_counter() - t
        n = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]  # type: ignore[index]
    assert n == len(rows), (n, len(rows))
    return dt


# ---------------------------------------------------------------------------
# Prototype of a span_rows.py change (not used by qfleet; measures the gain)


def prototype_to_batch(columns: SpanColumns) -> TelemetryBatch:
    """``SpanColumns.to_batch`` with whole-column validation and ``zip``-built rows.

    The same rows (checked in :func:`main`); a batch holding an invalid row falls back to
    the per-row path, which describes each rejected row.
    """
    c = columns
    n = len(c)
    tids, sids, starts, ends = c.trace_id, c.span_id, c.start_time_unix_nano, c.end_time_unix_nano
    # Validate whole columns at C speed instead of row by row in Python.
    valid = n == 0 or (set(map(len, tids)) == {32} and set(map(len, sids)) == {16}
                       and min(starts) > 0 and max(ends) <= MAX_NS
                       and all(map(operator.le, starts, ends)))
    if not valid:
        return c.to_batch(service_name=SERVICE)
    batch = TelemetryBatch()
    res = resource_row(batch, {"service.name": SERVICE})

    def col(values: Sequence[Any] | None, default: Any) -> Iterable[Any]:
        return values if values is not None else repeat(default, n)

    attrs: Sequence[Any] | None = c.attributes
    if attrs is None:
        attrs = [{} for _ in range(n)]
    elif None in attrs:
        attrs = [a if a is not None else {} for a in attrs]
    batch.spans.extend(zip(
        tids, sids, col(c.parent_span_id, None), repeat(res.fingerprint, n),
        repeat(res.service_name, n), repeat("", n), c.name, col(c.kind, 1), starts, ends,
        map(operator.sub, ends, starts), col(c.status_code, 0), col(c.status_message, ""),
        repeat("", n), repeat(0, n), attrs, repeat(0, n), repeat(0, n), repeat(0, n),
        col(c.node_id, None), col(c.link_id, None), col(c.job_id, None), col(c.run_id, None),
        col(c.hardware_type, None), strict=True))
    return batch


# ---------------------------------------------------------------------------
# qfleet path


def qfleet_write(url: str, batches: list[TelemetryBatch], store_cls: type[Store] = Store) -> float:
    engine = open_engine(url)
    store = store_cls(engine, clock=lambda: T0)
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    dt = time.perf_counter() - t
    n = store.count("spans")
    engine.dispose()
    assert n == sum(len(b.spans) for b in batches), n
    return dt


def _to_batch(columns: SpanColumns) -> TelemetryBatch:
    return columns.to_batch(service_name=SERVICE)


def qfleet_convert_and_write(url: str, cols: dict[str, list[Any]], batch_size: int,
                             store_cls: type[Store] = Store,
                             to_batch: Callable[[SpanColumns], TelemetryBatch] = _to_batch) -> float:
    engine = open_engine(url)
    store = store_cls(engine, clock=lambda: T0)
    n = len(cols["trace_id"])
    t = time.perf_counter()
    for lo in range(0, n, batch_size):
        chunk = {k: v[lo:lo + batch_size] for k, v in cols.items()}
        store.write(to_batch(SpanColumns(**chunk)))
    dt = time.perf_counter() - t
    stored = store.count("spans")
    engine.dispose()
    assert stored == n, stored
    return dt


# ---------------------------------------------------------------------------


def bench_backend(backend: str, cols: dict[str, list[Any]], batches: list[TelemetryBatch],
                  runs: int, batch_size: int, *, prototype: bool, profile: bool) -> dict[str, Any]:
    n = len(cols["trace_id"])
    fresh = fresh_sqlite if backend == "sqlite" else fresh_pg
    raw_fn = sqlite_raw if backend == "sqlite" else pg_raw
    resource, rows = raw_tuples(batches, encode_json=True)
    # The script holds three copies of the data (columns, batches, raw rows: ~1M objects).
    # Freeze them so that garbage collections inside the timed regions do not rescan
    # them: a producer would not keep them alive, and the raw path allocates too little
    # to trigger collections at all.
    gc.collect()
    gc.freeze()
    variants: dict[str, Callable[[str], float]] = {
        "raw": lambda u: raw_fn(u, resource, rows),
        "write": lambda u: qfleet_write(u, batches),
        "total": lambda u: qfleet_convert_and_write(u, cols, batch_size),
    }
    if prototype:
        variants["proto_total"] = lambda u: qfleet_convert_and_write(u, cols, batch_size, Store,
                                                                     prototype_to_batch)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):  # interleaved, so drift hits every path alike; a fresh database each
        for key, fn in variants.items():
            with fresh() as url:
                times[key].append(fn(url))
    gc.unfreeze()
    med = {k: statistics.median(v) for k, v in times.items()}
    if profile:
        with fresh() as url:
            prof = cProfile.Profile()
            prof.enable()
            qfleet_convert_and_write(url, cols, batch_size)
            prof.disable()
        print(f"\n--- cProfile, qfleet path incl. to_batch, {backend} ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    out: dict[str, Any] = {"backend": backend, "rows": n, "runs": runs, "batch_size": batch_size,
                           "raw_rows_per_s": round(n / med["raw"]), "target": 0.6}
    for key in variants:
        if key != "raw":
            out[f"{key}_rows_per_s"] = round(n / med[key])
            out[f"ratio_{key}"] = round(med["raw"] / med[key], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--prototype", action="store_true",
                    help="also time prototype_to_batch (a proposed vectorised SpanColumns.to_batch)")
    ap.add_argument("--profile", action="store_true", help="cProfile one qfleet run per backend")
    args = ap.parse_args(argv)

    cols = make_columns(args.rows)
    batches = to_batches(cols, args.batch_size)
    if args.prototype:
        sample = SpanColumns(**{k: v[:2000] for k, v in cols.items()})
        assert prototype_to_batch(sample).spans == sample.to_batch(service_name=SERVICE).spans
    attr_len = statistics.mean(len(json.dumps(a, separators=(",", ":"))) for a in cols["attributes"][:1000])
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = [bench_backend(b, cols, batches, args.runs, args.batch_size,
                             prototype=args.prototype, profile=args.profile) for b in backends]

    print(f"\n{args.rows} spans, {len(SPAN_COLUMNS)} columns, {attr_len:.0f} B attribute JSON, "
          f"batches of {args.batch_size}, median of {args.runs}")
    print(f"{'backend':<11} {'path':<44} {'rows/s':>9} {'vs raw':>7}")
    labels = {"write": "qfleet Store.write (to_batch excluded)",
              "total": "qfleet to_batch + Store.write",
              "proto_total": "prototype_to_batch + Store.write"}
    for r in results:
        print(f"{r['backend']:<11} {'raw ceiling':<44} {r['raw_rows_per_s']:>9,} {1:>7.2f}")
        for key, label in labels.items():
            if f"ratio_{key}" in r:
                print(f"{'':<11} {label:<44} {r[f'{key}_rows_per_s']:>9,} {r[f'ratio_{key}']:>7.2f}")
    print(f"target: qfleet / raw >= {results[0]['target']}")
    machine = {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(f"machine: {machine['cores']} cores, load average {' '.join(map(str, machine['loadavg']))}")
    print(json.dumps({"bench": "bulk", "attr_json_bytes": round(attr_len), "results": results, **machine}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
