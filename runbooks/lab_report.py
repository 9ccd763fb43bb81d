"""The alert-quality lab's campaign report for people: one self-contained HTML page, a terminal summary, and a
review diff of two campaigns.

The input is the report dict of :func:`qfleet.runbooks.labstats.aggregate` (``kind`` "CampaignReport",
``version`` 1). Every string in it (rule names, fault kinds, units, profiles, findings, the campaign's name)
came from telemetry or configuration others write, so it is data: the page passes each one through
:func:`html.escape` (``quote=True``, attribute values included) and the text outputs through
:func:`qfleet.text.for_terminal`. Numbers are written with explicit format specs. The page loads nothing (no
script, font, image or style sheet from elsewhere, and a Content-Security-Policy says so); its charts are inline
SVG drawn here. A value the report could not measure (None) shows as "-".
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qfleet.files import write_atomic
from qfleet.runbooks.labstats import REPORT_VERSION, percentile
from qfleet.text import for_terminal

__all__ = ["compare", "format_compare", "format_text", "render_html", "write_html"]

# Detection-curve geometry (pixels): the plot area spans CURVE_TOP .. CURVE_H - CURVE_BOTTOM vertically.
CURVE_W = 400
CURVE_H = 260
CURVE_LEFT = 46
CURVE_RIGHT = 14
CURVE_TOP = 44
CURVE_BOTTOM = 58
CURVE_PAD = 14
"""Horizontal room between the y axis and the first magnitude (and after the last one)."""
# Time-to-detect box plots: one row per cell, a shared seconds axis from BOX_LEFT to BOX_LEFT + BOX_PLOT_W.
BOX_LEFT = 210
BOX_PLOT_W = 560
BOX_W = BOX_LEFT + BOX_PLOT_W + 30
BOX_TOP = 12
BOX_ROW = 24
BOX_BOTTOM = 40
_COLOURS = ("#1f6fb2", "#d0621b", "#2e8b57", "#8e44ad", "#b8860b", "#c0392b", "#16a085", "#555555")
_LABEL_CHARS = 62
_PROFILES_PER_CHART = 3

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;background:#f5f6f8;
color:#1d232b;margin:0;padding:20px;line-height:1.4}
main{max-width:1240px;margin:0 auto}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin:1.6rem 0 .5rem}h3{font-size:1.05rem;margin:0 0 .4rem}
h4{font-size:.95rem;margin:.8rem 0 .3rem}
table{border-collapse:collapse;background:#fff;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #c5ccd4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600;background:#f3f5f7}
.panel{background:#fff;border:1px solid #d3d9df;border-radius:6px;padding:12px 16px;margin:14px 0}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg{background:#fff;border:1px solid #e2e6ea;display:block}
svg text{font-size:11px;fill:#333;font-family:system-ui,sans-serif}
svg text.title{font-size:13px;font-weight:600}
.note{color:#59626d;font-size:.88rem}
ul.findings li{margin:.2rem 0}
nav a{margin-right:.8rem}
"""


# -- formatting ----------------------------------------------------------------------------------------------------


def _e(s: object) -> str:
    """Untrusted text as HTML text or attribute value."""
    return html.escape(str(s), quote=True)


def _f(x: Any, spec: str) -> str:
    """A number with an explicit format spec; "-" for None."""
    return "-" if x is None else format(float(x), spec)


def _ci(ci: Any, spec: str) -> str:
    """A ``[lo, hi]`` interval; "-" when there is none."""
    return "-" if not ci else f"[{_f(ci[0], spec)}, {_f(ci[1], spec)}]"


def _mag(m: Any) -> str:
    return format(float(m), "g")


def _check(report: object, label: str) -> Mapping[str, Any]:
    """``report`` itself when it is a CampaignReport of the version this module reads; ValueError otherwise."""
    if not isinstance(report, Mapping):
        raise ValueError(f"report {label} is a {type(report).__name__}, not a CampaignReport: pass the dict (or the "
                         "loaded JSON) that qfleet.runbooks.labstats.aggregate returns")
    kind, version = report.get("kind"), report.get("version")
    if kind != "CampaignReport" or version != REPORT_VERSION:
        raise ValueError(f"report {label} has kind={for_terminal(repr(kind))}, version={for_terminal(repr(version))}, "
                         f"not a CampaignReport of version {REPORT_VERSION}: pass a report made by "
                         "qfleet.runbooks.labstats.aggregate of this qfleet version (re-aggregate old run records)")
    return report


