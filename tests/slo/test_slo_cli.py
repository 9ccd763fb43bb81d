"""`qfleet slo validate | rules | eval` as a user runs them: exit codes, every problem at once, rules a real
promtool accepts, and clear errors for bad input."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from qfleet.slo.cli import main
from tests.conftest import require_tool


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), environ={}, stdout=out, stderr=err), out.getvalue(), err.getvalue()


BAD = """apiVersion: openslo/v1
kind: SLO
metadata: {name: Bad_Name}
spec:
  service: fleet
  budgetingMethod: Occurrences
  timeWindow: [{duration: 30d, isRolling: true}]
  objectives: [{target: 1.0}]
  indicator:
    metadata: {name: x}
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: qfleet, spec: {metric: qfleet_jobs_total, match: {qfleet.outcome: success}}}}
        total: {metricSource: {type: qfleet, spec: {metric: qfleet_jobs_total}}}
"""


def test_validate_the_default_pack_and_a_broken_file(tmp_path: Path) -> None:
    code, out, _ = _run("validate", "default", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and len(doc["slos"]) == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, _ = _run("validate", str(bad))
    assert code == 1
    assert "metadata.name" in out and "objectives[0].target" in out  # both problems, in one run
    assert out.count("error:") >= 2


def test_rules_for_the_default_pack_pass_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    target = tmp_path / "rules.yml"
    code, _, err = _run("rules", "default", "-o", str(target))
    assert code == 0, err
    res = subprocess.run([promtool, "check", "rules", str(target)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_bad_input_exits_2(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("ts,good,total\nyesterday,1,1\n")
    code, _, err = _run("eval", "default", "--samples", str(csv), "--at", "2026-01-01T00:00:00Z")
    assert code == 2 and "yesterday" in err and "line 2" in err
    code, _, err = _run("eval", "default", "--samples", str(csv), "--at", "noon")
    assert code == 2 and "--at 'noon'" in err and "RFC 3339" in err
    code, _, err = _run("eval", "default", "--samples", str(csv), "--at", "2026-01-01T00:00:00")
    assert code == 2 and "RFC 3339" in err  # a time without a zone is not an instant
    code, _, err = _run("validate", "nowhere.yaml")
    assert code == 2 and "nowhere.yaml" in err


def test_eval_at_takes_rfc3339_with_an_offset_and_fraction(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("ts,good,total\n2026-01-01T00:59:00Z,90,100\n2026-01-01T01:00:00Z,10,100\n")
    # 02:00:00.5+01:00 is 01:00:00.5Z: both rows are within every window; the report names the instant in UTC.
    code, out, err = _run("eval", "default", "--samples", str(csv), "--at", "2026-01-01T02:00:00.5+01:00", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {d["at"] for d in doc["slos"]} == {"2026-01-01T01:00:00.5Z"}
    assert {d["windows"]["5m"]["total"] for d in doc["slos"]} == {200}
