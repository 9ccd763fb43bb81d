"""An incident's impact: the one definition the postmortem and the on-call page both show.

The impact is scoped to the incident's :class:`~qfleet.alerts.incidents.Place` (its labels and its fired alerts'
labels): the jobs whose first node is one of its nodes or an end of one of its links, or that sent an
entanglement request over one of its links. An incident that names no node or link is scoped to its hardware
types, and one that names neither to the whole fleet (``scope`` says which). Jobs that failed before reaching any
node (``node_down``, ``unschedulable``: their spans name no node) cannot be placed, so every scope counts them. The window runs from
:data:`SLACK_NS` before its first alert (alerts fire after their ``for`` and burn windows) to :data:`SLACK_NS`
after its resolution, or after its latest timeline event while it is open: no clock is read, so the same store
gives the same impact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Engine, func, or_, select

from qfleet.alerts.incidents import Incidents, Place, first_alert_ns, place_of
from qfleet.collector.schema import Span
from qfleet.units import NS, format_rfc3339

__all__ = ["FAILED_IDS_MAX", "JOB_SPAN", "REQUEST_SPAN", "SLACK_NS", "IncidentImpact", "incident_impact"]

#: The window reaches this far before the first alert and after the resolution (or the latest event).
SLACK_NS = 15 * 60 * NS
#: Most failed job ids an impact lists (the counts are exact).
FAILED_IDS_MAX = 50
JOB_SPAN = "qfleet.job"
REQUEST_SPAN = "qfleet.entanglement.request"
_FAILED = 2  # OTel status code ERROR
_S = Span.__table__

Scope = Literal["place", "hardware", "fleet"]


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentImpact:
    """What one incident touched (see the module docstring for the scope and the window).

    ``nodes`` holds the nodes named and the ends of the links named; ``tenants`` and ``outcomes`` count the
    failed jobs per tenant and per failure (status message or ``qfleet.outcome``), most first;
    ``failed_job_ids`` are the first :data:`FAILED_IDS_MAX` failed jobs, oldest first.
    """

    incident_id: str
    scope: Scope
    nodes: tuple[str, ...]
    links: tuple[str, ...]
    hardware_types: tuple[str, ...]
    start_ns: int
    end_ns: int
    jobs_total: int
    jobs_failed: int
    failed_job_ids: tuple[str, ...]
    tenants: tuple[tuple[str, int], ...]
    outcomes: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        """One line on what the figures count and over which window."""
        window = f"from {format_rfc3339(self.start_ns)} to {format_rfc3339(self.end_ns)}"
        unplaced = " and jobs that failed before reaching a node"
        if self.scope == "place":
            where = f"nodes {', '.join(self.nodes) or '-'} and links {', '.join(self.links) or '-'}"
            return f"jobs on {where}{unplaced}, {window}"
        if self.scope == "hardware":
            return (f"jobs on hardware type {', '.join(self.hardware_types)}{unplaced} (the incident names no node or "
                    f"link), {window}")
        return f"every job of the fleet (the incident names no node, link or hardware type), {window}"

    def counts(self) -> dict[str, int]:
        """``{"nodes", "links", "tenants", "jobs"}``: how many of each (``jobs`` = failed jobs)."""
        return {"nodes": len(self.nodes), "links": len(self.links), "tenants": len(self.tenants),
                "jobs": self.jobs_failed}

    def to_json(self) -> dict[str, Any]:
        """The postmortem's ``impact`` object: ``nodes``, ``links``, ``tenants`` (tenant -> failed jobs),
        ``jobs_failed``, ``jobs_total``, ``failed_job_ids``, ``scope``, ``window`` (RFC 3339 ``from``/``to``)."""
        return {"nodes": list(self.nodes), "links": list(self.links), "tenants": dict(self.tenants),
                "jobs_failed": self.jobs_failed, "jobs_total": self.jobs_total,
                "failed_job_ids": list(self.failed_job_ids), "scope": self.scope,
                "window": {"from": format_rfc3339(self.start_ns), "to": format_rfc3339(self.end_ns)}}


def incident_impact(engine: Engine, incident_id: str, *, slack_ns: int = SLACK_NS,
                    max_failed_ids: int = FAILED_IDS_MAX) -> IncidentImpact:
    """The :class:`IncidentImpact` of ``incident_id``.

    Raises:
        qfleet.alerts.incidents.IncidentError: no such incident.
    """
    incidents = Incidents(engine, clock=lambda: 0)  # the window below reads no clock
    row = incidents.get(incident_id)
    events = incidents.timeline(incident_id)
    place = place_of([row["labels"] or {}, *(e["detail"].get("labels") or {} for e in events
                                             if e["kind"] == "fired")])
    start = first_alert_ns(row["opened_unix_nano"], events) - slack_ns
    latest = max([row["opened_unix_nano"], *(e["at_unix_nano"] for e in events)])
    end = (row["resolved_unix_nano"] if row["resolved_unix_nano"] is not None else latest) + slack_ns
    scope: Scope = "place" if place.named else "hardware" if place.hardware_types else "fleet"
    with engine.connect() as conn:
        where = [_S.c.name == JOB_SPAN, _S.c.start_time_unix_nano >= start, _S.c.start_time_unix_nano <= end,
                 *_place_filter(place, scope, start, end)]
        total = int(conn.execute(select(func.count()).select_from(_S).where(*where)).scalar_one())
        failed = _failed_jobs(conn, where)
    tenants: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for _job_id, message, attrs in failed:
        tenants[str(attrs.get("qfleet.tenant", "?"))] += 1
        outcomes[message or str(attrs.get("qfleet.outcome", "?"))] += 1
    return IncidentImpact(
        incident_id=incident_id, scope=scope, nodes=tuple(sorted(place.all_nodes)), links=tuple(sorted(place.links)),
        hardware_types=tuple(sorted(place.hardware_types)), start_ns=start, end_ns=end, jobs_total=total,
        jobs_failed=len(failed), failed_job_ids=tuple(j for j, _m, _a in failed if j)[:max_failed_ids],
        tenants=tuple(tenants.most_common()), outcomes=tuple(outcomes.most_common()))


def _place_filter(place: Place, scope: Scope, start: int, end: int) -> list[ColumnElement[bool]]:
    """Jobs at ``place`` (first node there, or an entanglement request over one of its links in the window), on
its hardware types, or never placed."""
    if scope == "fleet":
        return []
    at: list[ColumnElement[bool]] = [_S.c.node_id.is_(None)]   # never placed: cannot be ruled out
    if scope == "hardware":
        return [or_(_S.c.hardware_type.in_(sorted(place.hardware_types)), *at)]
    if place.all_nodes:
        at.append(_S.c.node_id.in_(sorted(place.all_nodes)))
    if place.links:
        on_link = select(_S.c.job_id).where(_S.c.name == REQUEST_SPAN, _S.c.link_id.in_(sorted(place.links)),
                                            _S.c.start_time_unix_nano >= start, _S.c.start_time_unix_nano <= end)
        at.append(_S.c.job_id.in_(on_link.scalar_subquery()))
    return [or_(*at)]


def _failed_jobs(conn: Connection, where: list[ColumnElement[bool]]) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(job id, status message, attributes) of the failed jobs matching ``where``, oldest first."""
    rows = conn.execute(select(_S.c.job_id, _S.c.status_message, _S.c.attributes)
                        .where(*where, _S.c.status_code == _FAILED)
                        .order_by(_S.c.start_time_unix_nano, _S.c.trace_id, _S.c.span_id)).all()
    return [(job_id, message or "", attrs or {}) for job_id, message, attrs in rows]
