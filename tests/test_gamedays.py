"""Game days end to end: every built-in fault scenario passes with the default SLO pack and alert rules (the faults
are caught in time by alerts naming the faulty node or link, reach the expected receiver, and nothing else fires),
and a failed expectation fails the run. The scorer's rules are tested without simulation in tests/runbooks/."""

from __future__ import annotations

import io
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from qfleet.collector import open_engine
from qfleet.problems import ProblemsError
from qfleet.runbooks.cli import main
from qfleet.runbooks.gameday import (
    GameDayError,
    builtin_gameday_path,
    gameday_from_dict,
    run_gameday,
)

SCENARIOS = sorted(p.stem for p in builtin_gameday_path("x").parent.glob("*.yaml"))


def test_every_failure_mode_has_a_scenario() -> None:
    assert {s[:2] for s in SCENARIOS if s.startswith("f")} == {f"f{i}" for i in range(1, 9)}
    assert "bad-day" in SCENARIOS


@pytest.mark.slow
# bad-day is run (and must pass with no false positive) by tests/test_demo.py: the demo is that game day. The
# 6-hour calm days (calm-*) are too slow for the suite; `qfleet gameday run calm-line` runs one.
@pytest.mark.parametrize("name", [s for s in SCENARIOS if s.startswith("f")])
def test_builtin_scenario_passes(name: str) -> None:
    out = io.StringIO()
    code = main(["run", name, "--json"], stdout=out)
    card = json.loads(out.getvalue())
    assert code == 0, json.dumps(card, indent=1)
    assert card["passed"] and card["false_positives"] == [] and card["false_pages"] == card["false_tickets"] == 0
    assert card["precision"] == 1.0 and card["recall"] == 1.0 and card["grace_s"] == 900
    assert all(f["detected"] and f["localized"] and f["time_to_detect_s"] <= 600 and f["receivers"]
               and f["notifications"] >= 1 for f in card["faults"])
    assert all(0 <= b["consumed_of_period"] < 1 for b in card["budget"] if b["consumed_of_period"] is not None)


