"""The SQL edge of the SLO engine: per-minute good/total counts of every SLO segment, from the store.

Counts come from the collector's per-minute rollups wherever they can answer (span ratios from ``span_rollups``,
counters and histogram buckets from ``metric_rollups`` increases, gauges from their per-minute min/max/last), and
from the raw spans only for per-event span thresholds, which no rollup keeps. They are materialised into
``slo_counts`` (one row per SLO, segment and minute), so that a 30-day budget reads one row per minute; an
evaluation then asks for its windows' sums in one aggregate query (:meth:`SliSource.interval_counts`).

A minute bucket starting at B holds the events of the step that ends at ``B + 1 min``: a window ``(now - W, now]``
takes the buckets with ``now - W < B + 1 min <= now``.

Late data are recounted, never dropped: the collector numbers every change to a minute (a write, a rollup pass) in
its write sequence (``Store.touched_since``), and ``slo_count_marks`` keeps, per SLO, the span of minutes counted
and the sequence marker they are exact to; each refresh recounts the counted minutes changed since, in the same
transaction that moves the marker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, TextClause, bindparam, func, select, text

from qfleet.collector.schema import (
    ROLLUP_STEP_NS,
    MetricRollup,
    MetricSample,
    MetricSeries,
    Signal,
    Span,
    SpanRollup,
)
from qfleet.collector.store import Store, Touched
from qfleet.slo.model import (
    SLO,
    Counts,
    GaugeThresholdIndicator,
    HistogramIndicator,
    MetricRatioIndicator,
    SpanRatioIndicator,
    SpanThresholdIndicator,
)

__all__ = ["SliSource", "counts_key", "segment_key", "segment_labels"]

STEP = ROLLUP_STEP_NS
_PROMOTED = ("hardware_type", "node_id", "link_id")
_OPS: dict[str, Callable[[Fraction, Fraction], bool]] = {
    "lte": operator.le, "lt": operator.lt, "gte": operator.ge, "gt": operator.gt}
# Indicators counted from metric series (the rest from spans): which of the store's changes concern them.
_METRIC_KINDS = (MetricRatioIndicator, HistogramIndicator, GaugeThresholdIndicator)


class _Rollup(NamedTuple):
    """One row of ``metric_rollups``, as the SLIs read it."""

    series_id: int
    bucket_start: int
    increase: float | None
    last_value: float
    value_min: float
    value_max: float
    sample_count: int


def segment_key(values: Iterable[tuple[str, str | None]]) -> str:
    """The canonical text of a segment: ``hardware_type=nv-centre,node_id=qpu-a`` ('' when unsegmented)."""
    return ",".join(f"{k}={v or ''}" for k, v in values)


def segment_labels(key: str) -> tuple[tuple[str, str], ...]:
    """The inverse of :func:`segment_key`.

    >>> segment_labels(segment_key([("hardware_type", "nv-centre")]))
    (('hardware_type', 'nv-centre'),)
    """
    return tuple((k, v) for k, _, v in (p.partition("=") for p in key.split(","))) if key else ()


def counts_key(slo: SLO) -> str:
    """The ``slo_counts`` key of an SLO: its name plus a fingerprint of what decides its counts.

    Changing the indicator or the segmentation (a threshold, a matcher) gives a new key, so counts materialised
    under the old definition are never reused.

    >>> import dataclasses
    >>> from fractions import Fraction
    >>> from qfleet.slo.model import AlertPolicy, Period, SpanRatioIndicator
    >>> a = SLO(name="jobs", service="s", target=Fraction(9, 10), period=Period(rolling_ns=1), budgeting="Occurrences",
    ...         indicator=SpanRatioIndicator(span="qfleet.job"), policy=AlertPolicy(name="p", pairs=()))
    >>> counts_key(a) == counts_key(dataclasses.replace(a, target=Fraction(99, 100)))
    True
    >>> counts_key(a) == counts_key(dataclasses.replace(a, group_by=("node_id",)))
    False
    """
    digest = hashlib.sha256(repr((slo.indicator, slo.group_by)).encode()).hexdigest()[:12]
    return f"{slo.name}@{digest}"


def _partial(segment: str) -> bool:
    """Whether a segment key lacks a value for one of its labels.

    >>> _partial("hardware_type="), _partial("hardware_type=nv-centre,node_id=")
    (True, True)
    >>> _partial("hardware_type=nv-centre")
    False
    """
    return any(not v for _k, v in segment_labels(segment))


def _matches(labels: dict[str, Any], want: Sequence[tuple[str, Any]]) -> bool:
    return all(str(labels.get(k)) == str(v) for k, v in want)


def _runs(buckets: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending minute starts as contiguous half-open ``[lo, hi)`` ranges.

    >>> _runs([0, STEP, 3 * STEP]) == [(0, 2 * STEP), (3 * STEP, 4 * STEP)]
    True
    """
    out: list[tuple[int, int]] = []
    for b in buckets:
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + STEP)
        else:
            out.append((b, b + STEP))
    return out


