"""Rule evaluation shares its reads: all rules evaluated together give exactly what each gives alone (windows and
baselines cut from another rule's reads equal fresh ones), and the series metadata kept between evaluations
never hides a series added since, nor leaks between databases."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from qfleet.alerts.rule_queries import KIND_QUERIES, evaluate_rules
from qfleet.alerts.rules import KINDS, AlertRule, load_rules
from qfleet.collector import open_engine, upgrade
from qfleet.collector.schema import MetricSample, MetricSeries
from qfleet.units import NS

MIN = 60 * NS
_IDS = itertools.count()


def _put(engine: Engine, metric: str, labels: dict[str, Any], points: list[tuple[int, float]], *, node: str = "",
         link: str = "", hw: str = "ion") -> None:
    with engine.begin() as conn:
        sid = conn.execute(insert(MetricSeries.__table__).values(
            fingerprint=f"{next(_IDS):016d}", metric_name=metric, metric_type=1, temporality=2,
            is_monotonic=False, unit="", description="", labels=labels, node_id=node or None,
            link_id=link or None, hardware_type=hw)).inserted_primary_key[0]
        if points:
            conn.execute(insert(MetricSample.__table__),
                         [{"series_id": sid, "time_unix_nano": t, "value": v} for t, v in points])


def _counter(rng: random.Random, minutes: range, rate: float, *, reset_at: int = -1) -> list[tuple[int, float]]:
    total, out = 0.0, []
    for m in minutes:
        total = 0.0 if m == reset_at else total + rng.randint(0, int(2 * rate))
        out.append((m * MIN, total))
    return out


def _fleet(engine: Engine) -> None:
    """Three nodes and two links over 150 minutes: resets, an outage, a silent link, drifting calibrations."""
    rng = random.Random(7)
    run = range(1, 151)
    for node in ("a", "b", "c"):
        alive = [m for m in run if node != "c" or not 60 <= m < 80]
        _put(engine, "qfleet_node_heartbeats_total", {}, [(m * MIN, float(m)) for m in alive], node=node)
        _put(engine, "qfleet_node_up", {}, [(m * MIN, float(m in alive)) for m in run], node=node)
        for outcome, rate in (("pass", 40), ("fail", 3 if node != "b" else 12)):
            _put(engine, "qfleet_canary_checks_total", {"qfleet.outcome": outcome},
                 _counter(rng, run, rate, reset_at=90 if node == "a" else -1), node=node)
        for metric, values in (("qfleet_node_readout_error_ratio", [0.01, 0.012, 0.011, 0.09, 0.01]),
                               ("qfleet_node_t2_seconds", [1.0, 1.02, 0.98, 0.3 if node == "a" else 1.0, 1.0]),
                               ("qfleet_node_t2_stderr_seconds", [0.05] * 5)):
            _put(engine, metric, {}, [(m * MIN, values[min(m // 30, 4)]) for m in run], node=node)
    for link in ("a~b", "b~c"):
        quiet = range(100, 115) if link == "b~c" else range(0)
        for outcome, rate in (("success", 20), ("failure", 2 if link == "a~b" else 10)):
            _put(engine, "qfleet_entanglement_requests_total", {"qfleet.outcome": outcome},
                 [(t, v) for t, v in _counter(rng, run, rate) if t // MIN not in quiet], link=link)
        _put(engine, "qfleet_entanglement_attempts_total", {}, _counter(rng, run, 400), link=link)
        _put(engine, "qfleet_entanglement_heralds_total", {}, _counter(rng, run, 40 if link == "a~b" else 10),
             link=link)
    for le in ("0.5", "1.0", "+Inf"):
        _put(engine, "qfleet_coherence_window_usage_bucket", {"le": le}, _counter(rng, run, 30))
        _put(engine, "qfleet_orchestrator_latency_seconds_bucket", {"le": le.replace("0.5", "0.1")},
             _counter(rng, run, 30))
    _put(engine, "qfleet_audit_events_total", {"qfleet.authorized": False, "qfleet.principal": "eve"},
         [(m * MIN, float(max(0, m - 40) // 3)) for m in run], node="b", hw="")
    for tenant in ("research", "canary"):
        _put(engine, "qfleet_scheduler_queue_age_seconds", {"qfleet.tenant": tenant},
             [(m * MIN, 30.0 if tenant == "research" and 70 <= m < 100 else 2.0) for m in run])
        _put(engine, "qfleet_scheduler_queue_depth", {"qfleet.tenant": tenant}, [(m * MIN, 5.0) for m in run])
        _put(engine, "qfleet_jobs_total", {"qfleet.tenant": tenant, "qfleet.outcome": "success"},
             [(m * MIN, float(min(m, 70) if tenant == "research" else m)) for m in run])


def _where(labels: dict[str, str]) -> str:
    return labels.get("node") or labels.get("link") or labels.get("tenant") or labels.get("indicator", "")


def test_rules_evaluated_together_give_what_each_gives_alone(engine: Engine) -> None:
    _fleet(engine)
    rules = (*load_rules(), *(AlertRule(name=f"Default_{kind}", kind=kind) for kind in KINDS),
             AlertRule(name="Loose", kind="canary_failures", params=(("window", 7 * MIN), ("baseline", 20 * MIN),
                       ("rise", 0.0), ("sigmas", 0.0), ("min_checks", 1))))
    fired = set()
    for at in range(0, 160 * MIN, 3 * MIN):
        together = evaluate_rules(rules, engine, at)
        assert together == [a for r in rules for a in evaluate_rules([r], engine, at)]
        with engine.connect() as conn:  # the standalone queries (reads of their own) find the same alerts
            alone = [(r.name, _where(h)) for r in rules for h, _v in KIND_QUERIES[r.kind](conn, r, at)]
        assert [(a.label("alertname"), _where(dict(a.labels))) for a in together] == alone
        fired |= {a.label("alertname") for a in together}
    # The store makes most kinds fire at some point, so the comparison above is not only of empty lists.
    assert {"QfleetNodeHeartbeatMissing", "QfleetT2Drop", "QfleetReadoutDrift", "QfleetLinkStalled",
            "QfleetUnauthorizedCommands", "QfleetSchedulerQueueStuck", "QfleetCoherenceWindowExceeded",
            "Default_canary_failures", "Default_heralding_drop", "Default_entanglement_collapse", "Loose"} <= fired, \
        sorted(fired)


def test_series_added_between_evaluations_are_seen(engine: Engine) -> None:
    [rule] = [r for r in load_rules() if r.kind == "heartbeat_missing"]
    _put(engine, "qfleet_node_heartbeats_total", {}, [(m * MIN, float(m)) for m in range(1, 11)], node="a")
    assert evaluate_rules([rule], engine, 20 * MIN)[0].label("node") == "a"
    _put(engine, "qfleet_node_heartbeats_total", {}, [(m * MIN, float(m)) for m in range(1, 11)], node="b")
    assert [a.label("node") for a in evaluate_rules([rule], engine, 20 * MIN)] == ["a", "b"]


def test_series_metadata_is_not_shared_between_databases(tmp_path: Path) -> None:
    [rule] = [r for r in load_rules() if r.kind == "heartbeat_missing"]
    engines = []
    for name in ("x", "y"):
        e = open_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(e)
        # The same count and ids in both databases: only the node differs.
        _put(e, "qfleet_node_heartbeats_total", {}, [(m * MIN, float(m)) for m in range(1, 11)], node=name)
        engines.append(e)
    try:
        assert [evaluate_rules([rule], e, 20 * MIN)[0].label("node") for e in engines * 2] == ["x", "y", "x", "y"]
    finally:
        for e in engines:
            e.dispose()
