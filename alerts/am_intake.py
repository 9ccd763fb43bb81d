"""Alertmanager's webhook v4 as an alert source: alerts a team's own Alertmanager routed become qfleet incidents.

Point a ``webhook_configs`` entry of that Alertmanager at qfleet's receiver (:data:`INTAKE_PATH`, with the
receiver's bearer token in ``http_config.authorization.credentials_file``; ``docs/webhooks.md``). Each webhook is
one notification Alertmanager already routed, grouped and de-duplicated, so qfleet does not route it again: it

1. records the alerts in :class:`~qfleet.alerts.sources.AlertState` under the source ``alertmanager:<receiver>``
   (the receiver named in the body: the identity the bearer token vouches for), firing ones with Alertmanager's
   ``startsAt``, resolved ones ending at its ``endsAt``;
2. hands the notification to :meth:`~qfleet.alerts.incidents.Incidents.on_notification`, the path qfleet's own
   notifications take: the first firing notification of a group opens an incident, the group's resolved one
   resolves it, faults are linked, and postmortems and the on-call dashboard read it like any other.

The group key is prefixed with the source, so another Alertmanager's groups never join qfleet's own by key (they
still join an incident that has the same alert). Bodies are untrusted: the shape, types and sizes are checked
(400 with the reason otherwise; Alertmanager does not retry a 4xx), and the text is stored as text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine

from qfleet.alerts.incidents import Incidents
from qfleet.alerts.model import Alert, Notification, labels_key
from qfleet.alerts.payloads import ZERO_TIME
from qfleet.alerts.sources import EXTERNAL_PREFIX, AlertState
from qfleet.collector.http_app import ExtraRoute
from qfleet.units import TimestampError, parse_rfc3339

__all__ = ["INTAKE_PATH", "AlertmanagerIntake", "IntakeError", "intake_route", "parse_webhook"]

logger = logging.getLogger(__name__)

#: Where ``qfleet serve`` mounts the intake on its receiver.
INTAKE_PATH = "/api/v1/alertmanager"
_MAX_ALERTS = 5000          # one group's alerts; the receiver's max_body_bytes bounds the bytes
_MAX_PAIRS = 128            # labels or annotations per alert / per common set
_MAX_NAME = 256             # a label or annotation name, a receiver name
_MAX_VALUE = 16_384         # a label or annotation value (descriptions can be long)
_MAX_KEY = 8192             # groupKey, generatorURL, externalURL


class IntakeError(ValueError):
    """A webhook body that is not Alertmanager's webhook v4 (the message names the field and what is wrong)."""


def _text(doc: Mapping[str, Any], key: str, where: str, limit: int, *, required: bool = True) -> str:
    v = doc.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise IntakeError(f"{where}{key}: expected a string, got {type(v).__name__}")
    if len(v) > limit:
        raise IntakeError(f"{where}{key}: {len(v)} characters, more than {limit}")
    return v


