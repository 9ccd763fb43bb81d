"""Shared Streamlit plumbing of the pages: the engine, cached queries, the filter sidebar, colours, live mode.

Pages stay thin: they call :func:`query` (a ``st.cache_data`` wrapper over :mod:`qfleet.dashboards.data`) and draw.
The filters live in ``st.query_params`` (``start``, ``end``, ``hardware_type``, ``node``, ``link``, ``incident``,
``trace``, ``live``) so a copied link opens the exact view.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from qfleet.collector.settings import DEFAULT_DATABASE_URL, ENV_DATABASE_URL
from qfleet.collector.store import StoreError
from qfleet.dashboards import auth, data
from qfleet.text import markdown_literal
from qfleet.units import NS, TimestampError, format_rfc3339, parse_rfc3339

__all__ = [
    "ALL",
    "clear_cache",
    "database_url",
    "engine",
    "fmt_duration",
    "fmt_ns",
    "HARDWARE_COLOURS",
    "hardware_scale",
    "identity",
    "incident_runbook_url",
    "labels_of",
    "live_refresh",
    "ns_to_datetime",
    "param",
    "query",
    "runbook_body",
    "selected_run",
    "segment_text",
    "set_param",
    "slo_table_html",
    "severity_badge",
    "SEVERITY_COLOURS",
    "SLO_STATE_COLOURS",
    "severity_scale",
    "sidebar_filters",
    "time_axis",
    "time_from_param",
    "to_time",
]

#: Severity colours: page red, ticket amber, security purple.
SEVERITY_COLOURS: dict[str, str] = {"page": "#d62728", "ticket": "#f0a202", "security": "#7b2cbf"}
#: SLO state colours (exec page): exhausted dark red, page red, ticket amber, ok green.
SLO_STATE_COLOURS: dict[str, str] = {"exhausted": "#7f0000", "page": "#d62728", "ticket": "#f0a202", "ok": "#2ca02c"}
#: One fixed colour per hardware family (anything else is grey).
HARDWARE_COLOURS: dict[str, str] = {"trapped-ion": "#1f77b4", "nv-centre": "#2ca02c",
                                    "superconducting": "#17becf"}
OTHER_COLOUR = "#7f7f7f"
#: The "no filter" choice of the sidebar selectboxes.
ALL = "(all)"
#: Seconds between reruns while ``?live=1``.
LIVE_EVERY_S = 15


# -- engine and cached queries ------------------------------------------------------------------------------


def database_url(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The store URL: ``--db URL`` among the script arguments, else ``$QFLEET_DATABASE_URL``, else the default."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--db" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--db="):
            return a.split("=", 1)[1]
    env = os.environ if environ is None else environ
    return env.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    return data.open_store(url)  # a failure is not cached: the next run tries again


def engine() -> Engine:
    """The process-wide engine of :func:`database_url` (``st.cache_resource``); a store that is missing, not
    migrated or unreachable stops the page with its one-line message instead of a traceback."""
    try:
        return _engine_for(database_url())
    except StoreError as e:
        st.error(markdown_literal(e))
        st.stop()


# -- who is using the page --------------------------------------------------------------------------------------

_USER_KEY = "_qfleet_user"


def _request_headers() -> Mapping[str, str]:
    """The headers of the browser's connection (a seam for tests: AppTest has no request)."""
    return st.context.headers


def _peer_ip() -> str | None:
    """The browser's address (the TCP peer, as uvicorn reports it), None on loopback; AppTest has no peer."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) else None


def _local_account() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (a bare container)
        return f"uid{os.getuid()}"


def _login_form(cfg: auth.AuthConfig) -> str | None:
    """The sign-in form of ``--auth users``; the user's name once the password checks out."""
    assert cfg.users_file is not None
    st.title("Sign in")
    with st.form("auth_login"):
        name = st.text_input("User name", key="auth_name")
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", key="auth_submit")
    if not submitted:
        return None
    try:
        users = auth.read_users(cfg.users_file)
    except auth.AuthError as e:
        st.error(markdown_literal(e))
        return None
    if not auth.verify(users, name, password):
        st.error("Wrong user name or password")
        return None
    return name


