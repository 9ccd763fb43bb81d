"""The columnar bulk API (``SpanColumns.to_batch`` + ``Store.write``) on both backends:
volume, idempotency (PostgreSQL's COPY fast path meeting duplicates), validation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from qfleet.collector.convert import SpanColumns
from qfleet.collector.schema import Base
from qfleet.collector.store import Store

T0 = 1_800_000_000_000_000_000
NODES = ("qpu-a", "qpu-b", "qpu-c")


def _columns(lo: int, hi: int) -> SpanColumns:
    """Spans ``lo..hi-1``: ten per trace, every tenth a root, ids derived from the index."""
    idx = range(lo, hi)
    return SpanColumns(
        trace_id=[f"{i // 10 + 1:032x}" for i in idx],
        span_id=[f"{i + 1:016x}" for i in idx],
        parent_span_id=[None if i % 10 == 0 else f"{i // 10 * 10 + 1:016x}" for i in idx],
        name=["shot.batch" if i % 10 else "job.run" for i in idx],
        start_time_unix_nano=[T0 + i * 1_000_000 for i in idx],
        end_time_unix_nano=[T0 + i * 1_000_000 + 250_000 + i for i in idx],
        kind=[1] * len(idx),
        status_code=[2 if i % 97 == 0 else 0 for i in idx],
        attributes=[{"qfleet.shots": 1000, "qfleet.logical_errors": i % 5} for i in idx],
        node_id=[NODES[i % 3] for i in idx],
        link_id=[None] * len(idx),
        job_id=[f"job-{i // 10}" for i in idx],
        run_id=[f"run-{i}" for i in idx],
        hardware_type=["superconducting"] * len(idx),
    )


def _span_ids(store: Store) -> list[str]:
    t = Base.metadata.tables["spans"]
    with store.engine.connect() as conn:
        return list(conn.execute(select(t.c.span_id).order_by(t.c.span_id)).scalars())


def _row(store: Store, span_id: str) -> dict[str, Any]:
    t = Base.metadata.tables["spans"]
    with store.engine.connect() as conn:
        return dict(conn.execute(select(t).where(t.c.span_id == span_id)).one()._mapping)


def test_twenty_thousand_spans_land(store: Store) -> None:
    batch = _columns(0, 20_000).to_batch(service_name="simulator", scope_name="qfleet.sim")
    assert batch.rejected_spans == 0
    result = store.write(batch)
    assert result.spans == 20_000
    assert store.count("spans") == 20_000
    assert store.count("resources") == 1
    i = 12_345
    row = _row(store, f"{i + 1:016x}")
    row.pop("resource_fingerprint")
    assert row == {
        "trace_id": f"{i // 10 + 1:032x}", "span_id": f"{i + 1:016x}",
        "parent_span_id": f"{i // 10 * 10 + 1:016x}", "service_name": "simulator",
        "scope_name": "qfleet.sim", "name": "shot.batch", "kind": 1,
        "start_time_unix_nano": T0 + i * 1_000_000, "end_time_unix_nano": T0 + i * 1_000_000 + 250_000 + i,
        "duration_ns": 250_000 + i, "status_code": 0, "status_message": "", "trace_state": "",
        "flags": 0, "attributes": {"qfleet.shots": 1000, "qfleet.logical_errors": i % 5},
        "dropped_attributes_count": 0, "dropped_events_count": 0, "dropped_links_count": 0,
        "node_id": NODES[i % 3], "link_id": None, "job_id": f"job-{i // 10}", "run_id": f"run-{i}",
        "hardware_type": "superconducting",
    }


def test_rewriting_the_same_batch_is_idempotent(store: Store) -> None:
    batch = _columns(0, 20_000).to_batch(service_name="simulator")
    store.write(batch)
    before = _row(store, f"{777:016x}")
    # On PostgreSQL the COPY fast path hits every key and must fall back to the staging table.
    store.write(batch)
    store.write(batch)
    assert store.count("spans") == 20_000
    assert _row(store, f"{777:016x}") == before
    with store.engine.connect() as conn:
        dup = conn.execute(text("SELECT COUNT(*) FROM (SELECT trace_id, span_id FROM spans "
                                "GROUP BY trace_id, span_id HAVING COUNT(*) > 1) d")).scalar_one()
    assert dup == 0


def test_a_batch_mixing_stored_and_new_spans_stores_only_the_new_ones_once(store: Store) -> None:
    store.write(_columns(0, 10_000).to_batch(service_name="simulator"))
    store.write(_columns(5_000, 15_000).to_batch(service_name="simulator"))
    assert store.count("spans") == 15_000
    assert _span_ids(store) == [f"{i + 1:016x}" for i in range(15_000)]
    # A new span behind the overlap carries its own values, not a neighbour's.
    assert _row(store, f"{14_000:016x}")["run_id"] == "run-13999"


def test_a_batch_holding_the_same_span_twice_stores_it_once(store: Store) -> None:
    cols = _columns(0, 100)
    twice = SpanColumns(
        trace_id=[*cols.trace_id, cols.trace_id[3]], span_id=[*cols.span_id, cols.span_id[3]],
        name=[*cols.name, "replayed"], start_time_unix_nano=[*cols.start_time_unix_nano, T0 + 1],
        end_time_unix_nano=[*cols.end_time_unix_nano, T0 + 2])
    store.write(twice.to_batch(service_name="simulator"))
    assert store.count("spans") == 100


@pytest.mark.parametrize("column", ["span_id", "name", "end_time_unix_nano", "attributes", "node_id"])
def test_columns_of_different_lengths_raise_naming_the_column(column: str) -> None:
    good: dict[str, Any] = {
        "trace_id": ["a" * 32] * 3, "span_id": ["b" * 16] * 3, "name": ["x"] * 3,
        "start_time_unix_nano": [T0] * 3, "end_time_unix_nano": [T0 + 1] * 3,
        "attributes": [{}] * 3, "node_id": ["qpu-a"] * 3,
    }
    good[column] = good[column][:2]
    with pytest.raises(ValueError, match=rf"SpanColumns\.{column} has 2 values but trace_id has 3"):
        SpanColumns(**good)


def test_invalid_rows_are_counted_and_not_written(store: Store) -> None:
    ok_t, ok_s = "1" * 32, "2" * 16
    cols = SpanColumns(
        trace_id=[ok_t, "abc", ok_t, ok_t, ok_t],
        span_id=[ok_s, "3" * 16, "4" * 15, "5" * 16, "6" * 16],
        name=["good", "short-trace-id", "short-span-id", "backwards", "no-start"],
        start_time_unix_nano=[T0, T0, T0, T0 + 10, 0],
        end_time_unix_nano=[T0 + 5, T0 + 5, T0 + 5, T0 + 9, 5],
    )
    batch = cols.to_batch(service_name="simulator")
    assert batch.rejected_spans == 4
    assert len(batch.errors) == 4 and "backwards" in batch.errors[2]
    store.write(batch)
    t = Base.metadata.tables["spans"]
    with store.engine.connect() as conn:
        assert list(conn.execute(select(t.c.name))) == [("good",)]


def test_a_non_finite_attribute_does_not_poison_the_batch(store: Store) -> None:
    cols = SpanColumns(
        trace_id=["1" * 32, "1" * 32], span_id=["2" * 16, "3" * 16], name=["ok", "nan"],
        start_time_unix_nano=[T0, T0], end_time_unix_nano=[T0 + 1, T0 + 1],
        attributes=[{"fidelity": 0.93}, {"fidelity": float("nan")}])
    store.write(cols.to_batch(service_name="simulator"))
    assert _row(store, "3" * 16)["attributes"] == {"fidelity": "nan"}
    assert store.count("spans") == 2


def test_attributes_given_as_json_text_are_stored_as_the_store_encodes_the_maps(store: Store) -> None:
    """``to_batch(json_attributes=True)`` (the simulator's writer sends spans so) leaves the rows that the
    attribute maps leave when the store encodes them: the same columns, non-finite floats, nulls, nesting, text
    that looks like JSON, and spans without attributes included."""
    maps: list[Any] = [{"f": 0.1 + 0.2, "n": None, "s": "null", "u": "é\u2028\"<b>"}, {"x": float("nan")},
                       {"xs": [1, 2.5, float("inf")], "b": True}, None, {}, {"big": 2**53 + 1}]

    def cols(first: int) -> SpanColumns:
        n = len(maps)
        return SpanColumns(trace_id=[f"{first:032x}"] * n, span_id=[f"{first + i:016x}" for i in range(n)],
                           name=["attrs"] * n, start_time_unix_nano=[T0 + i for i in range(n)],
                           end_time_unix_nano=[T0 + 10] * n, attributes=maps)

    as_maps, as_text = cols(1).to_batch(service_name="simulator"), cols(100).to_batch(
        service_name="simulator", json_attributes=True)
    assert all(type(r[15]) is dict for r in as_maps.spans) and all(type(r[15]) is str for r in as_text.spans)
    store.write(as_maps)
    store.write(as_text)
    t = Base.metadata.tables["spans"]
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.start_time_unix_nano, t.c.trace_id))]
        stored = conn.execute(text("SELECT CAST(attributes AS TEXT) FROM spans ORDER BY start_time_unix_nano, "
                                   "trace_id")).scalars().all()
    assert len(rows) == 2 * len(maps)
    for a, b in zip(rows[0::2], rows[1::2], strict=True):
        assert {k: v for k, v in a.items() if k not in ("trace_id", "span_id")} == \
            {k: v for k, v in b.items() if k not in ("trace_id", "span_id")}
    assert stored[0::2] == stored[1::2]  # the same text (PostgreSQL: the same jsonb)
    assert rows[2]["attributes"] == {"x": "nan"} and rows[6]["attributes"] == {} == rows[8]["attributes"]