# -- chart geometry (pure) -----------------------------------------------------------------------------------------


def _y(p: float, top: float, height: float) -> float:
    """The y pixel of probability ``p`` on a 0..1 axis drawn from ``top`` (p = 1) down ``height`` pixels (p = 0)."""
    return top + (1.0 - p) * height


def _x_seconds(t: float, left: float, width: float, tmax: float) -> float:
    """The x pixel of ``t`` seconds on a 0..``tmax`` axis from ``left`` across ``width`` pixels."""
    return left + t / tmax * width


def _nice_ceiling(x: float) -> tuple[float, int]:
    """The smallest round axis end >= ``x`` (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten; 1 for
    ``x`` <= 0) and the number of tick intervals that divide it into round steps."""
    if x <= 0:
        return 1.0, 5
    power = 10.0 ** math.floor(math.log10(x))
    for m, ticks in ((1.0, 5), (1.5, 3), (2.0, 4), (2.5, 5), (3.0, 3), (4.0, 4), (5.0, 5), (6.0, 6), (8.0, 4)):
        if x <= m * power * (1 + 1e-12):
            return m * power, ticks
    return 10.0 * power, 5


def _clip(s: str, n: int) -> str:
    """``s`` cut to ``n`` characters (an ellipsis marks the cut): SVG text does not wrap."""
    return s if len(s) <= n else s[: n - 1] + "\u2026"


def _x_scale(mags: Sequence[float]) -> tuple[Callable[[float], float], bool]:
    """The x mapping of a detection curve over ``mags`` and whether it is logarithmic (all positive and spanning a
    factor of 20 or more, as F4's 0.01 .. 0.3 do)."""
    lo, hi = min(mags), max(mags)
    left, width = CURVE_LEFT + CURVE_PAD, CURVE_W - CURVE_LEFT - CURVE_RIGHT - 2 * CURVE_PAD
    if hi == lo:
        return (lambda m: left + width / 2), False
    log = lo > 0 and hi / lo >= 20
    if log:
        llo, lhi = math.log(lo), math.log(hi)
        return (lambda m: left + (math.log(m) - llo) / (lhi - llo) * width), True
    return (lambda m: left + (m - lo) / (hi - lo) * width), False


# -- SVG -----------------------------------------------------------------------------------------------------------


