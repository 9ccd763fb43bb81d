"""The receiver's HTTP transport: OTLP/HTTP in, decoded batches out to a :class:`Consumer`.

Handler threads (stdlib :class:`~http.server.ThreadingHTTPServer`, HTTP/1.1 keep-alive)
check the bearer token (constant-time), the body size (on ``Content-Length`` and again
after gzip decompression), the media type and encoding, then decode the body
(:mod:`qfleet.collector.decode`) and hand the batch to the consumer. The client hears 200
(with ``partial_success`` when invalid items were dropped) only when the consumer says the
batch is committed; 503 with ``Retry-After`` when it refused for now (or when too many
requests are in flight); 400/413 when resending cannot help. A request is refused on its
headers alone, before its body is read, whenever that is enough (also for
``Expect: 100-continue``).

Also served, without authentication: ``GET /healthz`` (JSON from the ``health`` callback;
503 unless its ``status`` is ``ok``) and ``GET /metrics`` (Prometheus text of
:class:`~qfleet.collector.exposition.ReceiverMetrics`).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qfleet.collector.consumer import POINTS, SPANS, Consumer, Outcome, SignalName
from qfleet.collector.decode import (
    BodyTooLarge,
    DecodeFailure,
    clip,
    decode_body,
    export_response,
    rejected_items,
    rejection_message,
    status_body,
)
from qfleet.collector.exposition import CONTENT_TYPE, ReceiverMetrics
from qfleet.collector.otlp import MEDIA_JSON, MEDIA_PROTOBUF, media_type
from qfleet.collector.rows import TelemetryBatch

__all__ = ["HttpTransport", "TransportConfig", "check_count", "check_listen", "check_seconds"]

logger = logging.getLogger(__name__)

_PATHS: dict[str, SignalName] = {"/v1/traces": SPANS, "/v1/metrics": POINTS}
_GET_PATHS = ("/healthz", "/metrics")
_CHUNK = 64 * 1024
# What the client is told when the consumer gives no message of its own.
_DEFAULT_MESSAGES = {
    "queue_full": "ingest queue is full (database behind); retry later",
    "write_error": "database write failed; retry later",
    "ack_timeout": "not committed in time; retry later (resending is safe)",
    "stopping": "the collector is shutting down; retry later",
    "unstorable": "the data of this request cannot be stored (resending cannot help)",
    "too_large": "request holds more items than the collector can ever queue; send smaller batches",
}


def _int_at_least(v: object, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def check_listen(owner: str, host: object, port: object, token: object) -> None:
    """Validate a listen address and bearer token; ``owner`` names the config in the message.

    Raises:
        ValueError: naming the field and the fix.

    >>> check_listen("Cfg", "127.0.0.1", 70000, "t")
    Traceback (most recent call last):
    ...
    ValueError: Cfg.port=70000: use 0-65535 (0 picks a free port)
    """
    if not isinstance(host, str) or not host:
        raise ValueError(f"{owner}.host={host!r}: give the listen address, e.g. 127.0.0.1")
    if not (_int_at_least(port, 0) and isinstance(port, int) and port <= 65535):
        raise ValueError(f"{owner}.port={port!r}: use 0-65535 (0 picks a free port)")
    if not isinstance(token, str) or not token:
        raise ValueError(f"{owner}.token is empty: pass the bearer token clients must send "
                         "(qfleet reads it from --token-file)")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError(f"{owner}.token contains whitespace or control characters: "
                         "use a token such as secrets.token_urlsafe(32)")


def check_count(owner: str, name: str, value: object, least: int) -> None:
    """Validate an integer limit ``>= least`` (``True`` is not an integer here).

    Raises:
        ValueError: naming the field and the fix.
    """
    if not _int_at_least(value, least):
        raise ValueError(f"{owner}.{name}={value!r}: must be an integer >= {least}")


def check_seconds(owner: str, name: str, value: object, *, positive: bool) -> None:
    """Validate a finite number of seconds, ``> 0`` or ``>= 0``.

    Raises:
        ValueError: naming the field and the fix.
    """
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        raise ValueError(f"{owner}.{name}={value!r}: must be a finite number of seconds "
                         f"{'> 0' if positive else '>= 0'}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Address, credentials and limits of one :class:`HttpTransport`.

    Args:
        host, port: listen address; port 0 picks a free port (see :attr:`HttpTransport.address`).
        token: the bearer token clients must send (``Authorization: Bearer <token>``).
        max_body_bytes: largest request body, enforced on Content-Length and again after
            gzip decompression (413 beyond it).
        max_inflight: requests being read, decoded or waiting for their commit at once
            (503 beyond it).
        retry_after_s: the ``Retry-After`` value of 503 answers.

    Raises:
        ValueError: a field is out of range; the message names it and the fix.
    """

    host: str = "127.0.0.1"
    port: int = 4318
    token: str
    max_body_bytes: int = 20 * 1024 * 1024
    max_inflight: int = 64
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        check_listen("TransportConfig", self.host, self.port, self.token)
        for name, least in (("max_body_bytes", 1), ("max_inflight", 1), ("retry_after_s", 0)):
            check_count("TransportConfig", name, getattr(self, name), least)


