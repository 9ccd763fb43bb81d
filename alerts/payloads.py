"""Notification bodies (Alertmanager webhook v4, PagerDuty Events API v2), idempotency keys and HMAC signatures.

Pure functions over :class:`qfleet.alerts.model.Notification` (sre.md §18-19). A receiver verifies a delivery with
:func:`verify` over the raw body and the ``X-Qfleet-Signature`` header (see ``docs/webhooks.md``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from qfleet.alerts.model import Alert, Labels, Notification, PagerDutyFields
from qfleet.units import format_rfc3339

__all__ = [
    "DEFAULT_EXTERNAL_URL",
    "ENV_EXTERNAL_URL",
    "IDEMPOTENCY_HEADER",
    "PAGERDUTY_MAX_BYTES",
    "SIGNATURE_HEADER",
    "ZERO_TIME",
    "TemplateData",
    "check_external_url",
    "check_template",
    "external_url_from_env",
    "idempotency_key",
    "incident_url",
    "pagerduty_event",
    "render_pagerduty_fields",
    "render_template",
    "sign",
    "signature_header",
    "template_data",
    "verify",
    "webhook_body",
]

SIGNATURE_HEADER = "X-Qfleet-Signature"
#: Where ``qfleet dashboards`` answers by default: the base of notifications' links.
DEFAULT_EXTERNAL_URL = "http://127.0.0.1:8501"
#: The environment variable that overrides it (``--external-url`` wins over both).
ENV_EXTERNAL_URL = "QFLEET_EXTERNAL_URL"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Go's zero ``time.Time``: what Alertmanager puts in ``endsAt`` of a firing alert.
ZERO_TIME = "0001-01-01T00:00:00Z"
#: PagerDuty's event size limit; a bigger event is sent without its ``custom_details`` (as Alertmanager does).
PAGERDUTY_MAX_BYTES = 512 * 1024
_SUMMARY_MAX = 1024
_SEVERITY = {"page": "critical", "security": "critical", "ticket": "warning"}
_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _common(label_sets: list[Labels]) -> dict[str, str]:
    if not label_sets:
        return {}
    common = set(label_sets[0])
    for labels in label_sets[1:]:
        common &= set(labels)
    return dict(sorted(common))


def _alert_json(a: Alert, status: str) -> dict[str, object]:
    return {
        "status": status,
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "startsAt": format_rfc3339(a.starts_at),  # Go's RFC3339Nano, as Alertmanager writes them
        "endsAt": ZERO_TIME if status == "firing" or a.ends_at is None else format_rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
        "fingerprint": a.fingerprint,
    }


def check_external_url(text: str) -> str:
    """``text`` as the dashboards' external URL: absolute http(s) with a host, no query or fragment.

    Raises:
        ValueError: anything else, naming the value and an example.

    >>> check_external_url("https://qfleet.example/ops/")
    'https://qfleet.example/ops'
    >>> check_external_url("qfleet.example")
    Traceback (most recent call last):
    ValueError: external URL 'qfleet.example' is not an absolute http(s) URL; use e.g. https://qfleet.example.com
    """
    parts = urlsplit(text.strip())
    odd = any(c.isspace() or c in '<>"\'`\\' for c in text.strip())  # links are built from it as text
    if odd or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"external URL {text!r} is not an absolute http(s) URL; use e.g. https://qfleet.example.com")
    return text.strip().rstrip("/")


def external_url_from_env(environ: Mapping[str, str]) -> str:
    """``$QFLEET_EXTERNAL_URL`` (checked), else :data:`DEFAULT_EXTERNAL_URL`.

    Raises:
        ValueError: the variable holds no absolute http(s) URL (the message names the variable).
    """
    text = environ.get(ENV_EXTERNAL_URL, "").strip()
    if not text:
        return DEFAULT_EXTERNAL_URL
    try:
        return check_external_url(text)
    except ValueError as e:
        raise ValueError(f"${ENV_EXTERNAL_URL}: {e}") from None


def incident_url(external_url: str, incident_id: str) -> str:
    """The on-call view of one incident under ``external_url`` (the dashboards' address as users reach it).

    >>> incident_url("https://qfleet.example/", "inc 1")
    'https://qfleet.example/oncall?incident=inc%201'
    """
    return f"{external_url.rstrip('/')}/oncall?incident={quote(incident_id, safe='')}"


def webhook_body(n: Notification, *, receiver_name: str, external_url: str, max_alerts: int = 0,
                 route_labels: Labels | dict[str, str] = (), incident_id: str = "") -> dict[str, object]:
    """The Alertmanager webhook v4 body of ``n`` (sre.md §18): firing alerts first, then resolved.

    ``max_alerts`` > 0 keeps that many alerts and counts the rest in ``truncatedAlerts``; the common labels and
    annotations are computed over all alerts, before truncation (as ``notify/webhook/webhook.go`` does).
    With ``incident_id``, a ``qfleet`` object carries the incident and its deep link (:func:`incident_url`);
    Alertmanager receivers ignore keys they do not know, and the signature covers it like the rest.

    >>> from qfleet.alerts.model import Alert, Notification
    >>> from qfleet.units import NS
    >>> a = Alert(labels=(("alertname", "X"),), starts_at=0)
    >>> n = Notification(at=30 * NS, receiver="ops", group_key="{}:{}", group_labels=(), reason="first notification",
    ...                  firing=(a,), resolved=())
    >>> body = webhook_body(n, receiver_name="ops", external_url="http://am")
    >>> body["status"], body["alerts"][0]["endsAt"], body["truncatedAlerts"]
    ('firing', '0001-01-01T00:00:00Z', 0)
    """
    if max_alerts < 0:
        raise ValueError(f"max_alerts={max_alerts} is negative; use 0 for all alerts or a positive limit")
    alerts = [(a, "firing") for a in n.firing] + [(a, "resolved") for a in n.resolved]
    kept = alerts[:max_alerts] if max_alerts else alerts
    body: dict[str, object] = {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": len(alerts) - len(kept),
        "status": "firing" if n.firing else "resolved",
        "receiver": receiver_name,
        "groupLabels": dict(n.group_labels),
        "commonLabels": _common([a.labels for a, _ in alerts]),
        "commonAnnotations": _common([a.annotations for a, _ in alerts]),
        "externalURL": external_url,
        "notification_reason": n.reason,
        "routeLabels": dict(route_labels),
        "alerts": [_alert_json(a, status) for a, status in kept],
    }
    if incident_id:
        body["qfleet"] = {"incident": incident_id, "incidentURL": incident_url(external_url, incident_id)}
    return body


# -- Alertmanager's template subset (pagerduty_configs' severity, class, component, group) -----------------------

#: One ``{{ ... }}`` action, with Go's trim markers (``{{- `` and `` -}}`` eat the whitespace beside them).
_ACTION = re.compile(r"\{\{(- )?\s*(.*?)\s*( -)?\}\}", re.S)
_MAPS = ("CommonLabels", "GroupLabels", "CommonAnnotations")
_FIELD = re.compile(r"\.(CommonLabels|GroupLabels|CommonAnnotations)\.([A-Za-z_][A-Za-z0-9_]*)")
_INDEX = re.compile(r'index \.(CommonLabels|GroupLabels|CommonAnnotations) "([^"\\]*)"')
_SCALAR = re.compile(r"\.(Status|Receiver|ExternalURL)")
_TEMPLATE_HELP = ("use only {{ .CommonLabels.<name> }}, {{ .GroupLabels.<name> }}, {{ .CommonAnnotations.<name> }}, "
                  '{{ index .CommonLabels "<name>" }}, {{ .Status }}, {{ .Receiver }} or {{ .ExternalURL }}')
#: Go's ``regexp.QuoteMeta`` set: Alertmanager quotes the receiver name with it in ``.Receiver``.
_GO_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateData:
    """The part of Alertmanager's template data (``template.Data``) that qfleet's template subset reads."""

    status: str
    receiver: str
    external_url: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]


def template_data(n: Notification, *, receiver_name: str, external_url: str) -> TemplateData:
    """Alertmanager's template data for ``n`` as ``receiver_name`` sees it (``.Receiver`` is regex-quoted, as
    ``template.Data`` quotes it).

    >>> from qfleet.alerts.model import Alert, Notification
    >>> a = Alert(labels=(("alertname", "X"), ("node", "q1")), starts_at=0)
    >>> n = Notification(at=1, receiver="pd.1", group_key="g", group_labels=(("alertname", "X"),),
    ...                  reason="first notification", firing=(a,), resolved=())
    >>> d = template_data(n, receiver_name="pd.1", external_url="http://q")
    >>> d.status, dict(d.common_labels), len(d.receiver)
    ('firing', {'alertname': 'X', 'node': 'q1'}, 5)
    """
    alerts = list(n.firing) + list(n.resolved)
    return TemplateData(status="firing" if n.firing else "resolved", receiver=_GO_META.sub(r"\\\1", receiver_name),
                        external_url=external_url, group_labels=dict(n.group_labels),
                        common_labels=_common([a.labels for a in alerts]),
                        common_annotations=_common([a.annotations for a in alerts]))


def check_template(text: str) -> str:
    """'' when ``text`` uses only the template subset qfleet renders, else what is wrong and the fix.

    >>> check_template('{{ .CommonLabels.team }}-{{ index .GroupLabels "node" }}')
    ''
    >>> check_template('{{ template "pagerduty.default.description" . }}')[:40]
    'unsupported template action {{ template '
    """
    rest = _ACTION.sub("", text)
    if "{{" in rest or "}}" in rest:
        return f"unbalanced braces in template {text!r}; close every {{{{ with }}}}"
    for m in _ACTION.finditer(text):
        action = m.group(2)
        if not (_FIELD.fullmatch(action) or _INDEX.fullmatch(action) or _SCALAR.fullmatch(action)):
            return f"unsupported template action {{{{ {action} }}}}; {_TEMPLATE_HELP}"
    return ""


def render_template(text: str, data: TemplateData) -> str:
    """``text`` with its actions replaced from ``data`` (a missing label renders as '', as in Alertmanager).

    Raises:
        ValueError: ``text`` is outside the subset (:func:`check_template` says why); config loading rejects it.

    >>> d = TemplateData(status="firing", receiver="pd", external_url="http://am", group_labels={"node": "q1"},
    ...                  common_labels={"team": "hw"}, common_annotations={})
    >>> render_template("{{ .CommonLabels.team }}/{{ .GroupLabels.node }}/{{ .CommonLabels.nope }}/{{ .Status }}", d)
    'hw/q1//firing'
    """
    problem = check_template(text)
    if problem:
        raise ValueError(problem)
    maps = {"CommonLabels": data.common_labels, "GroupLabels": data.group_labels,
            "CommonAnnotations": data.common_annotations}
    scalars = {"Status": data.status, "Receiver": data.receiver, "ExternalURL": data.external_url}
    out: list[str] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        before = text[pos:m.start()]
        if trim_next:
            before = before.lstrip()
        if m.group(1):
            before = before.rstrip()
        out.append(before)
        action = m.group(2)
        hit = _FIELD.fullmatch(action) or _INDEX.fullmatch(action)
        out.append(maps[hit.group(1)].get(hit.group(2), "") if hit else scalars[action[1:]])
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)


def render_pagerduty_fields(fields: PagerDutyFields, data: TemplateData) -> dict[str, str]:
    """The non-empty rendered fields of a ``pagerduty_configs`` entry, by their Events API v2 names (``severity``
    only when configured)."""
    out = {"severity": render_template(fields.severity, data)} if fields.severity else {}
    for name, text in (("class", fields.class_), ("component", fields.component), ("group", fields.group)):
        value = render_template(text, data) if text else ""
        if value:
            out[name] = value
    return out


def _severity(alerts: Iterable[Alert]) -> str:
    """The most severe mapping over ``alerts`` (qfleet policy: page/security -> critical, ticket -> warning)."""
    found = [_SEVERITY.get(a.label("severity"), "error") for a in alerts]
    return min(found, key=_SEVERITY_RANK.__getitem__) if found else "error"


def _summary(n: Notification) -> str:
    """Alertmanager's default ``__subject``: ``[FIRING:2] <group values> (<other common values>)``."""
    alerts = list(n.firing) + list(n.resolved)
    head = f"[FIRING:{len(n.firing)}]" if n.firing else "[RESOLVED]"
    group = dict(n.group_labels)
    parts = [head, *(v for _, v in sorted(group.items()))]
    rest = [v for k, v in _common([a.labels for a in alerts]).items() if k not in group]
    if rest:
        parts.append("(" + " ".join(rest) + ")")
    text = " ".join(parts)
    return text if len(text) <= _SUMMARY_MAX else text[: _SUMMARY_MAX - 1] + "…"