def _curve_axes(kind: str, profiles: Sequence[str], unit: str, mags: Sequence[float],
                xmap: Callable[[float], float], log: bool) -> list[str]:
    """Title, legend, grid, ticks and axis labels of one detection-curve chart."""
    ph = CURVE_H - CURVE_TOP - CURVE_BOTTOM
    bottom = CURVE_TOP + ph
    out = [f'<text class="title" x="{CURVE_LEFT}" y="18">{_e(kind)}: {_e(", ".join(profiles))}</text>']
    for i, prof in enumerate(profiles):
        x = CURVE_LEFT + 110 * i
        out.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{_COLOURS[i % len(_COLOURS)]}"/>'
                   f'<text x="{x + 14}" y="35">{_e(_clip(prof, 15))}</text>')
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(p, CURVE_TOP, ph)
        out.append(f'<line x1="{CURVE_LEFT}" y1="{y:.2f}" x2="{CURVE_W - CURVE_RIGHT}" y2="{y:.2f}" '
                   f'stroke="#e5e8eb"/><text x="{CURVE_LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">{p:.2f}</text>')
    out.append(f'<line x1="{CURVE_LEFT}" y1="{CURVE_TOP}" x2="{CURVE_LEFT}" y2="{bottom}" stroke="#333"/>'
               f'<line x1="{CURVE_LEFT}" y1="{bottom}" x2="{CURVE_W - CURVE_RIGHT}" y2="{bottom}" stroke="#333"/>')
    last = -1e9
    stagger = False
    for m in mags:
        tx = xmap(m)
        stagger = not stagger and tx - last < 34
        last = tx
        out.append(f'<line x1="{tx:.2f}" y1="{bottom}" x2="{tx:.2f}" y2="{bottom + 5}" stroke="#333"/>'
                   f'<text x="{tx:.2f}" y="{bottom + 17 + (12 if stagger else 0)}" text-anchor="middle">'
                   f'{_mag(m)}</text>')
    label = "magnitude" + (" (log scale)" if log else "") + (f": {unit}" if unit else "")
    out.append(f'<text x="{(CURVE_LEFT + CURVE_W - CURVE_RIGHT) / 2:.1f}" y="{CURVE_H - 8}" '
               f'text-anchor="middle">{_e(_clip(label, _LABEL_CHARS))}</text>'
               f'<text transform="translate(12 {CURVE_TOP + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'P(detect)</text>')
    return out


def _curve_series(cells: Sequence[Mapping[str, Any]], colour: str, xmap: Callable[[float], float]) -> list[str]:
    """One profile's line, error bars (Wilson 95 %) and points."""
    ph = CURVE_H - CURVE_TOP - CURVE_BOTTOM
    pts = sorted((float(c["magnitude"]), c) for c in cells if c.get("p_detect") is not None)
    out = []
    if len(pts) > 1:
        coords = " ".join(f"{xmap(m):.2f},{_y(float(c['p_detect']), CURVE_TOP, ph):.2f}" for m, c in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
    for m, c in pts:
        x, p = xmap(m), float(c["p_detect"])
        attrs = f'data-magnitude="{_mag(m)}" data-profile="{_e(c["profile"])}"'
        tip = (f'{_e(c["profile"])} at {_mag(m)}: {int(c["detected"])} of {int(c["runs"])} detected, '
               f'P = {p:.3f}, 95 % {_ci(c.get("p_detect_ci"), ".3f")}')
        ci = c.get("p_detect_ci")
        if ci:
            y1, y2 = _y(float(ci[1]), CURVE_TOP, ph), _y(float(ci[0]), CURVE_TOP, ph)
            out.append(f'<line class="err" {attrs} x1="{x:.2f}" y1="{y1:.2f}" x2="{x:.2f}" y2="{y2:.2f}" '
                       f'stroke="{colour}"/><line x1="{x - 4:.2f}" y1="{y1:.2f}" x2="{x + 4:.2f}" y2="{y1:.2f}" '
                       f'stroke="{colour}"/><line x1="{x - 4:.2f}" y1="{y2:.2f}" x2="{x + 4:.2f}" y2="{y2:.2f}" '
                       f'stroke="{colour}"/>')
        out.append(f'<circle class="pt" {attrs} cx="{x:.2f}" cy="{_y(p, CURVE_TOP, ph):.2f}" r="4" '
                   f'fill="{colour}"><title>{tip}</title></circle>')
    return out


def _curve_svg(panel: str, kind: str, cells: Sequence[Mapping[str, Any]], unit: str) -> str:
    """The detection-probability curve of one fault kind: one series per profile, x = magnitude, y = P(detect)."""
    mags = sorted({float(c["magnitude"]) for c in cells})
    profiles = sorted({str(c["profile"]) for c in cells})
    xmap, log = _x_scale(mags)
    parts = [f'<svg class="curve" data-panel="{_e(panel)}" data-kind="{_e(kind)}" width="{CURVE_W}" '
             f'height="{CURVE_H}" viewBox="0 0 {CURVE_W} {CURVE_H}" role="img">'
             f'<title>{_e(panel)}: detection probability of {_e(kind)} against magnitude</title>',
             *_curve_axes(kind, profiles, unit, mags, xmap, log)]
    for i, prof in enumerate(profiles):
        parts += _curve_series([c for c in cells if str(c["profile"]) == prof], _COLOURS[i % len(_COLOURS)], xmap)
    parts.append("</svg>")
    return "".join(parts)


def _box_row(i: int, label: str, ttds: Sequence[float], tmax: float) -> str:
    """One cell's box: whiskers min..max, box q1..q3, a line at the median (quartiles interpolated linearly)."""
    q1, med, q3 = (float(percentile(ttds, q) or 0.0) for q in (25, 50, 75))
    lo, hi = min(ttds), max(ttds)
    yc = BOX_TOP + i * BOX_ROW + BOX_ROW / 2

    def x(t: float) -> float:
        return _x_seconds(t, BOX_LEFT, BOX_PLOT_W, tmax)

    tip = (f"{label}: n={len(ttds)}, min {lo:.0f} s, q1 {q1:.1f} s, median {med:.1f} s, q3 {q3:.1f} s, "
           f"max {hi:.0f} s")
    return (f'<g class="box" data-cell="{_e(label)}" data-n="{len(ttds)}" data-min="{lo:.6g}" data-q1="{q1:.6g}" '
            f'data-median="{med:.6g}" data-q3="{q3:.6g}" data-max="{hi:.6g}"><title>{_e(tip)}</title>'
            f'<text x="{BOX_LEFT - 8}" y="{yc + 4:.1f}" text-anchor="end">{_e(_clip(label, 32))} (n={len(ttds)})</text>'
            f'<line class="whisker" x1="{x(lo):.2f}" y1="{yc:.1f}" x2="{x(hi):.2f}" y2="{yc:.1f}" stroke="#555"/>'
            f'<line x1="{x(lo):.2f}" y1="{yc - 5:.1f}" x2="{x(lo):.2f}" y2="{yc + 5:.1f}" stroke="#555"/>'
            f'<line x1="{x(hi):.2f}" y1="{yc - 5:.1f}" x2="{x(hi):.2f}" y2="{yc + 5:.1f}" stroke="#555"/>'
            f'<rect class="iqr" x="{x(q1):.2f}" y="{yc - 7:.1f}" width="{x(q3) - x(q1):.2f}" height="14" '
            f'fill="#cfe0f1" stroke="#1f6fb2"/>'
            f'<line class="median" x1="{x(med):.2f}" y1="{yc - 7:.1f}" x2="{x(med):.2f}" y2="{yc + 7:.1f}" '
            f'stroke="#0b3d6b" stroke-width="2"/></g>')


def _box_svg(panel: str, cells: Sequence[Mapping[str, Any]]) -> str:
    """Time-to-detect box plots, one row per cell that detected at least once, on a shared seconds axis."""
    rows = [(f"{c['kind']} {_mag(c['magnitude'])} {c['profile']}", [float(t) for t in c.get("ttd_s") or []])
            for c in cells]
    rows = [(label, ts) for label, ts in rows if ts]
    if not rows:
        return '<p class="note">No detections, so no time to detect.</p>'
    tmax, ticks = _nice_ceiling(max(max(ts) for _, ts in rows))
    bottom = BOX_TOP + len(rows) * BOX_ROW
    height = bottom + BOX_BOTTOM
    parts = [f'<svg class="boxes" data-panel="{_e(panel)}" data-tmax="{tmax:.6g}" width="{BOX_W}" height="{height}" '
             f'viewBox="0 0 {BOX_W} {height}" role="img"><title>{_e(panel)}: time to detect per cell</title>']
    for k in range(ticks + 1):
        t = tmax * k / ticks
        x = _x_seconds(t, BOX_LEFT, BOX_PLOT_W, tmax)
        parts.append(f'<line x1="{x:.2f}" y1="{BOX_TOP}" x2="{x:.2f}" y2="{bottom}" stroke="#e5e8eb"/>'
                     f'<text x="{x:.2f}" y="{bottom + 15}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<line x1="{BOX_LEFT}" y1="{bottom}" x2="{BOX_LEFT + BOX_PLOT_W}" y2="{bottom}" stroke="#333"/>'
                 f'<text x="{BOX_LEFT + BOX_PLOT_W / 2:.1f}" y="{bottom + 32}" text-anchor="middle">'
                 f'time to detect (s)</text>')
    parts += [_box_row(i, label, ts, tmax) for i, (label, ts) in enumerate(rows)]
    parts.append("</svg>")
    return "".join(parts)


# -- HTML ----------------------------------------------------------------------------------------------------------


def _table(head: str, rows: Iterable[str]) -> str:
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _td(text: str, num: bool = False) -> str:
    """A cell of already safe text (escaped strings or formatted numbers)."""
    return f'<td class="n">{text}</td>' if num else f"<td>{text}</td>"


def _rate_cells(rate: Mapping[str, Any] | None) -> str:
    rate = rate or {}
    return (_td(_f(rate.get("count"), ".0f"), True) + _td(_f(rate.get("per_day"), ".3g"), True)
            + _td(_ci(rate.get("per_day_ci"), ".3g"), True))


def _summary(report: Mapping[str, Any]) -> str:
    ov, calm, camp = report.get("overall") or {}, report.get("calm") or {}, report.get("campaign") or {}
    fp, ft = calm.get("false_pages") or {}, calm.get("false_tickets") or {}
    rows = [("Campaign", _e(camp.get("name", "-"))),
            ("Runs", f"{_f(report.get('runs'), '.0f')} ({_f(report.get('fault_runs'), '.0f')} with a fault, "
                     f"{_f(report.get('calm_runs'), '.0f')} calm)"),
            ("Simulated days", f"{_f(report.get('simulated_days'), '.3g')} "
                               f"({_f(report.get('calm_days'), '.3g')} calm)"),
            ("Recall (any alert)", f"{_f(ov.get('recall'), '.3f')} {_ci(ov.get('recall_ci'), '.3f')} "
                                   f"({_f(ov.get('detected'), '.0f')} of {_f(ov.get('faults'), '.0f')} faults)"),
            ("Precision", f"{_f(ov.get('precision'), '.3f')} ({_f(ov.get('true_alerts'), '.0f')} of "
                          f"{_f(ov.get('alerts'), '.0f')} alerts true)"),
            ("Calm false pages / day", f"{_f(fp.get('per_day'), '.3g')} {_ci(fp.get('per_day_ci'), '.3g')} "
                                       f"({_f(fp.get('count'), '.0f')} pages)"),
            ("Calm false tickets / day", f"{_f(ft.get('per_day'), '.3g')} {_ci(ft.get('per_day_ci'), '.3g')} "
                                         f"({_f(ft.get('count'), '.0f')} tickets)")]
    rows += [(f"Campaign {_e(k)}", _e(v)) for k, v in camp.items() if k != "name"]
    return _table('<tr><th colspan="2">Summary (intervals: 95 %)</th></tr>',
                  (f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows))


def _false_page_table(report: Mapping[str, Any]) -> str:
    head = ('<tr><th rowspan="2">Rule</th><th colspan="3">Calm false pages</th><th colspan="3">Calm false tickets'
            '</th></tr><tr>' + "<th>count</th><th>per day</th><th>95 % interval</th>" * 2 + "</tr>")
    rows = [f"<tr>{_td(_e(r['name']))}{_rate_cells(r.get('calm_false_pages'))}"
            f"{_rate_cells(r.get('calm_false_tickets'))}</tr>" for r in report.get("rules") or []]
    calm = report.get("calm") or {}
    rows.append(f'<tr class="total">{_td("All rules (total)")}{_rate_cells(calm.get("false_pages"))}'
                f'{_rate_cells(calm.get("false_tickets"))}</tr>')
    return _table(head, rows)


def _cell_table(cells: Sequence[Mapping[str, Any]]) -> str:
    names = ("Kind", "Magnitude", "Unit", "Profile", "Runs", "Detected", "P(detect) [95 %]", "TTD p50 (s)",
             "TTD p90 (s)", "Localized rate", "Notifications / fault")
    head = "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    rows = [f"<tr>{_td(_e(c['kind']))}{_td(_mag(c['magnitude']), True)}{_td(_e(c.get('unit', '')))}"
            f"{_td(_e(c['profile']))}{_td(_f(c.get('runs'), '.0f'), True)}{_td(_f(c.get('detected'), '.0f'), True)}"
            f"{_td(_f(c.get('p_detect'), '.3f') + ' ' + _ci(c.get('p_detect_ci'), '.3f'), True)}"
            f"{_td(_f(c.get('ttd_p50_s'), '.0f'), True)}{_td(_f(c.get('ttd_p90_s'), '.0f'), True)}"
            f"{_td(_f(c.get('localized_rate'), '.3f'), True)}{_td(_f(c.get('notifications_per_fault'), '.2f'), True)}"
            "</tr>" for c in cells]
    return _table(head, rows)


def _panel(anchor: str, title: str, panel: str, cells: Sequence[Mapping[str, Any]], units: Mapping[str, str],
           intro: str = "") -> str:
    """A detection panel: one curve chart per fault kind, then the time-to-detect box plots."""
    charts = []
    for kind in sorted({str(c["kind"]) for c in cells}):
        of_kind = [c for c in cells if str(c["kind"]) == kind]
        profiles = sorted({str(c["profile"]) for c in of_kind})
        for i in range(0, len(profiles), _PROFILES_PER_CHART):  # a legend row holds three profiles
            group = set(profiles[i:i + _PROFILES_PER_CHART])
            charts.append(_curve_svg(panel, kind, [c for c in of_kind if str(c["profile"]) in group],
                                     units.get(kind, "")))
    body = (f'<div class="charts">{"".join(charts)}</div><h4>Time to detect (s), runs that detected</h4>'
            f"{_box_svg(panel, cells)}" if cells else '<p class="note">Detected no injected fault.</p>')
    return f'<section class="panel" id="{anchor}"><h3>{title}</h3>{intro}{body}</section>'


def render_html(report: Mapping[str, Any]) -> str:
    """The campaign report as one self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched)."""
    report = _check(report, "to render")
    cells = list(report.get("cells") or [])
    rules = list(report.get("rules") or [])
    units = {str(c["kind"]): str(c.get("unit") or "") for c in cells}
    name = _e((report.get("campaign") or {}).get("name", "-"))
    findings = report.get("findings") or []
    items = "".join(f"<li>{_e(f)}</li>" for f in findings)
    panels = []
    for i, r in enumerate(rules):
        fp = r.get("calm_false_pages") or {}
        intro = (f'<p class="note">Calm false pages / day: {_f(fp.get("per_day"), ".3g")} '
                 f'{_ci(fp.get("per_day_ci"), ".3g")} ({_f(fp.get("count"), ".0f")} pages)</p>')
        panels.append(_panel(f"rule-{i}", f"Rule {_e(r['name'])}", str(r["name"]), list(r.get("cells") or []),
                             units, intro))
    nav = "".join(f'<a href="#rule-{i}">{_e(r["name"])}</a>' for i, r in enumerate(rules))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Alert-quality lab: {name}</title><style>{_CSS}</style></head><body><main>"
            f"<h1>Alert-quality lab: {name}</h1>{_summary(report)}"
            f"<h2>Findings</h2>" + (f'<ul class="findings">{items}</ul>' if items else '<p class="note">None.</p>')
            + "<h2>Detection by any alert</h2>"
            + _panel("any-alert", "Any alert", "any alert", cells, units,
                     '<p class="note">Points: share of runs detected; bars: Wilson 95 % interval.</p>')
            + f"<h2>Calm false pages and tickets</h2>{_false_page_table(report)}"
            + f"<h2>Cells</h2>{_cell_table(cells)}"
            + f"<h2>Per rule</h2><nav>{nav}</nav>{''.join(panels)}"
            + "</main></body></html>\n")


