"""Exec view: fleet KPIs, entanglement and job success trends by hardware type, SLO budgets, incidents."""

from __future__ import annotations

from typing import Any, NamedTuple

import altair as alt
import pandas as pd
import streamlit as st

from qfleet.dashboards import ui
from qfleet.dashboards.data import Filters
from qfleet.text import markdown_literal as lit
from qfleet.units import NS

__all__: list[str] = []

NEVER_PLACED = "(never placed)"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


def _step_ns(f: Filters) -> int:
    window = f.end_ns - f.start_ns
    return max(60, (window // NS // 48) // 60 * 60) * NS


#: The KPI tiles' SLOs: their objective is the tile's target.
KPI_SLOS = {"availability": "node-availability", "job_success_rate": "job-success",
            "entanglement_success_rate": "entanglement-success"}


def _objectives(slos: pd.DataFrame) -> dict[str, float]:
    """SLO name -> objective (from the evaluations: what the SLO files said when they were evaluated)."""
    if slos.empty:
        return {}
    return {str(k): float(v) for k, v in slos.dropna(subset=["objective"]).groupby("slo")["objective"].first().items()}


def _tile(col: Any, label: str, value: float | None, objective: float | None, help: str) -> None:
    """A KPI tile: its value, and against its SLO's objective the gap in percentage points (red below)."""
    if value is None or objective is None:
        col.metric(label, _pct(value), help=help, border=True)
        return
    gap = (value - objective) * 100
    col.metric(label, _pct(value), delta=f"{gap:+.2f} pp vs {objective * 100:g}% objective",
               delta_color="normal", help=help, border=True)


def _kpis(f: Filters, slos: pd.DataFrame) -> None:
    k = ui.query("fleet_kpis", f)
    objectives = _objectives(slos)
    target = {key: objectives.get(name) for key, name in KPI_SLOS.items()}
    top, bottom = st.columns(3), st.columns(3)
    cols = [*top, *bottom]  # two rows of three: long labels and values stay readable
    _tile(cols[0], "Availability", k.get("availability"), target["availability"],
          "Mean of the qfleet_node_up samples; target: the node-availability SLO")
    cols[1].metric("Utilisation", _pct(k.get("utilisation")), border=True,
                   help="Fraction of the window the links spent on entanglement requests")
    _tile(cols[2], "Job success", k.get("job_success_rate"), target["job_success_rate"],
          f"{k.get('jobs') or 0:,} jobs; target: the job-success SLO")
    _tile(cols[3], "Entanglement success", k.get("entanglement_success_rate"), target["entanglement_success_rate"],
          "Entanglement requests that delivered a pair; target: the entanglement-success SLO")
    cols[4].metric("Open incidents", f"{k.get('open_incidents') or 0:,}", border=True)
    cost = k.get("cost_per_successful_job")
    cols[5].metric("Cost per successful job", "—" if cost is None else f"{cost:.2f} link-s", border=True,
                   help="Link-seconds of entanglement per successful job")


def _trend(f: Filters, span: str, title: str, empty: str) -> None:
    df = ui.query("trend", f, span=span, step_ns=_step_ns(f))
    if df.empty:
        st.info(empty)
        return
    df = ui.to_time(df, "time")
    df["success_pct"] = df["success_rate"] * 100
    # Jobs refused before reaching a node carry no hardware type: a named series, not an unlabelled grey one.
    df["hardware_type"] = [h if isinstance(h, str) and h else NEVER_PLACED for h in df["hardware_type"]]
    chart = alt.Chart(df, title=title).mark_line(point=True).encode(
        x=ui.time_axis(),
        y=alt.Y("success_pct:Q", title="Success (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("hardware_type:N", title="Hardware type",
                        scale=ui.hardware_scale(df["hardware_type"].astype(str).unique().tolist())),
        tooltip=[alt.Tooltip("time_text:N", title="Time (UTC)"), "hardware_type:N",
                 alt.Tooltip("success_pct:Q", title="Success (%)", format=".2f"), "good:Q", "total:Q"],
    )
    st.altair_chart(chart, width="stretch")


def _slo_table(slos: pd.DataFrame) -> None:
    st.subheader("Service level objectives")
    if slos.empty:
        st.info("No SLO evaluations with data in this window — run `qfleet slo evaluate --record` or "
                "`qfleet serve`, or widen the time range")
        return
    # An HTML table (not a canvas grid): every segment is readable in full, the state colour is a real style, and
    # all text is HTML-escaped (segments carry telemetry labels).
    st.html(ui.slo_table_html(slos))


class _Segment(NamedTuple):
    slo: str
    segment: str
    period_start: int | None
    period_end: int | None
    objective: float | None
    at: int


def _int_or_none(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _burn_down(f: Filters, slos: pd.DataFrame) -> None:
    """Budget remaining over the window for one SLO segment, with the objective's line: 0 % (exhausted) and, for a
    calendar period, the even spend that uses the budget up exactly at the period's end."""
    if slos.empty:
        return
    names: dict[str, _Segment] = {}
    for r in slos.sort_values("remaining_fraction").to_dict("records"):  # the most burnt first: the default
        names[f"{r['slo']} · {ui.segment_text(str(r['segment'] or ''))}"] = _Segment(
            str(r["slo"]), str(r["segment"]), _int_or_none(r["period_start"]), _int_or_none(r["period_end"]),
            None if r["objective"] is None or pd.isna(r["objective"]) else float(r["objective"]), int(r["at"]))
    picked = str(st.selectbox("Budget burn-down of", list(names), key="exec_burn_down"))
    slo, segment, p0, p1, objective, evaluated = names[picked]
    hist = ui.query("slo_history", slo, segment, f)
    if hist.empty:
        st.info("No evaluations of this SLO segment in the window — widen the time range")
        return
    df = hist.dropna(subset=["remaining_fraction"]).copy()
    df["remaining_pct"] = df["remaining_fraction"] * 100
    df = ui.to_time(df, "at")
    lines = [alt.Chart(df).mark_line(point=alt.OverlayMarkDef(color="#1f4e79"), color="#1f4e79").encode(
        x=ui.time_axis("at"), y=alt.Y("remaining_pct:Q", title="Error budget remaining (%)"),
        tooltip=[alt.Tooltip("at_text:N", title="Time (UTC)"),
                 alt.Tooltip("remaining_pct:Q", title="Remaining (%)", format=".3f")])]
    last_at = int(hist["at"].iloc[-1])
    # A calendar period ends after the evaluation; a rolling one ends at each evaluation (window = period).
    calendar = p0 is not None and p1 is not None and p1 > evaluated and p1 > p0
    if calendar:
        assert p0 is not None and p1 is not None
        # The even spend: errors at exactly the objective's rate use the budget up at the period's end.
        ends = [int(hist["at"].iloc[0]), last_at]
        even = pd.DataFrame({"at": ends, "remaining_pct": [100 * (1 - (t - p0) / (p1 - p0)) for t in ends]})
        even = ui.to_time(even, "at")
        lines.append(alt.Chart(even).mark_line(strokeDash=[6, 4], color="#555").encode(
            x="at:T", y="remaining_pct:Q", tooltip=[alt.Tooltip("remaining_pct:Q", title="Even spend (%)",
                                                                format=".3f")]))
    lines.append(alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color=ui.SLO_STATE_COLOURS["exhausted"]).encode(
        y="y:Q"))
    # Over a rolling window, errors at exactly the objective's rate keep the budget at 0 % (used up, not over).
    guide = ("dashed: an even spend over the calendar period" if calendar else
             "rolling window: at exactly the objective the budget sits at 0")
    st.caption(f"{lit(picked)}: objective {objective * 100:g}%; the red line is an exhausted budget; {guide}."
               if objective is not None else lit(picked))
    title = f"{picked}: error budget remaining"
    st.altair_chart(alt.layer(*lines, title=title), width="stretch")


def _incidents(f: Filters) -> None:
    st.subheader("Incidents this period")
    df = ui.query("incidents", limit=500, run_id=ui.selected_run())
    if not df.empty:
        start, end = f.start_ns, f.end_ns
        resolved = df["resolved"].fillna(end + 1)
        df = df[(df["opened"] <= end) & (resolved >= start)]
    if df.empty:
        st.info("No incidents opened or open in this window — widen the time range")
        return
    t = df.copy()
    for c in ("opened", "acknowledged", "resolved"):
        t[c] = [ui.fmt_ns(v) for v in t[c]]
    counts = df.groupby("severity").size()
    st.caption(" · ".join(f"{ui.severity_badge(s)} {n}" for s, n in counts.items()))
    st.dataframe(
        t[["severity", "state", "title", "opened", "acknowledged", "resolved", "receiver", "id"]],
        hide_index=True, width="stretch", key="exec_incident_table",
        column_config={"id": st.column_config.TextColumn("Incident id"), "title": st.column_config.TextColumn("Title")},
    )


def render() -> None:
    """Draw the exec page."""
    st.title("Fleet overview")
    ui.identity()
    f = ui.sidebar_filters()
    ui.live_refresh()
    if f is None:
        st.info("No telemetry in the store yet — nothing to summarise")
        return
    st.caption(f"{ui.fmt_ns(f.start_ns)} → {ui.fmt_ns(f.end_ns)} (simulated time)")
    run = ui.query("run_range", ui.selected_run())
    slos = ui.query("slo_status", f.end_ns, None if run is None else run[0])
    _kpis(f, slos)
    left, right = st.columns(2)
    with left:
        _trend(f, "qfleet.entanglement.request", "Entanglement success by hardware type",
               "No entanglement requests in this window — widen the time range or clear the filters")
    with right:
        _trend(f, "qfleet.job", "Job success by hardware type",
               "No jobs in this window — widen the time range or clear the filters")
    _slo_table(slos)
    _burn_down(f, slos)
    _incidents(f)


render()
