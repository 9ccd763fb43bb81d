"""SQLAlchemy 2.x schema of the telemetry store: the tables the collector owns and alone writes.

Ids are lowercase hex text (as in OTLP/JSON), times are integer nanoseconds since the
Unix epoch, attributes are JSON (JSONB on PostgreSQL). Attributes that every query
filters on are promoted to columns (see ``PROMOTED_ATTRIBUTES``). The SLO engine's and the
alerts' tables live in ``qfleet.slo.schema`` and ``qfleet.alerts.schema`` (one metadata per
package, with the naming convention and JSON type defined here); the Alembic history in
``migrations/`` must match all of them exactly (a test runs autogenerate).
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "JsonType",
    "NAMING_CONVENTION",
    "MetricRollup",
    "MetricSample",
    "MetricSeries",
    "MetricType",
    "PROMOTED_ATTRIBUTES",
    "ROLLUP_STEP_NS",
    "Resource",
    "RollupPending",
    "Run",
    "Signal",
    "Span",
    "SpanEvent",
    "SpanLink",
    "SpanRollup",
    "Temporality",
    "TouchedBucket",
    "WriteSequence",
]

#: Width of a rollup bucket: one minute.
ROLLUP_STEP_NS = 60_000_000_000

#: Promoted column -> the attribute key it is read from (span attribute first, then the
#: resource attribute of the same key). ``qfleet.`` is our application prefix, kept out
#: of OpenTelemetry's reserved semantic-convention namespaces.
PROMOTED_ATTRIBUTES: dict[str, str] = {
    "node_id": "qfleet.node.id",
    "link_id": "qfleet.link.id",
    "job_id": "qfleet.job.id",
    "run_id": "qfleet.run.id",
    "hardware_type": "qfleet.hardware.type",
}

# Stable constraint names, so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "ck": "ck_%(table_name)s__%(constraint_name)s",
    "fk": "fk_%(table_name)s__%(column_0_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Portable column types: JSONB on PostgreSQL; INTEGER (the rowid alias) for SQLite keys.
JsonType = JSON().with_variant(JSONB(), "postgresql")
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")


class Signal(enum.IntEnum):
    """Kind of data a pending or touched minute bucket refers to."""

    SPANS = 1
    METRICS = 2


class MetricType(enum.IntEnum):
    """OTLP metric data kind of a series."""

    GAUGE = 1
    SUM = 2
    HISTOGRAM = 3
    SUMMARY = 4
    EXPONENTIAL_HISTOGRAM = 5


class Temporality(enum.IntEnum):
    """OTLP aggregation temporality (0 for gauges, which have none)."""

    UNSPECIFIED = 0
    DELTA = 1
    CUMULATIVE = 2


class Base(DeclarativeBase):
    """Declarative base of the collector's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION, info={"owner": "collector"})
    type_annotation_map = {dict[str, Any]: JsonType}


class Resource(Base):
    """An OTel resource (a process on a node), deduplicated by attribute fingerprint."""

    __tablename__ = "resources"

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    service_name: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]]
    first_seen_unix_nano: Mapped[int] = mapped_column(BigInteger)


class Span(Base):
    """One finished span."""

    __tablename__ = "spans"

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    parent_span_id: Mapped[str | None] = mapped_column(String(16))
    resource_fingerprint: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("resources.fingerprint")
    )
    service_name: Mapped[str] = mapped_column(Text)
    scope_name: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[int] = mapped_column(SmallInteger)
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    end_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int] = mapped_column(SmallInteger)
    status_message: Mapped[str] = mapped_column(Text)
    trace_state: Mapped[str] = mapped_column(Text)
    flags: Mapped[int] = mapped_column(BigInteger)
    attributes: Mapped[dict[str, Any]]
    dropped_attributes_count: Mapped[int] = mapped_column(Integer)
    dropped_events_count: Mapped[int] = mapped_column(Integer)
    dropped_links_count: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str | None] = mapped_column(Text)
    link_id: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(Text)
    hardware_type: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Retention and the rollup job scan by start time.
        Index(None, "start_time_unix_nano"),
        # Dashboards and SLIs: one operation over a time range.
        Index(None, "name", "start_time_unix_nano"),
        # On-call and debug views: one node over a time range.
        Index(None, "node_id", "start_time_unix_nano"),
        # Debug view: every span of one job.
        Index(None, "job_id"),
    )


class SpanEvent(Base):
    """A timed event inside a span (``seq`` is its position in the span)."""

    __tablename__ = "span_events"

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]]
    dropped_attributes_count: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index(None, "name", "time_unix_nano"),)


class SpanLink(Base):
    """A link from a span to another span (possibly in another trace)."""

    __tablename__ = "span_links"

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    linked_trace_id: Mapped[str] = mapped_column(String(32))
    linked_span_id: Mapped[str] = mapped_column(String(16))
    trace_state: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]]

    __table_args__ = (Index(None, "linked_trace_id"),)


