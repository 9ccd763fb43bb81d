"""The writer process stores what the in-process sink stores: the same steps through :class:`ProcessStoreSink`
(pickled span columns and metric points, converted on the writer's side, rolled up while it waits) and through
:class:`StoreSink` (converted in this process, rolled up at the end) leave identical rows in two SQLite files."""

from __future__ import annotations

import pickle
import queue
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from qfleet.collector import Store, open_engine, upgrade
from qfleet.simulator import gcpolicy, sinks
from qfleet.simulator.engine import RunConfig, SimStep, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import ProcessStoreSink, StoreSink
from qfleet.units import NS

# Every stored column a reader relies on; series are keyed by fingerprint (ids depend on insertion order only).
QUERIES = {
    "spans": "SELECT * FROM spans ORDER BY trace_id, span_id",
    "samples": "SELECT s.fingerprint, m.time_unix_nano, m.value FROM metric_samples m "
               "JOIN metric_series s ON s.id = m.series_id ORDER BY 1, 2",
    "series": "SELECT fingerprint, metric_name, metric_type, temporality, is_monotonic, unit, labels "
              "FROM metric_series ORDER BY fingerprint",
    "span_rollups": "SELECT * FROM span_rollups ORDER BY 1, 2, 3, 4, 5, 6",
    "metric_rollups": "SELECT s.fingerprint, r.bucket_start_unix_nano, r.sample_count, r.value_sum, r.value_min, "
                      "r.value_max, r.last_value, r.last_time_unix_nano, r.increase FROM metric_rollups r "
                      "JOIN metric_series s ON s.id = r.series_id ORDER BY 1, 2",
}


@pytest.fixture(scope="module")
def steps() -> tuple[dict[str, Any], list[SimStep]]:
    fleet = load_fleet(builtin_fleet_path("mesh"))
    sim = Simulation(fleet, load_faults(builtin_faults_path("example"), fleet),
                     RunConfig(duration_ns=25 * 60 * NS, seed=5))
    resource = {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id, "qfleet.fleet": fleet.name}
    return resource, list(sim.steps())


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(text(q))] for name, q in QUERIES.items()}
    finally:
        engine.dispose()


