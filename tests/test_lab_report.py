"""The alert-quality lab's report page, terminal summary and campaign diff (qfleet.runbooks.lab_report).

Reports are built with the real :func:`qfleet.runbooks.labstats.aggregate` from hand-made run records, and every
oracle is computed here from those records (Wilson interval, numpy percentiles, k/n), never from the output.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qfleet.runbooks import lab_report
from qfleet.runbooks.labstats import aggregate

Z = 1.959963984540054  # the standard normal quantile of 0.975
VOID = {"meta", "br", "img", "input", "link", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}
CALM_S = 86400.0


# -- records -------------------------------------------------------------------------------------------------------


def fault(key: str, kind: str, mag: float, ttd: float | None, *, profile: str = "step",
          rules: Sequence[str] = ("RuleA",), unit: str = "u") -> dict[str, Any]:
    """One game day with a fault; ``ttd`` None = missed, else every rule in ``rules`` detected it at ``ttd`` s."""
    hit = ttd is not None
    return {"key": key, "cell": {"kind": kind, "magnitude": mag, "profile": profile, "unit": unit}, "seed": 0,
            "run_id": key, "duration_s": 3600.0,
            "fault": {"target": "node-1", "detected": hit, "localized": hit, "ttd_s": ttd,
                      "notifications": int(hit), "incidents": int(hit),
                      "detections": [[r, ttd, True] for r in rules] if hit else []},
            "alerts": len(rules) if hit else 0, "true_alerts": len(rules) if hit else 0, "false_pages": 0,
            "false_tickets": 0, "false_alerts": [], "notifications": int(hit), "incidents": int(hit)}


def calm(key: str, false_alerts: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """One calm game day (no fault) of a simulated day, with its false alerts ``(rule, severity)``."""
    fa = [[name, sev] for name, sev in false_alerts]
    return {"key": key, "cell": None, "seed": 0, "run_id": key, "duration_s": CALM_S, "fault": None,
            "alerts": len(fa), "true_alerts": 0, "false_pages": sum(s == "page" for _, s in fa),
            "false_tickets": sum(s == "ticket" for _, s in fa), "false_alerts": fa, "notifications": len(fa),
            "incidents": len(fa)}


def cell_runs(kind: str, mag: float, ttds: Sequence[float], n: int, **kw: Any) -> list[dict[str, Any]]:
    """``n`` runs of one cell, the first ``len(ttds)`` detected at those times, the rest missed."""
    times: list[float | None] = [*ttds, *([None] * (n - len(ttds)))]
    return [fault(f"{kind}-{mag}-{kw.get('profile', 'step')}-{i:02d}", kind, mag, t, **kw) for i, t in enumerate(times)]


F2_LOW_TTDS = [120.0, 300.0, 480.0]  # 3 of 7
BOX_TTDS = [60.0, 90.0, 150.0, 400.0, 1000.0, 1300.0]


def base_records(*, rule: str = "RuleA", f2_low: Sequence[float] = F2_LOW_TTDS) -> list[dict[str, Any]]:
    return [*cell_runs("F2", 0.5, f2_low, 7, rules=(rule,)),
            *cell_runs("F2", 1.0, [60.0, 60.0, 90.0, 90.0, 120.0], 5, rules=(rule, "RuleB")),
            *cell_runs("F3", 2.0, BOX_TTDS, 8, profile="ramp", rules=(rule,)),
            *cell_runs("F3", 0.5, [], 4, profile="ramp"),
            calm("calm-0", [(rule, "page"), ("RuleB", "ticket")]), calm("calm-1"), calm("calm-2", [("RuleB", "page")])]


def report_of(records: Iterable[dict[str, Any]], name: str = "lab") -> dict[str, Any]:
    return aggregate(records, campaign={"name": name, "hash": "h", "planned_runs": 0})


# -- HTML inspection -----------------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Every element with its attributes and those of its enclosing <svg> and <g>; nesting errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.elements: list[tuple[str, dict[str, str], dict[str, str], dict[str, str]]] = []
        self.errors: list[str] = []
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.style = ""

    def _enclosing(self, tag: str) -> dict[str, str]:
        return next((a for t, a in reversed(self.stack) if t == tag), {})

    def _record(self, tag: str, attrs: list[tuple[str, str | None]]) -> dict[str, str]:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a, self._enclosing("svg"), self._enclosing("g")))
        return a

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = self._record(tag, attrs)
        if tag not in VOID:
            self.stack.append((tag, a))
            self.opened[tag] = self.opened.get(tag, 0) + 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._record(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.closed[tag] = self.closed.get(tag, 0) + 1
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "style":
            self.style += data


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    return p


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out here independently of labstats."""
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return centre - half, centre + half


