"""When the receiver refreshes the store's per-minute rollups: :class:`RollupScheduler`.

Writes mark minute buckets pending (in the store); the scheduler runs
:meth:`Store.refresh_rollups` at most once per ``interval_s`` while writes keep coming, and
only for buckets no write touched for ``settle_s`` (so a live minute is rolled up once it
settles, not rescanned after every request). At stop, one forced refresh takes every
pending bucket. All calls come from one thread (the writer's); time comes from an
injected monotonic clock in ns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.store import Store
from qfleet.units import NS

__all__ = ["RollupScheduler"]

logger = logging.getLogger(__name__)

# The writer wakes at least this often (seconds) to see whether a refresh is due.
_MAX_IDLE_S = 1.0
_MIN_IDLE_S = 0.01


class RollupScheduler:
    """Decides when to refresh rollups, and refreshes them.

    Args:
        store: whose pending buckets are refreshed.
        interval_s: least time between two refreshes while writes arrive.
        settle_s: a bucket is refreshed once no write touched it for this long.
        clock: monotonic ns.
        metrics: counts failed refreshes.
    """

    def __init__(self, store: Store, *, interval_s: float, settle_s: float, clock: Callable[[], int],
                 metrics: ReceiverMetrics) -> None:
        self._store = store
        self._interval_ns = interval_s * NS
        self._settle_ns = int(settle_s * NS)
        self._clock = clock
        self._metrics = metrics
        self._dirty = True  # buckets left pending by an earlier run get refreshed too
        self._last = 0

    def start(self) -> None:
        """Start the first interval now."""
        self._last = self._clock()

    def mark_dirty(self) -> None:
        """A write committed: buckets may be pending."""
        self._dirty = True

    def idle_wait(self) -> float:
        """How long (seconds) the writer may sleep without missing a due refresh."""
        if not self._dirty:
            return _MAX_IDLE_S
        left_ns = self._interval_ns - (self._clock() - self._last)
        return min(max(left_ns / NS, _MIN_IDLE_S), _MAX_IDLE_S)

    def maybe_refresh(self, *, force: bool) -> None:
        """Refresh settled buckets if the interval passed since the last refresh (``force``: all, now).

        A failure is counted and logged; the buckets stay pending for the next try.
        """
        now = self._clock()
        if not force and (not self._dirty or now - self._last < self._interval_ns):
            return
        self._last = now
        try:
            # Live minutes are rolled up once they settle; at stop, everything.
            self._store.refresh_rollups(settle_ns=0 if force else self._settle_ns)
        except Exception as err:
            self._metrics.rollup_failed()
            logger.warning("rollup refresh failed (will retry): %s", err)
            return
        # Buckets still settling stay pending, so keep looking while data flows.
        self._dirty = not force