def identity() -> str:
    """The name the page's actions record, by the auth mode the CLI chose (:mod:`qfleet.dashboards.auth`).

    ``users``: shows the sign-in form and stops the page until a user signs in; ``proxy``: the proxy's header,
    and the page stops without it; ``none``: ``local:<account>``, and the page stops for a non-loopback client.
    """
    try:
        cfg = auth.AuthConfig.from_env(os.environ)
    except auth.AuthError as e:
        st.error(markdown_literal(e))
        st.stop()
    if cfg.mode == "none":
        if _peer_ip() is not None:
            st.error("These dashboards run without authentication and answer on loopback only; restart them "
                     "with --auth users or --auth proxy to serve other machines")
            st.stop()
        return f"local:{_local_account()}"
    if cfg.mode == "proxy":
        assert cfg.proxy_header is not None
        who = auth.proxy_identity(_request_headers(), cfg.proxy_header)
        if who is None:
            st.error(f"No user name in the {cfg.proxy_header} header: open the dashboards through the "
                     "authenticating reverse proxy")
            st.stop()
        return who
    who = st.session_state.get(_USER_KEY)
    if not who:
        who = _login_form(cfg)
        if who is None:
            st.stop()
        st.session_state[_USER_KEY] = who  # the password widget is not drawn again, so Streamlit drops it
    st.sidebar.caption(f"Signed in as {markdown_literal(who)}")
    if st.sidebar.button("Sign out", key="auth_logout"):
        st.session_state.pop(_USER_KEY, None)
        st.rerun()
    return str(who)


def _encode(v: Any) -> Any:
    if isinstance(v, data.Filters):
        return ("__filters__", *(getattr(v, k.name) for k in fields(data.Filters)))
    if isinstance(v, list):
        return ("__list__", *v)
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, tuple) and v and v[0] == "__filters__":
        return data.Filters(**{k.name: x for k, x in zip(fields(data.Filters), v[1:], strict=True)})
    if isinstance(v, tuple) and v and v[0] == "__list__":
        return list(v[1:])
    return v


