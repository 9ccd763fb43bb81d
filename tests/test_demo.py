"""`qfleet demo --no-serve` on a fresh SQLite file: the bad day runs, the game day passes, postmortems exist."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import text

from qfleet.collector.store import open_engine
from qfleet.demo import main


@pytest.mark.slow
def test_demo_runs_the_bad_day_and_exports_postmortems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'qfleet.db'}"
    out = io.StringIO()
    assert main(["--no-serve", "--db", url], stdout=out) == 0, out.getvalue()
    report = out.getvalue()
    assert "game day bad-day: PASSED" in report and "false positives: 0" in report
    pms = sorted((tmp_path / "postmortems").glob("*.md"))
    assert pms and all(p.with_suffix(".html").exists() for p in pms)
    # Each links its incident's on-call view on the dashboards the demo serves next.
    assert all(f"On-call view: <http://127.0.0.1:8501/oncall?incident={p.stem}>" in p.read_text() for p in pms)
    engine = open_engine(url)
    with engine.connect() as c:
        pages = c.execute(text("SELECT COUNT(*) FROM incidents WHERE severity IN ('page', 'security')")).scalar_one()
        faults = c.execute(text("SELECT COUNT(*) FROM spans WHERE name = 'qfleet.fault'")).scalar_one()
    engine.dispose()
    assert pages == len(pms) and faults == 8
    assert f"exported {len(pms)} postmortems" in report
