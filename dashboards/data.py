"""Data access for the dashboards: pandas DataFrames over the store, with no Streamlit import.

Every function takes an :class:`~sqlalchemy.Engine` first; times are integer Unix ns. Windows are half-open,
``[start_ns, end_ns)``. Anything that may span more than a few hours reads the per-minute rollups
(``span_rollups``, ``metric_rollups``) or ``slo_evaluations``; raw spans are read only for one job or with a
``LIMIT``. Filters match the promoted columns exactly: a span without a link (``qfleet.job``,
``qfleet.measurement``) is not dropped by a link filter, and a job's node is its first node (``node_id``).
All SQL is built with SQLAlchemy and parameterised; it only reads. Incidents, their impact and silences come
from the alerts package's repositories (:class:`~qfleet.alerts.incidents.Incidents`,
:func:`~qfleet.alerts.impact.incident_impact`, :class:`~qfleet.alerts.silence_store.SilenceStore`), which are also
the only writers of those tables (acknowledge, resolve, silence).

Why one module: it is the dashboards' one view of the store's schema; every page reads through the same
filters, run selection and rollup choice, so a schema change is made here once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from importlib.resources import files
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, func, literal, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from qfleet.alerts.impact import IncidentImpact
from qfleet.alerts.impact import incident_impact as _incident_impact
from qfleet.alerts.incidents import IncidentError, Incidents, place_of
from qfleet.alerts.silence_store import SilenceStore
from qfleet.collector.migrate import open_existing
from qfleet.collector.runs import Runs
from qfleet.collector.schema import ROLLUP_STEP_NS, MetricRollup, MetricSample, MetricSeries, Span, SpanRollup
from qfleet.collector.store import StoreError
from qfleet.slo.schema import SloEvaluation
from qfleet.units import NS, TimestampError, parse_rfc3339

__all__ = [
    "LONG_WINDOW_NS",
    "Filters",
    "acknowledge",
    "data_range",
    "default_filters",
    "entanglement_failures",
    "error_distributions",
    "fleet_kpis",
    "feedforward_heatmap",
    "incident_filters",
    "incident_impact",
    "incident_timeline",
    "incidents",
    "job_trace",
    "link_fidelity",
    "node_series",
    "open_store",
    "options",
    "recent_jobs",
    "resolve",
    "run_range",
    "runbook",
    "runs",
    "silence",
    "slo_state",
    "slo_history",
    "slo_status",
    "trend",
]

#: Windows longer than this read ``metric_rollups`` instead of ``metric_samples``.
LONG_WINDOW_NS = 6 * 3600 * NS
#: Most raw spans a window query reads (traces, link fidelity).
RAW_LIMIT = 2000

JOB = "qfleet.job"
REQUEST = "qfleet.entanglement.request"
FEEDFORWARD = "qfleet.feedforward"
MEASUREMENT = "qfleet.measurement"
_LINKLESS = frozenset({JOB, MEASUREMENT})
_STATUS = {0: "unset", 1: "ok", 2: "error"}

_S = Span.__table__
_R = SpanRollup.__table__
_MS = MetricSeries.__table__
_MX = MetricSample.__table__
_MR = MetricRollup.__table__
_E = SloEvaluation.__table__


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """The window ``[start_ns, end_ns)`` and optional hardware type, node and link every view filters on.

    ``place_nodes``, ``place_links`` and ``place_hardware`` scope to an incident's place (:func:`incident_filters`):
    rows on one of those nodes or links (or, when it names neither, on those hardware types).
    """

    start_ns: int
    end_ns: int
    hardware_type: str | None = None
    node: str | None = None
    link: str | None = None
    place_nodes: tuple[str, ...] = ()
    place_links: tuple[str, ...] = ()
    place_hardware: tuple[str, ...] = ()


def incident_filters(impact: IncidentImpact) -> Filters:
    """The filters of an incident's own window and place: the scope its impact (and postmortem) counts over."""
    if impact.scope == "place":
        return Filters(start_ns=impact.start_ns, end_ns=impact.end_ns, place_nodes=impact.nodes,
                       place_links=impact.links)
    return Filters(start_ns=impact.start_ns, end_ns=impact.end_ns,
                   place_hardware=impact.hardware_types if impact.scope == "hardware" else ())


# -- helpers -------------------------------------------------------------------------------------------------------


def _floor(t: int) -> int:
    return t - t % ROLLUP_STEP_NS


