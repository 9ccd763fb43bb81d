"""The engine's garbage-collection policy: thresholds raised while a run is inside, put back exactly as found when
the last run leaves (by exhaustion, close, an exception, nesting, interleaving or threads); and the writer
process's pause of the collector while a batch is alive, put back the same way."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

import pytest

from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.gcpolicy import GEN0_THRESHOLD, fewer_collections, paused_collections
from qfleet.units import NS

# Deliberately unlike CPython's defaults, so that "put back" cannot pass by accident.
CUSTOM = (1234, 11, 12)


@pytest.fixture(autouse=True)
def _custom_thresholds() -> Iterator[None]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(*CUSTOM)
    yield
    gc.set_threshold(*before)
    if enabled:
        gc.enable()


def _raised() -> bool:
    return gc.get_threshold() == (GEN0_THRESHOLD, *CUSTOM[1:])


def test_raised_inside_and_restored_after() -> None:
    with fewer_collections():
        assert _raised()
    assert gc.get_threshold() == CUSTOM


def test_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("boom")
    assert gc.get_threshold() == CUSTOM


def test_a_higher_threshold_is_kept() -> None:
    gc.set_threshold(GEN0_THRESHOLD * 3, 5, 6)
    with fewer_collections():
        assert gc.get_threshold() == (GEN0_THRESHOLD * 3, 5, 6)
    assert gc.get_threshold() == (GEN0_THRESHOLD * 3, 5, 6)


def test_interleaved_users_restore_when_the_last_leaves() -> None:
    a, b = fewer_collections(), fewer_collections()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)  # the first in leaves first: the second is still inside
    assert _raised()
    b.__exit__(None, None, None)
    assert gc.get_threshold() == CUSTOM


def test_threads_restore_when_the_last_leaves() -> None:
    inside = threading.Barrier(3)
    leave = threading.Event()

    def user() -> None:
        with fewer_collections():
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=user) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()  # both threads are inside
    assert _raised()
    leave.set()
    for t in threads:
        t.join()
    assert gc.get_threshold() == CUSTOM


def _sim(minutes: int) -> Simulation:
    return Simulation(load_fleet(builtin_fleet_path("line")), None, RunConfig(duration_ns=minutes * 60 * NS))


def test_steps_raise_while_running_and_restore_when_exhausted() -> None:
    seen = []
    for _step in _sim(3).steps():
        seen.append(gc.get_threshold())
    assert seen == [(GEN0_THRESHOLD, *CUSTOM[1:])] * 3
    assert gc.get_threshold() == CUSTOM


def test_steps_restore_when_closed_early() -> None:
    steps = _sim(5).steps()
    next(steps)
    assert _raised()
    steps.close()
    assert gc.get_threshold() == CUSTOM


def test_two_runs_stepped_in_turn() -> None:
    a, b = _sim(2).steps(), _sim(3).steps()
    next(a)
    next(b)
    assert list(a) and _raised()  # a ends while b is still running
    assert list(b)
    assert gc.get_threshold() == CUSTOM


def _collections_while(block: AbstractContextManager[None]) -> int:
    """Automatic collections inside ``block`` while 3 * CUSTOM[0] lists are made and kept."""
    seen = []

    def count(phase: str, _info: dict[str, object]) -> None:
        if phase == "start":
            seen.append(1)

    gc.collect()
    with block:
        gc.callbacks.append(count)
        try:
            kept = [[] for _ in range(3 * CUSTOM[0])]
        finally:
            gc.callbacks.remove(count)
        del kept  # dropped inside, as the writer drops its batch
    return len(seen)


def test_paused_collections_run_no_collection_inside() -> None:
    assert _collections_while(nullcontext()) >= 2  # the same allocations, not paused: the collector runs
    assert _collections_while(paused_collections()) == 0
    assert gc.isenabled()


def test_paused_collections_restore_after_an_exception() -> None:
    with pytest.raises(RuntimeError), paused_collections():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_paused_collections_leave_a_disabled_collector_disabled() -> None:
    gc.disable()
    with paused_collections():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_interleaved_pauses_restore_when_the_last_leaves() -> None:
    a, b = paused_collections(), paused_collections()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert not gc.isenabled()
    b.__exit__(None, None, None)
    assert gc.isenabled()
