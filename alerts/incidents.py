"""Incidents: an alert group that paged becomes an incident with a timeline, acknowledgement and escalation.

Alertmanager has no acknowledgement state (prometheus#6628); qfleet adds it on top of the notifications.
One incident per aggregation group (``group_key``) at a time: the first notification with firing alerts opens
it, later ones append to its timeline, and the notification that says all alerts resolved closes it (a group
that fires again afterwards opens a new incident). Timeline kinds: ``fired`` (one per alert, when first seen),
``notified``, ``acknowledged``, ``escalated``, ``resolved``, ``fault`` (the simulator's ground truth, see
:meth:`Incidents.link_faults`). Rows live in ``collector.schema.Incident`` and ``IncidentEvent``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from qfleet.alerts.model import NS, Alert, Notification
from qfleet.alerts.schema import Incident, IncidentEvent
from qfleet.collector.schema import Span

__all__ = ["FAULT_SPAN", "SEVERITY_ORDER", "IncidentError", "Incidents", "incident_id"]

#: Name of the simulator's ground-truth fault spans.
FAULT_SPAN = "qfleet.fault"
#: Severities from the most to the least urgent; an incident takes the most urgent of its alerts.
SEVERITY_ORDER: tuple[str, ...] = ("security", "page", "ticket")
_STATES = ("open", "acknowledged", "resolved")
# Alert labels that name where an alert is (sources.slo_alerts uses the Prometheus names of the segment).
_NODE_LABELS = ("node", "qfleet_node_id")
_LINK_LABELS = ("link", "qfleet_link_id")


class IncidentError(ValueError):
    """A bad incident operation: unknown id, wrong state, bad argument (the message says what to do)."""


def incident_id(group_key: str, opened_ns: int) -> str:
    """32 hex characters naming the incident of ``group_key`` opened at ``opened_ns`` (stable, idempotent).

    >>> len(incident_id('{}:{alertname="X"}', 0)), incident_id("g", 1) == incident_id("g", 1)
    (32, True)
    """
    return hashlib.sha256(f"{group_key}\x00{opened_ns}".encode()).hexdigest()[:32]


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def _alert_doc(a: Alert) -> dict[str, Any]:
    return {"fingerprint": a.fingerprint, "labels": dict(a.labels), "starts_at": a.starts_at,
            "summary": dict(a.annotations).get("summary", "")}


class Incidents:
    """Incidents over the store.

    Args:
        engine: a migrated store.
        clock: integer-ns clock (only :meth:`link_faults` uses it, for an incident still open).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.clock = clock
        self._i = Incident.__table__
        self._e = IncidentEvent.__table__

    # -- writes ----------------------------------------------------------------------------------------------

    def _append(self, conn: Connection, iid: str, at_ns: int, kind: str, detail: dict[str, Any]) -> None:
        e = self._e
        seq = conn.execute(select(func.coalesce(func.max(e.c.seq), 0)).where(e.c.incident_id == iid)).scalar_one()
        conn.execute(insert(e).values(incident_id=iid, seq=seq + 1, at_unix_nano=at_ns, kind=kind, detail=detail))

    def _row(self, conn: Connection, iid: str) -> Any:
        row = conn.execute(select(self._i).where(self._i.c.id == iid)).first()
        if row is None:
            raise IncidentError(f"no incident {iid!r}; list them with Incidents.list()")
        return row

    def on_notification(self, n: Notification, at_ns: int) -> str:
        """Record notification ``n`` sent at ``at_ns``; the id of its incident ('' if there is none: an
        all-resolved notification for a group without an unresolved incident).

        Opens an incident for a group without an unresolved one when something fires (``fired`` per alert,
        then ``notified``); appends ``fired`` for alerts not seen before and ``notified``; with nothing firing,
        appends ``notified`` and ``resolved`` and closes the incident.
        """
        i = self._i
        with self.engine.begin() as conn:
            row = conn.execute(select(i).where(i.c.group_key == n.group_key, i.c.state != "resolved")
                               .order_by(i.c.opened_unix_nano.desc())).first()
            if row is None and not n.firing:
                return ""
            severity = min((a.label("severity") for a in n.firing), key=_rank, default="")
            if row is None:
                first = n.firing[0]
                title = dict(first.annotations).get("summary") or (
                    first.label("alertname") + "".join(f" {k}={v}" for k, v in n.group_labels))
                iid = incident_id(n.group_key, at_ns)
                common = dict(first.labels)
                for a in n.firing[1:]:
                    common = {k: v for k, v in common.items() if a.label(k) == v}
                conn.execute(insert(i).values(
                    id=iid, group_key=n.group_key, receiver=n.receiver, title=title, severity=severity,
                    labels={**common, **dict(n.group_labels)}, state="open", opened_unix_nano=at_ns,
                    acknowledged_unix_nano=None, acknowledged_by=None, escalated_unix_nano=None,
                    resolved_unix_nano=None))
                seen: set[str] = set()
            else:
                iid = row.id
                if severity and _rank(severity) < _rank(row.severity):
                    conn.execute(update(i).where(i.c.id == iid).values(severity=severity))
                e = self._e
                seen = {d.get("fingerprint") for (d,) in conn.execute(
                    select(e.c.detail).where(e.c.incident_id == iid, e.c.kind == "fired")).all()}
            for a in n.firing:
                if a.fingerprint not in seen:
                    self._append(conn, iid, at_ns, "fired", _alert_doc(a))
            self._append(conn, iid, at_ns, "notified", {
                "receiver": n.receiver, "reason": n.reason, "firing": [a.fingerprint for a in n.firing],
                "resolved": [a.fingerprint for a in n.resolved]})
            if not n.firing:
                self._append(conn, iid, at_ns, "resolved", {"receiver": n.receiver, "reason": n.reason})
                conn.execute(update(i).where(i.c.id == iid).values(state="resolved", resolved_unix_nano=at_ns))
        return iid

    def acknowledge(self, incident_id: str, by: str, at_ns: int) -> None:
        """Mark the incident acknowledged by ``by`` (stops escalation); acknowledging twice changes nothing.

        Raises:
            IncidentError: unknown id, empty ``by``, or the incident is already resolved.
        """
        if not by:
            raise IncidentError("acknowledge: 'by' is empty; name who acknowledges, e.g. by='alice'")
        with self.engine.begin() as conn:
            row = self._row(conn, incident_id)
            if row.state == "resolved":
                raise IncidentError(f"incident {incident_id!r} is already resolved; nothing to acknowledge")
            if row.state == "acknowledged":
                return
            conn.execute(update(self._i).where(self._i.c.id == incident_id).values(
                state="acknowledged", acknowledged_unix_nano=at_ns, acknowledged_by=by))
            self._append(conn, incident_id, at_ns, "acknowledged", {"by": by})

    def escalate(self, incident_id: str, to_receiver: str, at_ns: int) -> None:
        """Record that the incident was escalated to ``to_receiver`` at ``at_ns``.

        Raises:
            IncidentError: unknown id, empty receiver, or the incident is resolved.
        """
        if not to_receiver:
            raise IncidentError("escalate: to_receiver is empty; name the receiver, e.g. 'platform-lead'")
        with self.engine.begin() as conn:
            row = self._row(conn, incident_id)
            if row.state == "resolved":
                raise IncidentError(f"incident {incident_id!r} is resolved; a resolved incident is not escalated")
            conn.execute(update(self._i).where(self._i.c.id == incident_id).values(escalated_unix_nano=at_ns))
            self._append(conn, incident_id, at_ns, "escalated", {"to": to_receiver})

    def due_for_escalation(self, at_ns: int, after_ns: int, severity: str = "page") -> list[str]:
        """Ids of open (unacknowledged), not yet escalated incidents of ``severity`` opened at least
        ``after_ns`` before ``at_ns``, oldest first."""
        if after_ns < 0:
            raise IncidentError(f"after_ns={after_ns} is negative; pass a delay >= 0, e.g. 15 * 60 * NS")
        i = self._i
        with self.engine.connect() as conn:
            rows = conn.execute(select(i.c.id).where(
                i.c.state == "open", i.c.escalated_unix_nano.is_(None), i.c.severity == severity,
                i.c.opened_unix_nano <= at_ns - after_ns).order_by(i.c.opened_unix_nano, i.c.id)).all()
        return [r.id for r in rows]

    def link_faults(self, incident_id: str, *, slack_ns: int = 15 * 60 * NS) -> int:
        """Attach the ground truth: ``qfleet.fault`` spans that overlap the incident and share its place.

        The window runs from the earliest alert start minus ``slack_ns`` (detection takes time, and a fault can
        end before a ``for`` delay is over) to the resolution (or now). A fault matches when its node or link is
        one of the incident's alerts' ``node``/``link`` labels (``qfleet_node_id``/``qfleet_link_id`` too), or
        its node is an end of such a link. Each match appends one ``fault`` event (fault id, kind, target); a
        fault already linked is not linked again. Returns the number of new events.
        """
        e, s = self._e, Span.__table__
        with self.engine.begin() as conn:
            row = self._row(conn, incident_id)
            events = conn.execute(select(e.c.kind, e.c.detail).where(e.c.incident_id == incident_id)).all()
            fired = [d for k, d in events if k == "fired"]
            linked = {d.get("fault_id") for k, d in events if k == "fault"}
            label_sets = [d.get("labels", {}) for d in fired] + [row.labels or {}]
            nodes = {ls[k] for ls in label_sets for k in _NODE_LABELS if ls.get(k)}
            links = {ls[k] for ls in label_sets for k in _LINK_LABELS if ls.get(k)}
            if not nodes and not links:
                return 0
            start = min([d.get("starts_at", row.opened_unix_nano) for d in fired] + [row.opened_unix_nano])
            lo = start - slack_ns
            hi = row.resolved_unix_nano if row.resolved_unix_nano is not None else max(self.clock(), start)
            faults = conn.execute(select(s.c.trace_id, s.c.span_id, s.c.start_time_unix_nano,
                                         s.c.end_time_unix_nano, s.c.node_id, s.c.link_id, s.c.attributes)
                                  .where(s.c.name == FAULT_SPAN, s.c.start_time_unix_nano <= hi,
                                         s.c.end_time_unix_nano > lo)
                                  .order_by(s.c.start_time_unix_nano, s.c.span_id)).all()
            ends = {n for link in links for n in link.split("~")}
            added = 0
            for f in faults:
                attrs = f.attributes or {}
                fid = attrs.get("qfleet.fault.id", f.span_id)
                if fid in linked:
                    continue
                f_nodes = set(f.link_id.split("~")) if f.link_id else set()
                hit = (f.node_id and (f.node_id in nodes or f.node_id in ends)) or (
                    f.link_id and (f.link_id in links or f_nodes & nodes))
                if not hit:
                    continue
                self._append(conn, incident_id, f.start_time_unix_nano, "fault", {
                    "fault_id": fid, "kind": attrs.get("qfleet.fault.kind", ""),
                    "title": attrs.get("qfleet.fault.title", ""),
                    "target": attrs.get("qfleet.fault.target", f.link_id or f.node_id or ""),
                    "start": f.start_time_unix_nano, "end": f.end_time_unix_nano,
                    "trace_id": f.trace_id, "span_id": f.span_id})
                linked.add(fid)
                added += 1
        return added

    # -- reads -----------------------------------------------------------------------------------------------

    def list(self, *, state: str | None = None) -> list[dict[str, Any]]:
        """Incidents (newest first) as dicts of the ``incidents`` columns, optionally of one ``state``."""
        if state is not None and state not in _STATES:
            raise IncidentError(f"state {state!r} is not one of {list(_STATES)}")
        i = self._i
        q = select(i).order_by(i.c.opened_unix_nano.desc(), i.c.id)
        if state is not None:
            q = q.where(i.c.state == state)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]

    def get(self, incident_id: str) -> dict[str, Any]:
        """One incident as a dict of its columns.

        Raises:
            IncidentError: unknown id.
        """
        with self.engine.connect() as conn:
            return dict(self._row(conn, incident_id)._mapping)

    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's events in time order (ties by ``seq``, the order they were recorded): dicts with
        ``seq``, ``at_unix_nano``, ``kind``, ``detail``.

        Raises:
            IncidentError: unknown id.
        """
        e = self._e
        with self.engine.connect() as conn:
            self._row(conn, incident_id)
            rows = conn.execute(select(e.c.seq, e.c.at_unix_nano, e.c.kind, e.c.detail)
                                .where(e.c.incident_id == incident_id).order_by(e.c.at_unix_nano, e.c.seq)).all()
        return [dict(r._mapping) for r in rows]
