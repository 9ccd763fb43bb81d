"""On-call view: active incidents, scope and timeline, acknowledge / resolve / silence, runbook, feedforward
latency heatmap and recent entanglement failures (each linking into the debug view)."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import altair as alt
import pandas as pd
import streamlit as st

from qfleet.alerts.impact import IncidentImpact
from qfleet.alerts.narrative import event_text
from qfleet.dashboards import data, ui
from qfleet.dashboards.data import Filters
from qfleet.text import markdown_literal as lit
from qfleet.units import NS

__all__: list[str] = []


def _now_ns(floor_ns: int) -> int:
    """The wall clock (this page is an edge), never before ``floor_ns`` (stores stamped in simulated time)."""
    return max(time.time_ns(), floor_ns)


def _age(row: pd.Series, now_ns: int) -> str:
    """How long an incident has been open (or lasted, once resolved)."""
    if pd.notna(row["resolved"]):
        return f"lasted {ui.fmt_duration(int(row['resolved']) - int(row['opened']))}"
    return f"open {ui.fmt_duration(max(0, now_ns - int(row['opened'])))}"


def _incident_list(df: pd.DataFrame, now_ns: int) -> None:
    """One row per incident: severity, title, state, age, owner, opened (text cells: titles come from telemetry)."""
    t = pd.DataFrame({
        "severity": df["severity"].fillna("-"), "title": df["title"], "state": df["state"],
        "age": [_age(r, now_ns) for _, r in df.iterrows()],
        "owner": [o if isinstance(o, str) and o else "unowned" for o in df["owner"]],
        "opened": [ui.fmt_ns(v) for v in df["opened"]]})
    st.dataframe(t, hide_index=True, width="stretch", key="oncall_incident_list",
                 column_config={"title": st.column_config.TextColumn("Incident", width="large"),
                                "owner": st.column_config.TextColumn("Owner", help="Who acknowledged it"),
                                "opened": st.column_config.TextColumn("Opened (UTC)")})


def _pick_incident(now_ns: int) -> pd.Series | None:
    wanted = ui.param("incident")
    df = ui.query("incidents", limit=500, run_id=ui.selected_run(), include=wanted)
    if df.empty:
        st.info("No incidents in the store — nothing has paged or ticketed yet" if ui.selected_run() is None else
                "No incidents in this run — nothing paged or ticketed (pick another run in the sidebar)")
        ui.set_param("incident", None)
        return None
    active = df[df["state"] != "resolved"]
    shown = df[(df["state"] != "resolved") | (df["id"] == wanted)]
    if st.toggle("Include resolved incidents", key="oncall_show_resolved", value=False):
        shown = df
    if shown.empty:
        st.success(f"No active incidents ({len(df)} resolved) — switch on 'Include resolved incidents' to review")
        ui.set_param("incident", None)
        return None
    counts = active.groupby("severity").size() if not active.empty else pd.Series(dtype=int)
    st.caption(f"{len(active)} active incident(s)" + "".join(f" · {ui.severity_badge(str(s))} {n}"
                                                           for s, n in counts.items()))
    _incident_list(shown, now_ns)
    ids = shown["id"].tolist()
    by_id = {r.id: r for r in shown.itertuples(index=False)}
    key = "oncall_incident"
    if wanted in ids and st.session_state.get("_oncall_linked") != wanted:
        st.session_state[key] = wanted   # a deep link (or a changed ?incident=) selects its incident once
        st.session_state["_oncall_linked"] = wanted
    if key not in st.session_state or st.session_state[key] not in ids:
        st.session_state[key] = ids[0]
    iid = st.selectbox(
        "Incident", ids, key=key,
        format_func=lambda i: f"[{by_id[i].severity or '-'}] {by_id[i].title} · {by_id[i].state} · "
                              f"{ui.fmt_ns(by_id[i].opened)}")
    ui.set_param("incident", iid)
    st.session_state["_oncall_linked"] = iid
    return df[df["id"] == iid].iloc[0]


def _postmortem_download(inc: pd.Series) -> None:
    """The incident's postmortem (alerts.postmortem) as Markdown and HTML downloads."""
    from qfleet.alerts.postmortem import build_postmortem, render

    try:
        pm = build_postmortem(ui.engine(), str(inc["id"]))
        html, doc = render(pm, "html"), render(pm, "json")
    except Exception as e:  # a half-written incident or an odd label must not break the page
        st.warning(f"Postmortem not available: {lit(e)}")
        return
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Postmortem (HTML)", html, file_name=f"postmortem-{inc['id']}.html",
                         mime="text/html", key="oncall_pm_html")
    right.download_button("Postmortem (JSON)", doc, file_name=f"postmortem-{inc['id']}.json",
                          mime="application/json", key="oncall_pm_json")


