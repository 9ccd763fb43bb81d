"""Postmortem exports from a real game-day store: the timeline from ground truth to resolution, impact, budget,
time to detect and resolve, charts, in md, json and html; `qfleet incidents list` finds the id; and the
postmortem and the on-call page report the same impact for every incident."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from qfleet.alerts.postmortem import build_postmortem
from qfleet.collector.store import open_engine
from qfleet.dashboards import data
from qfleet.runbooks.cli import main


@pytest.fixture(scope="module")
def gameday_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('pm') / 'g.db'}"
    assert main(["gameday", "run", "f5-node-outage", "--db", url], stdout=io.StringIO()) == 0
    return url


def _heartbeat_incident(url: str) -> str:
    out = io.StringIO()
    assert main(["incidents", "list", "--db", url, "--json"], stdout=out) == 0
    rows = json.loads(out.getvalue())
    # The sample routing sends pages to the pages receiver and, with `continue`, to tickets: one incident each.
    [hb] = [r for r in rows if "heartbeat" in r["title"] and r["receiver"] == "pages"]
    return hb["id"]


def test_json_export_has_the_documented_shape_and_the_ground_truth(gameday_db: str) -> None:
    iid = _heartbeat_incident(gameday_db)
    out = io.StringIO()
    assert main(["postmortem", "export", iid, "--format", "json", "--db", gameday_db], stdout=out) == 0
    doc = json.loads(out.getvalue())
    assert set(doc) == {"version", "incident", "timeline", "impact", "budget", "time_to_detect_s",
                        "time_to_resolve_s", "contributing_factors", "charts", "action_items"}
    kinds = [e["kind"] for e in doc["timeline"]]
    assert kinds[0] == "fault" and "first symptom" in kinds and "fired" in kinds and kinds[-1] == "resolved"
    assert kinds.index("fault") < kinds.index("fired") < kinds.index("notified")
    # The fault starts at 20 min, the heartbeat rule (for: 1m) fires within a few evaluation steps.
    assert 60 <= doc["time_to_detect_s"] <= 300 and doc["time_to_resolve_s"] > 0
    assert doc["impact"]["nodes"] == ["qpu-d"] and doc["impact"]["jobs_failed"] > 0
    assert doc["impact"]["scope"] == "place" and doc["impact"]["window"]["from"] < doc["impact"]["window"]["to"]
    assert any(b["slo"] == "node-availability" and b["burned"] > 0 for b in doc["budget"])
    assert any("node_down" in f for f in doc["contributing_factors"])
    assert doc["charts"] == ["budget.png", "job-success.png"]


def test_md_and_html_exports_carry_the_charts(gameday_db: str, tmp_path: Path) -> None:
    iid = _heartbeat_incident(gameday_db)
    md = tmp_path / "out" / "pm.md"
    assert main(["postmortem", "export", iid, "--format", "md", "-o", str(md), "--db", gameday_db],
                stdout=io.StringIO()) == 0
    text = md.read_text()
    assert text.startswith("# Postmortem: ") and "## Action items" in text and "## Timeline" in text
    for chart in ("pm-budget.png", "pm-job-success.png"):
        assert f"({chart})" in text and (md.parent / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = io.StringIO()
    assert main(["postmortem", "export", iid, "--format", "html", "--db", gameday_db], stdout=out) == 0
    assert out.getvalue().count("data:image/png;base64,") == 2 and "<h2>Timeline</h2>" in out.getvalue()


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