def _filters_where(t: Any, f: Filters, name: str) -> list[ColumnElement[bool]]:
    """The hardware type, node, link and place conditions of ``f`` on table ``t`` (spans or their rollups)."""
    w: list[ColumnElement[bool]] = []
    if f.hardware_type:
        w.append(t.c.hardware_type == f.hardware_type)
    if f.node:
        w.append(t.c.node_id == f.node)
    if f.link and name not in _LINKLESS:
        w.append(t.c.link_id == f.link)
    at: list[ColumnElement[bool]] = []
    if f.place_nodes:
        at.append(t.c.node_id.in_(f.place_nodes))
    if f.place_links and name not in _LINKLESS:
        at.append(t.c.link_id.in_(f.place_links))
    if not at and f.place_hardware:
        at.append(t.c.hardware_type.in_(f.place_hardware))
    if at:
        w.append(or_(*at))
    return w


def _rollup_where(f: Filters, name: str) -> list[ColumnElement[bool]]:
    """Rollup buckets of span ``name`` whose minute starts in the window (the minute of ``start_ns`` included)."""
    return [_R.c.name == name, _R.c.bucket_start_unix_nano >= _floor(f.start_ns),
            _R.c.bucket_start_unix_nano < f.end_ns, *_filters_where(_R, f, name)]


def _span_where(f: Filters, name: str) -> list[ColumnElement[bool]]:
    """Raw spans of ``name`` started in the window, filtered like :func:`_rollup_where`."""
    return [_S.c.name == name, _S.c.start_time_unix_nano >= f.start_ns, _S.c.start_time_unix_nano < f.end_ns,
            *_filters_where(_S, f, name)]


