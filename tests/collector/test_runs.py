"""Runs: registration refuses overlapping simulated hours (before any row is written, also between racing
writers), accepts disjoint runs, and the selection helpers give the right range; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from qfleet.collector import (
    Run,
    RunOverlapError,
    Runs,
    SpanColumns,
    Store,
    StoreError,
    TelemetryBatch,
    open_engine,
)
from qfleet.collector.runs import register_run
from qfleet.simulator.sinks import StoreSink

H = 3_600_000_000_000  # one hour in ns
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z (date -u -d @1767225600)


def _clock() -> Callable[[], int]:
    ticks = iter(range(1, 1_000_000))
    return lambda: next(ticks)


def _spans(start_ns: int, n: int = 3) -> SpanColumns:
    return SpanColumns(trace_id=[f"{start_ns + i:032x}" for i in range(n)],
                       span_id=[f"{i + 1:016x}" for i in range(n)], name=["job"] * n,
                       start_time_unix_nano=[start_ns + i for i in range(n)],
                       end_time_unix_nano=[start_ns + i + 10 for i in range(n)])


def test_disjoint_runs_are_accepted_and_listed_in_time_order(engine: Engine) -> None:
    runs = Runs(engine, clock=_clock())
    runs.register("b", fleet="star", start_ns=T0 + 3 * H, end_ns=T0 + 4 * H)
    runs.register("a", fleet="mesh", start_ns=T0, end_ns=T0 + 3 * H)  # ends exactly where "b" starts
    assert [(r.id, r.start_ns, r.end_ns, r.status) for r in runs.list()] == [
        ("a", T0, T0 + 3 * H, "running"), ("b", T0 + 3 * H, T0 + 4 * H, "running")]
    # latest = registered last, whatever its simulated start
    latest = runs.latest()
    assert latest is not None and latest.id == "a"
    assert runs.select(None) == latest
    assert runs.select("b").start_ns == T0 + 3 * H
    done = runs.finish("a")
    assert done.status == "finished" and done.finished_ns is not None


def test_overlap_is_refused_with_one_line_naming_the_run_and_the_fix(engine: Engine) -> None:
    runs = Runs(engine)
    runs.register("first", fleet="mesh", start_ns=T0, end_ns=T0 + 3 * H)
    with pytest.raises(RunOverlapError) as info:
        runs.register("second", fleet="line", start_ns=T0 + 2 * H, end_ns=T0 + 5 * H)
    msg = str(info.value)
    assert "\n" not in msg
    for part in ("run first", "fleet mesh", "2026-01-01T00:00:00Z to 2026-01-01T03:00:00Z", "--db",
                 "at or after 2026-01-01T03:00:00Z (--start)"):
        assert part in msg, (part, msg)
    assert info.value.existing.id == "first"
    assert [r.id for r in runs.list()] == ["first"]
    with pytest.raises(RunOverlapError, match="reuses the id"):
        runs.register("first", fleet="mesh", start_ns=T0 + 9 * H, end_ns=T0 + 10 * H)


def test_extension_into_another_run_is_refused(engine: Engine) -> None:
    runs = Runs(engine)
    runs.register("a", fleet="mesh", start_ns=T0, end_ns=T0 + H)
    runs.register("b", fleet="mesh", start_ns=T0 + 2 * H, end_ns=T0 + 3 * H)
    assert runs.extend("a", T0 + 2 * H).end_ns == T0 + 2 * H
    assert runs.extend("a", T0).end_ns == T0 + 2 * H  # never shrinks
    with pytest.raises(RunOverlapError, match="run b"):
        runs.extend("a", T0 + 2 * H + 1)
    assert runs.get("a").end_ns == T0 + 2 * H


def test_unknown_run_and_empty_range_are_errors(engine: Engine) -> None:
    runs = Runs(engine)
    assert runs.latest() is None and runs.select(None) is None and runs.list() == []
    with pytest.raises(StoreError, match="qfleet runs list"):
        runs.get("nope")
    with pytest.raises(StoreError, match="not after"):
        runs.register("x", fleet="mesh", start_ns=T0, end_ns=T0)


def test_sink_refuses_an_overlapping_run_before_writing_any_row(engine: Engine) -> None:
    store = Store(engine)
    first = StoreSink(store, {"service.name": "sim", "qfleet.run.id": "r1", "qfleet.fleet": "mesh"},
                      run_range=(T0, T0 + H))
    first.write_parts(_spans(T0), TelemetryBatch(), T0, T0 + 60)
    first.close()
    assert store.count("spans") == 3
    second = StoreSink(store, {"service.name": "sim", "qfleet.run.id": "r2", "qfleet.fleet": "line"})
    with pytest.raises(RunOverlapError, match="run r1"):
        second.write_parts(_spans(T0 + H // 2), TelemetryBatch(), T0 + H // 2,
                           T0 + H // 2 + 60)
    assert store.count("spans") == 3 and store.count("metric_samples") == 0
    run = Runs(engine).get("r1")
    assert (run.fleet, run.status, run.start_ns, run.end_ns) == ("mesh", "finished", T0, T0 + H)


def test_sink_without_a_planned_range_grows_its_run_step_by_step(engine: Engine) -> None:
    store = Store(engine)
    sink = StoreSink(store, {"service.name": "sim", "qfleet.run.id": "grow", "qfleet.fleet": "star"})
    empty = TelemetryBatch()
    for k in range(3):
        sink.write_parts(_spans(T0 + k * 60), empty, T0 + k * 60, T0 + (k + 1) * 60)
    sink.close()
    run = Runs(engine).get("grow")
    assert (run.start_ns, run.end_ns, run.status) == (T0, T0 + 180, "finished")


def test_otlp_data_without_a_run_registers_nothing(engine: Engine) -> None:
    store = Store(engine)
    store.write(_spans(T0).to_batch(service_name="real-fleet"))
    sink = StoreSink(store, {"service.name": "bridge"})  # no qfleet.run.id: not a simulated run
    sink.write_parts(_spans(T0 + 100), TelemetryBatch(), T0 + 100, T0 + 200)
    sink.close()
    assert store.count("spans") == 6 and Runs(engine).list() == []


def test_racing_registrations_second_waits_then_is_refused(db_url: str) -> None:
    """Writer A locks, checks and inserts but has not committed when writer B starts; B must wait for A's commit
    and then see A's run (without the lock both would see an empty table and both insert)."""
    from qfleet.collector.migrate import upgrade

    engine_a = open_engine(db_url)
    upgrade(engine_a)
    engine_b = open_engine(db_url)
    a = Run(id="a", fleet="mesh", start_ns=T0, end_ns=T0 + 2 * H, status="running", created_ns=1)
    b_result: list[BaseException | Run] = []
    b_started = threading.Event()

    def writer_b() -> None:
        b_started.set()
        try:
            with engine_b.begin() as conn:
                b_result.append(register_run(conn, Run(id="b", fleet="line", start_ns=T0 + H, end_ns=T0 + 3 * H,
                                                       status="running", created_ns=2)))
        except BaseException as e:  # noqa: BLE001 - inspected below
            b_result.append(e)

    try:
        with engine_a.begin() as conn_a:
            register_run(conn_a, a)
            t = threading.Thread(target=writer_b)
            t.start()
            b_started.wait()
            t.join(timeout=0.5)  # B is blocked on A's lock...
            assert t.is_alive() and b_result == []
        t.join(timeout=30)  # ...until A commits
        assert not t.is_alive()
        assert len(b_result) == 1 and isinstance(b_result[0], RunOverlapError), b_result
        assert [r.id for r in Runs(engine_a).list()] == ["a"]
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_sim_run_over_stored_hours_exits_2_with_one_line_and_writes_nothing(sqlite_url: str) -> None:
    import io

    from qfleet.simulator.cli import main as sim

    def run(*extra: str) -> tuple[int, str]:
        err = io.StringIO()
        code = sim(["run", "--fleet", "line", "--duration", "2m", "--db", sqlite_url, "--no-progress", "--json",
                    *extra], environ={}, stdout=io.StringIO(), stderr=err)
        return code, err.getvalue()

    assert run()[0] == 0
    engine = open_engine(sqlite_url)
    spans = Store(engine).count("spans")
    code, err = run("--seed", "8", "--start", "2026-01-01T00:01:00Z")
    assert code == 2 and err.count("\n") == 1 and "--start" in err and "2026-01-01T00:02:00Z" in err, err
    assert Store(engine).count("spans") == spans
    assert run("--seed", "8", "--start", "2026-01-01T00:02:00Z")[0] == 0
    assert [(r.start_ns - T0, r.status) for r in Runs(engine).list()] == [(0, "finished"), (120 * 10**9, "finished")]
    engine.dispose()
