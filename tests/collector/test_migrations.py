"""Alembic history: one head, up/down/up with data in the tables, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from qfleet.collector.convert import SpanColumns
from qfleet.collector.migrate import current_revisions, downgrade, head_revisions, upgrade
from qfleet.collector.runs import Runs
from qfleet.collector.store import Store, open_engine
from qfleet.migrations import target_metadata


def test_history_has_exactly_one_head() -> None:
    assert len(head_revisions()) == 1


def _spans(n: int, offset: int = 0) -> SpanColumns:
    t0 = 1_800_000_000_000_000_000
    return SpanColumns(
        trace_id=[f"{i + offset + 1:032x}" for i in range(n)],
        span_id=[f"{i + offset + 1:016x}" for i in range(n)],
        name=["link.entangle"] * n,
        start_time_unix_nano=[t0 + i for i in range(n)],
        end_time_unix_nano=[t0 + i + 1000 for i in range(n)],
        node_id=["node-a"] * n,
    )


def test_upgrade_downgrade_upgrade_with_data(db_url: str) -> None:
    engine = open_engine(db_url)
    upgrade(engine)
    assert current_revisions(engine) == head_revisions()
    Store(engine).write(_spans(50).to_batch(service_name="sim"))
    assert Store(engine).count("spans") == 50
    Runs(engine).register("r1", fleet="mesh", start_ns=1, end_ns=2)

    downgrade(engine, "base")
    assert current_revisions(engine) == ()
    leftover = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert leftover == set(), f"downgrade left tables behind: {leftover}"

    upgrade(engine)
    store = Store(engine)
    store.write(_spans(20, offset=1000).to_batch(service_name="sim"))
    assert store.count("spans") == 20
    assert Runs(engine).list() == []  # the runs table came back empty
    engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    """The equivalent of `alembic check`: autogenerate finds nothing to do after upgrade."""
    engine = open_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, list(target_metadata()))
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_every_table_has_one_owner_and_the_history_covers_them_all(sqlite_url: str) -> None:
    owners = {name: md for md in target_metadata() for name in md.tables}
    assert sum(len(md.tables) for md in target_metadata()) == len(owners), "a table is declared twice"
    assert {"spans", "slo_counts", "slo_evaluations", "alerts", "incidents", "silences"} <= set(owners)
    engine = open_engine(sqlite_url)
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set(owners)
    engine.dispose()


def test_upgrade_is_idempotent_and_current_is_reported(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    upgrade(engine)
    upgrade(engine)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == list(head_revisions())
