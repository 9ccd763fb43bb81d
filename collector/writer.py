"""The receiver's store writer: one thread drains the :class:`BatchQueue` into the store.

It coalesces queued batches into one :meth:`Store.write_many` transaction and answers
every ticket after the commit (ack after commit), so a client hears 200 only for rows
that survive a crash. When a coalesced transaction fails, each batch is retried alone, so
one bad request cannot fail the others; a batch the database refuses for its data
(resending cannot help) is answered ``unstorable``, any other failure ``write_error``
(retry). Between writes it gives the :class:`RollupScheduler` its turn.

On SQLite a :class:`WalCheckpointer` thread copies the write-ahead log into the database file while the
writer goes on, so no commit (and no client waiting for it) pays for a checkpoint.

It remembers how the last writes went (:attr:`StoreWriter.state`): failures that blame the
database rather than the data, counted until a write succeeds, and the last error, which
the receiver's ``/healthz`` reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from qfleet.collector.batcher import BatchQueue, Ticket
from qfleet.collector.consumer import COMMITTED, Outcome
from qfleet.collector.decode import clip
from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.rollups import RollupScheduler
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.store import Store
from qfleet.units import NS

__all__ = ["StoreWriter", "WalCheckpointer", "WriterState", "describe_error", "is_data_error"]

logger = logging.getLogger(__name__)

# After an unexpected error in the loop, pause before the next turn (no hot loop).
_ERROR_PAUSE_S = 0.05


def is_data_error(err: BaseException) -> bool:
    """Whether ``err`` blames the rows rather than the database (retrying cannot help).

    DB-API drivers raise ``DataError`` for values out of range (SQLAlchemy wraps it under
    the same name); binding a Python int beyond 64 bits or a string with lone surrogates
    raises ``OverflowError`` / ``UnicodeEncodeError`` (a ``ValueError``) before any SQL runs.

    >>> is_data_error(OverflowError("int too big")), is_data_error(ConnectionError("gone"))
    (True, False)
    """
    if isinstance(err, (OverflowError, ValueError)):
        return True
    return any(c.__name__ == "DataError" for c in type(err).__mro__)


def describe_error(err: BaseException) -> str:
    """``Type: first line`` of the driver's error, for health answers (which need no token).

    SQLAlchemy's own text adds the statement and its parameters (telemetry of other clients):
    only the wrapped driver error's first line is shown.

    >>> describe_error(OSError("disk full\\nmore detail"))
    'OSError: disk full'
    """
    orig = getattr(err, "orig", None)
    e = orig if isinstance(orig, BaseException) else err
    lines = str(e).strip().splitlines()
    return clip(f"{type(e).__name__}: {lines[0] if lines else ''}")


@dataclass(frozen=True, slots=True)
class WriterState:
    """How the writer is doing.

    Args:
        alive: the writer thread runs.
        consecutive_failures: write transactions that failed for a reason other than their data
            (database unreachable, read-only, schema missing...) since the last one that committed.
        last_error: the last such failure (``Type: message``), kept after a success for the record.
        last_error_ns: when it happened, on the writer's clock (monotonic ns); 0 if never.
    """

    alive: bool
    consecutive_failures: int
    last_error: str
    last_error_ns: int

    @property
    def healthy(self) -> bool:
        """Alive, and the last write that did not fail for its data committed."""
        return self.alive and self.consecutive_failures == 0


class WalCheckpointer:
    """Checkpoints SQLite's write-ahead log from a thread of its own while the receiver runs.

    SQLite checkpoints inside the commit that grows the WAL past ``wal_autocheckpoint`` pages (see
    :func:`~qfleet.collector.store.open_engine`): the writer thread, and every client waiting for that commit,
    would wait while tens of megabytes are copied and synced. A passive checkpoint every ``interval_s`` after
    a commit keeps the WAL below that size, so commits only append; the autocheckpoint stays as the backstop
    should this thread fall behind. Nothing to do on PostgreSQL.

    Args:
        store: the receiver's store.
        interval_s: time between checkpoints while commits arrive.
    """

    def __init__(self, store: Store, *, interval_s: float = 0.2) -> None:
        self._store = store
        self._interval_s = interval_s
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def mark_dirty(self) -> None:
        """A commit happened: checkpoint at the next turn."""
        self._dirty.set()

    def start(self) -> None:
        """Start the thread (SQLite only); it runs until :meth:`stop`."""
        if self._store.dialect == "sqlite":
            self._thread = threading.Thread(target=self._run, name="qfleet-checkpoint", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Stop the thread, waiting up to ``timeout_s`` for a checkpoint under way."""
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while self._dirty.wait() and not self._stop.is_set():
            self._dirty.clear()
            try:
                self._store.checkpoint()
            except Exception:  # the autocheckpoint still bounds the WAL; say so and go on
                logger.exception("WAL checkpoint failed; commits checkpoint by themselves meanwhile")
            self._stop.wait(self._interval_s)


