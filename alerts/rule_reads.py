"""What the direct rules read from the store, each read once per evaluation (:class:`Reads`): series by metric,
sample windows and baselines of ``metric_series``/``metric_samples`` (through the collector's schema), and the
maintenance windows; series metadata is kept across evaluations until the series table grows.

Why one module: the rule kinds in :mod:`qfleet.alerts.rule_queries` say what to compute; this module owns how the
reads are shared and cached, so that the kinds read as plain queries.
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, select

from qfleet.collector.schema import MetricSample, MetricSeries, Span

__all__ = ["Points", "Reads", "Series", "known_series"]


# -- reading the store ------------------------------------------------------------------------------------------

# The statements are built once, with bind parameters: SQLAlchemy then reuses their cache keys and compiled SQL,
# where building the expressions anew for every read cost more than SQLite took to run them.
_SER, _SMP, _SPN = MetricSeries.__table__, MetricSample.__table__, Span.__table__
_SERIES = (select(_SER.c.metric_name, _SER.c.id, _SER.c.labels, _SER.c.node_id, _SER.c.link_id,
                  _SER.c.hardware_type)
           .where(_SER.c.metric_name.in_(bindparam("metrics", expanding=True))).order_by(_SER.c.id))
_SAMPLES = (select(_SMP.c.series_id, _SMP.c.time_unix_nano, _SMP.c.value)
            .where(_SMP.c.series_id.in_(bindparam("ids", expanding=True)), _SMP.c.time_unix_nano > bindparam("lo"),
                   _SMP.c.time_unix_nano <= bindparam("hi"))
            .order_by(_SMP.c.series_id, _SMP.c.time_unix_nano))
_LAST = (select(_SMP.c.series_id, func.max(_SMP.c.time_unix_nano).label("t"))
         .where(_SMP.c.series_id.in_(bindparam("ids", expanding=True)), _SMP.c.time_unix_nano <= bindparam("at"))
         .group_by(_SMP.c.series_id).subquery())
_BASELINE = select(_SMP.c.series_id, _SMP.c.value).join(
    _LAST, and_(_SMP.c.series_id == _LAST.c.series_id, _SMP.c.time_unix_nano == _LAST.c.t))
_STAMP = select(func.count(), func.max(_SER.c.id)).select_from(_SER)
_MAINTENANCE = select(_SPN.c.node_id).where(_SPN.c.name == "qfleet.maintenance",
                                            _SPN.c.start_time_unix_nano <= bindparam("hi"),
                                            _SPN.c.end_time_unix_nano > bindparam("lo"))


def _label(v: Any) -> str:
    """A stored label value as Prometheus text (JSON ``false`` is ``false``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True, slots=True)
class Series:
    """A metric series as the rules read it: its id, its labels as Prometheus text, and where it is (node, link,
    hardware type; from the promoted columns, else the labels)."""

    id: int
    labels: dict[str, str]
    node: str
    link: str
    hardware: str


Points = list[tuple[int, float]]  # (time_unix_nano, value), oldest first


_time = _first = itemgetter(0)


def _between(pts: Points, lo: int, hi: int) -> Points:
    """The points of ``pts`` in ``(lo, hi]``."""
    return pts[bisect_right(pts, lo, key=_time):bisect_right(pts, hi, key=_time)]


