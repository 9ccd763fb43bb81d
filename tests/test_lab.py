"""The alert-quality lab: campaign files, the same report serially / in processes / on a real Dask LocalCluster,
a SIGKILLed campaign resumed, the statistics against independent computations, rule tuning."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qfleet.runbooks.campaign import CampaignError, campaign_from_dict, expand, load_campaign
from qfleet.runbooks.lab import LabError, run_campaign
from qfleet.runbooks.labstats import percentile, poisson_interval, wilson

# Four runs of 20 simulated minutes on the line fleet: a node outage (two seeds), strong readout drift, and a
# calm run.
SMALL: dict[str, Any] = {
    "version": 1, "kind": "Campaign", "name": "small", "fleet": "line", "seed": 3, "duration": "20m",
    "fault": {"start": "5m", "duration": "10m"}, "within": "10m", "grace": "5m", "seeds": 2,
    "calm": {"runs": 1, "duration": "20m"},
    "faults": [{"kind": "F5", "targets": ["qpu-d", "qpu-b"]},
               {"kind": "F4", "targets": ["qpu-c"], "magnitudes": [0.3], "profiles": ["step"]}],
}


def _campaign(tmp_path: Path, doc: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(doc or SMALL), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    d = tmp_path_factory.mktemp("serial")
    return run_campaign(load_campaign(_campaign(d)), d / "work"), d / "work"


# -- campaign files ------------------------------------------------------------------------------------------------


def test_a_campaign_file_names_every_problem_with_its_fix(tmp_path: Path) -> None:
    bad = dict(SMALL, seeds=0, fault={"start": "15m", "duration": "10m"}, faults=[
        {"kind": "F9", "targets": ["qpu-b"], "magnitudes": [0.1]},
        {"kind": "F4", "targets": ["qpu-c"], "magnitudes": [0.7]}])
    with pytest.raises(CampaignError) as e:
        campaign_from_dict(bad, source="c.yaml")
    paths = {p.path for p in e.value.problems}
    assert {"seeds", "fault", "faults[0].kind"} <= paths, paths
    bad_target = dict(SMALL, faults=[{"kind": "F5", "targets": ["qpu-zz"]}])
    with pytest.raises(CampaignError) as e2:
        campaign_from_dict(bad_target, source="c.yaml")
    assert "qpu-zz" in str(e2.value)
    # The CLI: one line per problem, exit 2, no work directory left behind.
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dict(SMALL, faults=[{"kind": "F4", "targets": ["qpu-c"], "magnitudes": [0.7]}])))
    work = tmp_path / "work"
    from qfleet.runbooks.lab_cli import main

    assert main(["run", str(path), "--db-dir", str(work)], stdout=out, stderr=err) == 2
    assert "0.7" in err.getvalue() and "Traceback" not in err.getvalue()
    assert not work.exists()


def test_run_seeds_are_derived_from_the_campaign_seed_and_the_cell() -> None:
    a = expand(campaign_from_dict(SMALL))
    b = expand(campaign_from_dict(dict(SMALL, seed=4)))
    more = expand(campaign_from_dict(dict(SMALL, faults=[*SMALL["faults"], {"kind": "F6", "targets": ["qpu-b"],
                                                                              "magnitudes": [0.2]}])))
    assert [s.key for s in a] == ["F5-1-step-s0", "F5-1-step-s1", "F4-0.3-step-s0", "F4-0.3-step-s1", "calm-s0"]
    assert len({s.seed for s in a}) == len(a)
    assert all(x.seed != y.seed for x, y in zip(a, b, strict=True))
    # Adding a cell changes no other run.
    seeds = {s.key: s.seed for s in more}
    assert all(seeds[s.key] == s.seed for s in a)
    # Run r of a cell injects on targets[r % len(targets)].
    assert [s.gameday["faults"][0]["target"] for s in a[:2]] == ["qpu-d", "qpu-b"]


# -- same report everywhere ----------------------------------------------------------------------------------------


def test_processes_and_a_dask_local_cluster_give_the_serial_report(serial: tuple[dict[str, Any], Path],
                                                                   tmp_path: Path) -> None:
    from distributed import LocalCluster

    report, _work = serial
    procs = run_campaign(load_campaign(_campaign(tmp_path)), tmp_path / "procs", workers=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert len(cluster.workers) == 2
        on_dask = run_campaign(load_campaign(_campaign(tmp_path)), tmp_path / "dask",
                               dask=cluster.scheduler_address)
    assert procs == report
    assert on_dask == report
    assert report["runs"] == 5 and report["calm_runs"] == 1


def test_the_report_counts_what_the_records_hold(serial: tuple[dict[str, Any], Path]) -> None:
    report, work = serial
    records = [json.loads(p.read_text()) for p in sorted((work / "records").glob("*.json"))]
    assert len(records) == 5
    f5 = [r for r in records if r["cell"] and r["cell"]["kind"] == "F5"]
    cell = next(c for c in report["cells"] if c["kind"] == "F5")
    assert cell["detected"] == sum(r["fault"]["detected"] for r in f5)
    assert cell["ttd_s"] == sorted(r["fault"]["ttd_s"] for r in f5 if r["fault"]["detected"])
    # A node outage of 10 minutes is caught; the heartbeat rule names the node.
    assert cell["detected"] == 2
    heartbeat = next(r for r in report["rules"] if r["name"] == "QfleetNodeHeartbeatMissing")
    assert heartbeat["cells"][0]["localized"] == 2
    calm = [r for r in records if r["cell"] is None]
    assert report["calm"]["false_pages"]["count"] == sum(r["false_pages"] for r in calm)
    assert report["overall"]["alerts"] == sum(r["alerts"] for r in records)


def test_a_sigkilled_campaign_resumes_to_the_same_report(serial: tuple[dict[str, Any], Path],
                                                         tmp_path: Path) -> None:
    report, _work = serial
    work = tmp_path / "work"
    campaign = _campaign(tmp_path)
    # The child kills itself with SIGKILL as the second record is stored: a real kill at a known point.
    script = (
        "import os, signal, sys\nfrom pathlib import Path\n"
        "from qfleet.runbooks.campaign import load_campaign\nfrom qfleet.runbooks.lab import run_campaign\n"
        "def progress(done, total, key):\n"
        "    if done == 2:\n        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"run_campaign(load_campaign({str(campaign)!r}), Path({str(work)!r}), progress=progress)\n")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(list((work / "records").glob("*.json"))) == 2
    assert not (work / "report.json").exists()
    # What a kill during a run leaves: a half-written store of the next run.
    (work / "stores").mkdir(exist_ok=True)
    (work / "stores" / "F4-0.3-step-s0.db").write_bytes(b"half a store")
    out, err = io.StringIO(), io.StringIO()
    from qfleet.runbooks.lab_cli import main

    assert main(["run", str(campaign), "--db-dir", str(work), "--json"], stdout=out, stderr=err) == 0, err.getvalue()
    assert json.loads(out.getvalue()) == report
    assert "2/5 runs" in err.getvalue()  # it started from the two stored runs


def test_a_work_directory_of_another_campaign_is_refused(serial: tuple[dict[str, Any], Path]) -> None:
    _report, work = serial
    other = campaign_from_dict(dict(SMALL, seed=99))
    with pytest.raises(LabError, match="another campaign"):
        run_campaign(other, work)


def test_compare_and_html_through_the_cli(serial: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    report, work = serial
    after = json.loads(json.dumps(report))
    after["cells"][0]["p_detect"] = 0.5
    (tmp_path / "after.json").write_text(json.dumps(after))
    out = io.StringIO()
    from qfleet.runbooks.lab_cli import main

    assert main(["compare", str(work / "report.json"), str(tmp_path / "after.json"), "--json"], stdout=out) == 0
    diff = json.loads(out.getvalue())
    changed = [c for c in diff["cells"] if c["p_detect"]["changed"]]
    assert len(changed) == 1 and changed[0]["p_detect"]["delta"] == pytest.approx(0.5 - report["cells"][0]["p_detect"])
    err = io.StringIO()
    assert main(["compare", str(tmp_path / "missing.json"), str(work / "report.json")], stderr=err) == 2
    assert "missing.json" in err.getvalue()


# -- tuning --------------------------------------------------------------------------------------------------------


def test_tune_sweeps_for_on_shared_simulations_and_recommends_within_budget(tmp_path: Path) -> None:
    doc = dict(SMALL, seeds=1, faults=[{"kind": "F5", "targets": ["qpu-d"]}])
    from qfleet.runbooks.lab_cli import main

    out, err = io.StringIO(), io.StringIO()
    work = tmp_path / "work"
    code = main(["tune", str(_campaign(tmp_path, doc)), "--db-dir", str(work), "--rule",
                 "QfleetNodeHeartbeatMissing", "--for", "--values", "1m,12m", "--json"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue())
    by = {s["value"]: s for s in result["settings"]}
    # With for: 12m the alert cannot start before 12 minutes after the outage, past the 10-minute window.
    assert by["12m"]["detected"] == 0
    assert by["1m"]["detected"] == 1 and by["1m"]["ttd_p50_s"] >= 60
    assert result["recommended"] == "1m"
    # One simulation per run, replayed for both settings.
    assert len(list((work / "sims").glob("*.db"))) == 2
    assert len(list((work / "tune").glob("*/records/*.json"))) == 4
    bad = io.StringIO()
    assert main(["tune", str(_campaign(tmp_path, doc)), "--db-dir", str(tmp_path / "w2"), "--rule", "NoSuchRule",
                 "--for", "--values", "1m"], stderr=bad) == 2
    assert "QfleetNodeHeartbeatMissing" in bad.getvalue()  # the fix lists the rules


# -- statistics against independent computations ------------------------------------------------------------------


def _wilson_by_root(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson bounds as the roots of (k/n - p)^2 = z^2 p (1 - p) / n, by bisection on each side of k/n."""
    ph = k / n

    def g(p: float) -> float:
        return (ph - p) ** 2 - z * z * p * (1 - p) / n

    def root(lo: float, hi: float) -> float:
        for _ in range(200):
            mid = (lo + hi) / 2
            if (g(lo) > 0) == (g(mid) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return (0.0 if k == 0 else root(0.0, ph), 1.0 if k == n else root(ph, 1.0))


@pytest.mark.parametrize(("k", "n"), [(0, 5), (1, 5), (4, 5), (5, 5), (8, 10), (13, 40), (199, 200)])
def test_wilson_matches_the_roots_of_its_defining_equation(k: int, n: int) -> None:
    z = 1.959963984540054
    got = wilson(k, n)
    assert got is not None
    want = _wilson_by_root(k, n, z)
    assert got == pytest.approx(want, abs=1e-12)
    assert wilson(0, 0) is None


def test_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(5)
    for size in (1, 2, 3, 7, 20):
        xs = [float(x) for x in rng.integers(1, 60, size) * 60]
        for q in (10, 50, 90, 99):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)
    assert percentile([], 50) is None


