"""Evaluating a replay's instants ahead, in a helper process.

A replay over finished data (a game day evaluates every simulated minute once the simulation is stored) knows its
instants in advance, and once the SLOs' per-minute counts are materialised up to its last instant, each of its
evaluations is a pure read of the store: the SLO reports and the direct rules' alerts at that instant. A helper
process evaluates them from the last instant back while the replay works forward, and each instant's evaluation
comes from whichever side reaches it first. Where an instant was evaluated changes the replay's speed, never its
result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, Future

from sqlalchemy import Engine

from qfleet.alerts.model import Alert
from qfleet.alerts.rule_queries import evaluate_rules
from qfleet.alerts.rules import AlertRule
from qfleet.slo.evaluate import evaluate_store, refresh_counts
from qfleet.slo.model import SLO, SLOReport
from qfleet.slo.sli import SliSource

__all__ = ["Ahead", "evaluate_at"]

_log = logging.getLogger(__name__)

#: One instant's evaluation: the SLO reports and the rules' alerts.
Evaluation = tuple[list[SLOReport], list[Alert]]


def _evaluate(engine: Engine, slos: Sequence[SLO], rules: Sequence[AlertRule], at: int) -> Evaluation:
    return evaluate_store(slos, SliSource(engine), at, refresh=False), evaluate_rules(rules, engine, at)


def evaluate_at(url: str, slos: Sequence[SLO], rules: Sequence[AlertRule], instants: Sequence[int]
                ) -> list[Evaluation]:
    """The evaluation at each of ``instants`` on a connection of its own to ``url`` (the helper's side; the
    counts must be materialised already, see :class:`Ahead`)."""
    from qfleet.collector import open_engine

    engine = open_engine(url)
    try:
        return [_evaluate(engine, slos, rules, at) for at in instants]
    finally:
        engine.dispose()


class Ahead:
    """The evaluations of ``instants`` (ascending), shared between this process and the helper ``pool``.

    The SLOs' per-minute counts are materialised here first, over every minute any of the instants reads; then
    chunks of ``chunk`` instants are queued to the helper, last chunk first. A chunk the helper has not started
    when this process reaches it is cancelled and evaluated here; one it is working on is waited for; one that
    failed is evaluated here.

    Args:
        pool: the helper (one worker process is what it is for).
        engine: this process's engine on the store (the helper opens its own on the same URL).
        slos: the SLOs to report on.
        rules: the direct rules.
        instants: the replay's instants, ascending.
    """

    def __init__(self, pool: Executor, engine: Engine, slos: Sequence[SLO], rules: Sequence[AlertRule],
                 instants: Sequence[int], chunk: int = 10) -> None:
        self._engine, self._slos, self._rules = engine, tuple(slos), tuple(rules)
        if instants:
            refresh_counts(self._slos, SliSource(engine), instants[-1], first_ns=instants[0])
        chunks = [tuple(instants[i:i + chunk]) for i in range(0, len(instants), chunk)]
        self._where = {at: (k, j) for k, c in enumerate(chunks) for j, at in enumerate(c)}
        url = engine.url.render_as_string(hide_password=False)
        backwards = [pool.submit(evaluate_at, url, self._slos, self._rules, c) for c in reversed(chunks)]
        self._futures: list[Future[list[Evaluation]]] = backwards[::-1]
        self._last: tuple[int, Evaluation] | None = None
        self.helper_failures = 0  # instants whose chunk failed in the helper (evaluated here instead)

    def _at(self, at: int) -> Evaluation:
        if self._last is not None and self._last[0] == at:
            return self._last[1]
        where = self._where.get(at)
        found: Evaluation | None = None
        if where is not None:
            future = self._futures[where[0]]
            if not future.cancel():  # done, or under way: waited for
                failed = future.exception()
                if failed is None:
                    found = future.result()[where[1]]
                elif not self.helper_failures:
                    # Still correct (evaluated here), but the speed-up is gone: say so once, not per instant.
                    _log.warning("the evaluation helper failed (%s); evaluating in this process",
                                 type(failed).__name__)
                self.helper_failures += failed is not None
        if found is None:
            found = _evaluate(self._engine, self._slos, self._rules, at)
        self._last = (at, found)
        return found

    def slo_reports(self, slos: Sequence[SLO], engine: Engine, at: int) -> list[SLOReport]:
        """The SLO reports at ``at`` (an :class:`~qfleet.alerts.service.AlertService` ``slo_evaluator``)."""
        return self._at(at)[0]

    def rule_alerts(self, rules: Sequence[AlertRule], engine: Engine, at: int) -> list[Alert]:
        """The rules' alerts at ``at`` (an :class:`~qfleet.alerts.service.AlertService` ``rule_evaluator``)."""
        return self._at(at)[1]

    def cancel(self) -> None:
        """Drop the chunks the helper has not started (the replay ended or failed)."""
        for future in self._futures:
            future.cancel()
