"""The OTLP receiver: OTLP/HTTP (``POST /v1/traces``, ``/v1/metrics``) and, if configured, OTLP/gRPC into the store.

A pipeline in the OpenTelemetry Collector's shape, each stage in its own module::

    HttpTransport ──TelemetryBatch──▶ BatchQueue ──tickets──▶ StoreWriter ──▶ Store
    (transport.py:                    (batcher.py:            (writer.py: one thread,
     auth, limits, gzip,               bounded in items,       coalesced transactions,
     decode.py, status codes)          503 when full)          ack after commit)
    GrpcTransport ──────────────────▶ (the same queue)        RollupScheduler (rollups.py)
    (grpc_transport.py: same token, limits, decode and ack; one in-flight budget with HTTP)
    GET /healthz, GET /metrics ◀── ReceiverMetrics + FleetSeriesCollector (exposition.py)

The transport talks to the queue only through the :class:`~qfleet.collector.consumer.Consumer`
protocol. A request is acknowledged with 200 **only after its rows are committed**; when
the queue, the requests or the request bytes in flight are at their limit, or the write
fails, the client gets 503 with ``Retry-After`` and resends (writes are idempotent); over gRPC,
``OK`` after commit and ``UNAVAILABLE`` with a ``RetryInfo`` of the same delay.

``/healthz`` (:meth:`Receiver.health`) says whether the receiver can do its job: 503 while
the writer thread is down or the last write failed for a reason other than its data (the
database unreachable, read-only, its schema missing). ``/readyz`` (:meth:`Receiver.readiness`)
says whether to send it traffic now: 503 unless started, healthy, the database answers and
the queue is below its high-water mark (:data:`READY_QUEUE_FRACTION` of ``queue_items``), and the
gRPC transport, when configured, serves.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from qfleet.collector import span_rows
from qfleet.collector.batcher import BatchQueue
from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.grpc_transport import GrpcTransport
from qfleet.collector.http_app import ExtraRoute
from qfleet.collector.limits import Limits
from qfleet.collector.rollups import RollupScheduler
from qfleet.collector.store import Store
from qfleet.collector.transport import (
    MIB,
    HttpTransport,
    TransportConfig,
    check_budget,
    check_count,
    check_listen,
    check_seconds,
)
from qfleet.collector.writer import StoreWriter, WalCheckpointer, describe_error

__all__ = ["READY_QUEUE_FRACTION", "Receiver", "ReceiverConfig"]

logger = logging.getLogger(__name__)

# Beyond the drain deadline, how long stop() still waits for a writer stuck in one transaction.
_WRITER_GRACE_S = 5.0
#: ``/readyz`` answers 503 once the queue holds this fraction of ``queue_items``: a load
#: balancer sends elsewhere before clients start getting 503 for a full queue.
READY_QUEUE_FRACTION = 0.8


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverConfig:
    """Limits and addresses of one :class:`Receiver`.

    Args:
        host, port: listen address; port 0 picks a free port (see :attr:`Receiver.address`).
        grpc_port: OTLP/gRPC port on the same host (4317 is OTLP's), ``None`` for none; 0 picks a
            free port (see :attr:`Receiver.grpc_address`). gRPC shares the token, the limits, the
            in-flight budgets and the queue with HTTP.
        token: the bearer token clients must send (``Authorization: Bearer <token>``).
        max_body_bytes: largest request body, enforced on Content-Length and again after
            gzip decompression (413 beyond it).
        queue_items: spans plus points waiting for (or being written to) the database;
            a request that would exceed it gets 503 with ``Retry-After``.
        max_inflight: requests being read, decoded or waiting for their commit at once.
        max_inflight_bytes: request-body bytes (decompressed once known) those requests hold at
            once; decoding costs up to ~20 times the body, so this bounds memory (503 beyond it).
            At least ``max_body_bytes``.
        max_connections: HTTP connections served at once (a request on one more gets 503).
        body_timeout_s: a request's whole body must arrive within this (else 408).
        header_timeout_s: a request head must arrive within this after the connection opens or
            the previous answer (else the connection closes).
        keep_alive_s: idle keep-alive connections are closed after this (whole seconds).
        ready_timeout_s: the longest ``/readyz`` waits for the database.
        max_batch_items: the writer coalesces queued requests into one transaction up to this.
        ack_timeout_s: how long a request waits for its commit before answering 503.
        retry_after_s: the ``Retry-After`` value of 503 answers.
        rollup_interval_s: least time between two rollup refreshes by the writer.
        rollup_settle_s: a minute bucket is rolled up once no write touched it for this
            long (at stop: all of them), so live minutes are not rescanned per request.
        limits: what one request may make the receiver build (attributes per item and per
            request, value lengths, events and links per span); see :class:`Limits`.

    Raises:
        ValueError: a field is out of range; the message names it and the fix.

    Examples:
        >>> ReceiverConfig(token="t", queue_items=0)
        Traceback (most recent call last):
        ...
        ValueError: ReceiverConfig.queue_items=0: must be an integer >= 1
    """

    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int | None = None
    token: str
    max_body_bytes: int = 20 * 1024 * 1024
    queue_items: int = 200_000
    max_inflight: int = 64
    max_inflight_bytes: int = 32 * MIB
    max_connections: int = 512
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5
    ready_timeout_s: float = 2.0
    max_batch_items: int = 20_000
    ack_timeout_s: float = 30.0
    retry_after_s: int = 1
    rollup_interval_s: float = 1.0
    rollup_settle_s: float = 2.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        owner = "ReceiverConfig"
        check_listen(owner, self.host, self.port, self.token)
        _check_grpc_port(self.port, self.grpc_port)
        for name, least in (("max_body_bytes", 1), ("queue_items", 1), ("max_inflight", 1),
                            ("max_inflight_bytes", 1), ("max_connections", 1), ("keep_alive_s", 1),
                            ("max_batch_items", 1), ("retry_after_s", 0)):
            check_count(owner, name, getattr(self, name), least)
        for name in ("ack_timeout_s", "body_timeout_s", "header_timeout_s", "ready_timeout_s"):
            check_seconds(owner, name, getattr(self, name), positive=True)
        check_budget(owner, self.max_body_bytes, self.max_inflight_bytes)
        check_seconds(owner, "rollup_interval_s", self.rollup_interval_s, positive=False)
        check_seconds(owner, "rollup_settle_s", self.rollup_settle_s, positive=False)

    @property
    def transport(self) -> TransportConfig:
        """The part of this configuration the HTTP transport uses."""
        return TransportConfig(host=self.host, port=self.port, token=self.token,
                               max_body_bytes=self.max_body_bytes, max_inflight=self.max_inflight,
                               max_inflight_bytes=self.max_inflight_bytes, max_connections=self.max_connections,
                               body_timeout_s=self.body_timeout_s, header_timeout_s=self.header_timeout_s,
                               keep_alive_s=self.keep_alive_s, ready_timeout_s=self.ready_timeout_s,
                               retry_after_s=self.retry_after_s, limits=self.limits)

    @property
    def grpc_transport(self) -> TransportConfig | None:
        """What the gRPC transport uses: the HTTP transport's configuration on ``grpc_port`` (``None``: off)."""
        return None if self.grpc_port is None else dataclasses.replace(self.transport, port=self.grpc_port)


def _check_grpc_port(port: int, grpc_port: object) -> None:
    """``grpc_port`` is ``None`` or a port other than the HTTP one.

    >>> _check_grpc_port(4318, 4318)
    Traceback (most recent call last):
    ...
    ValueError: ReceiverConfig.grpc_port=4318 is also the HTTP port: use another one, e.g. 4317 (0 picks a free one)
    """
    if grpc_port is None:
        return
    if isinstance(grpc_port, bool) or not isinstance(grpc_port, int) or not 0 <= grpc_port <= 65535:
        raise ValueError(f"ReceiverConfig.grpc_port={grpc_port!r}: use 0-65535 (0 picks a free port), or leave "
                         "it out to serve OTLP/HTTP only")
    if grpc_port and grpc_port == port:
        raise ValueError(f"ReceiverConfig.grpc_port={grpc_port} is also the HTTP port: use another one, e.g. 4317 "
                         "(0 picks a free one)")


class Receiver:
    """OTLP/HTTP (and OTLP/gRPC) receiver writing into ``store``; see the module docstring.

    Args:
        store: the (migrated) store; only the writer thread writes to it.
        config: addresses and limits.
        registry: where the receiver's metrics are registered (a new one by default; never
            the global registry, so several receivers can live in one process).
        clock: monotonic ns, used for write durations and the rollup interval.
        extra_routes: ``POST`` endpoints of packages above the collector served on the HTTP port with the same
            token and limits (``qfleet serve`` mounts Alertmanager's webhook intake this way).
    """

    def __init__(self, store: Store, config: ReceiverConfig, *, registry: CollectorRegistry | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, extra_routes: Sequence[ExtraRoute] = ()) -> None:
        self.store = store
        self.config = config
        self.metrics = ReceiverMetrics(registry)
        self.registry = self.metrics.registry
        self._rollups = RollupScheduler(store, interval_s=config.rollup_interval_s,
                                        settle_s=config.rollup_settle_s, clock=clock, metrics=self.metrics)
        self._queue = BatchQueue(capacity_items=config.queue_items, ack_timeout_s=config.ack_timeout_s,
                                 metrics=self.metrics, writer_alive=lambda: self._writer.alive)
        self._checkpoints = WalCheckpointer(store)
        self._writer = StoreWriter(store, self._queue, self._rollups, self.metrics,
                                   max_batch_items=config.max_batch_items, clock=clock,
                                   checkpoints=self._checkpoints)
        self._transport = HttpTransport(self._queue, config.transport, metrics=self.metrics, health=self.health,
                                        ready=self.readiness, extra_routes=extra_routes)
        grpc_config = config.grpc_transport
        # One in-flight budget for both transports: max_inflight and max_inflight_bytes bound the receiver.
        self._grpc = None if grpc_config is None else GrpcTransport(
            self._queue, grpc_config, metrics=self.metrics, admission=self._transport.app.admission)
        self._stopped = False
        m = self.metrics
        m.gauge("qfleet_collector_queue_items", "Spans and points queued for or being written to the database",
                lambda: self._queue.items)
        m.constant("qfleet_collector_queue_capacity_items", "Largest allowed queue_items (beyond it: 503)",
                   config.queue_items)
        m.gauge("qfleet_collector_writer_up", "1 while the writer thread is alive",
                lambda: 1.0 if self._writer.alive else 0.0)
        m.gauge("qfleet_collector_writer_consecutive_failures", "Write transactions failed for a reason "
                "other than their data since the last commit (0 when healthy)",
                lambda: self._writer.state.consecutive_failures)
        m.add_fleet_series(store)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Bind, start the writer thread and the HTTP (and gRPC) threads; returns once listening.

        Raises:
            RuntimeError: already started.
            ListenError: the address cannot be bound (e.g. the port is in use); an ``OSError``
                whose message is one line naming host:port and the fix.
        """
        if self._transport.started:
            raise RuntimeError("Receiver.start() called twice; create a new Receiver instead")
        self._transport.bind()  # first: if the port is taken, nothing else has started
        if self._grpc is not None:
            try:
                self._grpc.bind()
            except BaseException:
                self._transport.close()  # releases the HTTP port
                raise
        self._rollups.start()
        self._checkpoints.start()
        self._writer.start()
        self._transport.start()
        host, port = self.address
        logger.info("OTLP/HTTP receiver listening on %s:%s", host, port)
        if not span_rows.COMPILED:
            logger.warning("the compiled OTLP span decoder is not installed (built without a C compiler?): every "
                           "protobuf request takes the pure-Python path, about 5x the CPU per span")
        if self._grpc is not None:
            self._grpc.start()
            logger.info("OTLP/gRPC receiver listening on %s:%s", *self._grpc.address)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when configured with port 0."""
        if not self._transport.started:
            raise RuntimeError("Receiver.address is known after start()")
        return self._transport.address

    @property
    def grpc_address(self) -> tuple[str, int] | None:
        """The bound gRPC (host, port), ``None`` when ``grpc_port`` is; the real port for port 0."""
        if self._grpc is None:
            return None
        if not self._grpc.started:
            raise RuntimeError("Receiver.grpc_address is known after start()")
        return self._grpc.address

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Stop accepting, commit what is queued, stop the writer, refresh rollups once.

        Requests in flight get their answer first. If the database does not take the
        queue within ``timeout_s`` (default ``ack_timeout_s``), the rest is discarded and
        counted in ``qfleet_collector_dropped_total``. Idempotent.
        """
        if not self._transport.started or self._stopped:
            return
        self._stopped = True
        wait = self.config.ack_timeout_s if timeout_s is None else timeout_s
        self._transport.close()
        if self._grpc is not None:
            self._grpc.close(wait)
        deadline = time.monotonic() + wait
        # Handlers waiting for their commit still need the writer: let them finish (both transports:
        # they share the admission that wait_idle watches).
        self._transport.wait_idle(deadline)
        self._queue.close(drain_deadline=deadline)
        # The writer may be stuck in one slow transaction; bound the wait.
        if not self._writer.join(max(deadline - time.monotonic(), 0.0) + _WRITER_GRACE_S):
            logger.error("writer thread still busy with the database after stop; abandoning it")
        self._checkpoints.stop(_WRITER_GRACE_S)
        self._transport.disconnect()
        if self._grpc is not None:
            self._grpc.disconnect()
        logger.info("OTLP receiver stopped")

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` answers: ``status`` ``ok``, or ``unavailable`` with the ``reason``.

        Unavailable while the writer thread is down or the last write failed for a reason other
        than its data (e.g. the database is unreachable); ``ok`` again once a write commits.
        """
        w = self._writer.state
        reason = ""
        if not w.alive:
            reason = "the writer thread is not running" + ("" if self._stopped else " (see the log)")
        elif w.consecutive_failures:
            reason = (f"the last {w.consecutive_failures} write(s) failed: {w.last_error}; clients are "
                      "told to retry")
        out: dict[str, Any] = {
            "status": "unavailable" if reason else "ok",
            "writer_alive": w.alive,
            "consecutive_write_failures": w.consecutive_failures,
            "queue_items": self._queue.items,
            "queue_capacity_items": self.config.queue_items,
            "inflight_requests": self._transport.inflight,
            "inflight_bytes": self._transport.inflight_bytes,
        }
        if self._grpc is not None:
            out["grpc_serving"] = self._grpc.serving
        if reason:
            out["reason"] = reason
        if w.last_error:
            out["last_write_error"] = w.last_error
        return out

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` answers: ``ok`` only when started, healthy, the database answers
        ``SELECT 1`` and the queue is below ``READY_QUEUE_FRACTION`` of its capacity; else
        ``unavailable`` with the ``reasons``. Asks the database: call it off the event loop."""
        reasons: list[str] = []
        if not self._transport.started or self._stopped:
            reasons.append("not started" if not self._stopped else "stopped")
        elif self._grpc is not None and not self._grpc.serving:
            reasons.append("the OTLP/gRPC server is not serving")
        health = self.health()
        if health["status"] != "ok":
            reasons.append(health["reason"])
        high_water = int(self.config.queue_items * READY_QUEUE_FRACTION)
        if self._queue.items >= high_water:
            reasons.append(f"queue holds {self._queue.items} items, at or above its high-water mark "
                           f"{high_water} ({READY_QUEUE_FRACTION:.0%} of queue_items={self.config.queue_items})")
        try:
            with self.store.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as err:  # any failure means: not ready
            reasons.append(f"the database does not answer: {describe_error(err)}")
        return {"status": "unavailable" if reasons else "ok", "reasons": reasons,
                "queue_items": self._queue.items, "queue_high_water_items": high_water}
