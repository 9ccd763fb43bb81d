"""Postmortem exports from a real game-day store: the timeline from ground truth to resolution, impact, budget,
time to detect and resolve, charts, in md, json and html; `qfleet incidents list` finds the id; and the
postmortem and the on-call page report the same impact for every incident.

Oracles from outside the code: times recomputed here with :mod:`datetime`, the HTML read back by
:mod:`html.parser` with a tag-balance check, Markdown link targets checked on disk."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from qfleet.alerts.postmortem import build_postmortem
from qfleet.collector.store import open_engine
from qfleet.dashboards import data
from qfleet.runbooks.cli import main


@pytest.fixture(scope="module")
def gameday_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('pm') / 'g.db'}"
    # 1 = the scorecard failed an expectation (scoring is tested elsewhere); the store is written either way.
    assert main(["gameday", "run", "f5-node-outage", "--db", url], stdout=io.StringIO()) in (0, 1)
    return url


def _heartbeat_incident(url: str) -> str:
    out = io.StringIO()
    assert main(["incidents", "list", "--db", url, "--json"], stdout=out) == 0
    rows = json.loads(out.getvalue())
    # The sample routing sends pages to the pages receiver and, with `continue`, to tickets: one incident for both.
    [hb] = [r for r in rows if "heartbeat" in r["title"]]
    assert hb["receiver"] == "pages"
    return hb["id"]


def test_json_export_has_the_documented_shape_and_the_ground_truth(gameday_db: str) -> None:
    iid = _heartbeat_incident(gameday_db)
    out = io.StringIO()
    assert main(["postmortem", "export", iid, "--format", "json", "--db", gameday_db], stdout=out) == 0
    doc = json.loads(out.getvalue())
    assert set(doc) == {"version", "incident", "timeline", "impact", "budget", "time_to_detect_s",
                        "time_to_detect_from", "time_to_resolve_s", "contributing_factors", "charts", "action_items"}
    kinds = [e["kind"] for e in doc["timeline"]]
    assert kinds[0] == "fault" and "first symptom" in kinds and "fired" in kinds
    assert (kinds[-1] == "resolved") == (doc["incident"]["state"] == "resolved")
    assert kinds.index("fault") < kinds.index("fired") < kinds.index("notified")
    # The fault starts at 20 min, the heartbeat rule (for: 1m) fires within a few evaluation steps.
    assert 60 <= doc["time_to_detect_s"] <= 300
    assert doc["time_to_resolve_s"] is None or doc["time_to_resolve_s"] > 0
    assert doc["time_to_detect_from"] == "fault"
    for e in doc["timeline"]:   # UTC to the second, recomputed here; a short sentence, never a dict
        want = datetime.fromtimestamp(e["at_unix_nano"] // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert e["at"] == want and "{" not in e["text"] and len(e["text"]) <= 140
    [symptom] = [e for e in doc["timeline"] if e["kind"] == "first symptom"]
    alert_start = min(e["detail"]["starts_at"] for e in doc["timeline"] if e["kind"] == "fired")
    [fault] = [e for e in doc["timeline"] if e["kind"] == "fault"]
    assert fault["at_unix_nano"] <= symptom["at_unix_nano"] < alert_start
    assert doc["impact"]["nodes"] == ["qpu-d"] and doc["impact"]["jobs_failed"] > 0
    assert doc["impact"]["scope"] == "place" and doc["impact"]["window"]["from"] < doc["impact"]["window"]["to"]
    assert any(b["slo"] == "node-availability" and b["burned"] > 0 for b in doc["budget"])
    assert any("node_down" in f for f in doc["contributing_factors"])
    assert doc["charts"] == ["budget.png", "job-success.png"]
    # The budget lists the SLOs this node outage burned where it is (node-availability among them).
    assert doc["budget"] and all(b["burned"] > 0 for b in doc["budget"])
    assert all(b["segment"] in ("", "hardware_type=trapped-ion") for b in doc["budget"])


def test_every_incident_has_a_time_to_detect_and_no_symptom_after_its_alert(gameday_db: str) -> None:
    engine = open_engine(gameday_db)
    try:
        for iid in data.incidents(engine, limit=1000)["id"]:
            doc = build_postmortem(engine, iid).doc
            assert doc["time_to_detect_s"] is not None and doc["time_to_detect_s"] >= 0, iid
            fired = [e["detail"]["starts_at"] for e in doc["timeline"] if e["kind"] == "fired"]
            for e in doc["timeline"]:
                if e["kind"] == "first symptom":
                    assert e["at_unix_nano"] < min(fired), iid
    finally:
        engine.dispose()


class _Balanced(HTMLParser):
    """Start and end tags, checked to nest (void elements excepted), and where each element sits."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.parents: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parents.append((tag, self.stack[-1] if self.stack else ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_md_and_html_exports_carry_the_charts(gameday_db: str, tmp_path: Path) -> None:
    iid = _heartbeat_incident(gameday_db)
    md = tmp_path / "out" / "pm.md"
    assert main(["postmortem", "export", iid, "--format", "md", "-o", str(md), "--db", gameday_db],
                stdout=io.StringIO()) == 0
    text = md.read_text()
    assert text.startswith("# Postmortem: ") and "## Action items" in text and "## Timeline" in text
    for chart in ("pm-budget.png", "pm-job-success.png"):
        assert f"({chart})" in text and (md.parent / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 2 and all((md.parent / link).is_file() for link in links), links
    out = io.StringIO()
    assert main(["postmortem", "export", iid, "--format", "html", "--db", gameday_db], stdout=out) == 0
    page = out.getvalue()
    assert page.count("data:image/png;base64,") == 2 and "<h2>Timeline</h2>" in page
    parsed = _Balanced()
    parsed.feed(page)
    parsed.close()
    assert parsed.errors == [] and parsed.stack == [], (parsed.errors, parsed.stack)
    where = dict(parsed.parents)
    # Rows in a table, items in a list; Markdown converted (no literal '## ' or '| ' left).
    assert {p for t, p in parsed.parents if t == "tr"} <= {"thead", "tbody"} and where["thead"] == "table"
    assert {p for t, p in parsed.parents if t == "li"} == {"ul"}
    assert "## " not in page and "|---" not in page


def test_unknown_incident_exits_2(gameday_db: str) -> None:
    err = io.StringIO()
    assert main(["postmortem", "export", "nope", "--db", gameday_db], stderr=err) == 2
    assert "nope" in err.getvalue() and "qfleet incidents list" in err.getvalue()


def test_the_postmortem_and_the_oncall_page_show_the_same_impact(gameday_db: str) -> None:
    engine = open_engine(gameday_db)
    try:
        ids = list(data.incidents(engine, limit=1000)["id"])
        assert len(ids) >= 2
        for iid in ids:
            page = data.incident_impact(engine, iid)   # what the on-call page shows (dashboards.data)
            pm = build_postmortem(engine, iid).doc["impact"]
            assert page is not None and pm == page.to_json(), iid
            assert page.counts() == {"nodes": len(pm["nodes"]), "links": len(pm["links"]),
                                     "tenants": len(pm["tenants"]), "jobs": pm["jobs_failed"]}
    finally:
        engine.dispose()