class StoreWriter:
    """The thread that commits queued batches and answers their tickets.

    Args:
        store: the only writer of ``store`` while the receiver runs.
        queue: where the tickets come from.
        rollups: refreshed between writes and once at the end.
        metrics: counts stored items, failed transactions and write durations.
        max_batch_items: the most items coalesced into one transaction.
        clock: monotonic ns, for write durations.
        checkpoints: told of each commit, when the receiver checkpoints the WAL on its own thread.
    """

    def __init__(self, store: Store, queue: BatchQueue, rollups: RollupScheduler, metrics: ReceiverMetrics, *,
                 max_batch_items: int, clock: Callable[[], int],
                 checkpoints: WalCheckpointer | None = None) -> None:
        self._checkpoints = checkpoints
        self._store = store
        self._queue = queue
        self._rollups = rollups
        self._metrics = metrics
        self._max_items = max_batch_items
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._last_error = ""
        self._last_error_ns = 0

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> WriterState:
        """Alive, consecutive failures and the last error (see :class:`WriterState`)."""
        return WriterState(self.alive, self._failures, self._last_error, self._last_error_ns)

    def _failed_write(self, err: BaseException) -> None:
        self._failures += 1
        self._last_error = describe_error(err)
        self._last_error_ns = self._clock()

    def start(self) -> None:
        """Start the thread; it runs until the queue is closed and drained."""
        self._thread = threading.Thread(target=self._run, name="qfleet-writer", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread to end; ``True`` once it has."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.alive

    def _run(self) -> None:
        while True:
            take: list[Ticket] = []
            try:
                got = self._queue.take(self._max_items, wait_s=self._rollups.idle_wait())
                if got is None:
                    break
                take = got
                if take:
                    self._write(take)
                self._rollups.maybe_refresh(force=False)
            except Exception as err:  # the writer must outlive any single failure
                logger.exception("writer loop error; continuing")
                self._failed_write(err)
                for t in take:
                    if not t.done.is_set():
                        self._queue.resolve(t, Outcome("write_error"))
                time.sleep(_ERROR_PAUSE_S)
        try:
            self._rollups.maybe_refresh(force=True)
        except Exception:
            logger.exception("final rollup refresh failed")

    def _write(self, take: list[Ticket]) -> None:
        try:
            self._commit([t.batch for t in take])
        except Exception as err:
            self._metrics.write_failed()
            if len(take) == 1:
                self._failed(take[0], err)
                return
            # One bad batch must not fail the others: retry them one by one.
            logger.warning("coalesced write of %d requests failed (%s); retrying one by one", len(take), err)
            for t in take:
                try:
                    self._commit([t.batch])
                except Exception as one_err:
                    self._metrics.write_failed()
                    self._failed(t, one_err)
                else:
                    self._committed(t)
            return
        for t in take:
            self._committed(t)

    def _committed(self, t: Ticket) -> None:
        self._failures = 0
        self._metrics.stored(t.signal, t.items)
        self._queue.resolve(t, COMMITTED)

    def _failed(self, t: Ticket, err: Exception) -> None:
        if is_data_error(err):
            logger.warning("write of %d %s refused by the database (answered 400): %s", t.items, t.signal, err)
            self._queue.resolve(t, Outcome("unstorable", "the database refused this request's data (resending "
                                                         f"cannot help): {clip(f'{type(err).__name__}: {err}')}"))
        else:
            self._failed_write(err)
            logger.warning("write of %d %s failed (answered 503): %s", t.items, t.signal, err)
            self._queue.resolve(t, Outcome("write_error"))

    def _commit(self, batches: list[TelemetryBatch]) -> None:
        t0 = self._clock()
        if len(batches) == 1:
            self._store.write(batches[0])
        else:
            self._store.write_many(batches)
        self._metrics.observe_write((self._clock() - t0) / NS)
        self._rollups.mark_dirty()
        if self._checkpoints is not None:
            self._checkpoints.mark_dirty()
