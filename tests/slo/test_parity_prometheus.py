"""Live parity, short: a real Prometheus scraping qfleet's ``/metrics`` and running ``qfleet slo rules default`` fires
the same SLO segments as qfleet's own engine on a paced simulation with a node outage, at nearly the same instants.

The run (``bench/parity_prometheus.py``, whose ``run`` this calls): the mesh fleet at realtime for 85 s, sc-e down
from 15 s on; Prometheus scrapes every 5 s (the simulator's metric step at realtime) and evaluates every 60 s;
qfleet evaluates whenever the store changes. About 95 s of wall time, most of it the paced simulation.

Why ``|qfleet - Prometheus| <= evaluation interval + scrape interval (+ 1 s)`` for every (SLO, segment, pair) that
fires in both: qfleet counts whole minutes, so it acts on an event once its minute has closed and been rolled up, at
most 60 s (= the evaluation interval) plus one 5 s step (the collector rolls a settled minute up at the next write)
after it, plus the harness's 0.5 s poll of the store and the evaluation itself (under 0.1 s): the 1 s. Prometheus
acts on it at its group's first evaluation after the next scrape, at most 60 s plus one 5 s scrape after it. Each
side may thus fire anywhere in that span after the data showed the burn, and neither before the data: neither can
lead by more. Events without the segment label (jobs of a node that is down carry no hardware type) are no
segment in qfleet, and the generated rules leave them out too (``label!=""``): this test found that difference
(Prometheus fired three job-success pairs with no segment that qfleet never fires), so none may appear now.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from qfleet.slo.spec import builtin_specs_path, load_slos
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("parity_prometheus", ROOT / "bench" / "parity_prometheus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_prometheus_and_qfleet_fire_the_same_slo_segments_within_one_interval(tmp_path: Path) -> None:
    require_tool("prometheus")
    bench = _bench()
    p = bench.run(tmp_path, duration_s=85, outage_at_s=15, outage_s=70, target="sc-e", scrape_s=5, eval_s=60,
                  tail_s=5, log=lambda _line: None)
    c = bench.compare(p)
    table = bench.table(p)
    # Every SLO's series reached Prometheus through /metrics (counters, histograms, the gauge), as they reach qfleet.
    assert p.prometheus_slos == p.qfleet_slos == {s.name for s in load_slos(builtin_specs_path())}, table
    # The outage of one of the two superconducting nodes is far above every threshold of the node-availability
    # SLO: every pair of that segment fires, in both.
    fired_both = {(v.slo, v.segment, v.pair) for v in c.both}
    assert {("node-availability", "superconducting", pair)
            for pair in ("page_fast", "page_slow", "ticket_fast", "ticket_slow")} <= fired_both, table
    # Nothing fires on one side only while the other had time to follow.
    assert c.one_sided == (), table
    # No alert on events without the segment label: the rules leave them out, as qfleet's engine does.
    assert c.unlabelled == (), table
    # Both engines see the outage from the same data: first firings within one evaluation plus one scrape interval.
    assert c.max_abs_difference_s <= p.eval_s + p.scrape_s + 1, table
    assert p.qfleet_evaluations > 0 and p.prometheus_evaluations > 0
