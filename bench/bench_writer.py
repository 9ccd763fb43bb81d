"""The simulator's writer alone, in CPU seconds: what its rows cost it, and what fewer rows per job would save.

The speed issue's slice is bound by the engine and the writer process together, the fleet-day by the writer, and
the machine class drifts by a third within the hour, so their wall times cannot tell a writer change of 10 % from
noise. This script takes the engine out: it simulates fleet100's first ``--minutes`` (fleet100-day's faults,
seed 7) once, keeps each step pickled as the engine hands it to the writer process, and then runs the writer
process's own loop (``qfleet.simulator.sinks``) in this process on those steps, into a fresh SQLite file each
time, timing its CPU (user + system, which includes the kernel's side of its writes). Six settings, alternating,
``--runs`` times each; the medians are compared with the first, the baseline of the same run:

* ``pace``: one step queued each time the writer looks (a writer keeping pace with the engine: a transaction
  per step, rollups and a checkpoint every ten simulated minutes, as when it waits for the engine);
* ``behind``: every step queued from the start (a writer behind the engine: 32 steps to a transaction, as
  through most of the fleet-day);
* ``pace, routine folded`` and ``behind, routine folded``: the same with the spans named
  ``qfleet.measurement``, ``qfleet.feedforward`` and ``qfleet.entanglement.request`` whose status is not an
  error removed before the writer sees them: the most that folding a successful job's routine sub-spans into
  its job span could save (the job span's few extra columns are not charged);
* ``pace, 4 KiB pages`` and ``behind, 4 KiB pages``: the same as the first two into a file made with SQLite's
  default page size before the store opens it (as every store file was before the store chose 16 KiB pages for
  new files; an existing file keeps its own).

Then the span table's own cost per row, by index: the span rows the first run stored, read back and inserted with
stdlib ``sqlite3`` ``executemany`` (the store's page size, WAL, ``synchronous=NORMAL``, a transaction per
simulated step's worth of rows) into the table as migrated with no secondary index (the baseline), with each of
its four secondary indexes alone, and with all of them (as stored). Last, the storage side of a fold: the same
rows, 16 steps' worth to a transaction, with the routine sub-spans above stored as rows (as today), dropped (the
floor), as rows of a second table keyed by time with no secondary index, or packed as one JSON row per trace and
minute (:func:`fold_layouts`).

Prints tables, the machine (cores, load average) and one JSON line.

    .venv/bin/python bench/bench_writer.py                 # --minutes 120 --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import queue
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

import qfleet
from qfleet.collector import open_engine, upgrade
from qfleet.collector.span_rows import SpanColumns
from qfleet.simulator import sinks
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.telemetry import SPAN_NAMES
from qfleet.units import NS

#: The sub-spans a successful job always has, and a fold would carry as columns of its job span.
ROUTINE = frozenset({SPAN_NAMES["measurement"], SPAN_NAMES["feedforward"], SPAN_NAMES["entanglement"]})
ERROR = 2  # OpenTelemetry's STATUS_CODE_ERROR
SETTINGS = ("pace", "behind", "pace, routine folded", "behind, routine folded", "pace, 4 KiB pages",
            "behind, 4 KiB pages")
#: SQLite's default page size, which every store file had before the store chose 16 KiB for new files.
OLD_PAGE_SIZE = 4096


class _Inbox:
    """The writer process's inbox, holding a whole run, that shows the writer ``ahead`` steps each time it looks:
    ``get`` hands over the next step and makes ``ahead - 1`` more visible; ``get_nowait``, ``qsize`` and ``empty``
    see only those (none left: the writer believes it waits for the engine, and rolls up)."""

    def __init__(self, items: Sequence[bytes | None], ahead: int) -> None:
        self._items = list(items)
        self._next = 0
        self._ahead = ahead
        self._visible = 0

    def get(self, timeout: float | None = None) -> bytes | None:
        self._visible = self._ahead
        return self.get_nowait()

    def get_nowait(self) -> bytes | None:
        if self._visible <= 0 or self._next >= len(self._items):
            raise queue.Empty
        self._visible -= 1
        self._next += 1
        return self._items[self._next - 1]

    def empty(self) -> bool:
        return self._visible <= 0

    def qsize(self) -> int:
        return max(0, min(self._visible, len(self._items) - self._next))


def _folded(cols: SpanColumns) -> SpanColumns:
    """``cols`` without the routine sub-spans of successful jobs."""
    status = cols.status_code or [0] * len(cols.trace_id)
    keep = [i for i, (name, code) in enumerate(zip(cols.name, status, strict=True))
            if name not in ROUTINE or code == ERROR]
    return dataclasses.replace(cols, **{
        f.name: [col[i] for i in keep] for f in dataclasses.fields(cols)
        if (col := getattr(cols, f.name)) is not None})


def simulate(minutes: int) -> tuple[str, list[bytes], list[bytes], int]:
    """The run id, its steps pickled as the engine hands them over, the same with routine spans folded away,
    and the job count."""
    fleet = load_fleet(builtin_fleet_path("fleet100"))
    faults = load_faults(builtin_faults_path("fleet100-day"), fleet)
    sim = Simulation(fleet, faults, RunConfig(duration_ns=minutes * 60 * NS, seed=7))
    every, folded = [], []
    for st in sim.steps():
        every.append(pickle.dumps((st.spans, st.points, st.start_ns, st.end_ns), protocol=pickle.HIGHEST_PROTOCOL))
        folded.append(pickle.dumps((_folded(st.spans), st.points, st.start_ns, st.end_ns),
                                   protocol=pickle.HIGHEST_PROTOCOL))
    return sim.run_id, every, folded, sim.jobs_total


def write(steps: list[bytes], ahead: int, run_id: str, db: Path, page_size: int | None = None) -> dict[str, Any]:
    """The writer process's loop on ``steps`` into a fresh SQLite file at ``db`` (made with ``page_size`` first,
    which the store then keeps, when given): its CPU and wall seconds."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if page_size is not None:
        raw = sqlite3.connect(db)
        raw.execute(f"PRAGMA page_size = {page_size}")
        raw.execute("PRAGMA journal_mode = WAL")   # writes the header: the page size is now the file's
        raw.close()
    url = f"sqlite:///{db}"
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    outbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    resource = {"service.name": "qfleet-simulator", "qfleet.run.id": run_id, "qfleet.fleet": "fleet-100"}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sinks._writer_process(url, resource, (None, False), _Inbox([*steps, None], ahead), outbox)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    status, stats = outbox.get_nowait()
    if status != "done":
        raise SystemExit(f"the writer failed: {stats}")
    raw = sqlite3.connect(db)
    page = int(raw.execute("PRAGMA page_size").fetchone()[0])
    raw.close()
    if page_size is not None and page != page_size:
        raise SystemExit(f"{db}: page size {page}, not the {page_size} it was made with")
    return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "spans": stats.spans, "samples": stats.samples,
            "page_size": page}