def write_html(report: Mapping[str, Any], path: Path) -> None:
    """Write :func:`render_html` of ``report`` to ``path`` atomically: a temporary file in the same directory,
    flushed to disk, then renamed over ``path`` (a killed process leaves the old page or none, never half)."""
    write_atomic(Path(path), render_html(report).encode("utf-8"), mode=0o644, keep_mode=True)


# -- text ----------------------------------------------------------------------------------------------------------


def _t(s: object) -> str:
    return for_terminal(s)


def _secs(x: Any) -> str:
    return "-" if x is None else f"{float(x):.0f} s"


def format_text(report: Mapping[str, Any]) -> str:
    """A terminal summary: the campaign, overall recall and precision, calm false rates, one line per cell, the
    findings. Report strings have their control characters made visible."""
    report = _check(report, "to summarize")
    ov, calm, camp = report.get("overall") or {}, report.get("calm") or {}, report.get("campaign") or {}
    lines = [f"Campaign {_t(camp.get('name', '-'))}: {_f(report.get('runs'), '.0f')} runs "
             f"({_f(report.get('fault_runs'), '.0f')} fault, {_f(report.get('calm_runs'), '.0f')} calm), "
             f"{_f(report.get('simulated_days'), '.3g')} simulated days",
             f"Overall: recall {_f(ov.get('recall'), '.3f')} {_ci(ov.get('recall_ci'), '.3f')} "
             f"({_f(ov.get('detected'), '.0f')}/{_f(ov.get('faults'), '.0f')}), precision "
             f"{_f(ov.get('precision'), '.3f')} ({_f(ov.get('true_alerts'), '.0f')}/{_f(ov.get('alerts'), '.0f')})"]
    rates = []
    for key, what in (("false_pages", "false pages"), ("false_tickets", "false tickets")):
        r = calm.get(key) or {}
        rates.append(f"{what} {_f(r.get('per_day'), '.3g')}/day {_ci(r.get('per_day_ci'), '.3g')} "
                     f"({_f(r.get('count'), '.0f')})")
    lines.append(f"Calm ({_f(report.get('calm_days'), '.3g')} days): " + ", ".join(rates))
    lines.append("Cells:")
    for c in report.get("cells") or []:
        lines.append(f"  {_t(c['kind'])} {_mag(c['magnitude'])} {_t(c['profile'])}: P(detect) "
                     f"{_f(c.get('p_detect'), '.2f')} {_ci(c.get('p_detect_ci'), '.2f')} "
                     f"({_f(c.get('detected'), '.0f')}/{_f(c.get('runs'), '.0f')}), TTD p50 "
                     f"{_secs(c.get('ttd_p50_s'))}, p90 {_secs(c.get('ttd_p90_s'))}")
    lines.append("Findings:")
    lines += [f"  - {_t(f)}" for f in report.get("findings") or []] or ["  (none)"]
    return "\n".join(lines) + "\n"