class HttpTransport:
    """Serves OTLP/HTTP and hands each decoded batch to ``consumer``; see the module docstring.

    Args:
        consumer: where decoded batches go; its :class:`Outcome` decides the answer.
        config: address, token and limits.
        metrics: where requests, decoded, rejected and refused items are counted (and what
            ``/metrics`` serves); a new :class:`ReceiverMetrics` by default.
        health: what ``/healthz`` answers; by default ``status`` ``ok`` and the requests in flight.
    """

    def __init__(self, consumer: Consumer, config: TransportConfig, *, metrics: ReceiverMetrics | None = None,
                 health: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.consumer = consumer
        self.config = config
        self.metrics = metrics if metrics is not None else ReceiverMetrics()
        self.health: Callable[[], Mapping[str, Any]] = health or self._own_health
        self.retry_after = (("Retry-After", str(config.retry_after_s)),)
        self._token = config.token.encode()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._closing = False
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self.metrics.gauge("qfleet_collector_inflight_requests", "Requests being read, decoded or waiting "
                           "for their commit", lambda: self._inflight)

    @property
    def inflight(self) -> int:
        """Requests being read, decoded or waiting for their commit."""
        return self._inflight

    def _own_health(self) -> dict[str, Any]:
        return {"status": "ok", "inflight_requests": self._inflight}

    # -- lifecycle ---------------------------------------------------------------

    def bind(self) -> None:
        """Bind the listen address (requests wait in the backlog until :meth:`start`).

        Raises:
            RuntimeError: already bound.
            OSError: the address cannot be bound (e.g. the port is in use).
        """
        if self._server is not None:
            raise RuntimeError("start() called twice; create a new receiver instead")
        server_cls = type("_BoundServer", (_Server,), {
            "address_family": socket.AF_INET6 if ":" in self.config.host else socket.AF_INET})
        server = server_cls((self.config.host, self.config.port), _Handler)
        server.transport = self
        self._server = server

    def start(self) -> None:
        """Bind (unless :meth:`bind` did) and serve on a background thread; returns once listening.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (e.g. the port is in use).
        """
        if self._serve_thread is not None:
            raise RuntimeError("start() called twice; create a new receiver instead")
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._serve_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                              name="qfleet-http", daemon=True)
        self._serve_thread.start()

    @property
    def started(self) -> bool:
        """Whether the address is bound (by :meth:`bind` or :meth:`start`)."""
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when configured with port 0."""
        if self._server is None:
            raise RuntimeError("the address is known after start()")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop accepting: new requests on open connections get 503, the socket closes."""
        with self._lock:
            self._closing = True
        if self._server is not None:
            if self._serve_thread is not None:
                self._server.shutdown()  # waits for serve_forever, which only runs once started
            self._server.server_close()

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no request is in flight or ``time.monotonic()`` passes ``deadline``; ``True`` if idle."""
        with self._idle:
            while self._inflight and time.monotonic() < deadline:
                self._idle.wait(0.05)
            return not self._inflight

    def disconnect(self) -> None:
        """Close idle keep-alive connections (waking their handler threads)."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """:meth:`close`, let requests in flight finish (up to ``timeout_s``), :meth:`disconnect`."""
        self.close()
        self.wait_idle(time.monotonic() + timeout_s)
        self.disconnect()

    # -- what the handler threads call ----------------------------------------------

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the bearer token (constant-time compare)."""
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), self._token)

    def enter(self) -> str | None:
        """Count a request in flight; or why not (``stopping``, ``inflight``)."""
        with self._lock:
            if self._closing:
                return "stopping"
            if self._inflight >= self.config.max_inflight:
                return "inflight"
            self._inflight += 1
            return None

    def leave(self) -> None:
        """A request in flight is answered."""
        with self._idle:
            self._inflight -= 1
            if self._closing:
                self._idle.notify_all()

    def track(self, conn: socket.socket, *, add: bool) -> None:
        """Remember open connections, so that :meth:`disconnect` can close idle ones."""
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    transport: HttpTransport

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