def test_a_missed_expectation_exits_1(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("""version: 1
kind: GameDay
name: impossible
fleet: line
duration: 30m
faults:
  - {id: out, type: F5, target: qpu-d, start: 10m, duration: 10m}
expect:
  faults:
    - {fault: out, alerts: [QfleetUnauthorizedCommands], within: 5m}
""")
    out = io.StringIO()
    assert main(["run", str(scenario)], stdout=out) == 1
    assert "FAILED" in out.getvalue() and "QfleetUnauthorizedCommands" in out.getvalue()


def test_bad_scenarios_are_refused_naming_the_field() -> None:
    with pytest.raises(GameDayError, match="expect.faults\\[0\\].fault"):
        gameday_from_dict({"version": 1, "kind": "GameDay", "duration": "10m", "faults": [],
                           "expect": {"faults": [{"fault": "nope", "alerts": ["X"]}]}})
    with pytest.raises(GameDayError, match="duration"):
        gameday_from_dict({"version": 1, "kind": "GameDay", "fleet": "line"})
    err = io.StringIO()
    assert main(["run", "no-such-scenario"], stderr=err) == 2 and "no-such-scenario" in err.getvalue()


def test_grace_and_localized_are_read_and_checked() -> None:
    doc = {"version": 1, "kind": "GameDay", "fleet": "line", "duration": "30m",
           "faults": [{"id": "out", "type": "F5", "target": "qpu-d", "start": "10m", "duration": "10m"}]}
    gd = gameday_from_dict({**doc, "expect": {"faults": [{"fault": "out"}], "grace": "5m"}})
    assert gd.grace_ns == 300 * 10**9 and gd.expectations[0].localized and gd.expectations[0].alerts == ()
    assert not gameday_from_dict({**doc, "expect": {"faults": [{"fault": "out", "localized": False}]}}
                                 ).expectations[0].localized
    assert gameday_from_dict({**doc, "expect": {"grace": "0s"}}).grace_ns == 0
    with pytest.raises(GameDayError) as e:
        gameday_from_dict({**doc, "expect": {"faults": [{"fault": "out", "localized": "yes"}], "grace": "-1m"}})
    assert {p.path for p in e.value.problems} == {"expect.faults[0].localized", "expect.grace"}


def test_every_problem_of_a_scenario_is_reported_at_once_with_its_fix() -> None:
    with pytest.raises(GameDayError) as e:
        gameday_from_dict({"version": 1, "kind": "GameDay", "fleet": "line", "duration": "5m5m", "step": "1.5m",
                           "seed": "x", "durtion": "1h",
                           "faults": [{"id": "out", "type": "F5", "target": "qpu-z", "start": "10m",
                                       "duration": "10m"}],
                           "expect": {"faults": [{"fault": "out", "alerts": [], "within": "soon"}],
                                      "false_positive": 1}}, source="s.yaml")
    problems = {p.path: p for p in e.value.problems}
    assert list(problems) == ["durtion", "duration", "step", "faults[0].target", "expect.false_positive",
                              "expect.faults[0].alerts", "expect.faults[0].within", "seed"]
    assert isinstance(e.value, ProblemsError) and str(e.value).startswith("s.yaml: 8 problems")
    assert "'5m5m'" in problems["duration"].message and "1m30s" in problems["step"].fix
    assert "qpu-z" in str(problems["faults[0].target"]) and "'x'" in problems["seed"].message
    assert "did you mean 'duration'" in problems["durtion"].fix


class _Inline(Executor):
    """An executor that runs each call as it is submitted: every rule evaluation comes from the "helper"."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        f: Future[Any] = Future()
        f.set_result(fn(*args, **kwargs))
        return f


class _Broken(Executor):
    """A helper whose every chunk fails, as a pool whose worker died does."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        f.set_exception(RuntimeError("the helper died"))
        return f


#: What a replay stores that a helper must not change: alert state and the SLO evaluation history.
_STORED = {"alerts": "SELECT fingerprint, labels, annotations, starts_at_unix_nano, ends_at_unix_nano, "
                     "updated_unix_nano FROM alerts ORDER BY fingerprint, starts_at_unix_nano",
           "slo_evaluations": "SELECT slo, segment, at_unix_nano, sli, remaining_fraction, burn_1h, burn_6h, page, "
                              "ticket, report FROM slo_evaluations ORDER BY slo, segment, at_unix_nano"}


def _stored(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in _STORED.items()}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_helper_evaluating_slos_and_rules_gives_the_same_game_day(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    # The oracle is the replay that evaluates every SLO and rule itself, refreshing the SLO counts instant by
    # instant. With a helper, the counts are materialised once and each instant's evaluation comes from wherever
    # it was done first: all from the helper (inline), or split by timing (a real spawned process). The outage
    # starts and ends inside the helper's chunks of ten instants, so an evaluation taken from the wrong slot of
    # a chunk would move a firing; nothing may differ, the stored alerts and SLO evaluations included.
    gd = gameday_from_dict({
        "version": 1, "kind": "GameDay", "name": "helper", "fleet": "line", "duration": "30m", "seed": 7,
        "faults": [{"id": "down", "type": "F5", "target": "qpu-d", "start": "13m", "duration": "14m"}],
        "expect": {"faults": [{"fault": "down", "alerts": ["QfleetNodeHeartbeatMissing"], "within": "5m"}]}})
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in ("serial", "inline", "process", "broken")}
    cards = {"serial": run_gameday(gd, db_url=urls["serial"])}
    inline = _Inline()
    cards["inline"] = run_gameday(gd, db_url=urls["inline"], helper=lambda: inline)
    assert inline.calls == 3  # 30 one-minute instants in chunks of ten, every one evaluated by the "helper"
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        cards["process"] = run_gameday(gd, db_url=urls["process"], helper=lambda: pool)
    assert not [r for r in caplog.records if r.name == "qfleet.alerts.ahead"]  # the real helper did not fail
    # A helper that fails changes nothing either, and says so once (not once per instant).
    cards["broken"] = run_gameday(gd, db_url=urls["broken"], helper=_Broken)
    warned = [r for r in caplog.records if r.name == "qfleet.alerts.ahead"]
    assert len(warned) == 1 and "RuntimeError" in warned[0].getMessage()
    assert cards["serial"].passed
    serial = _stored(urls["serial"])
    assert any(json.loads(r[1])["alertname"] == "QfleetNodeHeartbeatMissing" for r in serial["alerts"])
    assert len(serial["slo_evaluations"]) >= 30 and any(r[7] for r in serial["slo_evaluations"])  # pages
    for name in ("inline", "process", "broken"):
        assert cards[name] == cards["serial"], name
        assert _stored(urls[name]) == serial, name
