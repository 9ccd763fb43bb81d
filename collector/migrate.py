"""Schema migrations through Alembic, with the history shipped in the ``migrations`` package."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["alembic_config", "current_revisions", "downgrade", "head_revisions", "upgrade"]


def _script_location() -> str:
    # importlib.resources finds the history inside an installed wheel as well as a checkout.
    return str(Path(str(files("qfleet.migrations"))))


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic ``Config`` for qfleet's history; ``engine`` is used for online commands."""
    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.set_main_option(
        "file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s"
    )
    cfg.attributes["engine"] = engine
    return cfg


def _run(engine: Engine, fn: Callable[[Config, str], None], revision: str) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the latest)."""
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` removes every table)."""
    _run(engine, command.downgrade, revision)


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions the database is at (empty before the first upgrade)."""
    with engine.connect() as conn:
        return tuple(MigrationContext.configure(conn).get_current_heads())


def head_revisions() -> tuple[str, ...]:
    """The head revisions of the shipped history (exactly one when the history is sound)."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
