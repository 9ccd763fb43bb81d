"""The dashboards' run selection: data functions read only the selected run's hours (default: the latest run),
and a store without runs (OTLP only) reads everything as before."""

from __future__ import annotations

from sqlalchemy import Engine

from qfleet.collector import Runs, SpanColumns, Store
from qfleet.dashboards import data

H = 3_600_000_000_000
M = 60_000_000_000
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def _spans(starts: list[int]) -> SpanColumns:
    n = len(starts)
    return SpanColumns(trace_id=[f"{s:032x}" for s in starts], span_id=[f"{i + 1:016x}" for i in range(n)],
                       name=["qfleet.job"] * n, start_time_unix_nano=starts,
                       end_time_unix_nano=[s + 1000 for s in starts])


def test_no_runs_reads_the_whole_store(engine: Engine) -> None:
    Store(engine).write(_spans([T0 + 5 * M, T0 + 3 * H]).to_batch(service_name="real-fleet"))
    assert data.runs(engine).empty and data.run_range(engine) is None
    assert data.data_range(engine) == (T0 + 5 * M, T0 + 3 * H)


def test_data_functions_read_the_selected_run_only(engine: Engine) -> None:
    # Two runs of one hour each, registered in this order; their spans a few minutes into each.
    runs = Runs(engine)
    runs.register("early", fleet="mesh", start_ns=T0, end_ns=T0 + H)
    runs.register("late", fleet="star", start_ns=T0 + 2 * H, end_ns=T0 + 3 * H)
    Store(engine).write(_spans([T0 + 5 * M, T0 + 50 * M, T0 + 2 * H + 7 * M, T0 + 2 * H + 20 * M])
                        .to_batch(service_name="sim"))
    assert data.runs(engine)["id"].tolist() == ["late", "early"]  # latest first: the selector's default
    assert data.run_range(engine) == (T0 + 2 * H, T0 + 3 * H)
    assert data.data_range(engine) == (T0 + 2 * H + 7 * M, T0 + 2 * H + 20 * M)
    assert data.data_range(engine, "early") == (T0 + 5 * M, T0 + 50 * M)
    f = data.default_filters(engine, run_id="early")
    # from the run's first span minute to the minute after its last span
    assert (f.start_ns, f.end_ns) == (T0 + 5 * M, T0 + 51 * M)
    f = data.default_filters(engine)
    assert (f.start_ns, f.end_ns) == (T0 + 2 * H + 7 * M, T0 + 2 * H + 21 * M)