def plot_y(p: float) -> float:
    """Where a probability sits on the curve chart, from its geometry constants (p = 1 at the top)."""
    height = lab_report.CURVE_H - lab_report.CURVE_TOP - lab_report.CURVE_BOTTOM
    return lab_report.CURVE_TOP + (1 - p) * height


# -- the page ------------------------------------------------------------------------------------------------------


def test_page_is_well_formed_and_self_contained() -> None:
    page = lab_report.render_html(report_of(base_records()))
    doc = parse(page)
    assert doc.errors == [] and doc.stack == []
    for tag in ("svg", "table", "ul"):
        assert doc.opened.get(tag, 0) >= 1 and doc.opened.get(tag) == doc.closed.get(tag), tag
    assert "<script" not in page.lower()
    assert {t for t, *_ in doc.elements}.isdisjoint({"script", "img", "iframe", "object", "embed", "link"})
    for tag, attrs, _, _ in doc.elements:
        assert "src" not in attrs, tag
        assert all(v.startswith("#") for k, v in attrs.items() if k == "href"), attrs
        assert not any("http://" in v or "https://" in v for v in attrs.values()), (tag, attrs)
    assert "url(" not in doc.style and "@import" not in doc.style


def test_report_strings_appear_only_escaped() -> None:
    rule, name = "<script>alert(1)</script>", '"><img src=x onerror=1>'
    profile, unit = "<b>ramp</b>", "u\"'<&"
    records = [*cell_runs("F2", 0.5, [100.0, 200.0], 3, rules=(rule,), profile=profile, unit=unit),
               calm("calm-0", [(rule, "page")])]
    report = report_of(records, name=name)
    report["findings"].append("finding <iframe src=//x></iframe>")
    assert any(rule in f for f in report["findings"])  # the rule's calm page reaches the findings too
    page = lab_report.render_html(report)
    for raw in (rule, name, profile, unit, "<iframe src=//x></iframe>"):
        assert raw not in page
        assert html.escape(raw, quote=True) in page
    doc = parse(page)
    assert {t for t, *_ in doc.elements}.isdisjoint({"script", "img", "iframe", "b"})
    assert not any(k.startswith("on") for _, attrs, _, _ in doc.elements for k in attrs)
    assert any(a.get("data-panel") == rule for t, a, _, _ in doc.elements if t == "svg")  # escaped, then decoded


def test_y_mapping() -> None:
    assert lab_report._y(1.0, 10.0, 100.0) == 10.0
    assert lab_report._y(0.0, 10.0, 100.0) == 110.0
    assert lab_report._y(0.25, 10.0, 100.0) == pytest.approx(85.0)


@pytest.mark.parametrize("panel", ["any alert", "RuleA"])
def test_detection_point_and_error_bar_sit_at_k_over_n(panel: str) -> None:
    records = base_records()
    runs = [r for r in records if r["cell"] and (r["cell"]["kind"], r["cell"]["magnitude"]) == ("F2", 0.5)]
    n = len(runs)
    k = sum(any(d[0] == "RuleA" for d in r["fault"]["detections"]) if panel == "RuleA" else r["fault"]["detected"]
            for r in runs)
    assert (k, n) == (3, 7)
    doc = parse(lab_report.render_html(report_of(records)))

    def mine(tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a, svg, _ in doc.elements if t == tag and a.get("class") == cls
                and svg.get("data-panel") == panel and svg.get("data-kind") == "F2"
                and a.get("data-magnitude") == "0.5" and a.get("data-profile") == "step"]

    points, bars = mine("circle", "pt"), mine("line", "err")
    assert len(points) == 1 and len(bars) == 1
    assert float(points[0]["cy"]) == pytest.approx(plot_y(k / n), abs=0.006)
    lo, hi = wilson(k, n)
    assert float(bars[0]["y1"]) == pytest.approx(plot_y(hi), abs=0.006)
    assert float(bars[0]["y2"]) == pytest.approx(plot_y(lo), abs=0.006)
    assert float(bars[0]["x1"]) == float(bars[0]["x2"]) == float(points[0]["cx"])
    # the 5-of-5 cell of the same kind sits at the top of the chart, to the right of the 3-of-7 one
    full = [a for t, a, svg, _ in doc.elements if t == "circle" and svg.get("data-panel") == panel
            and svg.get("data-kind") == "F2" and a.get("data-magnitude") == "1"]
    assert len(full) == 1 and float(full[0]["cy"]) == pytest.approx(plot_y(1.0), abs=0.006)
    assert float(full[0]["cx"]) > float(points[0]["cx"])