class MetricSeries(Base):
    """One time series: a metric name plus its label set, deduplicated by fingerprint."""

    __tablename__ = "metric_series"

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(16), unique=True)
    metric_name: Mapped[str] = mapped_column(Text)
    metric_type: Mapped[int] = mapped_column(SmallInteger)
    temporality: Mapped[int] = mapped_column(SmallInteger)
    is_monotonic: Mapped[bool] = mapped_column(Boolean)
    unit: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]]
    resource_fingerprint: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("resources.fingerprint")
    )
    node_id: Mapped[str | None] = mapped_column(Text)
    link_id: Mapped[str | None] = mapped_column(Text)
    hardware_type: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "metric_name"),)


class MetricSample(Base):
    """One sample of a series."""

    __tablename__ = "metric_samples"

    series_id: Mapped[int] = mapped_column(
        SurrogateKey, ForeignKey("metric_series.id"), primary_key=True
    )
    time_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)

    # Retention deletes by time across all series.
    __table_args__ = (Index(None, "time_unix_nano"),)


class SpanRollup(Base):
    """Per-minute RED aggregate of spans by name, status, node, link and hardware type.

    Missing dimensions are stored as the empty string so they can be part of the key.
    """

    __tablename__ = "span_rollups"

    bucket_start_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    status_code: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    node_id: Mapped[str] = mapped_column(Text, primary_key=True)
    link_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hardware_type: Mapped[str] = mapped_column(Text, primary_key=True)
    span_count: Mapped[int] = mapped_column(BigInteger)
    duration_sum_ns: Mapped[int] = mapped_column(BigInteger)
    duration_min_ns: Mapped[int] = mapped_column(BigInteger)
    duration_max_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "name", "bucket_start_unix_nano"),)


class MetricRollup(Base):
    """Per-minute aggregate of one series.

    ``increase`` is set for counters: the sum of a delta series, or the reset-aware
    increase of a cumulative monotonic series (counters, histogram buckets) over the
    bucket, including the step from the previous bucket's last sample.
    """

    __tablename__ = "metric_rollups"

    series_id: Mapped[int] = mapped_column(
        SurrogateKey, ForeignKey("metric_series.id"), primary_key=True
    )
    bucket_start_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sample_count: Mapped[int] = mapped_column(BigInteger)
    value_sum: Mapped[float] = mapped_column(Float)
    value_min: Mapped[float] = mapped_column(Float)
    value_max: Mapped[float] = mapped_column(Float)
    last_value: Mapped[float] = mapped_column(Float)
    last_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    increase: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index(None, "bucket_start_unix_nano"),)


class RollupPending(Base):
    """Minute buckets written since their rollup was last computed.

    Rows are inserted in the same transaction as the data, so a crash between a write
    and its rollup loses nothing: the next rollup pass recomputes these buckets.
    ``touched_unix_nano`` is the store clock at the bucket's latest write: a live bucket
    is rolled up once it has settled, not recomputed on every request.
    """

    __tablename__ = "rollup_pending"

    signal: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bucket_start_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    touched_unix_nano: Mapped[int] = mapped_column(BigInteger)


class TouchedBucket(Base):
    """Minute buckets whose stored data changed, each with the write sequence number of its latest change.

    Unlike ``rollup_pending`` (deleted once rolled up) these rows stay, so that readers of data derived from a
    minute (the SLO engine's per-minute counts) can ask which minutes changed since they last looked
    (:meth:`qfleet.collector.store.Store.touched_since`). A write touches the buckets of its rows; a rollup pass
    touches the buckets it recomputed, since rollups are what most derived data read.
    """

    __tablename__ = "touched_buckets"

    signal: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bucket_start_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "seq"),)


class WriteSequence(Base):
    """The store's write sequence: one row (``id`` 1), incremented by every transaction that touches buckets.

    The increment comes at the end of such a transaction and its row lock is held until the commit, so these
    transactions commit in sequence order, on every backend and with any number of writers (on PostgreSQL they
    queue on this row for the length of a commit).
    """

    __tablename__ = "write_sequence"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class Run(Base):
    """A simulated run: its id, fleet and simulated time range ``[start, end)``.

    Runs in one store never overlap in simulated time (:mod:`qfleet.collector.runs` checks it under a lock), so
    selecting a run is selecting its range. Telemetry from real fleets (OTLP) has no run. ``created_unix_nano`` and
    ``finished_unix_nano`` are the store clock (wall time) at registration and at the end of the write.
    """

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    fleet: Mapped[str] = mapped_column(Text)
    start_unix_nano: Mapped[int] = mapped_column(BigInteger)
    end_unix_nano: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(Text)
    created_unix_nano: Mapped[int] = mapped_column(BigInteger)
    finished_unix_nano: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "start_unix_nano"),)