def _bucket(col: Any, origin: int, step_ns: int) -> Any:
    """SQL for the start of the ``step_ns`` bucket (aligned on ``origin``) holding ``col`` (integer division)."""
    if step_ns <= 0:
        raise ValueError(f"step_ns={step_ns} must be > 0, e.g. 5 * 60 * 10**9 for 5 minutes")
    return literal(origin) + ((col - literal(origin)) // literal(step_ns)) * literal(step_ns)


def _frame(rows: Any, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _doc(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- the store ------------------------------------------------------------------------------------------------------


def open_store(url: str) -> Engine:
    """An engine on the existing, migrated store ``url``; never creates a SQLite file.

    Raises:
        StoreError: a missing SQLite file, a database whose schema is not at head (the message names
            ``qfleet db upgrade``), or a database that cannot be reached; one line, password hidden.
    """
    try:
        return open_existing(url)
    except SQLAlchemyError as e:  # open_existing names unreachable servers; anything else still gets one line
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StoreError(f"cannot open the database: {reason}") from None


# -- ranges and options --------------------------------------------------------------------------------------------


def runs(engine: Engine) -> pd.DataFrame:
    """The store's simulated runs, latest registered first: ``id``, ``fleet``, ``start``, ``end`` (ns), ``status``;
    empty for a store without runs (OTLP data from real fleets)."""
    rows = sorted(Runs(engine).list(), key=lambda r: (r.created_ns, r.start_ns, r.id), reverse=True)
    return pd.DataFrame([(r.id, r.fleet, r.start_ns, r.end_ns, r.status) for r in rows],
                        columns=["id", "fleet", "start", "end", "status"])


def run_range(engine: Engine, run_id: str | None = None) -> tuple[int, int] | None:
    """Simulated ``[start, end)`` of run ``run_id`` (default: the latest); None for a store without runs.

    Raises:
        StoreError: ``run_id`` names no stored run.
    """
    run = Runs(engine).select(run_id)
    return None if run is None else (run.start_ns, run.end_ns)


def _run_where(col: Any, rng: tuple[int, int] | None) -> list[ColumnElement[bool]]:
    return [] if rng is None else [col >= rng[0], col < rng[1]]


def data_range(engine: Engine, run_id: str | None = None) -> tuple[int, int] | None:
    """First and last span start in the store (within the selected run's range, when the store has runs: ``run_id``
    or the latest), or None when there are no such spans."""
    rng = run_range(engine, run_id)
    col = _S.c.start_time_unix_nano
    with engine.connect() as c:
        lo, hi = c.execute(select(func.min(col), func.max(col)).where(*_run_where(col, rng))).one()
    return None if lo is None else (int(lo), int(hi))


def default_filters(engine: Engine, hours: int = 24, run_id: str | None = None) -> Filters:
    """The data's own last ``hours`` (or all of it) within the selected run (see :func:`data_range`): the window
    ends at the minute after the last span start or metric sample (samples are stamped at the end of their step),
    so the newest data is inside it.

    An empty store gives ``[0, hours)``: no wall clock is read here.
    """
    span = hours * 3600 * NS
    rng = data_range(engine, run_id)
    if rng is None:
        return Filters(start_ns=0, end_ns=span)
    run = run_range(engine, run_id)
    col = _MX.c.time_unix_nano
    with engine.connect() as c:
        # A sample stamped at the run's end belongs to its last step.
        last_sample = c.execute(select(func.max(col)).where(
            *([] if run is None else [col >= run[0], col <= run[1]]))).scalar()
    end = _floor(max(rng[1], int(last_sample or 0))) + ROLLUP_STEP_NS
    return Filters(start_ns=max(_floor(rng[0]), end - span), end_ns=end)


def options(engine: Engine) -> dict[str, list[str]]:
    """Hardware types, nodes and links the filters offer (from the small ``metric_series`` table)."""
    out: dict[str, list[str]] = {}
    with engine.connect() as c:
        for key, col in (("hardware_types", _MS.c.hardware_type), ("nodes", _MS.c.node_id), ("links", _MS.c.link_id)):
            out[key] = sorted(v for (v,) in c.execute(select(col).distinct().where(col.is_not(None), col != "")))
    return out


# -- exec view ------------------------------------------------------------------------------------------------------


def _counts(c: Any, f: Filters, name: str) -> tuple[int, int, int]:
    """(good, total, duration_sum_ns) of span ``name`` over the window, from the rollups."""
    good = func.sum(_R.c.span_count).filter(_R.c.status_code != 2)
    row = c.execute(select(func.coalesce(good, 0), func.coalesce(func.sum(_R.c.span_count), 0),
                           func.coalesce(func.sum(_R.c.duration_sum_ns), 0)).where(*_rollup_where(f, name))).one()
    return int(row[0]), int(row[1]), int(row[2])


def _series_where(f: Filters, metric: str) -> list[ColumnElement[bool]]:
    w: list[ColumnElement[bool]] = [_MS.c.metric_name == metric]
    if f.hardware_type:
        w.append(_MS.c.hardware_type == f.hardware_type)
    if f.node:
        w.append(_MS.c.node_id == f.node)
    return w


def _open_incidents(engine: Engine, f: Filters) -> int:
    """Incidents open at the window's end whose labels name the filtered hardware type, node and link."""
    n = 0
    for row in Incidents(engine, clock=lambda: f.end_ns).open_at(f.end_ns):
        place = place_of([row["labels"] or {}])
        if ((not f.hardware_type or f.hardware_type in place.hardware_types)
                and (not f.node or f.node in place.nodes) and (not f.link or f.link in place.links)):
            n += 1
    return n


def fleet_kpis(engine: Engine, f: Filters) -> dict[str, float | int | None]:
    """Headline numbers of the window (None where there is no data).

    ``availability``: mean of the ``qfleet_node_up`` samples; ``jobs`` and ``job_success_rate``: ``qfleet.job``
    spans (status != 2 is a success); ``entanglement_success_rate``: the same for entanglement requests;
    ``utilisation``: entanglement request time / (links × window); ``open_incidents``: incidents open at the
    window's end; ``cost_per_successful_job``: link-seconds of entanglement per successful job. A link filter
    narrows the entanglement figures only (jobs and heartbeats carry no link).
    """
    window_s = (f.end_ns - f.start_ns) / NS
    with engine.connect() as c:
        ok_jobs, jobs, _ = _counts(c, f, JOB)
        ok_req, reqs, req_ns = _counts(c, f, REQUEST)
        up = c.execute(select(func.sum(_MR.c.value_sum), func.sum(_MR.c.sample_count))
                       .select_from(_MR.join(_MS, _MS.c.id == _MR.c.series_id))
                       .where(*_series_where(f, "qfleet_node_up"), _MR.c.bucket_start_unix_nano >= _floor(f.start_ns),
                              _MR.c.bucket_start_unix_nano < f.end_ns)).one()
        if f.link:
            n_links = 1
        else:
            link_w = [_MS.c.link_id.is_not(None), _MS.c.link_id != ""]
            if f.hardware_type or f.node:
                # Links seen carrying requests for this hardware type / node.
                q = select(func.count(func.distinct(_R.c.link_id))).where(*_rollup_where(f, REQUEST), _R.c.link_id != "")
            else:
                q = select(func.count(func.distinct(_MS.c.link_id))).where(*link_w)
            n_links = int(c.execute(q).scalar_one() or 0)
    open_inc = _open_incidents(engine, f)
    link_s = req_ns / NS
    return {
        "availability": float(up[0]) / float(up[1]) if up[1] else None,
        "jobs": jobs,
        "job_success_rate": ok_jobs / jobs if jobs else None,
        "entanglement_success_rate": ok_req / reqs if reqs else None,
        "utilisation": link_s / (n_links * window_s) if reqs and n_links and window_s > 0 else None,
        "open_incidents": open_inc,
        "cost_per_successful_job": link_s / ok_jobs if ok_jobs else None,
    }


def trend(engine: Engine, f: Filters, *, span: str, step_ns: int) -> pd.DataFrame:
    """Good and total ``span`` spans per ``step_ns`` bucket and hardware type, from the rollups.

    Columns ``time`` (bucket start, ns, aligned on the window's first minute), ``hardware_type``, ``good``
    (status != 2), ``total``, ``success_rate``.
    """
    t = _bucket(_R.c.bucket_start_unix_nano, _floor(f.start_ns), step_ns).label("time")
    good = func.coalesce(func.sum(_R.c.span_count).filter(_R.c.status_code != 2), 0)
    q = (select(t, _R.c.hardware_type, good, func.sum(_R.c.span_count)).where(*_rollup_where(f, span))
         .group_by(t, _R.c.hardware_type).order_by(t, _R.c.hardware_type))
    with engine.connect() as c:
        df = _frame(c.execute(q), ["time", "hardware_type", "good", "total"])
    df = df.astype({"time": "int64", "good": "int64", "total": "int64"})
    df["success_rate"] = (df["good"] / df["total"]).astype(float)
    return df


# -- SLOs ------------------------------------------------------------------------------------------------------------


def slo_state(page: bool, ticket: bool, remaining_fraction: float | None) -> str:
    """``exhausted`` (no budget left), ``page``, ``ticket`` or ``ok``.

    >>> slo_state(False, False, -0.2), slo_state(True, True, 0.5), slo_state(False, True, 0.9), slo_state(False, False, 1)
    ('exhausted', 'page', 'ticket', 'ok')
    """
    if remaining_fraction is not None and remaining_fraction <= 0:
        return "exhausted"
    return "page" if page else "ticket" if ticket else "ok"


def slo_status(engine: Engine, at_ns: int, since_ns: int | None = None) -> pd.DataFrame:
    """The latest evaluation per (slo, segment) at or before ``at_ns`` (and at or after ``since_ns``: a run's
    start, so that another run's evaluations never show), for segments that saw events in their period.

    Columns ``slo``, ``segment``, ``objective`` (e.g. 0.999), ``sli``, ``remaining_fraction``, ``burn_1h``,
    ``burn_6h``, ``page``, ``ticket``, ``state`` (:func:`slo_state`), ``steps_triggered`` (list of budget-policy
    step names), ``at``, ``period_start``, ``period_end`` (ns).
    """
    where = [_E.c.at_unix_nano <= at_ns, *([] if since_ns is None else [_E.c.at_unix_nano >= since_ns])]
    latest = (select(_E.c.slo, _E.c.segment, func.max(_E.c.at_unix_nano).label("at"))
              .where(*where).group_by(_E.c.slo, _E.c.segment).subquery())
    q = (select(_E.c.slo, _E.c.segment, _E.c.sli, _E.c.remaining_fraction, _E.c.burn_1h, _E.c.burn_6h, _E.c.page,
                _E.c.ticket, _E.c.report, _E.c.at_unix_nano)
         .join(latest, and_(_E.c.slo == latest.c.slo, _E.c.segment == latest.c.segment,
                            _E.c.at_unix_nano == latest.c.at))
         .order_by(_E.c.slo, _E.c.segment))
    cols = ["slo", "segment", "objective", "sli", "remaining_fraction", "burn_1h", "burn_6h", "page", "ticket",
            "state", "steps_triggered", "at", "period_start", "period_end"]
    rows = []
    with engine.connect() as c:
        for r in c.execute(q):
            doc = _doc(r[8]) or {}
            budget = doc.get("budget") or {}
            if budget.get("no_data") or r[2] is None:  # no events in the period: nothing to show
                continue
            eb = doc.get("error_budget")
            rows.append((r[0], r[1], None if eb is None else 1 - float(eb), r[2], r[3], r[4], r[5], bool(r[6]),
                         bool(r[7]), slo_state(bool(r[6]), bool(r[7]), r[3]), list(doc.get("steps_triggered") or []),
                         int(r[9]), _ns_of(budget.get("period_start")), _ns_of(budget.get("period_end"))))
    return pd.DataFrame(rows, columns=cols)


def _ns_of(rfc3339: Any) -> int | None:
    try:
        return parse_rfc3339(str(rfc3339)) if rfc3339 else None
    except TimestampError:
        return None


def slo_history(engine: Engine, slo: str, segment: str, f: Filters) -> pd.DataFrame:
    """Evaluations of one SLO segment in the window: ``at``, ``sli``, ``remaining_fraction``, ``burn_1h``,
    ``burn_6h`` (``segment`` is the canonical ``key=value,...`` text, '' when unsegmented)."""
    q = (select(_E.c.at_unix_nano, _E.c.sli, _E.c.remaining_fraction, _E.c.burn_1h, _E.c.burn_6h)
         .where(_E.c.slo == slo, _E.c.segment == segment, _E.c.at_unix_nano >= f.start_ns,
                _E.c.at_unix_nano < f.end_ns).order_by(_E.c.at_unix_nano))
    with engine.connect() as c:
        return _frame(c.execute(q), ["at", "sli", "remaining_fraction", "burn_1h", "burn_6h"])


# -- incidents -------------------------------------------------------------------------------------------------------


def incidents(engine: Engine, *, state: str | None = None, limit: int = 100, run_id: str | None = None,
              include: str | None = None) -> pd.DataFrame:
    """Incidents, newest first: ``id``, ``state``, ``severity``, ``title``, ``opened``, ``acknowledged``,
    ``resolved`` (ns, <NA> when not yet), ``owner`` (who acknowledged it), ``receiver``,
    ``group_key``, ``labels`` (dict). In a store with runs, only those of the selected run (``run_id``, default
    the latest): opened from its start until the next run's; ``include`` names one incident kept whatever its run
    (a deep link's)."""
    runs = Runs(engine)
    run = runs.select(run_id)
    rng = None if run is None else runs.events_range(run)
    rows = [(r["id"], r["state"], r["severity"], r["title"], r["opened_unix_nano"], r["acknowledged_unix_nano"],
             r["resolved_unix_nano"], r["acknowledged_by"], r["receiver"], r["group_key"], r["labels"] or {})
            for r in Incidents(engine, clock=lambda: 0).list(state=state, limit=None if rng or include else limit)
            if r["id"] == include or rng is None
            or (rng[0] <= r["opened_unix_nano"] and (rng[1] is None or r["opened_unix_nano"] < rng[1]))]
    kept = rows[:limit] + [r for r in rows[limit:] if r[0] == include]
    df = pd.DataFrame(kept, columns=["id", "state", "severity", "title", "opened", "acknowledged", "resolved",
                                     "owner", "receiver", "group_key", "labels"])
    return df.astype({"opened": "Int64", "acknowledged": "Int64", "resolved": "Int64"})


def incident_timeline(engine: Engine, incident_id: str) -> pd.DataFrame:
    """The incident's events in time order: ``at``, ``kind`` (fired, notified, acknowledged, escalated,
    resolved, fault), ``detail`` (dict); empty for an unknown id."""
    try:
        events = Incidents(engine, clock=lambda: 0).timeline(incident_id)
    except IncidentError:
        events = []
    return pd.DataFrame([(int(e["at_unix_nano"]), e["kind"], e["detail"] or {}) for e in events],
                        columns=["at", "kind", "detail"])


def incident_impact(engine: Engine, incident_id: str) -> IncidentImpact | None:
    """The nodes, links, tenants and failed jobs an incident touched (:func:`qfleet.alerts.impact.incident_impact`,
    the figures its postmortem shows), or None for an unknown id."""
    try:
        return _incident_impact(engine, incident_id)
    except IncidentError:
        return None


# -- on-call and debug views ----------------------------------------------------------------------------------------


def feedforward_heatmap(engine: Engine, f: Filters, step_ns: int) -> pd.DataFrame:
    """Mean feed-forward latency per ``step_ns`` bucket and node, from the ``qfleet.feedforward`` rollups:
    ``time``, ``node``, ``mean_latency_s``, ``count``."""
    t = _bucket(_R.c.bucket_start_unix_nano, _floor(f.start_ns), step_ns).label("time")
    q = (select(t, _R.c.node_id, func.sum(_R.c.duration_sum_ns), func.sum(_R.c.span_count))
         .where(*_rollup_where(f, FEEDFORWARD)).group_by(t, _R.c.node_id).order_by(t, _R.c.node_id))
    with engine.connect() as c:
        rows = [(int(r[0]), r[1], int(r[2]) / int(r[3]) / NS, int(r[3])) for r in c.execute(q) if r[3]]
    return pd.DataFrame(rows, columns=["time", "node", "mean_latency_s", "count"])


def entanglement_failures(engine: Engine, f: Filters, limit: int = 50) -> pd.DataFrame:
    """The latest failed entanglement requests (status 2) in the window, newest first: ``time``, ``trace_id``,
    ``job_id``, ``link``, ``node``, ``attempts``, ``latency_s``, ``message``."""
    q = (select(_S.c.start_time_unix_nano, _S.c.trace_id, _S.c.job_id, _S.c.link_id, _S.c.node_id, _S.c.attributes,
                _S.c.status_message)
         .where(*_span_where(f, REQUEST), _S.c.status_code == 2)
         .order_by(_S.c.start_time_unix_nano.desc()).limit(limit))
    with engine.connect() as c:
        rows = []
        for r in c.execute(q):
            a = _doc(r[5]) or {}
            rows.append((int(r[0]), r[1], r[2], r[3], r[4], a.get("qfleet.attempts"), a.get("qfleet.latency_s"), r[6]))
    return pd.DataFrame(rows, columns=["time", "trace_id", "job_id", "link", "node", "attempts", "latency_s",
                                       "message"])


def job_trace(engine: Engine, *, trace_id: str | None = None, job_id: str | None = None) -> pd.DataFrame:
    """Every span of one job's trace (by ``trace_id``, or the trace of ``job_id``), by start time:
    ``span_id``, ``parent_span_id``, ``name``, ``start_ns``, ``end_ns``, ``duration_ms``, ``node``, ``link``,
    ``status`` (unset, ok or error), ``attributes`` (dict)."""
    if (trace_id is None) == (job_id is None):
        raise ValueError("job_trace: pass exactly one of trace_id= or job_id=")
    cols = ["span_id", "parent_span_id", "name", "start_ns", "end_ns", "duration_ms", "node", "link", "status",
            "attributes"]
    with engine.connect() as c:
        if job_id is not None:
            trace_id = c.execute(select(_S.c.trace_id).where(_S.c.job_id == job_id)
                                 .order_by(_S.c.start_time_unix_nano).limit(1)).scalar()
            if trace_id is None:
                return pd.DataFrame([], columns=cols)
        q = (select(_S.c.span_id, _S.c.parent_span_id, _S.c.name, _S.c.start_time_unix_nano, _S.c.end_time_unix_nano,
                    _S.c.duration_ns, _S.c.node_id, _S.c.link_id, _S.c.status_code, _S.c.attributes)
             .where(_S.c.trace_id == trace_id).order_by(_S.c.start_time_unix_nano, _S.c.span_id).limit(RAW_LIMIT))
        rows = [(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]) / 1e6, r[6], r[7], _STATUS.get(int(r[8]), str(r[8])),
                 _doc(r[9]) or {}) for r in c.execute(q)]
    return pd.DataFrame(rows, columns=cols)


def recent_jobs(engine: Engine, f: Filters, *, outcome: str | None = None, failed_only: bool = False,
                limit: int = 50) -> pd.DataFrame:
    """The latest jobs started in the window, newest first: ``time``, ``trace_id``, ``job_id``, ``tenant``,
    ``kind``, ``outcome``, ``fidelity``, ``nodes``. A link filter keeps jobs with an entanglement request on it;
    ``failed_only`` keeps failed jobs (status ERROR) before the limit applies."""
    where = _span_where(f, JOB)
    if outcome is not None:
        where.append(Span.attributes["qfleet.outcome"].as_string() == outcome)
    if failed_only:
        where.append(_S.c.status_code == 2)  # OTel ERROR: every outcome but success
    if f.link:
        on_link = select(_S.c.job_id).where(*_span_where(f, REQUEST))
        where.append(_S.c.job_id.in_(on_link.scalar_subquery()))
    q = (select(_S.c.start_time_unix_nano, _S.c.trace_id, _S.c.job_id, _S.c.attributes).where(*where)
         .order_by(_S.c.start_time_unix_nano.desc()).limit(limit))
    with engine.connect() as c:
        rows = []
        for t, trace, job, attrs in c.execute(q):
            a = _doc(attrs) or {}
            rows.append((int(t), trace, job, a.get("qfleet.tenant"), a.get("qfleet.job.kind"), a.get("qfleet.outcome"),
                         a.get("qfleet.fidelity"), a.get("qfleet.nodes")))
    return pd.DataFrame(rows, columns=["time", "trace_id", "job_id", "tenant", "kind", "outcome", "fidelity", "nodes"])


def _series(c: Any, metric: str, f: Filters, labels: dict[str, Any] | None) -> list[tuple[int, str | None, dict[str, Any]]]:
    """(id, node or link, labels) of the series of ``metric`` matching the filters and ``labels`` (as text)."""
    w: list[ColumnElement[bool]] = [_MS.c.metric_name == metric]
    if f.hardware_type:
        w.append(_MS.c.hardware_type == f.hardware_type)
    out = []
    for sid, node, link, lab in c.execute(select(_MS.c.id, _MS.c.node_id, _MS.c.link_id, _MS.c.labels).where(*w)):
        lab = _doc(lab) or {}
        if labels and any(str(lab.get(k)) != str(v) for k, v in labels.items()):
            continue
        if f.node and node != f.node:
            continue
        if f.link and link and link != f.link:
            continue
        out.append((int(sid), node or link, lab))
    return out


def node_series(engine: Engine, metric: str, nodes: list[str] | None, f: Filters, *,
                labels: dict[str, Any] | None = None) -> pd.DataFrame:
    """One metric per node (or link, for link metrics) over the window: ``time``, ``node``, ``value``.

    ``nodes`` empty or None means all; ``labels`` keeps series whose labels equal these (compared as text,
    e.g. ``{"qfleet.qubits": 2}``). Windows longer than :data:`LONG_WINDOW_NS` read the per-minute rollups
    (``time`` = minute start, ``value`` = the minute's mean); shorter ones the samples.
    """
    cols = ["time", "node", "value"]
    with engine.connect() as c:
        series = [s for s in _series(c, metric, f, labels) if not nodes or s[1] in nodes]
        if not series:
            return pd.DataFrame([], columns=cols)
        name = {sid: node for sid, node, _ in series}
        ids = sorted(name)
        if f.end_ns - f.start_ns > LONG_WINDOW_NS:
            q = (select(_MR.c.bucket_start_unix_nano, _MR.c.series_id, _MR.c.value_sum / _MR.c.sample_count)
                 .where(_MR.c.series_id.in_(ids), _MR.c.bucket_start_unix_nano >= _floor(f.start_ns),
                        _MR.c.bucket_start_unix_nano < f.end_ns, _MR.c.sample_count > 0))
        else:
            q = (select(_MX.c.time_unix_nano, _MX.c.series_id, _MX.c.value)
                 .where(_MX.c.series_id.in_(ids), _MX.c.time_unix_nano >= f.start_ns, _MX.c.time_unix_nano < f.end_ns))
        rows = [(int(t), name[int(sid)], float(v)) for t, sid, v in c.execute(q)]
    df = pd.DataFrame(rows, columns=cols)
    # Several series of one node (e.g. without a label filter) are averaged per instant.
    means = df.groupby(["time", "node"], as_index=False).agg(value=("value", "mean"))
    return means.sort_values(["time", "node"], ignore_index=True)


def error_distributions(engine: Engine, f: Filters) -> pd.DataFrame:
    """Latest (in the window) gate and readout errors per node, from the rollups' last values: ``node``,
    ``hardware_type``, ``gate_error_1q``, ``gate_error_2q``, ``readout_error_0``, ``readout_error_1``."""
    wanted = {("qfleet_node_gate_error_ratio", "qfleet.qubits", "1"): "gate_error_1q",
              ("qfleet_node_gate_error_ratio", "qfleet.qubits", "2"): "gate_error_2q",
              ("qfleet_node_readout_error_ratio", "qfleet.state", "0"): "readout_error_0",
              ("qfleet_node_readout_error_ratio", "qfleet.state", "1"): "readout_error_1"}
    cols = ["node", "hardware_type", *wanted.values()]
    table: dict[str, dict[str, Any]] = defaultdict(dict)
    with engine.connect() as c:
        target: dict[int, tuple[str, str]] = {}
        hw: dict[str, str | None] = {}
        for metric in ("qfleet_node_gate_error_ratio", "qfleet_node_readout_error_ratio"):
            for sid, node, lab in _series(c, metric, f, None):
                for (m, key, val), col in wanted.items():
                    if m == metric and str(lab.get(key)) == val and node:
                        target[sid] = (node, col)
                        hw[node] = lab.get("qfleet.hardware.type")
        if not target:
            return pd.DataFrame([], columns=cols)
        inner = _MR.alias("inner")
        last = (select(func.max(inner.c.bucket_start_unix_nano)).where(
            inner.c.series_id == _MR.c.series_id, inner.c.bucket_start_unix_nano >= _floor(f.start_ns),
            inner.c.bucket_start_unix_nano < f.end_ns).scalar_subquery())
        q = select(_MR.c.series_id, _MR.c.last_value).where(_MR.c.series_id.in_(sorted(target)),
                                                            _MR.c.bucket_start_unix_nano == last)
        for sid, v in c.execute(q):
            node, col = target[int(sid)]
            table[node][col] = float(v)
    rows = [(node, hw.get(node), *(table[node].get(col) for col in wanted.values())) for node in sorted(table)]
    return pd.DataFrame(rows, columns=cols)


def link_fidelity(engine: Engine, f: Filters) -> pd.DataFrame:
    """Measured job fidelities (one row per measured job; the latest :data:`RAW_LIMIT` in the window) by the job's
    first link (its earliest entanglement request): ``link``, ``fidelity``. Jobs without a link are left out."""
    cols = ["link", "fidelity"]
    q = (select(_S.c.job_id, _S.c.attributes).where(*_span_where(f, MEASUREMENT), _S.c.job_id.is_not(None))
         .order_by(_S.c.start_time_unix_nano.desc()).limit(RAW_LIMIT))
    with engine.connect() as c:
        measured = [(job, (_doc(a) or {}).get("qfleet.fidelity")) for job, a in c.execute(q)]
        jobs = sorted({j for j, fid in measured if fid is not None})
        first: dict[str, tuple[int, str]] = {}
        for i in range(0, len(jobs), 500):
            chunk = jobs[i:i + 500]
            for job, t, link in c.execute(select(_S.c.job_id, _S.c.start_time_unix_nano, _S.c.link_id).where(
                    _S.c.job_id.in_(chunk), _S.c.name == REQUEST, _S.c.link_id.is_not(None))):
                if job not in first or t < first[job][0]:
                    first[job] = (int(t), link)
    rows = [(first[j][1], float(fid)) for j, fid in measured if fid is not None and j in first]
    if f.link:
        rows = [r for r in rows if r[0] == f.link]
    return pd.DataFrame(rows, columns=cols)


def runbook(url: str | None) -> str | None:
    """Markdown of the runbook ``url`` names (``runbooks/F1-entanglement-loss.md`` or any URL ending in that
    file name), read from the ``runbooks`` package; None when missing."""
    if not url:
        return None
    name = PurePosixPath(url.split("#", 1)[0].split("?", 1)[0]).name
    if not name.endswith(".md") or name in ("", ".", ".."):
        return None
    res = files("qfleet.runbooks") / name
    try:
        return res.read_text(encoding="utf-8") if res.is_file() else None
    except OSError:
        return None


# -- actions: through the alerts package, the only writer of its tables --------------------------------------------


def acknowledge(engine: Engine, incident_id: str, by: str, at_ns: int) -> None:
    """Acknowledge an incident (:meth:`qfleet.alerts.incidents.Incidents.acknowledge`; raises IncidentError)."""
    Incidents(engine, clock=lambda: at_ns).acknowledge(incident_id, by, at_ns)


def resolve(engine: Engine, incident_id: str, by: str, at_ns: int) -> None:
    """Resolve an incident by hand (:meth:`qfleet.alerts.incidents.Incidents.resolve`; raises IncidentError)."""
    Incidents(engine, clock=lambda: at_ns).resolve(incident_id, by, at_ns)


def silence(engine: Engine, matchers: list[str], duration_s: float, author: str, comment: str, at_ns: int) -> str:
    """Store an Alertmanager-style silence from ``at_ns`` for ``duration_s``; returns its id.

    Raises:
        qfleet.alerts.silences.SilenceError: every problem (:meth:`qfleet.alerts.silence_store.SilenceStore.add`).
    """
    return SilenceStore(engine).add(matchers, starts_at=at_ns, ends_at=at_ns + round(duration_s * NS),
                                    created_by=author, comment=comment).id
