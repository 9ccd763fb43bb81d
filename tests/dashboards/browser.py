"""The real-browser harness for the dashboards: a headless Streamlit server and Debian's Chromium via Playwright.

Shared by ``tests/dashboards/test_browser.py`` and ``bench/bench_dashboards.py``. Follows telemetry.md §10: poll
``/_stcore/health`` before connecting; launch ``/usr/bin/chromium`` with a fresh user-data directory (never
``playwright install``); a page counts as rendered when its title text and a required element are shown, every
Vega-Lite chart has drawn its canvas/SVG, and ``stStatusWidget`` (the script is running) is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "APP",
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "REPO",
    "Render",
    "browser_available",
    "chromium_page",
    "free_port",
    "metric_values",
    "render",
    "streamlit_server",
    "wait_rendered",
]

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboards" / "app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")

# True when every Vega-Lite chart on the page has drawn (vega-embed puts a canvas or an SVG inside it).
_CHARTS_DRAWN = """() => {
  const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"], .vega-embed');
  for (const c of charts) { if (!c.querySelector('canvas, svg')) return false; }
  return true;
}"""


_CONTENT_HEIGHT = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return Math.max(main ? main.scrollHeight : 0, block ? block.scrollHeight + 120 : 0, window.innerHeight);
}"""


def browser_available() -> bool:
    """Whether Debian's Chromium and the Python Playwright package are both installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streamlit_server(db_url: str, *, log_path: Path | None = None, app: Path = APP,
                     ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``streamlit run <app>`` headless on a free 127.0.0.1 port; yield its base URL; stop it by PID.

    Raises:
        RuntimeError: the server exited or did not answer ``/_stcore/health`` within ``ready_timeout_s``
            (the message carries the tail of its log).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer",
           "--server.fileWatcherType", "none"]
    env = {**os.environ, "QFLEET_DATABASE_URL": db_url, "PYTHONPATH": str(REPO)}
    own_log = log_path is None
    log_file = Path(tempfile.mkstemp(prefix="qfleet-streamlit-", suffix=".log")[1]) if own_log else log_path
    assert log_file is not None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        # Bounded polling (no clock read): ready_timeout_s worth of 0.2 s pauses, plus the requests' own time.
        for _ in range(int(ready_timeout_s / 0.2)):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {_tail(log_file)}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"streamlit not healthy after {ready_timeout_s:.0f} s of polling: {_tail(log_file)}")
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if own_log:
            log_file.unlink(missing_ok=True)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


@contextmanager
def chromium_page(*, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Playwright page in Debian's Chromium with a fresh user-data directory (closed and removed after)."""
    from playwright.sync_api import sync_playwright

    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with tempfile.TemporaryDirectory(prefix="qfleet-chromium-") as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, headless=True,
                                                   args=list(CHROMIUM_FLAGS),
                                                   viewport={"width": width, "height": height})
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            yield page
        finally:
            ctx.close()


def wait_rendered(page: Any, *, title: str, required: str = '[data-testid="stMetric"]',
                  timeout_ms: int = 60_000) -> None:
    """Wait until ``title`` is shown in the page's body, ``required`` is visible, all charts drew and the script
    finished."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    # In the body, not anywhere: after a click on a sidebar link of the same text, the link alone would match
    # while the previous page is still shown, and its metrics were read as the next page's.
    page.locator('[data-testid="stMain"]').get_by_text(title, exact=False).first.wait_for(
        state="visible", timeout=timeout_ms)
    page.locator(required).first.wait_for(state="visible", timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_ms)
    page.wait_for_function(_CHARTS_DRAWN, timeout=timeout_ms)
    # A rerun may start right after the first one (query params written back): wait for it too.
    page.wait_for_timeout(150)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_ms)
    page.wait_for_function(_CHARTS_DRAWN, timeout=timeout_ms)


@dataclass(frozen=True, slots=True)
class Render:
    """One page's full render: the metric values shown (timing it is ``bench/bench_dashboards.py``'s job)."""

    page: str
    metrics: dict[str, str]


def metric_values(page: Any) -> dict[str, str]:
    """``{label: value}`` of every ``st.metric`` on the page (DOM texts)."""
    out: dict[str, str] = {}
    for m in page.locator('[data-testid="stMetric"]').all():
        label = m.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        value = m.locator('[data-testid="stMetricValue"]').inner_text().strip()
        out[label] = value
    return out


def render(page: Any, *, name: str, title: str, url: str | None = None, nav_text: str | None = None,
           required: str = '[data-testid="stMetric"]', screenshot: Path | None = None,
           timeout_ms: int = 60_000) -> Render:
    """Navigate (``goto(url)`` or a click on the sidebar link ``nav_text``), wait for the full render (see
    :func:`wait_rendered`), read the metrics and take the screenshot."""
    if url is not None:
        page.goto(url, wait_until="domcontentloaded")
    else:
        assert nav_text is not None
        page.locator('[data-testid="stSidebarNav"]').get_by_text(nav_text, exact=True).first.click()
    wait_rendered(page, title=title, required=required, timeout_ms=timeout_ms)
    metrics = metric_values(page)
    if screenshot is not None:
        # Streamlit scrolls inside its main container, not the document: grow the viewport to the content's
        # height so that the full-page screenshot holds the whole page, then restore it.
        size = page.viewport_size
        height = page.evaluate(_CONTENT_HEIGHT)
        if size and height > size["height"]:
            page.set_viewport_size({"width": size["width"], "height": int(height)})
        page.wait_for_timeout(1000)  # charts redraw at the new size and finish their transitions
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        if size:
            page.set_viewport_size(size)
    return Render(page=name, metrics=metrics)