def test_box_plot_quartiles_match_numpy() -> None:
    doc = parse(lab_report.render_html(report_of(base_records())))
    panel = "any alert"
    boxes = [(a, svg) for t, a, svg, _ in doc.elements if t == "g" and a.get("class") == "box"
             and svg.get("data-panel") == panel]
    labels = [a["data-cell"] for a, _ in boxes]
    assert "F3 0.5 ramp" not in labels  # no detections: no box
    (box, svg), = [(a, s) for a, s in boxes if a["data-cell"] == "F3 2 ramp"]
    q1, med, q3 = np.percentile(BOX_TTDS, [25, 50, 75])
    expected = {"data-min": min(BOX_TTDS), "data-q1": q1, "data-median": med, "data-q3": q3,
                "data-max": max(BOX_TTDS)}
    for key, value in expected.items():
        assert float(box[key]) == pytest.approx(value, rel=1e-5), key
    tmax = float(svg["data-tmax"])
    assert tmax >= max(BOX_TTDS)

    def px(t: float) -> float:
        return lab_report.BOX_LEFT + t / tmax * lab_report.BOX_PLOT_W

    drawn = {a.get("class"): a for t, a, _, g in doc.elements if g is box and t in ("line", "rect")}
    assert float(drawn["median"]["x1"]) == pytest.approx(px(med), abs=0.006)
    assert float(drawn["iqr"]["x"]) == pytest.approx(px(q1), abs=0.006)
    assert float(drawn["iqr"]["x"]) + float(drawn["iqr"]["width"]) == pytest.approx(px(q3), abs=0.02)
    assert float(drawn["whisker"]["x1"]) == pytest.approx(px(min(BOX_TTDS)), abs=0.006)
    assert float(drawn["whisker"]["x2"]) == pytest.approx(px(max(BOX_TTDS)), abs=0.006)


def test_false_page_table_has_each_rule_and_the_total() -> None:
    records = base_records()
    page = lab_report.render_html(report_of(records))
    table = page[page.index("Calm false pages and tickets"):page.index("<h2>Cells")]
    rows = re.findall(r"<tr[^>]*><td>([^<]*)</td><td class=\"n\">(\d+)</td>", table)
    pages = {name: sum(1 for r in records if not r["cell"] for a in r["false_alerts"] if a == [name, "page"])
             for name in ("RuleA", "RuleB")}
    assert dict(rows) == {"RuleA": str(pages["RuleA"]), "RuleB": str(pages["RuleB"]),
                          "All rules (total)": str(sum(pages.values()))}


def test_missing_values_show_as_dash() -> None:
    report = report_of(cell_runs("F2", 0.5, [], 3))  # nothing detected, no alerts, no calm runs
    assert report["overall"]["precision"] is None and report["calm"]["false_pages"]["per_day"] is None
    page = lab_report.render_html(report)
    precision = re.search(r"<th>Precision</th><td>([^<]*)</td>", page)
    assert precision is not None and precision.group(1).startswith("- ")
    assert "No detections" in page
    text = lab_report.format_text(report)
    assert "precision - " in text and "None" not in text


def test_write_html_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = report_of(base_records())
    out = tmp_path / "lab.html"
    lab_report.write_html(report, out)
    assert out.read_text(encoding="utf-8") == lab_report.render_html(report)
    assert [p.name for p in tmp_path.iterdir()] == ["lab.html"]

    out.write_text("old page")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk gone")

    import qfleet.files

    monkeypatch.setattr(qfleet.files.os, "replace", fail)
    with pytest.raises(OSError, match="disk gone"):
        lab_report.write_html(report, out)
    assert out.read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["lab.html"]
    # A page written over an existing one keeps its permissions; a new one is world-readable (0644).
    monkeypatch.undo()
    out.chmod(0o600)
    lab_report.write_html(report, out)
    assert out.stat().st_mode & 0o777 == 0o600
    lab_report.write_html(report, tmp_path / "new.html")
    assert (tmp_path / "new.html").stat().st_mode & 0o777 == 0o644


# -- text and diff ------------------------------------------------------------------------------------------------


def detected(records: Iterable[dict[str, Any]], kind: str, mag: float, rule: str | None = None) -> tuple[int, int]:
    runs = [r for r in records if r["cell"] and (r["cell"]["kind"], r["cell"]["magnitude"]) == (kind, mag)]
    hits = sum(bool(r["fault"]["detected"]) if rule is None else any(d[0] == rule for d in r["fault"]["detections"])
               for r in runs)
    return hits, len(runs)


