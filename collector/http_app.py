"""The receiver's HTTP application (Starlette, served by uvicorn in :mod:`~qfleet.collector.transport`).

Per OTLP request, in order: the headers are checked (bearer token in constant time, length,
media type, encoding) and the request is refused on them alone when that is enough, before
its body is read (for ``Expect: 100-continue`` no ``100 Continue`` is sent then). Then it is
admitted against two budgets, requests in flight (``max_inflight``) and request-body bytes
in flight (``max_inflight_bytes``: Content-Length first, the decompressed size once known),
else 503 with ``Retry-After``. The body must arrive whole within ``body_timeout_s`` (else
408 and the connection closes), so a stalled upload releases its slot. Decompression,
decoding and the consumer's blocking wait for the commit run on worker threads (anyio, at
most ``max_inflight`` of them), never on the event loop, which keeps serving the other
connections, ``/healthz``, ``/readyz`` and ``/metrics``.

``POST /api/v1/write`` takes Prometheus remote write 1.0 (snappy-compressed protobuf) the same
way: same token, budgets and body deadline; the snappy block's declared size is checked
against ``max_body_bytes`` and the byte budget before it is decompressed; samples go to the
same consumer as OTLP metric points (see :mod:`~qfleet.collector.remote_write` for the
mapping) and the answer is 204 once they are committed, 400 (not retried) for a malformed
body or invalid samples (the valid ones are stored first, as the spec allows), 503 with
``Retry-After`` (retried) when the collector is behind. Error bodies are one line of text,
which Prometheus logs as is.

Why one module: both protocols share every step of a request (admission, body deadline,
worker threads, hand-over to the queue, ack after commit); only decoding and the answer
differ, and splitting them would pass the application's private state around.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from qfleet.collector.consumer import (
    POINTS,
    REASON_TEXT,
    SPANS,
    Consumer,
    Outcome,
    Pending,
    QueueingConsumer,
    SignalName,
)
from qfleet.collector.decode import (
    BodyTooLarge,
    DecodeFailure,
    clip,
    decode_body,
    export_response,
    gunzip,
    rejected_items,
    rejection_message,
    status_body,
)
from qfleet.collector.exposition import CONTENT_TYPE, ReceiverMetrics
from qfleet.collector.otlp import MEDIA_JSON, MEDIA_PROTOBUF, media_type
from qfleet.collector.prompb import decode_write_request, snappy_length
from qfleet.collector.remote_write import TypeCache, from_write_request
from qfleet.collector.rows import TelemetryBatch

if TYPE_CHECKING:
    from qfleet.collector.transport import TransportConfig

__all__ = ["Admission", "Answer", "ExtraRoute", "OtlpApp"]

logger = logging.getLogger(__name__)

_PATHS: dict[str, SignalName] = {"/v1/traces": SPANS, "/v1/metrics": POINTS}
_GET_PATHS = ("/healthz", "/readyz", "/metrics")
_RW_PATH = "/api/v1/write"
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
_TEXT = "text/plain; charset=utf-8"
_CLOSE = (("Connection", "close"),)
_Headers = tuple[tuple[str, str], ...]
# The remote write media type; a ``proto=`` parameter, when sent, must name the 1.0 message.
_RW_PROTO = "prometheus.WriteRequest"


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, built off the event loop and sent on it."""

    code: int
    body: bytes
    content_type: str
    headers: _Headers = ()


# Builds an error answer: (status, one-line message, extra headers) -> Answer.
_Render = Callable[[int, str, _Headers], Answer]


def _text(code: int, message: str, extra: _Headers = ()) -> Answer:
    """A plain-text answer of one line (what Prometheus logs of an error answer)."""
    return Answer(code, clip(message).replace("\n", " ").encode() + b"\n", _TEXT, extra)