def _le(bound: Fraction) -> str:
    # The collector writes bucket bounds as repr(float) (collector.convert._le): match that text exactly.
    return repr(float(bound))


# -- prebuilt statements --------------------------------------------------------------------------------------------
# Built once: an evaluation runs them for every SLO every minute, and building and compiling Core expressions per
# call cost more than SQLite itself. They write only this package's tables (qfleet.slo.schema).

_MARKS = text("SELECT slo, lo_unix_nano, hi_unix_nano, marker FROM slo_count_marks WHERE slo IN :keys").bindparams(
    bindparam("keys", expanding=True))
# The same upsert on SQLite and PostgreSQL.
_SET_MARK = text("INSERT INTO slo_count_marks (slo, lo_unix_nano, hi_unix_nano, marker) VALUES (:slo, :lo, :hi, :marker) "
                 "ON CONFLICT (slo) DO UPDATE SET lo_unix_nano = excluded.lo_unix_nano, "
                 "hi_unix_nano = excluded.hi_unix_nano, marker = excluded.marker")
_DELETE_COUNTS = text("DELETE FROM slo_counts WHERE slo = :slo AND bucket_start_unix_nano >= :lo "
                      "AND bucket_start_unix_nano < :hi")
_INSERT_COUNTS = text("INSERT INTO slo_counts (slo, segment, bucket_start_unix_nano, good, total) "
                      "VALUES (:slo, :segment, :bucket, :good, :total)")
# Reads of the collector's tables go through its schema (Core, built once): only SQL on this package's own
# tables is written out as text.
_SER, _ROL, _SMP = MetricSeries.__table__, MetricRollup.__table__, MetricSample.__table__
_SERIES_VERSION = select(func.count(), func.max(_SER.c.id)).select_from(_SER)
_SERIES = select(_SER.c.id, _SER.c.labels, _SER.c.node_id, _SER.c.link_id, _SER.c.hardware_type).where(
    _SER.c.metric_name == bindparam("metric"))
_ROLLUPS = select(_ROL.c.series_id, _ROL.c.bucket_start_unix_nano, _ROL.c.increase, _ROL.c.last_value,
                  _ROL.c.value_min, _ROL.c.value_max, _ROL.c.sample_count).where(
    _ROL.c.series_id.in_(bindparam("ids", expanding=True)), _ROL.c.bucket_start_unix_nano >= bindparam("lo"),
    _ROL.c.bucket_start_unix_nano < bindparam("hi"))
_SAMPLES = select(_SMP.c.value).where(_SMP.c.series_id == bindparam("sid"), _SMP.c.time_unix_nano >= bindparam("lo"),
                                      _SMP.c.time_unix_nano < bindparam("hi"))
_MINUTES = ("SELECT segment, bucket_start_unix_nano, good, total FROM slo_counts WHERE slo = :slo "
            "AND bucket_start_unix_nano > :lo AND bucket_start_unix_nano <= :hi")
_MINUTES_ALL = text(f"{_MINUTES} ORDER BY segment, bucket_start_unix_nano")
_MINUTES_SINCE = text(f"{_MINUTES} AND bucket_start_unix_nano >= :first ORDER BY segment, bucket_start_unix_nano")


