"""The ``qfleet`` console script: a small dispatcher to each package's own CLI.

Errors a user can fix (a bad file, an unreachable or unmigrated database) that a command did not report itself
end here as one line on stderr and exit status 2; anything else is a bug and keeps its traceback. A closed
stdout (``qfleet … | head``) ends the command quietly, as the CPython documentation recommends for SIGPIPE.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "user_error"]

# Command group -> module whose ``main(argv)`` runs it. Imported lazily: `qfleet db current`
# must not pay for the simulator's imports.
COMMANDS = {
    "db": "qfleet.collector.cli",
    "collector": "qfleet.collector.cli",
    "runs": "qfleet.collector.cli",
    "demo": "qfleet.demo",
    "sim": "qfleet.simulator.cli",
    "slo": "qfleet.slo.cli",
    "alerts": "qfleet.alerts.cli",
    "serve": "qfleet.serve",
    "gameday": "qfleet.runbooks.cli",
    "lab": "qfleet.runbooks.lab_cli",
    "dashboards": "qfleet.dashboards.cli",
    "postmortem": "qfleet.runbooks.cli",
    "incidents": "qfleet.runbooks.cli",
}

USAGE = """usage: qfleet COMMAND ...

commands:
  demo        the bad-day game day end to end on ./qfleet.db, then the dashboards
  db          schema migrations (upgrade, downgrade, current), retention (prune), rollups
  collector   the OTLP/HTTP receiver (serve)
  sim         the fleet simulator (run, experiment, chain)
  runs        the simulated runs in the store (list)
  slo         SLOs: validate specs, evaluate budgets and burn rates, export Prometheus rules
  alerts      alert routing previews, timeline replays, silences, acknowledgements, incidents
  serve       the collector plus SLO evaluation, alert rules and notification delivery, in one process
  gameday     run a game-day scenario end to end and score detection (run, list)
  lab         alert quality over campaigns of game days: detection curves, false pages (run, compare, tune)
  postmortem  export an incident's postmortem (md, json, html with charts)
  incidents   list incidents
  dashboards  the Streamlit exec, on-call and debug views (127.0.0.1:8501)

Run `qfleet COMMAND --help` for a command's options.
"""

# SQLite's messages and psycopg's error classes for a table or column the schema should have: the store is not
# migrated to head.
_SQLITE_MISSING = ("no such table", "no such column")
_PG_MISSING = ("UndefinedTable", "UndefinedColumn")


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug (which keeps its traceback).

    Covers the loaders' :class:`~qfleet.problems.ProblemsError` (one line per problem), the store's
    ``StoreError``, a database that refuses connections and a store whose schema is behind.

    Examples:
        >>> from qfleet.problems import Problem, ProblemsError
        >>> user_error(ProblemsError([Problem("version", "must be 1, got 2", "write version: 1")], source="f.yaml"))
        'f.yaml: version: must be 1, got 2 (fix: write version: 1)'
        >>> user_error(KeyError("x")) is None
        True
    """
    from qfleet.problems import ProblemsError

    if isinstance(exc, ProblemsError):
        return str(exc)
    store = sys.modules.get("qfleet.collector.store")  # loaded whenever a StoreError can exist
    if store is not None and isinstance(exc, store.StoreError):
        return _first_line(exc)
    if "sqlalchemy" in sys.modules:
        return _database_error(exc)
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _database_error(exc: BaseException) -> str | None:
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    if not isinstance(exc, DBAPIError):
        return None
    reason = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
    if isinstance(exc, OperationalError) and (exc.connection_invalidated or not exc.statement):
        # Connection errors carry no statement: the server is down, the port wrong, or the database missing.
        return (f"cannot reach the database ({reason}): start the server, check host, port, user and database "
                "name (--db or $QFLEET_DATABASE_URL), or create the database")
    missing = type(exc.orig).__name__ in _PG_MISSING or any(w in str(exc.orig) for w in _SQLITE_MISSING)
    if isinstance(exc, (OperationalError, ProgrammingError)) and missing:
        return (f"the database schema is not at head ({reason}): run `qfleet db upgrade --db URL` "
                "(or check that --db names a qfleet store)")
    return None


def _stdout_closed() -> int:
    """Exit quietly when the reader of stdout went away (``| head``): as the CPython docs recommend, point
    stdout at devnull so that the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a replaced sys.stdout (tests) has no usable descriptor
        pass
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qfleet`` script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    module = COMMANDS.get(args[0])
    if module is None:
        print(f"qfleet: unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("qfleet").setLevel(logging.INFO)  # every package logs under qfleet.<package>.<module>
    try:
        mod = importlib.import_module(module)
        # These CLIs serve several command groups and need the group name.
        status = int(mod.main(args if module in ("qfleet.collector.cli", "qfleet.runbooks.cli") else args[1:]) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here for short outputs
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"qfleet {args[0]}: {message}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
