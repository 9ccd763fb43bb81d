"""qfleet's telemetry store and collector.

Every trace and metric of the fleet lands here, through one of three paths that end in
the same transaction-per-batch write (:meth:`Store.write`): in-process OpenTelemetry
exporters, the OTLP/HTTP receiver, and the columnar bulk API (:class:`SpanColumns`).
"""

from qfleet.collector.convert import SpanColumns, TelemetryBatch
from qfleet.collector.migrate import current_revisions, downgrade, head_revisions, upgrade
from qfleet.collector.schema import PROMOTED_ATTRIBUTES, ROLLUP_STEP_NS
from qfleet.collector.settings import Settings, SettingsError, load_token
from qfleet.collector.store import (
    GaugeValue,
    PruneResult,
    RollupResult,
    Store,
    StoreError,
    WriteResult,
    open_engine,
)

__all__ = [
    "GaugeValue",
    "PROMOTED_ATTRIBUTES",
    "PruneResult",
    "ROLLUP_STEP_NS",
    "RollupResult",
    "Settings",
    "SettingsError",
    "SpanColumns",
    "Store",
    "StoreError",
    "TelemetryBatch",
    "WriteResult",
    "current_revisions",
    "downgrade",
    "head_revisions",
    "load_token",
    "open_engine",
    "upgrade",
]