@pytest.mark.parametrize(("k", "lo", "hi"), [
    # Garwood's exact 95 % limits as tabulated (e.g. Ulm 1990, Am J Epidemiol 131:373, table 1).
    (0, 0.0, 3.689), (1, 0.0253, 5.572), (2, 0.2422, 7.225), (5, 1.623, 11.668), (10, 4.795, 18.390)])
def test_poisson_interval_matches_the_tables(k: int, lo: float, hi: float) -> None:
    got = poisson_interval(k)
    assert got[0] == pytest.approx(lo, abs=6e-4) and got[1] == pytest.approx(hi, abs=6e-4)


def test_poisson_interval_tails_hold_alpha_over_two() -> None:
    """The limits are where the tails hold 2.5 %, summed here term by term with math.factorial."""
    for k in (1, 3, 8):
        lo, hi = poisson_interval(k)
        upper_tail = 1 - sum(math.exp(-lo) * lo ** i / math.factorial(i) for i in range(k))
        lower_tail = sum(math.exp(-hi) * hi ** i / math.factorial(i) for i in range(k + 1))
        assert upper_tail == pytest.approx(0.025, abs=1e-9) and lower_tail == pytest.approx(0.025, abs=1e-9)


def test_the_builtin_campaigns_load() -> None:
    from qfleet.runbooks.campaign import builtin_campaign_path

    for name in ("quick", "builtin-quality"):
        specs = expand(load_campaign(builtin_campaign_path(name)))
        assert specs
    quality = expand(load_campaign(builtin_campaign_path("builtin-quality")))
    kinds = {s.cell["kind"] for s in quality if s.cell}
    assert kinds == {f"F{i}" for i in range(1, 9)}
    assert sum(s.cell is None for s in quality) >= 20


