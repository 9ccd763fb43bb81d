"""The SLO engine's tables: per-minute SLI counts, how far they are exact, and the evaluation history. Only
``qfleet.slo`` writes them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Index, MetaData, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qfleet.collector.schema import NAMING_CONVENTION, JsonType

__all__ = ["SloBase", "SloCount", "SloCountMark", "SloEvaluation"]


class SloBase(DeclarativeBase):
    """Declarative base of the SLO engine's tables (its own metadata; Alembic gathers every package's)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION, info={"owner": "slo"})
    type_annotation_map = {dict[str, Any]: JsonType}


class SloEvaluation(SloBase):
    """One evaluation of one SLO (and one segment of it) at one instant: the history the dashboards plot.

    ``segment`` is the canonical ``key=value,...`` text of the segment's labels (empty when unsegmented);
    ``report`` is the full JSON report; the columns beside it are what charts and alerts filter on.
    """

    __tablename__ = "slo_evaluations"

    slo: Mapped[str] = mapped_column(Text, primary_key=True)
    segment: Mapped[str] = mapped_column(Text, primary_key=True)
    at_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sli: Mapped[float | None] = mapped_column(Float)
    remaining_fraction: Mapped[float | None] = mapped_column(Float)
    burn_1h: Mapped[float | None] = mapped_column(Float)
    burn_6h: Mapped[float | None] = mapped_column(Float)
    page: Mapped[bool] = mapped_column(Boolean)
    ticket: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict[str, Any]]

    __table_args__ = (Index(None, "at_unix_nano"),)


class SloCount(SloBase):
    """Per-minute good and total events of one SLO segment, materialised from the rollups (and, for span
    threshold SLIs, the raw spans), so that a 30-day budget reads one row per minute instead of every series.

    ``slo`` is the SLO name plus a fingerprint of its indicator and segmentation (a changed definition gets
    fresh counts); ``bucket_start_unix_nano`` is the minute's start, its events the step that ends a minute later.
    """

    __tablename__ = "slo_counts"

    slo: Mapped[str] = mapped_column(Text, primary_key=True)
    segment: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket_start_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    good: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)


class SloCountMark(SloBase):
    """How far the ``slo_counts`` rows of one key are exact: the minutes starting in ``[lo_unix_nano,
    hi_unix_nano)`` hold every change to the store numbered below ``marker`` (the collector's write sequence, see
    ``Store.touched_since``). Minutes changed since are recounted at the next refresh; minutes outside the span are
    counted afresh when a window first reaches them.
    """

    __tablename__ = "slo_count_marks"

    slo: Mapped[str] = mapped_column(Text, primary_key=True)
    lo_unix_nano: Mapped[int] = mapped_column(BigInteger)
    hi_unix_nano: Mapped[int] = mapped_column(BigInteger)
    marker: Mapped[int] = mapped_column(BigInteger)
