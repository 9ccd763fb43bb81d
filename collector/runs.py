"""Runs: which simulated run wrote which simulated hours of the store.

A run is ``(id, fleet, [start, end))`` in simulated time. Writers of simulated runs register theirs before their
first row and finish it after their last; runs in one store never overlap, so a second run over the same hours is
refused before anything of it is written, and "select a run" is "select its time range". Telemetry received from
real fleets (OTLP) has no run and needs none.

Check-and-insert is one transaction that first takes a lock every registering writer takes: on SQLite a write
statement (the database's single write lock, held to the commit; ``busy_timeout`` queues the others), on PostgreSQL
``LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE`` (self-exclusive, readers are not blocked). The second of two racing
writers thus reads the first one's committed row and is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, insert, select, update

from qfleet.collector.schema import Run as RunRow
from qfleet.collector.store import StoreError
from qfleet.units import format_rfc3339

__all__ = ["Run", "RunOverlapError", "Runs", "register_run"]

RunStatus = Literal["running", "finished"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One stored run.

    Args:
        id: the simulator's run id.
        fleet: the fleet's name.
        start_ns: first simulated instant (Unix ns).
        end_ns: end of the simulated range, exclusive (grows while a run without a planned end is written).
        status: ``running`` while being written, ``finished`` once its writer closed it.
        created_ns: store clock (wall time) at registration.
        finished_ns: store clock when finished; ``None`` while running.
    """

    id: str
    fleet: str
    start_ns: int
    end_ns: int
    status: RunStatus
    created_ns: int
    finished_ns: int | None = None

    def __post_init__(self) -> None:
        if self.end_ns <= self.start_ns:
            raise StoreError(f"run {self.id!r}: end_ns={self.end_ns} is not after start_ns={self.start_ns}; "
                             "a run covers a non-empty simulated range")

    def describe(self) -> str:
        """``run ID (fleet FLEET, START to END)`` with UTC ISO times.

        >>> Run(id="r1", fleet="mesh", start_ns=0, end_ns=3_600_000_000_000, status="finished",
        ...     created_ns=0).describe()
        'run r1 (fleet mesh, 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z)'
        """
        return f"run {self.id} (fleet {self.fleet}, {format_rfc3339(self.start_ns)} to {format_rfc3339(self.end_ns)})"


class RunOverlapError(StoreError):
    """A run would overlap a stored run in simulated time (or reuse its id); nothing was written.

    Attributes:
        existing: the stored run it collides with.
    """

    def __init__(self, message: str, existing: Run) -> None:
        super().__init__(message)
        self.existing = existing


def _table() -> Table:
    t = RunRow.__table__
    assert isinstance(t, Table)
    return t


_COLS = ("id", "fleet", "start_unix_nano", "end_unix_nano", "status", "created_unix_nano", "finished_unix_nano")


def _run(row: Any) -> Run:
    rid, fleet, lo, hi, status, created, finished = row
    return Run(id=rid, fleet=fleet, start_ns=int(lo), end_ns=int(hi), status=status, created_ns=int(created),
               finished_ns=None if finished is None else int(finished))


def _select() -> Any:
    t = _table()
    return select(*(t.c[c] for c in _COLS))


