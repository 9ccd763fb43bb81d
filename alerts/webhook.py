"""At-least-once HTTP delivery of the outbox: signed JSON POSTs, retries with backoff, dead letters.

Each attempt carries ``Idempotency-Key: <outbox id>`` (the same on every retry and after a crash) and
``X-Qfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, so a receiver can verify and de-duplicate
(``docs/webhooks.md``). Answers: 2xx delivered; 5xx, 429, timeouts and connection errors retried with backoff
(honouring ``Retry-After`` seconds); any other status dead at once (sre.md §18-19); dead after ``max_attempts``.
"""

from __future__ import annotations

import http.client
import json
import logging
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from qfleet.alerts.outbox import Backoff, Outbox, OutboxItem
from qfleet.alerts.payloads import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature_header
from qfleet.units import NS

__all__ = ["DeliveryStats", "Deliverer", "SecretError", "USER_AGENT", "load_secret"]

log = logging.getLogger(__name__)

USER_AGENT = "qfleet-alerts/1"
_RESPONSE_MAX = 64 * 1024


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


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What one :meth:`Deliverer.run_once` did; add them to total several runs.

    ``deferred`` items were not attempted because their host already failed to connect in this run.
    """

    attempted: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(self.attempted + other.attempted, self.delivered + other.delivered,
                             self.retried + other.retried, self.dead + other.dead, self.deferred + other.deferred)


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

    def run_once(self, limit: int = 500) -> DeliveryStats:
        """Attempt every due item once (up to ``limit``) and record each outcome in the outbox."""
        stats = DeliveryStats()
        unreachable: set[str] = set()
        for item in self._outbox.due(limit):
            host = urlsplit(item.url).netloc
            if host in unreachable:
                stats += DeliveryStats(deferred=1)
                continue
            outcome = self._post(item)
            if outcome.kind == "delivered":
                self._outbox.mark_delivered(item.id)
                stats += DeliveryStats(attempted=1, delivered=1)
                continue
            if outcome.kind == "unreachable":
                unreachable.add(host)
            state = self._outbox.mark_failed(item.id, outcome.error, max_attempts=self._max_attempts,
                                             backoff=self._backoff, permanent=outcome.kind == "dead",
                                             retry_after_s=outcome.retry_after_s)
            if state == "dead":
                log.warning("outbox item %s to %s (%s) is dead: %s", item.id, item.receiver, item.integration,
                            outcome.error)
                stats += DeliveryStats(attempted=1, dead=1)
            else:
                log.info("outbox item %s to %s will be retried: %s", item.id, item.receiver, outcome.error)
                stats += DeliveryStats(attempted=1, retried=1)
        return stats

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

    def _post(self, item: OutboxItem) -> _Outcome:
        body = json.dumps(item.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: item.id,
            SIGNATURE_HEADER: signature_header(self._secret, self._clock() // NS, body),
        }
        parts = urlsplit(item.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return _Outcome("dead", f"url {item.url!r} of receiver {item.receiver!r} is not http(s)://host/...; "
                                    "fix the receiver's url in alertmanager.yml")
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        try:
            conn = conn_cls(parts.netloc, timeout=self._timeout_s)
        except (http.client.InvalidURL, ValueError) as e:
            return _Outcome("dead", f"bad url {item.url!r}: {e}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            status = resp.status
            retry_after = resp.getheader("Retry-After", "")
            text = resp.read(_RESPONSE_MAX).decode("utf-8", "replace")[:200]
        except TimeoutError:
            return _Outcome("unreachable", f"timed out after {self._timeout_s}s")
        except (ConnectionError, OSError, http.client.HTTPException) as e:
            return _Outcome("unreachable", f"{type(e).__name__}: {e}")
        finally:
            conn.close()
        if 200 <= status < 300:
            return _Outcome("delivered")
        error = f"HTTP {status}: {text}"
        if status >= 500 or status == 429:
            return _Outcome("retry", error, _retry_after_s(retry_after))
        return _Outcome("dead", error)


def _retry_after_s(value: str) -> float:
    """``Retry-After`` in seconds (the delta form; an HTTP date or junk reads as 0), capped at one hour."""
    try:
        return min(3600.0, max(0.0, float(value)))
    except ValueError:
        return 0.0