def _migrated(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _stored_in_process(path: Path, resource: dict[str, Any], run: list[SimStep]) -> str:
    """A migrated SQLite file at ``path`` holding ``run`` written step by step by :class:`StoreSink`; its URL."""
    url = _migrated(path)
    engine = open_engine(url)
    sink = StoreSink(Store(engine), resource)
    for step in run:
        sink.write(step)
    sink.close()
    engine.dispose()
    return url


def _queued(run: list[SimStep]) -> tuple[queue.Queue[bytes | None], queue.Queue[tuple[str, Any]]]:
    """An inbox holding every step of ``run`` pickled as the engine hands it over, then the end; an empty outbox."""
    inbox: queue.Queue[bytes | None] = queue.Queue()
    for step in run:
        inbox.put(pickle.dumps((step.spans, step.points, step.start_ns, step.end_ns)))
    inbox.put(None)
    return inbox, queue.Queue()


@pytest.mark.parametrize("share_behind", [None, 0])
def test_process_writer_stores_what_the_in_process_sink_stores(
        tmp_path: Path, steps: tuple[dict[str, Any], list[SimStep]], share_behind: int | None) -> None:
    """Rows built by the writer (``share_behind=None``) or, every step, by the engine (0): the same store."""
    resource, run = steps
    here, there = _stored_in_process(tmp_path / "here.db", resource, run), _migrated(tmp_path / "there.db")
    process = ProcessStoreSink(there, resource, depth=2, share_behind=share_behind)
    for step in run:
        process.write(step)
    process.close()
    a, b = _rows(here), _rows(there)
    assert {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}
    assert all(a[k] for k in ("spans", "samples", "span_rollups", "metric_rollups"))
    for name in QUERIES:
        assert a[name] == b[name], name
    assert process.stats.spans == sum(len(s.spans.trace_id) for s in run) == len(a["spans"])
    assert process.stats.samples == sum(len(s.points.to_batch().samples) for s in run) == len(a["samples"])


class _Counted(queue.Queue[bytes | None]):
    """An inbox whose ``qsize`` reports the next of ``behind`` (steps the writer has not taken yet)."""

    def __init__(self, behind: list[int]) -> None:
        super().__init__()
        self.behind = behind

    def qsize(self) -> int:
        return self.behind.pop(0)


def test_the_engine_builds_the_rows_only_while_the_writer_is_behind(
        tmp_path: Path, steps: tuple[dict[str, Any], list[SimStep]]) -> None:
    """:meth:`ProcessStoreSink.write` hands a step over as span columns and metric points while fewer than
    ``share_behind`` steps wait, and as store rows from then on; the writer's loop stores the mixed queue as the
    in-process sink stores the steps."""
    resource, run = steps
    there = _migrated(tmp_path / "there.db")
    sink = ProcessStoreSink(there, resource, share_behind=3)
    sink.abandon()  # its writer is not needed: the queue below goes to the writer's loop in this process
    behind = [0, 2, 3, 7, 2, 4] * len(run)
    inbox = sink._inbox = _Counted(behind[:len(run)])
    for step in run:
        sink.write(step)
    items = [inbox.get_nowait() for _ in run]
    assert [pickle.loads(i)[1] is None for i in items if i] == [n >= 3 for n in behind[:len(run)]]
    inbox.behind = [0] * (10 * len(run))  # the writer's loop asks as well
    for item in [*items, None]:
        inbox.put(item)
    outbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    sinks._writer_process(there, resource, (None, False), inbox, outbox)
    assert outbox.get_nowait()[0] == "done"
    a, b = _rows(_stored_in_process(tmp_path / "here.db", resource, run)), _rows(there)
    for name in QUERIES:
        assert a[name] == b[name], name


def test_a_telemetry_batch_survives_pickling(steps: tuple[dict[str, Any], list[SimStep]]) -> None:
    """Store rows cross to the writer process pickled: resources, span rows, series and samples come back equal."""
    from dataclasses import astuple

    resource, run = steps
    rows = sinks.step_rows(run[3].spans, run[3].points.to_batch(), resource)
    again = pickle.loads(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
    assert astuple(again) == astuple(rows)
    assert rows.spans and rows.samples and rows.resources and rows.series
    assert all(type(r[15]) is str for r in rows.spans)  # attributes as the JSON text the store keeps


def test_metric_points_pickle_to_the_same_metrics(steps: tuple[dict[str, Any], list[SimStep]]) -> None:
    _resource, run = steps
    for step in run[:5]:
        again = pickle.loads(pickle.dumps(step.points))
        assert again == step.points
        assert again.to_metrics_data().to_json() == step.metrics.to_json()


def test_metric_points_convert_to_the_rows_of_the_sdk_path(steps: tuple[dict[str, Any], list[SimStep]]) -> None:
    """``MetricPoints.to_batch`` (what both sinks store) against the collector's SDK converter on the same points,
    every step of the run: the same resources, series (types, units, labels, promoted columns), samples in order."""
    from dataclasses import astuple

    from qfleet.collector.convert import from_metrics_data

    _resource, run = steps
    kinds: set[int] = set()
    for step in run:
        direct, via_sdk = step.points.to_batch(), from_metrics_data(step.metrics)
        assert astuple(direct) == astuple(via_sdk)
        assert type(direct.samples[0][2]) is float and direct.rejected_points == 0
        kinds |= {s.values[2] for s in direct.series.values()}
    assert kinds == {1, 2, 3}  # gauges, counters and histograms were all compared


@pytest.mark.parametrize(("max_steps", "max_rows"), [(4, 10**9), (100, 3_000)])
def test_the_writer_coalesces_queued_steps_up_to_its_caps_and_stores_the_same_rows(
        tmp_path: Path, steps: tuple[dict[str, Any], list[SimStep]], monkeypatch: pytest.MonkeyPatch,
        max_steps: int, max_rows: int) -> None:
    """The writer's loop run in this process on a queue holding the whole run (a writer far behind the engine):
    each transaction takes the queued steps in order up to the step cap or until the row cap is reached, it rolls
    up behind itself once the backlog reaches its bound although steps are still queued, and the store ends up
    with the rows the in-process sink writes step by step."""
    resource, run = steps
    monkeypatch.setattr(sinks, "_COALESCE_STEPS", max_steps)
    monkeypatch.setattr(sinks, "_COALESCE_ROWS", max_rows)
    monkeypatch.setattr(sinks, "_ROLLUP_BACKLOG_NS", 8 * 60 * NS)
    batches: list[list[int]] = []
    rolled: list[int] = []
    write_steps, roll_up_before = StoreSink.write_steps, StoreSink.roll_up_before
    monkeypatch.setattr(StoreSink, "roll_up_before", lambda self, t: (rolled.append(t), roll_up_before(self, t))[1])

    def recording(self: StoreSink, group: Any) -> None:
        batches.append([start for _rows, start, _e in group])
        write_steps(self, group)

    monkeypatch.setattr(StoreSink, "write_steps", recording)
    inbox, outbox = _queued(run)
    there = _migrated(tmp_path / "there.db")
    sinks._writer_process(there, resource, (None, False), inbox, outbox)
    assert outbox.get_nowait()[0] == "done"
    sizes = [len(s.spans.trace_id) + len(s.points.to_batch().samples) for s in run]
    expected: list[list[int]] = []
    group: list[int] = []
    rows = 0
    for step, size in zip(run, sizes, strict=True):
        group.append(step.start_ns)
        rows += size
        if len(group) == max_steps or rows >= max_rows:
            expected.append(group)
            group, rows = [], 0
    expected += [group] if group else []
    assert [b for b in batches if b] == expected  # (a run that ends on a full transaction adds an empty write)
    assert len(expected) > 2
    # Behind from the first step: a rollup once 8 simulated minutes wait for it (lag 2 min behind the last step).
    first, lag = run[0].start_ns, 120 * NS
    assert rolled and rolled[0] - first >= 8 * 60 * NS
    assert all(b - a >= 8 * 60 * NS for a, b in zip(rolled, rolled[1:], strict=False))
    assert all(t in {g[-1] - lag for g in expected} for t in rolled)
    monkeypatch.undo()  # the reference below is written by the sink as it is
    a, b = _rows(_stored_in_process(tmp_path / "here.db", resource, run)), _rows(there)
    for name in QUERIES:
        assert a[name] == b[name], name


def test_an_idle_writer_checkpoints_the_wal_into_the_database_file(
        tmp_path: Path, steps: tuple[dict[str, Any], list[SimStep]]) -> None:
    """After :meth:`StoreSink.checkpoint` the database file alone (no WAL beside it) holds every committed span."""
    import shutil
    import sqlite3

    resource, run = steps
    url = _migrated(tmp_path / "a.db")
    engine = open_engine(url)
    sink = StoreSink(Store(engine), resource)
    for step in run[:5]:
        sink.write(step)
    stored = sum(len(s.spans.trace_id) for s in run[:5])

    def file_alone() -> int:
        shutil.copy(tmp_path / "a.db", tmp_path / "copy.db")  # the main file only: what the WAL has not given back
        with sqlite3.connect(tmp_path / "copy.db") as c:
            count: int = c.execute("SELECT count(*) FROM spans").fetchone()[0]
        return count

    before = file_alone()
    sink.checkpoint()
    assert before < stored == file_alone()
    engine.dispose()


class _InTransit:
    """A ``multiprocessing`` queue as the writer sees it while the engine's feeder thread is still sending: every
    step was put (``qsize`` counts them) but the pipe holds none yet, so ``get_nowait`` and ``empty`` find nothing,
    and a blocking ``get`` waits for the next one to come through. ``countable=False``: a platform without
    ``qsize`` (macOS)."""

    def __init__(self, items: list[bytes | None], *, countable: bool = True) -> None:
        self.items = items
        self.countable = countable

    def get(self, block: bool = True, timeout: float | None = None) -> bytes | None:
        if not block:
            raise queue.Empty
        return self.items.pop(0)

    def get_nowait(self) -> bytes | None:
        return self.get(False)

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        if not self.countable:
            raise NotImplementedError("sem_getvalue")
        return len(self.items)


@pytest.mark.parametrize("countable", [True, False])
def test_steps_still_in_the_pipe_count_as_queued(
        tmp_path: Path, steps: tuple[dict[str, Any], list[SimStep]], monkeypatch: pytest.MonkeyPatch,
        countable: bool) -> None:
    """A writer behind the engine whose steps are still on their way through the pipe takes them into one
    transaction up to the step cap, and does not checkpoint as if it were idle; where the queue cannot count
    (macOS), it falls back to what the pipe holds (a step a transaction) and still stores every step."""
    resource, run = steps
    monkeypatch.setattr(sinks, "_COALESCE_STEPS", 4)
    sizes: list[int] = []
    checkpoints: list[int] = []
    write_steps = StoreSink.write_steps
    monkeypatch.setattr(StoreSink, "write_steps", lambda self, group: (sizes.append(len(group)),
                                                                        write_steps(self, group))[1])
    monkeypatch.setattr(StoreSink, "checkpoint", lambda self: checkpoints.append(len(sizes)))
    items: list[bytes | None] = [pickle.dumps((s.spans, s.points, s.start_ns, s.end_ns)) for s in run]
    outbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    there = _migrated(tmp_path / "there.db")
    sinks._writer_process(there, resource, (None, False), _InTransit([*items, None], countable=countable), outbox)
    assert outbox.get_nowait()[0] == "done"
    sizes = [n for n in sizes if n]  # (a run that ends on a full transaction adds an empty write)
    assert sum(sizes) == len(run)
    if countable:
        assert sizes[:-1] == [4] * (len(sizes) - 1) and 1 <= sizes[-1] <= 4
        assert checkpoints == []  # never idle: a step always waited
    else:
        assert sizes == [1] * len(run)
    monkeypatch.undo()
    assert _rows(there)["spans"] == _rows(_stored_in_process(tmp_path / "here.db", resource, run))["spans"]


def test_the_writer_runs_no_collection_while_a_batch_is_alive_and_stores_the_same_rows(
        tmp_path: Path, steps: tuple[dict[str, Any], list[SimStep]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's loop in this process, with the collector's threshold forced low: no automatic collection
    starts while it unpickles and writes a batch (only in the rollups and checkpoints between batches), the
    collector is back on once it returns, and the rows are those of the in-process sink."""
    import gc

    resource, run = steps
    inside: list[bool] = []
    during: list[bool] = []
    write_steps = StoreSink.write_steps

    def recording(self: StoreSink, group: Any) -> None:
        inside.append(True)
        try:
            write_steps(self, group)
        finally:
            inside.pop()

    def count(phase: str, _info: dict[str, object]) -> None:
        if phase == "start":
            during.append(bool(inside))

    monkeypatch.setattr(StoreSink, "write_steps", recording)
    monkeypatch.setattr(gcpolicy, "GEN0_THRESHOLD", 100)  # a collection every hundred net allocations
    inbox, outbox = _queued(run)
    there = _migrated(tmp_path / "there.db")
    threshold = gc.get_threshold()
    gc.set_threshold(100, *threshold[1:])
    gc.callbacks.append(count)
    try:
        sinks._writer_process(there, resource, (None, False), inbox, outbox)
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*threshold)
    assert outbox.get_nowait()[0] == "done"
    assert gc.isenabled()
    assert during and not any(during)  # collections ran, none of them inside a batch's write
    monkeypatch.undo()
    a, b = _rows(_stored_in_process(tmp_path / "here.db", resource, run)), _rows(there)
    for name in QUERIES:
        assert a[name] == b[name], name