@functools.cache
def _intervals_sql(cuts: int, clipped: bool) -> TextClause:
    """Per SLO key, segment and interval, the sums of the keys' minutes, for ``cuts`` window starts.

    Each minute goes to the first (latest) cut it lies after: the interval it belongs to. A minute ``b`` lies
    after cut ``c`` iff its step end ``b + STEP > c``, i.e. ``b > :c{k}`` with the parameter ``c - STEP``.
    """
    whens = " ".join(f"WHEN bucket_start_unix_nano > :c{k} THEN {k}" for k in range(cuts))
    clip = " AND bucket_start_unix_nano >= :first" if clipped else ""
    return text(f"SELECT slo, segment, k, sum(good), sum(total) FROM (SELECT slo, segment, CASE {whens} END AS k, "
                f"good, total FROM slo_counts WHERE slo IN :keys AND bucket_start_unix_nano > :c{cuts - 1} "
                f"AND bucket_start_unix_nano <= :hi{clip}) AS minutes GROUP BY slo, segment, k").bindparams(
        bindparam("keys", expanding=True))


# -- series metadata ------------------------------------------------------------------------------------------------

# A series as the SLIs read it: id, labels, promoted labels.
_SeriesRow = tuple[int, dict[str, Any], dict[str, Any]]
# The series an SLO counts, in ``metric_series`` order: id -> (segment, flag). The flag marks a ratio's good series,
# a histogram's ``_count`` series (its ``le`` bucket otherwise); gauges do not use it.
_Selection = dict[int, tuple[str, bool]]


class _Series:
    """The decoded ``metric_series`` rows of one database, per metric, and the series each SLO selects.

    The store only ever adds series, so the row count and largest id (``version``) change whenever the table
    does (the count also catches a lower id that commits after a higher one).
    """

    def __init__(self, version: tuple[int, int | None]) -> None:
        self.version = version
        self._rows: dict[str, list[_SeriesRow]] = {}
        self._selections: dict[str, _Selection] = {}

    def rows(self, conn: Connection, metric: str) -> list[_SeriesRow]:
        if (out := self._rows.get(metric)) is None:
            out = self._rows[metric] = [
                (sid, json.loads(labels) if isinstance(labels, str) else (labels or {}),
                 {"node_id": node, "link_id": link, "hardware_type": hw})
                for sid, labels, node, link, hw in conn.execute(_SERIES, {"metric": metric})]
        return out

    def selection(self, conn: Connection, key: str, slo: SLO) -> _Selection:
        """The series ``slo`` counts (``key`` is its :func:`counts_key`: what decides the selection)."""
        if (sel := self._selections.get(key)) is not None:
            return sel
        ind, sel = slo.indicator, {}
        if isinstance(ind, MetricRatioIndicator):
            for sid, lab, prom in self.rows(conn, ind.metric):
                if _matches(lab, ind.total_match):
                    sel[sid] = (_segment(slo, prom), _matches(lab, ind.good_match))
        elif isinstance(ind, HistogramIndicator):
            le = _le(ind.threshold)
            for sid, lab, prom in self.rows(conn, ind.metric + "_bucket"):
                if lab.get("le") == le and _matches(lab, ind.match):
                    sel[sid] = (_segment(slo, prom), False)
            for sid, lab, prom in self.rows(conn, ind.metric + "_count"):
                if _matches(lab, ind.match):
                    sel[sid] = (_segment(slo, prom), True)
        elif isinstance(ind, GaugeThresholdIndicator):
            sel = {sid: (_segment(slo, prom), False) for sid, lab, prom in self.rows(conn, ind.metric)
                   if _matches(lab, ind.match)}
        self._selections[key] = sel
        return sel


_series_cache: weakref.WeakKeyDictionary[Engine, _Series] = weakref.WeakKeyDictionary()


