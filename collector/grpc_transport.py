"""The receiver's gRPC transport: OTLP/gRPC in on grpcio, decoded batches out to a :class:`Consumer`.

Serves ``TraceService/Export`` and ``MetricsService/Export`` of ``opentelemetry.proto.collector.*.v1``
with the same token, limits, decoding and ack-after-commit as the HTTP transport. The methods are
registered with raw bytes in and out, so a request goes through :func:`~qfleet.collector.decode.decode_body`
exactly as an OTLP/HTTP protobuf body does (same limits, same partial success), and the answer is
:func:`~qfleet.collector.decode.export_response`. Per RPC, in order:

* the bearer token in the ``authorization`` metadata, compared in constant time (else
  ``UNAUTHENTICATED``), before the message is read;
* admission against the requests in flight (``max_inflight``; shared with the HTTP transport when
  the :class:`~qfleet.collector.http_app.Admission` is passed in), else ``UNAVAILABLE``;
* the message must arrive within ``body_timeout_s`` (else the RPC is cancelled) and be at most
  ``max_body_bytes``, also once gzip-decompressed (gRPC refuses it with ``RESOURCE_EXHAUSTED``);
  its size is then held against ``max_inflight_bytes`` (else ``UNAVAILABLE``);
* decoding; a malformed message is ``INVALID_ARGUMENT``;
* the consumer's outcome: committed → the ``Export*ServiceResponse`` (with ``partial_success`` when
  items were rejected); retryable → ``UNAVAILABLE``; the database refused the data →
  ``INVALID_ARGUMENT``; more items than the whole queue → ``RESOURCE_EXHAUSTED`` without retry info.

Every ``UNAVAILABLE`` carries a ``google.rpc.RetryInfo`` of ``retry_after_s`` twice: in the status
details (``grpc-status-details-bin``, as the OTLP specification asks) and as the
``google.rpc.retryinfo-bin`` trailer, which is where the OpenTelemetry Python exporter reads it.

Each RPC is counted in ``qfleet_collector_requests_total`` with the method as ``path`` and the
status name as ``code``; ``CANCELLED`` counts RPCs whose message never arrived (the client went
away, the body deadline passed). A message over ``max_body_bytes`` is refused by gRPC itself with
``RESOURCE_EXHAUSTED`` to the client; the application sees at most a cancelled call (grpcio may not invoke
the handler at all), so such refusals are not reliably counted here.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from qfleet.collector.consumer import (
    POINTS,
    REASON_TEXT,
    SPANS,
    Consumer,
    Outcome,
    QueueingConsumer,
    SignalName,
)
from qfleet.collector.decode import (
    DecodeFailure,
    clip,
    decode_body,
    export_response,
    rejected_items,
    rejection_message,
)
from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.http_app import Admission
from qfleet.collector.otlp import MEDIA_PROTOBUF
from qfleet.collector.rows import TelemetryBatch
from qfleet.collector.transport import ListenError, TransportConfig

__all__ = ["METHODS", "GrpcTransport"]

logger = logging.getLogger(__name__)

#: The OTLP/gRPC methods served, and the signal each carries.
METHODS: dict[str, SignalName] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": SPANS,
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": POINTS,
}
# Threads beyond max_inflight, so that an RPC over the limits is refused at once instead of
# waiting for a thread held by an admitted RPC (which may wait up to ack_timeout_s for its commit).
_SPARE_THREADS = 4
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class _Reply:
    """The end of one RPC: a status code, and the response (``OK``) or the message and whether to retry."""

    code: Any  # grpc.StatusCode
    body: bytes = b""
    message: str = ""
    retry: bool = False


def _authorized(metadata: Sequence[Any], token: bytes) -> bool:
    """Whether the ``authorization`` metadata carries ``Bearer <token>`` (constant-time compare)."""
    value = next((m.value for m in metadata if m.key == "authorization"), "")
    scheme, _, credentials = str(value).strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode("latin-1", "replace"), token)


class _Handlers:
    """grpcio's generic-handler protocol (``service``) over :data:`METHODS`; counts unknown methods."""

    def __init__(self, transport: GrpcTransport) -> None:
        self._metrics = transport.metrics
        self._known = {m: grpc.stream_unary_rpc_method_handler(transport.serve_rpc(s)) for m, s in METHODS.items()}

    def service(self, details: Any) -> Any:
        handler = self._known.get(details.method)
        if handler is None:
            self._metrics.request("other", "UNIMPLEMENTED")  # gRPC answers it
        return handler