def _span_table(db: Path) -> tuple[int, str, list[str], list[str], list[tuple[Any, ...]]]:
    """The store's page size, the span table's DDL (without its foreign key), secondary indexes and columns, and
    every span row of ``db`` in insertion order."""
    src = sqlite3.connect(db)
    page = int(src.execute("PRAGMA page_size").fetchone()[0])
    ddl = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'spans'").fetchone()[0]
    # The foreign key names a table the copy lacks; SQLite does not check it here (foreign keys are off).
    ddl = ddl.split(", \n\tCONSTRAINT fk_spans")[0] + "\n)" if "CONSTRAINT fk_spans" in ddl else ddl
    indexes = [r[0] for r in src.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'spans' AND sql IS NOT NULL ORDER BY name")]
    cols = [r[1] for r in src.execute("PRAGMA table_info(spans)")]
    rows = src.execute("SELECT * FROM spans ORDER BY rowid").fetchall()
    src.close()
    return page, ddl, indexes, cols, rows


def _fresh(path: Path, page: int, schema: Sequence[str]) -> sqlite3.Connection:
    """A new SQLite file at ``path`` with the store's page size, WAL and ``synchronous=NORMAL``, and ``schema``."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {page}")   # the store's own
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for sql in schema:
        conn.execute(sql)
    return conn


def index_costs(db: Path, per_txn: int, runs: int, work: Path) -> list[dict[str, Any]]:
    """CPU per stored span row inserted with raw ``sqlite3`` into the migrated table, by secondary index."""
    page, ddl, indexes, _cols, rows = _span_table(db)
    variants = [("no secondary index (baseline)", []), *((i.split(" ON spans ")[1], [i]) for i in indexes),
                ("all four (as stored)", indexes)]
    insert = f"INSERT INTO spans VALUES ({', '.join('?' * len(rows[0]))}) ON CONFLICT DO NOTHING"
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(runs):
        for name, idx in variants:
            conn = _fresh(work / "index.db", page, [ddl, *idx])
            t0 = time.process_time()
            for lo in range(0, len(rows), per_txn):
                conn.execute("BEGIN")
                conn.executemany(insert, rows[lo:lo + per_txn])
                conn.execute("COMMIT")
            times[name].append(time.process_time() - t0)
            conn.close()
    base = statistics.median(times[variants[0][0]])
    return [{"index": name, "cpu_s": [round(t, 2) for t in times[name]],
             "us_per_row": round(statistics.median(times[name]) / len(rows) * 1e6, 2),
             "ratio": round(statistics.median(times[name]) / base, 2)} for name, _ in variants]


#: How a fold could store a successful job's routine sub-spans (see :func:`fold_layouts`).
LAYOUTS = ("every span a row (as stored)", "routine sub-spans dropped (the fold's floor)",
           "routine sub-spans in a table keyed by time, no secondary index",
           "routine sub-spans packed, one JSON row per trace and minute")


def fold_layouts(db: Path, per_txn: int, runs: int, work: Path) -> list[dict[str, Any]]:
    """CPU of the span rows of ``db`` inserted with raw ``sqlite3`` (a transaction per ``per_txn`` rows), the routine
    sub-spans of successful jobs stored each way of :data:`LAYOUTS`: the storage side of a fold, before any reader.

    The packed layout's children are (span id, name, start, end, status, attributes, node, link, hardware) lists,
    encoded with orjson as the store encodes attributes (each child's attributes the stored JSON text, so a string
    inside the pack); its key (minute, trace id) is what a per-minute rollup and a trace's reader would seek by.
    Splitting each transaction's rows by layout is timed with the inserts."""
    page, ddl, indexes, cols, rows = _span_table(db)
    at = {c: cols.index(c) for c in ("trace_id", "span_id", "name", "start_time_unix_nano", "end_time_unix_nano",
                                     "status_code", "attributes", "node_id", "link_id", "hardware_type")}
    routine = [r[at["name"]] in ROUTINE and r[at["status_code"]] != ERROR for r in rows]
    keyed = (ddl.replace("CREATE TABLE spans", "CREATE TABLE routine_spans")
             .replace("PRIMARY KEY (trace_id, span_id)", "PRIMARY KEY (start_time_unix_nano, trace_id, span_id)"))
    packed = ("CREATE TABLE routine_packs (minute INTEGER NOT NULL, trace_id TEXT NOT NULL, children TEXT NOT NULL, "
              "PRIMARY KEY (minute, trace_id))")
    insert = f"INSERT INTO spans VALUES ({', '.join('?' * len(rows[0]))}) ON CONFLICT DO NOTHING"
    child = [at[c] for c in ("span_id", "name", "start_time_unix_nano", "end_time_unix_nano", "status_code",
                             "attributes", "node_id", "link_id", "hardware_type")]
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for _ in range(runs):
        for k, name in enumerate(LAYOUTS):
            conn = _fresh(work / "fold.db", page, [ddl, *indexes, *([keyed] if k == 2 else [packed] if k == 3 else [])])
            t0 = time.process_time()
            for lo in range(0, len(rows), per_txn):
                chunk, flags = rows[lo:lo + per_txn], routine[lo:lo + per_txn]
                conn.execute("BEGIN")
                conn.executemany(insert, chunk if k == 0 else [r for r, f in zip(chunk, flags, strict=True) if not f])
                if k == 2:
                    conn.executemany(insert.replace("INTO spans", "INTO routine_spans"),
                                     [r for r, f in zip(chunk, flags, strict=True) if f])
                elif k == 3:
                    packs: dict[tuple[int, str], list[list[Any]]] = {}
                    for r, f in zip(chunk, flags, strict=True):
                        if f:
                            packs.setdefault((r[at["start_time_unix_nano"]] // (60 * NS), r[at["trace_id"]]),
                                             []).append([r[i] for i in child])
                    conn.executemany("INSERT INTO routine_packs VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                     [(m, t, orjson.dumps(c).decode()) for (m, t), c in packs.items()])
                conn.execute("COMMIT")
            times[name].append(time.process_time() - t0)
            conn.close()
    base = statistics.median(times[LAYOUTS[0]])
    return [{"layout": name, "cpu_s": [round(t, 2) for t in times[name]],
             "ratio": round(statistics.median(times[name]) / base, 2)} for name in LAYOUTS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--minutes", type=int, default=120, help="simulated minutes of fleet100 (default 120)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each setting, alternating (default 3)")
    args = ap.parse_args(argv)
    if args.minutes < 20 or args.runs < 1:
        ap.error(f"--minutes {args.minutes} --runs {args.runs}: give at least 20 minutes and 1 run")
    load0 = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    run_id, every, folded, jobs = simulate(args.minutes)
    print(f"fleet100, {args.minutes} simulated minutes, fleet100-day's faults: {jobs:,} jobs, {len(every)} steps "
          f"(engine {time.perf_counter() - t0:.1f} s)", flush=True)
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="qfleet-writer-") as tmp:
        work = Path(tmp)
        for r in range(args.runs):
            order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
            for s in order:
                steps = folded if "folded" in s else every
                ahead = 1 if s.startswith("pace") else len(steps)
                results[s].append(write(steps, ahead, run_id, work / f"{r}-{SETTINGS.index(s)}.db",
                                        OLD_PAGE_SIZE if "4 KiB" in s else None))
                print(f"  {s:24s} {results[s][-1]}", flush=True)
        base = statistics.median(x["cpu_s"] for x in results[SETTINGS[0]])
        print(f"\nwriter CPU, median of {args.runs}, against '{SETTINGS[0]}':")
        print("| setting | spans | samples | CPU s (each run) | wall s (each run) | CPU ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        summary = []
        for s in SETTINGS:
            cpu = statistics.median(x["cpu_s"] for x in results[s])
            summary.append({"setting": s, "cpu_s": cpu, "ratio": round(cpu / base, 2),
                            "spans": results[s][0]["spans"], "samples": results[s][0]["samples"]})
            print(f"| {s} | {results[s][0]['spans']:,} | {results[s][0]['samples']:,} | "
                  f"{' / '.join(str(x['cpu_s']) for x in results[s])} | "
                  f"{' / '.join(str(x['wall_s']) for x in results[s])} | {cpu / base:.2f} |")
        spans = results[SETTINGS[0]][0]["spans"]
        indexes = index_costs(work / "0-0.db", max(1, spans // len(every)), args.runs, work)
        # A transaction per 16 steps' rows, as the writer's when it is behind.
        layouts = fold_layouts(work / "0-0.db", max(1, 16 * spans // len(every)), args.runs, work)
    print(f"\nspan rows ({spans:,}) by raw sqlite3 executemany, CPU, median of {args.runs}:")
    print("| secondary indexes | CPU s (each run) | µs per row | against no index |")
    print("|---|---:|---:|---:|")
    for x in indexes:
        print(f"| {x['index']} | {' / '.join(map(str, x['cpu_s']))} | {x['us_per_row']} | {x['ratio']:.2f} |")
    print(f"\nthe same span rows with a successful job's routine sub-spans stored each way a fold could, raw sqlite3, "
          f"a transaction per 16 steps' rows, CPU, median of {args.runs}:")
    print("| layout | CPU s (each run) | against every span a row |")
    print("|---|---:|---:|")
    for x in layouts:
        print(f"| {x['layout']} | {' / '.join(map(str, x['cpu_s']))} | {x['ratio']:.2f} |")
    machine = {"cores": os.cpu_count(), "loadavg_before": load0,
               "loadavg_after": [round(x, 2) for x in os.getloadavg()], "native": qfleet.NATIVE}
    print(f"\nmachine: {machine['cores']} cores, load average {load0} before, {machine['loadavg_after']} after; "
          f"modules: {qfleet.NATIVE}")
    print(json.dumps({"bench": "writer", "minutes": args.minutes, "runs": args.runs, "jobs": jobs,
                      "settings": summary, "runs_raw": results, "indexes": indexes, "fold_layouts": layouts,
                      **machine}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
