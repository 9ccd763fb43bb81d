"""At-least-once HTTP delivery of the outbox: signed JSON POSTs, retries with backoff, dead letters.

Each attempt carries ``Idempotency-Key: <outbox id>`` (the same on every retry and after a crash) and
``X-Qfleet-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256 over t, the key and the body>``, so a receiver can verify and de-duplicate
(``docs/webhooks.md``). Answers: 2xx delivered; 5xx, 429, timeouts and connection errors retried with backoff
(honouring ``Retry-After`` seconds); any other status dead at once (sre.md §18-19); dead after ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from qfleet.alerts.outbox import Backoff, LeaseLost, Outbox, OutboxItem
from qfleet.alerts.payloads import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature_header
from qfleet.units import NS

__all__ = ["DeliveryStats", "Deliverer", "SecretError", "USER_AGENT", "create_secret", "load_secret"]

log = logging.getLogger(__name__)

USER_AGENT = "qfleet-alerts/1"
_RESPONSE_MAX = 64 * 1024
#: Added to an item's lease beyond its attempt's deadline: the database marks, clock skew between replicas. A
#: replica killed mid-attempt delays that item by at most timeout_s + this (then another re-sends it, same key).
_LEASE_SLACK_S = 5.0


class SecretError(ValueError):
    """The signing-secret file is missing, empty or readable by other users."""


def load_secret(path: Path | str) -> bytes:
    """The HMAC signing secret in ``path`` (surrounding whitespace stripped); the file must be mode 0600 or
    stricter, as :func:`qfleet.collector.settings.load_token` requires. The secret is never logged."""
    path = Path(path)
    if not path.exists():
        raise SecretError(f"secret file {str(path)!r} does not exist; create it with: "
                          f"python -c 'import secrets; print(secrets.token_hex(32))' > {path}; chmod 600 {path}")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"secret file {str(path)!r} is readable by other users (mode {oct(mode & 0o777)}); "
                          f"run: chmod 600 {path}")
    secret = path.read_bytes().strip()
    if not secret:
        raise SecretError(f"secret file {str(path)!r} is empty; put a random secret in it")
    return secret


def create_secret(path: Path | str) -> bytes:
    """The secret in ``path``, created first if missing: written to a new file opened ``O_CREAT|O_EXCL`` with mode
    0600, so it is never readable by others at any moment; an existing file is read with :func:`load_secret`."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SecretError(f"cannot create secret file {str(path)!r}: directory {str(path.parent)!r} does not "
                          f"exist; create it (mkdir -p {path.parent}) or pass an existing directory")
    secret = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return load_secret(path)
    except OSError as e:
        raise SecretError(f"cannot create secret file {str(path)!r}: {e.strerror}; fix the directory's "
                          "permissions or pass another path") from None
    try:
        os.write(fd, secret + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What one :meth:`Deliverer.run_once` did; add them to total several runs.

    ``deferred`` items were not attempted because their host already failed to connect in this run; ``lost``
    attempts could not be recorded because another replica took the item's lease meanwhile (it re-sends it under
    the same Idempotency-Key).
    """

    attempted: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
    lost: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(self.attempted + other.attempted, self.delivered + other.delivered,
                             self.retried + other.retried, self.dead + other.dead, self.deferred + other.deferred,
                             self.lost + other.lost)


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str            # "delivered" | "retry" | "dead" | "unreachable"
    error: str = ""
    retry_after_s: float = 0.0


class Deliverer:
    """POSTs due outbox items; time comes from ``clock`` (Unix ns), waits from ``sleep`` (default time.sleep)."""

    def __init__(self, outbox: Outbox, *, secret: bytes, timeout_s: float = 10, max_attempts: int = 12,
                 backoff: Backoff | None = None, clock: Callable[[], int],
                 sleep: Callable[[float], None] | None = None) -> None:
        if not secret:
            raise SecretError("the signing secret is empty; load one with alerts.webhook.load_secret()")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s} must be positive, e.g. 10")
        if max_attempts < 1:
            raise ValueError(f"max_attempts={max_attempts} must be at least 1, e.g. 12")
        self._outbox = outbox
        self._secret = secret
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff = backoff if backoff is not None else Backoff()
        self._clock = clock
        self._sleep = sleep if sleep is not None else time.sleep

    def __repr__(self) -> str:  # never show the secret
        return f"Deliverer(timeout_s={self._timeout_s}, max_attempts={self._max_attempts})"

    def run_once(self, limit: int = 500, *, batch: int = 1) -> DeliveryStats:
        """Attempt every item this replica can claim once (up to ``limit``), ``batch`` at a time (one claim per
        attempt by default, so a crash strands as little as possible), each claim leased for longer than its
        attempts can take, and record each outcome in the outbox.

        One pooled HTTP client serves the whole run (connections are reused per host); each attempt has a
        deadline of ``timeout_s`` over everything (connect, send, the whole response), so a receiver that drips
        its answer cannot hold delivery longer than that.
        """
        if limit < 1 or batch < 1:
            raise ValueError(f"limit={limit} and batch={batch} must be at least 1")
        lease_ns = int((self._timeout_s * batch + _LEASE_SLACK_S) * NS)
        first = self._outbox.claim(min(batch, limit), lease_ns=lease_ns)
        if not first:   # the common case of a quiet cycle: no event loop, no client
            return DeliveryStats()
        return asyncio.run(self._run_once(limit, batch, lease_ns, first))

    async def _run_once(self, limit: int, batch: int, lease_ns: int, first: list[OutboxItem]) -> DeliveryStats:
        stats = DeliveryStats()
        unreachable: set[str] = set()
        held: list[str] = []             # claimed, not attempted: given back at the end, not re-claimed meanwhile
        seen = 0
        # trust_env=False: proxies and .netrc from the environment must not redirect or decorate signed requests.
        async with httpx.AsyncClient(timeout=self._timeout_s, trust_env=False, follow_redirects=False, verify=_tls(),
                                     headers={"User-Agent": USER_AGENT}) as client:
            try:
                claimed = first
                while claimed:
                    seen += len(claimed)
                    for item in claimed:
                        if urlsplit(item.url).netloc in unreachable:
                            held.append(item.id)
                            stats += DeliveryStats(deferred=1)
                            continue
                        stats += self._record(item, await self._post(client, item), unreachable)
                    claimed = self._outbox.claim(min(batch, limit - seen), lease_ns=lease_ns) if seen < limit else []
            finally:
                self._outbox.release(held)
        return stats

    def _record(self, item: OutboxItem, outcome: _Outcome, unreachable: set[str]) -> DeliveryStats:
        try:
            if outcome.kind == "delivered":
                self._outbox.mark_delivered(item.id)
                return DeliveryStats(attempted=1, delivered=1)
            if outcome.kind == "unreachable":
                unreachable.add(urlsplit(item.url).netloc)
            state = self._outbox.mark_failed(item.id, outcome.error, max_attempts=self._max_attempts,
                                             backoff=self._backoff, permanent=outcome.kind == "dead",
                                             retry_after_s=outcome.retry_after_s)
        except LeaseLost as e:
            log.warning("outbox item %s: %s", item.id, e)
            return DeliveryStats(attempted=1, lost=1)
        if state == "dead":
            log.warning("outbox item %s to %s (%s) is dead: %s", item.id, item.receiver, item.integration,
                        outcome.error)
            return DeliveryStats(attempted=1, dead=1)
        log.info("outbox item %s to %s will be retried: %s", item.id, item.receiver, outcome.error)
        return DeliveryStats(attempted=1, retried=1)

    def run(self, *, poll_s: float = 1.0, should_stop: Callable[[], bool] = lambda: False,
            limit: int = 500) -> DeliveryStats:
        """Loop :meth:`run_once` until ``should_stop()``; sleeps ``poll_s`` when a run delivered nothing."""
        total = DeliveryStats()
        while not should_stop():
            s = self.run_once(limit)
            total += s
            if not s.delivered:
                self._sleep(poll_s)
        return total

    async def _post(self, client: httpx.AsyncClient, item: OutboxItem) -> _Outcome:
        body = json.dumps(item.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: item.id,
            SIGNATURE_HEADER: signature_header(self._secret, self._clock() // NS, item.id, body),
        }
        parts = urlsplit(item.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return _Outcome("dead", f"url {item.url!r} of receiver {item.receiver!r} is not http(s)://host/...; "
                                    "fix the receiver's url in alertmanager.yml")
        try:
            # httpx's timeouts bound each phase (connect, each read); this bounds the attempt as a whole.
            async with asyncio.timeout(self._timeout_s):
                async with client.stream("POST", item.url, content=body, headers=headers) as resp:
                    status = resp.status_code
                    retry_after = resp.headers.get("Retry-After", "")
                    text = await _read_at_most(resp, _RESPONSE_MAX)
        except TimeoutError:
            return _Outcome("unreachable", f"timed out after {self._timeout_s:g}s (no complete answer by then)")
        except httpx.TimeoutException as e:
            return _Outcome("unreachable", f"timed out after {self._timeout_s:g}s ({type(e).__name__})")
        except httpx.InvalidURL as e:
            return _Outcome("dead", f"bad url {item.url!r}: {e}")
        except (httpx.HTTPError, OSError) as e:
            return _Outcome("unreachable", f"{type(e).__name__}: {e}")
        if 200 <= status < 300:
            return _Outcome("delivered")
        error = f"HTTP {status}: {text[:200]}"
        if status >= 500 or status == 429:
            return _Outcome("retry", error, _retry_after_s(retry_after))
        return _Outcome("dead", error)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process (the system's trusted CAs): loading them costs ~40 ms, too much per run."""
    return ssl.create_default_context()


async def _read_at_most(resp: httpx.Response, limit: int) -> str:
    """Up to ``limit`` bytes of the answer's body, as text (a receiver's error message; the rest is ignored)."""
    got = bytearray()
    async for chunk in resp.aiter_raw():
        got += chunk[: limit - len(got)]
        if len(got) >= limit:
            break
    return got.decode("utf-8", "replace")


def _retry_after_s(value: str) -> float:
    """``Retry-After`` in seconds (the delta form; an HTTP date or junk reads as 0), capped at one hour."""
    try:
        return min(3600.0, max(0.0, float(value)))
    except ValueError:
        return 0.0

