"""Webhook v4 and PagerDuty v2 bodies (sre.md §18-19), idempotency keys, HMAC signatures."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qfleet.alerts.model import Alert, Notification, fingerprint
from qfleet.alerts.payloads import (
    PAGERDUTY_MAX_BYTES,
    ZERO_TIME,
    check_external_url,
    external_url_from_env,
    idempotency_key,
    pagerduty_event,
    sign,
    signature_header,
    verify,
    webhook_body,
)
from qfleet.units import NS

T0 = 1_800_000_000 * NS  # 2027-01-15T08:00:00Z
GROUP_KEY = '{}/{severity="page"}:{alertname="QpuDown"}'


def alert(node: str, *, severity: str = "page", starts: int = T0, ends: int | None = None,
          summary: str = "QPU down") -> Alert:
    return Alert(labels=(("alertname", "QpuDown"), ("node", node), ("severity", severity), ("site", "delft")),
                 annotations=(("runbook", "rb/qpu-down"), ("summary", summary)),
                 starts_at=starts, ends_at=ends, generator_url=f"http://qfleet/graph?node={node}")


def note(firing: tuple[Alert, ...], resolved: tuple[Alert, ...] = (), *, reason: str = "first notification",
         at: int = T0 + 30 * NS) -> Notification:
    return Notification(at=at, receiver="oncall", group_key=GROUP_KEY, group_labels=(("alertname", "QpuDown"),),
                        reason=reason, firing=firing, resolved=resolved)


# -- webhook v4 --------------------------------------------------------------------------------------------

def test_webhook_v4_every_field() -> None:
    # sre.md §18: version "4", groupKey, truncatedAlerts, status, receiver, groupLabels, commonLabels /
    # commonAnnotations, externalURL, notification_reason, routeLabels, alerts[] {...}
    a = alert("qpu-1")
    b = alert("qpu-2", starts=T0 + 1, ends=T0 + 20 * NS, summary="gone")
    body = webhook_body(note((a,), (b,), reason="some alerts resolved"), receiver_name="oncall",
                        external_url="http://qfleet:9093", route_labels=(("team", "hw"),))
    assert body == {
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "QpuDown"},
        "commonLabels": {"alertname": "QpuDown", "severity": "page", "site": "delft"},
        "commonAnnotations": {"runbook": "rb/qpu-down"},
        "externalURL": "http://qfleet:9093",
        "notification_reason": "some alerts resolved",
        "routeLabels": {"team": "hw"},
        "alerts": [
            {"status": "firing", "labels": dict(a.labels), "annotations": dict(a.annotations),
             "startsAt": "2027-01-15T08:00:00Z", "endsAt": ZERO_TIME,
             "generatorURL": "http://qfleet/graph?node=qpu-1", "fingerprint": fingerprint(a.labels)},
            {"status": "resolved", "labels": dict(b.labels), "annotations": dict(b.annotations),
             "startsAt": "2027-01-15T08:00:00.000000001Z", "endsAt": "2027-01-15T08:00:20Z",
             "generatorURL": "http://qfleet/graph?node=qpu-2", "fingerprint": fingerprint(b.labels)},
        ],
    }
    json.dumps(body)  # JSON-able as is


def test_incident_deep_link_in_webhook_and_pagerduty_bodies() -> None:
    body = webhook_body(note((alert("qpu-1"),)), receiver_name="oncall", external_url="https://ops.example/qfleet",
                        incident_id="ab12")
    assert body["qfleet"] == {"incident": "ab12", "incidentURL": "https://ops.example/qfleet/oncall?incident=ab12"}
    assert "qfleet" not in webhook_body(note((alert("qpu-1"),)), receiver_name="oncall", external_url="http://x")
    # PagerDuty Events API v2: ``links`` is a list of {href, text} shown on the incident.
    ev = pagerduty_event(note((alert("qpu-1"),)), routing_key="k" * 32, client_url="https://ops.example/qfleet",
                         incident_link="https://ops.example/qfleet/oncall?incident=ab12")
    assert ev["links"] == [{"href": "https://ops.example/qfleet/oncall?incident=ab12", "text": "qfleet incident"}]
    assert "links" not in pagerduty_event(note((alert("qpu-1"),)), routing_key="k" * 32)


@pytest.mark.parametrize("bad", ["qfleet.example", "ftp://x", "https://", "https://x/?a=1", "https://x/#f",
                                 "https://x/<script>", 'https://x/"q'])
def test_external_url_must_be_absolute_http(bad: str) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        check_external_url(bad)
    with pytest.raises(ValueError, match="QFLEET_EXTERNAL_URL"):
        external_url_from_env({"QFLEET_EXTERNAL_URL": bad})
    assert external_url_from_env({}) == "http://127.0.0.1:8501"


def test_webhook_status_resolved_when_nothing_fires() -> None:
    # sre.md §18 `status`: "firing if any alert in the group fires, else resolved"
    body = webhook_body(note((), (alert("qpu-1", ends=T0 + NS),), reason="all alerts resolved"),
                        receiver_name="oncall", external_url="")
    assert body["status"] == "resolved"
    assert body["alerts"][0]["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] == "2027-01-15T08:00:01Z"


def test_webhook_max_alerts_one_of_three_truncates_two() -> None:
    # sre.md §18: "max_alerts (0 = all; 1 of 3 -> truncatedAlerts: 2)"
    n = note((alert("qpu-1"), alert("qpu-2"), alert("qpu-3")))
    body = webhook_body(n, receiver_name="oncall", external_url="", max_alerts=1)
    assert body["truncatedAlerts"] == 2
    assert [a["labels"]["node"] for a in body["alerts"]] == ["qpu-1"]
    # Common labels are over the whole group, not just the kept alert (node differs, so it is not common).
    assert "node" not in body["commonLabels"]
    full = webhook_body(n, receiver_name="oncall", external_url="", max_alerts=0)
    assert full["truncatedAlerts"] == 0 and len(full["alerts"]) == 3


def test_webhook_fingerprints_are_16_hex_and_label_order_free() -> None:
    # sre.md §18: `fingerprint` (16 hex)
    a = alert("qpu-1")
    swapped = Alert(labels=tuple(reversed(a.labels)), starts_at=T0)
    fp = webhook_body(note((a,)), receiver_name="r", external_url="")["alerts"][0]["fingerprint"]
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == webhook_body(note((swapped,)), receiver_name="r", external_url="")["alerts"][0]["fingerprint"]


def test_webhook_rejects_negative_max_alerts() -> None:
    with pytest.raises(ValueError, match="max_alerts=-1"):
        webhook_body(note((alert("a"),)), receiver_name="r", external_url="", max_alerts=-1)


def test_times_are_go_rfc3339nano_with_trailing_zeros_trimmed() -> None:
    # Alertmanager marshals time.Time with RFC3339Nano: fractional seconds without trailing zeros.
    a = alert("qpu-1", starts=T0 + 120_000_000, ends=T0 + 20 * NS)
    [doc] = webhook_body(note((), (a,)), receiver_name="r", external_url="")["alerts"]
    assert (doc["startsAt"], doc["endsAt"]) == ("2027-01-15T08:00:00.12Z", "2027-01-15T08:00:20Z")


# -- PagerDuty v2 ------------------------------------------------------------------------------------------

def test_pagerduty_trigger_while_any_fires() -> None:
    # sre.md §19: "trigger while any alert fires ... dedup_key = sha256 hex of groupKey"
    n = note((alert("qpu-1"),), (alert("qpu-2", ends=T0 + NS),))
    ev = pagerduty_event(n, routing_key="R" * 32)
    assert ev["event_action"] == "trigger"
    assert ev["routing_key"] == "R" * 32
    assert ev["dedup_key"] == hashlib.sha256(GROUP_KEY.encode()).hexdigest()
    assert ev["client"] == "qfleet"
    p = ev["payload"]
    assert p["source"] == "qfleet" and p["severity"] == "critical"
    assert p["summary"] == "[FIRING:1] QpuDown (page delft)"
    d = p["custom_details"]
    assert d["num_firing"] == "1" and d["num_resolved"] == "1"
    assert " - node = qpu-1" in d["firing"] and " - node = qpu-2" in d["resolved"]


def test_pagerduty_resolve_when_all_resolved_no_payload_never_acknowledge() -> None:
    # sre.md §19: "resolve when all are resolved, never acknowledge"; payload "needed only for trigger"
    trig = pagerduty_event(note((alert("qpu-1"),)), routing_key="k" * 32)
    res = pagerduty_event(note((), (alert("qpu-1", ends=T0 + NS),), reason="all alerts resolved"),
                          routing_key="k" * 32, client_url="http://qfleet")
    assert res["event_action"] == "resolve"
    assert "payload" not in res
    assert res["dedup_key"] == trig["dedup_key"]          # the resolve meets its trigger
    assert res["client_url"] == "http://qfleet"
    assert {trig["event_action"], res["event_action"]} == {"trigger", "resolve"}


@pytest.mark.parametrize(("severity", "expected"), [
    ("page", "critical"), ("ticket", "warning"), ("security", "critical"), ("", "error"), ("other", "error"),
])
def test_pagerduty_severity_mapping(severity: str, expected: str) -> None:
    # sre.md §19: "severity default error ... qfleet policy: severity page -> critical, ticket -> warning"
    ev = pagerduty_event(note((alert("qpu-1", severity=severity),)), routing_key="k" * 32)
    assert ev["payload"]["severity"] == expected


def test_pagerduty_severity_is_most_severe_of_firing() -> None:
    n = note((alert("qpu-1", severity="ticket"), alert("qpu-2", severity="page")))
    assert pagerduty_event(n, routing_key="k" * 32)["payload"]["severity"] == "critical"


def test_pagerduty_summary_cut_to_1024() -> None:
    # sre.md §19: "payload.summary <= 1024 chars"; Alertmanager cuts to 1024 runes
    n = Notification(at=T0, receiver="pd", group_key="g", group_labels=(("alertname", "é" * 3000),),
                     reason="first notification", firing=(alert("qpu-1"),), resolved=())
    s = pagerduty_event(n, routing_key="k" * 32)["payload"]["summary"]
    assert len(s) == 1024 and s.endswith("…") and s.startswith("[FIRING:1] ééé")


def test_pagerduty_oversize_event_drops_details() -> None:
    # sre.md §19: "limit 512 KB"; Alertmanager: "oversize events drop details"
    big = tuple(alert(f"qpu-{i}", summary="x" * 10_000) for i in range(60))
    ev = pagerduty_event(note(big), routing_key="k" * 32)
    assert set(ev["payload"]["custom_details"]) == {"error"}
    assert len(json.dumps(ev).encode()) < PAGERDUTY_MAX_BYTES


def test_pagerduty_needs_routing_key() -> None:
    with pytest.raises(ValueError, match="routing_key"):
        pagerduty_event(note((alert("a"),)), routing_key="")


# -- idempotency keys and signatures -----------------------------------------------------------------------

def test_idempotency_key_stable_and_distinct() -> None:
    n = note((alert("qpu-1"),))
    again = note((alert("qpu-1"),))
    k = idempotency_key(n, "oncall", 0)
    assert k == idempotency_key(again, "oncall", 0) and len(k) == 64
    assert k != idempotency_key(n, "oncall", 1)
    assert k != idempotency_key(n, "other", 0)
    assert k != idempotency_key(note((alert("qpu-1"),), at=n.at + NS, reason="repeat interval elapsed"), "oncall", 0)
    assert k != idempotency_key(note((alert("qpu-1"), alert("qpu-2"))), "oncall", 0)


def test_sign_is_hmac_sha256_over_timestamp_dot_key_dot_body() -> None:
    import hmac

    key = "ab" * 32
    expected = hmac.new(b"s3cret", f"1700000000.{key}.".encode() + b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign(b"s3cret", 1_700_000_000, key, b'{"a":1}') == expected
    assert signature_header(b"s3cret", 1_700_000_000, key, b'{"a":1}') == f"t=1700000000,v2={expected}"


def test_verify_accepts_good_rejects_tampered_stale_malformed() -> None:
    body = b'{"version":"4"}'
    key = "a" * 64
    h = signature_header(b"k1", 1000, key, body)
    assert verify(b"k1", h, body, key=key, now_s=1000)
    assert verify(b"k1", h, body, key=key, now_s=1300) and not verify(b"k1", h, body, key=key, now_s=1301)
    assert not verify(b"k1", h, body, key=key, now_s=699)          # from the future beyond tolerance
    assert not verify(b"k2", h, body, key=key, now_s=1000)         # wrong secret
    assert not verify(b"k1", h, body + b" ", key=key, now_s=1000)  # tampered body
    assert not verify(b"k1", h.replace("t=1000", "t=1001"), body, key=key, now_s=1000)   # tampered timestamp
    # A captured request replayed under another Idempotency-Key (which receivers de-duplicate on) fails.
    assert not verify(b"k1", h, body, key="b" * 64, now_s=1000)
    for bad in ("", "t=1000", "v2=abc", "t=x,v2=ab", "garbage", h.replace("v2=", "v1="), f"t=1000,{h}"):
        assert not verify(b"k1", bad, body, key=key, now_s=1000)
    # Rotation: either of two signatures suffices.
    rotated = f"t=1000,v2={sign(b'old', 1000, key, body)},v2={sign(b'k1', 1000, key, body)}"
    assert verify(b"k1", rotated, body, key=key, now_s=1000)


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=40), st.integers(0, 2**40), st.text(max_size=70))
def test_verify_roundtrip(body: bytes, secret: bytes, t: int, key: str) -> None:
    assert verify(secret, signature_header(secret, t, key, body), body, key=key, now_s=t)


def test_docs_receiver_recipe_runs_and_agrees_with_verify() -> None:
    # docs/webhooks.md's snippet is what receivers copy: it must accept qfleet's signature and reject tampering.
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 1
    ns: dict[str, object] = {}
    exec(blocks[0], ns)  # noqa: S102 (our own documentation)
    check = ns["verify_signature"]
    handle = ns["handle"]
    body = b'{"version":"4"}'
    key = "a" * 64
    header = signature_header(b"k", 1000, key, body)
    assert check(b"k", header, key, body, 1000) is True  # type: ignore[operator]
    assert check(b"k", header, key, body + b"x", 1000) is False  # type: ignore[operator]
    assert check(b"k", header, "b" * 64, body, 1000) is False  # type: ignore[operator]
    assert check(b"k", header, key, body, 1301) is False  # type: ignore[operator]
    assert check(b"k", header, key, body, 1000) == verify(b"k", header, body, key=key,  # type: ignore[operator]
                                                          now_s=1000)
    import time as _time

    fresh = signature_header(b"k", int(_time.time()), key, body)
    headers = {"X-Qfleet-Signature": fresh, "Idempotency-Key": key}
    assert handle(b"k", headers, body) == 200 and handle(b"k", headers, body) == 200  # type: ignore[operator]
    assert handle(b"other", headers, body) == 401  # type: ignore[operator]
