"""The alerting loop over one store: sources -> alert state -> timeline -> incidents -> outbox -> delivery.

Each step persists what a restart needs before the next one acts on it: alert state (``alerts``), the
notification log (``notification_log``), the outbox (``alert_outbox``, written with the log in one transaction),
incidents. A restarted service rebuilds its aggregation groups from the stored alerts and, thanks to the restored
log, does not notify again what a receiver was already told; the outbox re-sends only what was not acknowledged,
always under the same idempotency key.

Each source (SLOs, rules) is evaluated on its own: one that fails is logged and named in :class:`CycleStats`, and
its alerts resolve once ``global.resolve_timeout`` has passed since it last reported them, as Alertmanager
resolves alerts that are no longer refreshed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine, delete, insert, select

from qfleet.alerts.incidents import Incidents
from qfleet.alerts.model import Alert, AlertingConfig, Notification, Silence
from qfleet.alerts.outbox import Outbox, OutboxItem, items_for
from qfleet.alerts.rules import AlertRule, sync_rules
from qfleet.alerts.schema import NotificationLog, table
from qfleet.alerts.silence_store import SilenceStore
from qfleet.alerts.sources import AlertState, slo_alerts
from qfleet.alerts.timeline import Dispatcher
from qfleet.alerts.webhook import Deliverer
from qfleet.collector.schema import Span
from qfleet.slo.evaluate import evaluate_store, record
from qfleet.slo.model import SLO
from qfleet.slo.sli import SliSource
from qfleet.units import NS

__all__ = ["AlertService", "CycleStats"]

logger = logging.getLogger(__name__)

#: Alertmanager's notification log: (receiver, group key) -> (firing fingerprints, resolved ones, sent at).
Log = dict[tuple[str, str], tuple[frozenset[str], frozenset[str], int]]
_MAINTENANCE_SPAN = "qfleet.maintenance"
_MAINTENANCE_LOOKBACK_NS = 10 * 86_400 * NS  # calibration windows older than this cannot matter any more


@dataclass(frozen=True, slots=True)
class CycleStats:
    """What one evaluation or dispatch cycle did."""

    changed_alerts: int = 0
    notifications: int = 0
    enqueued: int = 0
    delivered: int = 0
    escalated: int = 0
    failed_sources: tuple[str, ...] = ()


class AlertService:
    """SLO conditions and direct rules in, signed notifications out, with a clock injected.

    Args:
        engine: a migrated store.
        config: the loaded alerting configuration.
        slos: SLOs to evaluate (their firing pairs become alerts).
        rules: direct alert rules over the store.
        secret: the HMAC key requests are signed with.
        clock: returns now in Unix ns.
        external_url: qfleet's own URL, for payloads' ``externalURL``.
    """

    def __init__(self, engine: Engine, config: AlertingConfig, *, slos: Sequence[SLO], rules: Sequence[AlertRule],
                 secret: bytes, clock: Callable[[], int], external_url: str = "http://127.0.0.1:8501") -> None:
        self.engine = engine
        self.config = config
        self.slos = tuple(slos)
        self.rules = tuple(rules)
        self.clock = clock
        self.external_url = external_url
        self.state = AlertState(engine)
        self.outbox = Outbox(engine, clock=clock)
        self.deliverer = Deliverer(self.outbox, secret=secret, clock=clock)
        self.incidents = Incidents(engine, clock=clock)
        self.silences = SilenceStore(engine)
        self.dispatcher = Dispatcher(config, silences=self._silences(), log=self._load_log())
        self._last: dict[str, Notification] = {}  # last notification per group, for escalations
        now = clock()
        for alert in self.state.active():
            self.dispatcher.update(alert, now)  # rebuild the groups of a restarted service

    # -- persistence of the notification log ----------------------------------------------------------------------

    def _load_log(self) -> Log:
        t = table(NotificationLog)
        with self.engine.connect() as conn:
            rows = conn.execute(select(t)).all()
        return {(r.receiver, r.group_key): (frozenset(r.firing["fingerprints"]), frozenset(r.resolved["fingerprints"]),
                                            r.sent_unix_nano) for r in rows}

    def _save_log(self, conn: Connection) -> None:
        t = table(NotificationLog)
        conn.execute(delete(t))
        rows = [{"receiver": rcv, "group_key": key, "firing": {"fingerprints": sorted(f)},
                 "resolved": {"fingerprints": sorted(r)}, "sent_unix_nano": sent}
                for (rcv, key), (f, r, sent) in self.dispatcher.log.items()]
        if rows:
            conn.execute(insert(t), rows)

    def _silences(self) -> list[Silence]:
        """Stored silences, plus one per calibration window the simulator announced (maintenance mutes)."""
        s = Span.__table__
        with self.engine.connect() as conn:
            windows = conn.execute(select(s.c.trace_id, s.c.node_id, s.c.start_time_unix_nano,
                                          s.c.end_time_unix_nano).where(
                s.c.name == _MAINTENANCE_SPAN,
                s.c.end_time_unix_nano >= self.clock() - _MAINTENANCE_LOOKBACK_NS)).all()
        out = self.silences.list()
        for trace, node, start, end in windows:
            if not node:
                continue
            # Rule alerts name the node `node`, SLO alerts `qfleet_node_id`: mute both during the window.
            out.extend(Silence(id=f"maint-{trace[-12:]}-{label}", matchers=((label, node, False, True),),
                               starts_at=start, ends_at=end, created_by="qfleet maintenance",
                               comment=f"calibration window of {node}") for label in ("node", "qfleet_node_id"))
        return out

    # -- the cycles -----------------------------------------------------------------------------------------------

    def evaluate(self, at_ns: int | None = None) -> CycleStats:
        """Evaluate SLOs and rules at ``at_ns`` (default now), resolve what their sources stopped reporting
        (``resolve_timeout``), and feed the state changes to the timeline.

        A source that raises is logged and named in ``failed_sources``; the others still run.
        """
        at = self.clock() if at_ns is None else at_ns
        changed: list[Alert] = []
        failed = []
        for name, source in self._sources():
            try:
                changed += source(at)
            except Exception:  # one broken source must not stop the others (its alerts time out instead)
                logger.exception("alert source %r failed at %d; its alerts resolve after resolve_timeout", name, at)
                failed.append(name)
        changed += self.state.expire(at, self.config.resolve_timeout_ns)
        for alert in changed:
            self.dispatcher.update(alert, at)
        return CycleStats(changed_alerts=len(changed), failed_sources=tuple(failed))

    def _sources(self) -> list[tuple[str, Callable[[int], list[Alert]]]]:
        out: list[tuple[str, Callable[[int], list[Alert]]]] = []
        if self.slos:
            out.append(("slo", self._slo_source))
        if self.rules:
            out.append(("rules", lambda at: sync_rules(self.rules, self.engine, self.state, at)))  # honours `for`
        return out

    def _slo_source(self, at: int) -> list[Alert]:
        reports = evaluate_store(self.slos, SliSource(self.engine), at)
        record(self.engine, reports)
        return self.state.sync(slo_alerts(reports, self.slos, at), at, source="slo")

    def dispatch(self, at_ns: int | None = None) -> CycleStats:
        """Flush due groups into the outbox (with the log, in one transaction), escalate, then deliver."""
        at = self.clock() if at_ns is None else at_ns
        self.dispatcher.silences = self._silences()
        notes = self.dispatcher.advance(at)
        items: list[OutboxItem] = []
        for n in notes:
            items.extend(self._items(n))
            self._last[n.group_key] = n
            incident = self.incidents.on_notification(n, at)
            if incident:
                self.incidents.link_faults(incident)
        escalated = self._escalate(at, items)
        with self.engine.begin() as conn:
            enqueued = self.outbox.enqueue(items, conn=conn)
            self._save_log(conn)
        delivered = self.deliverer.run_once()
        return CycleStats(notifications=len(notes), enqueued=enqueued, delivered=delivered.delivered,
                          escalated=escalated)

    def _items(self, n: Notification, receiver: str | None = None) -> list[OutboxItem]:
        name = receiver or n.receiver
        rcv = self.config.receivers.get(name)
        if rcv is None:
            logger.error("notification for unknown receiver %r dropped from delivery", name)
            return []
        if receiver is not None:
            n = replace(n, receiver=name)
        return items_for(n, rcv, external_url=self.external_url)

    def _escalate(self, at: int, items: list[OutboxItem]) -> int:
        cfg = self.config
        if not cfg.escalation_receiver or cfg.escalate_after_ns is None:
            return 0
        count = 0
        for incident_id in self.incidents.due_for_escalation(at, cfg.escalate_after_ns):
            self.incidents.escalate(incident_id, cfg.escalation_receiver, at)
            last = self._last.get(self.incidents.get(incident_id)["group_key"])
            if last is not None:
                # The unacknowledged page goes to the escalation receiver as well, under its own key.
                items.extend(self._items(replace(last, at=at, reason="escalated: not acknowledged"),
                                         receiver=cfg.escalation_receiver))
            count += 1
        return count