def _instances(alerts: Iterable[Alert]) -> str:
    """Alertmanager's ``pagerduty.default.instances`` text."""
    out = []
    for a in alerts:
        out.append("Labels:\n" + "".join(f" - {k} = {v}\n" for k, v in a.labels))
        out.append("Annotations:\n" + "".join(f" - {k} = {v}\n" for k, v in a.annotations))
        out.append(f"Source: {a.generator_url}\n")
    return "".join(out)


def pagerduty_event(n: Notification, *, routing_key: str, source: str = "qfleet", client: str = "qfleet",
                    client_url: str = "", incident_link: str = "", fields: PagerDutyFields | None = None,
                    receiver_name: str = "", external_url: str = "") -> dict[str, object]:
    """The PagerDuty Events API v2 event for ``n`` (sre.md §19): ``trigger`` while any alert fires, else ``resolve``.

    Never ``acknowledge``; ``dedup_key`` is the SHA-256 hex of the group key, so a group's trigger and resolve meet.
    ``fields`` (a ``pagerduty_configs`` entry's ``severity``/``class``/``component``/``group``) are rendered over
    Alertmanager's template data of ``n`` for ``receiver_name`` (default ``n.receiver``) and ``external_url``.

    >>> from qfleet.alerts.model import Alert, Notification
    >>> from qfleet.units import NS
    >>> a = Alert(labels=(("alertname", "X"), ("severity", "page")), starts_at=0)
    >>> n = Notification(at=30 * NS, receiver="pd", group_key="{}:{}", group_labels=(("alertname", "X"),),
    ...                  reason="first notification", firing=(a,), resolved=())
    >>> ev = pagerduty_event(n, routing_key="k" * 32)
    >>> ev["event_action"], ev["payload"]["severity"], ev["payload"]["summary"]
    ('trigger', 'critical', '[FIRING:1] X (page)')
    """
    if not routing_key:
        raise ValueError("routing_key is empty; set the 32-character PagerDuty integration key (routing_key)")
    event: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": "trigger" if n.firing else "resolve",
        "dedup_key": hashlib.sha256(n.group_key.encode()).hexdigest(),
        "client": client,
    }
    if client_url:
        event["client_url"] = client_url
    if incident_link:  # PagerDuty shows ``links`` on the incident: the responder lands on qfleet's view of it
        event["links"] = [{"href": incident_link, "text": "qfleet incident"}]
    if n.firing:
        payload: dict[str, object] = {
            "summary": _summary(n),
            "source": source or client,
            "severity": _severity(n.firing),
            "custom_details": {
                "firing": _instances(n.firing),
                "resolved": _instances(n.resolved),
                "num_firing": str(len(n.firing)),
                "num_resolved": str(len(n.resolved)),
            },
        }
        if fields is not None:
            data = template_data(n, receiver_name=receiver_name or n.receiver, external_url=external_url)
            payload.update(render_pagerduty_fields(fields, data))
        event["payload"] = payload
        if len(json.dumps(event).encode()) > PAGERDUTY_MAX_BYTES:
            payload["custom_details"] = {"error": "Custom details have been removed because the original event "
                                                  "exceeds the maximum size of 512KB"}
    return event


