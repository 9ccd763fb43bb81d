"""Postmortem exports of an incident, from the store (read-only): Markdown, JSON or HTML.

The document holds the timeline (ground-truth fault, first symptom in the telemetry, alert fired, notified,
acknowledged, escalated, resolved), the impacted nodes, links, tenants and jobs, the error budget each SLO burned
over the incident, time to detect and to resolve, charts of the signals around it (PNG, embedded in HTML, beside
the Markdown), contributing factors read from the telemetry, and an action-items section to fill in.

The JSON form is stable: ``{"version": 1, "incident": {...}, "timeline": [{"at", "kind", "detail"}],
"impact": {"nodes", "links", "tenants", "jobs_failed", "jobs_total", "failed_job_ids" (the first 50)}, "budget": [{"slo", "segment",
"remaining_before", "remaining_after", "burned"}], "time_to_detect_s", "time_to_resolve_s",
"contributing_factors": [...], "charts": [file names], "action_items": []}``.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from qfleet.alerts.incidents import Incidents

__all__ = ["Postmortem", "build_postmortem", "render"]

NS = 1_000_000_000
MIN = 60 * NS
_WINDOW = 30 * MIN  # how much telemetry before and after the incident the document looks at


def _iso(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / NS, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Postmortem:
    """The document as data; :func:`render` turns it into md, json or html."""

    doc: dict[str, Any]
    charts: dict[str, bytes]  # file name -> PNG


def build_postmortem(engine: Engine, incident_id: str) -> Postmortem:
    """Gather everything about ``incident_id`` from the store.

    Raises:
        qfleet.alerts.incidents.IncidentError: no such incident.
    """
    inc = Incidents(engine, clock=lambda: 0)
    row = inc.get(incident_id)
    timeline = inc.timeline(incident_id)
    opened = row["opened_unix_nano"]
    closed = row["resolved_unix_nano"] or max([e["at_unix_nano"] if "at_unix_nano" in e else e.get("at", opened)
                                              for e in timeline] + [opened])
    labels = row["labels"] if isinstance(row["labels"], dict) else json.loads(row["labels"] or "{}")
    lo, hi = opened - _WINDOW, closed + _WINDOW
    events = [{"at": _iso(e.get("at_unix_nano", e.get("at"))), "at_ns": e.get("at_unix_nano", e.get("at")),
               "kind": e["kind"], "detail": e.get("detail", {})} for e in timeline]
    faults = [e for e in events if e["kind"] == "fault"]
    fault_start = min((e["at_ns"] for e in faults), default=None)
    nodes = {v for k, v in labels.items() if k in ("node", "qfleet_node_id") and v}
    links = {v for k, v in labels.items() if k in ("link", "qfleet_link_id") and v}
    with engine.connect() as c:
        # First symptom: the first failed span in the window on an impacted node or link (or anywhere, if none).
        q = ("SELECT start_time_unix_nano, name, node_id, link_id, status_message FROM spans WHERE status_code = 2 "
             "AND start_time_unix_nano >= :lo AND start_time_unix_nano <= :hi AND name != 'qfleet.fault' ")
        params: dict[str, Any] = {"lo": fault_start if fault_start is not None else lo, "hi": closed}
        if nodes or links:
            q += "AND (node_id IN :nodes OR link_id IN :links) "
        q += "ORDER BY start_time_unix_nano LIMIT 1"
        stmt = text(q)
        if nodes or links:
            from sqlalchemy import bindparam

            stmt = stmt.bindparams(bindparam("nodes", expanding=True), bindparam("links", expanding=True))
            params.update(nodes=sorted(nodes) or [""], links=sorted(links) or [""])
        first = c.execute(stmt, params).first()
        if first is None and (nodes or links):
            # Nothing failed on the incident's own node or link: the first failure anywhere after the fault.
            first = c.execute(text(q.split("AND (node_id")[0] + "ORDER BY start_time_unix_nano LIMIT 1"),
                              {"lo": params["lo"], "hi": params["hi"]}).first()
        jobs = c.execute(text(
            "SELECT status_code, status_message, attributes, job_id FROM spans WHERE name = 'qfleet.job' "
            "AND start_time_unix_nano >= :lo AND start_time_unix_nano <= :hi"), {"lo": opened - 5 * MIN,
                                                                                 "hi": closed}).all()
        budget_rows = c.execute(text(
            "SELECT slo, segment, at_unix_nano, remaining_fraction FROM slo_evaluations "
            "WHERE at_unix_nano >= :lo AND at_unix_nano <= :hi ORDER BY at_unix_nano"), {"lo": lo, "hi": hi}).all()
        minutes = c.execute(text(
            "SELECT bucket_start_unix_nano, status_code, SUM(span_count) FROM span_rollups WHERE name = 'qfleet.job' "
            "AND bucket_start_unix_nano >= :lo AND bucket_start_unix_nano <= :hi "
            "GROUP BY bucket_start_unix_nano, status_code ORDER BY bucket_start_unix_nano"), {"lo": lo, "hi": hi}).all()
        maint = c.execute(text(
            "SELECT node_id, start_time_unix_nano, end_time_unix_nano FROM spans WHERE name = 'qfleet.maintenance' "
            "AND end_time_unix_nano >= :lo AND start_time_unix_nano <= :hi"), {"lo": lo, "hi": hi}).all()
    if first is not None:
        events.append({"at": _iso(first[0]), "at_ns": first[0], "kind": "first symptom",
                       "detail": {"span": first[1], "node": first[2], "link": first[3], "message": first[4]}})
    events.sort(key=lambda e: (e["at_ns"] or 0, e["kind"]))
    tenants: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failed = 0
    failed_ids: list[str] = []
    for status, msg, attrs, job_id in jobs:
        a = attrs if isinstance(attrs, dict) else json.loads(attrs or "{}")
        if status == 2:
            failed += 1
            if len(failed_ids) < 50 and job_id:
                failed_ids.append(job_id)
            tenants[a.get("qfleet.tenant", "?")] += 1
            outcomes[msg or a.get("qfleet.outcome", "?")] += 1
    burned = []
    first_seen: dict[tuple[str, str], float | None] = {}
    last_seen: dict[tuple[str, str], float | None] = {}
    for slo, seg, _at, rem in budget_rows:
        first_seen.setdefault((slo, seg), rem)
        last_seen[(slo, seg)] = rem
    for key, before in sorted(first_seen.items()):
        after = last_seen[key]
        b = None if before is None or after is None else before - after
        if b is not None and b > 0:
            burned.append({"slo": key[0], "segment": key[1], "remaining_before": before, "remaining_after": after,
                           "burned": b})
    factors = [f"{n} jobs ended {o}" for o, n in outcomes.most_common(4)]
    factors += [f"fault {e['detail'].get('id', e['detail'].get('fault_id', '?'))} ({e['detail'].get('kind', '')}) "
                f"on {e['detail'].get('target', '?')}" for e in faults]
    factors += [f"maintenance window on {n} overlapping the incident" for n, _s, _e in maint if n in nodes]
    charts = _charts(minutes, budget_rows, lo, hi)
    ttd = (opened - fault_start) / NS if fault_start is not None else None
    ttr = (row["resolved_unix_nano"] - opened) / NS if row["resolved_unix_nano"] else None
    doc = {
        "version": 1,
        "incident": {"id": row["id"], "title": row["title"], "severity": row["severity"], "state": row["state"],
                     "receiver": row["receiver"], "group_key": row["group_key"], "labels": labels,
                     "opened": _iso(opened), "acknowledged": _iso(row["acknowledged_unix_nano"]),
                     "acknowledged_by": row["acknowledged_by"], "resolved": _iso(row["resolved_unix_nano"])},
        "timeline": [{k: v for k, v in e.items() if k != "at_ns"} for e in events],
        "impact": {"nodes": sorted(nodes), "links": sorted(links), "tenants": dict(tenants.most_common()),
                   "jobs_failed": failed, "jobs_total": len(jobs), "failed_job_ids": failed_ids},
        "budget": burned,
        "time_to_detect_s": ttd,
        "time_to_resolve_s": ttr,
        "contributing_factors": factors,
        "charts": sorted(charts),
        "action_items": [],
    }
    return Postmortem(doc, charts)


def _charts(minutes: list[Any], budget_rows: list[Any], lo: int, hi: int) -> dict[str, bytes]:
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    per: dict[int, list[int]] = {}
    for b, status, n in minutes:
        cell = per.setdefault(b, [0, 0])
        cell[1] += n
        cell[0] += n if status != 2 else 0
    if per:
        xs = sorted(per)
        fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
        ax.plot([(x - lo) / MIN for x in xs], [100 * per[x][0] / per[x][1] for x in xs], color="#2563eb")
        ax.set_xlabel("minutes from 30 min before the incident")
        ax.set_ylabel("job success (%)")
        ax.set_title("Job success per minute")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out["job-success.png"] = buf.getvalue()
    if budget_rows:
        fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
        series: dict[str, list[tuple[float, float]]] = {}
        for slo, seg, at, rem in budget_rows:
            if rem is not None:
                series.setdefault(f"{slo} {seg}".strip(), []).append(((at - lo) / MIN, 100 * rem))
        for name, pts in sorted(series.items())[:8]:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
        ax.set_xlabel("minutes from 30 min before the incident")
        ax.set_ylabel("budget remaining (%)")
        ax.set_title("Error budget remaining per SLO")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=6, loc="lower left")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out["budget.png"] = buf.getvalue()
    return out


def render(pm: Postmortem, fmt: str, *, chart_dir: str = "") -> str:
    """The postmortem as ``md``, ``json`` or ``html`` text (Markdown links the PNGs by ``chart_dir``)."""
    d = pm.doc
    if fmt == "json":
        return json.dumps(d, indent=2, default=str)
    inc = d["incident"]
    ttd = "-" if d["time_to_detect_s"] is None else f"{d['time_to_detect_s']:.0f} s"
    ttr = "-" if d["time_to_resolve_s"] is None else f"{d['time_to_resolve_s']:.0f} s"
    lines = [f"# Postmortem: {inc['title']}", "",
             f"Incident `{inc['id']}`, severity **{inc['severity']}**, state {inc['state']}; opened {inc['opened']}, "
             f"resolved {inc['resolved'] or '-'}. Time to detect {ttd}, time to resolve {ttr}.", "",
             "## Timeline", "", "| time (UTC) | event | detail |", "|---|---|---|"]
    for e in d["timeline"]:
        detail = ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items() if v not in (None, "", [], {}))
        lines.append(f"| {e['at']} | {e['kind']} | {detail[:160]} |")
    imp = d["impact"]
    lines += ["", "## Impact", "",
              f"- Nodes: {', '.join(imp['nodes']) or '-'}; links: {', '.join(imp['links']) or '-'}",
              f"- Jobs failed: {imp['jobs_failed']} of {imp['jobs_total']} during the incident"
              + (f" (e.g. {', '.join(imp['failed_job_ids'][:5])})" if imp["failed_job_ids"] else ""),
              f"- Tenants: {', '.join(f'{t} ({n})' for t, n in imp['tenants'].items()) or '-'}",
              "", "## Error budget burned", ""]
    lines += [f"- {b['slo']} {b['segment']}: {100 * b['burned']:.1f} points (remaining {100 * b['remaining_before']:.1f}% "
              f"→ {100 * b['remaining_after']:.1f}%)" for b in d["budget"]] or ["- none recorded"]
    lines += ["", "## Contributing factors (from the telemetry)", ""]
    lines += [f"- {f}" for f in d["contributing_factors"]] or ["- none found"]
    lines += ["", "## Charts", ""]
    lines += [f"![{c}]({Path(chart_dir, c).as_posix() if chart_dir else c})" for c in d["charts"]] or ["- no data"]
    lines += ["", "## Action items", "", "| action | owner | due |", "|---|---|---|", "| | | |", ""]
    md = "\n".join(lines)
    if fmt == "md":
        return md
    if fmt != "html":
        raise ValueError(f"--format {fmt!r} is not one of md, json, html")
    body = []
    for line in md.splitlines():
        if line.startswith("![") and "](" in line:
            name = line[2:line.index("]")]
            data = base64.b64encode(pm.charts[name]).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    return ("<!doctype html><meta charset='utf-8'><title>" + html.escape(inc["title"]) + "</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#111}"
            "td{border-bottom:1px solid #ddd;padding:.2rem .5rem}img{max-width:100%}</style><body>"
            + "\n".join(body) + "</body>")
