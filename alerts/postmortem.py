"""Postmortem exports of an incident, from the store (read-only): Markdown, JSON or HTML.

The document holds the timeline (ground-truth fault, first symptom in the telemetry, alert fired, notified,
acknowledged, escalated, resolved), the impact (:func:`qfleet.alerts.impact.incident_impact`, the same figures
the on-call page shows), the error budget each SLO burned over the incident, time to detect and to resolve,
charts of the signals around it (PNG, embedded in HTML, beside the Markdown), contributing factors read from the
telemetry, and an action-items section to fill in.

The timeline reads as a review needs it: a UTC time to the second, the event, a short sentence (the first symptom
is the first failed span where the incident is, before its first alert fired). Time to detect runs from the linked
fault's start, else from the first symptom, else from the first alert. The budget lists (and charts, the incident
shaded) the SLO segments where the incident is whose budget went down. HTML is the Markdown rendered by
markdown-it-py with raw HTML disabled.

The JSON form is stable: ``{"version": 1, "incident": {...}, "timeline": [{"at" (to the second), "at_unix_nano",
"kind", "text", "detail"}],
"impact": {"nodes", "links", "tenants", "jobs_failed", "jobs_total", "failed_job_ids" (the first 50), "scope",
"window"}, "budget": [{"slo", "segment", "remaining_before", "remaining_after", "burned"}], "time_to_detect_s",
"time_to_detect_from" ("fault", "first symptom" or "alert"), "time_to_resolve_s", "contributing_factors": [...], "charts": [file names], "action_items": []}``.

The telemetry is read with SQLAlchemy Core over the tables :mod:`qfleet.collector.schema` and
:mod:`qfleet.slo.schema` export.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, func, or_, select

from qfleet.alerts.impact import JOB_SPAN, IncidentImpact, incident_impact
from qfleet.alerts.incidents import FAULT_SPAN, Incidents, first_alert_ns
from qfleet.alerts.narrative import event_text, utc_second
from qfleet.alerts.payloads import incident_url
from qfleet.collector.schema import Span, SpanRollup
from qfleet.slo.schema import SloEvaluation
from qfleet.slo.sli import segment_labels
from qfleet.text import markdown_literal
from qfleet.units import NS, format_rfc3339

__all__ = ["Postmortem", "build_postmortem", "render", "utc_second", "write_export"]

MIN = 60 * NS
_WINDOW = 30 * MIN  # how much telemetry before and after the incident the charts and budgets look at
#: How far before the first alert (without a linked fault) the first symptom is looked for: the slowest page pair's
#: short window (30 min) and its evaluation lag fit in it.
_SYMPTOM_LOOKBACK = 60 * MIN
_CHART_SERIES = 8   # lines on the budget chart, the SLOs that burned most first
_MAINTENANCE_SPAN = "qfleet.maintenance"
_FAILED = 2  # OTel status code ERROR
_S = Span.__table__
_R = SpanRollup.__table__
_E = SloEvaluation.__table__


def _iso(ns: int | None) -> str | None:
    return None if ns is None else format_rfc3339(ns)


@dataclass(frozen=True, slots=True)
class Postmortem:
    """The document as data; :func:`render` turns it into md, json or html."""

    doc: dict[str, Any]
    charts: dict[str, bytes]  # file name -> PNG


_Symptom = Row[int, str, str | None, str | None, str]   # start, span name, node, link, status message
_Budget = Row[str, str, int, float | None]              # slo, segment, at, remaining fraction
_Minute = Row[int, int, int]                            # bucket start, status code, spans
_Window = Row[str | None, int, int]                     # node, start, end


@dataclass(frozen=True, slots=True)
class _Telemetry:
    """What the store says around the incident."""

    first_symptom: _Symptom | None
    budget_rows: Sequence[_Budget]       # in time order
    job_minutes: Sequence[_Minute]
    maintenance: Sequence[_Window]


def build_postmortem(engine: Engine, incident_id: str, *, external_url: str | None = None) -> Postmortem:
    """Gather everything about ``incident_id`` from the store; with ``external_url`` (the dashboards' address),
    the document links the incident's on-call view (:func:`~qfleet.alerts.payloads.incident_url`).

    Raises:
        qfleet.alerts.incidents.IncidentError: no such incident.
    """
    incidents = Incidents(engine, clock=lambda: 0)
    row = incidents.get(incident_id)
    events = [{"at_ns": e["at_unix_nano"], "kind": e["kind"], "detail": e["detail"] or {}}
              for e in incidents.timeline(incident_id)]
    impact = incident_impact(engine, incident_id)
    opened = row["opened_unix_nano"]
    closed = row["resolved_unix_nano"] or max([opened, *(e["at_ns"] for e in events)])
    alert_start = first_alert_ns(opened, events)
    faults = [e for e in events if e["kind"] == "fault"]
    fault_start = min((e["at_ns"] for e in faults), default=None)
    lo, hi = opened - _WINDOW, closed + _WINDOW
    # A symptom is what the telemetry showed before the alert fired: never after it, never before the fault.
    since = fault_start if fault_start is not None and fault_start < alert_start else alert_start - _SYMPTOM_LOOKBACK
    with engine.connect() as c:
        seen = _Telemetry(_first_symptom(c, impact, since, alert_start),
                          _budget_rows(c, lo, hi), _job_minutes(c, lo, hi), _maintenance(c, lo, hi))
    events = _with_first_symptom(events, seen.first_symptom)
    burned = [b for b in _burned(seen.budget_rows) if _segment_matches(b["slo"], b["segment"], row, impact)]
    charts = _charts(seen.job_minutes, seen.budget_rows, lo, burned, (alert_start, closed))
    detect_from, detect_at = (("fault", fault_start) if fault_start is not None else
                              ("first symptom", seen.first_symptom[0]) if seen.first_symptom is not None else
                              ("alert", alert_start))
    doc = {
        "version": 1,
        "incident": {**_incident_doc(row),
                     "url": incident_url(external_url, incident_id) if external_url else None},
        "timeline": [{"at": utc_second(e["at_ns"]), "at_unix_nano": e["at_ns"], "kind": e["kind"],
                      "text": event_text(e["kind"], e["detail"]), "detail": e["detail"]} for e in events],
        "impact": impact.to_json(),
        "budget": burned,
        "time_to_detect_s": (opened - detect_at) / NS,
        "time_to_detect_from": detect_from,
        "time_to_resolve_s": (row["resolved_unix_nano"] - opened) / NS if row["resolved_unix_nano"] else None,
        "contributing_factors": _factors(impact, faults, seen.maintenance),
        "charts": sorted(charts),
        "action_items": [],
    }
    return Postmortem(doc, charts)


# -- the steps of build_postmortem ----------------------------------------------------------------------------


def _incident_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "severity": row["severity"], "state": row["state"],
            "receiver": row["receiver"], "group_key": row["group_key"], "labels": row["labels"] or {},
            "opened": _iso(row["opened_unix_nano"]), "acknowledged": _iso(row["acknowledged_unix_nano"]),
            "acknowledged_by": row["acknowledged_by"], "resolved": _iso(row["resolved_unix_nano"])}


def _first_symptom(c: Connection, impact: IncidentImpact, lo: int, before: int) -> _Symptom | None:
    """The first failed span (a job, an entanglement request, a canary...) in ``[lo, before)`` where the incident
    is: on its nodes or links, else on its hardware types, else (a fleet-wide incident) anywhere; one that ended
    as the incident's most frequent failure if there is one."""
    q = (select(_S.c.start_time_unix_nano, _S.c.name, _S.c.node_id, _S.c.link_id, _S.c.status_message)
         .where(_S.c.status_code == _FAILED, _S.c.start_time_unix_nano >= lo, _S.c.start_time_unix_nano < before,
                _S.c.name != FAULT_SPAN)
         .order_by(_S.c.start_time_unix_nano, _S.c.trace_id, _S.c.span_id).limit(1))
    unplaced = _S.c.node_id.is_(None) & _S.c.link_id.is_(None)   # e.g. node_down: the job never reached a node
    if impact.nodes or impact.links:
        q = q.where(or_(_S.c.node_id.in_(impact.nodes), _S.c.link_id.in_(impact.links), unplaced))
    elif impact.hardware_types:
        q = q.where(or_(_S.c.hardware_type.in_(impact.hardware_types), unplaced))
    if impact.outcomes:
        # The failure that dominated the incident, first: a baseline failure of another kind is not its symptom.
        first = c.execute(q.where(_S.c.status_message == impact.outcomes[0][0])).first()
        if first is not None:
            return first
    return c.execute(q).first()


def _segment_matches(slo: str, segment: str, row: dict[str, Any], impact: IncidentImpact) -> bool:
    """Whether an SLO segment is where the incident is: the incident's own SLO, or a segment whose every label
    names one of the incident's nodes, links or hardware types (the unsegmented SLO covers the whole fleet)."""
    labels = row["labels"] or {}
    if labels.get("slo") not in (None, "") and labels.get("slo") != slo:
        return False
    places = {"node": set(impact.nodes), "link": set(impact.links), "hardware": set(impact.hardware_types)}
    for key, value in segment_labels(segment):
        kind = next((k for k in places if k in key), None)
        if not value or kind is None or value not in places[kind]:
            return False
    return True


def _budget_rows(c: Connection, lo: int, hi: int) -> Sequence[_Budget]:
    return c.execute(select(_E.c.slo, _E.c.segment, _E.c.at_unix_nano, _E.c.remaining_fraction)
                     .where(_E.c.at_unix_nano >= lo, _E.c.at_unix_nano <= hi)
                     .order_by(_E.c.at_unix_nano, _E.c.slo, _E.c.segment)).all()


def _job_minutes(c: Connection, lo: int, hi: int) -> Sequence[_Minute]:
    bucket = _R.c.bucket_start_unix_nano
    return c.execute(select(bucket, _R.c.status_code, func.sum(_R.c.span_count))
                     .where(_R.c.name == JOB_SPAN, bucket >= lo, bucket <= hi)
                     .group_by(bucket, _R.c.status_code).order_by(bucket, _R.c.status_code)).all()


def _maintenance(c: Connection, lo: int, hi: int) -> Sequence[_Window]:
    return c.execute(select(_S.c.node_id, _S.c.start_time_unix_nano, _S.c.end_time_unix_nano)
                     .where(_S.c.name == _MAINTENANCE_SPAN, _S.c.end_time_unix_nano >= lo,
                            _S.c.start_time_unix_nano <= hi)
                     .order_by(_S.c.start_time_unix_nano, _S.c.node_id)).all()


def _with_first_symptom(events: list[dict[str, Any]], first: _Symptom | None) -> list[dict[str, Any]]:
    if first is not None:
        at, span, node, link, message = first
        events = [*events, {"at_ns": at, "kind": "first symptom",
                            "detail": {"span": span, "node": node, "link": link, "message": message}}]
    # Ties keep the store's order (fault, symptom, fired, notified ... as they happened), not the alphabet.
    return sorted(events, key=lambda e: e["at_ns"] or 0)


def _burned(budget_rows: Sequence[_Budget]) -> list[dict[str, Any]]:
    """Per (SLO, segment): the budget remaining at the first and last evaluation, when it went down."""
    first_seen: dict[tuple[str, str], float | None] = {}
    last_seen: dict[tuple[str, str], float | None] = {}
    for slo, seg, _at, rem in budget_rows:
        first_seen.setdefault((slo, seg), rem)
        last_seen[(slo, seg)] = rem
    burned = []
    for (slo, seg), before in sorted(first_seen.items()):
        after = last_seen[(slo, seg)]
        if before is not None and after is not None and before - after > 0:
            burned.append({"slo": slo, "segment": seg, "remaining_before": before, "remaining_after": after,
                           "burned": before - after})
    return sorted(burned, key=lambda b: (-b["burned"], b["slo"], b["segment"]))


def _factors(impact: IncidentImpact, faults: list[dict[str, Any]], maintenance: Sequence[_Window]) -> list[str]:
    factors = [f"{n} jobs ended {outcome}" for outcome, n in impact.outcomes[:4]]
    for e in faults:
        d = e["detail"]
        factors.append(f"fault {d.get('id', d.get('fault_id', '?'))} ({d.get('kind', '')}) on {d.get('target', '?')}")
    factors += [f"maintenance window on {node} overlapping the incident" for node, _s, _e in maintenance
                if node in impact.nodes]
    return factors


# -- charts -------------------------------------------------------------------------------------------------------


def _charts(minutes: Sequence[_Minute], budget_rows: Sequence[_Budget], lo: int, burned: Sequence[dict[str, Any]],
            window: tuple[int, int]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only
    out: dict[str, bytes] = {}
    # Legends carry telemetry (SLO segments): text, never mathtext ("$...$" in a label would be typeset).
    with matplotlib.rc_context({"text.parse_math": False}):
        if minutes:
            out["job-success.png"] = _job_success_chart(minutes, lo, window)
        wanted = [(b["slo"], b["segment"]) for b in burned[:_CHART_SERIES]]
        if wanted:
            out["budget.png"] = _budget_chart(budget_rows, lo, wanted, window)
    return out


def _mark(ax: Any, lo: int, window: tuple[int, int]) -> None:
    """Shade the incident, from its first alert to its resolution."""
    ax.axvspan((window[0] - lo) / MIN, (window[1] - lo) / MIN, color="#f59e0b", alpha=0.18, label="incident")


def _job_success_chart(minutes: Sequence[_Minute], lo: int, window: tuple[int, int]) -> bytes:
    import matplotlib.pyplot as plt

    per: dict[int, list[int]] = {}
    for b, status, n in minutes:
        cell = per.setdefault(b, [0, 0])
        cell[1] += n
        cell[0] += n if status != _FAILED else 0
    xs = sorted(per)
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    ax.plot([(x - lo) / MIN for x in xs], [100 * per[x][0] / per[x][1] for x in xs], color="#2563eb")
    _mark(ax, lo, window)
    ax.set_ylabel("job success (%)")
    ax.set_title("Job success per minute (shaded: the incident)")
    return _png(fig, ax)


def _budget_chart(budget_rows: Sequence[_Budget], lo: int, wanted: Sequence[tuple[str, str]],
                  window: tuple[int, int]) -> bytes:
    """The budget of the SLO segments the incident burned (most burned first), the incident shaded."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    series: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in wanted}
    for slo, seg, at, rem in budget_rows:
        if rem is not None and (slo, seg) in series:
            series[(slo, seg)].append(((at - lo) / MIN, 100 * rem))
    for (slo, seg), pts in series.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{slo} {seg}".strip())
    _mark(ax, lo, window)
    ax.set_ylabel("budget remaining (%)")
    ax.set_title("Error budget remaining of the SLOs this incident burned")
    ax.legend(fontsize=6, loc="lower left")
    return _png(fig, ax)


def _png(fig: Any, ax: Any) -> bytes:
    import io

    import matplotlib.pyplot as plt

    ax.set_xlabel("minutes from 30 min before the incident")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# -- rendering ----------------------------------------------------------------------------------------------------
# The document is laid out once as blocks; Markdown and HTML are two renderings of the same blocks (HTML is never
# parsed back out of Markdown). Text from the telemetry — titles, labels, node and link ids, tenants, span names
# and messages, fault details, SLO segments — is a _Text piece: `markdown_literal` in Markdown, `html.escape` in
# HTML, so a newline, `![x](http://...)`, `<script>` or `{}` in a label stays text and cannot break the layout.


@dataclass(frozen=True, slots=True)
class _Text:
    """Untrusted text (from the telemetry), optionally emphasised."""

    text: str
    strong: bool = False


_Piece = str | _Text          # str: this module's own wording, free of markup characters
_Line = tuple[_Piece, ...]


@dataclass(frozen=True, slots=True)
class _Block:
    """A heading (``h1``, ``h2``), paragraph, list item, table (header row first) or chart (``img``, its name)."""

    kind: Literal["h1", "h2", "p", "li", "table", "img"]
    line: _Line = ()
    rows: tuple[tuple[_Line, ...], ...] = ()


def render(pm: Postmortem, fmt: str, *, chart_dir: str = "") -> str:
    """The postmortem as ``md``, ``json`` or ``html`` text (Markdown links the PNGs by ``chart_dir``)."""
    if fmt == "json":
        return json.dumps(pm.doc, indent=2, default=str)
    if fmt not in ("md", "html"):
        raise ValueError(f"--format {fmt!r} is not one of md, json, html")
    blocks = _blocks(pm.doc)
    return _md(blocks, chart_dir) if fmt == "md" else _html(blocks, pm)


def _blocks(d: dict[str, Any]) -> list[_Block]:
    return [*_summary(d), *_timeline(d), *_impact(d), *_budget(d), *_factors_blocks(d), *_charts_blocks(d),
            *_ACTIONS]


def write_export(pm: Postmortem, target: Path, fmt: str) -> tuple[Path, ...]:
    """Write the postmortem to ``target`` as ``md``, ``json`` or ``html``; the written files, ``target`` first.

    Markdown gets its charts as ``<stem>-<chart>.png`` beside it, linked relatively (URL-quoted, so a name with
    spaces or parentheses still links), so the folder can be moved or committed as it is; HTML embeds them.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    written = [target]
    if fmt == "md":
        from urllib.parse import quote

        files = {name: f"{target.stem}-{name}" for name in pm.charts}
        for name, png in pm.charts.items():
            (target.parent / files[name]).write_bytes(png)
            written.append(target.parent / files[name])
        target.write_text(_md(_blocks(pm.doc), "", {n: quote(f) for n, f in files.items()}), encoding="utf-8")
    else:
        target.write_text(render(pm, fmt), encoding="utf-8")
    return tuple(written)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _join(items: Sequence[_Piece], empty: str = "-") -> _Line:
    """``items`` separated by commas (``empty`` when there are none)."""
    out: list[_Piece] = []
    for i, item in enumerate(items):
        out += [", ", item] if i else [item]
    return tuple(out) or (empty,)


def _summary(d: dict[str, Any]) -> list[_Block]:
    inc = d["incident"]
    return [_Block("h1", ("Postmortem: ", _Text(str(inc["title"])))),
            _Block("p", (f"Incident {inc['id']}, severity ", _Text(str(inc["severity"]), strong=True),
                         f", state {inc['state']}; opened {_second_of(inc['opened'])}, resolved "
                         f"{_second_of(inc['resolved'])}. Time to detect {_seconds(d['time_to_detect_s'])} "
                         f"(from the {d['time_to_detect_from']}), time to resolve "
                         f"{_seconds(d['time_to_resolve_s'])}.")),
            # The link is built from the configured URL and a quoted id (never from telemetry): an autolink.
            *([_Block("p", (f"On-call view: <{inc['url']}>",))] if inc.get("url") else [])]


def _second_of(rfc3339: str | None) -> str:
    """An RFC 3339 time of the JSON document shown to the second."""
    return "-" if not rfc3339 else rfc3339.split(".")[0].removesuffix("Z") + "Z"


def _timeline(d: dict[str, Any]) -> list[_Block]:
    rows: list[tuple[_Line, ...]] = [(("time (UTC)",), ("event",), ("detail",))]
    for e in d["timeline"]:
        rows.append(((str(e["at"]),), (_Text(str(e["kind"])),), (_Text(str(e["text"])),)))
    return [_Block("h2", ("Timeline",)), _Block("table", rows=tuple(rows))]


_SCOPES = {"place": "jobs on these nodes and links, and jobs that failed before reaching a node",
           "hardware": "jobs on the incident's hardware type, and jobs that failed before reaching a node",
           "fleet": "every job of the fleet (the incident names no node, link or hardware type)"}


def _impact(d: dict[str, Any]) -> list[_Block]:
    imp = d["impact"]
    ids = [_Text(str(j)) for j in imp["failed_job_ids"][:5]]
    examples: _Line = (" (e.g. ", *_join(ids), ")") if ids else ()
    tenants = [_Text(f"{t} ({n})") for t, n in imp["tenants"].items()]
    return [_Block("h2", ("Impact",)),
            _Block("li", ("Nodes: ", *_join([_Text(str(n)) for n in imp["nodes"]]), "; links: ",
                          *_join([_Text(str(x)) for x in imp["links"]]))),
            _Block("li", (f"Jobs failed: {imp['jobs_failed']} of {imp['jobs_total']} during the incident",
                          *examples)),
            _Block("li", ("Tenants: ", *_join(tenants))),
            _Block("li", (f"Counted: {_SCOPES[imp['scope']]}, {imp['window']['from']} to {imp['window']['to']}",))]


def _budget(d: dict[str, Any]) -> list[_Block]:
    lines = [_Block("li", (_Text(f"{b['slo']} {b['segment']}"), f": {100 * b['burned']:.1f} points (remaining "
                           f"{100 * b['remaining_before']:.1f}% → {100 * b['remaining_after']:.1f}%)"))
             for b in d["budget"]]
    return [_Block("h2", ("Error budget burned",)), *(lines or [_Block("li", ("none recorded",))])]


def _factors_blocks(d: dict[str, Any]) -> list[_Block]:
    lines = [_Block("li", (_Text(str(f)),)) for f in d["contributing_factors"]]
    return [_Block("h2", ("Contributing factors (from the telemetry)",)),
            *(lines or [_Block("li", ("none found",))])]


def _charts_blocks(d: dict[str, Any]) -> list[_Block]:
    lines = [_Block("img", (str(c),)) for c in d["charts"]]
    return [_Block("h2", ("Charts",)), *(lines or [_Block("li", ("no data",))])]


_ACTIONS = [_Block("h2", ("Action items",)), _Block("table", rows=((("action",), ("owner",), ("due",)),
                                                                   (("",), ("",), ("",))))]


def _md_line(line: _Line) -> str:
    return "".join(p if isinstance(p, str) else f"**{markdown_literal(p.text)}**" if p.strong
                   else markdown_literal(p.text) for p in line)


def _md(blocks: Sequence[_Block], chart_dir: str, urls: dict[str, str] | None = None) -> str:
    """The blocks as CommonMark (GitHub tables); a blank line between blocks of different kinds. A chart links
    ``urls[name]`` when given (HTML embeds them), else its file name under ``chart_dir``."""
    out: list[str] = []
    prev = ""
    for b in blocks:
        if out and (b.kind in ("h1", "h2", "p", "table") or b.kind != prev):
            out.append("")
        prev = b.kind
        if b.kind == "table":
            rows = ["| " + " | ".join(_md_line(c) for c in row) + " |" for row in b.rows]
            out += [rows[0], "|" + "---|" * len(b.rows[0]), *rows[1:]]
        elif b.kind == "img":
            name = str(b.line[0])
            target = (urls or {}).get(name) or (Path(chart_dir, name).as_posix() if chart_dir else name)
            out.append(f"![{name}]({target})")
        else:
            out.append({"h1": "# ", "h2": "## ", "li": "- ", "p": ""}[b.kind] + _md_line(b.line))
    return "\n".join([*out, ""])


_HTML_HEAD = ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title><style>"
              "body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#111}}"
              "table{{border-collapse:collapse}}"
              "td,th{{border-bottom:1px solid #ddd;padding:.2rem .5rem;text-align:left}}img{{max-width:100%}}"
              "</style></head><body>\n")


def _markdown_to_html(text: str) -> str:
    """CommonMark plus GitHub tables to HTML with markdown-it-py; raw HTML off, so any markup that reached the
    Markdown is shown as text (labels are escaped already; this is the second fence)."""
    from markdown_it import MarkdownIt

    # xhtmlOut off: HTML5 void elements (`<img>`), not XHTML's `<img />`.
    return str(MarkdownIt("commonmark", {"html": False, "xhtmlOut": False}).enable("table").render(text))


def _html(blocks: Sequence[_Block], pm: Postmortem) -> str:
    """The Markdown export rendered to a self-contained HTML page, charts embedded as data URLs."""
    # The renderer sees a short placeholder per chart, then the data URL replaces it in the `src` attribute:
    # markdown-it normalizes a link target character by character, which took a second on a 100 kB data URL.
    # Telemetry text cannot forge the attribute (a quote in text is rendered as &quot;).
    urls = {name: f"qfleet-chart-{i}.png" for i, name in enumerate(pm.charts)}
    body = _markdown_to_html(_md(blocks, "", urls))
    for name, png in pm.charts.items():
        body = body.replace(f'src="{urls[name]}"', f'src="data:image/png;base64,{base64.b64encode(png).decode()}"')
    return (_HTML_HEAD.format(title=html.escape(str(pm.doc["incident"]["title"]))) + body
            + "</body></html>\n")
