"""The OTLP/HTTP receiver: ``POST /v1/traces`` and ``/v1/metrics`` into the store.

Handler threads (stdlib :class:`~http.server.ThreadingHTTPServer`, HTTP/1.1 keep-alive)
authenticate, bound, decode and convert each request into a
:class:`~collector.convert.TelemetryBatch`, queue it with a ticket and wait. One writer
thread coalesces queued batches into a single :meth:`Store.write_many` transaction and
answers the tickets. A request is acknowledged with 200 **only after its rows are
committed**; when the queue or the number of requests in flight is full, or the write
fails, the client gets 503 with ``Retry-After`` and resends (writes are idempotent).

Also served, without authentication: ``GET /healthz`` (JSON, 503 when the writer thread
is gone) and ``GET /metrics`` (Prometheus text: the receiver's own counters plus the
latest value of every gauge in the store).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from qfleet.collector.convert import (
    DecodeFailure,
    TelemetryBatch,
    decode_metrics_request,
    decode_trace_request,
    from_metrics_request,
    from_trace_request,
)
from qfleet.collector.store import Store

__all__ = ["FleetGaugeCollector", "Receiver", "ReceiverConfig"]

logger = logging.getLogger(__name__)

SPANS = "spans"
POINTS = "metric_points"
_SIGNALS = (SPANS, POINTS)
_PATHS = {"/v1/traces": SPANS, "/v1/metrics": POINTS}
_GET_PATHS = ("/healthz", "/metrics")
_REFUSE_REASONS = ("queue_full", "inflight", "write_error", "ack_timeout", "stopping")
_REJECT_REASONS = ("invalid", "malformed", "too_large", "unstorable")
_MEDIA_JSON = "application/json"
_MEDIA_PROTOBUF = ("application/x-protobuf", "application/protobuf")
_CHUNK = 64 * 1024
# google.rpc.Code of each HTTP status we answer on the OTLP paths.
_RPC_CODE = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 500: 13, 503: 14}
_MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverConfig:
    """Limits and addresses of one :class:`Receiver`.

    Args:
        host, port: listen address; port 0 picks a free port (see :attr:`Receiver.address`).
        token: the bearer token clients must send (``Authorization: Bearer <token>``).
        max_body_bytes: largest request body, enforced on Content-Length and again after
            gzip decompression (413 beyond it).
        queue_items: spans plus points waiting for (or being written to) the database;
            a request that would exceed it gets 503 with ``Retry-After``.
        max_inflight: requests being read, decoded or waiting for their commit at once.
        max_batch_items: the writer coalesces queued requests into one transaction up to this.
        ack_timeout_s: how long a request waits for its commit before answering 503.
        retry_after_s: the ``Retry-After`` value of 503 answers.
        rollup_interval_s: least time between two rollup refreshes by the writer.
        rollup_settle_s: a minute bucket is rolled up once no write touched it for this
            long (at stop: all of them), so live minutes are not rescanned per request.

    Raises:
        ValueError: a field is out of range; the message names it and the fix.
    """

    host: str = "127.0.0.1"
    port: int = 4318
    token: str
    max_body_bytes: int = 20 * 1024 * 1024
    queue_items: int = 200_000
    max_inflight: int = 64
    max_batch_items: int = 20_000
    ack_timeout_s: float = 30.0
    retry_after_s: int = 1
    rollup_interval_s: float = 1.0
    rollup_settle_s: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"ReceiverConfig.host={self.host!r}: give the listen address, e.g. 127.0.0.1")
        if not _is_int(self.port) or not 0 <= self.port <= 65535:
            raise ValueError(f"ReceiverConfig.port={self.port!r}: use 0-65535 (0 picks a free port)")
        if not isinstance(self.token, str) or not self.token:
            raise ValueError("ReceiverConfig.token is empty: pass the bearer token clients must send "
                             "(qfleet reads it from --token-file)")
        if any(c.isspace() or not c.isprintable() for c in self.token):
            raise ValueError("ReceiverConfig.token contains whitespace or control characters: "
                             "use a token such as secrets.token_urlsafe(32)")
        for name, least in (("max_body_bytes", 1), ("queue_items", 1), ("max_inflight", 1),
                            ("max_batch_items", 1), ("retry_after_s", 0)):
            v = getattr(self, name)
            if not _is_int(v) or v < least:
                raise ValueError(f"ReceiverConfig.{name}={v!r}: must be an integer >= {least}")
        for name, positive in (("ack_timeout_s", True), ("rollup_interval_s", False),
                               ("rollup_settle_s", False)):
            v = getattr(self, name)
            if (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                    or v < 0 or (positive and v == 0)):
                raise ValueError(f"ReceiverConfig.{name}={v!r}: must be a finite number of seconds "
                                 f"{'> 0' if positive else '>= 0'}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _TooLarge(Exception):
    """The body exceeds max_body_bytes after decompression."""


def _gunzip(data: bytes, cap: int) -> bytes:
    """Decompress gzip ``data`` (one or more members), refusing output beyond ``cap`` bytes.

    >>> import gzip
    >>> _gunzip(gzip.compress(b"ab") + gzip.compress(b"c"), 3)
    b'abc'
    >>> _gunzip(gzip.compress(b"x" * 100), 99)
    Traceback (most recent call last):
    ...
    qfleet.collector.receiver._TooLarge: 100
    """
    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while True:
                # max_length bounds the output of one call; it is never 0 (0 means unlimited).
                chunk = d.decompress(pending, cap + 1 - total)
                total += len(chunk)
                if total > cap:
                    raise _TooLarge(total)
                out.append(chunk)
                pending = d.unconsumed_tail
                if not pending:
                    break
            if not d.eof:
                raise DecodeFailure("gzip body is truncated (Content-Encoding: gzip)")
            rest = d.unused_data
    except zlib.error as err:
        raise DecodeFailure(f"Content-Encoding is gzip but the body is not valid gzip: {err}") from None
    return b"".join(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _status_body(http_code: int, message: str, as_json: bool) -> bytes:
    """A ``google.rpc.Status`` (code, message) as OTLP/JSON or protobuf.

    Encoded by hand (two fields) so the receiver needs no googleapis-common-protos.

    >>> _status_body(400, "bad", False)
    b'\\x08\\x03\\x12\\x03bad'
    >>> _status_body(400, "bad", True)
    b'{"code":3,"message":"bad"}'
    """
    code = _RPC_CODE.get(http_code, 2)
    if as_json:
        return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()
    msg = message.encode("utf-8", "replace")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def _export_response(signal: str, as_json: bool, rejected: int, message: str) -> bytes:
    """An ``Export*ServiceResponse``; ``partial_success`` only when something was rejected."""
    if as_json:
        if not rejected:
            return b"{}"
        key = "rejectedSpans" if signal == SPANS else "rejectedDataPoints"
        # OTLP/JSON writes 64-bit integers as strings.
        return json.dumps({"partialSuccess": {key: str(rejected), "errorMessage": message}}).encode()
    if signal == SPANS:
        tr = ExportTraceServiceResponse()
        if rejected:
            tr.partial_success.rejected_spans = rejected
            tr.partial_success.error_message = message
        return tr.SerializeToString()
    mr = ExportMetricsServiceResponse()
    if rejected:
        mr.partial_success.rejected_data_points = rejected
        mr.partial_success.error_message = message
    return mr.SerializeToString()


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "..."


def _rejection_message(batch: TelemetryBatch, rejected: int, what: str) -> str:
    shown = batch.errors[:5]
    more = f" (first {len(shown)} shown)" if rejected > len(shown) else ""
    return _clip(f"{rejected} invalid {what} rejected{more}: " + "; ".join(shown))


class _Ticket:
    """One queued request: its batch, and the writer's answer."""

    __slots__ = ("abandoned", "batch", "done", "error", "items", "outcome", "signal")

    def __init__(self, batch: TelemetryBatch, signal: str) -> None:
        self.batch = batch
        self.signal = signal
        self.items = batch.item_count
        self.done = threading.Event()
        self.outcome = "write_error"  # or "ok", or "unstorable" (the data itself was refused)
        self.error = ""
        self.abandoned = False


