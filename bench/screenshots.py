"""Screenshot review of the dashboards: every page of each store at 1400×1000 and 1920×1080, in Debian's Chromium.

Serves ``dashboards/app.py`` headless on each store (the real-browser harness of the tests), opens the exec,
on-call and debug pages, waits for their full render and saves full-page PNGs as
``<out>/<store name>-<page>-<width>x<height>.png``. ``--docs`` also copies the first store's 1400×1000 pages to
``docs/img/`` (the README's pictures). A reviewer looks at every file; nothing here asserts.

    qfleet demo --no-serve                                  # ./qfleet.db, the bad day (incidents)
    qfleet gameday run calm-line --db sqlite:///calm.db     # a store with no incidents
    .venv/bin/python bench/screenshots.py demo=sqlite:///qfleet.db calm=sqlite:///calm.db --docs

``--lab-report FILE.html`` shoots an alert-quality lab report (``qfleet lab run ... -o FILE.html``) at 1400 px
wide, full page, to ``<out>/lab-report.png`` (with ``--docs``, also ``docs/img/lab-report.png``, cropped to its
first 2,400 px).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dashboards.browser import chromium_page, render, streamlit_server  # noqa: E402

SIZES = ((1400, 1000), (1920, 1080))
#: (page name, URL path, title shown, element that must be visible)
PAGES = (("exec", "/exec", "Fleet overview", '[data-testid="stMetric"]'),
         ("oncall", "/oncall", "On-call", '[data-testid="stMain"]'),
         ("debug", "/debug", "Debug a job", '[data-testid="stMain"]'))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="*", help="NAME=DATABASE_URL, e.g. demo=sqlite:///qfleet.db")
    ap.add_argument("--lab-report", type=Path, help="an HTML report of `qfleet lab run` to shoot")
    ap.add_argument("--out", default=str(REPO / "test-artifacts" / "screens"), help="directory for the PNGs")
    ap.add_argument("--docs", action="store_true", help="also copy the first store's 1400×1000 pages to docs/img/")
    args = ap.parse_args(argv)
    stores = []
    for item in args.stores:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            print(f"screenshots: {item!r} is not NAME=DATABASE_URL; use e.g. demo=sqlite:///qfleet.db",
                  file=sys.stderr)
            return 2
        stores.append((name, url))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.lab_report:
        _lab_report(args.lab_report, out, args.docs)
    for i, (name, url) in enumerate(stores):
        with streamlit_server(url) as base:
            for width, height in SIZES:
                with chromium_page(width=width, height=height) as page:
                    for pname, path, title, required in PAGES:
                        shot = out / f"{name}-{pname}-{width}x{height}.png"
                        render(page, name=pname, title=title, url=base + path, required=required, screenshot=shot)
                        print(shot)
                        if args.docs and i == 0 and (width, height) == SIZES[0]:
                            shutil.copyfile(shot, REPO / "docs" / "img" / f"{pname}.png")
    return 0


def _lab_report(report: Path, out: Path, docs: bool) -> None:
    with chromium_page(width=1400, height=1000) as page:
        page.goto(report.resolve().as_uri())
        page.locator("svg").first.wait_for(state="visible")
        shot = out / "lab-report.png"
        page.screenshot(path=str(shot), full_page=True)
        print(shot)
        if docs:
            height = min(2400, int(page.evaluate("document.documentElement.scrollHeight")))
            page.screenshot(path=str(REPO / "docs" / "img" / "lab-report.png"),
                            clip={"x": 0, "y": 0, "width": 1400, "height": height}, full_page=True)


if __name__ == "__main__":
    sys.exit(main())