class Reads:
    """One evaluation's reads of the store, each made once: series by metric, sample windows and baselines.

    A read inside a window already read (a kind's window inside its baseline, a gauge's lookback inside its
    history) is cut from it, as is a baseline inside a window whose own baseline is known. Callers must not
    change what the methods return (it is shared by later reads).
    """

    def __init__(self, conn: Connection, known: dict[str, list[Series]] | None = None) -> None:
        self.conn = conn
        self._series = {} if known is None else known  # metric -> its series (shared by evaluations when known)
        self._windows: dict[tuple[int, ...], list[tuple[int, int, dict[int, Points]]]] = {}
        self._baselines: dict[tuple[tuple[int, ...], int], dict[int, float]] = {}
        self._increases: dict[tuple[tuple[int, ...], int, int], dict[int, float]] = {}
        self._hardware: dict[str, str] | None = None

    def load(self, metrics: Iterable[str]) -> None:
        """Read the series of every metric of ``metrics`` not read yet, in one query."""
        todo = sorted(set(metrics) - self._series.keys())
        if not todo:
            return
        found: dict[str, list[Series]] = {m: [] for m in todo}
        for r in self.conn.execute(_SERIES, {"metrics": todo}).all():
            labels = {k: _label(v) for k, v in (r.labels or {}).items()}
            found[r.metric_name].append(Series(
                r.id, labels, r.node_id or labels.get("qfleet.node.id", ""),
                r.link_id or labels.get("qfleet.link.id", ""),
                r.hardware_type or labels.get("qfleet.hardware.type", "")))
        self._series.update(found)  # whole lists only: another evaluation may share them

    def series(self, metric: str) -> list[Series]:
        """The series of ``metric``, oldest first."""
        self.load([metric])
        return self._series[metric]

    def samples(self, ids: Sequence[int], lo: int, hi: int) -> dict[int, Points]:
        """Samples in ``(lo, hi]`` per series, oldest first."""
        key = tuple(ids)
        for w_lo, w_hi, got in self._windows.get(key, ()):
            if w_lo <= lo and hi <= w_hi:
                return got if (w_lo, w_hi) == (lo, hi) else {sid: _between(p, lo, hi) for sid, p in got.items()}
        out: dict[int, Points] = {sid: [] for sid in key}
        if key:
            rows = self.conn.execute(_SAMPLES, {"ids": list(key), "lo": lo, "hi": hi}).all()
            for sid, group in groupby(rows, key=_first):  # rows come ordered by series
                out[sid] = [(t, v) for _sid, t, v in group]
        self._windows.setdefault(key, []).append((lo, hi, out))
        return out

    def baseline(self, ids: Sequence[int], at: int) -> dict[int, float]:
        """The last sample at or before ``at`` per series (series without one are absent)."""
        key = tuple(ids)
        got = self._baselines.get((key, at))
        if got is None:
            got = self._cut_baseline(key, at)
        if got is None:
            got = ({sid: v for sid, v in self.conn.execute(_BASELINE, {"ids": list(key), "at": at}).all()}
                   if key else {})
        self._baselines[(key, at)] = got
        return got

    def _cut_baseline(self, key: tuple[int, ...], at: int) -> dict[int, float] | None:
        """The baseline at ``at`` from a window ``(lo, hi]`` around it and the baseline at ``lo``, if read."""
        for lo, hi, got in self._windows.get(key, ()):
            base = self._baselines.get((key, lo))
            if base is None or not lo <= at <= hi:
                continue
            out: dict[int, float] = {}
            for sid in key:
                n = bisect_right(got[sid], at, key=_time)
                if n:
                    out[sid] = got[sid][n - 1][1]
                elif sid in base:
                    out[sid] = base[sid]
            return out
        return None

    def prefetch(self, series: Sequence[Series], lo: int, hi: int) -> None:
        """Read ``(lo, hi]`` and the baseline at ``lo`` at once, for the increases over windows inside it."""
        ids = [x.id for x in series]
        self.samples(ids, lo, hi)
        self.baseline(ids, lo)

    def increases(self, series: Sequence[Series], at: int, window: int) -> dict[int, float]:
        """Reset-aware ``increase()`` over ``(at - window, at]`` per series id."""
        ids = tuple(x.id for x in series)
        key = (ids, at - window, at)
        if key not in self._increases:
            base = self.baseline(ids, at - window)
            out: dict[int, float] = {}
            for sid, pts in self.samples(ids, at - window, at).items():
                prev = base.get(sid, 0.0)
                inc = 0.0
                for _t, v in pts:
                    inc += v - prev if v >= prev else v  # a drop is a counter reset: count from zero
                    prev = v
                out[sid] = inc
            self._increases[key] = out
        return self._increases[key]

    def latest(self, series: Sequence[Series], at: int, lookback: int) -> dict[int, float]:
        """The latest sample in ``(at - lookback, at]`` per series id (stale series are absent)."""
        return {sid: pts[-1][1] for sid, pts in self.samples([x.id for x in series], at - lookback, at).items()
                if pts}

    def node_hardware(self) -> dict[str, str]:
        """Node -> hardware type, from the ``qfleet_node_up`` series (for series that lack the label)."""
        if self._hardware is None:
            self._hardware = {x.node: x.hardware for x in self.series("qfleet_node_up") if x.node and x.hardware}
        return self._hardware

    def maintenance(self, lo: int, hi: int) -> set[str]:
        """Nodes with an announced ``qfleet.maintenance`` window overlapping ``(lo, hi]``."""
        return {r.node_id for r in self.conn.execute(_MAINTENANCE, {"lo": lo, "hi": hi}).all() if r.node_id}


#: Engine -> (its series table's (count, max id), metric -> its series), shared by evaluations. Series rows are
#: append-only (the collector inserts them and never changes or deletes one), so a metric's series stay valid
#: while that stamp is unchanged; the count catches every insert, even of a lower id that PostgreSQL commits
#: after a higher one. Keyed by engine, as each engine is its own database.
_SERIES_CACHE: weakref.WeakKeyDictionary[Engine, tuple[tuple[int, int | None], dict[str, list[Series]]]] = (
    weakref.WeakKeyDictionary())


def known_series(engine: Engine, conn: Connection) -> dict[str, list[Series]]:
    """The series of ``engine`` read by earlier evaluations, or a new, empty cache when series were added since.

    The stamp is read before any series, so a series committed after it changes the next evaluation's stamp.
    """
    count, top = conn.execute(_STAMP).one()
    stamp = (int(count), top)
    cached = _SERIES_CACHE.get(engine)
    if cached is None or cached[0] != stamp:
        cached = _SERIES_CACHE[engine] = (stamp, {})
    return cached[1]