def _is_data_error(err: BaseException) -> bool:
    """Whether ``err`` blames the rows rather than the database (retrying cannot help).

    DB-API drivers raise ``DataError`` for values out of range (SQLAlchemy wraps it under
    the same name); binding a Python int beyond 64 bits or a string with lone surrogates
    raises ``OverflowError`` / ``UnicodeEncodeError`` (a ``ValueError``) before any SQL runs.
    """
    if isinstance(err, (OverflowError, ValueError)):
        return True
    return any(c.__name__ == "DataError" for c in type(err).__mro__)


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


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
        families: dict[str, tuple[str, dict[frozenset[tuple[str, str]], tuple[int, dict[str, str], float]]]] = {}
        for g in gauges:
            name = g.metric_name
            if not _METRIC_NAME.fullmatch(name) or name.startswith(self._reserved):
                logger.debug("fleet gauge %r skipped: invalid or reserved name", name)
                continue
            help_text = g.description or f"Latest stored value of the fleet gauge {name}"
            doc, series = families.setdefault(name, (help_text, {}))
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    receiver: Receiver

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, OSError):  # the client went away; nothing to answer
            logger.debug("connection from %s ended: %s", client_address, err)
        else:
            logger.exception("unexpected error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qfleet-collector"
    sys_version = ""
    # Headers and body go out in separate writes: without NODELAY, Nagle plus the
    # client's delayed ACK would add ~40 ms to every response.
    disable_nagle_algorithm = True
    # Idle keep-alive connections and stalled uploads are closed after this long.
    timeout = 120.0
    server: _Server

    # -- plumbing ----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.receiver._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.connection, add=False)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # every request is counted in qfleet_collector_requests_total instead

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        self._responded = False
        self._path = self.path.split("?", 1)[0]
        self._as_json = False
        try:
            if self._path in _PATHS:
                if self.command == "POST":
                    self._export(_PATHS[self._path])
                else:
                    self._refuse(405, "use POST", extra=(("Allow", "POST"),))
            elif self._path in _GET_PATHS:
                if self.command == "GET":
                    if self._path == "/healthz":
                        self._healthz()
                    else:
                        self._metrics()
                else:
                    self._refuse(405, "use GET", extra=(("Allow", "GET"),))
            else:
                self._refuse(404, "unknown path; OTLP is at /v1/traces and /v1/metrics, "
                                  "health at /healthz, Prometheus at /metrics")
        except OSError:
            self.close_connection = True  # the client went away mid-request
        except Exception:
            logger.exception("error handling %s %s", self.command, self._path)
            if not self._responded:
                self._status(500, "internal error in the qfleet collector (see its log)", close=True)
            else:
                self.close_connection = True

    def _reply(self, code: int, body: bytes, content_type: str, *, close: bool = False,
               extra: Iterable[tuple[str, str]] = ()) -> None:
        self._responded = True
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        path = self._path if self._path in _PATHS or self._path in _GET_PATHS else "other"
        self.server.receiver._m_requests.labels(path, str(code)).inc()

    def _status(self, code: int, message: str, *, close: bool = False,
                extra: Iterable[tuple[str, str]] = ()) -> None:
        if self._path in _PATHS:
            ctype = _MEDIA_JSON if self._as_json else "application/x-protobuf"
            body = _status_body(code, _clip(message), self._as_json)
        else:
            ctype, body = "text/plain; charset=utf-8", (message + "\n").encode()
        self._reply(code, body, ctype, close=close, extra=extra)

    def _refuse(self, code: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        """Answer without reading the body: discard it when small, else close the connection."""
        n = self._declared_length()
        keep = n is not None and n <= self.server.receiver.config.max_body_bytes and self._discard(n)
        self._status(code, message, close=not keep, extra=extra)
        if not keep:
            self._linger()

    def _declared_length(self) -> int | None:
        if self.headers.get("Transfer-Encoding"):
            return None
        cl = self.headers.get("Content-Length")
        if cl is None:
            return 0 if self.command in ("GET", "HEAD", "DELETE", "OPTIONS") else None
        cl = cl.strip()
        return int(cl) if cl.isdigit() else None

    def _discard(self, n: int) -> bool:
        while n > 0:
            chunk = self.rfile.read(min(n, _CHUNK))
            if not chunk:
                return False
            n -= len(chunk)
        return True

    def _linger(self) -> None:
        # We answered before reading the body. Closing with unread data would reset the
        # connection, and the client could lose our answer: half-close, then discard what
        # still arrives for a bounded time.
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self.connection.recv(_CHUNK):
                pass
        except OSError:
            pass

    # -- endpoints -----------------------------------------------------------------

    def _healthz(self) -> None:
        h = self.server.receiver.health()
        self._reply(200 if h["status"] == "ok" else 503, json.dumps(h).encode() + b"\n", _MEDIA_JSON)

    def _metrics(self) -> None:
        body = generate_latest(_WithoutCreated(self.server.receiver.registry))
        self._reply(200, body, CONTENT_TYPE_PLAIN_0_0_4)

    def handle_expect_100(self) -> bool:
        # Answer a request we will refuse before the client uploads its body.
        self._path = self.path.split("?", 1)[0]
        self._responded = False
        self._as_json = False
        if self.command == "POST" and self._path in _PATHS:
            problem = self._header_problem()
            if problem is not None:
                code, message, extra = problem
                self._status(code, message, close=True, extra=extra)
                return False
        return super().handle_expect_100()

    def _header_problem(self) -> tuple[int, str, tuple[tuple[str, str], ...]] | None:
        """Why an OTLP POST must be refused on its headers alone, or None."""
        cfg = self.server.receiver.config
        content_type = self.headers.get("Content-Type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        self._as_json = media == _MEDIA_JSON
        if not self.server.receiver._authorized(self.headers.get("Authorization")):
            return 401, "missing or wrong bearer token (send Authorization: Bearer <token>)", (
                ("WWW-Authenticate", 'Bearer realm="qfleet"'),)
        if self.headers.get("Transfer-Encoding"):
            return 411, "chunked uploads are not supported; send Content-Length", ()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return 411, "Content-Length is required", ()
        if not cl.strip().isdigit():
            return 400, f"Content-Length {cl!r} is not a non-negative integer", ()
        if int(cl) > cfg.max_body_bytes:
            return 413, f"body of {int(cl)} bytes exceeds max_body_bytes={cfg.max_body_bytes}", ()
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            return 415, f"Content-Encoding {encoding!r} is not supported; use gzip or none", ()
        if not self._as_json and media not in _MEDIA_PROTOBUF:
            return 415, (f"unsupported Content-Type {content_type!r}: send application/x-protobuf "
                         "or application/json"), ()
        return None

    def _export(self, signal: str) -> None:
        r = self.server.receiver
        problem = self._header_problem()
        if problem is not None:
            code, message, extra = problem
            self._refuse(code, message, extra=extra)
            return
        n = int(self.headers["Content-Length"])
        gzipped = (self.headers.get("Content-Encoding") or "identity").strip().lower() != "identity"
        content_type = self.headers.get("Content-Type", "")
        refusal = r._enter()
        if refusal is not None:
            r._refused(signal, refusal, 1)  # before decoding: counted as one request
            self._refuse(503, "too many requests in flight; retry later" if refusal == "inflight"
                         else "the collector is shutting down; retry later", extra=r._retry_after)
            return
        try:
            self._receive(signal, n, content_type, gzipped)
        finally:
            r._leave()

    def _receive(self, signal: str, n: int, content_type: str, gzipped: bool) -> None:
        r = self.server.receiver
        cfg = r.config
        body = self.rfile.read(n) if n else b""
        if len(body) != n:
            self._status(400, f"body ended after {len(body)} of {n} bytes (Content-Length)", close=True)
            return
        try:
            if gzipped:
                body = _gunzip(body, cfg.max_body_bytes)
            if signal == SPANS:
                batch = from_trace_request(decode_trace_request(body, content_type))
            else:
                batch = from_metrics_request(decode_metrics_request(body, content_type))
        except _TooLarge:
            r._m_rejected[signal, "too_large"].inc()
            self._status(413, f"decompressed body exceeds max_body_bytes={cfg.max_body_bytes}")
            return
        except DecodeFailure as err:
            r._m_rejected[signal, "malformed"].inc()
            self._status(400, str(err))
            return
        except RecursionError:
            r._m_rejected[signal, "malformed"].inc()
            self._status(400, "body is nested too deeply to decode")
            return
        del body
        items = batch.item_count
        rejected = batch.rejected_spans if signal == SPANS else batch.rejected_points
        r._m_received[signal].inc(items)
        message = ""
        if rejected:
            r._m_rejected[signal, "invalid"].inc(rejected)
            message = _rejection_message(batch, rejected, "spans" if signal == SPANS else "data points")
        if items > cfg.queue_items:
            r._m_rejected[signal, "too_large"].inc(items)
            self._status(413, f"request holds {items} {signal}, more than the receiver's whole queue "
                              f"(queue_items={cfg.queue_items}); send smaller batches")
            return
        if items:
            outcome, error = r._submit(batch, signal)
            if outcome == "unstorable":
                r._m_rejected[signal, "unstorable"].inc(items)
                self._status(400, f"the database refused this request's data (resending cannot help): "
                                  f"{error}")
                return
            if outcome is not None:
                r._refused(signal, outcome, items)
                self._status(503, {
                    "queue_full": "ingest queue is full (database behind); retry later",
                    "write_error": "database write failed; retry later",
                    "ack_timeout": f"not committed within {cfg.ack_timeout_s} s; retry later "
                                   "(resending is safe)",
                    "stopping": "the collector is shutting down; retry later",
                }[outcome], extra=r._retry_after)
                return
        ctype = _MEDIA_JSON if self._as_json else "application/x-protobuf"
        self._reply(200, _export_response(signal, self._as_json, rejected, message), ctype)


class Receiver:
    """OTLP/HTTP receiver writing into ``store``; see the module docstring.

    Args:
        store: the (migrated) store; only the writer thread writes to it.
        config: addresses and limits.
        registry: where the receiver's metrics are registered (a new one by default; never
            the global registry, so several receivers can live in one process).
        clock: monotonic ns, used for write durations and the rollup interval.
    """

    def __init__(self, store: Store, config: ReceiverConfig, *, registry: CollectorRegistry | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.store = store
        self.config = config
        self._clock = clock
        self._token = config.token.encode()
        self._retry_after = (("Retry-After", str(config.retry_after_s)),)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[_Ticket] = deque()
        self._queued_items = 0  # queued plus being written: what bounds memory
        self._inflight = 0
        self._closing = False
        self._writer_stop = False
        self._drain_deadline = math.inf
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._stopped = False
        self._rollups_dirty = True  # buckets left pending by an earlier run get refreshed too
        self._last_rollup = 0
        self._init_metrics(registry)

    # -- metrics -----------------------------------------------------------------

    def _init_metrics(self, registry: CollectorRegistry | None) -> None:
        own = registry is None
        reg = self.registry = registry if registry is not None else CollectorRegistry()
        if own:
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
        refused = Counter("qfleet_collector_refused_total", "Items answered 503 for the client to "
                          "retry (reason=inflight and stopping count requests: refused before decoding)",
                          ["signal", "reason"], registry=reg)
        dropped = Counter("qfleet_collector_dropped_total", "Queued items discarded without a commit "
                          "when the receiver stopped (should stay 0)", ["signal"], registry=reg)
        self._m_requests = Counter("qfleet_collector_requests_total", "HTTP requests by path and "
                                   "status code", ["path", "code"], registry=reg)
        self._m_write_failures = Counter("qfleet_collector_write_failures_total",
                                         "Failed write transactions", registry=reg)
        self._m_rollup_failures = Counter("qfleet_collector_rollup_failures_total",
                                          "Failed rollup refreshes", registry=reg)
        self._m_write_seconds = Histogram("qfleet_collector_write_seconds", "Duration of one write "
                                          "transaction", registry=reg,
                                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                   0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        Gauge("qfleet_collector_queue_items", "Spans and points queued for or being written to the "
              "database", registry=reg).set_function(lambda: self._queued_items)
        Gauge("qfleet_collector_queue_capacity_items", "Largest allowed queue_items (beyond it: 503)",
              registry=reg).set(self.config.queue_items)
        Gauge("qfleet_collector_inflight_requests", "Requests being read, decoded or waiting for "
              "their commit", registry=reg).set_function(lambda: self._inflight)
        Gauge("qfleet_collector_writer_up", "1 while the writer thread is alive",
              registry=reg).set_function(lambda: 1.0 if self._writer_alive() else 0.0)
        self._m_received = {s: received.labels(s) for s in _SIGNALS}
        self._m_stored = {s: stored.labels(s) for s in _SIGNALS}
        self._m_dropped = {s: dropped.labels(s) for s in _SIGNALS}
        self._m_rejected = {(s, r): rejected.labels(s, r) for s in _SIGNALS for r in _REJECT_REASONS}
        self._m_refused = {(s, r): refused.labels(s, r) for s in _SIGNALS for r in _REFUSE_REASONS}
        reserved = ("qfleet_collector_", "process_", "python_") if own else ("qfleet_collector_",)
        reg.register(FleetGaugeCollector(self.store, reserved_prefixes=reserved))

    def _refused(self, signal: str, reason: str, n: int) -> None:
        self._m_refused[signal, reason].inc(n)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Bind, start the writer thread and the HTTP threads; returns once listening.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (e.g. the port is in use).
        """
        if self._server is not None:
            raise RuntimeError("Receiver.start() called twice; create a new Receiver instead")
        server_cls = type("_BoundServer", (_Server,), {
            "address_family": socket.AF_INET6 if ":" in self.config.host else socket.AF_INET})
        server = server_cls((self.config.host, self.config.port), _Handler)
        server.receiver = self
        self._server = server
        self._last_rollup = self._clock()
        self._writer = threading.Thread(target=self._writer_loop, name="qfleet-writer", daemon=True)
        self._writer.start()
        self._serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                              name="qfleet-http", daemon=True)
        self._serve_thread.start()
        host, port = self.address
        logger.info("OTLP/HTTP receiver listening on %s:%s", host, port)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when configured with port 0."""
        if self._server is None:
            raise RuntimeError("Receiver.address is known after start()")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Stop accepting, commit what is queued, stop the writer, refresh rollups once.

        Requests in flight get their answer first. If the database does not take the
        queue within ``timeout_s`` (default ``ack_timeout_s``), the rest is discarded and
        counted in ``qfleet_collector_dropped_total``. Idempotent.
        """
        server = self._server
        if server is None or self._stopped:
            return
        self._stopped = True
        wait = self.config.ack_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            self._closing = True
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + wait
        with self._cond:
            # Handlers waiting for their commit still need the writer: let them finish.
            while self._inflight and time.monotonic() < deadline:
                self._cond.wait(0.05)
            self._writer_stop = True
            self._drain_deadline = deadline
            self._cond.notify_all()
        if self._writer is not None:
            # The writer may be stuck in one slow transaction; bound the wait.
            self._writer.join(max(deadline - time.monotonic(), 0.0) + 5.0)
            if self._writer.is_alive():
                logger.error("writer thread still busy with the database after stop; abandoning it")
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # idle keep-alive connections: wake their handler threads
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        logger.info("OTLP/HTTP receiver stopped")

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` answers: status ("ok" or "unavailable"), writer and queue state."""
        alive = self._writer_alive()
        return {
            "status": "ok" if alive else "unavailable",
            "writer_alive": alive,
            "queue_items": self._queued_items,
            "queue_capacity_items": self.config.queue_items,
            "inflight_requests": self._inflight,
        }

    def _writer_alive(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- the request side ----------------------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), self._token)

    def _enter(self) -> str | None:
        with self._lock:
            if self._closing:
                return "stopping"
            if self._inflight >= self.config.max_inflight:
                return "inflight"
            self._inflight += 1
            return None

    def _leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._closing:
                self._cond.notify_all()

    def _submit(self, batch: TelemetryBatch, signal: str) -> tuple[str | None, str]:
        """Queue ``batch`` and wait for its commit.

        Returns ``(None, "")`` once committed, else the refusal reason ("queue_full",
        "write_error", "ack_timeout", "stopping" or "unstorable") and the error text.
        """
        ticket = _Ticket(batch, signal)
        with self._cond:
            if self._writer_stop:
                return "stopping", ""
            if not self._writer_alive():
                return "write_error", "writer thread is not running"
            if self._queued_items + ticket.items > self.config.queue_items:
                return "queue_full", ""
            self._queued_items += ticket.items
            self._queue.append(ticket)
            self._cond.notify_all()
        if not ticket.done.wait(self.config.ack_timeout_s):
            with self._lock:
                if not ticket.done.is_set():
                    ticket.abandoned = True  # may still commit later; resending is safe
                    return "ack_timeout", ""
        return (None, "") if ticket.outcome == "ok" else (ticket.outcome, ticket.error)

    # -- the writer ------------------------------------------------------------------

    def _writer_loop(self) -> None:
        cfg = self.config
        while True:
            take: list[_Ticket] = []
            try:
                with self._cond:
                    if not self._queue and not self._writer_stop:
                        self._cond.wait(self._idle_wait())
                    if not self._queue and self._writer_stop:
                        break
                    if self._writer_stop and time.monotonic() > self._drain_deadline:
                        self._discard_queue()
                        break
                    n = 0
                    while self._queue and (not take or n + self._queue[0].items <= cfg.max_batch_items):
                        t = self._queue.popleft()
                        take.append(t)
                        n += t.items
                if take:
                    self._write(take)
                self._maybe_rollup(force=False)
            except Exception:  # the writer must outlive any single failure
                logger.exception("writer loop error; continuing")
                for t in take:
                    if not t.done.is_set():
                        self._resolve(t, "write_error")
                time.sleep(0.05)
        try:
            self._maybe_rollup(force=True)
        except Exception:
            logger.exception("final rollup refresh failed")

    def _idle_wait(self) -> float:
        if not self._rollups_dirty:
            return 1.0
        left_ns = self.config.rollup_interval_s * 1e9 - (self._clock() - self._last_rollup)
        return min(max(left_ns / 1e9, 0.01), 1.0)

    def _write(self, take: list[_Ticket]) -> None:
        try:
            self._commit([t.batch for t in take])
        except Exception as err:
            self._m_write_failures.inc()
            if len(take) == 1:
                self._failed(take[0], err)
                return
            # One bad batch must not fail the others: retry them one by one.
            logger.warning("coalesced write of %d requests failed (%s); retrying one by one", len(take), err)
            for t in take:
                try:
                    self._commit([t.batch])
                except Exception as one_err:
                    self._m_write_failures.inc()
                    self._failed(t, one_err)
                else:
                    self._resolve(t, "ok")
            return
        for t in take:
            self._resolve(t, "ok")

    def _failed(self, t: _Ticket, err: Exception) -> None:
        if _is_data_error(err):
            logger.warning("write of %d %s refused by the database (answered 400): %s", t.items, t.signal, err)
            t.error = _clip(f"{type(err).__name__}: {err}")
            self._resolve(t, "unstorable")
        else:
            logger.warning("write of %d %s failed (answered 503): %s", t.items, t.signal, err)
            self._resolve(t, "write_error")

    def _commit(self, batches: list[TelemetryBatch]) -> None:
        t0 = self._clock()
        if len(batches) == 1:
            self.store.write(batches[0])
        else:
            self.store.write_many(batches)
        self._m_write_seconds.observe((self._clock() - t0) / 1e9)
        self._rollups_dirty = True

    def _resolve(self, t: _Ticket, outcome: str) -> None:
        if outcome == "ok":
            self._m_stored[t.signal].inc(t.items)
        with self._lock:
            self._queued_items -= t.items
            t.outcome = outcome
            t.done.set()
            if outcome != "ok" and t.abandoned:
                logger.warning("%d %s were not committed and their client had stopped waiting "
                               "(it was told to retry)", t.items, t.signal)
        t.batch = TelemetryBatch()  # free the rows now; an abandoned ticket may linger

    def _discard_queue(self) -> None:
        # Called with the lock held, at stop, once the drain deadline has passed.
        while self._queue:
            t = self._queue.popleft()
            self._queued_items -= t.items
            self._m_dropped[t.signal].inc(t.items)
            t.outcome = "stopping"
            t.done.set()
        logger.error("stop: database did not take the queue in time; discarded the rest "
                     "(see qfleet_collector_dropped_total)")

    def _maybe_rollup(self, *, force: bool) -> None:
        now = self._clock()
        if not force and (not self._rollups_dirty
                          or now - self._last_rollup < self.config.rollup_interval_s * 1e9):
            return
        self._last_rollup = now
        try:
            # Live minutes are rolled up once they settle; at stop, everything.
            self.store.refresh_rollups(settle_ns=0 if force else int(self.config.rollup_settle_s * 1e9))
        except Exception as err:
            self._m_rollup_failures.inc()
            logger.warning("rollup refresh failed (will retry): %s", err)
            return
        # A full page means more buckets are pending.
        # Buckets still settling stay pending, so keep looking while data flows.
        self._rollups_dirty = not force
