"""Alerts and runbooks stay in step: every alert rule and SLO names a runbook that exists, every runbook serves at
least one alert that exists, and each runbook lists the alerts that point at it."""

from __future__ import annotations

from pathlib import Path

import yaml

from qfleet.alerts.rules import load_rules
from qfleet.slo.spec import builtin_specs_path, load_slos

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"
SECTIONS = ("## Symptoms", "## Dashboards to open", "## Checks", "## Mitigations", "## When to escalate",
            "## Alerts this runbook serves")


def _front_matter(path: Path) -> dict:  # type: ignore[type-arg]
    text = path.read_text()
    assert text.startswith("---\n"), f"{path.name}: no front matter"
    return yaml.safe_load(text.split("---\n")[1])


def _pointers() -> dict[str, str]:
    """alert id -> runbook file, for every direct rule and every SLO of the default pack."""
    out = {r.name: dict(r.annotations)["runbook_url"] for r in load_rules()}
    out.update({f"slo:{s.name}": s.runbook for s in load_slos(builtin_specs_path())})
    return out


def test_every_failure_mode_has_a_complete_runbook() -> None:
    books = sorted(RUNBOOKS.glob("F*.md"))
    assert [b.name[:2] for b in books] == [f"F{i}" for i in range(1, 9)]
    for b in books:
        text = b.read_text()
        fm = _front_matter(b)
        assert fm["failure_mode"] == b.name[:2] and fm["title"] and fm["alerts"], b.name
        for section in SECTIONS:
            assert section in text, f"{b.name}: missing {section!r}"


def test_alerts_point_at_existing_runbooks_and_runbooks_serve_existing_alerts() -> None:
    pointers = _pointers()
    for alert, url in pointers.items():
        assert url and (ROOT / url).is_file(), f"{alert} points at a missing runbook {url!r}"
    served: dict[str, set[str]] = {}
    for b in RUNBOOKS.glob("F*.md"):
        alerts = set(_front_matter(b)["alerts"])
        assert alerts, f"{b.name} serves no alert"
        unknown = alerts - set(pointers)
        assert not unknown, f"{b.name} lists alerts that do not exist: {sorted(unknown)}"
        served[f"runbooks/{b.name}"] = alerts
    # Each alert is listed by the runbook it points at.
    for alert, url in pointers.items():
        assert alert in served[url], f"{url} does not list {alert}, which points at it"
