"""Alembic history of the qfleet store (ships inside the wheel; run with ``qfleet db``).

Each package owns its tables and declares them in its own metadata; the history covers all of them.
"""

from __future__ import annotations

from sqlalchemy import MetaData

__all__ = ["target_metadata"]


def target_metadata() -> tuple[MetaData, ...]:
    """The metadata of every package that owns tables (the collector's, the SLO engine's and the alerts'), each
    naming its package in ``info["owner"]``."""
    from qfleet.alerts.schema import AlertsBase
    from qfleet.collector.schema import Base
    from qfleet.slo.schema import SloBase

    return (Base.metadata, SloBase.metadata, AlertsBase.metadata)
