"""Exec view: fleet KPIs, entanglement and job success trends by hardware type, SLO budgets, incidents."""

from __future__ import annotations

import altair as alt
import streamlit as st

from qfleet.dashboards import ui
from qfleet.dashboards.data import Filters
from qfleet.units import NS

__all__: list[str] = []



def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


def _step_ns(f: Filters) -> int:
    window = f.end_ns - f.start_ns
    return max(60, (window // NS // 48) // 60 * 60) * NS


def _kpis(f: Filters) -> None:
    k = ui.query("fleet_kpis", f)
    top, bottom = st.columns(3), st.columns(3)
    cols = [*top, *bottom]  # two rows of three: long labels and values stay readable
    cols[0].metric("Availability", _pct(k.get("availability")), help="Mean of qfleet_node_up samples")
    cols[1].metric("Utilisation", _pct(k.get("utilisation")),
                   help="Fraction of the window the links spent on entanglement requests")
    cols[2].metric("Job success", _pct(k.get("job_success_rate")), help=f"{k.get('jobs') or 0:,} jobs")
    cols[3].metric("Entanglement success", _pct(k.get("entanglement_success_rate")))
    cols[4].metric("Open incidents", f"{k.get('open_incidents') or 0:,}")
    cost = k.get("cost_per_successful_job")
    cols[5].metric("Cost per successful job", "—" if cost is None else f"{cost:.2f} link-s",
                   help="Link-seconds of entanglement per successful job")


def _trend(f: Filters, span: str, title: str, empty: str) -> None:
    df = ui.query("trend", f, span=span, step_ns=_step_ns(f))
    if df.empty:
        st.info(empty)
        return
    df = ui.to_time(df, "time")
    df["success_pct"] = df["success_rate"] * 100
    chart = alt.Chart(df, title=title).mark_line(point=True).encode(
        x=alt.X("time:T", title="Time (UTC, simulated)"),
        y=alt.Y("success_pct:Q", title="Success (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("hardware_type:N", title="Hardware type",
                        scale=ui.hardware_scale(df["hardware_type"].astype(str).unique().tolist())),
        tooltip=[alt.Tooltip("time:T", title="Time"), "hardware_type:N",
                 alt.Tooltip("success_pct:Q", title="Success (%)", format=".2f"), "good:Q", "total:Q"],
    )
    st.altair_chart(chart, width="stretch")


def _slo_table(f: Filters) -> None:
    st.subheader("Service level objectives")
    df = ui.query("slo_status", f.end_ns)
    if df.empty:
        st.info("No SLO evaluations at or before the end of this window — run `qfleet slo evaluate --record` "
                "or `qfleet serve`")
        return
    t = df.copy()
    t["status"] = [("PAGE" if p else "ticket" if tk else "ok") for p, tk in zip(t["page"], t["ticket"], strict=True)]
    # Jobs that never reached a node carry no hardware type: name the segment instead of showing "hardware_type=".
    t["segment"] = [s if not s.endswith("=") else s[:-1] + ": (jobs never placed)" for s in t["segment"]]
    t["steps_triggered"] = [", ".join(map(str, s)) if isinstance(s, list | tuple) else (s or "")
                            for s in t["steps_triggered"]]
    t["at"] = [ui.fmt_ns(a) for a in t["at"]]
    t["sli_pct"] = t["sli"] * 100
    cols = ["status", "slo", "segment", "sli_pct", "remaining_fraction", "burn_1h", "burn_6h", "steps_triggered",
            "at"]
    st.dataframe(
        t[cols], hide_index=True, width="stretch", key="exec_slo_table",
        column_config={
            "status": st.column_config.TextColumn("Alert"),
            "slo": st.column_config.TextColumn("SLO"),
            "segment": st.column_config.TextColumn("Segment"),
            "sli_pct": st.column_config.NumberColumn("SLI (%)", format="%.3f"),
            "remaining_fraction": st.column_config.ProgressColumn("Budget remaining", min_value=0.0, max_value=1.0,
                                                                  format="percent"),
            "burn_1h": st.column_config.NumberColumn("Burn 1h (×)", format="%.2f"),
            "burn_6h": st.column_config.NumberColumn("Burn 6h (×)", format="%.2f"),
            "steps_triggered": st.column_config.TextColumn("Budget-policy steps"),
            "at": st.column_config.TextColumn("Evaluated"),
        },
    )


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
    _kpis(f)
    left, right = st.columns(2)
    with left:
        _trend(f, "qfleet.entanglement.request", "Entanglement success by hardware type",
               "No entanglement requests in this window — widen the time range or clear the filters")
    with right:
        _trend(f, "qfleet.job", "Job success by hardware type",
               "No jobs in this window — widen the time range or clear the filters")
    _slo_table(f)
    _incidents(f)


render()
