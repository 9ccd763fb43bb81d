"""Fewer cyclic garbage collections while a simulation runs.

The engine keeps hundreds of thousands of live container objects (queued jobs, caches, span and metric buffers)
and allocates and frees millions more. At CPython's default generation-0 threshold (700 net allocations) the
cyclic collector ran every few hundred jobs and walked the young objects each time, and a full collection walked
everything: a fifth of the engine's time on a simulated hour of ``fleet100`` (``bench/gc_share.py``,
docs/benchmarks.md), and about as much of the store writer's, which holds many rows in flight too. Almost nothing
the engine frees is cyclic (reference counting frees it at once), so a higher threshold only postpones the rare
cycle; it never changes what the engine computes.

Thresholds are process-wide: :func:`fewer_collections` raises them while at least one caller is inside it and puts
back what it found when the last one leaves, so interleaved or nested runs (and threads) leave the process as they
found it.

The simulator's writer process goes further with :func:`paused_collections`: no cyclic collection at all while
one batch of steps is unpickled and written. The rows of a batch are tuples, lists and dicts that only the batch
holds, so at the raised threshold each collection during a batch walked tens of thousands of them, alive, only to
find no cycle (about 6 % of the writer's CPU, measured with perf when this came in: docs/benchmarks.md as of
commit 42c4947); freed with the batch, they are never walked. A cycle made meanwhile waits for the first
collection after the batch.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GEN0_THRESHOLD", "fewer_collections", "paused_collections"]

#: Net container allocations between two generation-0 collections while a simulation runs (CPython: 700).
GEN0_THRESHOLD = 50_000

_lock = threading.Lock()
_users = 0
_saved: tuple[int, ...] = ()
_paused = 0
_was_enabled = True


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the generation-0 threshold to at least :data:`GEN0_THRESHOLD` inside the block."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], GEN0_THRESHOLD), *_saved[1:])
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                gc.set_threshold(*_saved)


@contextmanager
def paused_collections() -> Iterator[None]:
    """No automatic cyclic collection inside the block; the collector's state is put back when the last caller
    leaves. Drop the block's objects before leaving it: the allocations it made count towards the next collection,
    and whatever is still alive then is walked."""
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()
