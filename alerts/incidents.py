"""Incidents: an alert group that paged becomes an incident with a timeline, acknowledgement and escalation.

Alertmanager has no acknowledgement state (prometheus#6628); qfleet adds it on top of the notifications.
One incident per alert group, whatever the receivers: a group routed to ``pages`` and (``continue``) to ``tickets``
is two aggregation groups (two ``group_key``, one per route) but one incident, so it escalates once and
acknowledging it stops its escalation everywhere. The first notification with firing alerts opens it; a later one
joins it when its group already notified it, or when it carries an alert the incident has (the same alert at
another receiver) or one that differs from such an alert only by severity (an SLO's ticket, then its page). It
closes once every group that notified it has said all its alerts resolved (a group that fires again afterwards
opens a new incident). A notification that reaches two unresolved incidents (two alerts paged apart, then grouped
together by the ticket queue) merges the younger into the older (``merged``, the younger resolved).
Timeline kinds: ``fired`` (one per alert, when first seen), ``notified``, ``acknowledged``, ``escalated``,
``resolved``, ``merged``, ``fault`` (the simulator's ground truth, see
:meth:`Incidents.link_faults`). Rows live in :class:`~qfleet.alerts.schema.Incident` and
:class:`~qfleet.alerts.schema.IncidentEvent`; :class:`Incidents` is the only code that writes them (the dashboards
and command lines acknowledge and resolve through it).

Where an incident happens (:class:`Place`) is read from its labels and its fired alerts' labels; the same
:func:`place_of` scopes fault linking here and the impact in :mod:`qfleet.alerts.impact`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, insert, or_, select, update

from qfleet.alerts.model import Alert, Notification
from qfleet.alerts.schema import Incident, IncidentEvent, table
from qfleet.collector.schema import Span
from qfleet.units import NS

__all__ = [
    "FAULT_SPAN",
    "HARDWARE_LABELS",
    "LINK_LABELS",
    "NODE_LABELS",
    "SEVERITY_ORDER",
    "IncidentError",
    "Incidents",
    "Place",
    "first_alert_ns",
    "incident_id",
    "place_of",
]

#: Name of the simulator's ground-truth fault spans.
FAULT_SPAN = "qfleet.fault"
#: Severities from the most to the least urgent; an incident takes the most urgent of its alerts.
SEVERITY_ORDER: tuple[str, ...] = ("security", "page", "ticket")
_STATES = ("open", "acknowledged", "resolved")
#: Labels that name where an alert is: rules' own names, the Prometheus names SLO alerts give their segment
#: (:func:`qfleet.alerts.sources.slo_alerts`), and the OpenTelemetry attribute names.
NODE_LABELS: tuple[str, ...] = ("node", "qfleet_node_id", "qfleet.node.id")
LINK_LABELS: tuple[str, ...] = ("link", "qfleet_link_id", "qfleet.link.id")
HARDWARE_LABELS: tuple[str, ...] = ("hardware_type", "qfleet_hardware_type", "qfleet.hardware.type")


class IncidentError(ValueError):
    """A bad incident operation: unknown id, wrong state, bad argument (the message says what to do)."""


def incident_id(group_key: str, opened_ns: int) -> str:
    """32 hex characters naming the incident of ``group_key`` opened at ``opened_ns`` (stable, idempotent).

    >>> len(incident_id('{}:{alertname="X"}', 0)), incident_id("g", 1) == incident_id("g", 1)
    (32, True)
    """
    return hashlib.sha256(f"{group_key}\x00{opened_ns}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Where an incident happens: the nodes, links and hardware types its labels name."""

    nodes: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()
    hardware_types: frozenset[str] = frozenset()

    @property
    def link_ends(self) -> frozenset[str]:
        """Both ends of every link (a link ``a~b`` joins nodes ``a`` and ``b``)."""
        return frozenset(end for link in self.links for end in link.split("~") if end)

    @property
    def all_nodes(self) -> frozenset[str]:
        """The nodes named and the ends of the links named."""
        return self.nodes | self.link_ends

    @property
    def named(self) -> bool:
        """Whether the labels name a node or a link (a hardware type alone is not a place)."""
        return bool(self.nodes or self.links)


