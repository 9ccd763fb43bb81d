"""Debug view: one job's trace as a waterfall on simulated time (log or linear axis, every bar labelled with its
duration), its nodes' calibrated T1/T2 around it with their standard errors, gate and readout error distributions
per node, the link fidelity histogram and the measurement variance."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from qfleet.dashboards import ui
from qfleet.dashboards.data import Filters
from qfleet.text import markdown_literal as lit
from qfleet.units import NS

__all__: list[str] = []

#: How far around the job the node timelines reach.
AROUND_NS = 30 * 60 * NS


def _pick_trace(f: Filters | None) -> str | None:
    wanted = ui.param("trace")
    only_failed = st.toggle("Failed jobs only", key="debug_only_failed", value=True)
    # The store filters before the limit, so older failures in the window are listed even after many successes.
    jobs = ui.query("recent_jobs", f, failed_only=only_failed, limit=200) if f is not None else pd.DataFrame()
    labels: dict[str, str] = {}
    for r in jobs.to_dict("records"):
        labels[str(r["trace_id"])] = (f"{ui.fmt_ns(r['time'])} · {r['job_id']} · {r['tenant']} · {r['kind']} · "
                                      f"{r['outcome']}")
    ids = list(labels)
    if wanted and wanted not in labels:
        ids.insert(0, wanted)
        labels[wanted] = f"trace {wanted} (from the link)"
    if not ids:
        st.info("No failed jobs in this window — widen the time range, switch off 'Failed jobs only', "
                "or open a trace with ?trace=<trace id>")
        return None
    key = "debug_trace"
    if key not in st.session_state or st.session_state[key] not in ids:
        st.session_state[key] = wanted if wanted in ids else ids[0]
    tid = st.selectbox("Job", ids, key=key, format_func=lambda t: labels.get(t, t))
    ui.set_param("trace", tid)
    return tid


def span_duration(ns: float) -> str:
    """A span's duration in its own unit: ``750 ns``, ``12.5 µs``, ``3.20 ms``, ``1.50 s``.

    >>> span_duration(750), span_duration(12_500), span_duration(3_200_000), span_duration(1.5e9)
    ('750 ns', '12.5 µs', '3.20 ms', '1.50 s')
    """
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


#: The log axis starts here (ms): a span starting with the job sits at 1 ns instead of at minus infinity.
LOG_FLOOR_MS = 1e-6


def _waterfall(trace: pd.DataFrame) -> None:
    t0 = int(trace["start_ns"].min())
    df = trace.copy().sort_values(["start_ns", "end_ns"]).reset_index(drop=True)
    df["start_ms"] = (df["start_ns"] - t0) / 1e6
    df["end_ms"] = (df["end_ns"] - t0) / 1e6
    df["row"] = [f"{i:03d} {n}" + (f" [{x}]" if isinstance(x, str) and x else "")
                 for i, (n, x) in enumerate(zip(df["name"], df["link"].fillna(df["node"]), strict=True))]
    df["status"] = df["status"].astype(str)
    df["took"] = [span_duration(float(e - s)) for s, e in zip(df["start_ns"], df["end_ns"], strict=True)]
    log = st.radio("Time axis", ["log", "linear"], horizontal=True, key="debug_waterfall_scale",
                   help="log: nanosecond gates and second-long waits both stay visible; linear: true proportions"
                   ) == "log"
    if log:
        # Offsets from the job's start, floored at 1 ns so that spans starting at 0 have a place on a log axis.
        df["start_ms"] = df["start_ms"].clip(lower=LOG_FLOOR_MS)
        df["end_ms"] = df[["end_ms", "start_ms"]].max(axis=1).clip(lower=LOG_FLOOR_MS * 2)
    scale = alt.Scale(type="log") if log else alt.Scale(type="linear")
    y = alt.Y("row:N", title=None, sort=None, axis=alt.Axis(labelLimit=360))
    base = alt.Chart(df[["row", "name", "start_ms", "end_ms", "duration_ms", "status", "node", "link", "took"]]
                     ).encode(y=y)
    bars = base.mark_bar().encode(
        x=alt.X("start_ms:Q", title="Time since job start (ms" + (", log scale)" if log else ")"), scale=scale),
        x2="end_ms:Q",
        color=alt.Color("name:N", title="Span name", legend=alt.Legend(orient="bottom", columns=3)),
        tooltip=["name:N", alt.Tooltip("start_ms:Q", title="Start (ms)", format=".6f"),
                 alt.Tooltip("took:N", title="Duration"), "status:N", "node:N", "link:N"])
    # Every bar is labelled with its duration, so a span too short to see at the job's scale still reads.
    labels = base.mark_text(align="left", dx=4, fontSize=11).encode(x=alt.X("end_ms:Q", scale=scale), text="took:N")
    # A tick at each span's start: a microsecond span late in a millisecond job is a sliver even on a log axis.
    ticks = base.mark_tick(thickness=3, size=18).encode(x=alt.X("start_ms:Q", scale=scale), color="name:N")
    # A fixed step per span row: Streamlit sizes a layered chart by its content, and a pixel height collapsed it.
    chart = alt.layer(bars, ticks, labels, title=f"Trace waterfall from {ui.fmt_ns(t0)} UTC (simulated)").properties(
        height=alt.Step(28))
    st.altair_chart(chart, width="stretch")


def _nodes_of(trace: pd.DataFrame) -> list[str]:
    nodes = {n for n in trace["node"].dropna().astype(str) if n}
    for attrs in trace["attributes"]:
        if isinstance(attrs, dict) and attrs.get("qfleet.nodes"):
            nodes.update(p.strip() for p in str(attrs["qfleet.nodes"]).split(",") if p.strip())
    return sorted(nodes)


#: Calibration fits report a T1 this long or longer when they see no decay (simulator/telemetry.py: 1e9 s).
NO_DECAY_S = 1e9


def _device_series(metric: str, nodes: list[str], around: Filters) -> tuple[pd.DataFrame, list[str]]:
    """The estimates of ``metric`` with their standard errors (``lo``, ``hi``): only finite values below
    :data:`NO_DECAY_S`; and the nodes whose estimates all said "no decay" (shown as text, not as a flat line)."""
    df = ui.query("node_series", metric, nodes, around)
    if df.empty:
        return df, []
    err = ui.query("node_series", metric.replace("_seconds", "_stderr_seconds"), nodes, around)
    if not err.empty:
        df = df.merge(err.rename(columns={"value": "stderr"}), on=["time", "node"], how="left")
    else:
        df["stderr"] = float("nan")
    finite = df["value"].map(lambda v: math.isfinite(v) and v < NO_DECAY_S)
    no_decay = sorted(set(df.loc[~finite, "node"].astype(str)) - set(df.loc[finite, "node"].astype(str)))
    df = df[finite].copy()
    df["stderr"] = df["stderr"].where(df["stderr"].map(lambda v: math.isfinite(v) and v >= 0), 0.0)
    # The lower bar end stays positive: the axis is logarithmic.
    df["lo"] = (df["value"] - df["stderr"]).clip(lower=df["value"] / 10)
    df["hi"] = df["value"] + df["stderr"]
    return df, no_decay


def _timelines(trace: pd.DataFrame, nodes: list[str]) -> None:
    if not nodes:
        st.info("This trace names no nodes — no T1/T2 timelines to show")
        return
    start, end = int(trace["start_ns"].min()), int(trace["end_ns"].max())
    around = Filters(start_ns=start - AROUND_NS, end_ns=end + AROUND_NS)
    cols = st.columns(2)
    for col, metric, label in ((cols[0], "qfleet_node_t2_seconds", "T2"), (cols[1], "qfleet_node_t1_seconds", "T1")):
        with col:
            df, no_decay = _device_series(metric, nodes, around)
            if no_decay:
                st.caption(f"{label}: no decay measured on {lit(', '.join(no_decay))} (the calibration's fit saw "
                           "none: e.g. trapped-ion T1); not plotted")
            if df.empty:
                if not no_decay:
                    st.info(f"No {label} estimates for {lit(', '.join(nodes))} within 30 min of the job")
                continue
            df = ui.to_time(df, "time")
            job = pd.DataFrame({"t": pd.to_datetime([start, end], unit="ns", utc=True)})
            base = alt.Chart(df, title=f"{label} estimates of the job's nodes (±30 min; bars: ±1 standard error)")
            y = alt.Y("value:Q", title=f"{label} (s, log scale)", scale=alt.Scale(type="log"))
            line = base.mark_line(point=True).encode(
                x=ui.time_axis(), y=y, color=alt.Color("node:N", title="Node"),
                tooltip=[alt.Tooltip("time_text:N", title="Time (UTC)"), "node:N",
                         alt.Tooltip("value:Q", title=f"{label} (s)", format=".6g"),
                         alt.Tooltip("stderr:Q", title="Standard error (s)", format=".3g")])
            bars = base.mark_errorbar(ticks=True).encode(
                x="time:T", y=alt.Y("lo:Q", title=f"{label} (s, log scale)", scale=alt.Scale(type="log")),
                y2="hi:Q", color="node:N")
            rule = alt.Chart(job).mark_rule(strokeDash=[4, 4], color="gray").encode(x="t:T")
            st.altair_chart(alt.layer(line, bars, rule), width="stretch")


def _errors(f: Filters) -> None:
    df = ui.query("error_distributions", f)
    if df.empty:
        st.info("No gate or readout error samples in this window — widen the time range")
        return
    long = df.melt(id_vars=["node", "hardware_type"],
                   value_vars=["gate_error_1q", "gate_error_2q", "readout_error_0", "readout_error_1"],
                   var_name="error", value_name="value").dropna(subset=["value"])
    if long.empty:
        st.info("Nodes report no gate or readout error values in this window")
        return
    long["value_pct"] = long["value"] * 100
    chart = alt.Chart(long, title="Gate and readout error per node (latest)").mark_bar().encode(
        x=alt.X("node:N", title="Node"),
        xOffset="error:N",
        y=alt.Y("value_pct:Q", title="Error probability (%)"),
        color=alt.Color("error:N", title="Error"),
        tooltip=["node:N", "hardware_type:N", "error:N", alt.Tooltip("value_pct:Q", title="Error (%)", format=".4f")])
    st.altair_chart(chart, width="stretch")


def _fidelity(f: Filters) -> None:
    df = ui.query("link_fidelity", f)
    if df.empty:
        st.info("No measured job fidelities in this window — widen the time range")
        return
    chart = alt.Chart(df, title="Measured fidelity by link").mark_bar(opacity=0.8).encode(
        x=alt.X("fidelity:Q", bin=alt.Bin(maxbins=30), title="Fidelity (1 = perfect)"),
        y=alt.Y("count():Q", title="Jobs", stack=None),
        color=alt.Color("link:N", title="Link"),
        tooltip=["link:N", alt.Tooltip("count():Q", title="Jobs")])
    st.altair_chart(chart, width="stretch")


def _variance(f: Filters, nodes: list[str]) -> None:
    opts = ui.query("options")
    chosen = nodes or ([f.node] if f.node else list(opts.get("nodes", [])))
    df = ui.query("node_series", "qfleet_measurement_variance_ratio", chosen, f) if chosen else pd.DataFrame()
    if df.empty:
        st.info("No measurement variance samples in this window — widen the time range")
        return
    df = ui.to_time(df, "time")
    chart = alt.Chart(df, title="Measurement variance").mark_line().encode(
        x=ui.time_axis(),
        y=alt.Y("value:Q", title="Variance (ratio)"),
        color=alt.Color("node:N", title="Node"),
        tooltip=[alt.Tooltip("time_text:N", title="Time (UTC)"), "node:N", alt.Tooltip("value:Q", title="Variance", format=".6g")])
    st.altair_chart(chart, width="stretch")


def _fidelity_text(fid: object) -> str:
    try:
        return "—" if fid is None else f"{float(fid):.4f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a non-numeric attribute from telemetry
        return lit(fid)


def render() -> None:
    """Draw the debug page."""
    st.title("Debug a job")
    ui.identity()
    f = ui.sidebar_filters()
    ui.live_refresh()
    tid = _pick_trace(f)
    nodes: list[str] = []
    if tid is not None:
        trace = ui.query("job_trace", trace_id=tid)
        if trace.empty:
            st.warning(f"Trace {lit(tid)} is not in the store (pruned by retention, or a mistyped ?trace=)")
        else:
            root = trace[trace["parent_span_id"].isna() | (trace["name"] == "qfleet.job")]
            attrs = root.iloc[0]["attributes"] if not root.empty else {}
            attrs = attrs if isinstance(attrs, dict) else {}
            c = st.columns(4)
            c[0].metric("Spans", len(trace))
            c[1].metric("Duration", f"{(trace['end_ns'].max() - trace['start_ns'].min()) / 1e6:,.3f} ms")
            # A metric's value is Markdown: span attributes are escaped so that they show as text.
            c[2].metric("Outcome", lit(attrs.get("qfleet.outcome", "—")))
            c[3].metric("Fidelity", _fidelity_text(attrs.get("qfleet.fidelity")))
            _waterfall(trace)
            nodes = _nodes_of(trace)
            _timelines(trace, nodes)
            with st.expander("Spans"):
                st.dataframe(trace.drop(columns=["attributes"]), hide_index=True, width="stretch",
                             key="debug_spans_table")
    if f is None:
        st.info("No telemetry in the store yet — no node or link distributions to show")
        return
    st.divider()
    left, right = st.columns(2)
    with left:
        _errors(f)
    with right:
        _fidelity(f)
    _variance(f, nodes)


render()
