"""The seam between the receiver's transport and what stores the data: :class:`Consumer`.

The transport authenticates, bounds and decodes a request, then hands its
:class:`~qfleet.collector.rows.TelemetryBatch` to a consumer and answers the client with
what :meth:`Consumer.consume` returns: 200 only for :data:`COMMITTED`, which a consumer
returns once the rows are durably stored (ack after commit); 503 with ``Retry-After`` for a
retryable refusal; 400 or 413 when resending cannot help. In the OpenTelemetry Collector's
terms the transport is the receiver and the consumer is the rest of the pipeline.

:class:`MemoryConsumer` is the in-memory implementation beside the protocol (for tests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

from qfleet.collector.rows import TelemetryBatch

__all__ = [
    "REASON_TEXT",
    "COMMITTED",
    "POINTS",
    "REFUSE_REASONS",
    "REJECT_REASONS",
    "SIGNALS",
    "SPANS",
    "Consumer",
    "MemoryConsumer",
    "Outcome",
    "Pending",
    "QueueingConsumer",
    "Reason",
    "SignalName",
]

#: What a client is told for each refusal reason when the consumer gives no message of its own (both
#: transports answer in these words).
REASON_TEXT = {
    "queue_full": "ingest queue is full (database behind); retry later",
    "write_error": "database write failed; retry later",
    "ack_timeout": "not committed in time; retry later (resending is safe)",
    "stopping": "the collector is shutting down; retry later",
    "unstorable": "the data of this request cannot be stored (resending cannot help)",
    "too_large": "request holds more items than the collector can ever queue; send smaller batches",
    "inflight": "too many requests in flight; retry later",
}

#: What a request carries: spans (``/v1/traces``) or metric points (``/v1/metrics``).
SignalName = Literal["spans", "metric_points"]
SPANS: Final = "spans"
POINTS: Final = "metric_points"
SIGNALS: tuple[SignalName, SignalName] = (SPANS, POINTS)

#: Why a consumer did not commit a batch. ``queue_full``, ``write_error``, ``ack_timeout`` and
#: ``stopping`` are retryable (503); ``unstorable`` means the database refused the data itself
#: (400); ``too_large`` means the batch can never fit (413).
Reason = Literal["committed", "queue_full", "write_error", "ack_timeout", "stopping", "unstorable", "too_large"]
#: Retryable refusals (503), plus what the transport itself answers: ``inflight`` (requests in flight),
#: ``inflight_bytes`` (request bytes in flight) and ``body_timeout`` (408: the body came too slowly).
REFUSE_REASONS = ("queue_full", "inflight", "inflight_bytes", "body_timeout", "write_error", "ack_timeout",
                  "stopping")
#: Refusals for good, plus ``invalid`` (partial success) and ``malformed`` (the transport's).
REJECT_REASONS = ("invalid", "malformed", "too_large", "unstorable")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one batch handed to a :class:`Consumer`.

    Args:
        reason: ``committed``, or why not (see :data:`Reason`).
        message: for a refusal, what the client is told (empty: the transport's default text).

    Examples:
        >>> COMMITTED.committed, Outcome("queue_full").retryable, Outcome("unstorable").retryable
        (True, True, False)
    """

    reason: Reason
    message: str = ""

    @property
    def committed(self) -> bool:
        """The rows are stored: the client may be told 200."""
        return self.reason == "committed"

    @property
    def retryable(self) -> bool:
        """Resending the same request later may succeed (answered 503 with ``Retry-After``)."""
        return self.reason in REFUSE_REASONS


#: The outcome of a stored batch.
COMMITTED: Final = Outcome("committed")


class Consumer(Protocol):
    """Takes decoded batches from the transport, one call per request, from many threads."""

    def consume(self, batch: TelemetryBatch, signal: SignalName) -> Outcome:
        """Store ``batch`` (``batch.item_count > 0``); return :data:`COMMITTED` only once it is committed.

        Must not raise: a failure is an :class:`Outcome` (``write_error`` when retrying may help).
        """
        ...


class Pending(Protocol):
    """A batch handed to a :class:`QueueingConsumer`, waiting for its answer."""

    def result(self) -> Outcome | None:
        """The answer, or ``None`` while there is none."""
        ...


@runtime_checkable
class QueueingConsumer(Consumer, Protocol):
    """A :class:`Consumer` that can also queue a batch and call back once it is answered, so
    that the caller need not block a thread while the batch waits for its commit."""

    #: How long a caller waits for the answer before :meth:`abandon`.
    ack_timeout_s: float

    def submit(self, batch: TelemetryBatch, signal: SignalName, notify: Callable[[], None]) -> Pending | Outcome:
        """Queue ``batch``; ``notify()`` (from any thread) once :meth:`Pending.result` is set. A
        refusal comes back at once as an :class:`Outcome`. Must not raise."""
        ...

    def abandon(self, pending: Pending) -> Outcome:
        """The caller stops waiting: the answer if it came, else ``ack_timeout``."""
        ...


class MemoryConsumer:
    """A :class:`Consumer` that keeps every batch in a list, with an optional capacity in items.

    Args:
        capacity_items: items (spans plus points) it holds at most; a batch that would exceed it is
            refused with ``queue_full``. ``None``: unbounded.

    Examples:
        >>> c = MemoryConsumer(capacity_items=1)
        >>> b = TelemetryBatch(samples=[("fp", 1, 0.5)])
        >>> c.consume(b, POINTS).committed, c.consume(b, POINTS).reason, c.items
        (True, 'queue_full', 1)
    """

    def __init__(self, *, capacity_items: int | None = None) -> None:
        self.capacity_items = capacity_items
        self.batches: list[tuple[SignalName, TelemetryBatch]] = []
        self._lock = threading.Lock()

    @property
    def items(self) -> int:
        """Items (spans plus points) consumed so far."""
        with self._lock:
            return sum(b.item_count for _, b in self.batches)

    def consume(self, batch: TelemetryBatch, signal: SignalName) -> Outcome:
        """Keep ``batch`` unless it exceeds the capacity."""
        with self._lock:
            held = sum(b.item_count for _, b in self.batches)
            if self.capacity_items is not None and held + batch.item_count > self.capacity_items:
                return Outcome("queue_full", "in-memory consumer is full; retry later")
            self.batches.append((signal, batch))
        return COMMITTED
