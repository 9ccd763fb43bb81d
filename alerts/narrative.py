"""Incident timeline events as short sentences: one wording for postmortems and the on-call page.

Pure: an event is its ``kind`` and ``detail`` dict as :class:`~qfleet.alerts.incidents.Incidents` records it.
The sentences are plain text (labels come from telemetry): callers render them as text, never as Markdown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from qfleet.units import NS

__all__ = ["event_text", "short", "utc_second"]


def utc_second(ns: int) -> str:
    """Integer Unix ns as UTC ISO-8601 to the second (what a review reads; the JSON keeps the exact ns).

    >>> utc_second(1_735_689_600 * NS + 999_999_999)
    '2025-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_PLACE_KEYS = ("node", "link", "hardware_type", "slo")


def short(text: str, limit: int = 140) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (an ellipsis says it was cut)."""
    text = str(text).strip()   # inner line breaks stay: the renderers show them as visible escapes
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0] or text[:limit - 1]
    return cut + "…"


def event_text(kind: str, d: dict[str, Any]) -> str:
    """One short sentence about a timeline event (its raw detail stays in the JSON export)."""
    if kind == "fault":
        end = f" until {utc_second(int(d['end']))}" if d.get("end") is not None else ""
        profile = f", {d['profile']} onset" if d.get("profile") else ""
        return short(f"{d.get('kind', '')} {d.get('title', '')} on {d.get('target', '?')}{end} "
                     f"(injected fault {d.get('fault_id', '?')}{profile})")
    if kind == "first symptom":
        where = d.get("node") or d.get("link") or "no node (never placed)"
        msg = f": {d['message']}" if d.get("message") else ""
        return short(f"{d.get('span', 'span')} failed on {where}{msg}")
    if kind == "fired":
        labels = d.get("labels") or {}
        where = ", ".join(f"{k}={labels[k]}" for k in _PLACE_KEYS if labels.get(k))
        head = f"{labels.get('alertname', 'alert')} ({labels.get('severity', '-')})" + (f" on {where}" if where else "")
        return short(head + (f": {d['summary']}" if d.get("summary") else ""))
    if kind == "notified":
        return short(f"{d.get('receiver', '?')}: {d.get('reason', '')}, {len(d.get('firing') or [])} firing, "
                     f"{len(d.get('resolved') or [])} resolved")
    if kind == "acknowledged":
        return short(f"by {d.get('by', '?')}")
    if kind == "escalated":
        return short(f"to {d.get('to', '?')} (not acknowledged)")
    if kind == "merged":
        return short(f"into incident {d.get('into', '?')}")
    if kind == "resolved":
        who = f"by {d['by']}" if d.get("by") else str(d.get("receiver") or "")
        return short(f"{who}: {d.get('reason', '')}".strip(": "))
    return short(", ".join(f"{k}={v}" for k, v in d.items() if v not in (None, "", [], {})))
