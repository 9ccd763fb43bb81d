"""The receiver's Prometheus view: its own health counters and the fleet's latest gauges.

:class:`ReceiverMetrics` owns the ``qfleet_collector_*`` series every pipeline stage counts
into (received, stored, rejected, refused, dropped, requests, write durations) in one
registry that ``GET /metrics`` serves. :class:`FleetGaugeCollector` adds, at each scrape,
the latest stored sample of every gauge the fleet pushed, so Prometheus can scrape the
fleet through the collector.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from qfleet.collector.consumer import REFUSE_REASONS, REJECT_REASONS, SIGNALS, SignalName
from qfleet.collector.store import Store

__all__ = ["CONTENT_TYPE", "FleetGaugeCollector", "ReceiverMetrics"]

logger = logging.getLogger(__name__)

#: Content-Type of :meth:`ReceiverMetrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ReceiverMetrics:
    """The ``qfleet_collector_*`` series, in ``registry`` (a new one by default).

    A new registry also gets the process, platform and GC collectors; a given one does not
    (it may already have them). Never the global registry, so that several receivers can
    live in one process.

    Examples:
        >>> m = ReceiverMetrics(CollectorRegistry())
        >>> m.refused("spans", "queue_full", 40)
        >>> b'qfleet_collector_refused_total{reason="queue_full",signal="spans"} 40.0' in m.exposition()
        True
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.own_registry = registry is None
        reg = self.registry = registry if registry is not None else CollectorRegistry()
        if self.own_registry:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
        received = Counter("qfleet_collector_received_total", "Spans and metric points decoded from "
                           "OTLP requests", ["signal"], registry=reg)
        stored = Counter("qfleet_collector_stored_total", "Spans and metric points committed to the "
                         "database (re-deliveries included)", ["signal"], registry=reg)
        rejected = Counter("qfleet_collector_rejected_total", "Data refused for good: reason=invalid "
                           "counts items rejected by partial success, unstorable items the database "
                           "refused (400), too_large items over the queue size or requests over the "
                           "decompression limit, malformed whole requests answered 400",
                           ["signal", "reason"], registry=reg)
        refused = Counter("qfleet_collector_refused_total", "Items answered 503 (408 for "
                          "reason=body_timeout) for the client to retry; reason=inflight, inflight_bytes, "
                          "body_timeout and stopping count requests (refused before decoding)",
                          ["signal", "reason"], registry=reg)
        dropped = Counter("qfleet_collector_dropped_total", "Queued items discarded without a commit "
                          "when the receiver stopped (should stay 0)", ["signal"], registry=reg)
        self._requests = Counter("qfleet_collector_requests_total", "HTTP requests by path and "
                                 "status code", ["path", "code"], registry=reg)
        self._unparsable = Counter("qfleet_collector_unparsable_requests_total", "Requests whose request "
                                   "line or headers did not parse (answered 400 by the HTTP server, "
                                   "e.g. a malformed Content-Length)", registry=reg)
        self._write_failures = Counter("qfleet_collector_write_failures_total",
                                       "Failed write transactions", registry=reg)
        self._rollup_failures = Counter("qfleet_collector_rollup_failures_total",
                                        "Failed rollup refreshes", registry=reg)
        self._write_seconds = Histogram("qfleet_collector_write_seconds", "Duration of one write "
                                        "transaction", registry=reg, buckets=_WRITE_BUCKETS)
        # Every label set exists from the start, so a scrape shows zeros rather than nothing.
        self._received = {s: received.labels(s) for s in SIGNALS}
        self._stored = {s: stored.labels(s) for s in SIGNALS}
        self._dropped = {s: dropped.labels(s) for s in SIGNALS}
        self._rejected = {(s, r): rejected.labels(s, r) for s in SIGNALS for r in REJECT_REASONS}
        self._refused = {(s, r): refused.labels(s, r) for s in SIGNALS for r in REFUSE_REASONS}

    def received(self, signal: SignalName, n: int) -> None:
        """``n`` items decoded from a request."""
        self._received[signal].inc(n)

    def stored(self, signal: SignalName, n: int) -> None:
        """``n`` items committed."""
        self._stored[signal].inc(n)

    def rejected(self, signal: SignalName, reason: str, n: int = 1) -> None:
        """``n`` items (or one request) refused for good; ``reason`` is one of ``REJECT_REASONS``."""
        self._rejected[signal, reason].inc(n)

    def refused(self, signal: SignalName, reason: str, n: int) -> None:
        """``n`` items (or one request) answered 503; ``reason`` is one of ``REFUSE_REASONS``."""
        self._refused[signal, reason].inc(n)

    def dropped(self, signal: SignalName, n: int) -> None:
        """``n`` queued items discarded at stop."""
        self._dropped[signal].inc(n)

    def request(self, path: str, code: int) -> None:
        """One HTTP answer."""
        self._requests.labels(path, str(code)).inc()

    def unparsable(self) -> None:
        """One request the HTTP parser refused (400 before the application saw it)."""
        self._unparsable.inc()

    def write_failed(self) -> None:
        """One failed write transaction."""
        self._write_failures.inc()

    def rollup_failed(self) -> None:
        """One failed rollup refresh."""
        self._rollup_failures.inc()

    def observe_write(self, seconds: float) -> None:
        """The duration of one committed write transaction."""
        self._write_seconds.observe(seconds)

    def gauge(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        """A gauge read from ``value`` at every scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(value)

    def constant(self, name: str, documentation: str, value: float) -> None:
        """A gauge with a fixed value (a configured limit)."""
        Gauge(name, documentation, registry=self.registry).set(value)

    def add_fleet_gauges(self, store: Store) -> None:
        """Serve the latest value of every fleet gauge stored in ``store`` too."""
        reserved = ("qfleet_collector_", "process_", "python_") if self.own_registry else ("qfleet_collector_",)
        self.registry.register(FleetGaugeCollector(store, reserved_prefixes=reserved))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, without ``*_created`` series."""
        return generate_latest(_WithoutCreated(self.registry))


def _label_name(key: str) -> str:
    """A valid Prometheus label name for ``key``.

    >>> [_label_name(k) for k in ("qfleet.node.id", "9x", "__name__", "")]
    ['qfleet_node_id', '_9x', '_name__', '_']
    """
    name = _LABEL_INVALID.sub("_", key)
    if not name or name[0].isdigit():
        name = "_" + name
    if name.startswith("__"):  # reserved for Prometheus itself
        name = "_" + name.lstrip("_")
    return name


def _label_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


# One family: its help text and its series (label set -> time, labels, value).
_Family = tuple[str, dict[frozenset[tuple[str, str]], tuple[int, dict[str, str], float]]]


class FleetGaugeCollector(Collector):
    """Exposes the latest stored sample of every fleet gauge (``Store.latest_gauges``).

    Names starting with one of ``reserved_prefixes`` are skipped, so that a pushed gauge
    cannot collide with the collector's own metrics. Label names are sanitised; when two
    labels of a series map to the same name, the first wins. A failing query (database not
    migrated or not reachable) is logged and yields nothing.
    """

    def __init__(self, store: Store, *, reserved_prefixes: tuple[str, ...] = ()) -> None:
        self._store = store
        self._reserved = reserved_prefixes

    def collect(self) -> Iterable[Metric]:
        """One query per scrape; a family per metric name."""
        try:
            gauges = self._store.latest_gauges()
        except Exception as err:  # the scrape must still serve the receiver's own metrics
            logger.warning("fleet gauges unavailable (is the database migrated and reachable?): %s", err)
            return []
        families: dict[str, _Family] = {}
        for g in gauges:
            name = g.metric_name
            if not _METRIC_NAME.fullmatch(name) or name.startswith(self._reserved):
                logger.debug("fleet gauge %r skipped: invalid or reserved name", name)
                continue
            help_text = g.description or f"Latest stored value of the fleet gauge {name}"
            _doc, series = families.setdefault(name, (help_text, {}))
            labels: dict[str, str] = {}
            for k, v in g.labels.items():
                labels.setdefault(_label_name(str(k)), _label_value(v))
            key = frozenset(labels.items())
            prev = series.get(key)
            # Sanitising may merge two series into one label set: keep the newer sample.
            if prev is None or g.time_unix_nano >= prev[0]:
                series[key] = (g.time_unix_nano, labels, float(g.value))
        out: list[Metric] = []
        for name, (doc, series) in families.items():
            fam = GaugeMetricFamily(name, doc)
            for _t, labels, value in series.values():
                fam.add_sample(name, labels, value)
            out.append(fam)
        return out


class _WithoutCreated:
    """The registry's metrics minus the ``*_created`` series (noise for Prometheus 2.x scrapes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for m in self._registry.collect():
            if m.type in ("counter", "histogram", "summary"):
                created = m.name + "_created"
                m.samples = [s for s in m.samples if s.name != created]
            yield m