# -- compare -------------------------------------------------------------------------------------------------------


def _pair(a: Any, b: Any) -> dict[str, Any]:
    """A before/after value: both as floats, the delta B - A (None when either is None), whether it changed."""
    fa = None if a is None else float(a)
    fb = None if b is None else float(b)
    return {"a": fa, "b": fb, "delta": None if fa is None or fb is None else fb - fa, "changed": fa != fb}


def _cell_diffs(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]],
                fields: Sequence[str]) -> list[dict[str, Any]]:
    """Cells matched by (kind, magnitude, profile); one only in B is "added", one only in A "removed"."""
    def key(c: Mapping[str, Any]) -> tuple[str, float, str]:
        return str(c["kind"]), float(c["magnitude"]), str(c["profile"])

    ka, kb = {key(c): c for c in a}, {key(c): c for c in b}
    out = []
    for k in sorted(set(ka) | set(kb)):
        x, y = ka.get(k), kb.get(k)
        row: dict[str, Any] = {"kind": k[0], "magnitude": k[1], "profile": k[2],
                               "status": "both" if x is not None and y is not None else "added" if x is None
                               else "removed"}
        for f in fields:
            row[f] = _pair(None if x is None else x.get(f), None if y is None else y.get(f))
        row["changed"] = row["status"] != "both" or any(row[f]["changed"] for f in fields)
        out.append(row)
    return out