def test_compare_deltas_are_b_minus_a() -> None:
    a_records = base_records()
    f2_after = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    b_records = [r for r in base_records(f2_low=f2_after) if not (r["cell"] and r["cell"]["magnitude"] == 0.5
                                                                 and r["cell"]["kind"] == "F3")]
    b_records += cell_runs("F4", 0.1, [30.0], 2)
    b_records[-3]["false_alerts"].append(["RuleB", "page"])  # calm-2: one more false page
    b_records[-3]["false_pages"] += 1
    assert b_records[-3]["key"] == "calm-2"
    diff = lab_report.compare(report_of(a_records), report_of(b_records))

    def recall(rs: list[dict[str, Any]]) -> float:
        faults = [r for r in rs if r["cell"]]
        return sum(bool(r["fault"]["detected"]) for r in faults) / len(faults)

    def precision(rs: list[dict[str, Any]]) -> float:
        return sum(r["true_alerts"] for r in rs) / sum(r["alerts"] for r in rs)

    assert diff["overall"]["recall"]["delta"] == pytest.approx(recall(b_records) - recall(a_records))
    assert diff["overall"]["precision"]["delta"] == pytest.approx(precision(b_records) - precision(a_records))
    calm_days = sum(r["duration_s"] for r in a_records if not r["cell"]) / 86400.0
    assert diff["calm"]["false_pages_per_day"]["delta"] == pytest.approx(1 / calm_days)

    cells = {(c["kind"], c["magnitude"], c["profile"]): c for c in diff["cells"]}
    (ka, n), (kb, _) = detected(a_records, "F2", 0.5), detected(b_records, "F2", 0.5)
    low = cells[("F2", 0.5, "step")]
    assert low["status"] == "both" and low["changed"]
    assert low["p_detect"]["delta"] == pytest.approx(kb / n - ka / n)
    assert low["ttd_p50_s"]["delta"] == pytest.approx(np.median(f2_after) - np.median(F2_LOW_TTDS))
    same = cells[("F2", 1.0, "step")]
    assert same["p_detect"]["delta"] == 0.0 and not same["changed"]
    assert cells[("F4", 0.1, "step")]["status"] == "added"
    added = cells[("F4", 0.1, "step")]["p_detect"]
    assert added["a"] is None and added["b"] == 0.5 and added["delta"] is None
    assert cells[("F3", 0.5, "ramp")]["status"] == "removed"

    rules = {r["name"]: r for r in diff["rules"]}
    rule_low = {(c["kind"], c["magnitude"]): c for c in rules["RuleA"]["cells"]}[("F2", 0.5)]
    (ra, _), (rb, _) = detected(a_records, "F2", 0.5, "RuleA"), detected(b_records, "F2", 0.5, "RuleA")
    assert rule_low["p_detect"]["delta"] == pytest.approx(rb / n - ra / n)
    assert rules["RuleB"]["false_pages_per_day"]["delta"] == pytest.approx(1 / calm_days)
    assert rules["RuleA"]["false_pages_per_day"]["delta"] == 0.0

    lines = lab_report.format_compare(diff).splitlines()
    marked = {m.group(2): m.group(1) for m in (re.match(r"([* ]) cell F2 (\S+) step P\(detect\)", ln) for ln in lines)
              if m}
    assert marked == {"0.5": "*", "1": " "}
    assert any(ln.startswith("*") and "F4 0.1" in ln and ln.rstrip().endswith("added") for ln in lines)


@pytest.mark.parametrize("bad", [{}, {"kind": "CampaignReport", "version": 2}, {"kind": "Other", "version": 1},
                                 ["not", "a", "report"]])
def test_compare_refuses_what_is_not_a_report(bad: Any) -> None:
    good = report_of(base_records())
    for a, b in ((bad, good), (good, bad)):
        with pytest.raises(ValueError, match="CampaignReport") as err:
            lab_report.compare(a, b)
        assert "\n" not in str(err.value)


def test_text_outputs_make_control_characters_visible() -> None:
    evil = "\x1b[31mEvil\x1b[0m"
    name = "lab\x1b]0;pwned\x07\u202e"
    a = report_of([*cell_runs("F2", 0.5, [60.0], 2, rules=(evil,), profile="st\x1b[2Jep"),
                   calm("calm-0", [(evil, "page")])], name=name)
    b = report_of([*cell_runs("F2", 0.5, [60.0, 90.0], 2, rules=(evil,), profile="st\x1b[2Jep"),
                   calm("calm-0")], name=name)
    for out in (lab_report.format_text(a), lab_report.format_compare(lab_report.compare(a, b))):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", out)
        assert "\\x1b[31mEvil" in out and "st\\x1b[2Jep" in out and "\\u202e" in out
    text = lab_report.format_text(a)
    assert len([ln for ln in text.splitlines() if ln.startswith("  F2 0.5 ")]) == len(a["cells"]) == 1
