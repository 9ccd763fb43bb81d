"""qfleet works from an installed wheel, not only from a checkout."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_migrations_runbooks_and_fleets_and_runs(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("qfleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "qfleet/migrations/env.py" in names and "qfleet/migrations/script.py.mako" in names
    assert any(n.startswith("qfleet/migrations/versions/") and n.endswith("_initial_schema.py") for n in names)
    assert "qfleet/runbooks/README.md" in names
    assert {"qfleet/simulator/fleets/fleet100.yaml", "qfleet/simulator/faults/example.yaml"} <= set(names)
    # One import name: everything the wheel installs lives under qfleet/ (besides its own metadata).
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"qfleet"}, tops

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # Run from a directory outside the checkout, importing only the installed copy.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    probe = subprocess.run(
        [sys.executable, "-c", "import qfleet.collector, qfleet.migrations; print(qfleet.collector.__file__); "
         "print(qfleet.migrations.__file__)"], cwd=work, env=env, check=True, capture_output=True, text=True)
    assert all(line.startswith(str(site)) for line in probe.stdout.split()), probe.stdout
    for old in ("collector", "simulator", "slo", "alerts", "dashboards", "runbooks", "migrations"):
        gone = subprocess.run([sys.executable, "-c", f"import {old}"], cwd=work, env=env, capture_output=True,
                              text=True)
        assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr, (old, gone.stderr)
    run = subprocess.run([sys.executable, "-m", "qfleet.cli", "db", "upgrade"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # The head is the checkout's newest migration (revision ids are "<date>_<seq>", so they sort by age).
    head = max(re.findall(r"^revision: str = '(\w+)'", p.read_text(), re.M)[0]
               for p in (ROOT / "migrations" / "versions").glob("2*.py"))
    assert f"at revision {head}\n" in run.stdout, (head, run.stdout)
    assert (work / "qfleet.db").exists()
    # The built-in fleets and fault files ship as package data: a simulation runs from the wheel alone.
    sim = subprocess.run([sys.executable, "-m", "qfleet.cli", "sim", "run", "--fleet", "mesh", "--faults", "example",
                          "--duration", "2m", "--no-progress"], cwd=work, env=env, capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr
    assert "mesh-6" in sim.stdout and "jobs" in sim.stdout