def _series(engine: Engine, conn: Connection) -> _Series:
    """The series metadata of ``engine``'s database, re-read only when the table changed."""
    count, top = conn.execute(_SERIES_VERSION).one()
    version = (int(count), top)
    cached = _series_cache.get(engine)
    if cached is None or cached.version != version:
        cached = _series_cache[engine] = _Series(version)
    return cached


def _segment(slo: SLO, row: dict[str, Any]) -> str:
    return segment_key((dim, row.get(dim)) for dim in slo.group_by)


class _Job(NamedTuple):
    """One SLO to count over some minute ranges (disjoint, aligned) and, after a refresh, its new mark."""

    key: str
    slo: SLO
    ranges: list[tuple[int, int]]
    mark: tuple[int, int, int] = (0, 0, 0)


class SliSource:
    """Per-minute SLO counts over one store.

    Segments are made only of events that carry every ``group_by`` label: a job never placed on hardware has no
    hardware type and belongs to no ``hardware_type`` segment (it still counts in an SLO without ``group_by``).

    Args:
        engine: a migrated database (the collector's schema at head).
        since_ns: when set, every read (:meth:`interval_counts`, :meth:`minute_counts`) sees only the minutes at
            or after it (the minute containing ``since_ns`` included): one run of a store shared by runs.
    """

    def __init__(self, engine: Engine, *, since_ns: int | None = None) -> None:
        self.engine = engine
        self.since_ns = since_ns

    def _first_bucket(self) -> int | None:
        return None if self.since_ns is None else self.since_ns // STEP * STEP

    # -- materialisation ------------------------------------------------------------------------------------------

    def materialize(self, slo: SLO, lo_ns: int, hi_ns: int) -> int:
        """Recompute the minute buckets ``[lo_ns, hi_ns)`` (aligned down and up to minutes) of ``slo``.

        Idempotent: the range is replaced in one transaction. Returns the number of rows written.
        """
        lo, hi = lo_ns // STEP * STEP, -(-hi_ns // STEP) * STEP
        job = _Job(counts_key(slo), slo, [(lo, hi)])
        with self.engine.connect() as conn:
            [rows] = self._count(conn, [job])
        with self.engine.begin() as conn:
            self._replace(conn, [job], [rows])
        return len(rows)

    def refresh(self, slos: Sequence[SLO], until_ns: int, *, since_ns: int) -> int:
        """Make ``slo_counts`` exact over the minutes of ``[since_ns, until_ns)`` for every SLO.

        Per SLO, recounts the minutes it counted before that the store changed since (late spans, a second run
        into the same store, a replica catching up, a rollup pass), counts the minutes of the range not counted
        yet, and moves its mark, in one transaction for all the SLOs. Idempotent; concurrent refreshes of one SLO
        take turns on its mark row. Returns rows written.
        """
        lo, hi = since_ns // STEP * STEP, -(-until_ns // STEP) * STEP
        todo = {counts_key(slo): slo for slo in slos}  # SLOs with one key share their counts: count them once
        if lo >= hi or not todo:
            return 0
        with self.engine.connect() as conn:
            marks = {k: (a, b, m) for k, a, b, m in conn.execute(_MARKS, {"keys": list(todo)})}
        store = Store(self.engine)
        jobs: list[_Job] = []
        touched: dict[tuple[int, Signal, int, int], Touched] = {}
        for key, slo in todo.items():
            mark = marks.get(key)
            if mark is None or hi < mark[0] or lo > mark[1]:
                # Nothing counted within reach: count the range afresh (an older span's rows are left, unmarked,
                # and counted again if a window reaches them); the marker is only read.
                c_lo, c_hi, marker = lo, lo, 0
            else:
                c_lo, c_hi, marker = mark
            # Read the changes before counting: whatever changes later gets a number at or above the new marker.
            # SLOs at the same mark share one read (in a steady state, all of them).
            signal = Signal.METRICS if isinstance(slo.indicator, _METRIC_KINDS) else Signal.SPANS
            if (seen := touched.get((marker, signal, c_lo, c_hi))) is None:
                seen = touched[marker, signal, c_lo, c_hi] = store.touched_since(
                    marker, signal=signal, lo_ns=c_lo, hi_ns=c_hi)
            ranges = _runs(seen.buckets) + [r for r in ((lo, c_lo), (c_hi, hi)) if r[0] < r[1]]
            jobs.append(_Job(key, slo, ranges, (min(lo, c_lo), max(hi, c_hi), seen.marker)))
        # A connection opened after the reads above: even under snapshot isolation it sees what they reported.
        with self.engine.connect() as conn:
            rows = self._count(conn, jobs)
        with self.engine.begin() as conn:
            # The marks first, in key order: their row locks make a concurrent refresh of these SLOs wait for our
            # commit (and two refreshes never wait for each other's marks crosswise).
            conn.execute(_SET_MARK, [{"slo": j.key, "lo": j.mark[0], "hi": j.mark[1], "marker": j.mark[2]}
                                     for j in sorted(jobs, key=lambda j: j.key)])
            self._replace(conn, jobs, rows)
        return sum(map(len, rows))

    @staticmethod
    def _replace(conn: Connection, jobs: Sequence[_Job],
                 rows: Sequence[dict[tuple[str, int], tuple[int, int]]]) -> None:
        """Replace the ``slo_counts`` rows of every job's ranges by its counted ``rows``."""
        gone = [{"slo": j.key, "lo": a, "hi": b} for j in jobs for a, b in j.ranges]
        new = [{"slo": j.key, "segment": seg, "bucket": b, "good": g, "total": n}
               for j, counted in zip(jobs, rows, strict=True) for (seg, b), (g, n) in sorted(counted.items())]
        if gone:
            conn.execute(_DELETE_COUNTS, gone)
        if new:
            conn.execute(_INSERT_COUNTS, new)

    def _count(self, conn: Connection, jobs: Sequence[_Job]) -> list[dict[tuple[str, int], tuple[int, int]]]:
        """Per job, ``(segment, minute) -> (good, total)`` over its ranges.

        The metric SLOs read their rollups together: one query per distinct range, for the union of their series.
        """
        metric = [j for j in jobs if isinstance(j.slo.indicator, _METRIC_KINDS)]
        selections: dict[str, _Selection] = {}
        if metric:
            series = _series(self.engine, conn)
            selections = {j.key: series.selection(conn, j.key, j.slo) for j in metric}
        ids = sorted(set().union(*selections.values()))
        rollups: dict[tuple[int, int], list[_Rollup]] = {}
        out = []
        for job in jobs:
            acc: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
            for lo, hi in job.ranges:
                if (sel := selections.get(job.key)) is None:
                    self._spans(conn, job.slo, lo, hi, acc)
                    continue
                if (lo, hi) not in rollups:
                    rollups[lo, hi] = self._increases(conn, ids, lo, hi)
                self._metrics(conn, job.slo, sel, rollups[lo, hi], acc)
            # Counter increases are floats in the rollups; events are whole numbers. A segment with an empty label
            # (e.g. never-placed jobs without a hardware type) is no segment: drop it.
            out.append({k: (round(g), round(n)) for k, (g, n) in acc.items()
                        if round(n) > 0 and not (job.slo.group_by and _partial(k[0]))})
        return out

    def _spans(self, conn: Connection, slo: SLO, lo: int, hi: int, acc: dict[tuple[str, int], list[float]]) -> None:
        ind = slo.indicator
        if isinstance(ind, SpanRatioIndicator) and all(k in _PROMOTED for k, _ in ind.where):
            self._span_ratio(conn, slo, ind, lo, hi, acc)
        elif isinstance(ind, SpanRatioIndicator | SpanThresholdIndicator):
            # Attribute filters and per-event thresholds are not in the rollups: count the raw spans.
            self._span_threshold(conn, slo, ind, lo, hi, acc)
        else:  # pragma: no cover - the model admits no other kind
            raise TypeError(f"unknown indicator {ind!r}")

    def _span_ratio(self, conn: Connection, slo: SLO, ind: SpanRatioIndicator, lo: int, hi: int,
                    acc: dict[tuple[str, int], list[float]]) -> None:
        r = SpanRollup.__table__
        q = select(r.c.bucket_start_unix_nano, r.c.status_code, r.c.node_id, r.c.link_id, r.c.hardware_type,
                   func.sum(r.c.span_count)).where(
            r.c.name == ind.span, r.c.bucket_start_unix_nano >= lo, r.c.bucket_start_unix_nano < hi)
        for k, v in ind.where:
            q = q.where(r.c[k] == str(v))
        q = q.group_by(r.c.bucket_start_unix_nano, r.c.status_code, r.c.node_id, r.c.link_id, r.c.hardware_type)
        for b, status, node, link, hw, total in conn.execute(q):
            seg = _segment(slo, {"node_id": node or None, "link_id": link or None, "hardware_type": hw or None})
            n = int(total)  # PostgreSQL sums BIGINT as NUMERIC (a Decimal, which float += refuses)
            a = acc[(seg, b)]
            a[1] += n
            if status != 2:
                a[0] += n

    def _span_threshold(self, conn: Connection, slo: SLO, ind: SpanRatioIndicator | SpanThresholdIndicator,
                        lo: int, hi: int, acc: dict[tuple[str, int], list[float]]) -> None:
        s = Span.__table__
        q = select(s.c.start_time_unix_nano, s.c.status_code, s.c.attributes, s.c.node_id, s.c.link_id,
                   s.c.hardware_type).where(s.c.name == ind.span, s.c.start_time_unix_nano >= lo,
                                            s.c.start_time_unix_nano < hi)
        for start, status, attrs, node, link, hw in conn.execute(q):
            a = json.loads(attrs) if isinstance(attrs, str) else (attrs or {})
            row = {"node_id": node, "link_id": link, "hardware_type": hw}
            if not all(str(row.get(k, a.get(k))) == str(v) for k, v in ind.where):
                continue
            if isinstance(ind, SpanRatioIndicator):
                good = status != 2
            else:
                value = a.get(ind.attribute)
                if isinstance(ind.threshold_attribute, str):
                    limit = a.get(ind.threshold_attribute)
                    thr = None if limit is None else Fraction(limit) * ind.margin
                else:
                    thr = ind.threshold
                if value is None or thr is None or (isinstance(value, float) and not math.isfinite(value)):
                    continue  # not an event of this SLI (no value to judge)
                good = _OPS[ind.op](Fraction(value), thr)
            cell = acc[(_segment(slo, row), start // STEP * STEP)]
            cell[1] += 1
            cell[0] += good

    @staticmethod
    def _increases(conn: Connection, ids: Sequence[int], lo: int, hi: int) -> list[_Rollup]:
        # In chunks: a statement takes at most 32766 parameters on SQLite, 65535 on PostgreSQL.
        return [_Rollup(*row) for i in range(0, len(ids), 10_000)
                for row in conn.execute(_ROLLUPS, {"ids": list(ids[i:i + 10_000]), "lo": lo, "hi": hi})]

    @staticmethod
    def _metrics(conn: Connection, slo: SLO, sel: _Selection, rollups: Sequence[_Rollup],
                 acc: dict[tuple[str, int], list[float]]) -> None:
        """Add the rollups of the series ``slo`` selects (``rollups`` may hold others: skipped)."""
        ind = slo.indicator
        if isinstance(ind, GaugeThresholdIndicator):
            SliSource._gauge(conn, ind, sel, rollups, acc)
            return
        ratio = isinstance(ind, MetricRatioIndicator)
        # A histogram's good events: its le bucket under `lte`; its _count less that bucket under `gt`.
        gt = isinstance(ind, HistogramIndicator) and ind.op == "gt"
        for r in rollups:
            if (s := sel.get(r.series_id)) is None:
                continue
            seg, flag = s
            inc = r.increase or 0.0
            a = acc[(seg, r.bucket_start)]
            if ratio:
                a[1] += inc
                if flag:  # a good series
                    a[0] += inc
            elif flag:  # the histogram's _count
                a[1] += inc
                if gt:
                    a[0] += inc
            else:  # its le bucket
                a[0] += -inc if gt else inc

    @staticmethod
    def _gauge(conn: Connection, ind: GaugeThresholdIndicator, sel: _Selection, rollups: Sequence[_Rollup],
               acc: dict[tuple[str, int], list[float]]) -> None:
        op, thr = _OPS[ind.op], ind.threshold
        mixed: list[tuple[int, int]] = []
        for r in rollups:
            if (s := sel.get(r.series_id)) is None:
                continue
            ok_min, ok_max = op(Fraction(r.value_min), thr), op(Fraction(r.value_max), thr)
            a = acc[(s[0], r.bucket_start)]
            if ok_min == ok_max:
                a[1] += r.sample_count
                a[0] += r.sample_count if ok_min else 0
            else:
                mixed.append((r.series_id, r.bucket_start))  # some samples in, some out: count them one by one
        for sid, b in mixed:
            vals = conn.execute(_SAMPLES, {"sid": sid, "lo": b, "hi": b + STEP}).scalars().all()
            a = acc[(sel[sid][0], b)]
            a[1] += len(vals)
            a[0] += sum(1 for v in vals if op(Fraction(v), thr))

    # -- reads ----------------------------------------------------------------------------------------------------

    def interval_counts(self, slo: SLO, at_ns: int, starts: Sequence[int]) -> dict[str, list[tuple[int, Counts]]]:
        """Per segment, the counts of the disjoint intervals that the window starts cut ``(min(starts), at]`` into.

        Returned as ``(interval_end_ns, Counts)`` pairs: used as samples, any window ``(s, at]`` with ``s`` in
        ``starts`` sums exactly the intervals inside it. One aggregate query, however long the period.
        """
        return self.interval_counts_many([(slo, starts)], at_ns)[0]

    def interval_counts_many(self, wanted: Sequence[tuple[SLO, Sequence[int]]],
                             at_ns: int) -> list[dict[str, list[tuple[int, Counts]]]]:
        """:meth:`interval_counts` of each ``(slo, starts)``: one query per distinct set of window starts."""
        # Descending window starts -> the positions in `wanted` of the SLOs (by key) that cut there.
        groups: dict[tuple[int, ...], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, (slo, starts) in enumerate(wanted):
            if cuts := tuple(sorted({s for s in starts if s < at_ns}, reverse=True)):
                groups[cuts][counts_key(slo)].append(i)
        first = self._first_bucket()
        if not groups:
            return [{} for _ in wanted]
        out: list[dict[str, list[tuple[int, Counts]]]] = [defaultdict(list) for _ in wanted]
        with self.engine.connect() as conn:
            for cuts, where in groups.items():
                ends = [at_ns, *cuts]  # interval k is (cuts[k], ends[k]]
                # A minute b is in (c, at] iff its step end b + STEP is: b > c - STEP and b <= at - STEP.
                binds: dict[str, Any] = {f"c{k}": c - STEP for k, c in enumerate(cuts)}
                binds.update(keys=list(where), hi=at_ns - STEP)
                if first is not None:
                    binds["first"] = first
                for key, seg, k, g, n in conn.execute(_intervals_sql(len(cuts), first is not None), binds):
                    for i in where[key]:
                        out[i][seg].append((ends[int(k)], Counts(int(g), int(n))))
        return [dict(o) for o in out]

    def minute_counts(self, slo: SLO, lo_exclusive_ns: int, at_ns: int) -> dict[str, list[tuple[int, Counts]]]:
        """Per segment, every materialised minute in ``(lo, at]`` as ``(step_end_ns, Counts)`` (for timeslices)."""
        first = self._first_bucket()
        params = {"slo": counts_key(slo), "lo": lo_exclusive_ns - STEP, "hi": at_ns - STEP}
        if first is not None:
            params["first"] = first
        out: dict[str, list[tuple[int, Counts]]] = defaultdict(list)
        with self.engine.connect() as conn:
            for seg, b, g, n in conn.execute(_MINUTES_ALL if first is None else _MINUTES_SINCE, params):
                out[seg].append((b + STEP, Counts(int(g), int(n))))
        return dict(out)