@st.cache_data(ttl=10, show_spinner=False)
def _cached(_engine: Engine, url: str, name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    fn = getattr(data, name)
    return fn(_engine, *(_decode(a) for a in args), **{k: _decode(v) for k, v in kwargs})


def query(name: str, *args: Any, **kwargs: Any) -> Any:
    """``dashboards.data.<name>(engine, *args, **kwargs)``, cached for 10 s per database and arguments."""
    return _cached(engine(), database_url(), name, tuple(_encode(a) for a in args),
                   tuple(sorted((k, _encode(v)) for k, v in kwargs.items())))


def clear_cache() -> None:
    """Forget cached query results (after a write: acknowledge, resolve, silence)."""
    _cached.clear()


# -- time -----------------------------------------------------------------------------------------------------


def ns_to_datetime(ns: int) -> datetime:
    """A naive UTC datetime of integer ns (what Streamlit's sliders use)."""
    return datetime(1970, 1, 1) + timedelta(microseconds=int(ns) // 1000)


def _datetime_to_ns(dt: datetime) -> int:
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return (dt - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000


def fmt_ns(ns: int | float | None) -> str:
    """``2026-01-01 02:15:00Z`` for integer ns; an em dash for missing values."""
    if ns is None or pd.isna(ns):
        return "—"
    return ns_to_datetime(int(ns)).strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_duration(ns: int) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``.

    >>> fmt_duration(45 * NS), fmt_duration(754 * NS), fmt_duration(11_100 * NS), fmt_duration(187_200 * NS)
    ('45 s', '12 min', '3 h 05 min', '2 d 4 h')
    """
    s = int(ns) // NS
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def time_axis(field: str = "time", title: str = "Time (UTC, simulated)") -> alt.X:
    """An Altair x encoding of a UTC datetime column: 24-hour ``MM-DD HH:MM`` labels in UTC (a browser's own
    time zone and 12-hour clock never show)."""
    return alt.X(f"{field}:T", title=title, scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format="%m-%d %H:%M", labelAngle=0, labelOverlap=True))


def time_from_param(text: str | None) -> int | None:
    """A URL's time: integer ns or RFC 3339 (``2026-01-01T02:00:00Z``); None if missing or unreadable (a hand-edited
    link falls back to the default window instead of failing the page)."""
    if not text:
        return None
    text = text.strip()
    try:
        return int(text) if text.lstrip("-").isascii() and text.lstrip("-").isdigit() else parse_rfc3339(text)
    except (TimestampError, ValueError, OverflowError):
        return None


def to_time(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """A copy of ``df`` with integer-ns columns ``cols`` converted to UTC datetimes (for Altair), each with a
    ``<col>_text`` twin in UTC for tooltips (Vega formats datetimes in the browser's time zone)."""
    out = df.copy()
    for c in cols:
        if c in out.columns:
            out[f"{c}_text"] = [fmt_ns(v) for v in out[c]]
            out[c] = pd.to_datetime(out[c], unit="ns", utc=True)
    return out


# -- query params ---------------------------------------------------------------------------------------------


def param(name: str) -> str | None:
    """The query parameter ``name`` (None if absent or empty)."""
    v = st.query_params.get(name)
    return v or None


def set_param(name: str, value: str | None) -> None:
    """Set (or, for None / empty, remove) the query parameter ``name``."""
    if value:
        if st.query_params.get(name) != value:
            st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]


def _choice(key: str, name: str, values: list[str], label: str) -> str | None:
    choices = [ALL, *values]
    if key not in st.session_state:
        wanted = param(name)
        st.session_state[key] = wanted if wanted in values else ALL
    elif st.session_state[key] not in choices:
        st.session_state[key] = ALL
    picked = st.sidebar.selectbox(label, choices, key=key)
    value = None if picked == ALL else picked
    set_param(name, value)
    return value


def _run_label(runs: pd.DataFrame) -> Any:
    labels = {str(r["id"]): f"{r['id']} · {r['fleet']} · {fmt_ns(int(r['start']))} → {fmt_ns(int(r['end']))}"
              for r in runs.to_dict("records")}
    return lambda rid: labels.get(rid, rid)


def _run_changed() -> None:
    # Another run has another time range: start from its defaults, not from the old run's window.
    st.session_state.pop("filter_range", None)
    set_param("start", None)
    set_param("end", None)


def selected_run() -> str | None:
    """The run the views show: the sidebar's choice (``?run=``), else the latest; None for a store without runs."""
    runs = query("runs")
    if runs.empty:
        return None
    ids = runs["id"].tolist()
    key = "filter_run"
    if key not in st.session_state or st.session_state[key] not in ids:
        wanted = param("run")
        st.session_state[key] = wanted if wanted in ids else ids[0]  # ids[0]: the latest run
    return str(st.session_state[key])


def _run_selector() -> str | None:
    """The sidebar's run selector (hidden for a store without runs); the chosen run id."""
    run = selected_run()
    if run is None:
        return None
    runs = query("runs")
    picked = st.sidebar.selectbox("Run (simulated)", runs["id"].tolist(), key="filter_run",
                                  format_func=_run_label(runs), on_change=_run_changed)
    set_param("run", picked)
    return str(picked)


def sidebar_filters(eng: Engine | None = None) -> data.Filters | None:
    """The sidebar: the run (default: the latest; none for a store without runs), time range over the run's or
    the data's own span, hardware type, node, link; None for an empty store (or run).

    Initialised from ``st.query_params`` and written back to them on every run.
    """
    eng = eng or engine()
    st.sidebar.header("Filters")
    run = _run_selector()
    rng = query("data_range", run)
    if rng is None:
        st.sidebar.info("The store holds no spans yet — run `qfleet sim run` or point `--db` at a store.")
        return None
    lo, hi = int(rng[0]), int(rng[1])
    if hi <= lo:
        hi = lo + 60 * NS
    live = param("live") == "1"
    default = query("default_filters", hours=24, run_id=run)
    key = "filter_range"
    lo_dt = ns_to_datetime(lo).replace(second=0, microsecond=0)
    hi_dt = ns_to_datetime(hi).replace(second=0, microsecond=0) + timedelta(minutes=1)
    if key not in st.session_state or live:
        start = time_from_param(param("start"))
        end = time_from_param(param("end"))
        start = default.start_ns if start is None else start
        end = default.end_ns if end is None or (live and param("end") is None) else end
        # Into the data's span first: a hand-edited ?end=9999-12-31T23:59:59Z is beyond what datetime holds.
        start, end = min(max(start, lo), hi), min(max(end, lo), hi)
        s_dt = min(max(ns_to_datetime(start).replace(second=0, microsecond=0), lo_dt), hi_dt)
        e_dt = min(max(ns_to_datetime(end).replace(second=0, microsecond=0) + timedelta(minutes=1), s_dt), hi_dt)
        if key not in st.session_state or st.session_state[key] != (s_dt, e_dt):
            st.session_state[key] = (s_dt, e_dt)
    # A range slider (its value is a (start, end) pair; the stubs only know the single-value form).
    chosen: tuple[datetime, datetime] = st.sidebar.slider(  # type: ignore[assignment]
        "Time range (UTC, simulated)", min_value=lo_dt, max_value=hi_dt, step=timedelta(minutes=1),
        format="MM-DD HH:mm", key=key)
    start_ns, end_ns = _datetime_to_ns(chosen[0]), _datetime_to_ns(chosen[1])
    if end_ns <= start_ns:
        end_ns = start_ns + 60 * NS
    set_param("start", format_rfc3339(start_ns))  # always: a copied link reproduces the exact window
    set_param("end", format_rfc3339(end_ns))
    opts = query("options")
    hw = _choice("filter_hardware_type", "hardware_type", list(opts.get("hardware_types", [])), "Hardware type")
    node = _choice("filter_node", "node", list(opts.get("nodes", [])), "Node")
    link = _choice("filter_link", "link", list(opts.get("links", [])), "Link")
    st.sidebar.toggle("Live (refresh every 15 s)", key="filter_live", value=live,
                      on_change=_toggle_live)
    st.sidebar.caption(f"Store: {markdown_literal(_redact(database_url()))}")
    return data.Filters(start_ns=start_ns, end_ns=end_ns, hardware_type=hw, node=node, link=link)


def _toggle_live() -> None:
    set_param("live", "1" if st.session_state.get("filter_live") else None)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


# -- live mode ------------------------------------------------------------------------------------------------


def live_refresh() -> None:
    """While ``?live=1``, rerun the whole page every 15 s (a timed fragment that triggers an app rerun)."""
    if param("live") != "1":
        return
    st.session_state["_live_runs"] = st.session_state.get("_live_runs", 0) + 1
    run = st.session_state["_live_runs"]

    @st.fragment(run_every=LIVE_EVERY_S)
    def _tick() -> None:
        if st.session_state.get("_live_seen") == run:
            clear_cache()
            st.rerun(scope="app")
        st.session_state["_live_seen"] = run

    _tick()


# -- colours and small widgets --------------------------------------------------------------------------------


def _scale(colours: Mapping[str, str], present: Sequence[str]) -> alt.Scale:
    domain = list(colours) + sorted({p for p in present if p not in colours})
    return alt.Scale(domain=domain, range=[colours.get(d, OTHER_COLOUR) for d in domain])


def hardware_scale(present: Sequence[str] = ()) -> alt.Scale:
    """An Altair colour scale with each hardware family's fixed colour."""
    return _scale(HARDWARE_COLOURS, [str(p) for p in present])


def severity_scale(present: Sequence[str] = ()) -> alt.Scale:
    """An Altair colour scale with the severity colours."""
    return _scale(SEVERITY_COLOURS, [str(p) for p in present])


def _chip(state: str) -> str:
    colour = SLO_STATE_COLOURS.get(state, OTHER_COLOUR)
    return (f'<span class="qf-state" data-state="{escape(state)}" style="background:{colour};color:#fff;'
            f'padding:1px 8px;border-radius:8px;white-space:nowrap">{escape("paging" if state == "page" else state)}</span>')


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None or pd.isna(v) else format(float(v), fmt)


#: Columns of the SLO table that never wrap: objective, SLI, burn rates.
_NOWRAP = frozenset({2, 3, 5})


def segment_text(segment: str) -> str:
    """A segment as the table shows it: ``all`` when unsegmented; ``hardware_type (never placed)`` for jobs that
    never reached a node (their segment value is empty, ``hardware_type=``).

    >>> segment_text(""), segment_text("hardware_type="), segment_text("hardware_type=nv-centre")
    ('all', 'hardware_type (never placed)', 'hardware_type=nv-centre')
    """
    if not segment:
        return "all"
    return segment[:-1] + " (never placed)" if segment.endswith("=") else segment


def slo_table_html(slos: pd.DataFrame) -> str:
    """The exec page's SLO table (rows of :func:`qfleet.dashboards.data.slo_status`) as escaped HTML: a legend,
    then one row per SLO segment with its state chip, full segment, objective, SLI, budget remaining as a bar
    coloured by state, both burn rates, the page and ticket conditions firing and the budget-policy steps
    triggered."""
    legend = " ".join(_chip(s) for s in SLO_STATE_COLOURS)
    ats = sorted({int(a) for a in slos["at"]})
    when = f"evaluated {fmt_ns(ats[-1])}" + (f" (some segments last at {fmt_ns(ats[0])})" if len(ats) > 1 else "")
    head = ("State", "SLO · segment", "Objective", "SLI", "Budget remaining", "Burn 1\u00a0h / 6\u00a0h", "Alerts firing",
            "Budget-policy steps")
    rows = []
    for r in slos.to_dict("records"):
        state = str(r["state"])
        colour = SLO_STATE_COLOURS.get(state, OTHER_COLOUR)
        rem = r["remaining_fraction"]
        width = 0.0 if rem is None or pd.isna(rem) else min(max(float(rem), 0.0), 1.0) * 100
        rem_text = "—" if rem is None or pd.isna(rem) else (
            f"exhausted ({float(rem) * 100:.1f}%)" if float(rem) <= 0 else f"{float(rem) * 100:.1f}%")
        bar = (f'<div style="min-width:120px;border:1px solid {colour};border-radius:3px;position:relative;'
               f'height:1.4em"><div style="width:{width:.1f}%;height:100%;background:{colour};opacity:0.45"></div>'
               f'<span style="position:absolute;left:4px;top:0;white-space:nowrap">{escape(rem_text)}</span></div>')
        steps = r["steps_triggered"]
        firing = ", ".join(n for n, on in (("page", r["page"]), ("ticket", r["ticket"])) if on) or "none"
        name = (f'<div class="qf-slo-name" style="font-weight:600">{escape(str(r["slo"]))}</div>'
                f'<div class="qf-segment" style="white-space:nowrap">{escape(segment_text(str(r["segment"] or "")))}</div>')
        cells = [_chip(state), name,
                 _num(None if r["objective"] is None else r["objective"] * 100, "g") + "%",
                 _num(None if r["sli"] is None else r["sli"] * 100, ".3f") + "%", bar,
                 _num(r["burn_1h"], ".2f") + "× / " + _num(r["burn_6h"], ".2f") + "×", escape(firing),
                 escape(", ".join(map(str, steps)) if isinstance(steps, list | tuple) and steps else "none")]
        rows.append(f'<tr data-state="{escape(state)}">' + "".join(
            f'<td style="padding:3px 6px;{"white-space:nowrap" if i in _NOWRAP else ""}">{c}</td>'
            for i, c in enumerate(cells)) + "</tr>")
    return (f'<div class="qf-slo" style="font-size:0.85rem;overflow-x:auto"><p>States: {legend} · '
            f'{escape(when)} (UTC)</p><table style="width:100%;border-collapse:collapse"><thead><tr>'
            + "".join(f'<th style="text-align:left;padding:3px 6px;vertical-align:bottom">{h}</th>' for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def severity_badge(severity: str) -> str:
    """Markdown for a coloured severity tag."""
    colour = {"page": "red", "ticket": "orange", "security": "violet"}.get(severity, "gray")
    return f":{colour}-background[{markdown_literal(severity or 'none')}]"


def labels_of(v: Any) -> dict[str, str]:
    """Incident labels as a dict (they may arrive as JSON text)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return {}
    return {str(k): str(x) for k, x in v.items()} if isinstance(v, Mapping) else {}


@st.cache_resource(show_spinner=False)
def _runbook_index() -> dict[str, str]:
    """alertname / SLO name -> runbook path, from the default alert rules and SLO specs."""
    out: dict[str, str] = {}
    try:
        from qfleet.alerts.rules import load_rules

        for r in load_rules():
            url = dict(r.annotations).get("runbook_url")
            if url:
                out[r.name] = url
    except Exception:  # the index is a convenience: a broken rules file must not break the page
        pass
    try:
        from qfleet.slo.spec import builtin_specs_path, load_slos

        for s in load_slos(builtin_specs_path()):
            if s.runbook:
                out[f"slo:{s.name}"] = s.runbook
    except Exception:
        pass
    return out


def incident_runbook_url(labels: Mapping[str, str]) -> str | None:
    """The runbook of an incident: a ``runbook_url`` label, its SLO's or rule's runbook, or its failure mode."""
    if labels.get("runbook_url"):
        return labels["runbook_url"]
    index = _runbook_index()
    if labels.get("slo") and f"slo:{labels['slo']}" in index:
        return index[f"slo:{labels['slo']}"]
    if labels.get("alertname") in index:
        return index[labels["alertname"]]
    mode = labels.get("failure_mode") or labels.get("qfleet.fault") or labels.get("fault")
    return f"runbooks/{mode}.md" if mode else None


def runbook_body(text: str) -> str:
    """A runbook for an inline panel: front matter dropped, headings shrunk to fit a narrow column."""
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        text = text[4:].split("\n---\n", 1)[1]
    return "\n".join("#### " + line.lstrip("#").strip() if line.startswith("#") else line
                     for line in text.splitlines())