@dataclass(frozen=True, slots=True)
class ExtraRoute:
    """A ``POST`` endpoint a package above the collector serves through the receiver's port.

    The receiver does what every endpoint needs (bearer token, ``Content-Length`` within
    ``max_body_bytes``, the in-flight budgets, the body deadline) and then calls ``handler``
    on a worker thread with the body and the request's lower-case headers; ``handler``
    answers ``(status, JSON body)`` and must not raise (an exception is logged and answered
    500). The dependency points up: the collector never imports the handler's package.

    Examples:
        >>> ExtraRoute("/api/v1/alertmanager", lambda body, headers: (200, b"{}")).path
        '/api/v1/alertmanager'
    """

    path: str
    handler: Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]


class Admission:
    """Requests and request-body bytes in flight, each bounded; thread-safe.

    Args:
        max_requests: requests admitted at once (``inflight`` beyond it).
        max_bytes: body bytes held by admitted requests at once (``inflight_bytes`` beyond it).

    Examples:
        >>> a = Admission(max_requests=2, max_bytes=100)
        >>> a.enter(60), a.enter(60), a.enter(30), a.enter(1)
        (None, 'inflight_bytes', None, 'inflight')
        >>> a.grow(60, 70), a.grow(30, 40), a.bytes
        (True, False, 100)
        >>> a.leave(70); a.leave(30); a.requests, a.bytes
        (0, 0)
    """

    def __init__(self, *, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        self.closing = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def enter(self, nbytes: int) -> str | None:
        """Admit a request holding ``nbytes``; or why not (``stopping``, ``inflight``, ``inflight_bytes``)."""
        with self._lock:
            if self.closing:
                return "stopping"
            if self.requests >= self.max_requests:
                return "inflight"
            if self.bytes + nbytes > self.max_bytes:
                return "inflight_bytes"
            self.requests += 1
            self.bytes += nbytes
            return None

    def free(self) -> int:
        """Bytes not held by any request."""
        return max(self.max_bytes - self.bytes, 0)

    def grow(self, held: int, nbytes: int) -> bool:
        """Raise a request's hold from ``held`` to ``nbytes`` if the budget allows (never lowers it)."""
        with self._lock:
            extra = nbytes - held
            if extra > 0 and self.bytes + extra > self.max_bytes:
                return False
            self.bytes += max(extra, 0)
            return True

    def leave(self, held: int) -> None:
        """A request holding ``held`` bytes is done."""
        with self._idle:
            self.requests -= 1
            self.bytes -= held
            self._idle.notify_all()

    def close(self) -> None:
        """Admit nothing more (``stopping``)."""
        with self._lock:
            self.closing = True

    def wait_idle(self, deadline: float) -> bool:
        """Wait until nothing is in flight or ``time.monotonic()`` passes ``deadline``; ``True`` if idle."""
        with self._idle:
            while self.requests and time.monotonic() < deadline:
                self._idle.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
            return not self.requests


class _Work:
    """One admitted OTLP request: what it holds, released exactly once (from whichever side ends it)."""

    __slots__ = ("admission", "held", "left")

    def __init__(self, admission: Admission, held: int) -> None:
        self.admission = admission
        self.held = held
        self.left = False

    def grow(self, nbytes: int) -> bool:
        if not self.admission.grow(self.held, nbytes):
            return False
        self.held = max(self.held, nbytes)
        return True

    def leave(self) -> None:
        if not self.left:
            self.left = True
            self.admission.leave(self.held)


class _Decoded:
    """A decoded request: its rows, how many items they hold, and the partial-success report."""

    __slots__ = ("batch", "items", "message", "rejected")

    def __init__(self, batch: TelemetryBatch, items: int, rejected: int) -> None:
        self.batch = batch
        self.items = items
        self.rejected = rejected
        self.message = ""


class _Bad(Exception):
    """A request answered on its headers: (code, message, extra headers)."""

    def __init__(self, code: int, message: str, extra: _Headers = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


class OtlpApp:
    """The ASGI application of one transport; see the module docstring.

    Args:
        consumer: where decoded batches go; its outcome decides the answer.
        config: token and limits.
        metrics: where requests and refusals are counted; what ``/metrics`` serves.
        health: what ``/healthz`` answers (200 when its ``status`` is ``ok``); called on the event loop.
        ready: what ``/readyz`` answers (200 when its ``status`` is ``ok``); called on a worker thread
            (it may ask the database), bounded by ``config.ready_timeout_s``.
    """

    def __init__(self, consumer: Consumer, config: TransportConfig, metrics: ReceiverMetrics, *,
                 health: Callable[[], Mapping[str, Any]], ready: Callable[[], Mapping[str, Any]],
                 extra_routes: Sequence[ExtraRoute] = ()) -> None:
        self.consumer = consumer
        self.config = config
        self.metrics = metrics
        self.health = health
        self.ready = ready
        self.admission = Admission(max_requests=config.max_inflight, max_bytes=config.max_inflight_bytes)
        self.retry_after = (("Retry-After", str(config.retry_after_s)),)
        self._token = config.token.encode()
        self._workers = anyio.CapacityLimiter(config.max_inflight)
        self._probe = threading.Lock()  # one /readyz check at a time, even past its deadline
        routes = [Route(p, self._otlp, methods=_METHODS) for p in _PATHS]
        routes += [Route(p, self._get, methods=_METHODS) for p in _GET_PATHS]
        routes.append(Route(_RW_PATH, self._remote_write, methods=_METHODS))
        self._types = TypeCache()  # metric types from remote write metadata, for later requests
        self._extra = {r.path: r for r in extra_routes}
        routes += [Route(p, self._extra_post, methods=_METHODS) for p in self._extra]
        self.asgi = Starlette(routes=routes, exception_handlers={404: self._not_found})
        self.asgi.router.redirect_slashes = False  # /v1/traces/ is unknown, as before

    # -- plumbing ----------------------------------------------------------------------

    def _send(self, request: Request, answer: Answer) -> Response:
        path = request.scope["path"]
        known = path in _PATHS or path in _GET_PATHS or path == _RW_PATH or path in self._extra
        self.metrics.request(path if known else "other", answer.code)
        return Response(answer.body, answer.code, headers=dict(answer.headers), media_type=answer.content_type)

    async def _not_found(self, request: Request, _exc: Exception) -> Response:
        return self._unread(request, Answer(404, b"unknown path; OTLP is at /v1/traces and /v1/metrics, remote write at "
                                               b"/api/v1/write, health at /healthz and /readyz, Prometheus at "
                                               b"/metrics\n", _TEXT))

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the bearer token (constant-time compare)."""
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), self._token)

    # -- GET endpoints -----------------------------------------------------------------

    async def _get(self, request: Request) -> Response:
        if request.method != "GET":
            return self._unread(request, Answer(405, b"use GET\n", _TEXT, (("Allow", "GET"),)))
        path = request.scope["path"]
        if path == "/metrics":
            # The scrape asks the database for the fleet's gauges: not on the event loop.
            body = await to_thread.run_sync(self.metrics.exposition)
            return self._send(request, Answer(200, body, CONTENT_TYPE))
        state = self.health() if path == "/healthz" else await self._readiness()
        code = 200 if state.get("status") == "ok" else 503
        return self._send(request, Answer(code, json.dumps(state).encode() + b"\n", MEDIA_JSON))

    async def _readiness(self) -> Mapping[str, Any]:
        if self.admission.closing:
            return {"status": "unavailable", "reason": "the collector is shutting down"}

        def probe() -> Mapping[str, Any]:
            if not self._probe.acquire(blocking=False):
                return {"status": "unavailable", "reason": "the previous readiness check has not finished "
                                                           "(database slow or unreachable)"}
            try:
                return self.ready()
            finally:
                self._probe.release()

        with anyio.move_on_after(self.config.ready_timeout_s):
            return await to_thread.run_sync(probe, abandon_on_cancel=True)
        return {"status": "unavailable",
                "reason": f"the readiness check did not finish within {self.config.ready_timeout_s} s"}

    # -- extra POST endpoints ----------------------------------------------------------

    async def _extra_post(self, request: Request) -> Response:
        route = self._extra[request.scope["path"]]
        if request.method != "POST":
            return self._unread(request, self._status(405, "use POST", True, (("Allow", "POST"),)))
        try:
            n = self._check_headers(request, True)
        except _Bad as bad:
            return self._unread(request, self._status(bad.code, bad.message, True, bad.extra))
        if self._encoding(request) != "identity":
            return self._unread(request, self._status(415, "send the body uncompressed", True))
        refusal = self.admission.enter(n)
        if refusal is not None:
            return self._unread(request, self._status(503, self._refusal_message(refusal), True, self.retry_after))
        work = _Work(self.admission, n)
        try:
            body = await self._read_body(request, n, self._json_status)
            if isinstance(body, Answer):
                return self._send(request, body)
            headers = {k.lower(): v for k, v in request.headers.items()}

            def run() -> Answer:
                try:
                    code, out = route.handler(body, headers)
                except Exception:  # a handler bug must not take the receiver down
                    logger.exception("handler of %s failed", route.path)
                    code, out = 500, b'{"error": "internal error; see the server log"}'
                return Answer(code, out, MEDIA_JSON)

            return self._send(request, await to_thread.run_sync(run, limiter=self._workers))
        finally:
            work.leave()

    async def _read_body(self, request: Request, n: int, fail: _Render) -> bytes | Answer:
        """The whole body of ``n`` bytes within ``body_timeout_s``, or the answer (by ``fail``) that ends the
        request."""
        chunks: list[bytes] = []
        got = 0
        try:
            with anyio.fail_after(self.config.body_timeout_s):
                async for chunk in request.stream():
                    chunks.append(chunk)
                    got += len(chunk)
        except TimeoutError:
            return fail(408, f"body not received within body_timeout_s={self.config.body_timeout_s} "
                             f"({got} of {n} bytes); resend", _CLOSE)
        except ClientDisconnect:
            return fail(400, f"client went away after {got} of {n} bytes", _CLOSE)
        if got != n:
            return fail(400, f"body ended after {got} of {n} bytes (Content-Length)", _CLOSE)
        return b"".join(chunks)

    def _refusal_message(self, refusal: str) -> str:
        return REASON_TEXT.get(refusal) or (
            f"too many request bytes in flight (max_inflight_bytes={self.config.max_inflight_bytes}); retry later")

    def _json_status(self, code: int, message: str, extra: _Headers = ()) -> Answer:
        return self._status(code, message, True, extra)

    # -- OTLP --------------------------------------------------------------------------

    def _status(self, code: int, message: str, as_json: bool, extra: _Headers = ()) -> Answer:
        ctype = MEDIA_JSON if as_json else MEDIA_PROTOBUF[0]
        return Answer(code, status_body(code, clip(message), as_json), ctype, extra)

    def _check_headers(self, request: Request, as_json: bool) -> int:
        """The declared body length of an acceptable OTLP POST.

        Raises:
            _Bad: the request must be refused on its headers alone.
        """
        n = self._check_length(request)
        encoding = self._encoding(request)
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise _Bad(415, f"Content-Encoding {encoding!r} is not supported; use gzip or none")
        content_type = request.headers.get("content-type", "")
        if not as_json and media_type(content_type) not in MEDIA_PROTOBUF:
            raise _Bad(415, f"unsupported Content-Type {content_type!r}: send application/x-protobuf "
                            "or application/json")
        return n

    def _check_length(self, request: Request) -> int:
        """The declared body length of a POST with the token, within ``max_body_bytes``.

        Raises:
            _Bad: the request must be refused on its headers alone.
        """
        h = request.headers
        if not self.authorized(h.get("authorization")):
            raise _Bad(401, "missing or wrong bearer token (send Authorization: Bearer <token>)",
                       (("WWW-Authenticate", 'Bearer realm="qfleet"'),))
        if h.get("transfer-encoding"):
            raise _Bad(411, "chunked uploads are not supported; send Content-Length")
        cl = h.get("content-length")
        if cl is None:
            raise _Bad(411, "Content-Length is required")
        # The HTTP parser only passes ASCII digits; a non-digit here is a parser change, still a 400.
        if not (cl.isascii() and cl.strip().isdigit()):
            raise _Bad(400, f"Content-Length {cl!r} is not a non-negative integer")
        n = int(cl)
        if n > self.config.max_body_bytes:
            raise _Bad(413, f"body of {n} bytes exceeds max_body_bytes={self.config.max_body_bytes}")
        return n

    @staticmethod
    def _encoding(request: Request) -> str:
        return (request.headers.get("content-encoding") or "identity").strip().lower()

    def _unread(self, request: Request, answer: Answer) -> Response:
        """Answer without reading the body. uvicorn discards a body that follows and keeps the
        connection (until the next head deadline), unless its length is unknown or too large, or
        the client waits for ``100 Continue`` and will not send it: then the connection closes."""
        cl = request.headers.get("content-length", "")
        keep = (cl.isascii() and cl.isdigit() and int(cl) <= self.config.max_body_bytes
                and "100-continue" not in request.headers.get("expect", "").lower()
                and not request.headers.get("transfer-encoding"))
        if not keep:
            answer = Answer(answer.code, answer.body, answer.content_type, (*answer.headers, *_CLOSE))
        return self._send(request, answer)

    async def _otlp(self, request: Request) -> Response:
        signal = _PATHS[request.scope["path"]]
        as_json = media_type(request.headers.get("content-type", "")) == MEDIA_JSON
        if request.method != "POST":
            return self._unread(request, self._status(405, "use POST", as_json, (("Allow", "POST"),)))
        try:
            n = self._check_headers(request, as_json)
        except _Bad as bad:
            return self._unread(request, self._status(bad.code, bad.message, as_json, bad.extra))
        refusal = self.admission.enter(n)
        if refusal is not None:
            self.metrics.refused(signal, refusal, 1)  # before decoding: counted as one request
            return self._unread(request, self._status(503, self._refusal_message(refusal), as_json,
                                                      self.retry_after))
        work = _Work(self.admission, n)
        try:
            answer = await self._read_and_process(request, signal, n, as_json, work)
        finally:
            work.leave()
        return self._send(request, answer)

    async def _read_and_process(self, request: Request, signal: SignalName, n: int, as_json: bool,
                                work: _Work) -> Answer:
        body = await self._read_body(request, n, lambda code, text, extra: self._status(code, text, as_json, extra))
        if isinstance(body, Answer):
            if body.code == 408:
                self.metrics.refused(signal, "body_timeout", 1)
            return body
        ctype = request.headers.get("content-type", "")
        gzipped = self._encoding(request) != "identity"
        return await self._submit(signal, lambda: self._decode(signal, body, ctype, gzipped, as_json, work),
                                  lambda decoded, outcome: self._answer(signal, decoded, outcome, as_json), work)

    async def _submit(self, signal: SignalName, decode: Callable[[], _Decoded | Answer],
                      answer: Callable[[_Decoded, Outcome | None], Answer], work: _Work) -> Answer:
        """Decode (on a worker thread), hand the rows to the consumer and answer once it has spoken."""
        consumer = self.consumer
        if isinstance(consumer, QueueingConsumer):
            return await self._hand_over_queued(consumer, signal, decode, answer, work)

        def run() -> Answer:
            try:
                got = decode()
                if isinstance(got, Answer):
                    return got
                return answer(got, consumer.consume(got.batch, signal) if got.items else None)
            finally:
                work.leave()  # before the answer is sent: a client that resends at once finds its slot free

        return await to_thread.run_sync(run, limiter=self._workers)

    async def _hand_over_queued(self, consumer: QueueingConsumer, signal: SignalName,
                                decode: Callable[[], _Decoded | Answer],
                                answer: Callable[[_Decoded, Outcome | None], Answer], work: _Work) -> Answer:
        """Decode and queue on a worker thread, then wait for the commit here on the event loop:
        no thread waits, and the answer goes out as soon as the writer's notice arrives."""
        loop = asyncio.get_running_loop()
        answered = asyncio.Event()

        def notify() -> None:  # from the writer's thread
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:
                pass  # the event loop has ended (stop): nobody waits any more

        def run() -> tuple[_Decoded, Pending | Outcome | None] | Answer:
            got = decode()
            if isinstance(got, Answer):
                return got
            return got, consumer.submit(got.batch, signal, notify) if got.items else None

        try:
            done = await to_thread.run_sync(run, limiter=self._workers)
            if isinstance(done, Answer):
                return done
            decoded, pending = done
            if pending is None or isinstance(pending, Outcome):
                return answer(decoded, pending)
            decoded.batch = TelemetryBatch()  # the queue holds the rows now
            with anyio.move_on_after(consumer.ack_timeout_s):
                await answered.wait()
            outcome = pending.result()
            return answer(decoded, outcome if outcome is not None else consumer.abandon(pending))
        finally:
            work.leave()

    def _decode(self, signal: SignalName, body: bytes, ctype: str, gzipped: bool, as_json: bool,
                work: _Work) -> _Decoded | Answer:
        """Decompress and decode (on a worker thread); an :class:`Answer` when that fails."""
        limit = self.config.max_body_bytes
        if gzipped:
            # Decompress no further than the budget allows, so a burst of gzip requests cannot
            # inflate past it; the decompressed size is then what the request holds.
            cap = min(limit, work.held + self.admission.free())
            try:
                body = gunzip(body, cap)
            except BodyTooLarge:
                if cap < limit:
                    return self._budget_refusal(signal, as_json)
                self.metrics.rejected(signal, "too_large")
                return self._status(413, f"decompressed body exceeds max_body_bytes={limit}", as_json)
            except DecodeFailure as err:
                self.metrics.rejected(signal, "malformed")
                return self._status(400, str(err), as_json)
            if not work.grow(len(body)):
                return self._budget_refusal(signal, as_json)
        try:
            batch = decode_body(signal, body, ctype, gzipped=False, max_bytes=limit, limits=self.config.limits)
        except DecodeFailure as err:
            self.metrics.rejected(signal, "malformed")
            return self._status(400, str(err), as_json)
        del body
        decoded = _Decoded(batch, batch.item_count, rejected_items(batch, signal))
        self.metrics.received(signal, decoded.items)
        if decoded.rejected:
            self.metrics.rejected(signal, "invalid", decoded.rejected)
        # Also with nothing rejected: OTLP's partial success carries "stored within limits" as a warning.
        decoded.message = rejection_message(batch, signal)
        return decoded

    def _answer(self, signal: SignalName, decoded: _Decoded, outcome: Outcome | None, as_json: bool) -> Answer:
        """The answer once the consumer has spoken (``None``: nothing was handed over)."""
        if outcome is not None and not outcome.committed:
            return self._not_committed(signal, decoded.items, outcome,
                                       lambda code, text, extra: self._status(code, text, as_json, extra))
        ctype_out = MEDIA_JSON if as_json else MEDIA_PROTOBUF[0]
        return Answer(200, export_response(signal, as_json, decoded.rejected, decoded.message), ctype_out)

    def _not_committed(self, signal: SignalName, items: int, outcome: Outcome, render: _Render) -> Answer:
        """The answer to ``items`` the consumer did not commit: 503 to retry, else 413 or 400."""
        text = outcome.message or REASON_TEXT[outcome.reason]
        if outcome.retryable:
            self.metrics.refused(signal, outcome.reason, items)
            return render(503, text, self.retry_after)
        self.metrics.rejected(signal, "too_large" if outcome.reason == "too_large" else "unstorable", items)
        return render(413 if outcome.reason == "too_large" else 400, text, ())

    def _budget_refusal(self, signal: SignalName, as_json: bool) -> Answer:
        self.metrics.refused(signal, "inflight_bytes", 1)
        return self._status(503, "decompressed body does not fit the bytes in flight now (max_inflight_bytes="
                                 f"{self.config.max_inflight_bytes}); retry later", as_json, self.retry_after)

    # -- Prometheus remote write -------------------------------------------------------

    async def _remote_write(self, request: Request) -> Response:
        if request.method != "POST":
            return self._unread(request, _text(405, "use POST", (("Allow", "POST"),)))
        try:
            n = self._check_length(request)
            _check_remote_write_media(request.headers)
        except _Bad as bad:
            return self._unread(request, _text(bad.code, bad.message, bad.extra))
        refusal = self.admission.enter(n)
        if refusal is not None:
            self.metrics.refused(POINTS, refusal, 1)  # before decoding: counted as one request
            return self._unread(request, _text(503, self._refusal_message(refusal), self.retry_after))
        work = _Work(self.admission, n)
        try:
            body = await self._read_body(request, n, _text)
            if isinstance(body, Answer):
                if body.code == 408:
                    self.metrics.refused(POINTS, "body_timeout", 1)
                answer = body
            else:
                answer = await self._submit(POINTS, lambda: self._decode_remote_write(body, work),
                                            self._answer_remote_write, work)
        finally:
            work.leave()
        return self._send(request, answer)

    def _decode_remote_write(self, body: bytes, work: _Work) -> _Decoded | Answer:
        """Check the declared size, decompress, decode and convert (on a worker thread); an :class:`Answer`
        when that fails."""
        limit = self.config.max_body_bytes
        try:
            size = snappy_length(body)
        except DecodeFailure as err:
            self.metrics.rejected(POINTS, "malformed")
            return _text(400, str(err))
        if size > limit:
            self.metrics.rejected(POINTS, "too_large")
            return _text(413, f"snappy body declares {size} bytes uncompressed, over max_body_bytes={limit}; "
                              "lower queue_config.max_samples_per_send")
        # Reserved before decompressing: a burst of small bodies declaring large sizes cannot inflate past it.
        if not work.grow(size):
            self.metrics.refused(POINTS, "inflight_bytes", 1)
            return _text(503, f"decompressed body does not fit the bytes in flight now (max_inflight_bytes="
                              f"{self.config.max_inflight_bytes}); retry later", self.retry_after)
        try:
            converted = from_write_request(decode_write_request(body, limit), self.config.limits, self._types)
        except DecodeFailure as err:
            self.metrics.rejected(POINTS, "malformed")
            return _text(400, str(err))
        for reason, k in converted.skipped.items():
            self.metrics.skipped(reason, k)
        batch = converted.batch
        decoded = _Decoded(batch, batch.item_count, batch.rejected_points)
        self.metrics.received(POINTS, decoded.items)
        if decoded.rejected:
            self.metrics.rejected(POINTS, "invalid", decoded.rejected)
            decoded.message = rejection_message(batch, POINTS)
        return decoded

    def _answer_remote_write(self, decoded: _Decoded, outcome: Outcome | None) -> Answer:
        """204 once committed; 400 when samples were invalid (after the valid ones are committed)."""
        if outcome is not None and not outcome.committed:
            return self._not_committed(POINTS, decoded.items, outcome, _text)
        if decoded.rejected:
            return _text(400, f"{decoded.items} samples stored; {decoded.message}")
        return Answer(204, b"", _TEXT)


def _check_remote_write_media(headers: Mapping[str, str]) -> None:
    """Raise :class:`_Bad` (415) unless the body is declared snappy-compressed remote write 1.0 protobuf."""
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    if encoding != "snappy":
        raise _Bad(415, f"Content-Encoding {encoding!r} is not supported on /api/v1/write; remote write 1.0 "
                        "sends snappy")
    content_type = headers.get("content-type", "")
    proto = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")[1:]
                  if p.strip().lower().startswith("proto=")), _RW_PROTO)
    if media_type(content_type) != MEDIA_PROTOBUF[0] or proto != _RW_PROTO:
        raise _Bad(415, f"unsupported Content-Type {content_type!r}: remote write 1.0 sends "
                        "application/x-protobuf (prometheus.WriteRequest)")
