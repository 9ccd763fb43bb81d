"""`qfleet demo --no-serve` end to end on a fresh SQLite file, checked against the raw rows."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from collector.store import Store, open_engine
from qfleet.demo import main


def test_demo_fills_the_store_and_reports_what_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'qfleet.db'}"
    out = io.StringIO()
    assert main(["--no-serve", "--db", url, "--minutes", "5"], stdout=out) == 0
    report = out.getvalue()
    store = Store(open_engine(url))
    sent = re.search(r"sent (\d+) spans over OTLP/HTTP, (\d+) in process, (\d+) through the bulk API", report)
    assert sent, report
    assert store.count("spans") == sum(int(g) for g in sent.groups())
    assert f"store: {store.count('spans')} spans" in report
    assert "dropped_total=0" in report and "refused_total=0" in report
    # Each node's job success rate in the report equals the one computed from raw spans.
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT node_id, COUNT(*), SUM(CASE WHEN status_code = 2 THEN 0 ELSE 1 END) FROM spans "
            "WHERE name = 'job.run' GROUP BY node_id")).all()
    assert len(rows) == 3
    for node, total, good in rows:
        assert re.search(rf"{node}\s+\S+\s+{total}\s+{good / total:.1%}", report), (node, report)
    assert (tmp_path / "qfleet.token").exists()