def _per_day(rate: Mapping[str, Any] | None) -> Any:
    return (rate or {}).get("per_day")


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from report ``a`` (before) to ``b`` (after): overall recall and precision, calm false pages a
    day, each cell's P(detect) and TTD p50, and each rule's calm false pages a day and per-cell P(detect).

    Every compared value is ``{"a", "b", "delta", "changed"}`` with ``delta`` = B - A as a float (None when either
    side is None). Raises ValueError when either input is not a CampaignReport of version 1.
    """
    a, b = _check(a, "A"), _check(b, "B")
    oa, ob = a.get("overall") or {}, b.get("overall") or {}
    ra = {str(r["name"]): r for r in a.get("rules") or []}
    rb = {str(r["name"]): r for r in b.get("rules") or []}
    rules = []
    for name in sorted(set(ra) | set(rb)):
        x, y = ra.get(name) or {}, rb.get(name) or {}
        fp = _pair(_per_day(x.get("calm_false_pages")), _per_day(y.get("calm_false_pages")))
        cells = _cell_diffs(x.get("cells") or [], y.get("cells") or [], ("p_detect",))
        status = "both" if x and y else "added" if y else "removed"
        rules.append({"name": name, "status": status, "false_pages_per_day": fp, "cells": cells,
                      "changed": status != "both" or fp["changed"] or any(c["changed"] for c in cells)})

    def ident(r: Mapping[str, Any]) -> dict[str, Any]:
        camp = r.get("campaign") or {}
        return {"name": camp.get("name"), "hash": camp.get("hash"), "runs": r.get("runs")}

    return {"a": ident(a), "b": ident(b),
            "overall": {"recall": _pair(oa.get("recall"), ob.get("recall")),
                        "precision": _pair(oa.get("precision"), ob.get("precision"))},
            "calm": {"false_pages_per_day": _pair(_per_day((a.get("calm") or {}).get("false_pages")),
                                                  _per_day((b.get("calm") or {}).get("false_pages")))},
            "cells": _cell_diffs(a.get("cells") or [], b.get("cells") or [], ("p_detect", "ttd_p50_s")),
            "rules": rules}


def _row(label: str, pair: Mapping[str, Any], spec: str, status: str = "both") -> tuple[bool, str, str, str, str, str]:
    changed = bool(pair["changed"]) or status != "both"
    return (changed, label, _f(pair["a"], spec), _f(pair["b"], spec), _f(pair["delta"], "+" + spec),
            "" if status == "both" else status)


def format_compare(diff: Mapping[str, Any]) -> str:
    """:func:`compare`'s result as a text table for review: label, A, B, delta, note; changed rows start with
    ``*``. Strings from the reports have their control characters made visible."""
    rows = [_row("overall recall", diff["overall"]["recall"], ".3f"),
            _row("overall precision", diff["overall"]["precision"], ".3f"),
            _row("calm false pages/day", diff["calm"]["false_pages_per_day"], ".3g")]
    for c in diff["cells"]:
        cell = f"cell {_t(c['kind'])} {_mag(c['magnitude'])} {_t(c['profile'])}"
        rows.append(_row(f"{cell} P(detect)", c["p_detect"], ".3f", c["status"]))
        rows.append(_row(f"{cell} TTD p50 s", c["ttd_p50_s"], ".0f", c["status"]))
    for r in diff["rules"]:
        name = _t(r["name"])
        rows.append(_row(f"rule {name} calm false pages/day", r["false_pages_per_day"], ".3g", r["status"]))
        for c in r["cells"]:
            rows.append(_row(f"rule {name} {_t(c['kind'])} {_mag(c['magnitude'])} {_t(c['profile'])} P(detect)",
                             c["p_detect"], ".3f", c["status"]))
    head = ("", "what", "A", "B", "delta", "note")
    width = [max(len(str(r[i])) for r in [head, *rows]) for i in range(1, 6)]

    def line(mark: str, cols: Sequence[str]) -> str:
        return (f"{mark} {cols[0]:<{width[0]}}  {cols[1]:>{width[1]}}  {cols[2]:>{width[2]}}  "
                f"{cols[3]:>{width[3]}}  {cols[4]}").rstrip()

    da, db = diff.get("a") or {}, diff.get("b") or {}
    changed = sum(r[0] for r in rows)
    out = [f"A: {_t(da.get('name'))} ({_t(da.get('hash'))}, {_f(da.get('runs'), '.0f')} runs) -> "
           f"B: {_t(db.get('name'))} ({_t(db.get('hash'))}, {_f(db.get('runs'), '.0f')} runs)",
           f"{changed} of {len(rows)} rows changed (marked *)", line(" ", head[1:])]
    out += [line("*" if r[0] else " ", r[1:]) for r in rows]
    return "\n".join(out) + "\n"