# Line breaks (str.splitlines) other than "\n", which the matcher syntax escapes.
_OTHER_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _matcher(name: str, value: str) -> str | None:
    """``name="value"`` in the matcher syntax (quotes, backslashes and newlines escaped); None when the value
    holds another line break, which the one-matcher-per-line text area cannot carry."""
    if any(c in value for c in _OTHER_BREAKS):
        return None
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{quoted}"'


def _actions(inc: pd.Series, timeline: pd.DataFrame, by: str) -> None:
    """Acknowledge, resolve and silence, recorded as ``by``: the signed-in identity (ui.identity), never typed."""
    floor = int(max([inc["opened"], *timeline["at"].tolist()] if not timeline.empty else [inc["opened"]]))
    st.caption(f"Acting as {lit(by)}")
    c1, c2, _ = st.columns([1, 1, 4])
    resolved = inc["state"] == "resolved"
    if c1.button("Acknowledge", key="oncall_ack", disabled=resolved or inc["state"] == "acknowledged",
                 type="primary"):
        _write(lambda: data.acknowledge(ui.engine(), inc["id"], by, _now_ns(floor)), "Acknowledged")
    if c2.button("Resolve", key="oncall_resolve", disabled=resolved):
        _write(lambda: data.resolve(ui.engine(), inc["id"], by, _now_ns(floor)), "Resolved")
    msg = st.session_state.pop("oncall_flash", None)
    if msg:
        st.success(msg)
    labels = ui.labels_of(inc["labels"])
    wanted = ("alertname", "slo", "node", "link", "hardware_type", "severity")
    default = "\n".join(m for k, v in sorted(labels.items()) if k in wanted and (m := _matcher(k, v)))
    with st.expander("Silence matching alerts"), st.form("oncall_silence_form"):
        matchers = st.text_area("Matchers (one per line, e.g. alertname=\"QfleetNodeHeartbeatMissing\")",
                                value=default, key="oncall_silence_matchers")
        hours = st.number_input("Duration (hours)", min_value=0.25, max_value=24.0 * 30, value=2.0, step=0.25,
                                key="oncall_silence_hours")
        comment = st.text_input("Comment", key="oncall_silence_comment", value=f"incident {inc['id']}")
        if st.form_submit_button("Create silence", key="oncall_silence_submit"):
            lines = [m.strip() for m in matchers.splitlines() if m.strip()]
            if not lines:
                st.error("A silence needs at least one matcher, e.g. alertname=\"X\"")
            else:
                _write(lambda: data.silence(ui.engine(), lines, int(hours * 3600), by, comment, _now_ns(floor)),
                       "Silence created")


def _write(fn: Callable[[], object], what: str) -> None:
    try:
        result = fn()
    except ValueError as e:  # IncidentError, SilenceError: the message says how to fix it
        st.error(lit(e))
        return
    ui.clear_cache()
    st.session_state["oncall_flash"] = f"{what}{f': {result}' if isinstance(result, str) and result else ''}"
    st.rerun()


def _incident(inc: pd.Series, by: str) -> IncidentImpact | None:
    labels = ui.labels_of(inc["labels"])
    # Titles, labels and receivers come from telemetry and config: Markdown-escaped, so they show as text.
    st.subheader(lit(inc["title"]))
    owner = inc["owner"] if isinstance(inc["owner"], str) and inc["owner"] else "unowned"
    st.markdown(f"{ui.severity_badge(inc['severity'])} · state **{lit(inc['state'])}** · owner {lit(owner)} · "
                f"receiver {lit(inc['receiver'])} · opened {ui.fmt_ns(inc['opened'])} · acknowledged "
                f"{ui.fmt_ns(inc['acknowledged'])} · resolved {ui.fmt_ns(inc['resolved'])}")
    timeline = ui.query("incident_timeline", inc["id"])
    _actions(inc, timeline, by)
    _postmortem_download(inc)
    impact = ui.query("incident_impact", inc["id"])
    _impact(impact)
    st.markdown("**Timeline**")
    if timeline.empty:
        st.info("This incident has no timeline events")
    else:
        # The postmortem's sentences (alerts.narrative), shown as text cells: labels come from telemetry.
        t = pd.DataFrame({"time": [ui.fmt_ns(a) for a in timeline["at"]],
                          "event": timeline["kind"],
                          "what happened": [event_text(k, d if isinstance(d, dict) else {})
                                            for k, d in zip(timeline["kind"], timeline["detail"], strict=True)]})
        st.dataframe(t, hide_index=True, width="stretch", key="oncall_timeline_table",
                     column_config={"time": st.column_config.TextColumn("Time (UTC)", width="small"),
                                    "event": st.column_config.TextColumn("Event", width="small"),
                                    "what happened": st.column_config.TextColumn("What happened", width="large")})
    with st.expander("Labels"):
        st.json(labels)
    url = ui.incident_runbook_url(labels)
    text = data.runbook(url) if url else None
    if text:
        with st.expander(f"Runbook {lit(url)}", expanded=True), st.container(height=420, border=False):
            st.markdown(ui.runbook_body(text))
    else:
        st.info(f"No runbook found{f' at {lit(url)}' if url else ' for this incident'} — see runbooks/README.md")
    return impact