_Headers = tuple[tuple[str, str], ...]


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
    _path = ""
    _as_json = False
    _responded = False

    # -- plumbing ----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.transport.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.transport.track(self.connection, add=False)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # every request is counted in qfleet_collector_requests_total instead

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _begin(self) -> None:
        self._responded = False
        self._path = self.path.split("?", 1)[0]
        self._as_json = False

    def _dispatch(self) -> None:
        self._begin()
        try:
            self._route()
        except OSError:
            self.close_connection = True  # the client went away mid-request
        except Exception:
            logger.exception("error handling %s %s", self.command, self._path)
            if not self._responded:
                self._status(500, "internal error in the qfleet collector (see its log)", close=True)
            else:
                self.close_connection = True

    def _route(self) -> None:
        if self._path in _PATHS:
            if self.command == "POST":
                self._export(_PATHS[self._path])
            else:
                self._refuse(405, "use POST", extra=(("Allow", "POST"),))
        elif self._path in _GET_PATHS:
            if self.command != "GET":
                self._refuse(405, "use GET", extra=(("Allow", "GET"),))
            elif self._path == "/healthz":
                self._healthz()
            else:
                self._reply(200, self.server.transport.metrics.exposition(), CONTENT_TYPE)
        else:
            self._refuse(404, "unknown path; OTLP is at /v1/traces and /v1/metrics, "
                              "health at /healthz, Prometheus at /metrics")

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
        self.server.transport.metrics.request(path, code)

    def _status(self, code: int, message: str, *, close: bool = False,
                extra: Iterable[tuple[str, str]] = ()) -> None:
        if self._path in _PATHS:
            ctype = MEDIA_JSON if self._as_json else MEDIA_PROTOBUF[0]
            body = status_body(code, clip(message), self._as_json)
        else:
            ctype, body = "text/plain; charset=utf-8", (message + "\n").encode()
        self._reply(code, body, ctype, close=close, extra=extra)

    def _refuse(self, code: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        """Answer without reading the body: discard it when small, else close the connection."""
        n = self._declared_length()
        keep = n is not None and n <= self.server.transport.config.max_body_bytes and self._discard(n)
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

    def _healthz(self) -> None:
        h = self.server.transport.health()
        self._reply(200 if h.get("status") == "ok" else 503, json.dumps(h).encode() + b"\n", MEDIA_JSON)

    # -- OTLP --------------------------------------------------------------------------

    def handle_expect_100(self) -> bool:
        # Answer a request we will refuse before the client uploads its body.
        self._begin()
        if self.command == "POST" and self._path in _PATHS:
            problem = self._header_problem()
            if problem is not None:
                code, message, extra = problem
                self._status(code, message, close=True, extra=extra)
                return False
        return super().handle_expect_100()

    def _header_problem(self) -> tuple[int, str, _Headers] | None:
        """Why an OTLP POST must be refused on its headers alone, or None."""
        t = self.server.transport
        content_type = self.headers.get("Content-Type", "")
        media = media_type(content_type)
        self._as_json = media == MEDIA_JSON
        if not t.authorized(self.headers.get("Authorization")):
            return 401, "missing or wrong bearer token (send Authorization: Bearer <token>)", (
                ("WWW-Authenticate", 'Bearer realm="qfleet"'),)
        if self.headers.get("Transfer-Encoding"):
            return 411, "chunked uploads are not supported; send Content-Length", ()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return 411, "Content-Length is required", ()
        if not cl.strip().isdigit():
            return 400, f"Content-Length {cl!r} is not a non-negative integer", ()
        if int(cl) > t.config.max_body_bytes:
            return 413, f"body of {int(cl)} bytes exceeds max_body_bytes={t.config.max_body_bytes}", ()
        if self._encoding() not in ("identity", "gzip", "x-gzip"):
            return 415, f"Content-Encoding {self._encoding()!r} is not supported; use gzip or none", ()
        if not self._as_json and media not in MEDIA_PROTOBUF:
            return 415, (f"unsupported Content-Type {content_type!r}: send application/x-protobuf "
                         "or application/json"), ()
        return None

    def _encoding(self) -> str:
        return (self.headers.get("Content-Encoding") or "identity").strip().lower()

    def _export(self, signal: SignalName) -> None:
        t = self.server.transport
        problem = self._header_problem()
        if problem is not None:
            code, message, extra = problem
            self._refuse(code, message, extra=extra)
            return
        refusal = t.enter()
        if refusal is not None:
            t.metrics.refused(signal, refusal, 1)  # before decoding: counted as one request
            self._refuse(503, "too many requests in flight; retry later" if refusal == "inflight"
                         else _DEFAULT_MESSAGES["stopping"], extra=t.retry_after)
            return
        try:
            self._receive(signal)
        finally:
            t.leave()

    def _receive(self, signal: SignalName) -> None:
        t = self.server.transport
        batch = self._read_batch(signal)
        if batch is None:
            return  # answered already
        items = batch.item_count
        rejected = rejected_items(batch, signal)
        t.metrics.received(signal, items)
        message = ""
        if rejected:
            t.metrics.rejected(signal, "invalid", rejected)
            message = rejection_message(batch, signal)
        if items:
            outcome = t.consumer.consume(batch, signal)
            if not outcome.committed:
                self._not_committed(signal, items, outcome)
                return
        ctype = MEDIA_JSON if self._as_json else MEDIA_PROTOBUF[0]
        self._reply(200, export_response(signal, self._as_json, rejected, message), ctype)

    def _read_batch(self, signal: SignalName) -> TelemetryBatch | None:
        """The request's rows, or None once a 400/413 answer is sent."""
        t = self.server.transport
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n) if n else b""
        if len(body) != n:
            self._status(400, f"body ended after {len(body)} of {n} bytes (Content-Length)", close=True)
            return None
        limit = t.config.max_body_bytes
        try:
            return decode_body(signal, body, self.headers.get("Content-Type", ""),
                               gzipped=self._encoding() != "identity", max_bytes=limit)
        except BodyTooLarge:
            t.metrics.rejected(signal, "too_large")
            self._status(413, f"decompressed body exceeds max_body_bytes={limit}")
        except DecodeFailure as err:
            t.metrics.rejected(signal, "malformed")
            self._status(400, str(err))
        return None

    def _not_committed(self, signal: SignalName, items: int, outcome: Outcome) -> None:
        t = self.server.transport
        message = outcome.message or _DEFAULT_MESSAGES[outcome.reason]
        if outcome.retryable:
            t.metrics.refused(signal, outcome.reason, items)
            self._status(503, message, extra=t.retry_after)
        elif outcome.reason == "too_large":
            t.metrics.rejected(signal, "too_large", items)
            self._status(413, message)
        else:
            t.metrics.rejected(signal, "unstorable", items)
            self._status(400, message)