def idempotency_key(n: Notification, receiver: str, integration_index: int) -> str:
    """64 hex characters naming one notification to one integration: the same notification gives the same key.

    It covers the receiver, the integration's index, the group key, the instant, the reason and every alert's
    fingerprint and times, so a repeat notification (a later instant) gets a new key.

    >>> from qfleet.alerts.model import Notification
    >>> n = Notification(at=1, receiver="r", group_key="g", group_labels=(), reason="first notification",
    ...                  firing=(), resolved=())
    >>> idempotency_key(n, "r", 0) == idempotency_key(n, "r", 0) != idempotency_key(n, "r", 1)
    True
    """
    doc = [receiver, integration_index, n.group_key, n.at, n.reason,
           [[a.fingerprint, a.starts_at, a.ends_at] for a in n.firing],
           [[a.fingerprint, a.starts_at, a.ends_at] for a in n.resolved]]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def sign(secret: bytes, timestamp: int, key: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.{key}.".encode() + body`` under ``secret`` (``timestamp`` in Unix
    seconds, ``key`` the request's ``Idempotency-Key``): a captured request cannot be replayed under another key.

    >>> sign(b"k", 1, "a", b"{}") == sign(b"k", 1, "a", b"{}") != sign(b"k", 2, "a", b"{}") != sign(b"k", 1, "b", b"{}")
    True
    """
    return hmac.new(secret, f"{timestamp}.{key}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, key: str, body: bytes) -> str:
    """The ``X-Qfleet-Signature`` value ``t=<unix seconds>,v2=<hex>`` (v2: the key is signed too).

    >>> signature_header(b"k", 1, "a", b"{}").startswith("t=1,v2=")
    True
    """
    return f"t={timestamp},v2={sign(secret, timestamp, key, body)}"


def verify(secret: bytes, header_value: str, body: bytes, *, key: str, now_s: int, tolerance_s: int = 300) -> bool:
    """Whether ``header_value`` signs ``key`` and ``body`` under ``secret`` within ``tolerance_s`` of ``now_s``.

    Several ``v2=`` entries are allowed (secret rotation: any match suffices); a malformed header is False, and
    so is an entry of another version. Comparison is constant-time.

    >>> h = signature_header(b"k", 100, "a", b"{}")
    >>> verify(b"k", h, b"{}", key="a", now_s=100), verify(b"k", h, b"{}", key="b", now_s=100)
    (True, False)
    >>> verify(b"k", h, b"{} ", key="a", now_s=100), verify(b"k", h, b"{}", key="a", now_s=401)
    (False, False)
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if not value.isdigit() or timestamp is not None:
                return False
            timestamp = int(value)
        elif name == "v2":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now_s - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, key, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
