"""Sending qfleet's alerts to existing Alertmanagers as Prometheus does: ``POST /api/v2/alerts``.

The rules are Prometheus' (``rules/alerting.go``, ``notifier/notifier.go``):

* a firing alert is sent when it is new or changed, or when ``resend_delay`` (default 1m) has passed since it was
  last sent; its ``endsAt`` is ``now + 4 × max(evaluation interval, resend_delay)``, so Alertmanager resolves it
  by itself if qfleet stops sending (two missed evaluations or sends are tolerated);
* a resolved alert is sent with ``endsAt`` = the instant it resolved, again every ``resend_delay``, for 15 minutes
  after it resolved (``resolvedRetention``), so an Alertmanager that missed one send still learns it;
* alerts go in batches of at most 64 per request (``maxBatchSize``), each batch to every configured Alertmanager.

A request that fails (connection refused, timeout, non-2xx) is counted and logged, never raised: its alerts count
as unsent, so the next cycle sends them again (Alertmanager merges repeated alerts by their labels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from qfleet.alerts.model import Alert, AlertmanagerTarget, PushConfig
from qfleet.units import NS, format_rfc3339

if TYPE_CHECKING:   # HTTP loads on the first push: loading the config (which names PushConfig) stays light
    import httpx

__all__ = [
    "MAX_BATCH",
    "RESOLVED_RETENTION_NS",
    "AlertmanagerPush",
    "PushStats",
    "alert_json",
]

logger = logging.getLogger(__name__)

#: How long Prometheus keeps sending an alert after it resolved (``resolvedRetention``).
RESOLVED_RETENTION_NS = 15 * 60 * NS
#: Alerts per request (Prometheus' ``maxBatchSize``).
MAX_BATCH = 64
_ERROR_MAX = 4096           # bytes of an Alertmanager's error answer kept for the log
_PLACE_LABELS = ("node", "link", "hardware_type")


@dataclass(frozen=True, slots=True)
class PushStats:
    """What one :meth:`AlertmanagerPush.push` did: alerts sent (counted once, however many Alertmanagers took
    them), requests that failed."""

    sent: int = 0
    failed: int = 0


def alert_json(a: Alert, *, ends_at: int, generator_url: str) -> dict[str, object]:
    """One element of the ``POST /api/v2/alerts`` body (``postableAlert``).

    >>> from qfleet.alerts.model import DEFAULT_RESEND_DELAY_NS, Alert, AlertmanagerTarget, PushConfig
    >>> alert_json(Alert(labels=(("alertname", "X"),), starts_at=0), ends_at=4 * 60 * NS, generator_url="http://q")
    {'labels': {'alertname': 'X'}, 'annotations': {}, 'startsAt': '1970-01-01T00:00:00Z', 'endsAt': '1970-01-01T00:04:00Z', 'generatorURL': 'http://q'}
    """
    return {"labels": dict(a.labels), "annotations": dict(a.annotations), "startsAt": format_rfc3339(a.starts_at),
            "endsAt": format_rfc3339(ends_at), "generatorURL": generator_url}


class AlertmanagerPush:
    """Sends alerts to the Alertmanagers of ``config``; remembers in memory when each alert was last sent (as
    Prometheus does: after a restart everything is sent once more, which Alertmanager absorbs).

    Args:
        config: the targets and the resend delay.
        external_url: the dashboards' URL; an alert without its own ``generator_url`` links to the on-call view
            there, filtered to the alert's node, link or hardware type.
    """

    def __init__(self, config: PushConfig, *, external_url: str) -> None:
        if not config.targets:
            raise ValueError("PushConfig.targets is empty; list at least one Alertmanager under "
                             "alerting.alertmanagers[].static_configs[].targets")
        if config.resend_delay_ns <= 0:
            raise ValueError(f"resend_delay_ns={config.resend_delay_ns} must be positive, e.g. 60 s")
        self.config = config
        self.external_url = external_url.rstrip("/")
        self.failures_total = 0   # requests that failed since start (the cycle stats carry each cycle's)
        # fingerprint -> (sent at, starts_at, ends_at or None) of the last successful send
        self._sent: dict[str, tuple[int, int, int | None]] = {}

    def __repr__(self) -> str:
        return f"AlertmanagerPush(targets={[t.url for t in self.config.targets]})"

    def generator_url(self, a: Alert) -> str:
        """The alert's own ``generator_url``, else the on-call view of its place."""
        if a.generator_url:
            return a.generator_url
        place = [(k, a.label(k)) for k in _PLACE_LABELS if a.label(k)]
        return f"{self.external_url}/oncall" + (f"?{urlencode(place)}" if place else "")

    def due(self, active: Sequence[Alert], resolved: Sequence[Alert], at_ns: int,
            interval_ns: int) -> list[tuple[Alert, dict[str, object]]]:
        """The alerts to send at ``at_ns`` with their bodies: those never sent in their current state, and those
        last sent more than ``resend_delay`` ago; resolved ones only within 15 minutes of resolving."""
        resend = self.config.resend_delay_ns
        valid_until = at_ns + 4 * max(interval_ns, resend)
        out: list[tuple[Alert, dict[str, object]]] = []
        recent = [a for a in resolved if a.ends_at is not None and at_ns - a.ends_at <= RESOLVED_RETENTION_NS]
        for a in [*active, *recent]:
            last = self._sent.get(a.fingerprint)
            if last is None or (last[1], last[2]) != (a.starts_at, a.ends_at) or last[0] + resend < at_ns:
                ends = valid_until if a.ends_at is None else a.ends_at
                out.append((a, alert_json(a, ends_at=ends, generator_url=self.generator_url(a))))
        return out

    def push(self, active: Sequence[Alert], resolved: Sequence[Alert], at_ns: int, *,
             interval_ns: int) -> PushStats:
        """Send what is due (:meth:`due`) in batches of :data:`MAX_BATCH` to every target; never raises.

        Args:
            active: firing alerts (``ends_at`` None).
            resolved: alerts resolved lately (``ends_at`` set); those resolved over 15 minutes ago are skipped.
            at_ns: the evaluation instant.
            interval_ns: the evaluation interval (``endsAt`` of firing alerts is ``at + 4 × max(it, resend)``).
        """
        due = self.due(active, resolved, at_ns, interval_ns)
        live = {a.fingerprint for a in [*active, *resolved]}
        self._sent = {fp: v for fp, v in self._sent.items() if fp in live}   # forget what is gone for good
        if not due:
            return PushStats()
        import httpx

        from qfleet.alerts.webhook import USER_AGENT, _tls  # one TLS context and User-Agent for all delivery

        sent = failed = 0
        with httpx.Client(trust_env=False, follow_redirects=False, verify=_tls(),
                          headers={"User-Agent": USER_AGENT}) as client:
            for i in range(0, len(due), MAX_BATCH):
                batch = due[i:i + MAX_BATCH]
                errors = [e for e in (self._post(client, t, [body for _, body in batch])
                                      for t in self.config.targets) if e]
                failed += len(errors)
                if errors:
                    continue   # unsent: due again next cycle
                for a, _ in batch:
                    self._sent[a.fingerprint] = (at_ns, a.starts_at, a.ends_at)
                sent += len(batch)
        self.failures_total += failed
        return PushStats(sent=sent, failed=failed)

    def _post(self, client: httpx.Client, target: AlertmanagerTarget, alerts: list[dict[str, object]]) -> str:
        """POST one batch to one Alertmanager: '' on 2xx, else the error (logged here)."""
        import httpx

        headers = {"Authorization": f"Bearer {target.bearer_token}"} if target.bearer_token else {}
        try:
            with client.stream("POST", target.url, json=alerts, headers=headers, timeout=target.timeout_s) as resp:
                if 200 <= resp.status_code < 300:
                    return ""
                text = b""
                for chunk in resp.iter_raw():
                    text += chunk[:_ERROR_MAX - len(text)]
                    if len(text) >= _ERROR_MAX:
                        break
                error = f"HTTP {resp.status_code}: {text.decode('utf-8', 'replace')[:200]}"
        except (httpx.HTTPError, OSError) as e:
            error = f"{type(e).__name__}: {e}"
        logger.warning("sending %d alerts to Alertmanager %s failed (retried next cycle): %s", len(alerts),
                       target.url, error)
        return error
