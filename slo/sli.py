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

import hashlib
import json
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, case, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from qfleet.collector.schema import (
    ROLLUP_STEP_NS,
    MetricRollup,
    MetricSample,
    MetricSeries,
    Signal,
    Span,
    SpanRollup,
)
from qfleet.collector.store import Store
from qfleet.slo.model import (
    SLO,
    Counts,
    GaugeThresholdIndicator,
    HistogramIndicator,
    MetricRatioIndicator,
    SpanRatioIndicator,
    SpanThresholdIndicator,
)
from qfleet.slo.schema import SloCount, SloCountMark

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
        rows = self._compute(slo, lo, hi)
        key = counts_key(slo)
        with self.engine.begin() as conn:
            conn.execute(delete(SloCount).where(SloCount.slo == key, SloCount.bucket_start_unix_nano >= lo,
                                                SloCount.bucket_start_unix_nano < hi))
            if rows:
                conn.execute(insert(SloCount), [{"slo": key, "segment": seg, "bucket_start_unix_nano": b,
                                                 "good": g, "total": n} for (seg, b), (g, n) in sorted(rows.items())])
        return len(rows)

    def refresh(self, slos: Sequence[SLO], until_ns: int, *, since_ns: int) -> int:
        """Make ``slo_counts`` exact over the minutes of ``[since_ns, until_ns)`` for every SLO.

        Per SLO, recounts the minutes it counted before that the store changed since (late spans, a second run
        into the same store, a replica catching up, a rollup pass), counts the minutes of the range not counted
        yet, and moves its mark, in one transaction. Idempotent; concurrent refreshes of one SLO take turns on
        its mark row. Returns rows written.
        """
        store = Store(self.engine)
        return sum(self._refresh_one(store, slo, since_ns, until_ns) for slo in slos)

    def _refresh_one(self, store: Store, slo: SLO, since_ns: int, until_ns: int) -> int:
        key = counts_key(slo)
        lo, hi = since_ns // STEP * STEP, -(-until_ns // STEP) * STEP
        if lo >= hi:
            return 0
        m = SloCountMark
        with self.engine.connect() as conn:
            mark = conn.execute(select(m.lo_unix_nano, m.hi_unix_nano, m.marker).where(m.slo == key)).first()
        if mark is None or hi < mark.lo_unix_nano or lo > mark.hi_unix_nano:
            # Nothing counted within reach: count the range afresh (an older span's rows are left, unmarked,
            # and counted again if a window reaches them); the marker is only read.
            c_lo, c_hi, marker = lo, lo, 0
        else:
            c_lo, c_hi, marker = mark.lo_unix_nano, mark.hi_unix_nano, mark.marker
        # Read the changes before counting: whatever changes later gets a number at or above the new marker.
        signal = Signal.METRICS if isinstance(slo.indicator, _METRIC_KINDS) else Signal.SPANS
        touched = store.touched_since(marker, signal=signal, lo_ns=c_lo, hi_ns=c_hi)
        ranges = _runs(touched.buckets)
        ranges += [r for r in ((lo, c_lo), (c_hi, hi)) if r[0] < r[1]]
        rows: dict[tuple[str, int], tuple[int, int]] = {}
        for a, b in ranges:
            rows.update(self._compute(slo, a, b))
        with self.engine.begin() as conn:
            # The mark first: its row lock makes a concurrent refresh of this SLO wait for our commit.
            self._set_mark(conn, key, min(lo, c_lo), max(hi, c_hi), touched.marker)
            for a, b in ranges:
                conn.execute(delete(SloCount).where(SloCount.slo == key, SloCount.bucket_start_unix_nano >= a,
                                                    SloCount.bucket_start_unix_nano < b))
            if rows:
                conn.execute(insert(SloCount), [{"slo": key, "segment": seg, "bucket_start_unix_nano": b,
                                                 "good": g, "total": n} for (seg, b), (g, n) in sorted(rows.items())])
        return len(rows)

    @staticmethod
    def _set_mark(conn: Connection, key: str, lo: int, hi: int, marker: int) -> None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(SloCountMark).values(slo=key, lo_unix_nano=lo, hi_unix_nano=hi, marker=marker)
        conn.execute(stmt.on_conflict_do_update(index_elements=["slo"], set_={
            "lo_unix_nano": lo, "hi_unix_nano": hi, "marker": marker}))

    def _segment(self, slo: SLO, row: dict[str, Any]) -> str:
        return segment_key((dim, row.get(dim)) for dim in slo.group_by)

    def _compute(self, slo: SLO, lo: int, hi: int) -> dict[tuple[str, int], tuple[int, int]]:
        ind = slo.indicator
        acc: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
        if isinstance(ind, SpanRatioIndicator):
            self._span_ratio(slo, ind, lo, hi, acc)
        elif isinstance(ind, SpanThresholdIndicator):
            self._span_threshold(slo, ind, lo, hi, acc)
        elif isinstance(ind, MetricRatioIndicator):
            self._metric_ratio(slo, ind, lo, hi, acc)
        elif isinstance(ind, HistogramIndicator):
            self._histogram(slo, ind, lo, hi, acc)
        elif isinstance(ind, GaugeThresholdIndicator):
            self._gauge(slo, ind, lo, hi, acc)
        else:  # pragma: no cover - the model admits no other kind
            raise TypeError(f"unknown indicator {ind!r}")
        # Counter increases are floats in the rollups; events are whole numbers. A segment with an empty label
        # (e.g. never-placed jobs without a hardware type) is no segment: drop it.
        return {k: (round(g), round(n)) for k, (g, n) in acc.items()
                if round(n) > 0 and not (slo.group_by and _partial(k[0]))}

    def _span_ratio(self, slo: SLO, ind: SpanRatioIndicator, lo: int, hi: int,
                    acc: dict[tuple[str, int], list[float]]) -> None:
        promoted_only = all(k in _PROMOTED for k, _ in ind.where)
        if not promoted_only:
            # Attribute filters are not in the rollups: count the raw spans.
            self._span_threshold(slo, ind, lo, hi, acc)
            return
        r = SpanRollup.__table__
        q = select(r.c.bucket_start_unix_nano, r.c.status_code, r.c.node_id, r.c.link_id, r.c.hardware_type,
                   func.sum(r.c.span_count)).where(
            r.c.name == ind.span, r.c.bucket_start_unix_nano >= lo, r.c.bucket_start_unix_nano < hi)
        for k, v in ind.where:
            q = q.where(r.c[k] == str(v))
        q = q.group_by(r.c.bucket_start_unix_nano, r.c.status_code, r.c.node_id, r.c.link_id, r.c.hardware_type)
        with self.engine.connect() as conn:
            for b, status, node, link, hw, total in conn.execute(q):
                seg = self._segment(slo, {"node_id": node or None, "link_id": link or None,
                                          "hardware_type": hw or None})
                n = int(total)  # PostgreSQL sums BIGINT as NUMERIC (a Decimal, which float += refuses)
                a = acc[(seg, b)]
                a[1] += n
                if status != 2:
                    a[0] += n

    def _span_threshold(self, slo: SLO, ind: SpanRatioIndicator | SpanThresholdIndicator, lo: int, hi: int,
                        acc: dict[tuple[str, int], list[float]]) -> None:
        s = Span.__table__
        q = select(s.c.start_time_unix_nano, s.c.status_code, s.c.attributes, s.c.node_id, s.c.link_id,
                   s.c.hardware_type).where(s.c.name == ind.span, s.c.start_time_unix_nano >= lo,
                                            s.c.start_time_unix_nano < hi)
        with self.engine.connect() as conn:
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
                cell = acc[(self._segment(slo, row), start // STEP * STEP)]
                cell[1] += 1
                cell[0] += good

    def _series(self, metric: str) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        t = MetricSeries.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.labels, t.c.node_id, t.c.link_id, t.c.hardware_type).where(
                t.c.metric_name == metric)).all()
        out = []
        for sid, labels, node, link, hw in rows:
            lab = json.loads(labels) if isinstance(labels, str) else (labels or {})
            out.append((sid, lab, {"node_id": node, "link_id": link, "hardware_type": hw}))
        return out

    def _increases(self, ids: Sequence[int], lo: int, hi: int) -> list[_Rollup]:
        if not ids:
            return []
        r = MetricRollup.__table__
        q = select(r.c.series_id, r.c.bucket_start_unix_nano, r.c.increase, r.c.last_value, r.c.value_min,
                   r.c.value_max, r.c.sample_count).where(
            r.c.series_id.in_(bindparam("ids", expanding=True)), r.c.bucket_start_unix_nano >= lo,
            r.c.bucket_start_unix_nano < hi)
        with self.engine.connect() as conn:
            return [_Rollup(*row) for row in conn.execute(q, {"ids": list(ids)})]

    def _metric_ratio(self, slo: SLO, ind: MetricRatioIndicator, lo: int, hi: int,
                      acc: dict[tuple[str, int], list[float]]) -> None:
        good_ids, seg_of = set(), {}
        for sid, lab, prom in self._series(ind.metric):
            if not _matches(lab, ind.total_match):
                continue
            seg_of[sid] = self._segment(slo, prom)
            if _matches(lab, ind.good_match):
                good_ids.add(sid)
        for sid, b, inc, *_ in self._increases(list(seg_of), lo, hi):
            a = acc[(seg_of[sid], b)]
            a[1] += inc or 0.0
            if sid in good_ids:
                a[0] += inc or 0.0

    def _histogram(self, slo: SLO, ind: HistogramIndicator, lo: int, hi: int,
                   acc: dict[tuple[str, int], list[float]]) -> None:
        le = _le(ind.threshold)
        bucket_ids, count_ids, seg_of = set(), set(), {}
        for sid, lab, prom in self._series(ind.metric + "_bucket"):
            if lab.get("le") == le and _matches(lab, ind.match):
                bucket_ids.add(sid)
                seg_of[sid] = self._segment(slo, prom)
        for sid, lab, prom in self._series(ind.metric + "_count"):
            if _matches(lab, ind.match):
                count_ids.add(sid)
                seg_of[sid] = self._segment(slo, prom)
        for sid, b, inc, *_ in self._increases(list(seg_of), lo, hi):
            a = acc[(seg_of[sid], b)]
            if sid in count_ids:
                a[1] += inc or 0.0
                if ind.op == "gt":
                    a[0] += inc or 0.0
            elif sid in bucket_ids:
                a[0] += (inc or 0.0) if ind.op == "lte" else -(inc or 0.0)

    def _gauge(self, slo: SLO, ind: GaugeThresholdIndicator, lo: int, hi: int,
               acc: dict[tuple[str, int], list[float]]) -> None:
        seg_of = {sid: self._segment(slo, prom) for sid, lab, prom in self._series(ind.metric)
                  if _matches(lab, ind.match)}
        op, thr = _OPS[ind.op], ind.threshold
        mixed: list[tuple[int, int]] = []
        for sid, b, _inc, _last, vmin, vmax, n in self._increases(list(seg_of), lo, hi):
            ok_min, ok_max = op(Fraction(vmin), thr), op(Fraction(vmax), thr)
            a = acc[(seg_of[sid], b)]
            if ok_min == ok_max:
                a[1] += n
                a[0] += n if ok_min else 0
            else:
                mixed.append((sid, b))  # some samples in, some out: count them one by one
        if mixed:
            s = MetricSample.__table__
            q = select(s.c.value).where(s.c.series_id == bindparam("sid"), s.c.time_unix_nano >= bindparam("lo"),
                                        s.c.time_unix_nano < bindparam("hi"))
            with self.engine.connect() as conn:
                for sid, b in mixed:
                    vals = conn.execute(q, {"sid": sid, "lo": b, "hi": b + STEP}).scalars().all()
                    a = acc[(seg_of[sid], b)]
                    a[1] += len(vals)
                    a[0] += sum(1 for v in vals if op(Fraction(v), thr))

    # -- reads ----------------------------------------------------------------------------------------------------

    def interval_counts(self, slo: SLO, at_ns: int, starts: Sequence[int]) -> dict[str, list[tuple[int, Counts]]]:
        """Per segment, the counts of the disjoint intervals that the window starts cut ``(min(starts), at]`` into.

        Returned as ``(interval_end_ns, Counts)`` pairs: used as samples, any window ``(s, at]`` with ``s`` in
        ``starts`` sums exactly the intervals inside it. One aggregate query, however long the period.
        """
        cuts = sorted({s for s in starts if s < at_ns}, reverse=True)  # descending window starts
        if not cuts:
            return {}
        ends = [at_ns, *cuts]  # interval k is (cuts[k], ends[k]]
        step_end = SloCount.bucket_start_unix_nano + STEP
        # Each minute goes to the first (latest) cut it lies after: the interval it belongs to.
        interval = case(*((step_end > c, k) for k, c in enumerate(cuts))).label("k")
        sel = select(SloCount.segment, interval, SloCount.good, SloCount.total).where(
            SloCount.slo == counts_key(slo), step_end > cuts[-1], step_end <= at_ns)
        if (first := self._first_bucket()) is not None:
            sel = sel.where(SloCount.bucket_start_unix_nano >= first)
        minutes = sel.subquery()
        q = select(minutes.c.segment, minutes.c.k, func.sum(minutes.c.good), func.sum(minutes.c.total)).group_by(
            minutes.c.segment, minutes.c.k)
        out: dict[str, list[tuple[int, Counts]]] = defaultdict(list)
        with self.engine.connect() as conn:
            for seg, k, g, n in conn.execute(q):
                out[seg].append((ends[int(k)], Counts(int(g), int(n))))
        return dict(out)

    def minute_counts(self, slo: SLO, lo_exclusive_ns: int, at_ns: int) -> dict[str, list[tuple[int, Counts]]]:
        """Per segment, every materialised minute in ``(lo, at]`` as ``(step_end_ns, Counts)`` (for timeslices)."""
        t = SloCount
        q = select(t.segment, t.bucket_start_unix_nano, t.good, t.total).where(
            t.slo == counts_key(slo), t.bucket_start_unix_nano + STEP > lo_exclusive_ns,
            t.bucket_start_unix_nano + STEP <= at_ns).order_by(t.segment, t.bucket_start_unix_nano)
        if (first := self._first_bucket()) is not None:
            q = q.where(t.bucket_start_unix_nano >= first)
        out: dict[str, list[tuple[int, Counts]]] = defaultdict(list)
        with self.engine.connect() as conn:
            for seg, b, g, n in conn.execute(q):
                out[seg].append((b + STEP, Counts(int(g), int(n))))
        return dict(out)