def _lock(conn: Connection) -> None:
    """Take the registration lock for the rest of ``conn``'s transaction (see the module docstring)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")
    else:
        # Any write statement takes SQLite's write lock, even one that changes no row; a read first would pin
        # an older snapshot, so this comes before the overlap check.
        conn.execute(update(_table()).where(_table().c.id.is_(None)).values(status=_table().c.status))


def _overlapping(conn: Connection, run_id: str, start_ns: int, end_ns: int) -> Run | None:
    """The earliest stored run other than ``run_id`` whose range meets ``[start_ns, end_ns)``."""
    t = _table()
    row = conn.execute(_select().where(t.c.id != run_id, t.c.start_unix_nano < end_ns, t.c.end_unix_nano > start_ns)
                       .order_by(t.c.start_unix_nano).limit(1)).first()
    return None if row is None else _run(row)


def _refusal(new_id: str, fleet: str, start_ns: int, end_ns: int, old: Run) -> RunOverlapError:
    what = "reuses the id of" if old.id == new_id else "overlaps"
    return RunOverlapError(
        f"run {new_id} (fleet {fleet}, {format_rfc3339(start_ns)} to {format_rfc3339(end_ns)}) {what} the stored "
        f"{old.describe()}; write it to another database (--db), or start it at or after "
        f"{format_rfc3339(old.end_ns)} (--start)", old)


def register_run(conn: Connection, run: Run) -> Run:
    """Insert ``run`` inside ``conn``'s transaction unless it overlaps a stored run (the caller commits).

    Raises:
        RunOverlapError: a stored run overlaps it or has its id; nothing was inserted.
    """
    _lock(conn)
    t = _table()
    same = conn.execute(_select().where(t.c.id == run.id)).first()
    old = _run(same) if same is not None else _overlapping(conn, run.id, run.start_ns, run.end_ns)
    if old is not None:
        raise _refusal(run.id, run.fleet, run.start_ns, run.end_ns, old)
    conn.execute(insert(t).values(id=run.id, fleet=run.fleet, start_unix_nano=run.start_ns,
                                  end_unix_nano=run.end_ns, status=run.status, created_unix_nano=run.created_ns,
                                  finished_unix_nano=run.finished_ns))
    return run


class Runs:
    """The store's runs: register before writing, extend or finish after, and read them back.

    Args:
        engine: a migrated store's engine.
        clock: wall time in ns (``created``/``finished`` stamps only; run ranges are simulated time).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.engine = engine
        self.clock = clock

    def register(self, run_id: str, *, fleet: str, start_ns: int, end_ns: int) -> Run:
        """Record a new ``running`` run over ``[start_ns, end_ns)``, atomically with the overlap check.

        Raises:
            RunOverlapError: it would overlap a stored run (the message names it and the fix).
            StoreError: an empty range.
        """
        run = Run(id=run_id, fleet=fleet, start_ns=start_ns, end_ns=end_ns, status="running",
                  created_ns=self.clock())
        with self.engine.begin() as conn:
            return register_run(conn, run)

    def extend(self, run_id: str, end_ns: int) -> Run:
        """Grow a run's range to end at ``end_ns`` (never shrinks it), refusing to run into another run.

        Raises:
            RunOverlapError: the grown range would overlap another run; the run is unchanged.
            StoreError: no such run.
        """
        with self.engine.begin() as conn:
            _lock(conn)
            run = self._get(conn, run_id)
            if end_ns <= run.end_ns:
                return run
            old = _overlapping(conn, run_id, run.start_ns, end_ns)
            if old is not None:
                raise _refusal(run_id, run.fleet, run.start_ns, end_ns, old)
            t = _table()
            conn.execute(update(t).where(t.c.id == run_id).values(end_unix_nano=end_ns))
        return Run(id=run.id, fleet=run.fleet, start_ns=run.start_ns, end_ns=end_ns, status=run.status,
                   created_ns=run.created_ns, finished_ns=run.finished_ns)

    def finish(self, run_id: str, *, end_ns: int | None = None) -> Run:
        """Mark a run ``finished`` (after extending it to ``end_ns`` when given).

        Raises:
            RunOverlapError: from the extension.
            StoreError: no such run.
        """
        if end_ns is not None:
            self.extend(run_id, end_ns)
        now = self.clock()
        t = _table()
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == run_id).values(status="finished", finished_unix_nano=now))
            return self._get(conn, run_id)

    def list(self) -> list[Run]:
        """Every run, in simulated-time order."""
        t = _table()
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(_select().order_by(t.c.start_unix_nano, t.c.id))]

    def latest(self) -> Run | None:
        """The run registered last (ties: the later start); ``None`` for a store without runs."""
        t = _table()
        with self.engine.connect() as conn:
            row = conn.execute(_select().order_by(t.c.created_unix_nano.desc(), t.c.start_unix_nano.desc(),
                                                  t.c.id.desc()).limit(1)).first()
        return None if row is None else _run(row)

    def get(self, run_id: str) -> Run:
        """The run ``run_id``.

        Raises:
            StoreError: no such run (the message lists how to find the ids).
        """
        with self.engine.connect() as conn:
            return self._get(conn, run_id)

    def select(self, run_id: str | None) -> Run | None:
        """The run a view shows: ``run_id``, or the latest when ``None``; ``None`` when the store has no run.

        Raises:
            StoreError: ``run_id`` names no stored run.
        """
        return self.latest() if run_id is None else self.get(run_id)

    def events_range(self, run: Run) -> tuple[int, int | None]:
        """Where events caused by ``run`` (incidents opened by its alerts) may lie: from its start up to the next
        run's start (``None``: no later run); an alert firing near its end notifies after it."""
        t = _table()
        with self.engine.connect() as conn:
            nxt = conn.execute(select(t.c.start_unix_nano).where(t.c.start_unix_nano >= run.end_ns)
                               .order_by(t.c.start_unix_nano).limit(1)).scalar()
        return run.start_ns, None if nxt is None else int(nxt)

    def _get(self, conn: Connection, run_id: str) -> Run:
        row = conn.execute(_select().where(_table().c.id == run_id)).first()
        if row is None:
            raise StoreError(f"run {run_id!r} is not in this store; list the stored runs with `qfleet runs list`")
        return _run(row)