def test_the_html_report_renders_in_a_real_browser(serial: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    """Chromium draws the report's charts (non-empty SVG boxes) and the page asks for nothing outside itself."""
    from qfleet.runbooks.lab_report import write_html
    from tests.conftest import require
    from tests.dashboards.browser import CHROMIUM, chromium_page

    require(Path(CHROMIUM).exists(), f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    report, _work = serial
    page_file = tmp_path / "report.html"
    write_html(report, page_file)
    requests: list[str] = []
    with chromium_page(width=1400, height=1000) as page:
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        boxes = page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)")
        text = page.inner_text("body")
    assert boxes and all(w > 100 for w in boxes)
    assert all(u.startswith("file://") for u in requests), requests
    assert "QfleetNodeHeartbeatMissing" in text and report["campaign"]["name"] in text


def test_findings_name_the_strongest_missed_setting_with_f1_counting_down() -> None:
    from qfleet.runbooks.labstats import findings

    def cell(kind: str, mag: float, k: int, n: int = 5) -> dict[str, Any]:
        return {"kind": kind, "magnitude": mag, "profile": "step", "runs": n, "detected": k, "p_detect": k / n,
                "ttd_s": [120.0] * k}

    # F1's magnitude is the heralding left: 0.8 is the mildest, 0.5 the strongest missed one.
    f1 = findings([cell("F1", 0.0, 5), cell("F1", 0.5, 1), cell("F1", 0.8, 0)], [], 0.0)
    assert f1[0].startswith("F1 (step) at magnitude 0.5 is missed 80 %"), f1
    f4 = findings([cell("F4", 0.01, 0), cell("F4", 0.03, 2), cell("F4", 0.1, 5)], [], 0.0)
    assert f4[0].startswith("F4 (step) at magnitude 0.03 is missed 60 %"), f4
    assert f4[1] == "F4 (step) at magnitude 0.1 and above is caught in every run, median time to detect 120 s"


def test_runs_on_a_shared_postgresql_server_give_the_sqlite_report(serial: tuple[dict[str, Any], Path],
                                                                   pg_admin_url: str, tmp_path: Path) -> None:
    """--db: each run in a database of its own on the server (runs overlap in simulated time), dropped after; the
    report is the one of the runs' own SQLite files."""
    import psycopg

    report, _work = serial
    on_pg = run_campaign(load_campaign(_campaign(tmp_path)), tmp_path / "pg", db=pg_admin_url, workers=2)
    assert on_pg == report
    with psycopg.connect(pg_admin_url.replace("+psycopg", "")) as c:
        left = c.execute("SELECT datname FROM pg_database WHERE datname LIKE '%\\_lab\\_%'").fetchall()
    assert left == []
    with pytest.raises(LabError, match="not a PostgreSQL URL"):
        run_campaign(load_campaign(_campaign(tmp_path)), tmp_path / "x", db="sqlite:///one.db")
