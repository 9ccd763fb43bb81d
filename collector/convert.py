"""Pure conversion of telemetry into store rows: the public face of four small modules.

Three inputs meet one output: OTLP protobuf requests (also OTLP/JSON, which is parsed to
protobuf first: :mod:`qfleet.collector.otlp`), the OpenTelemetry SDK's ``ReadableSpan`` and
``MetricsData``, and the columnar :class:`SpanColumns` of bulk producers. Each becomes a
:class:`TelemetryBatch` (:mod:`qfleet.collector.rows`) of plain tuples in the store's column
order; spans are converted in :mod:`qfleet.collector.span_rows`, metric points in
:mod:`qfleet.collector.metric_rows`. Nothing here touches I/O.

Invalid items (bad ids, missing timestamps, end before start) are counted and described
in the batch, never raised: the receiver reports them as OTLP partial success.
"""

from __future__ import annotations

from qfleet.collector.metric_rows import MetricSink, from_metrics_data, from_metrics_request, prometheus_name
from qfleet.collector.otlp import DecodeFailure, decode_metrics_request, decode_trace_request
from qfleet.collector.rows import (
    EVENT_COLUMNS,
    LINK_COLUMNS,
    SERIES_COLUMNS,
    SPAN_COLUMNS,
    ResourceRow,
    SeriesRow,
    TelemetryBatch,
    fingerprint,
    json_safe,
    resource_row,
)
from qfleet.collector.span_rows import (
    SdkSpanConverter,
    SdkSpanRows,
    SpanColumns,
    from_readable_spans,
    from_trace_request,
)

__all__ = [
    "EVENT_COLUMNS",
    "LINK_COLUMNS",
    "SERIES_COLUMNS",
    "SPAN_COLUMNS",
    "DecodeFailure",
    "MetricSink",
    "ResourceRow",
    "SdkSpanConverter",
    "SdkSpanRows",
    "SeriesRow",
    "SpanColumns",
    "TelemetryBatch",
    "decode_metrics_request",
    "decode_trace_request",
    "fingerprint",
    "from_metrics_data",
    "from_metrics_request",
    "from_readable_spans",
    "from_trace_request",
    "json_safe",
    "prometheus_name",
    "resource_row",
]