def _pairs(doc: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    v = doc.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise IntakeError(f"{where}{key}: expected an object of strings, got {type(v).__name__}")
    if len(v) > _MAX_PAIRS:
        raise IntakeError(f"{where}{key}: {len(v)} entries, more than {_MAX_PAIRS}")
    for name, value in v.items():
        if not name or len(name) > _MAX_NAME:
            raise IntakeError(f"{where}{key}: a name is empty or longer than {_MAX_NAME} characters")
        if not isinstance(value, str):
            raise IntakeError(f"{where}{key}.{name[:64]}: expected a string, got {type(value).__name__}")
        if len(value) > _MAX_VALUE:
            raise IntakeError(f"{where}{key}.{name[:64]}: {len(value)} characters, more than {_MAX_VALUE}")
    return dict(v)


def _time(doc: Mapping[str, Any], key: str, where: str) -> int:
    text = _text(doc, key, where, 64)
    try:
        return parse_rfc3339(text)
    except TimestampError as e:
        raise IntakeError(f"{where}{key}: {e}") from None


def _alert(doc: Any, i: int) -> tuple[str, Alert]:
    where = f"alerts[{i}]."
    if not isinstance(doc, dict):
        raise IntakeError(f"alerts[{i}]: expected an object, got {type(doc).__name__}")
    status = doc.get("status")
    if status not in ("firing", "resolved"):
        raise IntakeError(f"{where}status: expected 'firing' or 'resolved', got {str(status)[:32]!r}")
    labels = _pairs(doc, "labels", where)
    if not labels:
        raise IntakeError(f"{where}labels: an alert needs at least one label")
    ends_at = None
    if status == "resolved":
        if doc.get("endsAt") == ZERO_TIME:
            raise IntakeError(f"{where}endsAt: a resolved alert needs the instant it resolved")
        ends_at = _time(doc, "endsAt", where)
    return status, Alert(labels=labels_key(labels), annotations=labels_key(_pairs(doc, "annotations", where)),
                         starts_at=_time(doc, "startsAt", where), ends_at=ends_at,
                         generator_url=_text(doc, "generatorURL", where, _MAX_KEY, required=False))


def parse_webhook(body: bytes, *, at_ns: int) -> Notification:
    """The :class:`Notification` a webhook v4 ``body`` carries, received at ``at_ns``: its receiver is the source
    ``alertmanager:<receiver>`` and its group key ``alertmanager:<receiver>:<groupKey>``.

    Raises:
        IntakeError: not JSON, not version "4", or a field of the wrong type or size (named in the message).

    >>> doc = {"version": "4", "receiver": "team", "groupKey": "{}:{}", "status": "firing", "groupLabels": {},
    ...        "alerts": [{"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2025-01-01T00:00:00Z",
    ...                    "endsAt": "0001-01-01T00:00:00Z"}]}
    >>> n = parse_webhook(json.dumps(doc).encode(), at_ns=5)
    >>> n.receiver, n.group_key, len(n.firing), n.firing[0].ends_at
    ('alertmanager:team', 'alertmanager:team:{}:{}', 1, None)
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntakeError(f"the body is not JSON ({e.__class__.__name__}: {str(e)[:80]})") from None
    if not isinstance(doc, dict):
        raise IntakeError("the body must be a JSON object (Alertmanager's webhook v4)")
    if doc.get("version") != "4":
        raise IntakeError(f"version: expected \"4\" (Alertmanager's webhook v4), got {str(doc.get('version'))[:16]!r}")
    receiver = _text(doc, "receiver", "", _MAX_NAME)
    if not receiver:
        raise IntakeError("receiver: empty; Alertmanager names the receiver that sent the notification")
    group_key = _text(doc, "groupKey", "", _MAX_KEY)
    group_labels = _pairs(doc, "groupLabels", "")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise IntakeError("alerts: expected a list of alerts")
    if len(alerts) > _MAX_ALERTS:
        raise IntakeError(f"alerts: {len(alerts)} alerts, more than {_MAX_ALERTS}; set max_alerts in the "
                          "webhook_config")
    parsed = [_alert(a, i) for i, a in enumerate(alerts)]
    reason = _text(doc, "notification_reason", "", _MAX_NAME, required=False)   # Alertmanager 0.32+
    source = f"{EXTERNAL_PREFIX}{receiver}"
    return Notification(at=at_ns, receiver=source, group_key=f"{source}:{group_key}",
                        group_labels=labels_key(group_labels), reason=reason,
                        firing=tuple(a for s, a in parsed if s == "firing"),
                        resolved=tuple(a for s, a in parsed if s == "resolved"))


def _answer(status: int, doc: dict[str, Any]) -> tuple[int, bytes]:
    return status, json.dumps(doc, separators=(",", ":")).encode()


class AlertmanagerIntake:
    """The handler of :data:`INTAKE_PATH`: ``handle(body, headers) -> (status, JSON body)``.

    The receiver has checked the bearer token, the size and the budgets before calling it (on a worker thread).

    Args:
        engine: a migrated store.
        clock: integer-ns clock (the instant a notification is recorded).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], int]) -> None:
        self.state = AlertState(engine)
        self.incidents = Incidents(engine, clock=clock)
        self.clock = clock

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """Record one webhook: 200 ``{"status": "success", "incident": <id or ''>, "firing": n, "resolved": m}``,
        400 ``{"error": ...}`` for a body that is not webhook v4."""
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _answer(415, {"error": f"content-type {ctype[:64]!r}: send application/json (webhook v4)"})
        now = self.clock()
        try:
            n = parse_webhook(body, at_ns=now)
        except IntakeError as e:
            return _answer(400, {"error": str(e)})
        self.state.report(n.firing, n.resolved, now, source=n.receiver)
        incident = self.incidents.on_notification(n, now)
        if incident:
            self.incidents.link_faults(incident)
        logger.info("webhook from %r: %d firing, %d resolved, incident %s", n.receiver, len(n.firing),
                    len(n.resolved), incident or "-")
        return _answer(200, {"status": "success", "incident": incident, "firing": len(n.firing),
                             "resolved": len(n.resolved)})


def intake_route(engine: Engine, *, clock: Callable[[], int], path: str = INTAKE_PATH) -> ExtraRoute:
    """The receiver route that takes Alertmanager's webhooks at ``path`` (mount it with
    ``HttpTransport(..., extra_routes=[intake_route(engine, clock=clock)])``)."""
    return ExtraRoute(path, AlertmanagerIntake(engine, clock=clock).handle)
