"""The alerting loop over one store: sources -> alert state -> timeline -> incidents -> outbox -> delivery.

Each step persists what a restart needs before the next one acts on it: alert state (``alerts``), the
notification log (``notification_log``), the outbox (``alert_outbox``, written with the log in one transaction),
incidents. A restarted service rebuilds its aggregation groups from the stored alerts and, thanks to the restored
log, does not notify again what a receiver was already told; the outbox re-sends only what was not acknowledged,
always under the same idempotency key.

Each source (SLOs, rules) is evaluated on its own: one that fails is logged and named in :class:`CycleStats`, and
its alerts resolve once ``global.resolve_timeout`` has passed since it last reported them, as Alertmanager
resolves alerts that are no longer refreshed.

With an ``alerting:`` section (:class:`~qfleet.alerts.model.PushConfig`), every evaluation also sends qfleet's
own alerts to the Alertmanagers listed there as Prometheus does (:mod:`qfleet.alerts.am_push`), beside qfleet's
routing or, with ``route_locally: false``, instead of it. Alerts another Alertmanager routed
(:mod:`qfleet.alerts.am_intake`) are never routed or sent on again here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from qfleet.alerts.am_push import RESOLVED_RETENTION_NS, AlertmanagerPush, PushStats
from qfleet.alerts.incidents import Incidents
from qfleet.alerts.leases import Lease, LeaseLost
from qfleet.alerts.model import Alert, AlertingConfig, Notification, Silence
from qfleet.alerts.outbox import Outbox, OutboxItem, items_for
from qfleet.alerts.payloads import DEFAULT_EXTERNAL_URL
from qfleet.alerts.rule_queries import RuleEvaluator, evaluate_rules, sync_rules
from qfleet.alerts.rules import AlertRule
from qfleet.alerts.schema import NotificationLog, table
from qfleet.alerts.silence_store import SilenceStore
from qfleet.alerts.sources import AlertState, slo_alerts
from qfleet.alerts.timeline import Dispatcher
from qfleet.alerts.webhook import Deliverer
from qfleet.collector.schema import Span
from qfleet.slo.evaluate import evaluate_store, record
from qfleet.slo.model import SLO, SLOReport
from qfleet.slo.sli import SliSource
from qfleet.units import NS

__all__ = ["AlertService", "CycleStats", "SloEvaluator", "evaluate_slos"]

logger = logging.getLogger(__name__)

#: Alertmanager's notification log: (receiver, group key) -> (firing fingerprints, resolved ones, sent at).
Log = dict[tuple[str, str], tuple[frozenset[str], frozenset[str], int]]
_MAINTENANCE_SPAN = "qfleet.maintenance"
_MAINTENANCE_LOOKBACK_NS = 10 * 86_400 * NS  # calibration windows older than this cannot matter any more
#: ``(slos, engine, at_ns) -> reports``: how the SLO source evaluates (:func:`evaluate_slos`, or a replay's lookup
#: of reports evaluated ahead).
SloEvaluator = Callable[[Sequence[SLO], Engine, int], list[SLOReport]]


def evaluate_slos(slos: Sequence[SLO], engine: Engine, at_ns: int) -> list[SLOReport]:
    """Every SLO's reports at ``at_ns``, the per-minute counts refreshed first (the SLO source's default)."""
    return evaluate_store(slos, SliSource(engine), at_ns)


#: A leader that finds more missed cycles than this skips to now instead of replaying them one by one.
_MAX_BACKLOG = 10


@dataclass(frozen=True, slots=True)
class CycleStats:
    """What one evaluation or dispatch cycle did."""

    changed_alerts: int = 0
    notifications: int = 0
    enqueued: int = 0
    delivered: int = 0
    escalated: int = 0
    failed_sources: tuple[str, ...] = ()
    cycles: int = 0
    invalid_silences: int = 0
    pushed: int = 0            # alerts sent to the configured Alertmanagers
    push_failures: int = 0     # requests to them that failed (their alerts are sent again next cycle)

    def __add__(self, other: CycleStats) -> CycleStats:
        return CycleStats(
            changed_alerts=self.changed_alerts + other.changed_alerts,
            notifications=self.notifications + other.notifications, enqueued=self.enqueued + other.enqueued,
            delivered=self.delivered + other.delivered, escalated=self.escalated + other.escalated,
            failed_sources=tuple(dict.fromkeys(self.failed_sources + other.failed_sources)),
            cycles=self.cycles + other.cycles, invalid_silences=max(self.invalid_silences, other.invalid_silences),
            pushed=self.pushed + other.pushed, push_failures=self.push_failures + other.push_failures)


class AlertService:
    """SLO conditions and direct rules in, signed notifications out, with a clock injected.

    Single process: call :meth:`evaluate` and :meth:`dispatch` (tests, game days). Several replicas on one
    database: every replica calls :meth:`lead` once per tick (only the holder of the ``evaluate`` lease runs the
    cycle) and :meth:`deliver` on its own schedule (every replica delivers, each item leased to one of them).

    Args:
        engine: a migrated store.
        config: the loaded alerting configuration.
        slos: SLOs to evaluate (their firing pairs become alerts).
        rules: direct alert rules over the store.
        secret: the HMAC key requests are signed with.
        clock: returns now in Unix ns.
        external_url: the dashboards' URL as responders reach it: payloads' ``externalURL`` and the base of each
            notification's incident deep link.
        holder: this replica's name in leases (outbox items, the evaluation leader); None: a single process.
        slo_evaluator: how the SLOs are evaluated at an instant (default :func:`evaluate_slos`);
        rule_evaluator: how the rules are (default :func:`evaluate_rules` on ``engine``). A game-day replay passes
            those of :class:`qfleet.alerts.ahead.Ahead`, which a helper process evaluated ahead.
        eval_interval_ns: the evaluation interval of :meth:`evaluate` calls (:meth:`lead` uses its own): alerts
            sent to Alertmanagers end ``4 × max(it, resend_delay)`` after each evaluation unless sent again.
    """

    def __init__(self, engine: Engine, config: AlertingConfig, *, slos: Sequence[SLO], rules: Sequence[AlertRule],
                 secret: bytes, clock: Callable[[], int], external_url: str = DEFAULT_EXTERNAL_URL,
                 holder: str | None = None, slo_evaluator: SloEvaluator = evaluate_slos,
                 rule_evaluator: RuleEvaluator = evaluate_rules, eval_interval_ns: int = 30 * NS) -> None:
        if eval_interval_ns <= 0:
            raise ValueError(f"eval_interval_ns={eval_interval_ns} must be positive, e.g. 30 s")
        self.engine = engine
        self.config = config
        self.slos = tuple(slos)
        self.rules = tuple(rules)
        self.clock = clock
        self.external_url = external_url
        self.holder = holder
        self.slo_evaluator = slo_evaluator
        self.rule_evaluator = rule_evaluator
        self.state = AlertState(engine)
        self.outbox = Outbox(engine, clock=clock, owner=holder)
        self.deliverer = Deliverer(self.outbox, secret=secret, clock=clock)
        self.incidents = Incidents(engine, clock=clock)
        self.silences = SilenceStore(engine)
        self.eval_interval_ns = eval_interval_ns
        push = config.push
        self.pusher = AlertmanagerPush(push, external_url=external_url) if push is not None else None
        #: False when the alerting section says ``route_locally: false``: alerts are only sent to Alertmanagers.
        self.route_locally = push is None or push.route_locally
        self._saved: Log = {}
        self._last: dict[tuple[str, str], Notification] = {}  # this cycle's notifications, not yet committed
        # (last recorded cycle,) our dispatcher is in step with; None: stale (not leading, or never led).
        self._synced: tuple[int | None] | None = None
        self.dispatcher = self._rebuild(clock())

    # -- persistence of the notification log ----------------------------------------------------------------------

    def _rebuild(self, at: int) -> Dispatcher:
        """A dispatcher from the database: the notification log, the firing alerts, and the alerts resolved since
        the log last told a receiver they fired (their resolution is still to be sent)."""
        log = self._load_log()
        self._saved = dict(log)
        self._last = {}
        d = Dispatcher(self.config, silences=self._silences(), log=log)
        told = {fp for f, _, _ in log.values() for fp in f}
        since = min((sent for f, _, sent in log.values() if f), default=at)
        # Alerts another Alertmanager routed are not routed again here.
        alerts = self.state.active(include_external=False) + [
            a for a in self.state.resolved_since(since, include_external=False) if a.fingerprint in told]
        if not self.route_locally:
            alerts = []
        for alert in sorted(alerts, key=lambda a: (a.starts_at, a.fingerprint)):
            d.update(alert, at)
        return d

    def _load_log(self) -> Log:
        t = table(NotificationLog)
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.receiver, t.c.group_key, t.c.firing, t.c.resolved,
                                       t.c.sent_unix_nano)).all()
        return {(r.receiver, r.group_key): (frozenset(r.firing["fingerprints"]), frozenset(r.resolved["fingerprints"]),
                                            r.sent_unix_nano) for r in rows}

    def _save_log(self, conn: Connection) -> int:
        """Upsert the log entries that changed since the last save (never delete and rewrite: other replicas'
        and older rows stay as they are), each with its last notification; returns how many were written."""
        t = table(NotificationLog)
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        log = self.dispatcher.log
        changed = {k: v for k, v in log.items() if self._saved.get(k) != v}
        for (rcv, key), (f, r, sent) in sorted(changed.items()):
            values: dict[str, Any] = {"firing": {"fingerprints": sorted(f)}, "resolved": {"fingerprints": sorted(r)},
                                      "sent_unix_nano": sent}
            note = self._last.get((rcv, key))
            if note is not None:
                values["notification"] = notification_doc(note)
            stmt = insert(t).values(receiver=rcv, group_key=key, **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["receiver", "group_key"], set_=values))
        self._saved = log
        return len(changed)

    def _last_notification(self, receiver: str, group_key: str) -> Notification | None:
        """The last notification ``receiver`` got for ``group_key``: this cycle's, else the stored one."""
        note = self._last.get((receiver, group_key))
        if note is not None:
            return note
        t = table(NotificationLog)
        with self.engine.connect() as conn:
            doc = conn.execute(select(t.c.notification).where(t.c.receiver == receiver,
                                                              t.c.group_key == group_key)).scalar()
        return notification_from_doc(doc) if doc else None

    def _silences(self) -> list[Silence]:
        """Stored silences, plus one per calibration window the simulator announced (maintenance mutes)."""
        s = Span.__table__
        with self.engine.connect() as conn:
            windows = conn.execute(select(s.c.trace_id, s.c.node_id, s.c.start_time_unix_nano,
                                          s.c.end_time_unix_nano).where(
                s.c.name == _MAINTENANCE_SPAN,
                s.c.end_time_unix_nano >= self.clock() - _MAINTENANCE_LOOKBACK_NS)).all()
        out = self.silences.list()   # a stored row that no longer validates is skipped and counted there
        for trace, node, start, end in windows:
            if not node:
                continue
            # Rule and SLO alerts both name the node `node` (one label vocabulary).
            out.append(Silence(id=f"maint-{trace[-12:]}-node", matchers=(("node", node, False, True),),
                               starts_at=start, ends_at=end, created_by="qfleet maintenance",
                               comment=f"calibration window of {node}"))
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
        if self.route_locally:
            for alert in changed:
                self.dispatcher.update(alert, at)
        pushed = self.push(at)
        return CycleStats(changed_alerts=len(changed), failed_sources=tuple(failed), pushed=pushed.sent,
                          push_failures=pushed.failed)

    def push(self, at_ns: int) -> PushStats:
        """Send qfleet's own alerts that are due at ``at_ns`` to the configured Alertmanagers (nothing without an
        ``alerting:`` section); failures are counted and logged, and retried at the next evaluation."""
        if self.pusher is None:
            return PushStats()
        if at_ns + 4 * max(self.eval_interval_ns, self.pusher.config.resend_delay_ns) <= self.clock():
            return PushStats()   # a catch-up cycle: its alerts would reach Alertmanager already ended
        active = self.state.active(include_external=False)
        resolved = self.state.resolved_since(at_ns - RESOLVED_RETENTION_NS, include_external=False)
        return self.pusher.push(active, resolved, at_ns, interval_ns=self.eval_interval_ns)

    def _sources(self) -> list[tuple[str, Callable[[int], list[Alert]]]]:
        out: list[tuple[str, Callable[[int], list[Alert]]]] = []
        if self.slos:
            out.append(("slo", self._slo_source))
        if self.rules:
            out.append(("rules", lambda at: sync_rules(self.rules, self.engine, self.state, at,  # honours `for`
                                                      evaluator=self.rule_evaluator)))
        return out

    def _slo_source(self, at: int) -> list[Alert]:
        reports = self.slo_evaluator(self.slos, self.engine, at)
        record(self.engine, reports)
        return self.state.sync(slo_alerts(reports, self.slos, at), at, source="slo")

    def _flush(self, at: int) -> tuple[list[Notification], list[OutboxItem], int]:
        """Run the flushes due by ``at``: their notifications, the outbox items for them and for escalations."""
        self.dispatcher.silences = self._silences()
        notes = self.dispatcher.advance(at)
        items: list[OutboxItem] = []
        for n in notes:
            # The incident first, so that every delivery carries its deep link.
            incident = self.incidents.on_notification(n, at)
            items.extend(self._items(n, incident_id=incident))
            self._last[(n.receiver, n.group_key)] = n
            if incident:
                self.incidents.link_faults(incident)
        return notes, items, self._escalate(at, items)

    def _commit(self, conn: Connection, items: list[OutboxItem]) -> int:
        enqueued = self.outbox.enqueue(items, conn=conn)
        self._save_log(conn)
        return enqueued

    def dispatch(self, at_ns: int | None = None) -> CycleStats:
        """Flush due groups into the outbox (with the log, in one transaction), escalate, then deliver."""
        at = self.clock() if at_ns is None else at_ns
        notes, items, escalated = self._flush(at)
        with self.engine.begin() as conn:
            enqueued = self._commit(conn, items)
        self._last = {}
        delivered = self.deliver()
        return CycleStats(notifications=len(notes), enqueued=enqueued, delivered=delivered,
                          escalated=escalated, invalid_silences=len(self.silences.invalid()))

    def deliver(self) -> int:
        """Deliver the due outbox items this replica can claim; how many were delivered."""
        return self.deliverer.run_once().delivered

    def lead(self, lease: Lease, interval_ns: int, *, max_cycles: int = 10) -> CycleStats | None:
        """One tick of the evaluation leader: when ``lease`` is ours (taken or renewed), run every cycle that is
        due (the instants ``last + interval_ns`` up to now, at most ``max_cycles`` per tick), each evaluated,
        flushed and recorded with its outbox items and log in one transaction; with no cycle due, flush the
        groups due by now (group_wait and group_interval run at the tick's pace, not the evaluation's). None when
        another replica leads.

        A replica that gains the lease, or finds that another recorded cycles since its own last one, first
        rebuilds its dispatcher from the database (its memory is stale).
        """
        if interval_ns <= 0:
            raise ValueError(f"interval_ns={interval_ns} must be positive, e.g. 30 s")
        self.eval_interval_ns = interval_ns
        held = lease.claim()
        if held is None:
            self._synced = None
            return None
        now = self.clock()
        last = held.cycle_ns
        nxt = now if last is None else last + interval_ns
        if nxt + _MAX_BACKLOG * interval_ns <= now:
            # The fleet was down for long: evaluating every missed instant would only replay stale history.
            skipped = (now - nxt) // interval_ns
            logger.warning("evaluation resumes %d cycles after the last recorded one (%s); skipping to now",
                           skipped, last)
            nxt += skipped * interval_ns
        if held.gained or self._synced != (last,):
            self.dispatcher = self._rebuild(min(nxt, now))
        total = CycleStats()
        for _ in range(max_cycles):
            if nxt > now:
                break
            stats = self._step(lease, nxt, last, evaluate=True)
            if stats is None:
                return total
            total += stats
            last, nxt = nxt, nxt + interval_ns
            if lease.claim() is None:   # renew between catch-up cycles
                self._synced = None
                return total
        if not total.cycles:
            total += self._step(lease, now, last, evaluate=False) or CycleStats()
        return total

    def _step(self, lease: Lease, at: int, previous: int | None, *, evaluate: bool) -> CycleStats | None:
        """Evaluate (a cycle) or only flush at ``at``, and commit it while ``lease`` is still ours; None when it
        is not (nothing committed, the dispatcher marked stale)."""
        stats = self.evaluate(at) if evaluate else CycleStats()
        notes, items, escalated = self._flush(at)
        try:
            with self.engine.begin() as conn:
                enqueued = self._commit(conn, items)
                # A flush between cycles re-records the same cycle: it still proves the lease is ours.
                lease.complete(conn, at if evaluate else previous, previous)
        except LeaseLost as e:
            logger.warning("%s", e)
            self._last = {}
            self._synced = None
            return None
        self._last = {}
        self._synced = (at if evaluate else previous,)
        if evaluate:
            logger.info("evaluation cycle %d completed by %s", at, lease.holder)
        return replace(stats, notifications=len(notes), enqueued=enqueued, escalated=escalated,
                       cycles=int(evaluate), invalid_silences=len(self.silences.invalid()))

    def prune(self, *, older_than_ns: int) -> tuple[int, int]:
        """Delete what no receiver or restart needs any more: delivered and dead outbox items older than
        ``older_than_ns``, and notification log entries last sent that long ago with nothing firing (their
        groups resolved). Returns (outbox items, log entries) deleted."""
        if older_than_ns <= 0:
            raise ValueError(f"older_than_ns={older_than_ns} must be positive, e.g. 14 days")
        items = self.outbox.prune(older_than_ns=older_than_ns)
        t = table(NotificationLog)
        cutoff = self.clock() - older_than_ns
        with self.engine.begin() as conn:
            old = conn.execute(select(t.c.receiver, t.c.group_key, t.c.firing).where(
                t.c.sent_unix_nano < cutoff)).all()
            gone = [(r.receiver, r.group_key) for r in old if not r.firing["fingerprints"]]
            for receiver, key in gone:
                conn.execute(delete(t).where(t.c.receiver == receiver, t.c.group_key == key,
                                             t.c.sent_unix_nano < cutoff))
        return items, len(gone)

    def _items(self, n: Notification, receiver: str | None = None, *, incident_id: str = "") -> list[OutboxItem]:
        name = receiver or n.receiver
        rcv = self.config.receivers.get(name)
        if rcv is None:
            logger.error("notification for unknown receiver %r dropped from delivery", name)
            return []
        if receiver is not None:
            n = replace(n, receiver=name)
        return items_for(n, rcv, external_url=self.external_url, incident_id=incident_id)

    def _page_to_escalate(self, incident_id: str) -> Notification | None:
        """The last notification of the incident's groups that pages (the opener's first), else of any group.

        One incident spans every receiver its alert group reached (``pages`` and, by ``continue``, ``tickets``):
        it escalates once, with the page's content.
        """
        notes = [n for n in (self._last_notification(rcv, key) for rcv, key in self.incidents.groups(incident_id))
                 if n is not None]
        paging = [n for n in notes if any(a.label("severity") == "page" for a in n.firing)]
        return (paging or notes)[0] if notes else None

    def _escalate(self, at: int, items: list[OutboxItem]) -> int:
        cfg = self.config
        if not cfg.escalation_receiver or cfg.escalate_after_ns is None:
            return 0
        count = 0
        for incident_id in self.incidents.due_for_escalation(at, cfg.escalate_after_ns):
            self.incidents.escalate(incident_id, cfg.escalation_receiver, at)
            last = self._page_to_escalate(incident_id)
            if last is not None:
                # The unacknowledged page goes to the escalation receiver as well, under its own key.
                items.extend(self._items(replace(last, at=at, reason="escalated: not acknowledged"),
                                         receiver=cfg.escalation_receiver, incident_id=incident_id))
            else:
                logger.error("incident %s escalated, but no notification of its groups is stored to send to %r",
                             incident_id, cfg.escalation_receiver)
            count += 1
        return count