def _first_value(labels: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for k in keys:
        v = labels.get(k)
        if v not in (None, ""):
            return str(v)
    return None


def place_of(label_sets: Iterable[Mapping[str, Any]]) -> Place:
    """The :class:`Place` that ``label_sets`` (an incident's labels, its fired alerts' labels) name.

    >>> p = place_of([{"link": "qpu-a~qpu-b"}, {"qfleet_node_id": "qpu-c", "qfleet_hardware_type": "ion"}])
    >>> sorted(p.nodes), sorted(p.links), sorted(p.hardware_types), sorted(p.all_nodes)
    (['qpu-c'], ['qpu-a~qpu-b'], ['ion'], ['qpu-a', 'qpu-b', 'qpu-c'])
    """
    nodes: set[str] = set()
    links: set[str] = set()
    hws: set[str] = set()
    for labels in label_sets:
        for keys, into in ((NODE_LABELS, nodes), (LINK_LABELS, links), (HARDWARE_LABELS, hws)):
            v = _first_value(labels, keys)
            if v:
                into.add(v)
    return Place(nodes=frozenset(nodes), links=frozenset(links), hardware_types=frozenset(hws))


def first_alert_ns(opened_ns: int, events: Iterable[Mapping[str, Any]]) -> int:
    """When an incident's first alert started: the earliest ``starts_at`` of its ``fired`` events, or its
    opening when that is earlier (alerts fire after their ``for`` and burn windows, before the notification)."""
    return min([opened_ns] + [int(e["detail"].get("starts_at") or opened_ns) for e in events
                              if e["kind"] == "fired"])


def _problem(labels: Mapping[str, Any]) -> str:
    """What an alert is about: its labels but its severity (an SLO's page and ticket alerts on one segment are one
    problem, as the page-inhibits-ticket rule says)."""
    return "problem:" + "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "severity")


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
        self._i = table(Incident)
        self._e = table(IncidentEvent)

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

    def _find(self, conn: Connection, n: Notification) -> tuple[Any, dict[str, bool]] | None:
        """The unresolved incident ``n`` belongs to (its group notified it, else it shares an alert with it),
        oldest first, with the groups that notified it so far and whether each still has alerts firing."""
        i, e = self._i, self._e
        rows = conn.execute(select(i).where(i.c.state != "resolved").order_by(i.c.opened_unix_nano, i.c.id)).all()
        if not rows:
            return None
        # A group that only reports resolutions joins no incident by them.
        fps = {a.fingerprint for a in n.firing} | {_problem(dict(a.labels)) for a in n.firing}
        events = conn.execute(select(e.c.incident_id, e.c.kind, e.c.detail)
                              .where(e.c.incident_id.in_([r.id for r in rows]), e.c.kind.in_(("fired", "notified")))
                              .order_by(e.c.incident_id, e.c.at_unix_nano, e.c.seq)).all()
        groups: dict[str, dict[str, bool]] = {r.id: {} for r in rows}
        alerts: dict[str, set[str]] = {r.id: set() for r in rows}
        opener = {r.id: r.group_key for r in rows}
        for iid, kind, detail in events:
            d = detail or {}
            if kind == "fired":
                alerts[iid] |= {str(d.get("fingerprint")), _problem(d.get("labels") or {})}
            else:  # events recorded before the group key was (one group per incident then) are the opener's
                groups[iid][str(d.get("group_key") or opener[iid])] = bool(d.get("firing"))
        matches = [r for r in rows if n.group_key in groups[r.id] or n.group_key == r.group_key or fps & alerts[r.id]]
        if not matches:
            return None
        for other in matches[1:]:   # one alert group reached two incidents (e.g. a ticket, then its page): merge
            self._merge(conn, other, into=matches[0].id, at_ns=n.at)
            groups[matches[0].id] |= groups[other.id]
        return matches[0], groups[matches[0].id]

    def _merge(self, conn: Connection, other: Any, *, into: str, at_ns: int) -> None:
        """Copy ``other``'s timeline into incident ``into`` and close ``other`` with a ``merged`` event; the
        survivor keeps the most urgent severity, the earliest acknowledgement and escalation."""
        e, i = self._e, self._i
        survivor = self._row(conn, into)
        have = {d.get("fingerprint") for (d,) in conn.execute(
            select(e.c.detail).where(e.c.incident_id == into, e.c.kind == "fired")).all()}
        for at, kind, detail in conn.execute(select(e.c.at_unix_nano, e.c.kind, e.c.detail).where(
                e.c.incident_id == other.id).order_by(e.c.at_unix_nano, e.c.seq)).all():
            if kind != "fired" or (detail or {}).get("fingerprint") not in have:
                self._append(conn, into, at, kind, {**(detail or {}), "from_incident": other.id})
        values: dict[str, Any] = {}
        if _rank(other.severity) < _rank(survivor.severity):
            values["severity"] = other.severity
        if other.escalated_unix_nano is not None and survivor.escalated_unix_nano is None:
            values["escalated_unix_nano"] = other.escalated_unix_nano
        if other.state == "acknowledged" and survivor.state == "open":
            values.update(state="acknowledged", acknowledged_unix_nano=other.acknowledged_unix_nano,
                          acknowledged_by=other.acknowledged_by)
        if values:
            conn.execute(update(i).where(i.c.id == into).values(**values))
        self._append(conn, other.id, at_ns, "merged", {"into": into})
        conn.execute(update(i).where(i.c.id == other.id).values(state="resolved", resolved_unix_nano=at_ns))

    def on_notification(self, n: Notification, at_ns: int) -> str:
        """Record notification ``n`` sent at ``at_ns``; the id of its incident ('' if there is none: an
        all-resolved notification for a group in no unresolved incident).

        Opens an incident when ``n`` belongs to no unresolved one and something fires (``fired`` per alert,
        then ``notified``); otherwise appends ``fired`` for alerts not seen before and ``notified`` (with the
        receiver and group key). The incident resolves (``resolved``) when, after ``n``, none of the groups that
        notified it has anything firing.
        """
        i = self._i
        with self.engine.begin() as conn:
            found = self._find(conn, n)
            if found is None and not n.firing:
                return ""
            severity = min((a.label("severity") for a in n.firing), key=_rank, default="")
            groups: dict[str, bool]
            if found is None:
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
                groups = {}
            else:
                row, groups = found
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
                "receiver": n.receiver, "group_key": n.group_key, "reason": n.reason,
                "firing": [a.fingerprint for a in n.firing], "resolved": [a.fingerprint for a in n.resolved]})
            groups[n.group_key] = bool(n.firing)
            if not any(groups.values()):
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

    def resolve(self, incident_id: str, by: str, at_ns: int) -> None:
        """Resolve the incident by hand: state ``resolved`` and a ``resolved`` event naming ``by``; resolving
        a resolved incident changes nothing.

        Raises:
            IncidentError: unknown id or empty ``by``.
        """
        if not by:
            raise IncidentError("resolve: 'by' is empty; name who resolves, e.g. by='alice'")
        with self.engine.begin() as conn:
            if self._row(conn, incident_id).state == "resolved":
                return
            conn.execute(update(self._i).where(self._i.c.id == incident_id)
                         .values(state="resolved", resolved_unix_nano=at_ns, resolved_by=by))
            self._append(conn, incident_id, at_ns, "resolved", {"by": by, "reason": "resolved by hand"})

    def link_faults(self, incident_id: str, *, slack_ns: int = 15 * 60 * NS) -> int:
        """Attach the ground truth: ``qfleet.fault`` spans that overlap the incident and share its place.

        The window runs from the earliest alert start minus ``slack_ns`` (detection takes time, and a fault can
        end before a ``for`` delay is over) to the resolution (or now). A fault matches when its node or link is
        in the incident's :class:`Place` (:func:`place_of` its labels and its fired alerts' labels), or its link
        has an end there. Each match appends one ``fault`` event (fault id, kind, target); a fault already
        linked is not linked again. Returns the number of new events.
        """
        with self.engine.begin() as conn:
            row = self._row(conn, incident_id)
            events = [{"kind": k, "detail": d or {}} for k, d in conn.execute(
                select(self._e.c.kind, self._e.c.detail).where(self._e.c.incident_id == incident_id)).all()]
            place = place_of([row.labels or {}, *(e["detail"].get("labels") or {} for e in events
                                                  if e["kind"] == "fired")])
            if not place.named:
                return 0
            linked = {e["detail"].get("fault_id") for e in events if e["kind"] == "fault"}
            start = first_alert_ns(row.opened_unix_nano, events)
            end = row.resolved_unix_nano if row.resolved_unix_nano is not None else max(self.clock(), start)
            added = 0
            for f in _fault_spans(conn, start - slack_ns, end):
                detail = f.detail()
                if detail["fault_id"] in linked or not f.at(place):
                    continue
                self._append(conn, incident_id, f.start_ns, "fault", detail)
                linked.add(detail["fault_id"])
                added += 1
        return added

    # -- reads -----------------------------------------------------------------------------------------------

    def _not_merged(self) -> Any:
        """SQL: the incident was not merged into another (a merged one lives on in its survivor's timeline)."""
        e = self._e
        return ~exists().where(e.c.incident_id == self._i.c.id, e.c.kind == "merged")

    def open_at(self, at_ns: int) -> list[dict[str, Any]]:
        """Incidents open at ``at_ns``: opened before it and not resolved by then (newest first), merged ones
        left out."""
        i = self._i
        q = (select(i).where(i.c.opened_unix_nano < at_ns,
                             or_(i.c.resolved_unix_nano.is_(None), i.c.resolved_unix_nano >= at_ns),
                             self._not_merged())
             .order_by(i.c.opened_unix_nano.desc(), i.c.id))
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

    def groups(self, incident_id: str) -> tuple[tuple[str, str], ...]:
        """The ``(receiver, group key)`` pairs that notified the incident, in the order they first did (the
        opener first).

        Raises:
            IncidentError: unknown id.
        """
        out: dict[tuple[str, str], None] = {}
        with self.engine.connect() as conn:
            row = self._row(conn, incident_id)
            out[(row.receiver, row.group_key)] = None
            e = self._e
            for (d,) in conn.execute(select(e.c.detail).where(e.c.incident_id == incident_id,
                                                             e.c.kind == "notified")
                                     .order_by(e.c.at_unix_nano, e.c.seq)).all():
                out.setdefault((str((d or {}).get("receiver", row.receiver)),
                                str((d or {}).get("group_key") or row.group_key)), None)
        return tuple(out)

    # Last in the class: in the annotations of methods below it, `list` would name this method.
    def list(self, *, state: str | None = None, limit: int | None = None,
             merged: bool = False) -> list[dict[str, Any]]:
        """Incidents (newest first) as dicts of the ``incidents`` columns, optionally of one ``state``, at
        most ``limit`` of them; those merged into another only with ``merged=True`` (each alert group counts
        once)."""
        if state is not None and state not in _STATES:
            raise IncidentError(f"state {state!r} is not one of {list(_STATES)}")
        if limit is not None and limit < 1:
            raise IncidentError(f"limit={limit} must be at least 1 (or None for all)")
        i = self._i
        q = select(i).order_by(i.c.opened_unix_nano.desc(), i.c.id).limit(limit)
        if not merged:
            q = q.where(self._not_merged())
        if state is not None:
            q = q.where(i.c.state == state)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]


