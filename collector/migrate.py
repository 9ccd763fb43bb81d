"""Schema migrations through Alembic, with the history shipped in the ``migrations`` package.

:func:`open_existing` is how read-only commands open a store: it never creates a database and turns a missing
file, an unreachable server or an unmigrated schema into one :class:`StoreError` line that says the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from qfleet.collector.store import StoreError, open_engine

__all__ = [
    "alembic_config",
    "current_revisions",
    "downgrade",
    "head_revisions",
    "is_connection_error",
    "open_existing",
    "reporting_unreachable",
    "require_existing",
    "shown_url",
    "sqlite_file",
    "unreachable",
    "upgrade",
]


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


def shown_url(url: URL | Engine) -> str:
    """The URL as it may be printed: the password masked as ``***``."""
    return (url.url if isinstance(url, Engine) else url).render_as_string(hide_password=True)


def unreachable(engine: Engine, err: DBAPIError) -> StoreError:
    """One-line :class:`StoreError` for a database that refused a connection (down, wrong port, no database).

    Examples:
        >>> from sqlalchemy.exc import OperationalError
        >>> e = open_engine("postgresql+psycopg://u:secret@127.0.0.1:1/x")
        >>> str(unreachable(e, OperationalError("connect", {}, Exception("connection refused\\nmore"))))
        "cannot reach database 'postgresql+psycopg://u:***@127.0.0.1:1/x' (connection refused): start the server, check host, port, user and database name (create it with createdb), or pass another --db"
    """
    reason = str(err.orig if err.orig is not None else err).strip().splitlines()
    detail = f" ({reason[0].strip()})" if reason else ""
    return StoreError(f"cannot reach database {shown_url(engine)!r}{detail}: start the server, check host, port, "
                      "user and database name (create it with createdb), or pass another --db")


@contextmanager
def reporting_unreachable(engine: Engine) -> Iterator[None]:
    """Inside it, a failure to connect to ``engine`` becomes the one-line :func:`unreachable` error; any other
    database error passes through unchanged."""
    try:
        yield
    except DBAPIError as err:
        if is_connection_error(err):
            raise unreachable(engine, err) from None
        raise


def _revision_error(engine: Engine, revision: str, err: CommandError) -> StoreError:
    reason = (str(err).strip().splitlines() or ["unknown revision"])[0]
    return StoreError(f"{shown_url(engine)}: revision {revision!r} cannot be used ({reason}); give a revision "
                      "from `qfleet db current`, 'head', 'base' or a relative one such as -1")


def _run(engine: Engine, fn: Callable[[Config, str], None], revision: str) -> None:
    cfg = alembic_config(engine)
    try:
        with reporting_unreachable(engine), engine.begin() as conn:
            cfg.attributes["connection"] = conn
            fn(cfg, revision)
    except CommandError as err:  # an unknown or ambiguous revision: the transaction rolled back
        raise _revision_error(engine, revision, err) from None


def is_connection_error(err: DBAPIError) -> bool:
    """Whether ``err`` is a failure to connect (server down, wrong port, missing database), not a bad statement."""
    # Connection failures happen before any statement, so SQLAlchemy records no statement text for them.
    return err.connection_invalidated or (isinstance(err, OperationalError) and not err.statement)


def _sqlite_parent_missing(engine: Engine) -> StoreError | None:
    path = sqlite_file(engine.url)
    if path is None or path.parent.is_dir():
        return None
    return StoreError(f"SQLite database {engine.url.database!r}: directory {str(path.parent)!r} does not exist; "
                      "create it (mkdir -p) or pass another --db")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the latest).

    Raises:
        StoreError: the SQLite file's directory is missing, the server cannot be reached, or the revision is
            unknown.
    """
    missing = _sqlite_parent_missing(engine)
    if missing is not None:
        raise missing
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` removes every table).

    Raises:
        StoreError: as :func:`upgrade`.
    """
    missing = _sqlite_parent_missing(engine)
    if missing is not None:
        raise missing
    _run(engine, command.downgrade, revision)


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions the database is at (empty before the first upgrade)."""
    with engine.connect() as conn:
        return tuple(MigrationContext.configure(conn).get_current_heads())


def head_revisions() -> tuple[str, ...]:
    """The head revisions of the shipped history (exactly one when the history is sound)."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; ``None`` for another backend, an in-memory database or a ``file:`` URI
    (which SQLite opens itself: it may be in memory, and ``mode=ro``/``rw`` refuse to create)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or str(url.query.get("uri", "")).lower() in ("true", "1"):
        return None
    return Path(database).expanduser()


def require_existing(engine: Engine) -> None:
    """Check that a SQLite URL names an existing file (connecting would create an empty one).

    Raises:
        StoreError: the file does not exist; the message names it and how to create a store there.
    """
    path = sqlite_file(engine.url)
    if path is not None and not path.is_file():
        engine.dispose()
        raise StoreError(f"SQLite database {str(path)!r} does not exist; check --db (or $QFLEET_DATABASE_URL), "
                         f"or create it with `qfleet db upgrade --db {shown_url(engine)}`")


def open_existing(url: str, **kwargs: Any) -> Engine:
    """An engine on an existing qfleet store whose schema is at head; creates nothing.

    For read-only commands (``incidents list``, the dashboards, ``alerts`` readers): SQLite would create an
    empty file on connect, and an unmigrated database fails later with ``no such table``/``UndefinedTable``.

    Raises:
        StoreError: the URL is invalid, the SQLite file does not exist, the server cannot be reached (the URL is
            shown with its password masked), or the schema is not at head (the message says
            ``run `qfleet db upgrade --db URL```).
    """
    engine = open_engine(url, **kwargs)
    shown = shown_url(engine)
    require_existing(engine)
    try:
        current = current_revisions(engine)
    except DBAPIError as err:
        engine.dispose()
        raise unreachable(engine, err) from None
    heads = head_revisions()
    if set(current) != set(heads):
        engine.dispose()
        script = ScriptDirectory.from_config(alembic_config())
        known = {r.revision for r in script.walk_revisions()}
        if any(rev not in known for rev in current):
            raise StoreError(f"database {shown!r} is at revision {', '.join(current)}, which this qfleet does "
                             "not know (written by a newer version?); upgrade qfleet or use another --db")
        state = f"at revision {', '.join(current)}" if current else "has no qfleet schema"
        raise StoreError(f"database {shown!r} {state}, not at head {', '.join(heads)}; "
                         f"run `qfleet db upgrade --db {shown}`")
    return engine


@contextmanager
def scratch_database(server_url: str, name: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database ``name`` on the server of ``server_url`` for the block (its URL), dropped after
    unless ``keep``; a leftover of the same name (a killed run's) is dropped first. The role needs CREATEDB.

    Raises:
        ValueError: ``server_url`` is not PostgreSQL, or ``name`` is not lower-case letters, digits and ``_``.
    """
    import re

    from sqlalchemy import create_engine, make_url, text

    base = make_url(server_url)
    if base.get_backend_name() != "postgresql" or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"cannot make database {name!r} on {shown_url(base)}: a PostgreSQL URL and a name of "
                         "lower-case letters, digits and _ (at most 63) are needed")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    drop = text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # name checked above: a safe identifier
    try:
        with reporting_unreachable(admin), admin.connect() as c:
            c.execute(drop)
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            if not keep:
                with admin.connect() as c:
                    c.execute(drop)
    finally:
        admin.dispose()
