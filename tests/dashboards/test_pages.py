"""AppTests of the exec, on-call and debug pages on the seeded store (and on an empty one), plus the CLI."""

from __future__ import annotations

import getpass
import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from qfleet.alerts.postmortem import build_postmortem
from qfleet.collector.migrate import upgrade
from qfleet.collector.settings import ENV_DATABASE_URL
from qfleet.collector.store import open_engine
from qfleet.dashboards import cli, data, ui
from qfleet.slo.spec import builtin_specs_path, load_slos
from qfleet.text import markdown_literal
from tests.dashboards.browser import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "dashboards" / "views"
TIMEOUT = 60


def _app(name: str, url: str, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    monkeypatch.setenv(ENV_DATABASE_URL, url)
    at = AppTest.from_file(str(PAGES / f"{name}.py") if name != "app" else str(ROOT / "dashboards" / "app.py"),
                           default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _infos(at: AppTest) -> list[str]:
    return [i.value for i in at.info]


@pytest.fixture
def writable_url(seeded_db_url: str, tmp_path: Path) -> str:
    """A private copy of the seeded store, for tests that write."""
    src = Path(seeded_db_url.removeprefix("sqlite:///"))
    dst = tmp_path / "copy.db"
    eng = open_engine(seeded_db_url)
    with eng.connect() as c:  # fold the WAL into the main file before copying it
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    shutil.copy(src, dst)
    return f"sqlite:///{dst}"


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    eng = open_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


@pytest.fixture
def engine(seeded_db_url: str) -> Any:
    eng = open_engine(seeded_db_url)
    yield eng
    eng.dispose()


def _qp(at: AppTest, name: str) -> str:
    v = at.query_params[name]
    return v[0] if isinstance(v, list) else v


def _shown_filters(at: AppTest, **kw: str | None) -> data.Filters:
    """The window the page used, read back from the query params it wrote."""
    start, end = ui.time_from_param(_qp(at, "start")), ui.time_from_param(_qp(at, "end"))
    assert start is not None and end is not None
    return data.Filters(start_ns=start, end_ns=end, **kw)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


# -- exec ---------------------------------------------------------------------------------------------------------


def test_exec_shows_the_data_modules_kpis(seeded_db_url: str, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("exec", seeded_db_url, monkeypatch)
    _ok(at)
    assert at.title[0].value == "Fleet overview"
    f = _shown_filters(at)
    default = data.default_filters(engine, hours=24)  # the window defaults to the data's own span (minutes)
    assert abs(f.start_ns - default.start_ns) <= 60 * 10**9 and abs(f.end_ns - default.end_ns) <= 60 * 10**9
    k = data.fleet_kpis(engine, f)
    m = _metrics(at)
    assert m["Availability"] == _pct(k["availability"])
    assert m["Utilisation"] == _pct(k["utilisation"])
    assert m["Job success"] == _pct(k["job_success_rate"])
    assert m["Entanglement success"] == _pct(k["entanglement_success_rate"])
    assert m["Open incidents"] == f"{k['open_incidents'] or 0:,}"
    assert k["jobs"] and k["job_success_rate"] is not None
    # Two trend charts and the budget burn-down, the SLO table (HTML) and the incident table are drawn.
    assert len(at.get("vega_lite_chart")) == 3
    assert len(at.dataframe) == 1
    rows = _slo_rows(at)
    assert len(rows) == len(data.slo_status(engine, f.end_ns)) > 0
    # KPI tiles carry their SLO's objective (from the SLO file, not from the page's data) and the gap to it.
    objective = {s.name: s.target for s in load_slos(builtin_specs_path())}["job-success"]
    delta = {m.label: m.proto.delta for m in at.metric}["Job success"]
    gap = (k["job_success_rate"] - float(objective)) * 100
    assert delta == f"{gap:+.2f} pp vs {float(objective) * 100:g}% objective"


class _Rows(HTMLParser):
    """The SLO table's rows: (data-state, the chip's background colour, {"slo", "segment"} texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str, dict[str, str]]] = []
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-state"):
            self.rows.append((str(a["data-state"]), "", {}))
        elif tag == "div" and a.get("class") in ("qf-slo-name", "qf-segment") and self.rows:
            self._field = "slo" if a["class"] == "qf-slo-name" else "segment"
            self.rows[-1][2][self._field] = ""
        elif tag == "span" and a.get("class") == "qf-state" and self.rows and not self.rows[-1][1]:
            style = dict(p.split(":", 1) for p in str(a.get("style")).split(";") if ":" in p)
            state, _, cells = self.rows[-1]
            self.rows[-1] = (state, style["background"], cells)

    def handle_data(self, text: str) -> None:
        if self._field is not None and self.rows:
            self.rows[-1][2][self._field] += text

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._field = None


def _slo_rows(at: AppTest) -> list[tuple[str, str, dict[str, str]]]:
    [html] = [h.proto.body for h in at.get("html")]
    parser = _Rows()
    parser.feed(html)
    return parser.rows


#: The colours the exec page promises per state (docs: ok green, ticket amber, page red, exhausted dark red).
STATE_COLOURS = {"ok": "#2ca02c", "ticket": "#f0a202", "page": "#d62728", "exhausted": "#7f0000"}


def test_exec_slo_rows_are_readable_and_coloured_by_state(seeded_db_url: str, engine: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("exec", seeded_db_url, monkeypatch)
    _ok(at)
    f = _shown_filters(at)
    # The oracle: the stored evaluations themselves, latest per segment with data, and the state rule
    # (no budget left > page > ticket > ok).
    with engine.connect() as c:
        stored = c.execute(text(
            "SELECT e.slo, e.segment, e.page, e.ticket, e.remaining_fraction FROM slo_evaluations e JOIN "
            "(SELECT slo, segment, max(at_unix_nano) AS at FROM slo_evaluations WHERE at_unix_nano <= :end "
            "GROUP BY slo, segment) l ON e.slo = l.slo AND e.segment = l.segment AND e.at_unix_nano = l.at "
            "WHERE e.sli IS NOT NULL ORDER BY e.slo, e.segment"), {"end": f.end_ns}).all()
    expected = [(slo, seg or "all", "exhausted" if rem is not None and rem <= 0 else
                 "page" if page else "ticket" if ticket else "ok") for slo, seg, page, ticket, rem in stored]
    rows = _slo_rows(at)
    assert [(cells["slo"], cells["segment"], state) for state, _, cells in rows] == expected
    assert any(seg.startswith("hardware_type=") and len(seg) > len("hardware_type=") for _, seg, _ in expected)
    for state, colour, _ in rows:
        assert colour == STATE_COLOURS[state]
    assert {s for *_, s in expected} - {"ok"}, "the fault-heavy store should burn some budget"
    # A legend names every state in its colour.
    [html] = [h.proto.body for h in at.get("html")]
    for state, colour in STATE_COLOURS.items():
        assert f'data-state="{state}" style="background:{colour}' in html


def test_exec_burn_down_draws_the_objectives_line_for_the_period_kind(seeded_db_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("exec", seeded_db_url, monkeypatch)
    _ok(at)
    picked = at.selectbox(key="exec_burn_down").value
    slo = picked.split(" · ")[0]
    spec = {s.name: s for s in load_slos(builtin_specs_path())}[slo]
    [chart] = [spec_ for spec_, _ in _charts(at) if "error budget remaining" in spec_]
    # A rolling window (the built-ins'): exactly at the objective the budget sits at 0, the red line; no even
    # spend, which only a calendar period has.
    assert spec.period.rolling_ns is not None
    assert '"strokeDash": [6, 4]' not in chart and '"type": "rule"' in chart
    assert any("rolling window" in c.value for c in at.caption)


def test_exec_hardware_filter_from_the_query_params(seeded_db_url: str, seeded_facts: dict[str, Any], engine: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    hw = seeded_facts["hardware_types"][0]
    at = _app("exec", seeded_db_url, monkeypatch, hardware_type=hw)
    _ok(at)
    assert at.selectbox(key="filter_hardware_type").value == hw
    k = data.fleet_kpis(engine, _shown_filters(at, hardware_type=hw))
    assert _metrics(at)["Job success"] == _pct(k["job_success_rate"])
    # Clearing the filter through the widget writes the query params back.
    at.selectbox(key="filter_hardware_type").select(ui.ALL).run()
    _ok(at)
    assert "hardware_type" not in at.query_params


def test_pages_on_an_empty_store_say_why(empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("exec", "oncall", "debug"):
        at = _app(name, empty_url, monkeypatch)
        _ok(at)
        assert any("No telemetry in the store yet" in i for i in _infos(at)), (name, _infos(at))
    assert any("No incidents in the store" in i for i in _infos(_app("oncall", empty_url, monkeypatch)))


def test_unknown_query_param_values_fall_back_to_all(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("exec", seeded_db_url, monkeypatch, node="no-such-node")
    _ok(at)
    assert at.selectbox(key="filter_node").value == ui.ALL
    assert "node" not in at.query_params


def test_exec_filter_matching_nothing_shows_empty_states(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A trapped-ion link under the superconducting filter: no spans match, the entanglement trend says why it is empty.
    at = _app("exec", seeded_db_url, monkeypatch, hardware_type="superconducting", link="ion-a~ion-b")
    _ok(at)
    infos = _infos(at)
    assert any(i.startswith("No entanglement requests in this window") for i in infos), infos
    assert len(at.get("vega_lite_chart")) == 2  # the job trend (job spans carry no link) and the burn-down


def test_app_router_renders_the_default_page(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("app", seeded_db_url, monkeypatch)
    _ok(at)
    assert at.title[0].value == "Fleet overview"


# -- on-call ------------------------------------------------------------------------------------------------------


def test_oncall_selects_the_incident_of_the_query_param(seeded_db_url: str, seeded_facts: dict[str, Any],
                                                        engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    iid = seeded_facts["incident_id"]
    assert iid, "the seeded store should hold incidents"
    at = _app("oncall", seeded_db_url, monkeypatch, incident=iid)
    _ok(at)
    assert at.selectbox(key="oncall_incident").value == iid
    inc = data.incidents(engine, limit=500).set_index("id").loc[iid]
    assert at.subheader[0].value == markdown_literal(inc["title"])  # telemetry text, shown as text
    # The impact shown is the postmortem's (one definition, alerts.impact).
    impact = build_postmortem(engine, iid).doc["impact"]
    m = _metrics(at)
    assert {k: m[f"Impacted {k}"] for k in ("nodes", "links", "tenants", "jobs")} == {
        "nodes": str(len(impact["nodes"])), "links": str(len(impact["links"])),
        "tenants": str(len(impact["tenants"])), "jobs": str(impact["jobs_failed"])}
    assert any(markdown_literal(impact["window"]["from"]) in c.value for c in at.caption)
    timeline = [d.value for d in at.dataframe if list(d.value.columns) == ["time", "event", "what happened"]]
    stored = data.incident_timeline(engine, iid)
    assert len(timeline) == 1 and len(timeline[0]) == len(stored) > 0
    # Sentences with times to the second, not raw dicts or ns.
    for when, at_ns in zip(timeline[0]["time"], stored["at"], strict=True):
        assert when == datetime.fromtimestamp(int(at_ns) // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    fired = timeline[0][timeline[0]["event"] == "fired"]["what happened"].tolist()
    assert fired and all("{" not in t and "'" not in t for t in timeline[0]["what happened"])
    assert any(t.startswith("QfleetEntanglementCollapse (page) on link=") for t in fired), fired
    # One row per incident with severity, age, state and owner.
    listed = [d.value for d in at.dataframe if "owner" in d.value.columns]
    assert len(listed) == 1 and set(listed[0].columns) >= {"severity", "state", "age", "owner"}
    assert len(listed[0]) == len(set(data.incidents(engine, limit=500).query("state != 'resolved'")["id"]))
    assert _qp(at, "incident") == iid
    # The postmortem of the selected incident is offered for download (alerts.postmortem).
    assert len(at.get("download_button")) == 2


def _failures_table(at: AppTest) -> Any:
    [t] = [d.value for d in at.dataframe if "attempts" in d.value.columns]
    return t


def test_oncall_panels_are_scoped_to_the_incident(seeded_db_url: str, seeded_facts: dict[str, Any], engine: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    iid = seeded_facts["incident_id"]   # the F1 page on one link
    at = _app("oncall", seeded_db_url, monkeypatch, incident=iid)
    _ok(at)
    impact = data.incident_impact(engine, iid)
    assert impact is not None and impact.scope == "place"
    # The oracle: failed entanglement requests on the incident's nodes or links in its window, from raw SQL.
    nodes = ", ".join(f"'{n}'" for n in impact.nodes)
    links = ", ".join(f"'{n}'" for n in impact.links)
    with engine.connect() as c:
        want = c.execute(text(
            "SELECT start_time_unix_nano, link_id FROM spans WHERE name = 'qfleet.entanglement.request' "
            f"AND status_code = 2 AND start_time_unix_nano >= :lo AND start_time_unix_nano < :hi AND "
            f"(node_id IN ({nodes}) OR link_id IN ({links})) ORDER BY start_time_unix_nano DESC LIMIT 50"),
            {"lo": impact.start_ns, "hi": impact.end_ns}).all()
        fleet = c.execute(text("SELECT DISTINCT link_id FROM spans WHERE name = 'qfleet.entanglement.request' "
                               "AND status_code = 2")).scalars().all()
    shown = _failures_table(at)
    assert want and list(shown["link"]) == [r[1] for r in want]
    assert list(shown["time"]) == [ui.fmt_ns(r[0]) for r in want]
    assert any("Panels scoped to the incident" in c.value for c in at.caption)
    at.toggle(key="oncall_fleet_wide").set_value(True).run()
    _ok(at)
    # The toggle widens every panel to the fleet (the sidebar's window, which ends at the run's end): the table is
    # then the fleet's latest failures, whatever their link or time, again from raw SQL.
    with engine.connect() as c:
        latest = c.execute(text(
            "SELECT start_time_unix_nano, link_id FROM spans WHERE name = 'qfleet.entanglement.request' "
            "AND status_code = 2 ORDER BY start_time_unix_nano DESC LIMIT 50")).all()
    wide = _failures_table(at)
    assert list(wide["link"]) == [r[1] for r in latest], (fleet, impact.links)
    assert list(wide["time"]) == [ui.fmt_ns(r[0]) for r in latest]
    assert not any("Panels scoped to the incident" in c.value for c in at.caption)


def test_oncall_deep_link_from_a_webhook_body_opens_its_incident(writable_url: str, seeded_facts: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A notification's ``qfleet.incidentURL`` (alerts.payloads) carries ``?incident=``: the page opens that
    incident, even a resolved one the default list hides."""
    from urllib.parse import parse_qs, urlsplit

    from qfleet.alerts.model import Alert, Notification
    from qfleet.alerts.payloads import webhook_body

    iid = seeded_facts["incident_ids"][-1]
    eng = open_engine(writable_url)
    try:
        data.resolve(eng, iid, "local:tester", seeded_facts["end_ns"])
    finally:
        eng.dispose()
    n = Notification(at=0, receiver="pages", group_key="g", group_labels=(), reason="first notification",
                     firing=(Alert(labels=(("alertname", "X"),), starts_at=0),), resolved=())
    body = webhook_body(n, receiver_name="pages", external_url="https://qfleet.example/ops", incident_id=iid)
    link = urlsplit(body["qfleet"]["incidentURL"])  # type: ignore[index]
    assert (link.netloc, link.path) == ("qfleet.example", "/ops/oncall")
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    at = _app("oncall", writable_url, monkeypatch, **params)
    _ok(at)
    assert at.selectbox(key="oncall_incident").value == iid
    assert not at.toggle(key="oncall_show_resolved").value
    assert any("state **resolved**" in m.value for m in at.markdown)


def test_oncall_acknowledge_writes_to_the_store(writable_url: str, seeded_facts: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    eng = open_engine(writable_url)
    try:
        with eng.connect() as c:
            iid = c.execute(text("SELECT id FROM incidents WHERE state = 'open' ORDER BY opened_unix_nano")).scalar()
        if iid is None:  # every seeded incident resolved itself: reopen one in the private copy
            iid = seeded_facts["incident_id"]
            with eng.begin() as c:
                c.execute(text("UPDATE incidents SET state = 'open', resolved_unix_nano = NULL WHERE id = :i"),
                          {"i": iid})
        at = _app("oncall", writable_url, monkeypatch, incident=iid)
        _ok(at)
        at.button(key="oncall_ack").click().run()
        _ok(at)
        with eng.connect() as c:
            state, by = c.execute(text("SELECT state, acknowledged_by FROM incidents WHERE id = :i"), {"i": iid}).one()
            kinds = [k for (k,) in c.execute(text("SELECT kind FROM incident_events WHERE incident_id = :i"),
                                             {"i": iid})]
        # --auth none (the default, loopback only): the account running the dashboards, never a typed name.
        assert (state, by) == ("acknowledged", f"local:{getpass.getuser()}")
        assert "acknowledged" in kinds
        assert any("Acknowledged" in s.value for s in at.success)
        assert at.button(key="oncall_ack").disabled
    finally:
        eng.dispose()


def test_oncall_silence_form_writes_a_silence(writable_url: str, seeded_facts: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("oncall", writable_url, monkeypatch, incident=seeded_facts["incident_id"])
    _ok(at)
    at.text_area(key="oncall_silence_matchers").input('alertname="QfleetNodeHeartbeatMissing"')
    at.number_input(key="oncall_silence_hours").set_value(1.0)
    at.text_input(key="oncall_silence_comment").input("maintenance")
    at.button(key="oncall_silence_submit").click().run()
    _ok(at)
    eng = open_engine(writable_url)
    try:
        with eng.connect() as c:
            rows = c.execute(text("SELECT comment, ends_at_unix_nano - starts_at_unix_nano FROM silences")).all()
    finally:
        eng.dispose()
    assert [(r[0], r[1]) for r in rows] == [("maintenance", 3600 * 10**9)]


# -- debug --------------------------------------------------------------------------------------------------------


def test_debug_opens_the_trace_of_the_query_param(seeded_db_url: str, seeded_facts: dict[str, Any], engine: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tid = seeded_facts["failed_trace_id"]
    at = _app("debug", seeded_db_url, monkeypatch, trace=tid)
    _ok(at)
    assert at.selectbox(key="debug_trace").value == tid
    trace = data.job_trace(engine, trace_id=tid)
    m = _metrics(at)
    assert m["Spans"] == str(len(trace)) and len(trace) > 1
    root = trace[trace["name"] == "qfleet.job"].iloc[0]
    assert m["Outcome"] == markdown_literal(root["attributes"]["qfleet.outcome"])
    assert root["attributes"]["qfleet.outcome"] != "success"
    # waterfall, T2, T1, errors, fidelity, variance (each drawn or explained)
    charts = len(at.get("vega_lite_chart"))
    assert charts + len(at.info) >= 6


def _charts(at: AppTest) -> list[tuple[str, list[dict[str, Any]]]]:
    """(spec JSON text, rows of every dataset) of each Vega-Lite chart on the page."""
    import json

    import pyarrow as pa

    out = []
    for ch in at.get("vega_lite_chart"):
        rows: list[dict[str, Any]] = []
        for ds in ch.proto.datasets:
            rows += pa.ipc.open_stream(ds.data.data).read_all().to_pylist()
        out.append((json.dumps(json.loads(ch.proto.spec)), rows))
    return out


def _trace_on(engine: Any, node_prefix: str) -> str:
    with engine.connect() as c:
        return str(c.execute(text("SELECT trace_id FROM spans WHERE name = 'qfleet.job' AND node_id LIKE :p "
                                  "ORDER BY start_time_unix_nano LIMIT 1"), {"p": node_prefix + "%"}).scalar())


def test_debug_shows_device_estimates_only_where_finite_with_their_errors(
        seeded_db_url: str, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Trapped ions report T1 = 1e9 s ("no decay", simulator/telemetry.py): said in words, never plotted.
    at = _app("debug", seeded_db_url, monkeypatch, trace=_trace_on(engine, "ion-"))
    _ok(at)
    assert any(c.value.startswith("T1: no decay measured on ion") for c in at.caption)
    t1 = [rows for spec, rows in _charts(at) if "T1 estimates" in spec]
    assert t1 == []
    # An NV centre's T1 is finite: plotted with ±1 standard error bars from qfleet_node_t1_stderr_seconds.
    at = _app("debug", seeded_db_url, monkeypatch, trace=_trace_on(engine, "nv-"))
    _ok(at)
    [rows] = [rows for spec, rows in _charts(at) if "T1 estimates" in spec]
    with engine.connect() as c:
        stderr = {(n, v) for n, v in c.execute(text(
            "SELECT s.node_id, x.value FROM metric_series s JOIN metric_samples x ON x.series_id = s.id "
            "WHERE s.metric_name = 'qfleet_node_t1_stderr_seconds'")).all()}
    rows = [r for r in rows if "value" in r]   # the layer's other dataset is the job's start and end
    assert rows and all(r["value"] < 1e9 for r in rows)
    assert all((r["node"], r["stderr"]) in stderr and r["hi"] == pytest.approx(r["value"] + r["stderr"])
               for r in rows)


def test_debug_waterfall_labels_every_span_on_a_log_axis(seeded_db_url: str, seeded_facts: dict[str, Any],
                                                         engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = seeded_facts["failed_trace_id"]
    at = _app("debug", seeded_db_url, monkeypatch, trace=tid)
    _ok(at)
    assert at.radio(key="debug_waterfall_scale").value == "log"
    [(spec, rows)] = [(spec, rows) for spec, rows in _charts(at) if "Trace waterfall" in spec]
    assert '"type": "log"' in spec and '"mark": {"type": "text"' in spec
    trace = data.job_trace(engine, trace_id=tid)
    assert len(rows) == len(trace) > 1
    # Each bar's label is its own duration in a readable unit (3 significant digits).
    unit = {"ns": 1, "µs": 10**3, "ms": 10**6, "s": 10**9}
    shown = sorted(float(r["took"].split()[0]) * unit[r["took"].split()[1]] for r in rows)
    true = sorted(int(e - s) for s, e in zip(trace["start_ns"], trace["end_ns"], strict=True))
    assert all(abs(a - b) <= max(0.01 * b, 1) for a, b in zip(shown, true, strict=True)), (shown, true)
    at.radio(key="debug_waterfall_scale").set_value("linear").run()
    _ok(at)
    [spec] = [spec for spec, _ in _charts(at) if "Trace waterfall" in spec]
    assert '"type": "log"' not in spec


def test_debug_lists_failed_jobs_by_default(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("debug", seeded_db_url, monkeypatch)
    _ok(at)
    sb = at.selectbox(key="debug_trace")
    assert sb.value and _qp(at, "trace") == sb.value
    assert "success" not in sb.format_func(sb.value).rsplit("·", 1)[-1]


def test_debug_unknown_trace_says_so(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("debug", seeded_db_url, monkeypatch, trace="0" * 32)
    _ok(at)
    assert any("is not in the store" in w.value for w in at.warning)


# -- plumbing -----------------------------------------------------------------------------------------------------


def test_database_url_prefers_the_flag_then_the_environment() -> None:
    assert ui.database_url(["--db", "sqlite:///a.db"], {ENV_DATABASE_URL: "sqlite:///b.db"}) == "sqlite:///a.db"
    assert ui.database_url(["--db=sqlite:///c.db"], {}) == "sqlite:///c.db"
    assert ui.database_url([], {ENV_DATABASE_URL: "sqlite:///b.db"}) == "sqlite:///b.db"
    assert ui.database_url([], {}) == "sqlite:///qfleet.db"


def test_cli_runs_streamlit_headless_on_loopback(empty_url: str) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    port = str(free_port())
    rc = cli.main(["--db", empty_url, "--port", port], environ={},
                  run=lambda cmd, env: calls.append((cmd, env)) or 0)
    assert rc == 0
    cmd, env = calls[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboards/app.py")
    joined = " ".join(cmd)
    assert "--server.headless true" in joined and "--server.address 127.0.0.1" in joined
    assert f"--server.port {port}" in joined
    assert "--db" not in cmd and empty_url not in joined  # the URL goes through the environment only
    assert env[ENV_DATABASE_URL] == empty_url
    assert cli.main(["--db", "nonsense"], environ={}, run=lambda cmd, env: 0) == 2
