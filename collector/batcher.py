"""The receiver's bounded queue: a :class:`Consumer` that waits for the writer's commit.

:meth:`BatchQueue.consume` queues a batch with a ticket and blocks its handler thread
until the writer (:mod:`qfleet.collector.writer`) has committed the batch, or refused it,
or ``ack_timeout_s`` passed. The queue is bounded in items (spans plus points), which is
what bounds memory: when a batch does not fit, the client is told to retry (503) instead of
the receiver buffering without limit. The writer takes tickets in order with
:meth:`BatchQueue.take`, coalescing them up to a size, and answers each with
:meth:`BatchQueue.resolve`. The transport may instead :meth:`BatchQueue.submit` a batch and be
notified of the answer, so that no thread waits for the commit (the HTTP event loop does).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from qfleet.collector.consumer import Outcome, SignalName
from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.rows import TelemetryBatch

__all__ = ["BatchQueue", "Ticket"]

logger = logging.getLogger(__name__)


def _nothing() -> None:
    pass


class Ticket:
    """One queued batch, and the writer's answer once :attr:`done` is set (then ``notify`` is called)."""

    __slots__ = ("abandoned", "batch", "done", "items", "notify", "outcome", "signal")

    def __init__(self, batch: TelemetryBatch, signal: SignalName, notify: Callable[[], None] = _nothing) -> None:
        self.batch = batch
        self.signal = signal
        self.items = batch.item_count
        self.done = threading.Event()
        self.notify = notify
        self.outcome = Outcome("write_error")
        self.abandoned = False  # the client stopped waiting (ack_timeout)

    def result(self) -> Outcome | None:
        """The writer's answer, or ``None`` while there is none."""
        return self.outcome if self.done.is_set() else None


class BatchQueue:
    """A queue of at most ``capacity_items`` spans plus points waiting for (or in) a commit.

    Args:
        capacity_items: items queued or being written at once; beyond it, ``queue_full``.
        ack_timeout_s: how long :meth:`consume` waits for the commit before ``ack_timeout``.
        metrics: counts items discarded at stop (``qfleet_collector_dropped_total``).
        writer_alive: whether anything still takes from the queue (if not: ``write_error``).
    """

    def __init__(self, *, capacity_items: int, ack_timeout_s: float, metrics: ReceiverMetrics,
                 writer_alive: Callable[[], bool] = lambda: True) -> None:
        self.capacity_items = capacity_items
        self.ack_timeout_s = ack_timeout_s
        self._metrics = metrics
        self._writer_alive = writer_alive
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[Ticket] = deque()
        self._items = 0  # queued plus being written: what bounds memory
        self._closed = False
        self._drain_deadline = math.inf

    @property
    def items(self) -> int:
        """Spans plus points queued or being written."""
        return self._items

    # -- the consumer side (handler threads) ---------------------------------------

    def consume(self, batch: TelemetryBatch, signal: SignalName) -> Outcome:
        """Queue ``batch`` and wait for its commit; see :class:`~qfleet.collector.consumer.Consumer`."""
        ticket = self.submit(batch, signal)
        if isinstance(ticket, Outcome):
            return ticket
        if not ticket.done.wait(self.ack_timeout_s):
            return self.abandon(ticket)
        return ticket.outcome

    def submit(self, batch: TelemetryBatch, signal: SignalName, notify: Callable[[], None] = _nothing,
               ) -> Ticket | Outcome:
        """Queue ``batch`` without waiting; ``notify`` is called from the writer's thread once it is
        answered (:meth:`Ticket.result`). A refusal is returned at once as an :class:`Outcome`."""
        ticket = Ticket(batch, signal, notify)
        if ticket.items > self.capacity_items:
            return Outcome("too_large", f"request holds {ticket.items} {signal}, more than the receiver's "
                                        f"whole queue (queue_items={self.capacity_items}); send smaller batches")
        with self._cond:
            if self._closed:
                return Outcome("stopping")
            if not self._writer_alive():
                return Outcome("write_error")
            if self._items + ticket.items > self.capacity_items:
                return Outcome("queue_full")
            self._items += ticket.items
            self._queue.append(ticket)
            self._cond.notify_all()
        return ticket

    def abandon(self, ticket: Ticket) -> Outcome:
        """The client stops waiting for ``ticket`` (``ack_timeout_s`` passed): its answer if it came
        meanwhile, else ``ack_timeout`` (the batch may still commit later; resending is safe)."""
        with self._lock:
            if ticket.done.is_set():
                return ticket.outcome
            ticket.abandoned = True
        return Outcome("ack_timeout", f"not committed within {self.ack_timeout_s} s; retry later "
                                      "(resending is safe)")

    # -- the writer side -------------------------------------------------------------

    def take(self, max_items: int, *, wait_s: float) -> list[Ticket] | None:
        """The next tickets in order, up to ``max_items`` (at least one); ``None`` when the writer should stop.

        Waits up to ``wait_s`` for work (then returns an empty list). After :meth:`close`,
        returns what is left, then ``None``; past the drain deadline, discards the rest.
        """
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(wait_s)
            if not self._queue and self._closed:
                return None
            if self._closed and time.monotonic() > self._drain_deadline:
                self._discard()
                return None
            take: list[Ticket] = []
            n = 0
            while self._queue and (not take or n + self._queue[0].items <= max_items):
                t = self._queue.popleft()
                take.append(t)
                n += t.items
            return take

    def resolve(self, ticket: Ticket, outcome: Outcome) -> None:
        """Answer ``ticket`` (its handler thread wakes up) and free its rows."""
        with self._lock:
            self._items -= ticket.items
            ticket.outcome = outcome
            ticket.done.set()
            ticket.notify()
            if not outcome.committed and ticket.abandoned:
                logger.warning("%d %s were not committed and their client had stopped waiting "
                               "(it was told to retry)", ticket.items, ticket.signal)
        ticket.batch = TelemetryBatch()  # an abandoned ticket may linger

    def close(self, *, drain_deadline: float) -> None:
        """Refuse new batches (``stopping``); the writer commits the rest until ``drain_deadline``
        (``time.monotonic()`` seconds), then discards what is left."""
        with self._cond:
            self._closed = True
            self._drain_deadline = drain_deadline
            self._cond.notify_all()

    def _discard(self) -> None:
        # Called with the lock held, at stop, once the drain deadline has passed.
        while self._queue:
            t = self._queue.popleft()
            self._items -= t.items
            self._metrics.dropped(t.signal, t.items)
            t.outcome = Outcome("stopping")
            t.done.set()
            t.notify()
        logger.error("stop: database did not take the queue in time; discarded the rest "
                     "(see qfleet_collector_dropped_total)")

