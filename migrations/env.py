"""Alembic environment: runs against the connection qfleet hands over (see collector.migrate)."""

from alembic import context
from sqlalchemy import Connection

from qfleet.migrations import target_metadata as _gather

# Every package's own tables: autogenerate and `alembic check` compare against all of them.
target_metadata = list(_gather())


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # A failed migration must not leave earlier steps of the same run half-applied.
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "qfleet migrations run through `qfleet db upgrade` (collector.migrate), "
            "which passes an open connection; the bare alembic CLI is not configured"
        )
    _run(connection)


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; use `qfleet db upgrade`")
run()
