"""qfleet's telemetry store and collector.

Every trace and metric of the fleet lands here, through one of three paths that end in
the same transaction-per-batch write (:meth:`Store.write`): in-process OpenTelemetry
exporters, the OTLP/HTTP receiver, and the columnar bulk API (:class:`SpanColumns`).

The names below load on first use (lazy_loader), so importing one submodule does not pull in the rest.
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "rows": ["TelemetryBatch"],
    "span_rows": ["SpanColumns"],
    "migrate": ["current_revisions", "downgrade", "head_revisions", "open_existing", "scratch_database", "sqlite_file",
                "upgrade"],
    "receiver": ["Receiver", "ReceiverConfig"],
    "runs": ["Run", "RunOverlapError", "Runs"],
    "schema": ["PROMOTED_ATTRIBUTES", "ROLLUP_STEP_NS"],
    "settings": ["Settings", "SettingsError", "load_token"],
    "store": ["PruneResult", "RollupResult", "Store", "StoreError", "WriteResult", "open_engine"],
    "transport": ["ListenError"],
})

if TYPE_CHECKING:  # the same names, for type checkers (which do not run __getattr__)
    from qfleet.collector.migrate import current_revisions as current_revisions
    from qfleet.collector.migrate import downgrade as downgrade
    from qfleet.collector.migrate import head_revisions as head_revisions
    from qfleet.collector.migrate import open_existing as open_existing
    from qfleet.collector.migrate import scratch_database as scratch_database
    from qfleet.collector.migrate import sqlite_file as sqlite_file
    from qfleet.collector.migrate import upgrade as upgrade
    from qfleet.collector.receiver import Receiver as Receiver
    from qfleet.collector.receiver import ReceiverConfig as ReceiverConfig
    from qfleet.collector.rows import TelemetryBatch as TelemetryBatch
    from qfleet.collector.runs import Run as Run
    from qfleet.collector.runs import RunOverlapError as RunOverlapError
    from qfleet.collector.runs import Runs as Runs
    from qfleet.collector.schema import PROMOTED_ATTRIBUTES as PROMOTED_ATTRIBUTES
    from qfleet.collector.schema import ROLLUP_STEP_NS as ROLLUP_STEP_NS
    from qfleet.collector.settings import Settings as Settings
    from qfleet.collector.settings import SettingsError as SettingsError
    from qfleet.collector.settings import load_token as load_token
    from qfleet.collector.span_rows import SpanColumns as SpanColumns
    from qfleet.collector.store import PruneResult as PruneResult
    from qfleet.collector.store import RollupResult as RollupResult
    from qfleet.collector.store import Store as Store
    from qfleet.collector.store import StoreError as StoreError
    from qfleet.collector.store import WriteResult as WriteResult
    from qfleet.collector.store import open_engine as open_engine
    from qfleet.collector.transport import ListenError as ListenError
