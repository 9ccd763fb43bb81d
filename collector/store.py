"""The SQL edge of the collector: writes, rollups, retention and the reads others need.

Every ingestion path (OTLP/HTTP, in-process exporters, the columnar bulk API) ends in
:meth:`Store.write`, one transaction per batch. Inserts are idempotent (``ON CONFLICT DO
NOTHING`` on natural keys), so a re-delivered batch changes nothing. Each backend gets
its fastest correct method: ``executemany`` inside one transaction on SQLite, binary
``COPY`` on PostgreSQL (falling back to a staging table when a batch holds duplicates).

Every transaction that changes minute buckets (a write, a rollup pass) records them in
``touched_buckets`` under the next write sequence number, which :meth:`Store.touched_since`
hands to readers of derived data, so that late data reach them too.

Why one module: writes, rollups and retention share the per-dialect insert machinery and
the transaction boundaries that the touched-bucket sequence relies on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.sql.expression import Executable

from qfleet.collector.rows import (
    EVENT_COLUMNS,
    LINK_COLUMNS,
    SERIES_COLUMNS,
    SPAN_COLUMNS,
    TelemetryBatch,
    attributes_json,
)
from qfleet.collector.schema import (
    ROLLUP_STEP_NS,
    Base,
    MetricRollup,
    MetricSample,
    MetricSeries,
    MetricType,
    Resource,
    RollupPending,
    Signal,
    Span,
    SpanEvent,
    SpanLink,
    Temporality,
    TouchedBucket,
    WriteSequence,
)

__all__ = [
    "PruneResult",
    "RollupResult",
    "SeriesSample",
    "Store",
    "StoreError",
    "Touched",
    "WriteResult",
    "open_engine",
]

logger = logging.getLogger(__name__)


#: The page size of a new SQLite file, in bytes (SQLite's default is 4,096).
_SQLITE_PAGE_SIZE = 16_384
#: Bytes of WAL between SQLite's automatic checkpoints (10,000 pages of 4 KiB).
_WAL_CHECKPOINT_BYTES = 40_960_000


class StoreError(ValueError):
    """A bad store argument (database URL, retention horizon); the message says how to fix it."""


def open_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with qfleet's per-connection settings.

    SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout, foreign keys and, in a new file, 16 KiB pages;
    PostgreSQL URLs should use the psycopg 3 driver (``postgresql+psycopg://``).

    Raises:
        StoreError: ``url`` is not a database URL SQLAlchemy understands.
    """
    try:
        u = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"database URL {url!r} cannot be parsed; use e.g. sqlite:///qfleet.db or "
            "postgresql+psycopg://user@127.0.0.1:5432/qfleet"
        ) from None
    backend = u.get_backend_name()
    if backend == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"database URL {u.render_as_string()!r}: backend {backend!r} is not supported; "
                         "use sqlite:/// or postgresql+psycopg://")
    engine = create_engine(u, **kwargs)
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # Larger pages than SQLite's 4 KiB default: a span row is a few hundred bytes and pays for six B-trees
            # (the table, its key and four indexes), and fuller pages cost the writer about a tenth less CPU
            # (bench/bench_writer.py). Only a new, empty file takes it; an existing one keeps its page size.
            cur.execute(f"PRAGMA page_size={_SQLITE_PAGE_SIZE}")
            # WAL: readers never block the single writer. NORMAL survives a process crash
            # (SIGKILL); only a power loss can cost the last commits.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            # A 64 MiB page cache and rarer checkpoints (WAL up to ~40 MB between them, whatever the file's
            # page size): ingest writes many pages per transaction.
            cur.execute("PRAGMA cache_size=-65536")
            page = int(cur.execute("PRAGMA page_size").fetchone()[0])
            cur.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_BYTES // page}")
            cur.close()

    return engine


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Rows handed to the database in one committed transaction (duplicates included)."""

    spans: int
    events: int
    links: int
    samples: int
    series: int


@dataclass(frozen=True, slots=True)
class RollupResult:
    """Minute buckets recomputed by one rollup pass."""

    span_buckets: int
    metric_buckets: int


@dataclass(frozen=True, slots=True)
class PruneResult:
    """Raw rows deleted by retention, and the horizon they were older than (``None``: the store held no data)."""

    spans: int
    span_events: int
    span_links: int
    samples: int
    horizon_unix_nano: int | None


@dataclass(frozen=True, slots=True)
class Touched:
    """Minute buckets whose data changed since a marker, and the marker to pass next time.

    Args:
        buckets: bucket starts (Unix ns), ascending, each once.
        marker: every change numbered below it is committed and its bucket was reported by this call or an
            earlier one with a smaller marker.
    """

    buckets: tuple[int, ...]
    marker: int


@dataclass(frozen=True, slots=True)
class SeriesSample:
    """The latest sample of one metric series, with what an exposition needs to type and label it.

    ``value`` is ``None`` when the stored value is NaN (SQLite keeps NaN as NULL). ``node_id``, ``link_id`` and
    ``hardware_type`` are the promoted columns (read from the point's attributes or else its resource's).
    """

    series_id: int
    metric_name: str
    metric_type: int
    temporality: int
    is_monotonic: bool
    description: str
    labels: dict[str, Any]
    node_id: str | None
    link_id: str | None
    hardware_type: str | None
    resource_fingerprint: str | None
    value: float | None
    time_unix_nano: int


def _table(model: type[Base]) -> Table:
    """The ``Table`` of a mapped class (SQLAlchemy types ``__table__`` as the wider ``FromClause``)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