@dataclass(frozen=True, slots=True)
class _FaultSpan:
    """A ground-truth ``qfleet.fault`` span, as fault linking reads it."""

    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int
    node_id: str | None
    link_id: str | None
    attributes: dict[str, Any]

    def at(self, place: Place) -> bool:
        """Whether the fault is at ``place``: its node is named or ends a named link, or its link is named or
        ends at a named node."""
        if self.node_id and self.node_id in place.all_nodes:
            return True
        return bool(self.link_id) and (self.link_id in place.links or bool(
            set(str(self.link_id).split("~")) & place.nodes))

    def detail(self) -> dict[str, Any]:
        """The ``fault`` event's detail: fault id, kind, title, target, start, end, trace and span ids, and the
        onset profile (step, ramp, intermittent) when the simulator recorded one."""
        a = self.attributes

        def attr(name: str, default: Any) -> Any:
            # Ground truth is spelled qfleet.truth.fault.*; stores written before that use qfleet.fault.*.
            return a.get(f"qfleet.truth.fault.{name}", a.get(f"qfleet.fault.{name}", default))

        detail = {"fault_id": attr("id", self.span_id), "kind": attr("kind", ""), "title": attr("title", ""),
                  "target": attr("target", self.link_id or self.node_id or ""),
                  "start": self.start_ns, "end": self.end_ns, "trace_id": self.trace_id, "span_id": self.span_id}
        if a.get("qfleet.truth.profile"):
            detail["profile"] = a["qfleet.truth.profile"]
        return detail


def _fault_spans(conn: Connection, lo: int, hi: int) -> list[_FaultSpan]:
    """The ground-truth fault spans overlapping ``[lo, hi]``, in start order."""
    s = Span.__table__
    rows = conn.execute(select(s.c.trace_id, s.c.span_id, s.c.start_time_unix_nano, s.c.end_time_unix_nano,
                               s.c.node_id, s.c.link_id, s.c.attributes)
                        .where(s.c.name == FAULT_SPAN, s.c.start_time_unix_nano <= hi, s.c.end_time_unix_nano > lo)
                        .order_by(s.c.start_time_unix_nano, s.c.span_id)).all()
    return [_FaultSpan(t, sp, start, end, node, link, attrs or {}) for t, sp, start, end, node, link, attrs in rows]
