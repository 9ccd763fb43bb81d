"""The receiver's HTTP transport: OTLP/HTTP and Prometheus remote write in on uvicorn, decoded batches out to
a :class:`Consumer`.

uvicorn (HTTP/1.1 parsing by h11, keep-alive, a connection cap) serves the Starlette
application of :mod:`qfleet.collector.http_app` on its own event loop in a background
thread. What each request goes through (token, size limits, media types, budgets, the body
deadline, ack after commit) is described there. This module owns the listening socket and
the lifecycle, and bounds connections in number and time:

* at most ``max_connections`` connections are served; a request on one more is answered
  503 and its connection closed (uvicorn's ``limit_concurrency``);
* a connection must deliver a complete request head within ``header_timeout_s`` of opening
  or of its previous answer (else it is closed: a slow or silent client cannot hold it);
* an idle keep-alive connection is closed after ``keep_alive_s``.

Also served, without authentication: ``GET /healthz``, ``GET /readyz`` (JSON; 503 unless
``status`` is ``ok``) and ``GET /metrics`` (Prometheus text of
:class:`~qfleet.collector.exposition.ReceiverMetrics`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from qfleet.collector.consumer import Consumer
from qfleet.collector.exposition import ReceiverMetrics
from qfleet.collector.http_app import ExtraRoute, OtlpApp
from qfleet.collector.limits import Limits

__all__ = ["HttpTransport", "ListenError", "TransportConfig", "check_count", "check_listen", "check_seconds"]

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
# How long start() waits for the server thread to listen, and disconnect() for it to end.
_START_S = 30.0
_END_S = 10.0


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


def check_budget(owner: str, max_body_bytes: int, max_inflight_bytes: int) -> None:
    """A request of the largest allowed size must fit the byte budget on its own.

    Raises:
        ValueError: naming both fields and the fix.
    """
    if max_inflight_bytes < max_body_bytes:
        raise ValueError(f"{owner}.max_inflight_bytes={max_inflight_bytes} is below max_body_bytes="
                         f"{max_body_bytes}: a request of the largest size could never be accepted; "
                         "raise max_inflight_bytes or lower max_body_bytes")


class ListenError(OSError):
    """The listen address cannot be bound; the message names host:port and the fix (one line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Address, credentials and limits of one :class:`HttpTransport`.

    Args:
        host, port: listen address; port 0 picks a free port (see :attr:`HttpTransport.address`).
        token: the bearer token clients must send (``Authorization: Bearer <token>``).
        max_body_bytes: largest request body, enforced on Content-Length and again after
            gzip decompression (413 beyond it).
        max_inflight: OTLP requests being read, decoded or waiting for their commit at once
            (503 beyond it); also the number of worker threads.
        max_inflight_bytes: request-body bytes (decompressed once known) those requests hold at
            once (503 beyond it); decoding costs up to ~20 times the body in memory, so this
            bounds the receiver's memory. At least ``max_body_bytes``.
        max_connections: connections served at once; a request on one more gets 503.
        body_timeout_s: the whole body must arrive within this after the headers (else 408).
        header_timeout_s: a request head must arrive within this after the connection opens
            or the previous answer (else the connection is closed).
        keep_alive_s: an idle keep-alive connection is closed after this (whole seconds).
        ready_timeout_s: the longest ``/readyz`` waits for its check (the database) before 503.
        retry_after_s: the ``Retry-After`` value of 503 answers.
        limits: what one request may make the receiver build (attributes per item and per
            request, value lengths, events and links per span); see :class:`Limits`.

    Raises:
        ValueError: a field is out of range; the message names it and the fix.
    """

    host: str = "127.0.0.1"
    port: int = 4318
    token: str
    max_body_bytes: int = 20 * MIB
    max_inflight: int = 64
    max_inflight_bytes: int = 32 * MIB
    max_connections: int = 512
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5
    ready_timeout_s: float = 2.0
    retry_after_s: int = 1
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        owner = "TransportConfig"
        check_listen(owner, self.host, self.port, self.token)
        for name, least in (("max_body_bytes", 1), ("max_inflight", 1), ("max_inflight_bytes", 1),
                            ("max_connections", 1), ("keep_alive_s", 1), ("retry_after_s", 0)):
            check_count(owner, name, getattr(self, name), least)
        for name in ("body_timeout_s", "header_timeout_s", "ready_timeout_s"):
            check_seconds(owner, name, getattr(self, name), positive=True)
        check_budget(owner, self.max_body_bytes, self.max_inflight_bytes)


def _protocol(head_timeout_s: float, bad_request: Callable[[], None]) -> type[H11Protocol]:
    """uvicorn's h11 protocol plus a deadline on request heads (uvicorn has none of its own:
    a client that connects and sends nothing, or drips its headers, would hold a connection)."""

    class HeadDeadlineProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(head_timeout_s, self._head_expired)

        def _head_expired(self) -> None:
            self._head_timer = None
            serving = self.cycle is not None and not self.cycle.response_complete
            if not serving and not self.transport.is_closing():
                self.transport.close()  # no request being served: nothing to answer

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            bad_request()  # the request line or headers did not parse (e.g. Content-Length: ²)
            super().send_400_response(msg)

    return HeadDeadlineProtocol


class _Server(uvicorn.Server):
    """uvicorn's server, telling the starting thread when it listens (or failed to)."""

    def __init__(self, config: uvicorn.Config, started: threading.Event) -> None:
        super().__init__(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started_event = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await super().startup(sockets=sockets)
        finally:
            self._started_event.set()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port.

    Raises:
        ListenError: one line naming host:port and the fix.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except OSError as err:
        raise ListenError(f"cannot listen on {where}: the host does not resolve ({err}); "
                          "give an address such as 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            fix = "another process listens there; stop it or choose another port (--port; 0 picks a free one)"
        elif err.errno == errno.EACCES:
            fix = "permission denied; use a port above 1023"
        else:
            fix = f"{err.strerror or err}; use an address of this machine, e.g. 127.0.0.1"
        failure = ListenError(f"cannot listen on {where}: {fix}")
        failure.errno = err.errno
        raise failure from None
    sock.setblocking(False)
    return sock


class HttpTransport:
    """Serves OTLP/HTTP and hands each decoded batch to ``consumer``; see the module docstring.

    Args:
        consumer: where decoded batches go; its :class:`Outcome` decides the answer.
        config: address, token and limits.
        metrics: where requests, decoded, rejected and refused items are counted (and what
            ``/metrics`` serves); a new :class:`ReceiverMetrics` by default.
        health: what ``/healthz`` answers; by default ``status`` ``ok`` and the requests in flight.
        ready: what ``/readyz`` answers (on a worker thread; it may ask the database); by
            default the same as ``health``.
        extra_routes: ``POST`` endpoints of packages above the collector, served with the same
            token and limits (:class:`~qfleet.collector.http_app.ExtraRoute`).
    """

    def __init__(self, consumer: Consumer, config: TransportConfig, *, metrics: ReceiverMetrics | None = None,
                 health: Callable[[], Mapping[str, Any]] | None = None,
                 ready: Callable[[], Mapping[str, Any]] | None = None,
                 extra_routes: Sequence[ExtraRoute] = ()) -> None:
        self.consumer = consumer
        self.config = config
        self.metrics = metrics if metrics is not None else ReceiverMetrics()
        health_fn = health or self._own_health
        self.app = OtlpApp(consumer, config, self.metrics, health=health_fn, ready=ready or health_fn,
                           extra_routes=extra_routes)
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        m = self.metrics
        m.gauge("qfleet_collector_inflight_requests", "OTLP requests being read, decoded or waiting for "
                "their commit", lambda: self.app.admission.requests)
        m.gauge("qfleet_collector_inflight_bytes", "Request-body bytes held by those requests (decompressed "
                "once known)", lambda: self.app.admission.bytes)
        m.constant("qfleet_collector_inflight_bytes_limit", "max_inflight_bytes (beyond it: 503)",
                   config.max_inflight_bytes)
        m.gauge("qfleet_collector_connections", "Open HTTP connections",
                lambda: len(self._server.server_state.connections) if self._server is not None else 0)

    @property
    def inflight(self) -> int:
        """OTLP requests being read, decoded or waiting for their commit."""
        return self.app.admission.requests

    @property
    def inflight_bytes(self) -> int:
        """Request-body bytes those requests hold."""
        return self.app.admission.bytes

    def _own_health(self) -> dict[str, Any]:
        return {"status": "ok", "inflight_requests": self.inflight}

    # -- lifecycle ---------------------------------------------------------------

    def bind(self) -> None:
        """Bind the listen address (connections wait in the backlog until :meth:`start`).

        Raises:
            RuntimeError: already bound.
            ListenError: the address cannot be bound (e.g. the port is in use); one line.
        """
        if self._sock is not None:
            raise RuntimeError("start() called twice; create a new receiver instead")
        self._sock = _bind(self.config.host, self.config.port)
        host, port = self._sock.getsockname()[:2]
        self._address = (str(host), int(port))

    def start(self) -> None:
        """Bind (unless :meth:`bind` did) and serve on a background thread; returns once listening.

        Raises:
            RuntimeError: already started, or the server did not start.
            ListenError: the address cannot be bound (e.g. the port is in use).
        """
        if self._thread is not None:
            raise RuntimeError("start() called twice; create a new receiver instead")
        if self._sock is None:
            self.bind()
        c = self.config
        config = uvicorn.Config(
            self.app.asgi, http=_protocol(c.header_timeout_s, self.metrics.unparsable), loop="asyncio",
            lifespan="off", ws="none", interface="asgi3", log_config=None, access_log=False,
            proxy_headers=False, server_header=False, headers=[("server", "qfleet-collector")],
            # uvicorn counts the connection asking among the open ones: +1 serves max_connections.
            limit_concurrency=c.max_connections + 1, timeout_keep_alive=c.keep_alive_s,
            timeout_graceful_shutdown=math.ceil(_END_S))
        started = threading.Event()
        server = self._server = _Server(config, started)
        sock = self._sock
        assert sock is not None
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="qfleet-http",
                                        daemon=True)
        self._thread.start()
        if not started.wait(_START_S) or not server.started:
            raise RuntimeError("the HTTP server did not start (see the log)")

    @property
    def started(self) -> bool:
        """Whether the address is bound (by :meth:`bind` or :meth:`start`)."""
        return self._sock is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when configured with port 0."""
        if self._address is None:
            raise RuntimeError("the address is known after start()")
        return self._address

    def close(self) -> None:
        """Stop accepting: new requests on open connections get 503, the listening socket closes."""
        self.app.admission.close()
        server = self._server
        if server is None or server.loop is None:
            if self._sock is not None:
                self._sock.close()
            return

        async def stop_listening() -> None:
            for s in server.servers:
                s.close()

        try:
            asyncio.run_coroutine_threadsafe(stop_listening(), server.loop).result(_END_S)
        except RuntimeError:
            pass  # the loop has ended already

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no request is in flight or ``time.monotonic()`` passes ``deadline``; ``True`` if idle."""
        return self.app.admission.wait_idle(deadline)

    def disconnect(self) -> None:
        """Close the connections (those serving a request after its answer) and end the server thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_END_S + 5.0)
            if self._thread.is_alive():
                logger.error("HTTP server thread still running after stop; abandoning it")

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """:meth:`close`, let requests in flight finish (up to ``timeout_s``), :meth:`disconnect`."""
        self.close()
        self.wait_idle(time.monotonic() + timeout_s)
        self.disconnect()
