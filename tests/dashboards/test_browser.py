"""The dashboards in a real browser: a headless Streamlit server on the seeded store, Debian's Chromium via
Playwright. Clicks through the exec, on-call and debug views, checks the numbers shown against
``qfleet.dashboards.data``, acknowledges an incident and checks the store, and saves full-page screenshots.
Render times are measured by ``bench/bench_dashboards.py``, not here (no clocks in tests).

Screenshots go to ``test-artifacts/`` (git-ignored); with ``QFLEET_UPDATE_SCREENSHOTS=1`` also to ``docs/img/``.
"""

from __future__ import annotations

import getpass
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import text

from qfleet.alerts.model import Alert, Notification
from qfleet.alerts.payloads import webhook_body
from qfleet.collector.store import open_engine
from qfleet.dashboards import data
from qfleet.units import NS
from tests.conftest import require, require_tool
from tests.dashboards.browser import REPO, browser_available, chromium_page, render, streamlit_server

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts"
DOCS_IMG = REPO / "docs" / "img"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


def _minute(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // NS, tz=UTC).replace(second=0, microsecond=0)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


def _sidebar_filters(engine: object) -> data.Filters:
    """The window the sidebar shows by default: the data's last 24 h, to the minute, clamped to the data."""
    rng = data.data_range(engine)  # type: ignore[arg-type]
    assert rng is not None
    lo, hi = _minute(rng[0]), _minute(rng[1]) + timedelta(minutes=1)
    d = data.default_filters(engine, hours=24)  # type: ignore[arg-type]
    s = min(max(_minute(d.start_ns), lo), hi)
    e = min(max(_minute(d.end_ns) + timedelta(minutes=1), s), hi)
    return data.Filters(start_ns=_ns(s), end_ns=_ns(e))


def _query(url: str, name: str) -> str | None:
    v = parse_qs(urlparse(url).query).get(name)
    return v[0] if v else None


def _save(src: Path) -> None:
    if os.environ.get("QFLEET_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, DOCS_IMG / src.name)


def test_dashboards_in_chromium(seeded_db_url: str, tmp_path: Path) -> None:
    require_tool("chromium")
    require(browser_available(), "the Python playwright package is not installed (pip install -e '.[test]')")
    # The session's store is shared read-only: acknowledge on a copy.
    db = tmp_path / "browser.db"
    shutil.copyfile(seeded_db_url.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    engine = open_engine(url)
    try:
        with streamlit_server(url, log_path=ARTIFACTS / "streamlit-browser-test.log") as base, \
                chromium_page() as page:
            # Warm the server (imports, engine) on a one-minute window, so the default window stays uncached.
            render(page, name="warmup", title="Fleet overview", url=f"{base}/?start=1&end=2")

            # Exec: the six KPIs equal the data module's on the sidebar's default window.
            r = render(page, name="exec", title="Fleet overview", url=f"{base}/",
                       screenshot=ARTIFACTS / "exec.png")
            _save(ARTIFACTS / "exec.png")
            k = data.fleet_kpis(engine, _sidebar_filters(engine))
            cost = k["cost_per_successful_job"]
            assert r.metrics == {
                "Availability": _pct(k["availability"]), "Utilisation": _pct(k["utilisation"]),
                "Job success": _pct(k["job_success_rate"]),
                "Entanglement success": _pct(k["entanglement_success_rate"]),
                "Open incidents": f"{k['open_incidents'] or 0:,}",
                "Cost per successful job": "—" if cost is None else f"{cost:.2f} link-s",
            }
            assert k["jobs"] and k["open_incidents"], "the seeded store has jobs and open incidents"
            # "/" forwards to /exec, so that the address bar holds a link that opens this page again.
            assert urlparse(page.url).path == "/exec", page.url
            _check_slo_table(page, engine, _sidebar_filters(engine).end_ns)

            # A copied /exec link opens the page itself, not a "Page not found" dialog.
            render(page, name="exec-direct", title="Fleet overview", url=f"{base}/exec")
            assert page.get_by_text("Page not found").count() == 0

            # On-call, by its sidebar link: the first active incident, its scope counts.
            r = render(page, name="oncall", title="On-call", nav_text="On-call",
                       screenshot=ARTIFACTS / "oncall.png")
            _save(ARTIFACTS / "oncall.png")
            iid = _query(page.url, "incident")
            assert iid is not None, page.url
            impact = data.incident_impact(engine, iid)
            assert impact is not None
            assert r.metrics == {f"Impacted {n}": str(c) for n, c in impact.counts().items()}
            before = data.incidents(engine, limit=500).set_index("id").loc[iid]
            assert before["state"] == "open", before

            # Acknowledge it in the browser; the store changes.
            page.locator(".st-key-oncall_ack button").click()
            page.locator('[data-testid="stAlert"]').filter(has_text="Acknowledged").first.wait_for(
                state="visible", timeout=30_000)
            page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=30_000)
            after = data.incidents(engine, limit=500).set_index("id").loc[iid]
            assert after["state"] == "acknowledged"
            assert after["acknowledged"] is not None
            # Recorded as the signed-in identity (--auth none: the local account), never a typed name.
            assert after["owner"] == f"local:{getpass.getuser()}"
            kinds = data.incident_timeline(engine, iid)["kind"].tolist()
            assert any("ack" in str(kind) for kind in kinds), kinds

            # Debug, by its sidebar link: the most recent failed job's trace.
            r = render(page, name="debug", title="Debug a job", nav_text="Debug a job",
                       screenshot=ARTIFACTS / "debug.png")
            _save(ARTIFACTS / "debug.png")
            tid = _query(page.url, "trace")
            assert tid is not None, page.url
            trace = data.job_trace(engine, trace_id=tid)
            root = trace[trace["name"] == "qfleet.job"].iloc[0]["attributes"]
            assert r.metrics == {
                "Spans": str(len(trace)),
                "Duration": f"{(trace['end_ns'].max() - trace['start_ns'].min()) / 1e6:,.3f} ms",
                "Outcome": str(root.get("qfleet.outcome", "—")),
                "Fidelity": "—" if root.get("qfleet.fidelity") is None else f"{float(root['qfleet.fidelity']):.4f}",
            }
            assert root.get("qfleet.outcome") != "success"

            # A notification's deep link (its signed webhook body) opens its incident, here the oldest one.
            oldest = data.incidents(engine, limit=500).iloc[-1]
            n = Notification(at=0, receiver="pages", group_key="g", group_labels=(), reason="first notification",
                             firing=(Alert(labels=(("alertname", "X"),), starts_at=0),), resolved=())
            body = webhook_body(n, receiver_name="pages", external_url=base, incident_id=str(oldest["id"]))
            link = body["qfleet"]["incidentURL"]  # type: ignore[index]
            render(page, name="deep-link", title="On-call", url=link)
            assert _query(page.url, "incident") == oldest["id"]
            heading = page.locator('[data-testid="stHeading"]').filter(has_text=str(oldest["title"]))
            assert heading.count() >= 1, oldest["title"]
    finally:
        engine.dispose()


#: The exec page's state colours as the browser computes them.
STATE_RGB = {"ok": "rgb(44, 160, 44)", "ticket": "rgb(240, 162, 2)", "page": "rgb(214, 39, 40)",
             "exhausted": "rgb(127, 0, 0)"}


def _check_slo_table(page: object, engine: object, end_ns: int) -> None:
    """Every SLO segment with data is a row whose full segment text is visible, with its state chip in the state's
    colour; the states come from the stored evaluations (raw SQL), not from the page's code."""
    with engine.connect() as c:  # type: ignore[attr-defined]
        stored = c.execute(text(
            "SELECT e.slo, e.segment, e.page, e.ticket, e.remaining_fraction FROM slo_evaluations e JOIN "
            "(SELECT slo, segment, max(at_unix_nano) AS at FROM slo_evaluations WHERE at_unix_nano <= :end "
            "GROUP BY slo, segment) l ON e.slo = l.slo AND e.segment = l.segment AND e.at_unix_nano = l.at "
            "WHERE e.sli IS NOT NULL"), {"end": end_ns}).all()
    want = {(slo, seg or "all"): "exhausted" if rem is not None and rem <= 0 else
            "page" if p else "ticket" if t else "ok" for slo, seg, p, t, rem in stored}
    rows = page.locator(".qf-slo tbody tr")  # type: ignore[attr-defined]
    seen = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        segment = row.locator(".qf-segment")
        assert segment.is_visible()
        # Not cut: the segment shows its whole text (its scroll width fits its box, and its box the table's).
        assert segment.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), segment.inner_text()
        assert segment.evaluate("e => e.getBoundingClientRect().right <= "
                                "e.closest('.qf-slo').getBoundingClientRect().right + 1"), segment.inner_text()
        chip = row.locator(".qf-state")
        seen[(row.locator(".qf-slo-name").inner_text().strip(), segment.inner_text().strip())] = (
            chip.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert seen == {k: STATE_RGB[v] for k, v in want.items()}
    assert any(s.startswith("hardware_type=") for _, s in seen)