# -- the last notification per group, as JSON in notification_log.notification ------------------------------------


def _alert_doc(a: Alert) -> dict[str, Any]:
    return {"labels": [list(p) for p in a.labels], "annotations": [list(p) for p in a.annotations],
            "starts_at": a.starts_at, "ends_at": a.ends_at, "generator_url": a.generator_url}


def _alert(doc: dict[str, Any]) -> Alert:
    return Alert(labels=tuple((str(k), str(v)) for k, v in doc["labels"]),
                 annotations=tuple((str(k), str(v)) for k, v in doc["annotations"]),
                 starts_at=int(doc["starts_at"]), ends_at=None if doc["ends_at"] is None else int(doc["ends_at"]),
                 generator_url=str(doc.get("generator_url", "")))


def notification_doc(n: Notification) -> dict[str, Any]:
    """``n`` as JSON (what ``notification_log.notification`` stores); :func:`notification_from_doc` reverses it.

    >>> n = Notification(at=5, receiver="r", group_key="g", group_labels=(("a", "b"),), reason="first notification",
    ...                  firing=(Alert(labels=(("alertname", "X"),), starts_at=1),), resolved=())
    >>> notification_from_doc(notification_doc(n)) == n
    True
    """
    return {"at": n.at, "receiver": n.receiver, "group_key": n.group_key,
            "group_labels": [list(p) for p in n.group_labels], "reason": n.reason,
            "firing": [_alert_doc(a) for a in n.firing], "resolved": [_alert_doc(a) for a in n.resolved]}


def notification_from_doc(doc: dict[str, Any]) -> Notification:
    """The :class:`Notification` :func:`notification_doc` stored."""
    return Notification(at=int(doc["at"]), receiver=str(doc["receiver"]), group_key=str(doc["group_key"]),
                        group_labels=tuple((str(k), str(v)) for k, v in doc["group_labels"]),
                        reason=str(doc["reason"]), firing=tuple(_alert(a) for a in doc["firing"]),
                        resolved=tuple(_alert(a) for a in doc["resolved"]))
