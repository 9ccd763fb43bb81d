"""Postmortem exports of an incident with hostile labels: the HTML (rendered by markdown-it-py) is balanced, holds
only the export's own elements and shows every label as text; the timeline is readable (UTC to the second, short
sentences, no dicts); a fleet-wide incident still has a time to detect.

Oracles: :mod:`html.parser` with a tag-balance check written here; times recomputed with :mod:`datetime`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import Engine

from qfleet.alerts.incidents import Incidents
from qfleet.alerts.model import Alert, Notification, labels_key
from qfleet.alerts.postmortem import Postmortem, build_postmortem, render, write_export
from qfleet.text import for_terminal
from qfleet.units import NS
from tests.conftest import FakeClock

EVIL = ("qpu-x\x1b[2J\n![t](http://evil.example/p.png)\nFAKE LINE [click](http://evil.example) <script>alert(1)"
        "</script> | *em* `code` &amp; \\")
TITLE = f"Node {EVIL} is down"
T0 = 1_767_225_600 * NS + 123_456_789   # 2026-01-01T00:00:00.123456789Z


class _Page(HTMLParser):
    """Tags, nesting errors, and the text inside each element kind."""

    VOID = {"meta", "img", "br", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> inside {self.stack[-1:]}")

    def handle_data(self, data: str) -> None:
        for tag in set(self.stack):
            self.text[tag][-1] += data


def _incident(engine: Engine, labels: dict[str, str], summary: str) -> str:
    alert = Alert(labels=labels_key({"alertname": "NodeDown", "severity": "page", **labels}),
                  annotations=(("summary", summary),), starts_at=T0)
    n = Notification(at=T0 + 30 * NS, receiver="oncall", group_key='{}:{alertname="NodeDown"}',
                     group_labels=(("alertname", "NodeDown"),), reason="first notification", firing=(alert,),
                     resolved=())
    return Incidents(engine, clock=FakeClock()).on_notification(n, T0 + 30 * NS)


def test_html_export_is_balanced_and_shows_labels_as_text(sqlite_engine: Engine) -> None:
    iid = _incident(sqlite_engine, {"node": EVIL}, TITLE)
    page = render(build_postmortem(sqlite_engine, iid), "html")
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    assert parsed.errors == [] and parsed.stack == [], (parsed.errors, parsed.stack)
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li",
                                "table", "thead", "tbody", "tr", "th", "td", "strong"}, set(parsed.tags)
    assert parsed.text["title"] == [TITLE]
    assert parsed.text["h1"] == [f"Postmortem: {for_terminal(TITLE)}"]
    assert any(for_terminal(EVIL) in item for item in parsed.text["li"]), "the impacted node, as text"
    assert any("FAKE LINE [click](http://evil.example) <script>" in cell for cell in parsed.text["td"])


def test_postmortem_links_the_incidents_on_call_view(sqlite_engine: Engine) -> None:
    iid = _incident(sqlite_engine, {"node": "qpu-a"}, "Node qpu-a is down")
    pm = build_postmortem(sqlite_engine, iid, external_url="https://ops.example")
    url = f"https://ops.example/oncall?incident={iid}"
    assert pm.doc["incident"]["url"] == url
    assert f"On-call view: <{url}>" in render(pm, "md")
    parsed = _Page()
    parsed.feed(render(pm, "html"))
    assert f'<a href="{url}">{url}</a>' in render(pm, "html") and parsed.errors == []
    assert build_postmortem(sqlite_engine, iid).doc["incident"]["url"] is None


def test_timeline_is_readable_and_every_incident_has_a_time_to_detect(sqlite_engine: Engine) -> None:
    iid = _incident(sqlite_engine, {}, "Everything is slow")   # fleet-wide, no fault, no failed span
    doc = build_postmortem(sqlite_engine, iid).doc
    rows = [(e["at"], e["kind"], e["text"]) for e in doc["timeline"]]
    at = datetime.fromtimestamp((T0 + 30 * NS) // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert at == "2026-01-01T00:00:30Z"
    assert rows == [(at, "fired", "NodeDown (page): Everything is slow"),
                    (at, "notified", "oncall: first notification, 1 firing, 0 resolved")]
    assert (doc["time_to_detect_s"], doc["time_to_detect_from"]) == (30.0, "alert")
    md = render(build_postmortem(sqlite_engine, iid), "md")
    assert f"| {at} | fired | NodeDown \\(page\\)\\: Everything is slow |" in md
    assert "Time to detect 30 s (from the alert)" in md


def test_md_export_writes_its_charts_beside_it_and_every_link_resolves(sqlite_engine: Engine,
                                                                       tmp_path: Path) -> None:
    iid = _incident(sqlite_engine, {"node": "qpu-a"}, "Node qpu-a is down")
    pm = build_postmortem(sqlite_engine, iid)
    pm = Postmortem({**pm.doc, "charts": ["budget.png"]}, {"budget.png": b"\x89PNG\r\n\x1a\nfake"})
    target = tmp_path / "review (week 49)" / "post mortem.md"
    written = write_export(pm, target, "md")
    assert written == (target, target.parent / "post mortem-budget.png")
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", target.read_text())
    assert links == ["post%20mortem-budget.png"]
    assert all((target.parent / unquote(link)).read_bytes().startswith(b"\x89PNG") for link in links)