_START = itemgetter(SPAN_COLUMNS.index("start_time_unix_nano"))

# SQLite's default limit on bound parameters per statement (since 3.32).
_SQLITE_MAX_PARAMS = 32_766
# A metric rollup row (``metric_rollups``), in the order _rollup_metrics builds it.
_ROLLUP_COLUMNS = ("series_id", "bucket_start_unix_nano", "sample_count", "value_sum", "value_min", "value_max",
                   "last_value", "last_time_unix_nano", "increase")

# PostgreSQL binary COPY needs each column's wire type (most specific SQLAlchemy type first).
_PG_TYPES: tuple[tuple[type, str], ...] = (
    (BigInteger, "int8"),
    (SmallInteger, "int2"),
    (Integer, "int4"),
    (Float, "float8"),
    (Boolean, "bool"),
    (JSON, "jsonb"),
    (String, "text"),
)


def _pg_type(table: Table, col: str) -> str:
    t = table.c[col].type
    for cls, name in _PG_TYPES:
        if isinstance(t, cls):
            return name
    raise AssertionError(f"no COPY type for {table.name}.{col} ({t!r})")


class Store:
    """Read and write access to the telemetry store.

    Args:
        engine: from :func:`open_engine`; the schema must be migrated (``qfleet db upgrade``).
        clock: returns the current time in ns; used for ``first_seen`` and retention.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        self._series_ids: dict[str, int] = {}
        self._sql_cache: dict[tuple[str, tuple[str, ...], int, bool], str] = {}

    # -- writes ------------------------------------------------------------------

    def write(self, batch: TelemetryBatch) -> WriteResult:
        """Write ``batch`` in one transaction; idempotent for rows already stored.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the transaction failed and nothing was written.
        """
        new_ids: dict[str, int] = {}
        with self.engine.begin() as conn:
            self._write(conn, batch, new_ids)
        self._series_ids.update(new_ids)  # only ids that were committed
        return WriteResult(len(batch.spans), len(batch.events), len(batch.links),
                           len(batch.samples), len(batch.series))

    def write_many(self, batches: Sequence[TelemetryBatch]) -> WriteResult:
        """Write several batches in one transaction (how the receiver coalesces requests)."""
        merged = TelemetryBatch()
        for b in batches:
            merged.extend(b)
        return self.write(merged)

    def _write(self, conn: Connection, batch: TelemetryBatch, new_ids: dict[str, int]) -> None:
        now = self.clock()
        if batch.resources:
            self._insert(conn, _table(Resource), ("fingerprint", "service_name", "attributes",
                                                    "first_seen_unix_nano"),
                         [(r.fingerprint, r.service_name, r.attributes, now)
                          for r in batch.resources.values()], ("fingerprint",))
        self._insert(conn, _table(Span), SPAN_COLUMNS, batch.spans, ("trace_id", "span_id"))
        self._insert(conn, _table(SpanEvent), EVENT_COLUMNS, batch.events,
                     ("trace_id", "span_id", "seq"))
        self._insert(conn, _table(SpanLink), LINK_COLUMNS, batch.links,
                     ("trace_id", "span_id", "seq"))
        step = ROLLUP_STEP_NS
        span_signal = int(Signal.SPANS)
        pending = {(span_signal, b * step) for b in {t // step for t in map(_START, batch.spans)}}
        if batch.samples:
            ids = self._series_id_map(conn, batch, new_ids)
            self._insert(conn, _table(MetricSample), ("series_id", "time_unix_nano", "value"),
                         [(ids[fp], t, v) for fp, t, v in batch.samples],
                         ("series_id", "time_unix_nano"))
            # The next minute too: its counter increase starts from this one's last sample. (Per distinct time: a
            # snapshot's samples share one.)
            metric_signal = int(Signal.METRICS)
            for t in {t for _fp, t, _v in batch.samples}:
                b = t // step * step
                pending.add((metric_signal, b))
                pending.add((metric_signal, b + step))
        if pending:
            touched = sorted(pending)
            self._upsert(conn, _table(RollupPending),
                         [{"signal": sig, "bucket_start_unix_nano": b, "touched_unix_nano": now}
                          for sig, b in touched], ("signal", "bucket_start_unix_nano"))
            self._touch(conn, touched)

    def _touch(self, conn: Connection, buckets: Iterable[tuple[int, int]]) -> None:
        """Record ``(signal, bucket)`` pairs as changed by this transaction; call it last, just before the commit:
        the sequence row stays locked until then (see :class:`WriteSequence`)."""
        # The first touch creates the row; each later one increments it and holds its lock until the commit.
        seq = conn.execute(text(
            "INSERT INTO write_sequence (id, seq) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET seq = write_sequence.seq + 1 RETURNING seq")).scalar_one()
        self._upsert(conn, _table(TouchedBucket), [{"signal": sig, "bucket_start_unix_nano": b, "seq": seq}
                                                   for sig, b in buckets], ("signal", "bucket_start_unix_nano"))

    def touched_since(self, marker: int, *, signal: Signal | None = None, lo_ns: int | None = None,
                      hi_ns: int | None = None) -> Touched:
        """Minute buckets (of ``signal``, starting in ``[lo_ns, hi_ns)``; default all) whose raw rows or rollups
        changed in a transaction numbered ``marker`` or later (0: ever), and the marker to pass next time.

        Exact with any number of writers: transactions that touch buckets commit in sequence order (see
        :class:`WriteSequence`), and the sequence is read before the buckets, so every change numbered below the
        returned marker was committed before the buckets were read. A change committed meanwhile may be reported
        twice (now and next time); none is missed. Readers that recompute the reported minutes are idempotent.
        """
        t, w = _table(TouchedBucket), _table(WriteSequence)
        q = select(t.c.bucket_start_unix_nano).distinct().where(t.c.seq >= marker)
        if signal is not None:
            q = q.where(t.c.signal == int(signal))
        if lo_ns is not None:
            q = q.where(t.c.bucket_start_unix_nano >= lo_ns)
        if hi_ns is not None:
            q = q.where(t.c.bucket_start_unix_nano < hi_ns)
        with self.engine.connect() as conn:
            head = conn.execute(select(w.c.seq).where(w.c.id == 1)).scalar()  # first: see the docstring
            buckets = conn.execute(q.order_by(t.c.bucket_start_unix_nano)).scalars().all()
        return Touched(tuple(buckets), max(marker, (head or 0) + 1))

    def _series_id_map(self, conn: Connection, batch: TelemetryBatch,
                       new_ids: dict[str, int]) -> dict[str, int]:
        ids = self._series_ids
        missing = [fp for fp in batch.series if fp not in ids]
        if not missing:
            return ids
        rows = [batch.series[fp].values for fp in missing]
        self._insert(conn, _table(MetricSeries), SERIES_COLUMNS, rows, ("fingerprint",))
        t = _table(MetricSeries)
        found: dict[str, int] = {}
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            for fp, sid in conn.execute(select(t.c.fingerprint, t.c.id).where(t.c.fingerprint.in_(chunk))):
                found[fp] = sid
        new_ids.update(found)
        return {**ids, **found}

    def _insert(self, conn: Connection, table: Table, cols: Sequence[str],
                rows: list[tuple[Any, ...]], key: Sequence[str]) -> None:
        if not rows:
            return
        json_idx = [i for i, c in enumerate(cols) if isinstance(table.c[c].type, JSON)]
        if self.dialect == "postgresql":
            self._pg_copy(conn, table, cols, rows, key)
            return
        self._sqlite_values(conn, table, cols, rows, key, replace=False, json_idx=json_idx)

    def _sqlite_values(self, conn: Connection, table: Table, cols: Sequence[str], rows: list[tuple[Any, ...]],
                       key: Sequence[str], *, replace: bool, json_idx: Sequence[int] = ()) -> None:
        """``rows`` into a SQLite ``table`` as multi-row VALUES statements (see :meth:`_values_sql`), the values of
        the ``json_idx`` columns as JSON text."""
        # Multi-row VALUES: one statement steps many rows, where executemany binds and
        # steps them one by one through Python (measured +15 % in bench/bench_bulk.py).
        per = max(1, min(500, _SQLITE_MAX_PARAMS // len(cols)))
        raw = conn.connection.driver_connection
        assert raw is not None  # a live DB-API connection: we are inside a transaction
        cur = raw.cursor()
        try:
            width = len(cols)
            for lo in range(0, len(rows), per):
                chunk = rows[lo:lo + per]
                flat = list(chain.from_iterable(chunk))
                for j in json_idx:
                    # Encoded in the flat parameter list: rebuilding every row's tuple cost more than the JSON.
                    flat[j::width] = [v if type(v) is str else attributes_json(v) for v in flat[j::width]]
                cur.execute(self._values_sql(table.name, cols, key, len(chunk), replace=replace), flat)
        finally:
            cur.close()

    def _values_sql(self, table: str, cols: Sequence[str], key: Sequence[str], n: int, *,
                    replace: bool = False) -> str:
        """``n`` rows of ``cols`` into ``table``; a row whose ``key`` exists is kept, or with ``replace`` updated."""
        ck = (table, tuple(cols), n, replace)
        sql = self._sql_cache.get(ck)
        if sql is None:
            one = f"({', '.join('?' * len(cols))})"
            action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
                      if replace else "DO NOTHING")
            sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([one] * n)} "
                   f"ON CONFLICT ({', '.join(key)}) {action}")
            self._sql_cache[ck] = sql
        return sql

    def _pg_copy(self, conn: Connection, table: Table, cols: Sequence[str],
                 rows: list[tuple[Any, ...]], key: Sequence[str]) -> None:
        import psycopg  # the PostgreSQL driver; only needed on this backend
        from psycopg.types.json import set_json_dumps

        types = [_pg_type(table, c) for c in cols]
        raw = conn.connection.driver_connection
        assert raw is not None  # a live DB-API connection: we are inside a transaction
        # set_types picks psycopg's jsonb dumper for plain dicts; ours keeps NaN out of JSONB.
        set_json_dumps(attributes_json, context=raw)
        collist = ", ".join(cols)
        with raw.cursor() as cur:
            # Fast path: COPY straight into the table. A duplicate key (a re-delivered
            # batch) aborts it; then go through a staging table with ON CONFLICT.
            cur.execute("SAVEPOINT qfleet_copy")
            try:
                with cur.copy(f"COPY {table.name} ({collist}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(types)
                    for r in rows:
                        cp.write_row(r)
                cur.execute("RELEASE SAVEPOINT qfleet_copy")
                return
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT qfleet_copy")
            stage = f"qfleet_stage_{table.name}"
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                        f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY {stage} ({collist}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(types)
                for r in rows:
                    cp.write_row(r)
            cur.execute(f"INSERT INTO {table.name} ({collist}) SELECT {collist} FROM {stage} "
                        f"ON CONFLICT ({', '.join(key)}) DO NOTHING")
            cur.execute(f"TRUNCATE {stage}")

    # -- rollups -----------------------------------------------------------------

    def refresh_rollups(self, *, settle_ns: int = 0, max_buckets: int = 10_000,
                        before_ns: int | None = None) -> RollupResult:
        """Recompute pending minute buckets; idempotent and safe to re-run.

        Only buckets not written to for ``settle_ns`` are taken (0: all of them), so a
        live receiver rolls up its current minute once it settles instead of rescanning
        it on every pass; with ``before_ns``, only buckets that start before it (a bulk
        writer rolls up the minutes it has moved past while it waits for the next step).
        Works in transactions of at most ``max_buckets`` buckets per signal until nothing
        eligible is pending; returns how many were recomputed.
        """
        total = RollupResult(0, 0)
        cutoff = self.clock() - settle_ns
        while True:
            r = self._refresh_rollups_once(max_buckets, cutoff, before_ns)
            if not (r.span_buckets or r.metric_buckets):
                return total
            total = RollupResult(total.span_buckets + r.span_buckets,
                                 total.metric_buckets + r.metric_buckets)

    def _refresh_rollups_once(self, max_buckets: int, cutoff: int, before_ns: int | None) -> RollupResult:
        p = _table(RollupPending)
        done: dict[Signal, list[int]] = {Signal.SPANS: [], Signal.METRICS: []}
        with self.engine.begin() as conn:
            for sig in (Signal.SPANS, Signal.METRICS):
                settled: tuple[Any, ...] = (p.c.signal == int(sig), p.c.touched_unix_nano <= cutoff)
                if before_ns is not None:
                    settled += (p.c.bucket_start_unix_nano < before_ns,)
                buckets = list(conn.execute(
                    select(p.c.bucket_start_unix_nano).where(*settled)
                    .order_by(p.c.bucket_start_unix_nano).limit(max_buckets)).scalars())
                if not buckets:
                    continue
                # A bucket written again meanwhile keeps its (newer) pending row.
                conn.execute(p.delete().where(*settled, p.c.bucket_start_unix_nano.in_(buckets)))
                for lo, hi in _ranges(buckets):
                    if sig is Signal.SPANS:
                        self._rollup_spans(conn, lo, hi)
                    else:
                        self._rollup_metrics(conn, lo, hi)
                done[sig] = buckets
            if done[Signal.SPANS] or done[Signal.METRICS]:
                # New rollups are changed data for whoever derives from them (the SLO counts).
                self._touch(conn, [(int(sig), b) for sig, bs in done.items() for b in bs])
        return RollupResult(len(done[Signal.SPANS]), len(done[Signal.METRICS]))

    def _rollup_spans(self, conn: Connection, lo: int, hi: int) -> None:
        conflict = "bucket_start_unix_nano, name, status_code, node_id, link_id, hardware_type"
        conn.execute(text(f"""
            INSERT INTO span_rollups ({conflict}, span_count, duration_sum_ns,
                                      duration_min_ns, duration_max_ns)
            SELECT (start_time_unix_nano / :step) * :step, name, status_code,
                   COALESCE(node_id, ''), COALESCE(link_id, ''), COALESCE(hardware_type, ''),
                   COUNT(*), SUM(duration_ns), MIN(duration_ns), MAX(duration_ns)
            FROM spans
            WHERE start_time_unix_nano >= :lo AND start_time_unix_nano < :hi
            GROUP BY 1, 2, 3, 4, 5, 6
            ON CONFLICT ({conflict}) DO UPDATE SET
                span_count = excluded.span_count, duration_sum_ns = excluded.duration_sum_ns,
                duration_min_ns = excluded.duration_min_ns,
                duration_max_ns = excluded.duration_max_ns
        """), {"step": ROLLUP_STEP_NS, "lo": lo, "hi": hi})

    def _rollup_metrics(self, conn: Connection, lo: int, hi: int) -> None:
        s, m, r = _table(MetricSeries), _table(MetricSample), _table(MetricRollup)
        rows = conn.execute(
            select(m.c.series_id, m.c.time_unix_nano, m.c.value, s.c.temporality, s.c.is_monotonic,
                   s.c.metric_type)
            .join(s, s.c.id == m.c.series_id)
            .where(m.c.time_unix_nano >= lo, m.c.time_unix_nano < hi)
            .order_by(m.c.series_id, m.c.time_unix_nano)).all()
        if not rows:
            return
        series_ids = sorted({row[0] for row in rows})
        prev_last: dict[int, float] = {}
        # Each series' last value before the range: one index seek per series, driven from the series. (Driven
        # from the rollups, the database walked every earlier bucket of each series: a cost that grew with the
        # store's age, and took most of a simulated day's storage once minutes were rolled up as they closed.)
        before = (select(r.c.last_value).where(r.c.series_id == s.c.id, r.c.bucket_start_unix_nano < lo)
                  .order_by(r.c.bucket_start_unix_nano.desc()).limit(1).scalar_subquery())
        for i in range(0, len(series_ids), 500):
            chunk = series_ids[i:i + 500]
            for sid, last in conn.execute(select(s.c.id, before).where(s.c.id.in_(chunk))):
                if last is not None:
                    prev_last[sid] = last
        # One row per series and minute, in _ROLLUP_COLUMNS order; the running bucket in locals (this loop sees
        # every sample of the minutes it rolls up).
        out: list[tuple[Any, ...]] = []
        step = ROLLUP_STEP_NS
        key: tuple[int, int] | None = None
        count, total, low, high, last, last_t = 0, 0.0, 0.0, 0.0, 0.0, 0
        inc: float | None = None
        for sid, t, v, temporality, monotonic, mtype in rows:
            b = t // step * step
            if key is None or key[0] != sid or key[1] != b:
                if key is not None:
                    out.append((*key, count, total, low, high, last, last_t, inc))
                key = (sid, b)
                count, total, low, high, inc = 0, 0.0, v, v, None
            count += 1
            total += v
            low = min(low, v)
            high = max(high, v)
            if temporality == Temporality.DELTA and monotonic:
                inc = (inc or 0.0) + v
            elif temporality == Temporality.CUMULATIVE and monotonic and mtype != MetricType.GAUGE:
                p = prev_last.get(sid)
                # A drop means the counter reset: the new value is all increase.
                inc = (inc or 0.0) + (0.0 if p is None else (v - p if v >= p else v))
                prev_last[sid] = v
            last, last_t = v, t
        if key is not None:
            out.append((*key, count, total, low, high, last, last_t, inc))
        self._upsert_rows(conn, r, _ROLLUP_COLUMNS, out, ("series_id", "bucket_start_unix_nano"))

    def _upsert_rows(self, conn: Connection, table: Table, cols: Sequence[str], rows: list[tuple[Any, ...]],
                     key: Sequence[str]) -> None:
        """Insert or replace ``rows`` (tuples in ``cols`` order): multi-row VALUES on SQLite, as in :meth:`_insert`
        (SQLAlchemy's per-row parameter handling cost more than SQLite's work on a minute of rollups)."""
        if self.dialect != "sqlite":
            self._upsert(conn, table, [dict(zip(cols, row, strict=True)) for row in rows], key)
            return
        self._sqlite_values(conn, table, cols, rows, key, replace=True)

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]],
                key: Sequence[str]) -> None:
        stmt = _upsert_statement(self.dialect, table, key)
        for i in range(0, len(rows), 1000):
            conn.execute(stmt, rows[i:i + 1000])

    # -- retention ---------------------------------------------------------------

    def newest_unix_nano(self) -> int | None:
        """The newest raw timestamp stored (span start or sample time); ``None`` when there is none."""
        s, m = _table(Span), _table(MetricSample)
        with self.engine.connect() as conn:
            found = [conn.execute(select(func.max(c))).scalar() for c in (s.c.start_time_unix_nano,
                                                                           m.c.time_unix_nano)]
        return max((t for t in found if t is not None), default=None)

    def prune(self, *, older_than_ns: int, relative_to: Literal["newest", "now"] = "newest",
              batch_size: int = 10_000) -> PruneResult:
        """Delete raw spans (with their events and links) and samples older than a horizon, in transactions of at
        most ``batch_size`` rows; the horizon is ``older_than_ns`` before the newest stored data (``"newest"``:
        right for simulated stores, whose data lie in the past or the future) or before the store clock (``"now"``).

        Pending rollups are computed first, so the rollups keep the history.

        Raises:
            StoreError: a non-positive horizon or batch size, or an unknown ``relative_to``.
        """
        if older_than_ns <= 0:
            raise StoreError(f"older_than_ns={older_than_ns}: retention horizon must be positive")
        if batch_size <= 0:
            raise StoreError(f"batch_size={batch_size}: must be positive")
        if relative_to not in ("newest", "now"):
            raise StoreError(f"relative_to={relative_to!r}: use 'newest' (the newest stored data) or 'now'")
        self.refresh_rollups()
        newest = self.newest_unix_nano() if relative_to == "newest" else self.clock()
        if newest is None:
            return PruneResult(0, 0, 0, 0, None)
        horizon = newest - older_than_ns
        keys = ("SELECT trace_id, span_id FROM spans WHERE start_time_unix_nano < :h "
                "ORDER BY start_time_unix_nano, trace_id, span_id LIMIT :n")
        totals = [0, 0, 0, 0]
        params = {"h": horizon, "n": batch_size}
        while True:
            with self.engine.begin() as conn:
                ev = conn.execute(text(
                    f"DELETE FROM span_events WHERE (trace_id, span_id) IN ({keys})"), params).rowcount
                ln = conn.execute(text(
                    f"DELETE FROM span_links WHERE (trace_id, span_id) IN ({keys})"), params).rowcount
                sp = conn.execute(text(
                    f"DELETE FROM spans WHERE (trace_id, span_id) IN ({keys})"), params).rowcount
            totals[0] += sp
            totals[1] += ev
            totals[2] += ln
            if sp < batch_size:
                break
        while True:
            with self.engine.begin() as conn:
                n = conn.execute(text(
                    "DELETE FROM metric_samples WHERE (series_id, time_unix_nano) IN ("
                    "SELECT series_id, time_unix_nano FROM metric_samples "
                    "WHERE time_unix_nano < :h ORDER BY time_unix_nano LIMIT :n)"), params).rowcount
            totals[3] += n
            if n < batch_size:
                break
        if self.dialect == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        spans, events, links, samples = totals
        return PruneResult(spans, events, links, samples, horizon)

    def checkpoint(self) -> tuple[int, int] | None:
        """Copy committed WAL frames into the SQLite database file (``PRAGMA wal_checkpoint(PASSIVE)``).

        Runs on a pooled connection of its own and never waits for the writer or for readers (frames a reader
        still needs stay in the WAL). Returns (frames in the WAL, frames copied so far), or None on PostgreSQL.
        """
        if self.dialect != "sqlite":
            return None
        with self.engine.connect() as conn:
            _busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return int(frames), int(copied)

    # -- reads -------------------------------------------------------------------

    def count(self, table: str) -> int:
        """Row count of one of the collector's tables (by name).

        Raises:
            StoreError: ``table`` is not one of the collector's tables.
        """
        if table not in Base.metadata.tables:
            raise StoreError(f"unknown table {table!r}; known: {sorted(Base.metadata.tables)}")
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())

    def latest_samples(self, *, since_ns: int, limit: int) -> tuple[list[SeriesSample], int]:
        """The latest sample of every series whose latest sample is at or after ``since_ns``, ordered by metric name
        then series id, at most ``limit`` of them; and how many series qualified in all (so a caller can count
        what ``limit`` left out).

        One statement: the newest time of each series is one seek in the ``(series_id, time)`` primary key.
        """
        s, m = _table(MetricSeries), _table(MetricSample)
        m2 = m.alias("m2")
        latest = select(func.max(m2.c.time_unix_nano)).where(m2.c.series_id == s.c.id).scalar_subquery()
        q = (select(s.c.id, s.c.metric_name, s.c.metric_type, s.c.temporality, s.c.is_monotonic, s.c.description,
                    s.c.labels, s.c.node_id, s.c.link_id, s.c.hardware_type, s.c.resource_fingerprint,
                    m.c.value, m.c.time_unix_nano, func.count().over())
             .select_from(s)
             .join(m, (m.c.series_id == s.c.id) & (m.c.time_unix_nano == latest))
             .where(m.c.time_unix_nano >= since_ns)
             .order_by(s.c.metric_name, s.c.id).limit(max(limit, 0)))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out = [SeriesSample(sid, name, mtype, temp, bool(mono), desc, dict(labels or {}), node, link, hw, res, value, t)
               for sid, name, mtype, temp, mono, desc, labels, node, link, hw, res, value, t, _n in rows]
        return out, (rows[0][-1] if rows else 0)


def _upsert_statement(dialect: str, table: Table, key: Sequence[str]) -> Executable:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column, in the dialect's syntax."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(table)
        return pg.on_conflict_do_update(index_elements=list(key),
                                        set_={c.name: pg.excluded[c.name] for c in table.c if c.name not in key})
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    lite = sqlite_insert(table)
    return lite.on_conflict_do_update(index_elements=list(key),
                                      set_={c.name: lite.excluded[c.name] for c in table.c if c.name not in key})


def _ranges(buckets: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of minute buckets as half-open ``[lo, hi)`` ranges."""
    out: list[tuple[int, int]] = []
    for b in buckets:
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + ROLLUP_STEP_NS)
        else:
            out.append((b, b + ROLLUP_STEP_NS))
    return out