def _impact(impact: IncidentImpact | None) -> None:
    """The incident's impact: the same figures as its postmortem (qfleet.alerts.impact)."""
    if impact is None:
        return
    names = {"nodes": impact.nodes, "links": impact.links, "tenants": [f"{t} ({n})" for t, n in impact.tenants],
             "jobs": impact.failed_job_ids}
    for col, (name, count) in zip(st.columns(4), impact.counts().items(), strict=True):
        values = list(names[name])
        col.metric(f"Impacted {name}", count, help="failed jobs" if name == "jobs" else None)
        col.caption(lit(", ".join(map(str, values[:12]))) + (" …" if count > 12 else "") or "none")
    st.caption(f"Counted: {lit(impact.describe())}")


def _heatmap(f: Filters) -> None:
    step = max(60, (f.end_ns - f.start_ns) // NS // 60 // 60 * 60) * NS
    df = ui.query("feedforward_heatmap", f, step)
    if df.empty:
        st.info("No feedforward spans in this window — widen the time range")
        return
    df = df.copy()
    df["end"] = df["time"] + step
    df = ui.to_time(df, "time", "end")
    chart = alt.Chart(df, title="Feedforward latency by node").mark_rect().encode(
        x=ui.time_axis(),
        x2="end:T",
        y=alt.Y("node:N", title="Node"),
        color=alt.Color("mean_latency_s:Q", title="Mean latency (s)", scale=alt.Scale(scheme="orangered")),
        tooltip=[alt.Tooltip("time_text:N", title="From (UTC)"), "node:N",
                 alt.Tooltip("mean_latency_s:Q", title="Mean latency (s)", format=".6f"),
                 alt.Tooltip("count:Q", title="Spans")],
    )
    st.altair_chart(chart, width="stretch")


def _failures(f: Filters, scoped: bool) -> None:
    st.subheader("Recent entanglement failures")
    df = ui.query("entanglement_failures", f, 50)
    if df.empty:
        st.info("No failed entanglement requests on the incident's nodes and links in its window — switch on "
                "'Fleet-wide panels' to see the whole fleet" if scoped else
                "No failed entanglement requests in this window — widen the time range or clear the filters")
        return
    t = df.copy()
    t["debug"] = [f"debug?trace={quote(str(tid), safe='')}" for tid in t["trace_id"]]
    t["time"] = [ui.fmt_ns(v) for v in t["time"]]
    st.dataframe(
        t[["time", "link", "node", "attempts", "latency_s", "message", "job_id", "debug"]], hide_index=True,
        width="stretch", key="oncall_failures_table",
        column_config={
            "latency_s": st.column_config.NumberColumn("Latency (s)", format="%.4f"),
            "debug": st.column_config.LinkColumn("Trace", display_text="open in debug"),
        })


def _scope(f: Filters | None, impact: IncidentImpact | None) -> Filters | None:
    """The panels' filters: the incident's window and place (its impact's scope) unless fleet-wide is asked for."""
    if impact is None:
        return f
    if st.toggle("Fleet-wide panels (ignore the incident's scope)", key="oncall_fleet_wide", value=False):
        return f
    st.caption(f"Panels scoped to the incident: {lit(impact.describe())}")
    return data.incident_filters(impact)


def render() -> None:
    """Draw the on-call page."""
    st.title("On-call")
    by = ui.identity()
    f = ui.sidebar_filters()
    ui.live_refresh()
    # Ages count to the wall clock, or to the end of the data for a simulated run (its clock is the run's).
    now = f.end_ns if f is not None and ui.selected_run() is not None else _now_ns(0)
    inc = _pick_incident(now)
    impact = _incident(inc, by) if inc is not None else None
    scoped = _scope(f, impact)
    if scoped is None:
        st.info("No telemetry in the store yet — no latency or failures to show")
        return
    st.divider()
    _heatmap(scoped)
    _failures(scoped, scoped is not f)


render()