class GrpcTransport:
    """Serves OTLP/gRPC and hands each decoded batch to ``consumer``; see the module docstring.

    Args:
        consumer: where decoded batches go; its :class:`Outcome` decides the status.
        config: the same :class:`TransportConfig` as the HTTP transport's, with the gRPC port.
            ``max_connections`` bounds the RPCs served or waiting for a thread (beyond it gRPC
            itself answers ``RESOURCE_EXHAUSTED``); ``header_timeout_s``, ``keep_alive_s`` and
            ``ready_timeout_s`` do not apply.
        metrics: where RPCs, decoded, rejected and refused items are counted.
        admission: the requests and bytes in flight; pass the HTTP transport's so that both share
            one budget (a new one of ``max_inflight``/``max_inflight_bytes`` by default).
    """

    def __init__(self, consumer: Consumer, config: TransportConfig, *, metrics: ReceiverMetrics | None = None,
                 admission: Admission | None = None) -> None:
        self.consumer = consumer
        self.config = config
        self.metrics = metrics if metrics is not None else ReceiverMetrics()
        self.admission = admission or Admission(max_requests=config.max_inflight,
                                                max_bytes=config.max_inflight_bytes)
        self._token = config.token.encode()
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=config.retry_after_s))
        self._retry_any = any_pb2.Any()
        self._retry_any.Pack(retry)
        self._retry_bin = retry.SerializeToString()
        self._pool: futures.ThreadPoolExecutor | None = None
        self._server: Any = None
        self._address: tuple[str, int] | None = None
        self._serving = False
        self._stopped: threading.Event | None = None

    # -- lifecycle ---------------------------------------------------------------

    def bind(self) -> None:
        """Create the server and bind its port (RPCs are served from :meth:`start`).

        Raises:
            RuntimeError: already bound.
            ListenError: the address cannot be bound; one line naming it and the fix.
        """
        if self._server is not None:
            raise RuntimeError("GrpcTransport.bind() called twice; create a new transport instead")
        c = self.config
        self._pool = futures.ThreadPoolExecutor(c.max_inflight + _SPARE_THREADS, thread_name_prefix="qfleet-grpc")
        # so_reuseport=0: grpc sets SO_REUSEPORT by default, which lets a second server bind a taken port.
        options = [("grpc.max_receive_message_length", c.max_body_bytes), ("grpc.so_reuseport", 0)]
        self._server = grpc.server(self._pool, handlers=[_Handlers(self)], options=options,
                                   maximum_concurrent_rpcs=c.max_connections)
        where = f"[{c.host}]:{c.port}" if ":" in c.host else f"{c.host}:{c.port}"
        try:
            port = self._server.add_insecure_port(where)
        except RuntimeError:
            port = 0
        if not port:
            self._pool.shutdown(wait=False)
            raise ListenError(f"cannot listen for OTLP/gRPC on {where}: the port is taken or the address is not "
                              "of this machine; stop what holds it or choose another gRPC port (--grpc-port; 0 picks a free one)")
        self._address = (c.host, int(port))

    def start(self) -> None:
        """Bind (unless :meth:`bind` did) and serve on grpcio's threads; returns once serving."""
        if self._server is None:
            self.bind()
        if self._serving:
            raise RuntimeError("GrpcTransport.start() called twice; create a new transport instead")
        self._server.start()
        self._serving = True

    @property
    def started(self) -> bool:
        """Whether the port is bound."""
        return self._server is not None

    @property
    def serving(self) -> bool:
        """Whether RPCs are served (started and not closed)."""
        return self._serving

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when configured with port 0."""
        if self._address is None:
            raise RuntimeError("the gRPC address is known after start()")
        return self._address

    def close(self, grace_s: float) -> None:
        """Refuse new RPCs; those in flight may finish within ``grace_s``, then gRPC cancels them."""
        self.admission.close()
        self._serving = False
        if self._server is not None and self._stopped is None:
            self._stopped = self._server.stop(grace=max(grace_s, 0.0))

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no request is in flight or ``time.monotonic()`` passes ``deadline``; ``True`` if idle."""
        return self.admission.wait_idle(deadline)

    def disconnect(self, timeout_s: float = 10.0) -> None:
        """Wait (up to ``timeout_s``) for gRPC to end every RPC, then release the threads."""
        if self._stopped is not None and not self._stopped.wait(timeout_s):
            logger.error("gRPC server still ending RPCs after stop; abandoning them")
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """:meth:`close`, let RPCs in flight finish (up to ``timeout_s``), :meth:`disconnect`."""
        self.close(timeout_s)
        self.wait_idle(time.monotonic() + timeout_s)
        self.disconnect()

    # -- one RPC -------------------------------------------------------------------

    def serve_rpc(self, signal: SignalName) -> Any:
        """The grpcio behaviour of the Export method of ``signal``: (request iterator, context) → bytes."""
        path = next(m for m, s in METHODS.items() if s == signal)

        def export(requests: Iterator[bytes], context: Any) -> bytes:
            reply = self._export(signal, requests, context)
            self.metrics.request(path, reply.code.name)
            if reply.code is grpc.StatusCode.OK:
                return reply.body
            if reply.code is not grpc.StatusCode.CANCELLED:  # a cancelled RPC has ended already
                self._fail(context, reply)
            return b""

        return export

    def _fail(self, context: Any, reply: _Reply) -> None:
        text = clip(reply.message)
        status = status_pb2.Status(code=reply.code.value[0], message=text)
        trailers: list[tuple[str, bytes]] = []
        if reply.retry:
            status.details.append(self._retry_any)
            trailers.append((_RETRY_INFO_KEY, self._retry_bin))
        trailers.append((_DETAILS_KEY, status.SerializeToString()))
        context.set_trailing_metadata(tuple(trailers))
        context.abort(reply.code, text)  # raises; grpcio sends the status with the trailers

    def _export(self, signal: SignalName, requests: Iterator[bytes], context: Any) -> _Reply:
        if not _authorized(context.invocation_metadata(), self._token):
            return _Reply(grpc.StatusCode.UNAUTHENTICATED, message="missing or wrong bearer token "
                          "(send the metadata authorization: Bearer <token>)")
        refusal = self.admission.enter(0)  # the size is known once the message is read
        if refusal is not None:
            self.metrics.refused(signal, refusal, 1)  # before decoding: counted as one request
            return _Reply(grpc.StatusCode.UNAVAILABLE, message=REASON_TEXT.get(refusal, refusal), retry=True)
        held = 0
        try:
            body = self._receive(signal, requests, context)
            if isinstance(body, _Reply):
                return body
            if not self.admission.grow(0, len(body)):
                self.metrics.refused(signal, "inflight_bytes", 1)
                return _Reply(grpc.StatusCode.UNAVAILABLE, retry=True, message=(
                    f"message does not fit the bytes in flight now (max_inflight_bytes="
                    f"{self.config.max_inflight_bytes}); retry later"))
            held = len(body)
            return self._process(signal, body, context)
        finally:
            self.admission.leave(held)

    def _receive(self, signal: SignalName, requests: Iterator[bytes], context: Any) -> bytes | _Reply:
        """The request message within ``body_timeout_s``, or how the RPC ended without it."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            context.cancel()  # wakes the read below

        timer = threading.Timer(self.config.body_timeout_s, expire)
        timer.daemon = True
        timer.start()
        try:
            return bytes(next(requests))
        except StopIteration:  # half-closed with no message, or gRPC refused an inflated one
            return _Reply(grpc.StatusCode.INVALID_ARGUMENT, message="no request message (or one over "
                          f"max_body_bytes={self.config.max_body_bytes} once decompressed)")
        except grpc.RpcError:
            if expired.is_set():
                self.metrics.refused(signal, "body_timeout", 1)
            return _Reply(grpc.StatusCode.CANCELLED)
        finally:
            timer.cancel()

    def _process(self, signal: SignalName, body: bytes, context: Any) -> _Reply:
        """Decode ``body``, hand it over, and answer once the consumer has spoken."""
        try:
            batch = decode_body(signal, body, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=self.config.max_body_bytes,
                                limits=self.config.limits)
        except DecodeFailure as err:
            self.metrics.rejected(signal, "malformed")
            return _Reply(grpc.StatusCode.INVALID_ARGUMENT, message=str(err))
        del body
        items, rejected = batch.item_count, rejected_items(batch, signal)
        self.metrics.received(signal, items)
        if rejected:
            self.metrics.rejected(signal, "invalid", rejected)
        message = rejection_message(batch, signal)
        outcome = self._hand_over(batch, signal, context) if items else None
        if outcome is None or outcome.committed:
            return _Reply(grpc.StatusCode.OK, body=export_response(signal, False, rejected, message))
        text = outcome.message or REASON_TEXT[outcome.reason]
        if outcome.retryable:
            self.metrics.refused(signal, outcome.reason, items)
            return _Reply(grpc.StatusCode.UNAVAILABLE, message=text, retry=True)
        self.metrics.rejected(signal, outcome.reason, items)
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if outcome.reason == "too_large" else \
            grpc.StatusCode.INVALID_ARGUMENT
        return _Reply(code, message=text)

    def _hand_over(self, batch: TelemetryBatch, signal: SignalName, context: Any) -> Outcome:
        """The consumer's outcome; a queueing consumer is left as soon as the client is gone."""
        consumer = self.consumer
        if not isinstance(consumer, QueueingConsumer):
            return consumer.consume(batch, signal)
        answered = threading.Event()
        pending = consumer.submit(batch, signal, answered.set)
        if isinstance(pending, Outcome):
            return pending
        context.add_callback(answered.set)  # the RPC ended (deadline, cancel): stop waiting
        answered.wait(consumer.ack_timeout_s)
        outcome = pending.result()
        return outcome if outcome is not None else consumer.abandon(pending)
